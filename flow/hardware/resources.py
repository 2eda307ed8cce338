"""Resources and latency of a model for the run's board: the configured method plus the board's utilisation, and
when the design does not fit or lies outside the calibration domain, the warnings and the deploy configuration
the estimator finds that fits (io_stream, Resource strategy, the smallest fitting power-of-two reuse factor)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flow.config import EstimateMethod, HlsConfig, IOType, RunConfig, Strategy
from flow.hardware import vendor
from flow.hardware.boards import Board, known_boards, load_board, resolve_board
from flow.hardware.estimate import estimate_graph, utilisation
from flow.hardware.rtl import require_tool, write_rtl
from flow.hardware.yosys import synthesize
from flow.hls import build_graph

MAX_SUGGESTED_REUSE = 4096  # hls.reuse_factor's upper bound
ANALYTIC_KEYS = ("total", "layers", "yosys_calibrated", "in_domain", "out_of_domain")


def estimate_resources(model, cfg: RunConfig, directory: Path) -> dict:
    """``resources.json`` content: method, totals, per-layer figures (analytic), latency, board utilisation,
    whether the model fits the board (``fits``; ``over`` names the resources that do not), whether it lies in the
    calibration domain (``in_domain``, ``out_of_domain``), ``warnings`` and a deploy ``suggestion`` when it does
    not fit (None otherwise)."""
    board = resolve_board(cfg.board)
    if cfg.estimate.method is EstimateMethod.VENDOR:
        vendor.require_vendor_tool()
        graph, _ = build_graph(model, cfg.hls, board, cfg.data.input_frac_bits, directory / "vendor_project")
        vendor.synthesize(graph, directory / "vendor_build.log")
        result = vendor.read_vendor_report(directory / "vendor_project")
    else:
        graph, _ = build_graph(model, cfg.hls, board, cfg.data.input_frac_bits, directory / "graph")
        result = estimate_graph(graph, board.part, board.clock_period, cfg.estimate.calibration)
        if cfg.estimate.method is EstimateMethod.YOSYS:
            result = _yosys(graph, result, directory)
    fit = utilisation(result["total"], board.capacity)
    suggestion = None if fit["fits"] is not False else suggest_deployment(model, cfg, board, directory / "suggest")
    result = {
        **result,
        "board": board.name,
        "part": board.part,
        "strategy": cfg.hls.strategy.value,
        "reuse_factor": cfg.hls.reuse_factor,
        "capacity": board.capacity,
        "utilisation_pct": fit["percent"],
        "fits": fit["fits"],
        "over": fit["over"],
        "suggestion": suggestion,
    }
    return {**result, "warnings": warnings(result)}


def _candidates(hls: HlsConfig) -> list[HlsConfig]:
    """io_stream as configured, then io_stream with the Resource strategy at growing power-of-two reuse factors."""
    stream = [dataclasses.replace(hls, io_type=IOType.STREAM)] if hls.io_type is not IOType.STREAM else []
    factors = [2**k for k in range(1, 13) if 2**k > hls.reuse_factor and 2**k <= MAX_SUGGESTED_REUSE]
    shared = [dataclasses.replace(hls, io_type=IOType.STREAM, strategy=Strategy.RESOURCE, reuse_factor=rf)
              for rf in factors]  # fmt: skip
    return stream + shared


def _try(model, cfg: RunConfig, board: Board, hls: HlsConfig, directory: Path) -> dict:
    """The analytic estimate of one candidate configuration on ``board``."""
    where = directory / f"{hls.io_type.value}_{hls.strategy.value}_rf{hls.reuse_factor}"
    graph, _ = build_graph(model, hls, board, cfg.data.input_frac_bits, where)
    est = estimate_graph(graph, board.part, board.clock_period, cfg.estimate.calibration)
    fit = utilisation(est["total"], board.capacity)
    return {
        "label": f"{hls.io_type.value}/{hls.strategy.value}/rf{hls.reuse_factor}",
        "hls": {"io_type": hls.io_type.value, "strategy": hls.strategy.value, "reuse_factor": hls.reuse_factor},
        "total": est["total"],
        "multipliers": est["multipliers"],
        "latency_cycles": est["latency"]["cycles"],
        "utilisation_pct": fit["percent"],
        "fits": fit["fits"],
    }


def suggest_deployment(model, cfg: RunConfig, board: Board, directory: Path) -> dict:
    """The first candidate (``_candidates``, smallest reuse factor first: the fastest) that fits ``board``; if none
    does, ``fits`` False, the least utilised candidate (``least``) and the known boards that would hold it
    (``boards``). Every candidate is tried in turn: a larger reuse factor needs fewer multipliers but wider
    operand multiplexers, so the LUTs are not monotonic in it."""
    tried = []
    for hls in _candidates(cfg.hls):
        tried.append(_try(model, cfg, board, hls, directory))
        if tried[-1]["fits"]:
            return tried[-1]
    least = min(tried, key=lambda c: max(c["utilisation_pct"].values()), default=None)
    boards = boards_that_fit(least["total"]) if least else []
    return {"label": f"none fits {board.name}", "fits": False, "least": least, "boards": boards}


def boards_that_fit(total: dict) -> list[str]:
    """The known boards whose capacities hold ``total``."""
    return [name for name in known_boards() if utilisation(total, load_board(name).capacity)["fits"]]


def warnings(result: dict) -> list[str]:
    """One line per reason the estimate should not be read as a deployable design: it does not fit the board, it
    lies outside the calibration domain; and the configuration the estimator finds that fits."""
    lines = []
    if result.get("fits") is False:
        over = ", ".join(f"{k} {result['utilisation_pct'][k]:g} %" for k in result["over"])
        lines.append(f"does not fit {result['board']}: {over} of the board")
    if result.get("in_domain") is False:
        lines.append("outside the calibration domain (the analytic and the yosys-calibrated LUTs are "
                     f"extrapolations): {'; '.join(result['out_of_domain'])}")  # fmt: skip
    suggestion = result.get("suggestion")
    if suggestion and suggestion["fits"]:
        pct = ", ".join(f"{k} {v:g} %" for k, v in suggestion["utilisation_pct"].items())
        lines.append(f"deploy as hls: {suggestion['hls']}: estimated {pct} of {result['board']}, "
                     f"{suggestion['latency_cycles']} cycles")  # fmt: skip
    elif suggestion:
        least = suggestion["least"]
        boards = ", ".join(suggestion["boards"]) or "none of the known boards"
        lines.append(f"no io_stream/Resource configuration up to reuse_factor {MAX_SUGGESTED_REUSE} fits "
                     f"{result['board']}" + (f" (least over: hls: {least['hls']}, which would fit {boards})"
                                             if least else ""))  # fmt: skip
    return lines


def _yosys(graph, analytic: dict, directory: Path) -> dict:
    """yosys cell counts of the da4ml RTL (combinational: the latency stays the analytic one), with the analytic
    estimate beside it and their ratio (how far the estimator is from a real netlist)."""
    require_tool("yosys", "estimate.method 'yosys'")
    synth = synthesize(write_rtl(graph, directory / "rtl"), directory / "yosys")
    ratio = {key: round(synth["total"][key] / analytic["total"][key], 3) if analytic["total"][key] else None
             for key in ("LUT", "FF")}  # fmt: skip
    return {
        **synth,
        "latency": {**analytic["latency"], "method": "analytic"},
        "analytic": {key: analytic[key] for key in ANALYTIC_KEYS if key in analytic},
        "in_domain": analytic.get("in_domain"),
        "out_of_domain": analytic.get("out_of_domain", []),
        "yosys_over_analytic": ratio,
    }
