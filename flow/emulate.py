"""Bit-exact weight faults in a QKeras model: the reference that C-sim campaigns are checked against.

Weights of QConv2D/QDense layers are stored as fixed-point words (the layer's ``quantized_bits`` format). A fault
flips or sticks one bit of one word; the faulty value, written into the layer's variable, is a point of the
quantizer's grid, which the quantizer maps to itself, so inference sees exactly the faulty hardware word.
Keras arrays keep the output channel on the last axis: flat index i of a kernel belongs to channel i % C.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from flow.errors import FlowError
from flow.fixedpoint import FaultKind, FixedFormat, format_of_quantizer

WEIGHT_LAYER_TYPES = ("QConv2D", "QDense")


@dataclass(frozen=True)
class Fault:
    layer: str
    array: str  # "kernel" or "bias"
    index: int  # flat index into the Keras array
    bit: int  # 0 = LSB
    kind: FaultKind = FaultKind.FLIP


@dataclass(frozen=True)
class WeightArray:
    layer: str
    array: str
    shape: tuple[int, ...]
    fmt: FixedFormat
    channels: int  # output channels (filters or units) of the layer

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def channel_indices(self, channel: int) -> np.ndarray:
        """Flat indices of the elements that belong to one output channel."""
        return np.arange(channel, self.size, self.channels)


def weight_layers(model) -> list:
    """The QConv2D and QDense layers of a model, in order."""
    return [layer for layer in model.layers if type(layer).__name__ in WEIGHT_LAYER_TYPES]


def weight_arrays(model) -> dict[tuple[str, str], WeightArray]:
    """Every quantized kernel and bias, keyed by (layer name, 'kernel' | 'bias')."""
    arrays = {}
    for layer in weight_layers(model):
        channels = int(layer.kernel.shape[-1])
        for name in ("kernel", "bias"):
            variable = getattr(layer, name, None)
            if variable is None:
                continue
            quantizer = getattr(layer, f"{name}_quantizer_internal", None)
            if quantizer is None:
                raise FlowError(f"layer '{layer.name}' has no {name}_quantizer: its words are undefined")
            fmt = format_of_quantizer(quantizer, f"layer '{layer.name}' {name}")
            arrays[(layer.name, name)] = WeightArray(layer.name, name, tuple(variable.shape), fmt, channels)
    return arrays


class FaultEmulator:
    """Applies and removes weight faults on a QKeras model in place (always restore: use ``injected``)."""

    def __init__(self, model):
        self.model = model
        self.arrays = weight_arrays(model)
        self._variables = {key: getattr(model.get_layer(key[0]), key[1]) for key in self.arrays}
        self._original = {key: var.numpy().copy() for key, var in self._variables.items()}
        self.quantized = {key: self._quantize(key) for key in self.arrays}
        self._dirty: set[tuple[str, str]] = set()

    def _quantize(self, key: tuple[str, str]) -> np.ndarray:
        layer = self.model.get_layer(key[0])
        quantizer = getattr(layer, f"{key[1]}_quantizer_internal")
        return np.asarray(quantizer(self._original[key]), dtype=np.float64)

    def check(self, fault: Fault) -> WeightArray:
        """The fault's array, or a clear error naming what is wrong."""
        array = self.arrays.get((fault.layer, fault.array))
        if array is None:
            layers = sorted({k[0] for k in self.arrays})
            raise FlowError(f"fault target '{fault.layer}.{fault.array}' does not exist; weight layers: {layers}")
        if not 0 <= fault.index < array.size:
            raise FlowError(f"fault index {fault.index} is outside 0..{array.size - 1} of {fault.layer}.{fault.array}")
        if not 0 <= fault.bit < array.fmt.width:
            raise FlowError(f"fault bit {fault.bit} is outside 0..{array.fmt.width - 1} of {fault.layer}.{fault.array}")
        return array

    def faulty_values(self, faults: Iterable[Fault]) -> dict[tuple[str, str], np.ndarray]:
        """Quantized arrays with the faults applied (in order; several faults may hit one word)."""
        changed: dict[tuple[str, str], np.ndarray] = {}
        for fault in faults:
            array = self.check(fault)
            key = (fault.layer, fault.array)
            values = changed.setdefault(key, self.quantized[key].copy())
            flat = values.reshape(-1)
            flat[fault.index] = array.fmt.inject(flat[fault.index], fault.bit, fault.kind)
        return changed

    def apply(self, faults: Iterable[Fault]) -> None:
        """Write faulty quantized values into the model (other weights keep their stored floats)."""
        for key, values in self.faulty_values(faults).items():
            differs = values != self.quantized[key]
            self._variables[key].assign(np.where(differs, values, self._original[key]).astype(np.float32))
            self._dirty.add(key)

    def restore(self) -> None:
        """Put every faulty weight array back as it was."""
        for key in self._dirty:
            self._variables[key].assign(self._original[key])
        self._dirty.clear()

    @contextmanager
    def injected(self, faults: Iterable[Fault]) -> Iterator[None]:
        self.apply(faults)
        try:
            yield
        finally:
            self.restore()
