"""Fault-injection benchmark on the demo LeNet (examples/lenet_digits.yaml) and resnet_tiny
(examples/resnet_tiny_digits.yaml), 100 samples and 400 flips each, and MLPerf Tiny's ResNet-8
(examples/resnet8_synthetic.yaml, io_stream, 10 samples and 40 flips: ~0.23 s per image): the golden batch time
and, per fault and as a ratio to it, campaigns evaluated in full and fast on 1 worker and fast on all workers
(local pool, and Dask: a LocalCluster the campaign starts, and one already running), the goal "Dask within 15 % of
the local pool", the share of faults stopped early, fast with one fault per C call against groups, and (LeNet,
``--naive``) rebuilding the project per fault for 3 faults.

Usage: .venv/bin/python bench/bench_inject.py [--out runs/bench_inject] [--faults N] [--models lenet resnet8 ...]
Trains and converts each model (g++ -O3) unless its output directory holds it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
MODELS = {  # name -> (example config, samples, flips, flips of the engine comparison, golden batch repeats)
    "lenet": ("lenet_digits.yaml", 100, 400, 4000, 30),
    "resnet_tiny": ("resnet_tiny_digits.yaml", 100, 400, 1000, 30),
    "resnet8": ("resnet8_synthetic.yaml", 10, 40, 40, 3),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_inject")
    parser.add_argument("--faults", type=int, default=None, help="flips per campaign (default: per model)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--naive", action="store_true", help="also rebuild the LeNet per fault (3 faults, slow)")
    args = parser.parse_args()
    for name in args.models:
        bench_model(name, Path(args.out) / name, args.faults, args.naive and name == "lenet")
    return 0


def bench_model(name: str, out: Path, n_faults: int | None, naive: bool) -> None:
    from flow.config import FaultSampling, InjectConfig, load_config
    from flow.csim import FastEvaluator, FaultableLibrary
    from flow.faultlist import build_fault_list
    from flow.hls import HlsProject
    from flow.state import RunState, read_manifest
    from flow.steps import need_data, run

    example, samples, default_faults, engine_faults, repeats = MODELS[name]
    n_faults = n_faults or default_faults
    cfg = load_config(ROOT / "examples" / example)
    if "project" not in read_manifest(out):
        run(cfg, out, ["load", "train", "convert"])
    state = need_data(RunState(out=out), cfg, "bench")
    project = HlsProject.load(out / "convert" / "project.json")
    x, y = state.data.x_test[:samples], state.data.y_test[:samples]
    lib = FaultableLibrary(project)
    golden = [_timed(lambda: lib.predict(x)) for _ in range(repeats)]
    golden_ms, golden_cpu = (1000 * statistics.median(g[k] for g in golden) for k in (0, 1))
    faults = build_fault_list(lib.arrays, InjectConfig(sampling=FaultSampling.COUNT, count=n_faults), cfg.seed)
    cores = os.cpu_count() or 1
    runs = {}
    for mode, workers in (("full", 1), ("fast", 1)):
        runs[(mode, workers)] = _campaign(project, faults, x, y, lib.predict(x), workers, mode)
    # the engines on a campaign long enough for a steady state (each pays its workers' start, amortised over it)
    many = build_fault_list(lib.arrays, InjectConfig(sampling=FaultSampling.COUNT, count=engine_faults), cfg.seed)
    runs[("fast", cores)] = _campaign(project, many, x, y, lib.predict(x), cores, "fast")
    dask = {"own cluster": _campaign(project, many, x, y, lib.predict(x), cores, "fast", "dask")}
    with _local_cluster(cores) as address:  # started before the clock: steady state, library loads included
        dask["running cluster"] = _campaign(project, many, x, y, lib.predict(x), cores, "fast", "dask", address)
    rows = [r[3] for r in runs.values()]
    assert all(r == rows[0] for r in rows[:2]), "rows differ between full and fast"
    assert all(r[3] == runs[("fast", cores)][3] for r in dask.values()), "rows differ between the engines"
    fast = FastEvaluator(lib, x)
    grouped = {size: _per_fault_ms(fast, faults, size) for size in (1, 25)}
    fast.close()

    print(f"\n{name}: {len(x)} samples, {len(faults)} flips, g++ -{cfg.hls.csim_opt.value}, {project.io_type}, "
          f"{cores} cores")  # fmt: skip
    print(f"golden batch (one ctypes call):           {golden_ms:8.2f} ms wall, {golden_cpu:8.2f} ms CPU")
    for (mode, workers), (ms, cpu, _, _) in runs.items():
        if workers != 1:
            print(f"engines on {len(many)} flips (the start of each engine's workers amortised over them):")
        ratio = f"{ms / golden_ms:.3f}x golden" + (f", CPU {cpu / golden_cpu:.3f}x" if workers == 1 else "")
        print(f"per fault, {mode:4s}, {workers} worker(s):         {ms:8.3f} ms  ({ratio})")
    pool = runs[("fast", cores)][0]
    for label, (ms, *_) in dask.items():
        print(f"per fault, fast, {cores} Dask workers, {label + ':':16s} {ms:8.3f} ms  ({ms / pool:.2f}x local pool)")
    for label, (ms, *_) in dask.items():
        verdict = "met" if ms <= 1.15 * pool else "not met"
        print(
            f"goal: Dask LocalCluster on {cores} workers within 15 % of the local pool ({label}): {verdict} "
            f"({ms:.3f} vs {pool:.3f} ms per fault, {100 * (ms / pool - 1):+.0f} %)"
        )
    report = runs[("fast", 1)][2]
    print(f"fast: faults stopped early:               {100 * report['stopped_early_share']:7.1f} %")
    print(f"fast vs full, 1 worker:                   {runs[('full', 1)][1] / runs[('fast', 1)][1]:8.2f}x less CPU")
    for size, (ms, cpu) in grouped.items():
        print(f"fast evaluator, {size:2d} fault(s) per C call:    {ms:8.3f} ms  (CPU {cpu / golden_cpu:.3f}x golden)")
    if naive:
        naive_ms = 1000 * _naive(project, faults[:3], x)
        print(f"naive: rebuild per fault (3 faults):      {naive_ms:8.0f} ms")
        print(f"in-memory full vs rebuilding:             {naive_ms / runs[('full', 1)][0]:8.0f}x faster")


def _campaign(project, faults, x, y, golden, workers: int, mode: str, engine: str = "local",
              scheduler: str | None = None) -> tuple[float, float, dict, list]:  # fmt: skip
    """(wall ms per fault, this process's CPU ms per fault, the evaluation report, the rows) of one campaign (the
    workers' start included: a pool, a LocalCluster, or only the library loads on a running ``scheduler``)."""
    from flow.campaign import CampaignDB, run_campaign

    with tempfile.TemporaryDirectory() as tmp:
        db = CampaignDB(Path(tmp) / "c.sqlite")
        db.ensure("bench", {}, faults, ["x"] * len(faults))
        result, where = {}, {"engine": engine, "scheduler": scheduler}
        wall, cpu = _timed(
            lambda: result.update(
                run_campaign(project, faults, x, y, golden, db, "bench", workers, 25, False, mode, **where)
            )
        )
        rows = [(r["outcome"], r["n_critical"], r["n_differ"], r["accuracy"]) for r in db.rows("bench")]
        db.close()
    return 1000 * wall / len(faults), 1000 * cpu / len(faults), result["evaluation"], rows


@contextlib.contextmanager
def _local_cluster(workers: int):
    """The scheduler address of a LocalCluster of ``workers`` single-thread processes on localhost."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None,
                      host="127.0.0.1", silence_logs=logging.ERROR) as cluster:  # fmt: skip
        yield cluster.scheduler_address


def _per_fault_ms(fast, faults, size: int) -> tuple[float, float]:
    """(wall, CPU) ms per fault of the fast evaluator alone, ``size`` faults per C call."""
    wall, cpu = _timed(lambda: [fast.evaluate(faults[k : k + size]) for k in range(0, len(faults), size)])
    return 1000 * wall / len(faults), 1000 * cpu / len(faults)


def _timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn()`` in this process."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def _naive(project, faults, x) -> float:
    """Per fault: write the faulty word into the weight file, rebuild the library, load it, run the batch."""
    import shutil

    from flow.csim import CSimLibrary
    from flow.fi_bridge import read_table
    from flow.fixedpoint import FixedFormat
    from flow.hls import HlsProject, compile_project

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "project"
        shutil.copytree(project.directory, copy)
        script = copy / "build_lib.sh"  # the library must read the copy's weights
        script.write_text(script.read_text().replace(str(project.directory), str(copy)))
        naive = HlsProject(
            copy, project.project_name, project.backend, project.io_type, project.n_inputs, project.n_outputs
        )
        rows = {row["name"]: row for row in read_table(copy)}
        times = []
        for fault in faults:
            start = time.perf_counter()
            for b in fault:
                row = rows[b.array]
                path = copy / "firmware" / "weights" / f"{b.array}.txt"
                values = [float(v) for v in path.read_text().replace(",", " ").split()]
                fmt = FixedFormat(row["width"], row["width"] - _frac_bits(row["type"], copy), row["signed"])
                values[b.index] = float(fmt.inject(values[b.index], b.bit, b.kind))
                path.write_text(", ".join(repr(v) for v in values))
            for old in (copy / "firmware").glob("*.so"):
                old.unlink()
            compile_project(naive, "O3")
            CSimLibrary(naive).predict(x)
            times.append(time.perf_counter() - start)
    return statistics.mean(times)


def _frac_bits(type_name: str, project_dir: Path) -> int:
    """Fractional bits of a weight type, read from the project's defines.h (ap_fixed<W,I> -> W - I)."""
    import re

    defines = (project_dir / "firmware" / "defines.h").read_text()
    match = re.search(rf"typedef ap_u?(?:fixed|int)<(\d+),?(\d+)?[^>]*> {type_name};", defines)
    width, integer = int(match.group(1)), int(match.group(2) or match.group(1))
    return width - integer


if __name__ == "__main__":
    sys.exit(main())
