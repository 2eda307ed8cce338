"""Hardening on the Keras side: structure, selection, exactness with no fault, fault behaviour, bad input."""

import numpy as np
import pytest

from flow.config import HardenConfig, HardenMode, ModelConfig, Policy, Selection, ZooName, config_from_dict
from flow.emulate import Fault, FaultEmulator
from flow.errors import FlowError
from flow.fixedpoint import FixedFormat
from flow.harden import harden_model, layer_costs, overhead_summary, select_channels
from flow.rank import Ranking
from flow.zoo import build_model

SHAPES = {
    ZooName.LENET: (8, 8, 1),
    ZooName.VGG_TINY: (16, 16, 3),
    ZooName.RESNET_TINY: (8, 8, 3),
    ZooName.MLP: (16,),
    ZooName.RESNET8: (16, 16, 3),
}
MODES = [
    (HardenMode.SELECTIVE, "min"),
    (HardenMode.SELECTIVE, "range"),
    (HardenMode.SELECTIVE_TMR, "vote"),
    (HardenMode.FULL_DMR, "min"),
    (HardenMode.FULL_TMR, "vote"),
]


def _model(name=ZooName.LENET, bits=6, seed=0):
    from flow.training import seed_everything

    seed_everything(seed)
    return build_model(ModelConfig(name=name, weight_bits=bits, act_bits=bits), SHAPES[name], 10)


def _norm_ranking(model):
    from flow.rank import norm_scores

    scores = norm_scores(model, 1)
    return Ranking("l1", scores, {name: "x" for name in scores}, 0.0)


def _images(shape, n=64, seed=1):
    return (np.random.default_rng(seed).integers(0, 257, size=(n, *shape)) / 256).astype(np.float32)


@pytest.mark.parametrize("name", list(ZooName))
@pytest.mark.parametrize("mode, policy", MODES)
def test_no_fault_output_equals_the_baseline_bit_for_bit(name, mode, policy):
    model = _model(name)
    cfg = HardenConfig(mode=mode, policy=Policy(policy))
    x = _images(SHAPES[name])
    hardened = harden_model(model, select_channels(model, _norm_ranking(model), cfg), cfg, x)
    np.testing.assert_array_equal(hardened.predict(x, verbose=0), model.predict(x, verbose=0))
    kinds = [type(layer).__name__ for layer in hardened.layers]
    assert kinds.count("Correction") == 4 if name is ZooName.LENET else kinds.count("Correction") >= 4


def test_structure_copies_and_sources():
    model = _model()
    cfg = HardenConfig(mode=HardenMode.SELECTIVE_TMR, selection=Selection.LIST, channels={"conv2": (3, 1), "fc1": (0,)})
    selection = select_channels(model, None, cfg)
    assert selection == {"conv2": [1, 3], "fc1": [0]}
    hardened = harden_model(model, selection, cfg)
    original_kernel, original_bias = model.get_layer("conv2").get_weights()
    kernel, bias = hardened.get_layer("conv2").get_weights()
    np.testing.assert_array_equal(kernel, original_kernel)  # the original layer is unchanged
    np.testing.assert_array_equal(bias, original_bias)
    for n in (1, 2):  # each copy is a separate layer with its own weights: the selected channels
        copy_kernel, copy_bias = hardened.get_layer(f"conv2_copy{n}").get_weights()
        np.testing.assert_array_equal(copy_kernel, original_kernel[..., [1, 3]])
        np.testing.assert_array_equal(copy_bias, original_bias[[1, 3]])
    correction = hardened.get_layer("conv2_correction")
    assert correction.sources[1] == [1, 8, 10] and correction.sources[3] == [3, 9, 11] and correction.sources[0] == [0]
    inbound = [layer.name for layer in correction._inbound_nodes[0].inbound_layers]
    assert inbound == ["conv2", "conv2_copy1", "conv2_copy2"]
    names = [layer.name for layer in hardened.layers]
    assert "conv1_copy1" not in names and "fc1_copy2" in names
    assert names.index("relu2") > names.index("conv2_correction")  # before the non-linearity


def test_ratio_selection_takes_the_most_vulnerable():
    model = _model()
    scores = {name: np.arange(c, dtype=float) for name, c in ((n, v.channels) for n, v in layer_costs(model).items())}
    ranking = Ranking("l1", scores, {n: "x" for n in scores}, 0.0)
    selection = select_channels(model, ranking, HardenConfig(ratio=0.3))
    assert selection == {"conv1": [3], "conv2": [6, 7], "fc1": [12, 13, 14, 15], "logits": [7, 8, 9]}
    tiny = select_channels(model, ranking, HardenConfig(ratio=0.01))
    assert all(len(v) == 1 for v in tiny.values())  # at least one per layer


