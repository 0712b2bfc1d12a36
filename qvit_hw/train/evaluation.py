"""A model over one split, in batches: logits, n-vectors, and loss with ACC and AUC."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import track
from torch import Tensor, nn

from ..data import ImageSet, Normalization, to_tensor
from .metrics import Metrics, medmnist_metrics

EVAL_BATCH = 128


@torch.no_grad()
def _over_batches(
    fn: Callable[[Tensor], Tensor],
    data: ImageSet,
    norm: Normalization,
    console: Console | None,
    what: str,
) -> Tensor:
    starts = range(0, len(data), EVAL_BATCH)
    shown = track(starts, what, console=console, disable=console is None, transient=True)
    return torch.cat([fn(to_tensor(data.images[i : i + EVAL_BATCH], norm)) for i in shown])


def predict(
    model: nn.Module, data: ImageSet, norm: Normalization, console: Console | None = None
) -> Tensor:
    """Logits of every image: (N, classes)."""
    model.eval()
    return _over_batches(model, data, norm, console, f"{data.name} {data.split}: predicting")


def features(
    model: nn.Module, data: ImageSet, norm: Normalization, console: Console | None = None
) -> Tensor:
    """Post-ReLU n-vectors of every image (student or teacher): (N, n)."""
    model.eval()
    fn = model.features
    return _over_batches(fn, data, norm, console, f"{data.name} {data.split}: n-vectors")


def evaluate(
    model: nn.Module, data: ImageSet, norm: Normalization, console: Console | None = None
) -> Metrics:
    """Cross-entropy, ACC and AUC of ``model`` on one split."""
    logits = predict(model, data, norm, console)  # (N, C)
    labels = torch.from_numpy(data.labels)
    loss = float(F.cross_entropy(logits, labels))
    acc, auc = medmnist_metrics(data.labels, logits.softmax(dim=1).numpy(), data.task)
    return Metrics(loss, acc, auc)
