"""The analytic LUT estimate calibrated against yosys on the da4ml RTL, and the domain it was measured on.

Per layer kind (Dense, Conv2D, Activation, Pooling2D, Correction, Merge) the factor is Σ yosys LUT / Σ basis over
the zoo models' layers, where the basis is the analytic LUT times the pixels the RTL computes at once that hls4ml
io_parallel computes one after the other (a Conv2D's ``n_partitions``; 1 elsewhere). The domain is, per kind, the
range of each ``FEATURES`` value of the measured layers, plus the designs' analytic LUT and the hls4ml settings
(io_parallel, Latency, reuse 1); outside it (widened by ``DOMAIN_MARGIN``) the calibrated figure is an
extrapolation and ``check_domain`` says why. ``bench/calibrate_yosys.py`` measures both and writes them to a user
file (``default_output()``); the flow reads the shipped read-only ``flow/hardware/yosys_calibration.json`` unless
``estimate.calibration`` names another file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from flow.errors import FlowError
from flow.rundir import write_text_atomic

CALIBRATION_FILE = Path(__file__).with_name("yosys_calibration.json")  # shipped with the package, read-only
FEATURES = ("basis", "multipliers", "unroll", "input_bits")  # per layer: what the domain ranges cover
DOMAIN_MARGIN = 2.0  # in domain: within [lo / margin, hi * margin]; the per-layer ratios already spread ~2x
MEASURED_HLS = {"io_type": "io_parallel", "strategy": "latency", "reuse_factor": 1}  # HlsConfig() of the bench


def default_output() -> Path:
    """Where the bench writes a calibration: $FTFLOW_CACHE/yosys_calibration.json, else ~/.cache/ftflow/..."""
    return Path(os.environ.get("FTFLOW_CACHE") or Path.home() / ".cache" / "ftflow") / "yosys_calibration.json"


def unroll(graph_layer) -> int:
    """Pixels the RTL builds side by side for each one hls4ml builds and reuses (conv partitions)."""
    if graph_layer.class_name in ("Conv1D", "Conv2D"):
        return int(graph_layer.attributes.get("n_partitions", 1) or 1)
    return 1


def basis(graph, analytic: dict) -> dict[str, tuple[str, float]]:
    """layer name -> (kind, analytic LUT x unroll)."""
    by_name = {layer.name: layer for layer in graph.get_layers()}
    return {e["name"]: (e["kind"], e["LUT"] * unroll(by_name[e["name"]])) for e in analytic["layers"]}


def features(graph, analytic: dict) -> dict[str, dict]:
    """layer name -> kind, the ``FEATURES`` values, and its hls4ml strategy and reuse factor."""
    by_name = {layer.name: layer for layer in graph.get_layers()}
    out = {}
    for e in analytic["layers"]:
        layer = by_name[e["name"]]
        out[e["name"]] = {
            "kind": e["kind"],
            "basis": e["LUT"] * unroll(layer),
            "multipliers": e["multipliers"],
            "unroll": unroll(layer),
            "input_bits": int(layer.get_input_variable().type.precision.width),
            "strategy": str(layer.attributes.get("strategy", "latency")).lower(),
            "reuse_factor": int(layer.attributes.get("reuse_factor", 1) or 1),
        }
    return out


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


def measure_domain(points: list[dict], design_luts: list[int]) -> dict:
    """The ranges the fit saw: per kind, [min, max] of every ``FEATURES`` value of ``points`` (``features``
    rows of the measured layers), the designs' analytic LUT, and the hls4ml settings the bench used."""
    kinds: dict[str, dict[str, list[float]]] = {}
    for point in points:
        ranges = kinds.setdefault(point["kind"], {})
        for key in FEATURES:
            lo, hi = ranges.get(key, [point[key], point[key]])
            ranges[key] = [min(lo, point[key]), max(hi, point[key])]
    return {"kinds": dict(sorted(kinds.items())), "design_LUT": [min(design_luts), max(design_luts)],
            "hls": MEASURED_HLS, "margin": DOMAIN_MARGIN}  # fmt: skip


