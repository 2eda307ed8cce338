"""Trace hls4ml layers into da4ml fixed-point arrays with hls4ml io_parallel semantics (ap_fixed casts included),
one layer at a time, as units: a convolution or pooling pixel, a correction pixel, an activation or addition
element, a whole Dense layer. Each distinct unit becomes one Verilog module (see flow/hardware/rtl.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from flow.errors import FlowError

ROUNDING = {"TRN": "TRN", "RND": "RND"}  # da4ml's own; RND_CONV is built from truncations below
SATURATION = {"WRAP": "WRAP", "SAT": "SAT", "SAT_SYM": "SAT_SYM"}
SUPPORTED = (
    "Dense, Conv2D, MaxPooling2D, Activation (relu, linear), Correction (min, range, vote, clip), Merge (add), Reshape"
)


@dataclass(frozen=True)
class Unit:
    """A piece of a layer: ``fn`` maps the layer's input elements ``inputs`` (a flat da4ml array) to consecutive
    output elements. Units of one layer with equal ``key`` compute the same function of their inputs, so one
    Verilog module serves them all (every interior pixel of a convolution, every element of an activation)."""

    key: tuple
    inputs: np.ndarray
    fn: Callable


def kif(precision) -> tuple[int, int, int]:
    """(signed, integer bits without the sign, fraction bits) of an hls4ml fixed-point precision."""
    k = int(bool(precision.signed))
    return k, int(precision.integer) - k, int(precision.width) - int(precision.integer)


def modes(precision) -> tuple[str, str]:
    """(rounding, overflow) mode names of an hls4ml precision; ap_fixed's defaults TRN and WRAP when unset."""
    rounding = getattr(precision, "rounding_mode", None) or "TRN"
    return str(rounding), str(getattr(precision, "saturation_mode", None) or "WRAP")


def cast(x, precision, where: str):
    """``x`` cast to an ap_fixed/ap_ufixed type with its rounding and overflow modes, bit for bit."""
    k, i, f = kif(precision)
    rounding, saturation = modes(precision)
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


def _correction(layer) -> list[Unit]:
    """One unit per pixel (the bounds are per channel, so all pixels alike): the pixel's channels of every input."""
    a = layer.attributes
    shapes = [layer.get_input_variable(v).shape for v in layer.inputs]
    channels = [int(shape[-1]) for shape in shapes]
    starts = np.cumsum([0, *(int(np.prod(shape)) for shape in shapes)])[:-1]
    ends = np.cumsum(channels).tolist()

    def pixel(x):
        return _merge(layer, [x[end - c : end] for end, c in zip(ends, channels, strict=True)])

    def inputs(p: int) -> np.ndarray:
        return np.concatenate([np.arange(s + p * c, s + (p + 1) * c) for s, c in zip(starts, channels, strict=True)])

    return [Unit(("pixel",), inputs(p), pixel) for p in range(int(a["n_pixels"]))]


def _merge(layer, inputs):
    """The template's merge of one pixel: stacked channels (originals, then copies), src rows, policy, clip."""
    a = layer.attributes
    n_sources = int(a["n_sources"])
    stacked = np.concatenate([x.reshape(1, -1) for x in inputs], axis=1)
    src = np.asarray(layer.weights["src"].data, dtype=np.int64).reshape(-1, n_sources)
    first, mid, last = (_select(stacked, src[:, j]) for j in (0, min(1, n_sources - 1), n_sources - 1))
    lo, hi = (_bounds(layer, name) for name in ("lo", "hi"))
    policy = str(a["policy"])
    if policy == "vote":
        out = np.maximum(np.minimum(first, mid), np.minimum(np.maximum(first, mid), last))  # median of three
    elif policy == "range":
        out = _range_merge(first, last, lo, hi)
    else:
        out = np.minimum(np.minimum(first, mid), last)
    if a.get("clip"):  # out = lo / hi on assignment: the bounds have the input's type, so no rounding happens
        out = np.minimum(np.maximum(out, lo), hi)
    return out


