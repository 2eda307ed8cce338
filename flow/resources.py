"""Resources and latency of a model for the run's board: the configured method plus the board's utilisation."""

from __future__ import annotations

from pathlib import Path

from flow.boards import resolve_board
from flow.config import EstimateMethod, RunConfig
from flow.estimate import estimate_graph, utilisation
from flow.hls import build_graph


def estimate_resources(model, cfg: RunConfig, directory: Path) -> dict:
    """``resources.json`` content: method, totals, per-layer figures (analytic), latency, board utilisation and
    whether the model fits the board (``fits``; ``over`` names the resources that do not)."""
    board = resolve_board(cfg.board)
    if cfg.estimate.method is EstimateMethod.VENDOR:
        from flow.vendor import read_vendor_report, require_vendor_tool, synthesize

        require_vendor_tool()
        graph, _ = build_graph(model, cfg.hls, board, cfg.data.input_frac_bits, directory / "vendor_project")
        synthesize(graph, directory / "vendor_build.log")
        result = read_vendor_report(directory / "vendor_project")
    else:
        graph, _ = build_graph(model, cfg.hls, board, cfg.data.input_frac_bits, directory / "graph")
        result = estimate_graph(graph, board.part, board.clock_period)
        if cfg.estimate.method is EstimateMethod.YOSYS:
            result = _yosys(graph, result, directory)
    fit = utilisation(result["total"], board.capacity)
    return {
        **result,
        "board": board.name,
        "part": board.part,
        "strategy": cfg.hls.strategy.value,
        "reuse_factor": cfg.hls.reuse_factor,
        "capacity": board.capacity,
        "utilisation_pct": fit["percent"],
        "fits": fit["fits"],
        "over": fit["over"],
    }


def _yosys(graph, analytic: dict, directory: Path) -> dict:
    """yosys cell counts of the da4ml RTL (combinational: the latency stays the analytic one), with the analytic
    estimate beside it and their ratio (how far the estimator is from a real netlist)."""
    from flow.rtl import require_tool, write_rtl
    from flow.yosys import synthesize

    require_tool("yosys", "estimate.method 'yosys'")
    synth = synthesize(write_rtl(graph, directory / "rtl"), directory / "yosys")
    ratio = {key: round(synth["total"][key] / analytic["total"][key], 3) if analytic["total"][key] else None
             for key in ("LUT", "FF")}  # fmt: skip
    return {
        **synth,
        "latency": {**analytic["latency"], "method": "analytic"},
        "analytic": {key: analytic[key] for key in ("total", "layers", "yosys_calibrated") if key in analytic},
        "yosys_over_analytic": ratio,
    }
