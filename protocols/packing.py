"""Slot packing of fixed-point integers into large plaintexts (for packed Paillier).

Threat model: packing hides nothing; it decides *correctness*. Values are signed fixed point
(:class:`~protocols.encoding.FixedPoint`: clip, scale, unbiased stochastic rounding from a CSPRNG) shifted by an
**offset** M = the largest |integer| one client contributes, so each client's slot holds u = q + M in [0, 2M].
The fixed-point check guarantees max_clients * M < 2^(slot_bits - 1), hence a sum of up to ``max_clients`` slots
lies in [0, 2 * max_clients * M] < 2^slot_bits and never carries into the next slot: the headroom is
ceil(log2(max_clients + 1)) bits per slot or more. Packing refuses values outside [0, 2M] and unpacking refuses a
sum of more clients than declared or a slot outside its possible range (:class:`~protocols.errors.HeadroomError`)
— an honest sum can never trip it, so a trip means a client sent out-of-range slots (which encryption cannot
prevent: packed Paillier offers no protection against malicious clients' inputs).

Slots are little-endian: slot j of a plaintext occupies bits [j * slot_bits, (j + 1) * slot_bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .csprng import CSPRNG
from .encoding import FixedPoint
from .errors import ConfigError, HeadroomError

__all__ = ["SlotPacking"]

_BLOCK = 2048  # plaintexts bit-(un)packed per numpy batch (bounds temporary memory)


@dataclass(frozen=True)
class SlotPacking:
    """``slots`` fixed-point values of ``slot_bits`` each per plaintext, offset-encoded, for ``max_clients``."""

    fixed: FixedPoint
    slots: int

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ConfigError("a plaintext must hold at least one slot")
        if self.fixed.total_bits > 63:
            raise ConfigError("slot_bits must be <= 63")

    @classmethod
    def for_modulus(cls, modulus_bits: int, slot_bits: int, max_clients: int, clip: float) -> "SlotPacking":
        """As many ``slot_bits`` slots as fit below a modulus of ``modulus_bits`` bits (one bit of margin), with the
        finest scale whose sum over ``max_clients`` fits (raises HeadroomError when none does)."""
        if not 8 <= slot_bits <= 63:
            raise ConfigError(f"slot_bits must be in 8..63, got {slot_bits}")
        headroom = math.ceil(math.log2(max_clients + 1))
        if slot_bits - headroom < 3:
            raise HeadroomError(f"{slot_bits}-bit slots leave no value bits after {headroom} headroom bits for "
                                f"{max_clients} clients")
        slots = (modulus_bits - 1) // slot_bits
        return cls(FixedPoint.for_bits(slot_bits, max_clients, clip), slots)

    @property
    def slot_bits(self) -> int:
        return self.fixed.total_bits

    @property
    def offset(self) -> int:
        return self.fixed.max_abs_per_client

    @property
    def plaintext_bytes(self) -> int:
        return (self.slots * self.slot_bits + 7) // 8

    def plaintexts_for(self, count: int) -> int:
        return -(-count // self.slots)

    def encode(self, x: np.ndarray, rng: CSPRNG) -> np.ndarray:
        """Quantise float values and shift them to [0, 2M] (uint64)."""
        q = self.fixed.quantize(x, rng)
        return (q + self.offset).astype(np.uint64)

    def pack(self, slots: np.ndarray) -> list[int]:
        """uint64 slot values in [0, 2M] -> one integer per ``slots`` values."""
        slots = np.asarray(slots)
        if slots.ndim != 1 or slots.dtype.kind not in "ui":
            raise ConfigError("pack takes a flat integer array")
        if slots.size and (int(slots.min()) < 0 or int(slots.max()) > 2 * self.offset):
            raise HeadroomError("a slot value lies outside [0, 2M]; it would carry into its neighbour")
        return self._to_ints(slots.astype(np.uint64))

    def _to_ints(self, slots: np.ndarray) -> list[int]:
        count = self.plaintexts_for(slots.size)
        padded = np.zeros(count * self.slots, dtype=np.uint64)
        padded[:slots.size] = slots
        shifts = np.arange(self.slot_bits, dtype=np.uint64)
        width = self.plaintext_bytes
        out: list[int] = []
        for start in range(0, count, _BLOCK):
            block = padded[start * self.slots:(start + _BLOCK) * self.slots].reshape(-1, self.slots)
            bits = ((block[:, :, None] >> shifts) & np.uint64(1)).astype(np.uint8).reshape(block.shape[0], -1)
            pad = width * 8 - bits.shape[1]
            if pad:
                bits = np.concatenate([bits, np.zeros((bits.shape[0], pad), dtype=np.uint8)], axis=1)
            rows = np.packbits(bits, axis=1, bitorder="little")
            out.extend(int.from_bytes(row.tobytes(), "little") for row in rows)
        return out

    def unpack(self, plaintexts: list[int], count: int) -> np.ndarray:
        """Integers -> the first ``count`` slot values (uint64), refusing integers wider than the slots."""
        if len(plaintexts) != self.plaintexts_for(count):
            raise HeadroomError(f"{len(plaintexts)} plaintexts cannot hold exactly {count} slots")
        limit = 1 << (self.slots * self.slot_bits)
        width = self.plaintext_bytes
        weights = (np.uint64(1) << np.arange(self.slot_bits, dtype=np.uint64))
        parts: list[np.ndarray] = []
        for start in range(0, len(plaintexts), _BLOCK):
            chunk = plaintexts[start:start + _BLOCK]
            if any(not 0 <= int(m) < limit for m in chunk):
                raise HeadroomError("a plaintext exceeds its slots: the packed sum overflowed")
            raw = np.frombuffer(b"".join(int(m).to_bytes(width, "little") for m in chunk), dtype=np.uint8)
            bits = np.unpackbits(raw.reshape(len(chunk), width), axis=1, bitorder="little")
            bits = bits[:, :self.slots * self.slot_bits].reshape(len(chunk), self.slots, self.slot_bits)
            parts.append((bits.astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64).reshape(-1))
        return np.concatenate(parts)[:count] if parts else np.zeros(0, dtype=np.uint64)

    def decode_sum(self, slot_sums: np.ndarray, n_summed: int) -> np.ndarray:
        """Slot sums of ``n_summed`` clients -> float64 sums, refusing more clients than declared and any slot
        outside [0, 2 * n_summed * M] (impossible for honest inputs)."""
        if n_summed > self.fixed.max_clients:
            raise HeadroomError(f"a sum of {n_summed} clients exceeds the declared max_clients "
                                f"{self.fixed.max_clients}")
        if n_summed < 1:
            raise HeadroomError("nothing was summed")
        top = 2 * n_summed * self.offset
        sums = np.asarray(slot_sums, dtype=np.uint64)
        if sums.size and int(sums.max()) > top:
            raise HeadroomError("a slot sum lies outside the range of honest inputs (out-of-range input)")
        signed = sums.astype(np.int64) - np.int64(n_summed * self.offset)
        return self.fixed.dequantize(signed)

    def sum_error_bound(self, n_summed: int) -> float:
        return self.fixed.sum_error_bound(n_summed)
