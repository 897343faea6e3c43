"""The key authority (dealer) of the HE protections: who holds which key, and how the key reaches them.

Threat model: the key authority is a trusted party outside the aggregation (for example the federation's operator
running on a machine the aggregating server cannot read). It creates one HE key pair per run, hands the **secret**
key to the clients only, over a channel the server cannot read (modelled here by :func:`provision`, which writes
the client's bundle into its persistent ``state`` when the client machine is created — the equivalent of keys put
on a device at enrolment), and gives the server only **public** material (a public TenSEAL context, a Paillier
modulus). Every client holds the same secret key ("shared client key" mode): the scheme hides the individual
updates from the server and from outsiders, **not** from the other clients, and any single key-holding client that
colludes with the server decrypts everyone's updates. For packed Paillier, ``decryption="threshold"``
(:mod:`protocols.threshold_paillier`) removes that single point of failure: the authority deals Shamir shares of
the decryption key, one per key holder, hands each share over once and keeps no copy (``client_bundle(client_id)``
pops it), so the server plus fewer than T colluding key holders learn nothing; the dealer is still trusted while it
deals (no dealer-free key generation). CKKS stays shared-key (no maintained threshold CKKS library for Python 3.11).
The authority sees no updates.

In this in-process implementation the authority object lives on the protocol instance (a per-run cache, created
lazily on first use and never at construction); the server state machine only ever receives
:meth:`KeyAuthority.public_material`, which is bytes, so the audit can check from the bytes the server received
that they hold no secret key. ``key_id`` (SHA-256 of the public material) lets clients and server detect keys from
another authority or another run.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any, Generic, MutableMapping, TypeVar

from .errors import ConfigError

__all__ = ["KeyAuthority", "key_id_of", "provision", "KEY_MODE"]

#: how the audit record names the key arrangement (checklist: name the mode honestly)
KEY_MODE = "key authority (dealer) -> shared client secret key; server holds public material only"

Bundle = TypeVar("Bundle")


def key_id_of(public_material: bytes) -> bytes:
    """The 32-byte identifier of a key pair: SHA-256 of its public material."""
    return hashlib.sha256(b"privfed/key-id/v1" + public_material).digest()


class KeyAuthority(ABC, Generic[Bundle]):
    """A dealer: makes the key pair once, gives public bytes to the server and a secret bundle to clients."""

    @property
    @abstractmethod
    def public_material(self) -> bytes:
        """What the server gets (serialised, public only)."""

    @abstractmethod
    def client_bundle(self) -> Bundle:
        """A fresh copy of the secret bundle for one client (delivered out of band)."""

    @property
    def key_id(self) -> bytes:
        cached = getattr(self, "_key_id", None)
        if cached is None:
            cached = key_id_of(self.public_material)
            setattr(self, "_key_id", cached)
        return cached


def provision(state: MutableMapping[str, Any], slot: str, authority: KeyAuthority[Bundle]) -> Bundle:
    """The client's secret bundle for ``authority``: reuse the one in ``state`` if it is for the same key,
    otherwise receive a new one from the authority (out of band) and keep it in ``state``."""
    if not isinstance(state, MutableMapping):
        raise ConfigError("client state must be a mutable mapping")
    held = state.get(slot)
    if held is not None and getattr(held, "key_id", None) == authority.key_id:
        return held
    bundle = authority.client_bundle()
    state[slot] = bundle
    return bundle
