"""`qvit-hw run`: a bundle's inference with its QNN layers executed on a backend.

The model code is unchanged: its QNN executor is swapped for `SchedulerExecutor`, and the
exact model runs beside it for reference. A run directory holds:

    run.json         settings (bundle, backend, data set, shots, ...), status
                     (running / interrupted / failed / complete) and, once complete, a
                     summary; written first, so a run that stopped says so
    journal.sqlite   every job (`Journal`); kept for --resume
    ledger.json      how many jobs the run submitted and a digest of their payloads
                     (`Ledger`): --resume refuses a journal that lost any of them
    predictions.csv  image, label, pred, pred_exact, then prob_<class> and
                     prob_exact_<class> per class, row_shots (the shots behind the image's
                     rows: a packed execution's shots count for each of its rows),
                     flip_probability, then the class names of label, pred, pred_exact
    rows.npz         one entry per QNN row (see `executor.ROW_FIELDS`) plus ``names``
    histograms.npz   sampling backends: for a sample of rows (the first executions of each
                     job) ``row`` ids into rows.npz, measured ``counts`` (S, 2^n, raw, not
                     mitigated) and the ``exact`` outcome distribution (S, 2^n)
    jobs.jsonl       one journal record per job (payload hash, job id, status, times, ...)
    cost.json        rows, unique rows, executions, shots, jobs, submits, retries, reused,
                     wall and QPU seconds, executions per image, packing factor

The files after the journal are written only when the run completes (each via a temporary file and a
rename), so a partial run never looks complete.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..backends import DEFAULT_BACKEND, get_backend, parse_name
from ..backends.base import backend_identity
from ..errors import RunError, RunInterrupted, one_line
from ..files import check_out_dir, flat_keys, locked, write_atomic, write_json
from ..mitigation import parse_mitigation
from ..model import VisionTransformer
from .config import AdaptiveConfig, RetryConfig, SchedulerConfig
from .executor import SchedulerExecutor
from .infer import Inferred, _infer
from .inputs import data_notes, load_inputs
from .journal import Journal
from .limits import check_limits
from .retry import Retry
from .runner import QNNRunner

if TYPE_CHECKING:
    from ..data import ImageSet, Normalization
    from .preview import Preview

RUN_FILE = "run.json"
PREDICTION_NAMES = ("label_name", "pred_name", "pred_exact_name")  # predictions.csv's last
JOURNAL_FILE = "journal.sqlite"
LEDGER_FILE = "ledger.json"
OUTPUT_FILES = (
    "predictions.csv",
    "rows.npz",
    "histograms.npz",
    "jobs.jsonl",
    "cost.json",
    "corrections.json",
    "fourier.npz",
)
# the run's settings that, with the backend's identity and the bundle's manifest digest,
# make up the run identity: --resume requires the same (poll interval, in-flight limit and
# retries may change, and --max-shots-per-row may be lowered: `_check_ceiling`)
IDENTITY_KEYS = (
    "bundle",
    "dataset",
    "split",
    "limit",
    "batch_size",
    "mitigate",
    "shots",
    "max_copies",
    "packing",
    "job_size",
    "seed",
    "calibration_rows",
    "readout_shots",
    "adaptive",
)


@dataclass(frozen=True)
class RunOptions:
    """Settings of one run (the CLI's flags); the job layer's own in `scheduler` and `retry`."""

    bundle: str
    backend: str = DEFAULT_BACKEND
    dataset: str | None = None  # None: the bundle's data set
    split: str = "test"
    limit: int | None = None
    batch_size: int = 8
    mitigate: str = "none"
    data_root: str | None = None
    skip_unreadable: bool = False  # leave out an image folder's unreadable images
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    # --shots auto: rounds of shots to a target agreement (None: every row gets
    # scheduler.shots; with it, scheduler.shots is what calibration jobs take)
    adaptive: AdaptiveConfig | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        names = parse_mitigation(self.mitigate)  # ValueError naming --mitigate
        if "zne" in names and self.adaptive is not None:
            raise ValueError(
                "--shots auto does not compose with --mitigate zne yet (its rounds would "
                "have to run every noise scale): use a fixed --shots with zne"
            )
        if "fourier" in names and self.adaptive is not None:
            raise ValueError(
                "--shots auto does not compose with --mitigate fourier yet (its rounds decide "
                "per row, the fit pools every row of the run): use a fixed --shots with fourier"
            )
        if "fourier" in names and names[-1] != "fourier":
            raise ValueError(
                "--mitigate: fourier is a run-level fit applied after every row-level "
                f"correction, so it comes last (e.g. readout,fourier), got {self.mitigate!r}"
            )

    def settings(self) -> dict[str, Any]:
        """Flat settings for run.json (the job layer's fields beside the run's own)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("scheduler", "retry")}
        out.update(asdict(self.scheduler))
        out["adaptive"] = None if self.adaptive is None else asdict(self.adaptive)
        out.update(retries=self.retry.attempts, retry_wait=self.retry.initial)
        out["bundle"] = str(Path(self.bundle).resolve())
        out["backend_name"] = parse_name(self.backend)[0]
        return out


