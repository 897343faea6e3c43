"""CKKS aggregation with TenSEAL: add-only, one data prime, the whole model in as few ciphertexts as slots allow.

Threat model: hides every client's update and weight from the aggregating server (honest-but-curious) and from
eavesdroppers, under RLWE with parameter sets at 128-bit security per the HomomorphicEncryption.org standard
tables (``SECURITY_TABLE_128``). A key authority creates the TenSEAL context and gives the secret key to the
clients only; the server receives a **public** context (``is_private() == False``, tested from its bytes) and the
clients' ciphertexts (:mod:`protocols.keyauthority`, :mod:`protocols.he_round`). Known limits, stated plainly:

* any one key-holding client colluding with the server decrypts everyone's updates (shared client key);
* CKKS is approximate and its decryptions leak information about the secret key when released to a party that
  saw the ciphertexts (IND-CPA^D, Li and Micciancio 2021): from a ciphertext and its exact decryption the server
  could rebuild the noise polynomial and solve for the secret key by linear algebra. With ``release="server"`` the
  decrypted sum *is* released to the server, so the key holder first adds fresh Gaussian noise of standard
  deviation ``flood_std`` (default 2^-25 = 2.98e-8, twelve times the decryption-error standard deviation of one
  fresh n4096 ciphertext, about four times that of a 10-client sum) to every slot. This turns the exact linear
  system into a noisy (LWE-like) one and defeats that passive key-recovery attack, in the spirit of OpenFHE's
  default decryption countermeasure; it is **not** the statistical flooding that an IND-CPA^D proof needs (see
  "Flooding floor" below), which would cost the accuracy target. A value below the *flooding floor* is refused
  (``ConfigError`` naming the floor); ``flood_std=0`` removes flooding altogether (the result's ``info`` says
  so, and the threat layer refuses it whenever the server is not trusted). For a proof-level guarantee use
  ``release="key-holders"`` (the server never sees a decryption) or rotate keys every round;
* HE hides individual updates, not the aggregate: combine with DP for output privacy; fewer than 3 contributors
  are refused; clients are trusted to encode in range (a client's value beyond the headroom wraps mod q).

Flooding floor (issue 12, case 11). *Decryption error of a fresh encryption.* SEAL encrypts under the key level
(data primes and the special prime P) and divides by P at once, so the key-dependent noise u*e + e0 + s*e1 shrinks
by P >= 2^50 and what remains is the rounding of that division: r0 + r1*s, with r0, r1 uniform on [-1/2, 1/2] per
coefficient and s ternary (coefficient variance 2/3). One coefficient therefore has variance (1 + 2N/3)/12, and a
slot (the real part of a sum of N coefficients times roots of unity, divided by the scale Delta) has standard
deviation ``E = sqrt(N (1 + 2N/3) / 24) / Delta`` (:meth:`CKKSParameters.fresh_error_std`; n4096 at Delta = 2^38:
2.48e-9, measured 2.47e-9; n8192 and n16384 at 2^40: 1.24e-9 and 2.48e-9, measured 1.23e-9 and 2.47e-9). A sum
of k ciphertexts has sqrt(k) E; this error term e depends on the secret key (through r1*s), which is what the
Li-Micciancio attack solves for. *Flooding.* The released slot is m + e + f with f ~ N(0, flood_std^2). The
standard noise-flooding argument bounds the statistical distance between e + f and f by |e| / (2 flood_std) per
slot, or, through the KL divergence e^2 / (2 flood_std^2), gives 2^-lambda over d slots once flood_std >=
2^(lambda/2) sqrt(d/2) |e|: for lambda = 40 that is 2^20 times the error or more — flooding noise near 1e-2 per
slot, which the accuracy target cannot afford, so privfed does **not** claim it (``info["statistical_flood_std"]``
reports what it would take). *The enforced floor* is the weaker, necessary condition that the flooding noise
dominate the key-dependent error of even a single fresh ciphertext by a six-standard-deviation tail margin:
``flood_std >= FLOOD_FLOOR_SIGMAS * E`` (:attr:`CKKSParameters.flood_floor`: n4096 1.49e-8, n8192 7.45e-9,
n16384 1.49e-8). Below it the noise does not cover the error it is meant to hide (1e-30 vanishes in float64
rounding: 1 + 1e-30 == 1); such values are refused at construction, so ``privfed plan`` and ``bench`` fail with
the reason. The default 2^-25 is 2x the floor for n4096 and n16384 and 4x for n8192. Each result reports its own
margin against the round's actual error, ``flood_margin = flood_std / (sqrt(k) E)``.

Design (checklist items 5-8): clients pre-weight and send ``[w' x, w']``, so the server only adds — no
multiplication, no relinearisation, no rescaling — and one data prime suffices. The vector is flattened and
chunked by the slot count N/2 (``ceil((dim + 1) / (N/2))`` ciphertexts, no per-tensor waste). The server
deserialises and adds each reply as it arrives (deserialisation is most of its cost). Parameter sets
(``PARAMETER_SETS``): ``n4096`` (default) N=4096, coefficient moduli [50, 59] — the *data* prime is the 50-bit one
and the 59-bit special prime is never part of a ciphertext, so the serialised ciphertext carries 50-bit
coefficients that SEAL's zstd compression packs: ~7.2x the float32 bytes instead of ~8.0x for [60, 49];
``n8192`` N=8192 [60, 40, 40], the popular default that allows one multiplication (~14.9x), for comparison;
``n16384`` N=16384 [60, 60], one data prime with 2^17 of headroom for very many clients (~8.0x plus
chunk rounding: 8.7x at 100k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
import tenseal as ts

from .csprng import CSPRNG
from .errors import ConfigError, DecryptionError, HeadroomError, MessageError
from .he_round import ClientCodec, HEProtocol, ServerCodec
from .keyauthority import KeyAuthority
from .wire import FieldSpec

__all__ = ["CKKSProtocol", "CKKSParameters", "PARAMETER_SETS", "SECURITY_TABLE_128", "CKKSAuthority"]

#: largest total coefficient-modulus bits for 128-bit classical security, ternary secret (HE standard, 2018)
SECURITY_TABLE_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
_NOISE_SIGMA = 3.2  # SEAL's error standard deviation
#: the enforced flooding floor in standard deviations of one fresh ciphertext's decryption error (module docstring)
FLOOD_FLOOR_SIGMAS = 6.0
#: statistical security parameter for which ``info`` reports the (not enforced) statistical flooding level
STATISTICAL_FLOOD_BITS = 40


@dataclass(frozen=True)
class CKKSParameters:
    """A named CKKS parameter set. ``measured`` records figures measured with ``privfed bench`` (see he.md)."""

    name: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    measured: str = ""

    def __post_init__(self) -> None:
        limit = SECURITY_TABLE_128.get(self.poly_modulus_degree)
        if limit is None or sum(self.coeff_mod_bit_sizes) > limit:
            raise ConfigError(f"CKKS set {self.name}: {sum(self.coeff_mod_bit_sizes)} modulus bits exceed the "
                              f"128-bit bound {limit} for N={self.poly_modulus_degree}")
        if self.scale_bits + 2 >= self.data_prime_bits:
            raise ConfigError(f"CKKS set {self.name}: scale 2^{self.scale_bits} leaves no headroom")

    @property
    def security_bits(self) -> int:
        return 128

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def data_prime_bits(self) -> int:
        """Bits of the modulus fresh ciphertexts live under: every prime but the last (special) one."""
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def max_abs_sum(self) -> float:
        """Largest |slot value| the sum may reach: q0 / 2 with two bits of margin, over the scale."""
        return 2.0 ** (self.data_prime_bits - 3 - self.scale_bits)

    def sum_error(self, n_summed: int) -> float:
        """High-probability bound on one slot's error in a sum of n fresh public-key encryptions: each carries
        noise v*e + e0 + s*e1 with canonical-embedding norm far below 16 sigma N per slot (a 20-plus standard
        deviation margin for ternary v, s and Gaussian e), plus encoding rounding sqrt(N), over the scale."""
        per = 16 * _NOISE_SIGMA * self.poly_modulus_degree + math.sqrt(self.poly_modulus_degree)
        return n_summed * per / 2.0 ** self.scale_bits

    def fresh_error_std(self, n_summed: int = 1) -> float:
        """Standard deviation of one slot's decryption error for a sum of ``n_summed`` fresh public-key
        encryptions, in real units: sqrt(n_summed) * sqrt(N (1 + 2N/3) / 24) / scale (derivation in the module
        docstring: the rounding left by SEAL's division by the special prime dominates)."""
        n = self.poly_modulus_degree
        return math.sqrt(n_summed) * math.sqrt(n * (1 + 2 * n / 3) / 24) / 2.0 ** self.scale_bits

    @property
    def flood_floor(self) -> float:
        """Smallest accepted ``flood_std`` other than 0: FLOOD_FLOOR_SIGMAS x one fresh ciphertext's error std."""
        return FLOOD_FLOOR_SIGMAS * self.fresh_error_std(1)

    def statistical_flood_std(self, n_summed: int, slots_released: int, bits: int = STATISTICAL_FLOOD_BITS,
                              ) -> float:
        """What statistical flooding at 2^-bits (KL bound over the released slots) would need; reported only."""
        error = FLOOD_FLOOR_SIGMAS * self.fresh_error_std(n_summed)
        return 2.0 ** (bits / 2) * math.sqrt(slots_released / 2) * error

    def describe(self) -> dict[str, Any]:
        return {"parameter_set": self.name, "poly_modulus_degree": self.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes), "scale_bits": self.scale_bits,
                "security_bits": self.security_bits, "security_basis": "HE standard table, 128-bit, ternary secret",
                "measured": self.measured}


