"""Structured pruning of a QKeras model: remove whole output channels of QConv2D and units of QDense.

Each tensor carries the list of channels it keeps. Channel-preserving layers pass it on, Flatten expands it to
the Dense rows it feeds ((h * W + w) * C + c), and layers whose outputs meet at an Add are pruned as one group
(the same channels), so residual connections stay consistent. The logits layer is never pruned and no layer is
pruned to zero channels. Every quantizer is kept.
"""

from __future__ import annotations

import itertools

import numpy as np

from flow.config import Optimizer, PruneConfig, PruneScope, Schedule
from flow.emulate import weight_layers
from flow.errors import FlowError
from flow.harden import rebuild
from flow.schema import closest
from flow.training import accuracy, seed_everything

PASS_THROUGH = {
    "QActivation", "MaxPooling2D", "AveragePooling2D", "Dropout", "ZeroPadding2D", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Add",
}  # fmt: skip


def _inbound(model) -> dict[str, list[str]]:
    return {
        spec["name"]: [n[0] for n in spec["inbound_nodes"][0]] if spec["inbound_nodes"] else []
        for spec in model.get_config()["layers"]
    }


def prune_groups(model) -> list[list[str]]:
    """Weight layers whose output channels must be pruned together (joined by Add); the logits layer excluded."""
    inbound = _inbound(model)
    weights = {layer.name for layer in weight_layers(model)}

    def source(name: str) -> set[str]:  # the weight layers that decide the channels of this tensor
        if name in weights:
            return {name}
        kind = type(model.get_layer(name)).__name__
        return set().union(*(source(i) for i in inbound[name])) if kind in PASS_THROUGH else set()

    parent = {name: name for name in weights}

    def find(a: str) -> str:
        while parent[a] != a:
            a = parent[a]
        return a

    for layer in model.layers:
        if type(layer).__name__ == "Add":
            members = sorted(set().union(*(source(i) for i in inbound[layer.name])))
            for other in members[1:]:
                parent[find(other)] = find(members[0])
    logits = weight_layers(model)[-1].name
    groups: dict[str, list[str]] = {}
    for layer in weight_layers(model):
        groups.setdefault(find(layer.name), []).append(layer.name)
    return [g for g in groups.values() if logits not in g]


def select_removals(model, scores: dict[str, np.ndarray], cfg: PruneConfig) -> dict[str, list[int]]:
    """Channels to remove per prunable layer (lowest scores first), by per-layer or global ratio, or explicit."""
    groups = prune_groups(model)
    by_layer = {name: group for group in groups for name in group}
    if cfg.channels:
        return _explicit(model, by_layer, cfg)
    group_scores = {tuple(g): sum(np.asarray(scores[n], dtype=float) for n in g) for g in groups}
    removals: dict[tuple, list[int]] = {}
    if cfg.scope is PruneScope.LAYER:
        for group, values in group_scores.items():
            removals[group] = sorted(int(c) for c in np.argsort(values, kind="stable")[: int(len(values) * cfg.ratio)])
    else:
        items = sorted((float(v), g, c) for g, values in group_scores.items() for c, v in enumerate(values))
        budget = int(len(items) * cfg.ratio)
        for _, group, channel in items:
            taken = removals.setdefault(group, [])
            if budget and len(taken) < len(group_scores[group]) - 1:
                taken.append(channel)
                budget -= 1
        removals = {g: sorted(c) for g, c in removals.items()}
    return {name: chans for group, chans in removals.items() for name in group if chans}


def _explicit(model, by_layer: dict[str, list[str]], cfg: PruneConfig) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, channels in cfg.channels.items():
        if name not in by_layer:
            known = list(by_layer)
            raise FlowError(
                f"prune.channels: '{name}' is not a prunable layer{closest(name, known)}; "
                f"prunable: {', '.join(known)} (never the logits layer)"
            )
        size = int(model.get_layer(name).kernel.shape[-1])
        if len(set(channels)) >= size:
            raise FlowError(f"prune.channels.{name}: removing {len(set(channels))} of {size} channels would leave none")
        if any(not 0 <= c < size for c in channels):
            raise FlowError(f"prune.channels.{name}: got {list(channels)}; channels are 0..{size - 1}")
        for member in by_layer[name]:
            out[member] = sorted(set(channels))
    return out


