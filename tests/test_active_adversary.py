"""Active adversary (issue 14): identities, active SecAgg, HE key-holder checks, the malicious-server simulator."""

from __future__ import annotations

import itertools
import json
import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import registry
from protocols.base import AFTER_UPLOAD, BEFORE_UPLOAD, ClientUpdate
from protocols.errors import ConfigError, PrivfedError, ProtocolAbort
from protocols.identity import (ActiveCheckFailed, Roster, make_identities, read_key_file, read_roster,
                                signed_bytes, write_key_file, write_roster)
from protocols.secagg.active import ACTIVE_PHASES, active_condition, corrupted_count
from protocols.wire import Message, decode, encode, inspect
from privfed.bench.malicious import simulate_malicious_server
from privfed.runtime.local import run_round

N, DIM, MAX_W = 10, 64, 10.0
FAST_PAILLIER = {"key_bits": 1024, "insecure_test_keys": True}


def _updates(n: int = N, dim: int = DIM, seed: int = 3) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(seed)  # test data only
    return {c: ClientUpdate(rng.uniform(-1, 1, dim).astype(np.float32), float(rng.integers(1, 11)))
            for c in range(n)}


def _exact(updates: dict[int, ClientUpdate], ids: tuple[int, ...]) -> np.ndarray:
    w = np.array([updates[c].weight for c in ids])
    return w @ np.stack([updates[c].vector.astype(np.float64) for c in ids]) / w.sum()


def _active(**extra):
    return registry.create("secagg", {"max_weight": MAX_W, "active": True, **extra})


# -- identities ------------------------------------------------------------------------------------------------


def test_roster_and_key_files_round_trip(tmp_path) -> None:
    roster, identities = make_identities([3, 5, 8])
    write_roster(tmp_path / "roster.json", roster)
    paths = [write_key_file(tmp_path, identity) for identity in identities.values()]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    loaded = read_roster(tmp_path / "roster.json")
    assert loaded == roster and loaded.digest() == roster.digest()
    assert read_key_file(paths[1], loaded).public_bytes == identities[5].public_bytes
    other, _ = make_identities([3, 5, 8])
    with pytest.raises(ActiveCheckFailed) as info:
        read_key_file(paths[1], other)
    assert info.value.check == "roster"


def test_roster_refuses_a_duplicated_key_and_bad_files(tmp_path) -> None:
    roster, _ = make_identities([0, 1])
    with pytest.raises(ConfigError, match="duplicated signer"):
        Roster({0: roster.members[0], 1: roster.members[0]})
    data = roster.to_json()
    data["members"]["0"] = "zz"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError):
        read_roster(tmp_path / "bad.json")


def test_signatures_verify_only_for_their_own_signer_and_bytes() -> None:
    roster, ids = make_identities([0, 1])
    data = signed_bytes("p", "secagg", 1, b"s" * 16, 0, b"payload")
    signature = ids[0].sign(data)
    roster.verify(0, data, signature, "x")
    for signer, payload, sig, check in ((1, data, signature, "a"), (0, data + b"!", signature, "b"),
                                        (7, data, signature, "c"), (0, data, signature[:-1], "d")):
        with pytest.raises(ActiveCheckFailed) as info:
            roster.verify(signer, payload, sig, check)
        assert info.value.check == check


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3), st.binary(max_size=3), st.integers(-1, 2),
                 st.lists(st.binary(max_size=3), max_size=3)),
       st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3), st.binary(max_size=3), st.integers(-1, 2),
                 st.lists(st.binary(max_size=3), max_size=3)))
def test_signed_bytes_are_injective(x, y) -> None:
    """Two different (purpose, round, session, signer, parts) never sign the same bytes (no cross-context replay)."""
    bx = signed_bytes(x[0], "secagg", x[1], x[2], x[3], *x[4])
    by = signed_bytes(y[0], "secagg", y[1], y[2], y[3], *y[4])
    assert (bx == by) == (x == y)


# -- the parameter condition -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 30).flatmap(lambda n: st.tuples(st.just(n), st.integers(2, n), st.integers(0, n - 1))))
def test_active_condition_is_exactly_when_two_survivor_sets_cannot_both_be_signed(case) -> None:
    """Brute force: two disjoint groups of honest signers, each topped up by all n_C corrupted clients, reach t."""
    n, t, n_c = case
    splittable = any(a + n_c >= t and b + n_c >= t for a in range(n - n_c + 1) for b in range(n - n_c - a + 1))
    assert (active_condition(n, t, n_c) is None) == (not splittable and t > n_c)


