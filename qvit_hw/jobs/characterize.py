"""`qvit-hw characterize`: measure a device's function of every QNN of a bundle once.

Every output of a QNN is a trigonometric polynomial of degree one in each angle of its
light cone (`mitigation.fourier`), so measuring it on the 3^n grid of angles
{0, 2 pi / 3, 4 pi / 3} per qubit determines it exactly: the fit is interpolation with
uniform variance. Each QNN runs its grid on every packed copy (placement) the device's
template has, through the same runner as `qvit-hw run`: plan, packing, row-level
mitigation, scheduler, journal, resume. Copy c of a packed execution holds unique row
u = c (mod k) of a call, so the grid is sent k times, call c led by c padding rows that
sort first: grid point g then sits on copy (g + c) mod k, and every point is measured on
every placement.

    DIR/surrogate.npz          the measured grid cells per QNN, output and placement (or
                               pooled): what `surrogate:DIR` evaluates, with the
                               coefficients and their standard errors beside them
    DIR/characterization.json  device identity and snapshot, backend identity, shots,
                               mitigation, packing, the bundle's manifest digest and every
                               QNN's weights, when it was measured, cost
    DIR/run.json, journal.sqlite  as a run's: status, identity, --resume
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import get_backend
from ..backends.base import backend_identity
from ..backends.surrogate import CHARACTERIZATION_FILE, SURROGATE_FILE
from ..circuit import QNNSpec
from ..errors import RunError, RunInterrupted, one_line
from ..files import check_out_dir, foreign_entries, locked, write_atomic, write_json
from ..mitigation import ROW_LEVEL, parse_mitigation
from ..mitigation.fourier import FourierFit, design_grid, fit_run, save_fit
from ..model import qnns_of
from .config import RetryConfig, SchedulerConfig
from .journal import Journal
from .plan import QNNCall
from .retry import Retry
from .runner import QNNRunner

RUN_FILE = "run.json"
JOURNAL_FILE = "journal.sqlite"


@dataclass(frozen=True)
class CharacterizeOptions:
    """Settings of one characterization (the CLI's flags)."""

    bundle: str
    backend: str
    mitigate: str = "none"  # row-level corrections only: the fit is what characterize does
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)

    def __post_init__(self) -> None:
        names = parse_mitigation(self.mitigate)
        if any(n not in ROW_LEVEL for n in names):
            raise ValueError(
                f"--mitigate: characterize takes row-level corrections ({', '.join(ROW_LEVEL)});"
                f" its fit is the run-level one, got {self.mitigate!r}"
            )

    def identity(self, backend: Any) -> dict[str, Any]:
        s = self.scheduler
        return {
            "kind": "characterize",
            "backend": backend_identity(backend),
            "bundle": str(Path(self.bundle).resolve()),
            "mitigate": list(parse_mitigation(self.mitigate)),
            "shots": s.shots,
            "max_copies": s.max_copies,
            "packing": s.packing,
            "seed": s.seed,
            "job_size": s.job_size,
            "calibration_rows": s.calibration_rows,
        }


def design_calls(name: str, spec: QNNSpec, weights: np.ndarray, copies: int) -> list[QNNCall]:
    """The grid on every copy: call c is c padding rows (negative angles, which sort first
    and lie off the grid) followed by the grid, so grid point g lands on copy (g + c) % k."""
    grid = design_grid(spec.n_qubits)
    calls = []
    for c in range(copies):
        pad = -1.0 - np.arange(c, dtype=np.float64)[:, None] * np.ones(spec.n_qubits)
        calls.append(QNNCall(f"{name}@{c}", spec, weights, np.concatenate([pad, grid])))
    return calls


