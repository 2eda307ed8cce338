"""Exact precisions for the layers whose types QKeras does not fix: an hls4ml optimizer pass and its report.

hls4ml infers exact types for Dense/Conv accumulators, Add and Concatenate, but gives a float ``relu``
Activation, a global pooling and BatchNormalization's scale/bias its default precision, and an average pooling
the input's type for its result (the average's extra fractional bits are dropped). The pass below sets, before
hls4ml's own inference, a type that represents the exact result where one exists:

- float ``relu`` / ``linear`` Activation: the input's type (relu of a fixed-point value is representable in it);
- average pooling over N values (N a power of two): accumulator = input + log2 N integer and fractional bits,
  result = input + log2 N fractional bits; otherwise the same widths and the layer is reported inexact;
- max pooling (also global): the input's type;
- Dense/Conv with po2 or binary weights (hls4ml's inference skips them): accumulator and result wide enough for
  the worst-case sum, with the weights' fractional bits (po2 exponents below hls4ml's shift-product range are
  reported inexact);
- BatchNormalization: scale and bias as fixed types wide enough for their float32 values (inexact: QKeras
  computes the normalization in float32, hls4ml in fixed point; they agree unless a value lies within the
  rounding error of the next quantizer's step).

Every type the pass sets is recorded on the node (``ftflow_precisions``) and written by ``precision_report``.
``register_precision_pass()`` is idempotent and runs nothing at import.
"""

from __future__ import annotations

import math

import numpy as np

from flow.hls_ext import register_before_precision_inference

PASS_NAME = "ftflow_exact_precision"
BACKENDS = ("Vivado", "Vitis")
ATTR = "ftflow_precisions"
BN_FRAC_BITS = 24  # fractional bits of BatchNormalization scale/bias (float32 has a 24-bit significand)


def _fixed(width: int, integer: int, signed: bool):
    from hls4ml.model.types import FixedPrecisionType  # hls4ml: ~0.3 s to import

    return FixedPrecisionType(width=width, integer=integer, signed=signed)


def _is_fixed(precision) -> bool:
    from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType  # hls4ml: ~0.3 s to import

    return isinstance(precision, FixedPrecisionType | IntegerPrecisionType)


def _unspecified(precision) -> bool:
    from hls4ml.model.types import UnspecifiedPrecisionType  # hls4ml: ~0.3 s to import

    return isinstance(precision, UnspecifiedPrecisionType)


def _record(node, type_name: str, precision, reason: str, exact: bool = True) -> None:
    node.types[type_name].name = f"{node.name}_{type_name}"
    node.types[type_name].precision = precision
    records = dict(node.get_attr(ATTR) or {})
    records[type_name] = {"precision": str(precision), "reason": reason, "exact": exact}
    node.set_attr(ATTR, records)


def _average_types(node, inp, n: int) -> None:
    extra = max(0, math.ceil(math.log2(n)))
    exact = n == 1 << extra
    why = f"average of {n} values" + ("" if exact else f" ({n} is not a power of two: the division rounds)")
    if "accum_t" in node.types and _unspecified(node.types["accum_t"].precision):
        accum = _fixed(inp.width + 2 * extra, inp.integer + extra, inp.signed)
        _record(node, "accum_t", accum, f"{why}: sum with log2 N more integer and fractional bits", exact)
    _record(node, "result_t", _fixed(inp.width + extra, inp.integer, inp.signed), f"{why}: log2 N more bits", exact)


def _bn_types(node) -> None:
    for name in ("scale", "bias"):
        type_name = f"{name}_t"
        if not _unspecified(node.types[type_name].precision):
            continue
        data = np.asarray(node.weights[name].data, dtype=np.float64)
        top = float(np.max(np.abs(data))) if data.size else 0.0
        integer = max(1, math.floor(math.log2(top)) + 2) if top > 0 else 1
        precision = _fixed(integer + BN_FRAC_BITS, integer, True)
        _record(node, type_name, precision, "float32 BatchNormalization parameter (fixed-point approximation)", False)
        node.weights[name].update_precision(precision)


def _special_weights(node) -> str | None:
    """'po2' or 'binary' for a Dense/Conv node whose weights hls4ml's precision inference skips, else None."""
    from hls4ml.model.types import ExponentPrecisionType, XnorPrecisionType  # hls4ml: ~0.3 s to import

    if "weight" not in node.weights or "accum_t" not in node.types:
        return None
    precision = node.weights["weight"].type.precision
    if isinstance(precision, ExponentPrecisionType):
        return "po2"
    return "binary" if isinstance(precision, XnorPrecisionType) else None


