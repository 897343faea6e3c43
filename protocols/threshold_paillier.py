"""Packed Paillier with threshold decryption: ``paillier`` with ``decryption="threshold"``.

Threat model: hides every client's update and weight from the aggregating server (honest-but-curious) **plus up to
T - 1 colluding key-holding clients**, under the decisional composite residuosity assumption (2048-bit n by default).
A key authority deals Shamir shares of the decryption exponent (:mod:`protocols.threshold_paillier_keys`) to the
first round's invited clients (the key holders, L of them) and keeps no copy; no client holds the factorisation of
n. The server asks T contributing key holders (more if some fail) for partial decryptions of the **summed**
ciphertexts; each partial carries a zero-knowledge proof (Shoup's equality of discrete logs against the holder's
verification key), checked before use, so a wrong, garbled, replayed or misaddressed partial is rejected and its
sender treated as dropped; any T valid partials give the sum; fewer than T leave no result (a clean abort that names
the phase, the count and the threshold), never a wrong mean. With ``release="server"`` the server combines the
partials and learns the aggregate; with ``release="key-holders"`` the server forwards the T verified partials and
the key holders (who check the proofs themselves) combine them, so only they learn it.

Assumptions and limits: the dealer is trusted at setup (dealer-free key generation is not implemented); T colluding
key holders together with the server decrypt any single update; without ``active=True`` the server follows the
protocol (a malicious server could ask for partials of one client's ciphertext: each key holder checks the
contributor count but cannot verify it); with ``active=True`` each key holder verifies the signed contributions and
recomputes the sum before its partial decryption (:mod:`protocols.threshold_round`, :mod:`protocols.he_active`),
so a malicious server collects partials only of a sum of >= min_clients fresh signed contributions; clients are trusted to encode in range; HE hides individual updates, not the aggregate (combine with DP). Key
holders are fixed at dealing: a later round's client that holds no share can contribute but not decrypt, and a round
with fewer than T key holders among its contributors aborts. Packing, headroom and the error bound are those of
:mod:`protocols.paillier` unchanged; encryption uses public values only (clients hold no factors): r^n precomputed in
the setup phase by fixed-base exponentiation from the dealer's generator of J_n (``randomness="public-pool"``, the
textbook distribution, :mod:`protocols.paillier_public_randomness`) or the textbook way per ciphertext
(``"online"``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, MutableMapping, Sequence

import gmpy2

from .base import ClientUpdate
from .errors import ConfigError, DecryptionError, MessageError
from .keyauthority import KeyAuthority
from .paillier import PackedClientCodec, PackedPaillierProtocol, PackedServerCodec, _join, _split_ciphertexts
from .paillier_keys import PublicEncryption, PublicKey, check_key_bits
from .paillier_public_randomness import FixedBaseResidues
from .threshold_paillier_keys import (KeyShare, ThresholdPublic, combine, deal, partial_decrypt, proof_bytes, prove,
                                      safe_prime)
from .threshold_round import ThresholdHEClient, ThresholdHEServer
from .wire import FieldSpec

__all__ = ["ThresholdPaillierProtocol", "ThresholdPaillierAuthority", "ThresholdClientKeys", "packed_paillier",
           "resolve_threshold", "tolerated_colluders", "threat_conditions", "DECRYPTIONS", "THRESHOLD_KEY_MODE"]

DECRYPTIONS = ("shared-key", "threshold")
THRESHOLD_RANDOMNESS = ("public-pool", "online")
THRESHOLD_KEY_MODE = ("key authority (dealer) -> Shamir shares of the Paillier decryption exponent, one per key "
                      "holder, no copy kept; any T holders decrypt the sum; server holds public material only")


def resolve_threshold(threshold: int | float | None, holders: int) -> int:
    """T for ``holders`` key holders: an absolute count, a fraction of the holders (rounded up), or None for
    ceil(2 L / 3) as SecAgg. T >= 2 (T = 1 would be a shared key) and T <= L."""
    if isinstance(threshold, bool) or not (threshold is None or isinstance(threshold, (int, float))):
        raise ConfigError(f"threshold must be None, a fraction in (0, 1] or an integer >= 2, got {threshold!r}")
    if threshold is None:
        t = math.ceil(2 * holders / 3)
    elif isinstance(threshold, float):
        if not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
            raise ConfigError(f"a fractional threshold must be in (0, 1], got {threshold}")
        t = math.ceil(threshold * holders - 1e-9)
    else:
        t = threshold
    t = max(t, 2) if threshold is None or isinstance(threshold, float) else t
    if not 2 <= t <= holders:
        raise ConfigError(f"threshold decryption needs 2 <= T <= {holders} key holders, got T = {t}")
    return t


def _holders(options: Mapping[str, Any], clients: int) -> int:
    """How many key holders the dealer deals to: ``key_holders`` (the federation) or the round's clients."""
    holders = options.get("key_holders")
    return clients if holders is None else int(holders)


