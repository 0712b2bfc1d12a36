"""Knowledge distillation: teacher, MSE pre-training, last-layer copy, training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from qvit_hw.errors import CheckpointError
from qvit_hw.train import (
    DistillOptions,
    Schedule,
    TrainOptions,
    classification,
    distill,
    features,
    fit,
    load_checkpoint,
    load_splits,
    read_checkpoint,
    train,
)

Tiny = Callable[..., TrainOptions]


def test_distill_end_to_end_on_a_tiny_configuration(tmp_path: Path, tiny: Tiny) -> None:
    student_opts = tiny(model="qvit", epochs=1, limit=16)
    opts = DistillOptions(
        student_opts,
        kd=Schedule(epochs=4, batch_size=8, decay_at=()),
        teacher=Schedule(epochs=1, batch_size=8),
    )
    result = distill(opts, tmp_path)

    # the teacher was fine-tuned here (random start: ImageNet weights need the network)
    teacher, t_info = load_checkpoint(tmp_path / "teacher" / "best.pt")
    assert t_info["stage"] == "teacher" and t_info["config"]["n_qubits"] == 4
    splits = load_splits(student_opts)
    targets = torch.load(tmp_path / "kd" / "targets.pt", weights_only=True)
    torch.testing.assert_close(targets["train"], features(teacher, splits.train, splits.norm))

    # pre-training lowers the MSE between the post-ReLU n-vectors
    kd = result.extra["kd_history"]
    assert [r["epoch"] for r in kd] == [1, 2, 3, 4]
    assert kd[-1]["train_loss"] < kd[0]["train_loss"]
    assert kd[-1]["val_loss"] < kd[0]["val_loss"]

    # the student keeps its pre-trained body and takes the teacher's last layer
    pretrained, _ = load_checkpoint(tmp_path / "kd" / "last.pt")
    start, s_info = load_checkpoint(tmp_path / "kd" / "student.pt")
    assert s_info["stage"] == "kd-init"
    assert torch.equal(start.head.weight, teacher.last_linear.weight)
    assert torch.equal(start.head.bias, teacher.last_linear.bias)
    for key, value in pretrained.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(start.state_dict()[key], value), key

    # and training continues from there: one epoch from student.pt gives the final weights
    final = read_checkpoint(tmp_path / "last.pt")
    assert final["stage"] == "distill"
    replay = tmp_path / "replay"
    meta = {"stage": "replay", "run": {}}
    fit(start, classification(splits), student_opts.schedule, replay, meta, seed=0, resume=False)
    for key, value in start.state_dict().items():
        assert torch.equal(final["model"][key], value), key
    assert not torch.equal(final["model"]["head.weight"], teacher.last_linear.weight)


def test_distill_refuses_a_student_checkpoint_as_teacher(tmp_path: Path, tiny: Tiny) -> None:
    train(tiny(epochs=1), tmp_path / "student")
    opts = DistillOptions(tiny(epochs=1), teacher_checkpoint=str(tmp_path / "student/best.pt"))
    with pytest.raises(CheckpointError, match="holds a student, not a teacher"):
        distill(opts, tmp_path / "kd")
