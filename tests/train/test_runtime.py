"""--device, --precision and --workers: one code path, and clear lines when a device is missing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.model import ModelConfig, VisionTransformer, exact_executor
from qvit_hw.train import TrainOptions, read_checkpoint, train
from qvit_hw.train.runtime import Runtime, resolve_device

Tiny = Callable[..., TrainOptions]
NO_CUDA = not torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device (this machine has none)")
TINY = ["--dataset", "digits", "--model", "vit", "--limit", "16", "--epochs", "1"]


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU fallback of a machine without CUDA")
def test_auto_is_the_cpu_and_cuda_is_refused_without_a_gpu() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"--device cuda:1: this machine has no CUDA device"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match=r"--device: expected auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match=r"--precision 16-mixed needs a CUDA device"):
        Runtime(torch.device("cpu"), "16-mixed")


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU fallback of a machine without CUDA")
def test_cli_says_which_device_and_refuses_cuda_in_one_line(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["train", *TINY, "--out", str(tmp_path / "a")])
    assert done.exit_code == 0, done.output
    assert "device: cpu, precision 32 (--device auto: no CUDA device, so the CPU)" in done.output
    for flags, text in (
        (["--device", "cuda"], "error: --device cuda: this machine has no CUDA device ("),
        (["--precision", "16-mixed"], "error: --precision 16-mixed needs a CUDA device"),
        (["--precision", "8"], "error: --precision: expected one of 32, bf16, 16-mixed"),
    ):
        for command in ("train", "distill"):
            out = tmp_path / "b"
            result = CliRunner().invoke(app, [command, *TINY, *flags, "--out", str(out)])
            assert result.exit_code == 1, result.output
            lines = result.output.splitlines()
            assert len(lines) == 1 and lines[0].startswith(text), result.output
            assert not out.exists()


def test_qnns_compute_in_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(ModelConfig(model="qvit", num_classes=3))
    seen: list[torch.dtype] = []

    def spy(spec, weights, angles, names=()):
        seen.extend([angles.dtype, weights.dtype])
        return exact_executor(spec, weights, angles, names)

    x = torch.randn(2, 3, 28, 28)
    with model.executor(spy), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert seen == [torch.float32, torch.float32]
    exact = model(x)
    assert (logits.float() - exact).abs().max() < 0.1  # bf16 elsewhere, not in the QNN


def test_bf16_training_runs_and_is_recorded_nowhere_in_the_run_key(
    tmp_path: Path, tiny: Tiny
) -> None:
    opts = replace(tiny(model="qvit", epochs=1, limit=16), precision="bf16", device="cpu")
    result = train(opts, tmp_path)
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    run = read_checkpoint(tmp_path / "last.pt")["run"]
    assert not {"device", "precision", "workers"} & set(run)  # may resume elsewhere


def test_loader_workers_give_the_same_run_bit_for_bit(tmp_path: Path, tiny: Tiny) -> None:
    a = train(tiny(epochs=2, limit=40), tmp_path / "w0")
    b = train(replace(tiny(epochs=2, limit=40), workers=2), tmp_path / "w2")
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in b.history]
    ma, mb = (read_checkpoint(p / "last.pt")["model"] for p in (tmp_path / "w0", tmp_path / "w2"))
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


@needs_cuda
def test_a_cpu_checkpoint_resumes_on_cuda_and_back(tmp_path: Path, tiny: Tiny) -> None:
    train(replace(tiny(epochs=1), device="cpu"), tmp_path)
    train(replace(tiny(epochs=2), device="cuda"), tmp_path, resume=True)
    done = train(replace(tiny(epochs=3), device="cpu"), tmp_path, resume=True)
    assert [r["epoch"] for r in done.history] == [1, 2, 3]