def _select(stacked, index: np.ndarray):
    """Stacked channels ``index`` of a (1, n) pixel; an index past them (a faulty source word) reads constant 0,
    the unused inputs of the source multiplexer in nnet_correction.h. The source words are constants of the
    design, like the weights: a faulty word is a design traced from the faulty graph."""
    n = stacked.shape[1]
    if np.all(index < n):
        return stacked[:, index]
    padded = np.concatenate([stacked, stacked[:, :1] * 0.0], axis=1)
    return padded[:, np.minimum(index, n)]


def _bounds(layer, name: str) -> np.ndarray:
    """The bound array ``name`` as the kernel holds it: the weight values converted to the bound type (the
    correction's input type) with its rounding and overflow modes, as ap_fixed's constructor does."""
    precision = layer.weights[name].type.precision
    k, i, f = kif(precision)
    scaled = np.asarray(layer.weights[name].data, dtype=np.float64) * 2.0**f
    rounding, saturation = modes(precision)
    ints = {"RND": np.floor(scaled + 0.5), "RND_CONV": np.rint(scaled)}.get(rounding, np.floor(scaled))
    low, high = (-(2 ** (i + f)) if k else 0), 2 ** (i + f) - 1
    if saturation == "WRAP":
        return ((ints - low) % (high - low + 1) + low) * 2.0**-f
    return np.clip(ints, -high if k and saturation == "SAT_SYM" else low, high) * 2.0**-f  # SAT_SYM: -max, not min


def _range_merge(first, last, lo: np.ndarray, hi: np.ndarray):
    """The copy inside [lo, hi] when exactly one is; otherwise the minimum (nnet_correction.h, policy range).
    Selections are sign-bit multiplexers: x - lo < 0 means below, hi - x < 0 means above."""
    shape = first.shape
    a, b = first.ravel(), last.ravel()
    lo_all, hi_all = np.broadcast_to(lo, shape).ravel(), np.broadcast_to(hi, shape).ravel()
    out = []
    for x, y, low, high in zip(a._vars, b._vars, lo_all, hi_all, strict=True):
        smaller = x.min_of(y)

        def unless_y_inside(inside, outside, y=y, low=low, high=high):
            return (y - low).msb_mux(outside, (high - y).msb_mux(outside, inside))

        x_inside = unless_y_inside(smaller, x)  # x in range: x if y is out, else the minimum
        x_outside = unless_y_inside(y, smaller)  # x out of range: y if y is in, else the minimum
        out.append((x - low).msb_mux(x_outside, (high - x).msb_mux(x_outside, x_inside)))
    return type(first)(np.array(out, dtype=object).reshape(shape), first.solver_options)


def _conv2d(layer) -> list[Unit]:
    """hls4ml io_parallel Conv2D, one unit per output pixel: the (zero-padded) window times the kernel plus bias,
    in accum_t; padding taps are left out (a zero input adds nothing), so border pixels are units of their own."""
    a = layer.attributes
    fh, fw, c_in = int(a["filt_height"]), int(a["filt_width"]), int(a["n_chan"])
    weight = np.asarray(layer.weights["weight"].data, dtype=np.float64).reshape(fh * fw * c_in, -1)
    bias = np.asarray(layer.weights["bias"].data, dtype=np.float64) if "bias" in layer.weights else 0.0
    accum = layer.attributes["accum_t"].precision

    def pixel(rows):
        return lambda x: cast(x @ weight[rows] + bias, accum, f"layer '{layer.name}' accumulator")

    units = []
    for top, left in _corners(layer, fh, fw, pad=True):
        inp, rows = _window(top, left, fh, fw, int(a["in_height"]), int(a["in_width"]), c_in)
        units.append(Unit(("pixel", *rows.tolist()), inp, pixel(rows)))
    return units


def _corners(layer, fh: int, fw: int, pad: bool) -> list[tuple[int, int]]:
    """(top, left) input coordinates of every output pixel's window, row by row."""
    a = layer.attributes
    top, left = (int(a["pad_top"]), int(a["pad_left"])) if pad else (0, 0)
    return [(oh * int(a["stride_height"]) - top, ow * int(a["stride_width"]) - left)
            for oh in range(int(a["out_height"])) for ow in range(int(a["out_width"]))]  # fmt: skip


