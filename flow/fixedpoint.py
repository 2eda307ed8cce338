"""Weight words as hls4ml stores them in the C simulation, and single-bit faults on them.

Every format has the same interface: ``width`` (addressable bits, numbered 0..width-1), ``signed``, ``hls_type``,
``to_word`` (values -> raw words, non-negative int64), ``from_word`` (raw words -> the value the C-sim computes
with) and ``inject(values, bit, kind)`` (values after flipping or sticking one bit of their words).

- ``FixedFormat(width, int_bits, signed)``: ap_fixed / ap_ufixed / ap_int, the ap_fixed convention: ``int_bits``
  counts the sign bit, a value is ``code * 2**-(width - int_bits)`` with ``code`` a two's-complement (signed) or
  plain (unsigned) integer of ``width`` bits. Bit 0 is the LSB, bit ``width - 1`` the MSB (the sign bit when
  signed). ``quantized_bits(alpha=1)`` weights and biases, and ternary/binary *biases* (hls4ml: ``ap_int<2>``,
  added to the accumulator as integers: code 10 means -2, code 00 means 0 for a binary bias).
- ``TernaryFormat``: ternary *kernels*, stored as ``ap_int<2>`` (-1 = 11, 0 = 00, +1 = 01) and multiplied by
  ``nnet::product::weight_ternary``: ``w == 0 ? 0 : w == -1 ? -x : x``, so the fourth code 10 (ap_int -2) acts
  as +1.
- ``BinaryFormat``: binary *kernels*, stored as ``ap_uint<1>`` (hls4ml's XnorPrecisionType: 0 = -1, 1 = +1) and
  multiplied by ``nnet::product::weight_binary``: ``w == 0 ? -x : x``. One bit: a flip negates the weight.
- ``Po2Format(exp_bits)``: ``quantized_po2(bits)`` kernels. hls4ml stores ``struct {ap_uint<1> sign;
  ap_int<bits> weight;}`` (ExponentPrecisionType; sign 1 = positive, 0 = negative; weight = the exponent e) and
  multiplies by ``nnet::product::weight_exponential``: ``y = (r_T)x << e; return sign ? y : -y``. Bit numbering:
  bits 0..bits-1 are the exponent's two's-complement bits (bit bits-1 its sign), bit ``bits`` is the value's sign
  field, so ``width = bits + 1`` and a word means ``(+1 if sign else -1) * 2**e``, e in -2**(bits-1) ..
  2**(bits-1)-1 (QKeras itself uses at most that range). There is no zero.

  The product is that value times x exactly only while hls4ml's product type ``r_T = ap_fixed<2(bits+X),
  bits+X>`` (X the input's width) holds x * 2**e: for an input ``ap_(u)fixed<X, I>`` that is
  ``-(bits + I) <= e <= bits + X - 1 - I`` (smaller exponents are truncated towards -inf, larger ones wrap);
  ``po2_exact_exponents`` computes the range. hls4ml's precision inference does not handle exponent (nor xnor)
  weights either: the layer's accumulator and result get the model's default precision unless configured.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from flow.errors import FlowError


class FaultKind(enum.StrEnum):
    FLIP = "flip"
    STUCK0 = "stuck0"
    STUCK1 = "stuck1"


class _BitFaults:
    """``inject`` for any format with ``width``, ``hls_type``, ``to_word`` and ``from_word``."""

    width: int
    hls_type: str

    def to_word(self, values: np.ndarray | float) -> np.ndarray:
        raise NotImplementedError

    def from_word(self, words: np.ndarray | int) -> np.ndarray:
        raise NotImplementedError

    def inject(self, values: np.ndarray | float, bit: int, kind: FaultKind = FaultKind.FLIP) -> np.ndarray:
        """Values after flipping (or sticking to 0/1) ``bit`` of their words."""
        if not 0 <= bit < self.width:
            raise FlowError(f"bit {bit} is outside 0..{self.width - 1} of {self.hls_type}")
        words, mask = self.to_word(values), np.int64(1 << bit)
        faulty = {FaultKind.FLIP: words ^ mask, FaultKind.STUCK0: words & ~mask, FaultKind.STUCK1: words | mask}[kind]
        return self.from_word(faulty)

    def all_values(self) -> np.ndarray:
        """The value of every possible word, in word order."""
        return self.from_word(np.arange(1 << self.width, dtype=np.int64))


@dataclass(frozen=True)
class FixedFormat(_BitFaults):
    width: int
    int_bits: int  # integer bits including the sign bit (ap_fixed<width, int_bits>)
    signed: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.width <= 62:
            raise FlowError(f"fixed-point width {self.width} is outside 1..62")

    @property
    def frac_bits(self) -> int:
        return self.width - self.int_bits

    @property
    def hls_type(self) -> str:
        return f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.int_bits}>"

    def to_word(self, values: np.ndarray | float) -> np.ndarray:
        """The raw ``width``-bit words (as non-negative int64) of values that lie exactly on the grid."""
        scaled = np.asarray(values, dtype=np.float64) * 2.0**self.frac_bits
        codes = np.round(scaled).astype(np.int64)
        lo, hi = (-(1 << (self.width - 1)), (1 << (self.width - 1)) - 1) if self.signed else (0, (1 << self.width) - 1)
        if np.any(codes != scaled) or np.any(codes < lo) or np.any(codes > hi):
            raise FlowError(f"values are not representable in {self.hls_type}")
        return codes & ((1 << self.width) - 1)

    def from_word(self, words: np.ndarray | int) -> np.ndarray:
        """Values (float64) of raw words."""
        words = np.asarray(words, dtype=np.int64) & ((1 << self.width) - 1)
        if self.signed:
            words = np.where(words >= 1 << (self.width - 1), words - (1 << self.width), words)
        return words.astype(np.float64) * 2.0**-self.frac_bits


@dataclass(frozen=True)
class TernaryFormat(_BitFaults):
    """A ternary kernel word: ap_int<2> through nnet::product::weight_ternary (code 10 acts as +1)."""

    width: int = 2
    signed: bool = True
    hls_type: str = "ap_int<2> (weight_ternary)"
    MEANING = (0.0, 1.0, 1.0, -1.0)  # by code: 00, 01, 10 (-2: neither 0 nor -1, so +x), 11

    def to_word(self, values: np.ndarray | float) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isin(values, (-1.0, 0.0, 1.0))):
            raise FlowError(f"values are not representable in {self.hls_type} (-1, 0, 1)")
        return np.where(values < 0, 3, values.astype(np.int64))

    def from_word(self, words: np.ndarray | int) -> np.ndarray:
        return np.asarray(self.MEANING)[np.asarray(words, dtype=np.int64) & 3]


@dataclass(frozen=True)
class BinaryFormat(_BitFaults):
    """A binary kernel word: ap_uint<1> (0 = -1, 1 = +1) through nnet::product::weight_binary."""

    width: int = 1
    signed: bool = False
    hls_type: str = "ap_uint<1> (weight_binary)"

    def to_word(self, values: np.ndarray | float) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isin(values, (-1.0, 1.0))):
            raise FlowError(f"values are not representable in {self.hls_type} (-1, +1)")
        return (values > 0).astype(np.int64)

    def from_word(self, words: np.ndarray | int) -> np.ndarray:
        return np.where(np.asarray(words, dtype=np.int64) & 1, 1.0, -1.0)


@dataclass(frozen=True)
class Po2Format(_BitFaults):
    """A power-of-two kernel word: exponent bits 0..exp_bits-1 (ap_int), sign field at bit exp_bits (1 = +)."""

    exp_bits: int

    def __post_init__(self) -> None:
        if not 2 <= self.exp_bits <= 8:
            raise FlowError(f"quantized_po2 with {self.exp_bits} bits: ftflow supports 2..8")

    @property
    def width(self) -> int:
        return self.exp_bits + 1

    @property
    def signed(self) -> bool:
        return True

    @property
    def hls_type(self) -> str:
        return f"struct {{ap_uint<1> sign; ap_int<{self.exp_bits}> weight;}}"

    @property
    def exponents(self) -> tuple[int, int]:
        """The exponent field's range."""
        return -(1 << (self.exp_bits - 1)), (1 << (self.exp_bits - 1)) - 1

    def to_word(self, values: np.ndarray | float) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        with np.errstate(divide="ignore"):
            exponent = np.log2(np.abs(values))
        lo, hi = self.exponents
        if np.any(exponent != np.round(exponent)) or np.any(exponent < lo) or np.any(exponent > hi):
            raise FlowError(f"values are not representable in {self.hls_type} (+-2**e, e in {lo}..{hi})")
        field = exponent.astype(np.int64) & ((1 << self.exp_bits) - 1)
        return field | (values > 0).astype(np.int64) << self.exp_bits

    def from_word(self, words: np.ndarray | int) -> np.ndarray:
        words = np.asarray(words, dtype=np.int64)
        field = words & ((1 << self.exp_bits) - 1)
        exponent = np.where(field >= 1 << (self.exp_bits - 1), field - (1 << self.exp_bits), field)
        return np.where(words >> self.exp_bits & 1, 1.0, -1.0) * np.ldexp(1.0, exponent)