PARAMETER_SETS: dict[str, CKKSParameters] = {
    p.name: p for p in (
        CKKSParameters("n4096", 4096, (50, 59), 38,
                       "10 clients x 100k: max|err| 2.9e-08, upload 7.43x float32 (benchmarks/results/he.md)"),
        CKKSParameters("n8192", 8192, (60, 40, 40), 40,
                       "popular multiplicative default; 10 x 100k: max|err| 2.6e-08, upload 14.89x float32"),
        CKKSParameters("n16384", 16384, (60, 60), 40,
                       "one data prime, headroom 2^17; 10 x 100k: max|err| 2.8e-08, upload 8.73x float32"),
    )
}


class _ClientKeys:
    def __init__(self, key_id: bytes, context: ts.Context) -> None:
        self.key_id, self.context = key_id, context

    def __repr__(self) -> str:
        return f"CKKSClientKeys(key_id={self.key_id.hex()[:16]}...)"


class CKKSAuthority(KeyAuthority[_ClientKeys]):
    """Creates the TenSEAL context; the server gets the public copy, clients a serialised secret one."""

    def __init__(self, parameters: CKKSParameters) -> None:
        self.parameters = parameters
        context = ts.context(ts.SCHEME_TYPE.CKKS, parameters.poly_modulus_degree,
                             coeff_mod_bit_sizes=list(parameters.coeff_mod_bit_sizes))
        context.global_scale = 2.0 ** parameters.scale_bits
        self._secret = context.serialize(save_secret_key=True)
        public = context.copy()
        public.make_context_public()
        self._public = public.serialize()
        if ts.context_from(self._public).is_private():
            raise ConfigError("TenSEAL produced a public context that still holds the secret key")

    def __repr__(self) -> str:
        return f"CKKSAuthority({self.parameters.name})"

    @property
    def public_material(self) -> bytes:
        return self._public

    def client_bundle(self) -> _ClientKeys:
        return _ClientKeys(self.key_id, ts.context_from(self._secret))


