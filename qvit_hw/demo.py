"""`qvit-hw demo`: the whole pipeline on the bundled digits images, offline, in minutes.

    train      a QViT (28x28, n = 4, 2 heads) on scikit-learn's digits  OUT/train
    export     its bundle                                               OUT/bundle
    transpile  for an IBM and a Rigetti device (offline snapshots)      OUT/transpile
    run        96 test images on fake_brisbane (fast noisy engine),     OUT/run
               500 shots, readout + zero-noise extrapolation + the
               run-level Fourier fit (readout,zne,fourier)
    report     report.json and report.html                              OUT/run/report.html

Each step is the plain function behind its own command; this module only chains them.
OUT/demo.json records the format, the settings and, at the end, ``"status": "complete"``:
a finished demo is not redone, and an unfinished or different one asks for ``overwrite``.
``overwrite`` deletes only a folder that holds a demo (its demo.json) and nothing but the
demo's own files and folders; any other folder is refused, whatever its contents.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .files import check_out_dir, to_json, write_json

DEMO_FILE = "demo.json"
DEMO_FORMAT = "qvit-hw/demo"
# what a demo writes in OUT: `overwrite` deletes OUT only if it holds nothing else
DEMO_ENTRIES = frozenset({DEMO_FILE, "train", "bundle", "transpile", "run"})
STATUSES = ("running", "complete")
LEGACY_KEYS = frozenset({"settings", "status", "seconds"})  # demo.json before "format"


@dataclass(frozen=True)
class DemoOptions:
    """The demo's settings (defaults: under 10 minutes on 2 cores, and the model learns)."""

    epochs: int = 20
    lr: float = 2e-3
    batch_size: int = 8
    train_limit: int | None = None  # first N images of each split for training (None: all)
    images: int = 96  # test images run on the backend
    # readout,zne,fourier at 500 shots costs 1.4x the QPU seconds of readout,learned at 1,000
    # and agreed more with the exact model on all 3 models (99.1 vs 94.3 % on average over
    # 359 images): bench/RESULTS.md, the zne section
    shots: int = 500
    backend: str = "fake_brisbane"
    mitigate: str = "readout,zne,fourier"
    targets: tuple[str, ...] = ("ibm_brisbane", "rigetti_ankaa_3")
    seed: int = 0
    # torch threads while training: a model this small gains nothing from intra-op threads,
    # and they slow it down many times over when other work shares the cores
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "images", "shots", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.train_limit is not None and self.train_limit < 1:
            raise ValueError(f"--train-limit must be >= 1, got {self.train_limit}")
        object.__setattr__(self, "targets", tuple(self.targets))


@dataclass(frozen=True)
class DemoResult:
    out: Path
    report: Path  # the HTML
    seconds: dict[str, float]  # wall seconds per step
    reused: bool = False  # the demo in OUT was already complete


