import numpy as np
import pytest

from flow.config import DataConfig, DataName
from flow.data import fit_to_shape, load_dataset, quantize_inputs
from flow.errors import FlowError


def _on_grid(x, bits=8):
    return np.array_equal(x * 2**bits, np.round(x * 2**bits)) and x.min() >= 0 and x.max() <= 1


def test_digits_split_and_grid():
    ds = load_dataset(DataConfig(), seed=0)
    assert ds.shape == (8, 8, 1) and ds.classes == 10
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 1797
    assert len(ds.x_test) == 450
    assert all(_on_grid(x) for x in (ds.x_train, ds.x_val, ds.x_test))
    assert ds.x_train.dtype == np.float32


def test_digits_is_deterministic_and_seed_dependent():
    a, b, c = (load_dataset(DataConfig(), seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_test, c.y_test)


def test_subsampling():
    ds = load_dataset(DataConfig(n_train=100, n_test=20, val_fraction=0.2), seed=0)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (80, 20, 20)


def test_synthetic_any_shape_and_classes():
    ds = load_dataset(DataConfig(name=DataName.SYNTHETIC, shape=(12, 10, 3), classes=4, samples=200), seed=3)
    assert ds.shape == (12, 10, 3) and ds.classes == 4
    assert set(np.unique(ds.y_train)) == {0, 1, 2, 3}
    assert _on_grid(ds.x_test)


def test_fit_to_shape_resizes_and_maps_channels():
    ds = load_dataset(DataConfig(n_train=50, n_test=10), seed=0)
    fitted = fit_to_shape(ds, (16, 16, 3), 8)
    assert fitted.shape == (16, 16, 3)
    np.testing.assert_array_equal(fitted.x_test[..., 0], fitted.x_test[..., 2])
    assert _on_grid(fitted.x_train)
    assert fit_to_shape(ds, ds.shape, 8) is ds


def test_synthetic_flat_and_other_shapes():
    flat = load_dataset(DataConfig(name=DataName.SYNTHETIC, shape=(16,), classes=5, samples=100), seed=0)
    assert flat.shape == (16,) and flat.classes == 5 and _on_grid(flat.x_train)
    assert load_dataset(DataConfig(name=DataName.SYNTHETIC, shape=(4, 5), samples=50), seed=0).shape == (4, 5)


def test_fit_to_shape_flattens_for_a_flat_model_of_the_same_size():
    ds = load_dataset(DataConfig(n_train=50, n_test=10), seed=0)
    flat = fit_to_shape(ds, (64,), 8)
    assert flat.shape == (64,) and flat.x_val.shape[1:] == (64,)
    np.testing.assert_array_equal(flat.x_train, ds.x_train.reshape(len(ds.x_train), -1))
    with pytest.raises(FlowError, match=r"shape \(8, 8, 1\) \(64 values\), the model takes 63 flat features \(63,\)"):
        fit_to_shape(ds, (63,), 8)
    with pytest.raises(FlowError, match=r"model input shape \(8, 8\) is neither flat features"):
        fit_to_shape(ds, (8, 8), 8)


def test_fit_to_shape_channel_mismatch_is_clear():
    ds = load_dataset(DataConfig(name=DataName.SYNTHETIC, shape=(8, 8, 2), samples=50), seed=0)
    with pytest.raises(FlowError, match=r"data/model shape mismatch.*\(8, 8, 2\).*\(8, 8, 3\)"):
        fit_to_shape(ds, (8, 8, 3), 8)


def test_quantize_inputs_rounds_and_clips():
    x = np.array([-0.5, 0.0, 0.3, 1.0, 2.0])
    np.testing.assert_array_equal(quantize_inputs(x, 2), [0.0, 0.0, 0.25, 1.0, 1.0])


def _write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (40, 6, 6), dtype=np.uint8),
        "y_train": np.arange(40) % 3,
        "x_test": rng.integers(0, 256, (12, 6, 6), dtype=np.uint8),
        "y_test": np.arange(12) % 3,
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_npz_round_trip(tmp_path):
    path = _write_npz(tmp_path / "d.npz")
    ds = load_dataset(DataConfig(name=DataName.NPZ, path=str(path), val_fraction=0.0), seed=0)
    raw = np.load(path)
    assert ds.shape == (6, 6, 1) and ds.classes == 3
    np.testing.assert_array_equal(ds.x_test[..., 0], quantize_inputs(raw["x_test"] / 255.0, 8))
    np.testing.assert_array_equal(ds.y_test, raw["y_test"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"y_test": None}, "missing array(s) y_test"),
        ({"x_train": np.zeros(40, np.float32)}, "'x_train' has shape (40,); expected (N, F) features or (N, H, W)"),
        ({"x_train": np.zeros((40, 6), np.float32)}, "x_train samples have shape (6,), x_test samples (6, 6, 1)"),
        ({"x_test": np.full((12, 6, 6), 3.0)}, "'x_test' float values must lie in [0, 1]"),
        ({"x_test": np.zeros((12, 6, 6), np.int32)}, "'x_test' has dtype int32"),
        ({"y_train": np.zeros(39, np.int64)}, "'y_train' must be 40 non-negative integer labels"),
        ({"x_test": np.zeros((12, 5, 5), np.uint8)}, "x_train samples have shape (6, 6, 1), x_test samples (5, 5, 1)"),
    ],
)
def test_npz_bad_files_name_the_key(tmp_path, overrides, message):
    path = _write_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(FlowError) as err:
        load_dataset(DataConfig(name=DataName.NPZ, path=str(path)), seed=0)
    assert message in str(err.value) and "bad.npz" in str(err.value)


def test_npz_missing_and_unreadable_file(tmp_path):
    with pytest.raises(FlowError, match="file not found"):
        load_dataset(DataConfig(name=DataName.NPZ, path=str(tmp_path / "nope.npz")), seed=0)
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(FlowError, match=r"not a readable \.npz"):
        load_dataset(DataConfig(name=DataName.NPZ, path=str(junk)), seed=0)


@pytest.mark.parametrize("name", [DataName.MNIST, DataName.FASHION_MNIST, DataName.CIFAR10])
def test_keras_datasets_offline_give_a_clear_error(tmp_path, monkeypatch, name):
    """No network in tests: make every download attempt fail the way an offline machine does."""
    import urllib.error

    from keras.src.utils import data_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data_utils, "urlretrieve", offline)
    cache = tmp_path / "cache"
    with pytest.raises(FlowError) as err:
        load_dataset(DataConfig(name=name, cache_dir=str(cache)), seed=0)
    message = str(err.value)
    assert f"data '{name.value}': download failed" in message and str(cache) in message
    assert "npz" in message
