"""Training and knowledge distillation as in the paper, with checkpoints that resume exactly.

    options     Schedule, PAPER_SCHEDULE, KD_SCHEDULE, TrainOptions, DistillOptions
    splits      Splits, load_splits: the train/val/test splits of a run
    metrics     medmnist_metrics (ACC and AUC as MedMNIST), Metrics (numpy + scikit-learn)
    evaluation  predict, features, evaluate: a model over one split, in batches
    checkpoint  the checkpoint format and run directory: load_checkpoint, read_checkpoint, ...
    loop        fit (the epoch loop, exact resume), train (``qvit-hw train``), RunResult
    distill     distill (``qvit-hw distill``): teacher, MSE pre-training, last-layer copy
    runtime     Runtime, session: --device, --precision, --workers, the torchrun process group
    batches     epoch_plan (DistributedSampler order, global batches), the DataLoader
    sweep       ``qvit-hw sweep``: a grid of runs, locally or on Ray, and the paper's tables

Every public name is importable from here (``from qvit_hw.train import train``); each is
imported on first use, so ``import qvit_hw.train.metrics`` loads neither the fit loop nor
the teacher. ``qvit_hw.train.distill`` is the function; its module is reached with
``from qvit_hw.train.distill import ...``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "options": (
        "KD_SCHEDULE",
        "PAPER_SCHEDULE",
        "DistillOptions",
        "Schedule",
        "TrainOptions",
    ),
    "splits": ("Splits", "load_splits"),
    "metrics": ("Metrics", "medmnist_metrics"),
    "evaluation": ("EVAL_BATCH", "evaluate", "features", "predict"),
    "checkpoint": (
        "BEST",
        "FORMAT",
        "LAST",
        "METRICS",
        "STUDENT_ARCH",
        "VERSION",
        "build_model",
        "load_checkpoint",
        "read_checkpoint",
        "save_atomic",
        "write_metrics",
    ),
    "loop": ("Objective", "RunResult", "classification", "feature_matching", "fit", "train"),
    "distill": ("copy_last_linear", "distill", "hash_state", "make_teacher"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [
    "BEST",
    "EVAL_BATCH",
    "FORMAT",
    "KD_SCHEDULE",
    "LAST",
    "METRICS",
    "PAPER_SCHEDULE",
    "STUDENT_ARCH",
    "VERSION",
    "DistillOptions",
    "Metrics",
    "Objective",
    "RunResult",
    "Schedule",
    "Splits",
    "TrainOptions",
    "build_model",
    "classification",
    "copy_last_linear",
    "distill",
    "evaluate",
    "feature_matching",
    "features",
    "fit",
    "hash_state",
    "load_checkpoint",
    "load_splits",
    "make_teacher",
    "medmnist_metrics",
    "predict",
    "read_checkpoint",
    "save_atomic",
    "train",
    "write_metrics",
]

if TYPE_CHECKING:
    from .checkpoint import (
        BEST,
        FORMAT,
        LAST,
        METRICS,
        STUDENT_ARCH,
        VERSION,
        build_model,
        load_checkpoint,
        read_checkpoint,
        save_atomic,
        write_metrics,
    )
    from .distill import copy_last_linear, distill, hash_state, make_teacher
    from .evaluation import EVAL_BATCH, evaluate, features, predict
    from .loop import Objective, RunResult, classification, feature_matching, fit, train
    from .metrics import Metrics, medmnist_metrics
    from .options import KD_SCHEDULE, PAPER_SCHEDULE, DistillOptions, Schedule, TrainOptions
    from .splits import Splits, load_splits


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


class _Package(types.ModuleType):
    """Keeps ``qvit_hw.train.distill`` the function: importing the submodule ``distill``
    would otherwise bind the module to that name on the package."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
