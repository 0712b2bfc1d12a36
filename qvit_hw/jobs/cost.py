"""What a run costs on a QPU: estimated quantum seconds from the plan and the device.

The model, written down once:

    per shot       repetition delay + the circuit's duration (its transpiled schedule,
                   measurement included: the longest chain of instruction durations over
                   the qubits, copies of a packed circuit running side by side)
    per execution  shots x per shot
    per job        a per-target overhead (`JOB_OVERHEAD`)

Sources: the repetition delay is the device configuration's ``default_rep_delay`` (IBM:
250 us on the Eagle and Heron snapshots); instruction durations are the qiskit Target's
``InstructionProperties.duration`` (IBM calibration snapshots: sx 60 ns, ecr/cz about
0.5 us / 84 ns, measure about 1.3 us). IBM bills quantum seconds and publishes no fixed
per-job overhead; its guide "Workload usage" (docs.quantum.ibm.com, estimate-job-run-time)
shows ``job.usage_estimation`` of a 2-qubit Bell circuit at SamplerV2's default 4,096
shots as 4.1 quantum seconds, of which 4,096 shots at 250 us are 1.0 s: about 3 s per job
are the service's own overhead (`JOB_OVERHEAD`, approximate). Not counted: per-circuit
(per-parameter-set) loading and any classical processing inside the job, so the estimate
stays a lower bound (`LOWER_BOUND`). Where a service reports its own numbers
(`JobResult.qpu_seconds`, the service's ``usage_estimation``), cost.json holds them beside
this estimate. Devices without durations (the Rigetti topology snapshots, ideal simulators)
get no estimate (None).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

    from ..devices import DeviceTarget

JOB_OVERHEAD = {"ibm": 3.0}  # seconds per job, by family (IBM: from its usage example)
LOWER_BOUND = (
    "shots x (repetition delay + circuit duration) + about 3 s per job; per-circuit loading "
    "is not counted, so a lower bound"
)


def circuit_seconds(circuit: QuantumCircuit, device: DeviceTarget) -> float | None:
    """Duration of one shot of ``circuit`` on ``device`` (ASAP schedule over its qubits), or
    None when the device gives no durations."""
    target = device.target
    ready: dict[int, float] = {}
    known = False
    for inst in circuit.data:
        name = inst.operation.name
        if name == "barrier":
            continue
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        props = target[name].get(qargs) if name in target.operation_names else None
        duration = getattr(props, "duration", None) or 0.0
        known = known or duration > 0
        start = max((ready.get(q, 0.0) for q in qargs), default=0.0)
        for q in qargs:
            ready[q] = start + duration
    return max(ready.values(), default=0.0) if known else None


def rep_delay(device_object: Any) -> float | None:
    """The device's default repetition delay in seconds (None if it does not say)."""
    config = device_object.configuration() if hasattr(device_object, "configuration") else None
    value = getattr(config, "default_rep_delay", None)
    return None if value is None else float(value)


def seconds_per_shot(circuit: QuantumCircuit, backend: Any) -> float | None:
    """One shot of ``circuit`` on ``backend``: its repetition delay + the circuit's duration
    (None where the backend has no device with durations, e.g. an ideal simulator)."""
    device = backend.target.device
    if device is None:
        return None
    duration = circuit_seconds(circuit, device)
    delay = rep_delay(getattr(backend, "device", None))
    return None if duration is None or delay is None else delay + duration


def job_overhead(backend: Any) -> float:
    """Seconds per job on ``backend``'s family (0 where unknown)."""
    family = backend.name.split("_", 1)[0].removeprefix("fake")
    return JOB_OVERHEAD.get(family or "ibm", 0.0)


def qpu_seconds(
    executions: int, shots: int, jobs: int, seconds_per_shot: float | None, job_overhead: float
) -> float | None:
    """Estimated quantum seconds of ``executions`` circuits of ``shots`` shots in ``jobs``."""
    if seconds_per_shot is None:
        return None
    return executions * shots * seconds_per_shot + jobs * job_overhead


def gives_estimates(backend: Any) -> bool:
    """Whether `seconds_per_shot` can estimate anything on ``backend`` (a device with a
    repetition delay), so --max-qpu-seconds can be checked before ``--out`` is made."""
    delay = rep_delay(getattr(backend, "device", None))
    return backend.target.device is not None and delay is not None
