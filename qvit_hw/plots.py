"""The fidelity report's plots: each function returns one PNG (matplotlib, Agg, no display)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

DPI = 80


def _figure(width: float = 6.4, height: float = 4.4) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def scatter_plot(exact: np.ndarray, estimate: np.ndarray, stderr: np.ndarray, points: int) -> bytes:
    """Measured vs exact <Z> with 2-stderr error bars (a seeded sample of ``points`` rows)."""
    x, y, e = exact.ravel(), estimate.ravel(), stderr.ravel()
    if x.size > points:
        pick = np.random.default_rng(0).choice(x.size, points, replace=False)
        x, y, e = x[pick], y[pick], e[pick]
    fig, ax = _figure()
    ax.errorbar(x, y, yerr=2 * e, fmt=".", ms=3, alpha=0.5, elinewidth=0.6, color="tab:blue")
    ax.plot([-1, 1], [-1, 1], color="black", lw=1, label="measured = exact")
    ax.set(
        xlabel="exact <Z>",
        ylabel="measured <Z> (bars: 2 stderr)",
        xlim=(-1.05, 1.05),
        ylim=(-1.05, 1.05),
        aspect="equal",
    )
    ax.legend(loc="upper left")
    return _png(fig)


def error_histogram(errors: np.ndarray, stderr: np.ndarray) -> bytes:
    """Histogram of measured - exact against the error shot noise alone would give: the
    mixture of N(0, stderr^2) over the rows."""
    d, se = errors.ravel(), stderr.ravel()
    fig, ax = _figure()
    span = max(float(np.abs(d).max()), 4 * float(se.max()), 1e-6)
    bins = np.linspace(-span, span, 61)
    ax.hist(d, bins=bins, density=True, alpha=0.6, color="tab:orange", label="measured - exact")
    if se.max() > 0:
        grid = np.linspace(-span, span, 400)
        sample = se[se > 0]
        if sample.size > 2000:
            sample = np.random.default_rng(0).choice(sample, 2000, replace=False)
        pdf = np.exp(-0.5 * (grid[:, None] / sample) ** 2) / (sample * math.sqrt(2 * math.pi))
        ax.plot(grid, pdf.mean(axis=1), color="black", lw=1.5, label="shot noise alone")
    ax.set(xlabel="error of <Z>", ylabel="density")
    ax.legend()
    return _png(fig)


def per_qnn_plot(per_qnn: list[dict[str, Any]]) -> bytes:
    """MAE per QNN, beside the MAE shot noise alone would give."""
    names = [row["qnn"] for row in per_qnn]
    fig, ax = _figure(6.4, 0.9 + 0.35 * len(names))
    y = np.arange(len(names))
    ax.barh(y - 0.2, [row["mae"] for row in per_qnn], 0.4, label="MAE", color="tab:red")
    ax.barh(
        y + 0.2,
        [row["shot_noise_mae"] for row in per_qnn],
        0.4,
        color="tab:gray",
        label="shot noise alone",
    )
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set(xlabel="mean |measured - exact| of <Z>")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return _png(fig)


def lattice_positions(
    edges: list[tuple[int, int]], num_qubits: int
) -> tuple[np.ndarray, str] | None:
    """Where each qubit sits on its chip, from the coupling map and the vendors' numbering:
    (num_qubits, 2) x/y and "grid" or "heavy-hex"; None for any other shape.

    grid (Rigetti Ankaa, Cepheus): couplers join q to q+1 within a row of W qubits and q to
    q+W, so qubit q is at (q mod W, -(q div W)). heavy-hex (IBM Eagle, Heron): couplers
    q-(q+1) form the rows, and qubits on no such coupler bridge two rows, vertically below
    and above the row qubits they join; each row's x offset follows from its bridges.
    """
    from collections import Counter

    pairs = sorted({(min(p, q), max(p, q)) for p, q in edges})
    if not pairs or max(q for _, q in pairs) >= num_qubits:
        return None
    steps = Counter(q - p for p, q in pairs if q - p != 1)
    if len(steps) == 1:
        (w,) = steps
        if all(q - p == w or p // w == q // w for p, q in pairs):
            xy = np.array([(q % w, -(q // w)) for q in range(num_qubits)], dtype=float)
            return xy, "grid"
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
    return xy, "heavy-hex"


def chip_plot(
    per_qubit: list[dict[str, Any]],
    edges: list[tuple[int, int]] | None,
    num_qubits: int | None,
    *,
    vmax: float | None = None,
) -> bytes:
    """MAE per physical qubit drawn on the chip (unused qubits grey): on its lattice
    (`lattice_positions`: heavy-hex for IBM, the grid for Rigetti), else a spring layout of
    the coupling map; bars per qubit when the backend has no chip. ``vmax`` fixes the top
    of the colour scale (side-by-side runs share one)."""
    mae = {row["qubit"]: row["mae"] for row in per_qubit}
    if not edges or not num_qubits:
        fig, ax = _figure()
        ax.bar([str(q) for q in mae], list(mae.values()), color="tab:red")
        ax.set(xlabel="qubit", ylabel="MAE of <Z>")
        if vmax is not None:
            ax.set_ylim(0, vmax * 1.05 or 1e-9)
        return _png(fig)
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    pairs = sorted({(min(p, q), max(p, q)) for p, q in edges})
    lattice = lattice_positions(pairs, num_qubits)
    if lattice is not None:
        xy, kind = lattice
    else:
        import rustworkx as rx

        graph = rx.PyGraph()
        graph.add_nodes_from(range(num_qubits))
        graph.add_edges_from_no_data(pairs)
        pos = rx.spring_layout(graph, seed=0, num_iter=300)
        xy, kind = np.array([pos[i] for i in range(num_qubits)]), "coupling map"  # (Q, 2)
    span = np.ptp(xy, axis=0) + 1
    width = float(np.clip(span[0] * 0.45, 6.0, 12.0)) if lattice else 7.2
    height = float(np.clip(width * span[1] / span[0] + 1.2, 3.0, 9.0)) if lattice else 6.0
    fig, ax = _figure(width, height)
    for p, q in pairs:
        ax.plot(*xy[[p, q]].T, color="#bbbbbb", lw=0.8, zorder=1)
    used = np.array(sorted(mae), dtype=np.int64)
    idle = np.setdiff1d(np.arange(num_qubits), used)
    ax.scatter(*xy[idle].T, s=40, color="#e0e0e0", edgecolor="#999999", lw=0.5, zorder=2)
    top = vmax if vmax is not None else max(mae.values(), default=0.0)
    norm = Normalize(0.0, max(top, 1e-9))
    cmap = colormaps["viridis"]
    ax.scatter(
        *xy[used].T,
        s=90,
        c=[mae[q] for q in used],
        cmap=cmap,
        norm=norm,
        edgecolor="black",
        lw=0.6,
        zorder=3,
    )
    for q in used:
        ax.annotate(
            str(q),
            xy[q],
            fontsize=6,
            ha="center",
            va="center",
            zorder=4,
            color="white" if norm(mae[q]) < 0.6 else "black",
        )
    from matplotlib.cm import ScalarMappable

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="MAE of <Z>", shrink=0.8)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"{kind}: {len(used)} of {num_qubits} qubits used (grey: idle)")
    return _png(fig)


def hellinger_plot(fidelity: np.ndarray) -> bytes:
    """Hellinger fidelity of every sampled row's measured vs exact distribution."""
    fig, ax = _figure()
    ax.hist(fidelity, bins=np.linspace(min(0.8, float(fidelity.min())), 1.0, 41), color="tab:green")
    ax.axvline(float(fidelity.mean()), color="black", lw=1, label=f"mean {fidelity.mean():.4f}")
    ax.set(xlabel="Hellinger fidelity (measured vs exact outcome distribution)", ylabel="rows")
    ax.legend(loc="upper left")
    return _png(fig)


