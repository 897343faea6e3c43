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
        event = result.info["dp_event"]
        assert event == {"mechanism": "gaussian", "noise_multiplier": 1.1, "sample_rate": 0.5, "count": 1,
                         "level": "user", "placement": "central"}
        assert result.info["dp_denominator"] == 4.0
        ledger.record(r, event)
    from protocols.dp.accounting import epsilon_for
    assert ledger.epsilon(1e-5, "rdp") == pytest.approx(epsilon_for(1.1, 0.5, 3, 1e-5, "rdp"))


def test_noised_count_is_accounted_as_two_gaussians() -> None:
    protocol = registry.create("dp", {**STANDARD, "denominator": "noised-count", "noise_multiplier": 2.0})
    result = run_round(protocol, 1, _updates(5)).result
    assert result.info["dp_event"]["noise_multiplier"] == pytest.approx(2.0 / math.sqrt(2))
    assert result.info["dp_denominator"] >= 1.0


def test_local_dp_laplace_event_and_level() -> None:
    protocol = registry.create("local-dp", {**STANDARD, "mechanism": "laplace", "noise_multiplier": 4.0})
    result = run_round(protocol, 1, _updates(3)).result
    event = result.info["dp_event"]
    assert event["mechanism"] == "laplace" and event["level"] == "local" and event["sample_rate"] == 1.0
    ledger = PrivacyLedger()
    ledger.record(1, event)
    # Laplace with scale / L1 sensitivity 4 is pure 0.25-DP per release
    assert ledger.epsilon(1e-5) <= 0.25 + 1e-3


def test_secagg_dp_accounts_for_survivors_only() -> None:
    protocol = registry.create("secagg+dp", {**STANDARD, "noise_multiplier": 1.0, "expected_clients": 5})
    full = run_round(protocol, 1, _updates(5)).result
    dropped = run_round(protocol, 2, _updates(5), drops={0: "before-upload"}).result
    assert full.info["dp_noise_survivors"] == 5 and dropped.info["dp_noise_survivors"] == 4
    z_full = full.info["dp_event"]["noise_multiplier"]
    z_drop = dropped.info["dp_event"]["noise_multiplier"]
    assert z_full == pytest.approx(1.0, rel=1e-4) and z_full <= 1.0  # rounding slack only lowers it
    assert z_drop == pytest.approx(math.sqrt(4 / 5), rel=1e-4)
    assert "4 surviving clients of 5" in dropped.info["dp_event"]["note"]
    assert 0 < dropped.info["dp_event"]["delta_extra"] < 1e-11
    ledger = PrivacyLedger()
    ledger.record(1, full.info["dp_event"])
    one = ledger.epsilon(1e-5)
    ledger.record(2, dropped.info["dp_event"])
    assert ledger.epsilon(1e-5) > one


def test_dp_sgd_round_event_is_the_worst_client_or_none() -> None:
    protocol = registry.create("dp-sgd", {**STANDARD, "noise_multiplier": 1.0})
    protocol.report_training(1, 0, 1.0, 0.1, 30)
    protocol.report_training(1, 1, 1.0, 0.25, 12)
    result = run_round(protocol, 1, _updates(2)).result
    event = result.info["dp_event"]
    assert event["level"] == "record" and event["sample_rate"] == 0.25 and event["count"] == 30
    missing = run_round(protocol, 2, _updates(2)).result.info["dp_event"]
    assert missing["mechanism"] == "none"  # no report: epsilon infinite, never silent
    ledger = PrivacyLedger()
    ledger.record(2, missing)
    assert ledger.epsilon(1e-5) == math.inf


def test_dp_protections_run_under_bench() -> None:
    from privfed.bench.aggregation import BenchSpec, bench_aggregation

    for name in ("dp", "local-dp", "secagg+dp"):
        record = bench_aggregation(BenchSpec(name, 5, 200))
        info = record["result"]["info"]
        assert info["dp_noise_std"] > 0 and "dp_event" in info
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
    assert result.info["dp_event"]["noise_multiplier"] == 1.0
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
