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

`load_run` refuses, with one `DataError` line, a run that is not complete or whose files
are missing, truncated, damaged (every .npz member's CRC is checked; no pickles are read),
malformed (types, shapes, ranges, a row per image of run.json) or disagree with each other
or with the summary run.json recorded at the end of the run.

`write_report` writes it as ``report.json`` and a self-contained ``report.html`` (PNG
plots as data URIs, no scripts, no external files); ``against`` puts a second run beside
the first (e.g. fake_brisbane vs rigetti_qvm, or with vs without mitigation).
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, one_line
from .files import check_out_dir, write_atomic
from .jobs.executor import ROW_FIELDS
from .plots import (
    SHOWN_PX,
    agreement_cost_plot,
    chip_plot,
    confusion_plot,
    error_histogram,
    hellinger_plot,
    per_qnn_plot,
    png_data_uri,
    scatter_plot,
    shots_plot,
    spectrum_plot,
    zne_plot,
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
    shots_used: np.ndarray  # (N,) shots spent on each image's rows
    flip_probability: np.ndarray  # (N,) probability that noise changed the prediction
    fourier: dict[str, np.ndarray] | None = None  # fourier.npz (--mitigate ...,fourier)

    @property
    def name(self) -> str:
        mitigate = self.run.get("mitigate", "none")
        suffix = "" if mitigate == "none" else f", mitigate={mitigate}"
        return f"{self.run.get('backend', '?')} ({self.run.get('shots')} shots{suffix})"


RUN_FILE = "run.json"
# what `qvit-hw run` writes in run.json and the report reads: key -> type
RUN_FIELDS: dict[str, type] = {
    "bundle": str,
    "backend": str,
    "backend_name": str,
    "dataset": str,
    "mitigate": str,
    "shots": int,
    "images": int,
    "classes": list,
    "summary": dict,
}
SUMMARY_FIELDS = ("agreement", "accuracy", "exact_accuracy", "z_mae", "z_mae_raw")
OPTIONAL_TEXT = ("data_fingerprint", "data_root", "task")  # run.json, where present
HISTOGRAM_FIELDS = ("row", "counts", "exact")
FLOAT_FIELDS = (
    "angles", "exact", "estimate", "stderr", "estimate_raw", "stderr_raw", "estimate_linear"
)  # fmt: skip
_AGAIN = "the run's outputs are incomplete or were changed after it: run it again"


def _check_outputs(path: Path, outputs: Any) -> None:
    """The sha256 of every output file run.json recorded (runs of older versions have none)."""
    if outputs is None:
        return
    if not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values()):
        raise DataError(f"{path / RUN_FILE}: its 'outputs' are not file hashes; {_AGAIN}")
    for name, digest in outputs.items():
        file = path / str(name)
        if "/" in str(name) or not file.is_file():
            raise DataError(f"{path}: the run is complete but {name} is missing; {_AGAIN}")
        if hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            raise DataError(f"{file} was modified after the run (sha256 mismatch); {_AGAIN}")


def load_run(path: str | os.PathLike[str]) -> RunData:
    """Read a run directory; DataError (one line) if it is missing, unfinished, incomplete,
    damaged or malformed, or if its files disagree with each other or with run.json."""
    path = Path(path)
    run_file = path / RUN_FILE
    if not run_file.is_file():
        raise DataError(f"{path} is not a run directory (no run.json); `qvit-hw run` makes one")
    run = _read_json(run_file)
    if not isinstance(run, dict):
        raise DataError(
            f"{run_file} holds a JSON {type(run).__name__}, not the object `qvit-hw run` "
            "writes; it is not a run's"
        )
    if run.get("status") != "complete":
        raise DataError(
            f"{path}: the run is {run.get('status', 'unknown')}, not complete; finish it with "
            "`qvit-hw run ... --resume` first"
        )
    _check_run(run, run_file)
    images, classes = run["images"], len(run["classes"])
    for name in ("cost.json", "predictions.csv", "rows.npz"):
        if not (path / name).is_file():
            raise DataError(f"{path}: the run is complete but {name} is missing; {_AGAIN}")
    cost = _read_json(path / "cost.json")
    if not isinstance(cost, dict):
        raise DataError(f"{path / 'cost.json'} holds a JSON {type(cost).__name__}; {_AGAIN}")
    table = _read_predictions(path / "predictions.csv", images, classes, run["classes"])
    rows = _read_npz(path / "rows.npz", ("names", *ROW_FIELDS))
    _check_rows(rows, images, path / "rows.npz")
    histograms = None
    if (path / "histograms.npz").exists():
        histograms = _read_npz(path / "histograms.npz", HISTOGRAM_FIELDS)
        _check_histograms(histograms, rows, path / "histograms.npz")
    fourier = None
    if (path / "fourier.npz").is_file():
        try:
            with np.load(path / "fourier.npz") as f:
                fourier = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"{path / 'fourier.npz'} is unreadable; {_AGAIN}") from exc
    data = RunData(path=path, run=run, cost=cost, rows=rows, histograms=histograms,
                   fourier=fourier, **table)  # fmt: skip
    _check_summary(data, run_file)
    _check_outputs(path, run.get("outputs"))  # last: what parses may still have been edited
    return data


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_bytes(), parse_constant=_no_constant)
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: also UnicodeDecodeError
        raise DataError(f"{file} is not valid JSON ({one_line(exc)}); {_AGAIN}") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_npz(file: Path, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every array of an .npz, read in full (each member's CRC checked), no pickles."""
    try:
        data = file.read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            damaged = archive.testzip()  # reads every member: a flipped byte fails its CRC
        if damaged is not None:
            raise ValueError(f"{damaged} fails its CRC check")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zip, zlib, npy header and pickle errors: a file we cannot use
        raise DataError(
            f"{file} is damaged or not a NumPy archive ({one_line(exc)}); {_AGAIN}"
        ) from exc
    missing = [k for k in fields if k not in arrays]
    if missing:
        raise DataError(f"{file} has no {missing[0]!r} array; {_AGAIN}")
    return arrays


def _check_run(run: dict[str, Any], file: Path) -> None:
    for key, kind in RUN_FIELDS.items():
        if key not in run:
            raise DataError(f"{file} has no {key!r}; {_AGAIN}")
        value = run[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DataError(
                f"{file} has {key!r} = {value!r} of type {type(value).__name__}, not "
                f"{kind.__name__}; {_AGAIN}"
            )
    for key in OPTIONAL_TEXT:  # what newer runs record and the report shows
        if run.get(key) is not None and not isinstance(run[key], str):
            raise DataError(
                f"{file} has {key!r} = {run[key]!r} of type {type(run[key]).__name__}, not "
                f"text; {_AGAIN}"
            )
    notes = run.get("data_notes")
    if notes is not None and (
        not isinstance(notes, list) or not all(isinstance(n, str) for n in notes)
    ):
        raise DataError(f"{file} has 'data_notes' that are not a list of texts; {_AGAIN}")
    if not all(isinstance(c, str) and c for c in run["classes"]):
        raise DataError(f"{file} has 'classes' that are not all names (texts); {_AGAIN}")
    if run["images"] < 1 or run["shots"] < 0 or len(run["classes"]) < 2:
        raise DataError(
            f"{file} has images={run['images']}, shots={run['shots']} and "
            f"{len(run['classes'])} classes; {_AGAIN}"
        )
    summary = run["summary"]
    for key in ("images", *SUMMARY_FIELDS):
        value = summary.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise DataError(f"{file}: its summary has no number {key!r}; {_AGAIN}")


def _read_predictions(
    file: Path, images: int, classes: int, names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """predictions.csv as arrays, after checking its header, every value and that it has a
    row per image of run.json (and, where it has them, its class names: run.json's)."""
    from .jobs.run import PREDICTION_NAMES

    header = ["image", "label", "pred", "pred_exact"]
    header += [f"prob_{c}" for c in range(classes)] + [f"prob_exact_{c}" for c in range(classes)]
    header += ["row_shots", "flip_probability"]
    numeric = len(header)
    old_header = [*header[:-2], "shots_used", "flip_probability"]  # runs before class names
    try:
        table = list(csv.reader(io.StringIO(file.read_bytes().decode(), newline="")))
    except (OSError, ValueError, csv.Error) as exc:  # ValueError: also UnicodeDecodeError
        raise DataError(f"{file} is not readable text ({one_line(exc)}); {_AGAIN}") from exc
    if table and table[0] == old_header:
        table[0] = header
    named = bool(table) and table[0] == [*header, *PREDICTION_NAMES]
    if named:  # runs since class names: their names after the numbers
        header = table[0]
        text = [r[numeric:] for r in table[1:]]
        table = [r[:numeric] if len(r) == len(header) else r for r in table]
        header = header[:numeric]
    if not table or table[0] != header:
        raise DataError(
            f"{file} does not start with the header `qvit-hw run` writes for {classes} "
            f"classes (image,label,pred,pred_exact,prob_0,...); {_AGAIN}"
        )
    body = table[1:]
    if len(body) != images:
        raise DataError(
            f"{file} has {len(body)} image rows, run.json says the run has {images} images; "
            f"{_AGAIN}"
        )
    if any(len(r) != len(header) for r in body):
        raise DataError(f"{file} has a row of the wrong length; {_AGAIN}")
    try:
        ints = np.array([[int(v) for v in r[:4]] for r in body], dtype=np.int64)
        floats = np.array([[float(v) for v in r[4:-2]] for r in body], dtype=np.float64)
        shots = np.array([int(r[-2]) for r in body], dtype=np.int64)
        flip = np.array([float(r[-1]) for r in body], dtype=np.float64)
    except (ValueError, OverflowError) as exc:
        raise DataError(
            f"{file} holds a value that is not a number ({one_line(exc)}); {_AGAIN}"
        ) from exc
    probs, probs_exact = floats[:, :classes], floats[:, classes:]
    problem = ""
    if not np.array_equal(ints[:, 0], np.arange(images)):
        problem = "its images are not numbered 0, 1, 2, ..."
    elif not ((ints[:, 1:] >= 0) & (ints[:, 1:] < classes)).all():
        problem = f"a label or prediction is not a class in 0..{classes - 1}"
    elif not (np.isfinite(floats).all() and (floats >= 0).all() and (floats <= 1).all()):
        problem = "a probability is not in [0, 1]"
    elif (shots < 0).any() or not (np.isfinite(flip).all() and ((flip >= 0) & (flip <= 1)).all()):
        problem = "a shot count is negative or a flip probability is not in [0, 1]"
    elif not np.allclose(floats.reshape(images, 2, classes).sum(axis=2), 1.0, atol=1e-6):
        problem = "its class probabilities do not sum to 1"
    elif not (
        np.array_equal(ints[:, 2], probs.argmax(axis=1))
        and np.array_equal(ints[:, 3], probs_exact.argmax(axis=1))
    ):
        problem = "a prediction is not the most probable class"
    if named and not problem and names is not None:
        want = [[names[a], names[b], names[c]] for a, b, c in ints[:, 1:]]
        if text != want:
            problem = "its class names are not those of run.json for its indices"
    if problem:
        raise DataError(f"{file}: {problem}; {_AGAIN}")
    return {
        "labels": ints[:, 1],
        "pred": ints[:, 2],
        "pred_exact": ints[:, 3],
        "probs": probs,
        "probs_exact": probs_exact,
        "shots_used": shots,
        "flip_probability": flip,
    }


def _check_rows(rows: dict[str, np.ndarray], images: int, file: Path) -> None:
    """Shapes, types and ranges of rows.npz (see `executor.ROW_FIELDS`)."""
    names, qnn = rows["names"], rows["qnn"]
    problem = ""
    if names.ndim != 1 or names.dtype.kind != "U" or len(names) == 0:
        problem = "'names' is not a list of QNN names"
    elif qnn.ndim != 1 or len(qnn) == 0:
        problem = "it holds no rows"
    elif rows["exact"].ndim != 2 or rows["exact"].shape[1] < 1:
        problem = "'exact' is not a (rows, qubits) array"
    if not problem:
        r, n = len(qnn), rows["exact"].shape[1]
        for key in ROW_FIELDS:
            a = rows[key]
            shape = (r,) if key in ("layer", "qnn", "image", "token", "shots") else (r, n)
            floats = key in FLOAT_FIELDS  # float64, as the run wrote them
            if a.shape != shape or (a.dtype != np.float64 if floats else a.dtype.kind not in "iu"):
                want = "float64" if floats else "int"
                problem = f"{key!r} has shape {a.shape} and type {a.dtype}, not {shape} {want}"
                break
            if floats and not np.isfinite(a).all():
                problem = f"{key!r} holds a NaN or an infinity"
                break
    if not problem:
        if not np.array_equal(np.unique(qnn), np.arange(len(names))):
            problem = f"its QNN indices are not those of the {len(names)} names"
        elif not np.array_equal(np.unique(rows["image"]), np.arange(images)):
            problem = f"its rows are not those of the run's {images} images"
        elif (rows["stderr"] < 0).any() or (rows["stderr_raw"] < 0).any():
            problem = "a standard error is negative"
        elif (np.abs(rows["exact"]) > 1 + 1e-9).any():
            problem = "an exact <Z> is outside [-1, 1]"
    if problem:
        raise DataError(f"{file}: {problem}; {_AGAIN}")


def _check_histograms(h: dict[str, np.ndarray], rows: dict[str, np.ndarray], file: Path) -> None:
    """histograms.npz: row ids into rows.npz, counts and exact distributions over 2^n
    outcomes whose <Z> is the rows' exact <Z>."""
    ids, counts, exact = h["row"], h["counts"], h["exact"]
    n = rows["exact"].shape[1]
    s = len(ids) if ids.ndim == 1 else -1
    problem = ""
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        problem = "'row' is not a list of row ids"
    elif counts.shape != (s, 2**n) or counts.dtype.kind not in "iu":
        problem = f"'counts' has shape {counts.shape}, not ({s}, {2**n})"
    elif exact.shape != (s, 2**n) or exact.dtype != np.float64 or not np.isfinite(exact).all():
        problem = f"'exact' has shape {exact.shape}, not ({s}, {2**n})"
    elif s and not ((ids >= 0) & (ids < len(rows["qnn"]))).all():
        problem = "a row id is not a row of rows.npz"
    elif s and ((counts < 0).any() or (counts.sum(axis=1) == 0).any()):
        problem = "a histogram has negative or no counts"
    elif s:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)  # (2^n, n)
        if not np.allclose(exact @ signs, rows["exact"][ids], atol=1e-6):
            problem = "its exact distributions are not those of its rows"
    if problem:
        raise DataError(f"{file}: {problem}; {_AGAIN}")


def _check_summary(data: RunData, file: Path) -> None:
    """The numbers run.json's summary recorded at the end of the run, recomputed from the
    files: a file changed since (other labels or estimates, rows of another run) differs."""
    r = data.rows
    actual = {
        "images": len(data.labels),
        "agreement": float((data.pred == data.pred_exact).mean()),
        "accuracy": float((data.pred == data.labels).mean()),
        "exact_accuracy": float((data.pred_exact == data.labels).mean()),
        "z_mae": float(np.abs(r["estimate"] - r["exact"]).mean()),
        "z_mae_raw": float(np.abs(r["estimate_raw"] - r["exact"]).mean()),
    }
    for key, value in actual.items():
        saved = data.run["summary"][key]
        if not math.isclose(saved, value, rel_tol=1e-9, abs_tol=1e-12):
            raise DataError(
                f"{data.path}: {key} from the run's files is {value:.6g}, its {file.name} "
                f"summary says {saved:.6g}; {_AGAIN}"
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


TASKS = ("binary-class", "multi-class", "ordinal-regression")


def _task(run: dict[str, Any], classes: int) -> str:
    """The run's task as it recorded it, else MedMNIST's for its data set, else from its
    class count (an image folder of two classes is binary)."""
    from .data import MEDMNIST, dataset_infos

    if run.get("task") in TASKS:
        return str(run["task"])
    if run.get("dataset") in MEDMNIST:
        return {info.name: info.task for info in dataset_infos()}[run["dataset"]]
    return "binary-class" if classes == 2 else "multi-class"


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
        "qpu_seconds_estimated",
        "qpu_seconds_service_estimate",
        "qpu_seconds_source",
        "row_shots",
        "row_shots_per_image",
        "executions_per_image",
        "packing",
        "calibration_jobs",
        "calibration_executions",
        "calibration_share",
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
            # rows: the true label, columns: the backend's
            "confusion_true": confusion_matrix(
                data.labels, data.pred, labels=list(range(classes))
            ).tolist(),
            "auc_na_reason": _auc_reason(data, auc),
        },
        "cost": {
            **{k: data.cost.get(k) for k in keys},
            # the one "shots per image": every shot the device ran / images (as `run` says)
            "shots_per_image": _plain(data.cost.get("shots", math.nan) / len(data.labels)),
        },
        "classes": [str(c) for c in data.run["classes"]],
        "data_fingerprint": data.run.get("data_fingerprint"),
        "data_root": data.run.get("data_root"),
        "data_notes": [str(n) for n in _list(data.run.get("data_notes"))],
        # --mitigate ...,fourier: per QNN, coefficient norm by frequency weight
        "fourier_spectrum": fourier_spectra(data.fourier) or None,
        # --mitigate ...,zne: error per noise scale and extrapolated, 2-qubit gates per scale
        "zne": zne_numbers(data),
        # every correction's effect, side by side (raw, readout, readout+learned, ...)
        "corrections": [
            {k: _plain(v) if isinstance(v, float) else v for k, v in stage.items()}
            for stage in _list(_corrections_file(data.path).get("stages"))
            if isinstance(stage, dict)
        ],
    }


def _auc_reason(data: RunData, auc: float) -> str | None:
    """Why ROC AUC is n/a (None where it is defined)."""
    if not math.isnan(auc):
        return None
    present = np.unique(data.labels)
    names = data.run["classes"]
    if len(present) == 1:
        return f"the {len(data.labels)} images hold only class {names[present[0]]!r}"
    return "no class has both positive and negative images"


# --- plots and HTML -----------------------------------------------------------------------


def plots(
    data: RunData, numbers: dict[str, Any], scale: dict[str, float] | None = None
) -> list[tuple[str, bytes]]:
    """(title, PNG bytes) of every plot of one run; ``scale`` fixes the top of the colour
    scales ("qubit_mae", "confusion") so that runs side by side share them."""
    scale = scale or {}
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
    chip = str(data.run.get("backend_name", ""))
    if chip.startswith("surrogate:"):  # a characterization's device
        chip = str(_entry(_entry(data.run, "identity"), "backend").get("device", ""))
    edges, num_qubits = _coupling_map(chip)
    chip = chip_plot(numbers["per_qubit"], edges, num_qubits, vmax=scale.get("qubit_mae"))
    out.append(("Error per physical qubit", chip))
    if data.histograms is not None and len(data.histograms["row"]):
        h = data.histograms
        out.append(
            (
                "Hellinger fidelity of sampled rows",
                hellinger_plot(hellinger_fidelity(h["counts"], h["exact"])),
            )
        )
    adaptive = data.cost.get("adaptive")
    if isinstance(adaptive, dict) and adaptive.get("rounds"):
        out.append(("Adaptive shots: agreement vs shots spent, shots per row",
                    shots_plot(adaptive["rounds"], r["shots"])))  # fmt: skip
    spectra = fourier_spectra(data.fourier)
    if spectra:
        out.append(("Fourier spectrum per QNN: device vs ideal circuit (determined terms)",
                    spectrum_plot(spectra)))  # fmt: skip
    zne = zne_numbers(data)
    if zne is not None:
        twirled = f" (2-qubit gates twirled, {zne['twirls']} draws)" if zne["twirls"] else ""
        out.append((f"Zero-noise extrapolation{twirled}: error per noise scale, and its cost",
                    zne_plot(zne["scales"], zne["per_qnn"], zne["two_qubit_gates"])))  # fmt: skip
    points, unit = agreement_points(data)
    if points:
        out.append(("Agreement vs what the run spent", agreement_cost_plot(points, unit)))
    p, classes = numbers["predictions"], numbers.get("classes")
    for title, key, truth in CONFUSIONS:
        plot = confusion_plot(np.array(p[key]), vmax=scale.get("confusion"), classes=classes,
                              truth=truth, title=title)  # fmt: skip
        out.append((title, plot))
    return out


SPECTRUM_SE = 0.02  # coefficients with a larger standard error are left out of the spectrum


def fourier_spectra(arrays: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
    """Per QNN of fourier.npz: the norm of its coefficients by frequency weight, summed over
    outputs and averaged over placement groups, for the device and the ideal circuit, over
    the terms the run determines (standard error below `SPECTRUM_SE`: a run's token angles
    cover a small part of the torus, so many of a wide cone's coefficients are free while
    the fitted values on the run's rows are not; a characterization's grid determines
    them all). Returns [{"qnn", "device", "exact", "terms"}]."""
    from .mitigation.fourier import term_weights

    if not arrays:
        return []
    out: dict[str, dict[str, Any]] = {}
    for key, value in arrays.items():
        kind, name, *rest = key.split("|")
        if kind != "coef":
            continue
        i, group = rest
        width = len(arrays[f"cone|{name}|{i}"])
        known = np.asarray(arrays[f"se|{name}|{i}|{group}"]) < SPECTRUM_SE
        weights = term_weights(width)
        entry = out.setdefault(name, {"qnn": name, "device": {}, "exact": {}, "terms": 0})
        size = 1 + width
        device = np.bincount(weights[known], weights=np.asarray(value)[known] ** 2,
                             minlength=size)  # fmt: skip
        exact = np.bincount(weights[known], weights=np.asarray(arrays[f"exact|{name}|{i}"])[known]
                            ** 2, minlength=size)  # fmt: skip
        entry["device"].setdefault(i, []).append(device)
        entry["exact"].setdefault(i, []).append(exact)
        entry["terms"] += int(known.sum())
    spectra = []
    for entry in out.values():
        size = max(len(p) for ps in entry["device"].values() for p in ps)

        def total(parts: dict[str, list[np.ndarray]], size: int = size) -> list[float]:
            acc = np.zeros(size)
            for ps in parts.values():  # per output: the mean over placement groups
                acc += np.mean([np.pad(p, (0, size - len(p))) for p in ps], axis=0)
            return np.sqrt(acc).tolist()

        if entry["terms"]:
            spectra.append({"qnn": entry["qnn"], "device": total(entry["device"]),
                            "exact": total(entry["exact"]), "terms": entry["terms"]})  # fmt: skip
    return spectra


def _entry(record: Any, key: str) -> dict[str, Any]:
    """``record[key]`` where both are JSON objects, else {} (a damaged run.json reads as
    one without the entry)."""
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, dict) else {}


def zne_numbers(data: RunData) -> dict[str, Any] | None:
    """--mitigate ...,zne: per QNN, MAE vs exact at each noise scale (corrected, before
    extrapolation) and extrapolated (before any run-level fit), and the 2-qubit gates per
    execution of each scale's template (what each scale costs beside scale 1)."""
    values = data.rows.get("estimate_scales")
    zne = _entry(_entry(data.run, "identity"), "zne")
    scales = zne.get("scales")
    if values is None or not isinstance(scales, list) or len(scales) != values.shape[1]:
        return None
    if not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scales):
        return None
    r = data.rows
    stages = _list(_corrections_file(data.path).get("stages"))
    stage = next(
        (s for s in stages if isinstance(s, dict) and str(s.get("name", "")).endswith("zne")),
        None,
    )
    extrapolated = r["estimate_linear"] if "estimate_row" not in r else r["estimate_row"]
    per_qnn = []
    for i, name in enumerate(str(n) for n in r["names"]):
        m = r["qnn"] == i
        err = np.abs(values[m] - r["exact"][m][:, None, :])  # (rows, K, n)
        zero = float(np.abs(extrapolated[m] - r["exact"][m]).mean())
        per_qnn.append({"qnn": name, "mae": err.mean(axis=(0, 2)).tolist(), "extrapolated": zero})
    templates = data.cost.get("templates") or {}
    gates = []
    for s in scales:
        found = [t["two_qubit_gates"] for name, t in templates.items()
                 if (name.endswith(f"_zne{s}") if s > 1 else "_zne" not in name)]  # fmt: skip
        gates.append(float(np.mean(found)) if found else 0.0)
    twirls = zne.get("twirls", 0)  # runs from before twirling have none
    return {"scales": scales, "per_qnn": per_qnn, "two_qubit_gates": gates,
            "stage": stage, "twirls": twirls if isinstance(twirls, int) else 0}  # fmt: skip


def agreement_points(data: RunData) -> tuple[list[dict[str, Any]], str]:
    """Agreement of each correction stage (all at the run's cost) and of each adaptive
    round (at its share of the cost), against QPU seconds where the run estimated them,
    else shots."""
    cost = data.cost
    qpu = cost.get("qpu_seconds") or cost.get("qpu_seconds_estimated")
    shots = cost.get("shots") or 0
    unit = "QPU seconds" if qpu else "shots taken"
    total = float(qpu) if qpu else float(shots)
    points = []
    for stage in _list(_corrections_file(data.path).get("stages")):
        if isinstance(stage, dict) and isinstance(stage.get("agreement"), float):
            points.append({"label": stage.get("name", "?"), "cost": total,
                           "agreement": stage["agreement"]})  # fmt: skip
    adaptive = cost.get("adaptive")
    rounds = adaptive.get("rounds") if isinstance(adaptive, dict) else None
    if rounds and shots:
        for r in rounds:
            points.append({"label": f"round {r['round']}", "cost": total * r["shots"] / shots,
                           "agreement": r["agreement"]})  # fmt: skip
    return points, unit


# the two confusion matrices: (title, key in numbers["predictions"], what the rows are)
CONFUSIONS = (
    ("Predictions: backend vs the exact model", "confusion", "exact model's prediction"),
    ("Predictions: backend vs the true labels", "confusion_true", "true label"),
)


def _coupling_map(backend: str) -> tuple[list[tuple[int, int]] | None, int | None]:
    """The chip's edges and size for the qubit plot (None for ideal simulators): the
    catalog's snapshot of ``ibm_<device>``, ``fake_<device>``, a Rigetti or Braket QPU."""
    from .devices import catalog
    from .errors import QvitHwError

    try:
        if backend.startswith("braket:") and backend != "braket:local":
            from .devices.braket import find_device

            backend = find_device(backend.removeprefix("braket:")).target or ""
        name = catalog.canonical(backend.partition("?")[0])
        if name in catalog.names():
            dt = catalog.get_target(name, live=False)
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
    ("shots the device ran (calibration included)", ("cost", "shots")),
    ("shots per image (the device's shots / images)", ("cost", "shots_per_image")),
    ("jobs", ("cost", "jobs")),
    ("retries", ("cost", "retries")),
    ("wall seconds", ("cost", "wall_seconds")),
    ("QPU seconds, measured by the service", ("cost", "qpu_seconds")),
    ("QPU seconds, the service's estimate", ("cost", "qpu_seconds_service_estimate")),
    (
        "QPU seconds, estimated by qvit-hw (a lower bound: shots and per-job overhead)",
        ("cost", "qpu_seconds_estimated"),
    ),
    ("QPU seconds: where the figure comes from", ("cost", "qpu_seconds_source")),
    (
        "row shots per image (each row counts its execution's shots; packed rows share them)",
        ("cost", "row_shots_per_image"),
    ),
    ("calibration executions", ("cost", "calibration_executions")),
    ("calibration share of data executions", ("cost", "calibration_share")),
)