def characterize(
    options: CharacterizeOptions,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    console: Any = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Measure every QNN of ``options.bundle`` on its design grid; write ``out``. Returns
    characterization.json's content."""
    from ..export import load_bundle
    from .run import _check_same, _progress, _set_status, _signals_as_interrupts

    out = check_out_dir(out)
    record = out / RUN_FILE
    if overwrite and resume:
        raise ValueError("--overwrite and --resume exclude each other: pick one")
    if resume and not record.is_file():
        raise RunError(f"--resume: nothing to resume, {record} does not exist")
    if overwrite:
        _check_replaceable(out)  # before the backend, the bundle and the lock file
    elif not resume:
        _check_new(out)
    backend = get_backend(options.backend)
    backend.target.job_capacity(options.scheduler.shots)
    model, manifest = load_bundle(options.bundle)
    if model.config.model != "qvit":
        raise RunError(f"bundle {options.bundle} holds a {model.config.model} (no QNNs)")
    qnns = qnns_of(model)
    identity = options.identity(backend)
    settings = {"identity": identity, "bundle_digest": manifest.get("manifest_sha256")}
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with locked(out):
            if overwrite:
                _clear(out)
            previous = json.loads(record.read_text()) if resume else None
            journal = Journal(
                out / JOURNAL_FILE,
                identity=json.dumps(identity, sort_keys=True),
                must_exist=previous is not None,
            )
            try:
                if previous is not None:
                    _check_same(previous.get("identity"), identity, out)
                _set_status(out, settings, "running")
                progress = _progress(console)
                runner = QNNRunner(
                    backend, options.scheduler, mitigation=options.mitigate, journal=journal,
                    retry=Retry(options.retry, sleep=sleep, clock=clock), clock=clock,
                    sleep=sleep, progress=progress,
                )  # fmt: skip
                start = time.perf_counter()
                with _signals_as_interrupts(), progress or nullcontext():
                    fit, rows = _measure(runner, qnns)
                result = _write(out, options, backend, manifest, qnns, fit, rows, runner)
                result["cost"]["wall_seconds"] = round(time.perf_counter() - start, 3)
                write_json(out / CHARACTERIZATION_FILE, result)
                _set_status(out, settings, "complete", cost=result["cost"])
                return result
            except BaseException as exc:
                stopped = isinstance(exc, KeyboardInterrupt | RunInterrupted)
                _set_status(out, settings, "interrupted" if stopped else "failed",
                            error=one_line(exc) if str(exc) else type(exc).__name__)  # fmt: skip
                raise
            finally:
                journal.close()
    except BaseException:
        if created and not record.exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


# what characterize writes into --out besides its lock file
_OWN_FILES = frozenset({RUN_FILE, JOURNAL_FILE, SURROGATE_FILE, CHARACTERIZATION_FILE,
                        "journal.sqlite-wal", "journal.sqlite-shm",
                        "journal.sqlite-journal"})  # fmt: skip


def _is_characterization(out: Path) -> bool:
    """Whether ``out/run.json`` is the record of a characterization (not of a `run`, which
    writes files of the same names)."""
    try:
        record = json.loads((out / RUN_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    identity = record.get("identity") if isinstance(record, dict) else None
    return isinstance(identity, dict) and identity.get("kind") == "characterize"


def _foreign(out: Path) -> str:
    """What of ``out`` characterize did not write (`files.foreign_entries`; "" if nothing):
    its own file names count as its own only beside a characterization's run.json, or
    where there is no run.json at all (a characterization stopped before writing it)."""
    record = out / RUN_FILE
    mine = not record.exists() or _is_characterization(out)

    def ours(entry: Path) -> bool:
        return mine and entry.name in _OWN_FILES and entry.is_file() and not entry.is_symlink()

    return foreign_entries(out, ours)


def _check_new(out: Path) -> None:
    """A new characterization goes into a missing or empty folder, never beside other files;
    one that is there already is continued (--resume) or replaced (--overwrite)."""
    foreign = foreign_entries(out, lambda entry: False)
    if not foreign:
        return
    if _is_characterization(out):
        raise RunError(
            f"--out: {out} already holds a characterization; pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )
    raise RunError(
        f"--out: {out} is not empty (it holds {foreign}); a characterization needs a new or "
        "empty folder: choose another --out"
    )


def _check_replaceable(out: Path) -> None:
    """--overwrite replaces a characterization and nothing else: a folder holding anything
    characterize did not write is refused, naming it, before anything is deleted."""
    foreign = _foreign(out)
    if foreign:
        raise RunError(
            f"--overwrite: {out} holds {foreign}, which characterize does not write; "
            "choose another --out"
        )


def _clear(out: Path) -> None:
    """Delete the characterization in ``out`` (the caller holds its lock, whose file stays)."""
    from ..files import LOCK_FILE

    _check_replaceable(out)  # again: the folder may have changed since the first check
    for entry in out.iterdir():
        if entry.name != LOCK_FILE:
            entry.unlink()


def _measure(
    runner: QNNRunner, qnns: list[tuple[str, QNNSpec, np.ndarray]]
) -> tuple[FourierFit, dict[str, np.ndarray]]:
    """Run every QNN's grid on every copy as one batch of jobs; fit the grid cells."""
    calls, owner = [], []
    for q, (name, spec, w) in enumerate(qnns):
        copies = runner.template(spec).compiled.copies
        mine = design_calls(name, spec, w, copies)
        calls += mine
        owner += [q] * len(mine)
    estimates = runner.run(calls, "design grid")
    owners = [np.full(len(c.angles), q) for c, q in zip(calls, owner, strict=True)]
    rows = {
        "qnn": np.concatenate(owners),
        "angles": np.concatenate([c.angles for c in calls]),
        "estimate": np.concatenate([e.z if e.z_linear is None else e.z_linear for e in estimates]),
        "stderr": np.concatenate([e.stderr for e in estimates]),
        "shots": np.concatenate([
            e.shots if e.shots is not None else np.zeros(len(e.z), np.int64) for e in estimates
        ]),
        "qubits": np.concatenate([e.qubits for e in estimates]),
    }  # fmt: skip
    names = [name for name, _, _ in qnns]
    offsets = {name: runner.readout_offsets(spec) for name, spec, _ in qnns}
    fit = fit_run({name: spec for name, spec, _ in qnns}, rows, names, grid=True, readout=offsets)
    return fit, rows


def _write(
    out: Path,
    options: CharacterizeOptions,
    backend: Any,
    manifest: dict[str, Any],
    qnns: list[tuple[str, QNNSpec, np.ndarray]],
    fit: FourierFit,
    rows: dict[str, np.ndarray],
    runner: QNNRunner,
) -> dict[str, Any]:
    buf = io.BytesIO()
    np.savez_compressed(buf, **save_fit(fit, {name: w for name, _, w in qnns}))
    write_atomic(out / SURROGATE_FILE, buf.getvalue())
    stats = runner.stats
    device = backend.target.device
    return {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "backend": options.backend,
        "backend_identity": backend_identity(backend),
        "device": None if device is None else device.name,
        "device_source": None if device is None else getattr(device, "source", None),
        "bundle": str(Path(options.bundle).resolve()),
        "bundle_digest": manifest.get("manifest_sha256"),
        "shots": options.scheduler.shots,
        "mitigate": list(parse_mitigation(options.mitigate)),
        "packing": {
            "max_copies": options.scheduler.max_copies,
            "packing": runner.packing,
            "seed": options.scheduler.seed,
        },
        "qnns": {name: {"spec": spec.to_dict(), "weights": w.tolist()} for name, spec, w in qnns},
        "fit": fit.summary(),
        "surrogate_sha256": hashlib.sha256((out / SURROGATE_FILE).read_bytes()).hexdigest(),
        "cost": {
            **{k: v for k, v in stats.to_dict().items() if k != "templates"},
            "rows": len(rows["qnn"]),
            "packing": {name: t["copies"] for name, t in stats.templates.items()},
        },
        "options": {k: v for k, v in asdict(options.scheduler).items()},
    }


def preview_characterize(options: CharacterizeOptions) -> Any:
    """What `characterize` will cost (`--dry-run`): its grid jobs and calibration, planned
    as it would plan them, nothing submitted (a `preview.Preview` with images = 0)."""
    from .preview import Preview

    backend = get_backend(options.backend)
    backend.target.job_capacity(options.scheduler.shots)
    from ..export import load_bundle

    model, _ = load_bundle(options.bundle)
    runner = QNNRunner(backend, options.scheduler, mitigation=options.mitigate)
    result = Preview(backend.name, 0)
    calls = []
    for name, spec, w in qnns_of(model):
        calls += design_calls(name, spec, w, runner.template(spec).compiled.copies)
    p = runner.plan(calls)
    result.rows, result.unique_rows = p.rows, p.unique_rows
    result.data.add(list(p.jobs), runner)
    for spec in dict.fromkeys(c.spec for c in calls):
        for _, jobs in runner.calibration_plan(spec):
            result.calibration.add(jobs, runner)
    return result
