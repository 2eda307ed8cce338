"""Model zoo: small QKeras CNNs (LeNet, VGG- and ResNet-style, MLPerf Tiny's ResNet-8) and an MLP with linear
logits (no softmax), every weight, bias and activation quantized.

Weights and biases use ``quantized_bits(weight_bits, weight_int_bits, alpha=1)`` (hls4ml: ap_fixed<bits, int+1>),
activations ``quantized_relu(act_bits, act_int_bits)`` (ap_ufixed<bits, int, AP_RND_CONV, AP_SAT>). No BatchNorm,
so hls4ml's C++ is bit-exact with QKeras.
"""

from __future__ import annotations

from collections.abc import Callable

from flow.config import ModelConfig, ZooName
from flow.errors import FlowError

DEFAULT_FILTERS = {
    ZooName.LENET: (4, 8),
    ZooName.VGG_TINY: (8, 16, 16),
    ZooName.RESNET_TINY: (4, 4, 4),
    ZooName.RESNET8: (16, 32, 64),  # MLPerf Tiny's widths: ~78k parameters at 32x32x3 and 10 classes
}
DEFAULT_HIDDEN_UNITS = (64, 32, 32)  # mlp: hls4ml's jet-tagging model (16 features -> 64 -> 32 -> 32 -> 5)


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], classes: int):
    """Build the zoo model ``cfg.name`` for samples of ``input_shape`` (images (H, W, C); the mlp also takes flat
    features (F,)) and ``classes`` logits."""
    if cfg.name is ZooName.MLP:
        if cfg.filters is not None:
            raise FlowError("model.filters: mlp has no conv layers; set its hidden widths with model.hidden_units")
        units = DEFAULT_HIDDEN_UNITS if cfg.hidden_units is None else tuple(cfg.hidden_units)
        if not units or any(u < 1 for u in units):
            raise FlowError(f"model.hidden_units: one or more widths >= 1, got {list(units)}")
        return _mlp(_Blocks(cfg), tuple(input_shape), classes, units)
    if cfg.hidden_units is not None:
        raise FlowError(
            f"model.hidden_units: only for mlp; {cfg.name.value} takes model.filters"
            + (" and model.dense_units" if cfg.name is ZooName.LENET else "")
        )
    if len(input_shape) != 3:
        raise FlowError(
            f"model '{cfg.name.value}': input {tuple(input_shape)} is not an image shape (H, W, C); "
            "for flat features use model.name: mlp"
        )
    filters = cfg.filters or DEFAULT_FILTERS[cfg.name]
    need = len(DEFAULT_FILTERS[cfg.name])
    if len(filters) != need:
        what = "residual stacks (the stem takes the first width)" if cfg.name is ZooName.RESNET8 else "conv layers"
        raise FlowError(f"model.filters: {cfg.name.value} has {need} {what}, got {len(filters)} values")
    if any(f < 1 for f in filters):
        raise FlowError(f"model.filters: every value must be >= 1, got {list(filters)}")
    builders: dict[ZooName, Callable] = {
        ZooName.LENET: _lenet,
        ZooName.VGG_TINY: _vgg_tiny,
        ZooName.RESNET_TINY: _resnet_tiny,
        ZooName.RESNET8: _resnet8,
    }
    return builders[cfg.name](_Blocks(cfg), tuple(input_shape), classes, filters)


class _Blocks:
    """Quantized layer factories sharing the configured bit widths."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg

    def _wq(self):
        from qkeras import quantized_bits  # QKeras imports TensorFlow (~2 s)

        return quantized_bits(self.cfg.weight_bits, self.cfg.weight_int_bits, alpha=1)

    def conv(self, x, filters: int, name: str, kernel: int = 3, strides: int = 1):
        from qkeras import QConv2D  # QKeras imports TensorFlow (~2 s)

        return QConv2D(
            filters,
            kernel,
            strides=strides,
            padding="same",
            kernel_quantizer=self._wq(),
            bias_quantizer=self._wq(),
            name=name,
        )(x)

    def dense(self, x, units: int, name: str):
        from qkeras import QDense  # QKeras imports TensorFlow (~2 s)

        return QDense(units, kernel_quantizer=self._wq(), bias_quantizer=self._wq(), name=name)(x)

    def relu(self, x, name: str):
        from qkeras import QActivation, quantized_relu  # QKeras imports TensorFlow (~2 s)

        return QActivation(quantized_relu(self.cfg.act_bits, self.cfg.act_int_bits), name=name)(x)


def _check_pooling(input_shape: tuple[int, ...], factor: int, model: str) -> None:
    if input_shape[0] < factor or input_shape[1] < factor:
        raise FlowError(f"model '{model}': input {input_shape} is too small; needs at least {factor}x{factor}")


def _lenet(b: _Blocks, input_shape, classes, filters):
    """conv-relu-pool, conv-relu-pool, dense-relu, dense (logits)."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    _check_pooling(input_shape, 4, "lenet")
    layers = tf.keras.layers
    inp = layers.Input(input_shape, name="image")
    x = layers.MaxPooling2D(2, name="pool1")(b.relu(b.conv(inp, filters[0], "conv1"), "relu1"))
    x = layers.MaxPooling2D(2, name="pool2")(b.relu(b.conv(x, filters[1], "conv2"), "relu2"))
    x = layers.Flatten(name="flatten")(x)
    x = b.relu(b.dense(x, b.cfg.dense_units, "fc1"), "relu3")
    return tf.keras.Model(inp, b.dense(x, classes, "logits"), name="lenet")


