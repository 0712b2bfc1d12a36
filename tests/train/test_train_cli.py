"""`qvit-hw train` and `qvit-hw distill` on the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cli_output import error_line
from typer.main import get_command
from typer.testing import CliRunner

from qvit_hw.cli import app, main


@pytest.mark.parametrize("name", ["train", "distill"])
def test_every_flag_is_explained(name: str) -> None:
    command = get_command(app).commands[name]  # type: ignore[attr-defined]
    for param in command.params:
        assert param.help and len(param.help) > 20, param.name
    names = {p.name for p in command.params}
    assert {"dataset", "size", "qubits", "heads", "model", "epochs", "out", "resume"} <= names


def test_teacher_pretrained_offline_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    argv = ["qvit-hw", "distill", "--dataset", "digits", "--limit", "10", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--teacher-pretrained"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not download timm/tiny_vit_5m_224")
    assert err.endswith("--teacher-weights PATH") and len(err.splitlines()) == 1


@pytest.mark.parametrize("name", ["train", "distill"])
@pytest.mark.parametrize("where", ["file", "under a file"])
def test_a_file_as_out_is_one_line_and_creates_nothing(
    tmp_path: Path, name: str, where: str
) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    out = file if where == "file" else file / "run"
    for extra in ([], ["--overwrite"], ["--resume"]):
        args = [name, "--dataset", "digits", "--limit", "8", "--epochs", "1", "--out", str(out)]
        line = error_line(CliRunner().invoke(app, [*args, *extra]))
        assert line == (
            f"error: --out: {file} is a file, not a folder"
            if where == "file"
            else f"error: --out: {out} lies under {file}, which is a file"
        )
    assert sorted(tmp_path.iterdir()) == [file] and file.read_text() == "mine"


def user_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_train_into_a_folder_of_user_files_is_refused_and_deletes_nothing(tmp_path: Path) -> None:
    """One meaning of --out: a folder holding files train did not write is refused, with
    or without --overwrite (which replaces only a run's own files), and nothing is lost."""
    out = tmp_path / "run"
    for rel in ("notes.txt", "data/x.bin", "kd/mine.txt", "teacher/mine.txt", "old/last.pt"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(f"user file {rel}")
    (out / "metrics.json").write_text("{}")
    mine = user_files(out)
    args = ["train", "--dataset", "digits", "--model", "vit", "--limit", "16", "--epochs", "1"]
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(app, [*args, "--batch-size", "8", "--out", str(out), *extra])
        assert result.exit_code == 1
        assert "holds data and 2 more, which train does not write" in result.output
        assert user_files(out) == mine
    ours = tmp_path / "ours"  # a run's own files and a sweep's log: replaced, log kept
    ours.mkdir()
    (ours / "sweep.log").write_text("sweep")
    (ours / "metrics.json").write_text("{}")
    result = CliRunner().invoke(
        app, [*args, "--batch-size", "8", "--out", str(ours), "--overwrite"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in ours.iterdir()) == [
        "best.pt", "last.pt", "metrics.json", "sweep.log"
    ]  # fmt: skip
    assert (ours / "sweep.log").read_text() == "sweep"


def test_clear_run_keeps_user_files_and_empty_stages_go(tmp_path: Path) -> None:
    from qvit_hw.train.checkpoint import clear_run

    for rel in ("last.pt", "best.pt", ".last.pt.tmp", "kd/last.pt", "kd/student.pt",
                "kd/targets.pt", "teacher/last.pt", "teacher/best.pt", "teacher/metrics.json",
                "teacher/mine.txt", "other/last.pt"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    clear_run(tmp_path)
    assert sorted(user_files(tmp_path)) == ["other/last.pt", "teacher/mine.txt"]
    assert not (tmp_path / "kd").exists()  # emptied, so removed


def test_a_size_the_model_does_not_take_names_the_flag() -> None:
    """Finding 6: --size 64 spoke of patch_size, which is no option of train."""
    args = ["train", "--dataset", "digits", "--size", "64", "--out", "never"]
    line = error_line(CliRunner().invoke(app, args))
    assert line == (
        "error: --size must be 28 or 224 (the paper's two inputs: 2x2 and 16x16 patches), got 64"
    )
    assert not Path("never").exists()


@pytest.mark.parametrize("name", ["train", "distill"])
def test_help_is_grouped_in_panels_with_choices(name: str) -> None:
    text = CliRunner().invoke(app, [name, "--help"]).output
    panels = ["Data", "Model", "Schedule", "Output", "Compute"]
    assert [p for p in panels if f"─ {p} ─" in text] == panels
    assert "28|224" in text and "qvit|vit" in text and "<int>" not in text
