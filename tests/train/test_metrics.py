"""Metrics as MedMNIST reports them (ACC and AUC)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qvit_hw.train import medmnist_metrics


@pytest.mark.parametrize(
    ("task", "classes"), [("binary-class", 2), ("multi-class", 8), ("ordinal-regression", 5)]
)
def test_metrics_equal_medmnist_evaluator(task: str, classes: int) -> None:
    from medmnist.evaluator import getACC, getAUC

    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, 200)
    logits = rng.normal(size=(200, classes)) + 1.5 * np.eye(classes)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    acc, auc = medmnist_metrics(labels, probs, task)

    assert acc == pytest.approx(getACC(labels[:, None], probs, task), abs=1e-12)
    assert auc == pytest.approx(getAUC(labels[:, None], probs, task), abs=1e-12)
    assert 0.5 < auc < 1.0


def test_auc_leaves_out_classes_absent_from_the_split() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    acc, auc = medmnist_metrics(labels, probs, "multi-class")
    assert (acc, auc) == (1.0, 1.0)  # class 2 has no positives: undefined, not averaged in
    assert math.isnan(medmnist_metrics(np.zeros(3), np.full((3, 2), 0.5), "binary-class")[1])