def test_construction_refuses_what_the_guarantee_does_not_cover() -> None:
    with pytest.raises(ConfigError, match="2t > n"):
        _active(threshold=0.5).plan(10)
    with pytest.raises(ConfigError, match="complete graph"):
        _active(graph="harary")
    assert corrupted_count(10, 0.1) == 1
    _active().plan(10)  # default t = 7: 14 > 11


# -- active SecAgg correctness -----------------------------------------------------------------------------------


@pytest.mark.parametrize("point", [BEFORE_UPLOAD, AFTER_UPLOAD, *ACTIVE_PHASES])
def test_dropouts_at_every_phase_give_the_exact_survivors_sum(point: str) -> None:
    updates = _updates()
    protocol = _active()
    report = run_round(protocol, 1, updates, drops={2: point, 6: point})
    assert report.aborted is None, report.aborted
    survivors = report.result.survivors
    dropped_before_upload = point in (BEFORE_UPLOAD, "advertise-keys", "share-keys", "masked-input")
    assert (2 in survivors) == (not dropped_before_upload)
    err = np.max(np.abs(report.result.mean - _exact(updates, survivors)))
    assert err <= report.result.error_bound + 1e-7


def test_active_rounds_reuse_identities_and_work_from_registrar_files(tmp_path) -> None:
    roster, identities = make_identities(range(6))
    write_roster(tmp_path / "r.json", roster)
    for identity in identities.values():
        write_key_file(tmp_path, identity)
    protocol = _active(roster=str(tmp_path / "r.json"), key_dir=str(tmp_path), corruption_fraction=0.0)
    states = {}
    for round_id in (1, 2):
        report = run_round(protocol, round_id, _updates(6, seed=round_id), client_states=states)
        assert report.aborted is None and report.result.survivors == tuple(range(6))
    # a cohort sampled from the file roster is fine when the cohort condition holds (5 of 6, C = 0, t = 4) ...
    updates = _updates(6, seed=3)
    report = run_round(protocol, 3, {c: updates[c] for c in range(5)}, client_states=states)
    assert report.aborted is None and report.result.survivors == tuple(range(5))
    with pytest.raises(ConfigError, match="cohort"):  # ... a client outside the roster is not
        protocol.server(4, range(7), DIM)


# -- bad input at an honest client: refusal names the check, nothing revealed -------------------------------------


def _drive(protocol, updates, phase: str):
    ids = tuple(sorted(updates))
    server = protocol.server(1, ids, DIM)
    states: dict = {}
    clients = {c: protocol.client(c, 1, updates[c], states.setdefault(c, {})) for c in ids}
    out = server.start()
    while out.phase != phase:
        for cid, payload in out.messages.items():
            server.receive(cid, clients[cid].handle(payload))
        out = server.advance()
    return server, clients, out


def _mutated(payload: bytes, **changes) -> bytes:
    msg = inspect(payload)
    return encode(Message(msg.protocol, msg.kind, changes.pop("round_id", msg.round_id), msg.sender,
                          {**msg.fields, **changes}))


def _refuses(client, payload: bytes, check: str) -> None:
    with pytest.raises(ActiveCheckFailed) as info:
        client.handle(payload)
    assert info.value.check == check
    with pytest.raises(PrivfedError):  # the machine is dead: no second chance, nothing revealed later
        client.handle(payload)


def test_bad_advertisement_signature_is_refused() -> None:
    server, clients, out = _drive(_active(), _updates(), "share-keys")
    msg = inspect(out.messages[0])
    sigs = list(msg["signatures"])
    sigs[1] = bytes([sigs[1][0] ^ 1]) + sigs[1][1:]
    _refuses(clients[0], _mutated(out.messages[0], signatures=sigs), "advertisement-signature")
    swapped = list(msg["signatures"])
    swapped[0], swapped[1] = swapped[1], swapped[0]  # valid signatures under the wrong signer
    _refuses(clients[2], _mutated(out.messages[2], signatures=swapped), "advertisement-signature")


def test_replayed_advertisements_of_another_round_are_refused() -> None:
    updates = _updates()
    protocol = _active()
    _, _, old = _drive(protocol, updates, "share-keys")
    server, clients, out = _drive(protocol, updates, "share-keys")  # a new session of the same round id
    _refuses(clients[0], old.messages[0], "advertisement-signature")


