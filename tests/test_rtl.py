"""RTL with da4ml, Icarus Verilog simulation against the C-sim, yosys synthesis, copies kept apart."""

import json
from pathlib import Path

import numpy as np
import pytest
from real_models import small_mlp

from flow.config import HardenConfig, HardenMode, HlsConfig, OptLevel, config_from_dict
from flow.errors import FlowError
from flow.hardware.boards import load_board
from flow.hls import build_graph

PYNQ = load_board("pynq-z2")
pytestmark = pytest.mark.slow


def _rtl(model, directory: Path, keep_copies=True):
    from flow.hardware.rtl import write_rtl

    graph, _ = build_graph(model, HlsConfig(), PYNQ, 8, directory / "graph")
    return write_rtl(graph, directory / "verilog", keep_copies=keep_copies)


def test_round_half_to_even_cast_is_exact():
    # ufixed<6,4> values with ties at .5 cast to ap_ufixed<4,4,RND_CONV,SAT>: ties go to the even neighbour
    from da4ml.trace import FixedVariableArrayInput, comb_trace
    from hls4ml.model.types import FixedPrecisionType, RoundingMode, SaturationMode

    from flow.hardware.rtl_trace import cast

    target = FixedPrecisionType(4, 4, False, RoundingMode.RND_CONV, SaturationMode.SAT)
    x = FixedVariableArrayInput((1,))
    comb = comb_trace(x, cast(x.quantize(0, 4, 2), target, "test").ravel())
    values = np.array([0.5, 1.5, 2.5, 2.25, 2.75, 3.5, 14.5, 15.75])
    got = np.array([comb.predict(np.array([[v]]))[0, 0] for v in values])
    assert got.tolist() == [0, 2, 2, 2, 3, 4, 14, 15]  # 15.75 saturates at 15


