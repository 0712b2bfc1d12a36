"""`qvit-hw run --mitigate ...,fourier`: the fit over a whole run, end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qvit_hw.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["run", *args])


@pytest.fixture(scope="module")
def runs(bundle, tmp_path_factory) -> dict[str, Path]:
    """The same 40 images (640 rows per QNN) at 300 shots, with and without the fit."""
    root = tmp_path_factory.mktemp("fourier")
    out = {}
    for name, mitigate in (("raw", "none"), ("fit", "fourier")):
        out[name] = root / name
        result = run(bundle, "--backend", "shots?seed=3", "--shots", "300", "--limit", "40",
                     "--batch-size", "20", "--mitigate", mitigate,
                     "--out", str(out[name]))  # fmt: skip
        assert result.exit_code == 0, result.output
    return out


def test_the_fit_replaces_each_row_by_the_run_wide_function(runs):
    raw, fit = (np.load(runs[k] / "rows.npz") for k in ("raw", "fit"))
    # the row-level values are the unfitted run's, kept beside the fitted ones
    assert np.array_equal(fit["estimate_row"], raw["estimate"])
    err_raw = np.abs(raw["estimate"] - raw["exact"]).mean()
    err_fit = np.abs(fit["estimate"] - fit["exact"]).mean()
    assert err_fit < err_raw / 3  # 81 terms from 640 rows of 300 shots
    z = (fit["estimate"] - fit["exact"]) / fit["stderr"]
    assert 0.8 < z.std() < 1.2 and abs(z.mean()) < 0.2
    corrections = json.loads((runs["fit"] / "corrections.json").read_text())
    stages = [s["name"] for s in corrections["stages"]]
    assert stages == ["raw", "fourier"]
    summary = corrections["fourier"]["block0.head0.q"]
    assert [o["terms"] for o in summary] == [9, 27, 81, 81]
    assert summary[0]["reason"] == "one placement"
    coef = np.load(runs["fit"] / "fourier.npz")
    assert coef["coef|block0.head0.q|3|all"].shape == (81,)
    assert coef["exact|block0.head0.q|3"].shape == (81,)


def test_flip_probabilities_come_from_coefficient_draws(runs):
    import csv

    with (runs["fit"] / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    flip = np.array([float(r["flip_probability"]) for r in rows])
    assert np.allclose(flip * 256, np.round(flip * 256), atol=1e-3)  # shares of 256 draws
    assert (flip <= 1).all() and flip.sum() > 0


def test_fourier_refuses_adaptive_shots_and_a_place_before_row_level_corrections(bundle, tmp_path):
    result = run(bundle, "--backend", "shots", "--shots", "auto", "--mitigate", "fourier",
                 "--out", str(tmp_path / "a"))  # fmt: skip
    assert result.exit_code == 1 and "does not compose with --mitigate fourier" in result.output
    assert not (tmp_path / "a").exists()
    result = run(bundle, "--backend", "shots", "--mitigate", "fourier,readout",
                 "--out", str(tmp_path / "b"))  # fmt: skip
    assert result.exit_code == 1 and "so it comes last" in result.output


def test_a_resumed_fitted_run_gives_the_same_predictions(bundle, runs, tmp_path):
    out = tmp_path / "again"
    args = (bundle, "--backend", "shots?seed=3", "--shots", "300", "--limit", "40",
            "--batch-size", "20", "--mitigate", "fourier", "--out", str(out))  # fmt: skip
    assert run(*args).exit_code == 0
    (out / "predictions.csv").unlink()
    result = run(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert (out / "predictions.csv").read_bytes() == (runs["fit"] / "predictions.csv").read_bytes()


def test_the_report_shows_the_device_spectrum_beside_the_ideal_one(runs):
    result = runner.invoke(app, ["report", str(runs["fit"])])
    assert result.exit_code == 0, result.output
    report = json.loads((runs["fit"] / "report.json").read_text())
    spectra = report["fourier_spectrum"]
    assert [s["qnn"] for s in spectra][:2] == ["block0.head0.q", "block0.head0.k"]
    for s in spectra:  # an ideal device: the determined terms are the circuit's own
        device, exact = np.array(s["device"]), np.array(s["exact"])
        assert s["terms"] > 0 and np.allclose(device, exact, atol=0.06)
    html = (runs["fit"] / "report.html").read_text()
    assert "Fourier spectrum per QNN" in html and "Agreement vs what the run spent" in html


def test_the_fit_carries_the_readout_calibrations_error_unless_learned_absorbs_it(bundle, tmp_path):
    """readout,fourier: each fitted group holds its readout calibration's error (the
    variances of e0 and e1 measured on 50,000 shots, over (1 - e0 - e1)^2, weighted by
    each qubit's share of the group's rows); readout,learned,fourier: none (learned's maps
    are fitted on calibration rows corrected with the same rates); learned,readout,fourier:
    learned's rows were not read through those rates, so the error stays."""
    found = {}
    for mitigate in ("readout,fourier", "readout,learned,fourier", "learned,readout,fourier"):
        out = tmp_path / mitigate
        result = run(bundle, "--backend", "fake_brisbane", "--limit", "6", "--max-copies", "2",
                     "--mitigate", mitigate, "--out", str(out))  # fmt: skip
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "corrections.json").read_text())["fourier"]
        found[mitigate] = [g["readout_var"] for outputs in summary.values()
                           for o in outputs for g in o["groups"].values()]  # fmt: skip
    assert all(v == [0.0, 0.0] for v in found["readout,learned,fourier"])
    assert all(min(v) > 0 for v in found["learned,readout,fourier"])
    out = tmp_path / "readout,fourier"
    (cal,) = json.loads((out / "run.json").read_text())["readout_calibration"].values()
    assert cal["shots"] == 50000
    with np.load(out / "rows.npz") as rows:
        names = [str(n) for n in rows["names"]]
        qubits, qnn = rows["qubits"], rows["qnn"]
    summary = json.loads((out / "corrections.json").read_text())["fourier"]
    for q, name in enumerate(names):
        for i, o in enumerate(summary[name]):
            for key, g in o["groups"].items():
                mine = qubits[qnn == q, i]
                mine = mine if key == "all" else mine[mine == int(key)]
                expected = np.zeros(2)
                for p, count in zip(*np.unique(mine, return_counts=True), strict=True):
                    e0, e1 = cal["qubits"][str(p)]
                    var = np.array([e0 * (1 - e0), e1 * (1 - e1)]) / 50000 / (1 - e0 - e1) ** 2
                    expected += (count / len(mine)) ** 2 * var
                assert np.allclose(g["readout_var"], expected, rtol=1e-6) and expected.min() > 0
