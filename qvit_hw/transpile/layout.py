"""Where a QNN's logical qubits go on a chip: candidate placements and their scores.

A placement is an array ``(n,)`` of physical qubits, logical qubit i on ``placement[i]``.
`embeddings` enumerates every placement in which each pair of the spec lies on a coupler,
so the circuit needs no SWAPs (for chain specs these are the simple paths of n qubits).
The enumeration is vectorised: logical qubits are placed in breadth-first order of the
spec's interaction graph, each one next to its already placed parent, and all partial
placements of one step are extended at once with numpy (paths of 8 on 156 qubits take a
millisecond; 120,000 paths of 8 on a 9 x 12 grid about 40 ms). Where no such placement
exists (a cycle of 4 on heavy-hex, whose shortest cycles have 12 qubits; a triangle on any
of these chips), `regions` grows connected n-qubit regions instead and the transpiler
routes inside one.

Score (lower is better): 2-qubit gate errors on the spec's pairs + readout errors of the
chosen qubits, from the target's calibration. Unknown numbers count as 0, so a target
without calibration ranks every placement equally (ties go to the lowest qubit numbers).
Qubits and couplers whose reported error is >= `UNUSABLE_ERROR` (IBM marks broken ones
with 1.0) are never used. Crosstalk is not modelled.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..circuit import QNNSpec
from ..devices import DeviceTarget
from ..devices.lattice import square_lattice_width
from ..devices.target import UNUSABLE_ERROR

__all__ = ["UNUSABLE_ERROR", "Candidates", "Chip", "embeddings", "regions"]
MAX_CANDIDATES = 1_000_000  # beyond this, keep the best-scored partial placements (beam)


@dataclass(frozen=True)
class Candidates:
    """Placements (m, n) and their scores (m,), best first."""

    placements: np.ndarray
    scores: np.ndarray
    routed: bool  # True: regions the transpiler routes in; False: exact embeddings
    tiling: np.ndarray | None = None  # indices of candidates tiling the lattice (`packing`)

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class Chip:
    """A DeviceTarget as arrays: usable qubits and couplers, error numbers (0 if unknown)."""

    usable: np.ndarray  # (N,) bool
    adjacent: np.ndarray  # (N, N) bool, usable couplers only
    neighbors: np.ndarray  # (N, D) int, -1 padded
    readout: np.ndarray  # (N,) float
    edge_error: np.ndarray  # (N, N) float, symmetric
    width: int | None = None  # row width of a square lattice (None: another lattice)

    @classmethod
    def of(cls, dt: DeviceTarget) -> Chip:
        n = dt.num_qubits
        readout = np.zeros(n)
        for q, e in dt.readout_error.items():
            readout[q] = e
        measurable = [dt.target.instruction_supported("measure", (q,)) for q in range(n)]
        usable = (readout < UNUSABLE_ERROR) & np.array(measurable, dtype=bool)
        edge_error = np.zeros((n, n))
        adjacent = np.zeros((n, n), dtype=bool)
        for p, q in dt.edges:
            e = dt.two_qubit_error.get((p, q), 0.0)
            edge_error[p, q] = edge_error[q, p] = e
            adjacent[p, q] = adjacent[q, p] = e < UNUSABLE_ERROR and usable[p] and usable[q]
        degree = max(1, int(adjacent.sum(1).max()))
        neighbors = np.full((n, degree), -1, dtype=np.int64)
        for q in range(n):
            nbrs = np.flatnonzero(adjacent[q])
            neighbors[q, : len(nbrs)] = nbrs
        width = square_lattice_width(dt.edges, n)
        return cls(usable, adjacent, neighbors, readout, edge_error, width)

    def score(self, placements: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
        """(m, n) placements -> (m,) sum of 2-qubit errors on the pairs + readout errors."""
        total = self.readout[placements].sum(axis=1)
        for p, q in pairs:
            total = total + self.edge_error[placements[:, p], placements[:, q]]
        return total


def embeddings(chip: Chip, spec: QNNSpec) -> Candidates:
    """Every placement with each pair of ``spec`` on a usable coupler, sorted best first."""
    order, parent = _bfs_order(spec)
    earlier = {j: _placed_neighbours(spec, order, j) for j in order}
    columns = {order[0]: 0}
    cand = np.flatnonzero(chip.usable)[:, None]  # (m, 1): logical order[0] placed
    for step, j in enumerate(order[1:], start=1):
        anchor = cand[:, columns[parent[j]]]  # (m,)
        new = chip.neighbors[anchor].reshape(-1)  # (m * D,)
        rows = np.repeat(np.arange(len(cand)), chip.neighbors.shape[1])
        ok = new >= 0
        ok &= ~(cand[rows] == new[:, None]).any(axis=1)  # not used yet
        for u in earlier[j]:
            if u != parent[j]:
                ok &= chip.adjacent[new, cand[rows, columns[u]]]
        cand = np.concatenate([cand[rows[ok]], new[ok, None]], axis=1)
        columns[j] = step
        if len(cand) > MAX_CANDIDATES:
            placed = [order[i] for i in range(step + 1)]
            partial = _partial_pairs(spec, placed, columns)
            keep = np.argsort(chip.score(cand, partial), kind="stable")[:MAX_CANDIDATES]
            cand = cand[np.sort(keep)]
    placements = cand[:, [columns[i] for i in range(spec.n_qubits)]]  # (m, n) logical order
    return _sorted(placements, chip.score(placements, spec.pairs), routed=False)


def regions(chip: Chip, spec: QNNSpec) -> Candidates:
    """Connected n-qubit regions grown greedily from every usable qubit, best first.

    A region grows by the frontier qubit with the lowest readout error plus error of its
    best coupler into the region. Its score sums those numbers; the transpiler then lays
    out and routes the spec inside the region (the order within a region is arbitrary).
    """
    n = spec.n_qubits
    found: dict[tuple[int, ...], float] = {}
    for seed in np.flatnonzero(chip.usable):
        region, score = [int(seed)], float(chip.readout[seed])
        while len(region) < n:
            inside = np.zeros(len(chip.usable), dtype=bool)
            inside[region] = True
            link = np.where(chip.adjacent[region], chip.edge_error[region], np.inf).min(axis=0)
            cost = np.where(inside, np.inf, link + chip.readout)
            best = int(np.argmin(cost))
            if not np.isfinite(cost[best]):
                break
            region.append(best)
            score += float(cost[best])
        if len(region) == n:
            found.setdefault(tuple(sorted(region)), score)
    if not found:
        return _sorted(np.empty((0, n), dtype=np.int64), np.empty(0), routed=True)
    placements = np.array(list(found), dtype=np.int64)
    return _sorted(placements, np.array(list(found.values())), routed=True)


def _sorted(placements: np.ndarray, scores: np.ndarray, *, routed: bool) -> Candidates:
    """Best score first; ties broken by the qubit numbers (lowest first), deterministically."""
    keys = [placements[:, i] for i in range(placements.shape[1] - 1, -1, -1)]
    order = np.lexsort([*keys, np.round(scores, 12)])
    return Candidates(placements[order], scores[order], routed)


def _bfs_order(spec: QNNSpec) -> tuple[list[int], dict[int, int]]:
    """Logical qubits in breadth-first order; each has a parent placed before it.

    A spec whose pairs leave several components (or idle qubits) links each new component
    to the previous qubit in the order, so a copy stays compact on the chip; such links
    carry no gate.
    """
    adj: dict[int, list[int]] = {i: [] for i in range(spec.n_qubits)}
    for p, q in spec.pairs:
        adj[p].append(q)
        adj[q].append(p)
    order: list[int] = []
    parent: dict[int, int] = {}
    seen: set[int] = set()
    for root in range(spec.n_qubits):
        if root in seen:
            continue
        if order:
            parent[root] = order[-1]
        seen.add(root)
        order.append(root)
        queue = deque([root])
        while queue:
            u = queue.popleft()
            for v in sorted(adj[u]):
                if v not in seen:
                    seen.add(v)
                    parent[v] = u
                    order.append(v)
                    queue.append(v)
    return order, parent


def _placed_neighbours(spec: QNNSpec, order: list[int], j: int) -> list[int]:
    """Spec neighbours of logical qubit j placed before it."""
    before = set(order[: order.index(j)])
    return sorted(
        {q for p, q in spec.pairs if p == j and q in before}
        | {p for p, q in spec.pairs if q == j and p in before}
    )


def _partial_pairs(
    spec: QNNSpec, placed: list[int], columns: dict[int, int]
) -> tuple[tuple[int, int], ...]:
    """Pairs among already placed qubits, in column indices (for beam pruning)."""
    inside = set(placed)
    return tuple((columns[p], columns[q]) for p, q in spec.pairs if p in inside and q in inside)