def public_context(material: bytes) -> ts.Context:
    """Deserialise the server's context and refuse one that holds a secret key."""
    context = ts.context_from(material)
    if context.is_private():
        raise ConfigError("the server must never hold a private TenSEAL context")
    return context


@dataclass(frozen=True)
class CKKSProtocol(HEProtocol):
    """CKKS FedAvg (see the module docstring)."""

    name: ClassVar[str] = "ckks"
    key_slot: ClassVar[str] = "privfed.ckks.keys"

    parameter_set: str = "n4096"
    flood_std: float = 2.0 ** -25
    authority: CKKSAuthority | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.parameter_set not in PARAMETER_SETS:
            raise ConfigError(f"unknown CKKS parameter set {self.parameter_set!r}; choose from "
                              f"{', '.join(PARAMETER_SETS)}")
        if not (isinstance(self.flood_std, (int, float)) and not isinstance(self.flood_std, bool)
                and math.isfinite(self.flood_std) and self.flood_std >= 0):
            raise ConfigError("flood_std must be a finite number >= 0")
        floor = self.parameters.flood_floor
        if 0 < self.flood_std < floor:
            raise ConfigError(f"flood_std={self.flood_std:.3g} is below the CKKS flooding floor {floor:.3g} for "
                              f"{self.parameter_set} ({FLOOD_FLOOR_SIGMAS:g} x the decryption-error std "
                              f"{self.parameters.fresh_error_std(1):.3g} of one fresh ciphertext): such noise "
                              f"cannot hide the key-dependent error of a released decryption; use >= {floor:.3g} "
                              f"(default 2^-25), or 0 for none (refused whenever the server is not trusted)")
        if self.authority is not None:
            if not isinstance(self.authority, CKKSAuthority) or self.authority.parameters != self.parameters:
                raise ConfigError("the authority's parameter set differs from parameter_set")
            self._cache["authority"] = self.authority

    @property
    def parameters(self) -> CKKSParameters:
        return PARAMETER_SETS[self.parameter_set]

    def _make_authority(self) -> CKKSAuthority:
        return CKKSAuthority(self.parameters)

    def _check_headroom(self, max_clients: int) -> None:
        reach = max_clients * self.coded_range + 7 * self.flood_std
        if reach >= self.parameters.max_abs_sum:
            raise HeadroomError(f"{max_clients} clients with |value| <= {self.coded_range} can reach {reach}, "
                                f"beyond the {self.parameters.max_abs_sum} the {self.parameter_set} data prime "
                                f"holds; choose a larger parameter set")

    def server_codec(self, public_material: bytes, dim: int, max_clients: int) -> "CKKSServerCodec":
        self._check_headroom(max_clients)
        return CKKSServerCodec(self, public_material, dim + 1, max_clients)

    def client_codec(self, keys: _ClientKeys, dim: int, max_clients: int) -> "CKKSClientCodec":
        self._check_headroom(max_clients)
        return CKKSClientCodec(self, keys, dim + 1)

    def describe(self) -> Mapping[str, Any]:
        return {**super().describe(), **self.parameters.describe(), "flood_std": self.flood_std}


