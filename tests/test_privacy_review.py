"""Adversarial review of issue 12's privacy claims: reachable configurations in which an accepted plan promised less
than the run's ledger then reported, the ledger reported a figure not true for the declared observer, or odd options
crashed ``privfed plan`` / ``privfed run`` with a foreign exception. One regression test per finding; tiny models and
one or two rounds each."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("dp_accounting")

from protocols import registry  # noqa: E402
from protocols.base import ClientUpdate  # noqa: E402
from protocols.dp.ledger import PrivacyLedger  # noqa: E402
from protocols.errors import ConfigError, PrivfedError  # noqa: E402
from privfed.runtime.local import run_round  # noqa: E402
from privfed.threat import PlanRefused, ThreatModel, resolve_plan  # noqa: E402
from privfed.threat.budget import planned_epsilon, runtime_options  # noqa: E402

TINY = ["model.hidden=8", "model.embedding=4", "data.max_chars_per_client=800"]


def _run(overrides: list[str]):
    from privfed.experiment.fedavg import run_fedavg
    from privfed.fl.config import load_config

    return run_fedavg(load_config(None, TINY + overrides))


def test_dp_sgd_target_mode_plans_the_schedule_the_trainer_runs_not_a_smaller_declared_one() -> None:
    """Finding: ``_plan_options`` let a declared ``local_steps``/``record_sample_rate`` win over the schedule derived
    from the data (setdefault), so target mode calibrated z for 1 step at rate 0.001 while each client ran 3 steps
    at rate ~1: the plan promised <= 3 and the ledger reported far more."""
    pytest.importorskip("opacus")
    result = _run(["train.max_batches=3", "fl.rounds=1", "fl.clients_per_round=2", "plan=dp-sgd",
                   "threat.server=trusted", "threat.dp_unit=record", "threat.epsilon=3",
                   "protection.options.dp-sgd.local_steps=1", "protection.options.dp-sgd.record_sample_rate=0.001"])
    last = result.rounds[-1]
    assert last["epsilon_unit"] == "record"
    assert isinstance(last["epsilon_model"], float) and last["epsilon_model"] <= 3.0 + 1e-9
