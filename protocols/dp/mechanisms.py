"""DP mechanisms: update clipping and noise samplers (Gaussian, Laplace, discrete Gaussian), all driven by a CSPRNG.

Threat model: these functions bound what one contribution can change (clipping to an L2 or L1 norm) and hide it
under noise drawn from :class:`~protocols.csprng.CSPRNG` (AES-CTR keyed from ``os.urandom``), never from the
experiment seed or any non-cryptographic generator. They protect against anyone who sees the noised output (a curious
server, later users of the released model); they assume the noise is never revealed and that whoever adds it (the
server for central DP, each client for local and distributed DP) runs this code honestly. Limits: the continuous
samplers (``gaussian_noise``, ``laplace_noise``) are textbook float transforms and inherit the floating-point
caveats of Mironov (2012); distributed DP uses the integer discrete Gaussian (Canonne, Kamath, Steinke 2020):
:func:`discrete_gaussian_exact` is exact (integer and rational arithmetic only, slow); :func:`discrete_gaussian` is the
same rejection sampler vectorised, with acceptance probabilities computed in float64 (outputs are integers;
probabilities carry relative error ~1e-16, documented rather than hidden).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from ..csprng import CSPRNG
from ..encoding import check_finite
from ..errors import ConfigError

__all__ = [
    "check_positive",
    "check_rate",
    "check_delta",
    "clip_l2",
    "clip_l1",
    "clip_per_layer",
    "gaussian_noise",
    "laplace_noise",
    "discrete_gaussian",
    "discrete_gaussian_exact",
    "DiscreteGaussianNoise",
    "TRUNCATION_SIGMAS",
]

#: distributed-DP noise is truncated at this many standard deviations: P(|X| > 12 sigma) <= 2 exp(-72) < 1.2e-31 per
#: coordinate (the discrete Gaussian is sigma-subgaussian), which is added to delta by the ledger
TRUNCATION_SIGMAS = 12.0


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """A finite positive float, or ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}")
    return value


def check_rate(name: str, value: float) -> float:
    """A sampling rate in (0, 1]."""
    value = check_positive(name, value)
    if value > 1:
        raise ConfigError(f"{name} must be in (0, 1], got {value}")
    return value


def check_delta(value: float, name: str = "delta") -> float:
    """A delta in the open interval (0, 1)."""
    value = check_positive(name, value)
    if value >= 1:
        raise ConfigError(f"{name} must be in (0, 1), got {value}")
    return value


def _flat(vector: np.ndarray) -> np.ndarray:
    x = np.asarray(vector, dtype=np.float64)
    if x.ndim != 1:
        raise ConfigError(f"update must be a flat vector, got shape {x.shape}")
    check_finite(x, "update")
    return x


def clip_l2(vector: np.ndarray, clip_norm: float) -> tuple[np.ndarray, float]:
    """``x * min(1, S / ||x||_2)`` in float64, and the norm before clipping. Non-finite input raises MessageError."""
    x = _flat(vector)
    norm = float(np.linalg.norm(x))
    factor = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return x * factor, norm


def clip_l1(vector: np.ndarray, clip_norm: float) -> tuple[np.ndarray, float]:
    """``x * min(1, S / ||x||_1)`` (L1 sensitivity, for the Laplace mechanism) and the L1 norm before clipping."""
    x = _flat(vector)
    norm = float(np.abs(x).sum())
    factor = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return x * factor, norm


def clip_per_layer(vector: np.ndarray, layer_sizes: Sequence[int], clip_norm: float) -> tuple[np.ndarray, float]:
    """Clip each layer (consecutive slices of ``layer_sizes``) to ``S / sqrt(L)``, so the whole update has L2 norm at
    most ``S`` (McMahan et al. 2018, per-layer clipping with an equal split). Returns the flat norm before clipping."""
    x = _flat(vector)
    sizes = [int(s) for s in layer_sizes]
    if any(s < 1 for s in sizes) or sum(sizes) != x.size:
        raise ConfigError(f"per_layer sizes {sizes} must be positive and sum to the update length {x.size}")
    per_layer = clip_norm / math.sqrt(len(sizes))
    out = np.empty_like(x)
    start = 0
    for size in sizes:
        out[start:start + size] = clip_l2(x[start:start + size], per_layer)[0]
        start += size
    return out, float(np.linalg.norm(x))


def gaussian_noise(dim: int, std: float, rng: CSPRNG) -> np.ndarray:
    """``dim`` i.i.d. N(0, std^2) from the CSPRNG (float64)."""
    if std == 0:
        return np.zeros(dim)
    return rng.normal(dim, check_positive("noise std", std))


def laplace_noise(dim: int, scale: float, rng: CSPRNG) -> np.ndarray:
    """``dim`` i.i.d. Laplace(0, scale) from the CSPRNG (float64)."""
    return rng.laplace(dim, check_positive("laplace scale", scale))


# ---------------------------------------------------------------- discrete Gaussian (Canonne, Kamath, Steinke 2020)

def _bernoulli(p: Fraction, rng: CSPRNG) -> bool:
    return rng.below(p.denominator) < p.numerator


