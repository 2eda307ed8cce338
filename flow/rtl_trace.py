"""Trace hls4ml layers into da4ml fixed-point arrays with hls4ml io_parallel semantics (ap_fixed casts included),
one layer at a time: the RTL of every layer is its own module (see flow/rtl.py)."""

from __future__ import annotations

import numpy as np

from flow.errors import FlowError

ROUNDING = {"TRN": "TRN", "RND": "RND"}  # da4ml's own; RND_CONV is built from truncations below
SATURATION = {"WRAP": "WRAP", "SAT": "SAT", "SAT_SYM": "SAT_SYM"}
SUPPORTED = "Dense, Activation (relu, linear), Correction (min, vote), Merge (add), Reshape"


def kif(precision) -> tuple[int, int, int]:
    """(signed, integer bits without the sign, fraction bits) of an hls4ml fixed-point precision."""
    k = int(bool(precision.signed))
    return k, int(precision.integer) - k, int(precision.width) - int(precision.integer)


def cast(x, precision, where: str):
    """``x`` cast to an ap_fixed/ap_ufixed type with its rounding and overflow modes, bit for bit."""
    k, i, f = kif(precision)
    rounding = str(getattr(precision, "rounding_mode", None) or "TRN")
    saturation = str(getattr(precision, "saturation_mode", None) or "WRAP")
    if saturation not in SATURATION:
        raise FlowError(f"rtl: {where}: overflow mode {saturation} is not supported (allowed: {', '.join(SATURATION)})")
    if rounding == "RND_CONV":
        x = _round_half_even_offset(x, f)
        rounding = "TRN"
    if rounding not in ROUNDING:
        raise FlowError(f"rtl: {where}: rounding mode {rounding} is not supported (allowed: TRN, RND, RND_CONV)")
    return x.quantize(k, i, f, SATURATION[saturation], ROUNDING[rounding])


def _round_half_even_offset(x, f: int):
    """x + (half - e) + g·e, whose truncation to ``f`` fraction bits is round-half-to-even: e is (at most) the
    finest step of x and g the bit of weight 2^-f of x (proof: README, "RTL and synthesis")."""
    kx, ix, fx = (np.asarray(a) for a in x.kif)
    finest = int(fx.max())
    if finest <= f:
        return x  # nothing below the target's last bit: no rounding happens
    big_k, big_i = int(kx.max()), int(ix.max()) + 1
    lsb = x.quantize(big_k, big_i, f, "WRAP", "TRN") - x.quantize(big_k, big_i, f - 1, "WRAP", "TRN")  # g·2^-f
    return x + (2.0 ** (-f - 1) - 2.0**-finest) + lsb * 2.0 ** (f - finest)


def _dense(layer, inputs):
    (x,) = inputs
    weight = np.asarray(layer.weights["weight"].data, dtype=np.float64)
    bias = np.asarray(layer.weights["bias"].data, dtype=np.float64) if "bias" in layer.weights else 0.0
    n_in = x.shape[-1]
    acc = x @ weight.reshape(n_in, -1) + bias
    return cast(acc, layer.attributes["accum_t"].precision, f"layer '{layer.name}' accumulator")


def _activation(layer, inputs):
    (x,) = inputs
    name = str(layer.attributes.get("activation", "linear")).lower()
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "linear":
        return x
    raise FlowError(f"rtl: layer '{layer.name}': activation '{name}' is not supported (allowed: relu, linear)")


def _correction(layer, inputs):
    policy = str(layer.attributes["policy"])
    if policy not in ("min", "vote") or layer.attributes.get("clip"):
        clip = " with clip" if layer.attributes.get("clip") else ""
        raise FlowError(f"rtl: layer '{layer.name}': policy '{policy}'{clip} is not supported yet (allowed: min, vote)")
    stacked = np.concatenate([x.ravel() for x in inputs]) if len(inputs) > 1 else inputs[0]
    src = np.asarray(layer.weights["src"].data, dtype=np.int64).reshape(-1, int(layer.attributes["n_sources"]))
    a, mid, last = stacked[src[:, 0]], stacked[src[:, min(1, src.shape[1] - 1)]], stacked[src[:, -1]]
    if policy == "min":
        return np.minimum(a, last)
    return np.maximum(np.minimum(a, mid), np.minimum(np.maximum(a, mid), last))  # median of three


def _add(layer, inputs):
    if str(layer.attributes.get("op", "add")).lower() != "add":
        raise FlowError(f"rtl: layer '{layer.name}': merge '{layer.attributes.get('op')}' is not supported (add only)")
    return inputs[0] + inputs[1]


OPS = {"Dense": _dense, "Activation": _activation, "Correction": _correction, "Merge": _add}


def trace_layer(layer, inputs):
    """The layer's output (cast to its result type) from its inputs, all da4ml arrays."""
    op = OPS.get(layer.class_name)
    if op is None:
        raise FlowError(
            f"rtl: layer '{layer.name}' ({layer.class_name}) is not supported by the RTL path yet; "
            f"supported: {SUPPORTED}"
        )
    return cast(op(layer, inputs), layer.get_output_variable().type.precision, f"layer '{layer.name}'")
