"""Per-image gradients of the logit margins with respect to every weight of every QConv2D/QDense layer.

With t the predicted class and Delta_k = Z_t - Z_k (0 at the target), a weight W[f, c] of a layer acts on the
layer's output channel c only: dDelta_k/dW[f, c] = sum_p patch[p, f] * dDelta_k/dout[p, c], with patch[p] the input
patch output position p multiplies with the kernel (a Dense layer has one "patch": its input). dZ_k/dout for every
image and class comes from one backward pass over the images repeated K times (copy k differentiates Z_k).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from flow.emulate import weight_layers
from flow.errors import FlowError

MAX_ELEMENTS = 1 << 24  # per layer and chunk of images: 128 MiB of float64 gradients


@dataclass(frozen=True)
class MarginGradients:
    """Margins and their weight gradients for one chunk of n images (K classes)."""

    delta: np.ndarray  # (n, K): Z_t - Z_k, 0 at the target
    target: np.ndarray  # (n,): the predicted class t
    kernel: dict[str, np.ndarray]  # layer -> (n, K, F, C): dDelta_k/dW[f, c], F the fan-in in Keras kernel order
    bias: dict[str, np.ndarray]  # layer -> (n, K, C), layers with a bias only


def margin_gradients(model, x: np.ndarray, max_elements: int = MAX_ELEMENTS) -> Iterator[MarginGradients]:
    """The margin gradients of x, in chunks of images small enough to keep each layer's array under max_elements."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    layers = weight_layers(model)
    for layer in layers:
        if layer.get_config().get("activation") not in (None, "linear"):
            raise FlowError(
                f"layer '{layer.name}' has a built-in activation; gradient ranking needs its pre-activation output: "
                "use a separate QActivation layer"
            )
    n_classes = int(model.output.shape[-1])
    probe = tf.keras.Model(model.inputs, [layer.input for layer in layers] + [layer.output for layer in layers])
    chunk = max(1, max_elements // (n_classes * max(int(np.prod(layer.kernel.shape)) for layer in layers)))
    for start in range(0, len(x), chunk):
        yield _chunk_gradients(probe, layers, x[start : start + chunk], n_classes)


def _chunk_gradients(probe, layers: list, x: np.ndarray, n_classes: int) -> MarginGradients:
    import tensorflow as tf  # TensorFlow: ~2 s to import

    n, n_layers = len(x), len(layers)
    with tf.GradientTape() as tape:
        tensors = probe(tf.constant(np.repeat(x, n_classes, axis=0)), training=False)
        z = tensors[-1]  # the logits: the last weight layer's output; row i*K + k of the batch differentiates Z_k
        picked = tf.reduce_sum(z * tf.tile(tf.eye(n_classes, dtype=z.dtype), [n, 1]))
    output_grads = tape.gradient(picked, tensors[n_layers:])
    z = z.numpy()[::n_classes].astype(np.float64)
    target = z.argmax(axis=1)
    delta = z[np.arange(n), target][:, None] - z
    kernel, bias = {}, {}
    for layer, inputs, grad in zip(layers, tensors[:n_layers], output_grads, strict=True):
        patches = _patches(layer, inputs.numpy()[::n_classes])  # (n, P, F)
        g = grad.numpy().astype(np.float64).reshape(n, n_classes, patches.shape[1], -1)  # dZ_k/dout: (n, K, P, C)
        g = g[np.arange(n), target][:, None] - g  # dDelta_k/dout
        n_pos, fan_in, channels = patches.shape[1], patches.shape[2], g.shape[-1]
        per_weight = np.matmul(patches.transpose(0, 2, 1), g.transpose(0, 2, 1, 3).reshape(n, n_pos, -1))
        kernel[layer.name] = per_weight.reshape(n, fan_in, n_classes, channels).transpose(0, 2, 1, 3)
        if getattr(layer, "bias", None) is not None:
            bias[layer.name] = g.sum(axis=2)
    return MarginGradients(delta, target, kernel, bias)


def _patches(layer, inputs: np.ndarray) -> np.ndarray:
    """The input patches each output position multiplies with the kernel: (N, positions, fan-in)."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    if type(layer).__name__ == "QDense":
        if inputs.ndim != 2:
            raise FlowError(f"layer '{layer.name}': gradient ranking supports QDense on flat inputs only")
        return inputs.astype(np.float64)[:, None, :]
    kh, kw = layer.kernel_size
    patches = tf.image.extract_patches(
        inputs,
        sizes=[1, kh, kw, 1],
        strides=[1, *layer.strides, 1],
        rates=[1, *layer.dilation_rate, 1],
        padding=layer.padding.upper(),
    ).numpy()  # the depth of a patch is ordered (row, column, input channel), as the kernel's first axes
    return patches.reshape(len(patches), -1, patches.shape[-1]).astype(np.float64)
