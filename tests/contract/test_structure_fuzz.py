"""Structure-aware fuzz of every message kind of every protection (issue 12, case 10).

The byte-level fuzz in ``test_contract.py`` mostly produces messages that fail to parse. These mutants parse: they
keep the wire format and break the schema (an array reshaped to (1, n) or (n, 1), a dtype swapped, a length off by
one, a field dropped or repeated, a reply of another phase, a replay from an earlier round, a changed round id or
sender, NaN/inf, a field 64 times too long). The properties:

* the server refuses every mutated reply with a privfed error *before touching its state*: after all the
  mutants of a phase were refused, the honest replies complete the round with the exact aggregate of everyone;
* through :func:`privfed.runtime.local.run_round`, nothing escapes: a mutated reply makes its sender a rejected
  client, a mutated request makes its recipient a dropout, each with the reason recorded (never the runtime's
  last-resort ``internal error``), and the round's result, when there is one, is the exact aggregate of the
  remaining clients within the declared bound.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from protocols.base import AggregateResult, LEARNED_BY_KEY_HOLDERS, ClientStateMachine
from protocols.errors import PrivfedError
from privfed.runtime.local import INTERNAL_ERROR, run_round

from .harness import available_protections, drive_to_phase, exact_mean, make_protocol, tolerance, updates_for
from .mutations import STRUCTURAL_KINDS, one_per_kind, structural_mutants

N = 5
DIM = 12
VICTIM = 2
#: every registered protection with its contract options, plus variants whose messages differ: SecAgg+ (a sparse
#: Harary graph), a SecAgg ring narrower than its wire word (values must be range-checked), and HE with
#: release="key-holders" (the ``ack`` reply instead of ``release``)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # threshold Paillier asks only T key holders at decrypt and deals each share once: its partial decryptions are
    # fuzzed by tests/test_threshold_round.py (garbled, replayed, wrong-ciphertext, non-holder partials)
    **{name: (name, {}) for name in available_protections() if "[threshold]" not in name},
    "secagg+harary": ("secagg", {"graph": "harary", "neighbours": 2, "threshold": 2}),
    "secagg-ring20": ("secagg", {"ring_bits": 20}),
    "ckks-key-holders": ("ckks", {"release": "key-holders"}),
}
ALL = list(VARIANTS)


def _protocol(variant: str):
    name, options = VARIANTS[variant]
    return make_protocol(name, **options)


def _updates(name: str):
    return updates_for(N, DIM, seed=11, equal_weights="dp" in name, scale=0.01 if "dp" in name else 0.5)


class _Recorder(ClientStateMachine):
    """Passes requests through, keeping every request and reply by phase order."""

    def __init__(self, inner: ClientStateMachine, log: list[tuple[bytes, bytes | None]]) -> None:
        self.inner, self.log = inner, log

    def handle(self, payload: bytes) -> bytes | None:
        reply = self.inner.handle(payload)
        self.log.append((payload, reply))
        return reply


def _capture(protocol, round_id: int, updates) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """Every client's (request, reply) pairs of one honest round, in phase order."""
    logs: dict[int, list] = {cid: [] for cid in updates}
    overrides = {cid: (lambda machine, log=logs[cid]: _Recorder(machine, log)) for cid in updates}
    report = run_round(protocol, round_id, updates, client_overrides=overrides)
    assert report.aborted is None, report.aborted
    return logs


def _finish(state) -> AggregateResult:
    """Deliver the honest replies of the current phase and run the round to its end."""
    server, clients = state.server, state.clients
    for cid, reply in state.replies.items():
        server.receive(cid, reply)
    while True:
        step = server.advance()
        if isinstance(step, AggregateResult):
            return step
        for cid, payload in step.messages.items():
            reply = clients[cid].handle(payload)
            if reply is not None:
                server.receive(cid, reply)


def _assert_exact(result: AggregateResult, updates) -> None:
    if result.learned_by == LEARNED_BY_KEY_HOLDERS:
        return  # the server holds no mean; the key holders' copy is checked by the runtime tests below
    error = float(np.max(np.abs(result.mean - exact_mean(updates, result.survivors))))
    assert error <= tolerance(result), f"error {error} above the declared bound {tolerance(result)}"


