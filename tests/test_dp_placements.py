"""Placements: option validation, wrapper phases, ledger events per placement, survivors-only accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privfed.runtime.local import run_round
from protocols import registry
from protocols.base import ClientUpdate
from protocols.dp.ledger import PrivacyLedger
from protocols.errors import ConfigError

STANDARD = {"max_weight": 10.0, "clip": 1.0}
NAMES = ["dp", "local-dp", "dp-sgd", "secagg+dp"]


def _updates(n: int, dim: int = 8) -> dict[int, ClientUpdate]:
    return {c: ClientUpdate(np.full(dim, 0.01 * (c + 1), np.float32), float(c + 1)) for c in range(n)}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("option, value", [
    ("clip_norm", 0.0), ("clip_norm", -1.0), ("clip_norm", float("nan")),
    ("noise_multiplier", 0.0), ("noise_multiplier", float("inf")),
    ("delta", 0.0), ("delta", 1.0),
    ("sample_rate", 0.0), ("sample_rate", 1.01),
    ("expected_clients", 0), ("accountant", "moments"), ("denominator", "exact"),
    ("per_layer", [0, 3]),
])
def test_bad_parameters_raise_config_error_naming_them(name: str, option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=option):
        registry.create(name, {**STANDARD, option: value})


@pytest.mark.parametrize("name", NAMES)
def test_standard_options_are_validated_and_unknown_options_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="max_weight"):
        registry.create(name, {"max_weight": -1.0, "clip": 1.0})
    with pytest.raises(ConfigError):
        registry.create(name, {**STANDARD, "no_such_option": 1})


@pytest.mark.parametrize("name, inner_phases", [("dp", ("upload",)), ("local-dp", ("upload",)),
                                                ("dp-sgd", ("upload",)),
                                                ("secagg+dp", ("advertise-keys", "share-keys", "masked-input",
                                                               "unmask"))])
def test_wrapper_takes_the_inner_protocols_phases(name: str, inner_phases: tuple[str, ...]) -> None:
    cls = registry.protocol_class(name)
    assert cls.name == name and cls.phases == inner_phases
    protocol = registry.create(name, STANDARD)
    assert protocol.name == name
    assert protocol.resolve_drop_phase("before-upload") == protocol.upload_phase
    assert (registry.protocol_class("dp-sgd").client_training == "dp-sgd") and cls.client_training in (
        "standard", "dp-sgd")


def test_central_dp_event_is_recorded_by_the_ledger() -> None:
    protocol = registry.create("dp", {**STANDARD, "noise_multiplier": 1.1, "sample_rate": 0.5,
                                      "expected_clients": 4})
    ledger = PrivacyLedger()
    for r in (1, 2, 3):
        result = run_round(protocol, r, _updates(4)).result
        events = result.info["dp_events"]
        assert events["model"]["user"] == {"mechanism": "gaussian", "noise_multiplier": 1.1, "sample_rate": 0.5,
                                           "count": 1, "delta_extra": 0.0, "placement": "central", "note": ""}
        assert events["server"]["user"]["mechanism"] == "none"  # the server saw every clipped update
        assert events["model"]["record"]["noise_multiplier"] == pytest.approx(0.55)  # sensitivity 2S at record level
        assert result.info["dp_denominator"] == 4.0
        ledger.record(r, events)
    from protocols.dp.accounting import epsilon_for
    assert ledger.epsilon(1e-5, "rdp") == pytest.approx(epsilon_for(1.1, 0.5, 3, 1e-5, "rdp"))
    assert ledger.epsilon(1e-5, observer="server") == math.inf


def test_noised_count_is_accounted_as_two_gaussians() -> None:
    protocol = registry.create("dp", {**STANDARD, "denominator": "noised-count", "noise_multiplier": 2.0})
    result = run_round(protocol, 1, _updates(5)).result
    assert result.info["dp_events"]["model"]["user"]["noise_multiplier"] == pytest.approx(2.0 / math.sqrt(2))
    assert result.info["dp_denominator"] >= 1.0


@pytest.mark.parametrize("name,extra", [("local-dp", {}), ("secagg+dp", {}), ("ckks+dp", {}), ("dp-sgd", {}),
                                        ("dp", {"adaptive": True})])
def test_noised_count_is_refused_where_it_is_not_implemented(name: str, extra: dict) -> None:
    """Dividing by the exact count would release the participant count unaccounted (issue: silent exact count)."""
    if name == "ckks+dp":
        pytest.importorskip("tenseal")
    with pytest.raises(ConfigError, match="noised-count"):
        registry.create(name, {**STANDARD, "denominator": "noised-count", **extra})


def test_ckks_dp_never_clips_the_noise_shares() -> None:
    """The Gaussian share must reach the sum unclipped: the inner CKKS range is widened by 12 sigma."""
    pytest.importorskip("tenseal")
    protocol = registry.create("ckks+dp", {**STANDARD, "noise_multiplier": 1.0, "clip_norm": 1.0})
    inner = protocol.inner_for(3)
    sigma = protocol.per_client_std(3)
    assert inner.coded_range >= 1.0 + 12 * sigma
    noised = np.concatenate([protocol.noised(ClientUpdate(np.zeros(4000, np.float32), 1.0), 3).vector
                             for _ in range(3)])
    assert np.max(np.abs(noised)) < inner.coded_range  # none of 12,000 draws would have been clipped
    assert np.max(np.abs(noised)) > 1.0  # at the old range max(clip, 1) = 1 some of them would have been
    result = run_round(protocol, 1, _updates(3)).result
    assert 0 < result.info["dp_events"]["model"]["user"]["delta_extra"] < 1e-20


def test_local_dp_laplace_event_and_level() -> None:
    protocol = registry.create("local-dp", {**STANDARD, "mechanism": "laplace", "noise_multiplier": 4.0})
    result = run_round(protocol, 1, _updates(3)).result
    events = result.info["dp_events"]
    event = events["server"]["user"]
    assert event["mechanism"] == "laplace" and event["sample_rate"] == 1.0 and events["model"]["user"] == event
    ledger = PrivacyLedger()
    ledger.record(1, events)
    # Laplace with scale / L1 sensitivity 4 is pure 0.25-DP per release
    assert ledger.epsilon(1e-5) <= 0.25 + 1e-3


def test_secagg_dp_accounts_for_survivors_only() -> None:
    protocol = registry.create("secagg+dp", {**STANDARD, "noise_multiplier": 1.0, "expected_clients": 5})
    full = run_round(protocol, 1, _updates(5)).result
    dropped = run_round(protocol, 2, _updates(5), drops={0: "before-upload"}).result
    assert full.info["dp_noise_survivors"] == 5 and dropped.info["dp_noise_survivors"] == 4
    z_full = full.info["dp_events"]["model"]["user"]["noise_multiplier"]
    z_drop = dropped.info["dp_events"]["model"]["user"]["noise_multiplier"]
    assert z_full == pytest.approx(1.0, rel=1e-4) and z_full <= 1.0  # rounding slack only lowers it
    assert z_drop == pytest.approx(math.sqrt(4 / 5), rel=1e-4)
    assert "noise of 4  survivors of 5" in dropped.info["dp_events"]["model"]["user"]["note"]
    assert 0 < dropped.info["dp_events"]["model"]["user"]["delta_extra"] < 1e-11
    ledger = PrivacyLedger()
    ledger.record(1, full.info["dp_events"])
    one = ledger.epsilon(1e-5)
    ledger.record(2, dropped.info["dp_events"])
    assert ledger.epsilon(1e-5) > one


def test_distributed_dp_counts_only_honest_noise_against_the_server_and_no_amplification() -> None:
    protocol = registry.create("secagg+dp", {**STANDARD, "noise_multiplier": 1.0, "expected_clients": 5,
                                             "colluders": 2, "sample_rate": 0.05})
    events = run_round(protocol, 1, _updates(5)).result.info["dp_events"]
    server, model = events["server"]["user"], events["model"]["user"]
    assert server["sample_rate"] == 1.0 and model["sample_rate"] == 0.05  # the server knows who took part
    assert server["noise_multiplier"] == pytest.approx(math.sqrt(3 / 5), rel=1e-4)  # 3 honest of 5 shares


def test_distributed_dp_aborts_rather_than_spend_more_than_promised() -> None:
    from protocols.errors import ProtocolAbort

    protocol = registry.create("secagg+dp", {**STANDARD, "noise_multiplier": 1.0, "expected_clients": 5,
                                             "min_noise_survivors": 5})
    report = run_round(protocol, 1, _updates(5), drops={0: "before-upload"})
    assert report.result is None and "plan's epsilon assumed at least 5" in str(report.aborted)


def test_dp_sgd_round_event_is_the_worst_client_or_none() -> None:
    protocol = registry.create("dp-sgd", {**STANDARD, "noise_multiplier": 1.0})
    protocol.report_training(1, 0, 1.0, 0.1, 30)
    protocol.report_training(1, 1, 1.0, 0.25, 12)
    result = run_round(protocol, 1, _updates(2)).result
    events = result.info["dp_events"]
    event = events["model"]["record"]
    assert event["sample_rate"] == 0.25 and event["count"] == 30 and events["server"]["record"] == event
    assert events["model"]["user"]["mechanism"] == "none"  # record-level DP gives no user-level bound
    missing = run_round(protocol, 2, _updates(2)).result.info["dp_events"]
    assert missing["model"]["record"]["mechanism"] == "none"  # no report: epsilon infinite, never silent
    ledger = PrivacyLedger()
    ledger.record(2, missing)
    assert ledger.epsilon(1e-5, level="record") == math.inf


def test_dp_protections_run_under_bench() -> None:
    from privfed.bench.aggregation import BenchSpec, bench_aggregation

    for name in ("dp", "local-dp", "secagg+dp"):
        record = bench_aggregation(BenchSpec(name, 5, 200))
        info = record["result"]["info"]
        assert info["dp_noise_std"] > 0 and "dp_events" in info
        assert record["error_bound"] < info["dp_noise_std"]  # the non-DP bound, noise reported apart


def test_adaptive_clipping_tracks_the_median_norm_and_splits_the_budget() -> None:
    protocol = registry.create("dp", {"max_weight": 1.0, "clip": 10.0, "adaptive": True, "clip_norm": 0.1,
                                      "expected_clients": 20, "noise_multiplier": 1.0})
    # the update and the bit together form a Gaussian mechanism of multiplier z: 1/z^2 = 1/z_u^2 + 1/(2 sigma_b)^2
    assert protocol.update_multiplier ** -2 + (2 * protocol.adaptive.clip_count_std) ** -2 == pytest.approx(1.0)
    norms = np.linspace(1.0, 5.0, 20)  # median 3.0
    direction = np.ones(16, np.float32) / 4.0
    result = None
    for r in range(40):
        updates = {c: ClientUpdate((direction * norms[c]).astype(np.float32), 1.0) for c in range(20)}
        result = run_round(protocol, r + 1, updates, transcript=False).result
    assert result.mean.shape == (16,)
    assert 2.0 < result.info["clip_norm_next"] < 4.0
    assert result.info["dp_events"]["model"]["user"]["noise_multiplier"] == 1.0
    with pytest.raises(ConfigError, match="clip_count_std"):
        registry.create("dp", {**STANDARD, "adaptive": True, "clip_count_std": 0.1})
    with pytest.raises(ConfigError, match="central DP"):
        registry.create("local-dp", {**STANDARD, "adaptive": True})


def test_poisson_sampling_needs_a_declared_fixed_denominator() -> None:
    with pytest.raises(ConfigError, match="expected_clients"):
        registry.create("dp", {**STANDARD, "sample_rate": 0.1})
    protocol = registry.create("dp", {**STANDARD, "sample_rate": 0.1, "expected_clients": 3})
    assert protocol.describe()["sample_rate"] == 0.1
    registry.create("dp", {**STANDARD, "sample_rate": 0.1, "denominator": "noised-count"})
