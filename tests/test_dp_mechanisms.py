"""Mechanisms: clipping, declared noise on the aggregate (statistical), integer samplers, CSPRNG-only noise."""

from __future__ import annotations

import ast
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from privfed.runtime.local import run_round
from protocols import registry
from protocols.base import ClientUpdate
from protocols.csprng import CSPRNG
from protocols.dp.mechanisms import (DiscreteGaussianNoise, clip_l1, clip_l2, clip_per_layer, discrete_gaussian,
                                     discrete_gaussian_exact)
from protocols.errors import ConfigError, MessageError

DP_DIR = Path(__file__).resolve().parent.parent / "protocols" / "dp"


def _chi2_bounds(dof: int, z: float = 5.0) -> tuple[float, float]:
    """A generous two-sided bound on a sample variance ratio (normal approximation of chi2/dof, 5 sigma)."""
    half = z * math.sqrt(2.0 / dof)
    return 1.0 - half, 1.0 + half


def test_clip_l2_flat_and_per_layer() -> None:
    x = np.array([3.0, 4.0, 0.0, 0.0])
    clipped, norm = clip_l2(x, 1.0)
    assert norm == 5.0 and np.isclose(np.linalg.norm(clipped), 1.0) and np.allclose(clipped, x / 5)
    small = np.array([0.1, 0.2])
    assert np.array_equal(clip_l2(small, 1.0)[0], small)  # inside the ball: untouched
    layered, _ = clip_per_layer(np.array([3.0, 4.0, 6.0, 8.0]), [2, 2], 1.0)
    assert np.isclose(np.linalg.norm(layered[:2]), 1 / math.sqrt(2))
    assert np.isclose(np.linalg.norm(layered[2:]), 1 / math.sqrt(2))
    assert np.linalg.norm(layered) <= 1.0 + 1e-12
    with pytest.raises(ConfigError, match="per_layer"):
        clip_per_layer(np.ones(4), [3, 3], 1.0)
    l1, norm1 = clip_l1(np.array([1.0, -3.0]), 2.0)
    assert norm1 == 4.0 and np.isclose(np.abs(l1).sum(), 2.0)


def test_non_finite_updates_raise() -> None:
    for bad in (np.array([1.0, np.nan]), np.array([np.inf, 0.0])):
        with pytest.raises(MessageError):
            clip_l2(bad, 1.0)
    protocol = registry.create("dp", {"max_weight": 1.0, "clip": 1.0})
    update = ClientUpdate(np.zeros(3, np.float32), 1.0)
    object.__setattr__(update, "vector", np.array([np.nan, 0, 0], np.float32))  # bypass ClientUpdate's own check
    with pytest.raises(MessageError):
        protocol.client(0, 1, update, {})


@pytest.mark.parametrize("name", ["dp", "local-dp", "secagg+dp"])
def test_clients_clip_their_update_to_the_clip_norm(name: str) -> None:
    """A huge update moves the aggregate by at most S / denominator (plus noise): clipping happened client-side."""
    protocol = registry.create(name, {"max_weight": 1.0, "clip": 100.0, "clip_norm": 1.0, "noise_multiplier": 1e-3})
    dim = 64
    updates = {c: ClientUpdate(np.full(dim, 50.0 if c == 0 else 0.0, np.float32), 1.0) for c in range(4)}
    result = run_round(protocol, 1, updates).result
    assert result is not None
    shift = np.linalg.norm(result.mean) * result.info["dp_denominator"]
    assert shift <= 1.0 + 10 * result.info["dp_noise_std"] * result.info["dp_denominator"] * math.sqrt(dim)


