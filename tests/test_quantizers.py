"""Every supported QKeras weight quantizer (quantized_bits, quantized_po2, ternary, binary) through every weight-fault
step: word formats by hand, C-sim vs QKeras bit for bit, C-sim faults vs Keras emulation, first-order and fi
ranking, and clear refusals of what cannot be bit-exact."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from flow.errors import FlowError
from flow.fixedpoint import (
    BinaryFormat,
    FaultKind,
    FixedFormat,
    Po2Format,
    TernaryFormat,
    format_of_quantizer,
    po2_exact_exponents,
)

KINDS = (FaultKind.FLIP, FaultKind.STUCK0, FaultKind.STUCK1)
NAMES = ("bits", "po2", "ternary", "binary")
# hls4ml infers no accumulator/result precision for exponent (po2) and xnor (binary) weights: they get the model's
# default precision, fixed<16,6> unless configured, which truncates po2 products and wraps binary sums.
DEFAULT_PRECISION = {"po2": "fixed<32,16>", "binary": "fixed<32,16>"}


# ---- word formats, by hand ----


@pytest.mark.parametrize("exp_bits", range(2, 9))
def test_po2_every_word_every_bit(exp_bits):
    """Word = sign field (bit exp_bits, 1 = +) and the exponent's two's-complement bits 0..exp_bits-1."""
    fmt = Po2Format(exp_bits)
    assert fmt.width == exp_bits + 1 and fmt.hls_type == f"struct {{ap_uint<1> sign; ap_int<{exp_bits}> weight;}}"

    def by_hand(word: int) -> float:
        field = word & ((1 << exp_bits) - 1)
        exponent = field - (1 << exp_bits) if field >= 1 << (exp_bits - 1) else field
        return (1.0 if word >> exp_bits else -1.0) * 2.0**exponent

    words = np.arange(1 << fmt.width)
    values = np.array([by_hand(int(w)) for w in words])
    np.testing.assert_array_equal(fmt.from_word(words), values)
    np.testing.assert_array_equal(fmt.to_word(values), words)
    for bit in range(fmt.width):
        mask = 1 << bit
        for kind, faulty in (
            (FaultKind.FLIP, words ^ mask),
            (FaultKind.STUCK0, words & ~mask),
            (FaultKind.STUCK1, words | mask),
        ):
            np.testing.assert_array_equal(fmt.inject(values, bit, kind), [by_hand(int(w)) for w in faulty])


@pytest.mark.parametrize(
    "value, bit, kind, expected",
    [
        (0.25, 0, FaultKind.FLIP, 0.5),  # +2**-2: sign 1, exponent 1110 -> 1111 = -1
        (0.25, 3, FaultKind.FLIP, 64.0),  # 1110 -> 0110 = 6
        (0.25, 4, FaultKind.FLIP, -0.25),  # the sign field
        (0.25, 4, FaultKind.STUCK0, -0.25),
        (0.25, 4, FaultKind.STUCK1, 0.25),
        (-1.0, 3, FaultKind.STUCK1, -(2.0**-8)),  # 0000 -> 1000 = -8
        (-1.0, 0, FaultKind.STUCK1, -2.0),  # 0000 -> 0001
        (2.0**-8, 3, FaultKind.FLIP, 1.0),  # 1000 -> 0000
        (2.0**7, 2, FaultKind.STUCK0, 8.0),  # 0111 -> 0011
    ],
)
def test_po2_hand_computed_words(value, bit, kind, expected):
    assert Po2Format(4).inject(value, bit, kind) == expected


# every representable word, every bit, every fault kind: ternary kernel codes -1 = 11, 0 = 00, +1 = 01; the fourth
# code 10 (ap_int -2) multiplies as +1 (nnet::product::weight_ternary: neither 0 nor -1)
TERNARY = {
    (-1, 0, "flip"): 1, (-1, 1, "flip"): 1, (-1, 0, "stuck0"): 1, (-1, 1, "stuck0"): 1,
    (-1, 0, "stuck1"): -1, (-1, 1, "stuck1"): -1,
    (0, 0, "flip"): 1, (0, 1, "flip"): 1, (0, 0, "stuck0"): 0, (0, 1, "stuck0"): 0,
    (0, 0, "stuck1"): 1, (0, 1, "stuck1"): 1,
    (1, 0, "flip"): 0, (1, 1, "flip"): -1, (1, 0, "stuck0"): 0, (1, 1, "stuck0"): 1,
    (1, 0, "stuck1"): 1, (1, 1, "stuck1"): -1,
}  # fmt: skip


def test_ternary_kernel_words_by_hand():
    fmt = TernaryFormat()
    assert fmt.width == 2
    np.testing.assert_array_equal(fmt.to_word([-1.0, 0.0, 1.0]), [0b11, 0b00, 0b01])
    np.testing.assert_array_equal(fmt.from_word([0b00, 0b01, 0b10, 0b11]), [0, 1, 1, -1])
    for (value, bit, kind), expected in TERNARY.items():
        assert fmt.inject(float(value), bit, FaultKind(kind)) == expected, (value, bit, kind)
    with pytest.raises(FlowError, match="not representable"):
        fmt.to_word(0.5)


def test_binary_kernel_and_ternary_binary_bias_words_by_hand():
    fmt = BinaryFormat()  # ap_uint<1>: 0 = -1, 1 = +1
    assert fmt.width == 1 and list(fmt.to_word([-1.0, 1.0])) == [0, 1]
    assert (fmt.inject(1.0, 0), fmt.inject(-1.0, 0)) == (-1.0, 1.0)
    assert (fmt.inject(1.0, 0, FaultKind.STUCK0), fmt.inject(1.0, 0, FaultKind.STUCK1)) == (-1.0, 1.0)
    assert (fmt.inject(-1.0, 0, FaultKind.STUCK0), fmt.inject(-1.0, 0, FaultKind.STUCK1)) == (-1.0, 1.0)
    with pytest.raises(FlowError, match="not representable"):
        fmt.to_word(0.0)
    bias = FixedFormat(2, 2)  # ternary/binary biases: ap_int<2>, added as integers (code 10 = -2)
    assert [bias.inject(1.0, 1), bias.inject(-1.0, 0), bias.inject(0.0, 1), bias.inject(1.0, 0)] == [-1, -2, -2, 0]


def test_formats_of_quantizers():
    from qkeras import binary, quantized_bits, quantized_po2, ternary

    assert format_of_quantizer(quantized_bits(6, 0, alpha=1), "w") == FixedFormat(6, 1)
    assert format_of_quantizer(quantized_po2(4, 1), "w") == Po2Format(4)
    assert format_of_quantizer(quantized_po2(6), "w").width == 7
    for q in (ternary(alpha=1), ternary(), ternary(alpha=1.0, threshold=0.5)):
        assert format_of_quantizer(q, "w") == TernaryFormat()
        assert format_of_quantizer(q, "b", "bias") == FixedFormat(2, 2)
    for q in (binary(alpha=1), binary()):
        assert format_of_quantizer(q, "w") == BinaryFormat()
        assert format_of_quantizer(q, "b", "bias") == FixedFormat(2, 2)


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("max_value", [None, 1, 4])
def test_qkeras_po2_values_are_words(bits, max_value):
    """QKeras' exponents (2**(bits-1-s) values, s = 1 unless max_value <= 1) fit hls4ml's ap_int<bits> field."""
    from qkeras import quantized_po2

    q = quantized_po2(bits, max_value)
    if q._min_exp < -126:  # bits 8, max_value <= 1: 2**-128 is 0 in float32, hls4ml writes log2(0)
        with pytest.raises(FlowError, match=r"reaches 2\*\*-128, below float32's normal range"):
            format_of_quantizer(q, "w")
        return
    floats = np.concatenate([np.geomspace(1e-6, 1e4, 400), -np.geomspace(1e-6, 1e4, 400), [0.0]]).astype(np.float32)
    values = q(floats).numpy().astype(np.float64)
    fmt = format_of_quantizer(q, "w")
    np.testing.assert_array_equal(fmt.from_word(fmt.to_word(values)), values)
    assert np.log2(np.abs(values)).min() == q._min_exp


def test_po2_exact_exponents():
    """hls4ml's r_T = ap_fixed<2(W+X), W+X>: W+X fractional bits, so x with X-I fractional bits allows e >= -(W+I)."""
    assert po2_exact_exponents(4, 9, 1) == (-5, 11)  # the input ufixed<9,1>: 2**-6 already truncates
    assert po2_exact_exponents(4, 6, 2) == (-6, 7)  # quantized_relu(6,2): the whole field -8..7 but -8, -7
    assert po2_exact_exponents(3, 9, 1) == (-4, 10)  # ap_int<3> -4..3: every word exact


# ---- refusals ----


def _one_layer(kernel_quantizer, bias_quantizer=None):
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    inp = tf.keras.layers.Input((4,))
    bias_quantizer = bias_quantizer or quantized_bits(8, 3, alpha=1)
    out = QDense(3, kernel_quantizer=kernel_quantizer, bias_quantizer=bias_quantizer, name="fc")(inp)
    return tf.keras.Model(inp, out)


def _refused_cases():
    from qkeras import (
        binary,
        quantized_bits,
        quantized_po2,
        quantized_relu,
        stochastic_binary,
        stochastic_ternary,
        ternary,
    )

    bits = quantized_bits(6, 0, alpha=1)
    return [
        (stochastic_ternary(), None, r"layer 'fc' kernel \(stochastic_ternary.*quantizer stochastic_ternary is not"),
        (stochastic_binary(), None, r"layer 'fc' kernel \(stochastic_binary.*quantizer stochastic_binary is not"),
        (ternary(), None, r"layer 'fc' kernel .*ternary with alpha='auto_po2'.*write ternary\(alpha=1\)"),
        (binary(alpha="auto"), None, r"layer 'fc' kernel .*binary with alpha='auto'"),
        (ternary(alpha=0.5), None, r"layer 'fc' kernel .*ternary with alpha=0.5"),
        (binary(alpha=1, use_01=True), None, r"layer 'fc' kernel .*use_01=True"),
        (bits, quantized_po2(4), r"layer 'fc' bias .*quantized_po2 on a bias"),
        (quantized_po2(4, use_stochastic_rounding=True), None, r"layer 'fc' kernel .*use_stochastic_rounding"),
        (quantized_relu(4, 2), None, r"layer 'fc' kernel .*quantizer quantized_relu is not supported"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_unsupported_quantizers_are_refused_in_one_line(case):
    from flow.emulate import FaultEmulator
    from flow.fixedpoint import SUPPORTED
    from flow.rank import first_order_scores

    kernel, bias, message = _refused_cases()[case]
    model = _one_layer(kernel, bias)
    for run in (lambda: FaultEmulator(model), lambda: first_order_scores(model, np.zeros((2, 4), np.float32))):
        with pytest.raises(FlowError, match=message) as info:
            run()
        assert "\n" not in str(info.value) and str(info.value).endswith(f"bit-level faults support {SUPPORTED}")


# ---- Keras-side emulation of words the quantizer would not keep ----


def test_po2_fault_beyond_qkeras_range_is_emulated_and_the_quantizer_put_back():
    """A po2(4,1) weight 2**-2 whose exponent bit 3 flips becomes 2**6, which QKeras' max_value=1 would clip: the
    emulator passes it through as the C-sim multiplies with it, and gives the layer its own quantizer back."""
    from qkeras import quantized_po2

    from flow.emulate import Fault, FaultEmulator

    model = _one_layer(quantized_po2(4, 1))
    layer = model.get_layer("fc")
    kernel = np.full((4, 3), 0.25, np.float32)
    layer.set_weights([kernel, np.zeros(3, np.float32)])
    x = np.array([[1.0, 0.5, 0.25, 2.0]], np.float32)
    clean = model(x).numpy()
    emulator = FaultEmulator(model)
    with emulator.injected([Fault("fc", "kernel", 1 * 3 + 2, 3)]):  # kernel[1, 2]
        faulty = model(x).numpy()
    expected = clean.copy()
    expected[0, 2] += 0.5 * (64.0 - 0.25)
    np.testing.assert_array_equal(faulty, expected)
    np.testing.assert_array_equal(model(x).numpy(), clean)
    assert type(layer.kernel_quantizer_internal).__name__ == "_Override"
    del emulator
    gc.collect()
    assert type(layer.kernel_quantizer_internal).__name__ == "quantized_po2"
    assert layer.get_config()["kernel_quantizer"]["class_name"] == "quantized_po2"
    first, second = FaultEmulator(model), FaultEmulator(model)  # two at once share one stand-in
    assert layer.kernel_quantizer_internal is first._overrides["fc", "kernel"] is second._overrides["fc", "kernel"]
    first.close()
    with second.injected([Fault("fc", "kernel", 1 * 3 + 2, 3)]):
        np.testing.assert_array_equal(model(x).numpy(), expected)
    second.close()
    assert type(layer.kernel_quantizer_internal).__name__ == "quantized_po2"
    np.testing.assert_array_equal(model(x).numpy(), clean)


def test_ternary_bias_code_minus_two_is_emulated():
    from qkeras import ternary

    from flow.emulate import Fault, FaultEmulator

    model = _one_layer(ternary(alpha=1), ternary(alpha=1))
    model.get_layer("fc").set_weights([np.zeros((4, 3), np.float32), np.array([0.0, 1.0, -1.0], np.float32)])
    emulator = FaultEmulator(model)
    x = np.zeros((1, 4), np.float32)
    for index, bit, expected in [(0, 1, -2.0), (1, 1, -1.0), (2, 0, -2.0), (1, 0, 0.0)]:
        with emulator.injected([Fault("fc", "bias", index, bit)]):
            assert model(x).numpy()[0, index] == expected
    np.testing.assert_array_equal(model(x).numpy()[0], [0.0, 1.0, -1.0])


# ---- the four models: Keras, then C-sim ----


def _quantizers(name: str):
    from qkeras import binary, quantized_bits, quantized_po2, ternary

    return {
        "bits": (lambda: quantized_bits(6, 0, alpha=1), lambda: quantized_bits(8, 3, alpha=1)),
        "po2": (lambda: quantized_po2(4, 1), lambda: quantized_bits(8, 3, alpha=1)),
        "ternary": (lambda: ternary(alpha=1), lambda: ternary(alpha=1)),
        "binary": (lambda: binary(alpha=1), lambda: binary(alpha=1)),
    }[name]


def _build(name: str, seed: int):
    """image 8x8x1 -> QConv2D(4, 3) -> quantized_relu(6, 2) -> Flatten -> QDense(10) logits, the kernels (and the
    logits bias of ternary/binary) quantized by the model's quantizer; random weights."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    kernel_q, bias_q = _quantizers(name)
    layers = tf.keras.layers
    inp = layers.Input((8, 8, 1), name="image")
    x = QConv2D(4, 3, kernel_quantizer=kernel_q(), bias_quantizer=quantized_bits(8, 3, alpha=1), name="conv")(inp)
    x = layers.Flatten(name="flatten")(QActivation(quantized_relu(6, 2), name="relu")(x))
    model = tf.keras.Model(inp, QDense(10, kernel_quantizer=kernel_q(), bias_quantizer=bias_q(), name="logits")(x))
    rng = np.random.default_rng(seed)
    for layer, lowest in (("conv", -5), ("logits", -6)):
        kernel, bias = model.get_layer(layer).get_weights()
        if name == "po2":  # exponents hls4ml multiplies with exactly (po2_exact_exponents); word 0 has e = -1
            kernel = rng.choice([-1.0, 1.0], kernel.shape) * 2.0 ** rng.integers(lowest, 1, kernel.shape)
            kernel.reshape(-1)[:2] = [2.0**-1, 1.0]
        else:  # word 0 is 0 (ternary: code 00, whose bit 1 gives the fourth code 10), the last word negative
            kernel = rng.uniform(-1, 1, kernel.shape)
            kernel.reshape(-1)[[0, -1]] = [0.0, -0.75]
        bias = rng.normal(0, 0.5 if layer == "conv" else 1.0, bias.shape)
        bias[-1] = -1.0  # ternary/binary bias code 11, whose bit 0 gives code 10 (-2)
        model.get_layer(layer).set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


@pytest.fixture(scope="session")
def quantizer_models():
    """name -> (model, x, y): 30 random images on the 2**-8 grid of the C-sim input ufixed<9,1>."""
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (30, 8, 8, 1)) / 256).astype(np.float32)
    y = rng.integers(0, 10, 30)
    return {name: (_build(name, i), x, y) for i, name in enumerate(NAMES)}


@pytest.fixture(scope="session")
def quantizer_projects(quantizer_models, tmp_path_factory):
    """name -> HlsProject, written one by one and compiled in one pool at -O1."""
    from flow.config import config_from_dict
    from flow.hardware.boards import resolve_board
    from flow.hls import compile_projects, project_of, write_project

    root = tmp_path_factory.mktemp("quantizer_projects")
    projects = {}
    for name, (model, _, _) in quantizer_models.items():
        hls = {"csim_opt": "O1", "default_precision": DEFAULT_PRECISION.get(name, "fixed<16,6>")}
        cfg = config_from_dict({"hls": hls}, name)
        graph, _ = write_project(model, cfg.hls, resolve_board(cfg.board), 8, root / name)
        projects[name] = project_of(graph, cfg.hls, root / name)
    compile_projects(list(projects.values()), "O1")
    return projects


@pytest.mark.parametrize("name", NAMES)
def test_first_order_and_fi_ranking_give_finite_scores_per_channel(quantizer_models, name):
    from flow.config import RankConfig
    from flow.rank import fi_scores, first_order_scores

    model, x, _ = quantizer_models[name]
    first = first_order_scores(model, x[:10])
    fi, _, _ = fi_scores(model, x[:10], RankConfig(fi_margin=0.25), seed=0)
    for scores in (first, fi):
        assert {k: v.shape for k, v in scores.items()} == {"conv": (4,), "logits": (10,)}
        assert all(np.all(np.isfinite(v)) and np.all((v >= 0) & (v <= 1)) for v in scores.values())
    assert sum(first["logits"]) > 0  # some flips of the logits layer change a top-1 to first order


@pytest.mark.csim
@pytest.mark.parametrize("name", NAMES)
def test_csim_logits_equal_qkeras_bit_for_bit(quantizer_models, quantizer_projects, name):
    from flow.csim import CSimLibrary
    from flow.training import logits

    model, x, _ = quantizer_models[name]
    np.testing.assert_array_equal(CSimLibrary(quantizer_projects[name]).predict(x), logits(model, x))


@pytest.mark.csim
def test_array_table_widths_and_kinds(quantizer_projects):
    from flow.fi_bridge import read_table

    expected = {  # (conv weight, logits weight, logits bias) widths
        "bits": (6, 6, 8), "po2": (5, 5, 8), "ternary": (2, 2, 2), "binary": (1, 1, 2),
    }  # fmt: skip
    for name, project in quantizer_projects.items():
        rows = {(r["layer"], r["kind"]): r for r in read_table(project.directory)}
        assert set(rows) == {(layer, kind) for layer in ("conv", "logits") for kind in ("weight", "bias")}
        widths = (rows["conv", "weight"]["width"], rows["logits", "weight"]["width"], rows["logits", "bias"]["width"])
        assert widths == expected[name]
        assert ("word" in rows["conv", "weight"]) == (name == "po2")
    po2 = {r["layer"]: r for r in read_table(quantizer_projects["po2"].directory) if r["kind"] == "weight"}
    assert (po2["conv"]["exact_exponents"], po2["logits"]["exact_exponents"]) == ([-5, 11], [-6, 7])


def _word_faults(rows: list[dict], indices) -> list:
    from flow.faultlist import BitFault

    return [
        (BitFault(row["name"], index, bit, kind),)
        for row in rows
        for index in indices(row)
        for bit in range(row["width"])
        for kind in KINDS
    ]


@pytest.mark.csim
@pytest.mark.parametrize("name", NAMES)
def test_every_bit_of_words_of_every_array_matches_keras_emulation(quantizer_models, quantizer_projects, name):
    """Every bit, flip and stuck-at, of the first and the last word of every kernel and bias: the C-sim logits
    under the fault equal the Keras emulation's bit for bit (po2: word 0 only, whose faults all stay in the exact
    exponent range), and the cross-check finds 0 mismatches."""
    from flow.crosscheck import crosscheck
    from flow.csim import FaultableLibrary
    from flow.emulate import Fault, FaultEmulator
    from flow.training import inference_fn

    model, x, y = quantizer_models[name]
    lib = FaultableLibrary(quantizer_projects[name])
    first = _word_faults(lib.arrays, lambda row: [0])
    exact = _word_faults(lib.arrays, lambda row: [0] if "word" in row else [0, row["length"] - 1])
    emulator = FaultEmulator(model)
    forward = inference_fn(model)
    keras_array = {"weight": "kernel", "bias": "bias"}
    rows = {row["name"]: row for row in lib.arrays}
    for (b,) in exact:
        lib.inject(b.array, b.index, b.bit, b.kind)
        try:
            csim = lib.predict(x)
        finally:
            lib.restore()
        row = rows[b.array]
        with emulator.injected([Fault(row["layer"], keras_array[row["kind"]], b.index, b.bit, b.kind)]):
            np.testing.assert_array_equal(csim, forward(x).numpy(), err_msg=str(b))
    assert crosscheck(model, lib, lib.arrays, first, x, y) == {"checked": len(first), "mismatches": 0}
    both = _word_faults(lib.arrays, lambda row: [0, row["length"] - 1])
    report = crosscheck(model, lib, lib.arrays, both, x, y)
    assert report["mismatches"] == 0 and report["checked"] + report.get("inexact", 0) == len(both)


@pytest.mark.csim
def test_po2_exponents_below_the_exact_range_are_truncated_by_hls4ml(quantizer_models, quantizer_projects):
    """Logits weight word 1 is 2**0 = +0000; bit 3 makes it 2**-8, below the exact range -6..: hls4ml's product
    keeps 10 fractional bits of x * 2**-8 (x = quantized_relu(6,2), 4 fractional bits), truncating towards -inf. The
    C-sim equals the Keras emulation plus exactly that truncation, and the cross-check counts the fault inexact."""
    import tensorflow as tf

    from flow.crosscheck import crosscheck
    from flow.csim import FaultableLibrary
    from flow.emulate import Fault, FaultEmulator
    from flow.faultlist import BitFault

    model, x, y = quantizer_models["po2"]
    lib = FaultableLibrary(quantizer_projects["po2"])
    row = next(r for r in lib.arrays if r["layer"] == "logits" and r["kind"] == "weight")
    lib.inject(row["name"], 1, 3)
    try:
        csim = lib.predict(x)
    finally:
        lib.restore()
    with FaultEmulator(model).injected([Fault("logits", "kernel", 1, 3)]):
        keras = model(x).numpy().astype(np.float64)
    features = tf.keras.Model(model.inputs, model.get_layer("flatten").output)(x).numpy().astype(np.float64)
    product = features[:, 0] * 2.0**-8  # kernel index 1 = feature 0, channel 1
    keras[:, 1] += np.floor(product * 2**10) / 2**10 - product
    np.testing.assert_array_equal(csim, keras.astype(np.float32))
    assert not np.array_equal(csim, model(x).numpy())
    report = crosscheck(model, lib, lib.arrays, [(BitFault(row["name"], 1, 3),)], x, y)
    assert report == {"checked": 0, "mismatches": 0, "inexact": 1}


def test_array_kinds_of_batchnorm_and_apply_alpha_nodes(tmp_path):
    """A kept BatchNormalization's scale and bias, and the ApplyAlpha hls4ml adds for ternary() (alpha 'auto_po2'),
    are 'batchnorm' arrays (the scale of ApplyAlpha an exponent word); only Correction nodes hold 'correction'."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu, ternary

    from flow.config import config_from_dict
    from flow.fi_bridge import array_table
    from flow.hardware.boards import resolve_board
    from flow.hls import build_graph

    q = quantized_bits(8, 3, alpha=1)
    inp = tf.keras.layers.Input((8,), name="x")
    x = QActivation(quantized_relu(6, 2), name="relu")(QDense(6, kernel_quantizer=q, bias_quantizer=q, name="fc1")(inp))
    x = tf.keras.layers.BatchNormalization(name="bn")(x)
    model = tf.keras.Model(inp, QDense(3, kernel_quantizer=ternary(), bias_quantizer=q, name="fc2")(x))
    cfg = config_from_dict({}, "kinds")
    graph, _ = build_graph(model, cfg.hls, resolve_board(cfg.board), 8, tmp_path / "project")
    rows = array_table(graph)
    assert [(row["layer"], row["kind"], row.get("word")) for row in rows] == [
        ("fc1", "weight", None), ("fc1", "bias", None), ("bn", "batchnorm", None), ("bn", "batchnorm", None),
        ("fc2", "weight", None), ("fc2", "bias", None), ("fc2_alpha", "batchnorm", "exponent"),
        ("fc2_alpha", "batchnorm", None),
    ]  # fmt: skip
    scale = graph.graph["fc2_alpha"].weights["scale"]
    assert rows[6]["width"] == scale.type.precision.width + 1  # exponent bits and the sign field
