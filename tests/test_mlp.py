"""MLPs and flat inputs through every step: data sources, fit_to_shape, the zoo mlp, rank, harden, C-sim."""

import json

import numpy as np
import pytest

from flow.config import DataConfig, DataName, RankConfig, RankMethod, Sampling, config_from_dict
from flow.data import fit_to_shape, load_dataset, quantize_inputs
from flow.errors import FlowError

MLP = {  # hls4ml's jet-tagging shape: 16 features -> 64 -> 32 -> 32 -> 5 logits
    "seed": 3,
    "data": {"name": "synthetic", "shape": [16], "classes": 5, "samples": 600},
    "model": {"name": "mlp"},
    "train": {"epochs": 3},
    "hls": {"csim_opt": "O1"},
    "rank": {"method": "first_order", "images": 30},
    "harden": {"mode": "selective", "policy": "min", "ratio": 0.3},
    "inject": {"sampling": "count", "count": 40, "samples": 30, "workers": 1},
}
DENSE = {"fc1": 64, "fc2": 32, "fc3": 32, "logits": 5}


def _on_grid(x, bits=8):
    return np.array_equal(x * 2**bits, np.round(x * 2**bits)) and x.min() >= 0 and x.max() <= 1


# ---- data: flat samples everywhere ----


def test_synthetic_flat_features_are_on_the_grid_and_seeded():
    cfg = DataConfig(name=DataName.SYNTHETIC, shape=(16,), classes=5, samples=600)
    ds, same, other = load_dataset(cfg, 0), load_dataset(cfg, 0), load_dataset(cfg, 1)
    assert ds.shape == (16,) and ds.classes == 5 and ds.x_train.ndim == 2
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 600
    assert all(_on_grid(x) for x in (ds.x_train, ds.x_val, ds.x_test))
    np.testing.assert_array_equal(ds.x_test, same.x_test)
    assert not np.array_equal(ds.x_test, other.x_test)


def test_synthetic_bad_shape_is_clear():
    with pytest.raises(FlowError, match=r"data\.shape: got \[16, 0\], expected \[F\] or \[H, W, C\]"):
        load_dataset(DataConfig(name=DataName.SYNTHETIC, shape=(16, 0)), 0)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_npz_flat_features(tmp_path, dtype):
    rng = np.random.default_rng(0)
    x = {k: rng.integers(0, 256, (n, 16)).astype(np.uint8) for k, n in (("x_train", 60), ("x_test", 20))}
    if dtype is np.float32:
        x = {k: (v / 255.0).astype(np.float32) for k, v in x.items()}
    path = tmp_path / "jets.npz"
    np.savez(path, **x, y_train=np.arange(60) % 5, y_test=np.arange(20) % 5)
    ds = load_dataset(DataConfig(name=DataName.NPZ, path=str(path), val_fraction=0.0), seed=0)
    assert ds.shape == (16,) and ds.classes == 5
    scaled = x["x_test"] / 255.0 if dtype is np.uint8 else x["x_test"]
    np.testing.assert_array_equal(ds.x_test, quantize_inputs(scaled, 8))


@pytest.mark.parametrize("shape", [(60,), (60, 2, 2, 2, 2)])
def test_npz_wrong_shape_names_the_file_the_key_and_the_shape(tmp_path, shape):
    path = tmp_path / "wrong.npz"
    np.savez(path, x_train=np.zeros(shape, np.float32), y_train=np.arange(60) % 2,
             x_test=np.zeros((20, 16), np.float32), y_test=np.arange(20) % 2)  # fmt: skip
    with pytest.raises(FlowError) as err:
        load_dataset(DataConfig(name=DataName.NPZ, path=str(path)), seed=0)
    message = str(err.value)
    assert "wrong.npz" in message and f"'x_train' has shape {shape}" in message and "(N, F)" in message


def test_digits_flatten_for_a_64_feature_model():
    ds = load_dataset(DataConfig(n_train=100, n_test=20), 0)
    flat = fit_to_shape(ds, (64,), 8)
    assert flat.shape == (64,)
    np.testing.assert_array_equal(flat.x_test, ds.x_test.reshape(20, 64))
    assert _on_grid(flat.x_train)


def test_flat_model_with_a_mismatching_feature_count_is_one_clear_error():
    ds = load_dataset(DataConfig(n_train=100, n_test=20), 0)
    with pytest.raises(FlowError, match=r"data 'digits' has samples of shape \(8, 8, 1\) \(64 values\).*\(60,\)"):
        fit_to_shape(ds, (60,), 8)
    flat = load_dataset(DataConfig(name=DataName.SYNTHETIC, shape=(16,), samples=50), 0)
    with pytest.raises(FlowError, match=r"shape \(16,\) \(16 values\), the model takes 20 flat features"):
        fit_to_shape(flat, (20,), 8)
    with pytest.raises(FlowError, match=r"samples of shape \(16,\), the model takes images \(4, 4, 1\)"):
        fit_to_shape(flat, (4, 4, 1), 8)


def test_load_step_with_a_mismatching_mlp_input(tmp_path):
    from flow.steps import run

    cfg = config_from_dict({**MLP, "model": {"name": "mlp", "input_shape": [20]}}, "mlp")
    with pytest.raises(FlowError, match=r"data 'synthetic' has samples of shape \(16,\).*20 flat features"):
        run(cfg, tmp_path / "out", ["load"])


