"""Vendor resource numbers (``estimate.method: vendor``): hls4ml's own build (C synthesis only) with Vivado HLS or
Vitis HLS found on PATH, read back with ``hls4ml.report``."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from flow.errors import FlowError

VENDOR_TOOLS = ("vitis_hls", "vivado_hls", "vivado")


def vendor_tool() -> str | None:
    """The first HLS tool on PATH (vitis_hls, vivado_hls, vivado), or None."""
    return next((tool for tool in VENDOR_TOOLS if shutil.which(tool)), None)


def require_vendor_tool() -> str:
    tool = vendor_tool()
    if tool is None:
        raise FlowError(
            f"estimate.method 'vendor' needs one of {', '.join(VENDOR_TOOLS)} on PATH (none found); "
            "use method 'analytic' or source the Xilinx settings script first"
        )
    return tool


def synthesize(graph, log_path: Path) -> None:
    """hls4ml's build: C synthesis only (no C-sim, no co-sim, no Vivado synthesis); output to ``log_path``."""
    with open(log_path, "w") as log_file, contextlib.redirect_stdout(log_file):
        graph.write()
        graph.build(csim=False, synth=True, cosim=False, validation=False, export=False, vsynth=False)


def read_vendor_report(project_dir: Path) -> dict:
    """Totals and latency from an hls4ml project's C-synthesis report (via ``hls4ml.report``)."""
    from hls4ml.report import parse_vivado_report  # hls4ml: ~0.3 s to import

    with open(Path(project_dir).parent / "report_parse.log", "w") as log_file, contextlib.redirect_stdout(log_file):
        report = parse_vivado_report(str(project_dir)) or {}
    synth = report.get("CSynthesisReport")
    if not synth:
        raise FlowError(f"{project_dir}: no C-synthesis report found (expected <project>_prj/solution*/syn/report)")
    try:
        clock = float(synth["TargetClockPeriod"])
        cycles = int(synth["WorstLatency"])
        total = {key: int(synth[key]) for key in ("LUT", "FF", "DSP", "BRAM_18K")}
        interval = int(synth["IntervalMax"])
    except (KeyError, ValueError) as exc:
        raise FlowError(f"{project_dir}: C-synthesis report lacks or garbles {exc}") from None
    return {
        "method": "vendor",
        "clock_period_ns": clock,
        "estimated_clock_ns": float(synth.get("EstimatedClockPeriod", clock)),
        "total": total,
        "latency": {"cycles": cycles, "ns": round(cycles * clock, 3), "ii_cycles": interval},
        "available": {key: int(synth[f"Available{key}"]) for key in total if f"Available{key}" in synth},
    }