@dataclass(frozen=True)
class RunSummary:
    out: Path
    images: int
    agreement: float  # share of images whose prediction equals the exact model's
    accuracy: float
    exact_accuracy: float
    z_mae: float  # mean |estimate - exact| over every row and qubit
    z_mae_raw: float  # the same before readout mitigation
    cost: dict[str, Any]
    notes: tuple[str, ...] = ()  # about the images: a class missing (AUC n/a), files left out


def run_bundle(
    options: RunOptions,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    console: Any = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    confirm: Callable[[Preview], bool] | None = None,
    overwrite: bool = False,
) -> RunSummary:
    """Run ``options.bundle`` on ``options.backend``; outputs go to ``out``.

    On a paid backend (a live QPU) with ``confirm`` given, the run is planned first
    (`preview`) and goes on only if ``confirm(preview)`` is true (`qvit-hw run` asks on a
    terminal or needs --yes); calling this function without it is the caller's consent.

    Everything is checked (backend name and limits, bundle, data set, the folder) before
    ``out`` is created. Then ``out`` is locked for the whole run, the journal is opened and
    checked, and only then is run.json written; from there on it says how far the run got,
    and every way out (error, Ctrl-C, SIGTERM) leaves it "failed" or "interrupted" with the
    reason. A SIGKILL leaves "running": --resume continues from the journal either way.

    ``overwrite`` deletes the run in ``out`` first, under its lock (never while another
    process works in it), and only if ``out`` holds a run and nothing else (`_not_a_run`).
    """
    out = check_out_dir(out)
    if overwrite:
        if resume:
            raise ValueError("--overwrite and --resume exclude each other: pick one")
        _check_replaceable(out)
    else:
        _previous_run(out, resume)  # early, for a quick answer; checked again under the lock
        if not resume:
            _check_new_folder(out)
    backend = get_backend(options.backend)  # unknown names fail before anything is loaded
    check_limits(options, backend)  # every job's shots and the budgets, before --out is made
    options = _for_surrogate(options, backend)
    model, data, norm = load_inputs(options)
    if hasattr(backend, "check_model"):
        from ..model import qnns_of

        backend.check_model(qnns_of(model))
    if confirm is not None and backend.paid:
        from .preview import preview

        if not confirm(preview(options, backend, (model, data, norm))):
            raise RunError(f"{backend.name}: not confirmed; nothing was submitted")
    settings = options.settings()
    settings.update(dataset=data.name, images=len(data), classes=list(data.classes))
    settings.update(data_fingerprint=data.fingerprint, data_root=data.root, task=data.task)
    settings["data_notes"] = data_notes(data)  # the summary and the report give them
    settings["identity"] = _identity(settings, backend, options.bundle)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with locked(out):
            if overwrite:
                _clear_run(out)  # checked again: the folder may have changed meanwhile
            return _run_locked(
                options, out, resume, settings, backend, model, data, norm, console, clock, sleep
            )
    except BaseException:
        if created and not (out / RUN_FILE).exists():  # nothing started: leave nothing
            shutil.rmtree(out, ignore_errors=True)
        raise


