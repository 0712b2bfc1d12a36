"""`qvit-hw run --overwrite`: replaces a run, and only a run, and never one in use."""

import json

import pytest
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.files import locked

runner = CliRunner()


def run(bundle, out, *extra):
    args = ["run", bundle, "--limit", "1", "--out", str(out), *extra]
    return runner.invoke(app, args)


def text(result) -> str:
    return " ".join(result.output.split())


def test_overwrite_replaces_a_finished_run_and_its_report(bundle, tmp_path):
    out = tmp_path / "run"
    assert run(bundle, out).exit_code == 0
    (out / "report.html").write_text("old report")
    first = json.loads((out / "run.json").read_text())
    again = run(bundle, out)
    assert again.exit_code == 1 and "pass --resume to continue it, --overwrite to" in text(again)
    replaced = run(bundle, out, "--overwrite", "--shots", "500")
    assert replaced.exit_code == 0, replaced.output
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["shots"] == 500 != first["shots"]
    assert not (out / "report.html").exists()  # the old run's report went with it
    both = run(bundle, out, "--overwrite", "--resume")
    assert both.exit_code == 1 and "--overwrite and --resume exclude each other" in text(both)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"notes.txt": "mine"}, "it has no run.json of a qvit-hw run"),
        ({"run.json": '{"identity": {}}', "thesis.tex": "mine"}, "it holds thesis.tex"),
        ({"run.json": "[1, 2]"}, "it has no run.json of a qvit-hw run"),
    ],
)
def test_overwrite_refuses_a_folder_that_is_not_a_run(bundle, tmp_path, setup, message):
    out = tmp_path / "mine"
    out.mkdir()
    for name, content in setup.items():
        (out / name).write_text(content)
    result = run(bundle, out, "--overwrite")
    assert result.exit_code == 1
    assert f"--overwrite: {out} is not a run ({message}" in text(result)
    assert sorted(p.name for p in out.iterdir()) == sorted(setup)  # nothing deleted


def test_overwrite_leaves_a_run_another_process_holds_alone(bundle, tmp_path):
    out = tmp_path / "busy"
    assert run(bundle, out).exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    with locked(out):  # another process working in it
        result = run(bundle, out, "--overwrite")
    assert result.exit_code == 1 and "is in use by another qvit-hw process" in text(result)
    assert sorted(p.name for p in out.iterdir()) == before
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_overwrite_creates_a_missing_folder_and_replaces_comparison_reports(bundle, tmp_path):
    """Finding 4: `run --overwrite` refused a folder that did not exist yet ("is not a run"),
    where train and export create it."""
    out = tmp_path / "new" / "run"
    result = run(bundle, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    (out / "report-vs-other.html").write_text("a comparison `report --against` wrote")
    (out / "report-vs-other.json").write_text("{}")
    assert run(bundle, out, "--overwrite").exit_code == 0
    assert not list(out.glob("report-vs-*"))


def test_a_new_run_is_never_written_beside_the_users_files(bundle, tmp_path):
    """Finding 4: `run --out DIR` on a folder of other files wrote the run beside them."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "data.csv").write_text("1,2")
    result = run(bundle, out)
    assert result.exit_code == 1
    assert text(result) == (
        f"error: --out: {out} is not empty (it holds data.csv and 1 more); a run needs a new "
        "or empty folder: choose another --out"
    )
    assert sorted(p.name for p in out.iterdir()) == ["data.csv", "notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(bundle, empty).exit_code == 0
