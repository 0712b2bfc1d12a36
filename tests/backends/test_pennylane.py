"""pennylane:<device>: the QNN's PennyLane rendering, in this process or in a worker process
under another interpreter (the pennylane-rigetti venv), against the exact simulator."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from qvit_hw.backends import Pub, get_backend
from qvit_hw.backends.pennylane import PennyLaneBackend
from qvit_hw.circuit import QNNSpec, expectations, random_inputs, tree
from qvit_hw.errors import CredentialsError, PermanentBackendError
from qvit_hw.jobs import QNNCall, QNNRunner, SchedulerConfig
from qvit_hw.transpile import compile_qnn, get_target

RIGETTI_PYTHON = Path(__file__).parents[2] / ".venv-pennylane-rigetti" / "bin" / "python"
CYCLE = QNNSpec(4, ((0, 1), (1, 2), (2, 3), (3, 0)))


def run(backend, spec, rows=8, shots=1000):
    """Two QNN calls of one spec (different weights: one job, two weight groups)."""
    inputs = [random_inputs(spec, rows, seed=s) for s in (1, 2)]
    calls = [QNNCall(f"q{i}", spec, w.numpy(), x.numpy()) for i, (x, w) in enumerate(inputs)]
    estimates = QNNRunner(backend, SchedulerConfig(shots=shots, poll_interval=0)).run(calls)
    exact = [expectations(spec, x, w).numpy() for x, w in inputs]
    return np.concatenate([e.z for e in estimates]), np.concatenate(exact)


def within_4_sigma(z, exact, shots):
    sigma = np.sqrt((1 - exact**2) / shots)
    return bool((np.abs(z - exact) <= 4 * sigma + 2 / shots).all())


@pytest.mark.parametrize("spec", [tree(4), CYCLE], ids=["tree4", "cycle4"])
def test_default_qubit_is_exact(spec):
    z, exact = run(get_backend("pennylane:default.qubit"), spec)
    np.testing.assert_allclose(z, exact, atol=1e-6)


def test_default_qubit_with_shots_samples_within_4_sigma():
    backend = get_backend("pennylane:default.qubit?shots=2000&seed=7")
    assert backend.shots == 2000 and backend.options == {"seed": 7}
    z, exact = run(backend, tree(4))
    assert within_4_sigma(z, exact, 2000)
    assert np.abs(z - exact).max() > 0  # sampled, not exact


def test_qiskit_aer_through_pennylane_qiskit_samples_within_4_sigma():
    z, exact = run(get_backend("pennylane:qiskit.aer?shots=2000&seed_simulator=7"), tree(4))
    assert within_4_sigma(z, exact, 2000)
    assert np.abs(z - exact).mean() < 0.03  # MAE of 2000 shots: about 0.014


def test_worker_protocol_under_this_interpreter_is_exact():
    """The JSON-lines worker path, independent of the pennylane-rigetti venv."""
    backend = get_backend(f"pennylane:default.qubit?python={sys.executable}")
    try:
        assert backend.worker is not None and backend.worker.pennylane.startswith("0.")
        z, exact = run(backend, CYCLE, rows=4)
        np.testing.assert_allclose(z, exact, atol=1e-6)
    finally:
        backend.close()


def test_pennylane_rigetti_worker_matches_the_exact_simulator():
    if not RIGETTI_PYTHON.is_file():
        reason = f"{RIGETTI_PYTHON} missing: build it with `make venv-pennylane-rigetti`"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    backend = get_backend(f"pennylane:rigetti.numpy_wavefunction?python={RIGETTI_PYTHON}")
    try:
        assert backend.worker.pennylane == "0.41.1"
        for spec in (tree(4), CYCLE):
            z, exact = run(backend, spec, rows=4)
            np.testing.assert_allclose(z, exact, atol=1e-6)
    finally:
        backend.close()


def test_missing_interpreter_unknown_device_and_foreign_circuits_fail_clearly(tmp_path):
    with pytest.raises(CredentialsError, match=r"no interpreter there.*make venv-pennylane"):
        get_backend(f"pennylane:rigetti.numpy_wavefunction?python={tmp_path}/python")
    with pytest.raises(PermanentBackendError, match=r"pennylane:no\.such\.device: DeviceError"):
        get_backend("pennylane:no.such.device")
    with pytest.raises(PermanentBackendError, match=r"own interpreter: `make venv-pennylane-rig"):
        get_backend("pennylane:rigetti.numpy_wavefunction")  # not in this environment
    compiled = compile_qnn(tree(4), get_target("ibm_brisbane", live=False), max_copies=1)
    x, w = random_inputs(tree(4), 1)
    pub = Pub(compiled.circuit, compiled.parameter_values(x.numpy(), w.numpy()), 10)
    with pytest.raises(PermanentBackendError, match="not a logical qvit-hw QNN circuit"):
        PennyLaneBackend("default.qubit").submit([pub])


def test_qiskit_remote_gets_the_ibm_device_of_the_account(monkeypatch):
    from qiskit_ibm_runtime.fake_provider import FakeFez

    class Service:  # a QiskitRuntimeService that sees ibm_fez
        def backend(self, name):
            return FakeFez()

    monkeypatch.setattr("qiskit_ibm_runtime.QiskitRuntimeService", Service)
    backend = get_backend("pennylane:qiskit.remote?backend=ibm_fez&shots=100")
    assert backend.options["backend"].num_qubits == 156 and backend.shots == 100
    with pytest.raises(ValueError, match=r"needs \?backend=ibm_<device>"):
        get_backend("pennylane:qiskit.remote")
