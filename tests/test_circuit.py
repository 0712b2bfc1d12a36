"""QNNSpec and every rendering of it agree with the exact simulators."""

import math

import numpy as np
import pennylane as qml
import pytest
import qiskit.qasm2
import qiskit.qasm3
import torch

from qvit_hw.circuit import (
    QNNSpec,
    bind_values,
    chain,
    chain_expectations,
    expectations,
    expectations_per_qnn,
    load_qasm,
    pairs_from_string,
    pennylane_qnode,
    qasm2,
    qasm3,
    qiskit_circuit,
    random_inputs,
    statevector_expectations,
    statevector_per_qnn,
    tree,
    z_correlations,
    z_expectations_from_statevector,
)
from qvit_hw.errors import CircuitError

SPECS = [chain(4), chain(8), tree(4), tree(8)]
IDS = ["chain4", "chain8", "tree4", "tree8"]
ROWS = 6


def qiskit_reference(spec, x, w):
    """<Z> from Qiskit's Statevector of the circuit bound row by row."""
    qc = qiskit_circuit(spec)
    return torch.tensor(
        [z_expectations_from_statevector(qc.assign_parameters(bind_values(qc, xi, w))) for xi in x],
        dtype=torch.float64,
    )


# --- the spec ----------------------------------------------------------------------------


def test_chain_and_tree_pair_lists():
    assert chain(4).pairs == ((0, 1), (1, 2), (2, 3))
    assert chain(4).is_chain
    t = tree(8)
    assert t.pairs == ((0, 1), (0, 2), (1, 3), (1, 4), (2, 5), (2, 6), (3, 7))
    assert not t.is_chain
    degree = np.bincount(np.array(t.pairs).ravel())
    assert degree.max() <= 3


@pytest.mark.parametrize(
    ("n", "pairs", "message"),
    [
        (4, ((0, 4),), r"\(0, 4\) names a qubit outside 0..3"),
        (4, ((0, 1), (0, 1)), r"\(0, 1\) is repeated"),
        (4, ((2, 2),), "acts twice on qubit 2"),
        (1, ((0, 0),), "n_qubits must be in 2..16, got 1"),
        (17, ((0, 1),), "n_qubits must be in 2..16, got 17"),
        (4, (), "pairs must not be empty"),
    ],
)
def test_spec_rejects_bad_input(n, pairs, message):
    with pytest.raises(ValueError, match=message):
        QNNSpec(n, pairs)


def test_spec_round_trips_through_dict_and_cli_text():
    spec = tree(8)
    assert QNNSpec.from_dict(spec.to_dict()) == spec
    assert pairs_from_string("0-1,1-2,1-3") == ((0, 1), (1, 2), (1, 3))
    with pytest.raises(ValueError, match=r"pairs: expected 'p-q,p-q,\.\.\.'"):
        pairs_from_string("0:1")


