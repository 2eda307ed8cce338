"""Vulnerability of every output channel of every QConv2D (filter) and QDense (neuron).

Scores are comparable across layers, so one global ranking exists beside the per-layer ones:
- ``l1`` / ``l2``: mean |w| / root-mean-square w of the channel's quantized kernel (the filter norm criterion of
  conventional pruning; dividing by the weight count only rescales a layer, its own order is unchanged);
- ``gradient``: HarDNN's vulnerability gain, V_c = sum_i mean_images sum_{w in c} (dDelta_i/dw)^2 / Delta_i^2 with
  Delta_i = Z_t - Z_i, t the predicted class (kernel and bias of the channel);
- ``first_order``: every single bit flip of the channel's weight and bias words, its effect on each image's margins
  predicted from the margin gradients (first order); the score is the predicted critical-SDC rate, as ``fi``;
- ``taylor``: first-order Taylor importance |sum_{w in c} w dL/dw| of the cross-entropy loss;
- ``fi``: ground truth by bit-exact fault injection: single bit flips sampled over the channel's weight and bias
  bits; the score is the critical-SDC rate per inference (share of (flip, image) pairs whose top-1 changes).
Larger is more vulnerable for every method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from flow.config import RankConfig, RankMethod, Sampling
from flow.emulate import Fault, FaultEmulator, weight_layers
from flow.margins import MAX_ELEMENTS, margin_gradients
from flow.stats import leveugle_sample_size, wilson_interval
from flow.training import inference_fn


@dataclass(frozen=True)
class Ranking:
    """Scores per layer (one per output channel, in channel order), with method-specific extras."""

    method: str
    scores: dict[str, np.ndarray]
    layer_types: dict[str, str]
    seconds: float
    params: dict = field(default_factory=dict)
    extras: dict[str, dict[str, list]] = field(default_factory=dict)  # layer -> name -> per-channel values

    def order(self, layer: str) -> np.ndarray:
        """Channel indices of a layer, most vulnerable first (ties: lower index first)."""
        return np.lexsort((np.arange(len(self.scores[layer])), -self.scores[layer]))

    def global_order(self) -> list[tuple[str, int]]:
        """(layer, channel) over all layers, most vulnerable first."""
        items = [(layer, c, s) for layer, values in self.scores.items() for c, s in enumerate(values)]
        return [(layer, c) for layer, c, _ in sorted(items, key=lambda t: -t[2])]


def _channel_axes(variable) -> tuple[int, ...]:
    return tuple(range(len(variable.shape) - 1))


def norm_scores(model, ord_: int) -> dict[str, np.ndarray]:
    """Mean |w| (ord 1) or RMS (ord 2) of each channel's quantized kernel."""
    scores = {}
    for layer in weight_layers(model):
        w = np.asarray(layer.kernel_quantizer_internal(layer.kernel), dtype=np.float64)
        axes = _channel_axes(layer.kernel)
        scores[layer.name] = np.mean(np.abs(w), axis=axes) if ord_ == 1 else np.sqrt(np.mean(w**2, axis=axes))
    return scores


def _per_channel(grads: list, layer) -> np.ndarray:
    """Sum a per-weight quantity over each output channel (kernel and bias)."""
    total = np.sum(grads[0], axis=_channel_axes(layer.kernel))
    return total + (grads[1] if len(grads) > 1 else 0.0)


def _params(layer) -> list:
    return [layer.kernel] + ([layer.bias] if getattr(layer, "bias", None) is not None else [])


def gradient_scores(model, x: np.ndarray, eps: float = 1e-12) -> dict[str, np.ndarray]:
    """HarDNN vulnerability gain per channel (kernel and bias), from the margin gradients of flow.margins."""
    totals: dict[str, np.ndarray] = {}
    for chunk in margin_gradients(model, x):
        weight = np.where(chunk.delta == 0.0, 0.0, 1.0 / np.maximum(chunk.delta**2, eps))  # target and ties out
        for name, grads in chunk.kernel.items():
            squares = np.sum(grads**2, axis=2) + (chunk.bias[name] ** 2 if name in chunk.bias else 0.0)  # (n, K, C)
            totals[name] = totals.get(name, 0.0) + np.sum(squares * weight[:, :, None], axis=(0, 1))
    return {name: total / len(x) for name, total in totals.items()}


