"""`qvit-hw sweep`: a digits grid, 2 at a time locally and as Ray tasks; finished runs skipped;
sweep.csv and the paper-style table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.train.sweep import load_sweep, paper_values, run_sweep

GRID = """
[grid]
datasets = ["digits"]
sizes = [28, 224]
models = ["vit", "qvit"]
kd = [false]
seeds = [0]

[train]
epochs = 1
limit = 16
batch_size = 8
device = "cpu"

[resources]
cpus = 1
"""
NAMES = ["digits-28-vit-s0", "digits-28-qvit-s0", "digits-224-vit-s0", "digits-224-qvit-s0"]


def grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    return path


def check_outputs(out: Path) -> list[dict[str, str]]:
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == NAMES
    for r in rows:
        assert 0.0 <= float(r["test_acc"]) <= 1.0 and r["epochs"] == "1", r
    table = (out / "sweep.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| Methods | digits AUC | digits ACC |")
    body = [line.split(" | ")[0].removeprefix("| ") for line in lines[1:]]
    assert body == ["ViT_28", "ViT_224", "QViT_28", "QViT_224"]  # one row per configuration
    acc = {r["name"]: float(r["test_acc"]) for r in rows}
    assert f"| {acc['digits-28-vit-s0']:.3f} / –" in lines[1]  # measured / paper (none)
    assert "Table 1: trained from scratch" in table and "Table 2" not in table
    return rows


@pytest.mark.slow
def test_sweep_runs_two_at_a_time_then_skips_finished_runs(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    first = CliRunner().invoke(app, ["sweep", str(grid_file(tmp_path)), "--out", str(out),
                                     "--parallel", "2"])  # fmt: skip
    assert first.exit_code == 0, first.output
    assert sorted(line.split(": ")[1] for line in first.output.splitlines()
                  if line.startswith("digits-")) == ["done"] * 4  # fmt: skip
    rows = check_outputs(out)
    assert all((out / name / "best.pt").is_file() for name in NAMES)

    again = CliRunner().invoke(app, ["sweep", str(grid_file(tmp_path)), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert again.output.count(": skipped") == 4
    rerun = check_outputs(out)
    assert [r["status"] for r in rerun] == ["skipped"] * 4
    assert [{**r, "status": "done"} for r in rerun] == rows  # the same runs, untouched


@pytest.mark.slow
def test_sweep_on_a_local_ray_instance_and_a_dying_task(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        seen: list[tuple[str, str]] = []
        sweep = load_sweep(grid_file(tmp_path))
        rows = run_sweep(sweep, tmp_path / "ray", ray_address="auto",
                         report=lambda cfg, status: seen.append((cfg.name, status)))  # fmt: skip
        assert sorted(seen) == sorted((n, "done") for n in NAMES)
        assert [r["status"] for r in rows] == ["done"] * 4
        check_outputs(tmp_path / "ray")
        rerun = run_sweep(sweep, tmp_path / "ray", ray_address="auto")
        assert [r["status"] for r in rerun] == ["skipped"] * 4
        worker_dies_then_retry_resumes(tmp_path)  # same Ray instance: one start-up
    finally:
        ray.shutdown()


def test_bad_sweep_files_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    for text, message in (
        ("[grid]\nsizes = [28]\n", r"\[grid\] needs datasets"),
        (
            '[grid]\ndatasets = ["digits"]\n[train]\nepoch = 3\n',
            r"\[train\] does not know \['epoch'\]",
        ),
        ('[grid]\ndatasets = ["digitz"]\n', "unknown data set 'digitz'"),
        ("[grid\n", "is not valid TOML"),
    ):
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_sweep(bad)
    result = CliRunner().invoke(app, ["sweep", str(tmp_path / "none.toml"), "--out", "x"])
    assert result.exit_code == 1 and result.output.startswith("error: sweep: ")
    assert len(result.output.splitlines()) == 1


def test_the_paper_preset_is_its_grid_and_its_values_are_its_tables() -> None:
    paper = load_sweep("paper")
    assert len(paper.runs) == 8 * 2 * 2 * 2  # data sets x sizes x models x (scratch, KD)
    assert {r.train["epochs"] for r in paper.runs} == {100}
    assert {r.distill["kd_epochs"] for r in paper.runs} == {50}
    values = paper_values()
    assert "Boucher" in values["source"]
    assert values["table1"]["rows"]["QViT_28"][0] == [0.788, 0.801]  # BreastMNIST
    assert values["table2"]["rows"]["TinyViT"][7] == [0.983, 0.965]  # OASIS
    for table in ("table1", "table2"):
        assert all(len(r) == 8 for r in values[table]["rows"].values())


def worker_dies_then_retry_resumes(tmp_path: Path) -> None:
    """SIGKILL of the Ray worker running a configuration once its first epoch is saved: its
    run dies with it, Ray retries the task, and the retry continues with --resume."""
    import signal
    import threading
    import time

    import psutil

    path = tmp_path / "long.toml"
    path.write_text(
        '[grid]\ndatasets = ["digits"]\nmodels = ["vit"]\n'
        '[train]\nepochs = 2\nlimit = 160\nbatch_size = 8\ndevice = "cpu"\n'
    )
    folder = tmp_path / "long" / "digits-28-vit-s0"
    rows: list[dict[str, object]] = []
    sweep = threading.Thread(
        target=lambda: rows.extend(
            run_sweep(load_sweep(path), tmp_path / "long", ray_address="auto", retries=2)
        )
    )
    sweep.start()
    deadline = time.monotonic() + 180
    while not (folder / "last.pt").exists():
        assert time.monotonic() < deadline and sweep.is_alive(), "no checkpoint"
        time.sleep(0.01)
    runs = [p for p in psutil.process_iter(["cmdline"])
            if str(folder) in " ".join(p.info["cmdline"] or [])]  # fmt: skip
    assert len(runs) == 1
    worker = runs[0].parent()
    assert worker is not None and "ray" in " ".join(worker.cmdline()).lower()
    worker.send_signal(signal.SIGKILL)
    runs[0].wait(timeout=30)  # the run died with its worker
    sweep.join(timeout=300)
    assert not sweep.is_alive()
    assert [r["status"] for r in rows] == ["done"] and rows[0]["epochs"] == 2
    commands = [line for line in (folder / "sweep.log").read_text().splitlines()
                if line.startswith("$ ")]  # fmt: skip
    assert len(commands) == 2 and commands[1].endswith("--resume")
