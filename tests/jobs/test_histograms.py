"""Raw shots kept for the fidelity report: captured by any backend, journaled, histogrammed
per packed copy by the scheduler."""

import numpy as np
from qiskit.primitives import BitArray

from qvit_hw.backends import JobResult, PubResult, get_backend
from qvit_hw.backends.base import SAMPLE_ROWS, SAMPLE_SHOTS, outcome_bits
from qvit_hw.circuit import chain, qiskit_circuit
from qvit_hw.jobs import QNNCall, QNNRunner, SchedulerConfig
from qvit_hw.jobs.executor import exact_distribution
from qvit_hw.jobs.journal import decode_result, encode_result

SIGNS = 1 - 2 * ((np.arange(16)[:, None] >> np.arange(4)) & 1)  # (16, 4): bit i = qubit i


def test_from_packed_keeps_the_first_rows_shots_for_any_backend():
    bits = np.random.default_rng(0).integers(0, 2, size=(6, 50, 11), dtype=np.uint8)
    packed = BitArray.from_bool_array(bits[..., ::-1].astype(bool), order="big")
    result = PubResult.from_packed(packed.array, 11)
    np.testing.assert_array_equal(result.sample_bits(), bits[:SAMPLE_ROWS])
    assert result.samples.shape == (SAMPLE_ROWS, 50, 2)  # 11 bits packed into 2 bytes
    assert PubResult.from_bits(bits, sample_rows=0).samples is None
    assert PubResult(np.zeros((1, 1)), 0).sample_bits() is None  # exact results: none


def test_samples_survive_the_journal_and_results_without_them_still_decode():
    bits = np.random.default_rng(1).integers(0, 2, size=(2, 30, 3), dtype=np.uint8)
    result = JobResult((PubResult.from_bits(bits), PubResult(np.ones((1, 2)), 0)))
    back = decode_result(encode_result(result))
    np.testing.assert_array_equal(back.pubs[0].sample_bits(), bits)
    np.testing.assert_array_equal(back.pubs[0].z, result.pubs[0].z)
    assert back.pubs[1].samples is None


def test_outcome_bits_of_many_shots_are_a_shuffled_subset_of_the_histogram():
    rng = np.random.default_rng(2)
    counts = np.array([30_000, 10_000, 0, 60_000])
    bits = outcome_bits(np.arange(4), counts, 2, rng)  # (SAMPLE_SHOTS, 2)
    kept = np.bincount(bits @ np.array([1, 2]), minlength=4)
    assert kept.sum() == SAMPLE_SHOTS and kept[2] == 0
    stderr = np.sqrt(SAMPLE_SHOTS * 0.25)
    np.testing.assert_allclose(kept, counts / counts.sum() * SAMPLE_SHOTS, atol=4 * stderr)
    assert not (np.diff(bits @ np.array([1, 2])) >= 0).all()  # not in outcome order


def test_scheduler_histograms_each_packed_copy_and_they_match_the_exact_distribution():
    spec = chain(4)
    rng = np.random.default_rng(3)
    weights = rng.uniform(-np.pi, np.pi, spec.weight_shape)
    angles = rng.uniform(-np.pi, np.pi, (12, 4))
    angles = np.concatenate([angles, angles[:3]])  # duplicates: run once, counted once
    scheduler = QNNRunner(
        get_backend("shots"), SchedulerConfig(shots=2000, job_size=2, poll_interval=0)
    )
    (est,) = scheduler.run([QNNCall("q", spec, weights, angles)])
    assert est.sampled is not None and len(est.sampled) == 12  # 6 jobs x 2 rows (12 unique)
    assert sorted(est.sampled) == list(range(12))  # first occurrences of the unique rows
    assert (est.counts.sum(axis=1) == 2000).all()
    np.testing.assert_allclose(est.counts @ SIGNS / 2000, est.z_raw[est.sampled], atol=1e-12)
    exact = exact_distribution(spec, weights, angles[est.sampled])  # (S, 16)
    # counts follow the exact distribution: within 4 standard errors per outcome
    p = est.counts / 2000
    np.testing.assert_array_less(np.abs(p - exact), 4 * np.sqrt(exact * (1 - exact) / 2000) + 2e-3)
    # and the exact distribution is the circuit's: its marginals are the exact <Z>
    from qvit_hw.backends.simulate import exact_z

    qc = qiskit_circuit(spec, measure=True)
    values = np.array([np.concatenate([x, weights.reshape(-1)]) for x in angles[est.sampled]])
    order = [int(p.name.startswith("w")) * 4 + p.index for p in qc.parameters]
    np.testing.assert_allclose(exact @ SIGNS, exact_z(qc, values[:, order]), atol=1e-12)
