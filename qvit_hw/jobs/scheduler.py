"""The batched job scheduler: every QNN call of a layer in, <Z> estimates with stderr out.

    QNNCall (QNN, weights (P, 2), token angles (rows, n)), one per QNN of a layer
      -> unique rows per QNN                 np.unique(axis=0): same angles, same weights
      -> bound, packed parameter rows        CompiledQNN.parameter_values; each spec is
                                             transpiled once per target (k copies packed)
      -> jobs within the backend's limits    `plan` (pure: payloads and their hashes)
      -> submit, poll, result                `Scheduler.execute`: at most ``max_in_flight``
                                             jobs in flight, transient errors retried
                                             (`Retry`), a timeout per job, every job in the
                                             sqlite `Journal` (finished ones are reused)
      -> <Z> and stderr per row              estimate, unpack copies, optional readout
                                             mitigation, scatter back to every row

Backends without a device (``target.qiskit_target is None``: statevector, shots) run the
logical circuit, k = 1, through the same path. A job that does not finish within
``job_timeout`` stops the run (RunInterrupted) with its id kept in the journal, so
``--resume`` re-attaches to it instead of paying again; a job the backend no longer knows
(a local job of an ended process) is submitted again.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backends.base import Backend, JobResult, JobStatus, Pub
from ..circuit import QNNSpec, qiskit_circuit
from ..errors import BackendError, PermanentBackendError, RunInterrupted
from .estimate import estimate, unpack
from .journal import DONE, SUBMITTED, Journal, payload_hash
from .mitigation import (
    MODES,
    ReadoutCalibration,
    calibration_pubs,
    from_calibration,
    from_properties,
)
from .retry import Retry

if TYPE_CHECKING:
    from qiskit import QuantumCircuit
    from rich.progress import Progress

    from ..transpile import CompiledQNN


@dataclass(frozen=True)
class QNNCall:
    """One QNN evaluated on many token rows."""

    name: str
    spec: QNNSpec
    weights: np.ndarray  # (P, 2) float64
    angles: np.ndarray  # (rows, n) float64

    def __post_init__(self) -> None:
        weights = np.asarray(self.weights, dtype=np.float64)
        angles = np.asarray(self.angles, dtype=np.float64)
        if weights.shape != self.spec.weight_shape:
            raise ValueError(
                f"weights: expected shape {self.spec.weight_shape}, got {weights.shape}"
            )
        if angles.ndim != 2 or angles.shape[1] != self.spec.n_qubits or not len(angles):
            raise ValueError(
                f"angles: expected shape (rows >= 1, {self.spec.n_qubits}), got {angles.shape}"
            )
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "angles", angles)


@dataclass(frozen=True)
class RowEstimates:
    """Estimates for every row of one call (raw = before readout mitigation)."""

    z: np.ndarray  # (rows, n)
    stderr: np.ndarray  # (rows, n)
    z_raw: np.ndarray  # (rows, n)
    stderr_raw: np.ndarray  # (rows, n)
    qubits: np.ndarray  # (rows, n) int: the physical qubit each value was read from
    # raw outcome histograms of a sample of rows (where the backend kept shots, else None):
    sampled: np.ndarray | None = None  # (S,) int: row indices into this call's rows
    counts: np.ndarray | None = None  # (S, 2^n) int64: shots per outcome, bit i = qubit i


@dataclass(frozen=True)
class PlannedJob:
    """One job's pubs and where their executions sit in their template's rows."""

    payload: str
    pubs: tuple[Pub, ...]
    template: int  # index into Plan.templates
    start: int  # first execution in the template's concatenated rows

    @property
    def executions(self) -> int:
        return sum(p.rows for p in self.pubs)


@dataclass(frozen=True)
class _Flight:
    job: PlannedJob
    job_id: str
    since: float  # clock() at submit or re-attach: the job timeout counts from here


_LOST = object()  # a job its backend no longer knows


@dataclass(frozen=True)
class _Slot:
    template: int
    start: int  # first execution of this call in its template's rows
    inverse: np.ndarray  # (rows,): row -> unique row
    unique: int


@dataclass(frozen=True)
class Plan:
    """What `plan` builds: templates, jobs and how to scatter results back to calls."""

    templates: tuple[CompiledQNN, ...]
    slots: tuple[_Slot, ...]
    jobs: tuple[PlannedJob, ...]
    rows: int
    unique_rows: int

    @property
    def executions(self) -> int:
        return sum(j.executions for j in self.jobs)


def plan(
    calls: Sequence[QNNCall],
    template_of: Callable[[QNNSpec], tuple[CompiledQNN, str]],
    *,
    backend: str,
    shots: int,
    job_size: int | None,
) -> Plan:
    """Dedup, bind and pack every call, and split the executions into hashed jobs.

    ``template_of(spec)`` gives the compiled template and its circuit key; ``job_size``
    caps executions per job (None: one job per template).
    """
    specs: list[QNNSpec] = []
    templates: list[CompiledQNN] = []
    keys: list[str] = []
    parts: list[list[np.ndarray]] = []
    slots = []
    unique_rows = 0
    for call in calls:
        if call.spec not in specs:
            template, key = template_of(call.spec)
            specs.append(call.spec)
            templates.append(template)
            keys.append(key)
            parts.append([])
        g = specs.index(call.spec)
        unique, inverse = np.unique(call.angles, axis=0, return_inverse=True)
        values = templates[g].parameter_values(unique, call.weights)  # (E, params)
        start = sum(len(v) for v in parts[g])
        parts[g].append(values)
        slots.append(_Slot(g, start, inverse.reshape(-1), len(unique)))
        unique_rows += len(unique)
    jobs = []
    for g, template in enumerate(templates):
        values = np.concatenate(parts[g]) if len(parts[g]) > 1 else parts[g][0]
        step = job_size or len(values)
        for a in range(0, len(values), step):
            pub = Pub(template.circuit, values[a : a + step], shots)
            jobs.append(PlannedJob(payload_hash(backend, [pub], [keys[g]]), (pub,), g, a))
    return Plan(
        tuple(templates),
        tuple(slots),
        tuple(jobs),
        rows=sum(len(c.angles) for c in calls),
        unique_rows=unique_rows,
    )


def logical_qnn(spec: QNNSpec) -> CompiledQNN:
    """The logical circuit as a one-copy template (ideal simulators have no device)."""
    from ..transpile import CompiledQNN

    circuit = qiskit_circuit(spec, measure=True)  # clbit i reads qubit i
    circuit.name = f"qnn{spec.n_qubits}_logical"
    position = {p.name: i for i, p in enumerate(circuit.parameters)}
    n, pairs = spec.n_qubits, spec.n_pairs
    return CompiledQNN(
        spec=spec,
        target_name="logical",
        circuit=circuit,
        copies=1,
        placements=(tuple(range(n)),),
        x_index=np.array([[position[f"x[{i}]"] for i in range(n)]], dtype=np.int64),
        w_index=np.array([position[f"w[{j}]"] for j in range(2 * pairs)], dtype=np.int64),
        swaps=0,
        depth=circuit.depth(),
        two_qubit_gates=pairs,
        est_success=float("nan"),
        transpile_seconds=0.0,
    )


def circuit_key(circuit: QuantumCircuit) -> str:
    """sha256 of a circuit's OpenQASM 3 text: equal circuits, equal keys, across processes."""
    from qiskit import qasm3

    return hashlib.sha256(qasm3.dumps(circuit).encode()).hexdigest()