def test_casts_and_bounds_agree_with_ap_fixed_in_every_mode(tmp_path):
    # every rounding x overflow mode the RTL supports, against ap_fixed itself (g++), below, inside and above the
    # range: casts from a wider ap_fixed<12,6> (da4ml trace), and the range/clip bounds, which are weights written
    # as decimals and converted by ap_fixed's constructor (_bounds)
    import subprocess
    from types import SimpleNamespace

    import hls4ml
    from da4ml.trace import FixedVariableArrayInput, comb_trace
    from hls4ml.model.types import FixedPrecisionType, RoundingMode, SaturationMode

    from flow.hardware.rtl_trace import _bounds, cast

    values = np.concatenate([np.arange(-10, 10, 1 / 16), [-4.0, -3.9375, -4.0625, 3.875, 3.9375, 0.0625, -0.0625]])
    types = [
        (signed, q, o)
        for signed in (True, False)
        for q in ("TRN", "RND", "RND_CONV")
        for o in ("WRAP", "SAT", "SAT_SYM")
    ]
    calls = "\n".join(f"    show<ap_{'' if signed else 'u'}fixed<6, 3, AP_{q}, AP_{o}>>();" for signed, q, o in types)
    (tmp_path / "bounds.cpp").write_text(
        '#include "ap_fixed.h"\n#include <cstdio>\n'
        f"static const double v[] = {{{', '.join(map(repr, values.tolist()))}}};\n"
        "template <class T> void show() {\n"
        '    for (double x : v) printf("%.17g ", (double)T(x));\n    printf("\\n");\n'
        '    for (double x : v) printf("%.17g ", (double)T(ap_fixed<12, 6>(x)));\n    printf("\\n");\n}\n'
        f"int main() {{\n{calls}\n}}\n"
    )
    include = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
    subprocess.run(["g++", "-O0", "-I", str(include), "bounds.cpp", "-o", "bounds"], cwd=tmp_path, check=True)
    lines = subprocess.run(["./bounds"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.splitlines()
    x = FixedVariableArrayInput((1,))
    for j, (signed, q, o) in enumerate(types):
        precision = FixedPrecisionType(6, 3, signed, RoundingMode.from_string(q), SaturationMode.from_string(o))
        layer = SimpleNamespace(weights={"lo": SimpleNamespace(type=SimpleNamespace(precision=precision), data=values)})
        assert _bounds(layer, "lo").tolist() == [float(v) for v in lines[2 * j].split()], ("bound", signed, q, o)
        comb = comb_trace(x, cast(x.quantize(1, 5, 6), precision, "test").ravel())
        assert comb.predict(values[:, None])[:, 0].tolist() == [float(v) for v in lines[2 * j + 1].split()], (
            "cast",
            signed,
            q,
            o,
        )


def test_one_layer_dense_end_to_end_bit_exact_and_synthesized(tmp_path):
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    from flow.csim import CSimLibrary
    from flow.hardware.estimate import estimate_graph
    from flow.hardware.rtl import simulate
    from flow.hardware.yosys import synthesize
    from flow.hls import convert

    tf.keras.utils.set_random_seed(3)
    q = quantized_bits(6, 0, alpha=1)
    inp = tf.keras.Input((16,), name="image")
    model = tf.keras.Model(inp, QDense(4, kernel_quantizer=q, bias_quantizer=q, name="fc")(inp))
    x = np.random.default_rng(0).integers(0, 257, size=(64, 16)) / 256
    project, _ = convert(model, HlsConfig(csim_opt=OptLevel.O1), PYNQ, 8, tmp_path / "hls")
    design = _rtl(model, tmp_path)
    assert list(design.modules) == ["fc"]
    rtl = simulate(design, x, tmp_path / "sim")
    assert np.array_equal(rtl, CSimLibrary(project).predict(x).reshape(64, 4))  # bit for bit
    synth = synthesize(design, tmp_path / "yosys")
    graph, _ = build_graph(model, HlsConfig(), PYNQ, 8, tmp_path / "g2")
    analytic = estimate_graph(graph, PYNQ.part, PYNQ.clock_period)["total"]["LUT"]
    assert synth["total"]["CARRY4"] > 0 and synth["total"]["DSP"] == 0  # 6-bit constants: adders, no DSP
    assert analytic / 10 < synth["total"]["LUT"] < analytic * 10  # same order as the estimate
    assert synth["synthesis_seconds"] > 0


def test_redundant_copies_survive_synthesis_only_with_keep_hierarchy(tmp_path):
    from flow.harden import harden_model
    from flow.hardware.yosys import synthesize, synthesize_flat

    model = small_mlp(side=4)  # 16-8-10: small enough for three flat syntheses
    full = {"fc1": list(range(8)), "logits": list(range(10))}
    dmr = harden_model(model, full, HardenConfig(mode=HardenMode.FULL_DMR))
    design = _rtl(model, tmp_path / "b")
    base = synthesize_flat(design, tmp_path / "b" / "yosys")["total"]
    # one yosys per layer module (the estimate step's way) sums to about the flat run; the second run is cached
    first = synthesize(design, tmp_path / "layers", cache=tmp_path / "cache")
    again = synthesize(design, tmp_path / "layers2", cache=tmp_path / "cache")
    assert set(first["modules"]) == {"fc1", "relu1", "logits"} and first["cached_modules"] == []
    assert again["cached_modules"] == ["fc1", "logits", "relu1"] and again["total"] == first["total"]
    # layers are only wired together: apart, yosys misses only cross-layer simplifications (+5.4 % on this tiny
    # MLP, +0.4 % on the 8x8 LeNet)
    assert abs(first["total"]["LUT"] - base["LUT"]) <= 0.1 * base["LUT"]
    kept = synthesize_flat(_rtl(dmr, tmp_path / "k"), tmp_path / "k" / "yosys")
    merged = synthesize_flat(_rtl(dmr, tmp_path / "m", keep_copies=False), tmp_path / "m" / "yosys")["total"]
    # without the attribute yosys finds each copy equal to its original and builds it once: the DMR is gone
    assert merged["CARRY4"] == base["CARRY4"] and merged["LUT"] <= 1.02 * base["LUT"]
    # with (* keep_hierarchy *) on the copy instances both stay: about twice the adders
    assert kept["total"]["CARRY4"] >= 1.9 * base["CARRY4"] and kept["total"]["LUT"] >= 1.8 * base["LUT"]
    assert {"fc1_copy1_wrapper", "logits_copy1_wrapper"} <= set(kept["modules"])  # kept as their own modules


def test_convolution_pixels_are_units_synthesized_once_each(tmp_path):
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    from flow.hardware.yosys import synthesize, synthesize_flat

    tf.keras.utils.set_random_seed(1)
    q = quantized_bits(6, 0, alpha=1)
    x = tf.keras.Input((4, 4, 1), name="image")
    h = QConv2D(2, 3, padding="same", kernel_quantizer=q, bias_quantizer=q, name="conv1")(x)
    h = QActivation(quantized_relu(6, 2), name="relu1")(h)
    h = tf.keras.layers.MaxPooling2D(2, name="pool1")(h)
    h = tf.keras.layers.Flatten(name="flatten")(h)
    model = tf.keras.Model(x, QDense(2, kernel_quantizer=q, bias_quantizer=q, name="logits")(h))
    design = _rtl(model, tmp_path)
    # 3x3 'same' on 4x4: 4 corners, 4 edges, the interior: 9 distinct pixels for 16; one relu, one pooling window
    counts = {layer: sorted(instances.values()) for layer, instances in design.instances.items()}
    assert counts == {"conv1": [1, 1, 1, 1, 2, 2, 2, 2, 4], "relu1": [32], "pool1": [4], "logits": [1]}
    units = synthesize(design, tmp_path / "units", cache=tmp_path / "cache")
    assert units["units"] == {"distinct": 12, "synthesized": 12, "cached": 0, "instances": 53}
    again = synthesize(design, tmp_path / "again", cache=tmp_path / "cache")
    assert again["units"]["synthesized"] == 0 and again["total"] == units["total"]
    # units apart miss only simplifications across pixels (+1.1 % on the 8x8 LeNet); every output is used here
    # (a flat run drops pixels a pooling never reads, which the units keep, as hls4ml computes them)
    flat = synthesize_flat(design, tmp_path / "flat")["total"]
    assert abs(units["total"]["LUT"] - flat["LUT"]) <= 0.05 * flat["LUT"]


def test_rtl_step_and_yosys_estimate_on_a_trained_model(tmp_path, tiny_cfg_dict):
    from flow.modelio import save_model
    from flow.steps import run

    path = save_model(small_mlp(), tmp_path / "mlp.h5")
    tiny_cfg_dict["model"] = {"path": str(path)}
    tiny_cfg_dict["hls"] = {"csim_opt": "O1"}
    tiny_cfg_dict["rtl"] = {"samples": 40}
    tiny_cfg_dict["estimate"] = {"method": "yosys"}
    cfg = config_from_dict(tiny_cfg_dict, "tiny")
    state = run(cfg, tmp_path / "out", ["load", "train", "convert", "rtl", "estimate"])
    report = json.loads((tmp_path / "out" / "rtl" / "report.json").read_text())
    assert report["bit_exact"] is True and report["n_samples"] == 40 and report["n_samples_differing"] == 0
    assert set(report["modules"]) == {"fc1", "relu1", "logits"}
    assert report["units"] == {"fc1": {"fc1_unit0": 1}, "relu1": {"relu1_unit0": 8}, "logits": {"logits_unit0": 1}}
    resources = json.loads((tmp_path / "out" / "estimate" / "resources.json").read_text())
    assert resources["method"] == "yosys" and resources["total"]["LUT"] > 0
    assert resources["yosys_over_analytic"]["LUT"] == pytest.approx(
        resources["total"]["LUT"] / resources["analytic"]["total"]["LUT"], abs=1e-3
    )
    assert resources["latency"]["method"] == "analytic" and state.summary["rtl"]["bit_exact"] is True


@pytest.mark.parametrize(
    "case",
    [
        ("lenet", 4, "io_parallel", "Vivado", "selective", "range"),
        ("resnet_tiny", 4, "io_parallel", "Vivado", "selective", "min"),
    ],
    ids=str,
)
def test_hardened_conv_model_rtl_is_bit_exact_with_csim(case, compiled_hardened, trained_zoo, tmp_path):
    # Conv2D (padding taps), MaxPooling2D, conv copies, range/min corrections pixel by pixel, residual adds
    from flow.csim import CSimLibrary
    from flow.hardware.rtl import simulate

    hardened, project = compiled_hardened[case]
    x = trained_zoo[case[:2]][1].x_test[:20]
    design = _rtl(hardened, tmp_path)
    assert {"conv1", "conv1_copy1"} <= set(design.modules)
    rtl = simulate(design, x.reshape(len(x), -1), tmp_path / "sim")
    assert np.array_equal(rtl, CSimLibrary(project).predict(x).reshape(len(x), -1))


def test_vote_with_clip_rtl_is_bit_exact_with_csim(tmp_path):
    from flow.csim import CSimLibrary
    from flow.harden import harden_model
    from flow.hardware.rtl import simulate
    from flow.hls import convert

    model = small_mlp()
    x = np.random.default_rng(1).integers(0, 257, size=(200, 8, 8, 1)) / 256
    cfg = HardenConfig(mode=HardenMode.SELECTIVE_TMR, clip=True)
    tmr = harden_model(model, {"fc1": [0, 3, 5], "logits": [2, 7]}, cfg, x[:100])
    project, _ = convert(tmr, HlsConfig(csim_opt=OptLevel.O1), PYNQ, 8, tmp_path / "hls")
    csim = CSimLibrary(project).predict(x).reshape(len(x), -1)
    rtl = simulate(_rtl(tmr, tmp_path), x.reshape(len(x), -1), tmp_path / "sim")
    assert np.array_equal(rtl, csim)
    assert all(layer.clip for layer in tmr.layers if type(layer).__name__ == "Correction")  # clamps compared too


def test_a_source_word_past_the_channels_reads_zero_in_rtl_as_in_csim(tmp_path):
    """A constructed correction fault: the RTL holds the source map as constants (like the weights), so the design
    is traced from a graph whose word is faulty; its out-of-range select reads 0 like the faulty C-sim."""
    from flow.csim import FaultableLibrary
    from flow.harden import harden_model
    from flow.hardware.rtl import simulate, write_rtl
    from flow.hls import convert

    model = small_mlp()
    x = np.random.default_rng(2).integers(0, 257, size=(100, 8, 8, 1)) / 256
    hardened = harden_model(model, {"fc1": [0, 3, 5], "logits": [2, 7]}, HardenConfig(), x)
    project, _ = convert(hardened, HlsConfig(csim_opt=OptLevel.O1), PYNQ, 8, tmp_path / "hls")
    lib = FaultableLibrary(project)
    golden = lib.predict(x)
    graph, _ = build_graph(hardened, HlsConfig(), PYNQ, 8, tmp_path / "graph")
    faulty = {"fc1_correction": (3 * 2 + 1, 9), "logits_correction": (2 * 2 + 1, 10)}  # copies of channels 3, 2
    for name, (index, word) in faulty.items():
        src = next(layer for layer in graph.get_layers() if layer.name == name).weights["src"]
        assert src.data[index] == word and src.type.precision.width == 4  # 11 and 12 stacked channels
        src.data[index] = 15
        for bit in range(4):
            assert lib.inject(src.name, index, bit, "stuck1") == (not word >> bit & 1)
    csim = lib.predict(x)
    lib.restore()
    assert not np.array_equal(csim, golden)
    rtl = simulate(write_rtl(graph, tmp_path / "verilog"), x.reshape(len(x), -1), tmp_path / "sim")
    np.testing.assert_array_equal(rtl, csim.reshape(len(x), -1))


def test_unsupported_layers_and_missing_tools_are_clear_errors(tmp_path, tiny_cfg_dict, monkeypatch):
    import tensorflow as tf

    from flow.steps import run

    inp = tf.keras.Input((4,), name="x")
    model = tf.keras.Model(inp, tf.keras.layers.Activation("tanh", name="squash")(tf.keras.layers.Dense(3)(inp)))
    with pytest.raises(FlowError, match=r"layer 'squash': activation 'tanh' is not supported"):
        _rtl(model, tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no yosys, verilator or iverilog here
    cfg = config_from_dict({**tiny_cfg_dict, "estimate": {"method": "yosys"}}, "tiny")
    with pytest.raises(FlowError, match=r"estimate\.method 'yosys' needs 'yosys' on PATH"):
        run(cfg, tmp_path / "out", ["load", "estimate"])
    with pytest.raises(FlowError, match="step 'rtl' needs 'iverilog' on PATH"):
        run(cfg, tmp_path / "out", ["rtl"])
    cfg = config_from_dict({**tiny_cfg_dict, "rtl": {"simulator": "verilator"}}, "tiny")
    with pytest.raises(FlowError, match="step 'rtl' needs 'verilator' on PATH"):
        run(cfg, tmp_path / "out", ["rtl"])
