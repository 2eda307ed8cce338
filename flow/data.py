"""Data sources. Every source yields samples in [0, 1]: images (N, H, W, C) or flat feature vectors (N, F), rounded
to the input grid 2^-input_frac_bits, so the hls4ml input type ufixed<input_frac_bits+1, 1> represents them exactly
and C-sim can be compared bit for bit.

Features must be scaled to [0, 1] by the user (e.g. min-max over the training set) before they are saved for the
``npz`` source: float arrays with values outside [0, 1] are refused, uint8 arrays are divided by 255. Every source
is deterministic from the seed."""

from __future__ import annotations

import dataclasses
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flow.config import DataConfig, DataName
from flow.errors import FlowError


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> dict:
        """Sizes and shapes, for the run's JSON outputs."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "classes": self.classes,
            "n_train": len(self.x_train),
            "n_val": len(self.x_val),
            "n_test": len(self.x_test),
        }


def quantize_inputs(x: np.ndarray, frac_bits: int) -> np.ndarray:
    """Clip to [0, 1] and round to multiples of 2^-frac_bits (float32, exact)."""
    scale = float(2**frac_bits)
    return (np.round(np.clip(x, 0.0, 1.0) * scale) / scale).astype(np.float32)


def load_dataset(cfg: DataConfig, seed: int) -> Dataset:
    """Load, split (train/val/test), subsample and quantize the configured data source."""
    loaders = {
        DataName.DIGITS: _digits,
        DataName.SYNTHETIC: _synthetic,
        DataName.NPZ: _npz,
        DataName.MNIST: _keras_dataset,
        DataName.FASHION_MNIST: _keras_dataset,
        DataName.CIFAR10: _keras_dataset,
    }
    x_train, y_train, x_test, y_test = loaders[cfg.name](cfg, seed)
    rng = np.random.default_rng(seed)
    x_train, y_train = _take(x_train, y_train, cfg.n_train, rng)
    x_test, y_test = _take(x_test, y_test, cfg.n_test, rng)
    n_val = round(len(x_train) * cfg.val_fraction)
    order = rng.permutation(len(x_train))
    val, train = order[:n_val], order[n_val:]
    classes = int(max(y_train.max(), y_test.max())) + 1
    q = cfg.input_frac_bits
    return Dataset(
        cfg.name.value,
        quantize_inputs(x_train[train], q),
        y_train[train].astype(np.int64),
        quantize_inputs(x_train[val], q),
        y_train[val].astype(np.int64),
        quantize_inputs(x_test, q),
        y_test.astype(np.int64),
        classes,
    )


def fit_to_shape(ds: Dataset, shape: tuple[int, ...], frac_bits: int) -> Dataset:
    """Adapt the data to a model input shape, or fail with one clear error naming both shapes.

    A flat model input (F,) takes any data whose samples hold exactly F values (images are flattened row-major,
    as Keras' Flatten does); an image input (H, W, C) takes images, resized (bilinear) and mapped 1 <-> 3
    channels."""
    shape = tuple(int(d) for d in shape)
    if shape == ds.shape:
        return ds
    if len(shape) == 1:
        if int(np.prod(ds.shape)) != shape[0]:
            raise FlowError(
                f"data/model shape mismatch: data '{ds.name}' has samples of shape {ds.shape} "
                f"({int(np.prod(ds.shape))} values), the model takes {shape[0]} flat features {shape}"
            )

        def flatten(x: np.ndarray) -> np.ndarray:
            return x.reshape(len(x), -1)

        return dataclasses.replace(
            ds, x_train=flatten(ds.x_train), x_val=flatten(ds.x_val), x_test=flatten(ds.x_test)
        )  # values unchanged: still on the input grid
    if len(shape) != 3:
        raise FlowError(
            f"model input shape {shape} is neither flat features (F,) nor an image shape (H, W, C) "
            f"(data '{ds.name}' has samples of shape {ds.shape})"
        )
    if len(ds.shape) != 3:
        raise FlowError(
            f"data/model shape mismatch: data '{ds.name}' has samples of shape {ds.shape}, the model takes images "
            f"{shape}; give a model with a flat input of {int(np.prod(ds.shape))} features, or image data"
        )
    (h, w, c), (_, _, dc) = shape, ds.shape
    if dc != c and not (dc == 1 and c == 3) and not (dc == 3 and c == 1):
        raise FlowError(
            f"data/model shape mismatch: data '{ds.name}' has images {ds.shape}, the model takes {shape}; "
            "channels can only be mapped 1 -> 3 or 3 -> 1"
        )

    def fit(x: np.ndarray) -> np.ndarray:
        if dc == 1 and c == 3:
            x = np.repeat(x, 3, axis=-1)
        elif dc == 3 and c == 1:
            x = x.mean(axis=-1, keepdims=True)
        if x.shape[1:3] != (h, w):
            import tensorflow as tf  # TensorFlow: ~2 s to import

            x = tf.image.resize(x, (h, w), method="bilinear", antialias=True).numpy()
        return quantize_inputs(x, frac_bits)

    return dataclasses.replace(ds, x_train=fit(ds.x_train), x_val=fit(ds.x_val), x_test=fit(ds.x_test))


def _take(x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n >= len(x):
        return x, y
    keep = np.sort(rng.choice(len(x), size=n, replace=False))
    return x[keep], y[keep]


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Stratified split, returned as x_train, y_train, x_test, y_test."""
    from sklearn.model_selection import train_test_split  # scikit-learn: ~0.9 s to import

    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return x_train, y_train, x_test, y_test


def _digits(cfg: DataConfig, seed: int) -> tuple[np.ndarray, ...]:
    """scikit-learn's 8x8 digits as (N, 8, 8, 1) images; fit_to_shape flattens them for a model taking 64 features."""
    from sklearn.datasets import load_digits  # scikit-learn: ~0.9 s to import

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return _split(x, digits.target, cfg.test_fraction, seed)


def _synthetic(cfg: DataConfig, seed: int) -> tuple[np.ndarray, ...]:
    """Learnable generated samples of shape ``data.shape`` ([F] features, [H, W, C] images, or any other shape):
    one random template per class plus noise, in [0, 1]."""
    if len(cfg.shape) == 0 or min(cfg.shape) < 1:
        raise FlowError(f"data.shape: got {list(cfg.shape)}, expected [F] or [H, W, C] with positive sizes")
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0.0, 1.0, size=(cfg.classes, *cfg.shape))
    y = np.arange(cfg.samples) % cfg.classes
    rng.shuffle(y)
    x = 0.6 * templates[y] + 0.4 * rng.uniform(0.0, 1.0, size=(cfg.samples, *cfg.shape))
    return _split(x.astype(np.float32), y, cfg.test_fraction, seed)


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_CLASSES = 1000  # as data.classes of the synthetic source: the model gets one logit per class


