"""Fidelity report of a run: how far the backend's answers are from the exact model's.

`build_report(run_dir)` reads a complete `qvit-hw run` directory (rows.npz, predictions.csv,
cost.json, run.json and, for sampling backends, histograms.npz) and computes

    z            <Z> error per row and qubit: MAE, RMSE, share within 2 stderr,
                 correlation, the MAE shot noise alone would give (mitigated and raw)
    per_qnn      the same per QNN;  per_qubit: MAE per physical qubit
    hellinger    Hellinger fidelity of sampled rows' measured vs exact distributions
    predictions  agreement with the exact model, its confusion matrix, accuracy and ROC AUC
                 of both on the labelled images (`train.medmnist_metrics`)
    cost         rows, executions, shots, jobs, retries, wall and QPU seconds

`write_report` writes it as ``report.json`` and a self-contained ``report.html`` (PNG
plots as data URIs, no scripts, no external files); ``against`` puts a second run beside
the first (e.g. fake_brisbane vs rigetti_qvm, or with vs without mitigation).
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .files import write_atomic
from .plots import (
    chip_plot,
    confusion_plot,
    error_histogram,
    hellinger_plot,
    per_qnn_plot,
    png_data_uri,
    scatter_plot,
)

REPORT_JSON, REPORT_HTML = "report.json", "report.html"
SCATTER_POINTS = 3000  # rows drawn in the scatter plot (a seeded sample beyond that)


@dataclass(frozen=True)
class RunData:
    """The raw outputs of one complete run."""

    path: Path
    run: dict[str, Any]  # run.json
    cost: dict[str, Any]  # cost.json
    rows: dict[str, np.ndarray]  # rows.npz (executor.ROW_FIELDS + names)
    labels: np.ndarray  # (N,)
    pred: np.ndarray  # (N,) backend prediction
    pred_exact: np.ndarray  # (N,)
    probs: np.ndarray  # (N, C) backend class probabilities
    probs_exact: np.ndarray  # (N, C)
    histograms: dict[str, np.ndarray] | None  # histograms.npz: row, counts, exact

    @property
    def name(self) -> str:
        mitigate = self.run.get("mitigate", "none")
        suffix = "" if mitigate == "none" else f", mitigate={mitigate}"
        return f"{self.run.get('backend', '?')} ({self.run.get('shots')} shots{suffix})"


def load_run(path: str | os.PathLike[str]) -> RunData:
    """Read a run directory; DataError if it is missing, incomplete or malformed."""
    path = Path(path)
    run_file = path / "run.json"
    if not run_file.is_file():
        raise DataError(f"{path} is not a run directory (no run.json); `qvit-hw run` makes one")
    run = json.loads(run_file.read_text())
    if run.get("status") != "complete":
        raise DataError(
            f"{path}: the run is {run.get('status', 'unknown')}, not complete; finish it with "
            "`qvit-hw run ... --resume` first"
        )
    try:
        with np.load(path / "rows.npz") as npz:
            rows = {k: npz[k] for k in npz.files}
        histograms = None
        if (path / "histograms.npz").is_file():
            with np.load(path / "histograms.npz") as npz:
                histograms = {k: npz[k] for k in npz.files}
        with (path / "predictions.csv").open(newline="") as f:
            table = list(csv.DictReader(f))
        cost = json.loads((path / "cost.json").read_text())
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read the run's outputs: {exc}") from exc
    classes = sum(1 for k in table[0] if k.startswith("prob_") and "exact" not in k)

    def column(key: str, kind: type) -> np.ndarray:
        return np.array([kind(r[key]) for r in table])

    return RunData(
        path=path,
        run=run,
        cost=cost,
        rows=rows,
        labels=column("label", int),
        pred=column("pred", int),
        pred_exact=column("pred_exact", int),
        probs=np.stack([column(f"prob_{c}", float) for c in range(classes)], axis=1),
        probs_exact=np.stack([column(f"prob_exact_{c}", float) for c in range(classes)], axis=1),
        histograms=histograms,
    )


# --- numbers ------------------------------------------------------------------------------


def z_stats(estimate: np.ndarray, exact: np.ndarray, stderr: np.ndarray) -> dict[str, Any]:
    """Error of estimated <Z> against the exact values (arrays of one shape)."""
    d = (estimate - exact).ravel()
    se = stderr.ravel()
    corr = math.nan
    if d.size > 1 and np.std(estimate) > 0 and np.std(exact) > 0:
        corr = float(np.corrcoef(estimate.ravel(), exact.ravel())[0, 1])
    return {
        "values": int(d.size),
        "mae": float(np.abs(d).mean()),
        "rmse": float(np.sqrt((d * d).mean())),
        "max_abs": float(np.abs(d).max()),
        "within_2se": float((np.abs(d) <= 2 * se + 1e-12).mean()),
        "correlation": corr,
        # a Gaussian error of standard deviation stderr has mean |error| stderr sqrt(2/pi)
        "shot_noise_mae": float(se.mean() * math.sqrt(2 / math.pi)),
    }


def hellinger_fidelity(counts: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """(sum_s sqrt(p_s q_s))^2 per row, as qiskit.quantum_info.hellinger_fidelity:
    counts (S, 2^n) and exact probabilities (S, 2^n) -> (S,)."""
    p = counts / counts.sum(axis=1, keepdims=True)
    q = np.clip(exact, 0.0, None)
    q = q / q.sum(axis=1, keepdims=True)
    return np.sqrt(p * q).sum(axis=1) ** 2


def _task(run: dict[str, Any], classes: int) -> str:
    from .data import dataset_infos

    tasks = {info.name: info.task for info in dataset_infos()}
    return tasks.get(run.get("dataset", ""), "binary-class" if classes == 2 else "multi-class")


def _plain(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def compute(data: RunData) -> dict[str, Any]:
    """Every number of the report (JSON-ready; undefined values are None)."""
    from sklearn.metrics import confusion_matrix

    from .train.metrics import medmnist_metrics

    r = data.rows
    names = [str(n) for n in r["names"]]
    z = z_stats(r["estimate"], r["exact"], r["stderr"])
    z_raw = z_stats(r["estimate_raw"], r["exact"], r["stderr_raw"])
    per_qnn = []
    for i, name in enumerate(names):
        m = r["qnn"] == i
        s = z_stats(r["estimate"][m], r["exact"][m], r["stderr"][m])
        per_qnn.append({"qnn": name, "rows": int(m.sum()), **s})
    err = np.abs(r["estimate"] - r["exact"])  # (R, n)
    qubits = r["qubits"].ravel()
    per_qubit = [
        {
            "qubit": int(q),
            "values": int((qubits == q).sum()),
            "mae": float(err.ravel()[qubits == q].mean()),
        }
        for q in np.unique(qubits)
    ]
    hellinger = None
    if data.histograms is not None and len(data.histograms["row"]):
        h = data.histograms
        f = hellinger_fidelity(h["counts"], h["exact"])
        hellinger = {
            "rows": len(f),
            "mean": float(f.mean()),
            "median": float(np.median(f)),
            "min": float(f.min()),
            "shots": int(h["counts"].sum(axis=1)[0]),
        }
    classes = data.probs.shape[1]
    task = _task(data.run, classes)
    acc, auc = medmnist_metrics(data.labels, data.probs, task)
    acc_exact, auc_exact = medmnist_metrics(data.labels, data.probs_exact, task)
    keys = (
        "rows",
        "unique_rows",
        "executions",
        "shots",
        "jobs",
        "submitted",
        "reused",
        "retries",
        "wall_seconds",
        "qpu_seconds",
        "executions_per_image",
        "packing",
    )
    return {
        "run": str(data.path),
        "name": data.name,
        "backend": data.run.get("backend"),
        "bundle": data.run.get("bundle"),
        "dataset": data.run.get("dataset"),
        "shots": data.run.get("shots"),
        "mitigate": data.run.get("mitigate"),
        "z": {k: _plain(v) for k, v in z.items()},
        "z_raw": {k: _plain(v) for k, v in z_raw.items()},
        "per_qnn": [{k: _plain(v) for k, v in row.items()} for row in per_qnn],
        "per_qubit": per_qubit,
        "hellinger": hellinger,
        "predictions": {
            "images": len(data.labels),
            "task": task,
            "agreement": float((data.pred == data.pred_exact).mean()),
            "accuracy": _plain(acc),
            "auc": _plain(auc),
            "exact_accuracy": _plain(acc_exact),
            "exact_auc": _plain(auc_exact),
            # rows: exact model's class, columns: the backend's
            "confusion": confusion_matrix(
                data.pred_exact, data.pred, labels=list(range(classes))
            ).tolist(),
        },
        "cost": {k: data.cost.get(k) for k in keys},
    }


# --- plots and HTML -----------------------------------------------------------------------


def plots(data: RunData, numbers: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(title, PNG bytes) of every plot of one run."""
    r = data.rows
    out = [
        (
            "Measured vs exact <Z>",
            scatter_plot(r["exact"], r["estimate"], r["stderr"], SCATTER_POINTS),
        ),
        (
            "Error vs shot-noise expectation",
            error_histogram(r["estimate"] - r["exact"], r["stderr"]),
        ),
        ("Error per QNN", per_qnn_plot(numbers["per_qnn"])),
    ]
    edges, num_qubits = _coupling_map(data.run.get("backend_name", ""))
    out.append(("Error per physical qubit", chip_plot(numbers["per_qubit"], edges, num_qubits)))
    if data.histograms is not None and len(data.histograms["row"]):
        h = data.histograms
        out.append(
            (
                "Hellinger fidelity of sampled rows",
                hellinger_plot(hellinger_fidelity(h["counts"], h["exact"])),
            )
        )
    out.append(
        (
            "Predictions: exact model vs backend",
            confusion_plot(np.array(numbers["predictions"]["confusion"])),
        )
    )
    return out