def test_roster_mismatch_is_refused() -> None:
    protocol = _active()
    updates = _updates()
    server, clients, out = _drive(protocol, updates, "advertise-keys")
    msg = inspect(out.messages[0])
    fewer = _mutated(out.messages[0], n=9, k=8, threshold=6, neighbours=msg["neighbours"][:-1])  # a cohort smaller than the roster
    _refuses(clients[0], fewer, "roster")




def _fresh_unmask():
    return _drive(_active(), _updates(), "unmask")


def test_too_few_or_duplicated_or_foreign_consistency_signatures_are_refused() -> None:
    server, clients, out = _fresh_unmask()
    msg = inspect(out.messages[0])
    signers, sigs = list(msg["signers"]), list(msg["signatures"])
    _refuses(clients[0], _mutated(out.messages[0], signers=np.asarray(signers[:6]), signatures=sigs[:6]),
             "consistency-signatures")
    dup = _mutated(out.messages[1], signers=np.asarray([signers[0]] + signers[:-1]), signatures=[sigs[0]] + sigs[:-1])
    _refuses(clients[1], dup, "duplicate-signer")
    bad = list(sigs)
    bad[3] = bytes(64)
    _refuses(clients[2], _mutated(out.messages[2], signatures=bad), "consistency-signatures")


def test_consistency_set_differing_from_the_clients_view_is_refused() -> None:
    server, clients, out = _fresh_unmask()
    msg = inspect(out.messages[0])
    alive = [int(v) for v in msg["alive"]]
    told = _mutated(out.messages[0], alive=np.asarray([v for v in alive if v != 9]), dropped=np.asarray([9]))
    _refuses(clients[0], told, "consistency-set")


def test_consistency_request_without_this_client_or_below_t_is_refused() -> None:
    server, clients, out = _drive(_active(), _updates(), "consistency-check")
    _refuses(clients[0], _mutated(out.messages[0], survivors=np.arange(1, 10)), "consistency-set")
    _refuses(clients[1], _mutated(out.messages[1], survivors=np.arange(0, 6)), "consistency-set")


def test_server_rejects_forged_client_signatures() -> None:
    protocol = _active()
    updates = _updates()
    ids = tuple(sorted(updates))
    server = protocol.server(1, ids, DIM)
    out = server.start()
    states: dict = {}
    reply = protocol.client(0, 1, updates[0], states).handle(out.messages[0])
    msg = inspect(reply)
    forged = encode(Message(msg.protocol, msg.kind, msg.round_id, 1, dict(msg.fields)))  # 0's keys claimed by 1
    with pytest.raises(PrivfedError, match="advertisement-signature"):
        server.receive(1, forged)


# -- HE key holders ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["paillier", "ckks"])
def test_he_key_holder_decrypts_at_most_once_and_only_signed_sums(name: str) -> None:
    extra = FAST_PAILLIER if name == "paillier" else {}
    protocol = registry.create(name, {"max_weight": MAX_W, "active": True, **extra})
    updates = _updates(5)
    server, clients, out = _drive(protocol, updates, "decrypt")
    (holder, request), = out.messages.items()
    contributions = list(inspect(request)["contributions"])
    with pytest.raises(ActiveCheckFailed) as info:  # fewer than min_clients signed contributions
        clients[(holder + 1) % 5].handle(_mutated(request, contributions=contributions[:2]))
    assert info.value.check == "contributions"
    assert clients[holder].handle(request) is not None
    with pytest.raises(ProtocolAbort, match="at most once"):
        clients[holder].handle(request)


# -- the malicious-server simulator ------------------------------------------------------------------------------

SEMI_HONEST_SUCCEEDS = [("secagg", {"threshold": 0.5}, "forge-keys"), ("secagg", {"threshold": 0.5}, "equivocate"),
                        ("secagg", {}, "forge-keys"), ("paillier", FAST_PAILLIER, "decrypt-individual"),
                        ("paillier", FAST_PAILLIER, "replay"), ("ckks", {}, "decrypt-individual"),
                        ("ckks", {}, "replay")]
ACTIVE_CASES = [("secagg", {}, b) for b in ("forge-keys", "equivocate", "replay")] + [
    (name, extra, b) for name, extra in (("paillier", FAST_PAILLIER), ("ckks", {}))
    for b in ("decrypt-individual", "replay")]
EXPECTED_CHECK = {"forge-keys": "advertisement-signature", "equivocate": "consistency-signatures",
                  "replay": ("advertisement-signature", "replay"), "decrypt-individual": "duplicate-signer"}


