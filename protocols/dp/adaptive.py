"""Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021): the clip norm tracks a quantile of update norms.

Threat model: as central DP (:mod:`protocols.dp.placements`, ``dp``): a trusted server adds the noise. Each client
also sends one bit, whether its update norm was within the current clip norm C (centred: b - 1/2, sensitivity 1/2);
the server noises the sum of bits with std ``sigma_b`` and moves C geometrically towards the target quantile. The
privacy cost of the bits is paid out of the same budget: the update's noise multiplier becomes
``z_update = (z^-2 - (2 sigma_b)^-2)^(-1/2)`` so the pair (update, bit) is a Gaussian mechanism of multiplier ``z``
(the event recorded in the ledger). Limits: C is protocol state that evolves round to round on the server's
instance; clients read it from the same instance, so adaptive clipping needs an in-process runtime (or the current C
sent with the round's request, not implemented). C itself is a function of noised (DP) values only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from .mechanisms import check_positive

__all__ = ["AdaptiveClip", "split_noise"]


def split_noise(noise_multiplier: float, bit_noise_std: float) -> float:
    """The update's multiplier when a bit query of std ``bit_noise_std`` (sensitivity 1/2) shares the budget."""
    z = check_positive("noise_multiplier", noise_multiplier)
    sigma_b = check_positive("clip_count_std", bit_noise_std)
    remaining = z ** -2 - (2 * sigma_b) ** -2
    if remaining <= 0:
        raise ConfigError(f"clip_count_std {sigma_b} is too small for noise_multiplier {z}: the clipped-count query "
                          f"alone would use the whole budget; need clip_count_std > {z / 2:g}")
    return remaining ** -0.5


@dataclass
class AdaptiveClip:
    """Geometric update C <- C * exp(-lr * (b_bar - quantile)) from the noised fraction b_bar of unclipped updates."""

    clip_norm: float
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    clip_count_std: float = 1.0

    def __post_init__(self) -> None:
        check_positive("clip_norm", self.clip_norm)
        check_positive("clip_learning_rate", self.learning_rate)
        check_positive("clip_count_std", self.clip_count_std)
        if not 0.0 < self.target_quantile < 1.0:
            raise ConfigError(f"target_quantile must be in (0, 1), got {self.target_quantile}")

    def update(self, noised_centred_bit_sum: float, denominator: float) -> float:
        """Take the noised sum of (b - 1/2) over the round and the fixed denominator; return the new clip norm."""
        fraction = noised_centred_bit_sum / denominator + 0.5
        if not math.isfinite(fraction):
            raise ConfigError("clipped-count estimate is not finite")
        self.clip_norm *= math.exp(-self.learning_rate * (fraction - self.target_quantile))
        return self.clip_norm
