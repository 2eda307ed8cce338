"""Fault-injection campaigns on the compiled C simulation: evaluate every fault of a list against the fault-free
run, store each result in SQLite as it is produced, resume where a killed campaign stopped, use all cores."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flow.csim import FaultableLibrary
from flow.faultlist import Fault, faults_to_json
from flow.hls import HlsProject
from flow.stats import wilson_interval

OUTCOMES = ("masked", "sdc", "critical")  # sdc = logits differ, no top-1 changes; critical = a top-1 changes


def evaluate(lib: FaultableLibrary, fault: Fault, x: np.ndarray, y: np.ndarray, golden: np.ndarray) -> dict:
    """Outcome of one fault on the samples, compared with the fault-free outputs."""
    try:
        for b in fault:
            lib.inject(b.array, b.index, b.bit, b.kind)
        out = lib.predict(x)
    finally:
        lib.restore()
    differs = np.any(out != golden, axis=1)
    top_changed = out.argmax(axis=1) != golden.argmax(axis=1)
    outcome = "critical" if top_changed.any() else "sdc" if differs.any() else "masked"
    return {
        "outcome": outcome,
        "n_critical": int(top_changed.sum()),
        "n_differ": int(differs.sum()),
        "accuracy": float(np.mean(out.argmax(axis=1) == y)),
    }


def campaign_id(project: HlsProject, faults: list[Fault], x: np.ndarray, seed: int) -> str:
    """Hash of the model (C++ and weights), the fault list, the samples and the seed."""
    h = hashlib.sha256()
    firmware = project.directory / "firmware"
    for path in [firmware / f"{project.project_name}.cpp", *sorted((firmware / "weights").glob("*.txt"))]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(json.dumps(faults_to_json(faults)).encode())
    h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    h.update(str(seed).encode())
    return h.hexdigest()[:20]


class CampaignDB:
    """``campaign.sqlite``: campaigns, their fault lists and one result row per (campaign, fault)."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = sqlite3.connect(path)
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS campaigns (id TEXT PRIMARY KEY, meta TEXT NOT NULL, n_faults INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS faults (campaign TEXT, fault_id INTEGER, layer TEXT, spec TEXT NOT NULL,
                PRIMARY KEY (campaign, fault_id));
            CREATE TABLE IF NOT EXISTS results (campaign TEXT, fault_id INTEGER, outcome TEXT NOT NULL,
                n_critical INTEGER NOT NULL, n_differ INTEGER NOT NULL, accuracy REAL NOT NULL,
                PRIMARY KEY (campaign, fault_id));
            """
        )

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
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["fault_id"])
            writer.writeheader()
            writer.writerows(rows)
        return path


_WORKER: dict = {}


def _init_worker(project: HlsProject, x: np.ndarray, y: np.ndarray, golden: np.ndarray) -> None:
    _WORKER.update(lib=FaultableLibrary(project), x=x, y=y, golden=golden)


def _work(task: tuple[list[int], list[Fault]]) -> list[tuple[int, dict]]:
    ids, faults = task
    w = _WORKER
    return [(i, evaluate(w["lib"], f, w["x"], w["y"], w["golden"])) for i, f in zip(ids, faults, strict=True)]


def run_campaign(
    project: HlsProject, faults: list[Fault], x: np.ndarray, y: np.ndarray, golden: np.ndarray, db: CampaignDB,
    cid: str, workers: int, chunk: int, progress: bool = True,
) -> dict:  # fmt: skip
    """Evaluate the faults not yet in the database for campaign ``cid`` against the fault-free outputs
    ``golden``; returns timing figures."""
    from tqdm import tqdm

    todo = [i for i in range(len(faults)) if i not in db.done(cid)]
    tasks = [(todo[k : k + chunk], [faults[i] for i in todo[k : k + chunk]]) for k in range(0, len(todo), chunk)]
    start = time.perf_counter()
    bar = tqdm(total=len(faults), initial=len(faults) - len(todo), unit="fault", disable=not progress or None)
    for rows in _results(project, x, y, golden, tasks, workers):
        db.add(cid, rows)
        bar.update(len(rows))
    bar.close()
    seconds = time.perf_counter() - start
    return {"evaluated": len(todo), "seconds": seconds, "per_fault_ms": 1000 * seconds / max(1, len(todo))}


def _results(project, x, y, golden, tasks, workers: int) -> Iterator[list[tuple[int, dict]]]:
    if workers <= 1 or len(tasks) <= 1:
        _init_worker(project, x, y, golden)
        yield from map(_work, tasks)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (project, x, y, golden)) as pool:
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
