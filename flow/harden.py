"""Selective hardening of a QKeras model: duplicate (or triplicate) the most vulnerable filters/neurons and
merge every original/copy group in a Correction layer placed right after the layer, before any non-linearity.

A hardened layer keeps its name and its C channels; the copies of its k selected channels (ascending order) form
separate layers ``<name>_copy1`` (and ``<name>_copy2`` for TMR) with k channels each, reading the same input.
Separate layers mean separate weight arrays and separate hardware instances, which synthesis cannot merge with
the original the way it can merge identical logic inside one layer. ``<name>_correction`` takes the original and
the copies and returns C channels. Downstream layers are untouched, so with no fault the hardened model computes
exactly the baseline's outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from flow.config import CostMetric, HardenConfig, HardenMode, Policy, Selection
from flow.emulate import weight_layers
from flow.errors import FlowError
from flow.modelio import custom_objects
from flow.rank import Ranking
from flow.schema import closest
from flow.training import model_outputs


@dataclass(frozen=True)
class LayerCost:
    channels: int
    params_per_channel: int  # kernel weights + bias of one output channel
    macs_per_channel: int  # multiply-accumulates of one output channel over the whole output map

    @property
    def params(self) -> int:
        return self.params_per_channel * self.channels

    @property
    def macs(self) -> int:
        return self.macs_per_channel * self.channels


def total_cost(costs: dict[str, LayerCost]) -> dict[str, int]:
    """Parameters and MACs of all QConv2D/QDense layers together."""
    return {"params": sum(c.params for c in costs.values()), "macs": sum(c.macs for c in costs.values())}


def layer_costs(model) -> dict[str, LayerCost]:
    """Per QConv2D/QDense: channels, parameters and MACs of one output channel."""
    costs = {}
    for layer in weight_layers(model):
        kernel = layer.kernel.shape
        fan_in = int(np.prod(kernel[:-1]))
        positions = int(np.prod(layer.output_shape[1:-1])) if len(layer.output_shape) > 2 else 1
        bias = 1 if getattr(layer, "bias", None) is not None else 0
        costs[layer.name] = LayerCost(int(kernel[-1]), fan_in + bias, fan_in * positions)
    return costs


def select_channels(model, ranking: Ranking | None, cfg: HardenConfig) -> dict[str, list[int]]:
    """Channels to protect per layer (ascending), by ratio, budget, explicit list, or all (full modes)."""
    costs = layer_costs(model)
    layers = target_layers(costs, cfg)
    if cfg.mode in (HardenMode.FULL_DMR, HardenMode.FULL_TMR):
        return {name: list(range(costs[name].channels)) for name in layers}
    if cfg.selection is Selection.LIST:
        return _explicit(costs, layers, cfg)
    if ranking is None:
        raise FlowError(f"harden: selection '{cfg.selection.value}' needs a vulnerability ranking; run step 'rank'")
    missing = [name for name in layers if name not in ranking.scores]
    if missing:
        raise FlowError(f"harden: the ranking has no scores for layer(s) {missing}; rank this model again")
    if cfg.selection is Selection.RATIO:
        chosen = {}
        for name in layers:
            k = max(1, int(costs[name].channels * cfg.ratio))
            chosen[name] = sorted(int(c) for c in ranking.order(name)[:k])
        return chosen
    return _by_budget(costs, layers, ranking, cfg)


def target_layers(costs: dict[str, LayerCost], cfg: HardenConfig) -> list[str]:
    """The weight layers harden.layers names (all when null), in model order; an unknown name is refused."""
    if cfg.layers is None:
        return list(costs)
    for name in cfg.layers:
        if name not in costs:
            raise FlowError(
                f"harden.layers: no QConv2D/QDense layer named '{name}'{closest(name, list(costs))}; "
                f"weight layers: {', '.join(costs)}"
            )
    return [name for name in costs if name in cfg.layers]


def _explicit(costs: dict[str, LayerCost], layers: list[str], cfg: HardenConfig) -> dict[str, list[int]]:
    if not cfg.channels:
        raise FlowError("harden.channels: selection 'list' needs a mapping of layer names to channel lists")
    chosen = {}
    for name, channels in cfg.channels.items():
        if name not in costs:
            raise FlowError(
                f"harden.channels: no QConv2D/QDense layer named '{name}'{closest(name, list(costs))}; "
                f"weight layers: {', '.join(costs)}"
            )
        if name not in layers:
            raise FlowError(f"harden.channels: layer '{name}' is not in harden.layers {list(layers)}")
        bad = [c for c in channels if not 0 <= c < costs[name].channels]
        if bad or len(set(channels)) != len(channels):
            top = costs[name].channels - 1
            raise FlowError(f"harden.channels.{name}: got {list(channels)}; channels must be distinct, in 0..{top}")
        chosen[name] = sorted(channels)
    return chosen


def _by_budget(costs: dict[str, LayerCost], layers: list[str], ranking: Ranking, cfg: HardenConfig) -> dict:
    """Greedy: most vulnerability per unit of cost first, while the extra cost stays within the budget."""
    copies = 2 if cfg.tmr else 1

    def unit_cost(name: str) -> int:
        c = costs[name]
        return copies * (c.macs_per_channel if cfg.budget_metric is CostMetric.MACS else c.params_per_channel)

    total = total_cost(costs)[cfg.budget_metric.value]
    allowance = total * cfg.budget / 100.0
    candidates = [
        (float(ranking.scores[n][c]) / max(1, unit_cost(n)), n, c) for n in layers for c in range(costs[n].channels)
    ]
    chosen: dict[str, list[int]] = {n: [] for n in layers}
    spent = 0
    for score, name, channel in sorted(candidates, key=lambda t: (-t[0], t[1], t[2])):
        if score <= 0:
            break
        if spent + unit_cost(name) <= allowance:
            chosen[name].append(channel)
            spent += unit_cost(name)
    return {name: sorted(chs) for name, chs in chosen.items() if chs}


def profile_bounds(model, layers: list[str], x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per channel min and max of each layer's output over ``x`` (the baseline's pre-activation ranges)."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    probe = tf.keras.Model(model.inputs, [model.get_layer(name).output for name in layers])
    outputs = model_outputs(probe, x)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    bounds = {}
    for name, out in zip(layers, outputs, strict=True):
        flat = np.asarray(out, dtype=np.float64).reshape(-1, out.shape[-1])
        bounds[name] = (flat.min(axis=0), flat.max(axis=0))
    return bounds


def harden_model(model, selection: dict[str, list[int]], cfg: HardenConfig, profile_x: np.ndarray | None = None,
                 policies: dict[str, Policy] | None = None):  # fmt: skip
    """The hardened copy of ``model`` (the original is left untouched); ``policies`` gives a layer its own policy
    (selection plan: one copy for min and range, two for vote), else every layer takes harden.policy."""
    policies = {name: (policies or {}).get(name, cfg.resolved_policy) for name in selection}
    profiled = [name for name in selection if policies[name] is Policy.RANGE or cfg.clip]
    bounds = {}
    if profiled:
        if profile_x is None:
            raise FlowError("harden: policy 'range' and clip need training images to profile channel ranges")
        bounds = profile_bounds(model, profiled, profile_x)
    for name in selection:
        activation = model.get_layer(name).get_config().get("activation")
        if activation not in (None, "linear"):
            raise FlowError(
                f"layer '{name}' has a built-in activation {activation!r}: the correction must come before any "
                "non-linearity; use a separate QActivation layer"
            )

    def expand(layer, inputs):
        policy = policies[layer.name]
        copies = 2 if policy is Policy.VOTE else 1
        return _hardened_layer(layer, inputs, selection[layer.name], copies, policy, cfg.clip, bounds.get(layer.name))

    return rebuild(model, {name: expand for name in selection if selection[name]})


def copy_name(layer: str, n: int) -> str:
    """Name of the n-th copy layer (n = 1, 2) of a hardened layer."""
    return f"{layer}_copy{n}"


def copy_of(name: str) -> str | None:
    """The hardened layer whose copy layer ``name`` is (``copy_name``), None for any other name."""
    match = re.fullmatch(r"(.+)_copy[12]", name)
    return match.group(1) if match else None


def correction_name(layer: str) -> str:
    """Name of a hardened layer's correction layer."""
    return f"{layer}_correction"


