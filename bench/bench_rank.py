"""Ranking benchmark: wall time of each method and its Spearman rho against fault injection.

Usage: .venv/bin/python bench/bench_rank.py [--config examples/lenet_digits.yaml] [--out runs/bench_rank] [--images 100]
Trains the config's model (default: the demo LeNet) unless the output directory already holds it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "lenet_digits.yaml"))
    parser.add_argument("--out", default="runs/bench_rank")
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()

    import dataclasses

    from flow.config import RankMethod, load_config
    from flow.rank import rank_model
    from flow.rank_report import validate
    from flow.state import RunState, read_manifest
    from flow.steps import need_data, run

    cfg = load_config(args.config)
    cfg = dataclasses.replace(cfg, rank=dataclasses.replace(cfg.rank, images=args.images))
    out = Path(args.out)
    if "model" not in read_manifest(out):
        run(cfg, out, ["load", "train"])
    state = need_data(RunState(out=out), cfg, "bench")
    x, y = state.data.x_test[: args.images], state.data.y_test[: args.images]

    rankings = {m.value: rank_model(state.model, x, y, m, cfg.rank, cfg.seed) for m in RankMethod}
    few = dataclasses.replace(cfg.rank, images=20)
    rankings["gradient@20img"] = rank_model(state.model, x[:20], y[:20], RankMethod.GRADIENT, few, cfg.seed)
    report = validate(rankings)
    fi = rankings["fi"]
    channels = sum(len(v) for v in fi.scores.values())
    print(
        f"{cfg.model.name}/{cfg.data.name}, {channels} channels in {len(fi.scores)} layers, {len(x)} test images, "
        f"seed {cfg.seed}"
    )
    print(f"fi ground truth: {fi.params['total_flips']} single bit flips (Leveugle e=0.05, 95 %), {fi.seconds:.2f} s")
    print(f"{'method':<16}{'seconds':>9}{'% of fi':>9}{'rho global':>12}{'tau global':>12}{'top10%':>8}  rho per layer")
    for name, r in report["methods"].items():
        per_layer = " ".join(f"{layer}={v['spearman']}" for layer, v in r["layers"].items())
        g = r["global"]
        print(
            f"{name:<16}{r['seconds']:>9.3f}{100 * r['cost_vs_reference']:>8.2f}%"
            f"{g['spearman']:>12}{g['kendall']:>12}{g['top10_overlap']:>8}  {per_layer}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
