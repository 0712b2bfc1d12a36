"""The fit loop, and ``train`` on top of it.

``fit`` trains a model for a schedule with a checkpoint after every epoch and resumes
exactly (model, optimizer, scheduler and RNG states). The best epoch is the one with the
highest validation AUC (then ACC) for classification, the lowest validation loss for KD
pre-training. ``train`` (``qvit-hw train``): the paper's schedule on one data set, then the
best epoch on the test split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import Tensor, nn

from ..data import Normalization, to_tensor
from ..errors import CheckpointError, RunInterrupted
from ..files import check_out_dir, flat_keys
from ..model import VisionTransformer
from .checkpoint import (
    BEST,
    LAST,
    STUDENT_ARCH,
    checkpoint_meta,
    clear_run,
    load_checkpoint,
    read_checkpoint,
    save_stage,
    write_metrics,
)
from .evaluation import evaluate, features
from .metrics import Metrics, format_metric
from .options import Schedule, TrainOptions
from .splits import Splits, load_splits


@dataclass(frozen=True)
class Objective:
    """What one stage minimises, and how it judges an epoch on validation data."""

    images: np.ndarray  # (N, S, S, 3) uint8 training images
    targets: Tensor  # (N,) class labels or (N, n) teacher n-vectors
    norm: Normalization
    loss: Callable[[nn.Module, Tensor, Tensor], Tensor]
    validate: Callable[[nn.Module], dict[str, float]]
    score: Callable[[dict[str, Any]], tuple[float, ...]]  # of an epoch record; larger is better


def classification(splits: Splits) -> Objective:
    def validate(model: nn.Module) -> dict[str, float]:
        return asdict(evaluate(model, splits.val, splits.norm))

    def score(record: dict[str, Any]) -> tuple[float, ...]:
        auc = record["val_auc"]
        return (-math.inf if auc is None or math.isnan(auc) else auc, record["val_acc"])

    return Objective(
        splits.train.images,
        torch.from_numpy(splits.train.labels),
        splits.norm,
        lambda model, x, y: F.cross_entropy(model(x), y),
        validate,
        score,
    )


def feature_matching(splits: Splits, train_targets: Tensor, val_targets: Tensor) -> Objective:
    """KD pre-training: MSE between the student's post-ReLU n-vector and the teacher's."""

    @torch.no_grad()
    def validate(model: nn.Module) -> dict[str, float]:
        got = features(model, splits.val, splits.norm)
        return {"loss": float(F.mse_loss(got, val_targets))}

    return Objective(
        splits.train.images,
        train_targets,
        splits.norm,
        lambda model, x, t: F.mse_loss(model.features(x), t),
        validate,
        lambda record: (-record["val_loss"],),
    )


def fit(
    model: nn.Module,
    objective: Objective,
    schedule: Schedule,
    out: Path,
    meta: dict[str, Any],
    *,
    seed: int,
    resume: bool,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` for ``schedule.epochs`` with a checkpoint after every epoch.

    ``meta`` (stage, arch, config, dataset, normalization, run) goes into every checkpoint;
    its ``run`` must equal the checkpoint's to resume. With ``resume`` and ``out/last.pt``
    present, training continues after its epoch with the saved model, optimizer, scheduler
    and RNG states, so the result equals an uninterrupted run bit for bit. Returns the
    per-epoch history. Ctrl-C raises `RunInterrupted` once the last checkpoint is safe.
    """
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / LAST, out / BEST
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, schedule.milestones(), schedule.gamma
    )
    shuffle = torch.Generator().manual_seed(seed)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    if last_path.exists():
        if not resume:
            raise CheckpointError(
                f"{out} already holds a run ({last_path.name} after epoch "
                f"{read_checkpoint(last_path)['epoch']}): pass --resume to continue it or "
                "--overwrite to start again"
            )
        state = read_checkpoint(last_path)
        _check_same_run(state["run"], meta["run"], last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        shuffle.set_state(state["rng"]["shuffle"])
        torch.set_rng_state(state["rng"]["torch"])
        history, best = list(state["metrics"]["history"]), state["metrics"]["best"]

    n, saved = len(objective.targets), len(history)
    stage = meta["stage"]
    with _progress(console) as progress:
        overall = progress.add_task(stage, total=schedule.epochs, completed=saved, status="")
        try:
            for epoch in range(saved + 1, schedule.epochs + 1):
                start = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                model.train()
                batches = torch.randperm(n, generator=shuffle).split(schedule.batch_size)
                task = progress.add_task(f"epoch {epoch}", total=len(batches), status="")
                total = 0.0
                for idx in batches:
                    x = to_tensor(objective.images[idx.numpy()], objective.norm)  # (B, 3, S, S)
                    loss = objective.loss(model, x, objective.targets[idx])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(idx)
                    progress.update(task, advance=1, status=f"loss {loss.item():.4f}")
                scheduler.step()
                val = objective.validate(model)
                record = {
                    "epoch": epoch,
                    "lr": lr,
                    "train_loss": total / n,
                    **{f"val_{k}": v for k, v in val.items()},
                    "seconds": time.perf_counter() - start,
                }
                history.append(record)
                if best is None or objective.score(record) > objective.score(best):
                    best = record
                    save_stage(best_path, model, None, meta, history, best)
                training = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()},
                }
                save_stage(last_path, model, training, meta, history, best)
                saved = epoch
                write_metrics(out, meta, history, best)
                progress.remove_task(task)
                progress.update(overall, advance=1, status=_describe(record))
                if console is not None:
                    progress.console.print(
                        f"{stage} {epoch}/{schedule.epochs}: {_describe(record)}"
                    )
        except KeyboardInterrupt as exc:
            where = (
                f"{last_path} holds epoch {saved}; run the same command with --resume to continue"
                if saved
                else "no epoch finished yet; run the same command again to start over"
            )
            raise RunInterrupted(f"{stage} interrupted; {where}") from exc
    return history


