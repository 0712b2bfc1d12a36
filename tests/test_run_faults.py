"""Never pay twice, even when the disk, the journal or the inputs go wrong: each test is a
user's command after a fault, and the mock's submit log (``state=DIR``) counts what was
paid."""

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.data import Normalization
from qvit_hw.export import export_bundle
from qvit_hw.model import QViT

runner = CliRunner()
FAST = ("--limit", "2", "--batch-size", "2", "--job-size", "16")


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    """The command's one error line (progress bars aside); exit status 1."""
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def tags(state: Path) -> list[str]:
    """The payload hash of every job the mock accepted, in order (one per paid job)."""
    path = state / "submits.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line).get("tag") for line in lines]


def run(bundle, out, state, *extra):
    return cli("run", bundle, "--backend", f"mock?state={state}", *FAST, "--out", out, *extra)


@pytest.fixture
def finished(bundle, tmp_path) -> tuple[Path, Path]:
    out, state = tmp_path / "run", tmp_path / "mock"
    result = run(bundle, out, state)
    assert result.exit_code == 0, result.output
    return out, state


# --- 1: a journal that lost rows --------------------------------------------------------------


@pytest.mark.parametrize("status", ["complete", "interrupted"])
def test_a_journal_whose_rows_were_deleted_is_refused_before_paying(bundle, finished, status):
    out, state = finished
    paid = len(tags(state))
    if status == "interrupted":
        record = json.loads((out / "run.json").read_text())
        (out / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    with sqlite3.connect(out / "journal.sqlite") as db:
        db.execute("DELETE FROM jobs")
    line = error_line(run(bundle, out, state, "--resume"))
    assert f"journal.sqlite holds 0 of the {paid} jobs this run submitted (ledger.json)" in line
    assert "nothing was submitted" in line
    assert len(tags(state)) == paid


def test_a_killed_run_copied_without_its_wal_is_refused_before_paying(
    bundle, tmp_path, monkeypatch
):
    """The issue's trigger: `cp run.json journal.sqlite copy/` of a killed run. A killed
    process never closes its journal, so its last rows sit in journal.sqlite-wal: here the
    run stops at a budget with its journal left open, as a kill would leave it."""
    from qvit_hw.jobs.journal import Journal

    left_open = []
    monkeypatch.setattr(Journal, "close", lambda self: left_open.append(self))
    out, state = tmp_path / "run", tmp_path / "mock"
    assert run(bundle, out, state, "--max-total-shots", "100000").exit_code == 1
    assert (out / "journal.sqlite-wal").stat().st_size > 0  # the rows are still in the WAL
    paid = len(tags(state))
    assert paid >= 3
    for files, message in [
        (("run.json", "journal.sqlite"), "ledger.json is missing"),
        (("run.json", "journal.sqlite", "ledger.json"), f"holds 0 of the {paid} jobs"),
    ]:
        copy = tmp_path / f"copy{len(files)}"
        copy.mkdir()
        for name in files:
            shutil.copy(out / name, copy / name)
        line = error_line(run(bundle, copy, state, "--resume"))
        assert message in line and "nothing was submitted" in line
    assert len(tags(state)) == paid


def test_a_stopped_run_leaves_its_journal_checkpointed(bundle, finished):
    out, _ = finished
    wal = out / "journal.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    with sqlite3.connect(out / "journal.sqlite") as db:
        rows = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    assert rows == json.loads((out / "ledger.json").read_text())["jobs"] > 0


# --- 2: journal writes that fail between submit and record ----------------------------------


def test_faults_between_submit_and_journal_write_never_pay_twice(bundle, tmp_path, monkeypatch):
    """A disk that fills after a few writes (journal rows and ledger alike), run after run,
    each resuming the last: every job is paid for once, and the run completes."""
    from qvit_hw.errors import JournalError
    from qvit_hw.jobs.journal import Journal, Ledger

    out, state = tmp_path / "run", tmp_path / "mock"
    write, save = Journal._write, Ledger.save
    left = {"writes": 0}

    def spend() -> None:
        if left["writes"] <= 0:
            raise OSError(28, "No space left on device")
        left["writes"] -= 1

    def full_write(self, sql, args):
        try:
            spend()
        except OSError as exc:
            raise JournalError(f"{self.path}: could not write (database or disk is full)") from exc
        return write(self, sql, args)

    def full_save(self):
        spend()
        return save(self)

    monkeypatch.setattr(Journal, "_write", full_write)
    monkeypatch.setattr(Ledger, "save", full_save)
    left["writes"] = 1_000_000
    assert run(bundle, tmp_path / "reference", tmp_path / "reference-mock").exit_code == 0
    stops = after_submit = 0  # runs stopped by the fault; of which after the mock took a job
    for attempt in range(200):
        left["writes"] = 3 + attempt % 5  # + 1 for the new ledger of the first run
        result = run(bundle, out, state, *(["--resume"] if (out / "run.json").exists() else []))
        if result.exit_code == 0:
            break
        assert "could not write" in result.output or "No space left" in result.output
        stops += 1
        after_submit += "was submitted to mock as job" in result.output
    assert result.exit_code == 0, result.output
    assert stops >= 8 and after_submit >= 2  # the disk filled many times, between submit and
    # record too: --resume found those jobs by their payload hash instead of paying again
    paid = tags(state)
    assert len(paid) == len(set(paid)) == len(tags(tmp_path / "reference-mock"))
    with sqlite3.connect(out / "journal.sqlite") as db:
        rows = dict(db.execute("SELECT payload, submits FROM jobs"))
    assert set(rows) == set(paid) and set(rows.values()) == {1}
    same = (out / "predictions.csv").read_bytes() == (
        tmp_path / "reference/predictions.csv"
    ).read_bytes()
    assert same


def test_a_disk_without_room_is_refused_before_the_first_submit(bundle, tmp_path, monkeypatch):
    import qvit_hw.jobs.journal as journal

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(journal.shutil, "disk_usage", lambda p: usage._replace(free=3 * 2**20))
    out, state = tmp_path / "run", tmp_path / "mock"
    line = error_line(run(bundle, out, state))
    assert "has 3.0 MiB free, less than the 64 MiB a run keeps free for its journal" in line
    assert tags(state) == [] and not out.exists()  # nothing paid, nothing left behind


def test_a_read_only_journal_is_refused_before_the_first_submit(bundle, tmp_path, monkeypatch):
    """The issue's `chmod 444 journal.sqlite` (tests run as root, so the file is opened
    read-only instead): a resume that would submit is refused before paying."""
    import qvit_hw.jobs.journal as journal

    out, state = tmp_path / "run", tmp_path / "mock"
    assert run(bundle, out, state, "--max-total-shots", "50000").exit_code == 1  # a budget stop
    paid = len(tags(state))
    connect = journal.sqlite3.connect

    def read_only(path, **kwargs):
        return connect(f"file:{path}?mode=ro", uri=True, **kwargs)

    monkeypatch.setattr(journal.sqlite3, "connect", read_only)
    line = error_line(run(bundle, out, state, "--resume"))
    assert "journal.sqlite is read-only" in line and "nothing was submitted" in line
    assert len(tags(state)) == paid


# --- 3: shot limits, before paying ----------------------------------------------------------


def test_auto_shots_beyond_the_backends_limit_are_refused_with_advice_that_works(bundle, tmp_path):
    out, state = tmp_path / "run", tmp_path / "mock"
    backend = f"mock?inner=shots&max_shots=5000&state={state}"
    auto = ("--shots", "auto", "--initial-shots", "100", "--target-agreement", "0.9")
    line = error_line(cli("run", bundle, "--backend", backend, *FAST, *auto, "--out", out))
    assert "a round of --shots auto adds up to 22,949" in line  # default ceiling 32,000
    assert "pass --max-shots-per-row 7263 or fewer" in line and "nothing was submitted" in line
    assert tags(state) == [] and not out.exists()
    result = cli("run", bundle, "--backend", backend, *FAST, *auto, "--max-shots-per-row",
                 "7263", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output  # every round fit: the mock refuses > 5,000
    assert np.load(out / "rows.npz")["shots"].max() <= 7263


def test_auto_shots_need_no_calibration_shots_without_calibration(bundle, tmp_path):
    out, state = tmp_path / "run", tmp_path / "mock"
    backend = f"mock?inner=shots&max_shots=500&state={state}"
    auto = ("--shots", "auto", "--initial-shots", "100", "--max-shots-per-row", "400")
    result = cli("run", bundle, "--backend", backend, *FAST, *auto, "--out", out)
    assert result.exit_code == 0, result.output
    line = error_line(cli("run", bundle, "--backend", backend, *FAST, *auto, "--mitigate",
                          "readout", "--out", tmp_path / "readout"))  # fmt: skip
    assert "calibration jobs take 1,000 shots under --shots auto" in line


def test_a_lower_ceiling_is_an_allowed_change_on_resume_and_a_higher_one_is_not(bundle, tmp_path):
    out, state = tmp_path / "run", tmp_path / "mock"
    auto = ("--shots", "auto", "--initial-shots", "100", "--target-agreement", "0.999")
    backend = f"mock?inner=shots&state={state}"
    first = cli("run", bundle, "--backend", backend, *FAST, *auto, "--max-shots-per-row", "800",
                "--max-total-shots", "10000", "--out", out)  # fmt: skip
    assert first.exit_code == 1 and "--max-total-shots" in first.output
    paid = tags(state)
    line = error_line(cli("run", bundle, "--backend", backend, *FAST, *auto,
                          "--max-shots-per-row", "1600", "--out", out, "--resume"))  # fmt: skip
    assert "was started with --max-shots-per-row 800; a resume may lower it" in line
    result = cli("run", bundle, "--backend", backend, *FAST, *auto, "--max-shots-per-row", "400",
                 "--out", out, "--resume")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert tags(state)[: len(paid)] == paid and len(set(tags(state))) == len(tags(state))
    rows = json.loads((out / "run.json").read_text())
    assert rows["adaptive"]["max_shots_per_row"] == 400 and rows["status"] == "complete"


# --- 4: the bundle is part of the identity --------------------------------------------------


def test_a_bundle_replaced_in_place_is_not_resumed_into_the_same_journal(tmp_path):
    bundle = tmp_path / "bundle"
    info = {"dataset": {"name": "digits", "size": 28}, "normalization": Normalization().to_dict()}
    for seed in (0, 1):
        torch.manual_seed(seed)
        export_bundle(QViT(num_classes=10, patch_size=7), bundle, info=info, overwrite=True)
        if seed == 0:
            out, state = tmp_path / "run", tmp_path / "mock"
            assert run(bundle, out, state).exit_code == 0
            paid = len(tags(state))
    line = error_line(run(bundle, out, state, "--resume"))
    assert "was started with bundle_digest=" in line
    assert len(tags(state)) == paid


# --- 5: rows in an impossible state ---------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("UPDATE jobs SET result = NULL WHERE rowid = 1", "it is done without a result"),
        ("UPDATE jobs SET status = 'paused' WHERE rowid = 2", "status 'paused' is unknown"),
        ("UPDATE jobs SET status = 'submitted', job_id = NULL WHERE rowid = 1",
         "it is submitted without a job id"),
    ],
)  # fmt: skip
def test_rows_in_an_impossible_state_are_named_as_damage(bundle, finished, sql, why):
    out, state = finished
    paid = len(tags(state))
    with sqlite3.connect(out / "journal.sqlite") as db:
        db.execute(sql)
    line = error_line(run(bundle, out, state, "--resume"))
    assert "is damaged: 1 row(s) in an impossible state" in line and why in line
    assert len(tags(state)) == paid


