"""--readout-shots: the readout calibration circuits' own shots (their error is shared by
every row read on a qubit, and two circuits per template cost little)."""

import json

from typer.testing import CliRunner

from qvit_hw.cli import app


def test_readout_calibration_takes_its_own_shots(bundle, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", bundle, "--backend", "fake_brisbane", "--limit",
                                      "1", "--mitigate", "readout", "--readout-shots", "5000",
                                      "--max-copies", "2", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    (calibration,) = run["readout_calibration"].values()
    assert calibration["source"] == "calibration circuits, 5000 shots"
    assert run["identity"]["readout_shots"] == 5000
    limited = "mock?inner=fake_brisbane&max_shots=4000"
    result = CliRunner().invoke(app, ["run", bundle, "--backend", limited, "--limit", "1",
                                      "--mitigate", "readout", "--readout-shots", "5000",
                                      "--out", str(tmp_path / "b")])  # fmt: skip
    assert result.exit_code == 1 and "pass --readout-shots 4000 or fewer" in result.output


def test_a_run_level_fit_gives_readout_calibration_50000_shots_within_the_limit(bundle, tmp_path):
    """readout,fourier without --readout-shots: the calibration takes 50,000 shots (the fit
    brings each row's noise below the error 1,000 calibration shots would leave), or the
    backend's limit where that is lower; readout alone keeps --shots."""
    limited = "mock?inner=fake_brisbane&max_shots=20000"
    for mitigate, backend, shots in (("readout,fourier", "fake_brisbane", 50000),
                                     ("readout,fourier", limited, 20000),
                                     ("readout", "fake_brisbane", 1000)):  # fmt: skip
        out = tmp_path / f"{mitigate}-{shots}"
        result = CliRunner().invoke(app, ["run", bundle, "--backend", backend, "--limit", "6",
                                          "--mitigate", mitigate, "--max-copies", "2",
                                          "--out", str(out)])  # fmt: skip
        assert result.exit_code == 0, result.output
        run = json.loads((out / "run.json").read_text())
        (calibration,) = run["readout_calibration"].values()
        assert calibration["source"] == f"calibration circuits, {shots} shots"
        assert run["identity"]["readout_shots"] is None
