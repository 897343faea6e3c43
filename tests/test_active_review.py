"""Adversarial review of the active-adversary claims (issue 14): each test plays one deviation of a malicious server.

* restart: the server makes an honest client start a second machine for a round (over Flower a refused request
  resets the node's machine, a request under another round id builds a new one over the same local update) and
  runs two valid sessions over one input, then subtracts the sums -> protocols.active_once refuses it;
* differencing across HE key holders: the server asks two honest key holders of one round to decrypt two signed
  contribution sets that differ by one client -> each decrypts once, and the difference is that client's input.
  Not fixable by the deadline without an agreement round, so the threat layer refuses it (see the test).
"""

from __future__ import annotations

import json

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


# -- deviations checked and found to hold (each a regression test) ----------------------------------------------


def _drive_secagg(protocol, updates, until: str, tamper=None):
    """Run an active SecAgg round up to phase ``until``; ``tamper(phase, cid, payload)`` may rewrite a request,
    and a client that refuses (PrivfedError) is recorded in ``refused`` and left out."""
    ids = tuple(sorted(updates))
    server = protocol.server(1, ids, DIM)
    clients = {c: protocol.client(c, 1, updates[c], {}) for c in ids}
    refused: dict[int, PrivfedError] = {}
    server.replies = {}  # (phase, client) -> the reply it sent (for tests that relay it as a malicious server would)
    out = server.start()
    while out.phase != until:
        for cid, payload in out.messages.items():
            payload = tamper(out.phase, cid, payload) if tamper else payload
            try:
                reply = clients[cid].handle(payload)
            except PrivfedError as exc:
                refused[cid] = exc
                continue
            server.replies[(out.phase, cid)] = reply
            try:
                server.receive(cid, reply)
            except PrivfedError:
                pass
        out = server.advance()
    return server, clients, out, refused


def _sampled():
    return registry.create("secagg", {"max_weight": MAX_W, "active": True, "roster_size": 9,
                                      "corruption_fraction": 0.1})


def test_a_client_shown_another_cohort_is_cut_off_by_its_peers() -> None:
    """Equivocating about the cohort: client 6 is told the cohort holds 7 instead of 5; every peer shown the real
    cohort refuses client 6's advertisement (it covers the other cohort's digest), so nobody holds its shares."""
    updates = _updates(9)
    cohort = {c: updates[c] for c in range(7)}

    def tamper(phase, cid, payload):
        if phase == "advertise-keys" and cid == 6:
            neighbours = [int(v) if int(v) != 5 else 7 for v in inspect(payload)["neighbours"]]
            return _mutated(payload, neighbours=np.asarray(neighbours, dtype=np.int64))
        return payload

    protocol = _sampled()
    protocol.identities.roster_for(tuple(range(9)))  # the registrar enrols the whole roster of 9
    server, clients, out, refused = _drive_secagg(protocol, cohort, "share-keys", tamper)
    assert 6 not in refused  # client 6 itself sees a valid cohort (7 is in the roster) and signs over it
    # the honest server already drops 6's advertisement (it checks signatures over its own cohort); a malicious one
    # relays it: take 6's keys and signature from the server's view and put them into each peer's request
    assert 6 not in server._ad_sig  # the honest server refused it
    sixes = inspect(server.replies[("advertise-keys", 6)])
    refusals = 0
    for cid, payload in out.messages.items():
        msg = inspect(payload)
        peers = [int(v) for v in msg["peers"]]
        if cid == 6 or 6 in peers:
            continue
        forged = _mutated(payload, peers=np.asarray([*peers, 6], dtype=np.int64),
                          c_pks=[*msg["c_pks"], sixes["c_pk"]], s_pks=[*msg["s_pks"], sixes["s_pk"]],
                          signatures=[*msg["signatures"], sixes["signature"]])
        with pytest.raises(ActiveCheckFailed) as info:
            clients[cid].handle(forged)
        assert info.value.check == "advertisement-signature"
        refusals += 1
    assert refusals == 6


def _mutated(payload: bytes, **changes) -> bytes:
    msg = inspect(payload)
    return encode(Message(msg.protocol, msg.kind, msg.round_id, msg.sender, {**msg.fields, **changes}))