@pytest.mark.parametrize("name,extra,behaviour", SEMI_HONEST_SUCCEEDS)
def test_attacks_succeed_without_active_checks(name, extra, behaviour) -> None:
    record = simulate_malicious_server(name, {"max_weight": MAX_W, **extra}, _updates(dim=200), behaviour)
    assert record["server_learned"] == [record["target"]]


def test_equivocation_fails_without_active_checks_when_t_exceeds_half() -> None:
    record = simulate_malicious_server("secagg", {"max_weight": MAX_W}, _updates(dim=200), "equivocate")
    assert record["server_learned"] == []


@pytest.mark.parametrize("name,extra,behaviour", ACTIVE_CASES)
def test_every_attack_fails_with_active_checks_and_the_refusal_names_the_check(name, extra, behaviour) -> None:
    record = simulate_malicious_server(name, {"max_weight": MAX_W, "active": True, **extra}, _updates(dim=200),
                                       behaviour)
    assert record["server_learned"] == []
    expected = EXPECTED_CHECK[behaviour]
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert any(f"active check '{c}'" in r for r in record["refusals"].values() for c in expected), record


@pytest.mark.parametrize("name,behaviour", [("secagg", "decrypt-individual"), ("ckks", "forge-keys"),
                                            ("plaintext", "replay")])
def test_inapplicable_behaviours_are_refused(name: str, behaviour: str) -> None:
    with pytest.raises(ConfigError, match="does not apply"):
        simulate_malicious_server(name, {"max_weight": MAX_W}, _updates(5, 8), behaviour)


# -- threat layer and CLI ----------------------------------------------------------------------------------------


def test_threat_layer_accepts_a_malicious_server_only_with_active_checks() -> None:
    from privfed.threat.catalogue import RoundContext, unmet_requirements
    from privfed.threat.model import ThreatModel

    threat = ThreatModel.parse("server=malicious")
    assert unmet_requirements("secagg", threat, RoundContext(10, {"active": True})) == []
    assert unmet_requirements("ckks", threat, RoundContext(10, {"active": True, "release": "key-holders"})) == []
    assert unmet_requirements("secagg", threat, RoundContext(10, {}))
    assert any("2t > n" in r for r in unmet_requirements("secagg", ThreatModel.parse("server=malicious,collusion=4"),
                                                         RoundContext(10, {"active": True})))
    assert unmet_requirements("secagg+dp", threat, RoundContext(10, {"active": True})) == []
    assert unmet_requirements("secagg+dp", threat, RoundContext(10, {}))
    # HE with a plaintext released to the server: refused since the review (differencing across key holders)
    for name, extra in (("ckks", {}), ("paillier", {}), ("ckks+dp", {}), ("paillier", {"decryption": "threshold"})):
        assert any("differencing" in r for r in unmet_requirements(name, threat,
                                                                    RoundContext(10, {"active": True, **extra})))
        assert unmet_requirements(name, threat, RoundContext(10, extra))
    for name in ("dp", "local-dp", "plaintext"):
        assert unmet_requirements(name, threat, RoundContext(10, {"active": True}))


