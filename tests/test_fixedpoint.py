"""Fixed-point words and bit faults, checked on hand-computed words and exhaustively over formats."""

import numpy as np
import pytest

from flow.errors import FlowError
from flow.fixedpoint import FaultKind, FixedFormat, format_of_quantizer


@pytest.mark.parametrize(
    "fmt, value, bit, kind, expected",
    [
        (FixedFormat(6, 1), 0.25, 5, FaultKind.FLIP, 0.25 - 1),  # 001000 -> 101000: sign bit of ap_fixed<6,1>
        (FixedFormat(6, 1), 0.25, 0, FaultKind.FLIP, 0.28125),  # + 2^-5
        (FixedFormat(6, 1), -1.0, 5, FaultKind.FLIP, 0.0),  # 100000 -> 000000
        (FixedFormat(4, 2), -1.25, 3, FaultKind.FLIP, 0.75),  # 1011 -> 0011
        (FixedFormat(4, 2), -1.25, 1, FaultKind.FLIP, -1.75),  # 1011 -> 1001
        (FixedFormat(4, 4, signed=False), 5.0, 3, FaultKind.FLIP, 13.0),  # 0101 -> 1101
        (FixedFormat(4, 4, signed=False), 5.0, 0, FaultKind.STUCK0, 4.0),
        (FixedFormat(4, 4, signed=False), 5.0, 1, FaultKind.STUCK1, 7.0),
        (FixedFormat(4, 4, signed=False), 5.0, 2, FaultKind.STUCK1, 5.0),  # already 1: no change
        (FixedFormat(3, 0, signed=False), 0.375, 2, FaultKind.FLIP, 0.875),  # 011 -> 111
        (FixedFormat(8, 0), -0.5, 7, FaultKind.FLIP, 0.0),  # ap_fixed<8,0>: [-0.5, 0.5)
        (FixedFormat(2, 2), 1.0, 1, FaultKind.FLIP, -1.0),  # 01 -> 11
        (FixedFormat(16, 6), 3.5, 15, FaultKind.STUCK1, 3.5 - 32),
    ],
)
def test_hand_computed_words(fmt, value, bit, kind, expected):
    assert fmt.inject(value, bit, kind) == expected


def test_words_of_known_values():
    assert FixedFormat(6, 1).to_word(0.25) == 0b001000
    assert FixedFormat(6, 1).to_word(-0.25) == 0b111000
    assert FixedFormat(4, 2).to_word(-1.25) == 0b1011
    assert FixedFormat(6, 1).hls_type == "ap_fixed<6,1>"
    assert FixedFormat(5, 2, signed=False).hls_type == "ap_ufixed<5,2>"


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("width", range(2, 17))
def test_every_format_every_code_every_bit(width, signed):
    """For widths 2..16 and integer bits 0..width: words round-trip, and a fault moves the code by exactly the
    bit's two's-complement weight (computed here independently in integer code units)."""
    for int_bits in range(0, width + 1):
        fmt = FixedFormat(width, int_bits, signed)
        lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1)) if signed else (0, 2**width)
        codes = np.arange(lo, hi, dtype=np.int64)
        if len(codes) > 4096:
            codes = np.unique(np.r_[codes[:64], codes[-64:], np.random.default_rng(width).choice(codes, 512)])
        scale = 2.0 ** -(width - int_bits)
        values = codes * scale
        np.testing.assert_array_equal(fmt.from_word(fmt.to_word(values)), values)
        for bit in range(width):
            is_set = (fmt.to_word(values) >> bit) & 1
            weight = -(2**bit) if (signed and bit == width - 1) else 2**bit
            flipped = fmt.inject(values, bit, FaultKind.FLIP)
            np.testing.assert_array_equal(flipped, (codes + np.where(is_set, -weight, weight)) * scale)
            np.testing.assert_array_equal(fmt.inject(flipped, bit, FaultKind.FLIP), values)
            np.testing.assert_array_equal(fmt.inject(values, bit, FaultKind.STUCK0), (codes - is_set * weight) * scale)
            np.testing.assert_array_equal(
                fmt.inject(values, bit, FaultKind.STUCK1), (codes + (1 - is_set) * weight) * scale
            )


def test_bad_values_and_bits():
    fmt = FixedFormat(6, 1)
    with pytest.raises(FlowError, match=r"not representable in ap_fixed<6,1>"):
        fmt.to_word(0.3)
    with pytest.raises(FlowError, match="not representable"):
        fmt.to_word(1.0)  # max is 1 - 2^-5
    with pytest.raises(FlowError, match=r"bit 6 is outside 0\.\.5"):
        fmt.inject(0.25, 6)


def test_format_of_qkeras_quantizers():
    from qkeras import quantized_bits, quantized_relu

    assert format_of_quantizer(quantized_bits(6, 0, alpha=1), "w") == FixedFormat(6, 1, True)
    assert format_of_quantizer(quantized_bits(8, 3, alpha=1), "w") == FixedFormat(8, 4, True)
    assert format_of_quantizer(quantized_bits(5, 1, keep_negative=False, alpha=1), "w") == FixedFormat(5, 1, False)
    with pytest.raises(FlowError, match="alpha='auto_po2'"):
        format_of_quantizer(quantized_bits(6, 0, alpha="auto_po2"), "layer 'c' kernel")
    with pytest.raises(FlowError, match="quantized_relu is not supported"):
        format_of_quantizer(quantized_relu(6, 2), "layer 'c' kernel")


@pytest.mark.parametrize("bits, integer", [(2, 0), (4, 0), (6, 0), (6, 2), (8, 0), (8, 3), (12, 4), (16, 5)])
def test_qkeras_quantizer_maps_every_word_to_itself(bits, integer):
    """The premise of Keras-side emulation: a faulty word written into a layer survives its quantizer."""
    from qkeras import quantized_bits

    fmt = format_of_quantizer(quantized_bits(bits, integer, alpha=1), "w")
    values = fmt.from_word(np.arange(2**bits)).astype(np.float32)
    np.testing.assert_array_equal(quantized_bits(bits, integer, alpha=1)(values).numpy(), values)