# --- exact simulators --------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_simulators_match_qiskit_statevector(spec):
    x, w = random_inputs(spec, ROWS, seed=1)
    ref = qiskit_reference(spec, x, w)
    torch.testing.assert_close(statevector_expectations(spec, x, w), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(expectations(spec, x, w), ref, atol=1e-6, rtol=0)
    if spec.is_chain:
        torch.testing.assert_close(chain_expectations(x, w), ref, atol=1e-6, rtol=0)


def test_product_of_cosines_is_wrong_for_three_or_more_qubits():
    spec = chain(3)
    x, w = random_inputs(spec, ROWS, seed=2)
    naive = torch.cumprod(torch.cos(x), dim=-1)
    assert (expectations(spec, x, w) - naive).abs().max() > 0.1


def test_broadcasting_evaluates_many_qnns_on_every_token():
    spec = chain(4)
    x = torch.randn(2, 5, 4, dtype=torch.float64)  # (B, T, n)
    w = torch.randn(6, 3, 2, dtype=torch.float64)  # (Q, P, 2)
    out = expectations(spec, x[..., None, :], w)  # (B, T, Q, n)
    assert out.shape == (2, 5, 6, 4)
    for q in range(6):
        torch.testing.assert_close(out[:, :, q], expectations(spec, x, w[q]))
    general = statevector_expectations(spec, x[..., None, :], w)
    torch.testing.assert_close(general, out)


def test_float32_by_default_and_float64_on_request():
    spec = tree(4)
    x, w = random_inputs(spec, ROWS, dtype=torch.float32)
    assert expectations(spec, x, w).dtype == torch.float32
    x64, w64 = x.double(), w.double()
    assert expectations(spec, x64, w64).dtype == torch.float64
    torch.testing.assert_close(
        expectations(spec, x, w).double(), expectations(spec, x64, w64), atol=1e-5, rtol=0
    )


def test_shape_errors_name_the_argument():
    spec = chain(4)
    with pytest.raises(ValueError, match="x: last dimension must be n_qubits=4"):
        expectations(spec, torch.zeros(3, 5), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"weights: trailing shape must be \(3, 2\)"):
        expectations(spec, torch.zeros(3, 4), torch.zeros(4, 2))


# --- renderings --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_pennylane_qnode_matches(spec):
    x, w = random_inputs(spec, ROWS, seed=3)
    qnode = pennylane_qnode(spec)
    out = torch.stack(qnode(x, w), dim=-1)  # broadcast over rows: (rows, n)
    torch.testing.assert_close(out, expectations(spec, x, w), atol=1e-6, rtol=0)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_qasm3_loads_back_and_matches(spec):
    x, w = random_inputs(spec, 3, seed=4)
    exact = expectations(spec, x, w)
    for weights in (None, w):  # weights as parameters, and bound into the text
        qc = qiskit.qasm3.loads(qasm3(spec, weights))
        by_name = {p.name: p for p in qc.parameters}
        for row, xi in enumerate(x):
            values = {by_name[f"x_{i}"]: float(v) for i, v in enumerate(xi)}
            if weights is None:
                values |= {by_name[f"w_{j}"]: float(v) for j, v in enumerate(w.reshape(-1))}
            got = z_expectations_from_statevector(qc.assign_parameters(values))
            np.testing.assert_allclose(got, exact[row].numpy(), atol=1e-6)


@pytest.mark.parametrize("spec", [chain(4), tree(8)], ids=["chain4", "tree8"])
def test_bound_qasm2_matches(spec):
    x, w = random_inputs(spec, 2, seed=5)
    for row, xi in enumerate(x):
        qc = qiskit.qasm2.loads(qasm2(spec, xi.tolist(), w))
        got = z_expectations_from_statevector(qc)
        np.testing.assert_allclose(got, expectations(spec, x, w)[row].numpy(), atol=1e-6)


def test_malformed_qasm_is_a_circuit_error():
    with pytest.raises(CircuitError, match="QASM does not parse"):
        load_qasm("OPENQASM 3.0;\nqubit[2] q;\nry( q[0];\n")
    with pytest.raises(CircuitError, match="QASM does not parse"):
        load_qasm('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nfoo q[0];\n')
    assert load_qasm(qasm3(chain(4))).num_qubits == 4


def test_qiskit_circuit_structure():
    spec = tree(8)
    qc = qiskit_circuit(spec, measure=True)
    assert qc.num_parameters == 8 + 2 * 7
    assert qc.count_ops()["cx"] == 7
    assert qc.count_ops()["ry"] == 8 + 14
    assert qc.count_ops()["measure"] == 8


# --- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_gradients_match_pennylane_parameter_shift(spec):
    x, w = random_inputs(spec, 3, seed=6)
    qnode = pennylane_qnode(spec, diff_method="parameter-shift")
    probe = torch.linspace(-1.0, 1.0, spec.n_qubits, dtype=torch.float64)  # a scalar loss
    grads = []
    for fn in (
        lambda a, b: expectations(spec, a, b),
        lambda a, b: statevector_expectations(spec, a, b),
        # parameter-shift does not support broadcasting: one row at a time
        lambda a, b: torch.stack([torch.stack(qnode(row, b)) for row in a]),
    ):
        xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
        (fn(xa, wa) * probe).sum().backward()
        grads.append((xa.grad, wa.grad))
    for gx, gw in grads[:2]:
        torch.testing.assert_close(gx, grads[2][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(gw, grads[2][1], atol=1e-5, rtol=0)


def test_known_values():
    """Two hand-checked points: all angles zero, and the first qubit flipped."""
    spec = chain(4)
    zero_w = torch.zeros(3, 2, dtype=torch.float64)
    torch.testing.assert_close(
        expectations(spec, torch.zeros(1, 4, dtype=torch.float64), zero_w),
        torch.ones(1, 4, dtype=torch.float64),
    )
    flipped = torch.tensor([[math.pi, 0.0, 0.0, 0.0]], dtype=torch.float64)
    # X on qubit 0 propagates down the CNOT chain: every qubit ends in |1>
    torch.testing.assert_close(
        expectations(spec, flipped, zero_w), -torch.ones(1, 4, dtype=torch.float64)
    )


def test_pennylane_torchlayer_compatible():
    spec = chain(4)
    layer = qml.qnn.TorchLayer(pennylane_qnode(spec), weight_shapes={"weights": spec.weight_shape})
    x = torch.randn(5, 4)
    out = layer(x)
    ref = expectations(spec, x.double(), layer.weights.detach().double())
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_per_qnn_paths_agree(spec):
    x = torch.randn(3, 7, spec.n_qubits, dtype=torch.float64)  # (B, T, n)
    w = torch.randn(6, *spec.weight_shape, dtype=torch.float64)  # (Q, P, 2)
    ref = expectations(spec, x[..., None, :], w)  # broadcast: (B, T, Q, n)
    torch.testing.assert_close(expectations_per_qnn(spec, x, w), ref)
    torch.testing.assert_close(statevector_per_qnn(spec, x, w), ref)
    with pytest.raises(ValueError, match=r"weights: expected \(Q, P, 2\)"):
        expectations_per_qnn(spec, x, w[0])


@pytest.mark.parametrize("spec", [chain(4), tree(4), tree(8)], ids=["chain4", "tree4", "tree8"])
def test_z_correlations_are_those_of_qiskits_statevector(spec):
    from qiskit.quantum_info import Statevector

    x, w = random_inputs(spec, 3, seed=2)
    x, w = x.double(), w.double()
    corr = z_correlations(spec, x, w[None])[:, 0]  # one QNN: (rows, n, n)
    qc, n = qiskit_circuit(spec), spec.n_qubits
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # qiskit: little-endian
    for row, xi in enumerate(x):
        probs = Statevector(qc.assign_parameters(bind_values(qc, xi, w))).probabilities()
        signs = 1 - 2 * bits  # (D, n)
        z = probs @ signs
        cov = (probs[:, None, None] * signs[:, :, None] * signs[:, None, :]).sum(0)
        cov -= np.outer(z, z)
        sd = np.sqrt(np.diag(cov))
        np.testing.assert_allclose(corr[row].numpy(), cov / np.outer(sd, sd), atol=1e-9)
    assert (torch.diagonal(corr, dim1=-2, dim2=-1) == 1).all()
    assert corr.abs().max() <= 1 and corr.abs().sum() > n * len(x)  # some are correlated


def test_a_qubit_without_variance_is_uncorrelated():
    spec = chain(4)
    x = torch.zeros(1, 4, dtype=torch.float64)  # |0000>: every qubit certain
    corr = z_correlations(spec, x, torch.zeros(1, *spec.weight_shape, dtype=torch.float64))
    torch.testing.assert_close(corr[0, 0], torch.eye(4, dtype=torch.float64))


# --- input validation at the public entry points ------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_angles_that_are_not_finite_are_a_value_error_not_nan(bad):
    x, w = random_inputs(chain(4), 3)
    x[1, 2] = bad
    for spec in (chain(4), tree(4)):
        with pytest.raises(ValueError, match="x: angles must be finite, got NaN or infinity"):
            expectations(spec, x, w)
    with pytest.raises(ValueError, match="weights: angles must be finite"):
        expectations(chain(4), x.nan_to_num(), w * bad)
    with pytest.raises(ValueError, match="x: angles must be finite"):
        z_correlations(chain(4), x, w[None])


INT64, COMPLEX = torch.int64, torch.complex128


@pytest.mark.parametrize(
    ("spec", "x", "error", "message"),
    [
        (chain(4), torch.tensor(0.3), ValueError, r"n_qubits=4, got shape \(\)"),
        (tree(8), torch.zeros(2, 8, dtype=INT64), TypeError, r"x: expected real floating angles"),
        (chain(4), torch.zeros(2, 4, dtype=INT64), TypeError, r"got dtype torch\.int64"),
        (chain(4), np.zeros((2, 4)), TypeError, r"x: expected a torch\.Tensor, got numpy\.nd"),
        (chain(4), torch.zeros(2, 4, dtype=COMPLEX), TypeError, r"got dtype torch\.complex128"),
        ("chain4", torch.zeros(2, 4), TypeError, r"spec: expected a QNNSpec"),
    ],
)
def test_bad_api_input_names_the_argument(spec, x, error, message):
    n = spec.n_qubits if isinstance(spec, QNNSpec) else 4
    w = torch.zeros(n - 1, 2, dtype=torch.float64)
    with pytest.raises(error, match=message):
        expectations(spec, x, w)


def test_float32_angles_with_float64_weights_agree_on_every_spec():
    x, w = random_inputs(tree(5), 6)
    for spec in (chain(5), tree(5)):
        got = expectations(spec, x.float(), w)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, expectations(spec, x.float().double(), w))


def test_specs_take_whole_numbers_only():
    with pytest.raises(
        TypeError, match=r"n: expected a whole number of qubits \(int\), got float 4\.0"
    ):
        chain(4.0)
    with pytest.raises(TypeError, match="n: expected a whole number of qubits"):
        tree("8")
    with pytest.raises(
        TypeError, match=r"pairs: each pair must be two whole qubit indices, got \(0, 1.5\)"
    ):
        QNNSpec(4, ((0, 1.5),))
    with pytest.raises(TypeError, match="pairs: each pair must be two whole qubit indices"):
        QNNSpec(4, ((0, 1, 2),))
    assert QNNSpec(4, ((np.int64(0), np.int64(1)),)).pairs == ((0, 1),)
