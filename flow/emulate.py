"""Bit-exact weight faults in a QKeras model: the reference that C-sim campaigns are checked against.

Weights of QConv2D/QDense layers are stored as words of the layer's quantizer format (flow/fixedpoint.py:
``quantized_bits`` fixed point, ``quantized_po2`` exponent structs, ``ternary``/``binary`` codes). A fault flips or
sticks one bit of one word; the faulty word's value is what the C-sim multiplies with. When that value is a point
the quantizer maps to itself (every quantized_bits word, every ternary/binary kernel word), it is written into the
layer's variable. Otherwise (a po2 exponent beyond QKeras' range or max_value, the ap_int<2> code -2 of a
ternary/binary bias) the emulator stands in for the layer's quantizer while it lives: faulty elements take their
value as is, every other element is quantized as before (the quantizer is put back when the emulator is
garbage-collected or closed). Keras arrays keep the output channel on the last axis: flat index i of a kernel
belongs to channel i % C.

The source maps of correction layers (flow/correction.py) are fault targets too: array ``src`` of a Correction
layer, the padded map's unsigned words in hls4ml's order (row c, copy j at flat index c * n_sources + j). A faulty
word selecting past the stacked channels reads 0, as in ``hls_templates/nnet_correction.h``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from flow.errors import FlowError
from flow.fixedpoint import FaultKind, FixedFormat, WordFormat, format_of_quantizer

WEIGHT_LAYER_TYPES = ("QConv2D", "QDense")
CORRECTION_TYPE = "Correction"
SOURCE_ARRAY = "src"


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
    fmt: WordFormat
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
            if isinstance(quantizer, _Override):  # another emulator stands in for it
                quantizer = quantizer.quantizer
            fmt = format_of_quantizer(quantizer, f"layer '{layer.name}' {name} ({_describe(quantizer)})", name)
            arrays[(layer.name, name)] = WeightArray(layer.name, name, tuple(variable.shape), fmt, channels)
    return arrays


def source_arrays(model) -> dict[tuple[str, str], WeightArray]:
    """The source map of every correction layer, keyed by (layer name, 'src'): unsigned integer words."""
    arrays = {}
    for layer in model.layers:
        if type(layer).__name__ == CORRECTION_TYPE:
            width = layer.source_width()
            shape = (len(layer.sources) * layer.n_sources,)
            arrays[(layer.name, SOURCE_ARRAY)] = WeightArray(
                layer.name, SOURCE_ARRAY, shape, FixedFormat(width, width, signed=False), len(layer.sources)
            )
    return arrays


def _describe(quantizer) -> str:
    try:
        return str(quantizer)
    except Exception:  # QKeras' own __str__ fails on some settings (quantized_po2 stochastic without max_value)
        return type(quantizer).__name__


class _Override:
    """Stands in for a layer's quantizer: elements under ``mask`` take ``value`` as is, the others are quantized."""

    def __init__(self, quantizer, shape: tuple[int, ...]):
        import tensorflow as tf  # TensorFlow: ~2 s to import

        self.quantizer = quantizer
        self.mask = tf.Variable(np.zeros(shape, dtype=bool), trainable=False)
        self.value = tf.Variable(np.zeros(shape, dtype=np.float32), trainable=False)
        self.users = 0

    def __call__(self, x):
        import tensorflow as tf  # TensorFlow: ~2 s to import

        return tf.where(self.mask, tf.cast(self.value, x.dtype), self.quantizer(x))

    def __getattr__(self, name: str):
        if name == "quantizer":
            raise AttributeError(name)
        return getattr(self.quantizer, name)

    def clear(self) -> None:
        self.mask.assign(np.zeros(self.mask.shape, dtype=bool))


def _release(layer, attribute: str, override: _Override) -> None:
    """One emulator less uses ``override``; the last one puts the layer's own quantizer back."""
    override.clear()
    override.users -= 1
    if override.users == 0 and getattr(layer, attribute, None) is override:
        object.__setattr__(layer, attribute, override.quantizer)


def _maps_words_to_themselves(quantizer, fmt) -> bool:
    if isinstance(fmt, FixedFormat) and type(quantizer).__name__ == "quantized_bits":
        return True  # every word of quantized_bits(alpha=1) is a point of its grid (tests/test_fixedpoint.py)
    values = fmt.all_values().astype(np.float32)
    return bool(np.array_equal(np.asarray(quantizer(values), dtype=np.float32), values))


