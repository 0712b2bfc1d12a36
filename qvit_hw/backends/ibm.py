"""`ibm_<device>`: IBM Quantum through qiskit-ibm-runtime's SamplerV2 in batch mode.

One code path for the cloud and for qiskit-ibm-runtime's local testing mode: pubs go to
``SamplerV2(mode=Batch(backend=device))`` (Open Plan accounts cannot open sessions, batches
they can), the job id comes back at once, ``status`` polls it and ``result`` reduces each
pub's `BitArray` with `PubResult.from_packed`. With a service the device is the live
backend (its ``target`` is what the scheduler transpiles and packs for) and a journalled
job id is re-attached with ``service.job(job_id)``; with ``?local=1`` the device is the
fake snapshot of the same name and the Sampler runs it through Aer, noise included.

Credentials are whatever ``QiskitRuntimeService()`` finds: ``QISKIT_IBM_TOKEN`` /
``QISKIT_IBM_INSTANCE`` / ``QISKIT_IBM_CHANNEL`` or an account saved with
``QiskitRuntimeService.save_account``. This module never reads, logs or stores the token.

Runtime errors become our two kinds (`classify`): transient (retried by the scheduler):
HTTP 5xx and 429, connection failures, ``IBMApiError``, ``RuntimeJobTimeoutError`` (the
job is still running: poll again, never resubmit), and job failures whose code the IBM
error registry tells to retry (`RETRYABLE_CODES`); such a failed job reads as gone
(``JobStatus.UNKNOWN``), so the scheduler submits it again. Permanent: authentication,
``IBMInputValueError``, validation failures, cancelled jobs and any other job failure;
``RuntimeJobMaxTimeoutError`` is a `JobTooLargeError` that says to shrink the job.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import (
    BackendError,
    BackendNotFoundError,
    CredentialsError,
    JobTooLargeError,
    PermanentBackendError,
    TransientBackendError,
)
from .base import BackendTarget, JobResult, JobStatus, Pub, PubResult

IBM_MAX_EXECUTIONS = 10_000_000  # circuits x shots per Sampler job
# IBM Quantum error code registry: codes whose solution is "retry" or "wait" (internal
# error, converter / validation / backend / queue hiccups, concurrent-job limit, request
# rate limit, pending-job limit)
RETRYABLE_CODES = frozenset({1000, 1006, 1008, 1010, 1011, 1012, 1202, 3458})
MAX_TIME_CODE = 1305  # the job ran past the maximum execution time
LOCAL_MAX_QUBITS = 12  # local testing mode: active qubits of one packed circuit
NO_CREDENTIALS = (
    "{name}: no IBM Quantum credentials; set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE, "
    "QISKIT_IBM_CHANNEL where needed) or save an account once with "
    "QiskitRuntimeService.save_account(token=..., instance=...); for a local noisy run "
    "use --backend {fake}"
)
_CODE = re.compile(r"[Ee]rror code:? ?(\d{4})")
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


def classify(exc: BaseException, what: str) -> BackendError:
    """The `BackendError` an exception of qiskit-ibm-runtime (or the network) stands for."""
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError
    from qiskit_ibm_runtime.exceptions import (
        IBMAccountError,
        IBMApiError,
        IBMNotAuthorizedError,
        RuntimeInvalidStateError,
        RuntimeJobFailureError,
        RuntimeJobMaxTimeoutError,
        RuntimeJobTimeoutError,
    )
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout

    if isinstance(exc, BackendError):
        return exc
    text = _one_line(exc)
    if isinstance(exc, RuntimeJobMaxTimeoutError) or _code(text) == MAX_TIME_CODE:
        return JobTooLargeError(
            f"{what}: the job ran past IBM's maximum execution time ({text}); shrink the "
            "job with a smaller --job-size (or fewer --shots)"
        )
    if isinstance(exc, RuntimeJobTimeoutError):  # waiting timed out; the job goes on
        return TransientBackendError(f"{what}: the job is still running ({text}); polling again")
    if isinstance(exc, RuntimeJobFailureError):
        if _code(text) in RETRYABLE_CODES:
            return TransientBackendError(f"{what}: the job failed with a retryable error ({text})")
        return PermanentBackendError(f"{what}: the job failed ({text})")
    if isinstance(exc, RequestsApiError):
        status = getattr(exc, "status_code", -1)
        if status in (401, 403):
            return PermanentBackendError(
                f"{what}: IBM Quantum refused the credentials (HTTP {status}); check "
                "QISKIT_IBM_TOKEN / QISKIT_IBM_INSTANCE or the saved account"
            )
        if status == -1 or status == 429 or status >= 500 or _code(text) in RETRYABLE_CODES:
            return TransientBackendError(f"{what}: IBM Quantum is not answering ({text})")
        return PermanentBackendError(f"{what}: IBM Quantum rejected the request ({text})")
    if isinstance(exc, IBMApiError | RequestsConnectionError | Timeout | ConnectionError):
        return TransientBackendError(f"{what}: IBM Quantum is not answering ({text})")
    if isinstance(exc, IBMNotAuthorizedError | IBMAccountError):
        return PermanentBackendError(f"{what}: not authorised ({text})")
    if isinstance(exc, RuntimeInvalidStateError):
        return PermanentBackendError(f"{what}: {text}")
    # IBMInputValueError, validation (ValueError from the Sampler's ISA check), the rest
    return PermanentBackendError(f"{what}: {text}")


class IBMRuntimeBackend:
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
    ) -> None:
        self.name = name
        self.device = device
        self.service = service
        self.seed = seed
        self._sampler_factory = sampler or self._batch_sampler
        self._sampler: Any = None
        self._batch: Any = None
        self._jobs: dict[str, Any] = {}  # job id -> job object (submitted or re-attached)
        config = device.configuration() if hasattr(device, "configuration") else None
        self._target = BackendTarget(
            name,
            num_qubits=device.num_qubits,
            basis_gates=tuple(sorted(device.operation_names)),
            coupling_map=tuple(device.coupling_map.get_edges()),
            max_shots=int(getattr(config, "max_shots", 0) or 100_000),
            max_executions=IBM_MAX_EXECUTIONS,
            qiskit_target=device.target,
        )

    @property
    def target(self) -> BackendTarget:
        return self._target

    def submit(self, pubs: Sequence[Pub]) -> str:
        self._target.check_job(pubs)
        if self.service is None:
            _check_local_width(pubs, self.name)
        if self._sampler is None:
            self._sampler = self._sampler_factory()
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
        return JobResult(tuple(pubs), self._quantum_seconds(job))

    def readout_errors(self) -> dict[int, tuple[float, float]]:
        """(p(1|0), p(0|1)) per qubit from the device target's measure properties."""
        out = {}
        for qargs, props in self.device.target.get("measure", {}).items():
            if qargs is not None and props is not None and props.error is not None:
                e0 = getattr(props, "prob_meas1_prep0", props.error)
                e1 = getattr(props, "prob_meas0_prep1", props.error)
                out[qargs[0]] = (float(e0), float(e1))
        return out

    # --- helpers ------------------------------------------------------------------------

    def _batch_sampler(self) -> Any:
        from qiskit_ibm_runtime import Batch, SamplerV2

        self._batch = Batch(backend=self.device)
        sampler = SamplerV2(mode=self._batch)
        if self.service is None and self.seed is not None:  # local testing mode: reproducible
            sampler.options.simulator.seed_simulator = self.seed
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

    def _quantum_seconds(self, job: Any) -> float | None:
        if self.service is None:
            return None  # local testing mode: no QPU time
        try:
            return float(job.usage())
        except Exception:  # usage is informative; a missing field must not fail a job
            return None


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