def _chunk_sizes(count: int, slots: int) -> list[int]:
    full, rest = divmod(count, slots)
    return [slots] * full + ([rest] if rest else [])


def _ciphertext_limit(parameters: CKKSParameters) -> int:
    """Generous upper bound on one serialised ciphertext: 2 polynomials x N x primes x 8 bytes + framing."""
    return 2 * parameters.poly_modulus_degree * len(parameters.coeff_mod_bit_sizes) * 8 + 4096


class CKKSServerCodec(ServerCodec):
    def __init__(self, protocol: CKKSProtocol, public_material: bytes, count: int, max_clients: int = 1) -> None:
        self.parameters = parameters = protocol.parameters
        self.max_clients = max_clients
        self.flood_std = protocol.flood_std
        self.context = public_context(public_material)
        self.count = count
        self.sizes = _chunk_sizes(count, parameters.slots)
        self.params = (f"ckks;set={parameters.name};N={parameters.poly_modulus_degree};"
                       f"q={'-'.join(map(str, parameters.coeff_mod_bit_sizes))};scale={parameters.scale_bits};"
                       f"count={count};chunks={len(self.sizes)};flood_std={protocol.flood_std!r}")
        self._chunk_limit = _ciphertext_limit(parameters)
        self.ciphertext_field = FieldSpec("list", length=len(self.sizes), item_max_length=self._chunk_limit)
        self.plaintext_field = FieldSpec("array", dtype="float64", length=count)  # 1-D, exactly count values
        self.max_message_bytes = len(self.sizes) * (self._chunk_limit + 16) + 4096
        self._acc: list | None = None

    def parse(self, ciphertexts: list[bytes]) -> list:
        vectors = []
        for chunk, size in zip(ciphertexts, self.sizes):
            if len(chunk) > self._chunk_limit:
                raise MessageError("oversized ciphertext")
            try:
                vector = ts.ckks_vector_from(self.context, chunk)
                ok = vector.size() == size
            except Exception:
                raise MessageError("a ciphertext does not deserialise under this round's context") from None
            if not ok:
                raise MessageError("a ciphertext has the wrong length")
            vectors.append(vector)
        return vectors

    def add(self, parsed: list) -> None:
        if self._acc is None:
            self._acc = parsed
            return
        try:  # out of place, swapped in only when every chunk added (a scale mismatch raises mid-way)
            self._acc = [total + vector for total, vector in zip(self._acc, parsed)]
        except Exception:
            raise MessageError("a ciphertext cannot be added to the sum (scale or level mismatch)") from None

    def sum_ciphertexts(self) -> list[bytes]:
        assert self._acc is not None
        return [vector.serialize() for vector in self._acc]

    def decode_plaintext(self, plaintext: np.ndarray, n_summed: int) -> np.ndarray:
        return np.asarray(plaintext, dtype=np.float64)

    def sum_error(self, n_summed: int) -> float:
        return self.parameters.sum_error(n_summed) + 7.0 * self.flood_std  # Gaussian tail, per slot

    def info(self) -> dict[str, Any]:
        return {**self.parameters.describe(), "chunks_per_client": len(self.sizes),
                "flood_std": self.flood_std, "flood_floor": self.parameters.flood_floor,
                # worst case over the round (all invited clients summed): flooding std / decryption-error std
                "flood_margin": self.flood_std / self.parameters.fresh_error_std(self.max_clients),
                "statistical_flood_std": self.parameters.statistical_flood_std(self.max_clients, self.count),
                "ind_cpa_d": (f"heuristic noise flooding (std {self.flood_std:.2e}) on the released decryption: "
                              "defeats exact key recovery, not a statistical IND-CPA^D guarantee")
                if self.flood_std > 0 else
                "no noise flooding: the released decryption exposes the secret key to key-recovery attacks",
                "error_bound_basis": "heuristic high-probability CKKS noise bound (canonical embedding)"}


