"""Partitioners: which samples each federated client holds.

* :func:`natural` — one client per key (a stdlib module, a user's file, a CSV client column): real non-IID data;
* :func:`iid` — a uniform random split into ``n`` near-equal parts;
* :func:`dirichlet` — label skew: for every label, the share of its samples each client gets is drawn from
  Dirichlet(alpha · 1); small alpha gives clients dominated by few labels (Hsu et al., 2019). "Label" is the class
  for classification and the natural key (source) for next-token prediction and forecasting.

All take a numpy ``Generator`` seeded from the experiment seed (data only, never a secret path) and return a list
of sorted index arrays, one per client, that together cover every sample exactly once.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from protocols.errors import ConfigError

__all__ = ["natural", "iid", "dirichlet", "partition"]


def natural(keys: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """One part per distinct key, in ascending key order."""
    keys = np.asarray(keys)
    return [np.flatnonzero(keys == key) for key in np.unique(keys)]


def iid(n_samples: int, n_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A uniform random split into ``n_clients`` parts whose sizes differ by at most one."""
    if n_clients < 1:
        raise ConfigError("data.clients must be >= 1")
    if n_samples < n_clients:
        raise ConfigError(f"cannot split {n_samples} samples into {n_clients} non-empty clients")
    order = rng.permutation(n_samples)
    return [np.sort(part) for part in np.array_split(order, n_clients)]


def dirichlet(labels: Sequence[int] | np.ndarray, n_clients: int, alpha: float,
              rng: np.random.Generator) -> list[np.ndarray]:
    """Label-skewed split: for each label, proportions over clients ~ Dirichlet(alpha). Parts may be empty."""
    if n_clients < 1:
        raise ConfigError("data.clients must be >= 1")
    if not alpha > 0:
        raise ConfigError("data.alpha must be > 0")
    labels = np.asarray(labels)
    parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(n_clients, float(alpha)))
        cuts = (np.cumsum(shares)[:-1] * members.size).astype(int)
        for client, chunk in enumerate(np.split(members, cuts)):
            parts[client].append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=int) for p in parts]


def partition(method: str, keys: np.ndarray, labels: np.ndarray, n_clients: int, alpha: float,
              rng: np.random.Generator) -> list[np.ndarray]:
    """Dispatch on ``data.partition``."""
    if method == "natural":
        return natural(keys)
    if method == "iid":
        return iid(int(keys.size), n_clients, rng)
    if method == "dirichlet":
        return dirichlet(labels, n_clients, alpha, rng)
    raise ConfigError(f"data.partition must be natural, iid or dirichlet, got {method!r}")
