"""Structured pruning: exactness when the pruned channels were already zero, shapes, residual groups, errors."""

import json

import numpy as np
import pytest

from flow.config import ModelConfig, PruneConfig, PruneScope, ZooName, config_from_dict
from flow.errors import FlowError
from flow.prune import prune_groups, prune_model, select_removals
from flow.rank import norm_scores
from flow.zoo import build_model

SHAPES = {
    ZooName.LENET: (16, 16, 1),
    ZooName.VGG_TINY: (16, 16, 3),
    ZooName.RESNET_TINY: (8, 8, 3),
    ZooName.MLP: (16,),
    ZooName.RESNET8: (16, 16, 3),
}


def _model(name=ZooName.LENET, seed=0):
    from flow.training import seed_everything

    seed_everything(seed)
    return build_model(ModelConfig(name=name), SHAPES[name], 10)


def _x(shape, n=16):
    return (np.random.default_rng(0).integers(0, 257, (n, *shape)) / 256).astype(np.float32)


def _zero_channels(model, layer, channels):
    kernel, bias = model.get_layer(layer).get_weights()
    kernel[..., channels], bias[channels] = 0.0, 0.0
    model.get_layer(layer).set_weights([kernel, bias])


def test_pruning_channels_that_were_already_zero_changes_nothing():
    model = _model()
    _zero_channels(model, "conv1", [1])
    _zero_channels(model, "conv2", [0, 5])
    _zero_channels(model, "fc1", [3, 4, 9])
    pruned = prune_model(model, {"conv1": [1], "conv2": [0, 5], "fc1": [3, 4, 9]})
    assert [pruned.get_layer(n).kernel.shape[-1] for n in ("conv1", "conv2", "fc1", "logits")] == [3, 6, 13, 10]
    assert pruned.get_layer("conv2").kernel.shape[2] == 3  # the next layer's input channels went too
    assert pruned.get_layer("fc1").kernel.shape[0] == 4 * 4 * 6  # Flatten -> Dense rows mapped
    x = _x((16, 16, 1))
    np.testing.assert_array_equal(pruned.predict(x, verbose=0), model.predict(x, verbose=0))
    assert type(pruned.get_layer("conv2").kernel_quantizer_internal).__name__ == "quantized_bits"


