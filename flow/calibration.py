"""The analytic LUT estimate calibrated against yosys on the da4ml RTL.

Per layer kind (Dense, Conv2D, Activation, Pooling2D, Correction, Merge) the factor is Σ yosys LUT / Σ basis over
the zoo models' layers, where the basis is the analytic LUT times the pixels the RTL computes at once that hls4ml
io_parallel computes one after the other (a Conv2D's ``n_partitions``; 1 elsewhere). ``bench/calibrate_yosys.py``
measures the factors and writes ``flow/yosys_calibration.json``; ``estimate_graph`` then adds ``yosys_calibrated``."""

from __future__ import annotations

import json
from pathlib import Path

CALIBRATION_FILE = Path(__file__).with_name("yosys_calibration.json")


def unroll(graph_layer) -> int:
    """Pixels the RTL builds side by side for each one hls4ml builds and reuses (conv partitions)."""
    if graph_layer.class_name in ("Conv1D", "Conv2D"):
        return int(graph_layer.attributes.get("n_partitions", 1) or 1)
    return 1


def basis(graph, analytic: dict) -> dict[str, tuple[str, float]]:
    """layer name -> (kind, analytic LUT x unroll)."""
    by_name = {layer.name: layer for layer in graph.get_layers()}
    return {e["name"]: (e["kind"], e["LUT"] * unroll(by_name[e["name"]])) for e in analytic["layers"]}


def measure_factors(pairs: list[tuple[dict, dict]]) -> dict[str, dict]:
    """Per kind: factor = Σ yosys / Σ basis, with the spread of the per-layer ratios and the layer count, from
    (basis, yosys per-module totals) pairs."""
    sums: dict[str, list[float]] = {}
    for layer_basis, modules in pairs:
        for name, (kind, base) in layer_basis.items():
            if name in modules and base > 0:
                sums.setdefault(kind, []).append((modules[name]["LUT"], base))
    return {
        kind: {
            "factor": round(sum(y for y, _ in values) / sum(b for _, b in values), 4),
            "min": round(min(y / b for y, b in values), 4),
            "max": round(max(y / b for y, b in values), 4),
            "layers": len(values),
        }
        for kind, values in sorted(sums.items())
    }


def load_factors(path: Path = CALIBRATION_FILE) -> dict[str, dict] | None:
    """The stored factors, or None when no calibration was measured."""
    return json.loads(path.read_text())["factors"] if path.exists() else None


def calibrated_lut(layer_basis: dict[str, tuple[str, float]], factors: dict[str, dict]) -> int:
    """The LUTs yosys is expected to report for the da4ml RTL: Σ basis x factor of its kind (the overall factor
    for kinds the calibration has not seen)."""
    overall = sum(f["factor"] * f["layers"] for f in factors.values()) / sum(f["layers"] for f in factors.values())
    return round(sum(base * factors.get(kind, {"factor": overall})["factor"] for kind, base in layer_basis.values()))