@pytest.mark.parametrize("metric", ["macs", "params"])
def test_budget_selection_stays_within_budget(metric):
    model = _model()
    ranking = _norm_ranking(model)
    cfg = config_from_dict({"harden": {"selection": "budget", "budget": 15, "budget_metric": metric}}).harden
    hardened = harden_model(model, select_channels(model, ranking, cfg), cfg)
    summary = overhead_summary(model, hardened, select_channels(model, ranking, cfg), cfg)
    key = "macs_overhead_pct" if metric == "macs" else "params_overhead_pct"
    assert 0 < summary["total"][key] <= 15


def test_overhead_summary_hand_checked():
    model = _model()  # lenet on 8x8x1: conv1 4 filters 3x3x1, conv2 8 filters 3x3x4 on 4x4, fc1 8*2*2 -> 16, 16 -> 10
    cfg = HardenConfig(mode=HardenMode.FULL_DMR)
    selection = select_channels(model, None, cfg)
    summary = overhead_summary(model, harden_model(model, selection, cfg), selection, cfg)
    conv1 = summary["layers"]["conv1"]
    assert (conv1["macs"], conv1["params"]) == (8 * 8 * 9 * 4, 10 * 4)
    assert summary["layers"]["conv2"]["macs"] == 4 * 4 * 36 * 8
    assert summary["layers"]["fc1"]["params"] == 33 * 16
    assert summary["total"]["macs_overhead_pct"] == 100.0 and summary["total"]["params_overhead_pct"] == 100.0
    assert summary["total"]["extra_channels"] == 4 + 8 + 16 + 10


def test_hardened_model_saves_loads_and_round_trips_config(tmp_path):
    from flow.modelio import load_model, save_model

    model = _model()
    cfg = HardenConfig(policy=Policy.RANGE)
    x = _images((8, 8, 1))
    hardened = harden_model(model, select_channels(model, _norm_ranking(model), cfg), cfg, x)
    loaded = load_model(save_model(hardened, tmp_path / "h.h5"))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), hardened.predict(x, verbose=0))
    config = loaded.get_layer("fc1_correction").get_config()
    assert config["policy"] == "range" and len(config["lo"]) == 16


# ---- fault behaviour on constructed cases ----


def _dense_pair_model():
    """x (3 values >= 0) -> QDense 'fc' with 2 units: w[:, 0] = (0.5, 0.25, 0), w[:, 1] = (-0.5, 0.25, 0)."""
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    q = quantized_bits(6, 0, alpha=1)
    inp = tf.keras.layers.Input((3,), name="x")
    model = tf.keras.Model(inp, QDense(2, kernel_quantizer=q, bias_quantizer=q, name="fc")(inp))
    kernel = np.array([[0.5, -0.5], [0.25, 0.25], [0.0, 0.0]], np.float32)
    model.get_layer("fc").set_weights([kernel, np.zeros(2, np.float32)])
    return model


def _pre_correction(hardened, x):
    """Original and copy channels as the correction layer sees them (stacked)."""
    import tensorflow as tf

    outputs = [hardened.get_layer(name).output for name in ("fc", "fc_copy1")]
    return np.concatenate(tf.keras.Model(hardened.inputs, outputs).predict(x, verbose=0), axis=-1)


SIGN = 5  # the sign bit of ap_fixed<6,1>


def test_min_corrects_exactly_when_the_faulty_copy_is_larger():
    model = _dense_pair_model()
    cfg = HardenConfig(selection=Selection.LIST, channels={"fc": (0, 1)})
    hardened = harden_model(model, select_channels(model, None, cfg), cfg)
    x = np.array([[1.0, 1.0, 0.0], [0.5, 0.0, 1.0], [0.0, 1.0, 1.0]], np.float32)
    baseline = model.predict(x, verbose=0)
    emulator = FaultEmulator(hardened)
    # fc_copy1 holds copies of units 0 and 1; copy of unit 0: w[0] = 0.5 -> sign flip -> -0.5: smaller, min keeps it
    with emulator.injected([Fault("fc_copy1", "kernel", 0 * 2 + 0, SIGN)]):
        out, pre = hardened.predict(x, verbose=0), _pre_correction(hardened, x)
    assert FixedFormat(6, 1).inject(0.5, SIGN) == -0.5
    smaller = pre[:, 2] < pre[:, 0]
    assert smaller.any() and not np.array_equal(out, baseline)
    np.testing.assert_array_equal(out[:, 0], np.minimum(pre[:, 0], pre[:, 2]))
    np.testing.assert_array_equal(out[~smaller, 0], baseline[~smaller, 0])  # x[0] = 0: copy unchanged, no error
    # copy of unit 1: its w[0] = -0.5 -> +0.5: the copy gets larger, min corrects it
    with emulator.injected([Fault("fc_copy1", "kernel", 0 * 2 + 1, SIGN)]):
        out, pre = hardened.predict(x, verbose=0), _pre_correction(hardened, x)
    assert np.all(pre[:, 3] >= pre[:, 1]) and np.any(pre[:, 3] > pre[:, 1])
    np.testing.assert_array_equal(out, baseline)


