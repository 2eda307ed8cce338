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
"""

from __future__ import annotations

import numpy as np

from flow.config import Policy
from flow.errors import FlowError


def _keras_layer_base():
    import tensorflow as tf

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

    def call(self, inputs):
        import tensorflow as tf

        if isinstance(inputs, list | tuple):
            inputs = tf.concat(list(inputs), axis=-1) if len(inputs) > 1 else inputs[0]
        idx = self.padded_sources()
        copies = [tf.gather(inputs, idx[:, j], axis=-1) for j in range(self.n_sources)]
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
