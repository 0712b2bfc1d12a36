"""A finished run folder corrupted in many seeded ways: `run --resume` either reproduces the
run's outputs exactly or stops with one line; never a traceback, never a silent change."""

import json
import random
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qvit_hw.cli import app

ARGS = ("--backend", "shots?seed=3", "--limit", "2", "--batch-size", "2", "--job-size", "24",
        "--shots", "300")  # fmt: skip
PROGRESS = re.compile(r"\d+/\d+ \d+:\d\d:\d\d$")  # a rich progress bar's line


def run(bundle: str, out: Path, *extra: str):
    return CliRunner().invoke(app, ["run", bundle, *ARGS, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def original(bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    assert run(bundle, out).exit_code == 0
    with sqlite3.connect(out / "journal.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return out


def flip(path: Path, rng: random.Random, count: int = 8) -> None:
    data = bytearray(path.read_bytes())
    for _ in range(count):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def edit_run_json(out: Path, change) -> None:
    doc = json.loads((out / "run.json").read_text())
    change(doc)
    (out / "run.json").write_text(json.dumps(doc))


def sql(out: Path, statement: str, *args) -> None:
    db = sqlite3.connect(out / "journal.sqlite", isolation_level=None)
    try:
        db.execute(statement, args)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def _set(doc, key, value):
    doc[key] = value


CORRUPTIONS = {
    "truncate run.json": lambda out, rng: (out / "run.json").write_text('{"status": '),
    "flip run.json": lambda out, rng: flip(out / "run.json", rng),
    "run.json a list": lambda out, rng: (out / "run.json").write_text("[]"),
    "run.json empty": lambda out, rng: (out / "run.json").write_text(""),
    "drop identity": lambda out, rng: edit_run_json(out, lambda d: d.pop("identity")),
    "identity a list": lambda out, rng: edit_run_json(out, lambda d: _set(d, "identity", [])),
    "identity shots": lambda out, rng: edit_run_json(
        out, lambda d: d["identity"].update(shots=999)
    ),
    "identity backend": lambda out, rng: edit_run_json(
        out, lambda d: d["identity"]["backend"].update(seed=4)
    ),
    "status running": lambda out, rng: edit_run_json(out, lambda d: _set(d, "status", "running")),
    "status garbage": lambda out, rng: edit_run_json(out, lambda d: _set(d, "status", 7)),
    "drop summary": lambda out, rng: edit_run_json(out, lambda d: d.pop("summary")),
    "journal zero bytes": lambda out, rng: (out / "journal.sqlite").write_bytes(b""),
    "journal deleted": lambda out, rng: (out / "journal.sqlite").unlink(),
    "journal truncated": lambda out, rng: (out / "journal.sqlite").write_bytes(
        (out / "journal.sqlite").read_bytes()[:1000]
    ),
    "journal header flipped": lambda out, rng: (out / "journal.sqlite").write_bytes(
        b"SQLite format 2\x00" + (out / "journal.sqlite").read_bytes()[16:]
    ),
    "journal is run.json": lambda out, rng: shutil.copy(out / "run.json", out / "journal.sqlite"),
    "journal a folder": lambda out, rng: (
        (out / "journal.sqlite").unlink(),
        (out / "journal.sqlite").mkdir(),
    ),
    "journal flipped": lambda out, rng: flip(out / "journal.sqlite", rng, 40),
    "schema version": lambda out, rng: sql(out, "PRAGMA user_version = 7"),
    "table dropped": lambda out, rng: sql(out, "DROP TABLE jobs"),
    "one row deleted": lambda out, rng: sql(out, "DELETE FROM jobs WHERE rowid = 1"),
    "all rows deleted": lambda out, rng: sql(out, "DELETE FROM jobs"),
    "blob garbage": lambda out, rng: sql(out, "UPDATE jobs SET result = ?", b"garbage"),
    "blob empty": lambda out, rng: sql(out, "UPDATE jobs SET result = ? WHERE rowid = 1", b""),
    "blob pickled": lambda out, rng: sql(
        out, "UPDATE jobs SET result = ? WHERE rowid = 1", _pickled_npz()
    ),
    "blob null": lambda out, rng: sql(out, "UPDATE jobs SET result = NULL WHERE rowid = 2"),
    "status submitted": lambda out, rng: sql(
        out, "UPDATE jobs SET status = 'submitted', job_id = 'shots-99999-dead' WHERE rowid = 1"
    ),
    "status failed": lambda out, rng: sql(out, "UPDATE jobs SET status = 'failed'"),
    "status unknown word": lambda out, rng: sql(out, "UPDATE jobs SET status = 'weird'"),
    "row of another run": lambda out, rng: sql(out, "UPDATE jobs SET identity = 'other'"),
    "payload renamed": lambda out, rng: sql(out, "UPDATE jobs SET payload = 'x' WHERE rowid = 1"),
    "predictions deleted": lambda out, rng: (out / "predictions.csv").unlink(),
    "rows.npz garbage": lambda out, rng: (out / "rows.npz").write_bytes(b"PK\x03\x04 nope"),
    "cost.json deleted": lambda out, rng: (out / "cost.json").unlink(),
    "stale lock text": lambda out, rng: (out / ".lock").write_text("12345\n"),
}


def _pickled_npz() -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, z0=np.array([object()], dtype=object), shots0=np.array(300))
    return buf.getvalue()


def test_enough_corruptions():
    assert len(CORRUPTIONS) >= 30


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_resume_of_a_corrupted_run_reproduces_it_or_stops_with_one_line(
    bundle, original, tmp_path, name
):
    out = tmp_path / "run"
    shutil.copytree(original, out)
    CORRUPTIONS[name](out, random.Random(name))
    result = run(bundle, out, "--resume")
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        for file in ("predictions.csv",):
            assert (out / file).read_bytes() == (original / file).read_bytes(), name
        with np.load(out / "rows.npz") as new, np.load(original / "rows.npz") as old:
            for key in old.files:
                np.testing.assert_array_equal(new[key], old[key])
        assert json.loads((out / "run.json").read_text())["status"] == "complete"
    else:
        assert result.exit_code == 1, (name, result.output)
        lines = [ln for ln in result.output.strip().splitlines() if not PROGRESS.search(ln)]
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, lines)
