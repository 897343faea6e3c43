"""The privacy ledger: frozen events, save and re-derive, levels kept apart, un-noised releases make epsilon inf."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

pytest.importorskip("dp_accounting")

from protocols.dp.accounting import epsilon_for  # noqa: E402
from protocols.dp.ledger import PrivacyEvent, PrivacyLedger  # noqa: E402
from protocols.errors import ConfigError  # noqa: E402

from protocols.dp.events import central_events, dpsgd_events, local_events, no_dp_events  # noqa: E402

USER = {"mechanism": "gaussian", "noise_multiplier": 2.0, "sample_rate": 1.0, "count": 1, "level": "user",
        "placement": "central"}
ROUND = central_events(2.0, 1.0)  # model users: Gaussian z=2; the server: no bound


def test_events_are_frozen_and_validated() -> None:
    event = PrivacyEvent.from_dict(1, USER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.noise_multiplier = 9.0  # type: ignore[misc]
    for bad, name in (({"level": "row"}, "level"), ({"noise_multiplier": -1.0}, "noise_multiplier"),
                      ({"sample_rate": 2.0}, "sample_rate"), ({"count": 0}, "count"),
                      ({"mechanism": "exponential"}, "mechanism"), ({"colour": 1}, "unknown"),
                      ({"observer": "everyone"}, "observer"), ({"noise_multiplier": None}, "finite")):
        with pytest.raises(ConfigError, match=name):
            PrivacyEvent.from_dict(1, {**USER, **bad})


def test_ledger_composes_rounds_and_round_trips_through_json() -> None:
    ledger = PrivacyLedger()
    for r in range(1, 6):
        ledger.record(r, ROUND)
    eps = ledger.epsilon(1e-5, "pld")
    assert eps == pytest.approx(epsilon_for(2.0, 1.0, 5, 1e-5, "pld"))
    again = PrivacyLedger.from_json(ledger.to_json())
    assert again.events == ledger.events
    assert again.epsilon(1e-5, "pld") == eps
    assert again.epsilon(1e-5, "rdp") >= eps
    summary = ledger.summary(1e-5)
    assert summary["epsilon"]["model"]["user"] == eps and not summary["unprotected_release"]
    assert summary["epsilon"]["server"]["user"] == math.inf  # central DP: never one figure for both observers
    assert eps < summary["epsilon"]["model"]["record"] < math.inf  # user level bounds record level (z / 2)
    json.dumps(summary)


def test_unprotected_round_makes_epsilon_infinite_and_survives_saving() -> None:
    ledger = PrivacyLedger()
    ledger.record(1, ROUND)
    ledger.record_unprotected(2)
    assert ledger.epsilon(1e-5) == math.inf
    again = PrivacyLedger.from_json(ledger.to_json())
    assert again.epsilon(1e-5) == math.inf
    assert again.summary(1e-5)["unprotected_release"] is True


def test_user_and_record_levels_compose_honestly() -> None:
    """Two dp rounds and two dp-sgd rounds: no user-level bound (DP-SGD gives none), and the record level counts
    the user-level rounds too (they bound it)."""
    ledger = PrivacyLedger()
    ledger.record(1, ROUND)
    ledger.record(2, ROUND)
    sgd = dpsgd_events([{"noise_multiplier": 1.0, "sample_rate": 0.1, "count": 20}])
    ledger.record(3, sgd)
    ledger.record(4, sgd)
    assert ledger.epsilon(1e-5, level="user") == math.inf
    only_sgd = PrivacyLedger()
    only_sgd.record(3, sgd)
    only_sgd.record(4, sgd)
    assert ledger.epsilon(1e-5, level="record") > only_sgd.epsilon(1e-5, level="record")
    assert ledger.epsilon(1e-5, level="record", observer="server") == math.inf  # dp rounds: server saw updates
    local = PrivacyLedger()
    local.record(1, local_events(2.0))
    assert local.epsilon(1e-5, observer="server") == local.epsilon(1e-5, observer="model") < math.inf
    nothing = PrivacyLedger()
    nothing.record(1, no_dp_events("plaintext"))
    assert all(e == math.inf for row in nothing.table(1e-5).values() for e in row.values())


def test_delta_extra_is_charged() -> None:
    base = PrivacyLedger([PrivacyEvent.from_dict(1, USER)])
    assert base.epsilon(1e-5) == pytest.approx(epsilon_for(2.0, 1.0, 1, 1e-5))
    charged = PrivacyLedger([PrivacyEvent.from_dict(1, {**USER, "delta_extra": 1e-12})])
    assert charged.epsilon(1e-5) >= base.epsilon(1e-5)
    hopeless = PrivacyLedger([PrivacyEvent.from_dict(1, {**USER, "delta_extra": 1e-3})])
    assert hopeless.epsilon(1e-5) == math.inf


def test_bad_ledger_input() -> None:
    with pytest.raises(ConfigError, match="delta"):
        PrivacyLedger().epsilon(1.5)
    with pytest.raises(ConfigError, match="ledger"):
        PrivacyLedger.from_json("{}")
    assert PrivacyLedger().epsilon(1e-5) == 0.0


def test_distributed_dp_tails_do_not_exhaust_delta_over_many_rounds() -> None:
    """Rounding and truncation tails are charged as (1 + e^eps) * beta; over 20 rounds of secagg+dp at z = 1 they
    must not push a finite epsilon to infinity (they did with beta = 1e-12 at round 7 of a 10-client run)."""
    import numpy as np

    from protocols import registry
    from protocols.base import ClientUpdate
    from protocols.dp.ledger import PrivacyLedger
    from privfed.runtime.local import run_round

    protocol = registry.create("secagg+dp", {"max_weight": 1.0, "clip": 1.0, "noise_multiplier": 1.0})
    updates = {c: ClientUpdate(np.full(2000, 0.001, dtype=np.float32), 1.0) for c in range(10)}
    events = run_round(protocol, 1, updates).result.info["dp_events"]
    ledger = PrivacyLedger()
    for r in range(1, 21):
        ledger.record(r, events)
    epsilon = ledger.epsilon(1e-5)
    assert np.isfinite(epsilon) and 15 < epsilon < 40