class FaultEmulator:
    """Applies and removes weight faults on a QKeras model in place (always restore: use ``injected``)."""

    def __init__(self, model):
        self.model = model
        self.arrays = weight_arrays(model)
        self._variables = {key: getattr(model.get_layer(key[0]), key[1]) for key in self.arrays}
        self._original = {key: var.numpy().copy() for key, var in self._variables.items()}
        self.quantized = {key: self._quantize(key) for key in self.arrays}
        for key, array in self.arrays.items():
            try:
                array.fmt.to_word(self.quantized[key])
            except FlowError as exc:
                raise FlowError(f"layer '{key[0]}' {key[1]}: quantized weights do not fit its words: {exc}") from None
        self.sources = source_arrays(model)
        self._source_layers = {key: model.get_layer(key[0]) for key in self.sources}
        self._source_words = {
            k: s.padded_sources().reshape(-1).astype(np.float64) for k, s in self._source_layers.items()
        }
        for layer in self._source_layers.values():
            layer.source_variable()  # before any forward pass is traced
        self._dirty: set[tuple[str, str]] = set()
        self._overrides: dict[tuple[str, str], _Override] = {}
        self._releases: list[weakref.finalize] = []
        for key, array in self.arrays.items():
            layer = model.get_layer(key[0])
            attribute = f"{key[1]}_quantizer_internal"
            quantizer = getattr(layer, attribute)
            if isinstance(quantizer, _Override):
                override = quantizer
            elif _maps_words_to_themselves(quantizer, array.fmt):
                continue
            else:
                override = _Override(quantizer, array.shape)
                object.__setattr__(layer, attribute, override)  # past Keras' tracking: the quantizer stays tracked
            override.users += 1
            self._overrides[key] = override
            self._releases.append(weakref.finalize(self, _release, layer, attribute, override))

    def close(self) -> None:
        """Give the layers their own quantizers back now (also done when the emulator is garbage-collected)."""
        self.restore()
        for release in self._releases:
            release()
        self._overrides.clear()

    def _quantize(self, key: tuple[str, str]) -> np.ndarray:
        layer = self.model.get_layer(key[0])
        quantizer = getattr(layer, f"{key[1]}_quantizer_internal")
        if isinstance(quantizer, _Override):
            quantizer = quantizer.quantizer
        return np.asarray(quantizer(self._original[key]), dtype=np.float64)

    def check(self, fault: Fault) -> WeightArray:
        """The fault's array, or a clear error naming what is wrong."""
        array = self.arrays.get((fault.layer, fault.array)) or self.sources.get((fault.layer, fault.array))
        if array is None:
            layers = sorted({k[0] for k in [*self.arrays, *self.sources]})
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
            base = self._source_words[key] if key in self.sources else self.quantized[key]
            values = changed.setdefault(key, base.copy())
            flat = values.reshape(-1)
            flat[fault.index] = array.fmt.inject(flat[fault.index], fault.bit, fault.kind)
        return changed

    def apply(self, faults: Iterable[Fault]) -> None:
        """Write faulty quantized values into the model (other weights keep their stored floats)."""
        for key, values in self.faulty_values(faults).items():
            self._dirty.add(key)
            if key in self.sources:
                self._set_sources(key, values)
                continue
            differs = values != self.quantized[key]
            override = self._overrides.get(key)
            if override is not None:
                override.value.assign(values.astype(np.float32))
                override.mask.assign(differs)
            else:
                self._variables[key].assign(np.where(differs, values, self._original[key]).astype(np.float32))

    def _set_sources(self, key: tuple[str, str], words: np.ndarray) -> None:
        layer = self._source_layers[key]
        layer.source_variable().assign(words.reshape(len(layer.sources), layer.n_sources).astype(np.int32))

    def restore(self) -> None:
        """Put every faulty weight array back as it was."""
        for key in self._dirty:
            if key in self.sources:
                self._set_sources(key, self._source_words[key])
            elif key in self._overrides:
                self._overrides[key].clear()
            else:
                self._variables[key].assign(self._original[key])
        self._dirty.clear()

    @contextmanager
    def injected(self, faults: Iterable[Fault]) -> Iterator[None]:
        self.apply(faults)
        try:
            yield
        finally:
            self.restore()
