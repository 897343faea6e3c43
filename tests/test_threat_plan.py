"""Plans checked against the threat model: the acceptance cases of issue 6 and the SecAgg/HE parameter checks."""

from __future__ import annotations

import pytest

from protocols.errors import ConfigError
from privfed.threat import CATALOGUE, PlanRefused, ThreatModel, parse_spec, resolve_plan, security_table
from privfed.threat.catalogue import RoundContext, unmet_requirements
from privfed.threat.costs import CostTable, load_costs

HBC = "server=honest-but-curious"


def everything(_: str) -> bool:
    return True


def test_parse_spec_spans_and_fallback() -> None:
    assert parse_spec("1-2:ckks,3:secagg", 3) == {1: "ckks", 2: "ckks", 3: "secagg"}
    assert parse_spec("plaintext", 2) == {1: "plaintext", 2: "plaintext"}
    assert parse_spec("2:dp, secagg", 3) == {1: "secagg", 2: "dp", 3: "secagg"}


@pytest.mark.parametrize("spec, needle", [
    ("1-2:ckks", "leaves rounds 3"),
    ("1-3:ckks,3:secagg", "round 3 is given twice"),
    ("1-4:ckks", "past the last round"),
    ("3-1:ckks", "forwards"),
    ("a-b:ckks", "not a round span"),
    ("ckks,secagg", "more than one entry"),
    ("1-3:", "no protection name"),
])
def test_bad_specs(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_spec(spec, 3)


def test_unknown_protection_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown protection 'rot13'"):
        resolve_plan("rot13", 2, HBC)


@pytest.mark.parametrize("name", ["plaintext", "dp"])
def test_hbc_server_refuses_plaintext_or_central_dp_in_round_1(name: str) -> None:
    with pytest.raises(PlanRefused) as info:
        resolve_plan(f"1:{name},2-3:secagg", 3, HBC)
    message = str(info.value)
    assert "round 1" in message and repr(name) in message
    assert "in the clear" in message
    assert "would meet it in round 1: " in message and "secagg" in message.split("would meet it in round 1: ")[1]
    assert "round 2" not in message  # only the failing round is named


def test_ckks_then_secagg_accepted() -> None:
    plan = resolve_plan("1-3:ckks,4-6:secagg", 6, HBC)
    assert [p.protection for p in plan] == ["ckks"] * 3 + ["secagg"] * 3
    assert [p.round for p in plan] == [1, 2, 3, 4, 5, 6]
    assert all(p.reason for p in plan)


def test_epsilon_target_refuses_a_plan_without_dp() -> None:
    with pytest.raises(PlanRefused) as info:
        resolve_plan("1-3:ckks,4-6:secagg+dp", 6, HBC + ",epsilon=8,delta=1e-5")
    message = str(info.value)
    assert "round 1" in message and "'ckks'" in message and "DP noise in every round" in message
    assert "ckks+dp" in message and "secagg+dp" in message
    assert "round 4" not in message


def test_epsilon_target_with_trusted_server_refuses_plaintext_accepts_dp() -> None:
    with pytest.raises(PlanRefused, match="round 2"):
        resolve_plan("1:dp,2:plaintext", 2, "server=trusted,epsilon=4")
    assert [p.protection for p in resolve_plan("dp", 2, "server=trusted,epsilon=4")] == ["dp", "dp"]


def test_auto_with_epsilon_and_hbc_server_picks_dp_that_hides_updates_every_round() -> None:
    plan = resolve_plan("auto", 8, HBC + ",epsilon=8", clients=10, is_available=everything)
    assert len(plan) == 8
    for planned in plan:
        entry = CATALOGUE[planned.protection]
        assert entry.has_dp and entry.update_hiding == "cryptographic" and not entry.dp_trusts_server
        assert planned.reason.startswith("auto:")
    assert {p.protection for p in plan} <= {"secagg+dp", "ckks+dp"}


def test_auto_follows_the_measured_costs() -> None:
    base = load_costs()
    cheap_ckks = CostTable({**base.figures, "ckks+dp": {"total_seconds": 0.0, "upload_bytes_per_client": 0}},
                           base.clients, base.params, "test")
    plan = resolve_plan("auto", 2, HBC + ",epsilon=8", costs=cheap_ckks, is_available=everything)
    assert [p.protection for p in plan] == ["ckks+dp", "ckks+dp"]
    # a colluding client rules HE out whatever it costs
    plan = resolve_plan("auto", 2, HBC + ",epsilon=8,collusion=1", costs=cheap_ckks, is_available=everything)
    assert [p.protection for p in plan] == ["secagg+dp", "secagg+dp"]


def test_auto_without_target_adds_no_noise_and_trusted_server_gets_plaintext() -> None:
    assert {p.protection for p in resolve_plan("auto", 3, "server=trusted", is_available=everything)} == {"plaintext"}
    assert all(not CATALOGUE[p.protection].has_dp
               for p in resolve_plan("auto", 3, HBC, is_available=everything))


def test_auto_inside_a_span_and_callable_plans() -> None:
    plan = resolve_plan("1-2:ckks,3-4:auto", 4, HBC, clients=10, is_available=everything)
    assert [p.protection for p in plan[:2]] == ["ckks", "ckks"]
    assert plan[2].reason.startswith("auto:") and CATALOGUE[plan[2].protection].update_hiding == "cryptographic"
    with pytest.raises(PlanRefused, match="round 1.*'ckks'"):  # collusion breaks the shared key
        resolve_plan("1-2:ckks,3-4:auto", 4, HBC + ",collusion=1", clients=10, is_available=everything)
    plan = resolve_plan(lambda r: "ckks" if r % 2 else "secagg", 4, HBC)
    assert [p.protection for p in plan] == ["ckks", "secagg", "ckks", "secagg"]
    with pytest.raises(ConfigError, match="round 1"):
        resolve_plan(lambda r: None, 2, HBC)  # type: ignore[arg-type, return-value]


def test_he_refused_when_a_client_colludes() -> None:
    with pytest.raises(PlanRefused) as info:
        resolve_plan("1-2:paillier", 2, HBC + ",collusion=1")
    assert "key-holding client colluding with the server" in str(info.value)
    assert "secagg" in str(info.value)


def test_secagg_threshold_against_collusion_and_dropout() -> None:
    hbc = ThreatModel.parse(HBC + ",collusion=7")
    unmet = unmet_requirements("secagg", hbc, RoundContext(10))
    assert any("does not exceed the declared collusion=7" in u and "secagg.threshold=8" in u for u in unmet)
    assert not unmet_requirements("secagg", hbc, RoundContext(10, {"threshold": 8}))
    drops = ThreatModel.parse(HBC + ",dropout=0.4")
    unmet = unmet_requirements("secagg", drops, RoundContext(10))  # default t = ceil(2n/3) = 7, n - t = 3 < 4
    assert any("does not cover the 4 expected dropouts" in u for u in unmet)
    assert not unmet_requirements("secagg", drops, RoundContext(10, {"threshold": 6}))
    both = ThreatModel.parse(HBC + ",collusion=6,dropout=0.4")
    assert any("no threshold meets both" in u for u in unmet_requirements("secagg", both, RoundContext(10)))
    # the refusal names the round and the fix through resolve_plan too
    with pytest.raises(PlanRefused, match=r"round 1.*'secagg'.*threshold t=7"):
        resolve_plan("secagg", 2, HBC + ",collusion=7", clients=10)
    assert resolve_plan("secagg", 2, {"server": "honest-but-curious", "collusion": 7, "clients": 10},
                        options={"secagg": {"threshold": 8}})


def test_secagg_invalid_parameters_for_the_round_are_refused() -> None:
    unmet = unmet_requirements("secagg", ThreatModel.parse(HBC), RoundContext(5, {"threshold": 9}))
    assert any("invalid for a round of 5 clients" in u for u in unmet)


def test_too_few_honest_survivors() -> None:
    unmet = unmet_requirements("secagg", ThreatModel.parse(HBC + ",collusion=1"), RoundContext(2, {"threshold": 2}))
    assert any("honest client" in u for u in unmet)
    assert any(">= 3 contributing" in u for u in unmet_requirements("ckks", ThreatModel.parse(HBC), RoundContext(2)))


def test_local_dp_only_when_declared_acceptable() -> None:
    with pytest.raises(PlanRefused, match="noised update"):
        resolve_plan("local-dp", 1, HBC + ",epsilon=8")
    assert resolve_plan("local-dp", 1, HBC + ",epsilon=8,update_privacy=local-dp")
    with pytest.raises(PlanRefused, match="record-level"):
        resolve_plan("dp-sgd", 1, "server=trusted,epsilon=8")
    assert resolve_plan("dp-sgd", 1, "server=trusted,epsilon=8,dp_unit=record")


def test_aggregate_hidden_from_server_needs_he_released_to_key_holders() -> None:
    threat = HBC + ",server_may_see_aggregate=false"
    with pytest.raises(PlanRefused, match="release=key-holders"):
        resolve_plan("ckks", 1, threat)
    with pytest.raises(PlanRefused, match="delivers it to the server"):
        resolve_plan("secagg", 1, threat)
    assert resolve_plan("ckks", 1, threat, options={"ckks": {"release": "key-holders"}})


def test_malicious_server_is_refused_with_a_clear_message() -> None:
    for spec in ("auto", "secagg", "ckks"):
        with pytest.raises(PlanRefused, match="malicious server"):
            resolve_plan(spec, 1, "server=malicious", is_available=everything)


def test_no_threat_declared_accepts_everything() -> None:
    assert [p.protection for p in resolve_plan("1:plaintext,2:dp", 2)] == ["plaintext", "dp"]


def test_security_table_has_one_row_per_protection() -> None:
    table = security_table()
    for name in CATALOGUE:
        assert f"| `{name}` |" in table
    assert table.count("\n") == len(CATALOGUE) + 2


def test_configured_noise_that_misses_the_epsilon_target_is_refused_with_a_fix() -> None:
    pytest.importorskip("dp_accounting")
    threat = "server=trusted,epsilon=8"
    with pytest.raises(PlanRefused, match=r"round 1.*epsilon [0-9.]+ against model users.* > target 8.*dp\.noise_multiplier="):
        resolve_plan("dp", 20, threat, options={"dp": {"noise_multiplier": 2.0}})
    plan = resolve_plan("dp", 20, threat, options={"dp": {"noise_multiplier": 5.0}})
    assert "<= 8" in plan[0].reason
    # unconfigured: advice in the reason, not a refusal (the run may calibrate the noise)
    plan = resolve_plan("dp", 20, threat)
    assert "noise multiplier not configured" in plan[0].reason and "dp.noise_multiplier=" in plan[0].reason


def test_distributed_noise_is_discounted_for_colluders_and_dropouts() -> None:
    pytest.importorskip("dp_accounting")
    from privfed.threat.budget import check_budget

    rounds = [(r, "secagg+dp") for r in range(1, 11)]
    options = {"secagg+dp": {"noise_multiplier": 4.0, "expected_clients": 10}}
    alone = check_budget(rounds, ThreatModel.parse("server=hbc,epsilon=50"), 10, options)
    colluded = check_budget(rounds, ThreatModel.parse("server=hbc,epsilon=50,collusion=3,dropout=0.2"), 10, options)
    assert alone.epsilon is not None and colluded.epsilon is not None
    assert colluded.epsilon["server"] > colluded.epsilon["model"] > alone.epsilon["model"]
    assert alone.epsilon["server"] == alone.epsilon["model"]  # no colluders, no dropouts: the same noise
    assert "against the server (+ colluders)" in colluded.detail


def test_exact_ckks_release_to_a_curious_server_is_refused() -> None:
    with pytest.raises(PlanRefused, match="flood_std=0"):
        resolve_plan("ckks", 1, HBC, options={"ckks": {"flood_std": 0.0}})
    assert resolve_plan("ckks", 1, HBC, options={"ckks": {"flood_std": 0.0, "release": "key-holders"}})
    assert resolve_plan("ckks", 1, "server=trusted", options={"ckks": {"flood_std": 0.0}})


def test_security_md_table_is_the_catalogue_rendered() -> None:
    """One source of truth: SECURITY.md's table is regenerated from the catalogue, never edited by hand."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "SECURITY.md").read_text(encoding="utf-8")
    assert security_table() in text
