"""Analytic FPGA resource and latency estimate of an hls4ml ModelGraph (``estimate.method: analytic``).

Starts from hls4ml's own estimator (optimization/dsp_aware_pruning/objectives/vivado_objectives.py): a layer
needs ``weights / reuse_factor`` multipliers (hls4ml's ``multiplier_limit`` also drops zero weights, which HLS
removes when weights are constants), a multiplier is a DSP only from 9-bit weights, and the Resource strategy
keeps ``weights * width / (reuse * 36)`` BRAM_18K. Everything added to that is a constant below, with its
reason; the README section "Resource estimates" lists them. Duplicated copies are separate layers in the graph,
so they are counted as separate hardware. The numbers are estimates for comparing variants, not sign-off.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from flow.hardware.calibration import basis, calibrated_lut, check_domain, features, load_calibration

RESOURCE_KEYS = ("LUT", "FF", "DSP", "BRAM_18K")

DSP_MIN_WIDTH = 9  # hls4ml: a multiplier with an operand narrower than 9 bits is built from LUTs
DSP_PORTS = {"7series": (25, 18), "ultrascale": (27, 18)}  # DSP48E1 / DSP48E2 multiplier port widths
ULTRASCALE_PREFIXES = ("xczu", "xcu", "xcvu", "xcku", "xcvc", "xcve", "xcvp")
LUT_PER_PRODUCT_BIT = 0.5  # generic LUT multiplier: one LUT6 per two partial-product bits (radix-4 Booth)
LUT_PER_ADDER_BIT = 1  # a carry-chain adder or comparator costs one LUT per bit
FF_PER_ADDER_BIT = 0.5  # HLS registers about every second adder level of a pipelined tree
MUX_INPUTS_PER_LUT = 4  # a LUT6 is a 4:1 multiplexer
BRAM_WORD_BITS = 36  # hls4ml's formula: a BRAM_18K as 512 x 36
BRAM_DEPTH = 512
LUTRAM_MAX_BITS = 1024  # smaller memories are distributed RAM/ROM: 64 bits per LUT
LUTRAM_BITS_PER_LUT = 64
SRL_BITS_PER_LUT = 32  # line buffers of io_stream convolutions: SRLC32E shift registers
# per protected element, comparators + multiplexers (each one LUT per bit) of the correction policies
CORRECTION_LUT_PER_BIT = {"min": 2, "range": 7, "vote": 5}  # min: 1 cmp + 1 mux; range: 4 bound cmps + min +
CLIP_LUT_PER_BIT = 3  # 2 muxes; vote (median of 3): 3 cmps + 2 muxes; clip: 2 cmps + 1 mux
# latency: one multiplier and ceil(log2(terms)) adder levels must fit the clock period, plus an output register
MULT_NS = {"dsp": 3.0, "lut": 2.0}
ADDER_NS = 1.0


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    kind: str
    LUT: int
    FF: int
    DSP: int
    BRAM_18K: int
    multipliers: int
    latency_cycles: int  # first input to last output of this layer
    ii_cycles: int  # initiation interval of this layer
    depth_cycles: int  # pipeline depth (latency of one pass through the datapath)


def part_family(part: str) -> str:
    return "ultrascale" if part.lower().startswith(ULTRASCALE_PREFIXES) else "7series"


def csd_digits(value: int) -> int:
    """Non-zero digits of ``value`` in canonical signed-digit form (adders of a constant multiplier, plus one)."""
    n, digits = abs(int(value)), 0
    while n:
        if n & 1:
            digits += 1
            n = n + 1 if (n & 3) == 3 else n - 1
        n >>= 1
    return digits


def dsp_per_multiplier(width_a: int, width_b: int, family: str) -> int:
    """DSP slices of one ``width_a x width_b`` multiplier: 0 below 9 bits, else tiles of the DSP's ports."""
    if min(width_a, width_b) < DSP_MIN_WIDTH:
        return 0
    long_port, short_port = DSP_PORTS[family]
    wide, narrow = max(width_a, width_b), min(width_a, width_b)
    return math.ceil(wide / long_port) * math.ceil(narrow / short_port)


def memory_cost(bits: int, words: int) -> tuple[int, int]:
    """(LUT, BRAM_18K) of a memory of ``words`` words holding ``bits`` bits in all."""
    if bits <= LUTRAM_MAX_BITS:
        return math.ceil(bits / LUTRAM_BITS_PER_LUT), 0
    width = math.ceil(bits / max(words, 1))
    return 0, math.ceil(width / BRAM_WORD_BITS) * math.ceil(words / BRAM_DEPTH)


