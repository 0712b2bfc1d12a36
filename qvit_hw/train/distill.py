"""Knowledge distillation as in the paper (``qvit-hw distill``).

Fine-tune the TinyViT-5M teacher with its KD head (or take a teacher checkpoint),
pre-train the student for 50 epochs on the MSE between its post-ReLU n-vector and the
teacher's, copy the teacher's last Linear into the student, then train as usual. The
teacher is fixed during pre-training, so its targets are computed once.

Besides the files of `train` (see `checkpoint`)::

    OUT/teacher/       the fine-tuned teacher, same layout
    OUT/kd/            MSE pre-training, same layout, plus targets.pt (the teacher's
                       n-vectors) and student.pt (pre-trained student with the teacher's
                       last layer: where the final training starts)
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import Tensor, nn

from ..data import Normalization
from ..errors import CheckpointError
from ..files import check_out_dir, to_json
from ..model import VisionTransformer
from ..teacher import ARCH as TEACHER_ARCH
from ..teacher import Teacher, download_pretrained, load_timm_weights
from .checkpoint import (
    BEST,
    LAST,
    STUDENT_ARCH,
    check_out_folder,
    checkpoint_meta,
    clear_run,
    load_checkpoint,
    read_checkpoint,
    save_atomic,
    save_stage,
)
from .evaluation import evaluate, features
from .loop import RunResult, classification, feature_matching, fit, train_and_test
from .metrics import Metrics, format_metric
from .options import DistillOptions
from .runtime import Runtime, session
from .splits import Splits, announce, load_splits


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
    ``extra`` of the result holds the teacher's test metrics and the KD history. Every
    stage runs on ``opts.train.device``, and under torchrun as one rank of many.
    """
    out = check_out_dir(out)  # ValueError naming --out: a file, a path under a file, read-only
    check_out_folder(out, resume, keep=opts.teacher_checkpoint)
    t = opts.train
    with session(t.device, t.precision, t.workers) as rt:
        console = console if rt.main else None
        return _distill(opts, out, rt, resume=resume, overwrite=overwrite, console=console)


def _distill(
    opts: DistillOptions,
    out: Path,
    rt: Runtime,
    *,
    resume: bool,
    overwrite: bool,
    console: Console | None,
) -> RunResult:
    t = opts.train
    if overwrite and rt.main:
        clear_run(out, keep=opts.teacher_checkpoint)
    rt.barrier()
    if resume and not any(out.rglob(LAST)):
        raise CheckpointError(
            f"--resume: nothing to resume in {out} (no {LAST} in any stage); drop --resume "
            "to start a run"
        )
    splits = load_splits(t)
    announce(splits, console)
    classes = splits.train.num_classes

    teacher, teacher_test = _teacher_stage(opts, out, splits, resume, console, rt)
    if teacher.n_qubits != t.n_qubits or teacher.num_classes != classes:
        raise CheckpointError(
            f"teacher maps to {teacher.n_qubits} qubits and {teacher.num_classes} classes; "
            f"the student needs {t.n_qubits} and {classes}"
        )

    kd_dir = out / "kd"
    kd_dir.mkdir(parents=True, exist_ok=True)
    train_targets, val_targets = _teacher_targets(
        teacher, splits, kd_dir / "targets.pt", console, rt
    )
    torch.manual_seed(t.seed)
    student = VisionTransformer(t.model_config(classes))
    config = student.config.to_dict()
    kd_run = {**t.run_key(), "kd": asdict(opts.kd), "teacher": _teacher_key(opts)}
    kd_meta = checkpoint_meta("kd", STUDENT_ARCH, config, splits, to_json(kd_run))
    objective = feature_matching(splits, train_targets, val_targets)
    kd_history = fit(
        student, objective, opts.kd, kd_dir, kd_meta,
        seed=t.seed, resume=resume, console=console, runtime=rt,
    )  # fmt: skip
    student, _ = load_checkpoint(kd_dir / LAST)  # the student after all pre-training epochs
    copy_last_linear(teacher, student)
    init_meta = {**kd_meta, "stage": "kd-init"}
    if rt.main:
        save_stage(kd_dir / "student.pt", student, None, init_meta, kd_history, None)

    meta = checkpoint_meta("distill", STUDENT_ARCH, config, splits, kd_meta["run"])
    result = train_and_test(
        student,
        classification(splits),
        t.schedule,
        out,
        meta,
        splits,
        seed=t.seed,
        resume=resume,
        console=console,
        runtime=rt,
    )
    extra = {"teacher_test": teacher_test, "kd_history": kd_history}
    return replace(result, extra=extra)


def _teacher_key(opts: DistillOptions) -> dict[str, Any]:
    if opts.teacher_checkpoint:
        return {"checkpoint": str(Path(opts.teacher_checkpoint).resolve())}
    return {"init": opts.teacher_init, "schedule": asdict(opts.teacher)}


def _teacher_stage(
    opts: DistillOptions,
    out: Path,
    splits: Splits,
    resume: bool,
    console: Console | None,
    rt: Runtime,
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
        test = evaluate(model.to(rt.device), splits.test, splits.norm, console, rt)
        if console is not None:
            acc, auc = format_metric(test.acc), format_metric(test.auc)
            console.print(f"teacher {opts.teacher_checkpoint}: test ACC {acc}, AUC {auc}")
        return model, test
    teacher = make_teacher(opts, splits.train.num_classes, splits.norm)
    run = {**opts.train.run_key(), "teacher": _teacher_key(opts)}
    meta = checkpoint_meta("teacher", TEACHER_ARCH, teacher.config(), splits, to_json(run))
    result = train_and_test(
        teacher,
        classification(splits),
        opts.teacher,
        out / "teacher",
        meta,
        splits,
        seed=opts.train.seed,
        resume=resume,
        console=console,
        runtime=rt,
    )
    teacher.load_state_dict(read_checkpoint(out / "teacher" / BEST)["model"])
    return teacher.eval(), result.test


def _teacher_targets(
    teacher: Teacher, splits: Splits, cache: Path, console: Console | None, rt: Runtime
) -> tuple[Tensor, Tensor]:
    """The teacher's n-vectors for train and val, cached beside the KD checkpoints."""
    key = hash_state(teacher)
    if cache.exists():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved.get("key") == key and len(saved["train"]) == len(splits.train):
            rt.barrier()  # nobody rewrites the cache while a rank reads it
            return saved["train"], saved["val"]
    train = features(teacher, splits.train, splits.norm, console, rt)  # (N, n), every rank
    val = features(teacher, splits.val, splits.norm, console, rt)
    if rt.main:
        save_atomic({"key": key, "train": train, "val": val}, cache)
    rt.barrier()
    return train, val


def hash_state(model: nn.Module) -> str:
    """A short fingerprint of a model's weights (identifies a teacher in caches)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
