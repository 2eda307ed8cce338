"""The analytic resource/latency estimator: hand-checked one-layer numbers, monotonic and additive behaviour,
board utilisation and fit flags, the estimate step, and the vendor report parsing (fixture report)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flow.config import (
    BoardConfig,
    HardenConfig,
    HardenMode,
    HlsConfig,
    IOType,
    ModelConfig,
    Selection,
    Strategy,
    config_from_dict,
)
from flow.errors import FlowError
from flow.hardware.boards import Board, load_board, resolve_board
from flow.hardware.estimate import csd_digits, dsp_per_multiplier, estimate_graph, memory_cost, utilisation
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
    from flow.hardware.vendor import read_vendor_report

    project = tmp_path / "proj"
    shutil.copytree(FIXTURE, project)
    report = read_vendor_report(project)
    assert report["method"] == "vendor"
    assert report["total"] == {"LUT": 30412, "FF": 12877, "DSP": 3, "BRAM_18K": 2}
    assert report["latency"] == {"cycles": 352, "ns": 3520.0, "ii_cycles": 257}
    assert report["available"]["LUT"] == 53200


def test_vendor_report_missing_is_a_clear_error(tmp_path):
    from flow.hardware.vendor import read_vendor_report

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
    from flow.hardware.vendor import vendor_tool

    if vendor_tool() is None:
        pytest.skip("no vivado_hls / vitis_hls / vivado on PATH")
    from flow.steps import run

    tiny_cfg_dict["estimate"] = {"method": "vendor"}
    run(config_from_dict(tiny_cfg_dict, "tiny"), tmp_path, ["load", "estimate"])
    result = json.loads((tmp_path / "estimate" / "resources.json").read_text())
    assert result["method"] == "vendor" and result["total"]["LUT"] > 0 and result["latency"]["cycles"] > 0


def test_calibration_factors_and_calibrated_lut_by_hand():
    from flow.hardware.calibration import calibrated_lut, measure_factors

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
    from flow.hardware.calibration import basis, calibrated_lut, load_factors, unroll

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


# ---- pooling, io_stream logic, the calibration domain, deploy suggestions, the calibration file ----


def _pooled(pool: str, bits: int = 6):
    """image(4x4x2) -> QConv2D(3) 'conv' -> relu 'relu' -> global pooling 'pool' -> QDense(2) 'fc'."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits

    from flow.training import seed_everything

    seed_everything(0)
    q = quantized_bits(bits, 0, alpha=1)
    x = tf.keras.Input((4, 4, 2), name="image")
    y = QConv2D(3, 3, padding="same", kernel_quantizer=q, bias_quantizer=q, name="conv")(x)
    y = QActivation(f"quantized_relu({bits})", name="relu")(y)
    y = getattr(tf.keras.layers, pool)(name="pool")(y)
    return tf.keras.Model(x, QDense(2, kernel_quantizer=q, bias_quantizer=q, name="fc")(y))


def _width(graph, name: str) -> int:
    layer = next(layer for layer in graph.get_layers() if layer.name == name)
    return int(layer.get_output_variable().type.precision.width)


@pytest.mark.parametrize("pool, per_bit", [("GlobalAveragePooling2D", 1), ("GlobalMaxPooling2D", 2)])
def test_global_pooling_is_estimated_not_zero(tmp_path, pool, per_bit):
    # 3 channels over a 4x4 map: 15 adders (average; 1/16 is a shift) or 15 compare + mux steps (max) per bit
    graph, _ = build_graph(_pooled(pool), HlsConfig(), PYNQ, 8, tmp_path / "graph")
    est = estimate_graph(graph, PYNQ.part, PYNQ.clock_period)
    layer = next(e for e in est["layers"] if e["name"] == "pool")
    assert layer["kind"] == "GlobalPooling2D" and layer["LUT"] == 3 * 15 * per_bit * _width(graph, "pool") > 0
    assert layer["in_domain"] is False and "GlobalPooling2D was not calibrated" in layer["out_of_domain"][0]
    # io_stream: one running sum/maximum per channel, the 16 pixels streamed through it
    graph, _ = build_graph(_pooled(pool), HlsConfig(io_type=IOType.STREAM), PYNQ, 8, tmp_path / "stream")
    layer = next(e for e in estimate_graph(graph, PYNQ.part, PYNQ.clock_period)["layers"] if e["name"] == "pool")
    assert layer["LUT"] == 3 * per_bit * _width(graph, "pool") and layer["ii_cycles"] == 16