def _width(type_attr) -> int:
    return int(type_attr.precision.width)


def _depth_cycles(terms: int, kind: str, clock_ns: float) -> int:
    levels = math.ceil(math.log2(max(terms, 2)))
    return math.ceil((MULT_NS[kind] + levels * ADDER_NS) / clock_ns) + 1


def _weight_digits(precision, values: np.ndarray, width: int) -> np.ndarray:
    """Integer codes of the constant weights (csd digits of each = its shift-and-add cost): fixed/integer words
    scaled to integers; po2 weights are one shift (one signed digit); binary (xnor) weights are +-1."""
    from hls4ml.model.types import ExponentPrecisionType, XnorPrecisionType  # hls4ml: ~0.3 s to import

    if isinstance(precision, ExponentPrecisionType):
        return np.sign(values).astype(np.int64)
    if isinstance(precision, XnorPrecisionType):
        return np.where(values > 0, 1, -1).astype(np.int64)
    return np.rint(values * 2.0 ** (width - int(precision.integer))).astype(np.int64)


def _matmul(layer, family: str, clock_ns: float, io_stream: bool) -> LayerEstimate:
    """Dense and Conv layers: hls4ml's dense kernel per output pixel (Latency or Resource strategy)."""
    attrs = layer.attributes
    weight = layer.weights["weight"]
    w_w, w_x, w_acc = _width(attrs["weight_t"]), _width(layer.get_input_variable().type), _width(attrs["accum_t"])
    w_out = _width(layer.get_output_variable().type)
    values = np.asarray(weight.data, dtype=np.float64)
    n_out_chan = int(attrs.get("n_filt", attrs.get("n_out")))
    n_in = values.size // n_out_chan
    rf = int(attrs["reuse_factor"])
    resource = str(attrs.get("strategy", "latency")).lower() == "resource"
    conv = "n_filt" in attrs
    pf = int(attrs.get("parallelization_factor", 1)) if conv and not io_stream else 1
    ints = _weight_digits(attrs["weight_t"].precision, values, w_w)
    nonzero = int(np.count_nonzero(ints))
    bias = np.asarray(layer.weights["bias"].data) if "bias" in layer.weights else np.zeros(n_out_chan)

    lut = ff = 0.0
    dsp = bram = 0
    if rf == 1 and not resource:  # constant-coefficient multipliers, zeros removed (hls4ml multiplier_limit)
        multipliers = nonzero * pf
        per_mult_dsp = dsp_per_multiplier(w_w, w_x, family)
        if per_mult_dsp:
            dsp = multipliers * per_mult_dsp
        else:  # shift-and-add: (csd digits - 1) adders of the product width per weight
            lut += pf * sum(max(csd_digits(v) - 1, 0) for v in ints.ravel()) * (w_x + w_w) * LUT_PER_ADDER_BIT
        terms = nonzero + int(np.count_nonzero(bias))
        adder_bits = max(terms - n_out_chan, 0) * w_acc * pf
    else:  # shared generic multipliers, weights read from a memory (Resource) or a ROM in logic (Latency)
        zeros_removed = 0 if resource else (values.size - nonzero) // rf  # constants: hls4ml multiplier_limit
        multipliers = (math.ceil(values.size / rf) - zeros_removed) * pf
        per_mult_dsp = dsp_per_multiplier(w_w, w_x, family)
        dsp = multipliers * per_mult_dsp
        if not per_mult_dsp:
            lut += multipliers * w_w * w_x * LUT_PER_PRODUCT_BIT
        mem_lut, bram = memory_cost(values.size * w_w, rf)
        lut += mem_lut + multipliers * w_x * math.ceil(rf / MUX_INPUTS_PER_LUT)  # operand select
        adder_bits = multipliers * w_acc  # one accumulator per multiplier
        ff += multipliers * w_acc
    lut += adder_bits * LUT_PER_ADDER_BIT
    ff += adder_bits * FF_PER_ADDER_BIT

    outputs = int(np.prod(layer.get_output_variable().shape))
    kind = "dsp" if per_mult_dsp else "lut"
    depth = _depth_cycles(n_in + 1, kind, clock_ns)
    if conv:
        in_pixels = int(np.prod([attrs[k] for k in ("in_height", "in_width") if k in attrs]))
        window = int(np.prod([attrs[k] for k in ("filt_height", "filt_width") if k in attrs]))
        if io_stream:  # line buffer (SRL) + window registers; one input pixel per reuse_factor cycles
            rows = int(attrs.get("filt_height", 1)) - 1
            line_bits = rows * int(attrs.get("in_width", 1)) * int(attrs["n_chan"]) * w_x
            lut += math.ceil(line_bits / SRL_BITS_PER_LUT)
            ff += window * int(attrs["n_chan"]) * w_x
            iterations = in_pixels
        else:  # im2col buffer filled per partition through an n_partitions:1 multiplexer
            iterations = int(attrs["n_partitions"])
            lut += n_in * pf * w_x * math.ceil(iterations / MUX_INPUTS_PER_LUT) if iterations > 1 else 0
            ff += outputs * w_out
    else:
        iterations = 1
        ff += 0 if io_stream else outputs * w_out
    ii = iterations * rf
    return LayerEstimate(
        layer.name, layer.class_name, math.ceil(lut), math.ceil(ff), int(dsp), int(bram),
        int(multipliers), ii + depth, ii, depth,
    )  # fmt: skip


