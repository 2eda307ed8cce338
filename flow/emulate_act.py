"""Bit-exact activation faults in a QKeras model: the reference the C-sim's activation-fault hook is checked against.

The model is run layer by layer (its functional graph, node by node); after the layer whose output is the faulty
tensor, the faulty elements' bits are set in their fixed-point words (the hls4ml type of that tensor, from the
tensor table of flow/fi_bridge.py) and the run goes on with the faulty values. A tensor's Keras twin is the output
of the Keras layer of the same name; for a weight layer with a fused activation (QDense(activation=...), which
hls4ml splits into two nodes), the ``before`` tensor is that layer's output without its activation and the split
activation node's tensor the layer's output. hls4ml nodes without a Keras layer (precision casts, clones) have no
twin. A value that is not a word of the tensor's hls4ml type (hls4ml truncated or wrapped it, e.g. an accumulator
type narrower than the sum) is not emulated: ``inexact``, never a pretended agreement."""

from __future__ import annotations

import numpy as np

from flow.errors import FlowError
from flow.fixedpoint import FaultKind, FixedFormat


class Inexact(Exception):
    """The Keras value of a faulty element is not a word of its tensor's hls4ml type (or not a float32)."""


def _linear(activation) -> bool:
    return activation is None or getattr(activation, "__name__", "") == "linear"


class ActivationEmulator:
    """Runs a QKeras functional model with activation faults (tuples of ``flow.faultlist.ActBit``)."""

    def __init__(self, model, tensors: list[dict]):
        self.model = model
        self.rows = {row["name"]: row for row in tensors}
        self._layers = {layer.name: layer for layer in model.layers}
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise FlowError("activation-fault emulation: the model must have one input and one output")

    def twin(self, tensor: str) -> tuple[str, str] | None:
        """(Keras layer, 'output' | 'pre') whose value the C-sim tensor holds, None without a twin."""
        row = self.rows[tensor]
        layer = self._layers.get(row["layer"])
        if layer is not None:
            fused = not _linear(getattr(layer, "activation", None))
            return (layer.name, "pre") if fused and row["point"] == "before" else (layer.name, "output")
        original = self._layers.get(row.get("of", ""))
        if original is not None and not _linear(getattr(original, "activation", None)):
            return original.name, "output"
        return None

    def run(self, x: np.ndarray, fault: tuple = ()) -> np.ndarray:
        """The model's outputs on ``x`` with ``fault`` (bits of one element of one tensor, on every sample of x);
        ``Inexact`` when a faulty value is not exact in the tensor's type."""
        import tensorflow as tf  # TensorFlow: ~2 s to import

        target = self.twin(fault[0].tensor) if fault else None
        if fault and target is None:
            raise FlowError(f"activation-fault emulation: tensor {fault[0].tensor} has no Keras twin")
        values = {id(self.model.inputs[0]): tf.constant(np.asarray(x, np.float32))}
        model = self.model
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                args = tf.nest.map_structure(lambda t: values.get(id(t), t), node.call_args)
                kwargs = tf.nest.map_structure(lambda t: values.get(id(t), t), node.call_kwargs)
                kwargs.pop("training", None)
                layer = node.layer
                if target is not None and layer.name == target[0]:
                    out = self._faulty_call(layer, args, kwargs, target[1], fault)
                else:
                    out = layer(*args, training=False, **kwargs)
                for keras_tensor, value in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(out), strict=True):
                    values[id(keras_tensor)] = value
        return np.asarray(values[id(model.outputs[0])])

    def _faulty_call(self, layer, args, kwargs, point: str, fault: tuple):
        import tensorflow as tf  # TensorFlow: ~2 s to import

        if point == "output":
            return tf.constant(self._apply(np.asarray(layer(*args, training=False, **kwargs)), fault))
        activation = layer.activation
        object.__setattr__(layer, "activation", None)  # the layer's output before its activation
        try:
            pre = np.asarray(layer(*args, training=False, **kwargs))
        finally:
            object.__setattr__(layer, "activation", activation)
        return activation(tf.constant(self._apply(pre, fault)))

    def _apply(self, value: np.ndarray, fault: tuple) -> np.ndarray:
        """``value`` (samples, ...) with the fault's bits set in every sample's element (in the tensor's type)."""
        row = self.rows[fault[0].tensor]
        fmt = FixedFormat(row["width"], row["integer"], row["signed"])
        flat = value.reshape(len(value), -1).astype(np.float64)
        if flat.shape[1] != row["length"]:
            raise FlowError(f"tensor {row['name']} has {row['length']} elements, its Keras twin {flat.shape[1]}")
        element = fault[0].element
        try:
            fmt.to_word(flat[:, element])
        except FlowError:
            raise Inexact(f"{row['layer']} element {element} is not a word of {fmt.hls_type} in Keras") from None
        column = flat[:, element]
        for b in fault:
            column = fmt.inject(column, b.bit, FaultKind(b.kind))
        if np.any(column.astype(np.float32) != column):
            raise Inexact(f"{row['layer']} element {element}: a faulty value is not a float32")
        flat[:, element] = column
        return flat.astype(np.float32).reshape(value.shape)
