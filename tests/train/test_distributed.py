"""DDP under torchrun (gloo, 2 CPU processes): the same steps as one process, rank 0 writes,
and --resume after a SIGKILL of one rank is bit-exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from qvit_hw.train import Schedule, TrainOptions, read_checkpoint, train
from qvit_hw.train.batches import epoch_plan
from qvit_hw.train.runtime import Runtime

QVIT_HW = str(Path(sys.executable).with_name("qvit-hw"))
# 91 images, global batch 16: the last batch holds 11, so rank 1 gets one padded row
ARGS = ["train", "--dataset", "digits", "--model", "vit", "--limit", "91", "--epochs", "3",
        "--batch-size", "16", "--lr", "3e-3", "--seed", "5"]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def torchrun(out: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    argv += ["-m", "qvit_hw.cli", *ARGS, "--out", str(out), *extra]
    return subprocess.Popen(
        argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def rank_process(parent: subprocess.Popen[str], rank: int) -> psutil.Process:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for child in psutil.Process(parent.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no rank {rank} after 60 s")


def without_time(history: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_epoch_plans_of_two_ranks_make_the_global_batches_of_one() -> None:
    one = epoch_plan(91, 16, epoch=3, seed=5, runtime=Runtime())
    ranks = [epoch_plan(91, 16, 3, 5, Runtime(rank=r, world=2)) for r in range(2)]
    assert len(one.batches) == len(ranks[0].batches) == len(ranks[1].batches) == 6
    for k, batch in enumerate(one.batches):
        real = [
            i
            for plan in ranks
            for i, w in zip(plan.batches[k], plan.weights[k], strict=True)
            if w == 1
        ]
        assert sorted(real) == sorted(batch)  # same images, each once
    assert one.global_counts == ranks[1].global_counts == [16, 16, 16, 16, 16, 11]
    assert ranks[1].weights[-1].tolist() == [1.0] * 5 + [0.0]  # the one padded row
    with pytest.raises(ValueError, match=r"--batch-size 15 .* not a multiple of the 2 processes"):
        epoch_plan(91, 15, 1, 5, Runtime(rank=0, world=2))


@pytest.mark.slow
def test_two_gloo_processes_equal_one_and_resume_bit_exactly_after_sigkill(
    tmp_path: Path,
) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    runs = {"straight": torchrun(straight), "killed": torchrun(killed)}
    victim = rank_process(runs["killed"], rank=1)
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists():
        assert runs["killed"].poll() is None, runs["killed"].communicate()
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)

    # one process, same global batch and seed, meanwhile
    opts = TrainOptions(
        "digits", model="vit", limit=91, seed=5, schedule=Schedule(epochs=3, lr=3e-3, batch_size=16)
    )
    one = train(opts, tmp_path / "one")

    _, err = runs["killed"].communicate(timeout=120)
    assert runs["killed"].returncode != 0, err
    saved = read_checkpoint(killed / "last.pt")["epoch"]
    assert 1 <= saved < 3  # really interrupted
    _, err = runs["straight"].communicate(timeout=120)
    assert runs["straight"].returncode == 0, err
    assert "device: cpu, precision 32, 2 processes (gloo)" in err

    resumed = subprocess.run(  # the --nproc shortcut launches torchrun itself
        [QVIT_HW, *ARGS, "--out", str(killed), "--nproc", "2", "--resume"],
        env=ENV, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr

    a, b = read_checkpoint(killed / "last.pt"), read_checkpoint(straight / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert without_time(a["metrics"]["history"]) == without_time(b["metrics"]["history"])
    assert str(a["optimizer"]) == str(b["optimizer"])

    # 2 processes vs 1: the same batches and steps; only the order of float sums differs
    for r1, r2 in zip(one.history, b["metrics"]["history"], strict=True):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], abs=1e-5)
        assert r1["val_loss"] == pytest.approx(r2["val_loss"], abs=1e-5)
    assert sorted(p.name for p in straight.iterdir()) == ["best.pt", "last.pt", "metrics.json"]
