"""How every command reads a device or backend name, and its did-you-mean."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def normal(name: str) -> str:
    """Case, surrounding spaces and ``-`` versus ``_`` do not matter in a name."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    return name.strip().lower().replace("-", "_")


def suggestions(name: str, known: Iterable[str]) -> list[str]:
    """Up to two close names (difflib) among ``known``, with or without the family prefix
    typed (``nighthawk`` -> ``ibm_nighthawk``)."""
    known = list(known)
    key = normal(name)
    close = difflib.get_close_matches(key, known, n=2, cutoff=0.6)
    if not close:  # the bare device name: compare it with the names' own stems
        stems = {k.split("_", 1)[-1]: k for k in known}
        close = [stems[s] for s in difflib.get_close_matches(key, list(stems), n=2, cutoff=0.6)]
    return close
