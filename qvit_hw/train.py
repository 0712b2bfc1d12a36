"""Training and knowledge distillation as in the paper, with checkpoints that resume exactly.

Schedule (paper, after MedMNIST): Adam, lr 1e-3, 100 epochs, lr / 10 at 50 % and 75 % of
the epochs (epochs 50 and 75), batch 32, cross-entropy. Metrics as MedMNIST reports them:
ACC and ROC AUC (binary: AUC of the positive class; multi-class and ordinal: one-vs-rest,
macro). The best epoch is the one with the highest validation AUC (then ACC).

Distillation (`distill`): fine-tune the TinyViT-5M teacher with its KD head (or take a
teacher checkpoint), pre-train the student for 50 epochs on the MSE between its post-ReLU
n-vector and the teacher's, copy the teacher's last Linear into the student, then train as
usual. The teacher is fixed during pre-training, so its targets are computed once.

Output directory::

    OUT/last.pt        after the latest epoch: model, optimizer, scheduler, RNG states
    OUT/best.pt        the best epoch by validation, with test metrics once training ends
    OUT/metrics.json   per-epoch loss and validation metrics, best epoch, test metrics
    OUT/teacher/       (distill) the fine-tuned teacher, same layout
    OUT/kd/            (distill) MSE pre-training, same layout, plus targets.pt (the
                       teacher's n-vectors) and student.pt (pre-trained student with the
                       teacher's last layer: where the final training starts)

Every checkpoint holds the model config, data set, normalisation and metrics, and is
written atomically (temporary file, then ``os.replace``). ``load_checkpoint(path)``
rebuilds the model from any of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
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
    track,
)
from sklearn.metrics import accuracy_score, roc_auc_score
from torch import Tensor, nn

from .data import (
    DEFAULT_NORMALIZATION,
    ImageSet,
    Normalization,
    load_split,
    resolve_dataset,
    to_tensor,
)
from .errors import CheckpointError, RunInterrupted
from .files import write_atomic
from .model import ModelConfig, VisionTransformer
from .teacher import ARCH as TEACHER_ARCH
from .teacher import Teacher, download_pretrained, load_timm_weights

FORMAT, VERSION = "qvit-hw/checkpoint", 1
STUDENT_ARCH = "vision-transformer"
LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.json"
EVAL_BATCH = 128


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """Adam with step decay: lr * gamma at each fraction in ``decay_at`` of the epochs."""

    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 32
    decay_at: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        object.__setattr__(self, "decay_at", tuple(float(f) for f in self.decay_at))

    def milestones(self) -> list[int]:
        """Epochs after which lr decays (50 and 75 of 100); never before the first epoch."""
        return [max(1, int(f * self.epochs)) for f in self.decay_at]


PAPER_SCHEDULE = Schedule()
KD_SCHEDULE = Schedule(epochs=50, decay_at=())  # paper: Adam 1e-3, 50 epochs, batch 32, MSE


@dataclass(frozen=True)
class TrainOptions:
    """What to train on what; everything but ``data_root`` and ``download`` must match on
    --resume."""

    dataset: str
    size: int = 28
    model: str = "qvit"
    n_qubits: int = 4
    heads: int = 2
    pairs: tuple[tuple[int, int], ...] | None = None
    schedule: Schedule = PAPER_SCHEDULE
    seed: int = 0
    limit: int | None = None  # first N images of every split (quick trials)
    data_root: str | None = None
    download: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", resolve_dataset(self.dataset))
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        self.model_config(num_classes=2)  # model, size, qubits, heads and pairs fit together

    def model_config(self, num_classes: int) -> ModelConfig:
        return ModelConfig(
            model=self.model,
            image_size=self.size,
            n_qubits=self.n_qubits,
            heads=self.heads,
            num_classes=num_classes,
            pairs=self.pairs,
        )

    def run_key(self) -> dict[str, Any]:
        key = asdict(self)
        del key["data_root"], key["download"]
        return _plain(key)


@dataclass(frozen=True)
class DistillOptions:
    """``train`` plus the teacher: fine-tuned here (from ImageNet weights or from scratch)
    or loaded from a teacher checkpoint."""

    train: TrainOptions
    kd: Schedule = KD_SCHEDULE
    teacher: Schedule = PAPER_SCHEDULE  # paper does not state it; its training schedule
    teacher_checkpoint: str | None = None  # OUT/teacher/best.pt of an earlier run
    teacher_weights: str | None = None  # a timm tiny_vit_5m_224 checkpoint file
    teacher_pretrained: bool = False  # download timm's ImageNet weights

    def __post_init__(self) -> None:
        given = [self.teacher_checkpoint, self.teacher_weights, self.teacher_pretrained]
        if sum(bool(g) for g in given) > 1:
            raise ValueError(
                "teacher_checkpoint, teacher_weights and teacher_pretrained (--teacher-*) "
                "exclude each other: give at most one"
            )

    @property
    def teacher_init(self) -> str:
        if self.teacher_weights:
            return f"timm:{Path(self.teacher_weights).name}"
        return "imagenet" if self.teacher_pretrained else "random"


# --- data and metrics ---------------------------------------------------------------------


@dataclass(frozen=True)
class Splits:
    train: ImageSet
    val: ImageSet
    test: ImageSet
    norm: Normalization = DEFAULT_NORMALIZATION

    def describe(self) -> dict[str, Any]:
        t = self.train
        return {"name": t.name, "size": t.size, "task": t.task, "classes": list(t.classes)}


def load_splits(opts: TrainOptions, norm: Normalization = DEFAULT_NORMALIZATION) -> Splits:
    def one(split: str) -> ImageSet:
        data = load_split(opts.dataset, split, opts.size, opts.data_root, download=opts.download)
        return data.first(opts.limit)

    return Splits(one("train"), one("val"), one("test"), norm)


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


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else math.nan


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


# --- the training loop --------------------------------------------------------------------


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
                    _save_stage(best_path, model, None, meta, history, best)
                training = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()},
                }
                _save_stage(last_path, model, training, meta, history, best)
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
            parts.append(f"{key.replace('_', ' ')} {_fmt(value)}")
    return ", ".join(parts) + f" ({record['seconds']:.1f} s)"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _check_same_run(saved: dict[str, Any], wanted: dict[str, Any], path: Path) -> None:
    saved, wanted = _flat(saved), _flat(wanted)
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


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"schedule": {"epochs": 3}} -> {"schedule.epochs": 3}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# --- checkpoints --------------------------------------------------------------------------


def _save_stage(
    path: Path,
    model: nn.Module,
    training: dict[str, Any] | None,
    meta: dict[str, Any],
    history: list[dict[str, Any]],
    best: dict[str, Any] | None,
    test: dict[str, float] | None = None,
) -> None:
    payload = {
        "format": FORMAT,
        "version": VERSION,
        **meta,
        "epoch": history[-1]["epoch"] if history else 0,
        "metrics": {"history": history, "best": best, "test": test},
        "model": model.state_dict(),
        **(training or {}),
    }
    save_atomic(payload, path)


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``: a crash or
    Ctrl-C never leaves a half-written ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean a file we cannot use
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a qvit-hw checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')}, this qvit-hw reads {VERSION}"
        )
    return state


def build_model(arch: str, config: dict[str, Any]) -> nn.Module:
    if arch == STUDENT_ARCH:
        return VisionTransformer(ModelConfig.from_dict(config))
    return Teacher.from_config(config)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a checkpoint (eval mode) and what it knows about itself.

    info keys: ``stage`` ("train", "distill", "teacher", "kd" or "kd-init"), ``arch``
    ("vision-transformer" or "tiny_vit_5m_224"), ``config`` (``ModelConfig.to_dict()`` or
    the teacher's config), ``dataset`` ({name, size, task, classes}), ``normalization``
    ({mean, std}: model inputs are ``data.to_tensor(images, Normalization.from_dict(..))``),
    ``epoch``, ``metrics`` ({history, best, test}), ``run`` (the training options).
    """
    state = read_checkpoint(path)
    model = build_model(state["arch"], state["config"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit its model config ({exc})") from exc
    model.eval()
    keys = ("stage", "arch", "config", "dataset", "normalization", "epoch", "metrics", "run")
    return model, {k: state[k] for k in keys}


def write_metrics(
    out: Path,
    meta: dict[str, Any],
    history: list[dict[str, Any]],
    best: dict[str, Any] | None,
    test: dict[str, float] | None = None,
) -> None:
    doc = {**meta, "history": history, "best": best, "test": test}
    write_atomic(out / METRICS, json.dumps(_plain(doc), indent=2, allow_nan=False) + "\n")


def _plain(obj: Any) -> Any:
    """JSON-ready copy: tuples become lists, NaN becomes None."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


# --- the commands -------------------------------------------------------------------------


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
    out = Path(out)
    if overwrite:
        _clear(out)
    splits = load_splits(opts)
    torch.manual_seed(opts.seed)
    model = VisionTransformer(opts.model_config(splits.train.num_classes))
    meta = _meta("train", STUDENT_ARCH, model.config.to_dict(), splits, opts.run_key())
    return _train_and_test(
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


def _train_and_test(
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
    _save_stage(out / BEST, best_model, None, meta, history[: best["epoch"]], best, asdict(test))
    write_metrics(out, meta, history, best, asdict(test))
    if console is not None:
        console.print(
            f"{meta['stage']}: best epoch {best['epoch']}, test ACC {_fmt(test.acc)}, "
            f"AUC {_fmt(test.auc)} -> {out / BEST}"
        )
    return RunResult(out, history, best, test)


def _meta(
    stage: str, arch: str, config: dict[str, Any], splits: Splits, run: dict[str, Any]
) -> dict[str, Any]:
    return {
        "stage": stage,
        "arch": arch,
        "config": config,
        "dataset": splits.describe(),
        "normalization": splits.norm.to_dict(),
        "run": run,
    }


def _clear(out: Path, keep: str | None = None) -> None:
    """Remove what a previous run wrote in ``out`` (only our files; never ``keep``)."""
    for name in (LAST, BEST, METRICS):
        (out / name).unlink(missing_ok=True)
    for sub in ("kd", "teacher"):
        folder = out / sub
        if keep and folder.resolve() in Path(keep).resolve().parents:
            continue
        if (folder / LAST).exists() or (folder / "student.pt").exists():
            shutil.rmtree(folder)


# --- distillation -------------------------------------------------------------------------


def make_teacher(opts: DistillOptions, num_classes: int, norm: Normalization) -> Teacher:
    """A fresh teacher: timm weights from a file or the Hub, or random (seeded) weights."""
    path = download_pretrained() if opts.teacher_pretrained else opts.teacher_weights
    backbone = load_timm_weights(path) if path else None
    torch.manual_seed(opts.train.seed)  # the KD head (and a random backbone) start the same
    return Teacher(opts.train.n_qubits, num_classes, norm, backbone)


def copy_last_linear(teacher: Teacher, student: VisionTransformer) -> None:
    """Student's final Linear(n -> classes) := the teacher's (paper, section 3)."""
    src, dst = teacher.last_linear, student.head
    if src.weight.shape != dst.weight.shape:
        raise ValueError(
            f"teacher's last layer {tuple(src.weight.shape)} does not fit the student's "
            f"{tuple(dst.weight.shape)}"
        )
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)


def distill(
    opts: DistillOptions,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    console: Console | None = None,
) -> RunResult:
    """``qvit-hw distill``: teacher -> MSE pre-training -> last-layer copy -> training.

    Each stage resumes on its own, so ``--resume`` continues wherever the run stopped.
    ``extra`` of the result holds the teacher's test metrics and the KD history.
    """
    out = Path(out)
    t = opts.train
    if overwrite:
        _clear(out, keep=opts.teacher_checkpoint)
    splits = load_splits(t)
    classes = splits.train.num_classes

    teacher, teacher_test = _teacher_stage(opts, out, splits, resume, console)
    if teacher.n_qubits != t.n_qubits or teacher.num_classes != classes:
        raise CheckpointError(
            f"teacher maps to {teacher.n_qubits} qubits and {teacher.num_classes} classes; "
            f"the student needs {t.n_qubits} and {classes}"
        )

    kd_dir = out / "kd"
    kd_dir.mkdir(parents=True, exist_ok=True)
    train_targets, val_targets = _teacher_targets(teacher, splits, kd_dir / "targets.pt", console)
    torch.manual_seed(t.seed)
    student = VisionTransformer(t.model_config(classes))
    config = student.config.to_dict()
    kd_run = {**t.run_key(), "kd": asdict(opts.kd), "teacher": _teacher_key(opts)}
    kd_meta = _meta("kd", STUDENT_ARCH, config, splits, _plain(kd_run))
    objective = feature_matching(splits, train_targets, val_targets)
    kd_history = fit(
        student, objective, opts.kd, kd_dir, kd_meta, seed=t.seed, resume=resume, console=console
    )
    student, _ = load_checkpoint(kd_dir / LAST)  # the student after all pre-training epochs
    copy_last_linear(teacher, student)
    init_meta = {**kd_meta, "stage": "kd-init"}
    _save_stage(kd_dir / "student.pt", student, None, init_meta, kd_history, None)

    meta = _meta("distill", STUDENT_ARCH, config, splits, kd_meta["run"])
    result = _train_and_test(
        student,
        classification(splits),
        t.schedule,
        out,
        meta,
        splits,
        seed=t.seed,
        resume=resume,
        console=console,
    )
    extra = {"teacher_test": teacher_test, "kd_history": kd_history}
    return replace(result, extra=extra)


def _teacher_key(opts: DistillOptions) -> dict[str, Any]:
    if opts.teacher_checkpoint:
        return {"checkpoint": str(Path(opts.teacher_checkpoint).resolve())}
    return {"init": opts.teacher_init, "schedule": asdict(opts.teacher)}


def _teacher_stage(
    opts: DistillOptions, out: Path, splits: Splits, resume: bool, console: Console | None
) -> tuple[Teacher, Metrics]:
    """The fine-tuned teacher (best validation epoch) and its test metrics."""
    if opts.teacher_checkpoint:
        model, info = load_checkpoint(opts.teacher_checkpoint)
        if not isinstance(model, Teacher):
            raise CheckpointError(f"{opts.teacher_checkpoint} holds a student, not a teacher")
        if info["dataset"]["name"] != splits.train.name:
            raise CheckpointError(
                f"{opts.teacher_checkpoint} was fine-tuned on {info['dataset']['name']}, "
                f"not {splits.train.name}"
            )
        test = evaluate(model, splits.test, splits.norm, console)
        if console is not None:
            acc, auc = _fmt(test.acc), _fmt(test.auc)
            console.print(f"teacher {opts.teacher_checkpoint}: test ACC {acc}, AUC {auc}")
        return model, test
    teacher = make_teacher(opts, splits.train.num_classes, splits.norm)
    run = {**opts.train.run_key(), "teacher": _teacher_key(opts)}
    meta = _meta("teacher", TEACHER_ARCH, teacher.config(), splits, _plain(run))
    result = _train_and_test(
        teacher,
        classification(splits),
        opts.teacher,
        out / "teacher",
        meta,
        splits,
        seed=opts.train.seed,
        resume=resume,
        console=console,
    )
    teacher.load_state_dict(read_checkpoint(out / "teacher" / BEST)["model"])
    return teacher.eval(), result.test


def _teacher_targets(
    teacher: Teacher, splits: Splits, cache: Path, console: Console | None
) -> tuple[Tensor, Tensor]:
    """The teacher's n-vectors for train and val, cached beside the KD checkpoints."""
    key = hash_state(teacher)
    if cache.exists():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved.get("key") == key and len(saved["train"]) == len(splits.train):
            return saved["train"], saved["val"]
    train = features(teacher, splits.train, splits.norm, console)  # (N, n)
    val = features(teacher, splits.val, splits.norm, console)
    save_atomic({"key": key, "train": train, "val": val}, cache)
    return train, val


def hash_state(model: nn.Module) -> str:
    """A short fingerprint of a model's weights (identifies a teacher in caches)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
