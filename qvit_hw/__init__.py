"""qvit-hw: deploy quantum vision transformers (QViTs) on quantum hardware and simulators.

Every public name is imported on first use, so ``import qvit_hw`` loads neither torch
nor an SDK. The pipeline's steps are functions here: ``train(opts, out)``,
``export_bundle(model, out)``, ``run_bundle(options, out)`` and ``report(run_dir)``.
``qvit_hw.train`` and ``qvit_hw.report`` stay the modules of those names too: each is a
module that can be called (``qvit_hw.train.TrainOptions`` and ``qvit_hw.train(...)``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ModelConfig": "model",
    "QNNLayer": "model",
    "QViT": "model",
    "ViT": "model",
    "VisionTransformer": "model",
    "QNNSpec": "circuit",
    "chain": "circuit",
    "expectations": "circuit",
    "tree": "circuit",
    "export_bundle": "export",
    "load_bundle": "export",
    "run_bundle": "jobs.run",
}
# submodule -> the function that calling it runs
_CALLABLE = {"train": ("train", "train"), "report": ("report", "write_report")}

__all__ = [  # noqa: RUF022 (grouped: the model, circuits, the pipeline)
    "ModelConfig",
    "QNNLayer",
    "QViT",
    "ViT",
    "VisionTransformer",
    "QNNSpec",
    "chain",
    "expectations",
    "tree",
    "train",
    "export_bundle",
    "load_bundle",
    "run_bundle",
    "report",
    "__version__",
]

if TYPE_CHECKING:
    from . import report, train
    from .circuit import QNNSpec, chain, expectations, tree
    from .export import export_bundle, load_bundle
    from .jobs.run import run_bundle
    from .model import ModelConfig, QNNLayer, QViT, VisionTransformer, ViT

    __version__: str


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("qvit-hw")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def _callable(module: types.ModuleType, function: str) -> types.ModuleType:
    """``module`` with a ``__call__`` that runs ``module.<function>``, keeping its class."""
    kind = type(module)
    if not callable(module):

        def call(self: types.ModuleType, *args: Any, **kwargs: Any) -> Any:
            return getattr(self, function)(*args, **kwargs)

        call.__doc__ = f"Same as ``{module.__name__}.{function}(...)``."
        module.__class__ = type(f"Callable{kind.__name__.lstrip('_')}", (kind,), {"__call__": call})
    return module


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    elif name in _CALLABLE:
        return importlib.import_module(f".{name}", __name__)  # bound by _Package.__setattr__
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """Makes ``qvit_hw.train`` and ``qvit_hw.report`` callable however they get imported:
    the import system binds every submodule on its package with setattr."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CALLABLE and isinstance(value, types.ModuleType):
            value = _callable(value, _CALLABLE[name][1])
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
