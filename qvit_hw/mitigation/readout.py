"""Readout mitigation: per-qubit confusion inversion, a row-level correction.

With e0 = p(read 1 | prepared 0) and e1 = p(read 0 | prepared 1) on a qubit, a measured
mean is <Z>_raw = (1 - e0 - e1) <Z> + (e1 - e0), so

    <Z>_mit = (<Z>_raw - (e1 - e0)) / (1 - e0 - e1),  stderr_mit = stderr / (1 - e0 - e1),

unclipped (`combine` clips what it reports to [-1, 1]). The rates come from calibration
circuits run through the same scheduler and backend (`calibration_pubs`: every packed
qubit prepared in 0, then in 1) or from the backend's reported properties
(`from_properties`). For one-qubit marginals this
is exactly what inverting the tensor product of the per-qubit matrices over whole
bitstrings gives, so mthree, which inverts that same tensor model over the observed
bitstrings, would change nothing here; the scheduler therefore keeps per-bit means only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..backends.base import JobResult, Pub, identity_key
from ..errors import BackendError, PermanentBackendError
from ..jobs.plan import PlannedJob, Template, planned_job

if TYPE_CHECKING:
    from ..jobs.combine import Correction
    from . import CalibrationContext

# readout calibration shots where a run-level fit follows (`QNNRunner.readout_shots`):
# measured with readout,zne,fourier on fake_brisbane (bench/RESULTS.md)
FIT_READOUT_SHOTS = 50_000


@dataclass(frozen=True)
class ReadoutMitigation:
    """Readout confusion per physical qubit of a template, from calibration circuits or
    (``from_properties``) from the backend's reported readout errors."""

    from_properties: bool = False

    @property
    def name(self) -> str:
        return "readout-props" if self.from_properties else "readout"

    def calibration_jobs(self, template: Template, context: CalibrationContext) -> list[PlannedJob]:
        if self.from_properties:
            return []
        from ..transpile import circuit_key

        compiled, backend = template.compiled, context.backend
        placements = np.asarray(compiled.placements)
        pubs = calibration_pubs(
            compiled.circuit.num_qubits,
            placements,
            backend.target.basis_gates,
            context.readout_shots or context.shots,
        )
        keys = [circuit_key(p.circuit) for p in pubs]
        return [planned_job(identity_key(backend), pubs, keys)]

    def fit(
        self,
        template: Template,
        results: Sequence[JobResult],
        context: CalibrationContext,
        before: Sequence[Correction] = (),
    ) -> ReadoutCalibration:
        placements = np.asarray(template.compiled.placements)
        if self.from_properties:
            backend = context.backend
            return from_properties(backend.readout_errors(), placements, backend.name)
        ((z0, z1),) = [tuple(pub.z[0] for pub in result.pubs) for result in results]
        return from_calibration(z0, z1, placements, context.readout_shots or context.shots)


