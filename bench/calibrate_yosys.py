"""Calibrate the analytic LUT estimate against yosys on the da4ml RTL of the zoo models (baseline, selective min
0.3 and selective TMR 0.3 of each) and write the per-kind factors and the domain they were measured on to a user
file (see flow/hardware/calibration.py). Prints per model and variant: yosys LUT, analytic LUT, calibrated LUT,
their ratios.

The shipped flow/hardware/yosys_calibration.json is never written unless named with --out; a run uses another file
only when its config says so (estimate: {calibration: PATH}).

Usage: .venv/bin/python bench/calibrate_yosys.py [--out PATH] [--dry-run]   (about 10 minutes on 2 cores)
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
VARIANTS = ("baseline", "selective", "selective_tmr")


def _variants(name: str, section: dict, tmp: Path) -> tuple[dict, int]:
    """The trained zoo model and its hardened variants, and the data's input_frac_bits."""
    from flow.config import HardenConfig, HardenMode, RankMethod, config_from_dict
    from flow.harden import harden_model, select_channels
    from flow.rank import rank_model
    from flow.steps import run

    raw = {"seed": 0, "data": section["data"], "train": {"epochs": 5},
           "model": {"name": name, "weight_bits": 6, "act_bits": 6, **section["model"]}}  # fmt: skip
    cfg = config_from_dict(raw, f"calibrate:{name}")
    state = run(cfg, tmp / name, ["load", "train"])
    x, y = state.data.x_test[:100], state.data.y_test[:100]
    ranking = rank_model(state.model, x, y, RankMethod.GRADIENT, cfg.rank, cfg.seed)
    variants = {"baseline": state.model}
    for mode in (HardenMode.SELECTIVE, HardenMode.SELECTIVE_TMR):
        harden = HardenConfig(mode=mode, ratio=0.3)
        variants[mode.value] = harden_model(state.model, select_channels(state.model, ranking, harden), harden)
    return variants, cfg.data.input_frac_bits


def measure(board) -> list[dict]:
    """Per model and variant: its layers' basis and features, the yosys result and the analytic LUT."""
    from flow.config import HlsConfig
    from flow.hardware.calibration import basis, features
    from flow.hardware.estimate import estimate_graph
    from flow.hardware.rtl import write_rtl
    from flow.hardware.yosys import synthesize
    from flow.hls import build_graph

    measured = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for name, section in ZOO.items():
            variants, frac_bits = _variants(name, section, Path(tmp))
            for variant, model in variants.items():
                where = Path(tmp) / name / variant
                graph, _ = build_graph(model, HlsConfig(), board, frac_bits, where / "graph")
                analytic = estimate_graph(graph, board.part, board.clock_period)
                synth = synthesize(write_rtl(graph, where / "rtl"), where / "yosys", cache=cache)
                measured.append({"model": name, "variant": variant, "basis": basis(graph, analytic),
                                 "features": features(graph, analytic), "synth": synth,
                                 "analytic_LUT": analytic["total"]["LUT"]})  # fmt: skip
    return measured


def fit(measured: list[dict]) -> tuple[dict, dict]:
    """(factors, domain) of the measured designs: the domain covers the layers the factors were fitted on."""
    from flow.hardware.calibration import measure_domain, measure_factors

    factors = measure_factors([(m["basis"], m["synth"]["modules"]) for m in measured])
    points = [m["features"][name] for m in measured for name, (_, base) in m["basis"].items()
              if name in m["synth"]["modules"] and base > 0]  # fmt: skip
    return factors, measure_domain(points, [m["analytic_LUT"] for m in measured])


def _print(measured: list[dict], factors: dict) -> None:
    from flow.hardware.calibration import calibrated_lut

    print(f"{'model':>12} {'variant':>14} {'yosys LUT':>10} {'analytic':>9} {'calibrated':>10} {'y/analytic':>10} "
          f"{'y/calibrated':>12}")  # fmt: skip
    for m in measured:
        lut, cal, analytic = m["synth"]["total"]["LUT"], calibrated_lut(m["basis"], factors), m["analytic_LUT"]
        print(f"{m['model']:>12} {m['variant']:>14} {lut:>10} {analytic:>9} {cal:>10} {lut / analytic:>10.3f} "
              f"{lut / cal:>12.3f}")  # fmt: skip
    print("factors per kind:", json.dumps(factors))


def main(argv: list[str] | None = None) -> int:
    from flow.hardware.calibration import default_output, write_calibration

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"calibration file to write (default {default_output()}; $FTFLOW_CACHE moves it)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the factors without writing a file")
    args = parser.parse_args(argv)

    from flow.hardware.boards import load_board

    board, start = load_board("pynq-z2"), time.perf_counter()
    measured = measure(board)
    factors, domain = fit(measured)
    _print(measured, factors)
    print(f"total wall time: {time.perf_counter() - start:.0f} s")
    if not args.dry_run:
        meta = {"measured": datetime.date.today().isoformat(), "by": "bench/calibrate_yosys.py",
                "models": list(ZOO), "variants": list(VARIANTS), "part": board.part}  # fmt: skip
        path = write_calibration(args.out or default_output(), factors, domain, meta)
        print(f"written: {path} (use it with estimate: {{calibration: {path}}})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
