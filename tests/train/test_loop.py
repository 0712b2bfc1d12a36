"""The fit loop and `train`: resume or overwrite, exact resume after Ctrl-C, learning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from qvit_hw.errors import CheckpointError, RunInterrupted
from qvit_hw.train import Schedule, TrainOptions, read_checkpoint, train

Tiny = Callable[..., TrainOptions]
QVIT_HW = str(Path(sys.executable).with_name("qvit-hw"))


def without_time(history: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_existing_run_needs_resume_or_overwrite(tmp_path: Path, tiny: Tiny) -> None:
    train(tiny(epochs=1), tmp_path)
    with pytest.raises(CheckpointError, match="after epoch 1\\): pass --resume to continue it"):
        train(tiny(epochs=1), tmp_path)
    other = replace(tiny(epochs=1), schedule=Schedule(epochs=1, batch_size=8, lr=2e-3))
    with pytest.raises(CheckpointError, match=r"schedule\.lr=0\.001 \(now 0\.002\)"):
        train(other, tmp_path, resume=True)
    assert train(other, tmp_path, overwrite=True).history[0]["lr"] == 2e-3


def test_ctrl_c_just_after_a_checkpoint_points_to_it(tmp_path, tiny, monkeypatch) -> None:
    import qvit_hw.train.loop as loop

    def interrupted(*args, **kwargs):  # the checkpoint is on disk, the loop has not noted it
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "write_metrics", interrupted)
    with pytest.raises(RunInterrupted, match=r"last\.pt holds epoch 1; run the same command "
                                              r"with --resume to continue"):  # fmt: skip
        train(tiny(epochs=2), tmp_path)


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
    """All 1,258 real training digits, 10 epochs (measured with the per-epoch seeded order of
    DistributedSampler: QViT 0.23 ACC / 0.84 AUC; with the order before it 0.31, ViT 0.63)."""
    opts = TrainOptions("digits", model=model, schedule=Schedule(epochs=10, lr=2e-3, batch_size=8))
    result = train(opts, tmp_path)
    assert result.test.acc > 0.2  # chance is 0.1; one sd of chance on 359 images is 0.016
    assert result.test.auc > 0.8
