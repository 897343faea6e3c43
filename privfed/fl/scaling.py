"""Standardisation statistics combined from per-client summaries, never from pooled raw rows.

Each client (a natural unit: a CSV key, a sequence's owner) summarises its own values as :class:`Moments` — count,
mean and sum of squared deviations per channel (the three numbers a client could publish, or send through secure
aggregation, instead of its rows). :meth:`Moments.combine` merges summaries with the pairwise update of Chan, Golub
and LeVeque (1979), which is exact and numerically stable; :class:`Scale` is the result used to standardise inputs
and to put errors back into the data's own units. Missing values (NaN) are skipped per channel.

Privacy note: the combined mean and standard deviation are released to every client (they define the model's
input scale). They are aggregate statistics, not protected by the run's DP guarantee; a deployment that must
protect them agrees public scales instead (see the deployment schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from protocols.errors import ConfigError

__all__ = ["Moments", "Scale"]


@dataclass(frozen=True)
class Moments:
    """Per-channel count, mean and M2 (sum of squared deviations from the mean) of one client's values."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> "Moments":
        """Summarise a ``(rows, channels)`` array; NaN entries are left out of their channel."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2:
            raise ConfigError(f"moments need a (rows, channels) array, got shape {values.shape}")
        present = ~np.isnan(values)
        count = present.sum(axis=0).astype(np.float64)
        filled = np.where(present, values, 0.0)
        mean = np.divide(filled.sum(axis=0), count, out=np.zeros(values.shape[1]), where=count > 0)
        m2 = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0)
        return cls(count, mean, m2)

    def merge(self, other: "Moments") -> "Moments":
        """The moments of the union of both clients' values (Chan et al.'s parallel update)."""
        n = self.count + other.count
        delta = other.mean - self.mean
        safe = np.where(n > 0, n, 1.0)
        mean = self.mean + delta * other.count / safe
        m2 = self.m2 + other.m2 + delta ** 2 * self.count * other.count / safe
        return Moments(n, np.where(n > 0, mean, 0.0), np.where(n > 0, m2, 0.0))

    @classmethod
    def combine(cls, parts: Iterable["Moments"]) -> "Moments":
        parts = list(parts)
        if not parts:
            raise ConfigError("no client statistics to combine")
        total = parts[0]
        for part in parts[1:]:
            total = total.merge(part)
        return total


@dataclass(frozen=True)
class Scale:
    """``standardised = (value - mean) / std`` per channel; channels without spread keep std 1."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_moments(cls, moments: Moments) -> "Scale":
        std = np.sqrt(np.divide(moments.m2, moments.count, out=np.zeros_like(moments.m2),
                                where=moments.count > 0))
        std = np.where(std > 0, std, 1.0)
        return cls(moments.mean.copy(), std)

    @classmethod
    def identity(cls, channels: int) -> "Scale":
        return cls(np.zeros(channels), np.ones(channels))

    def apply(self, values: np.ndarray) -> np.ndarray:
        return ((np.asarray(values, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def select(self, index: list[int]) -> "Scale":
        return Scale(self.mean[index], self.std[index])
