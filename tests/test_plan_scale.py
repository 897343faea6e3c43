"""A plan of many rounds costs what its distinct protections cost: the planned epsilon composes one event per
protection counted over its rounds, and must equal the round-by-round ledger the run would keep (same events, same
extra delta); the plan table groups alike rounds; a round count beyond any real run is refused by name."""

from __future__ import annotations

import math

from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from protocols.dp.ledger import PrivacyLedger
from protocols.errors import ConfigError
from privfed.cli import main
import privfed.threat.budget as budget
from privfed.threat.budget import observers_for, planned_epsilon, planned_events
from privfed.threat.model import ThreatModel
from privfed.threat.plan import MAX_PLAN_ROUNDS, resolve_plan

import pytest

DP = ("dp", "secagg+dp", "ldp", "dp-sgd")


def _round_by_round(rounds, threat, clients, options, accountant, model_size):
    ledger = PrivacyLedger()
    for r, name in rounds:
        ledger.record(r, budget.planned_events(name, options.get(name, {}), threat, clients, model_size))
    return {o: ledger.epsilon(threat.delta, accountant, threat.dp_unit, o) for o in observers_for(threat)}


@settings(max_examples=25, deadline=None)
@given(names=st.lists(st.sampled_from(("dp", "secagg+dp", "plaintext", "secagg")), min_size=1, max_size=12),
       z=st.floats(0.6, 20.0), server=st.sampled_from(("trusted", "honest-but-curious")),
       model_size=st.sampled_from((1_000, 10_000_000, 40_000_000)))
def test_counted_plan_equals_the_round_by_round_ledger(names, z, server, model_size) -> None:
    threat = ThreatModel.parse(f"server={server},epsilon=8,delta=1e-5")
    rounds = list(enumerate(names, start=1))
    options = {n: {"noise_multiplier": z} for n in ("dp", "secagg+dp")}
    for accountant in ("pld", "rdp"):
        counted = planned_epsilon(rounds, threat, 50, options, accountant, model_size)
        direct = _round_by_round(rounds, threat, 50, options, accountant, model_size)
        assert counted.keys() == direct.keys()
        for observer in counted:
            a, b = counted[observer], direct[observer]
            assert (math.isinf(a) and math.isinf(b)) or math.isclose(a, b, rel_tol=1e-9), (observer, a, b)


def test_extra_delta_is_counted_over_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round's extra delta (truncation, rounding tails) adds up over rounds: with a round event carrying 1e-7
    of it, 200 rounds exhaust delta = 1e-5 (infinite epsilon) round by round, and the counted plan must say the same;
    counting the event's extra delta once would have hidden it."""
    from protocols.dp.events import RoundEvents
    import privfed.threat.budget as budget

    event = {"mechanism": "gaussian", "noise_multiplier": 1000.0, "sample_rate": 1.0, "count": 1, "delta_extra": 1e-7}
    fake = RoundEvents.from_json({o: {u: dict(event) for u in ("user", "record")} for o in ("server", "model")})
    monkeypatch.setattr(budget, "planned_events", lambda *a, **k: fake)
    threat = ThreatModel.parse("server=trusted,epsilon=8,delta=1e-5")
    for n, finite in ((20, True), (200, False)):
        rounds = [(r, "dp") for r in range(1, n + 1)]
        counted = planned_epsilon(rounds, threat, 10, {}, "pld")
        direct = _round_by_round(rounds, threat, 10, {}, "pld", None)
        assert counted == pytest.approx(direct) if finite else all(math.isinf(e) for e in counted.values())
        assert all(math.isfinite(e) == finite for e in direct.values())


def test_round_count_beyond_any_run_is_refused() -> None:
    with pytest.raises(ConfigError, match="1,000,000 rounds"):
        resolve_plan("plaintext", MAX_PLAN_ROUNDS + 1)
    result = CliRunner().invoke(main, ["plan", "--rounds", str(MAX_PLAN_ROUNDS + 1), "--plan", "plaintext"])
    assert result.exit_code != 0 and "beyond" in result.output


def test_plan_table_groups_alike_rounds_and_json_keeps_each(tmp_path) -> None:
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(main, ["plan", "--rounds", "7", "--plan", "1-3:plaintext,4-5:secagg,6-7:plaintext",
                                       "--clients", "10", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "1-3" in result.output and "4-5" in result.output and "6-7" in result.output
    import json
    assert [p["round"] for p in json.loads(out.read_text())["rounds"]] == list(range(1, 8))
