"""``qvit-hw sweep CONFIG.toml``: a grid of train / distill runs and the paper's tables.

The grid is data sets x sizes x models x KD x seeds; every configuration is a normal
``qvit-hw train`` (or ``distill``, with KD) run in its own folder ``OUT/<name>``, started as
its own process (``python -m qvit_hw.cli ...``, output in ``OUT/<name>/sweep.log``). A run
whose ``metrics.json`` holds test metrics is finished and skipped; one with a checkpoint
is continued with ``--resume``. Runs go N at a time on this machine, or one Ray task each
(``num_cpus`` / ``num_gpus`` from ``[resources]``) on a Ray cluster; a task that fails or
whose worker dies is retried (``retries``), and the retry resumes from the run's last
checkpoint. Afterwards ``OUT/sweep.csv`` has one row per configuration and
``OUT/sweep.md`` the measured test AUC / ACC laid out like the paper's Tables 1 (scratch)
and 2 (KD), the paper's value beside each (``data/paper_tables.json``, with its source).

CONFIG (TOML)::

    [grid]       datasets, sizes, models, kd, seeds (lists)
    [train]      flags of ``qvit-hw train`` (epochs, lr, batch_size, limit, qubits, heads,
                 device, precision, workers, data_root, download, pairs)
    [distill]    flags only distill has (kd_epochs, teacher_epochs, teacher_lr,
                 teacher_weights, teacher_checkpoint, teacher_pretrained)
    [data_root]  a data_root per data set (e.g. oasis = "/data/oasis")
    [resources]  cpus, gpus per configuration (Ray; cpus also sets OMP_NUM_THREADS)

``CONFIG`` may also be ``paper``: the paper's grid (``data/paper_sweep.toml``).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import statistics
import subprocess
import sys
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import SIZES, resolve_dataset
from .checkpoint import LAST, METRICS

DATA = Path(__file__).with_name("data")
PRESETS = {"paper": DATA / "paper_sweep.toml"}
TRAIN_KEYS = frozenset(
    {"epochs", "lr", "batch_size", "limit", "qubits", "heads", "device", "precision",
     "workers", "data_root", "download", "pairs"}
)  # fmt: skip
DISTILL_KEYS = frozenset(
    {"kd_epochs", "teacher_epochs", "teacher_lr", "teacher_weights", "teacher_checkpoint",
     "teacher_pretrained"}
)  # fmt: skip
GRID_KEYS = ("datasets", "sizes", "models", "kd", "seeds")
CSV_COLUMNS = (
    "name", "dataset", "size", "model", "kd", "seed", "status", "test_auc", "test_acc",
    "best_epoch", "val_auc", "val_acc", "epochs", "seconds", "out",
)  # fmt: skip


@dataclass(frozen=True)
class RunConfig:
    """One configuration of the grid: a train or distill run."""

    dataset: str
    size: int
    model: str
    kd: bool
    seed: int
    train: dict[str, Any] = field(default_factory=dict, compare=False)
    distill: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.size}-{self.model}{'-kd' if self.kd else ''}-s{self.seed}"

    @property
    def command(self) -> str:
        return "distill" if self.kd else "train"

    @property
    def method(self) -> str:
        """The paper's row label: ViT_28, QViT-KD_224, ..."""
        label = {"vit": "ViT", "qvit": "QViT"}[self.model]
        return f"{label}{'-KD' if self.kd else ''}_{self.size}"

    def argv(self, out: Path, resume: bool) -> list[str]:
        values = {"dataset": self.dataset, "size": self.size, "model": self.model,
                  "seed": self.seed, **self.train, **(self.distill if self.kd else {})}  # fmt: skip
        flags: list[str] = []
        for key, value in values.items():
            if value is None or value is False:
                continue
            flag = "--" + key.replace("_", "-")
            flags += [flag] if value is True else [flag, str(value)]
        argv = [sys.executable, "-m", "qvit_hw.cli", self.command, *flags, "--out", str(out)]
        return argv + (["--resume"] if resume else [])


@dataclass(frozen=True)
class Sweep:
    runs: list[RunConfig]
    cpus: int = 1
    gpus: float = 0
    source: str = ""