def tolerated_colluders(options: Mapping[str, Any], clients: int) -> int:
    """How many key-holding clients may collude with the server without it decrypting an individual update
    (the single source of this fact: the threat catalogue, ``privfed plan`` and the audit call it)."""
    if options.get("decryption", "shared-key") != "threshold":
        return 0
    return resolve_threshold(options.get("threshold"), _holders(options, clients)) - 1


def threat_conditions(options: Mapping[str, Any], clients: int, collusion: int = 0,
                      decrypt_dropouts: int = 0) -> dict[str, Any]:
    """The threshold condition for a round of ``clients`` (all key holders, the worst case when ``key_holders``
    deals to a larger federation): T, what it tolerates, and any unmet requirement phrased for the catalogue (an
    empty ``unmet`` list means it holds)."""
    holders = _holders(options, clients)
    t = resolve_threshold(options.get("threshold"), holders)
    unmet = []
    if collusion >= t:
        unmet.append(f"its decryption threshold T={t} (of {holders} key holders) does not exceed the declared "
                     f"collusion={collusion}: the server plus T colluding key holders decrypt any single update")
    if clients - decrypt_dropouts < t:
        unmet.append(f"only {clients - decrypt_dropouts} key holders would remain at decrypt, threshold {t}")
    return {"collusion_model": "threshold", "threshold": t, "key_holders": holders,
            "tolerated_colluders": t - 1, "tolerated_decrypt_dropouts": max(clients - t, 0),
            "hides_from": f"the server plus up to {t - 1} colluding key holders", "unmet": unmet}


class ThresholdClientKeys(PublicEncryption):
    """A client's bundle: the public side (enough to encrypt) and, for a key holder, its share."""

    def __init__(self, public: ThresholdPublic, share: KeyShare | None) -> None:
        self.public, self.share = public, share
        self.key_id = public.key_id
        self.n = gmpy2.mpz(public.n)
        self.n_square = self.n * self.n
        self._residues = FixedBaseResidues(public.n, public.h)

    def __repr__(self) -> str:
        return f"ThresholdClientKeys(key_id={self.key_id.hex()[:16]}..., holder={self.share is not None})"

    def nth_residues(self, count: int) -> list:
        """``count`` values r^n mod n^2 for r uniform on Z*_n (statistically), from public values only, by
        fixed-base exponentiation (:mod:`protocols.paillier_public_randomness`)."""
        return [self._residues.sample() for _ in range(count)]

    def decrypt_raw(self, c: int) -> int:
        raise DecryptionError("decryption failed")  # no client holds the whole key


