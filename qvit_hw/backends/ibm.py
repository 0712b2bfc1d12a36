"""`ibm_<device>`: IBM Quantum through qiskit-ibm-runtime's SamplerV2 in batch mode.

One code path for the cloud and for qiskit-ibm-runtime's local testing mode: pubs go to
``SamplerV2(mode=Batch(backend=device))`` (Open Plan accounts cannot open sessions, batches
they can), the job id comes back at once, ``status`` polls it and ``result`` reduces each
pub's `BitArray` with `PubResult.from_packed`. With a service the device is the live
backend (its ``target`` is what the scheduler transpiles and packs for) and a journalled
job id is re-attached with ``service.job(job_id)``; with ``?local=1`` the device is the
fake snapshot of the same name and the Sampler runs it through Aer, noise included.

Credentials, the service and the mapping of Runtime errors onto our two kinds
(`qvit_hw.devices.ibm.classify`) are the devices layer's, shared with `qvit-hw transpile`.
A job that failed for a retryable reason reads as gone (``JobStatus.UNKNOWN``), so the
scheduler submits it again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..devices import from_qiskit_target
from ..devices.ibm import (
    IBM_MAX_EXECUTIONS,
    classify,
    connect,
    fake_backend,
    fake_device_classes,
    fake_name_of,
    live_device,
)
from ..errors import (
    BackendError,
    BackendNotFoundError,
    JobTooLargeError,
    PermanentBackendError,
    TransientBackendError,
)
from .base import BackendTarget, JobResult, JobStatus, Pub, PubResult, RemoteBackend
from .options import BackendOptions

LOCAL_MAX_QUBITS = 12  # local testing mode: active qubits of one packed circuit
# error suppression, as SamplerV2 options (qiskit-ibm-runtime's TwirlingOptions and
# DynamicalDecouplingOptions): ?twirling=... -> (enable_gates, enable_measure); ?dd=...
TWIRLING = {"none": (False, False), "gates": (True, False), "measure": (False, True),
            "all": (True, True)}  # fmt: skip
DD_SEQUENCES = ("none", "XX", "XpXm", "XY4")
_STATES = {
    "INITIALIZING": JobStatus.QUEUED,
    "VALIDATING": JobStatus.QUEUED,
    "QUEUED": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "DONE": JobStatus.DONE,
    "COMPLETED": JobStatus.DONE,
    "ERROR": JobStatus.FAILED,
    "FAILED": JobStatus.FAILED,
    "CANCELLED": JobStatus.FAILED,
}

__all__ = ["IBMRuntimeBackend", "classify", "ibm_target", "open_ibm"]


def calibration_date(device: Any) -> str:
    """When the device's reported properties were measured (ISO date), or "unknown"."""
    try:
        props = device.properties()
        return props.last_update_date.date().isoformat()
    except Exception:  # no properties, or the service did not give them: informative only
        return "unknown"


def ibm_target(name: str, device: Any, source: str) -> BackendTarget:
    """The target of an IBM device object (live, or a fake snapshot): its qiskit Target and
    IBM's job limits (``max_shots`` from its configuration, 10M executions per job)."""
    config = device.configuration() if hasattr(device, "configuration") else None
    return BackendTarget(
        name,
        from_qiskit_target(name, device.target, source),
        max_shots=int(getattr(config, "max_shots", 0) or 100_000),
        max_executions=IBM_MAX_EXECUTIONS,
    )


