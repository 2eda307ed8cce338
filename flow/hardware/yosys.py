"""Open synthesis of the RTL with yosys ``synth_xilinx -family xc7`` and its cell statistics (``method: yosys``).

``synthesize`` synthesizes every distinct unit module (a layer, a convolution pixel, an activation element) once,
kept apart in batched yosys runs, each result cached by the module's content (its name left out), so a hardened
variant only pays for its copies and corrections and a convolution for its distinct pixels; ``synthesize_flat``
synthesizes the whole design at once (used to show that flattening merges copies unless they are
``keep_hierarchy``)."""

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
from flow.hardware.rtl import RtlDesign, require_tool

FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1", "LDCE", "LDPE")
RESOURCES = ("LUT", "FF", "CARRY4", "DSP", "BRAM_18K")
# out of context: no I/O buffers or clock buffers; the combinational RTL has no memories or shift registers to map
SYNTH = "synth_xilinx -family xc7 -flatten -noiopad -noclkbuf -nosrl -nolutram -nobram"
BATCH_BYTES = 100_000  # Verilog per yosys run: about 15 s of synthesis, against 2.5 s of start-up
SCRIPT_VERSION = f"{SYNTH} units v1"  # part of the cache key


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


def _module_key(name: str, files: list[Path], library: list[Path]) -> str:
    """Content hash of a unit module with its name left out (copies and equal pixels hash alike)."""
    digest = hashlib.sha256(SCRIPT_VERSION.encode())
    for path in [*files, *library]:
        digest.update(re.sub(rf"\b{re.escape(name)}(_wrapper)?\b", r"UNIT\1", path.read_text()).encode())
    return digest.hexdigest()


def _batches(units: list[str], sizes: dict[str, int], n: int) -> list[list[str]]:
    """``units`` in at most ``n`` batches of about equal total size (each, largest first, onto the lightest)."""
    batches: list[list[str]] = [[] for _ in range(n)]
    loads = [0] * n
    for unit in sorted(units, key=lambda u: -sizes[u]):
        lightest = loads.index(min(loads))
        batches[lightest].append(unit)
        loads[lightest] += sizes[unit]
    return [batch for batch in batches if batch]


def _synthesize_batch(yosys: str, design: RtlDesign, units: list[str], directory: Path) -> tuple[dict, float]:
    """({unit: totals}, seconds) of one yosys run over ``units``, each a keep_hierarchy instance of a top that
    wires its buses to ports (so nothing is shared or optimised across units). One run amortises yosys' start
    (about 2.5 s reading the cell libraries) over many small units."""
    ports, body = [], []
    for j, unit in enumerate(units):
        module = design.units[unit]
        ports += [f"input [{module.inp.bits - 1}:0] i{j}", f"output [{module.out.bits - 1}:0] o{j}"]
        body.append(f"    (* keep_hierarchy *) {unit}_wrapper u{j} (.model_inp(i{j}), .model_out(o{j}));")
    directory.mkdir(parents=True, exist_ok=True)
    top = directory / "batch_top.v"
    top.write_text(f"module batch_top ({', '.join(ports)});\n" + "\n".join(body) + "\nendmodule\n")
    files = [top, *(path for unit in units for path in design.units[unit].files), *design.library]
    _, modules, seconds = _run(yosys, files, "batch_top", directory)
    return {unit: modules[f"{unit}_wrapper"] for unit in units}, seconds


def synthesize(design: RtlDesign, directory: Path, jobs: int = 2, cache: Path | None = None) -> dict:
    """Every distinct unit module (a layer, a convolution pixel, an activation element: rtl.write_rtl) synthesized
    on its own, kept apart inside batched yosys runs (about ``BATCH_BYTES`` of Verilog each, at least ``jobs``,
    ``jobs`` at a time), cached by content in ``cache`` (default ``default_cache()``) as each batch ends. A
    layer's cells are its units' cells times their instances, the totals their sums; copies are never merged,
    and the layer and top modules only wire units (no cells). ``cached_modules``: layers none of whose units
    were synthesized for them (found in the cache, or equal to a unit of an earlier layer)."""
    yosys = require_tool("yosys", "estimate.method 'yosys'")
    cache = cache or default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    keys = {unit: _module_key(unit, module.files, design.library) for unit, module in design.units.items()}
    first: dict[str, str] = {}  # key -> the first unit module with that content
    for unit, key in keys.items():
        first.setdefault(key, unit)
    totals = {key: json.loads((cache / f"{key}.json").read_text())["total"] for key in first
              if (cache / f"{key}.json").exists()}  # fmt: skip
    cached = set(totals)
    empty = {unit for unit in first.values() if not design.units[unit].inp.bits or not design.units[unit].out.bits}
    todo = [unit for key, unit in first.items() if key not in cached and unit not in empty]
    totals.update({keys[unit]: dict.fromkeys(RESOURCES, 0) for unit in empty})  # constants: no cells
    sizes = {unit: sum(path.stat().st_size for path in design.units[unit].files) for unit in todo}

    def one(job: tuple[int, list[str]]) -> float:
        number, batch = job
        results, seconds = _synthesize_batch(yosys, design, batch, directory / f"batch{number}")
        for unit, total in results.items():
            entry = cache / f"{keys[unit]}.json"
            tmp = entry.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"total": total}))
            tmp.replace(entry)  # atomic: a killed run leaves no half-written entry
            totals[keys[unit]] = total
        return seconds

    start = time.perf_counter()
    batches = _batches(todo, sizes, max(1, jobs, -(-sum(sizes.values()) // BATCH_BYTES)))
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        batch_seconds = list(pool.map(one, enumerate(batches)))
    modules = {layer: {key: sum(n * totals[keys[u]][key] for u, n in instances.items()) for key in RESOURCES}
               for layer, instances in design.instances.items()}  # fmt: skip
    reused = [layer for layer, instances in design.instances.items()
              if all(keys[u] in cached or first[keys[u]] != u for u in instances)]  # fmt: skip
    return {
        "method": "yosys",
        "total": {key: sum(m[key] for m in modules.values()) for key in RESOURCES},
        "modules": modules,
        "cached_modules": sorted(reused),
        "units": {"distinct": len(first), "synthesized": len(todo), "cached": len(cached),
                  "instances": sum(n for instances in design.instances.values() for n in instances.values())},
        "batch_seconds": [round(s, 2) for s in batch_seconds],
        "synthesis_seconds": round(time.perf_counter() - start, 2),
    }  # fmt: skip
