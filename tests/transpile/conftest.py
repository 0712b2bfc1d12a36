"""Shared fixtures: compiled QNNs (cached across tests) and an exact <Z> reader per copy."""

import warnings
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
from pyquil import Program
from pyquil.quilatom import MemoryReference, substitute
from pyquil.quilbase import Declare, Gate, Measurement
from qiskit import QuantumCircuit
from qiskit.quantum_info import Statevector

from qvit_hw.circuit import QNNSpec, chain, tree
from qvit_hw.transpile import CompiledQNN, compile_qnn

SPECS = {
    "chain4": chain(4),
    "chain8": chain(8),
    "tree8": tree(8),
    "ring4": QNNSpec(4, ((0, 1), (1, 2), (2, 3), (3, 0))),  # no 4-cycles on heavy-hex: routed
    "triangle3": QNNSpec(3, ((0, 1), (1, 2), (0, 2))),  # no 3-cycles anywhere: routed
}


@cache
def _compiled(spec_id: str, target: str) -> CompiledQNN:
    return compile_qnn(SPECS[spec_id], target, seed=0)


@pytest.fixture(scope="session")
def compiled() -> Callable[[str, str], CompiledQNN]:
    """compiled(spec_id, target) -> CompiledQNN, each compiled once per session."""
    return _compiled


def measured_z(circuit: QuantumCircuit) -> np.ndarray:
    """Exact <Z> of each clbit's measured qubit, for a small bound circuit: (n_clbits,)."""
    qubit_of = {
        circuit.find_bit(i.clbits[0]).index: circuit.find_bit(i.qubits[0]).index
        for i in circuit.data
        if i.operation.name == "measure"
    }
    probs = Statevector(circuit.remove_final_measurements(inplace=False)).probabilities()
    n = circuit.num_qubits
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # qiskit: qubit 0 least significant
    z = probs @ (1 - 2 * bits)  # (n,) per qubit
    return np.array([z[qubit_of[c]] for c in range(len(qubit_of))])


@pytest.fixture(scope="session")
def copy_z() -> Callable[[CompiledQNN, np.ndarray], np.ndarray]:
    """copy_z(compiled, values (executions, n_params)) -> <Z> (executions * k, n), row order."""

    def run(c: CompiledQNN, values: np.ndarray) -> np.ndarray:
        position = {p: i for i, p in enumerate(c.circuit.parameters)}
        subs = [c.copy_circuit(copy) for copy in range(c.copies)]
        out = [
            measured_z(sub.assign_parameters({p: row[position[p]] for p in sub.parameters}))
            for row in values
            for sub in subs
        ]
        return np.array(out)

    return run


def _pyqvm_z(text: str, x: np.ndarray) -> np.ndarray:
    """Parse Quil, substitute x[i] by numbers (PyQVM has no parametric memory), renumber the
    qubits 0..m-1, run PyQVM and read <Z> of each ro bit exactly from its wavefunction."""
    prog = Program(text)
    values = {MemoryReference("x", i): float(v) for i, v in enumerate(x)}
    declares = [i for i in prog.instructions if isinstance(i, Declare)]
    gates = [i for i in prog.instructions if isinstance(i, Gate)]
    measures = [i for i in prog.instructions if isinstance(i, Measurement)]
    assert len(gates) + len(measures) + len(declares) == len(prog.instructions)  # nothing else
    physical = sorted({q.index for g in gates for q in g.qubits})
    local = {q: j for j, q in enumerate(physical)}
    run = Program()
    for g in gates:
        params = [float(np.real(complex(substitute(p, values)))) for p in g.params]
        run += Gate(g.name, params, [local[q.index] for q in g.qubits])
    with warnings.catch_warnings():  # PyQVM is deprecated in pyquil 4.22, still the offline QVM
        warnings.simplefilter("ignore", FutureWarning)
        from pyquil.pyqvm import PyQVM

        qvm = PyQVM(n_qubits=len(physical))
    qvm.execute(run)
    probs = np.abs(qvm.wf_simulator.wf) ** 2  # (2,) * m, axis j = qubit j
    m = len(physical)
    z = [probs.sum(axis=tuple(a for a in range(m) if a != j)) @ [1, -1] for j in range(m)]
    ro = {meas.classical_reg.offset: local[meas.qubit.index] for meas in measures}
    return np.array([z[ro[i]] for i in range(len(ro))])


@pytest.fixture(scope="session")
def pyqvm_z() -> Callable[[str, np.ndarray], np.ndarray]:
    """pyqvm_z(quil_text, x (n,)) -> exact <Z> per ro bit from pyquil's offline PyQVM."""
    return _pyqvm_z