def confusion_plot(
    confusion: np.ndarray,
    *,
    vmax: float | None = None,
    classes: Sequence[str] | None = None,
    truth: str = "exact model's prediction",
    title: str | None = None,
) -> bytes:
    """``truth`` (rows: the exact model's class, or the true label) vs the backend's
    prediction (columns), ticks named by ``classes``; ``vmax``: top of the colour scale
    (side-by-side runs share one)."""
    fig, ax = _figure(5.2, 4.6)
    image = ax.imshow(confusion, cmap="Blues", vmin=0, vmax=vmax)
    c = len(confusion)
    for i in range(c):
        for j in range(c):
            if confusion[i, j]:
                ax.text(
                    j,
                    i,
                    str(confusion[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black",
                )
    ax.set(
        xticks=range(c),
        yticks=range(c),
        xlabel="backend's prediction",
        ylabel=truth,
    )
    if classes is not None and len(classes) == c:
        ax.set_xticklabels(classes, rotation=45 if c > 4 else 0, ha="right" if c > 4 else "center")
        ax.set_yticklabels(classes)
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="images")
    return _png(fig)


def shots_plot(rounds: list[dict[str, Any]], shots_per_row: np.ndarray) -> bytes:
    """An adaptive run: agreement with the exact model against shots spent, round by round,
    and how many rows ended at each shot count."""
    fig, left = _figure(10.0, 4.0)
    left.remove()
    left, right = fig.subplots(1, 2)
    total = np.array([r["shots"] for r in rounds], dtype=float)
    left.plot(total / 1e6, [100 * r["agreement"] for r in rounds], "o-")
    left.set_xlabel("shots spent (millions, cumulative)")
    left.set_ylabel("agreement with the exact model (%)")
    levels, counts = np.unique(shots_per_row, return_counts=True)
    right.bar(np.arange(len(levels)), counts)
    right.set_xticks(np.arange(len(levels)), [f"{v:,}" for v in levels], rotation=45)
    right.set_xlabel("shots of a row (every round)")
    right.set_ylabel("rows")
    right.set_yscale("log")
    return _png(fig)
