"""The job journal: one sqlite row per job, so a run resumes without paying twice.

A job is keyed by its payload hash (sha256 over the backend name, shots, the circuit and
the parameter values, see `payload_hash`). The scheduler records the backend's job id
*before* it waits on the job, so a crash after submit re-attaches on ``--resume``; a
finished job's results are stored as an npz blob. Every write commits at once (WAL mode),
so a killed process loses nothing already recorded.

Table ``jobs``: payload (primary key), backend, job_id, status (submitted / done /
failed), executions, shots, submits (how often this payload was submitted), submitted_at,
finished_at (unix seconds), error, qpu_seconds, result (npz: ``z{i}`` and ``shots{i}``
per pub, and ``samples{i}`` where the backend kept raw shots).
"""

from __future__ import annotations

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

SUBMITTED, DONE, FAILED = "submitted", "done", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    payload TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
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
    "payload, backend, job_id, status, executions, shots, submits, submitted_at, finished_at, "
    "error, qpu_seconds"
)


@dataclass(frozen=True)
class JobRecord:
    """One journal row (the result blob is read only by `Journal.result`)."""

    payload: str
    backend: str
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
    """sqlite journal of jobs; ``":memory:"`` for a throwaway one."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

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
            """INSERT INTO jobs (payload, backend, job_id, status, executions, shots, submits,
                                 submitted_at)
               VALUES (?, ?, ?, ?, ?, ?, 1, ?)
               ON CONFLICT(payload) DO UPDATE SET backend = excluded.backend,
                   job_id = excluded.job_id, status = excluded.status, submits = submits + 1,
                   submitted_at = excluded.submitted_at, error = NULL, result = NULL""",
            (payload, backend, job_id, SUBMITTED, executions, shots, time.time()),
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
        return decode_result(row[0], row[1]) if row and row[0] is not None else None

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
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_result(blob: bytes, qpu_seconds: float | None = None) -> JobResult:
    with np.load(io.BytesIO(blob)) as npz:
        count = sum(1 for k in npz.files if k.startswith("z"))
        pubs = tuple(
            PubResult(npz[f"z{i}"], int(npz[f"shots{i}"]), npz.get(f"samples{i}"))
            for i in range(count)
        )
    return JobResult(pubs, qpu_seconds)