# --- 8 and the smaller ones: one line, before --out is made ---------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--backend", "shots", "--shots", "auto", "--max-qpu-seconds", "100"),
         "--max-qpu-seconds: shots gives no QPU-time estimate"),
        (("--target-agreement", "0.9"), "--target-agreement applies only with --shots auto"),
        (("--shots", "500", "--max-shots-per-row", "900"),
         "--max-shots-per-row applies only with --shots auto"),
    ],
)  # fmt: skip
def test_flag_errors_come_before_out_is_created(bundle, tmp_path, args, message):
    out = tmp_path / "run"
    line = error_line(cli("run", bundle, *args, "--limit", "1", "--out", out))
    assert message in line
    assert not out.exists()  # the corrected command needs no --overwrite


def test_a_budget_stop_gives_its_resume_advice_once(bundle, tmp_path):
    out, state = tmp_path / "run", tmp_path / "mock"
    result = run(bundle, out, state, "--max-total-shots", "20000")
    line = error_line(result)
    assert "--max-total-shots 20,000" in line and line.count("--resume") == 1


def test_a_dropped_jobs_table_is_named(bundle, finished):
    out, state = finished
    with sqlite3.connect(out / "journal.sqlite") as db:
        db.execute("DROP TABLE jobs")
    line = error_line(run(bundle, out, state, "--resume"))
    assert "journal.sqlite has no jobs table: it is damaged or not a qvit-hw journal" in line


def test_a_run_json_that_is_a_folder_is_not_called_missing(bundle, finished):
    out, state = finished
    (out / "run.json").unlink()
    (out / "run.json").mkdir()
    line = error_line(run(bundle, out, state, "--resume"))
    assert "run.json is not a file" in line and "does not exist" not in line


def test_a_report_into_a_read_only_folder_suggests_out(finished, monkeypatch):
    import qvit_hw.report as report

    out, _ = finished

    def read_only(path, data):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(report, "write_atomic", read_only)
    line = error_line(cli("report", out))
    assert "Read-only file system" in line and "pass --out to write the report" in line