def _window(top: int, left: int, fh: int, fw: int, h_in: int, w_in: int, c_in: int):
    """(flat input indices, flat kernel rows) of the taps of a window that fall inside the input."""
    inp, rows = [], []
    for kh in range(fh):
        for kw in range(fw):
            h, w = top + kh, left + kw
            if 0 <= h < h_in and 0 <= w < w_in:
                inp += range((h * w_in + w) * c_in, (h * w_in + w + 1) * c_in)
                rows += range((kh * fw + kw) * c_in, (kh * fw + kw + 1) * c_in)
    return np.array(inp), np.array(rows)


def _max_pooling2d(layer) -> list[Unit]:
    """Unpadded max pooling, one unit per output pixel (the channels' maxima over the window)."""
    a = layer.attributes
    if str(a.get("pool_op", "Max")) != "Max" or any(
        int(a[p]) for p in ("pad_top", "pad_bottom", "pad_left", "pad_right")
    ):
        raise FlowError(f"rtl: layer '{layer.name}': only unpadded max pooling is supported")
    ph, pw, c = int(a["pool_height"]), int(a["pool_width"]), int(a["n_filt"])

    def pixel(x):
        window = x.reshape(ph * pw, c)
        best = window[0]
        for tap in range(1, ph * pw):
            best = np.maximum(best, window[tap])
        return best

    return [Unit(("pixel", ph, pw, c), _window(top, left, ph, pw, int(a["in_height"]), int(a["in_width"]), c)[0],
                 pixel) for top, left in _corners(layer, ph, pw, pad=False)]  # fmt: skip


def _add(layer) -> list[Unit]:
    if str(layer.attributes.get("op", "add")).lower() != "add":
        raise FlowError(f"rtl: layer '{layer.name}': merge '{layer.attributes.get('op')}' is not supported (add only)")
    n = int(np.prod(layer.get_input_variable(layer.inputs[0]).shape))
    return [Unit(("element",), np.array([j, n + j]), lambda x: x[:1] + x[1:]) for j in range(n)]


def _elementwise(op):
    """Units of one output element each, computing ``op`` (same function for all)."""

    def units(layer) -> list[Unit]:
        n = int(np.prod(layer.get_input_variable().shape))
        return [Unit(("element",), np.array([j]), lambda x: op(layer, [x])) for j in range(n)]

    return units


def _layer(op):
    """One unit: the whole layer (a single input)."""

    def units(layer) -> list[Unit]:
        n = int(np.prod(layer.get_input_variable().shape))
        return [Unit(("layer",), np.arange(n), lambda x: op(layer, [x]))]

    return units


UNITS = {
    "Dense": _layer(_dense),
    "Conv2D": _conv2d,
    "Pooling2D": _max_pooling2d,
    "Activation": _elementwise(_activation),
    "Correction": _correction,
    "Merge": _add,
}


def warm_up() -> None:
    """Trace one small matrix product: da4ml's numba kernels compile (about 2 minutes) and are cached in the
    environment, so the first RTL of a fresh install does not pay for it (``make`` runs this after installing)."""
    from da4ml.trace import FixedVariableArrayInput  # da4ml: ~0.9 s to import

    x = FixedVariableArrayInput((4,)).quantize(0, 1, 4)
    _ = x @ np.array([[0.5, -0.25], [0.75, 0.125], [-1.0, 0.0], [0.25, 0.5]])


def layer_units(layer) -> list[Unit]:
    """The layer as units, in output order: each computes consecutive elements of the output (cast to the
    layer's result type) from some of its input elements (the inputs concatenated)."""
    units = UNITS.get(layer.class_name)
    if units is None:
        raise FlowError(
            f"rtl: layer '{layer.name}' ({layer.class_name}) is not supported by the RTL path yet; "
            f"supported: {SUPPORTED}"
        )
    result = layer.get_output_variable().type.precision

    def with_cast(fn):
        return lambda x: cast(fn(x), result, f"layer '{layer.name}'").ravel()

    return [Unit(u.key, u.inputs, with_cast(u.fn)) for u in units(layer)]
