"""The Backend protocol every simulator, device and mock implements.

A backend takes *pubs* (primitive unified blocs, as in Qiskit's SamplerV2): a
parametrised, measured circuit plus a (rows, n_params) array of parameter values and a
shot count. Submission is asynchronous: ``submit`` returns a job id at once, ``status``
polls it and ``result`` returns one `PubResult` per pub. Because a job id is all the
scheduler keeps, an interrupted run re-attaches to jobs in flight instead of paying for
them twice.

A `PubResult` holds, per row and classical bit, the mean of ``1 - 2 b`` over the shots
(sampling backends; `PubResult.from_bits` / `from_packed` reduce a bit array) or the
exact <Z> (``shots == 0``; the `statevector` backend). The scheduler only needs these
per-bit means: <Z_i> of a QNN is a one-bit marginal, and readout mitigation inverts a
per-qubit confusion matrix, which acts on one-bit marginals alone. For the fidelity
report, a sampling backend also keeps the raw shots of the first few rows of each pub
(``PubResult.samples``: `from_bits` and `from_packed` do it for any backend), from which
the scheduler forms each packed copy's full outcome histogram.

Errors at this edge are `TransientBackendError` (the scheduler retries) or
`PermanentBackendError` (the run stops); each backend maps its SDK's exceptions onto them.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from ..errors import JobTooLargeError, PermanentBackendError

if TYPE_CHECKING:
    from qiskit import QuantumCircuit
    from qiskit.transpiler import Target

    from ..devices import DeviceTarget


class JobStatus(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the backend has no such job (e.g. a local job of an ended process)

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED)


@dataclass(frozen=True)
class BackendTarget:
    """What a backend offers: the device it runs on and its per-job limits.

    ``device`` is the `DeviceTarget` the scheduler transpiles (and packs) QNNs for, the same
    object `qvit-hw transpile` reads; None means an ideal simulator that runs the logical
    circuit as it is, on as many qubits as it needs, with any gate it knows.
    """

    name: str
    device: DeviceTarget | None = None
    max_circuits: int | None = None  # executions (parameter rows) per job
    max_shots: int | None = None  # shots per execution
    max_executions: int | None = None  # executions x shots per job (IBM Sampler: 10M)

    @property
    def qiskit_target(self) -> Target | None:
        return None if self.device is None else self.device.target

    @property
    def num_qubits(self) -> int | None:
        return None if self.device is None else self.device.num_qubits

    @property
    def basis_gates(self) -> tuple[str, ...] | None:
        return None if self.device is None else self.device.basis_gates

    @property
    def coupling_map(self) -> tuple[tuple[int, int], ...] | None:
        """Undirected couplers (p < q); None: all-to-all."""
        return None if self.device is None else self.device.edges

    def job_capacity(self, shots: int) -> int | None:
        """Most executions one job of ``shots`` shots may hold (None: no limit).

        Raises JobTooLargeError when not even one execution fits.
        """
        if self.max_shots is not None and shots > self.max_shots:
            raise JobTooLargeError(
                f"{shots} shots per circuit exceed {self.name}'s limit of {self.max_shots}"
            )
        caps = [c for c in (self.max_circuits,) if c is not None]
        if self.max_executions is not None:
            if shots > self.max_executions:
                raise JobTooLargeError(
                    f"{shots} shots exceed {self.name}'s limit of {self.max_executions:,} "
                    "executions (circuits x shots) per job"
                )
            caps.append(self.max_executions // max(shots, 1))
        return min(caps) if caps else None

    def check_job(self, pubs: Sequence[Pub]) -> None:
        """Raise JobTooLargeError naming the limit a job of ``pubs`` exceeds."""
        circuits = sum(p.rows for p in pubs)
        executions = sum(p.rows * p.shots for p in pubs)
        for pub in pubs:
            self.job_capacity(pub.shots)
        if self.max_circuits is not None and circuits > self.max_circuits:
            raise JobTooLargeError(
                f"a job of {circuits:,} circuits exceeds {self.name}'s limit of "
                f"{self.max_circuits:,} circuits per job"
            )
        if self.max_executions is not None and executions > self.max_executions:
            raise JobTooLargeError(
                f"a job of {executions:,} executions (circuits x shots) exceeds {self.name}'s "
                f"limit of {self.max_executions:,}"
            )


@dataclass(frozen=True)
class Pub:
    """One parametrised measured circuit and the parameter rows to run it with."""

    circuit: QuantumCircuit
    values: np.ndarray  # (rows, circuit.num_parameters), in circuit.parameters order
    shots: int

    def __post_init__(self) -> None:
        if isinstance(self.shots, bool) or not isinstance(self.shots, int | np.integer):
            raise TypeError(f"shots must be an int, got {type(self.shots).__name__}")
        if self.shots < 1:
            raise ValueError(f"shots must be >= 1, got {self.shots}")
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.circuit.num_parameters:
            raise ValueError(
                f"values: expected shape (rows, {self.circuit.num_parameters}), got {values.shape}"
            )
        object.__setattr__(self, "values", values)

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])


SAMPLE_ROWS = 4  # rows of each pub whose raw shots a sampling backend keeps
SAMPLE_SHOTS = 4096  # at most this many shots of each (the first ones)


@dataclass(frozen=True)
class PubResult:
    """Per row and classical bit: mean of (1 - 2 b) over ``shots`` shots, or exact <Z>.

    ``samples`` (optional) holds raw shots of the first rows, packed little-endian along
    clbits: (sample rows, sample shots, ceil(n_clbits / 8)) uint8, bit j of a shot's bytes
    (``np.unpackbits(..., bitorder="little")``) is clbit j. Only bits of one connected
    copy need be jointly sampled: the scheduler histograms each copy's bits on their own.
    """

    z: np.ndarray  # (rows, n_clbits) float64 in [-1, 1]
    shots: int  # 0: exact expectation values
    samples: np.ndarray | None = None  # (S, shots', bytes) uint8, see above

    @classmethod
    def from_bits(cls, bits: np.ndarray, *, sample_rows: int = SAMPLE_ROWS) -> PubResult:
        """From unpacked bits (rows, shots, n_clbits), clbit j in column j; the shots of
        the first ``sample_rows`` rows are kept as `samples` (0: none)."""
        bits = np.asarray(bits)
        return cls(
            1.0 - 2.0 * bits.mean(axis=1, dtype=np.float64),
            int(bits.shape[1]),
            pack_samples(bits[:sample_rows]) if sample_rows > 0 else None,
        )

    @classmethod
    def from_packed(
        cls, array: np.ndarray, num_bits: int, *, sample_rows: int = SAMPLE_ROWS
    ) -> PubResult:
        """From a Qiskit ``BitArray.array``: (rows, shots, bytes), clbit 0 = lowest bit of
        the last byte."""
        bits = np.unpackbits(array[..., ::-1], axis=-1, bitorder="little")[..., :num_bits]
        return cls.from_bits(bits, sample_rows=sample_rows)

    @classmethod
    def from_ones(
        cls, ones: np.ndarray, shots: int, samples: np.ndarray | None = None
    ) -> PubResult:
        """From counts of 1 per row and clbit (rows, n_clbits) over ``shots`` shots;
        ``samples``: unpacked shots of the first rows (S, shots', n_clbits), optional."""
        packed = None if samples is None else pack_samples(samples)
        return cls(1.0 - 2.0 * np.asarray(ones, dtype=np.float64) / shots, int(shots), packed)

    @property
    def rows(self) -> int:
        return int(self.z.shape[0])

    def sample_bits(self) -> np.ndarray | None:
        """`samples` unpacked: (S, shots', n_clbits) uint8, or None."""
        if self.samples is None:
            return None
        bits = np.unpackbits(self.samples, axis=-1, bitorder="little")
        return bits[..., : self.z.shape[1]]


def pack_samples(bits: np.ndarray) -> np.ndarray:
    """Unpacked shots (S, shots, n_clbits) -> packed `PubResult.samples` (first
    `SAMPLE_SHOTS` shots)."""
    bits = np.asarray(bits, dtype=np.uint8)[:, :SAMPLE_SHOTS]
    return np.packbits(bits, axis=-1, bitorder="little")


def outcome_bits(
    outcomes: np.ndarray, counts: np.ndarray, width: int, rng: np.random.Generator
) -> np.ndarray:
    """Shots as bits from a histogram, for backends that return counts: outcome indices
    (m,) (bit j = clbit j) and their counts (m,) -> (min(sum(counts), SAMPLE_SHOTS), width)
    uint8, shuffled (more shots than `SAMPLE_SHOTS`: a random subset, drawn without
    replacement). Copies sampled apart may be joined column-wise: each keeps its histogram."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() > SAMPLE_SHOTS:
        counts = rng.multivariate_hypergeometric(counts, SAMPLE_SHOTS)
    shots = rng.permutation(np.repeat(np.asarray(outcomes, dtype=np.int64), counts))
    return ((shots[:, None] >> np.arange(width)) & 1).astype(np.uint8)


@dataclass(frozen=True)
class JobResult:
    """A finished job: one result per pub, and the device time where the backend reports it."""

    pubs: tuple[PubResult, ...]
    qpu_seconds: float | None = None
    qpu_seconds_service_estimate: float | None = None  # the service's own, before it ran


def pub_seed(seed: int, pub: Pub) -> int:
    """A sampling seed from a backend's seed and the pub's content.

    The same pub gets the same samples whatever order jobs run in and however often they
    are resubmitted, so a resumed run reproduces an uninterrupted one.
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((seed, pub.circuit.name, pub.circuit.num_qubits, pub.shots)).encode())
    h.update(pub.values.tobytes())
    return int.from_bytes(h.digest(), "little") % 2**31