class IBMRuntimeBackend(RemoteBackend):
    """A device of IBM Quantum (or its fake snapshot in local testing mode).

    ``service`` is a ``QiskitRuntimeService`` (None in local testing mode); ``sampler``
    makes the Sampler jobs go to (default: ``SamplerV2`` in a ``Batch`` on ``device``).
    """

    def __init__(
        self,
        name: str,
        device: Any,
        *,
        service: Any = None,
        seed: int | None = None,
        sampler: Callable[[], Any] | None = None,
        twirling: str = "none",
        dd: str = "none",
    ) -> None:
        if twirling not in TWIRLING:
            raise ValueError(f"backend {name}: twirling must be one of {', '.join(TWIRLING)}")
        if dd not in DD_SEQUENCES:
            raise ValueError(f"backend {name}: dd must be one of {', '.join(DD_SEQUENCES)}")
        self.twirling, self.dd = twirling, dd
        mode = "live: IBM Quantum" if service is not None else "local testing mode:"
        source = f"{mode} {name}, calibration of {calibration_date(device)}"
        super().__init__(name, ibm_target(name, device, source))
        self.device = device
        self.service = service
        self.seed = seed
        self._sampler_factory = sampler or self._batch_sampler
        self._sampler: Any = None
        self._batch: Any = None
        self._jobs: dict[str, Any] = {}  # job id -> job object (submitted or re-attached)
        self._tag: str | None = None  # of the submit in progress
        self.max_execution_time: int | None = None  # `limit_execution_time`

    @property
    def paid(self) -> bool:
        return self.service is not None  # live: IBM bills quantum seconds

    def limit_execution_time(self, seconds: float | None) -> None:
        """SamplerV2's ``max_execution_time`` for the next jobs: the service cancels a job
        that would use more QPU seconds (a whole number, at least 1)."""
        self.max_execution_time = None if seconds is None else max(1, int(seconds))

    def _result_options(self) -> dict[str, Any]:
        return {"local": self.service is None, "seed": self.seed, "twirling": self.twirling,
                "dd": self.dd}  # fmt: skip

    def submit(self, pubs: Sequence[Pub], *, tag: str | None = None) -> str:
        """Submit ``pubs`` as one Sampler job; a live job carries ``tag`` (the scheduler's
        payload hash) as an IBM job tag, so `find_submitted` finds it again."""
        self._tag = tag
        return super().submit(pubs)

    def find_submitted(self, tag: str) -> str | None:
        """The id of the newest job on this device tagged ``tag`` (None: none). Local
        testing mode keeps no jobs beyond its process (and bills none): None."""
        if self.service is None:
            return None
        try:
            jobs = self.service.jobs(job_tags=[tag], backend_name=self.name, limit=1)
        except Exception as exc:
            raise classify(exc, f"{self.name}: look up the job tagged {tag[:12]}") from exc
        return str(jobs[0].job_id()) if jobs else None

    def _submit(self, pubs: Sequence[Pub]) -> str:
        if self.service is None:
            _check_local_width(pubs, self.name)
        if self._sampler is None:
            self._sampler = self._sampler_factory()
        if self.max_execution_time is not None:
            self._sampler.options.max_execution_time = self.max_execution_time
        if self.service is not None:  # a live job: tagged, or untagged where none is given
            self._sampler.options.environment.job_tags = [self._tag] if self._tag else None
        try:
            job = self._sampler.run([(p.circuit, p.values, p.shots) for p in pubs])
            job_id = str(job.job_id())
        except Exception as exc:
            error = classify(exc, f"{self.name}: submit")
            if "closed" in str(exc).lower() or "expired" in str(exc).lower():
                self._sampler = self._batch = None  # the batch ended: open a new one
                error = TransientBackendError(f"{self.name}: the batch ended; opening a new one")
            raise error from exc
        self._jobs[job_id] = job
        return job_id

    def status(self, job_id: str) -> JobStatus:
        job = self._job(job_id)
        if job is None:
            return JobStatus.UNKNOWN
        try:
            raw = job.status()
        except Exception as exc:
            raise classify(exc, f"{self.name}: status of job {job_id}") from exc
        state = _STATES.get(getattr(raw, "name", str(raw)).upper(), JobStatus.QUEUED)
        failure = self._failure(job, job_id) if state is JobStatus.FAILED else None
        if isinstance(failure, TransientBackendError):
            self._jobs.pop(job_id, None)
            return JobStatus.UNKNOWN  # failed for a retryable reason: submit it again
        return state

    def result(self, job_id: str) -> JobResult:
        job = self._job(job_id)
        if job is None:
            raise PermanentBackendError(f"{self.name}: no job {job_id!r} in this account")
        try:
            primitive_result = job.result()
        except Exception as exc:
            raise classify(exc, f"{self.name}: result of job {job_id}") from exc
        pubs = []
        for pub_result in primitive_result:
            bits = pub_result.join_data()  # every classical register, in circuit order
            pubs.append(PubResult.from_packed(bits.array, bits.num_bits))
        return JobResult(tuple(pubs), *self._quantum_seconds(job))

    # --- helpers ------------------------------------------------------------------------

    def _batch_sampler(self) -> Any:
        from qiskit_ibm_runtime import Batch, SamplerV2

        self._batch = Batch(backend=self.device)
        sampler = SamplerV2(mode=self._batch)
        if self.service is None and self.seed is not None:  # local testing mode: reproducible
            sampler.options.simulator.seed_simulator = self.seed
        gates, measure = TWIRLING[self.twirling]
        if gates or measure:  # Pauli twirling of 2-qubit gates and of measurements
            sampler.options.twirling.enable_gates = gates
            sampler.options.twirling.enable_measure = measure
        if self.dd != "none":  # dynamical decoupling of idle qubits
            sampler.options.dynamical_decoupling.enable = True
            sampler.options.dynamical_decoupling.sequence_type = self.dd
        return sampler

    def _job(self, job_id: str) -> Any:
        """The job object: this process's, or re-attached through the service."""
        if job_id in self._jobs:
            return self._jobs[job_id]
        if self.service is None:
            return None  # a local job of an ended process
        from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

        try:
            job = self.service.job(job_id)
        except RuntimeJobNotFound:
            return None
        except Exception as exc:
            raise classify(exc, f"{self.name}: re-attach to job {job_id}") from exc
        self._jobs[job_id] = job
        return job

    def _failure(self, job: Any, job_id: str) -> BackendError:
        """Why a job in state ERROR / CANCELLED failed (``job.result()`` raises it)."""
        try:
            job.result()
        except Exception as exc:
            return classify(exc, f"{self.name}: job {job_id}")
        return PermanentBackendError(f"{self.name}: job {job_id} failed")

    def _quantum_seconds(self, job: Any) -> tuple[float | None, float | None]:
        """The job's quantum seconds as the service measured them
        (``metrics()['usage']['quantum_seconds']``, else ``usage()``) and as it estimated
        them before running (``usage_estimation['quantum_seconds']``); None where absent."""
        if self.service is None:
            return None, None  # local testing mode: no QPU time
        measured = estimate = None
        try:  # usage is informative; a missing field must not fail a job
            measured = float(job.metrics()["usage"]["quantum_seconds"])
        except Exception:
            try:
                measured = float(job.usage())
            except Exception:
                measured = None
        try:
            estimate = float(job.usage_estimation["quantum_seconds"])
        except Exception:
            estimate = None
        return measured, estimate


