"""Shot estimates, their standard errors, unpacking copies and readout mitigation."""

import numpy as np
import pytest

from qvit_hw.backends import PubResult
from qvit_hw.errors import BackendError
from qvit_hw.jobs.estimate import estimate, standard_error, unpack
from qvit_hw.mitigation.readout import (
    ReadoutCalibration,
    calibration_pubs,
    from_calibration,
    from_properties,
)


def test_estimate_from_bits_and_its_standard_error():
    bits = np.array([[[0, 1], [0, 1], [1, 1], [0, 0]]], dtype=np.uint8)  # (1 row, 4 shots, 2)
    z, se = estimate(PubResult.from_bits(bits))
    np.testing.assert_allclose(z, [[0.5, -0.5]])  # mean of 1 - 2b
    np.testing.assert_allclose(se, [[np.sqrt(0.75 / 4), np.sqrt(0.75 / 4)]])


def test_exact_results_have_zero_stderr():
    z, se = estimate(PubResult(np.array([[0.3, -1.0]]), 0))
    np.testing.assert_array_equal(z, [[0.3, -1.0]])
    np.testing.assert_array_equal(se, 0.0)
    np.testing.assert_array_equal(standard_error(np.array([1.0, -1.0]), 100), 0.0)


def test_unpack_reads_row_r_from_execution_r_over_k_copy_r_mod_k():
    k, n, rows = 3, 2, 7
    per_clbit = np.arange(3 * k * n, dtype=float).reshape(3, k * n)  # 3 executions
    got = unpack(per_clbit, k, n, rows)
    for r in range(rows):
        e, c = divmod(r, k)
        np.testing.assert_array_equal(got[r], per_clbit[e, c * n : (c + 1) * n])
    assert got.shape == (rows, n)  # the last execution's spare copies are dropped


def test_confusion_inversion_recovers_the_true_value():
    rng = np.random.default_rng(0)
    shots, e0, e1 = 200_000, 0.03, 0.08
    true_z = np.array([0.9, 0.2, -0.6])
    p1 = (1 - true_z) / 2
    bits = rng.random((shots, 3)) < p1  # prepared outcomes
    flip = np.where(bits, rng.random((shots, 3)) < e1, rng.random((shots, 3)) < e0)
    read = (bits ^ flip).astype(np.uint8)[None]  # (1, shots, 3)
    raw, raw_se = estimate(PubResult.from_bits(read))
    np.testing.assert_allclose(raw[0], (1 - e0 - e1) * true_z + (e1 - e0), atol=4 * raw_se.max())
    cal = ReadoutCalibration({q: e0 for q in (4, 5, 6)}, {q: e1 for q in (4, 5, 6)}, "test")
    z, se = cal.correct(raw, raw_se, np.array([[4, 5, 6]]))
    assert (np.abs(z - true_z) < 4 * se).all()
    np.testing.assert_allclose(se, raw_se / (1 - e0 - e1))


def test_calibration_circuits_and_their_rates():
    placements = np.array([[7, 8], [3, 4]])  # 2 copies of 2 qubits
    zero, one = calibration_pubs(10, placements, ("ecr", "rz", "sx", "x"), 500)
    assert zero.circuit.count_ops() == {"measure": 4}
    assert one.circuit.count_ops() == {"x": 4, "measure": 4}
    measured = [zero.circuit.find_bit(i.qubits[0]).index for i in zero.circuit.data]
    assert measured == [7, 8, 3, 4]  # clbit c n + i reads placement[c][i]
    cal = from_calibration(np.array([0.98, 1.0, 0.96, 0.9]), np.array([-0.9, -1.0, -0.94, -0.8]),
                           placements, 500)  # fmt: skip
    assert cal.e0[7] == pytest.approx(0.01) and cal.e1[4] == pytest.approx(0.1)
    assert cal.source == "calibration circuits, 500 shots"


def test_properties_must_cover_every_qubit_read():
    cal = from_properties({1: (0.01, 0.02), 2: (0.03, 0.04)}, np.array([[1, 2]]), "dev")
    assert (cal.e0[2], cal.e1[2]) == (0.03, 0.04)
    with pytest.raises(BackendError, match=r"dev reports no readout errors for qubits \[3\]"):
        from_properties({1: (0.01, 0.02)}, np.array([[1, 3]]), "dev")


def test_unusable_readout_is_refused():
    cal = ReadoutCalibration({0: 0.5}, {0: 0.48}, "test")
    with pytest.raises(BackendError, match="too poor to invert"):
        cal.correct(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1), dtype=int))
