"""The job journal: one sqlite row per job, so a run resumes without paying twice.

A job is keyed by its payload hash (sha256 over the backend name, shots, the circuit and
the parameter values, see `payload_hash`). The scheduler records the backend's job id
*before* it waits on the job, so a crash after submit re-attaches on ``--resume``; a
finished job's results are stored as an npz blob of plain arrays (never unpickled).
Every write commits at once (WAL mode), so a killed process loses nothing already recorded.

Table ``jobs``: payload (primary key), backend, identity (the run identity the job was
paid for under, see `jobs.run`), job_id, status (submitted / done / failed), executions,
shots, submits (how often this payload was submitted), submitted_at, finished_at (unix
seconds), error, qpu_seconds, result (npz: ``z{i}`` and ``shots{i}`` per pub, and
``samples{i}`` where the backend kept raw shots). ``PRAGMA user_version`` holds
`SCHEMA_VERSION`. Opening an existing file checks it (`PRAGMA quick_check`, schema
version) before anything is read or written: a damaged, empty or foreign file is a
`JournalError`, never a silent new journal.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import JobResult, Pub, PubResult
from ..errors import JournalError, one_line

SUBMITTED, DONE, FAILED = "submitted", "done", "failed"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    payload TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    identity TEXT NOT NULL DEFAULT '',
    job_id TEXT,
    status TEXT NOT NULL,
    executions INTEGER NOT NULL,
    shots INTEGER NOT NULL,
    submits INTEGER NOT NULL DEFAULT 0,
    submitted_at REAL,
    finished_at REAL,
    error TEXT,
    qpu_seconds REAL,
    result BLOB
)
"""
_COLUMNS = (
    "payload, backend, identity, job_id, status, executions, shots, submits, submitted_at, "
    "finished_at, error, qpu_seconds"
)


@dataclass(frozen=True)
class JobRecord:
    """One journal row (the result blob is read only by `Journal.result`)."""

    payload: str
    backend: str
    identity: str
    job_id: str | None
    status: str
    executions: int
    shots: int
    submits: int
    submitted_at: float | None
    finished_at: float | None
    error: str | None
    qpu_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def payload_hash(backend: str, pubs: Iterable[Pub], circuit_keys: Iterable[str]) -> str:
    """sha256 over the backend name and each pub's circuit key, shots and values."""
    h = hashlib.sha256(backend.encode())
    for pub, key in zip(pubs, circuit_keys, strict=True):
        h.update(f"|{key}|{pub.shots}|{pub.values.shape}|".encode())
        h.update(np.ascontiguousarray(pub.values).tobytes())
    return h.hexdigest()


