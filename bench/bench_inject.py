"""Fault-injection benchmark on lenet/digits (100 samples): golden batch time, per-fault time on 1 worker and on
all workers, and the naive approach (rebuild the project with the faulty weight, per fault) for 3 faults.

Usage: .venv/bin/python bench/bench_inject.py [--out runs/bench_inject] [--faults 400]
Trains and converts the demo LeNet (examples/lenet_digits.yaml, g++ -O3) unless the output directory holds it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_inject")
    parser.add_argument("--faults", type=int, default=400)
    args = parser.parse_args()

    from flow.campaign import CampaignDB, run_campaign
    from flow.config import FaultSampling, InjectConfig, load_config
    from flow.csim import FaultableLibrary
    from flow.faultlist import build_fault_list
    from flow.hls import HlsProject
    from flow.state import RunState, read_manifest
    from flow.steps import need_data, run

    cfg = load_config(ROOT / "examples" / "lenet_digits.yaml")
    out = Path(args.out)
    if "project" not in read_manifest(out):
        run(cfg, out, ["load", "train", "convert"])
    state = need_data(RunState(out=out), cfg, "bench")
    project = HlsProject.load(out / "convert" / "project.json")
    x, y = state.data.x_test[:100], state.data.y_test[:100]
    lib = FaultableLibrary(project)

    golden = [_timed(lambda: lib.predict(x)) for _ in range(30)]
    golden_ms = 1000 * statistics.median(golden)
    faults = build_fault_list(lib.arrays, InjectConfig(sampling=FaultSampling.COUNT, count=args.faults), cfg.seed)
    cores = os.cpu_count() or 1
    per_fault = {}
    for workers in sorted({1, cores}):
        with tempfile.TemporaryDirectory() as tmp:
            db = CampaignDB(Path(tmp) / "c.sqlite")
            db.ensure("bench", {}, faults, ["x"] * len(faults))
            start = time.perf_counter()
            run_campaign(project, faults, x, y, lib.predict(x), db, "bench", workers, chunk=25, progress=False)
            per_fault[workers] = 1000 * (time.perf_counter() - start) / len(faults)
            db.close()
    naive_ms = 1000 * statistics.mean(_naive(project, faults[:3], x) for _ in range(1))

    print(f"lenet/digits, {len(x)} samples, project compiled with g++ -{cfg.hls.csim_opt.value}, {cores} cores")
    print(f"golden batch (100 samples, one ctypes call):  {golden_ms:8.2f} ms")
    for workers, ms in per_fault.items():
        print(
            f"per fault, {workers} worker(s), {len(faults)} flips:      {ms:8.2f} ms"
            f"  ({ms / golden_ms:.2f}x golden batch)"
        )
    if cores > 1:
        print(f"speed-up {cores} workers vs 1:                  {per_fault[1] / per_fault[cores]:8.2f}x")
    print(f"naive: rebuild per fault (3 faults):          {naive_ms:8.0f} ms")
    print(f"in-memory flips vs rebuilding:                {naive_ms / per_fault[1]:8.0f}x faster (1 worker)")
    return 0


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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
