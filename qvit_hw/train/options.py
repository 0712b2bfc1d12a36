"""What to train: the schedule (Adam with step decay), the data and model options of a run,
and the teacher options of a distillation.

Paper schedule (after MedMNIST): Adam, lr 1e-3, 100 epochs, lr / 10 at 50 % and 75 % of
the epochs (epochs 50 and 75), batch 32. KD pre-training: Adam 1e-3, 50 epochs, batch 32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..data import SIZES, dataset_source
from ..files import to_json
from ..model import ModelConfig


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
    """What to train on what, and where; everything but ``data_root``, ``download``,
    ``skip_unreadable``, ``device``, ``precision`` and ``workers`` must match on --resume.
    A ``dataset`` that is a folder's path means the image folder ``folder`` at that root."""

    dataset: str
    size: int = 28
    model: str = "qvit"
    n_qubits: int = 4
    heads: int = 2
    pairs: tuple[tuple[int, int], ...] | None = None
    schedule: Schedule = PAPER_SCHEDULE
    seed: int = 0
    limit: int | None = None  # N images of every split, every class in its share (quick trials)
    data_root: str | None = None
    download: bool = False
    skip_unreadable: bool = False  # leave out an image folder's unreadable files
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps (runtime.resolve_device)
    precision: str = "32"  # 32, bf16 or 16-mixed
    workers: int = 0  # DataLoader worker processes

    def __post_init__(self) -> None:
        dataset, root = dataset_source(self.dataset, self.data_root)
        object.__setattr__(self, "dataset", dataset)
        object.__setattr__(self, "data_root", root)
        if self.size not in SIZES:  # before the model's own check, which speaks of patch_size
            raise ValueError(
                f"--size must be {' or '.join(map(str, SIZES))} (the paper's two inputs: 2x2 and "
                f"16x16 patches), got {self.size}"
            )
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.precision not in ("32", "bf16", "16-mixed"):
            raise ValueError(
                f"--precision: expected one of 32, bf16, 16-mixed, got {self.precision!r}"
            )
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")
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
        """What --resume compares: not where the data lie nor where and how the run computes
        (a run may resume on another device, precision or number of workers)."""
        key = asdict(self)
        for name in ("data_root", "download", "skip_unreadable", "device", "precision", "workers"):
            del key[name]
        return to_json(key)


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