def _for_surrogate(options: RunOptions, backend: Any) -> RunOptions:
    """A `surrogate:` backend's rows go where the characterization measured them: its
    packing options replace the run's; its values are fitted already (no --mitigate)."""
    packing = getattr(backend, "packing", None)
    if packing is None or not hasattr(backend, "fit"):
        return options
    if parse_mitigation(options.mitigate):
        raise ValueError(
            f"--mitigate: {backend.name} gives fitted values (measured with "
            f"{'+'.join(backend.record['mitigate']) or 'no'} mitigation); run it with "
            "--mitigate none"
        )
    if options.adaptive is not None:
        raise ValueError(f"--shots auto: {backend.name} takes no shots; leave --shots out")
    return replace(options, scheduler=replace(options.scheduler, **packing))


def _run_locked(
    options: RunOptions,
    out: Path,
    resume: bool,
    settings: dict[str, Any],
    backend: Any,
    model: VisionTransformer,
    data: ImageSet,
    norm: Normalization,
    console: Any,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> RunSummary:
    previous = _previous_run(out, resume)
    journal = Journal(
        out / JOURNAL_FILE,
        identity=json.dumps(settings["identity"], sort_keys=True),
        must_exist=previous is not None,
        ledger=out / LEDGER_FILE,
    )
    try:
        if previous is not None and journal.paid():  # jobs were paid for under it
            _check_same(previous.get("identity"), settings["identity"], out)
            _check_ceiling(previous, settings, out)
            journal.check_identity()
        settings["started"] = datetime.now(UTC).isoformat(timespec="seconds")
        _set_status(out, settings, "running")
        progress = _progress(console)
        runner = QNNRunner(
            backend,
            options.scheduler,
            mitigation=options.mitigate,
            journal=journal,
            retry=Retry(options.retry, sleep=sleep, clock=clock),
            clock=clock,
            sleep=sleep,
            progress=progress,
        )
        executor = SchedulerExecutor(runner)
        start = time.perf_counter()
        try:
            with _signals_as_interrupts(), progress if progress is not None else nullcontext():
                inferred = _infer(
                    model, data, norm, executor, options.batch_size, progress,
                    len(runner.mitigation), options.adaptive,
                    "fourier" in runner.mitigation or hasattr(backend, "fit"),
                    getattr(backend, "fit", None),
                )  # fmt: skip
            wall = time.perf_counter() - start
            return _finish(out, settings, data, executor, runner, journal, inferred, wall)
        except BaseException as exc:
            stopped = isinstance(exc, KeyboardInterrupt | RunInterrupted)
            with contextlib.suppress(OSError):  # a full disk: the first error is the one to tell
                _set_status(
                    out,
                    settings,
                    "interrupted" if stopped else "failed",
                    error=one_line(exc) if str(exc) else type(exc).__name__,
                    journal=journal.counts(),
                )
            raise
    finally:
        journal.close()


def _set_status(out: Path, settings: dict[str, Any], status: str, **extra: Any) -> None:
    """The one writer of run.json: the settings, the status and what goes with it."""
    write_json(out / RUN_FILE, {**settings, "status": status, **extra})


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGTERM (and SIGHUP) stop a run like Ctrl-C does, so run.json says so."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _previous_run(out: Path, resume: bool) -> dict[str, Any] | None:
    """The settings of the run in ``out`` to resume (None for a new run)."""
    path = out / RUN_FILE
    if not resume:
        if path.exists():
            raise RunError(
                f"--out: {out} already holds a run; pass --resume to continue it, --overwrite "
                "to replace it, or choose another --out"
            )
        return None
    if path.exists() and not path.is_file():
        raise RunError(f"--resume: {path} is not a file; it should be the record of the run")
    if not path.is_file():
        raise RunError(f"--resume: nothing to resume, {path} does not exist")
    try:
        previous = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"--resume: {path} is not readable ({one_line(exc)})") from exc
    if not isinstance(previous, dict) or not isinstance(previous.get("identity"), dict):
        raise RunError(
            f"--resume: {path} is not the record of a run of this qvit-hw version; start a "
            "new run in another --out"
        )
    return previous


# what `--overwrite` may delete besides run.json and OUTPUT_FILES: sqlite's side files and
# the report `qvit-hw report` writes into the run by default
_RUN_EXTRAS = ("journal.sqlite-wal", "journal.sqlite-shm", "journal.sqlite-journal",
               LEDGER_FILE, "report.json", "report.html", ".lock")  # fmt: skip
_COMPARISON = re.compile(r"report-vs-[A-Za-z0-9_.-]+\.(json|html)")  # `report --against`


