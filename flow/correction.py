"""The correction layer: merges each original channel with its copies, back to the original channel count.

Inputs: the hardened layer's output (C channels) and its copy layers' outputs (k channels each), stacked along
the channels as C + E; output: C channels. ``sources[c]`` lists the stacked channels holding copies of output
channel c (the original first; 1, 2 or 3 entries, padded to ``n_sources`` by repeating the last).
Policies, applied per element:
- ``min``: the minimum of the copies (the paper's choice);
- ``range``: the copy inside the channel's profiled [lo, hi]; both inside -> min; neither -> min (so identical
  copies always pass through: with no fault the output is the original's, whatever the input);
- ``vote``: the median of three copies (TMR).
``clip`` then clamps every output channel to [lo, hi] (Ranger-style range restriction).

The padded source map is stored in hls4ml as unsigned words of ``source_width()`` bits; a faulty word selecting a
channel past the stacked ones reads 0 (a multiplexer with its unused inputs tied to zero, as
``hls_templates/nnet_correction.h``). ``source_variable()`` lets the fault emulator (flow/emulate.py) change the
words of a built model: a traced forward pass reads them at call time.
"""

from __future__ import annotations

import numpy as np

from flow.config import Policy
from flow.errors import FlowError


def _keras_layer_base():
    import tensorflow as tf  # TensorFlow: ~2 s to import

    return tf.keras.layers.Layer


class Correction(_keras_layer_base()):
    """Keras implementation; hls4ml uses ``hls_templates/nnet_correction.h`` (bit-exact with this)."""

    def __init__(self, sources, policy="min", lo=None, hi=None, clip=False, **kwargs):
        super().__init__(**kwargs)
        self.sources = [[int(i) for i in row] for row in sources]
        self.policy = Policy(policy)
        self.n_sources = max(len(row) for row in self.sources)
        self.lo = None if lo is None else [float(v) for v in lo]
        self.hi = None if hi is None else [float(v) for v in hi]
        self.clip = bool(clip)
        if self.policy is Policy.VOTE and any(len(row) not in (1, 3) for row in self.sources):
            raise FlowError(f"{self.name}: policy 'vote' needs three copies (or one) per channel")
        if (self.policy is Policy.RANGE or self.clip) and (self.lo is None or self.hi is None):
            raise FlowError(f"{self.name}: policy 'range' and clip need profiled bounds lo and hi")

    def padded_sources(self) -> np.ndarray:
        """(C, n_sources) input channel indices, rows padded by repeating their last entry."""
        return np.array([row + [row[-1]] * (self.n_sources - len(row)) for row in self.sources], dtype=np.int64)

    def source_width(self) -> int:
        """Bits of a source word (as hls4ml stores them: unsigned, wide enough for the largest index)."""
        return max(1, int(self.padded_sources().max()).bit_length())

    def source_variable(self):
        """The padded source map as an int32 variable the layer reads instead of its constants from now on
        (created once, not tracked: it is neither saved nor a weight). Create it before tracing a forward pass."""
        import tensorflow as tf  # TensorFlow: ~2 s to import

        variable = self.__dict__.get("_source_words")
        if variable is None:
            variable = tf.Variable(self.padded_sources().astype(np.int32), trainable=False, name="source_words")
            object.__setattr__(self, "_source_words", variable)
        return variable

    def call(self, inputs):
        import tensorflow as tf  # TensorFlow: ~2 s to import

        if isinstance(inputs, list | tuple):
            inputs = tf.concat(list(inputs), axis=-1) if len(inputs) > 1 else inputs[0]
        words = self.__dict__.get("_source_words")
        idx = self.padded_sources() if words is None else words
        copies = [_select(inputs, idx[:, j]) for j in range(self.n_sources)]
        a, b = copies[0], copies[-1]
        if self.policy is Policy.VOTE:
            out = tf.maximum(tf.minimum(a, copies[1]), tf.minimum(tf.maximum(a, copies[1]), b))
        elif self.policy is Policy.MIN:
            out = a
            for other in copies[1:]:
                out = tf.minimum(out, other)
        else:
            lo, hi = tf.constant(self.lo, inputs.dtype), tf.constant(self.hi, inputs.dtype)
            a_in = tf.logical_and(a >= lo, a <= hi)
            b_in = tf.logical_and(b >= lo, b <= hi)
            out = tf.where(tf.logical_and(a_in, tf.logical_not(b_in)), a, tf.minimum(a, b))
            out = tf.where(tf.logical_and(b_in, tf.logical_not(a_in)), b, out)
        if self.clip:
            out = tf.clip_by_value(out, tf.constant(self.lo, inputs.dtype), tf.constant(self.hi, inputs.dtype))
        return out

    def compute_output_shape(self, input_shape):
        first = input_shape[0] if isinstance(input_shape, list) else input_shape
        return (*first[:-1], len(self.sources))

    def get_config(self):
        return {
            **super().get_config(),
            "sources": self.sources,
            "policy": self.policy.value,
            "lo": self.lo,
            "hi": self.hi,
            "clip": self.clip,
        }


def _select(inputs, index):
    """Channels ``index`` of ``inputs`` (last axis); an index past the channels reads 0."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    n = int(inputs.shape[-1])
    if isinstance(index, np.ndarray) and bool(np.all(index < n)):
        return tf.gather(inputs, index, axis=-1)  # the fault-free constants: a plain gather
    padded = tf.concat([inputs, tf.zeros_like(inputs[..., :1])], axis=-1)
    return tf.gather(padded, tf.minimum(tf.cast(index, tf.int32), n), axis=-1)