@runtime_checkable
class Backend(Protocol):
    """The one interface the scheduler talks to.

    Optional: ``find_submitted(tag) -> job id | None`` where the service can find a job by a
    tag given at submit (``submit(pubs, tag=...)``; IBM by its job tags, the mock by its
    log). The scheduler tags jobs with their payload hash and asks for a job whose id its
    journal lost (`Scheduler._reconcile`).
    """

    name: str

    @property
    def target(self) -> BackendTarget: ...

    def submit(self, pubs: Sequence[Pub]) -> str:
        """Queue pubs as one job; returns its id. Raises Transient/PermanentBackendError."""
        ...

    def status(self, job_id: str) -> JobStatus: ...

    def result(self, job_id: str) -> JobResult:
        """The finished job's results; a failed job raises PermanentBackendError."""
        ...

    def readout_errors(self) -> dict[int, tuple[float, float]]:
        """Reported (p(1|0), p(0|1)) per physical qubit; empty where the backend has none."""
        ...


@dataclass
class LocalJobs:
    """Job bookkeeping for local simulators, which finish a job while submitting it.

    Their job ids live in this process only: after a restart `status` says UNKNOWN and
    the scheduler resubmits (nothing was paid for).
    """

    prefix: str
    _results: dict[str, JobResult] = field(default_factory=dict)
    _counter: itertools.count = field(default_factory=itertools.count)

    def add(self, results: Sequence[PubResult]) -> str:
        """Keep a finished job's results; returns its new id."""
        job_id = f"{self.prefix}-{next(self._counter):05d}-{uuid.uuid4().hex[:8]}"
        self._results[job_id] = JobResult(tuple(results))
        return job_id

    def status(self, job_id: str) -> JobStatus:
        return JobStatus.DONE if job_id in self._results else JobStatus.UNKNOWN

    def result(self, job_id: str) -> JobResult:
        try:
            return self._results[job_id]
        except KeyError:
            raise PermanentBackendError(f"{self.prefix}: no job {job_id!r}") from None