def _elementwise(layer, io_stream: bool, lut_per_bit: float, elements: int | None = None) -> LayerEstimate:
    """Activations, pooling, Add and correction: comparators/adders/multiplexers per element, one output register.
    io_stream builds the logic of one pixel (its channels) and streams the pixels through it, unregistered."""
    out = layer.get_output_variable()
    width = _width(out.type)
    n_out = int(np.prod(out.shape))
    elements = n_out if elements is None else elements
    pixels = int(np.prod(out.shape[:-1])) if len(out.shape) > 1 else 1
    ii = pixels if io_stream else 1
    built = math.ceil(elements / pixels) if io_stream else elements
    return LayerEstimate(
        layer.name, layer.class_name, math.ceil(built * lut_per_bit * width),
        0 if io_stream else n_out * width, 0, 0, 0, ii + 1, ii, 1,
    )  # fmt: skip


def _pooling(layer, io_stream: bool) -> LayerEstimate:
    """Max: a comparator and a multiplexer per bit for each of the window's values but the first; Average: an
    adder per bit, then the scaling by 1/window (a constant multiplier: csd digits - 1 adders, none for a power of
    two). A global pooling's window is its whole input map; at io_stream it keeps one running result per channel
    (one step per value, the map's pixels streamed through it)."""
    attrs = layer.attributes
    average = str(attrs.get("pool_op", "Max")).lower() == "average"
    width = _width(layer.get_output_variable().type)
    if layer.class_name.startswith("Global"):
        window = int(np.prod([attrs[k] for k in ("in_height", "in_width") if k in attrs]) or 1)
        steps = 1 if io_stream else window - 1
    else:
        window = int(np.prod([attrs[k] for k in ("pool_height", "pool_width") if k in attrs]) or 1)
        steps = window - 1
    per_bit = steps * LUT_PER_ADDER_BIT * (1 if average else 2)
    if average and window & (window - 1):
        per_bit += max(csd_digits(round(2**width / window)) - 1, 0) * LUT_PER_ADDER_BIT
    est = _elementwise(layer, io_stream, per_bit)
    if not (io_stream and layer.class_name.startswith("Global")):
        return est
    n_chan, ii = int(attrs.get("n_filt", 1)), window  # one accumulator register per channel, a pixel per cycle
    return dataclasses.replace(est, FF=n_chan * width, latency_cycles=ii + 1, ii_cycles=ii)


def estimate_layer(layer, family: str, clock_ns: float, io_stream: bool) -> LayerEstimate | None:
    """One layer's estimate; None for layers that are wiring only (input, reshape/flatten)."""
    cls = layer.class_name
    attrs = layer.attributes
    if "weight" in layer.weights and cls in ("Dense", "Conv1D", "Conv2D", "PointwiseConv2D", "PointwiseConv1D"):
        return _matmul(layer, family, clock_ns, io_stream)
    if cls in ("Input", "Reshape", "Transpose"):
        return None
    if cls == "Correction":
        protected = int(attrs["n_pixels"]) * int(attrs["n_copy"])
        per_bit = CORRECTION_LUT_PER_BIT[str(attrs["policy"])] + (CLIP_LUT_PER_BIT if attrs.get("clip") else 0)
        return _elementwise(layer, io_stream, per_bit, protected)
    if cls in ("Pooling2D", "Pooling1D", "GlobalPooling2D", "GlobalPooling1D"):
        return _pooling(layer, io_stream)
    if cls == "Merge":
        return _elementwise(layer, io_stream, LUT_PER_ADDER_BIT)
    return _elementwise(layer, io_stream, LUT_PER_ADDER_BIT)  # activations: compare + saturate per element


