"""Users' models as they write them: normalized exactly, then load → rank → harden → convert → verify → inject,
bit-exact in C-sim and equal to the unhardened model with no fault; ``ftflow check`` on them."""

import json

import numpy as np
import pytest
import tensorflow as tf
from qkeras import QConv2D, QDense, quantized_bits
from real_models import REAL_MODELS, digits_images, trained

from flow.cli import main
from flow.config import config_from_dict
from flow.errors import FlowError
from flow.modelio import check_model
from flow.normalize import check_normalization, normalize_model

DIGITS = {"name": "digits", "n_train": 300, "n_test": 50}
STEPS = ["load", "rank", "harden", "convert", "verify", "inject", "estimate"]


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """name -> path of the trained model saved as users save it (.h5, softmax head included)."""
    root = tmp_path_factory.mktemp("real_models")
    paths = {}
    for name in REAL_MODELS:
        paths[name] = root / f"{name}.h5"
        trained(name).save(paths[name])
    return paths


@pytest.mark.parametrize("name", list(REAL_MODELS))
def test_normalization_is_exact_and_canonical(name):
    model = trained(name)
    normalized = normalize_model(model)
    check_model(normalized.model)
    x, _ = digits_images(100)
    report = check_normalization(model, normalized, x.reshape(len(x), *model.input_shape[1:]))
    assert report["bit_exact"], report
    for layer in normalized.model.layers:
        assert type(layer).__name__ not in ("Dropout", "QBatchNormalization", "Softmax")
        activation = getattr(layer, "activation", None)
        if type(layer).__name__ in ("QConv2D", "QDense"):
            assert activation is None or getattr(activation, "__name__", "") == "linear", layer.name
    last = normalized.model.layers[-1]
    assert type(last).__name__ == "QDense"  # logits: the softmax (own layer or built in) is gone
    had_softmax = any("softmax" in str(layer.get_config().get("activation", "")) for layer in model.layers)
    assert (normalized.output_activation == "softmax") == had_softmax


