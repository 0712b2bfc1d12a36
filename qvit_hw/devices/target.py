"""Devices as qiskit `Target`s, with the calibration numbers that layout choice reads.

Every device of the catalog (`catalog.names`: IBM's from qiskit-ibm-runtime's fake
provider, Rigetti's JSON snapshots; live targets with credentials) is one `DeviceTarget`
everywhere: `transpile.compile_qnn` lays out and packs for it, and a backend carries the
same object in its `BackendTarget`. Couplers and qubits whose reported error is at least
`UNUSABLE_ERROR` (IBM marks broken ones with 1.0) are never used; a snapshot whose every
coupler reads so (FakeKyoto's) holds placeholders, not a calibration, and its 2-qubit
errors are left out (`from_qiskit_target` says so in ``source``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qiskit.transpiler import Target

UNUSABLE_ERROR = 0.5

NON_GATES = frozenset(
    {
        "measure",
        "reset",
        "delay",
        "barrier",
        "id",
        "if_else",
        "for_loop",
        "switch_case",
        "while_loop",
        "box",
    }
)


@dataclass(frozen=True)
class DeviceTarget:
    """A device: its qiskit Target plus the numbers layout choice and reports read."""

    name: str
    target: Target
    num_qubits: int
    edges: tuple[tuple[int, int], ...]  # undirected coupling pairs (p < q)
    basis_gates: tuple[str, ...]
    readout_error: dict[int, float]  # may be empty if unknown
    two_qubit_error: dict[tuple[int, int], float]  # undirected key (p < q); may be empty
    source: str  # where the numbers come from, and their date

    @property
    def two_qubit_gate(self) -> str:
        gates = self.target.operation_from_name
        return next(g for g in self.basis_gates if gates(g).num_qubits == 2)

    @property
    def has_calibration(self) -> bool:
        return bool(self.readout_error or self.two_qubit_error)


def from_qiskit_target(name: str, target: Target, source: str) -> DeviceTarget:
    """Read edges, basis and calibration errors off a qiskit Target."""
    basis = tuple(sorted(op for op in target.operation_names if op not in NON_GATES))
    two_qubit: dict[tuple[int, int], float] = {}
    edges: set[tuple[int, int]] = set()
    for op in basis:
        if not two_qubit_op(target, op):
            continue
        for qargs, props in target[op].items():
            key = (min(qargs), max(qargs))
            edges.add(key)
            if props is not None and props.error is not None:  # min over directions
                two_qubit[key] = min(props.error, two_qubit.get(key, float("inf")))
    if two_qubit and len(two_qubit) == len(edges) and min(two_qubit.values()) >= UNUSABLE_ERROR:
        target = _without_errors(target, [op for op in basis if two_qubit_op(target, op)])
        two_qubit = {}
        source += (
            f"; every coupler's error reads >= {UNUSABLE_ERROR} (placeholders, not a "
            "calibration): 2-qubit errors ignored"
        )
    readout = {q: float(props.error) for q, props in _measure_properties(target)}
    return DeviceTarget(
        name=name,
        target=target,
        num_qubits=target.num_qubits,
        edges=tuple(sorted(edges)),
        basis_gates=basis,
        readout_error=readout,
        two_qubit_error={k: float(v) for k, v in sorted(two_qubit.items())},
        source=source,
    )


def two_qubit_op(target: Target, name: str) -> bool:
    return target.operation_from_name(name).num_qubits == 2


def _without_errors(target: Target, ops: list[str]) -> Target:
    """A copy of ``target`` with the errors of ``ops`` unknown (durations kept)."""
    import copy

    from qiskit.transpiler import InstructionProperties

    out = copy.deepcopy(target)
    for op in ops:
        for qargs, props in out[op].items():
            if props is not None:
                out.update_instruction_properties(
                    op, qargs, InstructionProperties(duration=props.duration, error=None)
                )
    return out


def readout_errors(target: Target | None) -> dict[int, tuple[float, float]]:
    """(p(1|0), p(0|1)) per qubit from a Target's measure properties, as Aer's noise model
    reads them: the asymmetric ``prob_meas1_prep0`` / ``prob_meas0_prep1`` where a backend
    gives them, else the symmetric ``error``. Empty for None or a Target without them."""
    out = {}
    for q, props in _measure_properties(target):
        e0 = getattr(props, "prob_meas1_prep0", props.error)
        e1 = getattr(props, "prob_meas0_prep1", props.error)
        out[q] = (float(e0), float(e1))
    return out


def _measure_properties(target: Target | None) -> Iterator[tuple[int, Any]]:
    """(qubit, InstructionProperties) of every measurement with a known error."""
    if target is None or "measure" not in target.operation_names:
        return
    for qargs, props in target["measure"].items():
        if qargs is not None and props is not None and props.error is not None:
            yield qargs[0], props
