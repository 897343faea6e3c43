"""Adversarial review of the active-adversary claims (issue 14): each test plays one deviation of a malicious server.

* restart: the server makes an honest client start a second machine for a round (over Flower a refused request
  resets the node's machine, a request under another round id builds a new one over the same local update) and
  runs two valid sessions over one input, then subtracts the sums -> protocols.active_once refuses it;
* differencing across HE key holders: the server asks two honest key holders of one round to decrypt two signed
  contribution sets that differ by one client -> each decrypts once, and the difference is that client's input.
  Not fixable by the deadline without an agreement round, so the threat layer refuses it (see the test).
"""

from __future__ import annotations

import numpy as np
import pytest

from protocols import registry
from protocols.base import ClientUpdate
from protocols.errors import PrivfedError
from protocols.he_active import protects_against_malicious_server
from protocols.identity import ActiveCheckFailed
from protocols.wire import Message, encode, inspect
from privfed.runtime.local import run_round
from privfed.threat.catalogue import malicious_server_protections

N, DIM, MAX_W = 6, 16, 10.0
FAST_PAILLIER = {"key_bits": 1024, "insecure_test_keys": True}


def _updates(n: int = N, seed: int = 7) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(seed)  # test data only
    return {c: ClientUpdate(rng.uniform(-1, 1, DIM).astype(np.float32), float(rng.integers(1, 11))) for c in range(n)}


ACTIVE = [("secagg", {"corruption_fraction": 0.0}), ("ckks", {}), ("paillier", FAST_PAILLIER)]


@pytest.mark.parametrize("name,extra", ACTIVE)
def test_a_client_machine_restarted_for_the_same_round_refuses(name, extra) -> None:
    protocol = registry.create(name, {"max_weight": MAX_W, "active": True, **extra})
    updates, state = _updates(), {}
    protocol.client(0, 1, updates[0], state)  # the first session of round 1
    with pytest.raises(ActiveCheckFailed) as info:  # the server resets the machine and starts round 1 again
        protocol.client(0, 1, _updates(seed=8)[0], state)
    assert info.value.check == "one-session"
    with pytest.raises(ActiveCheckFailed) as info:  # or relabels the same input as another round
        protocol.client(0, 1000, updates[0], state)
    assert info.value.check == "one-session"
    protocol.client(0, 2, _updates(seed=9)[0], state)  # an honest next round with a new input is fine


def _secagg_sessions(states: dict):
    protocol = registry.create("secagg", {"max_weight": MAX_W, "active": True, "corruption_fraction": 0.0,
                                          "roster_size": N})
    updates = _updates()
    first = run_round(protocol, 1, updates, client_states=states)
    second = run_round(protocol, 1, {c: updates[c] for c in range(N - 1)}, client_states=states)
    return updates, first, second


def test_two_full_secagg_sessions_over_the_same_inputs_would_reveal_one_input(monkeypatch) -> None:
    """The attack end to end, with the one-session rule switched off: session 1 sums all six clients, session 2
    (every machine restarted, same round, same inputs) the five others; both complete, and their difference is
    client 5's input. This is what the rule prevents (next test)."""
    import protocols.secagg.active as active
    monkeypatch.setattr(active, "claim_session", lambda *a, **k: None)
    updates, first, second = _secagg_sessions({})
    assert first.aborted is None and second.aborted is None
    total = lambda r: r.result.mean * r.result.total_weight  # noqa: E731
    u = updates[N - 1]
    assert np.max(np.abs(total(first) - total(second) - u.vector * u.weight)) < 1e-3


def test_two_full_secagg_sessions_over_the_same_inputs_are_refused() -> None:
    updates, first, second = _secagg_sessions({})
    assert first.aborted is None
    assert second.result is None and "one-session" in str(second.aborted) + str(second.dropped)


def _drive_he(protocol, updates):
    ids = tuple(sorted(updates))
    server = protocol.server(1, ids, DIM)
    states: dict = {}
    clients = {c: protocol.client(c, 1, updates[c], states.setdefault(c, {})) for c in ids}
    out = server.start()
    while out.phase != "decrypt":
        for cid, payload in out.messages.items():
            server.receive(cid, clients[cid].handle(payload))
        out = server.advance()
    return server, clients, out


@pytest.mark.parametrize("name,extra", [("ckks", {}), ("paillier", FAST_PAILLIER)])
def test_differencing_two_key_holders_reveals_one_input_so_the_threat_layer_refuses_it(name, extra) -> None:
    protocol = registry.create(name, {"max_weight": MAX_W, "active": True, **extra})
    updates = _updates()
    server, clients, out = _drive_he(protocol, updates)
    (_, request), = out.messages.items()
    fields = dict(inspect(request).fields)
    everyone = list(fields["contributions"])
    victim = 5
    without = [c for c in everyone if inspect(c).sender != victim]
    header = inspect(request)

    def ask(holder: int, contributions: list) -> np.ndarray:
        payload = encode(Message(header.protocol, header.kind, header.round_id, header.sender,
                                 {**fields, "contributions": contributions}))
        reply = inspect(clients[holder].handle(payload))
        return np.asarray(server.codec.decode_plaintext(reply["plaintext"], len(contributions)), dtype=np.float64)

    try:
        difference = ask(0, everyone) - ask(1, without)  # two honest key holders, each decrypting once
    except PrivfedError:
        difference = None  # a future agreement round refused it: then the refusal below may be lifted
    if difference is not None:
        u = updates[victim]
        truth = np.append(u.vector * (u.weight / MAX_W), u.weight / MAX_W)
        assert np.max(np.abs(difference - truth)) < 1e-3  # the server learned the victim's input
        ok, why = protects_against_malicious_server({"active": True})
        assert not ok and "differenc" in why
        assert not any(p == name and o.get("release", "server") == "server" for _, p, o in
                       malicious_server_protections())
