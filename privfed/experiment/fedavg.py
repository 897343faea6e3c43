"""The FedAvg loop: sample clients, train locally, aggregate through the round's protection, step the server model.

Each round ``r``:

1. the protection comes from the plan (:func:`privfed.threat.resolve_plan`, checked against ``[threat]`` once before
   round 1; a refusal raises :class:`~privfed.threat.PlanRefused` before anything runs). The protocol instance is
   created with the standard options ``max_weight`` (the largest client train-set size: a public bound) and ``clip``
   (``protection.clip``) merged with ``[protection.options.<name>]``; it lives as long as consecutive rounds use the
   same protection (long-lived keys persist) and is re-created when the plan switches. One ``client_states`` dict per
   protection name persists across the whole run (in memory: a resumed run starts with fresh client state);
2. clients are sampled: ``fl.clients_per_round`` (or ``fl.fraction``) without replacement from the experiment seed,
   or Poisson sampling with rate ``fl.sample_rate`` drawn from the OS CSPRNG — amplification by sampling assumes
   nobody can predict the sample, so it never comes from the (published) experiment seed;
3. each sampled client trains from the global model with the trainer the protocol asks for
   (``client_training``: standard, or DP-SGD from ``privfed.fl.dpsgd``); its update ``local - global`` is clipped
   entry-wise to the declared range ``[-clip, clip]`` and sent with its sample count as FedAvg weight;
4. :func:`privfed.runtime.local.run_round` runs the protocol (exact bytes, per-party clocks, simulated dropouts
   with probability ``fl.drop_prob`` at ``fl.drop_point``, rejected messages with reasons);
5. if the round produced a result, ``global += server_lr * mean``; if it aborted the model is unchanged and the round
   is recorded with the reason. An out-of-band verifier (simulation only: it sees every update in the clear)
   compares the result with the exact float64 weighted mean of the survivors' updates (for DP protections the
   difference includes the noise); a ``dp_event`` in the result's ``info`` goes to the privacy ledger;
6. the global model is evaluated on the global evaluation set; the round is appended to ``rounds.jsonl``, its
   transcript written, and a checkpoint saved (:mod:`privfed.experiment.rundir`).

Randomness: the experiment seed drives data, partitions, model init, fixed client sampling, simulated dropouts and
local batch order — never keys, masks or noise (those are the protocols' business and come from the OS).
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import platform
import secrets
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping

import numpy as np
import torch

from protocols import registry
from protocols.base import AggregationProtocol, ClientStateMachine, ClientUpdate, min_sum_inputs
from protocols.he_round import DEFAULT_MIN_CLIENTS
from protocols.errors import ConfigError, MessageError, PrivfedError
from privfed.runtime.local import RoundReport, run_round
from privfed.runtime.transcript import TranscriptKey
from privfed.threat import PlannedRound, ThreatModel, catalogue, resolve_plan
from privfed.threat.budget import CALIBRATABLE, calibrate, runtime_options
from privfed.threat.disclosure import redact_round, redact_summary

from privfed.fl.config import ExperimentConfig, sampling_warnings
from privfed.fl.data import FederatedDataset, build_federated
from privfed.fl.models import ParamLayout, SequenceModel, build_model, flatten, load_flat
from .rundir import RunDir, config_digest, decode_vector, encode_vector, to_jsonable
from privfed.fl.train import evaluate, select_trainer

__all__ = ["FedAvgResult", "run_fedavg", "RoundHook", "StopRun", "package_versions", "plan_with_target",
           "protection_options", "recheck_round", "report_delta", "model_size_bound"]

STREAM_SAMPLING, STREAM_DROPS, STREAM_TRAIN = 11, 12, 13
RoundHook = Callable[[dict[str, Any], "RoundReport | None"], None]


class StopRun(Exception):
    """Raised by an ``on_round`` hook to stop after the current round (its checkpoint is already written)."""


@dataclass
class FedAvgResult:
    """What :func:`run_fedavg` returns."""

    config: ExperimentConfig
    vector: np.ndarray
    layout: ParamLayout
    rounds: list[dict[str, Any]]
    summary: dict[str, Any]
    out_dir: Path | None
    dataset: FederatedDataset
    reports: list[RoundReport] = field(default_factory=list)

    def model(self) -> SequenceModel:
        """The final global model."""
        model = build_model(self.dataset.model_spec(self.config.model, self.summary["model"]["dp_compatible"]),
                            self.config.seed)
        load_flat(model, self.vector, self.layout)
        return model


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("privfed", "torch", "numpy", "cryptography", "opacus", "dp-accounting", "tenseal", "phe", "flwr"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def new_ledger() -> Any | None:
    try:
        from protocols.dp.ledger import PrivacyLedger  # written by the DP work; optional here
    except ImportError:
        return None
    return PrivacyLedger()


def ledger_from_json(data: Any) -> Any | None:
    if data is None:
        return new_ledger()
    from protocols.dp.ledger import PrivacyLedger
    return PrivacyLedger.from_json(data)


def _client_training(name: str, instance: AggregationProtocol | None) -> str:
    if instance is not None:
        return getattr(instance, "client_training", "standard")
    return getattr(registry.protocol_class(name), "client_training", "standard")


def clients_per_round(config: ExperimentConfig, n_clients: int) -> int:
    """Clients sampled per round (fixed sampling), or the expected count rounded down (Poisson, at least 1)."""
    fl = config.fl
    if fl.sampling == "poisson":
        return max(1, int(fl.sample_rate * n_clients))
    return min(n_clients, fl.clients_per_round or max(1, math.ceil(fl.fraction * n_clients)))


def _sample(config: ExperimentConfig, n_clients: int, round_id: int) -> list[int]:
    if config.fl.sampling == "poisson":
        draw = secrets.SystemRandom()
        return [c for c in range(n_clients) if draw.random() < config.fl.sample_rate]
    rng = np.random.default_rng([config.seed, STREAM_SAMPLING, round_id])
    count = clients_per_round(config, n_clients)
    return sorted(int(c) for c in rng.choice(n_clients, size=count, replace=False))


def _drops(config: ExperimentConfig, sampled: list[int], round_id: int) -> dict[int, str]:
    if config.fl.drop_prob <= 0:
        return {}
    rng = np.random.default_rng([config.seed, STREAM_DROPS, round_id])
    hits = rng.random(len(sampled)) < config.fl.drop_prob
    return {cid: config.fl.drop_point for cid, hit in zip(sampled, hits) if hit}


def privacy_figures(ledger: Any | None, dp_events: int, delta: float, unit: str) -> dict[str, Any]:
    """Epsilon per observer (``epsilon_model``: users of the released model; ``epsilon_server``: the server and the
    declared colluders) at ``unit``, and the ledger's full table. None while no round carried DP noise (no claim is
    made); infinite once a release gave that observer no bound."""
    if ledger is None or dp_events == 0:
        return {"epsilon_model": None, "epsilon_server": None, "epsilon_unit": None, "privacy": None}
    summary = ledger.summary(delta)
    table = summary["epsilon"]
    return {"epsilon_model": table["model"][unit], "epsilon_server": table["server"][unit], "epsilon_unit": unit,
            "privacy": summary}


def declared_threat(config: ExperimentConfig) -> ThreatModel:
    """The declared ``[threat]`` (no table: a trusted server and no DP target)."""
    table = {k: v for k, v in dict(config.threat or {}).items() if k != "clients"}
    return ThreatModel.coerce(table or None)


def reported_unit(config: ExperimentConfig, plan: list[PlannedRound]) -> str:
    """The unit epsilon is reported at: the declared one, else record-level when every DP round is DP-SGD."""
    declared = (config.threat or {}).get("dp_unit")
    if declared:
        return str(declared)
    dp = {catalogue.get(p.protection).dp_unit for p in plan if catalogue.get(p.protection).has_dp}
    return "record" if dp == {"record"} else "user"


def _dpsgd_schedule(config: ExperimentConfig, data: FederatedDataset) -> dict[str, Any]:
    """DP-SGD's planned schedule from the data: the busiest client's steps per round and the largest record
    sampling rate (the worst case the round's event takes)."""
    sizes = [len(c.train) for c in data.clients if len(c.train) > 0]
    if not sizes:
        return {}
    batch = config.train.batch_size
    per_epoch = [math.ceil(n / batch) for n in sizes]
    if config.train.max_batches:
        per_epoch = [min(p, config.train.max_batches) for p in per_epoch]
    return {"local_steps": config.train.epochs * max(per_epoch), "record_sample_rate": min(1.0, batch / min(sizes))}


def planned_options(config: ExperimentConfig, data: FederatedDataset, names: list[str]) -> dict[str, dict[str, Any]]:
    """Protocol options per protection as the plan check sees them (user options plus the derived DP-SGD schedule)."""
    out = {k: dict(v) for k, v in config.protection.options.items()}
    schedule = _dpsgd_schedule(config, data)
    for name in names:
        if catalogue.get(name).dp == "dp-sgd":
            for key, value in schedule.items():
                # the data's schedule is what the trainer will run: a declared smaller one would make the plan
                # promise less than the ledger then records, so the larger (worse) of the two is planned
                declared = out.setdefault(name, {}).get(key)
                if not isinstance(declared, (int, float)) or isinstance(declared, bool) or declared < value:
                    out[name][key] = value
    for name, opts in out.items():  # active SecAgg samples cohorts from the whole population (issue 14)
        if name in catalogue.CATALOGUE and catalogue.get(name).protocol == "secagg" and opts.get("active") is True:
            if opts.get("roster") is None:  # a roster file gives its own size
                opts.setdefault("roster_size", len(data.clients))
            if catalogue.get(name).dp == "none":  # secagg+dp passes its DP colluders to the clients itself
                opts.setdefault("colluders", declared_threat(config).collusion)
    return out


def _model_size_bound(config: ExperimentConfig, data: FederatedDataset) -> int | None:
    """Parameters of the run's model (either variant: DP-SGD's DPLSTM/DPGRU or the plain one), plus the weight
    coordinate: the size secagg+dp's planned rounding slack must assume (the default assumes 10M and a larger model
    would spend more than the plan promised)."""
    return model_size_bound(lambda dp_compatible: data.model_spec(config.model, dp_compatible), config.seed)


def model_size_bound(spec_for: Callable[[bool], Any], seed: int) -> int | None:
    """The larger of the two model variants' parameter counts plus one (the weight coordinate); ``spec_for(dp)``
    gives the model spec (from a data set in-process, from the public schema over Flower)."""
    sizes = []
    for dp_compatible in (False, True):
        try:
            sizes.append(ParamLayout.of(build_model(spec_for(dp_compatible), seed)).size)
        except (ImportError, PrivfedError):  # the DP-compatible variant needs Opacus
            continue
    return max(sizes) + 1 if sizes else None


def _noise_for_target(config: ExperimentConfig, plan: list[PlannedRound], clients: int,
                      options: Mapping[str, Mapping[str, Any]], model_size: int | None = None) -> dict[str, float]:
    """Target mode: with an epsilon target in ``[threat]``, one noise multiplier for the DP protections the plan uses
    whose options do not set one, calibrated by :func:`privfed.threat.budget.calibrate` — the same planned events the
    plan check composes, per distrusted observer. An explicit ``noise_multiplier`` always wins."""
    threat = declared_threat(config)
    if not threat.wants_dp:
        return {}
    names = [n for n in dict.fromkeys(p.protection for p in plan)
             if n in CALIBRATABLE and "noise_multiplier" not in options.get(n, {})]
    if not names:
        return {}
    z = calibrate(names, [(p.round, p.protection) for p in plan], threat, clients, options, model_size)
    return {name: z for name in names}


def _recheck(name: str, threat: ThreatModel, clients: int, options: Mapping[str, Any]) -> str | None:
    """The plan's threat check again, for the clients that actually reached the round (None: it still holds); the
    options carry the roster size for active SecAgg, so this is the clients' own cohort check."""
    unmet = catalogue.unmet_requirements(name, threat, catalogue.RoundContext(clients, options))
    if not unmet:
        return None
    return f"round re-check with {clients} clients: {name} no longer meets the threat model: " + "; ".join(unmet)


def plan_with_target(config: ExperimentConfig, per_round: int, plan_options: dict[str, dict[str, Any]],
                     model_size: int | None) -> tuple[list[PlannedRound], dict[str, float]]:
    """The run's plan, checked against the declared threat model; in target mode (an epsilon in ``[threat]``) the
    DP protections without an explicit noise multiplier first get one from :func:`privfed.threat.budget.calibrate`
    (written into ``plan_options``). Every runtime calls this: in-process the FedAvg loop, over Flower the
    submitting side (:mod:`privfed.apps.flower.submit`). Returns (plan, the calibrated multipliers)."""
    threat = declared_threat(config)
    targeted: dict[str, float] = {}
    if threat.wants_dp:  # target mode: unconfigured noise is only advice to the first check, then calibrated
        provisional = resolve_plan(config.plan, config.fl.rounds, threat, clients=per_round, options=plan_options,
                                   model_size=model_size)
        targeted = _noise_for_target(config, provisional, per_round, plan_options, model_size)
        for name, z in targeted.items():
            plan_options.setdefault(name, {})["noise_multiplier"] = z
    plan = resolve_plan(config.plan, config.fl.rounds, threat, clients=per_round, options=plan_options,
                        model_size=model_size)
    return plan, targeted


def protection_options(config: ExperimentConfig, name: str, max_weight: float, per_round: int,
                       plan_options: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The options protection ``name`` runs with: the configured ones, the plan's (``plan_options``: the DP-SGD
    schedule, a calibrated noise multiplier; default the configured table), and the guards that keep a round from
    spending more than the plan promised — ``colluders`` (distributed DP, never below the threat model's),
    ``min_noise_survivors`` and ``expected_clients`` (from :func:`privfed.threat.budget.runtime_options` in target
    mode, or under Poisson sampling). The one home of these options: the in-process loop and both sides of a
    Flower run call it."""
    threat = declared_threat(config)
    plan_options = config.protection.options if plan_options is None else plan_options
    options = config.protection.for_protection(name, max_weight)
    for key, value in plan_options.get(name, {}).items():
        options.setdefault(key, value)
    entry = catalogue.get(name)
    if entry.dp == "distributed":
        guards = runtime_options(name, plan_options.get(name, {}), threat, per_round)
        # the ledger's server-side epsilon is for the declared colluders at least: a protection option may
        # raise the count, never lower it below the threat model's (an invalid value is left for DPOptions)
        declared = options.get("colluders")
        if declared is None or (isinstance(declared, int) and not isinstance(declared, bool)):
            options["colluders"] = max(threat.collusion, declared or 0)
        if threat.wants_dp:  # the plan promised an epsilon: never spend more in a round with fewer survivors
            options.update({k: v for k, v in guards.items() if k == "min_noise_survivors"})
            # ... nor in a round that invites more clients than planned (the noise split over them is thinner)
            options.setdefault("expected_clients", guards.get("expected_clients"))
    if entry.dp == "none" and entry.update_hiding == catalogue.CRYPTOGRAPHIC and threat.distrusts_server:
        # a round that loses clients mid-way must not yield a sum of a single honest input beside the colluders'
        # (the plan check counts honest survivors before the round; this holds it through the round)
        key, default = ("min_survivors", 0) if entry.protocol == "secagg" else ("min_clients", DEFAULT_MIN_CLIENTS)
        configured = options.get(key)
        if configured is None or (isinstance(configured, int) and not isinstance(configured, bool)):
            options[key] = max(default if configured is None else configured, min_sum_inputs(threat.collusion))
    if config.fl.sampling == "poisson" and entry.dp in ("central", "local", "distributed") \
            and options.get("denominator", "fixed") == "fixed":
        # under Poisson sampling the invited count is random: dividing by it would release it unaccounted
        options.setdefault("expected_clients", per_round)
    if options.get("expected_clients", 0) is None:
        options.pop("expected_clients")
    return options


def recheck_round(config: ExperimentConfig, name: str, clients: int, options: Mapping[str, Any]) -> str | None:
    """:func:`_recheck` under the run's declared threat model (the Flower ServerApp's entry point)."""
    return _recheck(name, declared_threat(config), clients, options)


def report_delta(config: ExperimentConfig) -> float:
    """The delta epsilon is reported at: the target's when ``[threat]`` declares one, else protection.delta."""
    threat = declared_threat(config)
    return threat.delta if threat.wants_dp and threat.delta is not None else config.protection.delta


def _check_sample_rate(name: str, protocol: AggregationProtocol, config: ExperimentConfig) -> None:
    """Refuse a DP protection that claims more amplification by sampling than the loop provides."""
    described = dict(protocol.describe())
    declared = described.get("sample_rate")
    if declared is None or getattr(protocol, "client_training", "standard") == "dp-sgd" \
            or described.get("level") == "record":
        return  # record-level DP-SGD: its rates are over records inside a client, reported by the trainer
    poisson = config.fl.sampling == "poisson"
    actual = config.fl.sample_rate if poisson else 1.0
    if float(declared) < actual * (1 - 1e-9):
        how = f"with Poisson rate {actual}" if poisson else "without Poisson sampling (fl.sampling = 'fixed')"
        raise ConfigError(f"protection.options.{name}.sample_rate = {declared} claims amplification by sampling, "
                          f"but the FedAvg loop samples clients {how}; set fl.sampling = 'poisson' and "
                          f"fl.sample_rate = {declared}")


# -- batched local training (privfed.fl.batched; issue 17): a separate hook, the loop's bookkeeping is unchanged
def _train_seed(config: ExperimentConfig, round_id: int, cid: int) -> int:
    """Client ``cid``'s data-order seed in round ``round_id`` (experiment seed: never a secret path)."""
    return int(np.random.default_rng([config.seed, STREAM_TRAIN, round_id, cid]).integers(2**62))


def _batched_local_training(enabled: bool, spec: Any, layout: ParamLayout, vector: np.ndarray,
                            data: FederatedDataset, sampled: list[int], config: ExperimentConfig,
                            round_id: int) -> dict[int, Any]:
    """``{cid: (update, n_samples, metrics)}`` for the sampled clients trained together, or ``{}`` when the round
    uses another trainer, the model is not covered, or a client has no training data (the sequential path then
    reports it exactly as before)."""
    from privfed.fl import batched

    if not enabled or len(sampled) < 2 or not batched.supports(spec) \
            or any(len(data.clients[c].train) == 0 for c in sampled):
        return {}
    results = batched.train_batched(spec, layout, vector, [data.clients[c].train for c in sampled], config.train,
                                    [_train_seed(config, round_id, c) for c in sampled])
    return dict(zip(sampled, results))


def run_fedavg(config: ExperimentConfig, out_dir: str | Path | None = None, *, resume: bool = False,
               on_round: RoundHook | None = None, stop_after: int | None = None,
               dataset: FederatedDataset | None = None,
               client_overrides: Mapping[int, Callable[[ClientStateMachine], ClientStateMachine]] | None = None,
               tamper: Callable[[str, int, bytes], bytes | None] | None = None,
               record_server_view: bool = False, keep_reports: bool = False,
               batched_training: bool = False) -> FedAvgResult:
    """Run (or, with ``resume``, continue) a federated training run; see the module docstring.

    ``out_dir`` None keeps everything in memory (no files, no resume). ``on_round(record, report)`` is called after
    each round's checkpoint (raise :class:`StopRun` in it to stop early); ``stop_after=k`` stops after round k as if
    the process were killed (tests). ``client_overrides``/``tamper`` are passed to ``run_round`` (simulated
    malicious clients); ``record_server_view`` keeps the server's received bytes in each ``RoundReport``, and
    ``keep_reports`` returns the reports in :attr:`FedAvgResult.reports`. ``batched_training`` trains a round's
    clients as one tensor program (:mod:`privfed.fl.batched`) when the trainer is the standard one and the model
    allows it (same result within float tolerance). Off by default: on the 2-core reference machine, one torch
    thread, it measured slower than this one-client-at-a-time loop (benchmarks/bench_simulation.py).
    """
    started = time.perf_counter()
    torch_threads = torch.get_num_threads()
    data = dataset if dataset is not None else build_federated(config.data, config.seed)
    n_clients = len(data.clients)
    per_round = clients_per_round(config, n_clients)
    threat = declared_threat(config)
    model_size = _model_size_bound(config, data) if threat.wants_dp else None
    plan_options = planned_options(config, data, [n for n in catalogue.names() if catalogue.get(n).dp == "dp-sgd"])
    plan, targeted = plan_with_target(config, per_round, plan_options, model_size)
    max_weight = float(data.max_weight)

    def options_for(name: str) -> dict[str, Any]:
        return protection_options(config, name, max_weight, per_round, plan_options)

    # validate every protection before round 1; keep each instance for its first run of rounds
    instances: dict[str, AggregationProtocol] = {}
    for name in dict.fromkeys(p.protection for p in plan):
        instances[name] = registry.create(name, options_for(name))
        if config.fl.drop_prob > 0:
            instances[name].resolve_drop_phase(config.fl.drop_point)
        _check_sample_rate(name, instances[name], config)
        select_trainer(_client_training(name, instances[name]))  # a missing DP-SGD trainer fails before round 1
    dp_compatible = any(_client_training(n, i) == "dp-sgd" for n, i in instances.items())
    spec = data.model_spec(config.model, dp_compatible)
    template = build_model(spec, config.seed)
    layout = ParamLayout.of(template)
    vector = flatten(template)
    initial_metrics = evaluate(template, data.eval)

    table = config.to_table()
    rundir = RunDir(out_dir) if out_dir is not None else None
    checkpoint = rundir.prepare(table, resume) if rundir is not None else None
    ledger = new_ledger()
    totals: dict[str, float] = {"upload_bytes": 0, "download_bytes": 0, "client_protocol_seconds": 0.0,
                                "server_seconds": 0.0, "local_training_seconds": 0.0, "aborted_rounds": 0}
    dp_events, first_round, offset = 0, 1, 0
    if checkpoint is not None:
        if checkpoint.get("config_digest") != config_digest(table):
            raise ConfigError("--resume: the checkpoint was written under another configuration")
        if ParamLayout.from_json(checkpoint["layout"]) != layout:
            raise ConfigError("--resume: the checkpoint's parameter layout does not match the model")
        vector = decode_vector(checkpoint["vector"])
        ledger = ledger_from_json(checkpoint.get("ledger")) if checkpoint.get("ledger") is not None else ledger
        totals.update(checkpoint["totals"])
        dp_events = int(checkpoint["dp_events"])
        first_round, offset = int(checkpoint["round"]) + 1, int(checkpoint["rounds_offset"])

    summary: dict[str, Any] = {
        "status": "running", "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": table, "seed": config.seed, "versions": package_versions(), "torch_threads": torch_threads,
        "data": data.describe(), "plan": [{"round": p.round, "protection": p.protection, "reason": p.reason}
                                          for p in plan],
        "model": {"cell": spec.cell, "task": spec.task, "parameters": layout.size, "dp_compatible": dp_compatible},
        "max_weight": max_weight, "initial_metrics": initial_metrics,
        "noise_multiplier_from_target": targeted or None, "resumed_from_round": first_round - 1,
        "warnings": sampling_warnings(config.fl, n_clients),
    }
    if rundir is not None:
        rundir.write_summary(summary)

    unit = reported_unit(config, plan)
    # with a DP target the run reports epsilon at the delta the plan promised it at (protection.delta otherwise)
    delta = report_delta(config)
    records: list[dict[str, Any]] = []
    reports: list[RoundReport] = []
    client_states: dict[str, MutableMapping[int, MutableMapping[str, Any]]] = {}
    current: tuple[str, AggregationProtocol] | None = None
    transcript_key = TranscriptKey()  # keys this run's transcript digests; never written (run-directory sharing)
    for planned in plan[first_round - 1:]:
        r, name = planned.round, planned.protection
        round_started = time.perf_counter()
        if current is None or current[0] != name:
            protocol = instances.pop(name, None) or registry.create(
                name, options_for(name))
            current = (name, protocol)
        protocol = current[1]
        states = client_states.setdefault(name, {})
        training_mode = _client_training(name, protocol)
        trainer = select_trainer(training_mode)
        options_table = dict(config.protection.options.get(name, {}))

        sampled = _sample(config, n_clients, r)
        updates: dict[int, ClientUpdate] = {}
        client_info: dict[str, dict[str, Any]] = {}
        failed: dict[int, dict[str, str]] = {}
        clipped, entries = 0, 0
        train_clock = time.perf_counter()
        pretrained = _batched_local_training(batched_training and training_mode == "standard", spec, layout,
                                             vector, data, sampled, config, r)
        for cid in sampled:
            options: dict[str, Any] = {"seed": _train_seed(config, r, cid), "round": r, "client_id": cid}
            if training_mode != "standard":
                options.update(options_table, protocol=protocol)
            try:
                if cid in pretrained:
                    update, n_samples, client_metrics = pretrained[cid]
                else:
                    model = copy.deepcopy(template)
                    load_flat(model, vector, layout)
                    update, n_samples, client_metrics = trainer(model, data.clients[cid].train, config.train, options)
            except ConfigError:
                raise  # a misconfiguration stops the run; it is not one client's failure
            except PrivfedError as exc:  # the client refused (e.g. its DP-SGD budget): it drops out of the round
                failed[cid] = {"phase": "local-training", "reason": f"client stopped: {exc}"}
                continue
            update = np.asarray(update, dtype=np.float32)
            client_info[str(cid)] = {"name": data.clients[cid].name, "samples": int(n_samples), **client_metrics}
            if update.shape != (layout.size,) or not np.isfinite(update).all():
                failed[cid] = {"phase": "local-training", "reason": "update is not a finite vector of the model size"}
                continue
            clipped += int(np.count_nonzero(np.abs(update) > config.protection.clip))
            entries += update.size
            update = np.clip(update, -config.protection.clip, config.protection.clip)
            try:
                updates[cid] = ClientUpdate(update, float(n_samples))
            except MessageError as exc:
                failed[cid] = {"phase": "local-training", "reason": str(exc)}
        train_seconds = time.perf_counter() - train_clock

        report: RoundReport | None = None
        recheck = _recheck(name, threat, len(updates), options_for(name)) if updates else None
        if updates and recheck is None:
            try:
                report = run_round(protocol, r, updates, drops=_drops(config, sorted(updates), r),
                                   client_states=states, client_overrides=client_overrides, tamper=tamper,
                                   transcript=config.fl.transcripts, record_server_view=record_server_view,
                                   transcript_key=transcript_key)
            except ConfigError as exc:  # parameters invalid for this round's actual clients: an aborted round
                recheck = f"round re-check with {len(updates)} clients: {exc}"
        record: dict[str, Any] = {"round": r, "protection": name, "plan_reason": planned.reason,
                                  "protocol": dict(protocol.describe()), "sampled": sampled}
        if report is not None:
            record.update({k: v for k, v in report.summary().items() if k not in ("round", "protection")})
            record["survivor_ids"] = list(report.survivors)
            record["upload_bytes_total"] = sum(report.upload_total(c) for c in report.participants)
            record["download_bytes_total"] = sum(report.download_total(c) for c in report.participants)
            record["client_protocol_seconds_total"] = float(sum(report.client_seconds.values()))
        else:
            record.update(participants=0, survivors=0, dropped={}, rejected={}, upload_bytes_total=0,
                          download_bytes_total=0, client_protocol_seconds_total=0.0, server_seconds=0.0,
                          aborted=recheck or ("no client produced an update" if sampled else "no client was sampled"))
        record["dropped"] = {**{str(k): v for k, v in failed.items()}, **record.get("dropped", {})}
        record["clients"] = client_info
        record["local_training_seconds_per_client"] = train_seconds / len(sampled) if sampled else 0.0
        record["clipped_fraction"] = clipped / entries if entries else 0.0

        result = report.result if report is not None else None
        record["verifier_max_abs_error"] = None
        if result is not None and report is not None and report.aggregate is None:
            result = None  # no party holds the mean: treated as an aborted round
            record["aborted"] = "no party holds the decrypted mean"
        if result is not None:
            # the mean as the entitled party learned it; with release="key-holders" the clients hold it and apply
            # the step themselves (simulated here), the server never sees it
            mean = report.aggregate
            record["learned_by"] = result.learned_by
            survivors = list(result.survivors)
            weights = np.array([updates[c].weight for c in survivors], dtype=np.float64)
            exact = weights @ np.stack([updates[c].vector.astype(np.float64) for c in survivors]) / weights.sum()
            record["verifier_max_abs_error"] = float(np.max(np.abs(mean - exact)))
            record["error_bound"] = float(result.error_bound)
            vector = (vector.astype(np.float64) + config.fl.server_lr * mean).astype(np.float32)
            events = result.info.get("dp_events")
            if ledger is not None:
                if events is not None:
                    ledger.record(r, events)
                    dp_events += 1
                else:
                    ledger.record_unprotected(r, note=f"{name}: released without DP noise")
            record["dp_events"] = events
        else:
            totals["aborted_rounds"] += 1
        record.update(privacy_figures(ledger, dp_events, delta, unit))
        load_flat(template, vector, layout)
        record["metrics"] = evaluate(template, data.eval)
        train_losses = [(c["samples"], c["train_loss"]) for c in client_info.values()
                        if isinstance(c.get("train_loss"), float) and math.isfinite(c["train_loss"])]
        if train_losses:
            record["metrics"]["train_loss"] = sum(n * l for n, l in train_losses) / sum(n for n, _ in train_losses)
        record["round_seconds"] = time.perf_counter() - round_started
        totals["upload_bytes"] += record["upload_bytes_total"]
        totals["download_bytes"] += record["download_bytes_total"]
        totals["client_protocol_seconds"] += record["client_protocol_seconds_total"]
        totals["server_seconds"] += record["server_seconds"]
        totals["local_training_seconds"] += train_seconds
        record = redact_round(to_jsonable(record))  # what the round's protection hides stays out (disclosure)
        records.append(record)
        if keep_reports and report is not None:
            reports.append(report)

        if rundir is not None:
            if report is not None and config.fl.transcripts:
                rundir.write_transcript(r, report.transcript)
            offset = rundir.append_round(record)
            rundir.save_checkpoint({
                "round": r, "rounds_offset": offset, "config_digest": config_digest(table),
                "vector": encode_vector(vector), "layout": layout.to_json(),
                "ledger": ledger.to_json() if ledger is not None else None, "dp_events": dp_events,
                "totals": totals,
                "sampling": {"fixed": "numpy default_rng([seed, 11, round])", "poisson": "OS CSPRNG (secrets)"},
            })
        if on_round is not None:
            try:
                on_round(record, report)
            except StopRun:
                break
        if stop_after is not None and r >= stop_after:
            break

    all_rounds = rundir.read_rounds() if rundir is not None else records
    complete = bool(all_rounds) and all_rounds[-1]["round"] == config.fl.rounds
    summary.update({
        "status": "complete" if complete else "stopped",
        "rounds_completed": len(all_rounds),
        "totals": {**totals, "wall_seconds_this_process": time.perf_counter() - started},
        "final_metrics": all_rounds[-1]["metrics"] if all_rounds else initial_metrics,
        **{k: (all_rounds[-1].get(k) if all_rounds else None)
           for k in ("epsilon_model", "epsilon_server", "epsilon_unit")},
        "delta": delta,
    })
    summary = redact_summary(to_jsonable(summary))
    if rundir is not None:
        rundir.write_summary(summary)
    return FedAvgResult(config, vector, layout, all_rounds, summary, rundir.path if rundir else None, data, reports)