def first_order_scores(model, x: np.ndarray, max_elements: int = MAX_ELEMENTS) -> dict[str, np.ndarray]:
    """Critical-SDC rate per channel over every single bit flip of its weights and bias, predicted to first order.

    A flip changing w by d changes each margin Delta_k by d * dDelta_k/dw; the (flip, image) pair counts as
    critical when another class then beats the predicted one. Exact for the last layer (the logits are linear in its
    weights)."""
    emulator = FaultEmulator(model)
    hits = {key: np.zeros(array.size) for key, array in emulator.arrays.items()}
    for chunk in margin_gradients(model, x, max_elements):
        for (layer, name), array in emulator.arrays.items():
            grads = (chunk.kernel if name == "kernel" else chunk.bias)[layer]
            above, below = _closing_changes(chunk.delta, grads.reshape(*grads.shape[:2], -1), chunk.target)
            words = emulator.quantized[(layer, name)].reshape(-1)
            for bit in range(array.fmt.width):
                change = array.fmt.inject(words, bit) - words
                hits[(layer, name)] += np.sum((change > above) | (change < below), axis=0)
    scores = {}
    for layer in weight_layers(model):
        keys = [key for key in hits if key[0] == layer.name]
        channels = emulator.arrays[keys[0]].channels
        critical = sum(np.bincount(np.arange(hits[k].size) % channels, hits[k], channels) for k in keys)
        flips = sum(emulator.arrays[k].size // channels * emulator.arrays[k].fmt.width for k in keys)
        scores[layer.name] = critical / (flips * len(x))
    return scores


def _closing_changes(delta: np.ndarray, grads: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image and weight, the smallest increase and the largest decrease d of the weight that let a class k beat
    the target t (inf / -inf when none does): delta_k + d * grad_k < 0, or = 0 when k < t (argmax takes the first
    maximum). delta (n, K), grads (n, K, W), target (n,)."""
    rivals = delta.copy()
    rivals[np.arange(len(delta)), target] = np.inf  # the target never beats itself: its thresholds become +-inf
    with np.errstate(divide="ignore", invalid="ignore"):
        closing = np.divide(-rivals[:, :, None], grads)  # nan where 0/0: no threshold (masked out below)
    earlier = np.arange(delta.shape[1])[None, :] < target[:, None]  # these win a tie already: one ulp closer
    closing[earlier] = np.nextafter(closing[earlier], np.where(grads[earlier] < 0, -np.inf, np.inf))
    above = np.where(grads < 0, closing, np.inf).min(axis=1)
    np.copyto(closing, -np.inf, where=~(grads > 0))
    return above, closing.max(axis=1)


def taylor_scores(model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """|sum_{w in c} w * dL/dw| with L the mean cross-entropy on (x, y)."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    layers = weight_layers(model)
    variables = [v for layer in layers for v in _params(layer)]
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=False))
    grads = tape.gradient(loss, variables)
    scores, pos = {}, 0
    for layer in layers:
        prods = []
        for var in _params(layer):
            prods.append((var.numpy() * grads[pos].numpy()).astype(np.float64))
            pos += 1
        scores[layer.name] = np.abs(_per_channel(prods, layer))
    return scores


def fi_scores(model, x: np.ndarray, cfg: RankConfig, seed: int) -> tuple[dict[str, np.ndarray], dict, dict]:
    """Critical-SDC rate per channel by bit-exact single bit flips (Keras-side emulation).

    Returns (scores, extras, params); extras hold per channel the number of flips, the share of flips that
    change at least one image's top-1 and its Wilson interval."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    emulator = FaultEmulator(model)
    forward, x = inference_fn(model), tf.constant(x)
    golden = forward(x).numpy().argmax(axis=1)
    scores, extras, total = {}, {}, 0
    for layer_pos, layer in enumerate(weight_layers(model)):
        rows = []
        for channel in range(int(layer.kernel.shape[-1])):
            faults = _channel_faults(
                emulator, layer.name, channel, cfg, np.random.default_rng([seed, layer_pos, channel])
            )
            changed = np.zeros(len(faults))
            for i, fault in enumerate(faults):
                with emulator.injected([fault]):
                    changed[i] = np.mean(forward(x).numpy().argmax(axis=1) != golden)
            critical = int(np.sum(changed > 0))
            lo, hi = wilson_interval(critical, len(faults), cfg.fi_confidence)
            rows.append(
                (float(changed.mean()) if len(faults) else 0.0, len(faults), critical / max(1, len(faults)), lo, hi)
            )
            total += len(faults)
        values = np.array(rows, dtype=np.float64)
        scores[layer.name] = values[:, 0]
        extras[layer.name] = {
            "n_flips": values[:, 1].astype(int).tolist(),
            "critical_flip_rate": values[:, 2].tolist(),
            "critical_flip_ci95": values[:, 3:5].tolist(),
        }
    params = {
        "sampling": cfg.fi_sampling.value, "margin": cfg.fi_margin, "confidence": cfg.fi_confidence,
        "p": cfg.fi_p, "total_flips": total, "images": len(x),
    }  # fmt: skip
    return scores, extras, params


def _channel_faults(emulator: FaultEmulator, layer: str, channel: int, cfg: RankConfig, rng) -> list[Fault]:
    """All (array, index, bit) of one channel, or a Leveugle-sized uniform sample of them."""
    population = []
    for name in ("kernel", "bias"):
        array = emulator.arrays.get((layer, name))
        if array is not None:
            population += [(name, int(i), b) for i in array.channel_indices(channel) for b in range(array.fmt.width)]
    n = len(population)
    if cfg.fi_sampling is Sampling.STATISTICAL:
        n = leveugle_sample_size(len(population), cfg.fi_margin, cfg.fi_confidence, cfg.fi_p)
    picks = np.sort(rng.choice(len(population), size=n, replace=False)) if n < len(population) else range(n)
    return [Fault(layer, *population[i]) for i in picks]


def rank_model(model, x: np.ndarray, y: np.ndarray, method: RankMethod, cfg: RankConfig, seed: int) -> Ranking:
    """Score every channel of every QConv2D/QDense layer with one method."""
    start = time.perf_counter()
    params: dict = {"images": len(x)} if method is not RankMethod.L1 and method is not RankMethod.L2 else {}
    extras: dict = {}
    if method is RankMethod.L1:
        scores = norm_scores(model, 1)
    elif method is RankMethod.L2:
        scores = norm_scores(model, 2)
    elif method is RankMethod.GRADIENT:
        scores = gradient_scores(model, x)
    elif method is RankMethod.FIRST_ORDER:
        scores = first_order_scores(model, x)
    elif method is RankMethod.TAYLOR:
        scores = taylor_scores(model, x, y)
    else:
        scores, extras, params = fi_scores(model, x, cfg, seed)
    types = {layer.name: type(layer).__name__ for layer in weight_layers(model)}
    return Ranking(method.value, scores, types, time.perf_counter() - start, params, extras)
