"""fake_<device>: a fake IBM device (fast noisy engine or Aer), packed copies kept on
their physical qubits."""

import json

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit.library import RXGate
from qiskit_aer.noise import (
    NoiseModel,
    ReadoutError,
    amplitude_damping_error,
    coherent_unitary_error,
    depolarizing_error,
)

from qvit_hw.backends import JobStatus, Pub, get_backend
from qvit_hw.backends.base import identity_key
from qvit_hw.backends.fake import (
    FakeDeviceBackend,
    _split,
    device_noise_model,
    fake_device_classes,
    load_noise_model,
)
from qvit_hw.backends.noisy import noisy_probabilities
from qvit_hw.circuit import chain, expectations, qiskit_circuit, random_inputs
from qvit_hw.errors import PermanentBackendError
from qvit_hw.transpile import compile_qnn, get_target

SHOTS = 2000


@pytest.fixture(scope="module")
def packed():
    """chain(4) packed on ibm_brisbane (the fake backend's snapshot) and 60 random rows."""
    spec = chain(4)
    compiled = compile_qnn(spec, get_target("ibm_brisbane", live=False), max_copies=6)
    x, w = random_inputs(spec, 60, seed=5)
    pub = Pub(compiled.circuit, compiled.parameter_values(x, w), SHOTS)
    return compiled, pub, expectations(spec, x, w).numpy()


def estimates(backend, compiled, pub):
    job_id = backend.submit([pub])
    assert backend.status(job_id) is JobStatus.DONE
    (result,) = backend.result(job_id).pubs
    rows = result.z.reshape(-1, 4)  # row r: execution r // k, copy r % k
    return rows[:60], result.shots


def test_every_v2_fake_device_has_a_name():
    names = fake_device_classes()
    assert names["fake_brisbane"] == "FakeBrisbane"
    assert names["fake_manila"] == "FakeManilaV2"
    assert len(names) > 50


@pytest.mark.parametrize("engine", ["fast", "aer"])
def test_noiseless_device_reproduces_exact_values_copy_by_copy(packed, engine):
    compiled, pub, exact = packed
    assert compiled.copies == 6
    backend = get_backend(f"fake_brisbane?noise=0&engine={engine}")
    assert backend.engine == engine and backend.noise_model is None
    z, shots = estimates(backend, compiled, pub)
    assert shots == SHOTS
    sigma = np.sqrt((1 - exact**2) / SHOTS)
    assert (np.abs(z - exact) <= 4 * sigma + 2 / SHOTS).all()


def test_device_noise_biases_estimates_and_readout_errors_are_reported(packed):
    compiled, pub, exact = packed
    backend = FakeDeviceBackend("fake_brisbane", seed=1)
    noisy, _ = estimates(backend, compiled, pub)
    ideal, _ = estimates(FakeDeviceBackend("fake_brisbane", noise=False), compiled, pub)

    def slope(z):  # least squares z ~ s * exact: decoherence and readout errors shrink s
        return float((z * exact).sum() / (exact * exact).sum())

    assert abs(slope(ideal) - 1) < 0.01  # shot noise alone: unbiased (slope 1.0005)
    assert slope(noisy) < 0.985  # the device's noise: 0.965 on the best 6 placements
    errors = backend.readout_errors()  # what the noise model applies to measurements
    error = backend.device.target["measure"][(0,)].error
    assert errors[0] == (error, error) and len(errors) == 127


def test_limits_are_ibms():
    target = get_backend("fake_brisbane").target
    assert (target.max_shots, target.max_executions) == (100_000, 10_000_000)
    assert target.job_capacity(4000) == 2500
    assert target.qiskit_target is not None and target.num_qubits == 127


def test_circuits_must_be_native():
    qc = qiskit_circuit(chain(4), measure=True)  # ry and cx: not brisbane's gates
    pub = Pub(qc, np.zeros((1, qc.num_parameters)), 100)
    with pytest.raises(PermanentBackendError, match=r"ry on qubits \(0,\) is not native"):
        get_backend("fake_brisbane").submit([pub])


# --- the fast engine against Aer and against the exact noisy distribution ---------------


def exact_noisy_z(pub, noise_model):
    """Exact <Z> per row and clbit of a packed pub under ``noise_model``, copy by copy
    (`noisy_probabilities` on each independent copy, as the fast engine splits it)."""
    z = np.zeros((pub.rows, pub.circuit.num_clbits))
    for cp in _split(pub.circuit):
        probs = noisy_probabilities(cp.circuit, noise_model, pub.values[:, cp.cols])
        table = (np.arange(probs.shape[1])[:, None] >> np.arange(len(cp.clbits))) & 1
        z[:, cp.clbits] = probs @ (1 - 2 * table)
    return z


def within(z, reference, shots, k=4.0):
    """Largest |z - reference| in units of the shot standard error of ``reference``."""
    sigma = np.sqrt(np.clip(1 - reference**2, 1e-6, None) / shots)
    return float(np.max(np.abs(z - reference) / sigma))


