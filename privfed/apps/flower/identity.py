"""Rosters and signing keys over Flower: where each party of an active-mode run gets its identity material.

Active modes (``secagg -o active=true``, ``paillier``/``ckks -o active=true``; :mod:`protocols.identity`) rest on a
public roster binding client ids to Ed25519 public keys and on each client's private signing key, both made by a
registrar before the run (``privfed keys roster --clients N --out roster.json --key-dir keys/``).

* **A node** takes both from its own node config, set by its operator: ``roster=PATH`` (the public roster) and
  ``signing-key=PATH`` (its own ``client-<id>.key.json``). Never from the run configuration: the run configuration
  is written by the server's side, and against an active adversary the server is the adversary — a roster it sent
  would let it substitute every public key and play man in the middle. Whatever roster or key directory the run's
  protection options name is therefore replaced on the node by the node's own (:func:`node_options`). The node
  checks its key file against its roster before anything else, announces the key's client id at enrolment, and
  refuses a request addressed to another client id (check ``roster``).
* **The server** takes the public roster from the run's protection options (``protection.options.<name>.roster``)
  or from ``[runtime] roster`` (run-config ``roster``; :func:`server_options`). It holds no signing key (a
  ``key_dir`` on the server side is refused), and without a roster an active run is refused before any round
  (otherwise the protocol's in-process registrar would enrol keys no node holds).

Threat model: as :mod:`protocols.identity` — the registrar is trusted during setup, the roster reaches every node
unmodified out of band (compare its digest: ``privfed keys check roster.json``), key files stay private to their
node. A node without a roster in its node config refuses every active round rather than trust the server's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, MutableMapping

from protocols.base import min_sum_inputs
from protocols.errors import ConfigError
from protocols.he_round import DEFAULT_MIN_CLIENTS
from protocols.identity import IDENTITY_SLOT, ActiveCheckFailed, Roster, SigningIdentity, read_key_file, read_roster
from protocols.secagg import DEFAULT_CORRUPTION_FRACTION

__all__ = ["NodeIdentity", "is_active", "node_identity", "node_options", "server_options", "announced_id",
           "hold_identity", "ROSTER_KEY", "SIGNING_KEY", "COLLUDERS_KEY", "CORRUPTION_KEY"]

log = logging.getLogger("flwr.privfed.client")
#: node-config keys (set by the node's operator)
ROSTER_KEY, SIGNING_KEY = "roster", "signing-key"


def is_active(options: Mapping[str, Any]) -> bool:
    """Whether protocol ``options`` select an active-adversary mode (signatures under a roster)."""
    return options.get("active") is True


@dataclass(frozen=True)
class NodeIdentity:
    """A node's roster (path and content) and its own signing key, checked against each other."""

    roster_path: str
    roster: Roster
    key: SigningIdentity

    @property
    def client_id(self) -> int:
        return self.key.client_id


def _path(node_config: Mapping[str, Any], key: str) -> str:
    value = node_config.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"node-config {key} must be a path string, got {value!r}")
    return value


def node_identity(node_config: Mapping[str, Any]) -> NodeIdentity | None:
    """The node's identity from its node config (None when it sets neither ``roster`` nor ``signing-key``).
    Raises :class:`ActiveCheckFailed` (check ``roster``) when the key file does not match the roster."""
    roster_path, key_path = _path(node_config, ROSTER_KEY), _path(node_config, SIGNING_KEY)
    if not roster_path and not key_path:
        return None
    if not roster_path or not key_path:
        raise ConfigError("node-config needs both roster=PATH (the public roster) and signing-key=PATH (this "
                          "node's own key file from privfed keys roster)")
    roster = read_roster(roster_path)
    return NodeIdentity(str(Path(roster_path).resolve()), roster, read_key_file(key_path, roster))


def announced_id(node_config: Mapping[str, Any], partition: int) -> int:
    """The protocol client id this node announces at enrolment: its signing key's client id when it holds a key
    that matches its roster and no different ``partition-id``, else ``partition``. Identity problems do not stop
    enrolment: the node enrols and refuses its first active phase with the check named, so it counts as dropped in
    the round (as in-process) instead of silently missing from the cohort."""
    try:
        identity = node_identity(node_config)
    except (ConfigError, ActiveCheckFailed) as exc:
        log.warning("this node's identity is unusable, active rounds will be refused: %s", exc)
        return partition
    if identity is None or (partition >= 0 and partition != identity.client_id):
        return partition
    return identity.client_id


#: node-config keys that pin the node's own threat assumptions (the run configuration is the server's to write)
COLLUDERS_KEY, CORRUPTION_KEY = "colluders", "corruption-fraction"
_SECAGG_FAMILY = ("secagg", "secagg+dp")
_HE_FAMILY = ("paillier", "paillier-per-value", "ckks", "ckks+dp")


