"""`fake_<device>`: Aer with a qiskit-ibm-runtime fake backend's noise model and coupling map.

Every V2 fake backend of ``qiskit_ibm_runtime.fake_provider`` is available under its own
name (``fake_brisbane``, ``fake_torino``, ``fake_fez``, ...). The backend takes ISA circuits
for the device, as the real one does, and keeps each packed copy on its physical qubits
with their noise: a packed circuit is split into its independent copies (qubits linked by
2-qubit gates), each copy runs as its own circuit over the whole chip (Aer drops the idle
qubits), and all copies of all rows of a job go to Aer in one call. Limits are IBM's:
at most ``max_shots`` shots per circuit and 10M executions (circuits x shots) per job.
``noise=False`` keeps the device's layout and gates but simulates them ideally.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from ..devices.ibm import fake_backend, fake_device_classes
from ..errors import PermanentBackendError
from .base import (
    SAMPLE_ROWS,
    SAMPLE_SHOTS,
    CircuitCache,
    LocalBackend,
    Pub,
    PubResult,
    outcome_bits,
    pub_seed,
)
from .ibm import calibration_date, ibm_target
from .simulate import cached_components

__all__ = ["FakeDeviceBackend", "fake_device_classes"]

if TYPE_CHECKING:
    from qiskit import QuantumCircuit


class FakeDeviceBackend(LocalBackend):
    """A fake IBM device simulated by Aer with its noise model (``noise=False``: ideal)."""

    def __init__(self, name: str, *, seed: int = 0, noise: bool = True) -> None:
        self.seed = int(seed)
        self.noise = bool(noise)
        self.device = fake_backend(name)
        source = f"snapshot: {type(self.device).__name__}, calibration of "
        super().__init__(
            name, ibm_target(name, self.device, source + calibration_date(self.device))
        )
        self._simulator: Any = None
        self._copies_of: CircuitCache[list[_Copy]] = CircuitCache()

    def _result_options(self) -> dict[str, Any]:
        return {"seed": self.seed, "noise": self.noise}

    def _check(self, pubs: Sequence[Pub]) -> None:
        super()._check(pubs)
        for pub in pubs:  # the ISA of every pub before any runs
            self._copies(pub.circuit)

    # --- simulation ----------------------------------------------------------------------

    def simulator(self) -> Any:
        if self._simulator is None:
            from qiskit_aer import AerSimulator

            self._simulator = _noisy_simulator(self.name) if self.noise else AerSimulator()
        return self._simulator

    def _copies(self, circuit: QuantumCircuit) -> list[_Copy]:
        """The ISA-checked independent copies of a packed circuit (cached per template)."""

        def build(qc: QuantumCircuit) -> list[_Copy]:
            _check_isa(qc, self.device.target, self.name)
            return _split(qc)

        return self._copies_of.get(circuit, build)

    def _run(self, pub: Pub) -> PubResult:
        copies = self._copies(pub.circuit)  # cached by _check
        experiments: list[QuantumCircuit] = []
        binds: list[dict[Any, Any]] = []
        for cp in copies:
            if cp.cols.size:
                experiments.append(cp.circuit)
                columns = pub.values[:, cp.cols].T  # (params, rows)
                binds.append(dict(zip(cp.circuit.parameters, columns, strict=True)))
            else:  # no parameters: one experiment per row
                experiments += [cp.circuit] * pub.rows
                binds += [{}] * pub.rows
        try:
            result = (
                self.simulator()
                .run(
                    experiments,
                    parameter_binds=binds,
                    shots=pub.shots,
                    seed_simulator=pub_seed(self.seed, pub),
                )
                .result()
            )
        except Exception as exc:  # Aer raises AerError and assorted others
            raise PermanentBackendError(f"{self.name}: Aer failed: {exc}") from exc
        if not result.success:
            raise PermanentBackendError(f"{self.name}: Aer failed: {result.status}")
        ones = np.zeros((pub.rows, pub.circuit.num_clbits), dtype=np.int64)
        rows = min(SAMPLE_ROWS, pub.rows)  # raw shots kept for the fidelity report
        samples = np.zeros((rows, min(pub.shots, SAMPLE_SHOTS), pub.circuit.num_clbits), np.uint8)
        rng = np.random.default_rng(pub_seed(self.seed, pub))
        experiment = 0
        for cp in copies:
            local = np.zeros((pub.rows, len(cp.clbits)), dtype=np.int64)
            for row in range(pub.rows):
                counts = result.results[experiment + row].data.counts
                outcomes = np.array([int(k, 16) for k in counts])
                shots = np.array(list(counts.values()))
                local[row] = shots @ ((outcomes[:, None] >> np.arange(len(cp.clbits))) & 1)
                if row < rows:
                    samples[row][:, cp.clbits] = outcome_bits(outcomes, shots, len(cp.clbits), rng)
            ones[:, cp.clbits] = local
            experiment += pub.rows
        return PubResult.from_ones(ones, pub.shots, samples)


@cache
def _noisy_simulator(name: str) -> Any:
    """Aer with the device's noise model (building it takes seconds: once per process)."""
    from qiskit_aer import AerSimulator

    return AerSimulator.from_backend(fake_backend(name))


class _Copy:
    """One independent part of a packed circuit, over the whole chip, its clbits renumbered."""

    def __init__(self, circuit: QuantumCircuit, cols: np.ndarray, clbits: list[int]) -> None:
        self.circuit = circuit  # clbit j of this circuit is clbit clbits[j] of the pub's
        self.cols = cols  # columns of the pub's values, in circuit.parameters order
        self.clbits = clbits


def _split(circuit: QuantumCircuit) -> list[_Copy]:
    from qiskit import QuantumCircuit

    position = {p: i for i, p in enumerate(circuit.parameters)}
    out = []
    for comp in cached_components(circuit):
        members = {circuit.qubits[q] for q in comp.qubits}
        clbits = [c for _, c in comp.measured]
        local = {circuit.clbits[c]: j for j, c in enumerate(clbits)}
        sub = QuantumCircuit(circuit.num_qubits, len(clbits), name=f"{circuit.name}_part")
        for inst in circuit.data:
            if inst.operation.name == "barrier" or not members.issuperset(inst.qubits):
                continue
            qargs = [circuit.find_bit(q).index for q in inst.qubits]
            sub.append(inst.operation, qargs, [local[c] for c in inst.clbits])
        cols = np.array([position[p] for p in sub.parameters], dtype=np.int64)
        out.append(_Copy(sub, cols, clbits))
    return out


def _check_isa(circuit: QuantumCircuit, target: Any, name: str) -> None:
    if circuit.num_qubits > target.num_qubits:
        raise PermanentBackendError(
            f"{name}: the circuit has {circuit.num_qubits} qubits, the device {target.num_qubits}"
        )
    for inst in circuit.data:
        op = inst.operation.name
        if op == "barrier":
            continue
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if not target.instruction_supported(op, qargs):
            raise PermanentBackendError(
                f"{name}: {op} on qubits {qargs} is not native to the device; transpile the "
                "circuit for its target first"
            )
