"""`mock`: seeded fault injection around a real simulator, to test pipelines against.

Like httpx's ``MockTransport``, it ships in the package so users can test their own
pipelines on failures that hardware produces only now and then. It wraps an inner backend
(``statevector`` by default; any other name works, e.g. ``fake_brisbane``), so results are
real, and injects, reproducibly from ``seed``:

- ``transient``: the share of ``submit`` calls that fail with TransientBackendError;
- ``result_transient``: the share of ``result`` calls that fail the same way;
- ``fail``: submit ordinals (0 = the first accepted job) whose jobs fail permanently;
- ``hang``: submit ordinals whose jobs never finish;
- ``latency``: seconds from submit until a job is done (by the injected ``clock``);
- ``max_circuits`` / ``max_shots`` / ``max_executions``: tighter job limits than the inner
  backend's.

Options come as keyword arguments or in the name: ``mock?transient=0.3&fail=2,5&seed=1``.
With ``state=DIR`` the mock keeps its jobs in that folder: a new process re-attaches to
jobs submitted by an earlier one (as a cloud service would), and ``DIR/submits.jsonl``
logs every accepted submit, so tests can count submits across processes. A submit may
carry a ``tag`` (the scheduler passes the job's payload hash) and `find_submitted(tag)`
finds the job again, as IBM's job tags and Braket's client tokens would: the scheduler
reconciles a job whose id its journal lost with it. A job is kept as
``DIR/jobs/<id>.npz`` (plain arrays, read without pickle) beside ``<id>.qpy`` (its
circuits in Qiskit's QPY format, which holds no code), so a crafted state folder can never
run code.

`get_backend("mock?inner=...")` builds the inner backend and hands it over; built directly,
``MockBackend(...)`` wraps a `StatevectorBackend` unless given ``inner_backend``.
"""

from __future__ import annotations

import io
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PermanentBackendError, TransientBackendError
from .base import Backend, JobResult, JobStatus, Pub, RemoteBackend, backend_identity
from .options import parse_bool


def _ints(text: Any) -> tuple[int, ...]:
    if isinstance(text, str):
        return tuple(int(v) for v in text.split(",") if v.strip())
    if isinstance(text, int):
        return (text,)
    return tuple(int(v) for v in text)


def _opt_int(text: Any) -> int | None:
    return None if text in (None, "", "none") else int(text)


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "inner": str,
    "seed": int,
    "transient": float,
    "result_transient": float,
    "fail": _ints,
    "hang": _ints,
    "latency": float,
    "state": lambda v: None if v in (None, "") else str(v),
    "max_circuits": _opt_int,
    "max_shots": _opt_int,
    "max_executions": _opt_int,
    "paid": lambda v: parse_bool(v, "mock: paid"),
}


