"""Ranking methods on a model where the answer is known, determinism, and the rank step's outputs."""

import json

import numpy as np
import pytest

from flow.config import RankConfig, RankMethod, Sampling, config_from_dict
from flow.rank import Ranking, rank_model
from flow.rank_report import ranking_from_dict, ranking_to_dict, top_overlap, validate
from flow.stats import leveugle_sample_size


@pytest.fixture(scope="module")
def dead_filter_model():
    """A trained tiny LeNet whose conv1 filter 0 is dead: zero weights and ignored by conv2."""
    from flow.steps import run

    cfg = config_from_dict(
        {
            "seed": 3,
            "data": {"name": "digits", "n_train": 300, "n_test": 60},
            "model": {"name": "lenet", "input_shape": [8, 8, 1], "filters": [3, 4], "dense_units": 8},
            "train": {"epochs": 3},
        }
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        state = run(cfg, tmp, ["load", "train"])
    model = state.model
    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
    k1, b1 = conv1.get_weights()
    k1[..., 0], b1[0] = 0.0, 0.0
    conv1.set_weights([k1, b1])
    k2, b2 = conv2.get_weights()
    k2[:, :, 0, :] = 0.0
    conv2.set_weights([k2, b2])
    return model, state.data.x_test[:40], state.data.y_test[:40]


@pytest.mark.parametrize("method", list(RankMethod))
def test_dead_filter_scores_zero_and_ranks_last(dead_filter_model, method):
    model, x, y = dead_filter_model
    ranking = rank_model(model, x, y, method, RankConfig(), seed=0)
    assert set(ranking.scores) == {"conv1", "conv2", "fc1", "logits"}
    assert [len(ranking.scores[n]) for n in ("conv1", "conv2", "fc1", "logits")] == [3, 4, 8, 10]
    conv1 = ranking.scores["conv1"]
    assert conv1[0] == 0.0
    assert np.all(conv1[1:] > 0)
    assert ranking.order("conv1")[-1] == 0
    assert sorted(ranking.order("fc1")) == list(range(8))
    assert len(ranking.global_order()) == 25


def test_fi_sample_sizes_and_determinism(dead_filter_model):
    model, x, y = dead_filter_model
    cfg = RankConfig(method=RankMethod.FI)
    first = rank_model(model, x, y, RankMethod.FI, cfg, seed=7)
    again = rank_model(model, x, y, RankMethod.FI, cfg, seed=7)
    for layer in first.scores:
        np.testing.assert_array_equal(first.scores[layer], again.scores[layer])
    # conv1 filter: 9 kernel weights + 1 bias, 6 bits each = 60 bits -> Leveugle n = 53
    assert first.extras["conv1"]["n_flips"] == [leveugle_sample_size(60, 0.05, 0.95)] * 3 == [53] * 3
    assert first.params["total_flips"] == sum(sum(e["n_flips"]) for e in first.extras.values())
    for lo, hi in first.extras["fc1"]["critical_flip_ci95"]:
        assert 0.0 <= lo <= hi <= 1.0
    exhaustive = rank_model(model, x, y, RankMethod.FI, RankConfig(fi_sampling=Sampling.EXHAUSTIVE), seed=7)
    assert exhaustive.extras["conv1"]["n_flips"] == [60] * 3


def test_ranking_json_round_trip_and_ranks():
    ranking = Ranking(
        "l1", {"a": np.array([0.1, 0.5, 0.3]), "b": np.array([0.9, 0.0])}, {"a": "QConv2D", "b": "QDense"}, 0.5
    )
    data = ranking_to_dict(ranking)
    assert [c["rank"] for c in data["layers"]["a"]["channels"]] == [2, 0, 1]
    assert data["layers"]["b"]["channels"][0]["normalized"] == 1.0
    assert [(r["layer"], r["index"]) for r in data["global"]] == [("b", 0), ("a", 1), ("a", 2), ("a", 0), ("b", 1)]
    back = ranking_from_dict(json.loads(json.dumps(data)))
    np.testing.assert_array_equal(back.scores["a"], ranking.scores["a"])


def test_validation_against_the_reference():
    fi = Ranking("fi", {"a": np.arange(10.0), "b": np.array([3.0, 1.0])}, {"a": "QConv2D", "b": "QDense"}, 10.0)
    same = Ranking("same", fi.scores, fi.layer_types, 0.1)
    reverse = Ranking("rev", {"a": -np.arange(10.0), "b": np.array([1.0, 3.0])}, fi.layer_types, 0.2)
    report = validate({"fi": fi, "same": same, "rev": reverse})
    assert report["reference"] == "fi" and set(report["methods"]) == {"same", "rev"}
    assert report["methods"]["same"]["layers"]["a"] == {"spearman": 1.0, "kendall": 1.0, "top10_overlap": 1.0, "n": 10}
    assert report["methods"]["rev"]["layers"]["a"]["spearman"] == -1.0
    assert report["methods"]["rev"]["layers"]["a"]["top10_overlap"] == 0.0
    assert report["methods"]["same"]["cost_vs_reference"] == 0.01
    assert (
        top_overlap(np.array([5.0, 4, 3, 2, 1, 0, 0, 0, 0, 0, 0]), np.array([5.0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 3])) == 0.5
    )


def test_rank_step_writes_ranking_plot_and_validation(tmp_path, tiny_cfg_dict):
    from flow.cli import main

    tiny_cfg_dict["rank"] = {"images": 30}
    cfg_path = tmp_path / "cfg.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(tiny_cfg_dict))
    out = tmp_path / "out"
    assert main(["rank", str(cfg_path), "--out", str(out), "--compare"]) == 0  # trains first: no model yet
    rank_dir = out / "rank"
    ranking = json.loads((rank_dir / "ranking.json").read_text())
    assert ranking["method"] == "gradient" and ranking["params"]["images"] == 30
    assert set(ranking["layers"]) == {"conv1", "conv2", "fc1", "logits"}
    assert len(ranking["global"]) == 2 + 4 + 8 + 10
    for method in RankMethod:
        assert (rank_dir / f"ranking_{method.value}.json").is_file()
    validation = json.loads((rank_dir / "validation.json").read_text())
    assert validation["reference"] == "fi"
    assert set(validation["methods"]) == {"l1", "l2", "gradient", "first_order", "taylor"}
    for report in validation["methods"].values():
        assert -1.0 <= report["global"]["spearman"] <= 1.0
        assert 0.0 <= report["global"]["top10_overlap"] <= 1.0
        assert set(report["layers"]) == {"conv1", "conv2", "fc1", "logits"}
    assert (rank_dir / "vulnerability.png").stat().st_size > 10_000
    assert main(["rank", str(cfg_path), "--out", str(out), "--method", "l1"]) == 0  # reuses the trained model
    assert json.loads((rank_dir / "ranking.json").read_text())["method"] == "l1"
    assert not (out / "train" / "history.json").stat().st_mtime > (rank_dir / "ranking.json").stat().st_mtime


def test_rank_bad_method_is_a_clear_error(tmp_path, capsys, tiny_cfg_dict):
    import yaml

    from flow.cli import main

    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg_dict))
    assert main(["rank", str(cfg_path), "--out", str(tmp_path / "o"), "--method", "hessian"]) == 2
    assert "rank.method: got 'hessian'" in capsys.readouterr().err


