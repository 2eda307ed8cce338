"""Fixed-point words as the FPGA stores them (ap_fixed / ap_ufixed) and single-bit faults on them.

A format ``FixedFormat(width, int_bits, signed)`` follows the ap_fixed convention: ``int_bits`` counts the sign
bit, so a value is ``code * 2**-(width - int_bits)`` with ``code`` a two's-complement (signed) or plain (unsigned)
integer of ``width`` bits. Bit 0 is the LSB, bit ``width - 1`` the MSB (the sign bit when signed).
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


@dataclass(frozen=True)
class FixedFormat:
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

    def inject(self, values: np.ndarray | float, bit: int, kind: FaultKind = FaultKind.FLIP) -> np.ndarray:
        """Values after flipping (or sticking to 0/1) ``bit`` of their words."""
        if not 0 <= bit < self.width:
            raise FlowError(f"bit {bit} is outside 0..{self.width - 1} of {self.hls_type}")
        words, mask = self.to_word(values), np.int64(1 << bit)
        faulty = {FaultKind.FLIP: words ^ mask, FaultKind.STUCK0: words & ~mask, FaultKind.STUCK1: words | mask}[kind]
        return self.from_word(faulty)


def format_of_quantizer(quantizer, where: str) -> FixedFormat:
    """The stored word format of a QKeras ``quantized_bits`` weight quantizer (alpha=1)."""
    name = type(quantizer).__name__
    if name != "quantized_bits":
        raise FlowError(f"{where}: quantizer {name} is not supported for bit-level faults (use quantized_bits)")
    alpha = getattr(quantizer, "alpha", 1)
    if alpha not in (1, 1.0, None):
        raise FlowError(f"{where}: quantized_bits with alpha={alpha!r}; bit-exact faults need alpha=1")
    signed = bool(quantizer.keep_negative)
    return FixedFormat(int(quantizer.bits), int(quantizer.integer) + int(signed), signed)