def test_normalization_splits_named_activations_and_keeps_weights():
    model = trained("hls4ml_cnn")
    normalized = normalize_model(model)
    splits = {a["layer"]: a["into"] for a in normalized.actions if a["action"] == "split"}
    assert splits == {"conv_0": "conv_0_act", "conv_1": "conv_1_act", "dense_0": "dense_0_act"}
    for name in ("conv_0", "conv_1", "dense_0", "output_dense"):
        for a, b in zip(
            model.get_layer(name).get_weights(), normalized.model.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    assert type(normalized.model.get_layer("conv_0_act")).__name__ == "QActivation"


def test_sequential_model_is_normalized():
    q = quantized_bits(6, 0, alpha=1)
    seq = tf.keras.Sequential(
        [
            tf.keras.layers.Input((8, 8, 1)),
            QConv2D(2, 3, kernel_quantizer=q, bias_quantizer=q, activation="relu", name="c"),
            tf.keras.layers.Flatten(name="f"),
            tf.keras.layers.Dropout(0.5, name="d"),
            QDense(10, kernel_quantizer=q, bias_quantizer=q, activation="softmax", name="out"),
        ]
    )
    normalized = normalize_model(seq)
    assert [type(layer).__name__ for layer in normalized.model.layers] == [
        "InputLayer", "QConv2D", "Activation", "Flatten", "QDense",
    ]  # fmt: skip
    assert check_normalization(seq, normalized, digits_images(50)[0])["bit_exact"]


def test_refusals_name_the_layer():
    q = quantized_bits(6, 0, alpha=1)
    inp = tf.keras.layers.Input((8, 8, 1))
    x = QConv2D(2, 3, kernel_quantizer=q, bias_quantizer=q, name="c")(inp)
    x = tf.keras.layers.Activation("softmax", name="mid_softmax")(x)
    x = QDense(3, kernel_quantizer=q, bias_quantizer=q, name="head")(tf.keras.layers.Flatten()(x))
    with pytest.raises(FlowError, match=r"layer 'mid_softmax' \(Activation 'softmax'\) is not quantized"):
        check_model(normalize_model(tf.keras.Model(inp, x)).model)
    y = tf.keras.layers.UpSampling2D(name="grow")(inp)
    with pytest.raises(FlowError, match=r"layer 'grow' \(UpSampling2D\) is not supported"):
        normalize_model(tf.keras.Model(inp, y))


@pytest.fixture(scope="module")
def real_runs(saved_models, tmp_path_factory):
    """name -> run directory of load → rank (first_order) → harden → convert → verify → inject."""
    from flow.steps import run

    root = tmp_path_factory.mktemp("real_runs")
    runs = {}
    for name, path in saved_models.items():
        cfg = config_from_dict(
            {
                "seed": 0, "data": DIGITS, "model": {"path": str(path)}, "hls": {"csim_opt": "O1"},
                "rank": {"method": "first_order", "images": 20},
                "inject": {"sampling": "count", "count": 20, "samples": 20, "workers": 1, "crosscheck": 10},
            },
            name,
        )  # fmt: skip
        runs[name] = root / name
        run(cfg, runs[name], STEPS)
    return runs


@pytest.mark.csim
@pytest.mark.slow
@pytest.mark.parametrize("name", list(REAL_MODELS))
def test_real_model_end_to_end(real_runs, name):
    out = real_runs[name]
    normalize = json.loads((out / "load" / "normalize.json").read_text())
    assert normalize["check"]["bit_exact"]
    verify = json.loads((out / "verify" / "report.json").read_text())
    assert verify["bit_exact"] and verify["max_abs_diff"] == 0.0, verify
    assert verify["equals_unhardened"]
    harden = json.loads((out / "harden" / "summary.json").read_text())
    assert harden["no_fault_bit_exact"] and harden["total"]["extra_channels"] > 0
    inject = json.loads((out / "inject" / "summary.json").read_text())
    assert inject["total"]["n_faults"] == 20
    assert inject["crosscheck"]["mismatches"] == 0  # C-sim faults = bit-exact Keras emulation
    # every weight layer of the hls4ml graph is ranked, hardened, tallied and estimated (none silently skipped)
    table = json.loads((out / "convert" / "hls_project" / "fi_arrays.json").read_text())
    graph_layers = {r["layer"] for r in table if r["kind"] == "weight" and "_copy" not in r["layer"]}
    ranking = json.loads((out / "rank" / "ranking.json").read_text())
    assert set(ranking["layers"]) == graph_layers
    assert set(harden["layers"]) == graph_layers
    assert all(harden["layers"][name]["macs"] > 0 for name in graph_layers)
    estimate = {row["name"]: row for row in json.loads((out / "estimate" / "resources.json").read_text())["layers"]}
    assert all(estimate[name]["LUT"] + estimate[name]["DSP"] > 0 for name in graph_layers)
    assert inject["golden_accuracy"] == verify["csim_accuracy"] or verify["n_samples"] != inject["samples"]


@pytest.mark.csim
@pytest.mark.slow
def test_precisions_set_by_ftflow_are_recorded(real_runs):
    rows = json.loads((real_runs["pooling_cnn"] / "convert" / "precision_report.json").read_text())["layers"]
    by_layer = {row["layer"]: row["types"] for row in rows}
    assert by_layer["avg"]["result_t"]["set_by"] == "ftflow"
    assert by_layer["avg"]["result_t"]["precision"].startswith("ufixed<8,2")  # ufixed<6,2> / 4: two more bits
    assert by_layer["gap"]["accum_t"]["set_by"] == "ftflow"
    report = json.loads((real_runs["batchnorm_cnn"] / "convert" / "precision_report.json").read_text())
    bn = {row["layer"]: row["types"] for row in report["layers"]}
    assert bn["bn1"]["scale_t"]["exact"] is False
    verify = json.loads((real_runs["batchnorm_cnn"] / "verify" / "report.json").read_text())
    assert {(r["layer"], r["type"]) for r in verify["inexact_layers"]} == {("bn1", "scale_t"), ("bn1", "bias_t")}


@pytest.mark.parametrize("name", list(REAL_MODELS))
def test_check_command_accepts_every_real_model(saved_models, capsys, name):
    assert main(["check", str(saved_models[name])]) == 0
    printed = capsys.readouterr().out
    assert "every layer is supported" in printed and "NOT SUPPORTED" not in printed
    assert "result_t" in printed  # the hls4ml types are shown


def test_check_command_reports_every_layer(saved_models, capsys):
    assert main(["check", str(saved_models["hls4ml_cnn"])]) == 0
    printed = capsys.readouterr().out
    assert "split: built-in activation moved into its own layer" in printed
    assert "stripped: final softmax/sigmoid" in printed
    assert "conv_0_act" in printed and "every layer is supported" in printed


def test_check_command_lists_unsupported_layers(tmp_path, capsys):
    q = quantized_bits(6, 0, alpha=1)
    inp = tf.keras.layers.Input((8, 8, 1))
    x = QConv2D(2, 3, kernel_quantizer=q, bias_quantizer=q, name="c")(inp)
    x = tf.keras.layers.Activation("tanh", name="squash")(x)
    x = tf.keras.layers.Dense(3, name="plain")(tf.keras.layers.Flatten()(x))
    path = tmp_path / "bad.h5"
    tf.keras.Model(inp, x).save(path)
    assert main(["check", str(path)]) == 2
    captured = capsys.readouterr()
    assert "2 layer(s) not supported" in captured.err
    assert "'squash' (Activation 'tanh') is not quantized" in captured.err
    assert "'plain' (Dense) is not quantized: use QDense" in captured.err


@pytest.mark.csim
def test_keep_softmax_writes_the_ip_with_its_head_for_export(saved_models, tmp_path):
    from flow.export import export_projects
    from flow.steps import run

    cfg = config_from_dict(
        {"data": DIGITS, "model": {"path": str(saved_models["float_relu_cnn"])},
         "hls": {"csim_opt": "O1", "keep_softmax": True}, "verify": {"n_samples": 20}},
    )  # fmt: skip
    state = run(cfg, tmp_path / "run", ["load", "convert", "verify"])
    assert state.summary["verify"]["bit_exact"]  # verify runs on the logits
    ip = tmp_path / "run" / "convert" / "hls_project_ip"
    top = (ip / "firmware" / "myproject.cpp").read_text()
    assert "nnet::softmax" in top
    assert (
        "nnet::softmax" not in (tmp_path / "run" / "convert" / "hls_project" / "firmware" / "myproject.cpp").read_text()
    )
    (exported,) = export_projects(tmp_path / "run", ["run"], tmp_path / "export")
    assert "nnet::softmax" in (exported / "firmware" / "myproject.cpp").read_text()


@pytest.mark.csim
def test_accumulator_that_can_wrap_is_flagged_by_check_and_verify(tmp_path, capsys):
    """An accumulator narrowed by hand (hls.layers) holds the test set's sums but not every input's: flagged with
    the safe width by check and verify, whatever the test set shows."""
    import yaml

    from flow.steps import run

    q = quantized_bits(6, 0, alpha=1)
    inp = tf.keras.layers.Input((8, 8, 1), name="img")
    out = QDense(10, kernel_quantizer=q, bias_quantizer=q, name="fc")(tf.keras.layers.Flatten(name="flat")(inp))
    tf.keras.utils.set_random_seed(5)
    tf.keras.Model(inp, out).save(tmp_path / "m.h5")
    section = {"data": DIGITS, "model": {"path": str(tmp_path / "m.h5")}, "verify": {"require_bit_exact": False},
               "hls": {"csim_opt": "O1", "layers": {"fc": {"precision": {"accum": "fixed<12,4>"}}}}}  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(section))
    assert main(["check", str(tmp_path / "m.h5"), "--config", str(tmp_path / "cfg.yaml")]) == 0
    assert "WARNING: accum_t fixed<12,4" in capsys.readouterr().out
    state = run(config_from_dict(section), tmp_path / "run", ["load", "convert", "verify"])
    report = json.loads((tmp_path / "run" / "verify" / "report.json").read_text())
    (risk,) = [r for r in report["wrap_risks"] if r["type"] == "accum_t"]
    assert risk["layer"] == "fc" and risk["safe_integer_bits"] > 4
    assert max(abs(v) for v in risk["worst_case"]) > 8  # beyond fixed<12,4>'s range [-8, 8)
    assert state.summary["verify"]["wrap_risks"] >= 1


def test_check_under_the_resource_strategy(saved_models, tmp_path, capsys):
    """Resource-strategy conv weights are stored transposed by hls4ml: precisions and wrap checks still work."""
    import yaml

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"hls": {"strategy": "Resource", "reuse_factor": 2}}))
    assert main(["check", str(saved_models["pooling_cnn"]), "--config", str(tmp_path / "cfg.yaml")]) == 0
    assert "every layer is supported" in capsys.readouterr().out
