"""Label differential privacy of the cut layer: the one place that clips, noises and accounts it.

Threat model: protects each *training label* from the feature parties (and from anyone who later sees the label
party's top model). Neighbouring datasets differ in one entity's label (replace-one adjacency). Mechanism: for every
example i of a step the label party forms the joint per-example vector g_i = (gradient of the loss w.r.t. all of its
own parameters, d loss / d cut-layer input of example i), clips its two blocks separately to C*sqrt(1 - s) and
C*sqrt(s) (``clip`` = C, ``cut_share`` = s; so the joint vector's L2 norm is at most C and neither block can crowd
the other out), and releases

* to itself: sum_i g_i[params] + N(0, (zC)^2 I)  — its own model trains by DP-SGD on this noisy sum only, and
* to the feature parties: g_i[cut] + N(0, (zC)^2 I) for each example i of the batch.

Sensitivity: changing y_i changes only g_i (the other examples' vectors depend on the labels only through the label
party's parameters, which are themselves a function of earlier *noisy* outputs), so the released vector moves by at
most 2C in L2; with noise std zC this is a Gaussian mechanism of multiplier z/2. Batches are disjoint slices of a
fresh permutation each epoch, so every label enters exactly one step per epoch; the other steps are post-processing
of it given the past outputs (adaptive composition). Epsilon = ``epochs`` Gaussian mechanisms of multiplier z/2,
accounted with the shared accountant (:mod:`protocols.dp.accounting`, PLD by default), with **no** amplification by
sampling (batches are not Poisson samples).

Limits: features are not protected by this (the label party still sees embeddings under ``concat``); evaluation
metrics and the training loss the label party reports are computed from exact labels and are outside the guarantee;
noise is drawn from the OS-keyed CSPRNG, never the experiment seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..csprng import CSPRNG
from ..dp.accounting import ACCOUNTANTS, epsilon_for
from ..dp.mechanisms import check_delta, check_positive, gaussian_noise
from ..errors import ConfigError

__all__ = ["LabelDP", "ADJACENCY"]

ADJACENCY = "replace-one-label"


@dataclass(frozen=True)
class LabelDP:
    noise_multiplier: float = 1.0
    clip: float = 1.0
    delta: float = 1e-5
    accountant: str = "pld"
    #: share of the squared clip norm given to the cut-layer rows (the rest to the label party's parameters)
    cut_share: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.cut_share, (int, float)) and 0.0 < self.cut_share < 1.0):
            raise ConfigError(f"label-dp cut_share must be in (0, 1), got {self.cut_share!r}")
        check_positive("label-dp noise_multiplier", self.noise_multiplier)
        check_positive("label-dp clip", self.clip)
        check_delta(self.delta)
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}")

    @property
    def effective_multiplier(self) -> float:
        """Noise std over L2 sensitivity (2C under replace-one-label adjacency)."""
        return self.noise_multiplier / 2.0

    def epsilon(self, epochs: int) -> float:
        """Epsilon at ``delta`` after ``epochs`` epochs (each label is used once per epoch)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1, got {epochs!r}")
        return epsilon_for(self.effective_multiplier, 1.0, epochs, self.delta, self.accountant)

    def release(self, per_example: np.ndarray, n_params: int, rng: CSPRNG) -> tuple[np.ndarray, np.ndarray, float]:
        """(noisy sum of the parameter part, noisy per-example cut rows, fraction of examples clipped).

        ``per_example`` is (batch, n_params + cut) float: row i is example i's joint vector.
        """
        g = np.asarray(per_example, dtype=np.float64)
        if g.ndim != 2 or not 0 <= n_params <= g.shape[1] or g.shape[0] == 0:
            raise ConfigError("per_example must be (batch, n_params + cut) with n_params within it")
        if not np.isfinite(g).all():
            raise ConfigError("per-example gradients hold NaN or infinite entries")
        param_part, param_hit = _clip_rows(g[:, :n_params], self.clip * math.sqrt(1.0 - self.cut_share))
        cut_part, cut_hit = _clip_rows(g[:, n_params:], self.clip * math.sqrt(self.cut_share))
        std = self.noise_multiplier * self.clip
        params = param_part.sum(axis=0) + gaussian_noise(n_params, std, rng)
        cut = cut_part + gaussian_noise(cut_part.size, std, rng).reshape(cut_part.shape)
        return params, cut, float(np.mean(param_hit | cut_hit))

    def describe(self, epochs: int) -> dict[str, object]:
        eps = self.epsilon(epochs)
        return {"mechanism": "gaussian on clipped joint per-example gradients", "adjacency": ADJACENCY,
                "noise_multiplier": self.noise_multiplier, "effective_multiplier": self.effective_multiplier,
                "clip": self.clip, "cut_share": self.cut_share, "delta": self.delta, "accountant": self.accountant,
                "epochs": epochs,
                "sampling": "none (each label once per epoch)", "epsilon": eps if math.isfinite(eps) else "inf"}


def _clip_rows(block: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Each row scaled to L2 norm <= bound; and which rows were clipped."""
    norms = np.linalg.norm(block, axis=1)
    hit = norms > bound
    return block * np.minimum(1.0, bound / np.maximum(norms, 1e-300))[:, None], hit