def write_calibration(path: Path, factors: dict, domain: dict, meta: dict) -> Path:
    """Write a calibration file (``meta``, ``factors``, ``domain``) to ``path`` (its directory is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({**meta, "factors": factors, "domain": domain}, indent=2) + "\n")
    return path


def load_calibration(path: str | Path | None = None) -> dict | None:
    """A calibration file: ``path`` (``estimate.calibration``, must exist and hold factors), else the shipped
    one (None when the package has none)."""
    if path is None:
        return json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else None
    path = Path(path)
    if not path.is_file():
        raise FlowError(f"estimate.calibration: file not found: {path} (write one with bench/calibrate_yosys.py "
                        "--out, or leave the key out for the shipped calibration)")  # fmt: skip
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FlowError(f"estimate.calibration: {path} is not valid JSON ({exc})") from None
    factors = data.get("factors") if isinstance(data, dict) else None
    if (
        not isinstance(factors, dict)
        or not factors
        or not all(isinstance(f, dict) and {"factor", "layers"} <= set(f) for f in factors.values())
    ):
        raise FlowError(f"estimate.calibration: {path} has no 'factors' (kind -> {{factor, layers}}) as "
                        "bench/calibrate_yosys.py writes them")  # fmt: skip
    return data


def load_factors(path: Path | None = None) -> dict[str, dict] | None:
    """The stored factors (the shipped file by default), or None when no calibration was measured."""
    data = load_calibration(path)
    return data["factors"] if data else None


def calibrated_lut(layer_basis: dict[str, tuple[str, float]], factors: dict[str, dict]) -> int:
    """The LUTs yosys is expected to report for the da4ml RTL: Σ basis x factor of its kind (the overall factor
    for kinds the calibration has not seen)."""
    overall = sum(f["factor"] * f["layers"] for f in factors.values()) / sum(f["layers"] for f in factors.values())
    return round(sum(base * factors.get(kind, {"factor": overall})["factor"] for kind, base in layer_basis.values()))


def _outside(value: float, bounds: list[float], margin: float) -> str | None:
    lo, hi = bounds
    if value > hi * margin:
        return "above"
    if value < lo / margin:
        return "below"
    return None


def layer_reasons(row: dict, domain: dict) -> list[str]:
    """Why one ``features`` row lies outside the calibration ``domain`` (empty when inside)."""
    ranges = domain["kinds"].get(row["kind"])
    if ranges is None:
        return [f"kind {row['kind']} was not calibrated (measured: {', '.join(domain['kinds'])})"]
    reasons = []
    for key in FEATURES:
        side = _outside(row[key], ranges[key], domain.get("margin", DOMAIN_MARGIN))
        if side:
            reasons.append(f"{key} {row[key]:g} {side} the measured {ranges[key][0]:g}..{ranges[key][1]:g}")
    hls = domain.get("hls", MEASURED_HLS)
    for key in ("strategy", "reuse_factor"):
        if row[key] != hls[key]:
            reasons.append(f"{key} {row[key]} (measured at {hls[key]})")
    return reasons


def check_domain(rows: dict[str, dict], io_type: str, total_lut: int, domain: dict | None) -> dict:
    """Per layer the reasons it is outside ``domain`` (``layers``: name -> reasons) and the design's own
    (``design``: io type, total analytic LUT, how many layers are outside). Without a domain (an older
    calibration file) nothing can be said: ``known`` is False."""
    if not domain:
        return {"known": False, "layers": {}, "design": ["the calibration file records no domain"]}
    layers = {name: layer_reasons(row, domain) for name, row in rows.items()}
    design = []
    if io_type != domain.get("hls", MEASURED_HLS)["io_type"]:
        design.append(f"io_type {io_type} (measured at {domain['hls']['io_type']})")
    side = _outside(total_lut, domain["design_LUT"], domain.get("margin", DOMAIN_MARGIN))
    if side:
        lo, hi = domain["design_LUT"]
        design.append(f"analytic LUT {total_lut} {side} the measured designs' {lo}..{hi}")
    outside = [name for name, reasons in layers.items() if reasons]
    if outside:
        design.append(f"{len(outside)} of {len(layers)} layers outside: {', '.join(outside[:5])}"
                      + (", ..." if len(outside) > 5 else ""))  # fmt: skip
    return {"known": True, "layers": layers, "design": design}