@pytest.mark.parametrize("name, options", [
    ("dp", {}),
    ("dp", {"per_layer": [10, 30]}),
    ("local-dp", {}),
    ("secagg+dp", {}),
])
def test_noise_on_the_aggregate_has_the_declared_std(name: str, options: dict) -> None:
    """Zero inputs through run_round: the released mean is pure noise; its sample std must match dp_noise_std."""
    protocol = registry.create(name, {"max_weight": 1.0, "clip": 1.0, "noise_multiplier": 1.3, "clip_norm": 0.7,
                                      **options})
    dim, trials = 40, 25
    samples = []
    declared = set()
    for trial in range(trials):
        updates = {c: ClientUpdate(np.zeros(dim, np.float32), 1.0) for c in range(4)}
        result = run_round(protocol, trial + 1, updates, transcript=False).result
        assert result is not None
        samples.append(result.mean)
        declared.add(round(result.info["dp_noise_std"], 12))
    (std,) = declared
    values = np.concatenate(samples)
    dof = values.size
    expected = {"dp": 1.3 * 0.7 / 4, "local-dp": 1.3 * 0.7 * 2 / 4, "secagg+dp": 1.3 * 0.7 / 4}[name]
    assert math.isclose(std, expected, rel_tol=1e-9)
    ratio = float(np.mean(values ** 2)) / std ** 2
    low, high = _chi2_bounds(dof)
    assert low < ratio < high, (ratio, low, high)
    assert abs(float(np.mean(values))) < 5 * std / math.sqrt(dof)


def test_vectorised_discrete_gaussian_mean_and_variance() -> None:
    rng = CSPRNG.from_os()
    sigma = 3.7
    values = discrete_gaussian(40_000, sigma, rng)
    assert values.dtype == np.int64
    low, high = _chi2_bounds(values.size)
    # a discrete Gaussian's variance is sigma^2 up to a relative 1e-20 for sigma > 1
    assert low < float(np.mean(values.astype(float) ** 2)) / sigma ** 2 < high
    assert abs(float(values.mean())) < 5 * sigma / math.sqrt(values.size)
    # probabilities follow exp(-k^2 / 2 sigma^2): compare P(0) and P(+-3) with their exact values
    grid = np.arange(-60, 61)
    pmf = np.exp(-grid ** 2 / (2 * sigma ** 2))
    pmf /= pmf.sum()
    for k in (0, 3, -3):
        p = pmf[k + 60]
        observed = float(np.mean(values == k))
        assert abs(observed - p) < 5 * math.sqrt(p * (1 - p) / values.size)


def test_exact_discrete_gaussian_sampler() -> None:
    rng = CSPRNG.from_os()
    sigma = Fraction(3, 2)
    values = np.array([discrete_gaussian_exact(sigma, rng) for _ in range(3000)], dtype=float)
    low, high = _chi2_bounds(values.size)
    assert low < float(np.mean(values ** 2)) / float(sigma) ** 2 < high
    assert abs(float(values.mean())) < 5 * float(sigma) / math.sqrt(values.size)


def test_client_noise_hook_truncates_to_its_bound() -> None:
    noise = DiscreteGaussianNoise(std=0.01)
    assert noise.real_bound == pytest.approx(0.12)
    assert noise.tail_mass < 1e-30
    scale = 2.0 ** 12
    values = noise.sample(5000, scale, CSPRNG.from_os())
    assert values.dtype == np.int64 and values.shape == (5000,)
    assert int(np.abs(values).max()) <= math.ceil(noise.real_bound * scale)
    tight = DiscreteGaussianNoise(std=0.01)
    assert np.abs(discrete_gaussian(2000, 40.0, CSPRNG.from_os(), bound=5)).max() <= 5
    exact = DiscreteGaussianNoise(std=0.01, exact=True).sample(50, scale, CSPRNG.from_os())
    assert exact.dtype == np.int64 and np.abs(exact).max() <= math.ceil(tight.real_bound * scale)
    with pytest.raises(ConfigError, match="quantisation step"):
        noise.sample(10, 10.0, CSPRNG.from_os())


def test_dp_code_draws_noise_only_from_the_csprng() -> None:
    """No numpy.random, random, secrets-free floats or torch anywhere in protocols/dp (the randomness rule)."""
    for path in DP_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "random":
                assert not (isinstance(node.value, ast.Name) and node.value.id in ("np", "numpy")), path
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("random", "torch", "privfed") or n.startswith("numpy.random")
                               for n in names), (path, names)