def _vgg_tiny(b: _Blocks, input_shape, classes, filters):
    """Three conv-relu-pool blocks (made for 32x32x3), then dense logits."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    _check_pooling(input_shape, 8, "vgg_tiny")
    layers = tf.keras.layers
    inp = layers.Input(input_shape, name="image")
    x = inp
    for i, f in enumerate(filters, start=1):
        x = layers.MaxPooling2D(2, name=f"pool{i}")(b.relu(b.conv(x, f, f"conv{i}"), f"relu{i}"))
    x = layers.Flatten(name="flatten")(x)
    return tf.keras.Model(inp, b.dense(x, classes, "logits"), name="vgg_tiny")


def _resnet_tiny(b: _Blocks, input_shape, classes, filters):
    """Stem conv, one residual block (conv-relu-conv + identity, Add, relu), pool, dense logits."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    _check_pooling(input_shape, 4, "resnet_tiny")
    if filters[0] != filters[2]:
        raise FlowError(f"model.filters: resnet_tiny's identity Add needs filters[0] == filters[2], got {filters}")
    layers = tf.keras.layers
    inp = layers.Input(input_shape, name="image")
    stem = b.relu(b.conv(inp, filters[0], "conv1"), "relu1")
    y = b.relu(b.conv(stem, filters[1], "conv2"), "relu2")
    y = b.conv(y, filters[2], "conv3")
    x = b.relu(layers.Add(name="add")([stem, y]), "relu3")
    x = layers.Flatten(name="flatten")(layers.MaxPooling2D(4, name="pool")(x))
    return tf.keras.Model(inp, b.dense(x, classes, "logits"), name="resnet_tiny")


def _resnet8(b: _Blocks, input_shape, classes, filters):
    """MLPerf Tiny image classification ResNet-8 (``resnet_v1_eembc``) without BatchNorm: stem conv, three residual
    stacks (the 2nd and 3rd halve the map with a stride-2 conv and a 1x1 stride-2 shortcut conv), average pooling
    over the whole remaining map, dense logits."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    _check_pooling(input_shape, 4, "resnet8")
    layers = tf.keras.layers
    inp = layers.Input(input_shape, name="image")
    x = b.relu(b.conv(inp, filters[0], "conv1"), "relu1")
    for s, width in enumerate(filters, start=1):  # the stem and stack 1 share the first width (identity Add)
        strides = 1 if s == 1 else 2
        y = b.relu(b.conv(x, width, f"s{s}_conv1", strides=strides), f"s{s}_relu1")
        y = b.conv(y, width, f"s{s}_conv2")
        shortcut = x if s == 1 else b.conv(x, width, f"s{s}_shortcut", kernel=1, strides=2)
        x = b.relu(layers.Add(name=f"s{s}_add")([shortcut, y]), f"s{s}_relu")
    x = layers.AveragePooling2D(tuple(int(d) for d in x.shape[1:3]), name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return tf.keras.Model(inp, b.dense(x, classes, "logits"), name="resnet8")


def _mlp(b: _Blocks, input_shape, classes, units):
    """hls4ml jet-tagging style: [Flatten,] (dense-relu) per hidden width, dense logits."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    layers = tf.keras.layers
    inp = layers.Input(input_shape, name="features" if len(input_shape) == 1 else "image")
    x = inp if len(input_shape) == 1 else layers.Flatten(name="flatten")(inp)
    for i, width in enumerate(units, start=1):
        x = b.relu(b.dense(x, width, f"fc{i}"), f"relu{i}")
    return tf.keras.Model(inp, b.dense(x, classes, "logits"), name="mlp")
