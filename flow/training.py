"""Deterministic training of a QKeras model on a Dataset."""

from __future__ import annotations

import numpy as np

from flow.config import Optimizer, TrainConfig
from flow.data import Dataset


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TF and make TF ops deterministic (the only reproducible setting in TF 2.14)."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_model(model, ds: Dataset, cfg: TrainConfig, seed: int) -> dict:
    """Train in place with a from-logits cross-entropy; return the per-epoch history and test accuracy."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    seed_everything(seed)
    optimizer = {
        Optimizer.ADAM: lambda: tf.keras.optimizers.Adam(cfg.learning_rate),
        Optimizer.SGD: lambda: tf.keras.optimizers.SGD(cfg.learning_rate, momentum=0.9),
    }[cfg.optimizer]()
    model.compile(
        optimizer=optimizer,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = {}
    if cfg.epochs > 0:
        validation = (ds.x_val, ds.y_val) if len(ds.x_val) else None
        fit = model.fit(
            ds.x_train, ds.y_train, epochs=cfg.epochs, batch_size=cfg.batch_size,
            validation_data=validation, shuffle=True, verbose=0,
        )  # fmt: skip
        history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    return {"history": history, "test_accuracy": accuracy(model, ds.x_test, ds.y_test)}


def inference_fn(model):
    """A graph-compiled forward pass ``x -> logits`` (about 10x faster than eager calls of QKeras layers).

    It reads the model's variables at call time, so weight faults written into them are seen."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    @tf.function(autograph=False, reduce_retracing=True)
    def forward(x):
        return model(x, training=False)

    return forward


def model_outputs(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray | list[np.ndarray]:
    """The model's output(s) on ``x``, called eagerly batch by batch: the same values as ``model.predict`` without
    tracing a predict function for every new model (about a second each)."""
    batches = [model(x[i : i + batch_size], training=False) for i in range(0, max(len(x), 1), batch_size)]
    if isinstance(batches[0], list | tuple):
        return [np.concatenate([np.asarray(b[k]) for b in batches]) for k in range(len(batches[0]))]
    return np.concatenate([np.asarray(b) for b in batches])


def logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Model outputs as float32 (N, classes)."""
    return np.asarray(model_outputs(model, x, batch_size), dtype=np.float32)


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy."""
    return float(np.mean(logits(model, x).argmax(axis=1) == y)) if len(x) else float("nan")
