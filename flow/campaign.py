"""Fault-injection campaigns on the compiled C simulation: evaluate every fault of a list against the fault-free
run, store each result in SQLite as it is produced, resume where a killed campaign stopped, use all cores."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import multiprocessing
import queue
import re
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from flow.build_cache import build_info, read_build_script, toolchain
from flow.csim import FastEvaluator, FaultableLibrary
from flow.errors import FlowError
from flow.faultlist import ActBit, Fault, faults_to_json
from flow.fi_bridge import TABLE, TENSORS
from flow.hls import HlsProject
from flow.rundir import atomic_path
from flow.stats import wilson_interval

OUTCOMES = ("masked", "sdc", "critical")  # sdc = logits differ, no top-1 changes; critical = a top-1 changes
EVALUATIONS = ("fast", "full")  # from the faulty layer on, stopping once masked / the whole C-sim batch per fault


def evaluate(lib: FaultableLibrary, fault: Fault, x: np.ndarray, y: np.ndarray, golden: np.ndarray) -> dict:
    """Outcome of one fault on the samples, compared with the fault-free outputs (the whole C-sim batch)."""
    try:
        for b in fault:
            lib.inject(b.array, b.index, b.bit, b.kind)
        out = lib.predict(x)
    finally:
        lib.restore()
    return outcomes(out[None], y, golden)[0]


def evaluate_fast(fast: FastEvaluator, faults: list[Fault], y: np.ndarray, golden: np.ndarray) -> list[dict]:
    """``evaluate`` of several faults in one C call, each from its first faulty layer onward (same rows), plus
    ``stopped_early``: the evaluation ended before the last layer (the fault was masked)."""
    out, early, _ = fast.evaluate(faults)
    rows = outcomes(out, y, golden)
    for row, stopped in zip(rows, early, strict=True):
        row["stopped_early"] = bool(stopped)
    return rows


def evaluate_act(fast: FastEvaluator, faults: list[Fault], y: np.ndarray, golden: np.ndarray) -> list[dict]:
    """The rows of activation faults (one C call): a transient fault (one sample) counts that sample only
    (n_critical and n_differ 0 or 1, accuracy 0 or 1), a permanent one every sample, as a weight fault."""
    out, early, _ = fast.evaluate_act(faults)
    rows = []
    for g, fault in enumerate(faults):
        s = fault[0].sample
        one = slice(None) if s < 0 else slice(s, s + 1)
        row = outcomes(out[g : g + 1, one], y[one], golden[one])[0]
        rows.append({**row, "stopped_early": bool(early[g])})
    return rows


def is_activation_fault(fault: Fault) -> bool:
    return bool(fault) and isinstance(fault[0], ActBit)


def outcomes(out: np.ndarray, y: np.ndarray, golden: np.ndarray) -> list[dict]:
    """The result rows of G faults from their outputs (G, N, n_outputs), against the fault-free ``golden``."""
    differs = np.any(out != golden, axis=2)
    predicted = out.argmax(axis=2)
    top_changed = predicted != golden.argmax(axis=1)
    accuracy = np.mean(predicted == y, axis=1)
    return [
        {
            "outcome": "critical" if top_changed[g].any() else "sdc" if differs[g].any() else "masked",
            "n_critical": int(top_changed[g].sum()),
            "n_differ": int(differs[g].sum()),
            "accuracy": float(accuracy[g]),
        }
        for g in range(len(out))
    ]


TYPE_HEADERS = ("defines.h", "parameters.h")  # the layers' precisions and configurations
NOT_SOURCES = (".so", ".o", ".tmp")  # build products that may sit in firmware/


def campaign_inputs(project: HlsProject, faults: list[Fault], x: np.ndarray, seed: int) -> dict[str, str]:
    """SHA-256 of each input that defines a campaign's results: the firmware (``types``: defines.h and
    parameters.h; ``firmware``: every other source and header under firmware/, nnet_utils and ap_types included;
    ``weights``: firmware/weights/), the ``bridge`` (fault-injection C++, array and tensor tables), the ``build``
    (compiler, flags and opt level), the ``faults``, the ``samples`` and the ``seed``. Paths are relative to the
    project, so a moved run directory keeps its campaigns."""
    directory = project.directory
    bridge = [directory / f"{project.project_name}_bridge.cpp", directory / TABLE, directory / TENSORS]
    samples = np.ascontiguousarray(x, dtype=np.float32)
    inputs = {name: _hash_files(directory, paths) for name, paths in _firmware_files(directory).items()}
    inputs["bridge"] = _hash_files(directory, [p for p in bridge if p.is_file()])
    inputs["build"] = _sha256(json.dumps(_build_identity(directory), sort_keys=True).encode())
    inputs["faults"] = _sha256(json.dumps(faults_to_json(faults)).encode())
    inputs["samples"] = _sha256(f"{samples.shape}".encode() + samples.tobytes())
    inputs["seed"] = _sha256(str(seed).encode())
    return inputs


def campaign_id(inputs: dict[str, str]) -> str:
    """The campaign's id: a hash of all its ``campaign_inputs``."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]