def test_io_stream_builds_the_logic_of_one_pixel(tmp_path):
    # relu over an 8x8x4 map: io_parallel 256 elements side by side, io_stream the 4 channels of one pixel
    model = _lenet()
    parallel = {e["name"]: e for e in _estimate(model, tmp_path / "p")["layers"]}
    stream = {e["name"]: e for e in _estimate(model, tmp_path / "s", HlsConfig(io_type=IOType.STREAM))["layers"]}
    assert parallel["relu1"]["LUT"] == 64 * stream["relu1"]["LUT"] > 0 and stream["relu1"]["ii_cycles"] == 64


def test_domain_ranges_and_reasons_by_hand():
    from flow.hardware.calibration import check_domain, measure_domain

    point = {"kind": "Dense", "basis": 100, "multipliers": 10, "unroll": 1, "input_bits": 6}
    domain = measure_domain([point, {**point, "basis": 400, "multipliers": 40, "input_bits": 9}], [500, 2000])
    assert domain["kinds"]["Dense"] == {"basis": [100, 400], "multipliers": [10, 40], "unroll": [1, 1],
                                        "input_bits": [6, 9]}  # fmt: skip
    assert domain["design_LUT"] == [500, 2000] and domain["hls"]["io_type"] == "io_parallel"
    row = {**point, "strategy": "latency", "reuse_factor": 1}
    inside = {"a": {**row, "basis": 700}, "b": {**row, "basis": 60}}  # within the 2x margin
    assert check_domain(inside, "io_parallel", 1000, domain) == {"known": True, "layers": {"a": [], "b": []},
                                                                 "design": []}  # fmt: skip
    outside = {"a": {**row, "basis": 900}, "c": {**row, "kind": "Merge"}, "d": {**row, "reuse_factor": 4}}
    check = check_domain(outside, "io_stream", 5000, domain)
    assert check["layers"]["a"] == ["basis 900 above the measured 100..400"]
    assert "Merge was not calibrated" in check["layers"]["c"][0] and check["layers"]["d"] == [
        "reuse_factor 4 (measured at 1)"
    ]
    assert check["design"][:2] == ["io_type io_stream (measured at io_parallel)",
                                   "analytic LUT 5000 above the measured designs' 500..2000"]  # fmt: skip
    assert check["design"][2].startswith("3 of 3 layers outside")
    assert check_domain(inside, "io_parallel", 1000, None)["known"] is False  # an older file: nothing known


def test_the_calibrated_design_is_in_the_domain(tmp_path):
    # the bench's lenet (8x8x1, filters 4/8, 6 bits, io_parallel) on pynq-z2: fits, in the domain, nothing to say
    from flow.hardware.resources import estimate_resources

    cfg = config_from_dict({"model": {"name": "lenet", "filters": [4, 8], "weight_bits": 6, "act_bits": 6}}, "t")
    result = estimate_resources(_lenet(), cfg, tmp_path)
    assert result["in_domain"] is True and result["out_of_domain"] == []
    assert all(e["in_domain"] and not e["out_of_domain"] for e in result["layers"])
    assert result["fits"] is True and result["suggestion"] is None and result["warnings"] == []


