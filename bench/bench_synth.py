"""Open-synthesis benchmark: the lenet comparison (LeNet on 8x8 digits, filters 4/8, 6-bit) through da4ml RTL and
yosys (synth_xilinx -family xc7; every distinct unit module (layer, convolution pixel, activation element) kept
apart in batched runs, 2 at a time, results shared between variants through a fresh content cache), per variant:
yosys LUT/FF/CARRY4, analytic LUT/FF, yosys/analytic, the calibrated estimate, unit modules synthesized of the
distinct ones, synthesis wall time; then the whole comparison's time (goal: at most 5 minutes on 2 cores).

Usage: .venv/bin/python bench/bench_synth.py [--dense-units 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense-units", type=int, default=16)
    args = parser.parse_args()

    from flow.config import HardenConfig, HardenMode, HlsConfig, PruneConfig, RankMethod, config_from_dict
    from flow.harden import harden_model, select_channels
    from flow.hardware.boards import load_board
    from flow.hardware.estimate import estimate_graph
    from flow.hardware.rtl import write_rtl
    from flow.hardware.yosys import synthesize
    from flow.hls import build_graph
    from flow.prune import fine_tune, prune_model, select_removals
    from flow.rank import rank_model
    from flow.steps import run
    from flow.training import accuracy

    board = load_board("pynq-z2")
    with tempfile.TemporaryDirectory() as tmp:
        model_section = {"name": "lenet", "input_shape": [8, 8, 1], "filters": [4, 8], "dense_units": args.dense_units,
                         "weight_bits": 6, "act_bits": 6}  # fmt: skip
        cfg = config_from_dict({"seed": 0, "data": {"name": "digits"}, "model": model_section, "train": {"epochs": 30}})
        state = run(cfg, Path(tmp) / "run", ["load", "train"])
        model, ds = state.model, state.data
        x, y = ds.x_test[:100], ds.y_test[:100]

        def ranked(m):
            return rank_model(m, x, y, RankMethod.GRADIENT, cfg.rank, cfg.seed)

        def hardened(m, mode: HardenMode, ratio: float = 0.3):
            harden = HardenConfig(mode=mode, ratio=ratio)
            return harden_model(m, select_channels(m, ranked(m), harden), harden)

        prune = PruneConfig(ratio=0.3, epochs=10)
        pruned = prune_model(model, select_removals(model, ranked(model).scores, prune))
        fine_tune(pruned, ds, prune, cfg.seed)
        variants = {
            "baseline": model,
            "selective_min_0.3": hardened(model, HardenMode.SELECTIVE),
            "selective_tmr_0.3": hardened(model, HardenMode.SELECTIVE_TMR),
            "full_tmr": hardened(model, HardenMode.FULL_TMR),
            "pruned_hardened_0.3": hardened(pruned, HardenMode.SELECTIVE),
        }
        print(f"LeNet 8x8x1 filters 4/8, dense {args.dense_units}, 6-bit (baseline test accuracy "
              f"{accuracy(model, ds.x_test, ds.y_test):.4f}), {board.part}")  # fmt: skip
        header = ("variant", "yosys LUT", "yosys FF", "CARRY4", "est. LUT", "est. FF", "yosys/est.", "calibrated",
                  "yosys/cal.", "units new/all", "synth s")  # fmt: skip
        print("  ".join(f"{h:>19}" for h in header))
        start = time.perf_counter()
        for name, variant in variants.items():
            graph, _ = build_graph(variant, HlsConfig(), board, 8, Path(tmp) / name / "graph")
            analytic = estimate_graph(graph, board.part, board.clock_period)
            synth = synthesize(write_rtl(graph, Path(tmp) / name / "rtl"), Path(tmp) / name / "yosys",
                               cache=Path(tmp) / "cache")  # fmt: skip
            total, est = synth["total"], analytic["total"]
            calibrated = analytic.get("yosys_calibrated", {}).get("LUT")
            row = (name, total["LUT"], total["FF"], total["CARRY4"], est["LUT"], est["FF"],
                   f"{total['LUT'] / est['LUT']:.3f}", calibrated or "-",
                   f"{total['LUT'] / calibrated:.3f}" if calibrated else "-",
                   f"{synth['units']['synthesized']}/{synth['units']['distinct']}",
                   synth["synthesis_seconds"])  # fmt: skip
            print("  ".join(f"{v!s:>19}" for v in row))
        print(f"the whole comparison (RTL + synthesis): {time.perf_counter() - start:.1f} s (goal: <= 300 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
