import numpy as np
import pytest

from flow.config import DataConfig, ModelConfig, TrainConfig, ZooName, config_from_dict
from flow.data import fit_to_shape, load_dataset
from flow.errors import FlowError
from flow.modelio import check_model, custom_objects, load_model, save_model
from flow.training import seed_everything, train_model
from flow.zoo import build_model

SHAPES = {
    ZooName.LENET: (16, 16, 1),
    ZooName.VGG_TINY: (32, 32, 3),
    ZooName.RESNET_TINY: (16, 16, 3),
    ZooName.RESNET8: (32, 32, 3),
    ZooName.MLP: (16,),
}


@pytest.mark.parametrize("name", list(ZooName))
@pytest.mark.parametrize("bits", [4, 8])
def test_zoo_models_are_fully_quantized_with_linear_logits(name, bits):
    cfg = ModelConfig(name=name, weight_bits=bits, act_bits=bits)
    model = build_model(cfg, SHAPES[name], 7)
    check_model(model)
    assert model.output_shape == (None, 7)
    logits = model.layers[-1]
    assert type(logits).__name__ == "QDense" and logits.get_config()["activation"] == "linear"
    quantizers = [layer.kernel_quantizer_internal for layer in model.layers if hasattr(layer, "kernel_quantizer")]
    assert quantizers and all(q.bits == bits for q in quantizers)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "BatchNormalization" not in kinds and "Softmax" not in kinds
    assert ("Add" in kinds) == (name in (ZooName.RESNET_TINY, ZooName.RESNET8))


RESNET8_LAYERS = [
    "image", "conv1", "relu1",
    "s1_conv1", "s1_relu1", "s1_conv2", "s1_add", "s1_relu",
    "s2_conv1", "s2_relu1", "s2_shortcut", "s2_conv2", "s2_add", "s2_relu",
    "s3_conv1", "s3_relu1", "s3_shortcut", "s3_conv2", "s3_add", "s3_relu",
    "pool", "flatten", "logits",
]  # fmt: skip


def test_resnet8_is_mlperf_tiny_topology():
    model = build_model(ModelConfig(name=ZooName.RESNET8, weight_bits=8, act_bits=8), (32, 32, 3), 10)
    assert [layer.name for layer in model.layers] == RESNET8_LAYERS
    assert model.count_params() == 77706  # MLPerf Tiny's ResNet-8 without its BatchNorm parameters
    conv = {layer.name: layer for layer in model.layers if type(layer).__name__ == "QConv2D"}
    shapes = {name: (c.filters, c.kernel_size, c.strides, c.padding, c.output_shape[1:]) for name, c in conv.items()}
    assert shapes == {
        "conv1": (16, (3, 3), (1, 1), "same", (32, 32, 16)),
        "s1_conv1": (16, (3, 3), (1, 1), "same", (32, 32, 16)),
        "s1_conv2": (16, (3, 3), (1, 1), "same", (32, 32, 16)),
        "s2_conv1": (32, (3, 3), (2, 2), "same", (16, 16, 32)),
        "s2_conv2": (32, (3, 3), (1, 1), "same", (16, 16, 32)),
        "s2_shortcut": (32, (1, 1), (2, 2), "same", (16, 16, 32)),
        "s3_conv1": (64, (3, 3), (2, 2), "same", (8, 8, 64)),
        "s3_conv2": (64, (3, 3), (1, 1), "same", (8, 8, 64)),
        "s3_shortcut": (64, (1, 1), (2, 2), "same", (8, 8, 64)),
    }
    assert all(c.get_config()["activation"] == "linear" for c in conv.values())
    inputs = {layer.name: [n.name for n in _inbound(layer)] for layer in model.layers if "add" in layer.name}
    assert inputs == {
        "s1_add": ["relu1", "s1_conv2"],  # identity shortcut
        "s2_add": ["s2_shortcut", "s2_conv2"],
        "s3_add": ["s3_shortcut", "s3_conv2"],
    }
    assert [n.name for n in _inbound(model.get_layer("s2_shortcut"))] == ["s1_relu"]
    assert model.get_layer("pool").pool_size == (8, 8) and model.get_layer("pool").output_shape == (None, 1, 1, 64)
    assert model.get_layer("s2_relu1").quantizer.bits == 8 and model.get_layer("logits").units == 10
    check_model(model)


