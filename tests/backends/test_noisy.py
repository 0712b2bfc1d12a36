"""The fast noisy engine agrees with Aer on the same copy circuit and noise model."""

from functools import cache

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.circuit.library import CXGate, RXGate
from qiskit_aer import AerSimulator
from qiskit_aer.noise import (
    NoiseModel,
    ReadoutError,
    amplitude_damping_error,
    coherent_unitary_error,
    depolarizing_error,
    mixed_unitary_error,
    pauli_error,
    phase_amplitude_damping_error,
    reset_error,
    thermal_relaxation_error,
)

from qvit_hw.backends import noisy
from qvit_hw.backends.base import SAMPLE_ROWS
from qvit_hw.backends.fake import _split
from qvit_hw.backends.noisy import (
    NoisyTemplate,
    error_ptm,
    noisy_template,
    sample_counts,
    superop_ptm,
)
from qvit_hw.backends.simulate import components, probabilities
from qvit_hw.circuit import chain, random_inputs, tree
from qvit_hw.transpile import compile_qnn


@cache
def device_noise(fake_class: str) -> NoiseModel:
    """The noise model `fake_<device>` simulates with (AerSimulator.from_backend builds it)."""
    from qiskit_ibm_runtime import fake_provider

    return NoiseModel.from_backend(getattr(fake_provider, fake_class)())


@cache
def device_copy(spec_name: str, device: str) -> tuple[QuantumCircuit, np.ndarray]:
    """Copy 0 of a QNN packed on ``device`` (as `fake_<device>` splits it) and 3 random
    parameter rows for it."""
    spec = {"chain4": chain(4), "chain8": chain(8), "tree8": tree(8)}[spec_name]
    compiled = compile_qnn(spec, device, max_copies=2)
    x, w = random_inputs(spec, 3 * compiled.copies, seed=7)
    values = compiled.parameter_values(x, w)  # (3, packed circuit parameters)
    copy = _split(compiled.circuit)[0]
    return copy.circuit, values[:, copy.cols]


def _restricted(noise_model: NoiseModel, qubits: set[int]) -> NoiseModel:
    """The same model without the errors of other qubits, which cannot apply to a circuit
    on ``qubits`` (Aer converts the whole model on every run: seconds for 156 qubits)."""
    out = NoiseModel(basis_gates=noise_model.basis_gates)
    for name, error in noise_model._default_quantum_errors.items():
        out.add_all_qubit_quantum_error(error, name, warnings=False)
    for name, table in noise_model._local_quantum_errors.items():
        for qargs, error in table.items():
            if qubits.issuperset(qargs):
                out.add_quantum_error(error, name, qargs, warnings=False)
    if noise_model._default_readout_error is not None:
        out.add_all_qubit_readout_error(noise_model._default_readout_error, warnings=False)
    for qargs, error in noise_model._local_readout_errors.items():
        if qubits.issuperset(qargs):
            out.add_readout_error(error, qargs, warnings=False)
    return out


def _measure_error(noise_model: NoiseModel, qubit: int):
    local = noise_model._local_quantum_errors.get("measure", {})
    return local.get((qubit,), noise_model._default_quantum_errors.get("measure"))


