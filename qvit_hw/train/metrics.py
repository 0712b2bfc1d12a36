"""Metrics as MedMNIST reports them: ACC and ROC AUC (binary: AUC of the positive class;
multi-class and ordinal: one-vs-rest, macro). Needs numpy and scikit-learn only."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score


@dataclass(frozen=True)
class Metrics:
    loss: float
    acc: float
    auc: float  # nan when no class has both positives and negatives in the split


def medmnist_metrics(labels: np.ndarray, probs: np.ndarray, task: str) -> tuple[float, float]:
    """(ACC, AUC) as MedMNIST's Evaluator: labels (N,), class probabilities (N, C).

    Binary: AUC of the positive class, accuracy at 0.5. Multi-class and ordinal: accuracy of
    the arg-max, AUC one-vs-rest averaged over classes (classes absent from ``labels``, where
    AUC is undefined and MedMNIST would stop, are left out of the average).
    """
    labels = np.asarray(labels).reshape(-1)
    if task == "binary-class":
        score = probs[:, -1]
        return float(accuracy_score(labels, score > 0.5)), _auc(labels, score)
    aucs = [_auc(labels == c, probs[:, c]) for c in range(probs.shape[1])]
    defined = [a for a in aucs if not math.isnan(a)]
    auc = float(np.mean(defined)) if defined else math.nan
    return float(accuracy_score(labels, probs.argmax(axis=1))), auc


def format_metric(value: float | None) -> str:
    """A metric for people: four decimals, or "n/a" when undefined."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else math.nan
