"""QKeras models written the way hls4ml and QKeras users write them (softmax heads, built-in activations,
BatchNormalization, Dropout, average/global pooling, strided and 'same' convs, concatenated branches).

Each builder returns an untrained Keras model for 8x8x1 inputs and 10 classes; tests train them briefly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from qkeras import (
    QActivation,
    QBatchNormalization,
    QConv2D,
    QConv2DBatchnorm,
    QDense,
    binary,
    quantized_bits,
    quantized_po2,
    quantized_relu,
    ternary,
)

layers = tf.keras.layers


def _q(bits: int = 6, integer: int = 0):
    return quantized_bits(bits, integer, alpha=1)


def hls4ml_cnn() -> tf.keras.Model:
    """hls4ml's example QKeras CNN style: built-in quantized relu in every layer, a Dense head with softmax."""
    inp = layers.Input((8, 8, 1), name="input_1")
    x = QConv2D(4, (3, 3), kernel_quantizer=_q(), bias_quantizer=_q(), activation=quantized_relu(6), name="conv_0")(inp)
    x = layers.MaxPooling2D((2, 2), name="pool_0")(x)
    x = QConv2D(8, (3, 3), kernel_quantizer=_q(), bias_quantizer=_q(), activation="quantized_relu(6)", name="conv_1")(x)
    x = layers.Flatten(name="flatten")(x)
    x = QDense(16, kernel_quantizer=_q(), bias_quantizer=_q(), activation=quantized_relu(6), name="dense_0")(x)
    x = QDense(10, kernel_quantizer=_q(), bias_quantizer=_q(), name="output_dense")(x)
    out = layers.Activation("softmax", name="output_softmax")(x)
    return tf.keras.Model(inp, out, name="hls4ml_cnn")


def float_relu_cnn() -> tf.keras.Model:
    """QConv2D/QDense with Keras' float 'relu' built in, and a softmax built into the last QDense."""
    inp = layers.Input((8, 8, 1))
    x = QConv2D(4, 3, padding="same", kernel_quantizer=_q(), bias_quantizer=_q(), activation="relu", name="c1")(inp)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    out = QDense(10, kernel_quantizer=_q(), bias_quantizer=_q(), activation="softmax", name="head")(x)
    return tf.keras.Model(inp, out, name="float_relu_cnn")


