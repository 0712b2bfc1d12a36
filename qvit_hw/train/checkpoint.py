"""The checkpoint format and a run directory's files.

    OUT/last.pt        after the latest epoch: model, optimizer, scheduler, RNG states
    OUT/best.pt        the best epoch by validation, with test metrics once training ends
    OUT/metrics.json   per-epoch loss and validation metrics, best epoch, test metrics

Every checkpoint holds the model config, data set, normalisation and metrics, and is
written atomically (temporary file, then ``os.replace``). ``load_checkpoint(path)``
rebuilds the model from any of them. Weights are stored on the CPU and every checkpoint is
read with ``map_location="cpu"``, so a run trained on one device resumes on any other.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..files import write_json
from ..model import ModelConfig, VisionTransformer
from ..teacher import Teacher

if TYPE_CHECKING:
    from .splits import Splits

FORMAT, VERSION = "qvit-hw/checkpoint", 1
STUDENT_ARCH = "vision-transformer"
LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.json"
STUDENT, TARGETS = "student.pt", "targets.pt"  # distill's kd/ stage


def checkpoint_meta(
    stage: str, arch: str, config: dict[str, Any], splits: Splits, run: dict[str, Any]
) -> dict[str, Any]:
    """What every checkpoint of a stage holds besides weights, epoch and metrics."""
    return {
        "stage": stage,
        "arch": arch,
        "config": config,
        "dataset": splits.describe(),
        "normalization": splits.norm.to_dict(),
        "run": run,
    }


def save_stage(
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
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
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
        # not torch's message: its advice (weights_only=False) is wrong for a file that is
        # not a checkpoint at all, and unsafe
        raise CheckpointError(
            f"{path} is not a qvit-hw checkpoint (torch cannot read it as one: "
            f"{type(exc).__name__}); give OUT/best.pt or OUT/last.pt of `qvit-hw train`"
        ) from exc
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
    """OUT/metrics.json: ``meta`` with the history, best epoch and test metrics."""
    write_json(out / METRICS, {**meta, "history": history, "best": best, "test": test})


def clear_run(out: Path, keep: str | None = None) -> None:
    """Remove what a previous run wrote in ``out``: only our files (a folder of the user's
    keeps everything else, in ``kd/`` and ``teacher/`` too); never ``keep``."""
    for name in (LAST, BEST, METRICS):
        _remove_ours(out / name)
    for sub in ("kd", "teacher"):
        folder = out / sub
        if keep and folder.resolve() in Path(keep).resolve().parents:
            continue
        if not ((folder / LAST).is_file() or (folder / STUDENT).is_file()):
            continue  # not a stage of ours
        for name in (LAST, BEST, METRICS, STUDENT, TARGETS):
            _remove_ours(folder / name)
        with contextlib.suppress(OSError):  # not empty: the user's files stay
            folder.rmdir()


def _remove_ours(path: Path) -> None:
    """``path`` and its temporary file (``.name.tmp`` of `save_atomic`), if they are files."""
    for p in (path, path.with_name(f".{path.name}.tmp")):
        if p.is_file() or p.is_symlink():
            p.unlink()


# what train and distill write in OUT (besides `save_atomic`'s .NAME.tmp files), and what a
# sweep writes there first: anything else is the user's
OWN_ENTRIES = frozenset({LAST, BEST, METRICS, "kd", "teacher", "sweep.log", ".lock"})


def check_out_folder(out: Path, resume: bool, keep: str | None = None) -> None:
    """A new run (or --overwrite, which replaces only its own files) into ``out`` needs a
    folder that holds nothing of anyone else's: ValueError naming --out otherwise. ``keep``
    (distill's --teacher-checkpoint) may lie inside."""
    if resume:
        return
    from ..files import foreign_entries

    kept = Path(keep).resolve() if keep else None

    def ours(entry: Path) -> bool:
        temporary = entry.name.startswith(".") and entry.name.endswith(".tmp")
        inside = kept is not None and (entry.resolve() == kept or entry.resolve() in kept.parents)
        return entry.name in OWN_ENTRIES or temporary or inside

    foreign = foreign_entries(out, ours)
    if foreign:
        raise ValueError(
            f"--out: {out} holds {foreign}, which train does not write; choose "
            "another --out (--overwrite replaces only a run's own files)"
        )