def _bernoulli_exp_le1(gamma: Fraction, rng: CSPRNG) -> bool:
    """Exact Bernoulli(exp(-gamma)) for 0 <= gamma <= 1 (CKS Algorithm 1)."""
    k = 1
    while _bernoulli(gamma / k, rng):
        k += 1
    return k % 2 == 1


def _bernoulli_exp(gamma: Fraction, rng: CSPRNG) -> bool:
    """Exact Bernoulli(exp(-gamma)) for gamma >= 0."""
    while gamma > 1:
        if not _bernoulli_exp_le1(Fraction(1), rng):
            return False
        gamma -= 1
    return _bernoulli_exp_le1(gamma, rng)


def _discrete_laplace_exact(t: int, rng: CSPRNG) -> int:
    """Exact discrete Laplace with P(y) proportional to exp(-|y|/t) (CKS Algorithm 2)."""
    while True:
        u = rng.below(t)
        if not _bernoulli_exp(Fraction(u, t), rng):
            continue
        v = 0
        while _bernoulli_exp(Fraction(1), rng):
            v += 1
        value = u + t * v
        negative = rng.below(2) == 1
        if negative and value == 0:
            continue
        return -value if negative else value


def discrete_gaussian_exact(sigma: Fraction | float, rng: CSPRNG) -> int:
    """One exact sample of the discrete Gaussian N_Z(0, sigma^2) (CKS Algorithm 3; rational arithmetic only)."""
    sigma2 = Fraction(sigma) ** 2
    if sigma2 <= 0:
        raise ConfigError("sigma must be > 0")
    t = math.floor(Fraction(sigma)) + 1
    while True:
        y = _discrete_laplace_exact(t, rng)
        gamma = (abs(y) - sigma2 / t) ** 2 / (2 * sigma2)
        if _bernoulli_exp(gamma, rng):
            return y


def discrete_gaussian(n: int, sigma: float, rng: CSPRNG, bound: int | None = None) -> np.ndarray:
    """``n`` samples of N_Z(0, sigma^2) as int64: the CKS rejection sampler vectorised (discrete Laplace proposal
    from CSPRNG uniforms, acceptance exp(-(|y| - sigma^2/t)^2 / (2 sigma^2)) evaluated in float64). With ``bound``,
    samples with |y| > bound are redrawn (the distribution conditioned on |y| <= bound)."""
    sigma = check_positive("sigma", sigma)
    t = math.floor(sigma) + 1
    out = np.empty(n, dtype=np.int64)
    filled = 0
    while filled < n:
        batch = max(64, int((n - filled) * 1.6))
        u = 1.0 - rng.uniform(batch)  # (0, 1]
        magnitude = np.floor(-t * np.log(u))  # geometric: P(G >= k) = exp(-k / t)
        negative = rng.uniform(batch) < 0.5
        keep = ~(negative & (magnitude == 0))
        y = np.where(negative, -magnitude, magnitude)
        accept = rng.uniform(batch) < np.exp(-((np.abs(y) - sigma * sigma / t) ** 2) / (2 * sigma * sigma))
        keep &= accept
        if bound is not None:
            keep &= np.abs(y) <= bound
        good = y[keep].astype(np.int64)[: n - filled]
        out[filled:filled + good.size] = good
        filled += good.size
    return out


@dataclass(frozen=True)
class DiscreteGaussianNoise:
    """Integer noise a client adds before secure-aggregation masking (the ``client_noise`` of SecAggProtocol).

    ``std`` is the per-client standard deviation in real units; a sample at quantisation ``scale`` is discrete
    Gaussian with sigma = std * scale, truncated to |v| <= ceil(real_bound * scale) with ``real_bound`` =
    ``TRUNCATION_SIGMAS * std`` (tail mass per coordinate ``tail_mass``, which the ledger adds to delta).
    ``exact`` switches to the exact rational sampler (slow: for tests and audits).
    """

    std: float
    exact: bool = False

    def __post_init__(self) -> None:
        check_positive("noise std", self.std)

    @property
    def real_bound(self) -> float:
        return TRUNCATION_SIGMAS * self.std

    @property
    def tail_mass(self) -> float:
        """Upper bound on P(|v| > bound) per coordinate before truncation (subgaussian tail 2 exp(-k^2/2))."""
        return 2.0 * math.exp(-TRUNCATION_SIGMAS ** 2 / 2.0)

    def sample(self, dim: int, scale: float, rng: CSPRNG) -> np.ndarray:
        sigma = self.std * float(scale)
        bound = math.ceil(self.real_bound * float(scale))
        if sigma < 1.0:
            raise ConfigError(f"distributed DP noise std {self.std} is below one quantisation step at scale {scale}; "
                              "use a finer encoding (more bits) or more noise")
        if self.exact:
            values = []
            while len(values) < dim:
                v = discrete_gaussian_exact(Fraction(sigma), rng)
                if abs(v) <= bound:
                    values.append(v)
            return np.array(values, dtype=np.int64)
        return discrete_gaussian(dim, sigma, rng, bound)
