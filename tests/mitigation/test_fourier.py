"""The run-level Fourier fit: exact on exact rows, honest error bars on sampled ones."""

import time

import numpy as np
import pytest
import torch

from qvit_hw.circuit import QNNSpec, chain, expectations, tree
from qvit_hw.mitigation.fourier import (
    design_grid,
    exact_coefficients,
    features,
    fit_output,
    fit_outputs,
    light_cone,
    term_weights,
)


def exact_z(spec: QNNSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return expectations(spec, torch.from_numpy(x), torch.from_numpy(w)).double().numpy()


def test_light_cones_follow_the_pairs_backwards():
    assert [light_cone(chain(4), i) for i in range(4)] == [
        (0, 1), (0, 1, 2), (0, 1, 2, 3), (0, 1, 2, 3)
    ]  # fmt: skip
    assert light_cone(tree(8), 7) == (0, 1, 3, 7)
    assert light_cone(tree(8), 0) == (0, 1, 2)
    with pytest.raises(ValueError, match=r"output must be in 0\.\.3"):
        light_cone(chain(4), 4)


def test_features_are_the_product_basis_and_orthogonal_on_the_grid():
    x = np.array([[0.3, -1.2]])
    f = features(x)
    c0, s0, c1, s1 = np.cos(0.3), np.sin(0.3), np.cos(-1.2), np.sin(-1.2)
    assert np.allclose(f[0], [1, c1, s1, c0, c0 * c1, c0 * s1, s0, s0 * c1, s0 * s1])
    assert term_weights(2).tolist() == [0, 1, 1, 1, 2, 2, 1, 2, 2]
    g = features(design_grid(3))
    gram = g.T @ g
    assert np.allclose(gram, np.diag(np.diag(gram)))


@pytest.mark.parametrize("spec", [chain(4), tree(4), tree(8)], ids=str)
def test_on_exact_rows_the_fit_reproduces_the_exact_values(spec):
    """statevector rows (shots 0) at random angles: fitted values equal the exact ones to
    1e-9 on rows the fit has not seen, and so do the coefficients of the exact
    interpolation. (chain(8) has two outputs of 6,561 terms, a minute of least squares on
    random rows: the grid test below shows it exact on characterize's design.)"""
    rng = np.random.default_rng(0)
    w = rng.uniform(-np.pi, np.pi, spec.weight_shape)
    p = max(3 ** len(light_cone(spec, i)) for i in range(spec.n_qubits))
    x = rng.uniform(-np.pi, np.pi, (p + 200, spec.n_qubits))
    z = exact_z(spec, x, w)
    fresh = rng.uniform(-np.pi, np.pi, (50, spec.n_qubits))
    z_fresh = exact_z(spec, fresh, w)
    coefs = exact_coefficients(spec, w)
    zero = np.zeros(len(x))
    fits = fit_outputs(spec, x, z, 0 * z, zero.astype(int), np.zeros(z.shape, int))
    for i, fit in enumerate(fits):
        g = fit.groups[()]
        f = features(fresh[:, list(fit.cone)])
        assert np.abs(g.values(f) - z_fresh[:, i]).max() < 1e-9
        assert np.abs(g.coef - coefs[i]).max() < 1e-9
        assert g.stderr(f).max() < 1e-6


def sampled(z: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """Per-qubit shot means of exact values z (marginals drawn apart: enough for a fit)."""
    return 1.0 - 2.0 * rng.binomial(shots, (1.0 - z) / 2.0) / shots


def test_on_sampled_rows_fitted_values_are_honest_and_far_more_precise():
    """1,000 shots per row: fitted values' z-scores against exact have sd within 10 % of 1
    (pooled over 4 QNNs: one fit's z-scores share 81 coefficients, so one fit alone moves
    by about 8 %), and their error is a small fraction of a row's own."""
    spec = chain(4)
    zs = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        w = rng.uniform(-np.pi, np.pi, spec.weight_shape)
        x = rng.uniform(-np.pi, np.pi, (4000, 4))
        z = exact_z(spec, x, w)
        y = sampled(z, 1000, rng)
        se = np.sqrt((1 - y**2) / 1000)
        fits = fit_outputs(spec, x, y, se, np.full(len(x), 1000), np.zeros(z.shape, int))
        for i, fit in enumerate(fits):
            g = fit.groups[()]
            f = features(x[:, list(fit.cone)])
            err = g.values(f) - z[:, i]
            zs.append(err / g.stderr(f))
            assert np.abs(err).mean() < 0.25 * np.abs(y[:, i] - z[:, i]).mean()
            assert 0.8 < g.phi < 1.2  # the variance model fits shot noise
    assert 0.9 < np.concatenate(zs).std() < 1.1


def test_placements_are_pooled_when_they_agree_and_fitted_apart_when_they_differ():
    spec, rng = chain(4), np.random.default_rng(2)
    w = rng.uniform(-np.pi, np.pi, spec.weight_shape)
    x = rng.uniform(-np.pi, np.pi, (2000, 4))
    z = exact_z(spec, x, w)[:, 3]
    qubit = np.repeat([10, 20], 1000)  # two placements
    shots = np.full(len(x), 1000)
    same = sampled(z, 1000, rng)
    se = np.sqrt((1 - same**2) / 1000)
    fit = fit_output(spec, 3, x, same, se, shots, qubit)
    assert fit.pooled and "agree" in fit.reason and list(fit.groups) == [()]
    biased = np.where(qubit == 20, 0.9 * same, same)  # placement 20 loses 10 % of <Z>
    fit = fit_output(spec, 3, x, biased, se, shots, qubit)
    assert not fit.pooled and sorted(fit.groups) == [(10,), (20,)] and fit.p_value < 1e-3
    f = features(x[qubit == 20][:, list(fit.cone)])
    assert np.abs(fit.groups[(20,)].values(f) - 0.9 * z[qubit == 20]).mean() < 0.01
    few = fit_output(
        spec, 3, x[:300], biased[:300], se[:300], shots[:300], qubit[:300] * 0 + np.arange(300) % 2
    )
    assert few.pooled and "fewer than 3 rows per term" in few.reason


def test_zero_noise_rows_are_pooled_untested_and_the_pooled_fit_averages_their_biases():
    """After zne every placement estimates the one ideal function; what is left apart is
    each one's residual bias. pool=True fits them together whatever the test would say:
    opposite biases of 2 % average out, and the pooled fit's phi (> 1) carries the scatter
    into its error bars."""
    from qvit_hw.mitigation.fourier import POOLED_ZNE

    spec, rng = chain(4), np.random.default_rng(4)
    w = rng.uniform(-np.pi, np.pi, spec.weight_shape)
    x = rng.uniform(-np.pi, np.pi, (8000, 4))
    z = exact_z(spec, x, w)[:, 3]
    qubit = np.repeat([10, 20], 4000)
    shots = np.full(len(x), 1000)
    biased = sampled(np.where(qubit == 20, 0.98 * z, 1.02 * z), 1000, rng)
    se = np.sqrt((1 - biased**2) / 1000)
    apart = fit_output(spec, 3, x, biased, se, shots, qubit)
    assert not apart.pooled  # the test rejects pooling
    f = features(x[:, list(apart.cone)])
    apart_error = np.mean([np.abs(apart.groups[(q,)].values(f) - z).mean() for q in (10, 20)])
    fit = fit_output(spec, 3, x, biased, se, shots, qubit, pool=True)
    assert fit.pooled and fit.reason == POOLED_ZNE and list(fit.groups) == [()]
    group = fit.groups[()]
    assert np.abs(group.values(f) - z).mean() < 0.6 * apart_error, apart_error
    assert group.phi > 1.0


@pytest.mark.parametrize("spec", [chain(4), tree(4), chain(8), tree(8)], ids=str)
def test_on_the_design_grid_the_fit_interpolates_exactly_and_fast(spec):
    """characterize's design: the 3^n grid, exact rows -> the kernel interpolation gives
    exact values anywhere (1e-9), n = 8 included, in well under a second per QNN."""
    from qvit_hw.mitigation.fourier import FourierFit, fit_run

    rng = np.random.default_rng(3)
    w = rng.uniform(-np.pi, np.pi, spec.weight_shape)
    grid = design_grid(spec.n_qubits)
    z = exact_z(spec, grid, w)
    rows = {"qnn": np.zeros(len(grid), int), "angles": grid, "estimate": z,
            "stderr": 0 * z, "shots": np.zeros(len(grid), int),
            "qubits": np.zeros(z.shape, int) + np.arange(spec.n_qubits)}  # fmt: skip
    start = time.perf_counter()
    fit: FourierFit = fit_run({"q": spec}, rows, ["q"], grid=True)
    fresh = rng.uniform(-np.pi, np.pi, (300, spec.n_qubits))
    values, se = fit.evaluate("q", fresh, np.zeros(fresh.shape, int) + np.arange(spec.n_qubits))
    assert time.perf_counter() - start < 5
    assert np.abs(values - exact_z(spec, fresh, w)).max() < 1e-9 and se.max() == 0
    coefs = exact_coefficients(spec, w)
    for i, out in enumerate(fit.outputs["q"]):
        assert np.abs(out.groups[()].coef - coefs[i]).max() < 1e-9


def test_grid_fit_with_shots_is_honest_and_pools_equal_placements():
    """Two placements of one ideal device, 1,000 shots: pooled, z-scores sd near 1 (the
    grid's cells pool 2 x 27 replicates for <Z_0>, whose cone is 2 qubits)."""
    from qvit_hw.mitigation.fourier import fit_run

    spec, rng = chain(4), np.random.default_rng(4)
    w = rng.uniform(-np.pi, np.pi, spec.weight_shape)
    grid = design_grid(4)
    angles = np.concatenate([grid, grid])
    z = exact_z(spec, angles, w)
    y = sampled(z, 1000, rng)
    qubits = np.concatenate([np.tile([0, 1, 2, 3], (81, 1)), np.tile([5, 6, 7, 8], (81, 1))])
    rows = {"qnn": np.zeros(len(angles), int), "angles": angles, "estimate": y,
            "stderr": np.sqrt((1 - y**2) / 1000), "shots": np.full(len(angles), 1000),
            "qubits": qubits}  # fmt: skip
    fit = fit_run({"q": spec}, rows, ["q"], grid=True)
    assert all(o.pooled for o in fit.outputs["q"])
    fresh = rng.uniform(-np.pi, np.pi, (2000, 4))
    values, se = fit.evaluate("q", fresh, np.tile([5, 6, 7, 8], (2000, 1)))
    zs = (values - exact_z(spec, fresh, w)) / se
    assert 0.85 < zs.std() < 1.15
    draws = fit.draws("q", fresh[:5], np.tile([5, 6, 7, 8], (5, 1)), 4000, seed=1)
    assert np.allclose(draws.std(axis=0), se[:5], rtol=0.1)


def readout_corrected_rows(spec, w, x, qubits, rates, cal_shots, rng):
    """Rows of a device that keeps 90 % of each exact <Z> (its gates' noise) and reads with
    errors ``rates`` (qubit -> (e0, e1)), at 1,000 shots, corrected with a calibration of
    ``cal_shots`` per circuit: the rows for `fit_run` and the calibration. (Without the
    gates' shrink, rows whose readout-corrected value is near +-1 get far too much weight:
    the fit's variance model is binomial at the corrected value, not at the raw one, a
    limit noted in the fit's docstring.)"""
    from qvit_hw.mitigation.readout import from_calibration

    placements = np.unique(qubits, axis=0)
    flat = placements.reshape(-1)
    e0 = rng.binomial(cal_shots, [rates[q][0] for q in flat]) / cal_shots
    e1 = rng.binomial(cal_shots, [rates[q][1] for q in flat]) / cal_shots
    cal = from_calibration(1 - 2 * e0, 2 * e1 - 1, placements, cal_shots)
    z = 0.9 * exact_z(spec, x, w)
    r0 = np.vectorize(lambda q: rates[q][0])(qubits)
    r1 = np.vectorize(lambda q: rates[q][1])(qubits)
    ones = (1 - z) / 2 * (1 - r1) + (1 + z) / 2 * r0  # p(read 1)
    raw = 1 - 2 * rng.binomial(1000, ones) / 1000
    y, se = cal.correct(raw, np.sqrt((1 - raw**2) / 1000), qubits)
    rows = {"qnn": np.zeros(len(x), int), "angles": x, "estimate": y, "stderr": se,
            "shots": np.full(len(x), 1000), "qubits": qubits}  # fmt: skip
    return rows, cal


def test_the_readout_calibrations_own_error_is_in_the_fitted_values_error_bars():
    """A readout-corrected run shares its calibration's error on every row read on a qubit:
    with 2,000 calibration shots it is larger than the fit's own error, so without it the
    fitted values' z-scores against exact spread 1.8x too wide; with the calibration's
    offsets (`ReadoutCalibration.offset_variances`), within 10 % of 1, over 40 runs of
    four placements (pooled or apart, as the fit decides) and in the coefficient draws."""
    from qvit_hw.mitigation.fourier import fit_run

    spec = tree(4)
    rng = np.random.default_rng(5)
    w = rng.uniform(-np.pi, np.pi, spec.weight_shape)
    placements = np.arange(16).reshape(4, 4) + 10
    rates = {int(q): (rng.uniform(0.01, 0.05), rng.uniform(0.02, 0.08)) for q in placements.flat}
    fresh = rng.uniform(-np.pi, np.pi, (100, 4))
    plain, honest, drawn = [], [], []
    for _ in range(40):
        x = rng.uniform(-np.pi, np.pi, (4000, 4))
        qubits = placements[np.arange(len(x)) % 4]
        rows, cal = readout_corrected_rows(spec, w, x, qubits, rates, 2000, rng)
        offsets = cal.offset_variances()
        q = placements[np.arange(len(fresh)) % 4]
        truth = 0.9 * exact_z(spec, fresh, w)
        for readout, zs in ((None, plain), ({"q": offsets}, honest)):
            fit = fit_run({"q": spec}, rows, ["q"], readout=readout)
            values, se = fit.evaluate("q", fresh, q)
            zs.append(((values - truth) / se).ravel())
        drawn.append(fit.draws("q", fresh[:3], q[:3], 2000, seed=1).std(axis=0) / se[:3])
    e0, e1 = cal.e0[10], cal.e1[10]
    assert offsets[10] == pytest.approx(
        (e0 * (1 - e0) / 2000 / (1 - e0 - e1) ** 2, e1 * (1 - e1) / 2000 / (1 - e0 - e1) ** 2)
    )
    assert np.concatenate(plain).std() > 1.5
    assert 0.9 < np.concatenate(honest).std() < 1.1
    assert np.allclose(np.concatenate(drawn), 1, atol=0.1)


def test_a_surrogate_keeps_its_readout_calibrations_error():
    """characterize's grid fit with readout offsets: the saved surrogate gives the same
    values and error bars, and the error bars hold the offsets' variance on top of the
    cells' (a file written before the offsets were kept loads with none)."""
    from qvit_hw.mitigation.fourier import fit_run, load_fit, save_fit

    spec, rng = chain(4), np.random.default_rng(6)
    w = rng.uniform(-np.pi, np.pi, spec.weight_shape)
    grid = design_grid(4)
    qubits = np.tile([0, 1, 2, 3], (len(grid), 1))
    rates = {q: (0.02, 0.04) for q in range(4)}
    rows, cal = readout_corrected_rows(spec, w, grid, qubits, rates, 2000, rng)
    with_offsets = fit_run({"q": spec}, rows, ["q"], grid=True,
                           readout={"q": cal.offset_variances()})  # fmt: skip
    without = fit_run({"q": spec}, rows, ["q"], grid=True)
    arrays = save_fit(with_offsets, {"q": w})
    loaded, _ = load_fit(arrays)
    fresh = rng.uniform(-np.pi, np.pi, (50, 4))
    q = np.tile([0, 1, 2, 3], (50, 1))
    z, se = with_offsets.evaluate("q", fresh, q)
    z_loaded, se_loaded = loaded.evaluate("q", fresh, q)
    assert np.array_equal(z, z_loaded) and np.allclose(se, se_loaded, rtol=1e-12)
    z_plain, se_plain = without.evaluate("q", fresh, q)
    e0, e1 = cal.e0[0], cal.e1[0]
    offsets = np.array([e0 * (1 - e0), e1 * (1 - e1)]) / 2000 / (1 - e0 - e1) ** 2
    zc = np.clip(z[:, 0], -1, 1)
    extra = (1 + zc) ** 2 * offsets[0] + (1 - zc) ** 2 * offsets[1]
    assert np.array_equal(z, z_plain)
    assert np.allclose(se[:, 0] ** 2, se_plain[:, 0] ** 2 + extra, rtol=1e-9)
    old = {k: v for k, v in arrays.items() if not k.startswith("readout|")}
    _, se_old = load_fit(old)[0].evaluate("q", fresh, q)
    assert np.allclose(se_old, se_plain, rtol=1e-12)
