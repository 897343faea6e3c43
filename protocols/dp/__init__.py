"""Differential privacy for federated aggregation: mechanisms, placements, accounting and the privacy ledger.

Threat model: DP bounds what the *output* (the released model, or what a party sees) reveals about one user
(user-level placements) or one training record (DP-SGD), under add/remove-one adjacency, as (epsilon, delta)
computed by dp-accounting. It assumes the noise stays secret and comes from the CSPRNG (never the experiment seed),
that the declared sampling rate is real, and that whoever adds the noise runs this code. It does not hide who took
part in a round, and it says nothing about a round released without noise (the ledger then reports epsilon = inf).
See :mod:`protocols.dp.placements` for what each placement hides from whom.

Modules: :mod:`~protocols.dp.mechanisms` (clipping, Gaussian/Laplace/discrete Gaussian samplers),
:mod:`~protocols.dp.accounting` (epsilon and target noise through dp-accounting, PLD default, RDP option),
:mod:`~protocols.dp.ledger` (frozen per-round events, saved with the run and re-derivable),
:mod:`~protocols.dp.placements` (the protections ``dp``, ``local-dp``, ``dp-sgd``, ``secagg+dp``, ``ckks+dp``),
:mod:`~protocols.dp.adaptive` (adaptive clipping, Andrew et al. 2021). dp-accounting is imported only when an
epsilon is computed.
"""

from .ledger import PrivacyEvent, PrivacyLedger
from .mechanisms import DiscreteGaussianNoise

__all__ = ["PrivacyEvent", "PrivacyLedger", "DiscreteGaussianNoise"]
