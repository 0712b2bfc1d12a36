"""What a run costs before it is paid for: --dry-run, budgets that stop and resume, QPU
seconds in cost.json, and consent on paid backends."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.jobs.config import AdaptiveConfig, SchedulerConfig
from qvit_hw.jobs.preview import preview
from qvit_hw.jobs.run import RunOptions

runner = CliRunner()
FAST = ("--limit", "4", "--batch-size", "2", "--job-size", "8")


def cli(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def submits(state: Path) -> int:
    path = state / "submits.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def predictions(out: Path) -> str:
    return (out / "predictions.csv").read_text()


def test_a_dry_run_submits_nothing_and_predicts_the_real_runs_cost(bundle, tmp_path):
    state, out = tmp_path / "mock", tmp_path / "run"
    backend = f"mock?inner=shots&state={state}"
    args = ("run", bundle, "--backend", backend, *FAST, "--mitigate", "readout,learned",
            "--calibration-rows", "32", "--out", out)  # fmt: skip
    result = cli(*args, "--dry-run")
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())  # the title wraps where the paths are long
    assert "nothing submitted" in words and "total: jobs / executions / shots" in words
    assert submits(state) == 0 and not out.exists()
    options = RunOptions(bundle, backend=backend, limit=4, batch_size=2, mitigate="readout,learned",
                         scheduler=SchedulerConfig(job_size=8, calibration_rows=32))  # fmt: skip
    plan = preview(options)
    assert cli(*args).exit_code == 0
    cost = json.loads((out / "cost.json").read_text())
    total = plan.total
    assert (total.jobs, total.executions, total.shots) == (
        cost["jobs"],
        cost["executions"],
        cost["shots"],
    )
    assert plan.calibration.executions == cost["calibration_executions"] > 0
    assert submits(state) == cost["jobs"]


def test_an_adaptive_dry_run_shows_the_first_round_and_the_ceiling(bundle):
    adaptive = AdaptiveConfig(initial_shots=100, max_shots_per_row=3200)
    plan = preview(RunOptions(bundle, backend="fake_brisbane", limit=2, adaptive=adaptive))
    rows = plan.unique_rows
    k = 23  # copies of chain(4) per fake_brisbane execution (best packing)
    assert plan.data.shots == 100 * plan.data.executions and plan.data.executions >= rows / k
    assert plan.ceiling.shots == 32 * plan.data.shots
    from qvit_hw.jobs.cost import JOB_OVERHEAD

    shots_seconds = [
        t.qpu_seconds - t.jobs * JOB_OVERHEAD["ibm"] for t in (plan.data, plan.ceiling)
    ]
    assert plan.total.qpu_seconds > 0 and shots_seconds[1] > 30 * shots_seconds[0] > 0


def test_a_shot_budget_stops_before_paying_and_a_larger_one_resumes_to_the_same_result(
    bundle, tmp_path
):
    state, out, clean = tmp_path / "mock", tmp_path / "run", tmp_path / "clean"
    backend = f"mock?inner=shots&state={state}"
    common = ("run", bundle, "--backend", backend, *FAST, "--shots", "500")
    assert cli(*common[:3], "shots", *FAST, "--shots", "500", "--out", clean).exit_code == 0
    jobs = json.loads((clean / "cost.json").read_text())["jobs"]
    result = cli(*common, "--max-total-shots", 500 * 8 * 5 + 1, "--out", out)  # 5 jobs fit
    assert result.exit_code == 1
    assert "would take the run past --max-total-shots 20,001" in result.output
    assert "--resume with a larger budget continues" in result.output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and submits(state) == 5
    result = cli(*common, "--max-total-shots", 10**9, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert submits(state) == jobs  # the 5 paid jobs were not paid again
    assert predictions(out) == predictions(clean)


def test_a_qpu_seconds_budget_needs_durations(bundle, tmp_path):
    result = cli("run", bundle, "--backend", "shots", *FAST, "--max-qpu-seconds", 10,
                 "--out", tmp_path / "x")  # fmt: skip
    assert result.exit_code == 1 and "gives no QPU-time estimate" in result.output


def test_cost_json_carries_qpu_seconds_and_where_they_come_from(bundle, tmp_path):
    out = tmp_path / "run"
    assert (
        cli("run", bundle, "--backend", "fake_brisbane", "--limit", "1", "--out", out).exit_code
        == 0
    )
    cost = json.loads((out / "cost.json").read_text())
    assert cost["qpu_seconds"] is None and cost["qpu_seconds_source"].startswith("estimated")
    from qvit_hw.jobs.cost import JOB_OVERHEAD

    per_shot = 250e-6  # FakeBrisbane's repetition delay, plus the circuit's microseconds
    shots_seconds = cost["qpu_seconds_estimated"] - cost["jobs"] * JOB_OVERHEAD["ibm"]
    assert cost["shots"] * per_shot < shots_seconds < cost["shots"] * 2 * per_shot
    ideal = tmp_path / "ideal"
    assert cli("run", bundle, "--limit", "1", "--out", ideal).exit_code == 0
    assert json.loads((ideal / "cost.json").read_text())["qpu_seconds_source"].startswith("unknown")


def test_a_paid_backend_needs_consent_and_a_local_one_does_not(bundle, tmp_path, monkeypatch):
    state = tmp_path / "mock"
    paid = f"mock?inner=shots&paid=1&state={state}"
    result = cli("run", bundle, "--backend", paid, *FAST, "--out", tmp_path / "a")
    assert result.exit_code == 1 and "is a paid backend: pass --yes" in result.output
    assert submits(state) == 0 and not (tmp_path / "a").exists()
    monkeypatch.setattr("qvit_hw.cli._on_terminal", lambda: True)
    result = cli("run", bundle, "--backend", paid, *FAST, "--out", tmp_path / "b", input="n\n")
    assert result.exit_code == 1 and "estimated QPU seconds" in result.output
    assert "not confirmed; nothing was submitted" in result.output and submits(state) == 0
    result = cli("run", bundle, "--backend", paid, *FAST, "--out", tmp_path / "c", input="y\n")
    assert result.exit_code == 0, result.output
    monkeypatch.setattr("qvit_hw.cli._on_terminal", lambda: False)
    result = cli("run", bundle, "--backend", paid, *FAST, "--yes", "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert np.array_equal(*(np.load(tmp_path / d / "rows.npz")["estimate"] for d in "cd"))
    local = cli("run", bundle, "--backend", "shots", *FAST, "--out", tmp_path / "e")
    assert local.exit_code == 0 and "Submit these jobs?" not in local.output


@pytest.mark.parametrize("flag", ["--max-total-shots", "--max-qpu-seconds"])
def test_a_budget_must_be_positive(bundle, tmp_path, flag):
    result = cli("run", bundle, flag, 0, "--out", tmp_path / "x")
    assert result.exit_code == 1 and f"{flag} must be" in result.output


def test_a_dry_run_on_a_live_device_without_credentials_prices_on_its_snapshot(
    bundle, tmp_path, monkeypatch
):
    """Finding 7: `--dry-run --backend ibm_fez` without credentials stopped instead of
    pricing the run; QPU seconds were printed as "estimated" though a lower bound, with
    nothing saying what they cost."""
    for name in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no saved account either
    monkeypatch.setenv("QISKIT_IBM_RUNTIME_CONFIG_FILE", str(tmp_path / "none.json"))
    args = ("run", bundle, "--backend", "ibm_fez", *FAST, "--out", tmp_path / "x", "--dry-run")
    result = cli(*args, "--price-per-qpu-second", "1.6", env={"COLUMNS": "200"})  # one line a row
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())
    assert "priced on │ ibm_fez's offline snapshot (calibration of 20" in words
    assert "no IBM credentials here" in words
    assert "estimated QPU seconds (a lower bound)" in words
    assert "per-circuit loading is not counted, so a lower bound" in words
    snapshot = preview(RunOptions(bundle, backend="ibm_fez?local=1", limit=4, batch_size=2,
                                  scheduler=SchedulerConfig(job_size=8)))  # fmt: skip
    seconds = snapshot.total.qpu_seconds
    assert f"│ {seconds:,.1f} │" in words and f"{seconds * 1.6:,.2f}" in words
    assert "at 1.6 per QPU second (your --price-per-qpu-second, 20" in words
    assert not (tmp_path / "x").exists()


def test_qpu_seconds_count_ibms_per_job_overhead(bundle):
    from qvit_hw.jobs.cost import JOB_OVERHEAD

    options = RunOptions(bundle, backend="fake_brisbane", limit=4, batch_size=2,
                         scheduler=SchedulerConfig(job_size=8))  # fmt: skip
    plan = preview(options)
    total = plan.total
    per_shot = 250e-6  # FakeBrisbane's repetition delay, plus the circuit's microseconds
    overhead = total.jobs * JOB_OVERHEAD["ibm"]
    assert JOB_OVERHEAD["ibm"] == pytest.approx(3.0) and total.jobs >= 2
    assert total.shots * per_shot + overhead < total.qpu_seconds
    assert total.qpu_seconds < total.shots * 1.2 * per_shot + overhead


def test_an_adaptive_dry_run_gives_an_expected_figure_that_a_run_meets(bundle, tmp_path):
    """Finding 7: an adaptive dry run gave only a range (first round to ceiling, 685 s to
    106,335 s); the expected figure simulates the rounds (ideal shot noise) on a sample."""
    from qvit_hw.jobs.run import run_bundle

    adaptive = AdaptiveConfig(initial_shots=100, max_shots_per_row=3200)
    options = RunOptions(bundle, backend="shots?seed=0", limit=4, batch_size=2,
                         adaptive=adaptive)  # fmt: skip
    plan = preview(options)
    assert plan.expected_from.startswith("ideal shot noise on 4 images")
    assert plan.data.shots <= plan.expected.shots <= plan.ceiling.shots
    ran = run_bundle(options, tmp_path / "run")  # the same images, the same noise
    assert plan.expected.shots == ran.cost["shots"]
    fake = preview(RunOptions(bundle, backend="fake_brisbane", limit=4, adaptive=adaptive))
    assert fake.data.qpu_seconds <= fake.expected.qpu_seconds < fake.ceiling.qpu_seconds
    assert any(k.startswith("expected (ideal shot noise") for k, _ in fake.table())