def load_sweep(config: str | Path) -> Sweep:
    """The configurations of a sweep file (or preset name); ValueError naming what is wrong."""
    path = PRESETS.get(str(config), Path(config))
    if not path.is_file():
        raise ValueError(f"sweep: {config} is not a file nor a preset ({', '.join(PRESETS)})")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"sweep: {path} is not valid TOML ({exc})") from exc
    unknown = set(doc) - {"grid", "train", "distill", "data_root", "resources"}
    if unknown:
        raise ValueError(f"sweep: {path} has unknown tables {sorted(unknown)}")
    grid = doc.get("grid", {})
    missing = [k for k in ("datasets",) if k not in grid]
    if missing or set(grid) - set(GRID_KEYS):
        raise ValueError(
            f"sweep: [grid] needs datasets and may have {', '.join(GRID_KEYS)} (got {sorted(grid)})"
        )
    train, distill = dict(doc.get("train", {})), dict(doc.get("distill", {}))
    for table, allowed, name in ((train, TRAIN_KEYS, "train"), (distill, DISTILL_KEYS, "distill")):
        bad = sorted(set(table) - allowed)
        if bad:
            raise ValueError(f"sweep: [{name}] does not know {bad} (known: {sorted(allowed)})")
    roots = doc.get("data_root", {})
    lists = {k: grid.get(k, d) for k, d in
             (("datasets", []), ("sizes", [28]), ("models", ["qvit"]), ("kd", [False]),
              ("seeds", [0]))}  # fmt: skip
    for key, values in lists.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep: [grid] {key} must be a non-empty list, got {values!r}")
    runs = []
    for dataset, size, model, kd, seed in itertools.product(*lists.values()):
        dataset = resolve_dataset(dataset)
        if size not in SIZES or model not in ("qvit", "vit"):
            raise ValueError(f"sweep: size must be in {SIZES} and model qvit or vit")
        own = dict(train)
        if dataset in roots:
            own["data_root"] = str(roots[dataset])
        runs.append(RunConfig(dataset, int(size), model, bool(kd), int(seed), own, distill))
    res = doc.get("resources", {})
    return Sweep(runs, int(res.get("cpus", 1)), float(res.get("gpus", 0)), str(path))


# --- one run ------------------------------------------------------------------------------


def finished(folder: Path) -> dict[str, Any] | None:
    """The metrics of a finished run in ``folder`` (test metrics written), else None."""
    try:
        metrics = json.loads((folder / METRICS).read_text())
    except (OSError, ValueError):
        return None
    return metrics if metrics.get("test") else None


def run_once(cfg: RunConfig, folder: Path, cpus: int = 1) -> int:
    """One attempt at a configuration: a new run, or --resume where a checkpoint is."""
    folder.mkdir(parents=True, exist_ok=True)
    resume = any(folder.rglob(LAST))
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cpus)), "COLUMNS": "120"}
    with (folder / "sweep.log").open("a") as log:
        log.write(f"$ {' '.join(cfg.argv(folder, resume)[1:])}\n")
        log.flush()
        return subprocess.call(
            cfg.argv(folder, resume), stdout=log, stderr=log, env=env, preexec_fn=_die_with_parent
        )


