"""Packaging conventions: `python -m qvit_hw`, --version, py.typed, lazy top-level names,
help text people can read, output that stays whole in a pipe."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import qvit_hw

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_python_dash_m_prints_the_installed_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "qvit_hw", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"qvit-hw {metadata.version('qvit-hw')}"
    assert qvit_hw.__version__ == metadata.version("qvit-hw")


def test_import_loads_no_torch_and_the_pipeline_functions_load_on_first_use() -> None:
    code = (
        "import sys, qvit_hw; before = 'torch' in sys.modules; "
        "from qvit_hw import export_bundle, run_bundle, train, report, QNNLayer; "
        "import qvit_hw.export, qvit_hw.jobs.run, qvit_hw.report as r, qvit_hw.train.loop; "
        "print(before, export_bundle is qvit_hw.export.export_bundle, "
        "run_bundle is qvit_hw.jobs.run.run_bundle, report is r, "
        "train is sys.modules['qvit_hw.train'], train.TrainOptions.__name__)"
    )
    assert _python(code).stdout.split() == ["False", "True", "True", "True", "True", "TrainOptions"]


def test_train_and_report_are_their_modules_and_call_their_functions(monkeypatch) -> None:
    import qvit_hw.report
    import qvit_hw.train.loop

    seen = []
    monkeypatch.setattr(qvit_hw.report, "write_report", lambda *a, **k: seen.append(("r", a, k)))
    monkeypatch.setattr(qvit_hw.train, "train", lambda *a, **k: seen.append(("t", a, k)))
    qvit_hw.report("run", against="other")
    qvit_hw.train("opts", "out", resume=True)
    assert seen == [("r", ("run",), {"against": "other"}), ("t", ("opts", "out"), {"resume": True})]
    assert qvit_hw.train.distill is sys.modules["qvit_hw.train.distill"].distill  # theirs kept
    with pytest.raises(AttributeError, match="has no attribute 'nonesuch'"):
        qvit_hw.nonesuch  # noqa: B018
    assert set(qvit_hw.__all__) <= set(dir(qvit_hw))


def test_import_time_is_that_of_the_package_alone() -> None:
    code = "import time; t = time.perf_counter(); import qvit_hw; print(time.perf_counter() - t)"
    best = min(float(_python(code).stdout) for _ in range(3))
    assert best < 0.3, f"import qvit_hw took {best:.3f} s"


def _help(*args: str, columns: int = 100) -> str:
    from typer.testing import CliRunner

    from qvit_hw.cli import app

    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_help_shows_no_bool_after_flags_and_no_mid_sentence_breaks() -> None:
    top = _help(columns=400)  # wide enough for every summary on one line
    assert "--version" in top and "<bool>" not in top
    panel = top[top.index("Commands") :].splitlines()[1:-1]
    names = [line.strip("│ ").split()[0] for line in panel]
    assert names[:3] == ["params", "datasets", "train"]
    assert len(names) == len(set(names)) >= 10, panel  # no row continues the one above
    train = next(line for line in panel if line.strip("│ ").startswith("train"))
    assert "schedule; Ctrl-C stops after the last saved epoch and --resume continues" in train
    run = _help("run")
    assert re.search(r"--resume\s+Continue the run", run), run
    # no <bool> after flags; values are named by what they take (N, SECONDS, a|b|c), not <int>
    assert "<bool>" not in _help("train") + run and "<int>" not in run
    assert re.search(r"--batch-size\s+N\s+Images per forward pass", run), run


def test_console_lines_stay_whole_in_a_pipe(capsys) -> None:
    from qvit_hw.cli import console

    assert console.soft_wrap  # pytest's stderr is no terminal, like a pipe
    line = "epoch 3/100: " + "loss 0.4321, val ACC 0.8123, " * 6 + "(1.4 s)"
    console.print(line)
    assert capsys.readouterr().err.splitlines() == [line]


@pytest.mark.slow
def test_the_wheel_ships_py_typed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("qvit_hw-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "qvit_hw/py.typed" in names and "qvit_hw/__main__.py" in names