@pytest.mark.parametrize("neighbours", [[1, 2, 3, 4, 5, 5], [-1, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 99]])
def test_duplicated_negative_or_unknown_ids_in_the_cohort_are_refused_before_signing(neighbours) -> None:
    updates = _updates(7)

    def tamper(phase, cid, payload):
        if phase == "advertise-keys" and cid == 0:
            return _mutated(payload, neighbours=np.asarray(neighbours, dtype=np.int64))
        return payload

    _, _, _, refused = _drive_secagg(_sampled(), updates, "share-keys", tamper)
    assert 0 in refused


def test_consistency_signatures_of_one_survivor_set_do_not_open_another() -> None:
    """The server shows client 0 a smaller survivor set (client 6 'dropped') and relays the signatures collected
    on the full set: client 0 refuses to reveal anything."""
    protocol = registry.create("secagg", {"max_weight": MAX_W, "active": True, "corruption_fraction": 0.0})
    updates = _updates(7)

    def tamper(phase, cid, payload):
        if phase == "consistency-check" and cid == 0:
            return _mutated(payload, survivors=np.arange(0, 6, dtype=np.int64))
        return payload

    server, clients, out, refused = _drive_secagg(protocol, updates, "unmask", tamper)
    assert not refused
    assert 0 not in out.messages  # the honest server rejected its signature on the smaller set
    request = out.messages[1]  # the signatures of the full set, as a malicious server would relay them to 0
    with pytest.raises(ActiveCheckFailed) as info:
        clients[0].handle(request)
    assert info.value.check == "consistency-set"
    shrunk = _mutated(request, alive=np.arange(0, 6, dtype=np.int64), dropped=np.asarray([6], dtype=np.int64))
    with pytest.raises(PrivfedError):  # the machine refused once: it never answers again
        clients[0].handle(shrunk)


def test_a_client_answers_the_unmask_request_once() -> None:
    protocol = registry.create("secagg", {"max_weight": MAX_W, "active": True, "corruption_fraction": 0.0})
    server, clients, out, refused = _drive_secagg(protocol, _updates(7), "unmask")
    assert not refused and clients[0].handle(out.messages[0]) is not None
    with pytest.raises(PrivfedError):
        clients[0].handle(out.messages[0])


# -- the Flower node does not take its assumptions from the server-written run configuration ---------------------


@pytest.mark.parametrize("options", [{"max_weight": MAX_W}, {"max_weight": MAX_W, "active": False}])
def test_a_flower_node_with_a_roster_refuses_a_downgrade_by_the_server(tmp_path, options) -> None:
    from privfed.apps.flower.identity import node_options
    from protocols.identity import make_identities, write_key_file, write_roster

    roster, identities = make_identities(range(4))
    write_roster(tmp_path / "roster.json", roster)
    node_config = {"roster": str(tmp_path / "roster.json"), "signing-key": str(write_key_file(tmp_path, identities[0]))}
    with pytest.raises(PrivfedError, match="downgrade"):
        node_options(options, node_config, "secagg")


def test_a_flower_node_keeps_its_own_corruption_assumption(tmp_path) -> None:
    """A run lowering corruption_fraction to 0 does not lower the node's (the protocol's default 0.1, or its node
    config's): the node's own protocol keeps 0.1, so its cohort check counts C = 1 on a roster of 10."""
    from privfed.apps.flower.config import build_protocol, parse_run_config
    from protocols.identity import make_identities, write_key_file, write_roster

    roster, identities = make_identities(range(10))
    write_roster(tmp_path / "roster.json", roster)
    node_config = {"roster": str(tmp_path / "roster.json"), "signing-key": str(write_key_file(tmp_path, identities[0]))}
    weak = {"active": True, "corruption_fraction": 0.0, "threshold": 2, "max_weight": MAX_W}
    run = parse_run_config({"protection": "secagg", "clients": 3, "options": json.dumps(weak)})
    protocol = build_protocol(run, "secagg", secret=True, node_config=node_config)
    assert protocol.corruption_fraction == pytest.approx(0.1)