def test_an_oversized_design_is_flagged_with_a_deploy_suggestion(tmp_path):
    # lenet with 16/32 filters on 16x16 inputs at io_parallel: ~390k LUT, far above the calibrated layers and designs
    # and 7x a pynq-z2; the suggestion is the smallest power-of-two reuse factor at io_stream/Resource that fits
    from flow.hardware import resources

    cfg = config_from_dict({"model": {"name": "lenet", "filters": [16, 32], "dense_units": 16}}, "t")
    model = build_model(cfg.model, (16, 16, 1), 10)
    result = resources.estimate_resources(model, cfg, tmp_path)
    assert result["board"] == "pynq-z2" and result["fits"] is False and result["in_domain"] is False
    assert any("above the measured designs'" in r for r in result["out_of_domain"])
    assert any("above the measured" in r for e in result["layers"] for r in e["out_of_domain"])
    suggestion = result["suggestion"]
    assert suggestion["fits"] is True and suggestion["hls"]["io_type"] == "io_stream"
    assert all(v <= 100 for v in suggestion["utilisation_pct"].values())
    rf = suggestion["hls"]["reuse_factor"]
    assert suggestion["hls"]["strategy"] == "Resource" and rf > 2
    smaller = HlsConfig(io_type=IOType.STREAM, strategy=Strategy.RESOURCE, reuse_factor=rf // 2)
    assert resources._try(model, cfg, PYNQ, smaller, tmp_path / "smaller")["fits"] is False  # the smallest that fits
    text = "\n".join(result["warnings"])
    assert "does not fit pynq-z2: LUT" in text and "outside the calibration domain" in text
    assert f"deploy as hls: {suggestion['hls']}" in text
    assert _recorded(result).suggestion.hls == suggestion["hls"]


def test_a_design_no_configuration_fits_names_the_boards_it_would(tmp_path, monkeypatch):
    from flow.hardware import resources

    tiny = Board("tiny", "xc7a12tcsg325-1", 10.0, {"LUT": 100, "FF": 100, "DSP": 1, "BRAM_18K": 1})
    monkeypatch.setattr(resources, "resolve_board", lambda _: tiny)
    monkeypatch.setattr(resources, "MAX_SUGGESTED_REUSE", 4)  # keep the search short
    cfg = config_from_dict({"model": {"name": "lenet", "filters": [2, 4], "dense_units": 8}}, "t")
    result = resources.estimate_resources(_lenet((2, 4), 8), cfg, tmp_path)
    suggestion = result["suggestion"]
    assert suggestion["fits"] is False and suggestion["label"] == "none fits tiny"
    assert suggestion["least"]["hls"]["io_type"] == "io_stream" and "pynq-z2" in suggestion["boards"]
    assert "no io_stream/Resource configuration up to reuse_factor" in result["warnings"][-1]
    assert _recorded(result).suggestion.boards == tuple(suggestion["boards"])


def _recorded(result: dict):
    """``result`` as the resources record the estimate step writes (flow/records.py), holding all of it."""
    from flow.records import Resources
    from flow.schema import build, to_plain

    record = build(Resources, result, "resources.json")
    assert to_plain(record) == json.loads(json.dumps(result))
    return record


def test_a_named_user_calibration_is_used_and_a_bad_one_refused(tmp_path):
    from flow.hardware.calibration import CALIBRATION_FILE

    shipped = json.loads(CALIBRATION_FILE.read_text())
    doubled = {**shipped, "factors": {k: {**f, "factor": 2 * f["factor"]} for k, f in shipped["factors"].items()}}
    user = tmp_path / "mine.json"
    user.write_text(json.dumps(doubled))
    graph, _ = build_graph(_lenet(), HlsConfig(), PYNQ, 8, tmp_path / "graph")
    default = estimate_graph(graph, PYNQ.part, PYNQ.clock_period)["yosys_calibrated"]["LUT"]
    mine = estimate_graph(graph, PYNQ.part, PYNQ.clock_period, user)["yosys_calibrated"]["LUT"]
    assert mine == pytest.approx(2 * default, abs=2)
    with pytest.raises(FlowError, match=r"estimate.calibration: file not found: .*absent.json"):
        estimate_graph(graph, PYNQ.part, PYNQ.clock_period, tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"measured": "today"}')
    with pytest.raises(FlowError, match="has no 'factors'"):
        estimate_graph(graph, PYNQ.part, PYNQ.clock_period, tmp_path / "bad.json")
    with pytest.raises(FlowError, match=r"calibration: got 'mine.txt'; allowed: a .json file"):
        config_from_dict({"estimate": {"calibration": "mine.txt"}}, "t")


def _bench():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "bench" / "calibrate_yosys.py"
    spec = importlib.util.spec_from_file_location("calibrate_yosys", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_calibration_bench_writes_a_user_file_never_the_shipped_one(tmp_path, monkeypatch):
    from flow.hardware.calibration import CALIBRATION_FILE, load_calibration

    before = (CALIBRATION_FILE.read_bytes(), CALIBRATION_FILE.stat().st_mtime_ns)
    bench = _bench()
    row = {"strategy": "latency", "reuse_factor": 1, "multipliers": 4, "unroll": 1, "input_bits": 6}
    fake = [{"model": "m", "variant": "baseline", "basis": {"fc": ("Dense", 50.0), "relu": ("Activation", 10.0)},
             "features": {"fc": {**row, "kind": "Dense", "basis": 50.0}, "relu": {**row, "kind": "Activation",
                          "basis": 10.0, "multipliers": 0}},
             "synth": {"total": {"LUT": 125}, "modules": {"fc": {"LUT": 25}, "relu": {"LUT": 100}}},
             "analytic_LUT": 60}]  # fmt: skip
    monkeypatch.setattr(bench, "measure", lambda board: fake)
    monkeypatch.setenv("FTFLOW_CACHE", str(tmp_path / "cache"))
    assert bench.main([]) == 0  # the default: the user cache, not the package
    written = load_calibration(tmp_path / "cache" / "yosys_calibration.json")
    assert written["factors"]["Dense"]["factor"] == 0.5 and written["factors"]["Activation"]["factor"] == 10.0
    assert written["domain"]["kinds"]["Dense"]["basis"] == [50.0, 50.0] and written["domain"]["design_LUT"] == [60, 60]
    assert bench.main(["--out", str(tmp_path / "named.json")]) == 0 and (tmp_path / "named.json").is_file()
    assert bench.main(["--dry-run", "--out", str(tmp_path / "dry.json")]) == 0 and not (tmp_path / "dry.json").exists()
    assert (CALIBRATION_FILE.read_bytes(), CALIBRATION_FILE.stat().st_mtime_ns) == before
