"""What a refused command prints, read the same way by every CLI test."""

from typing import Any


def error_line(result: Any) -> str:
    """The one line a refused command prints (exit 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]