def short_inputs(inputs: dict[str, str]) -> dict[str, str]:
    """The inputs' hashes shortened, for the campaign meta and summary.json (to see what changed)."""
    return {name: digest[:12] for name, digest in inputs.items()}


def _firmware_files(directory: Path) -> dict[str, list[Path]]:
    """Every file under ``directory/firmware`` but build products, as types, weights and (other) firmware."""
    groups: dict[str, list[Path]] = {"types": [], "firmware": [], "weights": []}
    firmware = directory / "firmware"
    for path in sorted(firmware.rglob("*")):
        if not path.is_file() or path.suffix in NOT_SOURCES:
            continue
        groups[_group(path.relative_to(firmware))].append(path)
    return groups


def _group(rel: Path) -> str:
    """The campaign input a file under firmware/ belongs to."""
    if rel.parts[0] == "weights":
        return "weights"
    return "types" if rel.as_posix() in TYPE_HEADERS else "firmware"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hash_files(root: Path, paths: list[Path]) -> str:
    """SHA-256 over the files' paths relative to ``root``, sizes and contents."""
    digest = hashlib.sha256()
    for path in paths:
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _build_identity(directory: Path) -> dict:
    """What compiled the C-sim library: build_lib.sh (its flags and opt level, not the library's file name) and,
    for the split build, the opt level and library key of build_info.json (compiler identity, flags and every
    unit's preprocessed text), else the compiler's identity."""
    script = directory / "build_lib.sh"
    text = script.read_text() if script.is_file() else None  # without LIB_STAMP: hls4ml's random file-name suffix
    identity = {"build_lib.sh": re.sub(r"^LIB_STAMP=.*$", "LIB_STAMP=", text, flags=re.M) if text else None}
    info = build_info(directory)
    if info and info.get("library_key"):
        return {**identity, "opt": info.get("opt"), "library_key": info["library_key"]}
    parsed = read_build_script(directory)
    try:
        identity["compiler"] = toolchain(parsed.cc if parsed else "g++").identity
    except FlowError:
        identity["compiler"] = None
    return identity


