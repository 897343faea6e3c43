"""Neighbour graphs for SecAgg (complete) and SecAgg+ (random k-regular Harary graph, Bell et al. CCS 2020).

Threat model: the graph is public. In SecAgg+ a client shares its secrets with, and masks against, only its k graph
neighbours, so the guarantees are per neighbourhood: fewer than t corrupt neighbours of an honest client (plus the
server) learn nothing about its secrets, and at least t surviving neighbours are needed to unmask. With the labels
of a Harary graph assigned by a uniformly random permutation, each neighbourhood is a random k-subset, and
:func:`choose_neighbours` picks k = O(log n) and t so that, by a union bound over the n clients, the chance that
any neighbourhood holds >= t corrupt clients is <= 2^-security_bits and the chance that any neighbourhood keeps
< t survivors is <= 2^-correctness_bits (binomial tails; sampling without replacement only concentrates better).
The permutation is drawn by the server from its OS-keyed CSPRNG and sent to every client: that is sound against an
honest-but-curious server (it follows the protocol, so the labelling is random); against a malicious server that
could pick the graph, the labelling must come from public randomness both sides trust (a beacon or a joint coin
toss) — not implemented here. Limits: Bell et al. additionally bound the probability that dropped and corrupt
clients disconnect the honest survivors (which would reveal partial sums); with t well above the corrupt count and
k = O(log n) that event is covered only heuristically here, not proven with their exact constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

from ..csprng import CSPRNG
from ..errors import ConfigError

MAX_AUTO_K = 512  # beyond this the sparse graph saves little; the complete graph is used

__all__ = ["MAX_AUTO_K", "Graph", "complete_graph", "harary_graph", "choose_neighbours", "random_permutation",
           "sparse_failure", "SECURITY_BITS", "CORRECTNESS_BITS"]

SECURITY_BITS, CORRECTNESS_BITS = 40, 20


@dataclass(frozen=True)
class Graph:
    """Open neighbourhoods (never containing the node itself) of every client; ``k`` is the common degree."""

    kind: str
    k: int
    neighbours: Mapping[int, frozenset[int]]

    def closed(self, node: int) -> frozenset[int]:
        return self.neighbours[node] | {node}


def complete_graph(ids: Sequence[int]) -> Graph:
    everyone = frozenset(ids)
    return Graph("complete", len(ids) - 1, {i: everyone - {i} for i in ids})


def random_permutation(items: Sequence[int], rng: CSPRNG) -> list[int]:
    """Fisher-Yates with CSPRNG rejection sampling (exactly uniform)."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = rng.below(i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def harary_graph(ids: Sequence[int], k: int, rng: CSPRNG) -> Graph:
    """H(k, n) with randomly permuted labels: position i is joined to positions i +- 1 .. i +- k/2 (k even)."""
    n = len(ids)
    if k % 2 or not 2 <= k < n - 1:
        raise ConfigError(f"a sparse Harary graph needs an even k with 2 <= k < n - 1, got k={k}, n={n}")
    order = random_permutation(sorted(ids), rng)
    neighbours = {}
    for pos, node in enumerate(order):
        neighbours[node] = frozenset(order[(pos + d) % n] for d in range(-k // 2, k // 2 + 1) if d != 0)
    return Graph("harary", k, neighbours)


def _log_binom_pmf(k: int, i: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if i == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if i == k else -math.inf
    return (math.lgamma(k + 1) - math.lgamma(i + 1) - math.lgamma(k - i + 1)
            + i * math.log(p) + (k - i) * math.log1p(-p))


def _upper_tails(k: int, p: float) -> list[float]:
    """tails[t] = P[Binomial(k, p) >= t] for t = 0 .. k + 1."""
    pmf = [math.exp(_log_binom_pmf(k, i, p)) for i in range(k + 1)]
    tails = [0.0] * (k + 2)
    for i in range(k, -1, -1):
        tails[i] = tails[i + 1] + pmf[i]
    return tails


@lru_cache(maxsize=256)  # a pure function of public parameters, asked by the server and every client
def choose_neighbours(n: int, dropout_fraction: float, corruption_fraction: float, *, security_bits: int = 40,
                      correctness_bits: int = 20) -> tuple[int, int] | None:
    """The smallest even k (and a threshold t within the neighbourhood) meeting both tails, or None when no
    k < min(n - 1, MAX_AUTO_K) does (then the complete graph is the answer).

    Privacy: P[Bin(k, gamma) >= t] <= 2^-security_bits / n. Correctness: P[Bin(k, 1 - delta) < t]
    <= 2^-correctness_bits / n. t is the midpoint of the feasible range [t_min, t_max], split evenly between
    the privacy and the dropout margin.
    """
    if not (0.0 <= dropout_fraction < 1.0 and 0.0 <= corruption_fraction < 1.0):
        raise ConfigError("dropout_fraction and corruption_fraction must be in [0, 1)")
    if dropout_fraction + corruption_fraction >= 1.0:
        raise ConfigError("dropout_fraction + corruption_fraction must be below 1")
    eps_privacy = 2.0 ** -security_bits / n
    eps_correct = 2.0 ** -correctness_bits / n
    for k in range(2, min(n - 1, MAX_AUTO_K + 1), 2):
        corrupt = _upper_tails(k, corruption_fraction)
        alive = _upper_tails(k, 1.0 - dropout_fraction)
        t_min = next((t for t in range(2, k + 1) if corrupt[t] <= eps_privacy), None)
        if t_min is None:
            continue
        t_max = next((t for t in range(k, 1, -1) if 1.0 - alive[t] <= eps_correct), None)
        if t_max is not None and t_min <= t_max:
            return k, (t_min + t_max + 1) // 2
    return None


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _hypergeometric_at_least(population: int, marked: int, draws: int, at_least: int) -> float:
    """P[X >= at_least] for X the marked items among ``draws`` drawn without replacement from ``population``."""
    low, high = max(at_least, 0, draws - (population - marked)), min(draws, marked)
    if low > high:
        return 0.0
    total = _log_choose(population, draws)
    return min(1.0, sum(math.exp(_log_choose(marked, i) + _log_choose(population - marked, draws - i) - total)
                        for i in range(low, high + 1)))


def sparse_failure(n: int, k: int, t: int, colluders: int, dropouts: int) -> tuple[float, float]:
    """(privacy failure, correctness failure) of one SecAgg+ round on a randomly labelled Harary graph H(k, n) with
    threshold t among each client's k neighbours, against ``colluders`` corrupt clients and ``dropouts`` dropped
    clients fixed before the labelling is drawn.

    Each neighbourhood is a uniformly random k-subset of the other n - 1 clients, so the corrupt (dropped) clients in
    it are hypergeometric — exact, no binomial approximation. Privacy fails when some honest client has >= t corrupt
    neighbours (union bound over the n - colluders honest clients); correctness when some client keeps fewer than t
    surviving neighbours (more than k - t dropped; union bound over all n). Compare with 2^-SECURITY_BITS and
    2^-CORRECTNESS_BITS, the standard :func:`choose_neighbours` holds itself to.
    """
    if not 1 < t <= k <= n - 1:
        raise ConfigError(f"sparse SecAgg needs 1 < t <= k <= n - 1, got n={n}, k={k}, t={t}")
    privacy = min(1.0, max(n - colluders, 0) * _hypergeometric_at_least(n - 1, min(colluders, n - 1), k, t))
    correctness = min(1.0, n * _hypergeometric_at_least(n - 1, min(dropouts, n - 1), k, k - t + 1))
    return privacy, correctness
