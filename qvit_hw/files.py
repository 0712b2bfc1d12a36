"""Writing files so that a crash or Ctrl-C never leaves a half-written one, and the one
conversion of our objects to JSON."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` (creating its folder), then
    ``os.replace`` it into place: readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # a read-only folder: the first error matters
            tmp.unlink(missing_ok=True)


def to_json(obj: Any) -> Any:
    """A JSON-ready copy: mapping keys become str, tuples lists, arrays and tensors lists,
    numpy scalars Python numbers, paths str, and NaN or infinite floats None."""
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # np.ndarray, np.generic, torch.Tensor
        return to_json(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps_json(obj: Any) -> str:
    """``obj`` as indented JSON text (see `to_json`), ending in a newline."""
    return json.dumps(to_json(obj), indent=2, allow_nan=False) + "\n"


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (see `to_json`), written atomically."""
    write_atomic(Path(path), dumps_json(obj))