def test_residual_add_is_pruned_consistently():
    model = _model(ZooName.RESNET_TINY)
    assert prune_groups(model) == [["conv1", "conv3"], ["conv2"]]
    removals = select_removals(model, norm_scores(model, 1), PruneConfig(ratio=0.5))
    assert removals["conv1"] == removals["conv3"] and len(removals["conv1"]) == 2 and "logits" not in removals
    group = {name: removals[name] for name in ("conv1", "conv3")}  # conv2's removals are not zero: leave them
    _zero_channels(model, "conv1", group["conv1"])
    _zero_channels(model, "conv3", group["conv3"])
    pruned = prune_model(model, group)
    assert pruned.get_layer("conv3").kernel.shape[-1] == pruned.get_layer("conv1").kernel.shape[-1] == 2
    x = _x((8, 8, 3))
    np.testing.assert_array_equal(pruned.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("name", list(ZooName))
@pytest.mark.parametrize("scope", list(PruneScope))
def test_every_zoo_model_prunes_to_valid_shapes(name, scope):
    model = _model(name)
    removals = select_removals(model, norm_scores(model, 1), PruneConfig(ratio=0.6, scope=scope))
    pruned = prune_model(model, removals)
    assert removals and "logits" not in removals
    assert pruned.output_shape == model.output_shape and pruned.count_params() < model.count_params()
    for layer, channels in removals.items():
        before = int(model.get_layer(layer).kernel.shape[-1])
        assert int(pruned.get_layer(layer).kernel.shape[-1]) == before - len(channels) >= 1
    assert pruned.predict(_x(SHAPES[name], 2), verbose=0).shape == (2, 10)


def test_lowest_scores_go_first_and_global_never_empties_a_layer():
    model = _model()
    scores = {n: np.arange(float(c)) for n, c in (("conv1", 4), ("conv2", 8), ("fc1", 16), ("logits", 10))}
    assert select_removals(model, scores, PruneConfig(ratio=0.5)) == {
        "conv1": [0, 1],
        "conv2": [0, 1, 2, 3],
        "fc1": list(range(8)),
    }
    greedy = select_removals(model, scores, PruneConfig(ratio=0.99, scope=PruneScope.GLOBAL))
    assert {n: len(c) for n, c in greedy.items()} == {"conv1": 3, "conv2": 7, "fc1": 15}


@pytest.mark.parametrize(
    "prune, message",
    [
        ({"ratio": 1.0}, r"prune\.ratio: got 1\.0, allowed range \[0, 1\)"),
        ({"criterion": "hessian"}, r"prune\.criterion: got 'hessian'"),
        ({"scope": "model"}, r"prune\.scope: got 'model'"),
        ({"optimizer": "rmsprop"}, r"prune\.optimizer: got 'rmsprop'.*allowed: adam, sgd"),
        ({"schedule": "step"}, r"prune\.schedule: got 'step'"),
    ],
)
def test_bad_prune_config(prune, message):
    with pytest.raises(FlowError, match=message):
        config_from_dict({"prune": prune})


@pytest.mark.parametrize(
    "channels, message",
    [
        ({"conv1": [0, 1, 2, 3]}, r"removing 4 of 4 channels would leave none"),
        ({"logits": [0]}, r"'logits' is not a prunable layer.*never the logits layer"),
        ({"conv9": [0]}, r"'conv9' is not a prunable layer"),
        ({"conv2": [8]}, r"prune\.channels\.conv2: got \[8\]; channels are 0\.\.7"),
    ],
)
def test_bad_explicit_removals(channels, message):
    model = _model()
    cfg = config_from_dict({"prune": {"channels": channels}}).prune
    with pytest.raises(FlowError, match=message):
        select_removals(model, norm_scores(model, 1), cfg)


def test_vulnerability_criterion_needs_a_ranking(tmp_path, tiny_cfg_dict):
    from flow.steps import run

    with pytest.raises(FlowError, match="needs a ranking of this model; run step 'rank' first"):
        run(config_from_dict(tiny_cfg_dict), tmp_path, ["load", "prune"])


@pytest.mark.csim
@pytest.mark.slow
def test_prune_then_harden_is_bit_exact_in_csim(tmp_path, tiny_cfg_dict):
    from flow.steps import run

    tiny_cfg_dict.update(
        model={"name": "lenet", "input_shape": [8, 8, 1], "filters": [4, 6], "dense_units": 12},
        prune={"ratio": 0.5, "epochs": 2, "optimizer": "adam", "schedule": "constant", "learning_rate": 0.003},
        hls={"csim_opt": "O1"},
    )
    steps = ["load", "train", "rank", "prune", "rank", "harden", "convert", "verify"]
    run(config_from_dict(tiny_cfg_dict), tmp_path, steps)
    summary = json.loads((tmp_path / "prune" / "summary.json").read_text())
    assert summary["total"]["macs_after"] < summary["total"]["macs"]
    assert summary["layers"]["conv1"]["channels_after"] == 2 and summary["layers"]["logits"]["removed"] == []
    assert len(summary["fine_tuning"]["val_accuracy_per_epoch"]) == 2
    assert summary["fine_tuning"]["best_val_accuracy"] >= max(summary["fine_tuning"]["val_accuracy_per_epoch"])
    report = json.loads((tmp_path / "verify" / "report.json").read_text())
    assert report["bit_exact"] is True and report["equals_unhardened"] is True
    hardened = json.loads((tmp_path / "harden" / "summary.json").read_text())
    assert hardened["layers"]["conv1"]["channels"] == 2  # hardening worked on the pruned model