@pytest.fixture(scope="module")
def device_runs(packed):
    """The packed pub on fake_brisbane, each engine twice: (fast, fast, aer, aer) results."""
    _, pub, _ = packed
    out = []
    for name in ("fake_brisbane", "fake_brisbane?engine=aer"):
        backend = get_backend(name)
        for _ in range(2):  # resubmitted: the same pub again
            (result,) = backend.result(backend.submit([pub])).pubs
            out.append(result)
    return out


def test_fast_engine_agrees_with_aer_and_both_with_the_exact_noisy_values(packed, device_runs):
    _, pub, _ = packed
    fast, _, aer, _ = device_runs
    exact = exact_noisy_z(pub, device_noise_model("fake_brisbane"))
    assert fast.shots == aer.shots == SHOTS and fast.z.shape == aer.z.shape == exact.shape
    assert within(fast.z, exact, SHOTS) < 4 and within(aer.z, exact, SHOTS) < 4
    combined = np.sqrt((2 - fast.z**2 - aer.z**2) / SHOTS) + 1e-9  # two independent draws
    assert np.max(np.abs(fast.z - aer.z) / combined) < 4
    ideal = exact_noisy_z(pub, None)  # the noise matters: far more than shot noise
    assert within(ideal, exact, SHOTS) > 5
    for result in (fast, aer):  # raw shots of the first rows for the fidelity report
        bits = result.sample_bits()
        assert bits.shape == (4, SHOTS, pub.circuit.num_clbits)
        np.testing.assert_allclose(1 - 2 * bits.mean(axis=1), result.z[:4], atol=1e-12)


def test_both_engines_reproduce_their_counts_for_the_same_seed(packed, device_runs):
    _, pub, _ = packed
    fast, fast_again, aer, aer_again = device_runs
    for first, again in ((fast, fast_again), (aer, aer_again)):
        np.testing.assert_array_equal(first.z, again.z)
        np.testing.assert_array_equal(first.samples, again.samples)
    restarted = get_backend("fake_brisbane")  # a new backend, e.g. after a restart
    (fresh,) = restarted.result(restarted.submit([pub])).pubs
    np.testing.assert_array_equal(fresh.z, fast.z)
    other = FakeDeviceBackend("fake_brisbane", seed=1)
    (reseeded,) = other.result(other.submit([pub])).pubs
    assert not np.array_equal(reseeded.z, fast.z)


def custom_model() -> NoiseModel:
    """Depolarizing sx/x and ecr errors and one readout error on every qubit."""
    model = NoiseModel(basis_gates=["ecr", "rz", "sx", "x"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.02, 1), ["sx", "x"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.08, 2), ["ecr"])
    model.add_all_qubit_readout_error(ReadoutError([[0.9, 0.1], [0.15, 0.85]]))
    return model


@pytest.fixture(scope="module")
def custom_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("noise") / "custom.json"
    with path.open("w") as f:
        json.dump(custom_model().to_dict(serializable=True), f)
    return path


@pytest.mark.parametrize("engine", ["fast", "aer"])
def test_a_saved_noise_model_is_simulated_exactly(packed, custom_file, engine):
    _, pub, _ = packed
    backend = get_backend(f"fake_brisbane?noise_model={custom_file}&engine={engine}")
    (result,) = backend.result(backend.submit([pub])).pubs
    exact = exact_noisy_z(pub, custom_model())
    assert within(result.z, exact, SHOTS) < 4
    device = exact_noisy_z(pub, device_noise_model("fake_brisbane"))
    assert within(device, exact, SHOTS) > 8  # the custom model, not the device's, was used
    assert backend.readout_errors()[17] == pytest.approx((0.1, 0.15))
    assert len(backend.readout_errors()) == 127


def test_a_saved_noise_model_loads_to_the_same_channels(packed, custom_file):
    _, pub, _ = packed
    loaded, digest = load_noise_model(custom_file)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    np.testing.assert_allclose(
        exact_noisy_z(pub, loaded), exact_noisy_z(pub, custom_model()), rtol=0, atol=1e-12
    )
    # kraus and unitary instructions hold complex matrices, [real, imag] pairs in the JSON
    model = custom_model()
    model.add_all_qubit_quantum_error(amplitude_damping_error(0.03), "measure")
    model.add_all_qubit_quantum_error(coherent_unitary_error(RXGate(0.1).to_matrix()), "rz")
    path = custom_file.with_name("complex.json")
    path.write_text(json.dumps(model.to_dict(serializable=True)))
    text = path.read_text()
    assert '"kraus"' in text and '"unitary"' in text
    np.testing.assert_allclose(
        exact_noisy_z(pub, load_noise_model(path)[0]),
        exact_noisy_z(pub, model),
        rtol=0,
        atol=1e-12,
    )


