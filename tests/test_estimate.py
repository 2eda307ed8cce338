"""The analytic resource/latency estimator: hand-checked one-layer numbers, monotonic and additive behaviour,
board utilisation and fit flags, the estimate step, and the vendor report parsing (fixture report)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flow.boards import Board, load_board, resolve_board
from flow.config import (
    BoardConfig,
    HardenConfig,
    HardenMode,
    HlsConfig,
    ModelConfig,
    Selection,
    Strategy,
    config_from_dict,
)
from flow.errors import FlowError
from flow.estimate import csd_digits, dsp_per_multiplier, estimate_graph, memory_cost, utilisation
from flow.hls import build_graph
from flow.zoo import build_model

PYNQ = load_board("pynq-z2")
FIXTURE = Path(__file__).parent / "data" / "vendor_report"


def _one_layer(weight_bits: int):
    """image(4) -> QDense(2) 'fc' with weights chosen by hand (multiples of 1/32 for the 6-bit case)."""
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    x = tf.keras.Input((4,), name="image")
    q = quantized_bits(weight_bits, 0, alpha=1)
    model = tf.keras.Model(x, QDense(2, kernel_quantizer=q, bias_quantizer=q, name="fc")(x))
    kernel = np.array([[0.5, 0.25], [0.75, 0.0], [-0.5, 0.125], [0.0, 0.375]])
    model.get_layer("fc").set_weights([kernel, np.array([0.25, 0.0])])
    return model


def _estimate(model, tmp_path, hls=None, board=PYNQ):
    graph, _ = build_graph(model, hls or HlsConfig(), board, 8, tmp_path / "graph")
    return estimate_graph(graph, board.part, board.clock_period)


def test_csd_digits_and_dsp_tiling():
    assert [csd_digits(v) for v in (0, 1, 16, -16, 24, 12, 7, 15, 21)] == [0, 1, 1, 1, 2, 2, 2, 2, 3]
    assert dsp_per_multiplier(6, 9, "7series") == 0  # an operand below 9 bits: LUTs (hls4ml's rule)
    assert dsp_per_multiplier(9, 12, "7series") == 1
    assert dsp_per_multiplier(30, 18, "7series") == 2  # 30 bits need two 25-bit ports
    assert dsp_per_multiplier(26, 18, "ultrascale") == 1  # DSP48E2: 27 x 18
    assert memory_cost(1024, 4) == (16, 0)  # small memories: distributed ROM, 64 bits per LUT
    assert memory_cost(36 * 600, 600) == (0, 2)  # 600 words x 36 bits: two 512-deep BRAM_18K


def test_one_dense_layer_hand_checked_lut_multipliers(tmp_path):
    # hls4ml types: input ufixed<9,1>, weight fixed<6,1>, accum fixed<18,5>; result = accum.
    # weights x32: 16, 8, 24, 0, -16, 4, 0, 12 -> 6 non-zero; CSD digits 1,1,2,1,1,2 -> 2 adders of 9+6 = 15 bits
    # accumulation: 6 products + 1 non-zero bias into 2 sums = 5 adders x 18 bits = 90 LUT, 45 FF (half registered)
    # output register 2 x 18 FF; depth: 2 ns (LUT mult) + 3 adder levels (5 terms) x 1 ns in 10 ns -> 1 + 1 reg
    est = _estimate(_one_layer(6), tmp_path)
    (fc,) = est["layers"]
    assert (fc["name"], fc["multipliers"], fc["DSP"], fc["BRAM_18K"]) == ("fc", 6, 0, 0)
    assert fc["LUT"] == 2 * 15 + 5 * 18 == 120
    assert fc["FF"] == 45 + 2 * 18 == 81
    assert (fc["depth_cycles"], fc["ii_cycles"]) == (2, 1)
    assert est["total"] == {"LUT": 120, "FF": 81, "DSP": 0, "BRAM_18K": 0}
    assert est["pipeline_style"] == "pipeline" and est["latency"] == {"cycles": 2, "ns": 20.0, "ii_cycles": 1}


def test_one_dense_layer_hand_checked_dsp_and_resource_strategy(tmp_path):
    # 12-bit weights: every non-zero 12 x 9 product is one DSP48E1; accum fixed<24,..>: 5 adders x 24 bits
    est = _estimate(_one_layer(12), tmp_path)
    assert est["total"] == {"LUT": 5 * 24, "FF": 60 + 2 * 24, "DSP": 6, "BRAM_18K": 0}
    # Resource strategy, reuse 4: ceil(8 / 4) = 2 shared multipliers (zeros kept: weights are data), one DSP each;
    # weights 8 x 12 = 96 bits of ROM -> 2 LUT; operand select 2 x 9 bits x ceil(4 / 4) = 18 LUT;
    # one 24-bit accumulator per multiplier: 48 LUT, 48 + 24 FF; output register 2 x 24 FF
    res = _estimate(_one_layer(12), tmp_path, HlsConfig(strategy=Strategy.RESOURCE, reuse_factor=4))
    (fc,) = res["layers"]
    assert (fc["multipliers"], fc["DSP"]) == (2, 2)
    assert fc["LUT"] == 2 + 18 + 48
    assert fc["FF"] == 48 + 24 + 2 * 24
    assert fc["ii_cycles"] == 4


def _lenet(filters=(4, 8), units=16, seed=0):
    from flow.training import seed_everything

    seed_everything(seed)
    cfg = ModelConfig(name="lenet", weight_bits=6, act_bits=6, filters=list(filters), dense_units=units)
    return build_model(cfg, (8, 8, 1), 10)


def test_more_channels_never_cost_less(tmp_path):
    small = _estimate(_lenet((2, 4), 8), tmp_path / "s")["total"]
    large = _estimate(_lenet((4, 8), 16), tmp_path / "l")["total"]
    assert all(large[k] >= small[k] for k in small) and large["LUT"] > small["LUT"]


def test_duplicating_k_of_c_filters_adds_their_multipliers(tmp_path):
    from flow.harden import harden_model

    model = _lenet()
    base = _estimate(model, tmp_path / "b")
    chosen = [0, 2, 5]
    cfg = HardenConfig(mode=HardenMode.SELECTIVE, selection=Selection.LIST, channels={"conv2": chosen})
    hardened = _estimate(harden_model(model, {"conv2": chosen}, cfg), tmp_path / "h")
    layers = {e["name"]: e for e in hardened["layers"]}
    kernel = model.get_layer("conv2").get_quantizers()[0](model.get_layer("conv2").kernel).numpy()
    assert layers["conv2_copy1"]["multipliers"] == np.count_nonzero(kernel[..., chosen])  # exactly the copies
    share = layers["conv2_copy1"]["multipliers"] / layers["conv2"]["multipliers"]
    assert share == pytest.approx(len(chosen) / kernel.shape[-1], rel=0.35)  # ~ k/C of the layer
    assert hardened["multipliers"] == base["multipliers"] + layers["conv2_copy1"]["multipliers"]
    correction = layers["conv2_correction"]
    assert correction["LUT"] > 0 and correction["multipliers"] == 0
    # the copy runs beside its original (dataflow): only the correction lengthens the critical path
    assert hardened["pipeline_style"] == "dataflow"
    assert hardened["latency"]["cycles"] == base["latency"]["cycles"] + correction["latency_cycles"]
    for key in ("LUT", "FF"):  # baseline layers unchanged, the copy and the correction on top
        unchanged = sum(e[key] for e in base["layers"])
        assert hardened["total"][key] == unchanged + layers["conv2_copy1"][key] + correction[key]


def test_board_utilisation_and_fit_flags():
    total = {"LUT": 26600, "FF": 1000, "DSP": 300, "BRAM_18K": 0}
    fit = utilisation(total, PYNQ.capacity)
    assert fit["percent"]["LUT"] == 50.0 and fit["fits"] is False and fit["over"] == ["DSP"]
    assert utilisation({**total, "DSP": 220}, PYNQ.capacity)["fits"] is True  # exactly full still fits
    assert utilisation(total, {}) == {"percent": {}, "fits": None, "over": []}  # raw part: no capacities


def test_estimate_step_writes_resources_json_with_board_fit(tmp_path, tiny_cfg_dict):
    from flow.steps import run

    tiny_cfg_dict["board"] = {"name": "arty-a7-100t"}
    cfg = config_from_dict(tiny_cfg_dict, "tiny")
    run(cfg, tmp_path, ["load", "estimate"])
    result = json.loads((tmp_path / "estimate" / "resources.json").read_text())
    assert result["method"] == "analytic" and result["board"] == "arty-a7-100t"
    assert result["part"] == resolve_board(BoardConfig(name="arty-a7-100t")).part
    assert set(result["total"]) == {"LUT", "FF", "DSP", "BRAM_18K"}
    assert result["total"]["LUT"] == sum(e["LUT"] for e in result["layers"])
    assert result["fits"] is True and result["utilisation_pct"]["LUT"] > 0
    assert result["latency"]["cycles"] > 0


def test_a_model_too_large_for_the_board_is_flagged(tmp_path):
    tiny = Board("tiny-board", "xc7a12tcsg325-1", 10.0, {"LUT": 100, "FF": 100, "DSP": 1, "BRAM_18K": 1})
    est = _estimate(_lenet(), tmp_path, board=tiny)
    fit = utilisation(est["total"], tiny.capacity)
    assert fit["fits"] is False and "LUT" in fit["over"]


def test_vendor_report_fixture_is_parsed(tmp_path):
    from flow.vendor import read_vendor_report

    project = tmp_path / "proj"
    shutil.copytree(FIXTURE, project)
    report = read_vendor_report(project)
    assert report["method"] == "vendor"
    assert report["total"] == {"LUT": 30412, "FF": 12877, "DSP": 3, "BRAM_18K": 2}
    assert report["latency"] == {"cycles": 352, "ns": 3520.0, "ii_cycles": 257}
    assert report["available"]["LUT"] == 53200


def test_vendor_report_missing_is_a_clear_error(tmp_path):
    from flow.vendor import read_vendor_report

    project = tmp_path / "proj"
    shutil.copytree(FIXTURE, project)
    shutil.rmtree(project / "myproject_prj" / "solution1" / "syn")
    with pytest.raises(FlowError, match="no C-synthesis report"):
        read_vendor_report(project)


def test_vendor_method_without_tools_names_them(tmp_path, tiny_cfg_dict, monkeypatch):
    from flow.steps import run

    monkeypatch.setenv("PATH", str(tmp_path))  # no vivado_hls/vitis_hls/vivado here
    tiny_cfg_dict["estimate"] = {"method": "vendor"}
    with pytest.raises(FlowError, match="vitis_hls, vivado_hls, vivado on PATH"):
        run(config_from_dict(tiny_cfg_dict, "tiny"), tmp_path / "out", ["load", "estimate"])


@pytest.mark.synth
def test_vendor_synthesis_of_a_small_model(tmp_path, tiny_cfg_dict):
    from flow.vendor import vendor_tool

    if vendor_tool() is None:
        pytest.skip("no vivado_hls / vitis_hls / vivado on PATH")
    from flow.steps import run

    tiny_cfg_dict["estimate"] = {"method": "vendor"}
    run(config_from_dict(tiny_cfg_dict, "tiny"), tmp_path, ["load", "estimate"])
    result = json.loads((tmp_path / "estimate" / "resources.json").read_text())
    assert result["method"] == "vendor" and result["total"]["LUT"] > 0 and result["latency"]["cycles"] > 0


def test_calibration_factors_and_calibrated_lut_by_hand():
    from flow.calibration import calibrated_lut, measure_factors

    first = {"c1": ("Conv2D", 100.0), "r1": ("Activation", 10.0), "fc": ("Dense", 50.0)}
    second = {"c1": ("Conv2D", 300.0), "r1": ("Activation", 20.0)}
    yosys = [{"c1": {"LUT": 20}, "r1": {"LUT": 100}, "fc": {"LUT": 25}}, {"c1": {"LUT": 20}, "r1": {"LUT": 200}}]
    factors = measure_factors([(first, yosys[0]), (second, yosys[1])])
    assert factors["Conv2D"] == {"factor": 0.1, "min": 0.0667, "max": 0.2, "layers": 2}  # 40 / 400
    assert factors["Activation"]["factor"] == 10.0 and factors["Dense"]["factor"] == 0.5
    assert calibrated_lut({"a": ("Conv2D", 1000.0), "b": ("Dense", 10.0)}, factors) == 105
    unseen = calibrated_lut({"m": ("Merge", 10.0)}, factors)  # kinds never measured use the layer-weighted mean
    assert unseen == round(10 * (0.1 * 2 + 10.0 * 2 + 0.5) / 5)


def test_shipped_calibration_is_used_by_the_analytic_estimate(tmp_path):
    from flow.calibration import basis, calibrated_lut, load_factors, unroll

    factors = load_factors()
    assert factors and {"Conv2D", "Dense", "Activation", "Correction", "Pooling2D"} <= set(factors)
    assert all(f["factor"] > 0 and f["min"] <= f["factor"] <= f["max"] for f in factors.values())
    cfg = ModelConfig(name="lenet", filters=(2, 4), dense_units=8)
    graph, _ = build_graph(build_model(cfg, (8, 8, 1), 10), HlsConfig(), PYNQ, 8, tmp_path / "g")
    result = estimate_graph(graph, PYNQ.part, PYNQ.clock_period)
    layer_basis = basis(graph, result)
    conv1 = next(layer for layer in graph.get_layers() if layer.name == "conv1")
    analytic_conv1 = next(e["LUT"] for e in result["layers"] if e["name"] == "conv1")
    assert unroll(conv1) == 64 and layer_basis["conv1"] == ("Conv2D", analytic_conv1 * 64)  # 8x8 pixels at once
    assert result["yosys_calibrated"]["LUT"] == calibrated_lut(layer_basis, factors) > 0
