"""`qvit-hw run` state that must never be lost, paid twice or mislabelled: the run
identity, the folder lock, the journal's checks and run.json's status on every exit."""

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qvit_hw.backends import get_backend
from qvit_hw.backends.base import backend_identity, identity_key
from qvit_hw.cli import app

runner = CliRunner()
FAST = ("--limit", "2", "--batch-size", "2", "--job-size", "16")


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


PROGRESS = re.compile(r"\d+/\d+ \d+:\d\d:\d\d$")  # a rich progress bar's line


def one_error_line(result, code: int = 1) -> str:
    """The one line of an error (progress bars drawn before it aside)."""
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.strip().splitlines() if not PROGRESS.search(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in result.output
    return lines[0]


def submits(state: Path) -> int:
    path = state / "submits.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def finished(bundle, tmp_path) -> tuple[Path, Path]:
    """A complete run on a mock that logs every submit (state folder), and that folder."""
    out, state = tmp_path / "run", tmp_path / "mock"
    result = cli("run", bundle, "--backend", f"mock?state={state}", *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    return out, state


# --- identity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "differs"),
    [
        ("shots?seed=1", "shots?seed=2", "backend.seed=1, not 2"),
        ("fake_brisbane?noise=0", "fake_brisbane", "backend.noise=False, not True"),
    ],
)
def test_resume_under_another_backend_identity_is_refused(bundle, tmp_path, first, second, differs):
    out = tmp_path / "run"
    args = ("--limit", "1", "--batch-size", "1", "--shots", "200", "--out", out)
    assert cli("run", bundle, "--backend", first, *args).exit_code == 0
    before = (out / "run.json").read_bytes()
    line = one_error_line(cli("run", bundle, "--backend", second, *args, "--resume"))
    assert differs in line and "resume with the same settings" in line
    assert (out / "run.json").read_bytes() == before  # refused before anything was touched


def test_options_that_change_results_are_in_the_identity_and_the_payload_key():
    quiet, noisy = get_backend("fake_brisbane?noise=0"), get_backend("fake_brisbane")
    assert identity_key(quiet) != identity_key(noisy)
    assert identity_key(get_backend("shots?seed=1")) != identity_key(get_backend("shots?seed=2"))
    plain, faulty = get_backend("mock"), get_backend("mock?transient=0.5&latency=3&fail=1")
    assert identity_key(plain) == identity_key(faulty)  # injected faults change no result
    assert backend_identity(plain)["inner"] == {"name": "statevector"}
    local = get_backend("ibm_fez?local=1")
    assert backend_identity(local)["local"] is True
    assert backend_identity(local)["device_source"].startswith("local testing mode: ibm_fez")


def test_the_run_identity_is_in_run_json_and_every_journal_row(finished):
    out, _ = finished
    run = json.loads((out / "run.json").read_text())
    identity = run["identity"]
    assert identity["backend"]["name"] == "mock" and identity["shots"] == 1000
    with sqlite3.connect(out / "journal.sqlite") as db:
        rows = [json.loads(r[0]) for r in db.execute("SELECT identity FROM jobs")]
    assert len(rows) >= 2 and all(r == identity for r in rows)


def test_settings_that_change_no_result_may_change_on_resume(bundle, finished):
    out, state = finished
    result = cli("run", bundle, "--backend", f"mock?state={state}&latency=0", *FAST,
                 "--max-in-flight", "1", "--retries", "3", "--out", out, "--resume")  # fmt: skip
    assert result.exit_code == 0, result.output
    cost = json.loads((out / "cost.json").read_text())
    assert cost["submitted"] == 0 and cost["reused"] == cost["jobs"]


# --- the journal ----------------------------------------------------------------------------


def test_a_zero_byte_journal_is_refused_and_nothing_is_submitted(bundle, finished):
    out, state = finished
    paid, before = submits(state), (out / "run.json").read_bytes()
    (out / "journal.sqlite").write_bytes(b"")
    for wal in out.glob("journal.sqlite-*"):
        wal.unlink()
    line = one_error_line(
        cli("run", bundle, "--backend", f"mock?state={state}", *FAST, "--out", out, "--resume")
    )
    assert "journal.sqlite is empty (0 bytes)" in line and "nothing was submitted" in line
    assert submits(state) == paid and (out / "run.json").read_bytes() == before


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_a_damaged_or_missing_journal_is_one_line_and_run_json_keeps_its_status(
    bundle, finished, damage
):
    out, state = finished
    path = out / "journal.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    paid, before = submits(state), (out / "run.json").read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not sqlite at all " * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()
    line = one_error_line(
        cli("run", bundle, "--backend", f"mock?state={state}", *FAST, "--out", out, "--resume")
    )
    expected = {"garbage": "not a readable qvit-hw journal", "truncated": "journal.sqlite",
                "missing": "does not exist: the record of this run's jobs is lost"}  # fmt: skip
    assert expected[damage] in line
    assert submits(state) == paid and (out / "run.json").read_bytes() == before


def test_an_undecodable_result_is_one_line_not_a_numpy_message(bundle, finished):
    out, state = finished
    with sqlite3.connect(out / "journal.sqlite") as db:
        db.execute("UPDATE jobs SET result = ?", (b"\x93NUMPY garbage",))
    line = one_error_line(
        cli("run", bundle, "--backend", f"mock?state={state}", *FAST, "--out", out, "--resume")
    )
    assert "is not an npz of plain arrays" in line and "allow_pickle" not in line


def test_a_journal_of_another_schema_is_refused(bundle, finished):
    out, state = finished
    with sqlite3.connect(out / "journal.sqlite") as db:
        db.execute("PRAGMA user_version = 1")
    line = one_error_line(
        cli("run", bundle, "--backend", f"mock?state={state}", *FAST, "--out", out, "--resume")
    )
    assert "not a journal of this qvit-hw version (schema 1, expected 2)" in line


def test_run_json_that_is_not_a_run_record_is_one_line(bundle, finished):
    out, state = finished
    (out / "run.json").write_text("[1, 2, 3]")
    line = one_error_line(
        cli("run", bundle, "--backend", f"mock?state={state}", *FAST, "--out", out, "--resume")
    )
    assert "is not the record of a run of this qvit-hw version" in line


# --- status on every exit -------------------------------------------------------------------


def test_an_error_that_is_not_ours_leaves_failed_with_one_line(bundle, tmp_path, monkeypatch):
    from qvit_hw.backends.statevector import StatevectorBackend

    def boom(self, pub):
        raise RuntimeError("simulator exploded")

    monkeypatch.setattr(StatevectorBackend, "_run", boom)
    out = tmp_path / "run"
    line = one_error_line(cli("run", bundle, *FAST, "--out", out))
    assert line.startswith("error: RuntimeError: simulator exploded; finished jobs are kept in")
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and run["error"] == "simulator exploded"
    assert not (out / "predictions.csv").exists()


def slow_run(bundle: str, out: Path, state: Path, *extra: str) -> subprocess.Popen:
    """`qvit-hw run` in its own process on a slow mock (0.3 s per job, one in flight)."""
    args = ["run", bundle, "--backend", f"mock?latency=0.3&state={state}", "--limit", "4",
            "--batch-size", "2", "--job-size", "8", "--max-in-flight", "1",
            "--poll-interval", "0.02", "--out", str(out), *extra]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "qvit_hw.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_submits(proc: subprocess.Popen, state: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while submits(state) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)


def test_sigterm_leaves_interrupted(bundle, tmp_path):
    out, state = tmp_path / "run", tmp_path / "mock"
    proc = slow_run(bundle, out, state)
    wait_for_submits(proc, state, 2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and "SIGTERM" in run["error"]


# --- the lock -------------------------------------------------------------------------------


def test_a_locked_run_folder_refuses_a_second_process_until_the_first_is_killed(bundle, tmp_path):
    out, state = tmp_path / "run", tmp_path / "mock"
    proc = slow_run(bundle, out, state)
    wait_for_submits(proc, state, 2)
    resume = ("run", bundle, "--backend", f"mock?state={state}", "--limit", "4",
              "--batch-size", "2", "--job-size", "8", "--out", out, "--resume")  # fmt: skip
    line = one_error_line(cli(*resume))
    assert f"is in use by another qvit-hw process (PID {proc.pid})" in line
    proc.kill()  # SIGKILL: no cleanup at all, and still no stale lock
    proc.communicate(timeout=30)
    paid = submits(state)
    result = cli(*resume)
    assert result.exit_code == 0, result.output
    with sqlite3.connect(out / "journal.sqlite") as db:
        records = db.execute("SELECT submits FROM jobs").fetchall()
    assert all(n == 1 for (n,) in records) and submits(state) == len(records) >= paid


def test_two_runs_started_together_on_one_folder_pay_once(bundle, tmp_path):
    out, state = tmp_path / "run", tmp_path / "mock"
    procs = [slow_run(bundle, out, state) for _ in range(2)]
    codes = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        codes.append((proc.returncode, stderr))
    assert sorted(code for code, _ in codes) == [0, 1], codes
    loser = next(err for code, err in codes if code == 1)
    assert "in use by another qvit-hw process" in loser or "already holds a run" in loser
    with sqlite3.connect(out / "journal.sqlite") as db:
        jobs = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    assert submits(state) == jobs  # every job paid for once


# --- packing advice that can be followed ----------------------------------------------------


def test_the_max_copies_advice_of_local_testing_mode_works_with_resume(bundle, tmp_path):
    out = tmp_path / "local"
    args = ("run", bundle, "--backend", "ibm_fez?local=1&seed=1", "--limit", "1",
            "--batch-size", "1", "--shots", "100", "--out", out)  # fmt: skip
    line = one_error_line(cli(*args))
    assert "pass --max-copies 3 or fewer" in line
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    result = cli(*args, "--resume", "--max-copies", "3")  # no job was paid: new packing is fine
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["max_copies"] == 3
