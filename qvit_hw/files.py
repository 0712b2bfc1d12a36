"""Writing files so that a crash or Ctrl-C never leaves a half-written one, and the one
conversion of our objects to JSON."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
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


def check_out_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """``path`` as an output folder that can be created or written, else a ValueError of one
    line naming ``flag``: an existing file, a path under a file, or a read-only folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag}: {path} is a file, not a folder")
    parent = path
    while not parent.exists():  # the nearest existing ancestor decides
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{flag}: {path} lies under {parent}, which is a file")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}: {parent} is not writable")
    return path


LOCK_FILE = ".lock"


def foreign_entries(folder: Path, ours: Callable[[Path], bool]) -> str:
    """What of ``folder`` its command did not write, for a one-line refusal: "NAME" or
    "NAME and N more" (sorted), "" when nothing (or no folder). ``ours(entry)`` says what
    the command wrote; its lock file always is."""
    if not folder.is_dir():
        return ""
    names = sorted(e.name for e in folder.iterdir() if e.name != LOCK_FILE and not ours(e))
    if not names:
        return ""
    return names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")


@contextlib.contextmanager
def locked(folder: Path, what: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (``fcntl.flock`` on ``folder/.lock``, which holds
    the holder's PID) for the block. The OS drops the lock when the process dies, so a killed
    run never leaves a stale one. A folder locked by another process: RunError at once."""
    import fcntl

    from .errors import RunError

    path = Path(folder) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunError(
                f"{what}: {folder} is in use by another qvit-hw process (PID {holder}); wait "
                "for it to finish or stop it, then try again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


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


def flat_keys(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: {"schedule": {"epochs": 3}} -> {"schedule.epochs": 3}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flat_keys(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def dumps_json(obj: Any) -> str:
    """``obj`` as indented JSON text (see `to_json`), ending in a newline."""
    return json.dumps(to_json(obj), indent=2, allow_nan=False) + "\n"


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (see `to_json`), written atomically."""
    write_atomic(Path(path), dumps_json(obj))
