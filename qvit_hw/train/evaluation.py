"""A model over one split, in batches: logits, n-vectors, and loss with ACC and AUC.

With a `Runtime` the batches run on its device and precision, and under torchrun every
rank takes a contiguous shard of the split; the results are gathered so that every rank
returns the whole split's outputs, in order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import track
from torch import Tensor, nn

from ..data import ImageSet, Normalization
from .batches import eval_batches, loader
from .metrics import Metrics, medmnist_metrics
from .runtime import Runtime

EVAL_BATCH = 128


@torch.no_grad()
def _over_batches(
    fn: Callable[[Tensor], Tensor],
    data: ImageSet,
    norm: Normalization,
    console: Console | None,
    what: str,
    runtime: Runtime | None,
) -> Tensor:
    rt = runtime or Runtime()
    batches = eval_batches(len(data), EVAL_BATCH, rt)
    shown = track(
        loader(data.images, batches, rt),
        what,
        total=len(batches),
        console=console,
        disable=console is None or not rt.main,
        transient=True,
    )
    outs = []
    for images, _ in shown:
        with rt.autocast():
            outs.append(fn(rt.inputs(images, norm)).float().cpu())
    if not outs:  # an empty shard (more ranks than images): the model says its width
        probe = torch.zeros(1, *data.images.shape[1:], dtype=torch.uint8)
        with rt.autocast():
            outs.append(fn(rt.inputs(probe, norm)).float().cpu()[:0])
    return rt.gather(torch.cat(outs))


def predict(
    model: nn.Module,
    data: ImageSet,
    norm: Normalization,
    console: Console | None = None,
    runtime: Runtime | None = None,
) -> Tensor:
    """Logits of every image: (N, classes), float32 on the CPU."""
    model.eval()
    what = f"{data.name} {data.split}: predicting"
    return _over_batches(model, data, norm, console, what, runtime)


def features(
    model: nn.Module,
    data: ImageSet,
    norm: Normalization,
    console: Console | None = None,
    runtime: Runtime | None = None,
) -> Tensor:
    """Post-ReLU n-vectors of every image (student or teacher): (N, n), on the CPU."""
    model.eval()
    what = f"{data.name} {data.split}: n-vectors"
    return _over_batches(model.features, data, norm, console, what, runtime)


def evaluate(
    model: nn.Module,
    data: ImageSet,
    norm: Normalization,
    console: Console | None = None,
    runtime: Runtime | None = None,
) -> Metrics:
    """Cross-entropy, ACC and AUC of ``model`` on one split."""
    logits = predict(model, data, norm, console, runtime)  # (N, C)
    labels = torch.from_numpy(data.labels)
    loss = float(F.cross_entropy(logits, labels))
    acc, auc = medmnist_metrics(data.labels, logits.softmax(dim=1).numpy(), data.task)
    return Metrics(loss, acc, auc)