def _inbound(layer):
    node = layer._inbound_nodes[0]
    return node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]


def test_resnet8_small_and_non_square_inputs():
    model = build_model(ModelConfig(name=ZooName.RESNET8, filters=(4, 4, 8)), (16, 16, 3), 5)
    assert model.get_layer("s3_add").output_shape == (None, 4, 4, 8) and model.get_layer("pool").pool_size == (4, 4)
    assert model.get_layer("s1_conv1").filters == 4 and model.get_layer("s3_shortcut").filters == 8
    wide = build_model(ModelConfig(name=ZooName.RESNET8, filters=(2, 2, 2)), (8, 12, 1), 3)
    assert wide.get_layer("pool").pool_size == (2, 3) and wide.output_shape == (None, 3)
    with pytest.raises(FlowError, match=r"resnet8 has 3 residual stacks \(the stem takes the first width\), got 2"):
        build_model(ModelConfig(name=ZooName.RESNET8, filters=(4, 8)), (16, 16, 3), 10)
    with pytest.raises(FlowError, match=r"model 'resnet8': input \(2, 2, 3\) is too small"):
        build_model(ModelConfig(name=ZooName.RESNET8), (2, 2, 3), 10)


def test_mlp_is_jet_tagging_style():
    model = build_model(ModelConfig(name=ZooName.MLP, weight_bits=8, act_bits=8), (16,), 5)
    names = [layer.name for layer in model.layers]
    assert names == ["features", "fc1", "relu1", "fc2", "relu2", "fc3", "relu3", "logits"]
    assert [model.get_layer(n).units for n in ("fc1", "fc2", "fc3", "logits")] == [64, 32, 32, 5]
    assert model.get_layer("relu2").quantizer.bits == 8 and model.get_layer("fc3").kernel_quantizer_internal.bits == 8
    assert model.count_params() == 16 * 64 + 64 + 64 * 32 + 32 + 32 * 32 + 32 + 32 * 5 + 5


def test_mlp_widths_and_image_inputs():
    model = build_model(ModelConfig(name=ZooName.MLP, hidden_units=(12, 6)), (8, 8, 1), 10)
    assert [layer.name for layer in model.layers] == ["image", "flatten", "fc1", "relu1", "fc2", "relu2", "logits"]
    assert model.get_layer("fc1").kernel.shape == (64, 12) and model.get_layer("logits").kernel.shape == (6, 10)
    check_model(model)


def test_mlp_bad_widths():
    with pytest.raises(FlowError, match=r"mlp has no conv layers; set its hidden widths with model\.hidden_units"):
        build_model(ModelConfig(name=ZooName.MLP, filters=(4,)), (16,), 5)
    with pytest.raises(FlowError, match=r"model.hidden_units: one or more widths >= 1, got \[\]"):
        build_model(ModelConfig(name=ZooName.MLP, hidden_units=()), (16,), 5)
    with pytest.raises(FlowError, match=r"model\.hidden_units: only for mlp; lenet takes model\.filters"):
        build_model(ModelConfig(hidden_units=(8,)), (16, 16, 1), 10)
    with pytest.raises(FlowError, match=r"model.hidden_units\[1\]: got 0, allowed range \[1, 4096\]"):
        config_from_dict({"model": {"name": "mlp", "hidden_units": [8, 0]}})
    with pytest.raises(FlowError, match=r"model 'lenet': input \(16,\) is not an image shape .* model\.name: mlp"):
        build_model(ModelConfig(), (16,), 5)


def test_zoo_bad_filters():
    with pytest.raises(FlowError, match="lenet has 2 conv layers, got 3"):
        build_model(ModelConfig(filters=(1, 2, 3)), (16, 16, 1), 10)
    with pytest.raises(FlowError, match=r"filters\[0\] == filters\[2\]"):
        build_model(ModelConfig(name=ZooName.RESNET_TINY, filters=(4, 4, 5)), (16, 16, 1), 10)
    with pytest.raises(FlowError, match="too small"):
        build_model(ModelConfig(name=ZooName.VGG_TINY), (4, 4, 3), 10)