def _phases(protocol, updates) -> list[int]:
    n_phases = len(protocol.phases) + 2
    return [i for i in range(n_phases) if drive_to_phase(protocol, updates, i, with_replies=False) is not None]


@pytest.mark.parametrize("name", ALL)
def test_server_refuses_every_structural_mutant_without_changing_state(name: str) -> None:
    protocol = _protocol(name)
    updates = _updates(name)
    current = _capture(protocol, 1, updates)   # same round id: other phases' replies are valid but misplaced
    earlier = _capture(protocol, 0, updates)   # an earlier round: replays
    kinds_seen: set[str] = set()
    for index in _phases(protocol, updates):
        state = drive_to_phase(protocol, updates, index)
        assert state.replies, f"{name}: phase {index} has no replies"
        for cid, reply in state.replies.items():
            mutants = structural_mutants(reply)
            mutants += [(f"reply of phase {j} sent at phase {index}", r)
                        for j, (_, r) in enumerate(current[cid]) if j != index and r is not None]
            mutants += [(f"request of phase {j} reflected", q) for j, (q, _) in enumerate(current[cid])]
            mutants += [("replay of round 0", r) for j, (_, r) in enumerate(earlier[cid]) if j == index and r]
            for label, payload in mutants:
                kinds_seen.add(label.split(": ")[-1])
                try:
                    state.server.receive(cid, payload)
                except PrivfedError:
                    continue
                except Exception as exc:  # noqa: BLE001 - the point of the test
                    pytest.fail(f"{name}, phase {index}, client {cid}, {label}: foreign {type(exc).__name__}: {exc}")
                pytest.fail(f"{name}, phase {index}, client {cid}: mutant {label!r} was accepted")
        result = _finish(state)
        _assert_exact(result, updates)
        assert len(result.survivors) == N, f"{name}: a refused mutant cost a client its place"
    assert {"type swap", "length +1", "oversized", "dropped", "duplicated", "round +1", "sender +1",
            "replay of round 0"} <= kinds_seen
    if not name.startswith("paillier") and name != "ckks-key-holders":  # bytes only (the request's arrays aside)
        assert {"reshape (1,n)", "reshape (n,1)", "dtype swap"} <= kinds_seen


def _victim_override(phase_index: int, mutant: bytes, *, on: str) -> Callable[[ClientStateMachine],
                                                                               ClientStateMachine]:
    """Wrap the victim's machine: its ``phase_index``-th request (``on="request"``) or reply (``on="reply"``)
    is replaced by ``mutant`` — on the wire, as a hostile network or a hostile peer would."""
    class Mutating(ClientStateMachine):
        def __init__(self, inner: ClientStateMachine) -> None:
            self.inner, self.seen = inner, 0

        def handle(self, payload: bytes) -> bytes | None:
            index, self.seen = self.seen, self.seen + 1
            if on == "request":
                return self.inner.handle(mutant if index == phase_index else payload)
            reply = self.inner.handle(payload)
            return mutant if index == phase_index else reply

    return Mutating


def _check_report(name: str, label: str, report, updates, *, victim_in: str | tuple[str, ...],
                  victim: int = VICTIM) -> None:
    places = (victim_in,) if isinstance(victim_in, str) else victim_in
    where = next((getattr(report, p) for p in places if victim in getattr(report, p)), {})
    assert victim in where, f"{name}, {label}: client {victim} not {victim_in} ({report.dropped}, {report.rejected})"
    reason = where[victim]["reason"]
    assert reason and INTERNAL_ERROR not in reason, f"{name}, {label}: reason {reason!r}"
    if report.aborted is not None:
        assert INTERNAL_ERROR not in report.aborted, f"{name}, {label}: {report.aborted}"
        return
    assert victim not in report.completed
    if report.result.learned_by == LEARNED_BY_KEY_HOLDERS:
        mean = report.aggregate
        assert mean is not None
        error = float(np.max(np.abs(mean - exact_mean(updates, report.survivors))))
        assert error <= 1e-4, f"{name}, {label}: key holders' mean off by {error}"
        return
    _assert_exact(report.result, updates)


