"""Packing: k disjoint placements of one n-qubit circuit on a chip, so one run serves k rows.

Two strategies (`PACKINGS`):

- ``best`` (best-first): take the best-scored candidate, drop every candidate sharing a
  qubit with it, repeat. The copies are the best placements, fewer of them.
- ``max`` (most copies): on a square lattice (IBM Nighthawk, Rigetti's grids) a chain spec
  is tiled exactly: the lattice is walked as a snake (boustrophedon, by rows or by
  columns, from each corner) and each walk is cut into consecutive runs of n working,
  coupled qubits; the walk giving the most runs wins (ties: the better summed score), and
  the min-conflict greedy below fills what broken qubits leave. Without broken qubits this
  reaches the bound, usable qubits // n (Nighthawk, 12 rows of 10: 30 copies for n = 4,
  15 for n = 8). Elsewhere (heavy-hex, other specs), min-conflict greedy: take the
  candidate whose qubits the fewest remaining candidates use (ties: the better score),
  drop the ones it overlaps, repeat; placements that leave the most room for others go
  first, so more copies fit (on heavy-hex about 13 % more than ``best``).

`bound` is usable qubits // n, what no packing can pass. Copies may sit on neighbouring
qubits (no gap is left between them): crosstalk between simultaneously driven neighbours
is not modelled. Both strategies return the chosen copies best-scored first, so copy 0 is
the best placement.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..circuit import QNNSpec, chain
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
    if packing == "max" and candidates.tiling is not None and len(candidates.tiling):
        greedy = _greedy(candidates, "max", None, [])
        tiled = _greedy(candidates, "max", None, list(candidates.tiling))
        chosen = tiled if len(tiled) > len(greedy) else greedy
        return np.array(sorted(chosen)[:max_copies], dtype=np.int64)
    return np.array(sorted(_greedy(candidates, packing, max_copies, [])), dtype=np.int64)


def _greedy(
    candidates: Candidates, packing: str, max_copies: int | None, first: list[int]
) -> list[int]:
    """Candidates ``first`` (disjoint), then greedy picks of ``packing`` among the rest."""
    placements = candidates.placements  # (m, n), sorted best first
    alive = np.ones(len(candidates), dtype=bool)
    width = int(placements.max()) + 1 if len(candidates) else 0
    chosen: list[int] = []
    while alive.any() and (max_copies is None or len(chosen) < max_copies):
        rest = np.flatnonzero(alive)
        if len(chosen) < len(first):
            pick = first[len(chosen)]
        elif packing == "best":
            pick = int(rest[0])
        else:  # candidates using each qubit, then the load a candidate's qubits carry
            users = np.bincount(placements[rest].reshape(-1), minlength=width)  # (N,)
            load = users[placements[rest]].sum(axis=1)  # (m',)
            pick = int(rest[np.argmin(load)])  # argmin keeps the first: the better score
        chosen.append(pick)
        alive[rest[np.isin(placements[rest], placements[pick]).any(axis=1)]] = False
    return chosen


def with_tiling(chip: Chip, spec: QNNSpec, candidates: Candidates) -> Candidates:
    """``candidates`` with the exact tiling of a square lattice by chains, where one is
    known (a chain spec, exact embeddings, a square lattice); unchanged otherwise."""
    n = spec.n_qubits
    if chip.width is None or candidates.routed or spec.pairs != chain(n).pairs or n < 2:
        return candidates
    best: tuple[int, float, list[list[int]]] | None = None
    for walk in _snakes(len(chip.usable), chip.width):
        runs = _cut(chip, walk, n)
        if not runs:
            continue
        score = float(chip.score(np.array(runs), spec.pairs).sum())
        if best is None or (len(runs), -score) > (best[0], -best[1]):
            best = (len(runs), score, runs)
    if best is None:
        return candidates
    index = [i for run in best[2] if (i := _index_of(candidates.placements, run)) is not None]
    return replace(candidates, tiling=np.array(index, dtype=np.int64))


def _snakes(num_qubits: int, width: int) -> list[list[int]]:
    """Boustrophedon walks over a lattice numbered row by row (rows of ``width``): by rows
    and by columns, from each corner, each also read backwards."""
    rows = -(-num_qubits // width)
    grid = np.arange(rows * width).reshape(rows, width)
    walks = []
    for g in (grid, grid.T):
        for flipped in (g, g[::-1], g[:, ::-1], g[::-1, ::-1]):
            lines = [line if i % 2 == 0 else line[::-1] for i, line in enumerate(flipped)]
            walk = [int(q) for q in np.concatenate(lines) if q < num_qubits]
            walks += [walk, walk[::-1]]
    return walks


def _cut(chip: Chip, walk: list[int], n: int) -> list[list[int]]:
    """Consecutive runs of n usable qubits, each coupled to the next, along ``walk``."""
    runs: list[list[int]] = []
    run: list[int] = []
    for q in walk:
        if not chip.usable[q]:
            run = []
            continue
        if run and not chip.adjacent[run[-1], q]:
            run = []
        run.append(q)
        if len(run) == n:
            runs.append(run)
            run = []
    return runs


def _index_of(placements: np.ndarray, run: list[int]) -> int | None:
    """The (best-scored) candidate that places the chain on ``run``, either direction."""
    for way in (run, run[::-1]):
        rows = np.flatnonzero(placements[:, 0] == way[0])
        hit = rows[(placements[rows] == way).all(axis=1)]
        if len(hit):
            return int(hit[0])
    return None


def bound(target: DeviceTarget | str, n: int) -> int:
    """What no packing can pass: usable qubits // n."""
    chip = Chip.of(get_target(target) if isinstance(target, str) else target)
    return int(chip.usable.sum()) // n


def packing_factor(target: DeviceTarget | str, n: int, packing: str = "best") -> int:
    """k for chain specs of n qubits: how many copies one execution on ``target`` holds."""
    dt = get_target(target) if isinstance(target, str) else target
    chip = Chip.of(dt)
    spec = chain(n)
    return len(pack(with_tiling(chip, spec, embeddings(chip, spec)), packing=packing))
