"""Where a Flower node's update comes from: the bench's synthetic vectors, or local LSTM/GRU training.

``synthetic``: :func:`privfed.bench.aggregation.synthetic_updates` with the run's ``clients``, ``params`` and
``seed``, picking this node's ``partition-id`` — the very inputs the in-process runtime gets, so a Flower round can
be checked against ``run_round`` on the same data. ``train``: the node trains the global model on its own data
(node-config ``data-path`` cut with the run's schema; without a schema, a simulated partition) and keeps the update
(new minus old parameters) and its sample count, capped at the public bound, as the weight.

Threat model: the experiment seed drives data only (never keys, masks or noise, which the protocols draw from the
OS). The update never leaves the node except inside the protocol's upload.
"""

from __future__ import annotations

from typing import Any, Mapping

from flwr.app import Context, RecordDict

from protocols.base import ClientUpdate
from protocols.errors import ConfigError, MessageError

from .config import FlowerRunConfig, build_protocol

__all__ = ["synthetic_update", "train_update", "evaluate_update", "TrainingReport"]


def synthetic_update(partition_id: int, config: FlowerRunConfig) -> ClientUpdate:
    from privfed.bench.aggregation import synthetic_updates

    if not 0 <= partition_id < config.clients:
        raise ConfigError(f"synthetic updates need node-config partition-id in [0, {config.clients}), "
                          f"got {partition_id}")
    return synthetic_updates(config.clients, config.params, config.seed)[partition_id]


def _round_of(content: RecordDict) -> int:
    try:
        return int(content.config_records["privfed-train"]["round"])
    except (KeyError, TypeError, ValueError):
        raise MessageError("malformed train message") from None


def train_update(content: RecordDict, context: Context, config: FlowerRunConfig, client_id: int
                 ) -> tuple[ClientUpdate, Mapping[str, Any], dict[str, Any], dict[str, float] | None]:
    """Train locally from the global model in ``content``: (update, plain metrics, the protocol's base options, the
    DP-SGD accounting report for the server's ledger or None)."""
    from protocols import registry

    from .training import client_train, node_data, protocol_base_options, task_for

    task = task_for(config)
    split = node_data(task, context)
    protection = config.protection_for(_round_of(content))
    client_training = getattr(registry.protocol_class(protection), "client_training", "standard")
    base = protocol_base_options(config, protection)
    extra: dict[str, Any] = {}
    reporter = None
    if client_training != "standard":  # as privfed's FedAvg loop: the protection's option table and its instance
        reporter = TrainingReport(build_protocol(config, protection, key_dir=str(context.node_config.get("key-dir", "")),
                                                 secret=True, base=base, node_config=context.node_config))
        extra = {**dict(task.config.protection.options.get(protection, {})), "protocol": reporter}
    update, metrics = client_train(content, split, task, client_training, client_id, extra)
    return update, metrics, base, (reporter.report if reporter is not None else None)


class TrainingReport:
    """Stands in for the protocol the DP-SGD trainer reports to (``report_training``): keeps the node's report so
    it can travel to the server's protocol instance, which accounts the round (its parameters are public: noise
    multiplier, sampling rate, steps). Everything else is the wrapped protocol's."""

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self.report: dict[str, float] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)

    def report_training(self, round_id: int, client_id: int, noise_multiplier: float, sample_rate: float,
                        steps: int) -> None:
        self._protocol.report_training(round_id, client_id, noise_multiplier, sample_rate, steps)  # validates
        self.report = {"noise_multiplier": float(noise_multiplier), "sample_rate": float(sample_rate),
                       "steps": int(steps)}


def evaluate_update(content: RecordDict, context: Context, config: FlowerRunConfig) -> dict[str, float]:
    """This node's evaluation counts and sums for the model in ``content``."""
    from .training import node_data, node_evaluate, task_for

    task = task_for(config)
    return node_evaluate(content, node_data(task, context), task)