def run_demo(
    options: DemoOptions,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    console: Any = None,
) -> DemoResult:
    """Train, export, transpile, run and report into ``out``; returns the report's path."""
    import torch

    from .jobs.config import SchedulerConfig
    from .jobs.run import RunOptions, run_bundle
    from .report import REPORT_HTML, write_report
    from .train import Schedule, TrainOptions, train

    out = check_out_dir(out)  # a file, a path under a file, a read-only folder
    settings = to_json(asdict(options))
    _prepare(out, settings, overwrite)
    previous = _read(out)
    if previous is not None and previous.get("status") == "complete":
        return DemoResult(out, out / "run" / REPORT_HTML, previous.get("seconds", {}), True)
    out.mkdir(parents=True, exist_ok=True)
    _write(out, {"format": DEMO_FORMAT, "settings": settings, "status": "running"})
    seconds: dict[str, float] = {}

    def step(name: str, what: str) -> float:
        if console is not None:
            console.rule(f"[bold]{name}[/]: {what}")
        return time.perf_counter()

    start = step("train", f"QViT on digits, {options.epochs} epochs")
    topts = TrainOptions(
        dataset="digits",
        schedule=Schedule(epochs=options.epochs, lr=options.lr, batch_size=options.batch_size),
        seed=options.seed,
        limit=options.train_limit,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(options.threads)
    try:
        trained = train(topts, out / "train", overwrite=True, console=console)
    finally:
        torch.set_num_threads(threads)
    seconds["train"] = time.perf_counter() - start

    start = step("export", "weights, manifest and OpenQASM per QNN")
    bundle = _export(trained.out / "best.pt", out / "bundle")
    seconds["export"] = time.perf_counter() - start

    start = step("transpile", ", ".join(options.targets))
    _transpile(bundle, options.targets, out / "transpile", options.seed, console)
    seconds["transpile"] = time.perf_counter() - start

    start = step("run", f"{options.images} test images on {options.backend}")
    ropts = RunOptions(
        bundle=str(bundle),
        backend=options.backend,
        limit=options.images,
        mitigate=options.mitigate,
        scheduler=SchedulerConfig(shots=options.shots, seed=options.seed, poll_interval=0.05),
    )
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a half-finished run of this demo
    run_bundle(ropts, run_dir, console=console)
    seconds["run"] = time.perf_counter() - start

    start = step("report", "fidelity report")
    report = write_report(run_dir)
    seconds["report"] = time.perf_counter() - start
    seconds = {k: round(v, 2) for k, v in seconds.items()}
    _write(
        out, {"format": DEMO_FORMAT, "settings": settings, "status": "complete", "seconds": seconds}
    )
    return DemoResult(out, report, seconds)


def _export(checkpoint: Path, out: Path) -> Path:
    from .export import export_bundle
    from .train import load_checkpoint

    model, info = load_checkpoint(checkpoint)
    return export_bundle(model, out, info=info, overwrite=True)


def _transpile(bundle: Path, targets: tuple[str, ...], out: Path, seed: int, console: Any) -> None:
    from .export import load_bundle, qnns
    from .transpile import get_target
    from .transpile.report import transpile_report

    model, _ = load_bundle(bundle)
    entries = qnns(model)
    for name in targets:
        report = transpile_report(entries, get_target(name, live=False), out, seed=seed)
        if console is not None:
            spec = report["specs"][0]
            console.print(
                f"{name}: {len(entries)} QNNs, {spec['copies']} copies per execution, "
                f"layout {spec['placements'][0]} -> {out / f'transpile_{name}.json'}",
                highlight=False,
            )


def _prepare(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse to touch a directory that is not ours; clear ours when asked or changed."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"--out: {out} is a file; choose another --out")
    previous = _read(out)
    if previous is None:
        if any(out.iterdir()):
            raise ValueError(
                f"--out: {out} exists and is not a demo directory (no {DEMO_FILE} of a "
                "qvit-hw demo); choose another --out"
            )
        return
    if overwrite:
        others = sorted(p.name for p in out.iterdir() if p.name not in DEMO_ENTRIES)
        if others:
            raise ValueError(
                f"--out: {out} holds {others[0]}, which a demo does not write; --overwrite "
                "deletes only a folder holding nothing but a demo: move it or choose another "
                "--out"
            )
        shutil.rmtree(out)
    elif previous.get("settings") != settings:
        raise ValueError(
            f"--out: {out} holds a demo with other settings; pass --overwrite to replace it"
        )
    elif previous.get("status") != "complete":
        raise ValueError(
            f"--out: {out} holds an unfinished demo; pass --overwrite to start it again"
        )


def _read(out: Path) -> dict[str, Any] | None:
    """OUT/demo.json if it is a demo's (None if there is none, or it is something else)."""
    path = out / DEMO_FILE
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):  # missing, a folder, not JSON
        return None
    if not isinstance(doc, dict):
        return None
    legacy = "format" not in doc and set(doc) <= LEGACY_KEYS
    if doc.get("format") != DEMO_FORMAT and not legacy:
        return None
    if not isinstance(doc.get("settings"), dict) or doc.get("status") not in STATUSES:
        return None
    return doc


def _write(out: Path, obj: dict[str, Any]) -> None:
    write_json(out / DEMO_FILE, obj)
