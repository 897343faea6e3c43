"""Submit-side planning of a Flower run: the threat check, ε-target calibration and refusals made before any round.

``privfed run -c runtime.kind=flower`` with an epsilon target in ``[threat]`` is calibrated here, on the submitting
side, by :func:`privfed.experiment.fedavg.plan_with_target` — the very function the in-process FedAvg loop calls,
which calls :func:`privfed.threat.budget.calibrate` (one source of truth). The calibrated noise multiplier is written
into the experiment configuration the run carries (``protection.options.<name>.noise_multiplier``), so the
ServerApp and every node build the protection with it, and the ServerApp's ledger records what the protocol then
spends. The model size secagg+dp's rounding slack assumes comes from the public schema (no data is read).

Refused here, with the reason, before anything is submitted:

* a target with DP-SGD: its record-level events depend on each node's data size (steps per round, record sampling
  rate), which the submitting side never sees, so no multiplier can be promised to meet the target;
* ``release="key-holders"`` with training (:data:`KEY_HOLDERS_REASON`).

Threat model: the run configuration is public (it reaches the SuperLink and every node); the calibration uses only
public parameters (the plan, the declared threat, the number of nodes, the schema's model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from protocols.errors import ConfigError

__all__ = ["calibrated_config", "KEY_HOLDERS_REASON", "THRESHOLD_REASON", "refuse_key_holders"]

#: why release="key-holders" cannot train over privfed's Flower apps (one text: submit side and ServerApp)
KEY_HOLDERS_REASON = (
    "release='key-holders' with training is refused over Flower: privfed's Flower FedAvg keeps the global model on "
    "the server (it sends it in every train and evaluate message and checkpoints it in the run directory), and "
    "with key-holders release the server never learns the round's mean, so it cannot form the next model. The "
    "nodes cannot keep it among themselves either: Flower's Message API has no node-to-node channel, every message "
    "goes through the ServerApp, so a node that missed a decryption could only be resynchronised through "
    "server-relayed ciphertexts, which these apps do not implement. Use release='server' (updates stay hidden, "
    "the server learns the mean) or run in-process")


#: why threshold Paillier does not run over Flower yet (one text: submit side and ServerApp)
THRESHOLD_REASON = (
    "decryption='threshold' is refused over Flower: each key holder's share of the threshold key must be dealt to "
    "its own node before the run, and the Flower key dealer (python -m privfed.runtime.flower.keys) deals only a "
    "shared key; dealing shares inside the run would put them in server-relayed messages. Run threshold Paillier "
    "in-process, or use the shared key over Flower")


def refuse_key_holders(name: str, options: Mapping[str, Any]) -> None:
    """Raise ConfigError when ``name`` with ``options`` cannot run over privfed's Flower apps: a round's mean
    released to the key holders only, or threshold decryption (its shares are not dealt to nodes)."""
    if options.get("release") == "key-holders":
        raise ConfigError(f"{name}: {KEY_HOLDERS_REASON}")
    if options.get("decryption") == "threshold":
        raise ConfigError(f"{name}: {THRESHOLD_REASON}")


def _model_size(config: Any) -> int | None:
    from privfed.experiment.fedavg import model_size_bound
    from privfed.fl.schema import TaskSchema

    schema = TaskSchema.from_json(json.loads(Path(config.data.schema).expanduser().read_text(encoding="utf-8")))
    return model_size_bound(schema.model_spec, config.seed)


def calibrated_config(config: Any, clients: int) -> tuple[Any, list[Any], dict[str, float]]:
    """(the experiment configuration with calibrated noise multipliers, the checked plan, the multipliers).
    Without an epsilon target: the configuration unchanged and the plan as ``privfed run`` resolves it."""
    from privfed.experiment.fedavg import declared_threat, plan_with_target
    from privfed.fl.config import config_from_table
    from privfed.threat import catalogue

    threat = declared_threat(config)
    plan_options = {name: dict(options) for name, options in config.protection.options.items()}
    model_size = _model_size(config) if threat.wants_dp else None
    try:
        plan, targeted = plan_with_target(config, clients, plan_options, model_size)
    except ConfigError:
        if threat.wants_dp and "dp-sgd" in str(config.plan):
            raise ConfigError(_dpsgd_reason()) from None
        raise
    for planned in plan:
        refuse_key_holders(planned.protection, config.protection.for_protection(planned.protection, 1.0))
        if threat.wants_dp and catalogue.get(planned.protection).dp == "dp-sgd":
            raise ConfigError(_dpsgd_reason())
    if not targeted:
        return config, plan, {}
    table = config.to_table()
    options = table.setdefault("protection", {}).setdefault("options", {})
    for name, z in targeted.items():
        options.setdefault(name, {})["noise_multiplier"] = z
    return config_from_table(table), plan, targeted


def _dpsgd_reason() -> str:
    return ("an epsilon target with DP-SGD is not calibrated over Flower: its record-level privacy events depend on "
            "each node's data size (local steps, record sampling rate), which the submitting side never sees; set "
            "protection.options.dp-sgd.noise_multiplier and drop [threat] epsilon (each node then reports its "
            "events to the server's ledger)")
