"""Canonical form of a user's QKeras model, computing exactly the same function (on the logits):

- a built-in activation of QConv2D/QDense/QConv2DBatchnorm/QDenseBatchnorm moves into its own layer
  ``<name>_act`` (a QActivation for a quantizer, an Activation for Keras' float relu): ranking and hardening need the
  layer's pre-activation output, and the correction must come before any non-linearity;
- a final softmax/sigmoid (an Activation/Softmax layer, or built into the last layer) is stripped: campaigns
  compare and inject on the logits (hls4ml's softmax is a lookup table);
- Dropout and other inference-time identities are removed; a plain ``ReLU`` layer becomes Activation('relu');
- QConv2DBatchnorm becomes the QConv2D it computes at inference: kernel and bias folded with the moving statistics
  (the same float32 operations as QKeras), then quantized by the same quantizers, so rank/harden/estimate see an
  ordinary convolution with its channels;
- BatchNormalization / QBatchNormalization are kept (folding them into quantized weights would move the weights
  off their quantizer grid and change the model); hls4ml computes them in fixed point (see flow/hls_precision.py).

``normalize_model`` returns the new model and the list of what it did; ``check_normalization`` proves, on data,
that the normalized logits put through the stripped activation equal the original outputs bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flow.errors import FlowError
from flow.harden import rebuild
from flow.modelio import SUPPORTED_LAYERS, layer_problems
from flow.training import model_outputs

IDENTITIES = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
              "ActivityRegularization"}  # fmt: skip
ACTIVATION_HOSTS = {"QConv2D", "QDense", "QConv2DBatchnorm", "QDenseBatchnorm", "QDepthwiseConv2D", "Conv2D", "Dense"}
OUTPUT_ACTIVATIONS = {"softmax", "sigmoid"}


@dataclass(frozen=True)
class Normalized:
    """The normalized model, what was changed, and the activation stripped from the output (or None)."""

    model: object
    actions: list[dict] = field(default_factory=list)
    output_activation: str | None = None

    def summary(self) -> dict:
        return {"actions": self.actions, "output_activation": self.output_activation, "changed": bool(self.actions)}


def _activation_name(activation) -> str | None:
    """'relu', 'softmax', ... for Keras functions; None for linear/absent; a QKeras quantizer's string otherwise."""
    if activation is None:
        return None
    name = getattr(activation, "__name__", None)
    if name is not None:
        return None if name == "linear" else name
    return str(activation)  # a QKeras quantizer object: quantized_relu(6,0) and the like


def _is_quantizer(activation) -> bool:
    return activation is not None and getattr(activation, "__name__", None) is None


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}{n}"
    taken.add(candidate)
    return candidate


def to_functional(model):
    """A Sequential model as the equivalent functional model (same layers, names and weights); others unchanged."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    if not isinstance(model, tf.keras.Sequential):
        return model
    if not model.built:
        raise FlowError(f"model '{model.name}': a Sequential model without an input shape cannot be converted")
    inp = tf.keras.Input(shape=model.input_shape[1:], name=_input_name(model))
    x = inp
    for layer in model.layers:
        fresh = type(layer).from_config(layer.get_config())
        x = fresh(x)
        fresh.set_weights(layer.get_weights())
    return tf.keras.Model(inp, x, name=model.name)


def _input_name(model) -> str:
    names = {layer.name for layer in model.layers}
    return _unique(f"{model.name}_input", names) if model.name else "input_1"


def _output_layers(model) -> set[str]:
    return {name for name, *_ in model.get_config()["output_layers"]}


def normalize_model(model) -> Normalized:
    """The canonical form of ``model`` (a new model; the original is left untouched)."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    _refuse_foreign_layers(model)
    model = to_functional(model)
    outputs = _output_layers(model)
    if len(outputs) != 1 or len(model.inputs) != 1:
        raise FlowError(f"model '{model.name}' has {len(model.inputs)} inputs and {len(outputs)} outputs; one each")
    taken = {layer.name for layer in model.layers}
    actions: list[dict] = []
    stripped: list[str] = []
    replace = {}
    for layer in model.layers:
        kind = type(layer).__name__
        is_output = layer.name in outputs
        if kind in IDENTITIES:
            actions.append({"layer": layer.name, "action": "removed", "why": f"{kind} is the identity at inference"})
            replace[layer.name] = lambda _layer, inputs: inputs
        elif kind in ("Activation", "Softmax") and is_output and _output_activation(layer) in OUTPUT_ACTIVATIONS:
            stripped.append(_output_activation(layer))
            actions.append({"layer": layer.name, "action": "stripped", "why": "final softmax/sigmoid: logits kept"})
            replace[layer.name] = lambda _layer, inputs: inputs
        elif kind == "QConv2DBatchnorm":
            act = _activation_name(getattr(layer, "activation", None))
            act_name = _unique(f"{layer.name}_act", taken) if act else None
            actions.append({"layer": layer.name, "action": "folded", "why": "QConv2DBatchnorm as the QConv2D it "
                            "computes at inference (kernel and bias folded with the moving statistics)",
                            **({"activation": act, "into": act_name} if act else {})})  # fmt: skip
            replace[layer.name] = _folding(act_name)
        elif kind == "QBatchNormalization":
            actions.append({"layer": layer.name, "action": "replaced", "why": "QBatchNormalization as a "
                            "BatchNormalization holding its quantized gamma, beta, mean and variance (what QKeras "
                            "computes with at inference; hls4ml reads the unquantized ones)"})  # fmt: skip
            replace[layer.name] = _plain_batchnorm
        elif kind == "ReLU" and _plain_relu(layer):
            actions.append({"layer": layer.name, "action": "replaced", "why": "ReLU layer as Activation('relu')"})
            replace[layer.name] = lambda lyr, inputs: tf.keras.layers.Activation("relu", name=lyr.name)(inputs)
        elif kind in ACTIVATION_HOSTS and _activation_name(getattr(layer, "activation", None)) is not None:
            name = _activation_name(layer.activation)
            if is_output and name in OUTPUT_ACTIVATIONS:
                stripped.append(name)
                actions.append({"layer": layer.name, "action": "stripped", "why": f"built-in {name} on the output"})
                replace[layer.name] = lambda lyr, inputs: _linear_twin(lyr)(inputs)
            else:
                act_name = _unique(f"{layer.name}_act", taken)
                actions.append({"layer": layer.name, "action": "split", "activation": name, "into": act_name,
                                "why": "built-in activation moved into its own layer"})  # fmt: skip
                replace[layer.name] = _splitter(act_name)
    if not actions:
        return Normalized(model)
    return Normalized(rebuild(model, replace), actions, stripped[0] if stripped else None)