def _coupling_map(backend: str) -> tuple[list[tuple[int, int]] | None, int | None]:
    """The chip's edges and size for the qubit plot (None for ideal simulators)."""
    from .devices import TARGETS, from_qiskit_target, get_target
    from .devices.ibm import fake_backend
    from .errors import QvitHwError

    try:
        for name in (backend, backend.replace("fake_", "ibm_", 1)):
            if name in TARGETS:
                dt = get_target(name, live=False)
                return list(dt.edges), dt.num_qubits
        if backend.startswith("fake_"):
            dt = from_qiskit_target(backend, fake_backend(backend).target, "")
            return list(dt.edges), dt.num_qubits
    except QvitHwError:
        pass
    return None, None


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    return html.escape(str(value))


SUMMARY_ROWS = (
    ("<Z> MAE (mitigated)", ("z", "mae")),
    ("<Z> MAE (raw)", ("z_raw", "mae")),
    ("<Z> RMSE", ("z", "rmse")),
    ("MAE from shot noise alone", ("z", "shot_noise_mae")),
    ("share within 2 stderr", ("z", "within_2se")),
    ("correlation measured vs exact", ("z", "correlation")),
    ("Hellinger fidelity (mean of sampled rows)", ("hellinger", "mean")),
    ("Hellinger fidelity (min)", ("hellinger", "min")),
    ("prediction agreement with exact model", ("predictions", "agreement")),
    ("accuracy: backend", ("predictions", "accuracy")),
    ("accuracy: exact model", ("predictions", "exact_accuracy")),
    ("ROC AUC: backend", ("predictions", "auc")),
    ("ROC AUC: exact model", ("predictions", "exact_auc")),
    ("images", ("predictions", "images")),
    ("QNN rows", ("cost", "rows")),
    ("unique rows (after dedup)", ("cost", "unique_rows")),
    ("circuit executions", ("cost", "executions")),
    ("executions per image", ("cost", "executions_per_image")),
    ("copies packed per execution", ("cost", "packing")),
    ("shots", ("cost", "shots")),
    ("jobs", ("cost", "jobs")),
    ("retries", ("cost", "retries")),
    ("wall seconds", ("cost", "wall_seconds")),
    ("QPU seconds", ("cost", "qpu_seconds")),
)