def _pin(node_config: Mapping[str, Any], key: str, kind: type, default: Any, low: float) -> Any:
    value = node_config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)) \
            or not value >= low:
        raise ConfigError(f"node-config {key} must be a {kind.__name__} >= {low}, got {value!r}")
    return kind(value)


def node_options(options: Mapping[str, Any], node_config: Mapping[str, Any], name: str | None = None
                 ) -> dict[str, Any]:
    """Protocol ``options`` as the node uses them: in active mode the roster is the node's own (node config) and
    no key directory is read (the node's one key is put into its state by :func:`hold_identity`).

    A node that holds a roster and a signing key is one whose operator distrusts the server, and the run
    configuration is the server's to write: such a node takes part in a protection that has an active mode
    (``name`` in the SecAgg and HE families; None: assume it has) only with ``active=true`` (check ``downgrade``),
    and never under weaker assumptions than its own: the corrupted-client count its checks use is at least
    node-config ``colluders`` (default 0) and ``corruption-fraction`` (default the protocol's 0.1), and an HE key
    holder decrypts only sums of at least ``max(3, colluders + 2)`` signed contributions, whatever the run says."""
    out = dict(options)
    identity = node_identity(node_config)
    has_active_mode = name is None or name in _SECAGG_FAMILY + _HE_FAMILY
    if identity is not None and has_active_mode and not is_active(out):
        raise ActiveCheckFailed("downgrade", f"this node holds a roster and signing key (node config) and takes "
                                             f"part in {name or 'this protection'} only with active=true; the run "
                                             f"asks for it without")
    if not is_active(out):
        return out
    if identity is None:
        raise ConfigError("active mode: this node has no node-config roster and signing-key; it takes neither "
                          "from the server (a server-sent roster would let it substitute keys)")
    out["roster"], out["key_dir"] = identity.roster_path, None
    colluders = _pin(node_config, COLLUDERS_KEY, int, 0, 0)
    if name is None or name in _SECAGG_FAMILY:
        out["colluders"] = max(int(out.get("colluders") or 0), colluders)
        if name != "secagg+dp":  # secagg+dp's own option set has no corruption fraction; colluders bounds it
            fraction = _pin(node_config, CORRUPTION_KEY, float, DEFAULT_CORRUPTION_FRACTION, 0.0)
            out["corruption_fraction"] = max(float(out.get("corruption_fraction", DEFAULT_CORRUPTION_FRACTION)),
                                             fraction)
    else:
        # a key holder that releases a plaintext to the server can be played against another (each decrypts a
        # different signed set; the difference is one input): under a malicious server HE holds only when the
        # plaintext stays with the key holders (SECURITY.md, review of the active-adversary claims)
        if out.get("release", "server") != "key-holders" or out.get("decryption", "shared") == "threshold":
            raise ActiveCheckFailed("release", f"this node holds a roster and signing key: it takes part in {name} "
                                               f"only with release=key-holders and the shared key (a plaintext "
                                               f"released to the server lets it difference two key holders' sums)")
        out["min_clients"] = max(int(out.get("min_clients", DEFAULT_MIN_CLIENTS)), DEFAULT_MIN_CLIENTS,
                                 min_sum_inputs(colluders))
    return out


def hold_identity(node_config: Mapping[str, Any], protocol: Any, client_id: int,
                  state: MutableMapping[str, Any]) -> None:
    """Before this node's client machine is built: put its signing key into the protocol's persistent ``state``
    (where :class:`protocols.identity.IdentitySource` looks first), refusing a request addressed to a client id
    other than its key's (check ``roster``)."""
    if getattr(protocol, "active", False) is not True:
        return
    identity = node_identity(node_config)
    assert identity is not None  # node_options refused already
    if identity.client_id != client_id:
        raise ActiveCheckFailed("roster", f"the server addressed this node as client {client_id}; its signing key "
                                          f"is client {identity.client_id}'s")
    state[IDENTITY_SLOT] = identity.key


def server_options(options: Mapping[str, Any], roster: str, name: str) -> dict[str, Any]:
    """Protocol ``options`` as the server uses them: in active mode the public roster from the options or the
    run's ``roster`` (run-config / ``[runtime] roster``), no key directory."""
    out = dict(options)
    if not is_active(out):
        return out
    if out.get("key_dir"):
        raise ConfigError(f"{name}: the server holds no signing key; key_dir belongs to the nodes "
                          "(node-config signing-key)")
    if not out.get("roster"):
        if not roster:
            raise ConfigError(f"{name} with active=true over Flower needs the public roster on the server: "
                              f"protection.options.{name}.roster=PATH or runtime.roster=PATH (privfed keys roster)")
        out["roster"] = roster
    read_roster(out["roster"])  # refused before any round when unreadable
    out["key_dir"] = None
    return out
