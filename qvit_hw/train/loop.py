"""The fit loop, and ``train`` on top of it.

``fit`` trains a model for a schedule with a checkpoint after every epoch and resumes
exactly (model, optimizer, scheduler and RNG states). The best epoch is the one with the
highest validation AUC (then ACC) for classification, the lowest validation loss for KD
pre-training. ``train`` (``qvit-hw train``): the paper's schedule on one data set, then the
best epoch on the test split.

Both run on the `Runtime`'s device and precision, and under torchrun as
DistributedDataParallel: the batch size is the global batch, every rank takes its share of
each global batch (`batches.epoch_plan`), the loss of a batch is its images' summed loss
over the global batch's image count (times the world size, which DDP's gradient average
divides out), so W processes take the same steps as one. Rank 0 writes the checkpoints.
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
from torch.nn.parallel import DistributedDataParallel

from ..data import Normalization
from ..errors import CheckpointError, RunInterrupted
from ..files import check_out_dir, flat_keys
from ..model import VisionTransformer
from .batches import epoch_plan, loader
from .checkpoint import (
    BEST,
    LAST,
    STUDENT_ARCH,
    check_out_folder,
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
from .runtime import Runtime, session
from .splits import Splits, announce, load_splits


@dataclass(frozen=True)
class Objective:
    """What one stage minimises, and how it judges an epoch on validation data."""

    images: np.ndarray  # (N, S, S, 3) uint8 training images (memory-mapped or not)
    targets: Tensor  # (N,) class labels or (N, n) teacher n-vectors
    norm: Normalization
    output: str  # what the loss compares: "logits" (model(x)) or "features" (model.features(x))
    per_sample: Callable[[Tensor, Tensor], Tensor]  # (outputs, targets) -> (B,) losses
    validate: Callable[[nn.Module, Runtime], dict[str, float]]
    score: Callable[[dict[str, Any]], tuple[float, ...]]  # of an epoch record; larger is better


class _Output(nn.Module):
    """The output an objective trains, as ``forward`` (what DDP wraps and synchronises)."""

    def __init__(self, model: nn.Module, output: str) -> None:
        super().__init__()
        self.model, self.output = model, output

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) if self.output == "logits" else self.model.features(x)


def classification(splits: Splits) -> Objective:
    def validate(model: nn.Module, runtime: Runtime) -> dict[str, float]:
        return asdict(evaluate(model, splits.val, splits.norm, runtime=runtime))

    def score(record: dict[str, Any]) -> tuple[float, ...]:
        auc = record["val_auc"]
        return (-math.inf if auc is None or math.isnan(auc) else auc, record["val_acc"])

    return Objective(
        splits.train.images,
        torch.from_numpy(splits.train.labels),
        splits.norm,
        "logits",
        lambda logits, y: F.cross_entropy(logits, y, reduction="none"),
        validate,
        score,
    )


def feature_matching(splits: Splits, train_targets: Tensor, val_targets: Tensor) -> Objective:
    """KD pre-training: MSE between the student's post-ReLU n-vector and the teacher's."""

    @torch.no_grad()
    def validate(model: nn.Module, runtime: Runtime) -> dict[str, float]:
        got = features(model, splits.val, splits.norm, runtime=runtime)
        return {"loss": float(F.mse_loss(got, val_targets))}

    return Objective(
        splits.train.images,
        train_targets,
        splits.norm,
        "features",
        lambda got, t: F.mse_loss(got, t, reduction="none").mean(dim=1),
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
    runtime: Runtime | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` for ``schedule.epochs`` with a checkpoint after every epoch.

    ``meta`` (stage, arch, config, dataset, normalization, run) goes into every checkpoint;
    its ``run`` must equal the checkpoint's to resume. With ``resume`` and ``out/last.pt``
    present, training continues after its epoch with the saved model, optimizer, scheduler
    and RNG states, so the result equals an uninterrupted run bit for bit. Returns the
    per-epoch history. Ctrl-C raises `RunInterrupted` once the last checkpoint is safe.

    The epoch order depends on ``seed`` and the epoch only (`batches.epoch_plan`). With a
    ``runtime`` the model moves to its device; under torchrun only rank 0 writes files and
    prints, and every rank has read ``last.pt`` before rank 0 writes it again.
    """
    rt = runtime or Runtime()
    console = console if rt.main else None
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / LAST, out / BEST
    model.to(rt.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, schedule.milestones(), schedule.gamma
    )
    scaler = rt.scaler()
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
        optimizer.load_state_dict(state["optimizer"])  # onto the parameters' device
        scheduler.load_state_dict(state["scheduler"])
        if scaler.is_enabled() and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        history, best = list(state["metrics"]["history"]), state["metrics"]["best"]
    rt.barrier()  # every rank has read last.pt before rank 0 writes it again

    net: nn.Module = _Output(model, objective.output)
    if rt.distributed:
        net = DistributedDataParallel(
            net,
            device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
            # KD pre-training leaves the student's head idle, the teacher never uses its
            # backbone's ImageNet classifier: a static graph lets DDP skip their gradients
            static_graph=True,
        )
    n, saved = len(objective.targets), len(history)
    stage = meta["stage"]
    rt.announce(console)
    with _progress(console) as progress:
        overall = progress.add_task(stage, total=schedule.epochs, completed=saved, status="")
        try:
            for epoch in range(saved + 1, schedule.epochs + 1):
                start = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                model.train()
                plan = epoch_plan(n, schedule.batch_size, epoch, seed, rt)
                task = progress.add_task(f"epoch {epoch}", total=len(plan.batches), status="")
                total = 0.0
                batches = loader(objective.images, plan.batches, rt, objective.targets)
                for (images, y), weight, count in zip(
                    batches, plan.weights, plan.global_counts, strict=True
                ):
                    x = rt.inputs(images, objective.norm)  # (b, 3, S, S)
                    y = y.to(rt.device, non_blocking=rt.pin_memory)
                    with rt.autocast():
                        got = net(x)
                    summed = (objective.per_sample(got.float(), y) * weight.to(rt.device)).sum()
                    optimizer.zero_grad()
                    scaler.scale(summed * (rt.world / count)).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    total += summed.item()
                    status = f"loss {summed.item() / max(1.0, float(weight.sum())):.4f}"
                    progress.update(task, advance=1, status=status)
                (total,) = rt.all_sum([total])
                scheduler.step()
                val = objective.validate(model, rt)
                record = {
                    "epoch": epoch,
                    "lr": lr,
                    "train_loss": total / n,
                    **{f"val_{k}": v for k, v in val.items()},
                    "seconds": time.perf_counter() - start,
                }
                history.append(record)
                improved = best is None or objective.score(record) > objective.score(best)
                if improved:
                    best = record
                training = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "rng": {"torch": torch.get_rng_state()},
                }
                if rt.main:
                    if improved:
                        save_stage(best_path, model, None, meta, history, best)
                    save_stage(last_path, model, training, meta, history, best)
                    write_metrics(out, meta, history, best)
                rt.barrier()
                saved = epoch
                progress.remove_task(task)
                progress.update(overall, advance=1, status=_describe(record))
                if console is not None:
                    progress.console.print(
                        f"{stage} {epoch}/{schedule.epochs}: {_describe(record)}"
                    )
        except KeyboardInterrupt as exc:
            saved = max(saved, _epoch_on_disk(last_path))  # Ctrl-C just after a save
            where = (
                f"{last_path} holds epoch {saved}; run the same command with --resume to continue"
                if saved
                else "no epoch finished yet; run the same command again to start over"
            )
            raise RunInterrupted(f"{stage} interrupted; {where}") from exc
    return history