@pytest.mark.parametrize("name", ALL)
def test_run_round_turns_every_mutated_reply_into_a_recorded_rejection(name: str) -> None:
    """One mutant of every kind for every reply kind, each in its own round: never an exception out of run_round."""
    protocol = _protocol(name)
    updates = _updates(name)
    pairs = _capture(protocol, 1, updates)[VICTIM]
    earlier = _capture(protocol, 0, updates)[VICTIM]
    for index, (_, reply) in enumerate(pairs):
        if reply is None:
            continue
        mutants = one_per_kind(structural_mutants(reply))
        mutants.append(("replay of round 0", earlier[index][1]))
        others = [r for j, (_, r) in enumerate(pairs) if j != index and r is not None]
        if others:
            mutants.append(("reply of another phase", others[0]))
        for label, mutant in mutants:
            override = _victim_override(index, mutant, on="reply")
            report = run_round(protocol, 1, updates, client_overrides={VICTIM: override})
            _check_report(name, f"reply {index} {label}", report, updates, victim_in="rejected")


@pytest.mark.parametrize("name", ALL)
def test_run_round_turns_every_mutated_request_into_a_recorded_dropout(name: str) -> None:
    """The clients' decoders: one mutant of every kind for every request kind, each in its own round."""
    protocol = _protocol(name)
    updates = _updates(name)
    pairs = _capture(protocol, 1, updates)[VICTIM]
    earlier = _capture(protocol, 0, updates)[VICTIM]
    for index, (request, _) in enumerate(pairs):
        mutants = one_per_kind(structural_mutants(request))
        mutants.append(("replay of round 0", earlier[index][0]))
        others = [q for j, (q, _) in enumerate(pairs) if j != index]
        if others:
            mutants.append(("request of another phase", others[-1]))
        for label, mutant in mutants:
            override = _victim_override(index, mutant, on="request")
            report = run_round(protocol, 1, updates, client_overrides={VICTIM: override})
            # active mode: a client that acted on a mutated request may instead be refused by the server when the
            # signature it made over its (wrong) view fails to verify: either way it is out, with its reason
            _check_report(name, f"request {index} {label}", report, updates,
                          victim_in=("dropped", "rejected") if name.endswith("@active") else "dropped")


def test_mutation_kinds_cover_the_issue_list() -> None:
    """The kinds the issue names are all generated (a mutation that silently stopped being made would hide bugs)."""
    from protocols.wire import Message, encode

    sample = encode(Message("p", "k", 1, 2, {"a": np.zeros(3, np.float32), "b": b"xy", "l": [b"ab", b"cd"],
                                             "i": 3, "f": 1.5, "s": "hi"}))
    kinds = {label.split(": ")[-1] for label, _ in structural_mutants(sample)}
    assert set(STRUCTURAL_KINDS) <= kinds


# -- regression: every array field of every message of every protection, reshaped to (1, n) ------------------------

def _array_fields(payload: bytes) -> list[str]:
    from protocols.wire import inspect

    return [name for name, value in inspect(payload).fields.items() if isinstance(value, np.ndarray)]


@pytest.mark.parametrize("name", ALL)
def test_every_array_field_reshaped_is_that_clients_recorded_loss(name: str) -> None:
    """The issue's case: a (1, n) array made run_round raise (plaintext update, SecAgg masked input and shares,
    CKKS release). Now every array field of every reply and request, reshaped, costs exactly that client the
    round, with a reason naming the field and the shapes, and the others' aggregate is exact."""
    from protocols.wire import Message, encode, inspect

    protocol = _protocol(name)
    updates = _updates(name)
    logs = _capture(protocol, 1, updates)
    done: set[tuple[str, str, str]] = set()
    checked = 0
    for victim in (VICTIM, *sorted(c for c in logs if c != VICTIM)):  # e.g. only one key holder is asked to decrypt
        for index, (request, reply) in enumerate(logs[victim]):
            for on, payload in (("request", request), ("reply", reply)):
                if payload is None:
                    continue
                message = inspect(payload)
                for field in _array_fields(payload):
                    if (on, message.kind, field) in done:
                        continue
                    done.add((on, message.kind, field))
                    for shape in ((1, -1), (-1, 1)):
                        value = message.fields[field]
                        bad = encode(Message(message.protocol, message.kind, message.round_id, message.sender,
                                             {**message.fields, field: value.reshape(shape)}))
                        report = run_round(protocol, 1, updates,
                                           client_overrides={victim: _victim_override(index, bad, on=on)})
                        label = f"{on} {message.kind} {field} reshaped {value.reshape(shape).shape}"
                        kind = "rejected" if on == "reply" else "dropped"
                        _check_report(name, label, report, updates, victim_in=kind, victim=victim)
                        reason = getattr(report, kind)[victim]["reason"]
                        assert f"'{field}': shape " in reason and "expected (" in reason, f"{name}, {label}: {reason}"
                        checked += 1
    assert checked >= 2 or name in ("paillier", "ckks-key-holders"), f"{name}: no array field was exercised"


