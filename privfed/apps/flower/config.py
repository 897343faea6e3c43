"""The run configuration a privfed Flower app reads (``[tool.flwr.app.config]`` / ``flwr run --run-config``).

Flower run-config values are limited to str, int, float and bool, so structured values travel as short strings
(``options`` is a JSON object, ``drops`` is ``"2:after-upload,1:before-upload"``). Both apps parse the same keys
with :func:`parse_run_config`; every value is validated before any message is sent.

Threat model: the run configuration is chosen by whoever submits the run (the server's operator). A client
never takes its protection from it blindly: a node pins the protections it accepts in its own ``node-config``
(``protections="ckks,secagg"``), see :mod:`privfed.apps.flower.client_app`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from protocols.errors import ConfigError

__all__ = ["FlowerRunConfig", "parse_run_config", "parse_drops", "protocol_options", "build_protocol",
           "DEFAULT_MAX_WEIGHT", "DEFAULT_CLIP"]

#: the bench's bounds (privfed.bench.aggregation): synthetic weights are integers in [1, 100], values in [-1, 1]
DEFAULT_MAX_WEIGHT = 100.0
DEFAULT_CLIP = 1.0
UPDATE_SOURCES = ("synthetic", "train")


@dataclass(frozen=True)
class FlowerRunConfig:
    """Validated run configuration shared by the ServerApp and the ClientApp."""

    #: one protection, or a per-round plan "plaintext,ckks,secagg" (round r uses item (r - 1) mod length)
    protection: str = "plaintext"
    #: protocol keyword options (``max_weight`` and ``clip`` default to the bench's bounds); either one object for
    #: every protection or one object per protection name: {"secagg": {"threshold": 2}}
    options: Mapping[str, Any] = field(default_factory=dict)
    rounds: int = 1
    #: "synthetic": privfed.bench.aggregation.synthetic_updates keyed by the node's partition-id;
    #: "train": local LSTM/GRU training on the node's partition (privfed.fl)
    update_source: str = "synthetic"
    params: int = 1000
    seed: int = 0
    #: nodes taking part (the server waits for them, then keeps the lowest client ids) and synthetic partitions
    clients: int = 3
    #: seconds the server waits for the replies of one phase; a missing reply is that client's dropout
    reply_timeout: float = 60.0
    #: seconds a phase still waits after its first reply arrived (0 = wait up to reply_timeout)
    straggler_grace: float = 0.0
    #: seconds the server waits for ``clients`` nodes to connect
    connect_timeout: float = 60.0
    #: injected dropouts, round -> client id -> drop point (round 0: every round; same semantics as
    #: privfed.runtime.local.run_round). Text form: "2:after-upload,3/1:before-upload" (the second in round 3 only)
    drops: Mapping[int, Mapping[int, str]] = field(default_factory=dict)
    #: fault injection: the node holding this partition stops (its SuperNode is killed) when the first request
    #: after its upload reaches it. Only honoured by nodes started with node-config ``allow-fault-injection=true``.
    stop_after_upload: int = -1
    #: the round in which stop-after-upload applies (0: the first round whose protocol has a phase after upload)
    stop_round: int = 0
    #: where the ServerApp writes its JSON report ("" = do not write)
    report: str = ""
    #: directory of dealt HE keys on the SuperLink host: public material only (privfed.runtime.flower.keys)
    key_dir: str = ""
    #: privfed.fl experiment overrides for update_source="train" ("key=value;key=value")
    fl_overrides: str = ""
    #: the whole privfed experiment configuration as JSON (ExperimentConfig.to_table(); ``privfed run`` sets it);
    #: when set it replaces fl-overrides and seed
    experiment: str = ""
    #: the public task schema as JSON (privfed.fl.schema): the server builds the model from it, each node cuts its
    #: own data (node-config data-path) with it. Without it nodes simulate partitions of one data set (tests).
    schema: str = ""
    #: where the ServerApp writes a privfed run directory (rounds.jsonl, summary.json, transcripts); "" = none
    run_dir: str = ""
    #: the plan's reason for each round's protection ("|"-separated, as privfed.threat.resolve_plan gave them)
    plan_reasons: str = ""
    #: continue the run directory at run-dir from its last checkpoint (privfed run --resume)
    resume: bool = False
    #: stop after this round as if the server were killed (0 = run every round; resume testing)
    stop_after: int = 0
    #: the public roster (privfed keys roster) the *server* uses for active modes whose options name none
    #: ([runtime] roster); nodes never read it: they take theirs from node-config (privfed.apps.flower.identity)
    roster: str = ""
    #: target mode: the noise multipliers the submitting side calibrated, as JSON {protection: z} (for the record;
    #: the multipliers themselves travel in ``experiment``'s protection options)
    calibrated: str = ""
    #: the server's own evaluation file (public test data the server may read: a text file or folder, or a CSV, cut
    #: with the run's schema); every round's global model is also evaluated on it ("" = none; node data never)
    server_eval: str = ""

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError("rounds must be >= 1")
        if self.update_source not in UPDATE_SOURCES:
            raise ConfigError(f"update-source must be one of {UPDATE_SOURCES}, got {self.update_source!r}")
        if self.params < 1 or self.clients < 1:
            raise ConfigError("params and clients must be >= 1")
        if not self.reply_timeout > 0 or not self.connect_timeout > 0:
            raise ConfigError("reply-timeout and connect-timeout must be positive")
        if not self.straggler_grace >= 0:
            raise ConfigError("straggler-grace must be >= 0")
        if (self.experiment or self.schema or self.run_dir) and self.update_source != "train":
            raise ConfigError("experiment, schema and run-dir need update-source = \"train\"")
        if not self.plan or not all(self.plan):
            raise ConfigError(f"protection must name one protection or a comma-separated plan, got "
                              f"{self.protection!r}")

    @property
    def plan(self) -> tuple[str, ...]:
        """The protection of each round, in order (cycled when there are more rounds)."""
        return tuple(p.strip() for p in self.protection.split(","))

    def protection_for(self, round_id: int) -> str:
        if round_id < 1:
            raise ConfigError(f"round ids start at 1, got {round_id}")
        return self.plan[(round_id - 1) % len(self.plan)]

    def options_for(self, protection: str) -> dict[str, Any]:
        per_protection = self.options.get(protection)
        if isinstance(per_protection, Mapping):
            return dict(per_protection)
        return {k: v for k, v in self.options.items() if not (k in self.plan and isinstance(v, Mapping))}

    def drops_for(self, round_id: int) -> dict[int, str]:
        return {**self.drops.get(0, {}), **self.drops.get(round_id, {})}


def parse_drops(text: str) -> dict[int, dict[int, str]]:
    """``"2:after-upload,3/1:before-upload"`` -> {0: {2: "after-upload"}, 3: {1: "before-upload"}}."""
    drops: dict[int, dict[int, str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        where, sep, point = item.partition(":")
        round_text, slash, cid = where.rpartition("/") if "/" in where else ("0", "", where)
        if (not sep or not cid.strip().isdigit() or not round_text.strip().isdigit() or not point.strip()):
            raise ConfigError(f"drops takes [ROUND/]CLIENT:POINT[,...], got {text!r}")
        table = drops.setdefault(int(round_text), {})
        if int(cid) in table:
            raise ConfigError(f"client {cid} appears twice in drops")
        table[int(cid)] = point.strip()
    return drops


_KEYS = {
    "protection": str, "options": str, "rounds": int, "update-source": str, "params": int, "seed": int,
    "clients": int, "reply-timeout": float, "straggler-grace": float, "connect-timeout": float, "drops": str,
    "stop-after-upload": int, "stop-round": int, "report": str, "fl-overrides": str, "key-dir": str,
    "experiment": str, "schema": str, "run-dir": str, "plan-reasons": str, "resume": bool, "stop-after": int,
    "roster": str, "calibrated": str, "server-eval": str,
}


def parse_run_config(run_config: Mapping[str, Any]) -> FlowerRunConfig:
    """Validate a Flower run config (unknown keys are ignored so apps can carry their own)."""
    values: dict[str, Any] = {}
    for key, kind in _KEYS.items():
        if key not in run_config:
            continue
        raw = run_config[key]
        if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
            raw = float(raw)
        if not isinstance(raw, kind) or (isinstance(raw, bool) and kind is not bool):
            raise ConfigError(f"run-config {key} must be {kind.__name__}, got {raw!r}")
        values[key.replace("-", "_")] = raw
    options_text = values.pop("options", "") or "{}"
    try:
        options = json.loads(options_text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"run-config options must be a JSON object: {exc}") from None
    if not isinstance(options, dict):
        raise ConfigError("run-config options must be a JSON object")
    drops = parse_drops(values.pop("drops", ""))
    return FlowerRunConfig(options=options, drops=drops, **values)


def protocol_options(config: FlowerRunConfig, protection: str, base: Mapping[str, Any] | None = None
                     ) -> dict[str, Any]:
    """Protocol keyword options: ``base`` (the FedAvg loop's options when training; by default the bench's bounds,
    exactly as the bench passes them) updated with the run's ``options`` for ``protection``."""
    defaults = dict(base) if base is not None else {"max_weight": DEFAULT_MAX_WEIGHT, "clip": DEFAULT_CLIP}
    return {**defaults, **config.options_for(protection)}


