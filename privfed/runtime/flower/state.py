"""Per-node protocol state kept in the Flower node's ``context.state`` between messages.

Flower's SuperNode runs the ClientApp in a fresh process for every message, so everything a client machine holds
between phases (its round machine: secrets, masks, seeds) and across rounds (the protocol's persistent ``state``
dict: long-lived keys) must be stored in ``context.state`` and rebuilt for the next message. This module pickles
one :class:`NodeState` into a ConfigRecord's bytes value after each message and unpickles it before the next.

Threat model: ``context.state`` stays on the node. The SuperNode keeps it in its own memory and hands it only to
its own ClientApp process over the node-local runtime API (127.0.0.1, token-authenticated); it is never sent to
the SuperLink. It therefore holds secrets (private keys, mask seeds) with the same protection as the SuperNode
process itself. Unpickling is safe here only because the bytes were written by this same node; this module must
never be pointed at bytes that crossed the network. Key objects of ``cryptography`` that do not pickle natively
(X25519, Ed25519) are reduced to their raw private/public bytes, and TenSEAL contexts to their own serialisation
(secret key included), for this node-local copy only.
"""

from __future__ import annotations

import copyreg
import pickle
import sys
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, RecordDict

from protocols.errors import ConfigError

__all__ = ["NodeState", "load_node_state", "save_node_state"]

_RECORD, _KEY = "privfed-node", "state"


@dataclass
class NodeState:
    """What one node remembers within a Flower run."""

    #: protection name -> the protocol's persistent per-client ``state`` dict (keys that outlive a round)
    persistent: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the round in progress: its id, this node's protocol client id and its client machine
    round_id: int | None = None
    client_id: int | None = None
    machine: Any = None
    #: the update of the round in progress when it came from local training (vector bytes, weight)
    update: tuple[bytes, float] | None = None
    #: protocol options derived from the training data (update-source "train"; see privfed.apps.flower.training)
    protocol_options: dict[str, Any] | None = None
    #: the partition / client id this node announced
    announced: int | None = None
    #: the evaluation secure sum in progress, apart from the training round (privfed.apps.flower.secure_eval):
    #: its round id, this node's client id and its client machine
    evaluation: dict[str, Any] | None = None


def _register_key_reducers() -> None:
    """Teach pickle the raw-bytes form of cryptography's Rust-backed asymmetric keys (node-local use only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

    raw, private_raw = serialization.Encoding.Raw, serialization.PrivateFormat.Raw
    none = serialization.NoEncryption()
    for module, private_cls, public_cls in ((x25519, x25519.X25519PrivateKey, x25519.X25519PublicKey),
                                            (ed25519, ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        private = private_cls.generate()
        copyreg.pickle(type(private), lambda key, cls=private_cls: (
            cls.from_private_bytes, (key.private_bytes(raw, private_raw, none),)))
        copyreg.pickle(type(private.public_key()), lambda key, cls=public_cls: (
            cls.from_public_bytes, (key.public_bytes(raw, serialization.PublicFormat.Raw),)))


_register_key_reducers()


def _tenseal_context(data: bytes) -> Any:
    import tenseal as ts

    return ts.context_from(data)


def _reduce_tenseal_context(context: Any) -> tuple:
    private = context.is_private()
    return (_tenseal_context, (context.serialize(save_public_key=True, save_secret_key=private,
                                                 save_galois_keys=True, save_relin_keys=True),))


def _register_optional_reducers() -> None:
    """TenSEAL contexts (HE key holders) pickle as their own serialisation, secret key included (node-local)."""
    tenseal = sys.modules.get("tenseal")
    if tenseal is not None and type(tenseal.Context) is type:
        copyreg.pickle(tenseal.Context, _reduce_tenseal_context)


def load_node_state(state: RecordDict) -> NodeState:
    """The node's state from ``context.state`` (a fresh one on the node's first message of the run)."""
    record = state.config_records.get(_RECORD)
    if record is None or _KEY not in record:
        return NodeState()
    loaded = pickle.loads(record[_KEY])  # node-local bytes written by save_node_state (see module docstring)
    if not isinstance(loaded, NodeState):
        raise ConfigError("context.state holds something other than a privfed NodeState")
    return loaded


def save_node_state(state: RecordDict, node: NodeState) -> None:
    """Write the node's state back into ``context.state``."""
    _register_optional_reducers()
    try:
        data = pickle.dumps(node, protocol=pickle.HIGHEST_PROTOCOL)
    except (TypeError, pickle.PicklingError, AttributeError) as exc:
        raise ConfigError(
            "this protocol's client state cannot be kept between Flower messages (each message runs in a fresh "
            f"ClientApp process, so client machines and their state must pickle): {exc}") from None
    state.config_records[_RECORD] = ConfigRecord({_KEY: data})
