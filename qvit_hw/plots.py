"""The fidelity report's plots: each function returns one PNG (matplotlib, Agg, no display)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .devices.lattice import lattice_positions

__all__ = ["chip_plot", "lattice_positions"]  # lattice_positions: re-exported

DPI = 80
SHOWN_PX = 640  # the report shows a plot at most this wide (its CSS); a wider one shrinks
CHIP_LABEL_PT = 9.0  # qubit numbers on the chip: 10 px, so >= 9 px as the report shows them


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


def chip_plot(
    per_qubit: list[dict[str, Any]],
    edges: list[tuple[int, int]] | None,
    num_qubits: int | None,
    *,
    vmax: float | None = None,
) -> bytes:
    """MAE per physical qubit drawn on the chip (unused qubits grey): on its lattice
    (`lattice_positions`: heavy-hex for IBM's Eagle and Heron, the square lattice of
    Nighthawk and Rigetti's chips), else a spring layout of
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
    # as wide as the page shows it unshrunk (its labels' size is their size on screen)
    width = float(np.clip(span[0] * 0.53, 6.0, SHOWN_PX / DPI)) if lattice else 7.2
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
    discs = ax.scatter(
        *xy[used].T,
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
            fontsize=CHIP_LABEL_PT,
            fontweight="bold",
            ha="center",
            va="center",
            zorder=4,
            color="white" if norm(mae[q]) < 0.6 else "black",
        )
    from matplotlib.cm import ScalarMappable

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="MAE of <Z>", shrink=0.8)
    pad = 0.6 if lattice else 0.08 * float(np.ptp(xy, axis=0).max())  # room for the discs
    ax.set(xlim=(xy[:, 0].min() - pad, xy[:, 0].max() + pad),
           ylim=(xy[:, 1].min() - pad, xy[:, 1].max() + pad))  # fmt: skip
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"{kind}: {len(used)} of {num_qubits} qubits used (grey: idle)")
    # a used qubit's disc holds its number and stays clear of its neighbours': its size
    # follows the drawn distance between coupled qubits, once the layout is done
    fig.tight_layout()
    ax.apply_aspect()
    at = ax.transData.transform(xy)  # pixels
    gap = min(float(np.hypot(*(at[p] - at[q]))) for p, q in pairs) * 72 / DPI  # points
    discs.set_sizes([float(np.clip(0.85 * gap, 12.0, 22.0)) ** 2])
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


def spectrum_plot(spectra: list[dict[str, Any]]) -> bytes:
    """Per QNN, the device's Fourier spectrum beside the ideal circuit's: the root of the
    summed squared coefficients of each frequency weight (how many angles a term depends
    on), over the QNN's outputs; ``spectra``: [{"qnn", "device" (W,), "exact" (W,)}]."""
    cols = min(3, len(spectra))
    rows = -(-len(spectra) // cols)
    fig, first = _figure(4.2 * cols, 3.0 * rows)
    first.remove()
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, s in zip(axes, spectra, strict=False):
        weights = np.arange(len(s["exact"]))
        ax.bar(weights - 0.2, s["exact"], 0.4, label="ideal circuit")
        ax.bar(weights + 0.2, s["device"], 0.4, label="device (fitted)")
        ax.set_yscale("log")
        ax.set_title(s["qnn"], fontsize=9)
        ax.set_xticks(weights)
        ax.set_xlabel("frequency weight")
    for ax in axes[len(spectra) :]:
        ax.remove()
    axes[0].set_ylabel("coefficient norm")
    axes[0].legend(fontsize=8)
    return _png(fig)


def agreement_cost_plot(points: list[dict[str, Any]], unit: str) -> bytes:
    """Agreement with the exact model against what the run spent (QPU seconds, or shots
    where the device gives no durations): one point per correction stage (same cost) and
    one per adaptive round; ``points``: [{"label", "cost", "agreement"}]."""
    fig, ax = _figure(6.4, 4.0)
    for p in points:
        ax.plot(p["cost"], 100 * p["agreement"], "o")
        ax.annotate(p["label"], (p["cost"], 100 * p["agreement"]), fontsize=8,
                    xytext=(4, 2), textcoords="offset points")  # fmt: skip
    ax.set_xlabel(unit)
    ax.set_ylabel("agreement with the exact model (%)")
    return _png(fig)


def zne_plot(scales: list[float], per_qnn: list[dict[str, Any]], gates: list[float]) -> bytes:
    """Zero-noise extrapolation per QNN: <Z> MAE against the exact model at each noise
    scale and extrapolated to 0 (left), and the 2-qubit gates per circuit each scale costs
    (right); ``per_qnn``: [{"qnn", "mae" (per scale), "extrapolated"}]."""
    fig, first = _figure(10.0, 4.0)
    first.remove()
    left, right = fig.subplots(1, 2)
    for q in per_qnn:
        line = left.plot(scales, q["mae"], "o-", label=q["qnn"])[0]
        left.plot([0, scales[0]], [q["extrapolated"], q["mae"][0]], ":", color=line.get_color())
        left.plot([0], [q["extrapolated"]], "s", color=line.get_color())
    left.set_xlabel("noise scale (0: extrapolated)")
    left.set_ylabel("MAE of <Z> vs exact")
    left.set_xlim(left=-0.3)
    left.legend(fontsize=7)
    right.bar([str(s) for s in scales], gates)
    right.set_xlabel("noise scale")
    right.set_ylabel("2-qubit gates per execution")
    return _png(fig)
