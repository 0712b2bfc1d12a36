"""`qvit-hw characterize` + `--backend surrogate:DIR`: measure a device once, diagnose any
number of images with no job submitted."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_output import error_line
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


# --- --out and --overwrite: one meaning across train, export, run, demo and characterize -----

CHEAP = ("--backend", "shots?seed=1", "--shots", "100", *N4)  # a second or less


def characterize(bundle, out, *extra):
    return cli("characterize", bundle, *CHEAP, "--out", str(out), *extra)


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


OWN = {"characterization.json", "journal.sqlite", "run.json", "surrogate.npz"}


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_characterize_creates_a_missing_out_folder(bundle, tmp_path, overwrite):
    """Finding 4: a missing --out is created, --overwrite or not, as train, export and run do."""
    out = tmp_path / "new" / "deeper" / "char"
    result = characterize(bundle, out, *overwrite)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} >= OWN
    record = json.loads((out / "characterization.json").read_text())
    assert record["shots"] == 100 and record["cost"]["rows"] == 6 * 81


def test_characterize_overwrite_replaces_its_own_characterization(bundle, tmp_path):
    out = tmp_path / "char"
    assert characterize(bundle, out).exit_code == 0
    names = {p.name for p in out.iterdir()}
    line = error_line(characterize(bundle, out))
    assert line == (
        f"error: --out: {out} already holds a characterization; pass --resume to continue "
        "it, --overwrite to replace it, or choose another --out"
    )
    result = cli("characterize", bundle, *CHEAP, "--shots", "300", "--out", str(out),
                 "--overwrite")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "characterization.json").read_text())["shots"] == 300
    assert {p.name for p in out.iterdir()} == names  # replaced, nothing left over
    line = error_line(characterize(bundle, out, "--overwrite", "--resume"))
    assert line == "error: --overwrite and --resume exclude each other: pick one"


@pytest.mark.parametrize("overwrite", [False, True])
def test_characterize_refuses_a_folder_of_foreign_files_in_one_line(bundle, tmp_path, overwrite):
    """A folder holding files characterize did not write is refused, with or without
    --overwrite, and left exactly as it was (not even a lock file added)."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "data").mkdir()
    (out / "data" / "scan.png").write_bytes(b"mine too")
    before = contents(out)
    line = error_line(characterize(bundle, out, *(["--overwrite"] if overwrite else [])))
    if overwrite:
        assert line == (
            f"error: --overwrite: {out} holds data and 1 more, which characterize does not "
            "write; choose another --out"
        )
    else:
        assert line == (
            f"error: --out: {out} is not empty (it holds data and 1 more); a characterization "
            "needs a new or empty folder: choose another --out"
        )
    assert contents(out) == before


def test_characterize_overwrite_keeps_a_characterization_the_user_added_to(bundle, tmp_path):
    """--overwrite replaces what characterize wrote and nothing else: a user's file beside a
    characterization stops it before anything is deleted."""
    out = tmp_path / "char"
    assert characterize(bundle, out).exit_code == 0
    (out / "thesis.tex").write_text("mine")
    before = contents(out)
    line = error_line(characterize(bundle, out, "--overwrite"))
    assert line == (
        f"error: --overwrite: {out} holds thesis.tex, which characterize does not write; "
        "choose another --out"
    )
    assert contents(out) == before


def test_characterize_and_run_do_not_overwrite_each_others_folders(bundle, tmp_path):
    """A run's folder is not a characterization (run.json and journal.sqlite are names
    both write) and a characterization's is not a run: each --overwrite refuses the other."""
    run = tmp_path / "run"
    assert cli("run", bundle, "--limit", "1", "--out", str(run)).exit_code == 0
    before = contents(run)
    line = error_line(characterize(bundle, run, "--overwrite"))
    assert line.startswith(f"error: --overwrite: {run} holds ")
    assert line.endswith(", which characterize does not write; choose another --out")
    assert contents(run) == before
    stopped = tmp_path / "stopped"  # a run that stopped before any output: the same names
    stopped.mkdir()
    record = {p: b for p, b in before.items() if p in ("run.json", "journal.sqlite")}
    for name, data in record.items():
        (stopped / name).write_bytes(data)
    line = error_line(characterize(bundle, stopped))
    assert line == (
        f"error: --out: {stopped} is not empty (it holds journal.sqlite and 1 more); a "
        "characterization needs a new or empty folder: choose another --out"
    )
    line = error_line(characterize(bundle, stopped, "--overwrite"))
    assert line == (
        f"error: --overwrite: {stopped} holds journal.sqlite and 1 more, which characterize "
        "does not write; choose another --out"
    )
    assert contents(stopped) == record

    char = tmp_path / "char"
    assert characterize(bundle, char).exit_code == 0
    before = contents(char)
    stopped = tmp_path / "stopped-char"  # a characterization stopped before its outputs
    stopped.mkdir()
    record = {p: b for p, b in before.items() if p in ("run.json", "journal.sqlite")}
    for name, data in record.items():
        (stopped / name).write_bytes(data)
    for folder in (char, stopped):
        line = error_line(cli("run", bundle, "--limit", "1", "--out", str(folder), "--overwrite"))
        assert line == (
            f"error: --overwrite: {folder} is not a run (its run.json is a characterization's); "
            "--overwrite replaces only a run folder of `qvit-hw run`: choose another --out"
        )
    assert contents(char) == before and contents(stopped) == record
