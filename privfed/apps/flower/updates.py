"""Where a Flower node's update comes from: the bench's synthetic vectors, or local LSTM/GRU training.

``synthetic``: :func:`privfed.bench.aggregation.synthetic_updates` with the run's ``clients``, ``params`` and
``seed``, picking this node's ``partition-id`` — the very inputs the in-process runtime gets, so a Flower round can
be checked against ``run_round`` on the same data. ``train``: the node trains the global model on its own
partition with privfed.fl and keeps the update (new minus old parameters) and its sample count as the weight.

Threat model: the experiment seed drives data only (never keys, masks or noise, which the protocols draw from the
OS). The update never leaves the node except inside the protocol's upload.
"""

from __future__ import annotations

from typing import Any, Mapping

from flwr.app import Context, RecordDict

from protocols.base import ClientUpdate
from protocols.errors import ConfigError, MessageError

from .config import FlowerRunConfig

__all__ = ["synthetic_update", "train_update"]


def synthetic_update(partition_id: int, config: FlowerRunConfig) -> ClientUpdate:
    from privfed.bench.aggregation import synthetic_updates

    if not 0 <= partition_id < config.clients:
        raise ConfigError(f"synthetic updates need node-config partition-id in [0, {config.clients}), "
                          f"got {partition_id}")
    return synthetic_updates(config.clients, config.params, config.seed)[partition_id]


def train_update(content: RecordDict, context: Context, config: FlowerRunConfig
                 ) -> tuple[ClientUpdate, Mapping[str, Any], dict[str, Any]]:
    """Train locally from the global model in ``content``: (update, plain metrics, the protocol's base options)."""
    from protocols import registry

    from .training import client_train, protocol_base_options

    partition = context.node_config.get("partition-id", -1)
    if not isinstance(partition, int) or isinstance(partition, bool) or partition < 0:
        raise ConfigError("local training needs node-config partition-id (this node's partition of the data)")
    try:
        round_id = int(content.config_records["privfed-train"]["round"])
    except (KeyError, TypeError, ValueError):
        raise MessageError("malformed train message") from None
    protection = config.protection_for(round_id)
    client_training = registry.protocol_class(protection).client_training
    base = protocol_base_options(config, protection)
    extra: dict[str, Any] = {}
    if client_training != "standard":  # as privfed.fl's loop: the protection's option table and its instance
        from .config import build_protocol
        from .training import experiment

        fl_config = experiment(config.fl_overrides, config.seed)[0]
        extra = {**dict(fl_config.protection.options.get(protection, {})),
                 "protocol": build_protocol(config, protection, key_dir=str(context.node_config.get("key-dir", "")),
                                            secret=True, base=base)}
    update, metrics = client_train(content, partition, config, client_training, extra)
    return update, metrics, base