@dataclass(frozen=True)
class MockOptions:
    """What the mock injects; see the module docstring."""

    inner: str = "statevector"
    seed: int = 0
    transient: float = 0.0
    result_transient: float = 0.0
    fail: tuple[int, ...] = ()
    hang: tuple[int, ...] = ()
    latency: float = 0.0
    state: str | None = None
    max_circuits: int | None = None
    max_shots: int | None = None
    max_executions: int | None = None
    paid: bool = False  # behave like a billed service: `qvit-hw run` asks before submitting

    def __post_init__(self) -> None:
        for name in ("transient", "result_transient"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"mock: {name} must be in [0, 1), got {getattr(self, name)}")
        if not (math.isfinite(self.latency) and self.latency >= 0):
            raise ValueError(f"mock: latency must be >= 0 and finite, got {self.latency}")
        if self.inner.split("?")[0] == "mock":
            raise ValueError("mock: inner must be another backend, not mock")

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> MockOptions:
        """From keyword arguments or query-string values (strings are converted)."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"mock: unknown option {unknown[0]!r} (known: {', '.join(known)})")
        try:
            values = {k: _CONVERT[k](v) for k, v in options.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"mock: bad option value ({exc})") from exc
        return cls(**values)


@dataclass
class _Job:
    ordinal: int
    submitted_at: float
    pubs: list[Pub]
    result: JobResult | None = None
    tag: str | None = None


class MockBackend(RemoteBackend):
    """A backend that fails on purpose, reproducibly; results come from ``inner``."""

    @property
    def paid(self) -> bool:
        return self.options.paid

    def __init__(
        self,
        options: MockOptions | None = None,
        *,
        inner_backend: Backend | None = None,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        if options is not None and kwargs:
            raise TypeError("give MockOptions or keyword options, not both")
        self.options = options if options is not None else MockOptions.parse(kwargs)
        if inner_backend is None:
            if self.options.inner != "statevector":
                raise TypeError(
                    f"mock: pass inner_backend for inner={self.options.inner!r} "
                    "(get_backend('mock?inner=...') builds it)"
                )
            from .statevector import StatevectorBackend

            inner_backend = StatevectorBackend()
        self.inner = inner_backend
        o, t = self.options, self.inner.target
        super().__init__(
            "mock",
            replace(
                t,
                name="mock",
                max_circuits=o.max_circuits if o.max_circuits is not None else t.max_circuits,
                max_shots=o.max_shots if o.max_shots is not None else t.max_shots,
                max_executions=(
                    o.max_executions if o.max_executions is not None else t.max_executions
                ),
            ),
        )
        self.clock = clock
        self.calls: Counter[str] = Counter()  # submit, submit_failed, result_failed, ...
        self._rng = np.random.default_rng(self.options.seed)
        self._jobs: dict[str, _Job] = {}
        self._tag: str | None = None  # of the submit in progress
        self._state = Path(self.options.state) if self.options.state else None
        if self._state is not None:
            (self._state / "jobs").mkdir(parents=True, exist_ok=True)

    def _result_options(self) -> dict[str, Any]:
        o = self.options  # the injected faults change no result; the inner backend does
        limits = {"max_circuits": o.max_circuits, "max_shots": o.max_shots}
        return {"inner": backend_identity(self.inner), **limits, "max_executions": o.max_executions}

    @property
    def submits(self) -> int:
        """Jobs accepted by this instance."""
        return self.calls["submit"]

    def submit(self, pubs: Sequence[Pub], *, tag: str | None = None) -> str:
        self.calls["submit_call"] += 1
        if self.options.transient and self._rng.random() < self.options.transient:
            self.calls["submit_failed"] += 1
            raise TransientBackendError("mock: injected transient failure on submit")
        self._tag = tag
        return super().submit(pubs)

    def find_submitted(self, tag: str) -> str | None:
        """The id of the last accepted job submitted with ``tag`` (None: there is none)."""
        found = [s["job_id"] for s in self.submitted() if s.get("tag") == tag]
        return found[-1] if found else None

    def _submit(self, pubs: Sequence[Pub]) -> str:
        ordinal = self._next_ordinal()
        job_id = f"mock-{ordinal:05d}-{uuid.uuid4().hex[:8]}"
        job = _Job(ordinal, self.clock(), list(pubs), tag=self._tag)
        self._jobs[job_id] = job
        self.calls["submit"] += 1
        if self._state is not None:
            _save_job(self._state / "jobs", job_id, job)
            with (self._state / "submits.jsonl").open("a") as f:
                rows = sum(p.rows for p in pubs)
                line = {"job_id": job_id, "ordinal": ordinal, "time": job.submitted_at}
                f.write(json.dumps({**line, "rows": rows, "tag": job.tag}) + "\n")
        return job_id

    def status(self, job_id: str) -> JobStatus:
        self.calls["status"] += 1
        job = self._job(job_id)
        if job is None:
            return JobStatus.UNKNOWN
        elapsed = self.clock() - job.submitted_at
        if job.ordinal in self.options.hang:
            return JobStatus.RUNNING
        if elapsed < self.options.latency:
            return JobStatus.QUEUED if elapsed < self.options.latency / 2 else JobStatus.RUNNING
        return JobStatus.FAILED if job.ordinal in self.options.fail else JobStatus.DONE

    def result(self, job_id: str) -> JobResult:
        self.calls["result_call"] += 1
        status = self.status(job_id)
        if status is JobStatus.FAILED:
            raise PermanentBackendError(
                f"mock: job {job_id} failed permanently (injected: fail includes its ordinal)"
            )
        if status is not JobStatus.DONE:
            raise PermanentBackendError(f"mock: job {job_id} is {status.value}, not done")
        if self.options.result_transient and self._rng.random() < self.options.result_transient:
            self.calls["result_failed"] += 1
            raise TransientBackendError("mock: injected transient failure on result")
        job = self._jobs[job_id]
        if job.result is None:
            inner_id = self.inner.submit(job.pubs)
            job.result = self.inner.result(inner_id)
        return job.result

    def readout_errors(self) -> dict[int, tuple[float, float]]:
        return self.inner.readout_errors()

    def submitted(self) -> list[dict[str, Any]]:
        """Every accepted submit of every process sharing ``state`` (this one's without)."""
        if self._state is None:
            jobs = self._jobs.items()
            return [{"job_id": k, "ordinal": j.ordinal, "tag": j.tag} for k, j in jobs]
        path = self._state / "submits.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def _next_ordinal(self) -> int:
        if self._state is None:
            return len(self._jobs)
        return len(self.submitted())

    def _job(self, job_id: str) -> _Job | None:
        job = self._jobs.get(job_id)
        if job is None and self._state is not None:
            job = _load_job(self._state / "jobs", job_id)
            if job is not None:
                self._jobs[job_id] = job
        return job


def _save_job(folder: Path, job_id: str, job: _Job) -> None:
    """A job as plain arrays (npz, no pickle) and its circuits as QPY."""
    from qiskit import qpy

    arrays: dict[str, np.ndarray] = {
        "ordinal": np.array(job.ordinal),
        "submitted_at": np.array(job.submitted_at),
    }
    for i, pub in enumerate(job.pubs):
        arrays[f"values{i}"] = pub.values
        arrays[f"shots{i}"] = np.array(pub.shots)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    circuits = io.BytesIO()
    qpy.dump([pub.circuit for pub in job.pubs], circuits)
    (folder / f"{job_id}.qpy").write_bytes(circuits.getvalue())
    (folder / f"{job_id}.npz").write_bytes(buf.getvalue())  # last: its presence means complete


def _load_job(folder: Path, job_id: str) -> _Job | None:
    """A job an earlier process saved, or None; a damaged file is a PermanentBackendError."""
    if not (folder / f"{job_id}.npz").exists():
        return None
    from qiskit import qpy

    try:
        with (folder / f"{job_id}.qpy").open("rb") as f:
            circuits = qpy.load(f)
        with np.load(folder / f"{job_id}.npz", allow_pickle=False) as npz:
            ordinal, submitted_at = int(npz["ordinal"]), float(npz["submitted_at"])
            pubs = [
                Pub(circuit, npz[f"values{i}"], int(npz[f"shots{i}"]))
                for i, circuit in enumerate(circuits)
            ]
    except Exception as exc:  # any damage to the state folder: the job cannot come back
        raise PermanentBackendError(f"mock: saved job {job_id} is unreadable ({exc})") from exc
    return _Job(ordinal, submitted_at, pubs)