def _exact_margin_jacobians(model, x):
    """Per-image jacobians of every margin Delta_k = Z_t - Z_k with respect to every kernel and bias."""
    import tensorflow as tf

    from flow.emulate import weight_layers

    layers = weight_layers(model)
    variables = [v for layer in layers for v in (layer.kernel, layer.bias)]
    with tf.GradientTape() as tape:
        z = model(tf.constant(x), training=False)
        delta = tf.gather(z, tf.argmax(z, axis=1), batch_dims=1)[:, None] - z
    jac = [j.numpy().astype(np.float64) for j in tape.jacobian(delta, variables)]
    return layers, delta.numpy().astype(np.float64), z.numpy().argmax(axis=1), jac


def _exact_gain(model, x):
    """The vulnerability gain straight from its definition."""
    layers, d, _, jac = _exact_margin_jacobians(model, x)
    inv = np.where(d == 0, 0.0, 1.0 / np.where(d == 0, 1.0, d) ** 2)
    scores = {}
    for pos, layer in enumerate(layers):
        k, b = jac[2 * pos], jac[2 * pos + 1]
        per_weight = np.sum(k**2, axis=tuple(range(2, k.ndim - 1))) + b**2  # (N, K, C)
        scores[layer.name] = np.sum(per_weight * inv[:, :, None], axis=1).mean(axis=0)
    return scores