def _epoch_on_disk(path: Path) -> int:
    """The epoch ``path`` holds (0: none readable). A run's folder holds only its own: an
    existing one needs --resume, and --overwrite clears it first."""
    try:
        return int(read_checkpoint(path)["epoch"])
    except CheckpointError:
        return 0


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
    notes: tuple[str, ...] = ()  # why a metric is n/a, images left out (`Splits.warnings`)

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
    """``qvit-hw train``: the paper's schedule on one data set; writes OUT/{last,best}.pt.

    Runs on ``opts.device`` (one line says which); under torchrun, as one rank of many.
    """
    out = check_out_dir(out)  # ValueError naming --out: a file, a path under a file, read-only
    check_out_folder(out, resume)  # nothing of the user's in it
    with session(opts.device, opts.precision, opts.workers) as rt:
        console = console if rt.main else None
        if overwrite and rt.main:
            clear_run(out)
        rt.barrier()
        if resume and not (out / LAST).exists():
            raise CheckpointError(
                f"--resume: nothing to resume in {out} (no {LAST}); drop --resume to start a run"
            )
        splits = load_splits(opts)
        announce(splits, console)
        torch.manual_seed(opts.seed)
        model = VisionTransformer(opts.model_config(splits.train.num_classes))
        config = model.config.to_dict()
        meta = checkpoint_meta("train", STUDENT_ARCH, config, splits, opts.run_key())
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
            runtime=rt,
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
    runtime: Runtime | None = None,
) -> RunResult:
    """Fit, then evaluate the best epoch on the test split and record it everywhere."""
    rt = runtime or Runtime()
    console = console if rt.main else None
    fit(
        model, objective, schedule, out, meta,
        seed=seed, resume=resume, console=console, runtime=rt,
    )  # fmt: skip
    best_model, info = load_checkpoint(out / BEST)
    test = evaluate(best_model.to(rt.device), splits.test, splits.norm, console, rt)
    history, best = read_checkpoint(out / LAST)["metrics"]["history"], info["metrics"]["best"]
    if rt.main:
        save_stage(out / BEST, best_model, None, meta, history[: best["epoch"]], best, asdict(test))
        write_metrics(out, meta, history, best, asdict(test))
    rt.barrier()
    if console is not None:
        why = splits.test.coverage() if math.isnan(test.auc) else ""
        console.print(
            f"{meta['stage']}: best epoch {best['epoch']}, test ACC {format_metric(test.acc)}, "
            f"AUC {format_metric(test.auc)}{f' ({why})' if why else ''} -> {out / BEST}",
            highlight=False,
        )
    return RunResult(out, history, best, test, notes=tuple(splits.warnings()))