# -- semantic checks on released HE plaintexts: a bad release is that key holder's rejection ----------------------

@pytest.mark.parametrize("name", ["ckks", "paillier-per-value", "ckks+dp"])
@pytest.mark.parametrize("corruption", ["zero weight", "negative weight", "beyond reach"])
def test_implausible_release_is_rejected_and_the_next_key_holder_asked(name: str, corruption: str) -> None:
    from protocols.wire import Message, encode, inspect

    protocol = _protocol(name)
    updates = _updates(name)

    def corrupt(phase: str, cid: int, reply: bytes) -> bytes:
        message = inspect(reply)
        if message.kind != "release":
            return reply
        plaintext = message.fields["plaintext"].copy()
        if corruption == "zero weight":
            plaintext[-1] = 0.0
        elif corruption == "negative weight":
            plaintext[-1] = -1.0
        else:
            plaintext[0] = 1e12
        corrupt.first = getattr(corrupt, "first", cid)
        if cid != corrupt.first:
            return reply
        return encode(Message(message.protocol, message.kind, message.round_id, message.sender,
                              {**message.fields, "plaintext": plaintext}))

    report = run_round(protocol, 1, updates, tamper=corrupt)
    assert report.aborted is None, report.aborted
    bad = corrupt.first
    assert bad in report.rejected and "released" in report.rejected[bad]["reason"]
    assert report.result.info["decrypted_by"] != [bad]
    _assert_exact(report.result, {c: u for c, u in updates.items()})


# -- the runtime's last resort: a protocol bug is contained and recorded, never raised -----------------------------

def test_foreign_exception_in_a_server_step_is_recorded_and_aborts_the_round() -> None:
    from protocols.plaintext import PlaintextProtocol, PlaintextServer

    class Buggy(PlaintextServer):
        def receive(self, sender: int, payload: bytes) -> None:
            if sender == VICTIM:
                raise ValueError("secret-looking text that must not be recorded")
            super().receive(sender, payload)

    class BuggyProtocol(PlaintextProtocol):
        def server(self, round_id, client_ids, dim):
            return Buggy(self, round_id, tuple(client_ids), dim)

    report = run_round(BuggyProtocol(), 1, updates_for(N, DIM, seed=1))
    assert report.rejected[VICTIM]["reason"].startswith(INTERNAL_ERROR)
    assert "ValueError" in report.rejected[VICTIM]["reason"]
    assert "secret-looking" not in report.rejected[VICTIM]["reason"]
    assert report.result is None and report.aborted.startswith(INTERNAL_ERROR)


def test_foreign_exception_in_a_client_is_that_clients_dropout() -> None:
    from protocols.plaintext import PlaintextProtocol

    class Broken(ClientStateMachine):
        def __init__(self, inner: ClientStateMachine) -> None:
            self.inner = inner

        def handle(self, payload: bytes) -> bytes | None:
            raise TypeError("boom")

    updates = updates_for(N, DIM, seed=1)
    report = run_round(PlaintextProtocol(), 1, updates, client_overrides={VICTIM: Broken})
    assert report.dropped[VICTIM]["reason"].startswith("client stopped: " + INTERNAL_ERROR)
    assert report.aborted is None and VICTIM not in report.result.survivors
    _assert_exact(report.result, updates)


