"""One aggregation of N synthetic client vectors under a protection, verified against the exact weighted mean.

``survivors`` counts the clients that completed the round; ``contributors`` those whose input is in the result (in
SecAgg a client that drops after uploading its masked input stays in the sum); the exact reference mean is over the
contributors. The experiment seed drives only the synthetic data, the weights and which clients drop (none of these are secret);
every key, mask and noise sample inside the protocol comes from the OS. The result is compared with the exact
float64 weighted mean of the survivors' inputs, and the protocol's declared ``error_bound`` is reported beside the
measured ``max_abs_error``. Every figure comes from the runtime's byte counters and per-party clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from protocols import registry
from protocols.base import ClientUpdate
from protocols.errors import ConfigError
from protocols.jit import warm_up
from privfed.runtime.local import run_round

__all__ = ["BenchSpec", "DropRequest", "parse_drop", "synthetic_updates", "bench_aggregation"]

MAX_WEIGHT = 100.0
VALUE_RANGE = 1.0


@dataclass(frozen=True)
class DropRequest:
    count: int
    point: str


def parse_drop(text: str) -> DropRequest:
    """``K@PHASE`` -> DropRequest(K, PHASE)."""
    count, sep, point = text.partition("@")
    if not sep or not count.isdigit() or not point:
        raise ConfigError(f"--drop takes K@PHASE (for example 2@before-upload), got {text!r}")
    return DropRequest(int(count), point)


@dataclass(frozen=True)
class BenchSpec:
    protection: str
    clients: int
    params: int
    drops: tuple[DropRequest, ...] = ()
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.clients < 1 or self.params < 1:
            raise ConfigError("--clients and --params must be >= 1")
        if sum(d.count for d in self.drops) > self.clients:
            raise ConfigError("more dropouts requested than clients")


def synthetic_updates(clients: int, params: int, seed: int) -> dict[int, ClientUpdate]:
    """Uniform values in [-1, 1] (inside the default clip range) with integer weights in [1, 100]."""
    rng = np.random.default_rng(seed)  # experiment data only, never a secret path
    return {cid: ClientUpdate(rng.uniform(-VALUE_RANGE, VALUE_RANGE, params).astype(np.float32),
                              float(rng.integers(1, int(MAX_WEIGHT) + 1)))
            for cid in range(clients)}


def _choose_drops(spec: BenchSpec) -> dict[int, str]:
    rng = np.random.default_rng(spec.seed + 1)
    order = [int(c) for c in rng.permutation(spec.clients)]
    drops: dict[int, str] = {}
    for request in spec.drops:
        for _ in range(request.count):
            drops[order.pop()] = request.point
    return drops


def bench_aggregation(spec: BenchSpec) -> dict[str, Any]:
    """Run one round and return the bench JSON record (see README, "privfed bench")."""
    options = {"max_weight": MAX_WEIGHT, "clip": VALUE_RANGE, **spec.options}
    protocol = registry.create(spec.protection, options)
    updates = synthetic_updates(spec.clients, spec.params, spec.seed)
    drops = _choose_drops(spec)
    for point in set(drops.values()):
        protocol.resolve_drop_phase(point)
    warm_up()  # the compiled quantizer loaded before the timed round, not inside it
    report = run_round(protocol, 1, updates, drops=drops, transcript=False, client_states={})
    record: dict[str, Any] = {
        "protection": spec.protection,
        "clients": spec.clients,
        "params": spec.params,
        "seed": spec.seed,
        "drops": {str(k): v for k, v in sorted(drops.items())},
        **{k: v for k, v in report.summary().items() if k not in ("protection", "round", "participants")},
        "float32_bytes": 4 * spec.params,
    }
    record["upload_ratio_vs_float32"] = record["upload_bytes_per_client"] / (4 * spec.params)
    if report.result is None:
        record.update(max_abs_error=None, error_bound=None, result=None)
        return record
    result = report.result
    contributors = list(result.survivors)  # exact mean over the inputs actually in the result
    weights = np.array([updates[c].weight for c in contributors], dtype=np.float64)
    stacked = np.stack([updates[c].vector.astype(np.float64) for c in contributors])
    exact = weights @ stacked / weights.sum()
    aggregate = report.aggregate  # the key holders' decryption when only they learn the mean
    if aggregate is None:
        record.update(max_abs_error=None, error_bound=None, result=None, aborted="no party holds the mean")
        return record
    record["max_abs_error"] = float(np.max(np.abs(aggregate - exact)))
    record["error_bound"] = float(result.error_bound)
    record["within_bound"] = bool(record["max_abs_error"] <= result.error_bound + 1e-9 * (1 + float(np.abs(exact).max())))
    record["result"] = {"learned_by": result.learned_by, "contributor_ids": contributors,
                        "info": {k: v for k, v in result.info.items() if _plain(v)}}
    return record


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict, tuple))