def _lookup(numbers: dict[str, Any], path: tuple[str, str]) -> Any:
    part = numbers.get(path[0])
    return None if part is None else part.get(path[1])


def render_html(reports: list[tuple[dict[str, Any], list[tuple[str, bytes]]]]) -> str:
    """One self-contained page: a summary table (a column per run), then plots side by side."""
    head = "".join(f"<th>{html.escape(n['name'])}</th>" for n, _ in reports)
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(
            f"<td>{_fmt(_lookup(n, path), 2 if path[0] == 'cost' else 4)}</td>" for n, _ in reports
        )
        + "</tr>"
        for label, path in SUMMARY_ROWS
    )
    titles = list(dict.fromkeys(t for _, figs in reports for t, _ in figs))
    sections = []
    for title in titles:  # one section per plot, the runs side by side
        cells = []
        for numbers, figs in reports:
            png = dict(figs).get(title)
            name = html.escape(numbers["name"])
            cell = (
                f'<img alt="{html.escape(title)}: {name}" src="{png_data_uri(png)}">'
                if png is not None
                else "<p>not available for this run</p>"
            )
            caption = name if len(reports) > 1 else html.escape(title)
            cells.append(f"<figure>{cell}<figcaption>{caption}</figcaption></figure>")
        if len(reports) > 1:
            sections.append(f"<h2>{html.escape(title)}</h2><div class=row>{''.join(cells)}</div>")
        else:
            sections.append("".join(cells))
    if len(reports) == 1:  # a single run: its plots in a grid
        sections = ["<h2>Plots</h2><div class=row>" + "".join(sections) + "</div>"]
    runs = ", ".join(html.escape(n["run"]) for n, _ in reports)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>qvit-hw fidelity report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
td:first-child {{ text-align: left; }}
.row {{ display: flex; gap: 1em; flex-wrap: wrap; }}
figure {{ margin: 0; }} img {{ max-width: 640px; }}
figcaption {{ font-size: 0.85em; color: #555; }}
</style></head><body>
<h1>Fidelity report</h1>
<p>Runs: {runs}. Errors compare the backend's &lt;Z&gt; with the exact simulator on the
same token angles; predictions compare the model with its QNNs on the backend against the
exact model.</p>
<table><tr><th></th>{head}</tr>{body}</table>
{"".join(sections)}
</body></html>
"""


def build_report(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """Numbers and plots of one run."""
    data = load_run(run_dir)
    numbers = compute(data)
    return numbers, plots(data, numbers)


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    against: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Write report.json and report.html for ``run_dir`` (beside ``against`` if given) into
    ``out`` (default: the run directory); returns the HTML's path."""
    reports = [build_report(run_dir)]
    if against is not None:
        reports.append(build_report(against))
    out = Path(out) if out is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = dict(reports[0][0])
    if against is not None:
        doc["against"] = reports[1][0]
    write_atomic(out / REPORT_JSON, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    write_atomic(out / REPORT_HTML, render_html(reports))
    return out / REPORT_HTML
