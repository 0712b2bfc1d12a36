"""`qvit-hw demo` end to end on a tiny configuration (`make demo` runs the full one)."""

import json

import pytest
from cli_output import error_line
from typer.testing import CliRunner

from qvit_hw.cli import app

runner = CliRunner()
TINY = ("--epochs", "1", "--train-limit", "40", "--images", "6", "--shots", "200")  # the fit: 81
# terms per QNN output need 6 images of 16 tokens


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_demo_runs_every_step_and_prints_where_the_report_is(demo):
    out, output = demo
    assert f"report: {(out / 'run' / 'report.html').resolve()}" in output.replace("\n", "")
    assert (out / "train" / "best.pt").is_file() and (out / "bundle" / "manifest.json").is_file()
    for target in ("ibm_brisbane", "rigetti_ankaa_3"):
        report = json.loads((out / "transpile" / f"transpile_{target}.json").read_text())
        assert report["target"] == target and len(report["qnns"]) == 6
    assert len(list((out / "transpile" / "quil").glob("*.quil"))) == 6  # Rigetti native Quil
    run = json.loads((out / "run" / "run.json").read_text())
    assert run["status"] == "complete" and run["backend"] == "fake_brisbane"
    assert run["images"] == 6 and run["shots"] == 200 and run["mitigate"] == "readout,zne,fourier"
    numbers = json.loads((out / "run" / "report.json").read_text())
    assert 0 < numbers["z"]["mae"] < 0.2 and numbers["hellinger"]["rows"] > 0
    state = json.loads((out / "demo.json").read_text())
    assert state["status"] == "complete" and set(state["seconds"]) == {
        "train", "export", "transpile", "run", "report"
    }  # fmt: skip


def test_a_finished_demo_is_not_redone_and_other_settings_need_overwrite(demo, tmp_path):
    out, _ = demo
    again = runner.invoke(app, ["demo", "--out", str(out), *TINY])
    assert again.exit_code == 0 and "already holds a finished demo" in again.output
    other = runner.invoke(app, ["demo", "--out", str(out), *TINY[:-1], "300"])
    assert other.exit_code == 1
    assert "holds a demo with other settings; pass --overwrite" in other.output
    (tmp_path / "mine.txt").write_text("not a demo")
    refused = runner.invoke(app, ["demo", "--out", str(tmp_path), *TINY, "--overwrite"])
    assert refused.exit_code == 1 and "is not a demo directory" in refused.output
    assert (tmp_path / "mine.txt").exists()  # --overwrite never removes what is not ours


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_demo_records_its_format(demo):
    out, _ = demo
    assert json.loads((out / "demo.json").read_text())["format"] == "qvit-hw/demo"


def test_overwrite_deletes_only_a_folder_holding_nothing_but_a_demo(tmp_path):
    out = tmp_path / "demo"
    (out / "run").mkdir(parents=True)
    (out / "run" / "mine.txt").write_text("inside a demo folder: the user's")
    state = {"format": "qvit-hw/demo", "settings": {}, "status": "complete"}
    (out / "demo.json").write_text(json.dumps(state))
    (out / "notes.txt").write_text("mine")
    before = files_of(out)
    line = error_line(runner.invoke(app, ["demo", "--out", str(out), *TINY, "--overwrite"]))
    assert line == (
        f"error: --out: {out} holds notes.txt, which a demo does not write; --overwrite deletes "
        "only a folder holding nothing but a demo: move it or choose another --out"
    )
    assert files_of(out) == before


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        '{"settings": {}, "status": "complete", "mine": 1}',
        '{"format": "other", "settings": {}, "status": "complete"}',
    ],
)
def test_a_demo_json_of_another_format_is_not_a_demo(tmp_path, content):
    (tmp_path / "demo.json").write_text(content)
    line = error_line(runner.invoke(app, ["demo", "--out", str(tmp_path), *TINY, "--overwrite"]))
    assert line == (
        f"error: --out: {tmp_path} exists and is not a demo directory (no demo.json of a qvit-hw "
        "demo); choose another --out"
    )
    assert (tmp_path / "demo.json").read_text() == content


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_a_file_as_out_is_one_line(tmp_path, where):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    out = file if where == "file" else file / "demo"
    line = error_line(runner.invoke(app, ["demo", "--out", str(out), *TINY, "--overwrite"]))
    assert line == (
        f"error: --out: {file} is a file, not a folder"
        if where == "file"
        else f"error: --out: {out} lies under {file}, which is a file"
    )
    assert sorted(tmp_path.iterdir()) == [file] and file.read_text() == "mine"