class ThresholdPaillierAuthority(KeyAuthority[ThresholdClientKeys]):
    """Deals a fresh threshold key to ``holders`` (client ids); forgets p, q and d at once, and each share once
    it is delivered (:meth:`client_bundle`)."""

    def __init__(self, key_bits: int, holders: Sequence[int], threshold: int | float | None = None, *,
                 insecure_test_keys: bool = False, keep_shares: bool = False) -> None:
        check_key_bits(key_bits, insecure_test_keys)
        holders = tuple(sorted(int(h) for h in holders))
        t = resolve_threshold(threshold, len(holders))
        started = time.perf_counter()
        while True:
            p, q = safe_prime(key_bits // 2), safe_prime(key_bits // 2)
            if p != q and (p * q).bit_length() == key_bits:
                break
        dealt = deal(p, q, holders, t)
        del p, q
        self.key_bits, self.threshold, self.holders = key_bits, t, holders
        self.dealing_seconds = time.perf_counter() - started
        self.public = dealt.public
        self._public = dealt.public.to_bytes()
        self._pending: dict[int, KeyShare] = dict(dealt.shares)
        self.keep_shares = bool(keep_shares)

    def __repr__(self) -> str:
        return f"ThresholdPaillierAuthority(key_bits={self.key_bits}, T={self.threshold}, L={len(self.holders)})"

    @property
    def public_material(self) -> bytes:
        return self._public

    def client_bundle(self, client_id: int | None = None) -> ThresholdClientKeys:
        """The bundle for ``client_id``: its share (handed over once, then forgotten) or the public side only."""
        if client_id is None:
            share = None
        else:
            share = self._pending.get(client_id) if self.keep_shares else self._pending.pop(client_id, None)
        if share is None and client_id in self.holders:
            raise ConfigError(f"key holder {client_id}'s share was already delivered; the authority keeps no copy")
        return ThresholdClientKeys(self.public, share)

    @property
    def undelivered(self) -> int:
        return len(self._pending)


class ThresholdServerCodec(PackedServerCodec):
    def __init__(self, public: ThresholdPublic, packing, count: int) -> None:
        super().__init__(PublicKey(public.n), packing, count)
        self.threshold_public = public
        self.params += f";decryption=threshold;threshold={public.threshold};key_holders={len(public.holders)}"
        self.partial_field = FieldSpec("bytes", length=self.n_ct * self.width)
        self.proof_field = FieldSpec("bytes", length=proof_bytes(public))

    def combine_plaintext(self, partials: Mapping[int, list]) -> bytes:
        """T verified partials (1-based index -> partials) -> the packed plaintext sums as bytes."""
        width = self.packing.plaintext_bytes
        limit = 1 << (self.packing.slots * self.packing.slot_bits)
        plaintexts = combine(self.threshold_public, partials)
        if any(m >= limit for m in plaintexts):
            raise DecryptionError("decryption failed")
        return b"".join(m.to_bytes(width, "big") for m in plaintexts)

    def info(self) -> dict[str, Any]:
        pub = self.threshold_public
        return {**super().info(), "decryption": "threshold", "threshold": pub.threshold,
                "key_holders": len(pub.holders), "proof_bytes": proof_bytes(pub)}


class ThresholdClientCodec(PackedClientCodec):
    def precompute(self) -> None:
        if self.randomness == "public-pool":
            self._pool = self.keys.nth_residues(self.n_ct)

    def partial(self, ciphertexts: bytes, context: bytes) -> tuple[bytes, bytes]:
        share = self.keys.share
        if share is None:
            raise MessageError("this client holds no key share")
        try:
            cts = _split_ciphertexts(ciphertexts, self.width, self.keys.n_square)
        except MessageError:
            raise DecryptionError("decryption failed") from None
        partials = partial_decrypt(share, cts)
        return _join(partials, self.width), prove(share, cts, partials, context)


@dataclass(frozen=True)
class ThresholdPaillierProtocol(PackedPaillierProtocol):
    """Packed Paillier with t-of-n threshold decryption (see the module docstring)."""

    phases: ClassVar[tuple[str, ...]] = ("setup", "upload", "decrypt", "combine")
    key_slot: ClassVar[str] = "privfed.paillier.threshold-keys"
    randomness_choices: ClassVar[tuple[str, ...]] = THRESHOLD_RANDOMNESS
    server_type: ClassVar[type | None] = ThresholdHEServer
    client_type: ClassVar[type | None] = ThresholdHEClient

    decryption: str = "threshold"
    threshold: int | float | None = None
    randomness: str = "public-pool"
    #: in-process simulation only: the dealer keeps the shares to re-provision client machines that a harness
    #: re-creates with empty state (a deployment keeps its share in the client's state; never set it there)
    dealer_keeps_shares: bool = False
    #: deal to client ids 0 .. key_holders - 1 (the federation); None: to the first round's invited clients
    key_holders: int | None = None

    def __post_init__(self) -> None:
        if self.decryption != "threshold":
            raise ConfigError("ThresholdPaillierProtocol needs decryption='threshold'")
        if self.randomness == "crt-pool":
            raise ConfigError("randomness='crt-pool' needs the factors of n, which no client holds under threshold "
                              "decryption; use 'public-pool' (r^n precomputed in setup) or 'online'")
        super().__post_init__()
        t = self.threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))
                              or (isinstance(t, float) and not (math.isfinite(t) and 0.0 < t <= 1.0))
                              or (isinstance(t, int) and t < 2)):
            raise ConfigError(f"threshold must be None, a fraction in (0, 1] or an integer >= 2, got {t!r}")
        holders = self.key_holders
        if holders is not None and (isinstance(holders, bool) or not isinstance(holders, int) or holders < 2):
            raise ConfigError(f"key_holders must be an integer >= 2 (client ids 0 .. key_holders - 1), got {holders!r}")
        if self.authority is not None and t is not None and \
                resolve_threshold(t, len(self.authority.holders)) != self.authority.threshold:
            raise ConfigError("the authority's threshold differs from the threshold option")

    def _make_authority(self) -> KeyAuthority:
        raise ConfigError("threshold keys are dealt to the first round's invited clients when its server starts")

    @property
    def key_mode(self) -> str:
        return THRESHOLD_KEY_MODE

    def server(self, round_id: int, client_ids: Sequence[int], dim: int) -> "ThresholdHEServer":
        if "authority" not in self._cache and len(tuple(client_ids)) >= self.min_clients:
            holders = tuple(client_ids) if self.key_holders is None else tuple(range(self.key_holders))
            self._cache["authority"] = ThresholdPaillierAuthority(self.key_bits, holders, self.threshold,
                                                                  insecure_test_keys=self.insecure_test_keys,
                                                                  keep_shares=self.dealer_keeps_shares)
        return super().server(round_id, client_ids, dim)  # type: ignore[return-value]

    def client(self, client_id: int, round_id: int, update: ClientUpdate,
               state: MutableMapping[str, Any]) -> "ThresholdHEClient":
        authority = self.key_authority()
        held = state.get(self.key_slot)
        if held is None or getattr(held, "key_id", None) != authority.key_id:
            held = state[self.key_slot] = authority.client_bundle(client_id)
        client = ThresholdHEClient(self, client_id, round_id, update, held, state)
        if self.active:  # signs its contribution, checks the relayed ones before a partial (protocols.he_active)
            client.identity = self.identities().identity(client_id, state)
        return client

    def server_codec(self, public_material: bytes, dim: int, max_clients: int) -> ThresholdServerCodec:
        public = ThresholdPublic.from_bytes(public_material)
        return ThresholdServerCodec(public, self.packing(public.n.bit_length() - 1, max_clients), dim + 1)

    def client_codec(self, keys: ThresholdClientKeys, dim: int, max_clients: int) -> ThresholdClientCodec:
        packing = self.packing(int(keys.n).bit_length() - 1, max_clients)
        return ThresholdClientCodec(keys, packing, dim + 1, self.randomness)  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "decryption": "threshold", "threshold": self.threshold,
               "dealer_keeps_shares": self.dealer_keeps_shares,
               "hides": "individual updates and weights from the server plus fewer than T colluding key holders"}
        authority = self._cache.get("authority")
        if authority is not None:
            out.update(threshold_T=authority.threshold, key_holders=len(authority.holders))
        return out


def packed_paillier(decryption: str = "shared-key", threshold: int | float | None = None,
                    **options: Any) -> PackedPaillierProtocol:
    """The ``paillier`` protection: shared-key packed Paillier, or threshold decryption with
    ``decryption="threshold"`` (``threshold`` = T, an absolute count or a fraction of the key holders)."""
    if decryption not in DECRYPTIONS:
        raise ConfigError(f"decryption must be one of {DECRYPTIONS}, got {decryption!r}")
    if decryption == "threshold":
        return ThresholdPaillierProtocol(decryption=decryption, threshold=threshold, **options)
    if threshold is not None:
        raise ConfigError("threshold applies to decryption='threshold' only")
    return PackedPaillierProtocol(**options)


ThresholdPaillierProtocol.authority_type = ThresholdPaillierAuthority
packed_paillier.protocol_class = PackedPaillierProtocol  # type: ignore[attr-defined]