def _npz(cfg: DataConfig, seed: int) -> tuple[np.ndarray, ...]:
    path = Path(cfg.path or "")
    if not path.is_file():
        raise FlowError(f"data.path: file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise FlowError(f"{path}: missing array(s) {', '.join(missing)}; needs {', '.join(NPZ_KEYS)}")
            arrays = {k: f[k] for k in NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # EOFError: an empty file
        raise FlowError(f"{path}: not a readable .npz file ({' '.join(str(exc).split()) or type(exc).__name__}); "
                        f"data.path needs a numpy .npz with {', '.join(NPZ_KEYS)}") from None  # fmt: skip
    xs = [_npz_samples(arrays[k], path, k) for k in ("x_train", "x_test")]
    ys = [_npz_labels(arrays[k], path, k, len(x)) for k, x in zip(("y_train", "y_test"), xs, strict=True)]
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise FlowError(
            f"{path}: x_train samples have shape {xs[0].shape[1:]}, x_test samples {xs[1].shape[1:]}; they must match"
        )
    return xs[0], ys[0], xs[1], ys[1]


def _npz_samples(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """(N, F) feature vectors, or (N, H, W) / (N, H, W, C) images (as (N, H, W, C)); uint8 or float in [0, 1]."""
    given = x.shape
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim not in (2, 4) or len(x) == 0 or 0 in x.shape:
        raise FlowError(
            f"{path}: '{key}' has shape {given}; expected (N, F) features or (N, H, W) / (N, H, W, C) images "
            "with N > 0 and positive sizes"
        )
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise FlowError(f"{path}: '{key}' has dtype {x.dtype}; expected uint8 (0..255) or float in [0, 1]")
    if not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0:
        raise FlowError(f"{path}: '{key}' float values must lie in [0, 1] (got [{x.min()}, {x.max()}])")
    return x.astype(np.float32)


def _npz_labels(y: np.ndarray, path: Path, key: str, n: int) -> np.ndarray:
    if y.ndim == 2:
        y = y.argmax(axis=1)
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise FlowError(
            f"{path}: '{key}' must be {n} non-negative integer labels (or one-hot rows); "
            f"got shape {y.shape}, dtype {y.dtype}"
        )
    if len(y) and y.max() >= MAX_CLASSES:
        raise FlowError(
            f"{path}: '{key}' has label {y.max()}; allowed: labels 0..{MAX_CLASSES - 1} (at most {MAX_CLASSES} "
            "classes, one model output each)"
        )
    return y.astype(np.int64)


def _keras_dataset(cfg: DataConfig, seed: int) -> tuple[np.ndarray, ...]:
    """mnist / fashion_mnist / cifar10 through keras.datasets; cached after the first download."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    module = {
        DataName.MNIST: tf.keras.datasets.mnist,
        DataName.FASHION_MNIST: tf.keras.datasets.fashion_mnist,
        DataName.CIFAR10: tf.keras.datasets.cifar10,
    }[cfg.name]
    previous = os.environ.get("KERAS_HOME")
    if cfg.cache_dir:
        os.environ["KERAS_HOME"] = str(Path(cfg.cache_dir).expanduser())
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # keras raises a bare Exception on URL/HTTP failures
        where = cfg.cache_dir or os.environ.get("KERAS_HOME") or "~/.keras"
        raise FlowError(
            f"data '{cfg.name.value}': download failed and no cached copy in {where}/datasets "
            f"({' '.join(str(exc).split())}); connect once to fill the cache, or use data.name: npz"
        ) from None
    finally:
        if cfg.cache_dir:
            if previous is None:
                os.environ.pop("KERAS_HOME", None)
            else:
                os.environ["KERAS_HOME"] = previous
    images = [x[..., None] if x.ndim == 3 else x for x in (x_train, x_test)]
    return (
        images[0].astype(np.float32) / 255.0,
        y_train.reshape(-1),
        images[1].astype(np.float32) / 255.0,
        y_test.reshape(-1),
    )
