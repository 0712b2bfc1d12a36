"""Training as in the paper: schedule, metrics, checkpoints, exact resume, distillation."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.main import get_command

from qvit_hw import train as train_module
from qvit_hw.cli import app, main
from qvit_hw.errors import CheckpointError
from qvit_hw.train import (
    KD_SCHEDULE,
    PAPER_SCHEDULE,
    DistillOptions,
    Schedule,
    TrainOptions,
    classification,
    distill,
    evaluate,
    features,
    fit,
    load_checkpoint,
    load_splits,
    medmnist_metrics,
    read_checkpoint,
    save_atomic,
    train,
)

QVIT_HW = str(Path(sys.executable).with_name("qvit-hw"))


def tiny(model: str = "vit", epochs: int = 2, limit: int = 24, **kw: object) -> TrainOptions:
    """A few real digits images: seconds, not minutes."""
    return TrainOptions(
        "digits", model=model, limit=limit, schedule=Schedule(epochs=epochs, batch_size=8), **kw
    )


def without_time(history: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


# --- metrics and schedule -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "classes"), [("binary-class", 2), ("multi-class", 8), ("ordinal-regression", 5)]
)
def test_metrics_equal_medmnist_evaluator(task: str, classes: int) -> None:
    from medmnist.evaluator import getACC, getAUC

    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, 200)
    logits = rng.normal(size=(200, classes)) + 1.5 * np.eye(classes)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    acc, auc = medmnist_metrics(labels, probs, task)

    assert acc == pytest.approx(getACC(labels[:, None], probs, task), abs=1e-12)
    assert auc == pytest.approx(getAUC(labels[:, None], probs, task), abs=1e-12)
    assert 0.5 < auc < 1.0


def test_auc_leaves_out_classes_absent_from_the_split() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    acc, auc = medmnist_metrics(labels, probs, "multi-class")
    assert (acc, auc) == (1.0, 1.0)  # class 2 has no positives: undefined, not averaged in
    assert math.isnan(medmnist_metrics(np.zeros(3), np.full((3, 2), 0.5), "binary-class")[1])


def test_paper_schedule_and_kd_schedule() -> None:
    assert (PAPER_SCHEDULE.epochs, PAPER_SCHEDULE.lr, PAPER_SCHEDULE.batch_size) == (100, 1e-3, 32)
    assert PAPER_SCHEDULE.milestones() == [50, 75]
    assert (KD_SCHEDULE.epochs, KD_SCHEDULE.milestones()) == (50, [])
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        Schedule(epochs=0)


# --- train: files, checkpoints, metrics ---------------------------------------------------


def test_train_writes_checkpoints_that_rebuild_the_model(tmp_path: Path) -> None:
    result = train(tiny(epochs=4), tmp_path)

    assert [r["lr"] for r in result.history] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt", "metrics.json"]
    assert read_checkpoint(tmp_path / "last.pt")["epoch"] == 4

    model, info = load_checkpoint(tmp_path / "best.pt")
    assert info["stage"] == "train" and info["arch"] == "vision-transformer"
    assert info["config"]["model"] == "vit" and info["config"]["num_classes"] == 10
    assert info["dataset"] == {"name": "digits", "size": 28, "task": "multi-class",
                               "classes": [str(i) for i in range(10)]}  # fmt: skip
    assert info["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert info["epoch"] == result.best["epoch"] == info["metrics"]["best"]["epoch"]
    best_auc = max(r["val_auc"] for r in result.history)
    assert result.best["val_auc"] == best_auc  # validation picks the checkpoint

    splits = load_splits(tiny())
    test = evaluate(model, splits.test, splits.norm)
    assert info["metrics"]["test"] == pytest.approx(vars(test))
    assert vars(result.test) == pytest.approx(vars(test))

    import json

    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in doc["history"]] == [1, 2, 3, 4]
    assert doc["best"]["epoch"] == info["epoch"] and doc["test"]["acc"] == pytest.approx(test.acc)


def test_existing_run_needs_resume_or_overwrite(tmp_path: Path) -> None:
    train(tiny(epochs=1), tmp_path)
    with pytest.raises(CheckpointError, match="after epoch 1\\): pass --resume to continue it"):
        train(tiny(epochs=1), tmp_path)
    other = replace(tiny(epochs=1), schedule=Schedule(epochs=1, batch_size=8, lr=2e-3))
    with pytest.raises(CheckpointError, match=r"schedule\.lr=0\.001 \(now 0\.002\)"):
        train(other, tmp_path, resume=True)
    assert train(other, tmp_path, overwrite=True).history[0]["lr"] == 2e-3


def test_an_interrupted_checkpoint_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_atomic({"epoch": 1}, path)

    def killed_mid_write(obj: object, f: Path) -> None:
        Path(f).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module.torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"epoch": 2}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """A real SIGINT in epoch 2, then --resume: bit-identical to running 3 epochs at once."""
    args = ["train", "--dataset", "digits", "--limit", "256", "--epochs", "3", "--seed", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    stopped, straight = tmp_path / "stopped", tmp_path / "straight"

    proc = subprocess.Popen(
        [QVIT_HW, *args, "--out", str(stopped)], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (stopped / "last.pt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    saved = read_checkpoint(stopped / "last.pt")["epoch"]
    assert saved < 3  # really interrupted
    lines = [line for line in err.splitlines() if "error:" in line]
    assert lines == [
        f"error: train interrupted; {stopped}/last.pt holds epoch {saved}; run the same "
        "command with --resume to continue"
    ]

    for out, extra in ((stopped, ["--resume"]), (straight, [])):
        done = subprocess.run(
            [QVIT_HW, *args, "--out", str(out), *extra], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr

    a, b = read_checkpoint(stopped / "last.pt"), read_checkpoint(straight / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert without_time(a["metrics"]["history"]) == without_time(b["metrics"]["history"])
    assert str(a["optimizer"]) == str(b["optimizer"])
    best_a, best_b = (read_checkpoint(p / "best.pt")["metrics"] for p in (stopped, straight))
    assert best_a["test"] == best_b["test"] and best_a["best"]["epoch"] == best_b["best"]["epoch"]


# --- the learning check -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model", ["qvit", "vit"])
def test_digits_short_run_learns_well_above_chance(tmp_path: Path, model: str) -> None:
    """All 1,258 real training digits, 10 epochs (measured: QViT 0.31, ViT 0.63 test ACC)."""
    opts = TrainOptions("digits", model=model, schedule=Schedule(epochs=10, lr=2e-3, batch_size=8))
    result = train(opts, tmp_path)
    assert result.test.acc > 0.25  # chance is 0.1; one sd of chance on 359 images is 0.016
    assert result.test.auc > 0.8


# --- distillation -------------------------------------------------------------------------


def test_distill_end_to_end_on_a_tiny_configuration(tmp_path: Path) -> None:
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


def test_distill_refuses_a_student_checkpoint_as_teacher(tmp_path: Path) -> None:
    train(tiny(epochs=1), tmp_path / "student")
    opts = DistillOptions(tiny(epochs=1), teacher_checkpoint=str(tmp_path / "student/best.pt"))
    with pytest.raises(CheckpointError, match="holds a student, not a teacher"):
        distill(opts, tmp_path / "kd")


# --- command line -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["train", "distill"])
def test_every_flag_is_explained(name: str) -> None:
    command = get_command(app).commands[name]  # type: ignore[attr-defined]
    for param in command.params:
        assert param.help and len(param.help) > 20, param.name
    names = {p.name for p in command.params}
    assert {"dataset", "size", "qubits", "heads", "model", "epochs", "out", "resume"} <= names


def test_teacher_pretrained_offline_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    argv = ["qvit-hw", "distill", "--dataset", "digits", "--limit", "8", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--teacher-pretrained"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not download timm/tiny_vit_5m_224")
    assert err.endswith("--teacher-weights PATH") and len(err.splitlines()) == 1