def batchnorm_cnn() -> tf.keras.Model:
    """Conv (no bias) + BatchNormalization + QActivation, Dropout before the head, softmax output."""
    inp = layers.Input((8, 8, 1))
    x = QConv2D(4, 3, use_bias=False, kernel_quantizer=_q(), name="conv1")(inp)
    x = layers.BatchNormalization(name="bn1")(x)
    x = QActivation(quantized_relu(6, 2), name="relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.25, name="drop")(x)
    x = QDense(10, kernel_quantizer=_q(), bias_quantizer=_q(), name="fc")(x)
    out = layers.Activation("softmax", name="softmax")(x)
    return tf.keras.Model(inp, out, name="batchnorm_cnn")


def qbatchnorm_cnn() -> tf.keras.Model:
    """QConv2D + QBatchNormalization (quantized scale/offset) + QActivation."""
    inp = layers.Input((8, 8, 1))
    x = QConv2D(4, 3, kernel_quantizer=_q(), bias_quantizer=_q(), name="conv1")(inp)
    x = QBatchNormalization(
        gamma_quantizer=_q(8, 3), beta_quantizer=_q(8, 3), mean_quantizer=_q(8, 3), variance_quantizer=_q(8, 3),
        name="qbn1",
    )(x)  # fmt: skip
    x = QActivation("quantized_relu(6,2)", name="relu1")(x)
    x = layers.Flatten()(x)
    out = QDense(10, kernel_quantizer=_q(), bias_quantizer=_q(), name="fc")(x)
    return tf.keras.Model(inp, out, name="qbatchnorm_cnn")


def pooling_cnn() -> tf.keras.Model:
    """'same' convs (the second strided), AveragePooling2D and GlobalAveragePooling2D."""
    inp = layers.Input((8, 8, 1))
    x = QConv2D(4, 3, strides=1, padding="same", kernel_quantizer=_q(), bias_quantizer=_q(), name="c1")(inp)
    x = QActivation(quantized_relu(6, 2), name="r1")(x)
    x = layers.AveragePooling2D(2, name="avg")(x)
    x = QConv2D(8, 3, strides=2, padding="same", kernel_quantizer=_q(), bias_quantizer=_q(), name="c2")(x)
    x = QActivation(quantized_relu(6, 2), name="r2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = QDense(10, kernel_quantizer=_q(), bias_quantizer=_q(), name="fc")(x)
    return tf.keras.Model(inp, out, name="pooling_cnn")


def strided_cnn() -> tf.keras.Model:
    """ZeroPadding2D, a strided valid conv, GlobalMaxPooling2D."""
    inp = layers.Input((8, 8, 1))
    x = layers.ZeroPadding2D(1, name="pad")(inp)
    x = QConv2D(8, 3, strides=2, kernel_quantizer=_q(), bias_quantizer=_q(), name="c1")(x)
    x = QActivation(quantized_relu(6, 2), name="r1")(x)
    x = layers.GlobalMaxPooling2D(name="gmp")(x)
    out = QDense(10, kernel_quantizer=_q(), bias_quantizer=_q(), name="fc")(x)
    return tf.keras.Model(inp, out, name="strided_cnn")


def concat_cnn() -> tf.keras.Model:
    """Two branches of different precisions concatenated, a residual Add of different precisions, a Reshape."""
    inp = layers.Input((8, 8, 1))
    a = QActivation(quantized_relu(6, 2), name="ra")(
        QConv2D(4, 3, padding="same", kernel_quantizer=_q(), bias_quantizer=_q(), name="ca")(inp)
    )
    b = QActivation(quantized_relu(4, 1), name="rb")(
        QConv2D(4, 1, kernel_quantizer=_q(4), bias_quantizer=_q(4), name="cb")(inp)
    )
    x = layers.Concatenate(name="cat")([a, b])
    y = QActivation(quantized_relu(8, 3), name="rc")(
        QConv2D(8, 3, padding="same", kernel_quantizer=_q(), bias_quantizer=_q(), name="cc")(x)
    )
    x = layers.Add(name="add")([x, y])
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Reshape((4 * 4 * 8,), name="flat")(x)
    out = QDense(10, kernel_quantizer=_q(), bias_quantizer=_q(), name="fc")(x)
    return tf.keras.Model(inp, out, name="concat_cnn")


def jet_mlp() -> tf.keras.Model:
    """hls4ml's jet-tagging tutorial style: a Sequential QDense stack with built-in activations, softmax head."""
    return tf.keras.Sequential(
        [
            layers.Input((64,), name="features"),
            QDense(32, kernel_quantizer=_q(), bias_quantizer=_q(), activation=quantized_relu(6), name="fc1"),
            QDense(16, kernel_quantizer=_q(), bias_quantizer=_q(), activation="quantized_relu(6)", name="fc2"),
            QDense(10, kernel_quantizer=_q(), bias_quantizer=_q(), name="output"),
            layers.Activation("softmax", name="softmax"),
        ],
        name="jet_mlp",
    )


def po2_ternary_cnn() -> tf.keras.Model:
    """Power-of-two conv weights (3-bit exponents: inside hls4ml's exact shift range) and a ternary head."""
    inp = layers.Input((8, 8, 1))
    x = QConv2D(4, 3, kernel_quantizer=quantized_po2(3, 1), bias_quantizer=_q(8, 3), name="po2_conv")(inp)
    x = QActivation(quantized_relu(6, 2), name="relu")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flat")(x)
    x = QDense(10, kernel_quantizer=ternary(alpha=1), bias_quantizer=_q(8, 3), name="ternary_fc")(x)
    return tf.keras.Model(inp, layers.Activation("softmax", name="probabilities")(x), name="po2_ternary_cnn")


def binary_mlp() -> tf.keras.Model:
    """A binary-weight hidden layer (xnor words in hls4ml) with a built-in quantized relu."""
    return tf.keras.Sequential(
        [
            layers.Input((64,), name="pixels"),
            QDense(32, kernel_quantizer=binary(alpha=1), bias_quantizer=_q(8, 3), activation=quantized_relu(6, 2),
                   name="binary_fc"),
            QDense(10, kernel_quantizer=_q(), bias_quantizer=_q(), name="logits"),
        ],
        name="binary_mlp",
    )  # fmt: skip


def folded_bn_cnn() -> tf.keras.Model:
    """QKeras' QConv2DBatchnorm (BatchNorm folded into the quantized kernel) with a built-in quantized relu."""
    inp = layers.Input((8, 8, 1))
    x = QConv2DBatchnorm(4, 3, kernel_quantizer=_q(8, 2), bias_quantizer=_q(8, 3), activation=quantized_relu(6, 2),
                         name="conv_bn")(inp)  # fmt: skip
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flat")(x)
    out = QDense(10, kernel_quantizer=_q(), bias_quantizer=_q(), name="fc")(x)
    return tf.keras.Model(inp, out, name="folded_bn_cnn")


def small_mlp(units: int = 8, seed: int = 0, side: int = 8) -> tf.keras.Model:
    """image side x side x 1 -> flatten -> QDense(units) -> quantized_relu(6,2) -> QDense(10) logits (the RTL and
    correction-fault tests' model; its input side is a parameter, unlike REAL_MODELS')."""
    tf.keras.utils.set_random_seed(seed)
    q = quantized_bits(6, 0, alpha=1)
    x = tf.keras.Input((side, side, 1), name="image")
    h = tf.keras.layers.Flatten(name="flatten")(x)
    h = QDense(units, kernel_quantizer=q, bias_quantizer=q, name="fc1")(h)
    h = QActivation(quantized_relu(6, 2), name="relu1")(h)
    return tf.keras.Model(x, QDense(10, kernel_quantizer=q, bias_quantizer=q, name="logits")(h))


REAL_MODELS: dict[str, Callable[[], tf.keras.Model]] = {
    "hls4ml_cnn": hls4ml_cnn,
    "float_relu_cnn": float_relu_cnn,
    "batchnorm_cnn": batchnorm_cnn,
    "qbatchnorm_cnn": qbatchnorm_cnn,
    "pooling_cnn": pooling_cnn,
    "strided_cnn": strided_cnn,
    "concat_cnn": concat_cnn,
    "jet_mlp": jet_mlp,
    "po2_ternary_cnn": po2_ternary_cnn,
    "binary_mlp": binary_mlp,
    "folded_bn_cnn": folded_bn_cnn,
}


def digits_images(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """The first n scikit-learn digits as 8x8x1 images on the 2^-8 input grid, and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (np.round(d.images[:n] / 16 * 256) / 256).astype(np.float32)[..., None], d.target[:n]


def trained(name: str, epochs: int = 2) -> tf.keras.Model:
    """A real-style model trained as its user would (softmax outputs, cross-entropy), seeded."""
    tf.keras.utils.set_random_seed(0)
    model = REAL_MODELS[name]()
    x, y = digits_images()
    x = x.reshape(len(x), *model.input_shape[1:])  # the MLP takes the 64 pixels as features
    probabilities = "softmax" in str(model.layers[-1].get_config().get("activation"))
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities))
    model.fit(x, y, epochs=epochs, verbose=0)
    return model
