"""Models as users bring them, end to end: per model, seconds of load (+ normalize), convert (hls4ml write + g++),
verify and one fault campaign, and whether the C-sim is bit-exact with QKeras.

Models: every zoo model (trained 2 epochs) and the real-style models of tests/real_models.py (softmax heads,
built-in activations, BatchNormalization, Dropout, average/global pooling, concatenation), saved as .h5 first.

Usage: .venv/bin/python bench/bench_models.py [--out runs/bench_models] [--faults 200] [--samples 50] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the real-style models are test fixtures

ZOO = {  # name -> (data, model section)
    "lenet": ({"name": "digits"}, {"name": "lenet", "input_shape": [8, 8, 1]}),
    "vgg_tiny": ({"name": "synthetic", "shape": [16, 16, 3], "samples": 600, "classes": 5}, {"name": "vgg_tiny"}),
    "resnet_tiny": ({"name": "synthetic", "shape": [8, 8, 3], "samples": 600, "classes": 5}, {"name": "resnet_tiny"}),
    "resnet8": (  # MLPerf Tiny's ResNet-8 (~78k parameters, 8-bit) at io_stream, as deployed at this size
        {"name": "synthetic", "shape": [32, 32, 3], "samples": 400, "classes": 10},
        {"name": "resnet8", "weight_bits": 8, "act_bits": 8},
    ),
    "mlp": ({"name": "synthetic", "shape": [16], "samples": 600, "classes": 5}, {"name": "mlp"}),
}


SMALL_CAMPAIGN = {"count": 20, "samples": 10}  # ResNet-8's C-sim takes ~0.2 s per image: 20 faults on 10 images


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_models")
    parser.add_argument("--faults", type=int, default=200)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--only", action="append", help="model name (repeatable; default: all)")
    args = parser.parse_args()

    from real_models import REAL_MODELS, trained

    from flow.config import config_from_dict
    from flow.steps import run

    out = Path(args.out)
    inject = {"sampling": "count", "count": args.faults, "samples": args.samples}
    cases = {}
    for name, (data, model) in ZOO.items():
        cases[name] = ({"data": data, "model": model, "train": {"epochs": 2}}, ["load", "train"])
    cases["resnet8"][0].update(hls={"io_type": "io_stream"}, inject={**inject, **SMALL_CAMPAIGN})
    for name in REAL_MODELS:
        cases[name] = ({"data": {"name": "digits"}, "model": {"path": str(out / f"{name}.h5")}}, ["load"])
    rows = []
    for name, (section, first) in cases.items():
        if args.only and name not in args.only:
            continue
        if name in REAL_MODELS:
            out.mkdir(parents=True, exist_ok=True)
            trained(name).save(out / f"{name}.h5")
        settings = {"seed": 0, "inject": inject, **section, "verify": {"require_bit_exact": False}}
        cfg = config_from_dict(settings, name)
        run_dir = out / name
        start = time.perf_counter()
        state = run(cfg, run_dir, [*first, "convert", "verify", "inject"])
        times = json.loads((run_dir / "time_per_step.json").read_text())
        verify, campaign = state.summary["verify"], state.summary["inject"]
        normalize = json.loads((run_dir / "load" / "normalize.json").read_text())
        rows.append(
            (name, int(state.model.count_params()), len(normalize["actions"]), times["load"], times["convert"],
             times["verify"], times["inject"], campaign["faults"], campaign["per_fault_ms"], verify["bit_exact"],
             time.perf_counter() - start)
        )  # fmt: skip

    print(
        f"{args.faults} faults on {args.samples} test images per campaign (resnet8: {SMALL_CAMPAIGN['count']} on "
        f"{SMALL_CAMPAIGN['samples']}, io_stream), {os.cpu_count()} cores, C-sim at -O3"
    )
    head = ("model", "params", "normalized", "load s", "convert s", "verify s", "inject s", "faults", "ms/fault",
            "bit-exact", "total s")  # fmt: skip
    print("  ".join(f"{h:>14}" for h in head))
    for row in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else ("yes" if v is True else "NO" if v is False else str(v))
                 for v in row]  # fmt: skip
        print("  ".join(f"{c:>14}" for c in cells))
    return 0 if all(row[9] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