def weight_values(node) -> np.ndarray:
    """A Dense/Conv node's weights as numbers, (fan-in, channels): xnor words 0/1 mean -1/+1. hls4ml stores
    channels last, or first (Resource strategy transposes them); with neither, one column (a safe bound)."""
    data = np.asarray(node.weights["weight"].data, dtype=np.float64)
    if _special_weights(node) == "binary":
        data = 2.0 * data - 1.0
    channels = int(node.get_attr("n_filt", 0) or node.get_attr("n_out", 0) or 0)
    if data.ndim > 1 and data.shape[-1] == channels:
        return data.reshape(-1, channels)
    if data.ndim > 1 and data.shape[0] == channels:
        return data.reshape(channels, -1).T
    return data.reshape(-1, 1)


def sum_range(node, inp) -> tuple[float, float]:
    """Smallest and largest sum of products + bias of any output channel over every input ``inp`` allows."""
    lo_x, hi_x = _range(inp)
    w = weight_values(node)
    bias = np.asarray(node.weights["bias"].data, dtype=np.float64).reshape(-1) if "bias" in node.weights else 0.0
    lo = np.sum(np.minimum(w * lo_x, w * hi_x), axis=0) + bias
    hi = np.sum(np.maximum(w * lo_x, w * hi_x), axis=0) + bias
    return float(lo.min()), float(hi.max())


def _integer_bits(lo: float, hi: float) -> int:
    """Integer bits (sign included when lo < 0) of a fixed type holding every value in [lo, hi]."""
    top = max(abs(lo), abs(hi), 2.0**-30)
    return math.floor(math.log2(top)) + 1 + (1 if lo < 0 else 0)


def _special_accumulator(node, inp) -> None:
    """Exact accum/result types for po2 (shifts) and binary (+-x) weights, which hls4ml gives its default type.

    Sized from the types, as hls4ml sizes quantized_bits layers (any word of the weight and bias types fits, so a
    fault never wraps the sum): N products of at most max|x| * max|w| each, plus the bias type's range."""
    kind = _special_weights(node)
    w_type = node.weights["weight"].type.precision
    if kind == "po2":  # exponent field of w_type.width bits: e in [-2^(width-1), 2^(width-1) - 1]
        half = 1 << (w_type.width - 1)
        weight_max, weight_frac = 2.0 ** (half - 1), half
    else:
        weight_max, weight_frac = 1.0, 0
    x_lo, x_hi = _range(inp)
    n_terms = weight_values(node).shape[0]
    product = max(abs(x_lo), abs(x_hi)) * weight_max
    b_lo, b_hi, bias_frac = 0.0, 0.0, 0
    if "bias" in node.weights:
        b_type = node.weights["bias"].type.precision
        b_lo, b_hi = _range(b_type)
        bias_frac = b_type.width - b_type.integer
    frac = max(inp.width - inp.integer + weight_frac, bias_frac)
    integer = _integer_bits(-n_terms * product + b_lo, n_terms * product + b_hi)
    exact, why = True, f"sum of {n_terms} products with {kind} weights (hls4ml does not infer these), bias included"
    nonzero = np.abs(weight_values(node))
    nonzero = nonzero[nonzero > 0]
    used_frac = max(0, -math.floor(math.log2(nonzero.min()))) if nonzero.size else 0
    limit = w_type.width + inp.integer  # hls4ml's shift product keeps exponent width + input width frac bits
    if kind == "po2" and used_frac > limit:
        exact, why = False, f"{why}; exponents below -{limit} lose bits in hls4ml's shift product type"
    for type_name in ("accum_t", "result_t"):
        if _unspecified(node.types[type_name].precision):
            _record(node, type_name, _fixed(integer + frac, integer, True), why, exact)