def test_mlp_on_digits_images_and_on_flattened_digits(tmp_path):
    from flow.steps import run

    base = {**MLP, "data": {"name": "digits", "n_train": 100, "n_test": 20}, "model": {"name": "mlp"}}
    images = run(config_from_dict(base, "digits"), tmp_path / "images", ["load"])
    assert images.data.shape == (8, 8, 1) and images.model.get_layer("flatten").output_shape == (None, 64)
    base["model"] = {"name": "mlp", "input_shape": [64], "hidden_units": [8]}
    flat = run(config_from_dict(base, "digits64"), tmp_path / "flat", ["load"])
    assert flat.data.shape == (64,) and [layer.name for layer in flat.model.layers] == [
        "features", "fc1", "relu1", "logits"
    ]  # fmt: skip


# ---- the mlp through every step ----


@pytest.fixture(scope="module")
def trained_mlp(tmp_path_factory):
    """(run directory, RunConfig, RunState) of the mlp after load and train."""
    from flow.steps import run

    cfg = config_from_dict(MLP, "mlp")
    out = tmp_path_factory.mktemp("mlp") / "run"
    return out, cfg, run(cfg, out, ["load", "train"])


@pytest.fixture(scope="module")
def mlp_run(trained_mlp):
    """The baseline ranked, converted and verified; then hardened, converted, verified, injected, estimated.
    Returns (baseline verify report, baseline C-sim logits, run directory, final RunState)."""
    from flow.steps import run

    out, cfg, _ = trained_mlp
    run(cfg, out, ["rank", "convert", "verify"])
    report = json.loads((out / "verify" / "report.json").read_text())
    baseline_csim = np.load(out / "verify" / "logits_csim.npy")
    state = run(cfg, out, ["harden", "convert", "verify", "inject", "estimate"])
    return report, baseline_csim, out, state


@pytest.mark.slow
def test_mlp_trains_and_is_dense_only(trained_mlp):
    _, _, state = trained_mlp
    model = state.model
    assert [layer.name for layer in model.layers] == [
        "features", "fc1", "relu1", "fc2", "relu2", "fc3", "relu3", "logits"
    ]  # fmt: skip
    assert {name: int(model.get_layer(name).units) for name in DENSE} == DENSE
    assert state.summary["train"]["test_accuracy"] > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("method", list(RankMethod))
def test_rank_gives_one_finite_score_per_neuron(trained_mlp, method):
    from flow.rank import rank_model

    _, _, state = trained_mlp
    x, y = state.data.x_test[:10], state.data.y_test[:10]
    cfg = RankConfig(images=10, fi_sampling=Sampling.STATISTICAL, fi_margin=0.2)
    ranking = rank_model(state.model, x, y, method, cfg, seed=0)
    assert {name: len(values) for name, values in ranking.scores.items()} == DENSE
    assert set(ranking.layer_types.values()) == {"QDense"}
    assert all(np.all(np.isfinite(values)) for values in ranking.scores.values())


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, policy", [("selective", "min"), ("selective", "range"), ("selective_tmr", "vote"), ("full_tmr", "vote")]
)
def test_every_harden_mode_keeps_the_keras_logits(trained_mlp, mode, policy):
    from flow.harden import harden_model, select_channels
    from flow.rank import Ranking, norm_scores

    _, _, state = trained_mlp
    model, x = state.model, state.data.x_test
    cfg = config_from_dict({"harden": {"mode": mode, "policy": policy}}).harden
    scores = norm_scores(model, 1)
    selection = select_channels(model, Ranking("l1", scores, {n: "QDense" for n in scores}, 0.0), cfg)
    hardened = harden_model(model, selection, cfg, state.data.x_train)
    np.testing.assert_array_equal(hardened.predict(x, verbose=0), model.predict(x, verbose=0))
    names = {layer.name for layer in hardened.layers}
    assert {f"{name}_correction" for name in DENSE} <= names and ("fc1_copy2" in names) == cfg.tmr


@pytest.mark.csim
@pytest.mark.slow
def test_mlp_csim_is_bit_exact_and_hardened_equals_baseline(mlp_run):
    report, baseline_csim, out, state = mlp_run
    assert report["bit_exact"] and report["n_samples"] == 150 and report["max_abs_diff"] == 0.0
    hardened = json.loads((out / "verify" / "report.json").read_text())
    assert hardened["bit_exact"] and hardened["equals_unhardened"]
    np.testing.assert_array_equal(np.load(out / "verify" / "logits_csim.npy"), baseline_csim)
    assert state.summary["harden"]["no_fault_bit_exact"] and state.summary["harden"]["extra_channels"] > 0


@pytest.mark.csim
@pytest.mark.slow
def test_mlp_campaign_and_estimate(mlp_run):
    _, _, out, _ = mlp_run
    summary = json.loads((out / "inject" / "summary.json").read_text())
    assert summary["total"]["n_faults"] == 40 and summary["samples"] == 30
    resources = json.loads((out / "estimate" / "resources.json").read_text())
    kinds = {row["name"]: row["kind"] for row in resources["layers"]}
    assert kinds["fc1"] == "Dense" and kinds["fc1_copy1"] == "Dense" and kinds["fc1_correction"] == "Correction"
    assert resources["total"]["LUT"] > 0 and resources["latency"]["cycles"] > 0
