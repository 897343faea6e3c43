"""Paillier aggregation: packed fixed-point slots (``paillier``) and the per-value teaching baseline.

Threat model: hides every client's update and weight from the aggregating server (honest-but-curious, holding the
public modulus n only) and from eavesdroppers, under the decisional composite residuosity assumption with a
2048-bit n (~112-bit security; 3072 offered for ~128-bit). A key authority gives the secret key (p, q) to the
clients only (:mod:`protocols.keyauthority`). Known limits: any one key-holding client colluding with the server
decrypts everyone (shared key; ``decryption="threshold"``, :mod:`protocols.threshold_paillier`, raises this to T);
the decrypted *sum* is released to the server with ``release="server"`` (the default, named as such)
— HE hides individual updates, not the aggregate, so combine with DP for output privacy; rounds with fewer
than 3 contributors are refused; clients are trusted to encode in range (no proofs; an out-of-range packed slot is
detected at decoding only when it leaves the range honest inputs can reach); Paillier ciphertexts are malleable
(integrity comes from the authenticated transport, not from here). See :mod:`protocols.he_round` for the round.

``paillier`` (packed): each entry of ``[w' x, w']`` becomes signed fixed point (:mod:`protocols.encoding`: clip to
max(clip, 1), scale, unbiased stochastic rounding from a CSPRNG), offset to [0, 2M], and ``slot_bits``-bit slots
(default 24, of which >= ceil(log2(n_clients + 1)) are headroom) are packed ~85 per 2048-bit plaintext
(:mod:`protocols.packing`). Ciphertexts are multiplied mod n^2 (homomorphic addition) as they arrive; a key holder
decrypts (phe's CRT ``raw_decrypt``) and returns the packed plaintext sums; the server unpacks and subtracts
k * M. The error bound (``error_bound``) is the fixed-point rounding bound. Encryption randomness r^n comes from a
pool filled in the setup phase (``randomness="crt-pool"``, exact distribution, see
:mod:`protocols.paillier_keys`), or is computed per ciphertext the textbook way (``randomness="online"``), or comes
from the optional short-exponent pool (``randomness="short-exponent"``: faster, under an extra short-exponent
assumption named in :mod:`protocols.paillier_keys`; off by default).

``paillier-per-value``: phe's own ``EncryptedNumber`` per float (precision 2^-32): the textbook construction, kept
only to show what packing saves (about 3 hours and 512 MB per client per million parameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gmpy2
import numpy as np
from phe import paillier as phe_paillier

from .csprng import CSPRNG
from .errors import ConfigError, DecryptionError, HeadroomError, MessageError
from .he_round import ClientCodec, HEProtocol, ServerCodec
from .packing import SlotPacking
from .paillier_keys import ClientKeys, PaillierAuthority, PublicKey, check_key_bits
from .wire import FieldSpec

__all__ = ["PackedPaillierProtocol", "PerValuePaillierProtocol", "RANDOMNESS"]

RANDOMNESS = ("crt-pool", "online", "short-exponent")
PER_VALUE_PRECISION = 2.0 ** -32  # phe encodes with exponent floor(log16(precision)) = -8
_PER_VALUE_EXPONENT = -8


def _split_ciphertexts(raw: bytes, width: int, n_square: int) -> list:
    out = []
    for start in range(0, len(raw), width):
        c = gmpy2.mpz(int.from_bytes(raw[start:start + width], "big"))
        if not 0 < c < n_square:
            raise MessageError("a ciphertext lies outside Z_{n^2}")
        out.append(c)
    return out


def _join(values: list, width: int) -> bytes:
    return b"".join(int(v).to_bytes(width, "big") for v in values)


@dataclass(frozen=True)
class _PaillierOptions(HEProtocol):
    authority_type: ClassVar[type] = PaillierAuthority  # the dealer an ``authority=`` option must be

    key_bits: int = 2048
    insecure_test_keys: bool = False  # allows key_bits < 2048; tests only, never a default
    authority: PaillierAuthority | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_key_bits(self.key_bits, self.insecure_test_keys)
        if self.authority is not None:
            if not isinstance(self.authority, self.authority_type):
                raise ConfigError(f"authority must be a {self.authority_type.__name__}")
            if self.authority.key_bits != self.key_bits:
                raise ConfigError("the authority's key length differs from key_bits")
            self._cache["authority"] = self.authority

    def _make_authority(self) -> PaillierAuthority:
        return PaillierAuthority(self.key_bits, insecure_test_keys=self.insecure_test_keys)


@dataclass(frozen=True)
class PackedPaillierProtocol(_PaillierOptions):
    """Packed Paillier (see the module docstring)."""

    name: ClassVar[str] = "paillier"
    key_slot: ClassVar[str] = "privfed.paillier.keys"
    randomness_choices: ClassVar[tuple[str, ...]] = RANDOMNESS

    slot_bits: int = 24
    randomness: str = "crt-pool"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.slot_bits, int) or not 8 <= self.slot_bits <= 63:
            raise ConfigError(f"slot_bits must be in 8..63, got {self.slot_bits!r}")
        if self.randomness not in self.randomness_choices:
            raise ConfigError(f"randomness must be one of {self.randomness_choices}, got {self.randomness!r}")

    def packing(self, n_bits: int, max_clients: int) -> SlotPacking:
        return SlotPacking.for_modulus(n_bits, self.slot_bits, max_clients, self.coded_range)

    def server_codec(self, public_material: bytes, dim: int, max_clients: int) -> "PackedServerCodec":
        public = PublicKey.from_material(public_material)
        return PackedServerCodec(public, self.packing(public.n.bit_length() - 1, max_clients), dim + 1)

    def client_codec(self, keys: ClientKeys, dim: int, max_clients: int) -> "PackedClientCodec":
        packing = self.packing(int(keys.n).bit_length() - 1, max_clients)
        return PackedClientCodec(keys, packing, dim + 1, self.randomness)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "key_bits": self.key_bits, "slot_bits": self.slot_bits,
                "randomness": self.randomness}


class PackedServerCodec(ServerCodec):
    def __init__(self, public: PublicKey, packing: SlotPacking, count: int) -> None:
        self.public, self.packing, self.count = public, packing, count
        self.n_square = gmpy2.mpz(public.n_square)
        self.n_ct = packing.plaintexts_for(count)
        self.width = public.ciphertext_bytes
        self.params = (f"paillier-packed;n_bits={public.n.bit_length()};slot_bits={packing.slot_bits};"
                       f"slots={packing.slots};frac_bits={packing.fixed.frac_bits};"
                       f"max_clients={packing.fixed.max_clients};count={count};ciphertexts={self.n_ct}")
        self.ciphertext_field = FieldSpec("bytes", length=self.n_ct * self.width)
        self.plaintext_field = FieldSpec("bytes", length=self.n_ct * packing.plaintext_bytes)
        self.max_message_bytes = self.n_ct * self.width + 4096
        self._acc: list | None = None

    def parse(self, ciphertexts: bytes) -> list:
        return _split_ciphertexts(ciphertexts, self.width, self.n_square)

    def add(self, parsed: list) -> None:
        if self._acc is None:
            self._acc = parsed
        else:
            n2 = self.n_square
            self._acc = [a * c % n2 for a, c in zip(self._acc, parsed)]

    def sum_ciphertexts(self) -> bytes:
        assert self._acc is not None
        return _join(self._acc, self.width)

    def decode_plaintext(self, plaintext: bytes, n_summed: int) -> np.ndarray:
        width = self.packing.plaintext_bytes
        ints = [int.from_bytes(plaintext[i:i + width], "big") for i in range(0, len(plaintext), width)]
        try:
            return self.packing.decode_sum(self.packing.unpack(ints, self.count), n_summed)
        except HeadroomError as exc:
            raise MessageError(f"released plaintext rejected: {exc}") from None

    def sum_error(self, n_summed: int) -> float:
        return self.packing.sum_error_bound(n_summed)

    def info(self) -> dict[str, Any]:
        p = self.packing
        return {"key_bits": self.public.n.bit_length(), "slot_bits": p.slot_bits, "slots_per_plaintext": p.slots,
                "frac_bits": p.fixed.frac_bits, "ciphertexts_per_client": self.n_ct,
                "headroom_bits_min": math.ceil(math.log2(p.fixed.max_clients + 1))}


class PackedClientCodec(ClientCodec):
    def __init__(self, keys: ClientKeys, packing: SlotPacking, count: int, randomness: str) -> None:
        self.keys, self.packing, self.count, self.randomness = keys, packing, count, randomness
        self.n_ct = packing.plaintexts_for(count)
        self.width = (int(keys.n_square).bit_length() + 7) // 8
        self._pool: list = []

    def precompute(self) -> None:
        if self.randomness == "crt-pool":
            self._pool = self.keys.nth_residues(self.n_ct)
        elif self.randomness == "short-exponent":
            self._pool = self.keys.nth_residues_short(self.n_ct)

    def encrypt(self, vector: np.ndarray) -> bytes:
        if vector.size != self.count:
            raise ConfigError("vector length differs from the round's")
        plaintexts = self.packing.pack(self.packing.encode(vector, CSPRNG.from_os()))
        pool, self._pool = self._pool, []  # consumed once: randomness is never reused
        if self.randomness != "online" and len(pool) != len(plaintexts):
            raise ConfigError("randomness pool does not match the round")
        out = []
        for i, m in enumerate(plaintexts):
            rn = pool[i] if pool else self.keys.nth_residue_online()
            out.append(self.keys.encrypt_raw(m, rn))
        return _join(out, self.width)

    def decrypt(self, ciphertexts: bytes) -> bytes:
        try:
            cts = _split_ciphertexts(ciphertexts, self.width, self.keys.n_square)
        except MessageError:
            raise DecryptionError("decryption failed") from None
        width = self.packing.plaintext_bytes
        limit = 1 << (self.packing.slots * self.packing.slot_bits)
        out = []
        for c in cts:
            m = self.keys.decrypt_raw(int(c))
            if m >= limit:
                raise DecryptionError("decryption failed")
            out.append(m.to_bytes(width, "big"))
        return b"".join(out)


@dataclass(frozen=True)
class PerValuePaillierProtocol(_PaillierOptions):
    """One phe EncryptedNumber per value: the teaching baseline (slow and large by construction)."""

    name: ClassVar[str] = "paillier-per-value"
    key_slot: ClassVar[str] = "privfed.paillier.keys"

    def server_codec(self, public_material: bytes, dim: int, max_clients: int) -> "PerValueServerCodec":
        return PerValueServerCodec(PublicKey.from_material(public_material), dim + 1, max_clients)

    def client_codec(self, keys: ClientKeys, dim: int, max_clients: int) -> "PerValueClientCodec":
        return PerValueClientCodec(keys, dim + 1, self.coded_range)


class PerValueServerCodec(ServerCodec):
    def __init__(self, public: PublicKey, count: int, max_clients: int) -> None:
        self.public, self.count = public, count
        self.phe_public = phe_paillier.PaillierPublicKey(public.n)
        self.width = public.ciphertext_bytes
        self.params = f"paillier-per-value;n_bits={public.n.bit_length()};count={count};exponent=-8"
        self.ciphertext_field = FieldSpec("bytes", length=count * self.width)
        self.plaintext_field = FieldSpec("array", dtype="float64", length=count)
        self.max_message_bytes = count * self.width + 4096
        self._acc: list | None = None

    def parse(self, ciphertexts: bytes) -> list:
        cts = _split_ciphertexts(ciphertexts, self.width, gmpy2.mpz(self.public.n_square))
        return [phe_paillier.EncryptedNumber(self.phe_public, int(c), _PER_VALUE_EXPONENT) for c in cts]

    def add(self, parsed: list) -> None:
        self._acc = parsed if self._acc is None else [a + b for a, b in zip(self._acc, parsed)]

    def sum_ciphertexts(self) -> bytes:
        assert self._acc is not None
        return _join([e.ciphertext(be_secure=False) for e in self._acc], self.width)

    def decode_plaintext(self, plaintext: np.ndarray, n_summed: int) -> np.ndarray:
        return np.asarray(plaintext, dtype=np.float64)

    def sum_error(self, n_summed: int) -> float:
        # each value rounded to a multiple of 16^-8 = 2^-32 (error <= 2^-33), then float64 decoding
        return n_summed * 2.0 ** -33 + 1e-15 * n_summed


class PerValueClientCodec(ClientCodec):
    def __init__(self, keys: ClientKeys, count: int, coded_range: float) -> None:
        self.keys, self.count, self.coded_range = keys, count, coded_range
        self.width = (int(keys.n_square).bit_length() + 7) // 8

    def precompute(self) -> None:
        return None

    def encrypt(self, vector: np.ndarray) -> bytes:
        values = np.clip(vector, -self.coded_range, self.coded_range)
        public = self.keys.public_key
        out = [public.encrypt(float(v), precision=PER_VALUE_PRECISION) for v in values]
        if any(e.exponent != _PER_VALUE_EXPONENT for e in out):
            raise ConfigError("phe chose an unexpected exponent")
        return _join([e.ciphertext(be_secure=False) for e in out], self.width)

    def decrypt(self, ciphertexts: bytes) -> np.ndarray:
        try:
            cts = _split_ciphertexts(ciphertexts, self.width, self.keys.n_square)
            return np.array([self.keys.private_key.decrypt(
                phe_paillier.EncryptedNumber(self.keys.public_key, int(c), _PER_VALUE_EXPONENT)) for c in cts],
                dtype=np.float64)
        except Exception:
            raise DecryptionError("decryption failed") from None
