"""Keras-side bit-exact weight faults."""

import numpy as np
import pytest

from flow.emulate import Fault, FaultEmulator, weight_arrays
from flow.errors import FlowError
from flow.fixedpoint import FaultKind, FixedFormat


def _dense_model():
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    q = quantized_bits(6, 0, alpha=1)
    inp = tf.keras.layers.Input((4,), name="x")
    model = tf.keras.Model(inp, QDense(3, kernel_quantizer=q, bias_quantizer=q, name="fc")(inp))
    rng = np.random.default_rng(0)
    kernel = rng.integers(-32, 32, size=(4, 3)) / 32
    bias = rng.integers(-32, 32, size=3) / 32
    model.get_layer("fc").set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model, kernel, bias


def test_dense_fault_changes_exactly_one_output_by_the_bit_weight():
    model, kernel, _ = _dense_model()
    emulator = FaultEmulator(model)
    x = np.array([[1.0, 0.5, -0.25, 2.0], [0.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    clean = model(x).numpy()
    i, j, bit = 1, 2, 5  # kernel[1, 2], sign bit of ap_fixed<6,1>
    fault = Fault("fc", "kernel", i * 3 + j, bit)
    faulty_weight = FixedFormat(6, 1).inject(kernel[i, j], bit)
    with emulator.injected([fault]):
        faulty = model(x).numpy()
    expected = clean.copy()
    expected[:, j] += x[:, i] * (faulty_weight - kernel[i, j])
    np.testing.assert_array_equal(faulty, expected)
    np.testing.assert_array_equal(model(x).numpy(), clean)  # restored


def test_bias_stuck_at_and_composed_faults():
    model, _, bias = _dense_model()
    emulator = FaultEmulator(model)
    x = np.zeros((1, 4), dtype=np.float32)
    with emulator.injected([Fault("fc", "bias", 0, 5, FaultKind.STUCK1)]):
        assert model(x).numpy()[0, 0] == FixedFormat(6, 1).inject(bias[0], 5, FaultKind.STUCK1)
    same_bit_twice = [Fault("fc", "bias", 1, 3), Fault("fc", "bias", 1, 3)]
    with emulator.injected(same_bit_twice):
        np.testing.assert_array_equal(model(x).numpy()[0], bias.astype(np.float32))


def test_conv_fault_stays_in_its_output_channel():
    import tensorflow as tf
    from qkeras import QConv2D, quantized_bits

    q = quantized_bits(8, 0, alpha=1)
    inp = tf.keras.layers.Input((5, 5, 2), name="img")
    model = tf.keras.Model(inp, QConv2D(4, 3, kernel_quantizer=q, bias_quantizer=q, name="conv")(inp))
    emulator = FaultEmulator(model)
    array = emulator.arrays[("conv", "kernel")]
    assert array.channels == 4 and array.size == 3 * 3 * 2 * 4
    np.testing.assert_array_equal(array.channel_indices(2), np.arange(2, 72, 4))
    x = np.random.default_rng(1).random((3, 5, 5, 2)).astype(np.float32)
    clean = model(x).numpy()
    with emulator.injected([Fault("conv", "kernel", int(array.channel_indices(2)[5]), 7)]):
        faulty = model(x).numpy()
    changed = np.any(faulty != clean, axis=(0, 1, 2))
    np.testing.assert_array_equal(changed, [False, False, True, False])


def test_weight_arrays_of_a_zoo_model():
    from flow.config import ModelConfig
    from flow.zoo import build_model

    arrays = weight_arrays(build_model(ModelConfig(weight_bits=4), (8, 8, 1), 10))
    assert set(arrays) == {(n, a) for n in ("conv1", "conv2", "fc1", "logits") for a in ("kernel", "bias")}
    assert all(a.fmt == FixedFormat(4, 1) for a in arrays.values())


@pytest.mark.parametrize(
    "fault, message",
    [
        (Fault("fc2", "kernel", 0, 0), "fault target 'fc2.kernel' does not exist"),
        (Fault("fc", "kernel", 12, 0), r"fault index 12 is outside 0\.\.11"),
        (Fault("fc", "bias", 0, 6), r"fault bit 6 is outside 0\.\.5"),
    ],
)
def test_bad_faults_are_clear_errors(fault, message):
    model, _, _ = _dense_model()
    with pytest.raises(FlowError, match=message):
        FaultEmulator(model).apply([fault])