def _exact_first_order(model, x):
    """Every bit flip of every weight word, each image's margins moved by the flip times their jacobian: the share
    of (flip, image) pairs where another class beats the target, per channel."""
    from flow.emulate import FaultEmulator

    layers, d, target, jac = _exact_margin_jacobians(model, x)
    emulator = FaultEmulator(model)
    scores = {}
    for pos, layer in enumerate(layers):
        critical, flips = 0.0, 0
        for name, j in zip(("kernel", "bias"), jac[2 * pos : 2 * pos + 2], strict=True):
            array, words = emulator.arrays[(layer.name, name)], emulator.quantized[(layer.name, name)].reshape(-1)
            j = j.reshape(*j.shape[:2], -1)  # (N, K, size)
            for bit in range(array.fmt.width):
                moved = d[:, :, None] + j * (array.fmt.inject(words, bit) - words)
                moved[np.arange(len(x)), target] = np.inf
                earlier = np.arange(d.shape[1])[None, :, None] < target[:, None, None]  # argmax: first maximum wins
                per_word = np.sum(np.any((moved < 0) | ((moved == 0) & earlier), axis=1), axis=0)
                critical = critical + np.bincount(np.arange(words.size) % array.channels, per_word, array.channels)
            flips += words.size // array.channels * array.fmt.width
        scores[layer.name] = critical / (flips * len(x))
    return scores


def _strided_model():
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    from flow.training import seed_everything

    seed_everything(0)
    q = quantized_bits(8, 0, alpha=1)
    inp = tf.keras.layers.Input((9, 9, 2), name="img")
    x = QConv2D(3, 3, strides=2, padding="valid", kernel_quantizer=q, bias_quantizer=q, name="c1")(inp)
    x = QActivation(quantized_relu(8, 2), name="r1")(x)
    x = QConv2D(4, (2, 3), padding="same", kernel_quantizer=q, bias_quantizer=q, name="c2")(x)
    x = tf.keras.layers.Flatten(name="f")(QActivation(quantized_relu(8, 2), name="r2")(x))
    model = tf.keras.Model(inp, QDense(5, kernel_quantizer=q, bias_quantizer=q, name="out")(x))
    return model, np.random.default_rng(0).random((6, 9, 9, 2)).astype(np.float32)


def test_gradient_gain_equals_its_definition_with_strides_and_valid_padding():
    from flow.rank import gradient_scores

    model, images = _strided_model()
    fast, exact = gradient_scores(model, images), _exact_gain(model, images)
    for layer in exact:
        np.testing.assert_allclose(fast[layer], exact[layer], rtol=1e-5)
    assert all(np.any(v > 0) for v in exact.values())


def test_first_order_equals_its_definition_with_strides_and_valid_padding():
    from flow.margins import margin_gradients
    from flow.rank import first_order_scores

    model, images = _strided_model()
    exact = _exact_first_order(model, images)
    assert all(np.any(v > 0) for v in exact.values()) and any(np.any(v < 1) for v in exact.values())
    for max_elements in (1 << 24, 1):  # all images at once, or one image per chunk
        fast = first_order_scores(model, images, max_elements)
        for layer in exact:
            np.testing.assert_allclose(fast[layer], exact[layer], rtol=1e-12, err_msg=layer)
    per_image = 5 * (4 * 4 * 4 * 5)  # classes x the largest kernel (out: 64 inputs x 5 units)
    assert [len(chunk.delta) for chunk in margin_gradients(model, images, 3 * per_image)] == [3, 3]


def test_first_order_is_the_fault_injection_rate_in_the_last_layer(dead_filter_model):
    model, x, y = dead_filter_model
    cfg = RankConfig(fi_sampling=Sampling.EXHAUSTIVE)
    fi = rank_model(model, x, y, RankMethod.FI, cfg, seed=0)
    first_order = rank_model(model, x, y, RankMethod.FIRST_ORDER, cfg, seed=0)
    assert np.all(fi.scores["logits"] > 0)
    # the logits are linear in the last layer's weights: its prediction is the measured rate itself
    np.testing.assert_allclose(first_order.scores["logits"], fi.scores["logits"], atol=1e-12)


def test_gradient_needs_separate_activations():
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    from flow.errors import FlowError
    from flow.rank import gradient_scores

    q = quantized_bits(6, 0, alpha=1)
    inp = tf.keras.layers.Input((4,), name="x")
    model = tf.keras.Model(inp, QDense(3, activation="relu", kernel_quantizer=q, bias_quantizer=q, name="fc")(inp))
    with pytest.raises(FlowError, match="layer 'fc' has a built-in activation"):
        gradient_scores(model, np.zeros((2, 4), np.float32))
