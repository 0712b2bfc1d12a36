"""Packing: k disjoint placements of one n-qubit circuit on a chip, so one run serves k rows.

Greedy best-first: take the best-scored candidate, drop every candidate sharing a qubit
with it, repeat. Copies may sit on neighbouring qubits (no gap is left between them):
crosstalk between simultaneously driven neighbours is not modelled.
"""

from __future__ import annotations

import numpy as np

from ..circuit import chain
from ..devices import DeviceTarget, get_target
from .layout import Candidates, Chip, embeddings


def pack(candidates: Candidates, max_copies: int | None = None) -> np.ndarray:
    """Indices of disjoint candidates, best first (greedy); at most ``max_copies``."""
    if max_copies is not None and max_copies < 1:
        raise ValueError(f"max_copies must be >= 1, got {max_copies}")
    rest = np.arange(len(candidates))  # candidates are sorted best first
    chosen: list[int] = []
    while len(rest) and (max_copies is None or len(chosen) < max_copies):
        best = int(rest[0])
        chosen.append(best)
        taken = candidates.placements[best]
        rest = rest[~np.isin(candidates.placements[rest], taken).any(axis=1)]
    return np.array(chosen, dtype=np.int64)


def packing_factor(target: DeviceTarget | str, n: int) -> int:
    """k for chain specs of n qubits: how many copies one execution on ``target`` holds."""
    dt = get_target(target) if isinstance(target, str) else target
    return len(pack(embeddings(Chip.of(dt), chain(n))))