def backend_identity(backend: Backend) -> dict[str, Any]:
    """What a backend's results depend on (`_BackendBase.identity`; a backend written
    elsewhere without one is known by its name alone)."""
    identity = getattr(backend, "identity", None)
    return dict(identity) if isinstance(identity, dict) else {"name": backend.name}


def identity_key(backend: Backend) -> str:
    """The backend's name and identity as one short text: what payload hashes carry, so a
    journal never serves one backend's results to another (``fake_brisbane?noise=0``
    and ``fake_brisbane`` get different keys)."""
    text = json.dumps(backend_identity(backend), sort_keys=True, default=str)
    return f"{backend.name}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class _BackendBase:
    """What every backend of this package shares: a name, a target, the readout errors its
    device reports (none for an ideal simulator) and its identity."""

    def __init__(self, name: str, target: BackendTarget | None = None) -> None:
        self.name = name
        self._target = target if target is not None else BackendTarget(name)

    @property
    def target(self) -> BackendTarget:
        return self._target

    @property
    def identity(self) -> dict[str, Any]:
        """Everything the results depend on: the name, the device and where its numbers
        come from, and the options that change results (`_result_options`). Options that
        do not (fault injection, polling) are left out, so they may change on resume."""
        out: dict[str, Any] = {"name": self.name}
        device = self._target.device
        if device is not None:
            out.update(device=device.name, device_source=device.source)
        out.update(self._result_options())
        return out

    def _result_options(self) -> dict[str, Any]:
        return {}

    @property
    def paid(self) -> bool:
        """Whether jobs cost money (a live QPU): `qvit-hw run` asks before submitting."""
        return False

    def limit_execution_time(self, seconds: float | None) -> None:
        """The QPU seconds the next jobs may use (a budget's remainder); services that
        enforce such a limit themselves (IBM's ``max_execution_time``) take it."""

    def readout_errors(self) -> dict[int, tuple[float, float]]:
        from ..devices import readout_errors

        return readout_errors(self._target.qiskit_target)


