"""Where a chip's qubits sit: its lattice, read off the coupling map and the vendors' numbering.

`square_lattice_width` recognises a square lattice (Rigetti's Ankaa and Cepheus, IBM's
Nighthawk) and its row width; `lattice_positions` places every qubit of a square lattice or
of IBM's heavy-hex (Eagle, Heron) on the plane, for the chip map and for packing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

SQUARE, HEAVY_HEX = "square lattice", "heavy-hex"


def square_lattice_width(edges: Iterable[tuple[int, int]], num_qubits: int) -> int | None:
    """W where the couplers join q to q+1 within rows of W qubits and q to q+W (a square
    lattice numbered row by row, some couplers possibly missing); None for any other chip."""
    pairs = sorted({(min(p, q), max(p, q)) for p, q in edges})
    if not pairs or max(q for _, q in pairs) >= num_qubits:
        return None
    steps = Counter(q - p for p, q in pairs if q - p != 1)
    if len(steps) != 1:
        return None
    (w,) = steps
    if w < 2 or not all(q - p == w or p // w == q // w for p, q in pairs):
        return None
    return w


def lattice_positions(
    edges: list[tuple[int, int]], num_qubits: int
) -> tuple[np.ndarray, str] | None:
    """Where each qubit sits on its chip, from the coupling map and the vendors' numbering:
    (num_qubits, 2) x/y and "square lattice" or "heavy-hex"; None for any other shape.

    square lattice (Rigetti Ankaa, Cepheus; IBM Nighthawk): couplers join q to q+1 within a
    row of W qubits and q to q+W, so qubit q is at (q mod W, -(q div W)). heavy-hex (IBM
    Eagle, Heron): couplers q-(q+1) form the rows, and qubits on no such coupler bridge two
    rows, vertically below and above the row qubits they join; each row's x offset follows
    from its bridges.
    """
    pairs = sorted({(min(p, q), max(p, q)) for p, q in edges})
    if not pairs or max(q for _, q in pairs) >= num_qubits:
        return None
    w = square_lattice_width(pairs, num_qubits)
    if w is not None:
        xy = np.array([(q % w, -(q // w)) for q in range(num_qubits)], dtype=float)
        return xy, SQUARE
    # heavy-hex: rows are the runs of q-(q+1) couplers
    coupled = {p for p, q in pairs if q - p == 1} | {q for p, q in pairs if q - p == 1}
    row_of: dict[int, int] = {}
    pos: dict[int, int] = {}
    rows: list[list[int]] = []
    consecutive = {(p, q) for p, q in pairs if q - p == 1}
    for q in range(num_qubits):
        if q not in coupled:
            continue
        if (q - 1, q) in consecutive:
            r = row_of[q - 1]
        else:
            rows.append([])
            r = len(rows) - 1
        row_of[q], pos[q] = r, len(rows[r])
        rows[r].append(q)
    neighbours: dict[int, list[int]] = {q: [] for q in range(num_qubits)}
    for p, q in pairs:
        neighbours[p].append(q)
        neighbours[q].append(p)
    bridges = [q for q in range(num_qubits) if q not in row_of]
    offset = {0: 0} if rows else {}
    links, stubs = [], []  # stubs: a qubit hanging off one row qubit (Heron's last row)
    for b in bridges:
        ends = neighbours[b]
        if len(ends) == 1 and ends[0] in row_of:
            stubs.append((b, ends[0]))
            continue
        if (
            len(ends) != 2
            or any(e not in row_of for e in ends)
            or row_of[ends[0]] == row_of[ends[1]]
        ):
            return None
        links.append((b, *sorted(ends, key=lambda e: row_of[e])))
    changed = True
    while changed:  # propagate row offsets through the bridges
        changed = False
        for _, a, c in links:
            ra, rc = row_of[a], row_of[c]
            for known, other, sign in ((ra, rc, 1), (rc, ra, -1)):
                if known in offset and other not in offset:
                    delta = pos[a] - pos[c]
                    offset[other] = offset[known] + sign * delta
                    changed = True
    if len(offset) != len(rows):
        return None
    xy = np.zeros((num_qubits, 2))
    for q, r in row_of.items():
        xy[q] = (offset[r] + pos[q], -2.0 * r)
    for b, a, c in links:
        if xy[a, 0] != xy[c, 0]:
            return None  # a bridge that is not vertical: not heavy-hex as drawn here
        xy[b] = (xy[a, 0], (xy[a, 1] + xy[c, 1]) / 2)
    for b, a in stubs:  # outside the rows: below the last, above the first
        xy[b] = (xy[a, 0], xy[a, 1] + (-1.0 if row_of[a] == len(rows) - 1 else 1.0))
    return xy, HEAVY_HEX
