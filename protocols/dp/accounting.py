"""Privacy accounting through Google's dp-accounting: PLD (default) or RDP, epsilon and target noise.

Threat model: accounting hides nothing; it states how much a mechanism's output can reveal, as (epsilon, delta)
under add/remove-one adjacency (one user for user-level events, one record for record-level events). The figures
are only as true as the events fed in: the sampling must really be Poisson with the stated rate (use 1.0 when it is
not), the noise must really have the stated multiplier relative to the real clip norm, and the noise must stay
secret. We do not re-implement accountants: PLD (``dp_accounting.pld.PLDAccountant``, discretisation 1e-4,
pessimistic) by default, RDP (``dp_accounting.rdp.RdpAccountant``, its default orders) on request; RDP is never
smaller than PLD. Literature figures from before 2020 used an older RDP-to-DP conversion and are 15-25% larger.
"""

from __future__ import annotations

import logging
from typing import Iterable

from ..errors import ConfigError
from .mechanisms import check_delta, check_positive, check_rate

__all__ = [
    "ACCOUNTANTS",
    "make_event",
    "epsilon_for",
    "epsilon_of_events",
    "noise_multiplier_for",
]

ACCOUNTANTS = ("pld", "rdp")
MECHANISMS = ("gaussian", "laplace")
MAX_NOISE_MULTIPLIER = 1000.0
MIN_NOISE_MULTIPLIER = 0.05


def _dp():
    try:
        import dp_accounting
    except ModuleNotFoundError:  # pragma: no cover - depends on the install
        raise ConfigError("accounting needs dp-accounting: pip install 'privfed[dp]'") from None
    # RDP logs a warning per order whose series does not converge (it then excludes that order): that is noise on
    # a command line, the figure stays valid.
    logging.getLogger("absl").setLevel(logging.ERROR)
    return dp_accounting


def _accountant(name: str):
    dp = _dp()
    if name == "pld":
        return dp.pld.PLDAccountant()
    if name == "rdp":
        return dp.rdp.RdpAccountant()
    raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {name!r}")


def make_event(mechanism: str, noise_multiplier: float, sample_rate: float = 1.0):
    """A dp-accounting event: Gaussian (noise std / L2 sensitivity) or Laplace (scale / L1 sensitivity), Poisson
    subsampled when ``sample_rate`` < 1."""
    dp = _dp()
    z = check_positive("noise_multiplier", noise_multiplier)
    q = check_rate("sample_rate", sample_rate)
    if mechanism == "gaussian":
        event = dp.GaussianDpEvent(z)
    elif mechanism == "laplace":
        event = dp.LaplaceDpEvent(z)
    else:
        raise ConfigError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    return event if q == 1.0 else dp.PoissonSampledDpEvent(q, event)


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1, got {steps!r}")
    return steps


def epsilon_of_events(events: Iterable[tuple[object, int]], delta: float, accountant: str = "pld") -> float:
    """Epsilon at ``delta`` of the composition of (dp-accounting event, count) pairs."""
    delta = check_delta(delta)
    acc = _accountant(accountant)
    any_event = False
    events = list(events)
    try:
        for event, count in events:
            acc.compose(event, int(count))
            any_event = True
        if not any_event:
            return 0.0
        return float(acc.get_epsilon(delta))
    except (OverflowError, ValueError, MemoryError, FloatingPointError) as exc:
        # dp-accounting's own arithmetic gives up at extreme parameters (a multiplier of 1e-9 or 1e308, 10^12 steps):
        # a refusal naming the parameters, never a foreign exception or a figure we cannot vouch for
        shown = "; ".join(f"{count} x {event}" for event, count in events)[:300]
        raise ConfigError(f"epsilon cannot be computed by the {accountant} accountant for these events ({shown}): "
                          f"{type(exc).__name__}: {str(exc)[:120]}; use a noise multiplier, rate and step count in "
                          f"a practical range") from None


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "pld",
                mechanism: str = "gaussian") -> float:
    """Epsilon after ``steps`` Poisson-subsampled (rate q) Gaussian steps of multiplier z at ``delta``."""
    _check_steps(steps)
    return epsilon_of_events([(make_event(mechanism, noise_multiplier, sample_rate), steps)], delta, accountant)


def noise_multiplier_for(target_epsilon: float, sample_rate: float, steps: int, delta: float,
                         accountant: str = "pld", tol: float = 1e-3) -> float:
    """The smallest Gaussian noise multiplier (within ``tol``) whose epsilon over ``steps`` is <= the target.

    Raises ConfigError naming ``epsilon`` when no multiplier up to 1000 meets the target.
    """
    target = check_positive("epsilon", target_epsilon)
    q = check_rate("sample_rate", sample_rate)
    delta = check_delta(delta)
    _check_steps(steps)

    def eps(z: float, name: str = accountant) -> float:
        return epsilon_for(z, q, steps, delta, name)

    def calibrate(name: str, low: float, high: float) -> float:
        dp = _dp()
        return float(dp.calibrate_dp_mechanism(lambda: _accountant(name),
                                               lambda z: dp.SelfComposedDpEvent(make_event("gaussian", z, q), steps),
                                               target, delta, dp.ExplicitBracketInterval(low, high), tol=tol))

    # RDP is fast and never below PLD: its answer bounds the PLD answer from above, so PLD only searches below it
    # (PLD at tiny multipliers is slow, so it is never asked about them)
    if eps(MAX_NOISE_MULTIPLIER, "rdp") > target:
        if accountant == "rdp" or eps(MAX_NOISE_MULTIPLIER) > target:
            raise ConfigError(f"epsilon {target} at delta {delta} cannot be met over {steps} steps at sample rate "
                              f"{q}, even with noise multiplier {MAX_NOISE_MULTIPLIER:g}: raise epsilon or delta, or "
                              "plan fewer steps / a lower sample rate")
        high = MAX_NOISE_MULTIPLIER
    elif eps(MIN_NOISE_MULTIPLIER, "rdp") <= target:
        high = MIN_NOISE_MULTIPLIER
    else:
        high = calibrate("rdp", MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER)
    if accountant == "rdp" or high == MIN_NOISE_MULTIPLIER:
        return high
    low = high * 0.75  # PLD is rarely below 0.75x RDP's multiplier; step down if it is
    while eps(low) <= target:
        if low <= MIN_NOISE_MULTIPLIER:
            return MIN_NOISE_MULTIPLIER
        high, low = low, max(low * 0.75, MIN_NOISE_MULTIPLIER)
    return calibrate(accountant, low, high)
