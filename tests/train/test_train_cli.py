"""`qvit-hw train` and `qvit-hw distill` on the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.main import get_command

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
    argv = ["qvit-hw", "distill", "--dataset", "digits", "--limit", "8", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--teacher-pretrained"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not download timm/tiny_vit_5m_224")
    assert err.endswith("--teacher-weights PATH") and len(err.splitlines()) == 1