def aer_probabilities(circuit: QuantumCircuit, noise_model: NoiseModel, values: np.ndarray):
    """Aer's exact outcome probabilities (rows, 2^num_clbits), readout errors included.

    Why this is exact: ``method="density_matrix"`` evolves rho through every instruction
    with the superoperator of its noisy channel (the noise is not sampled, nor are shots),
    and ``save_probabilities`` reads the diagonal of rho on the measured qubits. Saving
    replaces the final measurements, so the quantum errors Aer attaches to a measure (it
    applies them just before the measurement) are inserted explicitly in their place.
    Readout errors act on each recorded bit alone, after the measurement (Aer samples a
    classical flip per measured qubit from its confusion matrix: the qubit's local
    readout error, else the all-qubit one), so applying those confusion matrices to the
    exact outcome distribution gives exactly the distribution of the recorded bits.
    """
    measures = []
    body = QuantumCircuit(circuit.num_qubits)
    for inst in circuit.data:
        qargs = [circuit.find_bit(q).index for q in inst.qubits]
        if inst.operation.name == "measure":
            measures.append((qargs[0], circuit.find_bit(inst.clbits[0]).index))
            error = _measure_error(noise_model, qargs[0])
            if error is not None:
                body.append(error.to_instruction(), qargs)
        else:
            body.append(inst.operation, qargs)
    measures.sort(key=lambda qc: qc[1])
    body.save_probabilities([q for q, _ in measures])  # first listed: least significant
    used = {circuit.find_bit(q).index for inst in circuit.data for q in inst.qubits}
    simulator = AerSimulator(method="density_matrix", noise_model=_restricted(noise_model, used))
    rows = len(values)
    if circuit.num_parameters:
        binds = [{p: values[:, j] for j, p in enumerate(circuit.parameters)}]
        result = simulator.run(body, parameter_binds=binds).result()
    else:
        result = simulator.run([body] * rows).result()
    k = len(measures)
    out = np.zeros((rows, 2**circuit.num_clbits))
    index = np.zeros(2**k, dtype=np.int64)  # outcome over measured clbits -> over all clbits
    for s in range(2**k):
        index[s] = sum(((s >> j) & 1) << clbit for j, (_, clbit) in enumerate(measures))
    for row in range(rows):
        probs = np.asarray(result.data(row)["probabilities"]).reshape((2,) * k)
        for j, (qubit, _) in enumerate(measures):  # axis k-1-j holds measured bit j
            error = noise_model._local_readout_errors.get(
                (qubit,), noise_model._default_readout_error
            )
            if error is not None:
                confusion = np.asarray(error.probabilities)  # [true, recorded]
                axis = k - 1 - j
                probs = np.moveaxis(np.tensordot(confusion.T, probs, axes=([1], [axis])), 0, axis)
        out[row, index] = probs.reshape(-1)
    return out


def _ideal(circuit: QuantumCircuit, values: np.ndarray) -> np.ndarray:
    (comp,) = components(circuit)
    assert [c for _, c in comp.measured] == list(range(circuit.num_clbits))
    return probabilities(comp, values)


@pytest.mark.parametrize(
    ("spec_name", "device", "fake_class"),
    [
        ("chain4", "ibm_brisbane", "FakeBrisbane"),
        ("chain8", "ibm_torino", "FakeTorino"),
        ("tree8", "ibm_fez", "FakeFez"),
    ],
)
def test_device_copy_matches_aer_density_matrix(spec_name, device, fake_class):
    circuit, values = device_copy(spec_name, device)
    noise_model = device_noise(fake_class)
    two_qubit = [i for i in circuit.data if i.operation.num_qubits == 2]
    assert two_qubit and all(  # the device model has an error for every coupler used
        tuple(circuit.find_bit(q).index for q in i.qubits)
        in noise_model._local_quantum_errors[i.operation.name]
        for i in two_qubit
    )
    template = NoisyTemplate.build(circuit, noise_model)
    assert template.num_qubits == int(spec_name[-1])
    probs = template.probabilities(values)
    reference = aer_probabilities(circuit, noise_model, values)
    np.testing.assert_allclose(probs, reference, rtol=0, atol=1e-8)
    ideal = _ideal(circuit, values)  # the noise matters, and without it the engine is exact
    assert np.abs(probs - ideal).max() > 1e-3
    clean = NoisyTemplate.build(circuit, None).probabilities(values)
    np.testing.assert_allclose(clean, ideal, rtol=0, atol=1e-10)


