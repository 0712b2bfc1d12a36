"""Pauli twirling of the 2-qubit gates: the unitary is unchanged on every listed ISA, rows
are dealt over the draws and put back in order, and averaged over the draws folding
scales a device's relaxation, which it does not untwirled."""

import numpy as np
import pytest
import torch
from compiled_copies import TARGETS, unitary_of

from qvit_hw.backends.fake import FakeDeviceBackend
from qvit_hw.backends.registry import get_backend
from qvit_hw.circuit import expectations, tree
from qvit_hw.devices import catalog
from qvit_hw.jobs.combine import merge_rows, split_rows
from qvit_hw.jobs.config import SchedulerConfig
from qvit_hw.jobs.plan import QNNCall
from qvit_hw.jobs.runner import QNNRunner
from qvit_hw.mitigation.twirl import twirl_compiled, twirl_gates
from qvit_hw.mitigation.zne import fold_compiled
from qvit_hw.transpile import circuit_key, template_for


@pytest.mark.parametrize("name", TARGETS)
def test_twirling_keeps_the_unitary_and_the_two_qubit_gates_on_every_isa(name):
    """Each draw: the same operator (up to a global phase) at random parameters, the same
    2-qubit gates, only device gates, Paulis between barriers; draws differ, a draw
    repeats; a folded template twirls its inserted gates too."""
    target = catalog.get_target(name, live=False)
    compiled = template_for(tree(4), target, max_copies=1, seed=0)
    values = np.random.default_rng(0).uniform(-np.pi, np.pi, compiled.circuit.num_parameters)
    base = unitary_of(compiled, values)
    two = compiled.circuit.count_ops()
    gate = next(g for g in two if g in ("ecr", "cz", "iswap"))
    circuits = []
    for source in (compiled, fold_compiled(compiled, 3, target.basis_gates, "all")):
        for draw in range(3):
            twirled = twirl_compiled(source, target.basis_gates, draw)
            ops = twirled.circuit.count_ops()
            assert ops[gate] == source.circuit.count_ops()[gate]
            assert twirled.two_qubit_gates == source.two_qubit_gates
            assert set(ops) <= {*target.basis_gates, "barrier", "measure"}
            assert base.equiv(unitary_of(twirled, values))
            assert np.array_equal(twirled.x_index, compiled.x_index)
            circuits.append(twirled.circuit)
    assert len({circuit_key(c) for c in circuits[:3]}) == 3  # three different draws
    again = twirl_compiled(compiled, target.basis_gates, 1)
    assert circuit_key(again.circuit) == circuit_key(circuits[1])


def test_only_clifford_angles_of_a_gate_are_twirled():
    """rzz(pi/2) is a Clifford and is twirled; rzz(0.3), the same gate name, is not one and
    stays as it is: every draw keeps the operator."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Operator

    qc = QuantumCircuit(2)
    qc.rzz(np.pi / 2, 0, 1)
    qc.rzz(0.3, 0, 1)
    for draw in range(8):
        twirled = twirl_gates(qc, None, draw)
        assert Operator(qc).equiv(Operator(twirled)), draw
        assert twirled.count_ops()["barrier"] == 2  # the Clifford one alone, fenced


def test_a_device_without_x_is_refused_with_its_gates_named():
    from qiskit import QuantumCircuit

    from qvit_hw.errors import TranspileError

    qc = QuantumCircuit(2)
    qc.cz(0, 1)
    with pytest.raises(TranspileError, match=r"cannot twirl: .*'cz', 'rz'.* no X"):
        for draw in range(16):  # some draw puts an X-type Pauli somewhere
            twirl_gates(qc, ["cz", "rz"], draw)


def test_rows_dealt_over_draws_come_back_in_order():
    """split_rows deals row i to draw i mod k (a call shorter than k skips the rest);
    merge_rows weaves every field back, sampled rows renumbered."""
    from qvit_hw.jobs.combine import RowEstimates

    spec = tree(4)
    w = np.zeros(spec.weight_shape)
    calls = [QNNCall("a", spec, w, np.arange(28.0).reshape(7, 4)),
             QNNCall("b", spec, w, np.arange(8.0).reshape(2, 4))]  # fmt: skip
    parts = split_rows(calls, 3)
    assert [[len(c.angles) for c in part] for part in parts] == [[3, 1], [2, 1], [2]]
    assert np.array_equal(parts[1][0].angles, calls[0].angles[1::3])

    def estimates(call):  # each row's values = its angles; sample the first row
        x = call.angles
        return RowEstimates(z=x, stderr=x + 1, z_raw=x + 2, stderr_raw=x + 3,
                            qubits=x.astype(int), sampled=np.array([0]),
                            counts=x[:1].astype(np.int64), stages=((x, x + 1),),
                            shots=x[:, 0].astype(int))  # fmt: skip

    merged = merge_rows(calls, [[estimates(c) for c in part] for part in parts], 3)
    for call, e in zip(calls, merged, strict=True):
        assert np.array_equal(e.z, call.angles) and np.array_equal(e.stderr, call.angles + 1)
        assert np.array_equal(e.stages[0][1], call.angles + 1)
        assert np.array_equal(e.shots, call.angles[:, 0])
        rows = len(call.angles)
        assert np.array_equal(e.sampled, np.arange(min(rows, 3)))
        assert np.array_equal(e.counts, call.angles[e.sampled][:, :4].astype(np.int64))


def test_averaged_over_draws_folding_removes_the_relaxation_bias_it_leaves_untwirled():
    """fake_brisbane's gate noise (no readout errors), exact noisy values, one placement:
    Richardson (1, 3) leaves a bias that relaxation, folded untwirled, does not scale
    away; the same rows averaged over 16 twirl draws keep well under half of it."""
    from qiskit_aer.noise import NoiseModel

    device = FakeDeviceBackend("fake_brisbane").device
    model = NoiseModel.from_backend(device, readout_error=False)
    backend = FakeDeviceBackend("fake_brisbane", exact=True, noise_model=model)
    spec, draws = tree(4), 16
    rng = np.random.default_rng(5)
    w = rng.uniform(-np.pi, np.pi, spec.weight_shape)
    x = rng.uniform(-np.pi, np.pi, (24, 4))
    exact = expectations(spec, torch.tensor(x), torch.tensor(w)).numpy()
    left = {}
    for twirls in (0, draws):
        config = SchedulerConfig(shots=1000, max_copies=1, zne_twirls=twirls)
        qnn = QNNRunner(backend, config, mitigation="zne")
        rows = np.repeat(x, draws, axis=0)  # every row once on each draw
        (e,) = qnn.run([QNNCall("q", spec, w, rows)])
        z = e.z_linear.reshape(len(x), draws, 4).mean(axis=1)
        left[twirls] = np.abs(z - exact).mean()
        raw = np.abs(e.scaled[:, 0].reshape(len(x), draws, 4).mean(axis=1) - exact).mean()
        assert left[twirls] < 0.5 * raw, (twirls, raw, left[twirls])
    assert left[draws] < 0.5 * left[0], left


def test_zne_twirls_must_be_a_whole_number():
    with pytest.raises(ValueError, match="--zne-twirls must be a whole number >= 0, got -1"):
        SchedulerConfig(zne_twirls=-1)
    assert QNNRunner(get_backend("statevector"), SchedulerConfig()).twirls == 0  # zne only
