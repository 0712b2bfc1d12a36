"""The Backend protocol every simulator, device and mock implements.

A backend takes *pubs* (primitive unified blocs, as in Qiskit's SamplerV2): a
parametrised, measured circuit plus a (rows, n_params) array of parameter values and a
shot count. Submission is asynchronous: ``submit`` returns a job id at once, ``status``
polls it and ``result`` returns one uint8 bit array (rows, shots, n_clbits) per pub.
Because a job id is all the scheduler keeps, an interrupted run re-attaches to jobs in
flight instead of paying for them twice.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from qiskit import QuantumCircuit
    from qiskit.transpiler import Target


class JobStatus(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED)


@dataclass(frozen=True)
class BackendTarget:
    """What a backend offers: qubits, connectivity, gates and per-job limits."""

    name: str
    num_qubits: int
    basis_gates: tuple[str, ...]
    coupling_map: tuple[tuple[int, int], ...] | None = None  # None: all-to-all
    max_circuits: int = 300  # rows (executions) per job
    max_shots: int = 100_000  # shots per execution
    max_executions: int | None = None  # rows x shots per job (IBM: 10M)
    qiskit_target: Target | None = None  # for the transpiler, where there is one


@dataclass(frozen=True)
class Pub:
    """One parametrised measured circuit and the parameter rows to run it with."""

    circuit: QuantumCircuit
    values: np.ndarray  # (rows, circuit.num_parameters), in circuit.parameters order
    shots: int

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])


@runtime_checkable
class Backend(Protocol):
    """The one interface the scheduler talks to."""

    name: str

    @property
    def target(self) -> BackendTarget: ...

    def submit(self, pubs: Sequence[Pub]) -> str:
        """Queue pubs as one job; returns its id. Raises Transient/PermanentBackendError."""
        ...

    def status(self, job_id: str) -> JobStatus: ...

    def result(self, job_id: str) -> list[np.ndarray]:
        """Per pub: uint8 bits (rows, shots, n_clbits); clbit j is bit j of the register."""
        ...