def custom_noise_model(qubits: tuple[int, ...]) -> NoiseModel:
    """Depolarizing gates, local overrides, an error on the parametrised rz, errors on
    measure (before it), and readout errors: default, local and a two-qubit one (which
    Aer never applies to one-qubit measurements)."""
    a, b, c = qubits[:3]
    model = NoiseModel(basis_gates=["ecr", "cx", "rz", "sx", "x"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.01, 1), ["sx", "x"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.05, 2), ["ecr", "cx"])
    model.add_quantum_error(pauli_error([("X", 0.03), ("Z", 0.02), ("I", 0.95)]), "sx", [a])
    model.add_quantum_error(thermal_relaxation_error(50e3, 30e3, 2e3), "rz", [b])
    model.add_quantum_error(depolarizing_error(0.1, 2), "ecr", [b, a])  # direction matters
    model.add_all_qubit_quantum_error(amplitude_damping_error(0.04), "measure")
    model.add_quantum_error(pauli_error([("X", 0.08), ("I", 0.92)]), "measure", [c])
    model.add_all_qubit_readout_error(ReadoutError([[0.97, 0.03], [0.06, 0.94]]))
    model.add_readout_error(ReadoutError([[0.9, 0.1], [0.2, 0.8]]), [a])
    confusion = np.full((4, 4), 0.1) + 0.6 * np.eye(4)
    model.add_readout_error(ReadoutError(confusion), [b, c])
    return model


def test_custom_noise_model_matches_aer():
    circuit, values = device_copy("chain4", "ibm_brisbane")
    template = NoisyTemplate.build(circuit, None)
    model = custom_noise_model(template.qubits)
    probs = NoisyTemplate.build(circuit, model).probabilities(values)
    np.testing.assert_allclose(probs, aer_probabilities(circuit, model, values), atol=1e-8)


def test_other_gates_per_row_matrices_and_clbit_order_match_aer():
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(5, 4)
    qc.ry(a, 0)
    qc.rx(b + 0.3, 1)
    qc.h(2)
    qc.cx(0, 1)
    qc.u(a, b, 0.3, 2)  # three angles: one PTM per row
    qc.cp(2 * a, 2, 1)  # a parametrised 2-qubit gate
    qc.rzz(a * b, 0, 2)  # non-linear angle
    qc.cx(2, 3)
    qc.x(4)  # not linked to a measured qubit: dropped
    qc.measure([2, 0, 1], [0, 3, 1])  # qubit 3 unmeasured, clbit 2 never written
    model = NoiseModel(basis_gates=["cx", "u", "cp", "h", "ry", "rx", "rzz"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.05, 2), ["cx", "cp", "rzz"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.02, 1), ["h", "u", "ry"])
    model.add_quantum_error(amplitude_damping_error(0.1), "rx", [1])
    model.add_all_qubit_readout_error(ReadoutError([[0.95, 0.05], [0.1, 0.9]]))
    values = np.array([[0.4, -1.3], [2.0, 0.7], [-2.5, 3.0]])
    template = NoisyTemplate.build(qc, model)
    assert template.qubits == (0, 1, 2, 3)
    kinds = {step[0] for step in template.program}
    assert {"perrow", "side_perrow", "side_rot"} <= kinds  # cp; u; ry, rx before cx
    probs = template.probabilities(values)
    assert np.all(probs[:, [s for s in range(16) if s & 4]] == 0)  # clbit 2 reads 0
    np.testing.assert_allclose(probs, aer_probabilities(qc, model, values), atol=1e-8)


def test_measure_errors_and_readout_match_aer_shots():
    """Aer's own measurement path (measure errors, readout errors, sampled bits) against
    the engine's probabilities: every outcome within 4.5 standard errors."""
    circuit, values = device_copy("chain4", "ibm_brisbane")
    model = custom_noise_model(NoisyTemplate.build(circuit, None).qubits)
    probs = NoisyTemplate.build(circuit, model).probabilities(values[:1])[0]
    shots = 40_000
    bound = circuit.assign_parameters(dict(zip(circuit.parameters, values[0], strict=True)))
    counts = (
        AerSimulator(method="density_matrix", noise_model=model)
        .run(bound, shots=shots, seed_simulator=11)
        .result()
        .get_counts()
    )
    observed = np.zeros(16)
    for key, n in counts.items():
        observed[int(key, 2)] = n
    stderr = np.sqrt(shots * probs * (1 - probs)) + 1.0
    assert np.all(np.abs(observed - shots * probs) < 4.5 * stderr)


