"""The known devices by name: `get_target("ibm_fez")`, snapshot or live.

``live=None`` follows one rule for every command: the live device where its family's
credentials are configured (`ibm.has_credentials`, `rigetti.has_credentials`, no network
touched to find out), its offline snapshot otherwise.
"""

from __future__ import annotations

import difflib
from functools import cache

from ..errors import TranspileError
from . import ibm, rigetti
from .target import DeviceTarget

TARGETS = (*ibm.IBM_SNAPSHOTS, *rigetti.RIGETTI_SNAPSHOTS)


def get_target(name: str, *, live: bool | None = None) -> DeviceTarget:
    """The device called ``name``; unknown names raise TranspileError with a did-you-mean.

    ``live=None`` reads the live device where credentials are configured (the rule of
    `ibm.has_credentials` / `rigetti.has_credentials`, the same for every command) and the
    snapshot otherwise (no network attempt without credentials); ``True`` insists on the
    live device (CredentialsError without credentials); ``False`` always gives the snapshot.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in TARGETS:
        close = difflib.get_close_matches(key, TARGETS, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise TranspileError(f"unknown target {name!r}{hint} (known: {', '.join(TARGETS)})")
    family = ibm if key.startswith("ibm_") else rigetti
    if live is None:
        live = family.has_credentials()
    return _load(key, live)


@cache
def _load(name: str, live: bool) -> DeviceTarget:
    family = ibm if name.startswith("ibm_") else rigetti
    return family.live_target(name) if live else family.snapshot(name)