def _pass_class():
    # hls4ml: ~0.3 s to import
    from hls4ml.model.layers import Activation, BatchNormalization, GlobalPooling2D, Pooling2D
    from hls4ml.model.optimizer import OptimizerPass

    class ExactPrecision(OptimizerPass):
        """Exact result types for split-off float activations, pooling and BatchNormalization (see module)."""

        def match(self, node):
            if isinstance(node, BatchNormalization):
                return any(_unspecified(node.types[t].precision) for t in ("scale_t", "bias_t"))
            if _special_weights(node):
                inp = node.get_input_variable()
                known = inp is not None and _is_fixed(inp.type.precision)
                return known and any(_unspecified(node.types[t].precision) for t in ("accum_t", "result_t"))
            if not isinstance(node, Activation | Pooling2D | GlobalPooling2D):
                return False
            if isinstance(node, Activation) and node.get_attr("activation") not in ("relu", "linear"):
                return False
            inp = node.get_input_variable()
            return (
                inp is not None
                and _is_fixed(inp.type.precision)
                and "result_t" in node.types
                and _unspecified(node.types["result_t"].precision)
            )

        def transform(self, model, node):
            if isinstance(node, BatchNormalization):
                _bn_types(node)
                return False
            inp = node.get_input_variable().type.precision
            if _special_weights(node):
                _special_accumulator(node, inp)
            elif isinstance(node, Activation):
                _record(node, "result_t", inp, f"{node.get_attr('activation')} of the input: its type is exact")
            elif node.get_attr("pool_op") == "Average":
                area = (
                    node.get_attr("in_height") * node.get_attr("in_width")
                    if isinstance(node, GlobalPooling2D)
                    else node.get_attr("pool_height") * node.get_attr("pool_width")
                )
                _average_types(node, inp, int(area))
            else:
                for type_name in ("accum_t", "result_t"):
                    if type_name in node.types and _unspecified(node.types[type_name].precision):
                        _record(node, type_name, inp, "maximum of input values: the input's type is exact")
            return True

    return ExactPrecision


def register_precision_pass() -> None:
    """Register the pass with the Vivado and Vitis backends, before hls4ml's own precision inference."""
    import hls4ml  # hls4ml: ~0.3 s to import

    for backend_name in BACKENDS:
        backend = hls4ml.backends.get_backend(backend_name)
        register_before_precision_inference(backend, f"{backend_name.lower()}:{PASS_NAME}", _pass_class())


def precision_report(graph, config: dict) -> list[dict]:
    """Per hls4ml layer: every type with its precision and who chose it (quantizer/config, hls4ml, ftflow)."""
    layer_config = config.get("LayerName", {})
    rows = []
    for node in graph.get_layers():
        ours = node.get_attr(ATTR) or {}
        asked = layer_config.get(node.name, {}).get("Precision", {})
        asked = asked if isinstance(asked, dict) else {"default": asked}
        types = {}
        for type_name, named in node.types.items():
            key = type_name.removesuffix("_t")
            if type_name in ours:
                types[type_name] = {"set_by": "ftflow", **ours[type_name]}
                continue
            source = "config" if asked.get(key, "auto") != "auto" else "hls4ml"
            if node.name not in layer_config:
                source = "hls4ml (inserted layer)"
            types[type_name] = {"precision": str(named.precision), "set_by": source}
        rows.append({"layer": node.name, "class": node.class_name, "types": types})
    return rows


def inexact_layers(rows: list[dict]) -> list[dict]:
    """The layers whose ftflow-set types cannot be exact (rows of ``precision_report``), with the reason."""
    return [
        {"layer": row["layer"], "type": name, "reason": t["reason"]}
        for row in rows
        for name, t in row["types"].items()
        if t.get("set_by") == "ftflow" and not t.get("exact", True)
    ]


def fidelity_report(graph, config: dict) -> dict:
    """What convert writes to precision_report.json: every layer's types, the inexact ones, the wrap risks."""
    rows = precision_report(graph, config)
    return {"layers": rows, "inexact": inexact_layers(rows), "wrap_risks": wrap_risks(graph)}


def _range(precision) -> tuple[float, float] | None:
    """Smallest and largest value of a fixed/integer type (None for other types)."""
    if not _is_fixed(precision):
        return None
    frac = precision.width - precision.integer
    if precision.signed:
        return -(2.0 ** (precision.integer - 1)), 2.0 ** (precision.integer - 1) - 2.0**-frac
    return 0.0, 2.0**precision.integer - 2.0**-frac


def wrap_risks(graph) -> list[dict]:
    """Dense/Conv layers whose accumulator (or result) type cannot hold the worst-case sum over every input the
    input type allows, with the integer bits that would be safe: they can wrap on inputs other than the test set."""
    risks = []
    for node in graph.get_layers():
        if "weight" not in node.weights or "accum_t" not in node.types:
            continue
        inp = node.get_input_variable().type.precision
        if _range(inp) is None:
            continue
        worst_lo, worst_hi = sum_range(node, inp)
        for type_name in ("accum_t", "result_t"):
            held = _range(node.types[type_name].precision)
            if held is None or (held[0] <= worst_lo and worst_hi <= held[1]):
                continue
            safe = _integer_bits(worst_lo, worst_hi)
            risks.append({
                "layer": node.name, "type": type_name, "precision": str(node.types[type_name].precision),
                "worst_case": [worst_lo, worst_hi], "safe_integer_bits": safe,
            })  # fmt: skip
    return risks