class Journal:
    """sqlite journal of jobs; ``":memory:"`` for a throwaway one.

    ``identity`` is recorded with every submitted job (the run identity, as text).
    ``must_exist``: refuse to create the file (resuming needs the record of what was paid).
    """

    def __init__(
        self, path: str | Path = ":memory:", *, identity: str = "", must_exist: bool = False
    ) -> None:
        self.path = str(path)
        self.identity = identity
        file = None if self.path == ":memory:" else Path(self.path)
        existing = file is not None and file.exists()
        if file is not None and must_exist and not existing:
            raise JournalError(f"{file} does not exist: the record of this run's jobs is lost")
        if file is not None and existing and not file.is_file():
            raise JournalError(f"{file} is not a file")
        if file is not None and existing and file.stat().st_size == 0:
            raise JournalError(
                f"{file} is empty (0 bytes): the record of this run's jobs is lost, so "
                "resuming could pay for them again; nothing was submitted"
            )
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            if existing:
                self._check(file)
            else:
                self._db.execute(_SCHEMA)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if file is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                self._db.close()
            raise JournalError(
                f"{self.path} is not a readable qvit-hw journal ({one_line(exc)}); nothing "
                "was submitted"
            ) from exc

    def _check(self, file: Path | None) -> None:
        """An existing journal: intact, ours, and of this schema version."""
        (check,) = self._db.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise JournalError(
                f"{file} is damaged (sqlite quick_check: {check}); nothing was submitted"
            )
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        if "jobs" not in tables or version != SCHEMA_VERSION:
            raise JournalError(
                f"{file} is not a journal of this qvit-hw version (schema {version}, expected "
                f"{SCHEMA_VERSION}); nothing was submitted"
            )

    def check_identity(self) -> None:
        """Every job in the journal was paid for under this journal's identity."""
        rows = self._db.execute("SELECT DISTINCT identity FROM jobs").fetchall()
        others = [r[0] for r in rows if r[0] != self.identity]
        if others:
            raise JournalError(
                f"{self.path} holds jobs of another run (identity {others[0][:60]!r}...); "
                "it does not belong to this run folder's run.json; nothing was submitted"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, payload: str) -> JobRecord | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE payload = ?", (payload,)
        ).fetchone()
        return JobRecord(*row) if row else None

    def records(self) -> list[JobRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY rowid").fetchall()
        return [JobRecord(*row) for row in rows]

    def submitted(
        self, payload: str, backend: str, job_id: str, executions: int, shots: int
    ) -> None:
        """Record a submit (call before waiting on the job)."""
        self._db.execute(
            """INSERT INTO jobs (payload, backend, identity, job_id, status, executions, shots,
                                 submits, submitted_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)
               ON CONFLICT(payload) DO UPDATE SET backend = excluded.backend,
                   identity = excluded.identity, job_id = excluded.job_id,
                   status = excluded.status, submits = submits + 1,
                   submitted_at = excluded.submitted_at, error = NULL, result = NULL""",
            (payload, backend, self.identity, job_id, SUBMITTED, executions, shots, time.time()),
        )

    def done(self, payload: str, result: JobResult) -> None:
        self._db.execute(
            "UPDATE jobs SET status = ?, finished_at = ?, qpu_seconds = ?, result = ? "
            "WHERE payload = ?",
            (DONE, time.time(), result.qpu_seconds, encode_result(result), payload),
        )

    def failed(self, payload: str, error: str) -> None:
        self._db.execute(
            "UPDATE jobs SET status = ?, finished_at = ?, error = ? WHERE payload = ?",
            (FAILED, time.time(), error, payload),
        )

    def result(self, payload: str) -> JobResult | None:
        row = self._db.execute(
            "SELECT result, qpu_seconds FROM jobs WHERE payload = ? AND status = ?",
            (payload, DONE),
        ).fetchone()
        if not row or row[0] is None:
            return None
        try:
            return decode_result(row[0], row[1])
        except Exception as exc:  # a damaged blob: say so, never guess (nor quote numpy)
            raise JournalError(
                f"{self.path}: the stored result of job {payload[:12]} is not an npz of plain "
                f"arrays ({type(exc).__name__}); the journal is damaged"
            ) from exc

    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return dict(rows)


def encode_result(result: JobResult) -> bytes:
    buf = io.BytesIO()
    arrays: dict[str, np.ndarray] = {}
    for i, pub in enumerate(result.pubs):
        arrays[f"z{i}"] = pub.z
        arrays[f"shots{i}"] = np.array(pub.shots)
        if pub.samples is not None:
            arrays[f"samples{i}"] = pub.samples
    if result.qpu_seconds_service_estimate is not None:
        arrays["service_estimate"] = np.array(result.qpu_seconds_service_estimate)
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_result(blob: bytes, qpu_seconds: float | None = None) -> JobResult:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        count = sum(1 for k in npz.files if k.startswith("z"))
        pubs = tuple(
            PubResult(npz[f"z{i}"], int(npz[f"shots{i}"]), npz.get(f"samples{i}"))
            for i in range(count)
        )
        estimate = float(npz["service_estimate"]) if "service_estimate" in npz.files else None
    return JobResult(pubs, qpu_seconds, estimate)