@dataclass
class SchedulerStats:
    """What a scheduler did (the run's cost summary adds wall time)."""

    calls: int = 0
    rows: int = 0  # QNN evaluations asked for
    unique_rows: int = 0  # after dedup
    executions: int = 0  # bound circuits run (each serves up to k rows)
    shots: int = 0  # shots taken (executions x shots; 0 for exact results)
    jobs: int = 0  # jobs needed (data and calibration)
    submitted: int = 0  # submits that succeeded, in this process
    reused: int = 0  # jobs found finished in the journal
    reattached: int = 0  # jobs found in flight in the journal
    resubmitted: int = 0  # jobs the backend had lost (submitted again)
    retries: int = 0  # transient errors retried
    qpu_seconds: float | None = None  # where the backend reports it
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Scheduler:
    """Runs QNN calls on one backend; holds templates, the journal and the counts."""

    def __init__(
        self,
        backend: Backend,
        *,
        shots: int = 1000,
        journal: Journal | None = None,
        retry: Retry | None = None,
        max_in_flight: int = 4,
        job_size: int | None = None,
        job_timeout: float = 4 * 3600.0,
        poll_interval: float = 1.0,
        max_copies: int | None = None,
        mitigation: str = "none",
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        progress: Progress | None = None,
    ) -> None:
        if isinstance(shots, bool) or not isinstance(shots, int | np.integer) or shots < 1:
            raise ValueError(f"shots must be an int >= 1, got {shots!r}")
        for name, value in (("max_in_flight", max_in_flight), ("job_size", job_size or 1)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if job_timeout <= 0 or poll_interval < 0:
            raise ValueError("job_timeout must be > 0 and poll_interval >= 0")
        if mitigation not in MODES:
            raise ValueError(f"mitigation must be one of {', '.join(MODES)}, got {mitigation!r}")
        self.backend = backend
        self.shots = int(shots)
        capacity = backend.target.job_capacity(self.shots)  # JobTooLargeError if none fits
        limits = [x for x in (job_size, capacity) if x is not None]
        self.job_size = min(limits) if limits else None
        self.journal = journal if journal is not None else Journal()
        self.retry = retry if retry is not None else Retry(sleep=sleep, clock=clock)
        self.max_in_flight = max_in_flight
        self.job_timeout, self.poll_interval = job_timeout, poll_interval
        self.max_copies, self.seed, self.mitigation = max_copies, seed, mitigation
        self.clock, self.sleep = clock, sleep
        self.progress = progress
        self.stats = SchedulerStats()
        self._templates: dict[QNNSpec, tuple[CompiledQNN, str]] = {}
        self._calibrations: dict[QNNSpec, ReadoutCalibration | None] = {}
        self._device: Any = None

    # --- templates ------------------------------------------------------------------------

    def template(self, spec: QNNSpec) -> tuple[CompiledQNN, str]:
        """The compiled template of ``spec`` on this backend and its circuit key (cached)."""
        if spec not in self._templates:
            target = self.backend.target
            if target.qiskit_target is None:
                compiled = logical_qnn(spec)
            else:
                from ..transpile import compile_qnn
                from ..transpile.targets import from_qiskit_target

                if self._device is None:
                    self._device = from_qiskit_target(
                        target.name, target.qiskit_target, f"backend {target.name}"
                    )
                compiled = compile_qnn(
                    spec, self._device, max_copies=self.max_copies, seed=self.seed
                )
            self._templates[spec] = (compiled, circuit_key(compiled.circuit))
            self.stats.templates[compiled.circuit.name] = {
                "copies": compiled.copies,
                "placements": [list(p) for p in compiled.placements],
                "depth": compiled.depth,
                "two_qubit_gates": compiled.two_qubit_gates,
                "swaps": compiled.swaps,
            }
        return self._templates[spec]

    def plan(self, calls: Sequence[QNNCall]) -> Plan:
        return plan(
            calls,
            self.template,
            backend=self.backend.name,
            shots=self.shots,
            job_size=self.job_size,
        )

    # --- running --------------------------------------------------------------------------

    def run(self, calls: Sequence[QNNCall], description: str = "jobs") -> list[RowEstimates]:
        """Estimates for every row of every call, in call order."""
        p = self.plan(calls)
        results = self.execute(p.jobs, description)
        self.stats.calls += len(calls)
        self.stats.rows += p.rows
        self.stats.unique_rows += p.unique_rows
        per_template: list[list[tuple[int, JobResult]]] = [[] for _ in p.templates]
        for job, result in zip(p.jobs, results, strict=True):
            per_template[job.template].append((job.start, result))
        z_all, se_all = [], []
        samples: list[dict[int, np.ndarray]] = []  # per template: execution -> bits
        for parts in per_template:
            parts = sorted(parts, key=lambda x: x[0])
            pairs = [estimate(result.pubs[0]) for _, result in parts]
            z_all.append(np.concatenate([z for z, _ in pairs]))  # (E, clbits)
            se_all.append(np.concatenate([s for _, s in pairs]))
            samples.append(_sampled_executions(parts))
        out = []
        for slot, call in zip(p.slots, calls, strict=True):
            t = p.templates[slot.template]
            k, n = t.copies, t.spec.n_qubits
            stop = slot.start + -(-slot.unique // k)
            z = unpack(z_all[slot.template][slot.start : stop], k, n, slot.unique)  # (U, n)
            se = unpack(se_all[slot.template][slot.start : stop], k, n, slot.unique)
            qubits = np.asarray(t.placements)[np.arange(slot.unique) % k]  # (U, n)
            z_m, se_m = z, se
            calibration = self.calibration(call.spec)
            if calibration is not None:
                z_m, se_m = calibration.correct(z, se, qubits)
            inv = slot.inverse
            sampled, counts = _copy_histograms(samples[slot.template], slot, k, n)
            out.append(
                RowEstimates(z_m[inv], se_m[inv], z[inv], se[inv], qubits[inv], sampled, counts)
            )
        return out

    def calibration(self, spec: QNNSpec) -> ReadoutCalibration | None:
        """Readout calibration of ``spec``'s template qubits (None without mitigation)."""
        if self.mitigation == "none":
            return None
        if spec not in self._calibrations:
            template, _ = self.template(spec)
            placements = np.asarray(template.placements)
            if self.mitigation == "readout-props":
                cal = from_properties(self.backend.readout_errors(), placements, self.backend.name)
            else:
                pubs = calibration_pubs(
                    template.circuit.num_qubits,
                    placements,
                    self.backend.target.basis_gates,
                    self.shots,
                )
                keys = [circuit_key(pub.circuit) for pub in pubs]
                job = PlannedJob(payload_hash(self.backend.name, pubs, keys), tuple(pubs), 0, 0)
                (result,) = self.execute([job], "readout calibration")
                z0, z1 = (pub.z[0] for pub in result.pubs)
                cal = from_calibration(z0, z1, placements, self.shots)
            self._calibrations[spec] = cal
        return self._calibrations[spec]

    def calibrations(self) -> dict[str, ReadoutCalibration]:
        """The readout calibrations made so far, by template circuit name."""
        return {
            self._templates[spec][0].circuit.name: cal
            for spec, cal in self._calibrations.items()
            if cal is not None
        }

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
                while todo and len(in_flight) < self.max_in_flight:
                    job = todo.popleft()
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
                    self.sleep(self.poll_interval)
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
                self._account(job, cached)
                self.stats.reused += 1
            elif record is not None and record.status == SUBMITTED and record.job_id:
                in_flight[job.payload] = _Flight(job, record.job_id, self.clock())
                self.stats.reattached += 1
            else:
                todo.append(job)
        return results, todo, in_flight

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
        if self.clock() - flight.since > self.job_timeout:
            raise RunInterrupted(
                f"{label}, id {job_id}, did not finish within {self.job_timeout:g} s on {name} "
                f"(still {status.value}); the journal keeps its id, so --resume re-attaches to it"
            )
        return None

    def _submit(self, job: PlannedJob, label: str) -> str:
        """Submit with retries; the job id is journaled before Ctrl-C can stop us."""

        def attempt() -> str:
            with _interrupts_held():
                job_id = self.backend.submit(job.pubs)
                self.journal.submitted(
                    job.payload, self.backend.name, job_id, job.executions, self.shots
                )
            return job_id

        self.backend.target.check_job(job.pubs)
        try:
            job_id = self.retry.call(attempt, what=f"submit of {label}")
        except PermanentBackendError as exc:
            raise type(exc)(f"{label} was rejected by {self.backend.name}: {exc}") from exc
        self.stats.submitted += 1
        return job_id

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


def _sampled_executions(parts: Sequence[tuple[int, JobResult]]) -> dict[int, np.ndarray]:
    """Raw shots the backend kept, by execution index in the template's rows:
    {execution: (shots', clbits) bits}."""
    out = {}
    for start, result in parts:
        bits = result.pubs[0].sample_bits()
        if bits is not None:
            out.update({start + r: bits[r] for r in range(len(bits))})
    return out


def _copy_histograms(
    samples: dict[int, np.ndarray], slot: _Slot, k: int, n: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Outcome histograms of the call's rows served by sampled executions: each packed
    copy's n bits on their own. Returns (rows (S,), counts (S, 2^n)), or Nones."""
    stop = slot.start + -(-slot.unique // k)
    executions = sorted(e for e in samples if slot.start <= e < stop)
    if not executions:
        return None, None
    first = np.empty(slot.unique, dtype=np.int64)  # unique row -> its first call row
    first[slot.inverse[::-1]] = np.arange(len(slot.inverse))[::-1]
    weights = 1 << np.arange(n)
    rows, counts = [], []
    for e in executions:
        for c in range(k):
            u = (e - slot.start) * k + c
            if u >= slot.unique:
                break
            outcome = samples[e][:, c * n : (c + 1) * n].astype(np.int64) @ weights  # (shots',)
            rows.append(first[u])
            counts.append(np.bincount(outcome, minlength=2**n))
    return np.array(rows, dtype=np.int64), np.stack(counts)


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
