"""Packing: k disjoint placements of one n-qubit circuit on a chip, so one run serves k rows.

Two greedy strategies (`PACKINGS`):

- ``best`` (best-first): take the best-scored candidate, drop every candidate sharing a
  qubit with it, repeat. The copies are the best placements, fewer of them.
- ``max`` (min-conflict): take the candidate whose qubits the fewest remaining candidates
  use (ties: the better score), drop the ones it overlaps, repeat. Placements that leave
  the most room for others go first, so more copies fit (on heavy-hex about 13 % more).

Copies may sit on neighbouring qubits (no gap is left between them): crosstalk between
simultaneously driven neighbours is not modelled. Both return the chosen copies best-scored
first, so copy 0 is the best placement.
"""

from __future__ import annotations

import numpy as np

from ..circuit import chain
from ..devices import DeviceTarget, get_target
from .layout import Candidates, Chip, embeddings

PACKINGS = ("best", "max")


def pack(
    candidates: Candidates, max_copies: int | None = None, packing: str = "best"
) -> np.ndarray:
    """Indices of disjoint candidates, best-scored first; at most ``max_copies``."""
    if max_copies is not None and max_copies < 1:
        raise ValueError(f"max_copies must be >= 1, got {max_copies}")
    if packing not in PACKINGS:
        raise ValueError(f"packing must be one of {', '.join(PACKINGS)}, got {packing!r}")
    placements = candidates.placements  # (m, n), sorted best first
    alive = np.ones(len(candidates), dtype=bool)
    width = int(placements.max()) + 1 if len(candidates) else 0
    chosen: list[int] = []
    while alive.any() and (max_copies is None or len(chosen) < max_copies):
        rest = np.flatnonzero(alive)
        if packing == "best":
            pick = int(rest[0])
        else:  # candidates using each qubit, then the load a candidate's qubits carry
            users = np.bincount(placements[rest].reshape(-1), minlength=width)  # (N,)
            load = users[placements[rest]].sum(axis=1)  # (m',)
            pick = int(rest[np.argmin(load)])  # argmin keeps the first: the better score
        chosen.append(pick)
        alive[rest[np.isin(placements[rest], placements[pick]).any(axis=1)]] = False
    return np.array(sorted(chosen), dtype=np.int64)


def packing_factor(target: DeviceTarget | str, n: int, packing: str = "best") -> int:
    """k for chain specs of n qubits: how many copies one execution on ``target`` holds."""
    dt = get_target(target) if isinstance(target, str) else target
    return len(pack(embeddings(Chip.of(dt), chain(n)), packing=packing))