class LocalBackend(_BackendBase):
    """Base of the in-process backends (statevector, shots, fake_<device>, pennylane:...):
    a job finishes while it is submitted, so `submit` runs ``_run`` on every pub.

    Subclasses set ``name`` and ``_target`` (via ``__init__``) and implement ``_run``;
    ``_check`` may add checks that must pass for every pub before any of them runs.
    """

    def __init__(self, name: str, target: BackendTarget | None = None) -> None:
        super().__init__(name, target)
        self._jobs = LocalJobs(name)

    def submit(self, pubs: Sequence[Pub]) -> str:
        self._check(pubs)
        return self._jobs.add([self._run(pub) for pub in pubs])

    def status(self, job_id: str) -> JobStatus:
        return self._jobs.status(job_id)

    def result(self, job_id: str) -> JobResult:
        return self._jobs.result(job_id)

    def _check(self, pubs: Sequence[Pub]) -> None:
        self._target.check_job(pubs)

    def _run(self, pub: Pub) -> PubResult:
        raise NotImplementedError


class RemoteBackend(_BackendBase):
    """Base of the backends whose jobs live in a service (IBM, Rigetti, the mock):
    `submit` checks the job against the target's limits once, then calls ``_submit``
    (the template-method shape of qiskit-ibm-runtime's primitives)."""

    def submit(self, pubs: Sequence[Pub]) -> str:
        self._target.check_job(pubs)
        return self._submit(pubs)

    def _submit(self, pubs: Sequence[Pub]) -> str:
        raise NotImplementedError

    def status(self, job_id: str) -> JobStatus:
        raise NotImplementedError

    def result(self, job_id: str) -> JobResult:
        raise NotImplementedError


T = TypeVar("T")


class CircuitCache(Generic[T]):
    """Values derived from a circuit, computed once per circuit object (a template serves
    many jobs). Keyed by identity plus an optional extra key; the circuit is kept beside
    its value, so its id cannot be reused by another circuit while the entry lives."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: dict[tuple[Any, ...], tuple[QuantumCircuit, T]] = {}

    def get(self, circuit: QuantumCircuit, build: Callable[[QuantumCircuit], T], *key: Any) -> T:
        full = (id(circuit), *key)
        hit = self._entries.get(full)
        if hit is not None and hit[0] is circuit:
            return hit[1]
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))
        value = build(circuit)
        self._entries[full] = (circuit, value)
        return value