def test_a_privfed_error_from_the_result_step_aborts_cleanly() -> None:
    """A server whose advance() raises a PrivfedError other than ProtocolAbort (e.g. MessageError from decoding
    the final sum) used to escape run_round."""
    from protocols.errors import MessageError
    from protocols.plaintext import PlaintextProtocol, PlaintextServer

    class Failing(PlaintextServer):
        def advance(self):
            raise MessageError("aggregate weight is not positive: nothing to average")

    class FailingProtocol(PlaintextProtocol):
        def server(self, round_id, client_ids, dim):
            return Failing(self, round_id, tuple(client_ids), dim)

    report = run_round(FailingProtocol(), 1, updates_for(N, DIM, seed=1))
    assert report.result is None and "not positive" in report.aborted


# -- Hypothesis: stacked structural mutations (a mutant of a mutant ...) -------------------------------------------

def _signature(payload: bytes) -> tuple | None:
    """The structure of a message (header, field names, types, dtypes, shapes, lengths), or None if unreadable."""
    from protocols.errors import MessageError
    from protocols.wire import inspect

    try:
        message = inspect(payload)
    except MessageError:
        return None
    fields = []
    for name, value in message.fields.items():
        if isinstance(value, np.ndarray):
            fields.append((name, "array", value.dtype.name, value.shape))
        elif isinstance(value, (bytes, str, list)):
            items = tuple(len(v) for v in value) if isinstance(value, list) else ()
            fields.append((name, type(value).__name__, len(value), items))
        else:
            fields.append((name, type(value).__name__))
    return (message.protocol, message.kind, message.round_id, message.sender, tuple(fields))


@pytest.mark.parametrize("name", ALL)
def test_stacked_structural_mutations_are_refused(name: str) -> None:
    """Up to three structural mutations on top of each other (Hypothesis picks the phase, the reply and each
    mutation); whatever still has the honest message's structure is skipped (two mutations can cancel out, and a
    type swap back and forth only changes a value). Everything else is refused with a privfed error, and after all
    the examples the honest replies still complete the round exactly."""
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st

    from protocols.wire import encode, inspect

    protocol = _protocol(name)
    updates = _updates(name)
    states = {index: drive_to_phase(protocol, updates, index) for index in _phases(protocol, updates)}

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data) -> None:
        index = data.draw(st.sampled_from(sorted(states)), label="phase")
        state = states[index]
        cid = data.draw(st.sampled_from(sorted(state.replies)), label="client")
        original = payload = state.replies[cid]
        for _ in range(data.draw(st.integers(1, 3), label="depth")):
            if encode(inspect(payload)) != payload:  # a repeated field: not re-mutable through inspect
                break
            label, payload = data.draw(st.sampled_from(structural_mutants(payload)), label="mutation")
        assume(_signature(payload) != _signature(original))
        try:
            state.server.receive(cid, payload)
        except PrivfedError:
            return
        pytest.fail(f"{name}: stacked mutant accepted at phase {index}")

    check()
    for state in states.values():
        result = _finish(state)
        _assert_exact(result, updates)
        assert len(result.survivors) == N


def test_well_formed_but_corrupted_share_aborts_the_secagg_round_cleanly() -> None:
    """Beyond structure: a revealed share with one flipped bit passes decoding; SecAgg's reconstruction checks
    (commitment / public key) catch it and the round aborts with the reason, never a wrong sum, never a raise."""
    from protocols.wire import Message, encode, inspect

    def tamper(phase: str, cid: int, reply: bytes) -> bytes:
        message = inspect(reply)
        if message.kind != "reveal" or cid != VICTIM:
            return reply
        shares = list(message.fields["b_shares"])
        flipped = bytearray(shares[0])
        flipped[-1] ^= 1
        shares[0] = bytes(flipped)
        return encode(Message(message.protocol, message.kind, message.round_id, message.sender,
                              {**message.fields, "b_shares": shares}))

    report = run_round(_protocol("secagg"), 1, _updates("secagg"), tamper=tamper)
    assert report.result is None and "corrupted" in report.aborted
    assert INTERNAL_ERROR not in report.aborted