def _refuse_foreign_layers(model) -> None:
    """Layers neither normalization nor the flow can take (checked before anything is rebuilt)."""
    known = SUPPORTED_LAYERS | IDENTITIES | {"Softmax", "ReLU", "Conv2D", "Dense"}
    problems = layer_problems(model)
    for layer in model.layers:
        if type(layer).__name__ not in known and layer.name in problems:
            raise FlowError(f"layer '{layer.name}' {problems[layer.name]}")


def _output_activation(layer) -> str | None:
    if type(layer).__name__ == "Softmax":
        return "softmax"
    return _activation_name(getattr(layer, "activation", None))


def _plain_relu(layer) -> bool:
    config = layer.get_config()
    return (
        config.get("max_value") is None
        and not config.get("negative_slope")
        and not config.get("threshold")
    )  # fmt: skip


def _linear_twin(layer):
    """A fresh copy of a weight layer without its activation, holding the same weights."""
    fresh = type(layer).from_config({**layer.get_config(), "activation": "linear"})
    return _Deferred(fresh, layer.get_weights())


class _Deferred:
    """Call a fresh layer, then give it the original weights (they need the layer to be built)."""

    def __init__(self, layer, weights):
        self.layer, self.weights = layer, weights

    def __call__(self, inputs):
        out = self.layer(inputs)
        self.layer.set_weights(self.weights)
        return out


def _folding(act_name: str | None):
    def fold(layer, inputs):
        from qkeras import QConv2D  # QKeras imports TensorFlow (~2 s)

        conv = QConv2D(
            layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
            dilation_rate=layer.dilation_rate, kernel_quantizer=layer.kernel_quantizer,
            bias_quantizer=layer.bias_quantizer, use_bias=True, name=layer.name,
        )  # fmt: skip
        x = _Deferred(conv, [np.asarray(w, dtype=np.float32) for w in layer.get_folded_weights()])(inputs)
        return x if act_name is None else _activation_layer(layer.activation, act_name)(x)

    return fold


def _activation_layer(activation, name: str):
    import tensorflow as tf  # TensorFlow: ~2 s to import
    from qkeras import QActivation

    if _is_quantizer(activation):
        return QActivation(activation, name=name)
    return tf.keras.layers.Activation(activation.__name__, name=name)


def _plain_batchnorm(layer, inputs):
    """A BatchNormalization with the QBatchNormalization's quantized parameters."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    config = layer.get_config()
    keep = ("axis", "momentum", "epsilon", "center", "scale", "name")
    fresh = tf.keras.layers.BatchNormalization(**{k: config[k] for k in keep if k in config})
    out = fresh(inputs)
    values = []
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        variable = getattr(layer, name, None)
        if variable is None:
            continue
        quantizer = getattr(layer, f"{name.removeprefix('moving_')}_quantizer_internal", None)
        values.append(np.asarray(quantizer(variable) if quantizer is not None else variable, dtype=np.float32))
    fresh.set_weights(values)
    return out


def _splitter(act_name: str):
    def split(layer, inputs):
        return _activation_layer(layer.activation, act_name)(_linear_twin(layer)(inputs))

    return split


def check_normalization(original, normalized: Normalized, x: np.ndarray) -> dict:
    """Original outputs vs the normalized logits put through the stripped activation, bit for bit, on ``x``."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    if not normalized.actions:
        return {"bit_exact": True, "n_samples": len(x), "compared": "unchanged model"}
    expected = np.asarray(model_outputs(original, x))
    got = np.asarray(model_outputs(normalized.model, x))
    if normalized.output_activation is not None:
        fn = getattr(tf.keras.activations, normalized.output_activation)
        got = np.asarray(fn(tf.constant(got)))
    differing = np.any(expected != got, axis=tuple(range(1, expected.ndim)))
    return {
        "bit_exact": bool(not differing.any()),
        "n_samples": len(x),
        "n_samples_differing": int(differing.sum()),
        "max_abs_diff": float(np.abs(expected.astype(np.float64) - got).max()) if len(x) else 0.0,
        "compared": "original outputs vs " + (f"{normalized.output_activation}(logits)" if normalized.output_activation
                                               else "normalized outputs"),
    }  # fmt: skip
