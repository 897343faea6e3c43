"""Metrics people read: accuracy and macro-F1 for classification, MAE and RMSE in the data's own units for
forecasting. Each is a tally that accumulates batch by batch (so evaluation never holds all outputs at once) and
reports plain floats for ``rounds.jsonl``, ``summary.json`` and the run table.

* :class:`ClassTally` — a confusion matrix over ``classes`` labels; targets equal to ``IGNORE`` (-100, torch's
  ``ignore_index``, used for padded positions) are skipped. Macro-F1 is the unweighted mean of per-class F1 over
  the classes that occur in the targets or the predictions (scikit-learn's ``average="macro"`` convention); a class
  with no true and no predicted sample is left out rather than counted as 0 or 1.
* :class:`ErrorTally` — per-channel sums of absolute and squared errors after undoing the standardisation
  (``error × std``: the mean cancels), so MAE and RMSE are in the units of the CSV's columns. ``mae``/``rmse``
  pool every predicted column; ``mae_by_column``/``rmse_by_column`` give each (the pooled figure is only meaningful
  when the columns share a unit — choose ``data.target_columns`` to forecast one quantity).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from protocols.errors import ConfigError

__all__ = ["IGNORE", "ClassTally", "ErrorTally", "accuracy", "macro_f1"]

IGNORE = -100


class ClassTally:
    """Confusion matrix ``counts[true, predicted]``."""

    def __init__(self, classes: int) -> None:
        if classes < 1:
            raise ConfigError(f"a classification tally needs >= 1 class, got {classes}")
        self.counts = np.zeros((classes, classes), dtype=np.int64)

    def add(self, predicted: np.ndarray, targets: np.ndarray) -> None:
        predicted, targets = np.asarray(predicted).reshape(-1), np.asarray(targets).reshape(-1)
        if predicted.shape != targets.shape:
            raise ConfigError(f"{predicted.size} predictions for {targets.size} targets")
        keep = targets != IGNORE
        predicted, targets = predicted[keep].astype(np.int64), targets[keep].astype(np.int64)
        k = self.counts.shape[0]
        if targets.size and (targets.min() < 0 or targets.max() >= k or predicted.min() < 0 or predicted.max() >= k):
            raise ConfigError(f"a label or prediction lies outside the {k} classes")
        np.add.at(self.counts, (targets, predicted), 1)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def accuracy(self) -> float:
        return float(np.trace(self.counts) / self.total) if self.total else math.nan

    def macro_f1(self) -> float:
        tp = np.diag(self.counts).astype(np.float64)
        fp = self.counts.sum(axis=0) - tp
        fn = self.counts.sum(axis=1) - tp
        seen = (tp + fp + fn) > 0
        if not seen.any():
            return math.nan
        f1 = 2 * tp[seen] / (2 * tp[seen] + fp[seen] + fn[seen])
        return float(f1.mean())


def accuracy(predicted: Sequence[int], targets: Sequence[int], classes: int) -> float:
    tally = ClassTally(classes)
    tally.add(np.asarray(predicted), np.asarray(targets))
    return tally.accuracy()


def macro_f1(predicted: Sequence[int], targets: Sequence[int], classes: int) -> float:
    tally = ClassTally(classes)
    tally.add(np.asarray(predicted), np.asarray(targets))
    return tally.macro_f1()


class ErrorTally:
    """Absolute and squared forecast errors per channel, in the data's units (``std`` per channel, or 1)."""

    def __init__(self, std: Sequence[float], names: Sequence[str] = ()) -> None:
        self.std = np.asarray(std, dtype=np.float64)
        self.names = tuple(names) or tuple(f"channel-{j}" for j in range(self.std.size))
        if len(self.names) != self.std.size:
            raise ConfigError(f"{len(self.names)} column names for {self.std.size} channels")
        self.abs_sum = np.zeros(self.std.size)
        self.sq_sum = np.zeros(self.std.size)
        self.count = 0

    def add(self, predicted: np.ndarray, targets: np.ndarray) -> None:
        predicted, targets = np.asarray(predicted, np.float64), np.asarray(targets, np.float64)
        if predicted.shape != targets.shape or predicted.ndim != 2 or predicted.shape[1] != self.std.size:
            raise ConfigError(f"forecast shape {predicted.shape} vs targets {targets.shape} "
                              f"({self.std.size} channels expected)")
        error = (predicted - targets) * self.std
        self.abs_sum += np.abs(error).sum(axis=0)
        self.sq_sum += (error ** 2).sum(axis=0)
        self.count += predicted.shape[0]

    def report(self) -> dict[str, Any]:
        if not self.count:
            return {"mae": math.nan, "rmse": math.nan}
        n = self.count
        out: dict[str, Any] = {"mae": float(self.abs_sum.sum() / (n * self.std.size)),
                               "rmse": float(math.sqrt(self.sq_sum.sum() / (n * self.std.size)))}
        if self.std.size > 1:
            out["mae_by_column"] = {name: float(a / n) for name, a in zip(self.names, self.abs_sum)}
            out["rmse_by_column"] = {name: float(math.sqrt(s / n)) for name, s in zip(self.names, self.sq_sum)}
        return out