@contextmanager
def _progress(console: Console | None) -> Iterator[Progress]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, disable=console is None) as progress:
        yield progress


def _describe(record: dict[str, Any]) -> str:
    parts = [f"loss {record['train_loss']:.4f}"]
    for key in ("val_loss", "val_acc", "val_auc"):
        if key in record:
            value = record[key]
            parts.append(f"{key.replace('_', ' ')} {format_metric(value)}")
    return ", ".join(parts) + f" ({record['seconds']:.1f} s)"


def _check_same_run(saved: dict[str, Any], wanted: dict[str, Any], path: Path) -> None:
    saved, wanted = flat_keys(saved), flat_keys(wanted)
    diffs = [
        f"{k}={saved.get(k)!r} (now {wanted.get(k)!r})"
        for k in sorted(set(saved) | set(wanted))
        if saved.get(k) != wanted.get(k)
    ]
    if diffs:
        raise CheckpointError(
            f"{path} comes from a run with {'; '.join(diffs)}: resume with the same options, "
            "or pass --overwrite to start again"
        )


# --- train --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """What a finished stage reports: its directory, history, best epoch and test metrics."""

    out: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]
    test: Metrics
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.mean([r["seconds"] for r in self.history]))


def train(
    opts: TrainOptions,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    console: Console | None = None,
) -> RunResult:
    """``qvit-hw train``: the paper's schedule on one data set; writes OUT/{last,best}.pt."""
    out = check_out_dir(out)  # ValueError naming --out: a file, a path under a file, read-only
    if overwrite:
        clear_run(out)
    if resume and not (out / LAST).exists():
        raise CheckpointError(
            f"--resume: nothing to resume in {out} (no {LAST}); drop --resume to start a run"
        )
    splits = load_splits(opts)
    torch.manual_seed(opts.seed)
    model = VisionTransformer(opts.model_config(splits.train.num_classes))
    meta = checkpoint_meta("train", STUDENT_ARCH, model.config.to_dict(), splits, opts.run_key())
    return train_and_test(
        model,
        classification(splits),
        opts.schedule,
        out,
        meta,
        splits,
        seed=opts.seed,
        resume=resume,
        console=console,
    )


def train_and_test(
    model: nn.Module,
    objective: Objective,
    schedule: Schedule,
    out: Path,
    meta: dict[str, Any],
    splits: Splits,
    *,
    seed: int,
    resume: bool,
    console: Console | None,
) -> RunResult:
    """Fit, then evaluate the best epoch on the test split and record it everywhere."""
    fit(model, objective, schedule, out, meta, seed=seed, resume=resume, console=console)
    best_model, info = load_checkpoint(out / BEST)
    test = evaluate(best_model, splits.test, splits.norm, console)
    history, best = read_checkpoint(out / LAST)["metrics"]["history"], info["metrics"]["best"]
    save_stage(out / BEST, best_model, None, meta, history[: best["epoch"]], best, asdict(test))
    write_metrics(out, meta, history, best, asdict(test))
    if console is not None:
        console.print(
            f"{meta['stage']}: best epoch {best['epoch']}, test ACC {format_metric(test.acc)}, "
            f"AUC {format_metric(test.auc)} -> {out / BEST}"
        )
    return RunResult(out, history, best, test)