def test_keys_cli_makes_a_roster_and_private_key_files(tmp_path) -> None:
    from click.testing import CliRunner
    from privfed.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["keys", "roster", "--clients", "4", "--out", str(tmp_path / "r.json"),
                                  "--key-dir", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    assert len(read_roster(tmp_path / "r.json")) == 4
    files = sorted((tmp_path / "k").iterdir())
    assert len(files) == 4 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    again = runner.invoke(main, ["keys", "roster", "--clients", "4", "--out", str(tmp_path / "r.json"),
                                 "--key-dir", str(tmp_path / "k")])
    assert again.exit_code != 0
    check = runner.invoke(main, ["keys", "check", str(tmp_path / "r.json"), "--key-dir", str(tmp_path / "k")])
    assert check.exit_code == 0 and "4 key files match" in check.output


@pytest.mark.parametrize("point", [BEFORE_UPLOAD, AFTER_UPLOAD, "setup", "upload", "decrypt"])
def test_he_active_dropouts_at_every_phase_give_the_exact_survivors_mean(point: str) -> None:
    protocol = registry.create("ckks", {"max_weight": MAX_W, "active": True})
    updates = _updates(6)
    report = run_round(protocol, 1, updates, drops={0: point})  # client 0 is the first key holder asked
    assert report.aborted is None, report.aborted
    err = np.max(np.abs(report.result.mean - _exact(updates, report.result.survivors)))
    assert err <= report.result.error_bound + 1e-6


def test_he_key_holder_refuses_a_tampered_or_foreign_contribution() -> None:
    protocol = registry.create("paillier", {"max_weight": MAX_W, "active": True, **FAST_PAILLIER})
    updates = _updates(4)
    server, clients, out = _drive(protocol, updates, "decrypt")
    (holder, request), = out.messages.items()
    contributions = list(inspect(request)["contributions"])
    one = inspect(contributions[1])
    ct = bytearray(one["ciphertexts"])
    ct[5] ^= 1
    tampered = encode(Message(one.protocol, one.kind, one.round_id, one.sender, {**one.fields, "ciphertexts": bytes(ct)}))
    with pytest.raises(ActiveCheckFailed) as info:
        clients[holder].handle(_mutated(request, contributions=[contributions[0], tampered, *contributions[2:]]))
    assert info.value.check == "contribution-signature"
    other = encode(Message(one.protocol, one.kind, one.round_id, 99, dict(one.fields)))  # a signer not in the roster
    with pytest.raises(ActiveCheckFailed) as info:
        clients[(holder + 1) % 4].handle(_mutated(request, contributions=[*contributions[:3], other]))
    assert info.value.check == "roster"


@pytest.mark.parametrize("extra,learned", [(["-o", "threshold=0.5"], True), (["-o", "active=true"], False),
                                           (["-o", "threshold=0.5", "-o", "active=true"], False)])
@pytest.mark.parametrize("behaviour", ["forge-keys", "equivocate"])
def test_bench_acceptance_commands(tmp_path, extra, learned, behaviour) -> None:
    from click.testing import CliRunner
    from privfed.cli import main

    out = tmp_path / "m.json"
    result = CliRunner().invoke(main, ["bench", "--protection", "secagg", *extra, "--clients", "10", "--params",
                                       "500", "--malicious-server", behaviour, "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert (record["server_learned"] != []) == learned
    if not learned:
        assert any("active check" in r for r in record["refusals"].values())


def test_active_client_machines_survive_a_pickle_round_trip_between_messages(tmp_path) -> None:
    """Flower's SuperNode rebuilds the client machine from node-local pickled state before every message; active
    machines (signing key, roster, signed survivor set) must survive that (registrar files, as on real nodes)."""
    import pickle

    pytest.importorskip("flwr")
    import privfed.runtime.flower.state  # noqa: F401  (registers the node-local reducers of cryptography's keys)
    from protocols.base import ClientStateMachine

    roster, identities = make_identities(range(5))
    write_roster(tmp_path / "r.json", roster)
    for identity in identities.values():
        write_key_file(tmp_path, identity)

    class Repickled(ClientStateMachine):
        def __init__(self, machine) -> None:
            self.blob = pickle.dumps(machine)

        def handle(self, payload: bytes):
            machine = pickle.loads(self.blob)
            reply = machine.handle(payload)
            self.blob = pickle.dumps(machine)
            return reply

    updates = _updates(5)
    for name, extra in (("secagg", {"corruption_fraction": 0.0}), ("paillier", FAST_PAILLIER)):
        protocol = registry.create(name, {"max_weight": MAX_W, "active": True, "roster": str(tmp_path / "r.json"),
                                          "key_dir": str(tmp_path), **extra})
        report = run_round(protocol, 1, updates, client_overrides={c: Repickled for c in updates})
        assert report.aborted is None and not report.dropped, (report.aborted, report.dropped)
        assert np.max(np.abs(report.result.mean - _exact(updates, report.result.survivors))) <= \
            report.result.error_bound + 1e-6


def test_he_contributions_from_an_earlier_run_with_the_same_key_and_round_are_refused() -> None:
    """Freshness: signatures cover the round's nonce list, which must hold the key holder's own nonce."""
    protocol = registry.create("ckks", {"max_weight": MAX_W, "active": True})
    updates = _updates(4)
    _, _, old = _drive(protocol, updates, "decrypt")  # "run A", round 1
    _, clients, new = _drive(protocol, updates, "decrypt")  # "run B", round 1 again, same key
    (holder, request), = new.messages.items()
    (_, old_request), = old.messages.items()
    with pytest.raises(ActiveCheckFailed) as info:
        clients[holder].handle(old_request)
    assert info.value.check == "freshness"
    mixed = _mutated(request, contributions=list(inspect(old_request)["contributions"]))
    with pytest.raises(ActiveCheckFailed) as info:
        clients[(holder + 1) % 4].handle(mixed)
    assert info.value.check == "contribution-signature"
