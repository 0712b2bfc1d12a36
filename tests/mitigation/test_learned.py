"""Learned mitigation: affine maps per physical qubit from rows of known exact answer."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from qvit_hw.backends import get_backend
from qvit_hw.circuit import chain, expectations, random_inputs
from qvit_hw.cli import app
from qvit_hw.jobs import QNNCall, QNNRunner, SchedulerConfig
from qvit_hw.mitigation import parse_mitigation
from qvit_hw.mitigation.learned import IDENTITY_P, LearnedCalibration, fit_affine, shrink


def synthetic(rows: int, qubits: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    exact = rng.uniform(-1, 1, (rows, len(qubits)))
    return np.tile(np.array(qubits), (rows, 1)), exact


def test_a_known_shrink_and_offset_are_recovered_exactly_without_noise():
    q, exact = synthetic(200, (5, 9, 2, 7))
    a, b = np.array([0.9, 0.8, 0.95, 0.7]), np.array([0.02, -0.03, 0.0, 0.05])
    measured = a * exact + b
    cal = fit_affine(q, exact, measured, np.zeros_like(exact), rows=200)
    order = np.argsort([5, 9, 2, 7])
    np.testing.assert_allclose(cal.a, a[order], atol=1e-12)
    np.testing.assert_allclose(cal.b, b[order], atol=1e-12)
    z, se = cal.correct(measured, np.zeros_like(measured), q)
    np.testing.assert_allclose(z, exact, atol=1e-12)
    np.testing.assert_allclose(se, 0.0, atol=1e-9)  # no shot noise, no scatter: no error


def test_with_shots_the_fit_is_within_four_standard_errors_and_errors_are_honest():
    shots, rows = 1000, 4000
    q, exact = synthetic(rows, (0, 1, 2, 3), seed=1)
    a, b = np.array([0.97, 0.9, 0.8, 0.99]), np.array([-0.01, 0.02, 0.04, 0.0])
    p_one = (1 - (a * exact + b)) / 2
    rng = np.random.default_rng(2)
    measured = 1 - 2 * rng.binomial(shots, p_one) / shots
    stderr = np.sqrt((1 - measured**2) / shots)
    cal = fit_affine(q, exact, measured, stderr, rows=rows)
    assert (np.abs(cal.a - a) <= 4 * np.sqrt(cal.cov[:, 0, 0])).all()
    assert (np.abs(cal.b - b) <= 4 * np.sqrt(cal.cov[:, 1, 1])).all()
    # fresh data rows: corrected values and their errors give z-scores of spread ~1
    exact2 = np.random.default_rng(3).uniform(-0.9, 0.9, (rows, 4))
    m2 = 1 - 2 * rng.binomial(shots, (1 - (a * exact2 + b)) / 2) / shots
    z, se = cal.correct(m2, np.sqrt((1 - m2**2) / shots), q)
    zscores = (z - exact2) / se
    assert 0.95 < zscores.std() < 1.05 and abs(zscores.mean()) < 0.05


def test_fits_within_their_errors_of_the_identity_become_the_identity():
    rng = np.random.default_rng(5)
    cov = np.tile(np.diag([1e-4, 4e-5]), (40, 1, 1))  # (Q, 2, 2)
    noise = rng.normal(size=(40, 2)) * np.sqrt([1e-4, 4e-5])
    theta, shrunk_cov, p = shrink(np.array([1.0, 0.0]) + noise, cov)
    assert p > IDENTITY_P
    assert (theta == [1.0, 0.0]).all() and (shrunk_cov == 0).all()


def test_qubits_that_truly_differ_keep_their_fits_and_noise_is_pulled_to_their_mean():
    rng = np.random.default_rng(6)
    truth = np.stack([rng.uniform(0.8, 0.99, 40), rng.uniform(-0.05, 0.05, 40)], axis=1)
    se = np.sqrt([1e-4, 4e-5])
    cov = np.tile(np.diag(se**2), (40, 1, 1))
    fits = truth + rng.normal(size=(40, 2)) * se
    theta, post, p = shrink(fits, cov)
    assert p < 1e-12
    # the shrunk fits are closer to the truth than the raw ones, and stay within 4 errors
    assert np.abs(theta - truth).mean() < np.abs(fits - truth).mean()
    assert (np.abs(theta - truth) <= 4 * se).all()
    assert (np.abs(theta - fits) <= 0.2 * np.abs(fits - fits.mean(axis=0)) + 2 * se).all()
    assert (post[:, 0, 0] <= cov[:, 0, 0]).all()  # the prior adds information


def test_a_qubit_that_keeps_too_little_signal_is_refused():
    q, exact = synthetic(50, (0, 1))
    with pytest.raises(Exception, match=r"qubits \[1\] keep less than 20% of <Z>"):
        fit_affine(q, exact, exact * np.array([1.0, 0.1]), np.zeros_like(exact), rows=50)


def test_mitigations_are_named_in_order():
    assert parse_mitigation("readout,learned") == ("readout", "learned")
    assert parse_mitigation("none") == () and parse_mitigation("learned") == ("learned",)
    with pytest.raises(ValueError, match="--mitigate must be one of none, readout"):
        parse_mitigation("learned,learned")


def test_calibration_rows_sit_on_the_data_rows_physical_qubits():
    spec = chain(4)
    x, w = random_inputs(spec, 40, seed=4)
    config = SchedulerConfig(shots=2000, max_copies=4, poll_interval=0, calibration_rows=96)
    runner = QNNRunner(get_backend("fake_brisbane?noise=0"), config, mitigation="learned")
    (est,) = runner.run([QNNCall("q", spec, w.numpy(), x.numpy())])
    ((learned,),) = [list(by.values()) for by in runner.fitted().values()]
    assert isinstance(learned, LearnedCalibration)
    template = runner.template(spec).compiled
    assert set(learned.qubits.tolist()) == set(np.asarray(template.placements).ravel().tolist())
    assert set(np.unique(est.qubits).tolist()) <= set(learned.qubits.tolist())
    assert learned.rows == 96 and runner.stats.calibration_executions == 24  # 96 rows / 4
    # an ideal device: the fits are consistent with the identity, which is then applied exactly
    assert learned.p_value > IDENTITY_P
    assert (learned.a == 1).all() and (learned.b == 0).all() and (learned.excess == 0).all()
    truth = expectations(spec, x, w).numpy()
    assert (np.abs(est.z - truth) <= 4 * est.stderr + 2 / 2000).all()


def test_learned_runs_are_journaled_resume_pays_nothing_and_ideal_backends_change_nothing(
    bundle, tmp_path
):
    runner = CliRunner()
    common = ("--limit", "4", "--batch-size", "2", "--shots", "500", "--calibration-rows", "256")
    plain, learned = tmp_path / "plain", tmp_path / "learned"
    state = tmp_path / "mock"
    backend = f"mock?inner=shots&state={state}"
    assert runner.invoke(app, ["run", bundle, "--backend", backend, *common,
                               "--out", str(plain)]).exit_code == 0  # fmt: skip
    result = runner.invoke(app, ["run", bundle, "--backend", backend, *common,
                                 "--mitigate", "learned", "--out", str(learned)])  # fmt: skip
    assert result.exit_code == 0, result.output
    cost = json.loads((learned / "cost.json").read_text())
    assert cost["calibration_executions"] == 256 and cost["calibration_jobs"] >= 1
    a, b = (json.loads((d / "run.json").read_text())["summary"] for d in (plain, learned))
    assert a["z_mae"] == pytest.approx(b["z_mae_raw"], rel=1e-12)  # same shots, same rows
    assert b["z_mae"] == pytest.approx(a["z_mae"], rel=1e-12)  # it does not fit shot noise
    with (plain / "predictions.csv").open() as f, (learned / "predictions.csv").open() as g:
        pred_a = [line.split(",")[2] for line in f]
        pred_b = [line.split(",")[2] for line in g]
    assert pred_a == pred_b
    run = json.loads((learned / "run.json").read_text())
    stages = run["summary"]["stages"]  # every correction's effect, side by side
    assert [st["name"] for st in stages] == ["raw", "learned"]
    assert stages[0]["z_mae"] == pytest.approx(b["z_mae_raw"]) and stages[0]["agreement"] == 1.0
    assert stages[1]["agreement"] == b["agreement"] and stages[1]["z_mae"] == pytest.approx(
        b["z_mae"]
    )
    (fitted,) = run["corrections"].values()
    assert set(fitted) == {"learned"} and fitted["learned"]["rows"] == 256
    paid = len((state / "submits.jsonl").read_text().splitlines())
    args = ["run", bundle, "--backend", backend, *common, "--mitigate", "learned"]
    again = runner.invoke(app, [*args, "--out", str(learned), "--resume"])
    assert again.exit_code == 0, again.output
    assert len((state / "submits.jsonl").read_text().splitlines()) == paid  # nothing re-paid
    assert json.loads((learned / "cost.json").read_text())["submitted"] == 0


def test_auto_packing_holds_more_copies_once_learned_mitigation_is_on():
    backend = get_backend("fake_brisbane?noise=0")
    plain = QNNRunner(backend, SchedulerConfig(), mitigation="readout")
    learned = QNNRunner(backend, SchedulerConfig(), mitigation="readout,learned")
    assert (plain.packing, learned.packing) == ("best", "max")
    assert (
        learned.template(chain(4)).compiled.copies == 26 > plain.template(chain(4)).compiled.copies
    )
    forced = QNNRunner(backend, SchedulerConfig(packing="best"), mitigation="learned")
    assert forced.packing == "best"
    with pytest.raises(ValueError, match="--packing must be one of auto, best, max"):
        SchedulerConfig(packing="most")