def test_sampling_is_seeded_and_within_four_standard_errors():
    circuit, values = device_copy("chain4", "ibm_brisbane")
    probs = noisy_template(circuit, device_noise("FakeBrisbane")).probabilities(
        np.repeat(values, 100, axis=0)
    )
    assert noisy_template(circuit, device_noise("FakeBrisbane")) is noisy_template(
        circuit, device_noise("FakeBrisbane")
    )
    shots = 1000
    ones, bits = sample_counts(probs, shots, np.random.default_rng(3))
    again, bits_again = sample_counts(probs, shots, np.random.default_rng(3))
    np.testing.assert_array_equal(ones, again)
    np.testing.assert_array_equal(bits, bits_again)
    assert ones.shape == (300, 4) and ones.dtype == np.int64
    assert bits.shape == (SAMPLE_ROWS, shots, 4) and bits.dtype == np.uint8
    np.testing.assert_array_equal(bits.sum(axis=1), ones[:SAMPLE_ROWS])  # all shots kept
    table = (np.arange(16)[:, None] >> np.arange(4)) & 1
    p_one = probs @ table  # (rows, 4)
    stderr = np.sqrt(shots * p_one * (1 - p_one))
    assert np.all(np.abs(ones - shots * p_one) <= 4 * stderr + 1e-9)
    assert not np.array_equal(ones, sample_counts(probs, shots, np.random.default_rng(4))[0])


def test_eight_qubits_two_thousand_rows_in_chunks(monkeypatch):
    circuit, _ = device_copy("chain8", "ibm_torino")
    template = NoisyTemplate.build(circuit, device_noise("FakeTorino"))
    assert template.chunk_bytes < 256 << 20
    rows = np.random.default_rng(0).uniform(-np.pi, np.pi, (2000, circuit.num_parameters))
    probs = template.probabilities(rows)
    assert probs.shape == (2000, 256)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    assert probs.min() > -1e-12
    monkeypatch.setattr(noisy, "CHUNK_BYTES", 8 * template.max_size * 300)  # 7 chunks
    assert template.chunk_rows == 300
    np.testing.assert_allclose(template.probabilities(rows), probs, rtol=0, atol=1e-14)


def test_unsupported_circuits_are_refused():
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure(0, 0)
    qc.x(0)
    with pytest.raises(ValueError, match="follows a measurement"):
        NoisyTemplate.build(qc, None)
    qc = QuantumCircuit(1, 1)
    qc.reset(0)
    qc.measure(0, 0)
    with pytest.raises(ValueError, match="reset is not supported"):
        NoisyTemplate.build(qc, None)


def test_error_ptms_match_qiskit_channels():
    """`error_ptm` composes the error circuits itself (Paulis, unitaries, kraus, reset):
    the same channel as ``QuantumError.to_quantumchannel``, tens of times faster."""
    errors = []
    for fake_class, names in (("FakeBrisbane", ("sx", "x", "ecr")), ("FakeTorino", ("cz",))):
        model = device_noise(fake_class)
        for name in names:
            errors += list(model._local_quantum_errors[name].values())[:6]
    errors += [
        depolarizing_error(0.05, 2),
        thermal_relaxation_error(50e3, 30e3, 2e3),
        phase_amplitude_damping_error(0.1, 0.2),
        pauli_error([("XZ", 0.1), ("YI", 0.05), ("II", 0.85)]),
        coherent_unitary_error(RXGate(0.3).to_matrix()),
        coherent_unitary_error(CXGate().to_matrix()),
        reset_error(0.1, 0.05),
        mixed_unitary_error([(CXGate().to_matrix(), 0.2), (np.eye(4), 0.8)]),
        depolarizing_error(0.05, 2).compose(
            amplitude_damping_error(0.1).tensor(depolarizing_error(0.02, 1))
        ),
    ]
    for error in errors:
        reference = superop_ptm(np.asarray(error.to_quantumchannel().data))
        np.testing.assert_allclose(error_ptm(error), reference, rtol=0, atol=1e-12)
        assert error_ptm(error) is error_ptm(error)  # cached per error object
