"""`braket:local` and `braket:<device>`: Amazon Braket's local simulator, and the QPUs
(Rigetti Ankaa-3, ...) and simulators reachable through Braket.

Circuits go to Braket as OpenQASM 3 in its dialect (`transpile.openqasm.braket_qasm`),
parameters as ``input float`` and every row as a task's ``inputs``. On a QPU the
compiled, packed circuit names its physical qubits (``$17``) inside a ``#pragma braket
verbatim`` box, so Braket's compiler neither rewires nor rewrites it and each packed
copy stays on the qubits it was placed on.

``braket:local`` runs ``LocalSimulator()`` in this process, one task per row: sampling
``--shots`` (the default) or, with ``?exact=1``, Braket's exact expectation values
(``shots=0`` and one ``#pragma braket result expectation z(...)`` per classical bit).

``braket:<device>`` submits each job as one ``AwsDevice.run_batch`` (one task per row),
and the job id lists its task ids (a common ARN prefix, then each task's suffix), so a
journalled job is re-attached on ``--resume`` with ``AwsQuantumTask(arn)`` instead of being
paid for twice. Credentials come from the standard AWS chain; Braket's and botocore's
exceptions become `TransientBackendError` / `PermanentBackendError`
(`qvit_hw.devices.braket.classify`). If ``run_batch`` fails midway, the tasks it created
before failing are not known to the journal (the SDK does not return them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..devices.braket import CREDENTIALS_HINT, BraketDevice, classify, find_device, has_credentials
from ..errors import BackendNotFoundError, CredentialsError, PermanentBackendError, one_line
from ..transpile.openqasm import braket_name, braket_qasm
from .base import BackendTarget, JobResult, JobStatus, LocalBackend, Pub, PubResult, RemoteBackend
from .options import BackendOptions

LOCAL_MAX_SHOTS = 10**6
QPU_MAX_SHOTS = 100_000  # Braket's Rigetti shot range, when the device does not say
DEFAULT_TASKS_PER_JOB = 100  # rows (tasks) per job and run_batch call
_STATES = {
    "CREATED": JobStatus.QUEUED,
    "QUEUED": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "COMPLETED": JobStatus.DONE,
    "FAILED": JobStatus.FAILED,
    "CANCELLING": JobStatus.FAILED,
    "CANCELLED": JobStatus.FAILED,
}
_MEASURE = re.compile(r"^b\[(\d+)\] = measure (?:\$(\d+)|q\[(\d+)\]);$", re.M)

__all__ = ["BraketBackend", "BraketLocalBackend", "open_braket"]


def input_names(circuit: Any) -> list[str]:
    """The ``input float`` names of ``circuit``'s parameters, in ``circuit.parameters`` order."""
    return [braket_name(p.name) for p in circuit.parameters]


def clbit_qubits(source: str) -> list[int]:
    """Qubit measured into each classical bit of a program `braket_qasm` wrote."""
    found = {int(b): int(p or q) for b, p, q in _MEASURE.findall(source)}
    return [found[c] for c in range(len(found))]


def _bits(measurements: Any, measured: Sequence[int], qubits: Sequence[int]) -> np.ndarray:
    """A task's shots (shots, measured qubits) as (shots, clbits), clbit j = qubit qubits[j]."""
    column = {int(q): i for i, q in enumerate(measured)}
    try:
        return np.asarray(measurements, dtype=np.uint8)[:, [column[q] for q in qubits]]
    except KeyError as exc:
        raise PermanentBackendError(f"a task's result lacks measured qubit {exc}") from None


class BraketLocalBackend(LocalBackend):
    """Amazon Braket's local state-vector simulator (``braket.devices.LocalSimulator``)."""

    def __init__(self, *, exact: bool = False, simulator: Any = None) -> None:
        name = "braket:local"
        super().__init__(name, BackendTarget(name, max_shots=LOCAL_MAX_SHOTS))
        self.exact = exact
        self._simulator = simulator

    def _result_options(self) -> dict[str, Any]:
        return {"exact": self.exact}

    def _run(self, pub: Pub) -> PubResult:
        from braket.ir.openqasm import Program

        if self._simulator is None:
            from braket.devices import LocalSimulator

            self._simulator = LocalSimulator()
        source = braket_qasm(pub.circuit, physical=False, exact=self.exact)
        names, qubits = (
            input_names(pub.circuit),
            clbit_qubits(braket_qasm(pub.circuit, physical=False)),
        )
        shots = 0 if self.exact else pub.shots
        z = np.empty((pub.rows, pub.circuit.num_clbits))
        bits = None if self.exact else np.empty((pub.rows, shots, len(qubits)), dtype=np.uint8)
        for r, row in enumerate(pub.values):
            program = Program(source=source, inputs=dict(zip(names, map(float, row), strict=True)))
            try:
                result = self._simulator.run(program, shots=shots).result()
            except Exception as exc:  # the simulator refusing a program: not retryable
                raise PermanentBackendError(f"braket:local: {one_line(exc)}") from exc
            if self.exact:
                z[r] = np.asarray(result.values, dtype=np.float64)
            else:
                bits[r] = _bits(result.measurements, result.measured_qubits, qubits)  # type: ignore[index]
        return PubResult(z, 0) if bits is None else PubResult.from_bits(bits)


