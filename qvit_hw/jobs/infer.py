"""A model's batches through a QNN executor: logits through the backend and exactly, per
image its flip probability and shots, the correction stages replayed, adaptive rounds,
and the run-level fit after the last batch (`refit`). Shared by `run` and the dry run's
adaptive estimate (`preview`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..model import VisionTransformer
from .adaptive import linearised, refine, row_correlations
from .config import AdaptiveConfig
from .executor import SchedulerExecutor, StageUnavailable
from .refit import Refit, refit

if TYPE_CHECKING:
    from ..data import ImageSet, Normalization


@dataclass
class Inferred:
    """What `_infer` computed, per batch (logits) or per image."""

    logits: list[torch.Tensor]  # (B, C) per batch, through the backend
    exact: list[torch.Tensor]  # (B, C) per batch, the exact model
    # per correction stage: the logits before it (None where it cannot be replayed)
    stages: list[list[torch.Tensor] | None]
    flip: list[np.ndarray]  # (B,) per batch: probability the prediction is not the exact one's
    shots: list[np.ndarray]  # (B,) per batch: shots spent on the image's rows
    rounds: list[dict[str, Any]]  # adaptive: per batch and round, shots and active images
    preds: list[list[np.ndarray]]  # adaptive: per batch, the predictions after each round
    refit: Refit | None = None  # --mitigate ...,fourier: the run-level fit


def _infer(
    model: VisionTransformer,
    data: ImageSet,
    norm: Normalization,
    executor: SchedulerExecutor,
    batch_size: int,
    progress: Any,
    corrections: int = 0,
    adaptive: AdaptiveConfig | None = None,
    fourier: bool = False,
    fit: Any = None,
) -> Inferred:
    """Logits per batch through the backend (the executor) and through the exact model;
    with ``adaptive``, after its rounds of shots (`adaptive.refine`); per image, the
    probability that noise changed its prediction (adaptive: as its rounds decided it;
    uniform: linearised, `adaptive.linearised`) and the shots spent; and, with
    ``corrections`` > 0, the logits the estimates would give before the last correction,
    stage by stage (raw, after the first, ...; None where a stage cannot be replayed
    without new jobs), from the same results. With ``fourier``, after the last batch every
    QNN's function is fitted over all rows and the logits and flip probabilities are
    those of the fitted values (`refit`)."""
    from ..data import to_tensor

    result = Inferred([], [], [[] for _ in range(corrections)], [], [], [], [])
    batches = range(0, len(data), batch_size)
    task = progress.add_task("images", total=len(data)) if progress is not None else None
    executor.shots = None if adaptive is None else adaptive.initial_shots
    second_pass = []  # fourier: per batch, its image ids and logits as a function of z
    specs = {}
    for number, a in enumerate(batches, 1):
        x = to_tensor(np.asarray(data.images[a : a + batch_size]), norm)  # (B, 3, S, S)
        executor.begin_batch(np.arange(a, a + len(x)), f"batch {number}/{len(batches)}")
        logits_of = _logits_of(model, x)
        if fourier:
            second_pass.append((np.arange(a, a + len(x)), logits_of))
        with torch.no_grad():
            result.exact.append(model(x).double())
            with model.executor(executor):
                logits = model(x).double()
        if adaptive is not None:
            done = refine(executor, logits_of, adaptive, number)
            z = torch.from_numpy(_layer_z(executor, len(x)))[None]
            logits = logits_of(z, np.arange(len(x)))[0].double()
            result.flip.append(done.flip)
            result.shots.append(done.shots)
            result.rounds += [{"batch": number, **r} for r in done.rounds]
            result.preds.append(done.preds)
        else:
            z, se = _layer_z(executor, len(x)), _layer_z(executor, len(x), "stderr")
            images = np.arange(len(x))  # linearised only: uniform runs take no decision on it
            corr = row_correlations(executor.batch[0], len(x))
            result.flip.append(linearised(logits_of, z, se, images, corr)[1])
            result.shots.append(_image_shots(executor, len(x)))
        result.logits.append(logits.detach())
        with torch.no_grad():
            for s in range(corrections):  # s = 0: raw; s: after correction s - 1
                if result.stages[s] is None:
                    continue
                try:
                    with model.executor(executor.replay(s - 1)):
                        result.stages[s].append(model(x).double())  # type: ignore[union-attr]
                except StageUnavailable:
                    result.stages[s] = None
        if fourier:
            specs.update({n: (c.spec, c.weights[i]) for c in executor.batch
                          for i, n in enumerate(c.names)})  # fmt: skip
        executor.end_batch()
        if task is not None:
            progress.advance(task, len(x))
    if fourier:
        result.refit = refit(executor, specs, second_pass, fit=fit)
        result.logits, result.flip = result.refit.logits, result.refit.flip
    return result


def _logits_of(model: VisionTransformer, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's logits on images ``x[images]`` (b, ...) from given values
    z (M, b, T, Q, n) of its (one) QNN layer -> (M, b, C)."""

    def logits_of(z: torch.Tensor, images: np.ndarray) -> torch.Tensor:
        m, b = z.shape[:2]
        flat = z.reshape(m * b, *z.shape[2:])

        def given(spec: Any, weights: torch.Tensor, angles: torch.Tensor, names: Any = ()):
            return flat.to(angles.dtype)

        with model.executor(given):
            return model(x[images].repeat(m, 1, 1, 1)).reshape(m, b, -1)

    return logits_of


def _layer_z(executor: SchedulerExecutor, images: int, field: str = "z") -> np.ndarray:
    """The batch's (one) QNN layer's estimates or stderr: (B, T, Q, n)."""
    (call,) = executor.batch[:1] or [None]
    if call is None:
        raise ValueError("the model ran no QNN layer")
    values = np.stack([getattr(e, field) for e in call.estimates], axis=1)  # (B*T, Q, n)
    return values.reshape(images, call.tokens, *values.shape[1:])


def _image_shots(executor: SchedulerExecutor, images: int) -> np.ndarray:
    """Shots spent on each image's rows over the batch's QNN layers: (B,)."""
    total = np.zeros(images, dtype=np.int64)
    for call in executor.batch:
        for est in call.estimates:
            if est.shots is not None:
                total += est.shots.reshape(images, call.tokens).sum(axis=1)
    return total
