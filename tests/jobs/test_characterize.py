"""`qvit-hw characterize` + `--backend surrogate:DIR`: measure a device once, diagnose any
number of images with no job submitted."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.data import Normalization
from qvit_hw.export import export_bundle
from qvit_hw.jobs.characterize import design_calls
from qvit_hw.mitigation.fourier import design_grid
from qvit_hw.model import QViT

runner = CliRunner()
N4 = ("--max-copies", "1")  # one placement: the direct run's fit and the surrogate share it


def cli(*args: str):
    return runner.invoke(app, list(args))


def submits(state: Path) -> int:
    log = state / "submits.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture(scope="module")
def measured(bundle, tmp_path_factory) -> dict[str, Path]:
    """fake_brisbane through a mock that logs submits: a characterization at 20,000 shots
    per grid point and a direct fitted run of 40 images (640 rows per QNN), both without
    readout mitigation (its calibration's own error is not in the rows' error bars, and
    the two would calibrate apart)."""
    root = tmp_path_factory.mktemp("characterize")
    state = root / "state"
    backend = f"mock?inner=fake_brisbane&state={state}"
    char = root / "char"
    result = cli("characterize", bundle, "--backend", backend, "--shots", "20000",
                 "--out", str(char), *N4)  # fmt: skip
    assert result.exit_code == 0, result.output
    direct = root / "direct"
    result = cli("run", bundle, "--backend", backend, "--shots", "1000", "--limit", "40",
                 "--batch-size", "20", "--mitigate", "fourier", "--out", str(direct),
                 *N4)  # fmt: skip
    assert result.exit_code == 0, result.output
    return {"char": char, "direct": direct, "state": state, "root": root}


def test_the_design_puts_every_grid_point_on_every_copy():
    from qvit_hw.circuit import chain

    calls = design_calls("q", chain(4), np.zeros((3, 2)), 3)
    grid = design_grid(4)
    for c, call in enumerate(calls):
        unique = np.unique(call.angles, axis=0)  # what the plan packs, in its order
        on_grid = unique[c:]  # the c padding rows sort first
        assert np.array_equal(on_grid, grid)
        copies = (c + np.arange(len(grid))) % 3
        assert np.bincount(copies, minlength=3).min() > 0
    seen = {(g, (g + c) % 3) for c in range(3) for g in range(len(grid))}
    assert len(seen) == 3 * len(grid)


def test_a_surrogate_run_submits_nothing_and_agrees_with_the_direct_fitted_run(measured, bundle):
    record = json.loads((measured["char"] / "characterization.json").read_text())
    assert record["device"] == "fake_brisbane" and record["shots"] == 20000
    assert record["mitigate"] == [] and record["cost"]["rows"] == 6 * 81
    before = submits(measured["state"])
    out = measured["root"] / "surrogate"
    result = cli("run", bundle, "--backend", f"surrogate:{measured['char']}", "--limit", "40",
                 "--batch-size", "20", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert submits(measured["state"]) == before  # no job reached the device
    sur, direct = np.load(out / "rows.npz"), np.load(measured["direct"] / "rows.npz")
    assert np.array_equal(sur["qubits"], direct["qubits"])  # the same placement per row
    diff = sur["estimate"] - direct["estimate"]
    z = diff / np.sqrt(sur["stderr"] ** 2 + direct["stderr"] ** 2)
    assert 0.9 < z.std() < 1.1, z.std()


def test_a_surrogate_refuses_another_bundle_and_another_device(measured, tmp_path):
    torch.manual_seed(1)
    other = tmp_path / "other"
    info = {"dataset": {"name": "digits", "size": 28}, "normalization": Normalization().to_dict()}
    export_bundle(QViT(num_classes=10, patch_size=7), other, info=info)
    result = cli("run", str(other), "--backend", f"surrogate:{measured['char']}", "--limit", "2",
                 "--out", str(tmp_path / "a"))  # fmt: skip
    assert result.exit_code == 1 and "was measured for another bundle" in result.output
    assert not (tmp_path / "a").exists()
    named = f"surrogate:{measured['char']}?device=fake_torino"
    result = cli("run", str(other), "--backend", named, "--out", str(tmp_path / "b"))
    assert result.exit_code == 1 and "measured fake_brisbane, not fake_torino" in result.output
    result = cli(
        "run", str(other), "--backend", f"surrogate:{tmp_path}", "--out", str(tmp_path / "c")
    )
    assert result.exit_code == 1 and "no characterization there" in result.output


def test_characterize_dry_run_prices_it_and_resume_pays_nothing(measured, bundle):
    backend = f"mock?inner=fake_brisbane&state={measured['state']}"
    result = cli("characterize", bundle, "--backend", backend, "--shots", "20000",
                 "--mitigate", "readout", "--out", str(measured["root"] / "dry"), "--dry-run",
                 *N4)  # fmt: skip
    assert "calibration: jobs / executions / shots │ 1 / 2 / 40,000" in result.output
    assert "rows / unique rows" in result.output and "per image" not in result.output
    assert result.exit_code == 0 and "estimated QPU seconds" in result.output
    assert not (measured["root"] / "dry").exists()
    before = submits(measured["state"])
    result = cli("characterize", bundle, "--backend", backend, "--shots", "20000",
                 "--out", str(measured["char"]), "--resume", *N4)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert submits(measured["state"]) == before


def test_n8_characterize_and_surrogate_on_an_ideal_device(tmp_path):
    """n = 8: 6,561 grid points per QNN; the surrogate's values agree with exact within
    their standard errors (an ideal device: nothing but shot noise to fit)."""
    torch.manual_seed(2)
    bundle = tmp_path / "n8"
    info = {"dataset": {"name": "digits", "size": 28}, "normalization": Normalization().to_dict()}
    export_bundle(QViT(num_classes=10, patch_size=7, n_qubits=8), bundle, info=info)
    char = tmp_path / "char"
    result = cli("characterize", str(bundle), "--backend", "shots?seed=5", "--shots", "4000",
                 "--out", str(char))  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    result = cli("run", str(bundle), "--backend", f"surrogate:{char}", "--limit", "8",
                 "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = np.load(out / "rows.npz")
    z = (rows["estimate"] - rows["exact"]) / rows["stderr"]
    assert 0.85 < z.std() < 1.15, z.std()