def _corrections_file(path: Path) -> dict[str, Any]:
    """corrections.json of a run (covered by run.json's output hashes), or {} if absent."""
    file = path / "corrections.json"
    if not file.is_file():
        return {}
    doc = _read_json(file)
    return doc if isinstance(doc, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _corrections_table(reports: list[tuple[dict[str, Any], list[tuple[str, bytes]]]]) -> str:
    """Every correction's effect, stage by stage, for every run that has corrections."""
    parts = []
    for numbers, _ in reports:
        stages = numbers.get("corrections") or []
        if len(stages) < 2:
            continue
        rows = "".join(
            f"<tr><td>{html.escape(str(st.get('name')))}</td><td>{_fmt(st.get('z_mae'))}</td>"
            f"<td>{_fmt(st.get('within_2se'))}</td><td>{_fmt(st.get('mean_stderr'))}</td>"
            f"<td>{_fmt(st.get('agreement'))}</td></tr>"
            for st in stages
        )
        parts.append(
            f"<h2>Corrections side by side: {html.escape(numbers['name'])}</h2><table><tr>"
            "<th>after</th><th>&lt;Z&gt; MAE</th><th>within 2 stderr</th><th>mean stderr</th>"
            f"<th>agreement</th></tr>{rows}</table>"
        )
    return "".join(parts)


def _lookup(numbers: dict[str, Any], path: tuple[str, str]) -> Any:
    part = numbers.get(path[0])
    return None if part is None else part.get(path[1])


def render_html(
    reports: list[tuple[dict[str, Any], list[tuple[str, bytes]]]], warnings: Sequence[str] = ()
) -> str:
    """One self-contained page: warnings, a summary table (a column per run), then plots side
    by side (sharing colour scales)."""
    notes = "".join(f'<p class="warning">warning: {html.escape(w)}</p>' for w in warnings)
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
    about = "".join(_about(n) for n, _ in reports)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>qvit-hw fidelity report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
td:first-child {{ text-align: left; }}
.row {{ display: flex; gap: 1em; flex-wrap: wrap; }}
figure {{ margin: 0; }} img {{ max-width: {SHOWN_PX}px; }}
figcaption {{ font-size: 0.85em; color: #555; }}
.note {{ color: #444; background: #eef3fb; border-left: 4px solid #4a7bd0;
  padding: 0.4em 0.8em; }}
.warning {{ color: #8a4b00; background: #fff4e0; border-left: 4px solid #e69500;
  padding: 0.4em 0.8em; }}
</style></head><body>
<h1>Fidelity report</h1>
<p>Runs: {runs}. Errors compare the backend's &lt;Z&gt; with the exact simulator on the
same token angles; predictions compare the model with its QNNs on the backend against the
exact model.</p>
{about}
{notes}
<table><tr><th></th>{head}</tr>{body}</table>
{_corrections_table(reports)}
{"".join(sections)}
</body></html>
"""


def _about(numbers: dict[str, Any]) -> str:
    """One run's data set, class names, bundle and notes on its images (why an AUC is n/a)."""
    data = html.escape(str(numbers.get("dataset")))
    if numbers.get("data_root"):
        data += f" ({html.escape(str(numbers['data_root']))})"
    classes = ", ".join(f"{i}: {html.escape(c)}" for i, c in enumerate(numbers.get("classes", [])))
    why = numbers["predictions"].get("auc_na_reason")
    notes = [*numbers.get("data_notes", []), *([f"ROC AUC is n/a: {why}"] if why else [])]
    lines = "".join(f'<p class="note">note: {html.escape(n)}</p>' for n in dict.fromkeys(notes))
    return (
        f'<p class="about"><b>{html.escape(numbers["name"])}</b>: data set <b>{data}</b>, '
        f"split of {numbers['predictions']['images']} images; classes <b>{classes}</b>; "
        f"bundle {html.escape(str(numbers.get('bundle')))}; backend "
        f"{html.escape(str(numbers.get('backend')))}</p>{lines}"
    )


def build_report(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """Numbers and plots of one run."""
    data = load_run(run_dir)
    numbers = compute(data)
    return numbers, plots(data, numbers)


def shared_scale(numbers: list[dict[str, Any]]) -> dict[str, float]:
    """One top for each colour scale over runs shown side by side."""
    mae = [row["mae"] for n in numbers for row in n["per_qubit"]]
    confusion = [int(np.max(n["predictions"][key])) for n in numbers for _, key, _ in CONFUSIONS]
    return {"qubit_mae": max(mae, default=0.0), "confusion": float(max(confusion, default=1))}


def comparison_warnings(numbers: list[dict[str, Any]]) -> list[str]:
    """What differs between runs compared side by side besides backend and corrections:
    their images (count), shots or data set, each a line naming the values."""
    first, *others = numbers
    out = []
    for other in others:
        for what, get in (
            ("images", lambda n: n["predictions"]["images"]),
            ("shots", lambda n: n.get("shots")),
            ("data set", lambda n: n.get("dataset")),
        ):
            a, b = get(first), get(other)
            if a != b:
                out.append(
                    f"the runs differ in {what}: {a} in {first['run']}, {b} in {other['run']}; "
                    "their numbers are not directly comparable"
                )
    return out


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    against: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Write report.json and report.html for ``run_dir`` (beside ``against`` if given) into
    ``out`` (default: the run directory; there a comparison is
    ``report-vs-<against's folder name>.{json,html}``, so the run's own report stays);
    returns the HTML's path."""
    if out is not None:
        check_out_dir(out)
    runs = [load_run(run_dir)] + ([load_run(against)] if against is not None else [])
    numbers = [compute(data) for data in runs]
    scale = shared_scale(numbers) if len(runs) > 1 else None
    reports = [(n, plots(data, n, scale)) for data, n in zip(runs, numbers, strict=True)]
    warnings = comparison_warnings(numbers) if len(runs) > 1 else []
    comparison_beside_run = against is not None and out is None
    out = Path(out) if out is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = dict(reports[0][0])
    if against is not None:
        doc["against"] = reports[1][0]
        doc["warnings"] = warnings
    page = out / REPORT_HTML
    if comparison_beside_run:  # the run's own report.html stays
        page = out / f"report-vs-{comparison_name(against)}.html"  # type: ignore[arg-type]
    write_atomic(page.with_suffix(".json"), json.dumps(doc, indent=2, allow_nan=False) + "\n")
    write_atomic(page, render_html(reports, warnings))
    return page


def comparison_name(against: str | os.PathLike[str]) -> str:
    """The other run's folder name as a file name part (`report --against`)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(against).resolve().name).strip("._")
    return name or "other"