def _hardened_layer(layer, inputs, chosen: list[int], copies: int, policy: Policy, clip: bool, bounds):
    from flow.correction import Correction  # flow.correction imports TensorFlow at its top

    channels = int(layer.kernel.shape[-1])
    original = type(layer).from_config(layer.get_config())
    outputs = [original(inputs)]
    original.set_weights(layer.get_weights())
    kernel, *bias = layer.get_weights()
    config = layer.get_config()
    key = "filters" if "filters" in config else "units"
    for n in range(1, copies + 1):
        copy = type(layer).from_config({**config, key: len(chosen), "name": copy_name(layer.name, n)})
        outputs.append(copy(inputs))
        copy.set_weights([kernel[..., chosen]] + [b[chosen] for b in bias])
    sources = [[c] for c in range(channels)]
    for n in range(copies):
        for j, c in enumerate(chosen):
            sources[c].append(channels + n * len(chosen) + j)  # index into (original, copy1, copy2) stacked
    lo, hi = (None, None) if bounds is None else ([float(v) for v in bounds[0]], [float(v) for v in bounds[1]])
    return Correction(sources, policy.value, lo, hi, clip, name=correction_name(layer.name))(outputs)


def rebuild(model, replace: dict):
    """Rebuild a functional model layer by layer (fresh layers, copied weights); ``replace[name](layer, inputs)``
    builds the output of that layer instead."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    config = model.get_config()
    tensors = {}
    with tf.keras.utils.custom_object_scope(custom_objects()):
        for spec in config["layers"]:
            layer = model.get_layer(spec["name"])
            if spec["class_name"] == "InputLayer":
                tensors[layer.name] = tf.keras.Input(shape=layer.input_shape[0][1:], name=layer.name)
                continue
            nodes = spec["inbound_nodes"]
            if len(nodes) != 1:
                raise FlowError(f"layer '{layer.name}' is used {len(nodes)} times; shared layers are not supported")
            args = [tensors[inbound[0]] for inbound in nodes[0]]
            inputs = args[0] if len(args) == 1 else args
            if layer.name in replace:
                tensors[layer.name] = replace[layer.name](layer, inputs)
            else:
                fresh = type(layer).from_config(layer.get_config())
                tensors[layer.name] = fresh(inputs)
                fresh.set_weights(layer.get_weights())
    outputs = [tensors[name] for name, *_ in config["output_layers"]]
    return tf.keras.Model(
        [tensors[name] for name, *_ in config["input_layers"]],
        outputs[0] if len(outputs) == 1 else outputs,
        name=model.name,
    )


def overhead_summary(baseline, hardened, selection: dict[str, list[int]], cfg: HardenConfig,
                     policies: dict[str, Policy] | None = None) -> dict:  # fmt: skip
    """Parameters, MACs and extra channels per layer and in total, baseline vs hardened; ``policies``: each
    layer's own (selection plan)."""
    base, hard = layer_costs(baseline), layer_costs(hardened)
    rows = {}
    for name, b in base.items():
        extra = sum(hard[copy_name(name, n)].channels for n in (1, 2) if copy_name(name, n) in hard)
        rows[name] = {
            "channels": b.channels,
            "extra_channels": extra,
            "copy_layers": [copy_name(name, n) for n in (1, 2) if copy_name(name, n) in hard],
            "protected": selection.get(name, []),
            "policy": (policies or {}).get(name, cfg.resolved_policy).value if selection.get(name) else None,
            "params": b.params,
            "params_hardened": b.params + b.params_per_channel * extra,
            "macs": b.macs,
            "macs_hardened": b.macs + b.macs_per_channel * extra,
        }
    total = {
        key: sum(r[key] for r in rows.values())
        for key in ("params", "params_hardened", "macs", "macs_hardened", "extra_channels")
    }
    total["params_overhead_pct"] = round(100.0 * (total["params_hardened"] / total["params"] - 1.0), 3)
    total["macs_overhead_pct"] = round(100.0 * (total["macs_hardened"] / total["macs"] - 1.0), 3)
    return {
        "mode": cfg.mode.value,
        "policy": None if policies is not None else cfg.resolved_policy.value,
        "selection": cfg.selection.value if cfg.mode not in (HardenMode.FULL_DMR, HardenMode.FULL_TMR) else "all",
        "clip": cfg.clip,
        "layers": rows,
        "total": total,
    }