class BraketBackend(RemoteBackend):
    """A device reachable through Amazon Braket (``AwsDevice``): one task per row, one
    ``run_batch`` per job.

    ``aws_device`` is the ``AwsDevice`` (or anything with its ``run_batch``); ``task``
    re-attaches a task by ARN (default ``AwsQuantumTask``); tests pass both.
    """

    def __init__(
        self,
        name: str,
        device: BraketDevice,
        aws_device: Any,
        *,
        task: Callable[[str], Any] | None = None,
        tasks_per_job: int = DEFAULT_TASKS_PER_JOB,
        max_parallel: int | None = None,
    ) -> None:
        from ..devices import get_target

        dt = get_target(device.target, live=False) if device.target else None
        max_shots = _max_shots(aws_device)
        super().__init__(
            name, BackendTarget(name, dt, max_circuits=tasks_per_job, max_shots=max_shots)
        )
        self.device, self.aws_device = device, aws_device
        self.max_parallel = max_parallel
        self._task = task or _aws_task
        self._tasks: dict[str, list[Any]] = {}  # job id -> task objects (this process's)

    @property
    def paid(self) -> bool:
        return self._target.device is not None  # a QPU; sv1 bills by the minute, not shots

    def _result_options(self) -> dict[str, Any]:
        return {"device_arn": self.device.arn, "verbatim": self._target.device is not None}

    def _submit(self, pubs: Sequence[Pub]) -> str:
        from braket.ir.openqasm import Program

        physical = self._target.device is not None
        programs, inputs, shots, rows = [], [], [], []
        for pub in pubs:
            program = Program(source=braket_qasm(pub.circuit, physical=physical))
            names = input_names(pub.circuit)
            for row in pub.values:
                programs.append(program)
                inputs.append(dict(zip(names, map(float, row), strict=True)))
            shots += [pub.shots] * pub.rows
            rows.append(pub.rows)
        kwargs: dict[str, Any] = {"shots": shots, "inputs": inputs}
        if self.max_parallel is not None:
            kwargs["max_parallel"] = self.max_parallel
        if physical:  # the verbatim box keeps the qubits; say so to the service too
            kwargs["disable_qubit_rewiring"] = True
        try:
            batch = self.aws_device.run_batch(programs, **kwargs)
            tasks = list(batch.tasks)
            arns = [str(t.id) for t in tasks]
        except Exception as exc:
            raise classify(exc, f"{self.name}: submit") from exc
        if len(arns) != len(programs):
            raise PermanentBackendError(
                f"{self.name}: Braket created {len(arns)} of {len(programs)} tasks"
            )
        job_id = encode_job_id(rows, arns)
        self._tasks[job_id] = tasks
        return job_id

    def status(self, job_id: str) -> JobStatus:
        tasks = self._job_tasks(job_id)
        if tasks is None:
            return JobStatus.UNKNOWN
        states = []
        for task in tasks:
            try:
                raw = str(task.state()).upper()
            except Exception as exc:
                error = classify(exc, f"{self.name}: status of task {task.id}")
                if _not_found(exc):
                    return JobStatus.UNKNOWN
                raise error from exc
            states.append(_STATES.get(raw, JobStatus.QUEUED))
        if JobStatus.FAILED in states:
            return JobStatus.FAILED
        if all(s is JobStatus.DONE for s in states):
            return JobStatus.DONE
        return JobStatus.RUNNING if JobStatus.RUNNING in states else JobStatus.QUEUED

    def result(self, job_id: str) -> JobResult:
        tasks = self._job_tasks(job_id)
        if tasks is None:
            raise PermanentBackendError(f"{self.name}: no job {job_id!r}")
        rows, _ = decode_job_id(job_id)
        bits = []
        for task in tasks:
            try:
                if str(task.state()).upper() in ("FAILED", "CANCELLED", "CANCELLING"):
                    reason = _failure_reason(task)
                    raise PermanentBackendError(f"{self.name}: task {task.id} failed: {reason}")
                result = task.result()
            except PermanentBackendError:
                raise
            except Exception as exc:
                raise classify(exc, f"{self.name}: result of task {task.id}") from exc
            if result is None:  # the SDK's answer for a task that ended without a result
                raise PermanentBackendError(f"{self.name}: task {task.id} has no result")
            qubits = _program_qubits(result)
            measured = list(result.measured_qubits)
            bits.append(_bits(result.measurements, measured, qubits or measured))
        pubs, start = [], 0
        for count in rows:
            pubs.append(PubResult.from_bits(np.stack(bits[start : start + count])))
            start += count
        return JobResult(tuple(pubs))

    def _job_tasks(self, job_id: str) -> list[Any] | None:
        """This process's tasks of ``job_id``, or the journalled ones re-attached by ARN."""
        if job_id in self._tasks:
            return self._tasks[job_id]
        try:
            _, arns = decode_job_id(job_id)
        except ValueError:
            return None
        try:
            tasks = [self._task(arn) for arn in arns]
        except Exception as exc:
            if _not_found(exc):
                return None
            raise classify(exc, f"{self.name}: re-attach to job {job_id[:80]}") from exc
        self._tasks[job_id] = tasks
        return tasks