def _not_a_run(out: Path) -> str:
    """Why ``out`` is not a folder `--overwrite` may empty ("" if it is a run, or empty)."""
    from ..files import LOCK_FILE

    if not out.exists() or all(e.name == LOCK_FILE for e in out.iterdir()):
        return ""  # new, empty, or created just now under its lock
    try:
        record = json.loads((out / RUN_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("identity"), dict):
        return f"it has no {RUN_FILE} of a qvit-hw run"
    if record["identity"].get("kind") == "characterize":  # the same file names, not a run
        return f"its {RUN_FILE} is a characterization's"
    allowed = {RUN_FILE, JOURNAL_FILE, *OUTPUT_FILES, *_RUN_EXTRAS}
    for entry in sorted(out.iterdir()):
        ours = entry.name in allowed or _COMPARISON.fullmatch(entry.name)
        if not ours or entry.is_symlink() or not entry.is_file():
            return f"it holds {entry.name}, which a run does not write"
    return ""


def _check_new_folder(out: Path) -> None:
    """A new run goes into a missing or empty folder: never beside the user's files."""
    from ..files import foreign_entries

    foreign = foreign_entries(out, lambda entry: False)
    if foreign:
        raise RunError(
            f"--out: {out} is not empty (it holds {foreign}); a run needs a new or empty "
            "folder: choose another --out"
        )


def _check_replaceable(out: Path) -> None:
    why = _not_a_run(out)
    if why:
        raise RunError(
            f"--overwrite: {out} is not a run ({why}); --overwrite replaces only a run "
            "folder of `qvit-hw run`: choose another --out"
        )


def _clear_run(out: Path) -> None:
    """Delete the run in ``out`` (the caller holds its lock, whose file stays)."""
    from ..files import LOCK_FILE

    _check_replaceable(out)
    for entry in out.iterdir():
        if entry.name != LOCK_FILE:
            entry.unlink()


def _identity(settings: dict[str, Any], backend: Any, bundle: str) -> dict[str, Any]:
    """What the run's results depend on: the backend's identity, the bundle's manifest
    digest (a bundle replaced in place is another run) and `IDENTITY_KEYS`; the adaptive
    ceiling is left out (`_check_ceiling` allows lowering it)."""
    from ..export import DIGEST, read_manifest

    identity = {
        "backend": backend_identity(backend),
        "bundle_digest": read_manifest(bundle)[DIGEST],
        **{k: settings[k] for k in IDENTITY_KEYS},
    }
    if identity["adaptive"] is not None:
        identity["adaptive"] = {
            k: v for k, v in identity["adaptive"].items() if k != "max_shots_per_row"
        }
    if "zne" in parse_mitigation(settings["mitigate"]):  # only where they change results
        identity["zne"] = {"scales": list(settings["zne_scales"]),
                           "extrapolation": settings["zne_extrapolation"],
                           "fold": settings["zne_fold"]}  # fmt: skip
        if settings.get("zne_twirls"):  # runs from before twirling keep their identity
            identity["zne"]["twirls"] = settings["zne_twirls"]
    return identity


def _check_ceiling(previous: dict[str, Any], settings: dict[str, Any], out: Path) -> None:
    """--max-shots-per-row may be lowered on --resume (to fit a backend's limit: the jobs
    paid so far are reused where the lower ceiling plans them again), never raised."""
    old = (previous.get("adaptive") or {}).get("max_shots_per_row")
    new = (settings.get("adaptive") or {}).get("max_shots_per_row")
    if isinstance(old, int) and isinstance(new, int) and new > old:
        raise RunError(
            f"--resume: {out} was started with --max-shots-per-row {old}; a resume may lower "
            f"it, not raise it to {new} (or start a new run in another --out)"
        )


def _check_same(previous: Any, identity: dict[str, Any], out: Path) -> None:
    """Refuse a resume whose identity differs, naming the first difference."""
    old, new = flat_keys(previous or {}), flat_keys(identity)
    changed = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    if changed:
        k = changed[0]
        raise RunError(
            f"--resume: {out} was started with {k}={old.get(k)!r}, not {new.get(k)!r}; "
            "resume with the same settings (or start a new run in another --out)"
        )


def _finish(
    out: Path,
    settings: dict[str, Any],
    data: ImageSet,
    executor: SchedulerExecutor,
    runner: QNNRunner,
    journal: Journal,
    inferred: Inferred,
    wall: float,
) -> RunSummary:
    probs = torch.cat(inferred.logits).softmax(dim=1).numpy()  # (N, C)
    exact = torch.cat(inferred.exact).softmax(dim=1).numpy()
    pred, pred_exact = probs.argmax(axis=1), exact.argmax(axis=1)
    flip, shots = np.concatenate(inferred.flip), np.concatenate(inferred.shots)  # (N,)
    rows = executor.rows()
    if inferred.refit is not None:  # the row-level values stay beside the fitted ones
        rows.update(
            estimate_row=rows["estimate"], stderr_row=rows["stderr"],
            estimate=inferred.refit.z, stderr=inferred.refit.stderr,
        )  # fmt: skip
    stats = runner.stats
    images = len(data)
    cost = {
        **{k: v for k, v in stats.to_dict().items() if k != "templates"},
        "wall_seconds": round(wall, 3),
        "images": images,
        "executions_per_image": stats.executions / images,
        "calibration_share": stats.calibration_executions
        / max(1, stats.executions - stats.calibration_executions),
        "rows_per_image": stats.rows / images,
        "packing": {name: t["copies"] for name, t in stats.templates.items()},
        "templates": stats.templates,
        "row_shots": int(shots.sum()),  # shots behind every row (packed rows share shots)
        "row_shots_per_image": float(shots.mean()),
        # the one "shots per image": every shot the device ran (calibration too) / images
        "shots_per_image": stats.shots / images,
        **_qpu_seconds(stats),
    }
    if inferred.rounds:
        cost["adaptive"] = _adaptive_summary(inferred, pred_exact)
    write_atomic(
        out / "predictions.csv",
        _predictions_csv(data, pred, pred_exact, probs, exact, shots, flip),
    )
    buf = io.BytesIO()
    np.savez_compressed(buf, **rows)
    write_atomic(out / "rows.npz", buf.getvalue())
    if inferred.refit is not None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **inferred.refit.arrays())
        write_atomic(out / "fourier.npz", buf.getvalue())
    histograms = executor.histograms()
    if histograms is not None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **histograms)
        write_atomic(out / "histograms.npz", buf.getvalue())
    jobs = "".join(json.dumps(r.to_dict()) + "\n" for r in journal.records())
    write_atomic(out / "jobs.jsonl", jobs.encode())
    write_json(out / "cost.json", cost)
    summary = RunSummary(
        out=out,
        images=images,
        agreement=float((pred == pred_exact).mean()),
        accuracy=float((pred == data.labels).mean()),
        exact_accuracy=float((pred_exact == data.labels).mean()),
        z_mae=float(np.abs(rows["estimate"] - rows["exact"]).mean()),
        z_mae_raw=float(np.abs(rows["estimate_raw"] - rows["exact"]).mean()),
        cost=cost,
        notes=tuple(settings.get("data_notes", ())),
    )
    calibrations = {name: cal.to_dict() for name, cal in runner.calibrations().items()}
    corrections = {
        name: {kind: c.to_dict() for kind, c in by_kind.items()}
        for name, by_kind in runner.fitted().items()
    }
    result = {k: v for k, v in asdict(summary).items() if k not in ("out", "cost", "notes")}
    result["stages"] = _stage_table(
        runner.mitigation, rows, executor, inferred.stages, pred, pred_exact
    )
    fourier = None if inferred.refit is None else inferred.refit.fit.summary()
    write_json(
        out / "corrections.json",
        {"stages": result["stages"], "fitted": corrections, "fourier": fourier},
    )
    outputs = {  # so the report refuses outputs edited after the run
        name: hashlib.sha256((out / name).read_bytes()).hexdigest()
        for name in OUTPUT_FILES
        if (out / name).is_file()
    }
    _set_status(
        out, settings, "complete", finished=datetime.now(UTC).isoformat(timespec="seconds"),
        summary=result, readout_calibration=calibrations, corrections=corrections,
        outputs=outputs,
    )  # fmt: skip
    return summary


def _stage_table(
    names: Sequence[str],
    rows: dict[str, np.ndarray],
    executor: SchedulerExecutor,
    stage_logits: list[list[torch.Tensor] | None],
    pred: np.ndarray,
    pred_exact: np.ndarray,
) -> list[dict[str, Any]]:
    """Every correction's effect, stage by stage (raw, then each correction added in turn):
    MAE of <Z> vs exact, share within 2 standard errors, agreement with the exact model
    (None where a stage cannot be replayed from the same results)."""
    middle = executor.stages()  # (R, S, n) twice, or None
    table = []
    for s in range(len(names) + 1):  # s = 0: raw; s: after the first s corrections
        if s == 0:
            z, se = rows["estimate_raw"], rows["stderr_raw"]
        elif s == len(names):
            z, se = rows["estimate"], rows["stderr"]
        else:
            z, se = middle[0][:, s - 1], middle[1][:, s - 1]  # type: ignore[index]
        if s == len(names):
            agreement: float | None = float((pred == pred_exact).mean())
        else:
            stage = stage_logits[s]
            agree = None if stage is None else torch.cat(stage).argmax(dim=1).numpy() == pred_exact
            agreement = None if agree is None else float(agree.mean())
        error = np.abs(z - rows["exact"])
        table.append(
            {
                "name": "+".join(names[:s]) or "raw",
                "z_mae": float(error.mean()),
                "within_2se": float((error <= 2 * se).mean()),
                "mean_stderr": float(se.mean()),
                "agreement": agreement,
            }
        )
    return table


def _qpu_seconds(stats: Any) -> dict[str, Any]:
    """QPU seconds for cost.json: the service's own numbers where it reports them, else the
    `cost` model's estimate, labelled by where they come from."""
    if stats.qpu_seconds is not None:
        source = "reported by the service"
    elif stats.qpu_seconds_estimated is not None:
        source = (
            "estimated, a lower bound (qvit_hw.jobs.cost: repetition delay + circuit duration "
            "per shot, IBM's per-job overhead; per-circuit loading not counted)"
        )
    else:
        source = "unknown: the backend's device gives no durations (an ideal simulator)"
    return {"qpu_seconds_source": source}


def _adaptive_summary(inferred: Inferred, pred_exact: np.ndarray) -> dict[str, Any]:
    """Per round over every batch: cumulative shots and agreement (an image that stopped
    keeps its prediction); and the distribution of shots per row."""
    depth = max(len(p) for p in inferred.preds)
    preds = np.concatenate(
        [np.stack([p[min(r, len(p) - 1)] for r in range(depth)], axis=1) for p in inferred.preds]
    )  # (N, rounds)
    per_batch: dict[int, list[int]] = {}
    for r in inferred.rounds:
        per_batch.setdefault(r["batch"], []).append(r["shots"])
    cumulative = [  # a batch that stopped keeps its shots
        sum(v[min(k, len(v) - 1)] for v in per_batch.values()) for k in range(depth)
    ]
    return {
        "rounds": [
            {"round": k + 1, "shots": cumulative[k],
             "agreement": float((preds[:, k] == pred_exact).mean())}
            for k in range(depth)
        ],
    }  # fmt: skip


def _predictions_csv(
    data: ImageSet,
    pred: np.ndarray,
    pred_exact: np.ndarray,
    probs: np.ndarray,
    exact: np.ndarray,
    shots: np.ndarray,
    flip: np.ndarray,
) -> bytes:
    """One row per image: indices and probabilities per class index, then the class names
    of its label and of both predictions."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    classes = range(probs.shape[1])
    writer.writerow(
        ["image", "label", "pred", "pred_exact"]
        + [f"prob_{c}" for c in classes]
        + [f"prob_exact_{c}" for c in classes]
        + ["row_shots", "flip_probability", *PREDICTION_NAMES]
    )
    name = data.classes
    for i in range(len(pred)):
        writer.writerow(
            [i, int(data.labels[i]), int(pred[i]), int(pred_exact[i])]
            + [f"{v:.17g}" for v in probs[i]]
            + [f"{v:.17g}" for v in exact[i]]
            + [int(shots[i]), f"{flip[i]:.6g}"]
            + [name[data.labels[i]], name[pred[i]], name[pred_exact[i]]]
        )
    return buf.getvalue().encode()


def _progress(console: Any) -> Any:
    if console is None:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
