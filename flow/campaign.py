"""Fault-injection campaigns on the compiled C simulation: evaluate every fault of a list against the fault-free
run, store each result in SQLite as it is produced, resume where a killed campaign stopped, use all cores."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flow.csim import FastEvaluator, FaultableLibrary
from flow.errors import FlowError
from flow.faultlist import Fault, faults_to_json
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
    ``weights``: firmware/weights/), the ``bridge`` (fault-injection C++ and array table), the ``build`` (compiler,
    flags and opt level), the ``faults``, the ``samples`` and the ``seed``. Paths are relative to the project, so
    a moved run directory keeps its campaigns."""
    from flow.fi_bridge import TABLE

    directory = project.directory
    bridge = [directory / f"{project.project_name}_bridge.cpp", directory / TABLE]
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
    from flow.build_cache import build_info, read_build_script, toolchain

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

    def export_csv(self, cid: str, path: Path) -> Path:
        rows = self.rows(cid)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["fault_id"])
            writer.writeheader()
            writer.writerows(rows)
        return path


_WORKER: dict = {}


def _init_worker(project: HlsProject, x: np.ndarray, y: np.ndarray, golden: np.ndarray, mode: str = "full",
                 prepared: tuple | None = None) -> None:  # fmt: skip
    """The worker's library (and fast evaluator, for mode fast): ``prepared`` (lib, evaluator) if given."""
    lib, fast = prepared or (FaultableLibrary(project), None)
    problem = None
    if mode == "fast" and fast is None:
        try:
            fast = FastEvaluator(lib, x)
        except FlowError as exc:  # the parent's evaluator was built: not expected
            problem = str(exc)
    _WORKER.update(lib=lib, fast=fast, problem=problem, x=x, y=y, golden=golden)


def _init_pool_worker(*args) -> None:
    """A pool worker: Ctrl-C (sent to the whole process group) is left to the parent, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(*args)


def _work(task: tuple[list[int], list[Fault]]) -> list[tuple[int, dict]]:
    ids, faults = task
    w = _WORKER
    if w["problem"]:
        raise FlowError(w["problem"])
    if w["fast"] is not None:
        rows = evaluate_fast(w["fast"], faults, w["y"], w["golden"])
    else:
        rows = [evaluate(w["lib"], f, w["x"], w["y"], w["golden"]) for f in faults]
    return list(zip(ids, rows, strict=True))


def run_campaign(
    project: HlsProject, faults: list[Fault], x: np.ndarray, y: np.ndarray, golden: np.ndarray, db: CampaignDB,
    cid: str, workers: int, chunk: int, progress: bool = True, evaluation: str = "fast",
) -> dict:  # fmt: skip
    """Evaluate the faults not yet in the database for campaign ``cid`` against the fault-free outputs
    ``golden`` (``evaluation``: fast, falling back to full where the project has no fast evaluation, or full; the
    rows are the same); returns timing figures and, under ``evaluation``, the mode that ran and the share of
    faults whose evaluation stopped early."""
    if evaluation not in EVALUATIONS:
        raise FlowError(f"inject.evaluation: got '{evaluation}', allowed: {', '.join(EVALUATIONS)}")
    todo = [i for i in range(len(faults)) if i not in db.done(cid)]
    tasks = [(todo[k : k + chunk], [faults[i] for i in todo[k : k + chunk]]) for k in range(0, len(todo), chunk)]
    start = time.perf_counter()
    mode, problem, prepared = _prepare(project, x, evaluation) if todo else (evaluation, None, None)
    serial = workers <= 1 or len(tasks) <= 1
    if prepared and not serial:
        prepared[1].close()  # each worker captures its own batch
    track = _Progress(len(faults), len(faults) - len(todo), progress)
    args = (project, x, y, golden, mode, prepared if serial else None)
    with track.bar, contextlib.closing(_results(args, tasks, 1 if serial else workers)) as results:
        for rows in results:  # interrupted (SIGINT, SIGTERM): the pool is stopped here, stored rows are kept
            db.add(cid, rows)
            track.update(rows)
    seconds = time.perf_counter() - start
    report = {"requested": evaluation, "mode": mode, **({"fallback": problem} if problem else {})}
    report["stopped_early"] = track.early
    report["stopped_early_share"] = track.early / len(todo) if todo else 0.0
    return {"evaluated": len(todo), "seconds": seconds, "per_fault_ms": 1000 * seconds / max(1, len(todo)),
            "evaluation": report}  # fmt: skip


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
    """The progress bar (faults/s, ETA, running critical rate) and the count of faults stopped early."""

    def __init__(self, total: int, done: int, show: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, unit="fault", disable=not show or None, smoothing=0.1)
        self.early = self.critical = self.seen = 0

    def update(self, rows: list[tuple[int, dict]]) -> None:
        self.seen += len(rows)
        self.early += sum(r.get("stopped_early", False) for _, r in rows)
        self.critical += sum(r["outcome"] == "critical" for _, r in rows)
        self.bar.set_postfix(critical=f"{self.critical / self.seen:.4f}", refresh=False)
        self.bar.update(len(rows))


def _results(args: tuple, tasks: list, workers: int) -> Iterator[list[tuple[int, dict]]]:
    if workers <= 1:
        _init_worker(*args)
        try:
            yield from map(_work, tasks)
        finally:  # the captured batch is freed with the campaign
            if _WORKER.get("fast") is not None:
                _WORKER["fast"].close()
            _WORKER.clear()
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers, _init_pool_worker, args) as pool:
        yield from pool.imap_unordered(_work, tasks)


def summarize(rows: list[dict], confidence: float = 0.95) -> dict:
    """Outcome counts and rates with Wilson intervals, in total and per layer."""

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
    return {"total": block(rows), "layers": {name: block([r for r in rows if r["layer"] == name]) for name in layers}}