def test_vote_always_corrects_one_faulty_copy():
    model = _model(seed=4)
    cfg = HardenConfig(mode=HardenMode.FULL_TMR)
    hardened = harden_model(model, select_channels(model, None, cfg), cfg)
    x = _images((8, 8, 1), n=32)
    baseline = model.predict(x, verbose=0)
    emulator = FaultEmulator(hardened)
    rng = np.random.default_rng(0)
    targets = sorted(emulator.arrays)  # originals and both copies of every layer, kernels and biases
    assert len(targets) == 4 * 3 * 2
    for _ in range(40):
        array = emulator.arrays[targets[rng.integers(len(targets))]]
        fault = Fault(array.layer, array.array, int(rng.integers(array.size)), int(rng.integers(array.fmt.width)))
        with emulator.injected([fault]):
            np.testing.assert_array_equal(hardened.predict(x, verbose=0), baseline)


def test_unprotected_model_is_hurt_by_the_same_kind_of_fault():
    """The control for the test above: the same faults on the baseline do change its outputs."""
    model = _model(seed=4)
    x = _images((8, 8, 1), n=32)
    baseline = model.predict(x, verbose=0)
    emulator = FaultEmulator(model)
    with emulator.injected([Fault("conv1", "kernel", 0, 5)]):
        assert not np.array_equal(model.predict(x, verbose=0), baseline)


def test_range_picks_the_copy_inside_the_profiled_bounds():
    model = _dense_pair_model()
    cfg = HardenConfig(selection=Selection.LIST, channels={"fc": (0,)}, policy=Policy.RANGE)
    x = np.array([[1.0, 1.0, 0.0], [0.5, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    hardened = harden_model(model, select_channels(model, None, cfg), cfg, x)
    baseline = model.predict(x, verbose=0)
    # sign flip of the copy's w[0]: the copy falls below the profiled minimum of unit 0 for x[0] > 0
    with FaultEmulator(hardened).injected([Fault("fc_copy1", "kernel", 0, SIGN)]):
        np.testing.assert_array_equal(hardened.predict(x, verbose=0), baseline)


# ---- bad input ----


@pytest.mark.parametrize(
    "harden, message",
    [
        ({"ratio": 0.0}, r"harden\.ratio: got 0\.0, allowed range \(0, 1\]"),
        ({"ratio": 1.5}, r"harden\.ratio: got 1\.5"),
        ({"mode": "tmr"}, r"harden\.mode: got 'tmr'"),
        ({"policy": "vote"}, "harden.policy: got 'vote' with mode 'selective'.*vote needs a TMR mode"),
        ({"policy": "median"}, r"harden\.policy: got 'median'.*allowed: min, range, vote"),
        ({"mode": "full_tmr", "policy": "min"}, "allowed with this mode: vote"),
    ],
)
def test_bad_config_values(harden, message):
    with pytest.raises(FlowError, match=message):
        config_from_dict({"harden": harden})


@pytest.mark.parametrize(
    "harden, message",
    [
        ({"layers": ["conv3"]}, "harden.layers: no QConv2D/QDense layer named 'conv3'"),
        ({"selection": "list", "channels": {"fc2": [0]}}, "harden.channels: no QConv2D/QDense layer named 'fc2'"),
        ({"selection": "list", "channels": {"conv1": [4]}}, r"harden\.channels\.conv1: got \[4\]"),
        ({"selection": "list"}, "selection 'list' needs a mapping"),
        ({"selection": "ratio"}, "needs a vulnerability ranking; run step 'rank'"),
    ],
)
def test_bad_hardening_requests(harden, message):
    model = _model()
    cfg = config_from_dict({"harden": harden}).harden
    with pytest.raises(FlowError, match=message):
        harden_model(model, select_channels(model, None, cfg), cfg, _images((8, 8, 1)))


def test_builtin_activation_is_refused():
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    q = quantized_bits(6, 0, alpha=1)
    inp = tf.keras.layers.Input((4,), name="x")
    model = tf.keras.Model(inp, QDense(3, activation="relu", kernel_quantizer=q, bias_quantizer=q, name="fc")(inp))
    cfg = HardenConfig(mode=HardenMode.FULL_DMR)
    with pytest.raises(FlowError, match="layer 'fc' has a built-in activation"):
        harden_model(model, select_channels(model, None, cfg), cfg)
