"""fake_<device>: Aer on a fake IBM device, packed copies kept on their physical qubits."""

import numpy as np
import pytest

from qvit_hw.backends import JobStatus, Pub, get_backend
from qvit_hw.backends.fake import FakeDeviceBackend, fake_device_classes
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


def test_noiseless_device_reproduces_exact_values_copy_by_copy(packed):
    compiled, pub, exact = packed
    assert compiled.copies == 6
    z, shots = estimates(get_backend("fake_brisbane?noise=0"), compiled, pub)
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