class CampaignDB:
    """``campaign.sqlite``: campaigns, their fault lists and one result row per (campaign, fault)."""

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS campaigns (id TEXT PRIMARY KEY, meta TEXT NOT NULL, n_faults INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS faults (campaign TEXT, fault_id INTEGER, layer TEXT, spec TEXT NOT NULL,
            PRIMARY KEY (campaign, fault_id));
        CREATE TABLE IF NOT EXISTS results (campaign TEXT, fault_id INTEGER, outcome TEXT NOT NULL,
            n_critical INTEGER NOT NULL, n_differ INTEGER NOT NULL, accuracy REAL NOT NULL,
            PRIMARY KEY (campaign, fault_id));
        """

    def __init__(self, path: Path):
        """Open (or create) the database; a damaged file is refused, never written into."""
        self.path = path
        self.conn = sqlite3.connect(path)
        try:
            (status,) = self.conn.execute("PRAGMA quick_check").fetchone()
            if status != "ok":
                raise sqlite3.DatabaseError(status)
            self.conn.executescript(self.SCHEMA)
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise FlowError(
                f"{path} is not a readable campaign database ({exc}); delete it to start the campaign again"
            ) from None

    def close(self) -> None:
        self.conn.close()

    def ensure(self, cid: str, meta: dict, faults: list[Fault], layers: list[str]) -> None:
        """Register a campaign and its fault list once (a rerun finds them)."""
        with self.conn:
            if self.conn.execute("SELECT 1 FROM campaigns WHERE id = ?", (cid,)).fetchone():
                return
            self.conn.execute("INSERT INTO campaigns VALUES (?, ?, ?)", (cid, json.dumps(meta), len(faults)))
            self.conn.executemany(
                "INSERT INTO faults VALUES (?, ?, ?, ?)",
                [
                    (cid, i, layer, json.dumps(spec))
                    for i, (layer, spec) in enumerate(zip(layers, faults_to_json(faults), strict=True))
                ],
            )

    def done(self, cid: str) -> set[int]:
        return {row[0] for row in self.conn.execute("SELECT fault_id FROM results WHERE campaign = ?", (cid,))}

    def add(self, cid: str, rows: list[tuple[int, dict]]) -> None:
        """Store results in one transaction (a fault counted twice is an error)."""
        with self.conn:
            self.conn.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?)",
                [(cid, i, r["outcome"], r["n_critical"], r["n_differ"], r["accuracy"]) for i, r in rows],
            )

    def rows(self, cid: str) -> list[dict]:
        query = """SELECT f.fault_id, f.layer, f.spec, r.outcome, r.n_critical, r.n_differ, r.accuracy
                   FROM results r JOIN faults f ON f.campaign = r.campaign AND f.fault_id = r.fault_id
                   WHERE r.campaign = ? ORDER BY f.fault_id"""
        keys = ("fault_id", "layer", "spec", "outcome", "n_critical", "n_differ", "accuracy")
        return [dict(zip(keys, row, strict=True)) for row in self.conn.execute(query, (cid,))]

    def n_faults(self, cid: str) -> int:
        (n,) = self.conn.execute("SELECT n_faults FROM campaigns WHERE id = ?", (cid,)).fetchone()
        return n

    def export_csv(self, cid: str, path: Path, rows: list[dict] | None = None) -> Path:
        """Write ``rows`` (default: every stored row of ``cid``) as CSV."""
        rows = self.rows(cid) if rows is None else rows
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["fault_id"])
            writer.writeheader()
            writer.writerows(rows)
        return path


_WORKER: dict = {}


def worker_state(project: HlsProject, x: np.ndarray, y: np.ndarray, golden: np.ndarray, mode: str = "full",
                 prepared: tuple | None = None) -> dict:  # fmt: skip
    """What a process evaluating faults holds: its library (and fast evaluator, for mode fast: ``prepared``
    (lib, evaluator) if given) and the samples."""
    lib, fast = prepared or (FaultableLibrary(project), None)
    problem = None
    if mode == "fast" and fast is None:
        try:
            fast = FastEvaluator(lib, x)
        except FlowError as exc:  # the parent's evaluator was built: not expected
            problem = str(exc)
    return {"lib": lib, "fast": fast, "problem": problem, "x": x, "y": y, "golden": golden}


def close_state(state: dict) -> None:
    """Free a ``worker_state``'s captured batch."""
    if state.get("fast") is not None:
        state["fast"].close()


def _init_worker(*args) -> None:
    _WORKER.update(worker_state(*args))


def _init_pool_worker(*args) -> None:
    """A pool worker: Ctrl-C (sent to the whole process group) is left to the parent, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(*args)


def run_task(w: dict, task: tuple[list[int], list[Fault]]) -> list[tuple[int, dict]]:
    """The rows (fault id, result) of one task's faults, on a ``worker_state``."""
    ids, faults = task
    if w["problem"]:
        raise FlowError(w["problem"])
    if faults and is_activation_fault(faults[0]):
        if w["fast"] is None:
            raise FlowError("activation faults are set by the fast evaluation's hook; inject.evaluation: fast")
        rows = evaluate_act(w["fast"], faults, w["y"], w["golden"])
    elif w["fast"] is not None:
        rows = evaluate_fast(w["fast"], faults, w["y"], w["golden"])
    else:
        rows = [evaluate(w["lib"], f, w["x"], w["y"], w["golden"]) for f in faults]
    return list(zip(ids, rows, strict=True))


def _work(task: tuple[list[int], list[Fault]]) -> list[tuple[int, dict]]:
    return run_task(_WORKER, task)


ORDER_STREAM = 0x5709  # the evaluation order's random stream, apart from the fault list's (same seed)


@dataclass(frozen=True)
class MarginStop:
    """inject.stop_at_margin: stop once the Wilson 95 % half-width of the critical rate is <= ``margin``, checked
    after every ``every`` faults of a random order of the fault list drawn from ``seed`` (each checked prefix is
    a uniform sample of the list, and the same on every run)."""

    margin: float
    every: int
    seed: int

    def order(self, n: int) -> list[int]:
        """The fault ids in evaluation order."""
        return [int(i) for i in np.random.default_rng([self.seed, ORDER_STREAM]).permutation(n)]


def margin_stop(stop_at_margin: float | None, chunk: int, seed: int) -> MarginStop | None:
    """The ``MarginStop`` of inject.stop_at_margin (None: off)."""
    return MarginStop(stop_at_margin, chunk, seed) if stop_at_margin else None


def half_width(critical: int, n: int) -> float:
    """Half the width of the Wilson 95 % interval of ``critical`` in ``n``."""
    lo, hi = wilson_interval(critical, n, 0.95)
    return (hi - lo) / 2


class PrefixRule:
    """The stopping decision of a ``MarginStop`` over the completed prefix of the evaluation order: rows arrive in
    any order, the rule only looks at the longest prefix of the order whose faults all have a row, so it stops at
    the same fault whatever the workers, the engine or an interruption did. ``at``: the prefix length it stopped
    at (None: not yet)."""

    def __init__(self, stop: MarginStop, n_faults: int):
        self.stop, self.order = stop, stop.order(n_faults)
        self.critical: dict[int, bool] = {}
        self.length = self.n_critical = 0
        self.at: int | None = None

    def add(self, rows: list[tuple[int, bool]]) -> None:
        """Take (fault id, critical) rows, then advance the prefix and check at each multiple of ``every``."""
        self.critical.update(rows)
        while self.at is None and self.length < len(self.order) and self.order[self.length] in self.critical:
            self.n_critical += self.critical[self.order[self.length]]
            self.length += 1
            if self.length % self.stop.every == 0 and half_width(self.n_critical, self.length) <= self.stop.margin:
                self.at = self.length

    def counted(self) -> set[int]:
        """The faults the summary counts: the prefix it stopped at, else every fault with a row."""
        return set(self.order[: self.at]) if self.at is not None else set(self.critical)

    def report(self) -> dict:
        """What summary.json says about the stop."""
        n = self.at if self.at is not None else len(self.critical)
        k = sum(self.critical[i] for i in self.counted())
        h, e = half_width(k, n), self.stop.margin
        stopped = self.at is not None and self.at < len(self.order)
        why = (f"stopped at margin {e} after {n} faults, half-width {h:.4f}" if stopped
               else f"margin {e} not reached before the end of the list: {n} of {len(self.order)} faults, "
               f"half-width {h:.4f}")  # fmt: skip
        return {"margin": e, "stopped": stopped, "faults": n, "of": len(self.order), "half_width": h,
                "checked_every": self.stop.every, "reason": why}  # fmt: skip


def stop_rule(db: CampaignDB, cid: str, stop: MarginStop, n_faults: int, rows: list[dict] | None = None
              ) -> PrefixRule:  # fmt: skip
    """The ``PrefixRule`` over the rows stored for campaign ``cid`` (``rows``: those rows, already read)."""
    rule = PrefixRule(stop, n_faults)
    rule.add([(r["fault_id"], r["outcome"] == "critical") for r in (db.rows(cid) if rows is None else rows)])
    return rule


def counted_rows(db: CampaignDB, cid: str, stop: MarginStop | None, n_faults: int) -> tuple[list[dict], dict | None]:
    """The stored rows the summary counts (with ``stop``: the prefix the rule stopped at, also after a resume; rows
    computed past it are kept in the database, never counted) and the stop's report (None without ``stop``)."""
    rows = db.rows(cid)
    if stop is None:
        return rows, None
    rule = stop_rule(db, cid, stop, n_faults, rows)
    counted = rule.counted()
    return [r for r in rows if r["fault_id"] in counted], rule.report()


def run_campaign(
    project: HlsProject, faults: list[Fault], x: np.ndarray, y: np.ndarray, golden: np.ndarray, db: CampaignDB,
    cid: str, workers: int, chunk: int, progress: bool = True, evaluation: str = "fast",
    stop: MarginStop | None = None, engine: str = "local", scheduler: str | None = None,
) -> dict:  # fmt: skip
    """Evaluate the faults not yet in the database for campaign ``cid`` against the fault-free outputs
    ``golden`` (``evaluation``: fast, falling back to full where the project has no fast evaluation, or full; the
    rows are the same) on ``engine`` (local: ``workers`` processes; dask: a LocalCluster of ``workers`` or the
    ``scheduler``'s workers), until ``stop`` says so; returns timing figures, under ``evaluation`` the mode that
    ran and the share of faults whose evaluation stopped early, and under ``stop`` its report."""
    if evaluation not in EVALUATIONS:
        raise FlowError(f"inject.evaluation: got '{evaluation}', allowed: {', '.join(EVALUATIONS)}")
    rule = stop_rule(db, cid, stop, len(faults)) if stop else None
    done = db.done(cid)
    todo = [i for i in (rule.order if rule else range(len(faults))) if i not in done]
    if rule and rule.at is not None:
        todo = []  # stopped by the stored rows already
    start = time.perf_counter()
    mode, problem, prepared = _prepare(project, x, evaluation) if todo else (evaluation, None, None)
    serial = engine == "local" and (workers <= 1 or len(todo) <= chunk)
    if prepared and not serial:
        prepared[1].close()  # each worker captures its own batch
    track = _Progress(len(faults), len(done), progress)
    tasks = _tasks(faults, todo, chunk, rule)
    args = (project, x, y, golden, mode, prepared if serial else None)
    with track.bar, contextlib.closing(_results(args, tasks, 1 if serial else workers, engine, scheduler)) as results:
        for rows in results:  # interrupted (SIGINT, SIGTERM): the pool is stopped here, stored rows are kept
            db.add(cid, rows)
            track.update(rows)
            if rule:
                rule.add([(i, r["outcome"] == "critical") for i, r in rows])
                if rule.at is not None:
                    break  # tasks in flight are dropped; rows stored past the stop point are not counted
    seconds = time.perf_counter() - start
    report = {"requested": evaluation, "mode": mode, **({"fallback": problem} if problem else {})}
    report["stopped_early"] = track.early
    report["stopped_early_share"] = track.early / track.seen if track.seen else 0.0
    return {"evaluated": track.seen, "seconds": seconds, "per_fault_ms": 1000 * seconds / max(1, track.seen),
            "evaluation": report, "engine": engine}  # fmt: skip


def _tasks(faults: list[Fault], todo: list[int], chunk: int, rule: PrefixRule | None) -> Iterator[tuple]:
    """Tasks of ``chunk`` faults in evaluation order, made as the engine asks for them; none once ``rule`` stops."""
    for k in range(0, len(todo), chunk):
        if rule is not None and rule.at is not None:
            return
        ids = todo[k : k + chunk]
        yield ids, [faults[i] for i in ids]


def _prepare(project: HlsProject, x: np.ndarray, evaluation: str) -> tuple[str, str | None, tuple | None]:
    """(mode that runs, why fast falls back to full, (library, fast evaluator) already built)."""
    if evaluation == "full":
        return "full", None, None
    lib = FaultableLibrary(project)
    try:
        return "fast", None, (lib, FastEvaluator(lib, x))
    except FlowError as exc:
        return "full", str(exc), None


class _Progress:
    """The progress bar (faults/s, ETA, the running critical rate of this run's faults with its Wilson 95 %
    interval) and the count of faults stopped early."""

    def __init__(self, total: int, done: int, show: bool):
        self.bar = tqdm(total=total, initial=done, unit="fault", disable=not show or None, smoothing=0.1)
        self.early = self.critical = self.seen = 0

    def update(self, rows: list[tuple[int, dict]]) -> None:
        self.seen += len(rows)
        self.early += sum(r.get("stopped_early", False) for _, r in rows)
        self.critical += sum(r["outcome"] == "critical" for _, r in rows)
        lo, hi = wilson_interval(self.critical, self.seen, 0.95)
        self.bar.set_postfix(critical=f"{self.critical / self.seen:.4f} [{lo:.4f}, {hi:.4f}]", refresh=False)
        self.bar.update(len(rows))


def _results(args: tuple, tasks: Iterator, workers: int, engine: str = "local",
             scheduler: str | None = None) -> Iterator[list[tuple[int, dict]]]:  # fmt: skip
    """Each task's rows as they come: in this process, a spawned pool or on Dask workers."""
    if engine == "dask":
        from flow.dask_engine import dask_results  # import cycle: flow.dask_engine imports flow.campaign

        yield from dask_results(args[:5], tasks, workers, scheduler)
    elif workers <= 1:
        _init_worker(*args)
        try:
            yield from map(_work, tasks)
        finally:  # the captured batch is freed with the campaign
            close_state(_WORKER)
            _WORKER.clear()
    else:
        yield from _pool_results(args, tasks, workers)


def _pool_results(args: tuple, tasks: Iterator, workers: int) -> Iterator[list[tuple[int, dict]]]:
    arrived: queue.Queue = queue.Queue()
    with multiprocessing.get_context("spawn").Pool(workers, _init_pool_worker, args) as pool:
        submit = lambda task: pool.apply_async(_work, (task,), callback=arrived.put, error_callback=arrived.put)  # noqa: E731
        yield from windowed(submit, arrived.get, tasks, lambda: 2 * workers)


def windowed(submit: Callable[[Any], Any], arrived: Callable[[], Any], tasks: Iterator, window: Callable[[], int]
             ) -> Iterator:  # fmt: skip
    """Results of ``tasks`` as they arrive, with at most ``window()`` submitted and not yet arrived: a task is
    taken from ``tasks`` only when there is room (a stopped campaign submits no more). An exception that arrives
    is raised."""
    pending = 0
    while True:
        while pending < window() and (task := next(tasks, None)) is not None:
            submit(task)
            pending += 1
        if not pending:
            return
        result = arrived()
        pending -= 1
        if isinstance(result, BaseException):
            raise result
        yield result


def summarize(rows: list[dict], confidence: float = 0.95, groups: list[str] | None = None) -> dict:
    """Outcome counts and rates with Wilson intervals, in total and per layer, and with ``groups`` (the group of
    every fault id, flow/faultlist.py ``fault_group``) per group: protected, unprotected, copy, correction (each
    present, 0 faults when none) and mixed / none when some faults are."""

    def block(subset: list[dict]) -> dict:
        n = len(subset)
        out = {"n_faults": n}
        for outcome in OUTCOMES:
            k = sum(r["outcome"] == outcome for r in subset)
            lo, hi = wilson_interval(k, n, confidence)
            out[outcome] = {"count": k, "rate": k / n if n else 0.0, "ci95": [lo, hi]}
        out["mean_accuracy"] = float(np.mean([r["accuracy"] for r in subset])) if n else None
        return out

    layers = sorted({r["layer"] for r in rows})
    per_layer = {name: block([r for r in rows if r["layer"] == name]) for name in layers}
    summary = {"total": block(rows), "layers": per_layer}
    if groups is not None:
        from flow.faultlist import GROUPS

        names = [*GROUPS, *sorted({groups[r["fault_id"]] for r in rows} - set(GROUPS))]
        summary["groups"] = {g: block([r for r in rows if groups[r["fault_id"]] == g]) for g in names}
    return summary
