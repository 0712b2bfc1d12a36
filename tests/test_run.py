"""`qvit-hw run` end to end on local backends: outputs, faults, interruption and resume.

The bundle is a QViT on the offline digits data with 7x7 patches (16 tokens, 96 QNN rows
per image) so that every run here takes a second or two.
"""

import csv
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.export import export_bundle
from qvit_hw.model import QViT

runner = CliRunner()
ROWS_PER_IMAGE = 16 * 6  # tokens x QNNs


@pytest.fixture(scope="module")
def reference(bundle, tmp_path_factory) -> Path:
    """An uninterrupted statevector run of the first 4 test images."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    result = cli("run", bundle, "--limit", "4", "--batch-size", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def cli(*args: str):
    return runner.invoke(app, list(args))


def predictions(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pred, pred_exact (N,) and backend probabilities (N, C) from predictions.csv."""
    with (out / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    pred = np.array([int(r["pred"]) for r in rows])
    exact = np.array([int(r["pred_exact"]) for r in rows])
    probs = np.array([[float(v) for k, v in r.items() if k.startswith("prob_") and "exact" not in k]
                      for r in rows])  # fmt: skip
    return pred, exact, probs


def journal_records(out: Path) -> list[tuple[str, str, int]]:
    """(payload, status, submits) of every job, read like another process would."""
    path = out / "journal.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path, timeout=10) as db:
        try:
            return db.execute("SELECT payload, status, submits FROM jobs").fetchall()
        except sqlite3.OperationalError:  # table not created yet
            return []


def test_statevector_run_writes_complete_outputs(reference):
    run = json.loads((reference / "run.json").read_text())
    assert run["status"] == "complete" and run["backend"] == "statevector"
    assert run["summary"]["agreement"] == 1.0 and run["summary"]["z_mae"] < 1e-12
    pred, exact, _ = predictions(reference)
    np.testing.assert_array_equal(pred, exact)
    with np.load(reference / "rows.npz") as rows:
        assert len(rows["image"]) == 4 * ROWS_PER_IMAGE
        assert rows["angles"].shape == rows["exact"].shape == rows["qubits"].shape == (384, 4)
        np.testing.assert_allclose(rows["estimate"], rows["exact"], atol=1e-12)
    cost = json.loads((reference / "cost.json").read_text())
    assert cost["rows"] == 384 and cost["unique_rows"] <= 384
    assert cost["executions"] == cost["unique_rows"]  # logical circuit: one row per execution
    assert cost["packing"] == {"qnn4_logical": 1}
    jobs = [json.loads(line) for line in (reference / "jobs.jsonl").read_text().splitlines()]
    assert len(jobs) == cost["jobs"] == 2 and {j["status"] for j in jobs} == {"done"}


def test_with_very_many_shots_predictions_equal_the_exact_models(bundle, tmp_path):
    out = tmp_path / "shots"
    result = cli("run", bundle, "--backend", "shots", "--shots", "100000000", "--limit", "12",
                 "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    pred, exact, _ = predictions(out)
    np.testing.assert_array_equal(pred, exact)
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert 0 < summary["z_mae"] < 1e-4  # sampled, not exact


def test_transient_failures_change_nothing_and_are_counted(bundle, tmp_path):
    common = ("--shots", "500", "--limit", "4", "--job-size", "10", "--retry-wait", "0.001")
    clean, flaky = tmp_path / "clean", tmp_path / "flaky"
    assert cli("run", bundle, "--backend", "shots", *common, "--out", str(clean)).exit_code == 0
    mock = "mock?inner=shots&transient=0.3&result_transient=0.3&seed=4"
    result = cli("run", bundle, "--backend", mock, *common, "--out", str(flaky))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(predictions(flaky)[2], predictions(clean)[2])
    cost = json.loads((flaky / "cost.json").read_text())
    assert cost["retries"] > 10 and cost["submitted"] == cost["jobs"]


def test_a_permanent_failure_stops_and_resume_finishes_without_paying_twice(
    bundle, reference, tmp_path
):
    out = tmp_path / "failing"
    args = ("--limit", "4", "--batch-size", "2", "--job-size", "20", "--max-in-flight", "1")
    result = cli("run", bundle, "--backend", "mock?fail=3", *args, "--out", str(out))
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: job 4/") and "failed on mock: mock: job mock-00003-" in last
    assert "finished jobs are kept in" in last and "--resume" in last
    assert sorted(status for _, status, _ in journal_records(out)) == ["done"] * 3 + ["failed"]
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert not (out / "predictions.csv").exists()  # nothing that looks complete
    result = cli("run", bundle, "--backend", "mock", *args, "--out", str(out), "--resume")
    assert result.exit_code == 0, result.output
    cost = json.loads((out / "cost.json").read_text())
    assert cost["reused"] == 3 and cost["submitted"] == cost["jobs"] - 3
    np.testing.assert_allclose(predictions(out)[2], predictions(reference)[2], atol=1e-12)


def start_run(
    bundle: str, out: Path, state: Path, *extra: str, inner: str = ""
) -> subprocess.Popen:
    """`qvit-hw run` in its own process on a slow mock (0.2 s per job, 2 in flight)."""
    backend = f"mock?latency=0.2&state={state}{inner}"
    args = ["run", bundle, "--backend", backend, "--limit", "4", "--batch-size", "2",
            "--job-size", "8", "--max-in-flight", "2", "--poll-interval", "0.02",
            "--out", str(out), *extra]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "qvit_hw.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_done_jobs(proc: subprocess.Popen, out: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while sum(status == "done" for _, status, _ in journal_records(out)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def submits_logged(state: Path) -> int:
    return len((state / "submits.jsonl").read_text().splitlines())


def resume_and_check(
    bundle: str, out: Path, state: Path, reference: Path, *extra: str, inner: str = ""
) -> None:
    done_before = {p for p, status, _ in journal_records(out) if status == "done"}
    in_flight = {p for p, status, _ in journal_records(out) if status == "submitted"}
    result = cli("run", bundle, "--backend", f"mock?state={state}{inner}", "--limit", "4",
                 "--batch-size", "2", "--job-size", "8", "--out", str(out), "--resume",
                 *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    records = journal_records(out)
    assert all(submits == 1 for _, _, submits in records)  # no job was paid for twice
    assert submits_logged(state) == len(records)  # the mock saw each job once
    cost = json.loads((out / "cost.json").read_text())
    assert cost["reused"] == len(done_before) and cost["reattached"] == len(in_flight)
    pred, _, probs = predictions(out)
    np.testing.assert_array_equal(pred, predictions(reference)[0])
    np.testing.assert_allclose(probs, predictions(reference)[2], atol=1e-12)


def test_ctrl_c_leaves_a_resumable_journal(bundle, reference, tmp_path):
    out, state = tmp_path / "interrupted", tmp_path / "mock"
    proc = start_run(bundle, out, state)
    wait_for_done_jobs(proc, out, 5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted; finished jobs are kept in" in stderr and "--resume" in stderr
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    resume_and_check(bundle, out, state, reference)


def kill_between_submits(proc: subprocess.Popen, out: Path, state: Path) -> None:
    """SIGKILL ``proc`` at a moment when every accepted submit is in the journal."""
    # SIGKILL cannot be held off: kill while every accepted submit is in the journal (a kill
    # between the backend accepting a job and the journal write would orphan that job)
    while True:
        proc.send_signal(signal.SIGSTOP)
        if submits_logged(state) == len(journal_records(out)):
            break
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.003)
    proc.kill()
    proc.communicate(timeout=30)
    assert json.loads((out / "run.json").read_text())["status"] == "running"  # it never knew


def test_a_killed_run_resumes_without_resubmitting_finished_jobs(bundle, reference, tmp_path):
    out, state = tmp_path / "killed", tmp_path / "mock"
    proc = start_run(bundle, out, state)
    wait_for_done_jobs(proc, out, 5)
    kill_between_submits(proc, out, state)
    resume_and_check(bundle, out, state, reference)


ADAPTIVE_LEARNED = ("--shots", "auto", "--initial-shots", "100", "--max-shots-per-row", "1600",
                    "--target-agreement", "0.999", "--mitigate", "learned",
                    "--calibration-rows", "64")  # fmt: skip


def test_a_killed_adaptive_run_with_learned_mitigation_resumes_paying_nothing_twice(
    bundle, tmp_path
):
    reference = tmp_path / "reference"
    result = cli("run", bundle, "--backend", "mock?inner=shots", "--limit", "4",
                 "--batch-size", "2", "--job-size", "8", *ADAPTIVE_LEARNED,
                 "--out", str(reference))  # fmt: skip
    assert result.exit_code == 0, result.output
    cost = json.loads((reference / "cost.json").read_text())
    # 8 calibration jobs, 48 of the first round (2 x 192 rows / 8), then the later rounds
    assert cost["calibration_jobs"] == 8 and cost["jobs"] > 8 + 48 + 8
    out, state = tmp_path / "killed", tmp_path / "mock"
    proc = start_run(bundle, out, state, *ADAPTIVE_LEARNED, inner="&inner=shots")
    wait_for_done_jobs(proc, out, 8 + 48 + 4)  # calibration, first round, into the next
    kill_between_submits(proc, out, state)
    resume_and_check(bundle, out, state, reference, *ADAPTIVE_LEARNED, inner="&inner=shots")


def test_fake_brisbane_end_to_end_with_readout_mitigation(bundle, tmp_path):
    out = tmp_path / "brisbane"
    result = cli("run", bundle, "--backend", "fake_brisbane", "--shots", "2000", "--limit", "2",
                 "--mitigate", "readout", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    summary, cost = run["summary"], json.loads((out / "cost.json").read_text())
    assert summary["z_mae"] < summary["z_mae_raw"]
    (k,) = cost["packing"].values()
    per_qnn = cost["unique_rows"] // 6  # 6 QNNs see the same 32 distinct tokens
    assert k > 1 and cost["executions"] == 6 * -(-per_qnn // k) + 2  # + 2 calibration circuits
    assert len(run["readout_calibration"]) == 1


@pytest.fixture(scope="module")
def breastmnist(tmp_path_factory) -> Path:
    """A tiny BreastMNIST file in medmnist's layout (another data set, 2 classes)."""
    root = tmp_path_factory.mktemp("medmnist")
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (4, 1))
    np.savez(root / "breastmnist.npz", **arrays)
    return root


@pytest.fixture(scope="module")
def unnamed_bundle(tmp_path_factory) -> str:
    """A 2-class bundle that does not say which data set it was trained on."""
    path = tmp_path_factory.mktemp("bundle") / "unnamed"
    export_bundle(QViT(num_classes=2, patch_size=7), path)
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--backend", "statevectr"), "unknown backend 'statevectr'; did you mean statevector?"),
        (("--backend", "ibm_fez?local=1&shot=2"), "backend ibm_fez: unknown option 'shot'"),
        (("--shots", "0"), "--shots must be a whole number >= 1, got 0"),
        (("--shots", "lots"), "--shots must be a whole number >= 1 or auto, got 'lots'"),
        (("--backend", "mock?max_shots=100", "--shots", "1000"),
         "1000 shots per circuit exceed mock's limit of 100"),
        (("--backend", "mock?max_executions=1000", "--shots", "5000"),
         "5000 shots exceed mock's limit of 1,000 executions"),
        (("--dataset", "breastmnist"), "was trained on digits, not breastmnist"),
        (("--mitigate", "pec"), "--mitigate must be one of none, readout, readout-props"),
        (("--job-timeout", "nan"), "--job-timeout must be a finite number of seconds, got nan"),
        (("--poll-interval", "-1"), "--poll-interval must be >= 0, got -1.0"),
        (("--retries", "0"), "--retries must be >= 1, got 0"),
        (("--backend", "shots?seed=abc"), "backend shots: option seed must be a whole number"),
        (("--backend", "fake_brisbane?noise=O"), "option noise must be one of 1/0, true/false"),
        (("--backend", "mock?latency=nan"), "latency must be >= 0 and finite"),
        (("--backend", "shots", "--shots", "1000000000000"),
         "1000000000000 shots per circuit exceed shots's limit of 1000000000"),
    ],
)  # fmt: skip
def test_bad_input_gets_one_clear_line(bundle, breastmnist, tmp_path, args, message):
    out = tmp_path / "bad"
    result = cli("run", bundle, *args, "--limit", "2", "--data-root", str(breastmnist),
                 "--out", str(out))  # fmt: skip
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists()  # nothing written for a run that never started


@pytest.mark.parametrize("kind", ["file", "under a file"])
def test_an_out_that_cannot_be_a_folder_is_one_line(bundle, tmp_path, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("the user's file")
    out = blocker if kind == "file" else blocker / "run"
    result = cli("run", bundle, "--limit", "1", "--out", str(out))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("error: --out: ") and "Traceback" not in result.output
    assert blocker.read_text() == "the user's file"


@pytest.mark.parametrize("args", [("--limit", "1.5"), ("--no-such-flag",), ()])
def test_usage_errors_exit_2(bundle, tmp_path, args):  # --shots many: one line, exit 1
    out = tmp_path / "usage"
    base = ("run", bundle) if args else ("run",)  # () : the bundle argument is missing
    result = cli(*base, *args, "--out", str(out))
    assert result.exit_code == 2 and not out.exists()


def test_bundle_and_images_must_match(unnamed_bundle, tmp_path):
    result = cli("run", unnamed_bundle, "--dataset", "digits", "--out", str(tmp_path / "x"))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: bundle {unnamed_bundle} predicts 2 classes, digits has 10"
    )
    result = cli("run", str(tmp_path / "missing"), "--out", str(tmp_path / "y"))
    assert "error: bundle" in result.output and "not found" in result.output


def test_an_existing_run_is_not_overwritten(bundle, reference):
    result = cli("run", bundle, "--limit", "4", "--out", str(reference))
    assert result.exit_code == 1 and "already holds a run; pass --resume" in result.output
    result = cli("run", bundle, "--limit", "5", "--batch-size", "2", "--out", str(reference),
                 "--resume")  # fmt: skip
    assert "--resume: " in result.output and "limit=4, not 5" in result.output


def test_backends_lists_every_kind():
    result = cli("backends")
    assert result.exit_code == 0
    for name in ("statevector", "shots", "fake_<device>", "mock", "ibm_<device>"):
        assert name in result.output


def test_run_help_is_grouped_with_choices_and_a_bundle_metavar():
    """Finding 8: one panel of 28 options shown as <str>/<int>, usage `{bundle}`."""
    result = cli("run", "--help")
    assert result.exit_code == 0
    text = result.output
    assert "run [OPTIONS] BUNDLE" in text and "{bundle}" not in text
    assert "<str>" not in text and "<int>" not in text and "<float>" not in text
    panels = ["Backend and output", "Data", "Shots and budget", "Mitigation and packing",
              "Scheduler and retries"]  # fmt: skip
    assert [p for p in panels if f"─ {p} ─" in text] == panels
    for choices in ("train|val|test", "best|max|auto", "N|auto", "NAME|PATH"):
        assert choices in text