WordFormat = FixedFormat | TernaryFormat | BinaryFormat | Po2Format

SUPPORTED = "quantized_bits(alpha=1), quantized_po2 (kernels), ternary(alpha=1), binary(alpha=1)"


def format_of_quantizer(quantizer, where: str, array: str = "kernel") -> WordFormat:
    """The stored word format of a QKeras weight quantizer of a kernel or a bias (``array``).

    Anything the C-sim cannot compute bit for bit like QKeras is refused with one line naming ``where`` (the layer
    and array), the quantizer and what is supported."""
    name = type(quantizer).__name__
    config = quantizer.get_config() if hasattr(quantizer, "get_config") else {}

    def refuse(why: str) -> FlowError:
        return FlowError(f"{where}: {why}; bit-level faults support {SUPPORTED}")

    if name == "quantized_bits":
        alpha = getattr(quantizer, "alpha", 1)
        if alpha not in (1, 1.0, None):
            raise FlowError(f"{where}: quantized_bits with alpha={alpha!r}; bit-exact faults need alpha=1")
        signed = bool(quantizer.keep_negative)
        return FixedFormat(int(quantizer.bits), int(quantizer.integer) + int(signed), signed)
    if name == "quantized_po2":
        if array != "kernel":
            raise refuse("quantized_po2 on a bias is not supported (hls4ml's C++ does not compile exponent biases)")
        if config.get("use_stochastic_rounding"):
            raise refuse("quantized_po2 with use_stochastic_rounding is not deterministic")
        if float(config.get("qnoise_factor", 1.0)) != 1.0:
            raise refuse(f"quantized_po2 with qnoise_factor={config['qnoise_factor']} leaves weights off the grid")
        if int(getattr(quantizer, "_min_exp", 0)) < -126:
            raise refuse(
                f"quantized_po2({quantizer.bits}, max_value={quantizer.max_value}) reaches 2**{quantizer._min_exp}, "
                "below float32's normal range (Keras gives 0)"
            )
        return Po2Format(int(quantizer.bits))
    if name in ("ternary", "binary"):
        alpha = getattr(quantizer, "alpha", None)
        if not (alpha is None or (not isinstance(alpha, str) and np.ndim(alpha) == 0 and float(alpha) == 1.0)):
            raise refuse(
                f"{name} with alpha={alpha!r} (QKeras layers turn alpha=None into 'auto_po2'): hls4ml moves the "
                f"scale and the bias into an ApplyAlpha layer; write {name}(alpha=1)"
            )
        if getattr(quantizer, "use_stochastic_rounding", False):
            raise refuse(f"{name} with use_stochastic_rounding is not deterministic")
        if name == "binary" and getattr(quantizer, "use_01", False):
            raise refuse("binary with use_01=True (hls4ml stores every 0/1 weight as +1)")
        if array != "kernel":
            return FixedFormat(2, 2, True)  # ap_int<2>, added to the accumulator as an integer
        return TernaryFormat() if name == "ternary" else BinaryFormat()
    raise refuse(f"quantizer {name} is not supported")


def po2_exact_exponents(exp_bits: int, input_width: int, input_int_bits: int) -> tuple[int, int]:
    """Exponents e for which hls4ml's ``weight_exponential`` computes x * 2**e exactly for every input x of type
    ``ap_(u)fixed<input_width, input_int_bits>`` (W = exp_bits, X = input_width, I = input_int_bits): its product
    type ``ap_fixed<2(W+X), W+X>`` keeps W+X fractional bits (x has X-I, so e >= -(W+I); below, the right shift
    truncates) and W+X integer bits with the sign (|x| < 2**I, so e <= W+X-1-I, which also keeps the negation
    exact; above, the left shift wraps)."""
    w, x, i = exp_bits, input_width, input_int_bits
    return -(w + i), w + x - 1 - i