def critical_path(graph, cycles: dict[str, int]) -> int:
    """Longest path through the graph, each layer weighing ``cycles[name]`` (0 if absent): parallel branches such
    as a layer and its copies overlap, as they do in an HLS dataflow region or pipeline."""
    produced_by = {out: layer.name for layer in graph.get_layers() for out in layer.outputs}
    finish: dict[str, int] = {}
    for layer in graph.get_layers():
        start = max((finish[produced_by[i]] for i in layer.inputs if i in produced_by), default=0)
        finish[layer.name] = start + cycles.get(layer.name, 0)
    return max(finish.values(), default=0)


def estimate_graph(graph, part: str, clock_ns: float, calibration: str | Path | None = None) -> dict:
    """Per-layer and total resources and the latency of an hls4ml ModelGraph (``method: analytic``), the LUTs
    calibrated to yosys (``calibration``: a file, default the shipped one) and whether each layer and the design
    lie in the domain the calibration was measured on (``add_domain``)."""
    io_stream = graph.config.get_config_value("IOType") == "io_stream"
    family = part_family(part)
    layers = [e for e in (estimate_layer(layer, family, clock_ns, io_stream) for layer in graph.get_layers()) if e]
    total = {key: int(sum(getattr(e, key) for e in layers)) for key in RESOURCE_KEYS}
    dataflow = str(getattr(graph.config, "pipeline_style", "pipeline")) == "dataflow" or io_stream
    ii = max(e.ii_cycles for e in layers)
    depth = critical_path(graph, {e.name: e.depth_cycles for e in layers})
    if io_stream:  # layers overlap: the slowest stage sets the pace, every stage on the path adds its depth
        cycles = ii + depth
    elif dataflow:  # arrays: a layer starts when its inputs are complete
        cycles = critical_path(graph, {e.name: e.latency_cycles for e in layers})
    else:  # one pipeline
        cycles = depth + ii - 1
    result = {
        "method": "analytic",
        "part": part,
        "family": family,
        "clock_period_ns": clock_ns,
        "io_type": "io_stream" if io_stream else "io_parallel",
        "pipeline_style": "dataflow" if dataflow else "pipeline",
        "layers": [asdict(e) for e in layers],
        "total": total,
        "multipliers": int(sum(e.multipliers for e in layers)),
        "latency": {
            "cycles": int(cycles),
            "ns": round(cycles * clock_ns, 3),
            "ii_cycles": int(ii),
        },
    }
    data = load_calibration(calibration)
    if data:  # what yosys would report for the da4ml RTL of this graph (flow/hardware/calibration.py)
        result["yosys_calibrated"] = {"LUT": calibrated_lut(basis(graph, result), data["factors"])}
        add_domain(result, graph, data.get("domain"))
    return result


def add_domain(result: dict, graph, domain: dict | None) -> None:
    """Flag each layer (``in_domain``, ``out_of_domain``: reasons) and the design (the same keys at the top) by the
    calibration domain: outside it the analytic formulas were never compared with yosys and the calibrated LUTs
    are an extrapolation."""
    check = check_domain(features(graph, result), result["io_type"], result["total"]["LUT"], domain)
    for layer in result["layers"]:
        reasons = check["layers"].get(layer["name"], [])
        layer.update(in_domain=check["known"] and not reasons, out_of_domain=reasons)
    result.update(in_domain=check["known"] and not check["design"], out_of_domain=check["design"])


def utilisation(total: dict, capacity: dict) -> dict:
    """Per resource, % of the board's capacity, and whether everything fits (None without capacities)."""
    if not capacity:
        return {"percent": {}, "fits": None, "over": []}
    percent = {key: round(100.0 * total[key] / capacity[key], 2) for key in RESOURCE_KEYS}
    over = [key for key in RESOURCE_KEYS if total[key] > capacity[key]]
    return {"percent": percent, "fits": not over, "over": over}