def _die_with_parent() -> None:
    """In the run's process (Linux): SIGKILL when the process that started it dies, so a
    Ray worker that dies takes its run along and the retry is alone in the run folder."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_config(cfg: RunConfig, folder: Path, cpus: int = 1, retries: int = 0) -> str:
    """``skipped`` (finished before), ``done`` or ``failed``, retrying (and resuming)."""
    if finished(folder):
        return "skipped"
    for _ in range(retries + 1):
        if run_once(cfg, folder, cpus) == 0 and finished(folder):
            return "done"
    return "failed"


def _ray_run(cfg: RunConfig, folder: str, cpus: int) -> str:
    """Body of the Ray task: one attempt; an exception makes Ray retry the task."""
    if finished(Path(folder)):
        return "skipped"
    code = run_once(cfg, Path(folder), cpus)
    if code != 0 or not finished(Path(folder)):
        raise RuntimeError(f"{cfg.name} exited with status {code}; see {folder}/sweep.log")
    return "done"


# --- the sweep ----------------------------------------------------------------------------


def run_sweep(
    sweep: Sweep,
    out: str | Path,
    *,
    parallel: int = 1,
    ray_address: str | None = None,
    retries: int = 1,
    report: Callable[[RunConfig, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every configuration of ``sweep`` in ``out/<name>``, then sweep.csv and sweep.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = {cfg.name: out / cfg.name for cfg in sweep.runs}
    if len(folders) != len(sweep.runs):
        raise ValueError("sweep: the grid repeats a configuration")
    statuses: dict[str, str] = {}
    if ray_address is not None:
        statuses = _on_ray(sweep, folders, ray_address, retries, report)
    else:
        if parallel < 1:
            raise ValueError(f"--parallel must be >= 1, got {parallel}")

        def one(cfg: RunConfig) -> None:
            status = run_config(cfg, folders[cfg.name], sweep.cpus, retries)
            statuses[cfg.name] = status
            if report is not None:
                report(cfg, status)

        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(one, sweep.runs))
    rows = [_row(cfg, folders[cfg.name], statuses[cfg.name]) for cfg in sweep.runs]
    _write_csv(out / "sweep.csv", rows)
    (out / "sweep.md").write_text(paper_tables(sweep.runs, rows, sweep.source))
    return rows


def _on_ray(
    sweep: Sweep,
    folders: dict[str, Path],
    address: str,
    retries: int,
    report: Callable[[RunConfig, str], None] | None,
) -> dict[str, str]:
    try:
        import ray
    except ImportError as exc:
        raise ValueError(
            "--ray-address needs Ray: pip install 'qvit-hw[ray]' (or ray>=2.9)"
        ) from exc
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    task = ray.remote(_ray_run).options(
        num_cpus=sweep.cpus, num_gpus=sweep.gpus, max_retries=retries, retry_exceptions=True
    )
    pending = {
        task.remote(cfg, str(folders[cfg.name].resolve()), sweep.cpus): cfg for cfg in sweep.runs
    }
    statuses: dict[str, str] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        cfg = pending.pop(ready[0])
        try:
            statuses[cfg.name] = ray.get(ready[0])
        except Exception:  # retries used up: the task's error is in its sweep.log
            statuses[cfg.name] = "failed"
        if report is not None:
            report(cfg, statuses[cfg.name])
    return statuses


def _row(cfg: RunConfig, folder: Path, status: str) -> dict[str, Any]:
    metrics = finished(folder) or {}
    test, best = metrics.get("test") or {}, metrics.get("best") or {}
    history = metrics.get("history") or []
    return {
        "name": cfg.name, "dataset": cfg.dataset, "size": cfg.size, "model": cfg.model,
        "kd": cfg.kd, "seed": cfg.seed, "status": status,
        "test_auc": test.get("auc"), "test_acc": test.get("acc"),
        "best_epoch": best.get("epoch"), "val_auc": best.get("val_auc"),
        "val_acc": best.get("val_acc"), "epochs": len(history),
        "seconds": round(sum(r.get("seconds", 0.0) for r in history), 1),
        "out": str(folder),
    }  # fmt: skip


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# --- the paper's tables -------------------------------------------------------------------


def paper_values() -> dict[str, Any]:
    return json.loads((DATA / "paper_tables.json").read_text())


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def paper_tables(runs: list[RunConfig], rows: list[dict[str, Any]], source: str = "") -> str:
    """Markdown: measured test AUC / ACC (mean ± sd over seeds) with the paper's beside."""
    paper = paper_values()
    names, order = paper["datasets"], paper["columns"]
    by_name = {r["name"]: r for r in rows}
    datasets = sorted({c.dataset for c in runs}, key=lambda d: (d not in order, order.index(d)
                      if d in order else 0, d))  # fmt: skip
    parts = [
        "# Sweep results",
        "",
        f"Grid from `{source}`; test ROC AUC and accuracy of the best validation epoch, "
        "mean ± sd over seeds; each cell: measured / paper (– where the paper has no value).",
        f"Paper values: {paper['source']}.",
        "",
    ]
    for kd, key in ((False, "table1"), (True, "table2")):
        chosen = [c for c in runs if c.kd == kd]
        if not chosen:
            continue
        table = paper[key]
        parts += [f"## {table['title']}", ""]
        header = ["Methods"]
        for d in datasets:
            label = names.get(d, d)
            header += [f"{label} AUC", f"{label} ACC"]
        parts += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        methods = sorted({c.method for c in chosen}, key=_method_order)
        for method in methods:
            cells = [method]
            for d in datasets:
                group = [by_name[c.name] for c in chosen if c.method == method and c.dataset == d]
                ref = table["rows"].get(method)
                ref_pair = ref[order.index(d)] if ref and d in order else None
                for i, metric in enumerate(("test_auc", "test_acc")):
                    got = _cell([r[metric] for r in group if r[metric] is not None])
                    theirs = f"{ref_pair[i]:.3f}" if ref_pair else "–"
                    cells.append(f"{got} / {theirs}")
            parts.append("| " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)


def _method_order(method: str) -> tuple[int, int, str]:
    label, size = method.rsplit("_", 1)
    return (label.startswith("QViT"), int(size), label)
