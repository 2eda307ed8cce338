"""Every saved-model format loads with QKeras objects; a stored architecture is checked before anything is
deserialized, so a Lambda layer's code never runs."""

import numpy as np
import pytest
import tensorflow as tf
from qkeras import QConv2D, QDense, quantized_bits

from flow.config import ModelConfig, config_from_dict
from flow.errors import FlowError
from flow.modelio import load_model, load_user_model

Q = quantized_bits(6, 0, alpha=1)


def _model(extra=None):
    inp = tf.keras.layers.Input((8, 8, 1), name="img")
    x = QConv2D(2, 3, kernel_quantizer=Q, bias_quantizer=Q, activation="quantized_relu(6)", name="conv")(inp)
    if extra is not None:
        x = extra(x)
    x = tf.keras.layers.Flatten(name="flat")(x)
    out = QDense(3, kernel_quantizer=Q, bias_quantizer=Q, activation="softmax", name="head")(x)
    tf.keras.utils.set_random_seed(3)
    return tf.keras.Model(inp, out)


def _save(model, path):
    if path.suffix:
        model.save(path)
    else:
        model.save(path, save_format="tf")
    return path


@pytest.mark.parametrize("name", ["m.h5", "m.keras", "saved_model_dir"])
def test_every_format_loads_the_same_model(tmp_path, name):
    model = _model()
    loaded = load_model(_save(model, tmp_path / name))
    x = np.random.default_rng(0).uniform(0, 1, (5, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_hls4ml_json_and_weights_pair(tmp_path):
    model = _model()
    (tmp_path / "m.json").write_text(model.to_json())
    model.save_weights(tmp_path / "w.h5")
    cfg = ModelConfig(json=str(tmp_path / "m.json"), weights=str(tmp_path / "w.h5"))
    loaded = load_user_model(cfg)
    x = np.random.default_rng(1).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(FlowError, match="'json' and 'weights' go together"):
        config_from_dict({"model": {"json": str(tmp_path / "m.json")}})


def _lambda_model(sentinel):
    def touch(x, path=str(sentinel)):
        import pathlib

        pathlib.Path(path).write_text("code ran")
        return x

    return _model(tf.keras.layers.Lambda(touch, name="evil"))


@pytest.mark.parametrize("name", ["evil.h5", "evil.keras", "evil_saved_model", "json"])
def test_lambda_code_never_runs_on_load(tmp_path, name):
    sentinel = tmp_path / "PWNED"
    model = _lambda_model(sentinel)
    if name == "json":
        (tmp_path / "m.json").write_text(model.to_json())
        model.save_weights(tmp_path / "w.h5")
        sentinel.unlink()
        with pytest.raises(FlowError, match=r"layer 'evil' \(Lambda\) stores Python code .* refused before loading"):
            load_user_model(ModelConfig(json=str(tmp_path / "m.json"), weights=str(tmp_path / "w.h5")))
    else:
        path = _save(model, tmp_path / name)
        sentinel.unlink()  # building the model to save it ran the function once
        with pytest.raises(FlowError, match=r"layer 'evil' \(Lambda\) stores Python code .* refused before loading"):
            load_model(path)
    assert not sentinel.exists()


def test_unknown_layer_classes_and_files_are_refused(tmp_path):
    path = _save(_model(tf.keras.layers.UpSampling2D(name="grow")), tmp_path / "up.h5")
    with pytest.raises(FlowError, match=r"layer 'grow' \(UpSampling2D\) is not supported; supported types: "):
        load_model(path)
    from qkeras import QDepthwiseConv2D

    depthwise = QDepthwiseConv2D(3, depthwise_quantizer=Q, bias_quantizer=Q, name="dw")
    with pytest.raises(FlowError, match=r"layer 'dw' \(QDepthwiseConv2D\) is not supported"):
        load_model(_save(_model(depthwise), tmp_path / "dw.h5"))
    weights_only = tmp_path / "w.h5"
    _model().save_weights(weights_only)
    with pytest.raises(FlowError, match="holds no model architecture"):
        load_model(weights_only)
    text = tmp_path / "model.txt"
    text.write_text("not a model")
    with pytest.raises(FlowError, match="unknown model format"):
        load_model(text)
