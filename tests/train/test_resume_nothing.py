"""`--resume` on a folder with nothing to resume says so instead of starting afresh."""

import pytest
from typer.testing import CliRunner

from qvit_hw.cli import app


@pytest.mark.parametrize("command", ["train", "distill"])
def test_resume_on_an_empty_folder_is_one_line(tmp_path, command):
    out = tmp_path / "empty"
    out.mkdir()
    result = CliRunner().invoke(
        app, [command, "--dataset", "digits", "--epochs", "1", "--out", str(out), "--resume"]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume: nothing to resume in")
    assert list(out.iterdir()) == []  # nothing was trained or written