@dataclass(frozen=True)
class ReadoutCalibration:
    """Per physical qubit: e0 = p(1|0), e1 = p(0|1), and where they come from."""

    e0: dict[int, float]
    e1: dict[int, float]
    source: str  # "calibration circuits, 1000 shots" or "backend properties"
    shots: int | None = None  # each calibration circuit's shots (None: not measured here)

    def correct(
        self, z: np.ndarray, stderr: np.ndarray, qubits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mitigated <Z> and stderr; ``qubits`` (rows, n) gives each value's physical qubit."""
        missing = sorted(set(np.unique(qubits).tolist()) - set(self.e0))
        if missing:
            raise BackendError(f"readout calibration has no data for qubits {missing}")
        e0 = np.vectorize(self.e0.__getitem__, otypes=[float])(qubits)  # (rows, n)
        e1 = np.vectorize(self.e1.__getitem__, otypes=[float])(qubits)
        scale = 1.0 - e0 - e1
        if (scale <= 0.05).any():
            bad = sorted(set(qubits[scale <= 0.05].tolist()))
            raise BackendError(f"readout of qubits {bad} is too poor to invert (e0 + e1 >= 0.95)")
        return (z - (e1 - e0)) / scale, stderr / scale

    def offset_variances(self) -> dict[int, tuple[float, float]]:
        """The calibration's own shot error, per physical qubit: the variances of
        a0 = de0 / s and a1 = de1 / s (s = 1 - e0 - e1), the errors of the measured rates
        over s. They move every value corrected on the qubit together, by
        dz = (1 + z) a0 - (1 - z) a1, so no row's own error bar can hold them; a fit over
        many rows adds them to its values' (`mitigation.fourier`). Empty where the rates
        were not measured here (backend properties: their error is unknown)."""
        if self.shots is None:
            return {}
        out = {}
        for q, e0 in self.e0.items():
            e1, s2 = self.e1[q], (1.0 - e0 - self.e1[q]) ** 2
            out[q] = (e0 * (1 - e0) / self.shots / s2, e1 * (1 - e1) / self.shots / s2)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "shots": self.shots,
            "qubits": {str(q): [self.e0[q], self.e1[q]] for q in sorted(self.e0)},
        }


def calibration_pubs(
    circuit_qubits: int, placements: np.ndarray, basis: tuple[str, ...] | None, shots: int
) -> list[Pub]:
    """Two circuits over the template's qubits: every placed qubit in |0>, then in |1>.

    ``placements`` (k, n) physical qubits; copy c's qubit i is read into clbit c n + i, as in
    the template, so calibration and data share readout wiring.
    """
    from qiskit import QuantumCircuit

    flat = np.asarray(placements).reshape(-1)
    flip = _flip_gates(basis)
    pubs = []
    for prepared in (0, 1):
        qc = QuantumCircuit(circuit_qubits, len(flat), name=f"readout_cal{prepared}")
        if prepared:
            for q in flat:
                for gate in flip:
                    qc.append(gate, [int(q)])
        qc.measure([int(q) for q in flat], range(len(flat)))
        pubs.append(Pub(qc, np.zeros((1, 0)), shots))
    return pubs


def _flip_gates(basis: tuple[str, ...] | None) -> list[object]:
    from qiskit.circuit.library import SXGate, XGate

    if basis is None or "x" in basis:
        return [XGate()]
    if "sx" in basis:
        return [SXGate(), SXGate()]
    raise PermanentBackendError(f"cannot prepare |1> for readout calibration with gates {basis}")


def from_calibration(
    z0: np.ndarray, z1: np.ndarray, placements: np.ndarray, shots: int
) -> ReadoutCalibration:
    """From <Z> of the two calibration circuits (each (clbits,)): e0 = (1 - z0) / 2 and
    e1 = (1 + z1) / 2 per qubit."""
    flat = np.asarray(placements).reshape(-1)
    e0 = {int(q): float((1.0 - z0[j]) / 2.0) for j, q in enumerate(flat)}
    e1 = {int(q): float((1.0 + z1[j]) / 2.0) for j, q in enumerate(flat)}
    return ReadoutCalibration(e0, e1, f"calibration circuits, {shots} shots", shots)


def from_properties(
    errors: Mapping[int, tuple[float, float]], qubits: np.ndarray, backend: str
) -> ReadoutCalibration:
    """From a backend's reported (p(1|0), p(0|1)) per qubit."""
    wanted = sorted(set(np.asarray(qubits).reshape(-1).tolist()))
    missing = [q for q in wanted if q not in errors]
    if missing:
        raise BackendError(
            f"{backend} reports no readout errors for qubits {missing[:5]}; use --mitigate "
            "readout (calibration circuits) instead"
        )
    return ReadoutCalibration(
        {q: float(errors[q][0]) for q in wanted},
        {q: float(errors[q][1]) for q in wanted},
        f"{backend} properties",
    )