def _check_local_width(pubs: Sequence[Pub], name: str) -> None:
    """Local testing mode simulates a whole packed circuit as one noisy state."""
    for pub in pubs:
        active = {q for inst in pub.circuit.data for q in inst.qubits}
        if len(active) > LOCAL_MAX_QUBITS:
            raise JobTooLargeError(
                f"{name}?local=1 simulates a packed circuit as one noisy state and this one "
                f"uses {len(active)} qubits (at most {LOCAL_MAX_QUBITS}); pass --max-copies "
                f"{max(1, LOCAL_MAX_QUBITS // 4)} or fewer, or use fake_{name.removeprefix('ibm_')}"
                ", which simulates packed copies one by one"
            )


def open_ibm(name: str, options: BackendOptions) -> IBMRuntimeBackend:
    """``ibm_<device>`` from `get_backend`: options ``local`` (0/1), ``seed`` (local
    testing mode), ``twirling`` (none, gates, measure, all) and ``dd`` (none, XX, XpXm, XY4)."""
    local = options.bool("local", False)
    seed = options.int("seed", None)
    suppression = {"twirling": options.str("twirling", "none"), "dd": options.str("dd", "none")}
    options.done()
    if local:
        return IBMRuntimeBackend(name, _fake_device(name), seed=seed, **suppression)
    service = connect(name)
    return IBMRuntimeBackend(name, live_device(service, name), service=service, **suppression)


def _fake_device(name: str) -> Any:
    """The fake snapshot ``ibm_<device>?local=1`` runs on."""
    if fake_name_of(name) not in fake_device_classes():
        from ..devices.catalog import names, suggestions

        close = suggestions(name, [n for n in names() if n.startswith("ibm_")])
        raise BackendNotFoundError(name, [f"{c}?local=1" for c in close])
    return fake_backend(name)
