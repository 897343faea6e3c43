"""One protocol session per round and per input for an active-mode client (a malicious server's re-asking).

Threat model: a **malicious** server that can make an honest client start a fresh machine for a round it already
took part in — over Flower, a refused request resets the node's machine and a request under another round id
builds a new one for the same local update; any runtime that restarts a client does the same — and so run two
complete, individually valid sessions over the same input (different survivor sets or contributor sets, fresh
masks or nonces each time) and subtract the two sums. Every check of :mod:`protocols.secagg.active` and
:mod:`protocols.he_active` is per session, so it cannot see this. Defence: before an active-mode client machine is
made, :func:`claim_session` records, in the client's **persistent** state (which outlives the machine), the round
id and a SHA-256 digest of the input (vector bytes and weight); a second machine for the same round, or for the
same input under another round id, is refused with :class:`~protocols.identity.ActiveCheckFailed` (check
``one-session``). Limits: it protects only as long as the persistent state does (a wiped state, or a client that
retrains and sends a slightly different input, is a new input: bounding what repeated rounds reveal is the job
of DP's accounting); the digests kept are bounded (the most recent ``MAX_KEPT``).
"""

from __future__ import annotations

import hashlib
from typing import Any, MutableMapping

import numpy as np

from .identity import ActiveCheckFailed

__all__ = ["SLOT", "MAX_KEPT", "input_digest", "claim_session"]

#: where the claims live in a client's persistent state: {"rounds": [...], "inputs": [...]} per protocol name
SLOT = "active-sessions"
MAX_KEPT = 4096


def input_digest(vector: Any, weight: float) -> str:
    """SHA-256 of one input (float32 vector bytes and float64 weight), hex."""
    data = np.ascontiguousarray(np.asarray(vector, dtype=np.float32)).tobytes()
    return hashlib.sha256(b"privfed/active-input/v1" + data + np.float64(weight).tobytes()).hexdigest()


def claim_session(state: MutableMapping[str, Any], name: str, round_id: int, vector: Any, weight: float) -> None:
    """Record that this client starts its one session of ``round_id`` over this input, or refuse (check
    ``one-session``) when it already started one for this round or for this exact input."""
    claims = state.setdefault(SLOT, {}).setdefault(name, {"rounds": [], "inputs": []})
    digest = input_digest(vector, weight)
    if int(round_id) in claims["rounds"]:
        raise ActiveCheckFailed("one-session", f"this client already took part in round {round_id}: a second "
                                               f"session of one round (a restarted machine) is refused")
    if digest in claims["inputs"]:
        raise ActiveCheckFailed("one-session", f"this client's input already entered a session of another round: "
                                               f"the same input is not aggregated twice (round {round_id})")
    claims["rounds"] = [*claims["rounds"], int(round_id)][-MAX_KEPT:]
    claims["inputs"] = [*claims["inputs"], digest][-MAX_KEPT:]