def test_a_noise_model_object_is_accepted_and_identified_by_its_json(packed, custom_file):
    _, pub, _ = packed
    backend = FakeDeviceBackend("fake_brisbane", noise_model=custom_model())
    (result,) = backend.result(backend.submit([pub])).pubs
    assert within(result.z, exact_noisy_z(pub, custom_model()), SHOTS) < 4
    again = FakeDeviceBackend("fake_brisbane", noise_model=custom_model())
    assert backend.identity["noise_model"] == again.identity["noise_model"]
    assert backend.identity["noise_model"].startswith("sha256:")


def test_engine_and_noise_model_are_part_of_the_identity(custom_file):
    names = [
        "fake_brisbane",
        "fake_brisbane?engine=aer",
        f"fake_brisbane?noise_model={custom_file}",
        f"fake_brisbane?noise_model={custom_file}&engine=aer",
        "fake_brisbane?noise=0",
    ]
    backends = [get_backend(name) for name in names]
    assert len({identity_key(b) for b in backends}) == len(names)
    fast, aer, custom, _, ideal = (b.identity for b in backends)
    assert (fast["engine"], aer["engine"]) == ("fast", "aer")
    assert fast["noise_model"] == aer["noise_model"] == "device" and ideal["noise_model"] is None
    assert custom["noise_model"] == load_noise_model(custom_file)[1]
    assert identity_key(get_backend("fake_brisbane?engine=fast")) == identity_key(backends[0])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "backend fake_brisbane: option noise_model: no file '.*missing.json'"),
        ("not json {", "option noise_model: cannot read '.*' as JSON"),
        ('{"gates": 1}', "option noise_model: '.*' is not a saved Aer NoiseModel"),
        ('{"errors": [{"type": "qerror"}]}', "option noise_model: '.*' is not a valid Aer"),
    ],
)
def test_a_missing_or_garbage_noise_model_is_one_clear_line(tmp_path, content, message):
    path = tmp_path / ("missing.json" if content is None else "garbage.json")
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        get_backend(f"fake_brisbane?noise_model={path}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("fake_brisbane?engine=gpu", "backend fake_brisbane: option engine must be one of "
         "fast, aer, got 'gpu'"),
        ("fake_brisbane?engine=", "option engine must be one of fast, aer, got ''"),
        ("fake_brisbane?noise=0&noise_model=x.json", "option noise_model: noise=0 simulates"),
    ],
)  # fmt: skip
def test_bad_engine_options_name_the_option(name, message):
    with pytest.raises(ValueError, match=message):
        get_backend(name)


def test_what_the_fast_engine_cannot_simulate_is_a_permanent_error_and_aer_runs_it():
    from qiskit import transpile

    qc = QuantumCircuit(11)  # a GHZ state on 11 linked qubits: the fast engine takes 10
    qc.h(0)
    for q in range(10):
        qc.cx(q, q + 1)
    qc.measure_all()
    device = FakeDeviceBackend("fake_brisbane").device
    isa = transpile(qc, device, initial_layout=list(range(11)), seed_transpiler=0)
    pub = Pub(isa, np.zeros((2, 0)), 200)
    message = r"fast noisy engine cannot run .*11 linked qubits; at most 10.*engine=aer"
    with pytest.raises(PermanentBackendError, match=message) as info:
        get_backend("fake_brisbane").submit([pub])
    assert "\n" not in str(info.value)
    aer = get_backend("fake_brisbane?engine=aer")
    (result,) = aer.result(aer.submit([pub])).pubs
    bits = result.sample_bits()[0]  # GHZ: mostly all zeros or all ones
    assert np.mean((bits.sum(axis=1) == 0) | (bits.sum(axis=1) == 11)) > 0.5


def test_exact_mode_gives_the_noisy_expectations_that_shots_sample():
    """fake_<device>?exact=1: each row's exact noisy <Z> (no shots), what 4,000 shots of the
    same rows scatter around with z-scores of sd ~1 and mean ~0 (800 values)."""
    import numpy as np

    from qvit_hw.backends import get_backend
    from qvit_hw.circuit import chain
    from qvit_hw.jobs import QNNCall, QNNRunner, SchedulerConfig

    rng = np.random.default_rng(0)
    spec = chain(4)
    call = QNNCall("q", spec, rng.uniform(-3, 3, spec.weight_shape), rng.uniform(-3, 3, (200, 4)))
    config = SchedulerConfig(max_copies=1, shots=4000)
    exact = QNNRunner(get_backend("fake_brisbane?exact=1"), config).run([call])[0]
    shots = QNNRunner(get_backend("fake_brisbane"), config).run([call])[0]
    assert (exact.shots == 0).all() and (exact.stderr == 0).all()
    z = (shots.z - exact.z) / shots.stderr
    assert 0.9 < z.std() < 1.1 and abs(z.mean()) < 4 / np.sqrt(z.size)
    ideal = QNNRunner(get_backend("fake_brisbane?noise=0&exact=1"), config).run([call])[0]
    assert np.abs(exact.z - ideal.z).mean() > 0.01  # the noise is in it