# --- job ids: rows per pub and task ARNs ----------------------------------------------------


def encode_job_id(rows: Sequence[int], arns: Sequence[str]) -> str:
    """``braket|3.5|arn:...:quantum-task/|id1,id2,...``: rows per pub, then the tasks'
    common ARN prefix (up to its last ``/``) and each task's remainder."""
    prefix = arns[0].rpartition("/")[0] + "/" if arns and "/" in arns[0] else ""
    if not all(a.startswith(prefix) for a in arns):
        prefix = ""
    rest = ",".join(a[len(prefix) :] for a in arns)
    return f"braket|{'.'.join(map(str, rows))}|{prefix}|{rest}"


def decode_job_id(job_id: str) -> tuple[list[int], list[str]]:
    kind, rows, prefix, rest = job_id.split("|")
    if kind != "braket":
        raise ValueError(f"not a Braket job id: {job_id[:40]!r}")
    counts = [int(r) for r in rows.split(".")]
    arns = [prefix + r for r in rest.split(",")]
    if sum(counts) != len(arns):
        raise ValueError(f"job id lists {len(arns)} tasks for {sum(counts)} rows")
    return counts, arns


# --- helpers --------------------------------------------------------------------------------


def _aws_task(arn: str) -> Any:
    from braket.aws import AwsQuantumTask

    return AwsQuantumTask(arn)


def _max_shots(aws_device: Any) -> int:
    try:
        return int(aws_device.properties.service.shotsRange[1])
    except Exception:  # properties are informative; the service checks shots itself
        return QPU_MAX_SHOTS


def _not_found(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code == "ResourceNotFoundException"


def _failure_reason(task: Any) -> str:
    try:
        return str(task.metadata().get("failureReason") or "no reason given")
    except Exception:
        return "no reason given"


def _program_qubits(result: Any) -> list[int] | None:
    """Clbit order of the program a result came from (its source is in the metadata)."""
    try:
        source = result.additional_metadata.action.source
    except AttributeError:
        return None
    return clbit_qubits(source) if isinstance(source, str) else None


def open_braket(name: str, options: BackendOptions) -> LocalBackend | RemoteBackend:
    """``braket:local`` (option ``exact``) or ``braket:<device>`` (options
    ``tasks_per_job``, ``max_parallel``) from `get_backend`."""
    rest = name.removeprefix("braket:")
    if rest == "local":
        exact = options.bool("exact", False)
        options.done()
        return BraketLocalBackend(exact=exact)
    tasks_per_job = options.int("tasks_per_job", DEFAULT_TASKS_PER_JOB, minimum=1)
    max_parallel = options.int("max_parallel", None, minimum=1)
    options.done()
    try:
        device = find_device(rest)
    except PermanentBackendError:
        import difflib

        known = ["braket:local", *(f"braket:{d}" for d in ("ankaa-3", "cepheus-1-108q", "sv1"))]
        raise BackendNotFoundError(name, difflib.get_close_matches(name, known, n=2)) from None
    if not has_credentials():
        raise CredentialsError(f"{name} needs AWS credentials: {CREDENTIALS_HINT}")
    aws_device = connect(name, device)
    return BraketBackend(
        name, device, aws_device, tasks_per_job=tasks_per_job, max_parallel=max_parallel
    )


def connect(name: str, device: BraketDevice) -> Any:
    """``AwsDevice(arn)`` in the device's region; one line when Braket cannot be reached."""
    try:
        from boto3 import Session
        from braket.aws import AwsDevice, AwsSession

        session = AwsSession(boto_session=Session(region_name=device.region))
        return AwsDevice(device.arn, aws_session=session)
    except Exception as exc:
        error = classify(exc, f"{name}: connect to Amazon Braket ({device.region})")
        if isinstance(error, CredentialsError):
            raise error from exc
        raise PermanentBackendError(
            f"{one_line(error)}; check the network and credentials, or use braket:local offline"
        ) from exc
