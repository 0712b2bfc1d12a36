"""qvit_hw.train: every public name from the package, each submodule on first use."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import qvit_hw.train


def test_metrics_import_loads_neither_the_fit_loop_nor_the_teacher() -> None:
    code = (
        "import sys, qvit_hw.train.metrics; "
        "print(sorted(m for m in ('qvit_hw.train.loop', 'qvit_hw.train.distill', "
        "'qvit_hw.teacher') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_public_name_comes_from_its_module() -> None:
    package = qvit_hw.train
    assert sorted(package.__all__) == sorted(package._WHERE)
    for name in package.__all__:
        module = importlib.import_module(f"qvit_hw.train.{package._WHERE[name]}")
        assert getattr(package, name) is getattr(module, name), name
    with pytest.raises(AttributeError, match="has no attribute 'nonesuch'"):
        package.nonesuch  # noqa: B018


def test_distill_is_the_function_even_after_its_module_is_imported() -> None:
    code = (
        "import qvit_hw.train.distill, sys; from qvit_hw.train import distill; "
        "print(callable(distill), distill is sys.modules['qvit_hw.train.distill'].distill)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True True"