def prune_model(model, removals: dict[str, list[int]]):
    """A smaller copy of ``model`` without the removed channels (the original is untouched)."""
    inbound = _inbound(model)
    kept: dict[str, np.ndarray | None] = {}  # per layer output: kept channel (or flat) indices; None = all
    for spec in model.get_config()["layers"]:
        name, layer = spec["name"], model.get_layer(spec["name"])
        kind = type(layer).__name__
        ins = [kept[i] for i in inbound[name]]
        if kind in ("QConv2D", "QDense"):
            channels = int(layer.kernel.shape[-1])
            kept[name] = None if name not in removals else np.setdiff1d(np.arange(channels), removals[name])
        elif kind == "Flatten":
            shape = layer.input_shape[1:]
            kept[name] = (
                None if ins[0] is None else (np.arange(int(np.prod(shape[:-1])))[:, None] * shape[-1] + ins[0]).ravel()
            )
        elif kind == "Add":
            if any(
                (a is None) != (b is None) or (a is not None and not np.array_equal(a, b))
                for a, b in itertools.pairwise(ins)
            ):
                raise FlowError(f"layer '{name}' (Add): its inputs would keep different channels")
            kept[name] = ins[0]
        elif kind in PASS_THROUGH or kind == "InputLayer":
            kept[name] = ins[0] if ins else None
        elif any(k is not None for k in ins):
            raise FlowError(f"layer '{name}' ({kind}) follows a pruned layer and cannot be pruned through")
        else:
            kept[name] = None

    def shrink(layer, inputs):
        kernel, *bias = layer.get_weights()
        source = kept[inbound[layer.name][0]]
        if source is not None:
            kernel = np.take(kernel, source, axis=kernel.ndim - 2)
        own = kept[layer.name]
        if own is not None:
            kernel, bias = kernel[..., own], [b[own] for b in bias]
        config = layer.get_config()
        config["filters" if "filters" in config else "units"] = kernel.shape[-1]
        new = type(layer).from_config(config)
        out = new(inputs)
        new.set_weights([kernel, *bias])
        return out

    affected = {
        layer.name
        for layer in weight_layers(model)
        if kept[layer.name] is not None or kept[inbound[layer.name][0]] is not None
    }
    return rebuild(model, {name: shrink for name in affected})


def fine_tune(model, ds, cfg: PruneConfig, seed: int) -> dict:
    """Fine-tune (default: SGD momentum 0.9, cosine schedule); keep the best epoch by validation accuracy."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    seed_everything(seed)
    steps = max(1, cfg.epochs * int(np.ceil(len(ds.x_train) / cfg.batch_size)))
    rate = cfg.learning_rate
    if cfg.schedule is Schedule.COSINE:
        rate = tf.keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps)
    optimizer = (
        tf.keras.optimizers.SGD(rate, momentum=0.9)
        if cfg.optimizer is Optimizer.SGD
        else tf.keras.optimizers.Adam(rate)
    )
    model.compile(optimizer, tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x_val, y_val = (ds.x_val, ds.y_val) if len(ds.x_val) else (ds.x_train, ds.y_train)
    best, best_weights, history = accuracy(model, x_val, y_val), model.get_weights(), []
    for _ in range(cfg.epochs):
        model.fit(ds.x_train, ds.y_train, batch_size=cfg.batch_size, epochs=1, shuffle=True, verbose=0)
        val = accuracy(model, x_val, y_val)
        history.append(val)
        if val > best:
            best, best_weights = val, model.get_weights()
    model.set_weights(best_weights)
    return {"val_accuracy_per_epoch": history, "best_val_accuracy": best}
