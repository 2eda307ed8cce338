"""Calibrate the analytic LUT estimate against yosys on the da4ml RTL of the zoo models (baseline, selective min
0.3 and selective TMR 0.3 of each) and write the per-kind factors to flow/yosys_calibration.json
(see flow/calibration.py). Prints per model and variant: yosys LUT, analytic LUT, calibrated LUT, their ratios.

Usage: .venv/bin/python bench/calibrate_yosys.py [--dry-run]   (about 10 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ZOO = {  # name -> config: small inputs keep the fully unrolled RTL of the convolutions quick to synthesize
    "lenet": {"data": {"name": "digits"}, "model": {"input_shape": [8, 8, 1], "filters": [4, 8]}},
    "vgg_tiny": {"data": {"name": "synthetic", "shape": [8, 8, 3], "samples": 300, "classes": 5},
                 "model": {"input_shape": [8, 8, 3], "filters": [4, 4, 8]}},
    "resnet_tiny": {"data": {"name": "synthetic", "shape": [8, 8, 3], "samples": 300, "classes": 5},
                    "model": {"input_shape": [8, 8, 3], "filters": [4, 4, 4]}},
}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the factors without writing the file")
    args = parser.parse_args()

    from flow.boards import load_board
    from flow.calibration import CALIBRATION_FILE, basis, calibrated_lut, measure_factors
    from flow.config import HardenConfig, HardenMode, HlsConfig, RankMethod, config_from_dict
    from flow.estimate import estimate_graph
    from flow.harden import harden_model, select_channels
    from flow.hls import build_graph
    from flow.rank import rank_model
    from flow.rtl import write_rtl
    from flow.steps import run
    from flow.yosys import synthesize

    board = load_board("pynq-z2")
    measured, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for name, section in ZOO.items():
            raw = {"seed": 0, "data": section["data"], "train": {"epochs": 5},
                   "model": {"name": name, "weight_bits": 6, "act_bits": 6, **section["model"]}}  # fmt: skip
            cfg = config_from_dict(raw, f"calibrate:{name}")
            state = run(cfg, Path(tmp) / name, ["load", "train"])
            x, y = state.data.x_test[:100], state.data.y_test[:100]
            ranking = rank_model(state.model, x, y, RankMethod.GRADIENT, cfg.rank, cfg.seed)
            variants = {"baseline": state.model}
            for mode in (HardenMode.SELECTIVE, HardenMode.SELECTIVE_TMR):
                harden = HardenConfig(mode=mode, ratio=0.3)
                variants[mode.value] = harden_model(state.model, select_channels(state.model, ranking, harden), harden)
            for variant, model in variants.items():
                where = Path(tmp) / name / variant
                graph, _ = build_graph(model, HlsConfig(), board, cfg.data.input_frac_bits, where / "graph")
                analytic = estimate_graph(graph, board.part, board.clock_period)
                synth = synthesize(write_rtl(graph, where / "rtl"), where / "yosys", cache=cache)
                measured.append((name, variant, basis(graph, analytic), synth, analytic["total"]["LUT"]))
    factors = measure_factors([(b, s["modules"]) for _, _, b, s, _ in measured])
    print(f"{'model':>12} {'variant':>14} {'yosys LUT':>10} {'analytic':>9} {'calibrated':>10} {'y/analytic':>10} "
          f"{'y/calibrated':>12}")  # fmt: skip
    for name, variant, layer_basis, synth, analytic_lut in measured:
        lut, cal = synth["total"]["LUT"], calibrated_lut(layer_basis, factors)
        print(f"{name:>12} {variant:>14} {lut:>10} {analytic_lut:>9} {cal:>10} {lut / analytic_lut:>10.3f} "
              f"{lut / cal:>12.3f}")  # fmt: skip
    print("factors per kind:", json.dumps(factors))
    print(f"total wall time: {time.perf_counter() - start:.0f} s")
    if not args.dry_run:
        CALIBRATION_FILE.write_text(json.dumps({
            "measured": datetime.date.today().isoformat(), "by": "bench/calibrate_yosys.py",
            "models": list(ZOO), "variants": ["baseline", "selective", "selective_tmr"], "part": board.part,
            "factors": factors,
        }, indent=2) + "\n")  # fmt: skip
        print(f"written: {CALIBRATION_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
