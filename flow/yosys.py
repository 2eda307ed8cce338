"""Open synthesis of the RTL with yosys ``synth_xilinx -family xc7`` and its cell statistics (``method: yosys``).

``synthesize`` runs one yosys per layer module, in parallel, each result cached by the module's content (its name
left out), so a hardened variant only pays for its copies and corrections; ``synthesize_flat`` synthesizes the
whole design at once (used to show that flattening merges copies unless they are ``keep_hierarchy``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flow.errors import FlowError
from flow.rtl import RtlDesign, require_tool

FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1", "LDCE", "LDPE")
RESOURCES = ("LUT", "FF", "CARRY4", "DSP", "BRAM_18K")
# out of context: no I/O buffers or clock buffers; the combinational RTL has no memories or shift registers to map
SYNTH = "synth_xilinx -family xc7 -flatten -noiopad -noclkbuf -nosrl -nolutram -nobram"
SCRIPT_VERSION = f"{SYNTH} v2"  # part of the cache key


def cell_totals(cells: dict[str, int]) -> dict[str, int]:
    """LUT/FF/CARRY4/DSP/BRAM_18K from yosys cell counts (a RAMB36E1 is two BRAM_18K)."""
    return {
        "LUT": sum(n for cell, n in cells.items() if cell.startswith("LUT")),
        "FF": sum(cells.get(cell, 0) for cell in FF_CELLS),
        "CARRY4": cells.get("CARRY4", 0),
        "DSP": cells.get("DSP48E1", 0),
        "BRAM_18K": cells.get("RAMB18E1", 0) + 2 * cells.get("RAMB36E1", 0),
    }


def _run(yosys: str, files: list[Path], top: str, directory: Path) -> tuple[dict, dict, float]:
    """(design totals, per-module totals, seconds) of one yosys run on ``files`` with ``top`` flattened into it
    (instances marked keep_hierarchy stay apart)."""
    directory.mkdir(parents=True, exist_ok=True)
    reads = "\n".join(f"read_verilog {path}" for path in files)
    script = f"{reads}\n{SYNTH} -top {top}\ntee -q -o stat.json stat -json\n"
    (directory / "synth.ys").write_text(script)
    start = time.perf_counter()
    result = subprocess.run([yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=directory, capture_output=True,
                            text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise FlowError(f"yosys failed in {directory} (see yosys.log): {(result.stderr or result.stdout)[-400:]}")
    stat = json.loads((directory / "stat.json").read_text())
    modules = {name.lstrip("\\"): cell_totals(m.get("num_cells_by_type", {})) for name, m in stat["modules"].items()}
    return cell_totals(stat["design"].get("num_cells_by_type", {})), modules, seconds


def synthesize_flat(design: RtlDesign, directory: Path) -> dict:
    """The whole design in one yosys run, flattened except instances marked ``(* keep_hierarchy *)``."""
    yosys = require_tool("yosys", "estimate.method 'yosys'")
    total, modules, seconds = _run(yosys, design.files, design.top, directory)
    return {"method": "yosys", "total": total, "modules": modules, "synthesis_seconds": round(seconds, 2)}


def default_cache() -> Path:
    """Where per-module results are kept: $FTFLOW_CACHE/yosys, else ~/.cache/ftflow/yosys."""
    return Path(os.environ.get("FTFLOW_CACHE") or Path.home() / ".cache" / "ftflow") / "yosys"


def _module_key(layer: str, files: list[Path], library: list[Path]) -> str:
    """Content hash of a layer module with its name left out (copies of a layer hash alike)."""
    digest = hashlib.sha256(SCRIPT_VERSION.encode())
    for path in [*files, *library]:
        digest.update(re.sub(rf"\b{re.escape(layer)}(_wrapper)?\b", r"LAYER\1", path.read_text()).encode())
    return digest.hexdigest()


def synthesize(design: RtlDesign, directory: Path, jobs: int = 2, cache: Path | None = None) -> dict:
    """Every layer module synthesized on its own (``jobs`` yosys at a time; cached by content in ``cache``,
    default ``default_cache()``); totals are the sums. Layers stay apart as with keep_hierarchy, so copies are
    never merged; the top only wires them (no cells)."""
    yosys = require_tool("yosys", "estimate.method 'yosys'")
    cache = cache or default_cache()
    cache.mkdir(parents=True, exist_ok=True)

    def one(layer: str) -> tuple[dict, float, bool]:
        entry = cache / f"{_module_key(layer, design.layer_files[layer], design.library)}.json"
        if entry.exists():
            saved = json.loads(entry.read_text())
            return saved["total"], saved["seconds"], True
        total, _, seconds = _run(yosys, [*design.layer_files[layer], *design.library], f"{layer}_wrapper",
                                 directory / layer)  # fmt: skip
        tmp = entry.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"total": total, "seconds": round(seconds, 2)}))
        tmp.replace(entry)  # atomic: a killed run leaves no half-written entry
        return total, seconds, False

    start = time.perf_counter()
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        results = dict(zip(design.modules, pool.map(one, design.modules), strict=True))
    modules = {layer: total for layer, (total, _, _) in results.items()}
    return {
        "method": "yosys",
        "total": {key: sum(m[key] for m in modules.values()) for key in RESOURCES},
        "modules": modules,
        "module_seconds": {layer: round(seconds, 2) for layer, (_, seconds, _) in results.items()},
        "cached_modules": sorted(layer for layer, (_, _, cached) in results.items() if cached),
        "synthesis_seconds": round(time.perf_counter() - start, 2),
    }