class CKKSClientCodec(ClientCodec):
    def __init__(self, protocol: CKKSProtocol, keys: _ClientKeys, count: int) -> None:
        self.parameters, self.keys, self.count = protocol.parameters, keys, count
        self.flood_std, self.coded_range = protocol.flood_std, protocol.coded_range
        self.sizes = _chunk_sizes(count, self.parameters.slots)

    def precompute(self) -> None:
        return None

    def encrypt(self, vector: np.ndarray) -> list[bytes]:
        if vector.size != self.count:
            raise ConfigError("vector length differs from the round's")
        values = np.clip(vector, -self.coded_range, self.coded_range)  # the headroom check assumes this range
        out, start = [], 0
        for size in self.sizes:
            out.append(ts.ckks_vector(self.keys.context, values[start:start + size]).serialize())
            start += size
        return out

    def decrypt(self, ciphertexts: list[bytes]) -> np.ndarray:
        if len(ciphertexts) != len(self.sizes):
            raise DecryptionError("decryption failed")
        parts = []
        try:
            for chunk, size in zip(ciphertexts, self.sizes):
                vector = ts.ckks_vector_from(self.keys.context, chunk)
                if vector.size() != size:
                    raise ValueError
                parts.append(np.asarray(vector.decrypt(), dtype=np.float64))
        except Exception:
            raise DecryptionError("decryption failed") from None
        total = np.concatenate(parts)
        if not np.isfinite(total).all():
            raise DecryptionError("decryption failed")
        if self.flood_std > 0:
            total = total + CSPRNG.from_os().normal(total.size, self.flood_std)
        return total
