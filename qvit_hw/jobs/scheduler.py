"""Execute: the loop that spends QPU time. Planned jobs in, their results out.

`Scheduler.execute(jobs)` takes the jobs `plan` built and returns their results in order:

    journal      finished jobs are reused, jobs in flight re-attached (`Journal`)
    submit       at most ``max_in_flight`` jobs in flight; transient errors retried with
                 backoff (`Retry`); write-ahead: the intent is journaled before the
                 backend is called and the job id right after, before Ctrl-C can stop us
    reconcile    an intent without a job id (the run stopped between the two) is looked
                 up at the backend by its payload hash where the backend keeps tags
                 (`find_submitted`: IBM job tags, the mock's log), submitted again where
                 nothing can have been paid (local simulators, free backends), else
                 named with its payload hash and refused until ``resubmit_unrecorded``
    poll         every ``poll_interval`` seconds, by the injected ``clock`` and ``sleep``
    result       checked against the job's shape and journaled
    budgets      before a job that would take the run past ``max_total_shots`` or
                 ``max_qpu_seconds`` (estimated by `cost`; jobs found in the journal count
                 too) the run stops (BudgetExhausted), resumable with a larger budget;
                 services that enforce a time limit get the remainder before each submit
    interrupts   a job that does not finish within ``job_timeout`` stops the run
                 (RunInterrupted) with its id kept, so ``--resume`` re-attaches to it; a
                 job the backend no longer knows (a local job of an ended process) is
                 submitted again, at most ``retry.attempts`` times

Planning (`plan`) and combining (`combine`) are pure and live beside this module;
`runner.QNNRunner` puts the three together for a model's QNN layers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..backends.base import Backend, JobResult, JobStatus, LocalBackend
from ..errors import (
    BackendError,
    BudgetExhausted,
    JournalError,
    PermanentBackendError,
    RunError,
    RunInterrupted,
    one_line,
)
from .config import SchedulerConfig
from .journal import DONE, SUBMITTED, SUBMITTING, JobRecord, Journal
from .plan import PlannedJob
from .retry import Retry

if TYPE_CHECKING:
    from rich.progress import Progress


@dataclass(frozen=True)
class _Flight:
    job: PlannedJob
    job_id: str
    since: float  # clock() at submit or re-attach: the job timeout counts from here


_LOST = object()  # a job its backend no longer knows


@dataclass
class SchedulerStats:
    """What a scheduler did (the run's cost summary adds wall time)."""

    calls: int = 0
    rows: int = 0  # QNN evaluations asked for
    unique_rows: int = 0  # after dedup
    executions: int = 0  # bound circuits run (each serves up to k rows)
    shots: int = 0  # shots taken (executions x shots; 0 for exact results)
    jobs: int = 0  # jobs needed (data and calibration)
    calibration_jobs: int = 0  # of which calibration (readout, learned)
    calibration_executions: int = 0  # executions of the calibration jobs (in `executions`)
    submitted: int = 0  # submits that succeeded, in this process
    reused: int = 0  # jobs found finished in the journal
    reattached: int = 0  # jobs found in flight in the journal
    resubmitted: int = 0  # jobs the backend had lost (submitted again)
    retries: int = 0  # transient errors retried
    qpu_seconds: float | None = None  # where the backend reports it
    qpu_seconds_estimated: float | None = None  # `cost` model, where the device gives durations
    qpu_seconds_service_estimate: float | None = None  # the service's estimate (IBM)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Scheduler:
    """Runs planned jobs on one backend; holds the journal, the retry policy and the counts."""

    def __init__(
        self,
        backend: Backend,
        config: SchedulerConfig | None = None,
        *,
        journal: Journal | None = None,
        retry: Retry | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        progress: Progress | None = None,
    ) -> None:
        self.backend = backend
        self.config = config if config is not None else SchedulerConfig()
        self.journal = journal if journal is not None else Journal()
        self.retry = retry if retry is not None else Retry(sleep=sleep, clock=clock)
        self.clock, self.sleep = clock, sleep
        self.progress = progress
        self.stats = SchedulerStats()
        self.committed_shots = 0  # shots of every job reused, in flight or submitted
        self.committed_seconds = 0.0  # and their estimated QPU seconds
        self._per_shot: dict[str, float | None] = {}  # circuit name -> seconds per shot

    @property
    def job_size(self) -> int | None:
        """Most executions per job at the configured shots (JobTooLargeError if none fits);
        asked only where those shots are used (an adaptive run without calibration never)."""
        return self.job_size_for(self.config.shots)

    def job_size_for(self, shots: int) -> int | None:
        """Most executions per job at ``shots`` shots: --job-size and the backend's limits."""
        capacity = self.backend.target.job_capacity(shots)
        limits = [x for x in (self.config.job_size, capacity) if x is not None]
        return min(limits) if limits else None

    def execute(self, jobs: Sequence[PlannedJob], description: str = "jobs") -> list[JobResult]:
        """Results of ``jobs`` (in order), from the journal or the backend.

        Finished jobs in the journal are reused, jobs in flight re-attached; the rest are
        submitted, at most ``max_in_flight`` at a time, and polled until done.
        """
        unique = list({job.payload: job for job in jobs}.values())  # same payload: run once
        number = {job.payload: i + 1 for i, job in enumerate(unique)}

        def label(job: PlannedJob) -> str:
            return f"job {number[job.payload]}/{len(unique)} ({job.executions} executions)"

        results, todo, in_flight = self._from_journal(unique)
        lost: dict[str, int] = {}  # payload -> times the backend lost it in this call
        task = None
        if self.progress is not None:
            task = self.progress.add_task(description, total=len(unique), completed=len(results))
        try:
            while todo or in_flight:
                while todo and len(in_flight) < self.config.max_in_flight:
                    job = todo.popleft()
                    self._commit(job, check=True)
                    in_flight[job.payload] = _Flight(
                        job, self._submit(job, label(job)), self.clock()
                    )
                finished = 0
                for payload, flight in list(in_flight.items()):
                    result = self._poll(flight, label(flight.job))
                    if result is _LOST:
                        del in_flight[payload]
                        lost[payload] = lost.get(payload, 0) + 1
                        if lost[payload] >= self.retry.attempts:
                            raise PermanentBackendError(
                                f"{label(flight.job)} was lost by {self.backend.name} "
                                f"{lost[payload]} times (last id {flight.job_id}); stopping"
                            )
                        todo.appendleft(flight.job)
                        self.stats.resubmitted += 1
                    elif result is not None:
                        del in_flight[payload]
                        results[payload] = result
                        finished += 1
                if task is not None and finished:
                    self.progress.advance(task, finished)  # type: ignore[union-attr]
                if in_flight and not finished:
                    self.sleep(self.config.poll_interval)
        finally:
            self.stats.retries = self.retry.retries
            if task is not None:
                self.progress.remove_task(task)  # type: ignore[union-attr]
        return [results[job.payload] for job in jobs]

    def _from_journal(
        self, jobs: Sequence[PlannedJob]
    ) -> tuple[dict[str, JobResult], deque[PlannedJob], dict[str, _Flight]]:
        """Split jobs into finished (results), to submit, and in flight (re-attached)."""
        results: dict[str, JobResult] = {}
        todo: deque[PlannedJob] = deque()
        in_flight: dict[str, _Flight] = {}
        for job in jobs:
            self.stats.jobs += 1
            self.stats.executions += job.executions
            record = self.journal.get(job.payload)
            cached = self.journal.result(job.payload) if record and record.status == DONE else None
            if cached is not None:
                results[job.payload] = cached
                self._commit(job, check=False)
                self._account(job, cached)
                self.stats.reused += 1
            elif record is not None and record.status == SUBMITTED and record.job_id:
                in_flight[job.payload] = _Flight(job, record.job_id, self.clock())
                self._commit(job, check=False)
                self.stats.reattached += 1
            elif (
                record is not None
                and record.status == SUBMITTING
                and (job_id := self._reconcile(record))
            ):
                self.journal.submitted(
                    job.payload, self.backend.name, job_id, job.executions, job.pubs[0].shots
                )
                in_flight[job.payload] = _Flight(job, job_id, self.clock())
                self._commit(job, check=False)
                self.stats.reattached += 1
            else:
                todo.append(job)
        return results, todo, in_flight

    def _reconcile(self, record: JobRecord) -> str | None:
        """The job id of an intent journaled without one (the run stopped between asking the
        backend and recording its answer): the backend's own record where it keeps one
        (None: it never got the job), None where nothing can have been paid, else a
        JournalError naming the payload, unless ``resubmit_unrecorded``."""
        find = getattr(self.backend, "find_submitted", None)
        if find is not None:
            return find(record.payload)
        free = isinstance(self.backend, LocalBackend) or not getattr(self.backend, "paid", True)
        if free or self.config.resubmit_unrecorded:
            return None
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.submitted_at or 0))
        raise JournalError(
            f"a job (payload {record.payload}) was being submitted to {self.backend.name} at "
            f"{when} when the run stopped, and its job id was not recorded; "
            f"{self.backend.name} cannot be asked for it: look for a job of that time in the "
            "service, and if there is none run again with --resubmit-unrecorded; nothing "
            "was submitted"
        )

    def job_cost(self, job: PlannedJob) -> tuple[int, float | None]:
        """Shots and estimated QPU seconds of ``job`` (None: no estimate for this device)."""
        from .cost import job_overhead, seconds_per_shot

        shots, seconds = 0, 0.0
        for pub in job.pubs:
            name = pub.circuit.name
            if name not in self._per_shot:
                self._per_shot[name] = seconds_per_shot(pub.circuit, self.backend)
            per_shot = self._per_shot[name]
            shots += pub.rows * pub.shots
            seconds = (
                None
                if per_shot is None or seconds is None
                else seconds + pub.rows * pub.shots * per_shot
            )
        return shots, None if seconds is None else seconds + job_overhead(self.backend)

    def _commit(self, job: PlannedJob, *, check: bool) -> None:
        """Count ``job`` against the budgets; with ``check``, first stop the run if it
        would exceed one (nothing of it has been paid for yet)."""
        shots, seconds = self.job_cost(job)
        limit_shots, limit_seconds = self.config.max_total_shots, self.config.max_qpu_seconds
        if check and limit_seconds is not None and seconds is None:
            raise RunError(
                f"--max-qpu-seconds: {self.backend.name} gives no QPU-time estimate (its "
                "device has no instruction durations); use --max-total-shots"
            )
        if check and limit_shots is not None and self.committed_shots + shots > limit_shots:
            raise BudgetExhausted(
                f"the next job ({shots:,} shots) would take the run past --max-total-shots "
                f"{limit_shots:,} ({self.committed_shots:,} committed); finished jobs are "
                "journaled: --resume with a larger budget continues"
            )
        if check and limit_seconds is not None and seconds is not None:
            if self.committed_seconds + seconds > limit_seconds:
                raise BudgetExhausted(
                    f"the next job (about {seconds:.1f} QPU s) would take the run past "
                    f"--max-qpu-seconds {limit_seconds:g} ({self.committed_seconds:.1f} s "
                    "committed); finished jobs are journaled: --resume with a larger budget "
                    "continues"
                )
            limit = getattr(self.backend, "limit_execution_time", None)  # optional in Backend
            if limit is not None:
                limit(limit_seconds - self.committed_seconds)
        self.committed_shots += shots
        if seconds is not None:
            self.committed_seconds += seconds
            self.stats.qpu_seconds_estimated = (self.stats.qpu_seconds_estimated or 0.0) + seconds

    def _poll(self, flight: _Flight, label: str) -> JobResult | object | None:
        """The job's result once done (journaled), `_LOST` if the backend lost it, or None."""
        name, job_id = self.backend.name, flight.job_id
        status = self.retry.call(self.backend.status, job_id, what=f"status of {label}")
        if status is JobStatus.DONE:
            result = self._result(flight.job, job_id, label)
            self.journal.done(flight.job.payload, result)
            self._account(flight.job, result)
            return result
        if status is JobStatus.FAILED:
            try:
                self.backend.result(job_id)  # a failed job's result raises with the reason
                reason = "the backend reports it failed"
            except BackendError as exc:
                reason = str(exc)
            self.journal.failed(flight.job.payload, reason)
            raise PermanentBackendError(f"{label}, id {job_id}, failed on {name}: {reason}")
        if status is JobStatus.UNKNOWN:
            return _LOST
        if self.clock() - flight.since > self.config.job_timeout:
            raise RunInterrupted(
                f"{label}, id {job_id}, did not finish within {self.config.job_timeout:g} s "
                f"on {name} "
                f"(still {status.value}); the journal keeps its id, so --resume re-attaches to it"
            )
        return None

    def _submit(self, job: PlannedJob, label: str) -> str:
        """Submit with retries, write-ahead: the intent is journaled before the backend is
        asked, the job id right after, both before Ctrl-C can stop us. A journal that cannot
        record the intent stops the run before anything is paid; one that cannot record the
        id stops it naming the id (--resume reconciles the intent)."""
        name, shots = self.backend.name, job.pubs[0].shots

        def attempt() -> str:
            with _interrupts_held():
                self.journal.intent(job.payload, name, job.executions, shots)
                job_id = self._send(job)
                try:
                    self.journal.submitted(job.payload, name, job_id, job.executions, shots)
                except JournalError as exc:
                    raise JournalError(
                        f"{label} was submitted to {name} as job {job_id}, but {exc}; the "
                        f"journal keeps its intent (payload {job.payload[:12]}), which "
                        "--resume reconciles"
                    ) from exc
            return job_id

        self.backend.target.check_job(job.pubs)
        try:
            job_id = self.retry.call(attempt, what=f"submit of {label}")
        except PermanentBackendError as exc:  # refused: nothing was paid, --resume submits it
            with contextlib.suppress(JournalError):
                self.journal.failed(job.payload, f"rejected at submit: {one_line(exc)}")
            raise type(exc)(f"{label} was rejected by {self.backend.name}: {exc}") from exc
        self.stats.submitted += 1
        return job_id

    def _send(self, job: PlannedJob) -> str:
        """``backend.submit``, tagged with the payload hash where the backend can look a
        job up by its tag (`_reconcile`)."""
        if getattr(self.backend, "find_submitted", None) is not None:
            return self.backend.submit(job.pubs, tag=job.payload)  # type: ignore[call-arg]
        return self.backend.submit(job.pubs)

    def _result(self, job: PlannedJob, job_id: str, label: str) -> JobResult:
        result = self.retry.call(self.backend.result, job_id, what=f"result of {label}")
        shapes = [(r.z.shape[0], r.z.shape[1]) for r in result.pubs]
        wanted = [(p.rows, p.circuit.num_clbits) for p in job.pubs]
        if shapes != wanted:
            raise PermanentBackendError(
                f"{label}, id {job_id}: {self.backend.name} returned results of shapes "
                f"{shapes}, expected {wanted}"
            )
        return result

    def _account(self, job: PlannedJob, result: JobResult) -> None:
        """Count the shots a finished job took (exact results take none) and its QPU time."""
        self.stats.shots += sum(
            p.rows * r.shots for p, r in zip(job.pubs, result.pubs, strict=True)
        )
        if result.qpu_seconds is not None:
            self.stats.qpu_seconds = (self.stats.qpu_seconds or 0.0) + result.qpu_seconds
        estimate = result.qpu_seconds_service_estimate
        if estimate is not None:
            self.stats.qpu_seconds_service_estimate = (
                self.stats.qpu_seconds_service_estimate or 0.0
            ) + estimate


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold a first Ctrl-C until the block ends (a second one stops at once).

    Around submit + journal write, so an interrupted run never loses the id of a job it
    has paid for. Only the main thread can handle signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if held:
            raise KeyboardInterrupt
        held.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt
