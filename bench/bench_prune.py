"""Pruning benchmark: for ratios 10..60 %, test accuracy after fine-tuning with the vulnerability ranking vs the
L1 norm (same seed, same epochs), and MACs/parameters of hardened vs pruned+hardened models (ratio 0.3, min).

Usage: .venv/bin/python bench/bench_prune.py [--ratios 0.1,0.2,...] [--epochs 10]
Models: lenet on digits (16x16x1) and vgg_tiny on synthetic 32x32x3 data.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CASES = {
    "lenet/digits": {"data": {"name": "digits"}, "model": {"name": "lenet", "input_shape": [16, 16, 1]}},
    "vgg_tiny/synthetic": {
        "data": {"name": "synthetic", "shape": [32, 32, 3], "samples": 2000, "classes": 10},
        "model": {"name": "vgg_tiny"},
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", default="0.1,0.2,0.3,0.4,0.5,0.6")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    import tempfile

    from flow.config import PruneConfig, PruneCriterion, RankMethod, config_from_dict
    from flow.harden import harden_model, layer_costs, select_channels
    from flow.prune import fine_tune, prune_model, select_removals
    from flow.rank import norm_scores, rank_model
    from flow.steps import run
    from flow.training import accuracy

    ratios = [float(r) for r in args.ratios.split(",")]
    for case, spec in CASES.items():
        cfg = config_from_dict({"seed": 0, **spec, "train": {"epochs": 20}})
        with tempfile.TemporaryDirectory() as tmp:
            state = run(cfg, tmp, ["load", "train"])
        model, ds = state.model, state.data
        base_acc = accuracy(model, ds.x_test, ds.y_test)
        x, y = ds.x_test[:100], ds.y_test[:100]
        vulnerability = rank_model(model, x, y, RankMethod.GRADIENT, cfg.rank, cfg.seed).scores
        scores = {PruneCriterion.VULNERABILITY: vulnerability, PruneCriterion.L1: norm_scores(model, 1)}
        print(f"\n{case}: baseline test accuracy {base_acc:.4f}, fine-tuning {args.epochs} epochs SGD cosine")
        print(f"{'ratio':>6} {'acc vulnerability':>18} {'acc l1':>8} {'MACs pruned':>12} {'params pruned':>14}")
        pruned_at = {}
        for ratio in ratios:
            accs = {}
            for criterion, s in scores.items():
                pcfg = PruneConfig(criterion=criterion, ratio=ratio, epochs=args.epochs)
                pruned = prune_model(model, select_removals(model, s, pcfg))
                fine_tune(pruned, ds, pcfg, cfg.seed)
                accs[criterion] = accuracy(pruned, ds.x_test, ds.y_test)
                if criterion is PruneCriterion.VULNERABILITY:
                    pruned_at[ratio] = pruned
            macs, params = _cost(layer_costs(pruned_at[ratio]))
            vul, l1 = accs[PruneCriterion.VULNERABILITY], accs[PruneCriterion.L1]
            print(f"{ratio:>6.1f} {vul:>18.4f} {l1:>8.4f} {macs:>12} {params:>14}")
        hcfg = cfg.harden
        hardened = harden_model(model, select_channels(model, _ranking(vulnerability), hcfg), hcfg)
        h_macs, h_params = _cost(layer_costs(hardened))
        print(f"hardened (ratio {hcfg.ratio}, min): MACs {h_macs}, params {h_params}")
        for ratio, pruned in pruned_at.items():
            again = rank_model(pruned, x, y, RankMethod.GRADIENT, cfg.rank, cfg.seed).scores
            both = harden_model(pruned, select_channels(pruned, _ranking(again), hcfg), hcfg)
            macs, params = _cost(layer_costs(both))
            acc = accuracy(both, ds.x_test, ds.y_test)
            print(
                f"pruned {ratio:.1f} + hardened: MACs {macs} ({100 * (1 - macs / h_macs):.1f} % fewer than hardened), "
                f"params {params}, accuracy {acc:.4f} ({100 * (acc - base_acc):+.2f} points)"
            )
    return 0


def _ranking(scores):
    from flow.rank import Ranking

    return Ranking("gradient", scores, {name: "x" for name in scores}, 0.0)


def _cost(costs) -> tuple[int, int]:
    from flow.harden import total_cost

    total = total_cost(costs)
    return total["macs"], total["params"]


if __name__ == "__main__":
    sys.exit(main())