def build_protocol(config: FlowerRunConfig, protection: str | None = None, *, key_dir: str = "",
                   secret: bool = False, base: Mapping[str, Any] | None = None,
                   node_config: Mapping[str, Any] | None = None):
    """The protocol instance for ``protection`` (default: the plan's first). HE protections get their dealt key
    authority from ``key_dir`` (node side: ``secret=True``, the secret context; server side: public material only).
    Active modes get their roster from ``node_config`` on a node and from the run on the server
    (:mod:`privfed.apps.flower.identity`)."""
    from protocols import registry
    from privfed.runtime.flower.keys import needs_dealer

    from .identity import node_options, server_options

    name = protection or config.plan[0]
    options = protocol_options(config, name, base)
    options = (node_options(options, node_config or {}, name) if secret
               else server_options(options, config.roster, name))
    if needs_dealer(name):
        if not key_dir:
            where = "node-config key-dir" if secret else "run-config key-dir"
            raise ConfigError(f"{name!r} over Flower needs keys dealt ahead of the run "
                              f"(python -m privfed.runtime.flower.keys DIR) and {where} pointing at them")
        from privfed.runtime.flower.keys import PAILLIER_PROTECTIONS, load_authority, load_paillier_authority

        if name in PAILLIER_PROTECTIONS:
            options["authority"] = load_paillier_authority(key_dir, secret=secret,
                                                           key_bits=int(options.get("key_bits", 2048)))
        else:
            options["authority"] = load_authority(key_dir, secret=secret,
                                                  parameter_set=str(options.get("parameter_set", "n4096")))
    return registry.create(name, options)
