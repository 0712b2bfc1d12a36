"""The protocol types and the ideal local backends: statevector (exact) and shots."""

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.primitives import BitArray

from qvit_hw.backends import Backend, BackendTarget, JobStatus, Pub, PubResult, get_backend
from qvit_hw.circuit import chain, expectations, qiskit_circuit, random_inputs
from qvit_hw.errors import JobTooLargeError, PermanentBackendError


def qnn_pub(rows: int, shots: int, seed: int = 0) -> tuple[Pub, np.ndarray]:
    """A pub of chain(4) with random rows, and the exact <Z> of each row."""
    spec = chain(4)
    x, w = random_inputs(spec, rows, seed=seed)
    qc = qiskit_circuit(spec, measure=True)
    flat = w.reshape(-1)
    columns = {f"x[{i}]": x[:, i].numpy() for i in range(4)}
    columns.update({f"w[{j}]": np.full(rows, float(flat[j])) for j in range(len(flat))})
    values = np.stack([columns[p.name] for p in qc.parameters], axis=1)
    return Pub(qc, values, shots), expectations(spec, x, w).numpy()


def run(backend: Backend, pubs: list[Pub]) -> list[PubResult]:
    job_id = backend.submit(pubs)
    assert backend.status(job_id) is JobStatus.DONE
    return list(backend.result(job_id).pubs)


def test_statevector_is_exact_and_reports_zero_shots():
    pub, exact = qnn_pub(50, shots=100)
    (result,) = run(get_backend("statevector"), [pub])
    assert result.shots == 0  # exact: the estimator gives stderr 0
    np.testing.assert_allclose(result.z, exact, atol=1e-12)


def test_shots_samples_reproducibly_from_the_exact_distribution():
    pub, exact = qnn_pub(2000, shots=400)
    (a,) = run(get_backend("shots?seed=7"), [pub])
    (b,) = run(get_backend("shots", seed=7), [pub])  # another instance, same pub
    (c,) = run(get_backend("shots", seed=8), [pub])
    np.testing.assert_array_equal(a.z, b.z)
    assert not np.array_equal(a.z, c.z)
    assert a.shots == 400
    sigma = np.sqrt((1 - exact**2) / 400)  # (rows, n) true standard errors
    # within 4 standard errors, plus one shot's step (2 / shots) for means near +-1
    assert (np.abs(a.z - exact) <= 4 * sigma + 2 / 400).all()
    zscores = (a.z - exact) / sigma
    assert abs(zscores.mean()) < 0.05 and 0.95 < zscores.std() < 1.05


def test_local_jobs_of_another_process_are_unknown():
    backend = get_backend("statevector")
    assert backend.status("statevector-00000-deadbeef") is JobStatus.UNKNOWN
    with pytest.raises(PermanentBackendError, match="no job"):
        backend.result("statevector-00000-deadbeef")


def test_pub_result_reads_qiskit_bit_arrays():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(3, 50, 11), dtype=np.uint8)  # (rows, shots, clbits)
    # BitArray packs clbit 0 into the lowest bit of the last byte
    packed = BitArray.from_bool_array(bits[..., ::-1].astype(bool), order="big")
    got = PubResult.from_packed(packed.array, 11)
    np.testing.assert_allclose(got.z, 1 - 2 * bits.mean(axis=1))
    assert got.shots == 50


def test_pub_checks_its_arguments():
    qc = QuantumCircuit(1, 1)
    with pytest.raises(ValueError, match="shots must be >= 1"):
        Pub(qc, np.zeros((1, 0)), 0)
    with pytest.raises(ValueError, match=r"values: expected shape \(rows, 0\)"):
        Pub(qc, np.zeros((1, 2)), 10)


def test_target_limits_name_the_limit():
    ibm = BackendTarget("ibm_x", max_shots=100_000, max_executions=10_000_000)
    assert ibm.job_capacity(4000) == 2500  # 10M executions / 4000 shots
    with pytest.raises(JobTooLargeError, match="200000 shots per circuit exceed ibm_x's limit"):
        ibm.job_capacity(200_000)
    pub, _ = qnn_pub(10, shots=1000)
    with pytest.raises(JobTooLargeError, match="10 circuits exceeds small's limit of 5 circuits"):
        BackendTarget("small", max_circuits=5).check_job([pub])
