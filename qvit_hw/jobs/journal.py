"""The job journal: one sqlite row per job, so a run resumes without paying twice.

A job is keyed by its payload hash (sha256 over the backend name, shots, the circuit and
the parameter values, see `payload_hash`). Submits are write-ahead: the scheduler records
the intent (status ``submitting``, no job id) *before* it calls the backend and the job id
right after, so a crash between the two leaves a row that ``--resume`` reconciles with the
backend instead of paying again; a finished job's results are stored as an npz blob of
plain arrays (never unpickled). Every write commits at once (WAL mode), so a killed
process loses nothing already recorded; closing checkpoints the WAL into the main file.

Beside the journal, `Ledger` counts the distinct jobs the run ever asked a backend to run
and keeps a digest of their payload hashes (a small JSON file, rewritten atomically
before each new job's intent). Opening an existing journal with its ledger checks that
the two agree, so a journal that lost rows (deleted, or copied without its ``-wal`` file)
is refused before anything is submitted instead of paying for those jobs again.

Table ``jobs``: payload (primary key), backend, identity (the run identity the job was
paid for under, see `jobs.run`), job_id, status (submitting / submitted / done / failed),
executions,
shots, submits (how often this payload was submitted), submitted_at, finished_at (unix
seconds), error, qpu_seconds, result (npz: ``z{i}`` and ``shots{i}`` per pub, and
``samples{i}`` where the backend kept raw shots). ``PRAGMA user_version`` holds
`SCHEMA_VERSION`. Opening an existing file checks it (`PRAGMA quick_check`, schema
version) before anything is read or written: a damaged, empty or foreign file is a
`JournalError`, never a silent new journal; so is a row in an impossible state (an unknown
status, a finished job without its result, a submitted one without its id).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import JobResult, Pub, PubResult
from ..errors import JournalError, one_line
from ..files import write_json

SUBMITTING, SUBMITTED, DONE, FAILED = "submitting", "submitted", "done", "failed"
STATUSES = (SUBMITTING, SUBMITTED, DONE, FAILED)
SCHEMA_VERSION = 2
# rows of jobs that were (or may have been) paid for: not those the backend refused at submit
_PAID = f"(job_id IS NOT NULL OR status = '{SUBMITTING}')"
# free disk space a run needs before its first submit (its journal keeps every result)
MIN_FREE_BYTES = 64 * 2**20

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


def _digest_of(payload: str) -> int:
    return int.from_bytes(hashlib.sha256(payload.encode()).digest(), "big")


@dataclass
class Ledger:
    """The distinct jobs a run asked its backend to run: their count and the XOR of their
    payloads' sha256 (so adding one is O(1) and the order does not matter), and the payload
    added last. Kept in a small JSON file beside the journal, rewritten atomically before
    the journal records a new job's intent: a journal that holds fewer jobs has lost the
    record of jobs that were (or may have been) paid for."""

    path: Path
    jobs: int = 0
    digest: int = 0
    last: str | None = None

    @classmethod
    def load(cls, path: Path) -> Ledger:
        if not path.is_file():
            what = "is not a file" if path.exists() else "is missing"
            raise JournalError(
                f"{path} {what}: the count of jobs this run paid for is lost, so resuming "
                "could pay for them again; nothing was submitted (start a new run in another "
                "--out, or restore the file)"
            )
        try:
            data = json.loads(path.read_text())
            ledger = cls(path, int(data["jobs"]), int(data["digest"], 16), data["last"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise JournalError(
                f"{path} is not readable ({one_line(exc)}); nothing was submitted"
            ) from exc
        if ledger.jobs < 0 or (ledger.last is not None and not isinstance(ledger.last, str)):
            raise JournalError(f"{path} is damaged; nothing was submitted")
        return ledger

    def save(self) -> None:
        write_json(self.path, {"jobs": self.jobs, "digest": f"{self.digest:064x}",
                               "last": self.last})  # fmt: skip

    def add(self, payload: str) -> None:
        """Count a new payload, on disk first (an OSError leaves the ledger as it was)."""
        before = (self.jobs, self.digest, self.last)
        self.jobs, self.digest, self.last = (
            self.jobs + 1,
            self.digest ^ _digest_of(payload),
            payload,
        )
        try:
            self.save()
        except OSError:
            self.jobs, self.digest, self.last = before
            raise

    def check(self, payloads: set[str], journal: str) -> None:
        """The journal's payloads are the ledger's. One difference is allowed: the payload
        added last missing from the journal (its intent was never written, so it was never
        submitted); the ledger is then rewritten to match."""
        digest = 0
        for payload in payloads:
            digest ^= _digest_of(payload)
        if (len(payloads), digest) == (self.jobs, self.digest):
            return
        last = self.last
        if (last is not None and last not in payloads and len(payloads) + 1 == self.jobs
                and digest ^ _digest_of(last) == self.digest):  # fmt: skip
            self.jobs, self.digest, self.last = len(payloads), digest, None
            self.save()
            return
        name = self.path.name
        if len(payloads) < self.jobs:
            raise JournalError(
                f"{journal} holds {len(payloads)} of the {self.jobs} jobs this run submitted "
                f"({name}): the record of {self.jobs - len(payloads)} paid jobs is missing (was "
                "the folder copied without journal.sqlite-wal, or were rows deleted?); "
                "resuming would pay for them again; nothing was submitted"
            )
        raise JournalError(
            f"{journal} holds {len(payloads)} jobs, not the {self.jobs} this run submitted "
            f"({name}): it is not this run's journal; nothing was submitted"
        )


class Journal:
    """sqlite journal of jobs; ``":memory:"`` for a throwaway one.

    ``identity`` is recorded with every submitted job (the run identity, as text).
    ``must_exist``: refuse to create the file (resuming needs the record of what was paid).
    ``ledger``: the `Ledger` file kept beside it; a new journal starts a new ledger, an
    existing one must agree with its ledger. A file journal must be writable and its disk
    have `MIN_FREE_BYTES` free: both are checked on opening, before any submit.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        identity: str = "",
        must_exist: bool = False,
        ledger: str | Path | None = None,
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
                self._db.execute("BEGIN IMMEDIATE")  # a write, rolled back: a read-only
                try:  # file (or folder) fails here, before anything is submitted
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                finally:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                self._db.close()
            if "readonly" in str(exc) or "read-only" in str(exc):
                raise JournalError(
                    f"{self.path} is read-only ({one_line(exc)}): a run records every job "
                    "before paying for it; make it writable; nothing was submitted"
                ) from exc
            raise JournalError(
                f"{self.path} is not a readable qvit-hw journal ({one_line(exc)}); nothing "
                "was submitted"
            ) from exc
        self.ledger: Ledger | None = None
        try:
            self._paid = {r[0] for r in self._db.execute("SELECT payload FROM jobs")}
            if file is not None:
                _check_room(file.parent)
            if ledger is not None:
                self.ledger = Ledger.load(Path(ledger)) if existing else Ledger(Path(ledger))
                if existing:
                    self.ledger.check(self._paid, self.path)
                else:
                    self.ledger.save()
        except BaseException:
            self._db.close()
            raise

    def _check(self, file: Path | None) -> None:
        """An existing journal: intact, ours, of this schema version, and every row in a
        state the scheduler can continue from."""
        (check,) = self._db.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise JournalError(
                f"{file} is damaged (sqlite quick_check: {check}); nothing was submitted"
            )
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        if "jobs" not in tables:
            raise JournalError(
                f"{file} has no jobs table: it is damaged or not a qvit-hw journal; nothing "
                "was submitted"
            )
        if version != SCHEMA_VERSION:
            raise JournalError(
                f"{file} is not a journal of this qvit-hw version (schema {version}, expected "
                f"{SCHEMA_VERSION}); nothing was submitted"
            )
        marks = ", ".join("?" * len(STATUSES))
        bad = self._db.execute(
            f"""SELECT payload, status, job_id IS NULL, result IS NULL FROM jobs
                WHERE status NOT IN ({marks}) OR (status = ? AND result IS NULL)
                   OR (status = ? AND job_id IS NULL) ORDER BY rowid""",
            (*STATUSES, DONE, SUBMITTED),
        ).fetchall()
        if bad:
            payload, status, _, _ = bad[0]
            why = (
                f"status {status!r} is unknown" if status not in STATUSES
                else "it is done without a result" if status == DONE
                else "it is submitted without a job id"
            )  # fmt: skip
            raise JournalError(
                f"{file} is damaged: {len(bad)} row(s) in an impossible state (job "
                f"{str(payload)[:12]}: {why}); resuming could pay for them again; nothing "
                "was submitted"
            )

    def check_identity(self) -> None:
        """Every job in the journal was paid for under this journal's identity."""
        rows = self._db.execute(f"SELECT DISTINCT identity FROM jobs WHERE {_PAID}").fetchall()
        others = [r[0] for r in rows if r[0] != self.identity]
        if others:
            raise JournalError(
                f"{self.path} holds jobs of another run (identity {others[0][:60]!r}...); "
                "it does not belong to this run folder's run.json; nothing was submitted"
            )

    def close(self) -> None:
        """Checkpoint the WAL into the main file (so a copied journal.sqlite is whole), close."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        """One committed write; sqlite's errors (read-only file, full disk) as JournalError."""
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: could not write ({one_line(exc)})") from exc

    def intent(self, payload: str, backend: str, executions: int, shots: int) -> None:
        """Record that ``payload`` is about to be submitted (call before the backend): the
        ledger first (a new payload), then a row without a job id."""
        if self.ledger is not None and payload not in self._paid:
            try:
                self.ledger.add(payload)
            except OSError as exc:
                raise JournalError(
                    f"{self.ledger.path}: could not write ({one_line(exc)})"
                ) from exc
        self._write(
            """INSERT INTO jobs (payload, backend, identity, job_id, status, executions, shots,
                                 submits, submitted_at)
               VALUES (?, ?, ?, NULL, ?, ?, ?, 0, ?)
               ON CONFLICT(payload) DO UPDATE SET backend = excluded.backend,
                   identity = excluded.identity, job_id = NULL, status = excluded.status,
                   submitted_at = excluded.submitted_at, error = NULL, result = NULL""",
            (payload, backend, self.identity, SUBMITTING, executions, shots, time.time()),
        )
        self._paid.add(payload)

    def submitted(
        self, payload: str, backend: str, job_id: str, executions: int, shots: int
    ) -> None:
        """Record a submit's job id (call before waiting on the job)."""
        self._write(
            """INSERT INTO jobs (payload, backend, identity, job_id, status, executions, shots,
                                 submits, submitted_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)
               ON CONFLICT(payload) DO UPDATE SET backend = excluded.backend,
                   identity = excluded.identity, job_id = excluded.job_id,
                   status = excluded.status, submits = submits + 1,
                   submitted_at = excluded.submitted_at, error = NULL, result = NULL""",
            (payload, backend, self.identity, job_id, SUBMITTED, executions, shots, time.time()),
        )
        self._paid.add(payload)

    def done(self, payload: str, result: JobResult) -> None:
        self._write(
            "UPDATE jobs SET status = ?, finished_at = ?, qpu_seconds = ?, result = ? "
            "WHERE payload = ?",
            (DONE, time.time(), result.qpu_seconds, encode_result(result), payload),
        )

    def failed(self, payload: str, error: str) -> None:
        self._write(
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

    def paid(self) -> int:
        """Jobs that were (or may have been) paid for: every row but those refused at submit."""
        return self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE {_PAID}").fetchone()[0]

    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return dict(rows)


def _check_room(folder: Path) -> None:
    """The journal's disk has `MIN_FREE_BYTES` free (its results are written as jobs end)."""
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise JournalError(
            f"{folder} has {free / 2**20:.1f} MiB free, less than the {MIN_FREE_BYTES // 2**20} "
            "MiB a run keeps free for its journal: free some space (or choose another --out); "
            "nothing was submitted"
        )


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