def open_ibm(name: str, options: dict[str, Any]) -> IBMRuntimeBackend:
    """``ibm_<device>`` from `get_backend`: options ``local`` (0/1) and ``seed``."""
    local = str(options.pop("local", "0")).lower() in ("1", "true", "yes", "on")
    seed = options.pop("seed", None)
    if options:
        raise ValueError(f"backend {name}: unknown option {sorted(options)[0]!r}")
    if local:
        return IBMRuntimeBackend(name, _fake_device(name), seed=None if seed is None else int(seed))
    service = connect(name)
    return IBMRuntimeBackend(name, _device(service, name), service=service)


def connect(name: str) -> Any:
    """``QiskitRuntimeService()`` with the user's credentials, or a one-line error."""
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts import AccountNotFoundError

    try:
        return QiskitRuntimeService()
    except AccountNotFoundError as exc:
        raise CredentialsError(NO_CREDENTIALS.format(name=name, fake=_fake_name(name))) from exc
    except Exception as exc:
        raise classify(exc, f"{name}: connecting to IBM Quantum") from exc


def _device(service: Any, name: str) -> Any:
    """The live backend ``name``; a device the account cannot see lists those it can."""
    from qiskit.providers.exceptions import QiskitBackendNotFoundError

    from ..transpile.targets import RETIRED

    try:
        return service.backend(name)
    except QiskitBackendNotFoundError as exc:
        try:
            visible = sorted(b.name for b in service.backends())
        except Exception:  # listing is a courtesy; the error below stands either way
            visible = []
        retired = f" ({name} was retired on {RETIRED[name]})" if name in RETIRED else ""
        seen = ", ".join(visible) if visible else "none"
        error = BackendNotFoundError(name, visible)
        error.args = (
            f"{name}: this IBM Quantum account cannot see it{retired}; devices it can see: "
            f"{seen} (use --backend ibm_<one of them>, or {_fake_name(name)} offline)",
        )
        raise error from exc
    except Exception as exc:
        raise classify(exc, f"{name}: looking up the device") from exc


def _fake_name(name: str) -> str:
    from .fake import fake_device_classes

    fake = "fake_" + name.removeprefix("ibm_")
    return fake if fake in fake_device_classes() else "fake_<device> (e.g. fake_brisbane)"


def _fake_device(name: str) -> Any:
    from qiskit_ibm_runtime import fake_provider

    from .fake import fake_device_classes

    classes = fake_device_classes()
    fake = "fake_" + name.removeprefix("ibm_")
    if fake not in classes:
        import difflib

        close = difflib.get_close_matches(fake, classes, n=2)
        raise BackendNotFoundError(name, [f"ibm_{c.removeprefix('fake_')}?local=1" for c in close])
    return getattr(fake_provider, classes[fake])()


def _code(text: str) -> int | None:
    match = _CODE.search(text)
    return int(match.group(1)) if match else None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
