"""A malicious-server simulator: play a deviating server against the real client machines and check what it learns.

The simulated server wraps the protocol's honest server machine, rewrites what it sends and intercepts what it
receives, exactly as a deviating server could (it never touches a client's memory). After the round, it tries to
reconstruct a target client's weighted input ``[w' x, w']`` from what it received and from the secrets it made up
itself. The simulation knows every client's true input, so ``server_learned`` is checked exactly: a client id is
listed when the server's reconstruction equals that client's true weighted input to within 1e-3 per entry (far
below the distance of any reconstruction that failed, which decodes to values spread over the whole ring or
plaintext space). Nothing here is a secret path of a deployment: it exists to show the attacks.

Behaviours (``BEHAVIOURS``):

* ``forge-keys`` (SecAgg): man in the middle — the target is sent server-made key-agreement keys for every peer, so
  the server decrypts the target's shares of its self-mask seed, feeds it fabricated shares, and removes every mask
  from its masked input. Semi-honest clients cannot tell; active clients refuse on the advertisement signatures.
* ``equivocate`` (SecAgg): the server tells one group the target survived (they reveal its self-mask shares) and
  another that it dropped (they reveal its masking-key shares). Succeeds in semi-honest mode when both groups can
  reach t (t <= n/2, e.g. ``-o threshold=0.5``); active mode refuses such a threshold at construction and, at any
  threshold, clients refuse to unmask without t signatures on the survivor set they signed.
* ``replay`` (all): messages of an earlier round are reused. For HE the server asks to decrypt the target's
  ciphertext plus the previous round's encrypted sum (whose plaintext it already knows) and subtracts; for SecAgg it
  relays the previous round's peer advertisements to the target. Active clients refuse: signatures bind round and
  session.
* ``decrypt-individual`` (HE): the server asks a key holder to decrypt the target's ciphertext alone (padded with
  copies in active mode). Semi-honest key holders check only the claimed count; active ones refuse.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from protocols import registry
from protocols.base import ClientUpdate, ServerStateMachine
from protocols.encoding import weighted_vector
from protocols.errors import ConfigError, PrivfedError
from privfed.bench.malicious_base import Hijacked
from privfed.bench.malicious_he import HEAttacker
from privfed.bench.malicious_secagg import SecAggAttacker
from privfed.runtime.local import RoundReport, run_round

__all__ = ["BEHAVIOURS", "simulate_malicious_server", "bench_malicious"]

BEHAVIOURS = ("forge-keys", "equivocate", "replay", "decrypt-individual")
SECAGG_BEHAVIOURS = ("forge-keys", "equivocate", "replay")
HE_BEHAVIOURS = ("replay", "decrypt-individual")
LEARNED_TOLERANCE = 1e-3


# -- driver --------------------------------------------------------------------------------------------------------


def simulate_malicious_server(protection: str, options: Mapping[str, Any], updates: Mapping[int, ClientUpdate],
                              behaviour: str) -> dict[str, Any]:
    """Run ``behaviour`` against ``protection`` and report ``server_learned`` and the clients' refusals."""
    if behaviour not in BEHAVIOURS:
        raise ConfigError(f"unknown malicious-server behaviour {behaviour!r}; choose from {', '.join(BEHAVIOURS)}")
    protocol = registry.create(protection, options)
    core = getattr(protocol, "inner", protocol)  # a DP placement (secagg+dp, ckks+dp): its inner protocol
    if hasattr(protocol, "placement") and protocol.placement != "distributed":
        core = None  # central/local DP and DP-SGD run over plaintext: nothing to attack, nothing hidden
    family = None if core is None else (
        "secagg" if core.name == "secagg" else ("he" if hasattr(core, "key_authority") else None))
    allowed = {"secagg": SECAGG_BEHAVIOURS, "he": HE_BEHAVIOURS}.get(family or "", ())
    if behaviour not in allowed:
        raise ConfigError(f"--malicious-server {behaviour} does not apply to {protection!r} (it applies to "
                          f"{'secagg' if behaviour in ('forge-keys', 'equivocate') else 'paillier and ckks'}; "
                          f"the simulator covers secagg, paillier and ckks)")
    ids = sorted(updates)
    target = ids[-1]
    memory: dict[str, Any] = {"first_round": 1}
    attackers: list[Any] = []

    def make(inner: Any, round_id: int) -> ServerStateMachine:
        cls = SecAggAttacker if family == "secagg" else HEAttacker
        attacker = cls(inner, round_id, target, memory, behaviour)
        attackers.append(attacker)
        return attacker

    hijacked = Hijacked(protocol, make)
    states: dict[int, dict] = {}
    reports: list[RoundReport] = []
    rounds = (1, 2) if behaviour == "replay" else (1,)
    for round_id in rounds:
        # an earlier round has its own inputs (an active client takes part once per input: protocols.active_once)
        inputs = updates if round_id == rounds[-1] else {c: ClientUpdate(-u.vector, u.weight)
                                                         for c, u in updates.items()}
        try:
            report = run_round(hijacked, round_id, inputs, client_states=states,  # type: ignore[arg-type]
                               transcript=False)
        except ConfigError as exc:
            if not getattr(core, "active", False):
                raise
            # active mode refuses parameters under which the paper's guarantee fails (e.g. 2t <= n + n_C) before any
            # key, share or ciphertext exists: every honest client refuses, and the server learns nothing
            reason = f"active check 'parameters' failed: {exc}"
            return {"malicious_server": behaviour, "active": True, "target": target, "rounds": 0, "server_learned": [],
                    "refusals": {str(c): reason for c in ids}, "round_aborted": reason, "round_completed": False}
        reports.append(report)
        if round_id == 1 and behaviour == "replay" and family == "he":
            memory["plain_sum"] = attackers[-1].recovered
    attacker = attackers[-1]
    learned: list[int] = []
    try:
        recovered = attacker.reconstruct()
    except PrivfedError:
        recovered = None
    if recovered is not None:
        u, tolerance = updates[target], LEARNED_TOLERANCE
        if core is not protocol:  # distributed DP: the input as the inner protocol sees it (clipped, weight 1); the
            # target's own noise share is in what the server recovers, so "learned" means within 8 of its stds
            u = protocol.prepare(u)
            tolerance += 8.0 * protocol.per_client_std(protocol.denominator(len(ids)))
        clip = float(core.clip)
        x = np.clip(u.vector, np.float32(-clip), np.float32(clip))
        truth = weighted_vector(x, float(u.weight), float(core.max_weight))
        if recovered.shape == truth.shape and float(np.max(np.abs(recovered - truth))) <= tolerance:
            learned.append(target)
    last = reports[-1]
    refusals = {str(c): d["reason"] for c, d in sorted(last.dropped.items()) if d["reason"] != "injected dropout"}
    refusals.update({str(c): "server rejected: " + d["reason"] for c, d in sorted(last.rejected.items())})
    return {
        "malicious_server": behaviour,
        "active": bool(getattr(core, "active", False)),
        "target": target,
        "rounds": len(reports),
        "server_learned": learned,
        "refusals": refusals,
        "round_aborted": last.aborted,
        "round_completed": last.result is not None,
    }


def bench_malicious(spec: Any, behaviour: str) -> dict[str, Any]:
    """``privfed bench ... --malicious-server BEHAVIOUR``: the bench record of one simulated attack."""
    from privfed.bench.aggregation import MAX_WEIGHT, VALUE_RANGE, synthetic_updates

    if spec.drops:
        raise ConfigError("--malicious-server and --drop cannot be combined (the simulated server decides dropouts)")
    options = {"max_weight": MAX_WEIGHT, "clip": VALUE_RANGE, **spec.options}
    updates = synthetic_updates(spec.clients, spec.params, spec.seed)
    record = simulate_malicious_server(spec.protection, options, updates, behaviour)
    return {"protection": spec.protection, "clients": spec.clients, "params": spec.params, "seed": spec.seed,
            "options": {k: v for k, v in spec.options.items()}, **record}