def test_training_is_deterministic_under_a_seed():
    ds = fit_to_shape(load_dataset(DataConfig(n_train=200, n_test=50), 0), (8, 8, 1), 8)
    cfg = ModelConfig(filters=(2, 4), dense_units=8)

    def trained(seed):
        seed_everything(seed)
        model = build_model(cfg, (8, 8, 1), 10)
        train_model(model, ds, TrainConfig(epochs=2), seed)
        return model.get_weights()

    first, second, other = trained(5), trained(5), trained(6)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_save_and_load_round_trip(tmp_path):
    model = build_model(ModelConfig(name=ZooName.RESNET_TINY), (8, 8, 1), 10)
    path = save_model(model, tmp_path / "m.h5")
    loaded = load_model(path)
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert "QConv2D" in custom_objects()


def test_load_model_errors(tmp_path):
    with pytest.raises(FlowError, match=r"model\.path: file not found"):
        load_model(tmp_path / "none.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("junk")
    with pytest.raises(FlowError, match=r"junk\.h5: not a readable HDF5 file"):
        load_model(junk)


def _keras_model(*layers):
    import tensorflow as tf

    inp = tf.keras.layers.Input((8, 8, 1), name="img")
    x = inp
    for layer in layers:
        x = layer(x)
    return tf.keras.Model(inp, x)


def test_check_model_names_unquantized_and_unsupported_layers():
    import tensorflow as tf
    from qkeras import QConv2D, QDense, quantized_bits

    layers = tf.keras.layers
    with pytest.raises(FlowError, match=r"layer 'plain' \(Conv2D\) is not quantized: use QConv2D"):
        check_model(_keras_model(layers.Conv2D(2, 3, name="plain")))
    with pytest.raises(FlowError, match=r"layer 'up' \(UpSampling2D\) is not supported"):
        check_model(_keras_model(layers.UpSampling2D(name="up")))
    with pytest.raises(FlowError, match=r"layer 'fc' \(QDense\) has no kernel_quantizer"):
        check_model(_keras_model(layers.Flatten(), QDense(3, name="fc")))
    q = quantized_bits(6, 0, alpha=1)
    check_model(_keras_model(QConv2D(2, 3, kernel_quantizer=q, bias_quantizer=q, name="ok")))


@pytest.mark.parametrize("name", list(ZooName))
def test_every_weight_layer_of_the_hls4ml_graph_is_ranked_hardened_tallied_and_estimated(name, tmp_path):
    """No layer silently skipped: the sets agree with the weight layers hls4ml converts (issue 20 part 1)."""
    from flow.config import HardenConfig, HardenMode, HlsConfig
    from flow.fi_bridge import array_table
    from flow.harden import harden_model, layer_costs, overhead_summary, select_channels
    from flow.hardware.boards import resolve_board
    from flow.hardware.estimate import estimate_graph
    from flow.hls import build_graph
    from flow.rank import first_order_scores

    model = build_model(ModelConfig(name=name, filters=(4, 8, 8) if name is ZooName.RESNET8 else None), SHAPES[name], 5)
    board = resolve_board(config_from_dict({}).board)
    graph, _ = build_graph(model, HlsConfig(), board, 8, tmp_path / "graph")
    graph_layers = {row["layer"] for row in array_table(graph) if row["kind"] == "weight"}
    x = np.random.default_rng(0).random((4, *SHAPES[name]), dtype=np.float32)
    assert set(first_order_scores(model, x)) == graph_layers
    assert set(layer_costs(model)) == graph_layers and all(c.macs > 0 for c in layer_costs(model).values())
    cfg = HardenConfig(mode=HardenMode.FULL_TMR)
    hardened = harden_model(model, select_channels(model, None, cfg), cfg, x)
    assert {n for n, row in overhead_summary(model, hardened, {}, cfg)["layers"].items() if row["extra_channels"]} == (
        graph_layers
    )
    estimate = {row["name"]: row for row in estimate_graph(graph, board.part, board.clock_period)["layers"]}
    assert all(estimate[layer]["LUT"] + estimate[layer]["DSP"] > 0 for layer in graph_layers)
