"""Metrics of a vertical run: accuracy and macro-F1 (classification), MAE and RMSE (regression)."""

from __future__ import annotations

import numpy as np

__all__ = ["metrics"]


def metrics(task: str, predicted: np.ndarray, truth: np.ndarray, classes: int) -> dict[str, float]:
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if task == "regression":
        err = predicted.astype(np.float64) - truth
        return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}
    f1 = []
    for c in range(classes):
        tp = float(np.sum((predicted == c) & (truth == c)))
        fp = float(np.sum((predicted == c) & (truth != c)))
        fn = float(np.sum((predicted != c) & (truth == c)))
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(predicted == truth)), "macro_f1": float(np.mean(f1))}
