"""Open synthesis of the RTL with yosys ``synth_xilinx -family xc7`` and its cell statistics (``method: yosys``)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from flow.errors import FlowError
from flow.rtl import RtlDesign, require_tool

FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1", "LDCE", "LDPE")


def cell_totals(cells: dict[str, int]) -> dict[str, int]:
    """LUT/FF/CARRY4/DSP/BRAM_18K from yosys cell counts (a RAMB36E1 is two BRAM_18K)."""
    return {
        "LUT": sum(n for cell, n in cells.items() if cell.startswith("LUT")),
        "FF": sum(cells.get(cell, 0) for cell in FF_CELLS),
        "CARRY4": cells.get("CARRY4", 0),
        "DSP": cells.get("DSP48E1", 0),
        "BRAM_18K": cells.get("RAMB18E1", 0) + 2 * cells.get("RAMB36E1", 0),
    }


def synthesize(design: RtlDesign, directory: Path, flatten: bool = True) -> dict:
    """Synthesize the top module for 7-series; returns totals, per-module cells and the wall time.

    ``flatten`` flattens everything except instances marked ``(* keep_hierarchy *)`` (the copies)."""
    yosys = require_tool("yosys", "estimate.method 'yosys'")
    directory.mkdir(parents=True, exist_ok=True)
    reads = "; ".join(f"read_verilog {path}" for path in design.files)
    script = f"{reads}; synth_xilinx -family xc7 -top {design.top}{' -flatten' if flatten else ''}; "
    script += "tee -q -o stat.json stat -json"
    (directory / "synth.ys").write_text(script.replace("; ", "\n") + "\n")
    start = time.perf_counter()
    result = subprocess.run([yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=directory, capture_output=True,
                            text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise FlowError(f"yosys failed in {directory} (see yosys.log): {(result.stderr or result.stdout)[-400:]}")
    stat = json.loads((directory / "stat.json").read_text())
    modules = {name.lstrip("\\"): cell_totals(m.get("num_cells_by_type", {})) for name, m in stat["modules"].items()}
    return {
        "method": "yosys",
        "total": cell_totals(stat["design"].get("num_cells_by_type", {})),
        "modules": modules,
        "synthesis_seconds": round(seconds, 2),
    }
