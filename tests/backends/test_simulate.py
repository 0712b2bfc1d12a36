"""The vectorised simulator behind `statevector` and `shots` agrees with the exact <Z>."""

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import Statevector

from qvit_hw.backends.simulate import components, exact_z, sample_ones
from qvit_hw.circuit import QNNSpec, chain, expectations, qiskit_circuit, random_inputs, tree
from qvit_hw.errors import PermanentBackendError
from qvit_hw.transpile import compile_qnn


def logical_values(spec: QNNSpec, x: torch.Tensor, w: torch.Tensor) -> np.ndarray:
    """Parameter rows of `qiskit_circuit(spec)` for angles x (rows, n) and weights (P, 2)."""
    qc = qiskit_circuit(spec, measure=True)
    by_name = {**{f"x[{i}]": x[:, i] for i in range(spec.n_qubits)}}
    flat = w.reshape(-1)
    by_name.update({f"w[{j}]": flat[j].expand(len(x)) for j in range(len(flat))})
    return np.stack([by_name[p.name].numpy() for p in qc.parameters], axis=1)


@pytest.mark.parametrize("spec", [chain(4), tree(5), QNNSpec(4, ((0, 1), (1, 2), (2, 3), (3, 0)))])
def test_logical_circuit_matches_exact_expectations(spec):
    x, w = random_inputs(spec, 300, seed=3)
    z = exact_z(qiskit_circuit(spec, measure=True), logical_values(spec, x, w))
    np.testing.assert_allclose(z, expectations(spec, x, w).numpy(), atol=1e-12)


def test_packed_isa_circuit_splits_into_copies_that_match_exact():
    spec = chain(4)
    compiled = compile_qnn(spec, "ibm_brisbane")
    comps = components(compiled.circuit)
    assert len(comps) == compiled.copies > 1
    for c, comp in enumerate(comps):  # each copy: its own qubits, its own clbits
        assert set(comp.qubits) == set(compiled.placements[c])
        assert sorted(clbit for _, clbit in comp.measured) == list(range(4 * c, 4 * c + 4))
    x, w = random_inputs(spec, 2 * compiled.copies + 3, seed=1)
    z = exact_z(compiled.circuit, compiled.parameter_values(x, w))  # (executions, k n)
    rows = z.reshape(-1, 4)[: len(x)]  # row r: execution r // k, copy r % k
    np.testing.assert_allclose(rows, expectations(spec, x, w).numpy(), atol=1e-9)


def test_other_gates_and_nonlinear_expressions_match_qiskit():
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(3, 3)
    qc.h(0)
    qc.rzz(a * b, 0, 1)  # no vectorised formula, non-linear angle: bound row by row
    qc.u(a, b, 0.3, 2)
    qc.ecr(2, 1)
    qc.measure([2, 0], [0, 1])  # clbits in another order; qubit 1 unmeasured, clbit 2 unread
    values = np.array([[0.4, -1.3], [2.0, 0.7]])
    z = exact_z(qc, values)
    for row, (va, vb) in enumerate(values):
        bound = qc.assign_parameters({a: va, b: vb}).remove_final_measurements(inplace=False)
        probs = Statevector(bound).probabilities()
        zq = [sum(p * (1 - 2 * ((s >> q) & 1)) for s, p in enumerate(probs)) for q in range(3)]
        np.testing.assert_allclose(z[row], [zq[2], zq[0], 1.0], atol=1e-12)


def test_sampling_keeps_correlations_within_a_copy():
    qc = QuantumCircuit(2, 2)  # Bell state: both bits always equal
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    ones = sample_ones(qc, np.zeros((5, 0)), 1000, np.random.default_rng(0))
    np.testing.assert_array_equal(ones[:, 0], ones[:, 1])
    assert 400 < ones[:, 0].mean() < 600


def test_mid_circuit_measurement_is_refused():
    qc = QuantumCircuit(1, 1)
    qc.measure(0, 0)
    qc.x(0)
    with pytest.raises(PermanentBackendError, match="follows a measurement"):
        components(qc)
