"""How the cost per fault grows with model size: zoo models of growing parameters and MACs (LeNet at three widths,
vgg_tiny, resnet_tiny), each trained briefly, converted (g++ -O3) and given the same number of weight/bias flips
on 100 samples, evaluated in full and fast on 1 worker. One line per model: parameters, MACs, the golden batch,
ms per fault and the ratio to the golden batch for both modes, and the share of faults fast stopped early.

Usage: .venv/bin/python bench/bench_scale.py [--out runs/bench_scale] [--faults 60] [--models lenet_4 ...]
Trains and converts each model unless its output directory holds it. The campaigns take about 4 minutes on 2
cores at the default 60 faults (9 at 150), plus training and conversion on the first run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inject import _campaign, _timed  # the same campaign timing as bench_inject

DIGITS = {"name": "digits"}  # 8x8 digits upsampled to 16x16x1
COLOUR = {"name": "synthetic", "shape": [16, 16, 3], "samples": 600, "classes": 10}
MODELS = {  # name -> (data, zoo model, filters, input shape), in growing size
    "lenet_4": (DIGITS, "lenet", [4, 8], [16, 16, 1]),
    "lenet_8": (DIGITS, "lenet", [8, 16], [16, 16, 1]),
    "lenet_16": (DIGITS, "lenet", [16, 32], [16, 16, 1]),
    "resnet_tiny": (COLOUR, "resnet_tiny", [8, 8, 8], [16, 16, 3]),
    "vgg_tiny": (COLOUR, "vgg_tiny", [8, 16, 16], [16, 16, 3]),
}
HEADER = (
    f"{'model':12s} {'params':>7s} {'MACs':>9s} {'golden ms':>10s} {'full ms/f':>10s} {'full/gold':>9s} "
    f"{'fast ms/f':>10s} {'fast/gold':>9s} {'early %':>8s}"
)


def config(name: str):
    from flow.config import config_from_dict

    data, model, filters, shape = MODELS[name]
    return config_from_dict(
        {
            "seed": 0,
            "data": data,
            "model": {"name": model, "filters": filters, "input_shape": shape},
            "train": {"epochs": 3},
            "hls": {"backend": "Vivado", "io_type": "io_parallel"},
        },
        f"bench_scale:{name}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_scale")
    parser.add_argument("--faults", type=int, default=60)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    lines = [bench_model(name, Path(args.out) / name, args.faults) for name in args.models]
    print(f"\n{args.faults} weight/bias flips per model, 100 samples, 1 worker, g++ -O3, io_parallel")
    print(HEADER)
    print("\n".join(lines))
    return 0


def bench_model(name: str, out: Path, n_faults: int) -> str:
    """The model's line of the table (trains and converts it first unless ``out`` holds it)."""
    from flow.config import FaultSampling, InjectConfig
    from flow.csim import FaultableLibrary
    from flow.faultlist import build_fault_list
    from flow.harden import layer_costs, total_cost
    from flow.hls import HlsProject
    from flow.state import RunState, read_manifest
    from flow.steps import need_data, run

    cfg = config(name)
    if "project" not in read_manifest(out):
        run(cfg, out, ["load", "train", "convert"])
    state = need_data(RunState(out=out), cfg, "bench")
    cost = total_cost(layer_costs(state.model))
    project = HlsProject.load(out / "convert" / "project.json")
    x, y = state.data.x_test[:100], state.data.y_test[:100]
    lib = FaultableLibrary(project)
    golden_ms = 1000 * statistics.median(_timed(lambda: lib.predict(x))[0] for _ in range(5))
    faults = build_fault_list(lib.arrays, InjectConfig(sampling=FaultSampling.COUNT, count=n_faults), cfg.seed)
    golden = lib.predict(x)
    full_ms, _, _, full_rows = _campaign(project, faults, x, y, golden, 1, "full")
    fast_ms, _, report, fast_rows = _campaign(project, faults, x, y, golden, 1, "fast")
    assert fast_rows == full_rows, f"{name}: fast rows differ from full"
    return (
        f"{name:12s} {cost['params']:7d} {cost['macs']:9d} {golden_ms:10.2f} {full_ms:10.2f} "
        f"{full_ms / golden_ms:8.2f}x {fast_ms:10.2f} {fast_ms / golden_ms:8.2f}x "
        f"{100 * report['stopped_early_share']:8.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
