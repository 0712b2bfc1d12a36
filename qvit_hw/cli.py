"""`qvit-hw`: the command line. Each command is a thin shell over a plain function."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import typing
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from .backends.registry import DEFAULT_BACKEND
from .errors import QvitHwError, one_line
from .jobs.config import AdaptiveConfig, RetryConfig, SchedulerConfig

if TYPE_CHECKING:
    from .train import RunResult, TrainOptions

app = typer.Typer(
    help="Deploy quantum vision transformers on quantum hardware and simulators.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# In a pipe, lines stay whole (rich would wrap them at 80 columns, even inside "1.4 s")
console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        Console().print(f"qvit-hw {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Deploy quantum vision transformers on quantum hardware and simulators."""


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def params() -> None:
    """Print parameter counts of QViT and ViT at the paper's three configurations."""
    from .model import ModelConfig, VisionTransformer, count_parameters

    table = Table(title="Trainable parameters (2 heads, 2 classes)")
    for col in ("image", "patch", "qubits", "QViT", "ViT"):
        table.add_column(col, justify="right")
    for size, n in ((28, 4), (224, 4), (224, 8)):
        counts = [
            count_parameters(VisionTransformer(ModelConfig(model=m, image_size=size, n_qubits=n)))
            for m in ("qvit", "vit")
        ]
        cfg = ModelConfig(image_size=size, n_qubits=n)
        table.add_row(f"{size}x{size}", f"{cfg.patch_size}", str(n), *map(str, counts))
    Console().print(table)


# --- train, distill, datasets (qvit_hw.train, qvit_hw.data) --------------------------------


_DATA_ROOT = typer.Option(
    None, help="MedMNIST folder (default ~/.medmnist) or, for folder and oasis, the image folder."
)
_SKIP_UNREADABLE = typer.Option(
    False,
    "--skip-unreadable",
    help="Leave out an image folder's unreadable images (counted) instead of stopping.",
)


def _flag(option: typing.Any) -> typing.Any:
    """A `TrainArgs` field: its typer option (flags, default, help) rides in the metadata."""
    return field(metadata={"option": option})


@dataclass(frozen=True)
class TrainArgs:
    """The options `train` and `distill` share, written once; `_train_args` turns the
    fields into the commands' flags, in this order."""

    dataset: str = _flag(
        typer.Option(
            ...,
            help="Data set: a MedMNIST name (breastmnist, retinamnist, pneumoniamnist, "
            "dermamnist, bloodmnist, organcmnist, pathmnist; 'pneumonia' works too), an image "
            "folder (its path, or 'folder' with --data-root: one sub-folder per class), 'oasis' "
            "(the OASIS folder, --data-root) or 'digits' (scikit-learn, offline). "
            "`qvit-hw datasets` lists them.",
        )
    )
    size: int = _flag(typer.Option(28, help="Image size: 28 (2x2 patches) or 224 (16x16 patches)."))
    qubits: int = _flag(
        typer.Option(4, help="Qubits per QNN, which is also the embedding size n (paper: 4, 8).")
    )
    heads: int = _flag(
        typer.Option(2, help="Attention heads; each has its own query, key and value QNNs.")
    )
    model: str = _flag(
        typer.Option("qvit", help="qvit (QNN query/key/value) or vit (Linear; the baseline).")
    )
    pairs: str | None = _flag(
        typer.Option(
            None, help="Entangling pairs of every QNN as '0-1,1-2,2-3' (default: the chain)."
        )
    )
    epochs: int = _flag(
        typer.Option(100, help="Training epochs (paper: 100); lr / 10 at 50 % and 75 % of them.")
    )
    lr: float = _flag(typer.Option(1e-3, help="Adam learning rate (paper: 1e-3)."))
    batch_size: int = _flag(typer.Option(32, help="Batch size (paper: 32)."))
    seed: int = _flag(
        typer.Option(0, help="Seed of weights and shuffling; same seed, same result.")
    )
    out: str = _flag(
        typer.Option(..., help="Run directory: last.pt, best.pt and metrics.json go here.")
    )
    data_root: str | None = _flag(_DATA_ROOT)
    download: bool = _flag(
        typer.Option(False, "--download", help="Download a missing MedMNIST file (needs internet).")
    )
    limit: int | None = _flag(
        typer.Option(
            None, help="Use N images of each split, every class in its share (seeded, the "
            "same images each time; quick trials).",
        )
    )  # fmt: skip
    skip_unreadable: bool = _flag(_SKIP_UNREADABLE)
    resume: bool = _flag(
        typer.Option(
            False, "--resume", help="Continue the run in --out after its last saved epoch."
        )
    )
    overwrite: bool = _flag(
        typer.Option(False, "--overwrite", help="Delete the run in --out and start again.")
    )
    device: str = _flag(
        typer.Option(
            "auto", help="Where to compute: auto (CUDA if available, else the CPU), cpu, cuda, "
            "cuda:N or mps; a run may resume on another device.",
        )
    )  # fmt: skip
    precision: str = _flag(
        typer.Option(
            "32", help="32, bf16 or 16-mixed (torch.autocast; 16-mixed needs CUDA); the QNN "
            "simulator computes in float32 whatever this says.",
        )
    )  # fmt: skip
    workers: int = _flag(
        typer.Option(0, help="DataLoader worker processes reading batches (0: this process).")
    )
    nproc: int = _flag(
        typer.Option(
            1, help="Data-parallel processes: N > 1 launches torchrun --nproc-per-node N "
            "(DistributedDataParallel; gloo on CPU, NCCL on GPU); --batch-size stays global.",
        )
    )  # fmt: skip

    def options(self) -> TrainOptions:
        """The run these flags describe; a bad value ends the command with one line."""
        from .train import Schedule, TrainOptions

        try:
            schedule = Schedule(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
            return TrainOptions(
                dataset=self.dataset, size=self.size, model=self.model, n_qubits=self.qubits,
                heads=self.heads, pairs=_parse_pairs(self.pairs), schedule=schedule,
                seed=self.seed, limit=self.limit, data_root=self.data_root,
                download=self.download, skip_unreadable=self.skip_unreadable,
                device=self.device, precision=self.precision,
                workers=self.workers,
            )  # fmt: skip
        except ValueError as exc:
            fail(str(exc))


def _train_args(command: typing.Callable[..., None]) -> typing.Callable[..., None]:
    """``command(args: TrainArgs, **own)`` as a typer callback whose flags are the fields
    of `TrainArgs`, then ``command``'s own parameters (typer reads ``__signature__``)."""
    shared = [f.name for f in fields(TrainArgs)]
    hints = {**typing.get_type_hints(TrainArgs), **typing.get_type_hints(command)}
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter(f.name, keyword, default=f.metadata["option"], annotation=hints[f.name])
        for f in fields(TrainArgs)
    ]
    own = list(inspect.signature(command).parameters.values())[1:]
    params += [p.replace(kind=keyword, annotation=hints[p.name]) for p in own]

    @functools.wraps(command)
    def callback(**values: typing.Any) -> None:
        if values["nproc"] > 1 and "WORLD_SIZE" not in os.environ:
            _torchrun(command.__name__, values)  # each process runs this command again
        command(TrainArgs(**{name: values.pop(name) for name in shared}), **values)

    callback.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    callback.__annotations__ = {p.name: p.annotation for p in params}
    return callback


def _torchrun(command: str, values: dict[str, typing.Any]) -> NoReturn:
    """``--nproc N``: this command in N processes under torchrun (standalone, this machine)."""
    import subprocess

    n = values["nproc"]
    flags: list[str] = []
    for name, value in values.items():
        if name == "nproc" or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    argv += [f"--nproc-per-node={n}", "-m", "qvit_hw.cli", command, *flags]
    console.print(f"launching {n} processes: torchrun -m qvit_hw.cli {command} ...")
    code = subprocess.call(argv)
    if code:
        fail(f"{command} with --nproc {n}: torchrun exited with status {code}", code=code)
    raise typer.Exit(0)


def _parse_pairs(text: str | None) -> tuple[tuple[int, int], ...] | None:
    from .circuit import pairs_from_string

    if text is None:
        return None
    try:
        return pairs_from_string(text)
    except ValueError:
        fail(f"--pairs: expected pairs like '0-1,1-2,2-3', got {text!r}")


def _report(result: RunResult, title: str) -> None:
    from .train.metrics import format_metric

    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports
    caption = "; ".join(result.notes) or None  # why an AUC is n/a
    table = Table(title=title, caption=caption)
    for col in ("best epoch", "val ACC", "val AUC", "test ACC", "test AUC", "s / epoch", "best.pt"):
        table.add_column(col, justify="right")
    best, test = result.best, result.test
    row = (best["val_acc"], best["val_auc"], test.acc, test.auc)
    table.add_row(
        str(best["epoch"]),
        *(format_metric(v) for v in row),
        f"{result.seconds_per_epoch:.1f}",
        str(result.out / "best.pt"),
    )
    Console().print(table)


@app.command()
def datasets() -> None:
    """List the data sets `train` and `distill` read, with task, classes and split sizes."""
    from .data import dataset_infos

    table = Table(title="Data sets (--dataset)")
    for col in ("name", "source", "task", "classes", "train/val/test"):
        table.add_column(col)
    for row in dataset_infos():
        classes = "per sub-folder" if row.classes is None else str(row.classes)
        table.add_row(row.name, row.source, row.task, classes, row.samples)
    Console().print(table)


@app.command()
@_train_args
def train(args: TrainArgs) -> None:
    """Train a QViT (or the ViT baseline) with the paper's schedule; Ctrl-C stops after the
    last saved epoch and --resume continues it exactly."""
    from .errors import RunInterrupted
    from .train import train as run_train

    opts = args.options()
    try:
        result = run_train(
            opts, args.out, resume=args.resume, overwrite=args.overwrite, console=console
        )
    except RunInterrupted as exc:
        fail(str(exc), code=130)
    except KeyboardInterrupt:  # between epochs' work (data, test): every epoch is saved
        fail("interrupted; run the same command with --resume to continue", code=130)
    except (QvitHwError, ValueError) as exc:
        fail(one_line(exc))
    a = args
    title = f"{a.model} on {a.dataset} ({a.size}x{a.size}, {a.qubits} qubits, {a.heads} heads)"
    _report(result, title)


@app.command()
@_train_args
def distill(
    args: TrainArgs,
    kd_epochs: int = typer.Option(50, help="Epochs of MSE pre-training (paper: 50; Adam 1e-3)."),
    teacher_epochs: int = typer.Option(
        100, help="Epochs of teacher fine-tuning (the paper's schedule; it does not say)."
    ),
    teacher_lr: float = typer.Option(1e-3, help="Adam learning rate of teacher fine-tuning."),
    teacher_checkpoint: str | None = typer.Option(
        None, help="Skip fine-tuning: use this teacher (OUT/teacher/best.pt of a distill run)."
    ),
    teacher_weights: str | None = typer.Option(
        None,
        help="Start the teacher from this timm tiny_vit_5m_224 checkpoint (e.g. model.safetensors "
        "of timm/tiny_vit_5m_224.dist_in22k_ft_in1k).",
    ),
    teacher_pretrained: bool = typer.Option(
        False,
        "--teacher-pretrained",
        help="Download timm's ImageNet weights from the Hugging Face Hub (needs internet).",
    ),
) -> None:
    """Knowledge distillation as in the paper: fine-tune a TinyViT-5M teacher, pre-train the
    student on the MSE of the post-ReLU n-vectors, copy the teacher's last layer, train."""
    from .errors import RunInterrupted
    from .train import KD_SCHEDULE, DistillOptions, Schedule
    from .train import distill as run_distill

    opts = args.options()
    lr, batch_size = args.lr, args.batch_size
    try:
        kd = Schedule(epochs=kd_epochs, lr=lr, batch_size=batch_size, decay_at=KD_SCHEDULE.decay_at)
        teacher = Schedule(epochs=teacher_epochs, lr=teacher_lr, batch_size=batch_size)
        dopts = DistillOptions(
            opts,
            kd=kd,
            teacher=teacher,
            teacher_checkpoint=teacher_checkpoint,
            teacher_weights=teacher_weights,
            teacher_pretrained=teacher_pretrained,
        )
    except ValueError as exc:
        fail(str(exc))
    try:
        result = run_distill(
            dopts, args.out, resume=args.resume, overwrite=args.overwrite, console=console
        )
    except RunInterrupted as exc:
        fail(str(exc), code=130)
    except KeyboardInterrupt:
        fail("interrupted; run the same command with --resume to continue", code=130)
    except (QvitHwError, ValueError) as exc:
        fail(one_line(exc))
    a = args
    _report(result, f"{a.model} on {a.dataset} with KD ({a.size}x{a.size}, {a.qubits} qubits)")


@app.command()
def sweep(
    config: str = typer.Argument(
        ..., help="A sweep file (TOML: [grid], [train], [distill], [resources]) or 'paper'."
    ),
    out: str = typer.Option(..., help="Sweep folder: one run folder per configuration."),
    parallel: int = typer.Option(1, help="Configurations run at a time on this machine."),
    ray_address: str | None = typer.Option(
        None,
        help="Run each configuration as a Ray task on this cluster ('auto', 'ray://host:10001'; "
        "needs the ray extra) instead of locally.",
    ),
    retries: int = typer.Option(
        1, help="Extra attempts of a failed configuration; each resumes its last checkpoint."
    ),
) -> None:
    """A grid of train/distill runs (data sets x sizes x models x KD x seeds), N at a time
    or on Ray; finished runs are skipped; writes sweep.csv and sweep.md (the paper's Tables 1
    and 2 with its values beside the measured ones)."""
    from .train.sweep import load_sweep, run_sweep

    try:
        grid = load_sweep(config)
        console.print(f"sweep: {len(grid.runs)} configurations -> {out}", highlight=False)
        rows = run_sweep(
            grid, out, parallel=parallel, ray_address=ray_address, retries=retries,
            report=lambda cfg, status: console.print(f"{cfg.name}: {status}", highlight=False),
        )  # fmt: skip
    except KeyboardInterrupt:
        fail("interrupted; run the same command again: finished runs are skipped", code=130)
    except (QvitHwError, ValueError, OSError) as exc:
        fail(one_line(exc))
    failed = [r["name"] for r in rows if r["status"] == "failed"]
    console.print(f"wrote {out}/sweep.csv and {out}/sweep.md", highlight=False)
    if failed:
        fail(f"{len(failed)} configurations failed ({', '.join(failed)}); see their sweep.log")


# --- export, transpile (qvit_hw.export, qvit_hw.transpile) ---------------------------------


@app.command()
def export(
    checkpoint: str = typer.Argument(..., help="A training checkpoint (OUT/best.pt of train)."),
    out: str = typer.Option(..., help="Bundle directory to write."),
    per_token: int = typer.Option(
        0, help="Also write bound OpenQASM 2 files for the first N tokens of --image."
    ),
    image: str | None = typer.Option(
        None,
        help="For --per-token: an image file (.png, .npy, ...) or an index into the "
        "checkpoint's test split.",
    ),
    data_root: str | None = _DATA_ROOT,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle."),
) -> None:
    """Write a bundle: weights.safetensors, manifest.json and OpenQASM 3 per QNN."""
    from .data import Normalization, to_tensor
    from .export import export_bundle, qnns, read_image
    from .files import check_out_dir
    from .model import VisionTransformer
    from .train import load_checkpoint

    try:
        check_out_dir(out)  # before anything is read
        model, info = load_checkpoint(checkpoint)
        if not isinstance(model, VisionTransformer):
            fail(f"{checkpoint} holds a {info['arch']} teacher; export a QViT or ViT checkpoint")
        tensor, label = None, ""
        if per_token:
            if image is None:
                fail("--per-token needs --image (a file or an index into the test split)")
            pixels, label = read_image(image, model, info, data_root)
            tensor = to_tensor(pixels[None], Normalization.from_dict(info["normalization"]))
        path = export_bundle(
            model, out, info=info, per_token=per_token, image=tensor, image_label=label,
            overwrite=overwrite,
        )  # fmt: skip
    except (QvitHwError, ValueError) as exc:
        fail(one_line(exc))
    entries = qnns(model)
    console.print(
        f"wrote {path}: {len(entries)} QNNs"
        + (f", {per_token} tokens of {label} as OpenQASM 2" if per_token else ""),
        highlight=False,
    )


@app.command()
def transpile(
    bundle: str = typer.Argument(..., help="A bundle directory from `qvit-hw export`."),
    target: list[str] = typer.Option(
        ...,
        help="Device: ibm_<device> (every device of qiskit-ibm-runtime's fake provider, e.g. "
        "ibm_fez, ibm_marrakesh, ibm_nighthawk; `qvit-hw devices` lists them), "
        "rigetti_ankaa_3, rigetti_cepheus_1_108q (repeat for several).",
    ),
    out: str | None = typer.Option(
        None, help="Where transpile_<target>.json (and quil/) go; default: the bundle."
    ),
    seed: int = typer.Option(0, help="Seed of the transpiler's layout and routing."),
    snapshot: bool = typer.Option(
        False, "--snapshot", help="Use the offline snapshot even where credentials are set."
    ),
    packing: str = typer.Option(
        "best", help="Copies to compile: best (best-calibrated placements) or max (most copies)."
    ),
    dialect: str = typer.Option(
        "qiskit",
        help="OpenQASM 3 of the compiled circuits: qiskit (qiskit.qasm3) or braket (Amazon "
        "Braket's: no include, cnot, physical qubits in a verbatim box).",
    ),
) -> None:
    """Transpile every QNN of a bundle once per target: depth, 2-qubit gates, SWAPs,
    layout, estimated success, copies per execution (k, for each packing, against the bound
    usable qubits // n); JSON, the compiled circuits (QPY, OpenQASM 3, parameter order) and
    Quil for Rigetti."""
    from .export import load_bundle, qnns
    from .files import check_out_dir
    from .transpile import get_target
    from .transpile.report import transpile_report

    try:
        if out is not None:
            check_out_dir(out)  # before anything is read
        model, _ = load_bundle(bundle)
        entries = qnns(model)
        if not entries:
            fail(f"{bundle} holds a ViT: it has no QNNs to transpile")
        devices = [get_target(t, live=False if snapshot else None) for t in target]  # names first
    except (QvitHwError, ValueError) as exc:
        fail(one_line(exc))
    for dt in devices:
        try:
            with console.status(f"transpiling {len(entries)} QNNs for {dt.name}"):
                report = transpile_report(
                    entries, dt, out or bundle, seed=seed, packing=packing, dialect=dialect
                )
        except (QvitHwError, ValueError, OSError) as exc:
            fail(f"{dt.name}: {one_line(exc)}")
        table = Table(title=f"{dt.name}: {dt.num_qubits} qubits", caption=dt.source)
        table.add_column("QNN", no_wrap=True)
        for col in ("depth", "2q", "SWAPs"):
            table.add_column(col, justify="right")
        table.add_column("layout")
        for col in ("success", "k", "best/max/bound", "s"):
            table.add_column(col, justify="right", no_wrap=True)
        for row in report["qnns"]:
            success = row["est_success"]
            table.add_row(
                row["qnn"], str(row["depth"]), str(row["two_qubit_gates"]), str(row["swaps"]),
                " ".join(map(str, row["layout"])),
                "n/a" if success is None else f"{success:.3f}",
                str(row["copies"]),
                "/".join(str(v) for v in (*row["copies_by_packing"].values(), row["bound"])),
                f"{row['transpile_seconds']:.2f}",
            )  # fmt: skip
        Console().print(table)
        where = out or bundle
        console.print(
            f"wrote {where}/transpile_{dt.name}.json and {where}/compiled/{dt.name}/ "
            f"(QPY, OpenQASM 3 in {dialect}'s dialect, parameter order)",
            highlight=False,
        )


# --- backends, run (qvit_hw.backends, qvit_hw.jobs) ---------------------------------------


@app.command()
def backends(
    as_json: bool = typer.Option(
        False, "--json", help="Print the list as JSON (name, what, needs, options, status)."
    ),
) -> None:
    """List every backend `run` accepts, whether it is ready here (credentials found, local
    servers running) or what it needs, and its options (name?key=value)."""
    import json
    from dataclasses import asdict

    from .backends import backend_infos
    from .backends.registry import readiness

    rows = []
    for info in backend_infos():
        status = readiness(info.name) if info.available else "next release"
        rows.append({**asdict(info), "status": status})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Backends (--backend NAME or NAME?option=value&...)", show_lines=True)
    table.add_column("name", no_wrap=True)
    table.add_column("status", max_width=12)
    table.add_column("what, needs, options", ratio=1)
    for row in rows:
        style = (
            None
            if row["status"] == "ready"
            else "dim"
            if row["status"] == "next release"
            else "yellow"
        )
        detail = row["description"]
        if row["needs"] != "-":
            detail += f"\n[bold]needs:[/] {row['needs']}"
        if row["options"] != "-":
            detail += f"\n[bold]options:[/] {row['options']}"
        table.add_row(
            row["name"], f"[{style}]{row['status']}[/]" if style else row["status"], detail
        )
    Console().print(table)


@app.command()
def devices(
    min_qubits: int = typer.Option(0, help="Only devices with at least this many qubits."),
) -> None:
    """List every device the catalog knows (`transpile --target`, `run`, `report`): its
    qubits, lattice, 2-qubit gate and where its snapshot comes from (source and date)."""
    from .devices.catalog import describe, names

    table = Table(title="Devices (transpile --target NAME; run --backend fake_<device>)")
    for col in ("name", "qubits", "lattice", "2q", "snapshot"):
        table.add_column(col, no_wrap=col != "snapshot")
    for name in names():
        info = describe(name)
        if info.num_qubits >= min_qubits:
            table.add_row(
                info.name, str(info.num_qubits), info.lattice, info.two_qubit_gate,
                info.source.removeprefix("snapshot: "),
            )  # fmt: skip
    Console().print(table)


def _resume_hint(exc: Exception, out: str) -> str:
    """For failures while jobs ran: where finished jobs are kept and how to go on."""
    from pathlib import Path

    from .errors import BackendError, BackendNotFoundError, RunError, RunInterrupted

    journal = Path(out) / "journal.sqlite"
    if isinstance(exc, BackendNotFoundError | RunError | ValueError) or not journal.is_file():
        return ""
    if "--resume" in str(exc):  # the message gives its own advice (a budget stop)
        return ""
    if not isinstance(exc, BackendError | RunInterrupted) and not (Path(out) / "run.json").exists():
        return ""
    return f"; finished jobs are kept in {journal}: run again with --resume to continue"


_SCHED, _RETRY = SchedulerConfig(), RetryConfig()
_ADAPT = AdaptiveConfig()


def _shots_count(text: str) -> int | None:
    """--shots: a whole number (None for auto); anything else one line, exit 1, as --shots 0."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        fail(f"--shots must be a whole number >= 1 or auto, got {text!r}")


def _qpu_text(cost: dict[str, typing.Any]) -> str:
    if cost.get("qpu_seconds") is not None:
        return f"{cost['qpu_seconds']:,.1f} (measured by the service)"
    if cost.get("qpu_seconds_estimated") is not None:
        return f"{cost['qpu_seconds_estimated']:,.1f} (estimated, a lower bound)"
    return "n/a (no device durations)"


def _price_row(seconds: float | None, price: float | None) -> tuple[str, str] | None:
    """QPU seconds in money at the user's --price-per-qpu-second, labelled with its source
    and today's date (None without a price)."""
    if price is None:
        return None
    from datetime import date

    key = f"at {price:g} per QPU second (your --price-per-qpu-second, {date.today()})"
    return key, "n/a (no QPU-second figure)" if seconds is None else f"{seconds * price:,.2f}"


def _print_preview(preview: typing.Any, title: str, price: float | None = None) -> None:
    from .jobs.cost import LOWER_BOUND

    table = Table(title=title, show_header=False, caption=f"QPU seconds: {LOWER_BOUND}")
    rows = list(preview.table())
    money = _price_row(preview.total.qpu_seconds, price)
    for key, value in [*rows, *([money] if money else [])]:
        table.add_row(key, value)
    Console().print(table)


def _on_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _confirmation(yes: bool) -> typing.Callable[[typing.Any], bool]:
    """How a run on a paid backend is confirmed: --yes, or a question on a terminal."""

    def confirm(preview: typing.Any) -> bool:
        if yes:
            return True
        if not _on_terminal():
            from .errors import RunError

            raise RunError(
                f"{preview.backend} is a paid backend: pass --yes to run it without a terminal "
                "to confirm on (see what it costs first with --dry-run)"
            )
        _print_preview(preview, f"{preview.backend}: what this run will cost")
        return typer.confirm("Submit these jobs?", default=False)

    return confirm


_AUTO_ONLY = ("target_agreement", "initial_shots", "max_shots_per_row")  # --shots auto's flags


@app.command()
def run(
    ctx: typer.Context,
    bundle: str = typer.Argument(..., help="A bundle directory from `qvit-hw export`."),
    backend: str = typer.Option(
        DEFAULT_BACKEND,
        help="Backend name, options as a query string: statevector, shots?seed=1, "
        "fake_brisbane, 'mock?transient=0.3&inner=shots' (`qvit-hw backends` lists them).",
    ),
    dataset: str | None = typer.Option(
        None, help="Data set or an image folder's path (default: the bundle's own)."
    ),
    split: str = typer.Option("test", help="train, val or test."),
    limit: int | None = typer.Option(
        None, help="N images of the split, every class in its share (seeded, stable)."
    ),
    shots: str = typer.Option(
        str(_SCHED.shots),
        help="Shots per circuit (exact backends ignore them), or auto: rounds of shots per row "
        "until each image's prediction is settled (--target-agreement); calibration jobs then "
        f"take {_SCHED.shots:,}.",
    ),
    target_agreement: float = typer.Option(
        _ADAPT.target_agreement, help="--shots auto: agreement with the exact model to reach."
    ),
    initial_shots: int = typer.Option(
        _ADAPT.initial_shots, help="--shots auto: shots of every row in the first round."
    ),
    max_shots_per_row: int = typer.Option(
        _ADAPT.max_shots_per_row, help="--shots auto: the most shots one row gets."
    ),
    max_total_shots: int | None = typer.Option(
        None, help="Stop before the job that would take the run past N shots (resumable)."
    ),
    max_qpu_seconds: float | None = typer.Option(
        None,
        help="Stop before the job that would take the run past S estimated QPU seconds "
        "(resumable); IBM also gets the remainder as max_execution_time.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Plan the run, print jobs, shots and QPU seconds; submit nothing."
    ),
    yes: bool = typer.Option(
        False, "--yes", help="Run on a paid backend without asking (needed without a terminal)."
    ),
    out: str = typer.Option(..., help="Run directory (predictions, rows, jobs, cost, journal)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out: reuse finished jobs, re-attach."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Delete the run in --out (only a run) and start again."
    ),
    batch_size: int = typer.Option(8, help="Images per forward pass (one scheduler call)."),
    mitigate: str = typer.Option(
        "none",
        help="none, or corrections applied in order, separated by commas: readout "
        "(calibration circuits) or readout-props (backend data), then learned (affine maps per "
        "physical qubit fitted on rows whose exact answer is known), e.g. readout,learned; "
        "zne (rows again with gates folded, extrapolated to zero noise: readout,zne; learned "
        "goes before it, fitted per scale, or after it, fitted on extrapolated rows); last, "
        "fourier fits each QNN's function over every row of the run (readout,zne,fourier).",
    ),
    calibration_rows: int = typer.Option(
        _SCHED.calibration_rows, help="Rows of known exact answer per QNN template (learned)."
    ),
    readout_shots: int | None = typer.Option(
        _SCHED.readout_shots,
        help="Shots of each readout calibration circuit (default: --shots; with fourier at "
        "least 50,000, within the backend's limit); two circuits per template, and their "
        "error is shared by every row read on the qubit.",
    ),
    zne_scales: str = typer.Option(
        ",".join(map(str, _SCHED.zne_scales)),
        help="--mitigate ...,zne: noise scales, the first 1 (each folded gate G becomes "
        "G (G^-1 G)^((scale - 1) / 2); a scale that is not odd and whole, e.g. 2, folds a "
        "seeded subset of the gates once more).",
    ),
    zne_extrapolation: str = typer.Option(
        _SCHED.zne_extrapolation, help="--mitigate ...,zne: richardson, linear or exponential."
    ),
    zne_fold: str = typer.Option(
        _SCHED.zne_fold,
        help="--mitigate ...,zne: fold every gate but RZ (all) or the 2-qubit gates only (two).",
    ),
    zne_twirls: int = typer.Option(
        _SCHED.zne_twirls,
        help="--mitigate ...,zne: Pauli-twirl draws of the 2-qubit gates the rows are dealt "
        "over (0: none); twirling makes relaxation scale when gates fold.",
    ),
    max_copies: int | None = typer.Option(
        _SCHED.max_copies, help="At most K packed copies per execution (default: as many as fit)."
    ),
    packing: str = typer.Option(
        _SCHED.packing,
        help="best (the best-calibrated placements), max (as many disjoint copies as fit) or "
        "auto (max with learned mitigation, else best).",
    ),
    job_size: int | None = typer.Option(
        _SCHED.job_size, help="At most E executions per job (default: the backend's limit)."
    ),
    max_in_flight: int = typer.Option(
        _SCHED.max_in_flight, help="Jobs submitted and not yet finished, at most."
    ),
    job_timeout: float = typer.Option(
        _SCHED.job_timeout, help="Seconds a job may take before the run stops (resumable)."
    ),
    poll_interval: float = typer.Option(_SCHED.poll_interval, help="Seconds between polls."),
    retries: int = typer.Option(
        _RETRY.attempts, help="Attempts per backend call on transient errors."
    ),
    retry_wait: float = typer.Option(
        _RETRY.initial,
        help="First backoff in seconds; it doubles per retry (plus jitter), up to 60 s.",
    ),
    seed: int = typer.Option(_SCHED.seed, help="Transpiler seed."),
    data_root: str | None = typer.Option(None, help="MedMNIST folder or image folder."),
    resubmit_unrecorded: bool = typer.Option(
        False,
        "--resubmit-unrecorded",
        help="On --resume: submit again a job whose id the journal lost (the run stopped "
        "between submitting it and recording its id) on a backend that cannot be asked for "
        "it; only after checking the service has no such job.",
    ),
    skip_unreadable: bool = _SKIP_UNREADABLE,
    price_per_qpu_second: float | None = typer.Option(
        None,
        help="Also give QPU seconds in money at this price (yours to look up: IBM's "
        "Pay-As-You-Go plan listed 96 USD a minute, 1.60 a second, in 2024).",
    ),
) -> None:
    """Run a bundle's inference with every QNN row executed on a backend through the job
    scheduler; Ctrl-C keeps the journal, and --resume continues without paying twice."""
    from .jobs.run import RunOptions, run_bundle
    from .mitigation.zne import ZNEConfig

    count = _shots_count(shots)  # one line and exit 1 for a bad value, before anything runs
    auto = count is None
    for name in _AUTO_ONLY:  # typer's click may be its own copy: compare the source's name
        if not auto and getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT":
            fail(f"--{name.replace('_', '-')} applies only with --shots auto")
    try:
        adaptive = None
        if auto:
            adaptive = AdaptiveConfig(target_agreement, initial_shots, max_shots_per_row)
            count = _SCHED.shots
        options = RunOptions(
            bundle=bundle, backend=backend, dataset=dataset, split=split, limit=limit,
            batch_size=batch_size, mitigate=mitigate, data_root=data_root,
            skip_unreadable=skip_unreadable,
            scheduler=SchedulerConfig(
                shots=count, max_copies=max_copies, packing=packing, job_size=job_size,
                calibration_rows=calibration_rows,
                max_in_flight=max_in_flight, job_timeout=job_timeout,
                poll_interval=poll_interval, seed=seed,
                max_total_shots=max_total_shots, max_qpu_seconds=max_qpu_seconds,
                resubmit_unrecorded=resubmit_unrecorded,
                zne_scales=ZNEConfig.parse(zne_scales, zne_extrapolation, zne_fold).scales,
                zne_extrapolation=zne_extrapolation.strip().lower(),
                zne_fold=zne_fold.strip().lower(),
                zne_twirls=zne_twirls,
                readout_shots=readout_shots,
            ),
            retry=RetryConfig.waiting(retries, retry_wait),
            adaptive=adaptive,
        )  # fmt: skip
        if dry_run:
            from .jobs.preview import preview

            title = f"{bundle} on {backend} (dry run: nothing submitted)"
            _print_preview(preview(options), title, price_per_qpu_second)
            return
        summary = run_bundle(options, out, resume=resume, console=console,
                             confirm=_confirmation(yes), overwrite=overwrite)  # fmt: skip
    except KeyboardInterrupt:
        fail(
            f"interrupted; finished jobs are kept in {out}/journal.sqlite: run the same "
            "command with --resume to continue",
            code=130,
        )
    except (QvitHwError, ValueError, OSError) as exc:
        fail(f"{one_line(exc)}{_resume_hint(exc, out)}")
    except Exception as exc:  # not ours: still one line; run.json says "failed" with it
        fail(f"{type(exc).__name__}: {one_line(exc)}{_resume_hint(exc, out)}")
    cost = summary.cost
    table = Table(title=f"{bundle} on {backend}: {summary.images} images", show_header=False)
    rows = [
        ("predictions equal to the exact model's", f"{summary.agreement:.1%}"),
        ("accuracy (backend / exact)", f"{summary.accuracy:.3f} / {summary.exact_accuracy:.3f}"),
        ("MAE of <Z> vs exact (mitigated / raw)", f"{summary.z_mae:.4f} / {summary.z_mae_raw:.4f}"),
        ("rows / unique rows", f"{cost['rows']:,} / {cost['unique_rows']:,}"),
        ("executions (per image)", f"{cost['executions']:,} ({cost['executions_per_image']:.1f})"),
        ("copies per execution", ", ".join(map(str, cost["packing"].values()))),
        ("jobs (submitted / reused / retries)",
         f"{cost['jobs']} ({cost['submitted']} / {cost['reused']} / {cost['retries']})"),
        ("shots the device ran (per image)",
         f"{cost['shots']:,} ({cost['shots'] / cost['images']:,.0f})"),
        ("QPU seconds", _qpu_text(cost)),
        ("wall seconds", f"{cost['wall_seconds']:.1f}"),
    ]  # fmt: skip
    seconds = cost.get("qpu_seconds") or cost.get("qpu_seconds_estimated")
    rows += [money] if (money := _price_row(seconds, price_per_qpu_second)) else []
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)
    for note in summary.notes:
        console.print(f"[bold yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    console.print(f"wrote {out}", highlight=False)


@app.command()
def characterize(
    bundle: str = typer.Argument(..., metavar="BUNDLE", help="A bundle from `qvit-hw export`."),
    backend: str = typer.Option(..., help="The device to measure (as for `qvit-hw run`)."),
    out: str = typer.Option(..., help="Folder of the characterization (surrogate:OUT)."),
    shots: int = typer.Option(_SCHED.shots, help="Shots per grid point and placement."),
    mitigate: str = typer.Option(
        "none", help="Row-level corrections first: readout, readout-props, learned (in order)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Plan it, print jobs, shots and QPU seconds; submit nothing."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue in --out without paying twice."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a characterization."),
    max_copies: int | None = typer.Option(_SCHED.max_copies, help="At most K packed copies."),
    packing: str = typer.Option(_SCHED.packing, help="best, max or auto (as for run)."),
    calibration_rows: int = typer.Option(
        _SCHED.calibration_rows, help="Rows of known exact answer per QNN template (learned)."
    ),
    job_size: int | None = typer.Option(_SCHED.job_size, help="At most E executions per job."),
    max_in_flight: int = typer.Option(_SCHED.max_in_flight, help="Jobs in flight, at most."),
    poll_interval: float = typer.Option(_SCHED.poll_interval, help="Seconds between polls."),
    retries: int = typer.Option(_RETRY.attempts, help="Attempts per call on transient errors."),
    retry_wait: float = typer.Option(_RETRY.initial, help="First backoff in seconds."),
    seed: int = typer.Option(_SCHED.seed, help="Transpiler seed."),
) -> None:
    """Measure a device's function of every QNN of a bundle once: each QNN on the 3^n grid
    of angles {0, 2pi/3, 4pi/3} on every placement it uses (interpolation then gives its
    value anywhere). `qvit-hw run BUNDLE --backend surrogate:OUT` then diagnoses any number
    of images from it with no job submitted."""
    from .jobs.characterize import CharacterizeOptions, characterize, preview_characterize

    try:
        options = CharacterizeOptions(
            bundle=bundle, backend=backend, mitigate=mitigate,
            scheduler=SchedulerConfig(
                shots=shots, max_copies=max_copies, packing=packing, job_size=job_size,
                calibration_rows=calibration_rows, max_in_flight=max_in_flight,
                poll_interval=poll_interval, seed=seed,
            ),
            retry=RetryConfig.waiting(retries, retry_wait),
        )  # fmt: skip
        if dry_run:
            _print_preview(
                preview_characterize(options),
                f"characterize {bundle} on {backend} (dry run: nothing submitted)",
            )
            return
        result = characterize(options, out, resume=resume, overwrite=overwrite, console=console)
    except KeyboardInterrupt:
        fail(f"interrupted; finished jobs are kept in {out}/journal.sqlite: run the same "
             "command with --resume to continue", code=130)  # fmt: skip
    except (QvitHwError, ValueError, OSError) as exc:
        fail(f"{one_line(exc)}{_resume_hint(exc, out)}")
    except Exception as exc:
        fail(f"{type(exc).__name__}: {one_line(exc)}{_resume_hint(exc, out)}")
    cost = result["cost"]
    table = Table(title=f"{bundle} measured on {backend}", show_header=False)
    for key, value in (
        ("QNNs / rows measured", f"{len(result['qnns'])} / {cost['rows']:,}"),
        ("executions / shots", f"{cost['executions']:,} / {cost['shots']:,}"),
        ("jobs (submitted / reused)", f"{cost['jobs']} ({cost['submitted']} / {cost['reused']})"),
        ("QPU seconds", _qpu_text(cost)),
    ):
        table.add_row(key, value)
    Console().print(table)
    console.print(f"wrote {out}: run any images with --backend surrogate:{out}", highlight=False)


# --- report, demo (qvit_hw.report, qvit_hw.demo) ------------------------------------------


@app.command()
def report(
    run_dir: str = typer.Argument(..., help="A complete run directory from `qvit-hw run`."),
    against: str | None = typer.Option(
        None, help="A second run to show side by side (another backend, or no mitigation)."
    ),
    out: str | None = typer.Option(
        None,
        help="Where report.json and report.html go; default: the run directory (with "
        "--against: report-vs-<other run>.json and .html there).",
    ),
) -> None:
    """Fidelity report of a run: <Z> errors vs exact (per QNN, per physical qubit, against
    shot noise), Hellinger fidelities, prediction agreement, accuracy/AUC and cost; JSON and
    a self-contained HTML page with plots."""
    from .files import check_out_dir
    from .report import write_report

    try:
        if out is not None:
            check_out_dir(out)  # before anything is read
        with console.status("writing the report"):
            path = write_report(run_dir, against=against, out=out)
    except (QvitHwError, ValueError) as exc:
        fail(one_line(exc))
    except OSError as exc:  # e.g. a read-only run folder
        where = "" if out is not None else "; pass --out to write the report into another folder"
        fail(f"could not write the report ({one_line(exc)}){where}")
    import json

    for warning in json.loads(path.with_suffix(".json").read_text()).get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    console.print(f"wrote {path.with_suffix('.json')} and {path}", highlight=False)


@app.command()
def demo(
    out: str = typer.Option("demo", help="Demo directory (train/, bundle/, transpile/, run/)."),
    epochs: int = typer.Option(20, help="Training epochs on the digits images."),
    train_limit: int | None = typer.Option(
        None, help="Train on the first N images of each split only (quick trials)."
    ),
    images: int = typer.Option(96, help="Test images run on the backend."),
    shots: int = typer.Option(500, help="Shots per circuit."),
    backend: str = typer.Option("fake_brisbane", help="Backend of the run step."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a demo already in --out (finished or not)."
    ),
) -> None:
    """The whole pipeline, offline: train a small QViT on digits, export it, transpile it
    for IBM and Rigetti devices, run 96 test images on fake_brisbane (the fast noisy engine)
    with shots, readout + zero-noise extrapolation + the run-level fit, and write the
    fidelity report."""
    import time

    from .demo import DemoOptions, run_demo

    start = time.perf_counter()
    try:
        options = DemoOptions(
            epochs=epochs, train_limit=train_limit, images=images, shots=shots, backend=backend
        )
        result = run_demo(options, out, overwrite=overwrite, console=console)
    except KeyboardInterrupt:
        fail(f"interrupted; run again with --overwrite to start the demo in {out} again", 130)
    except (QvitHwError, ValueError) as exc:
        fail(one_line(exc))
    if result.reused:
        console.print(f"{out} already holds a finished demo (--overwrite redoes it)")
    else:
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        console.print(f"demo finished in {time.perf_counter() - start:.0f} s ({steps})")
    Console().print(f"report: {result.report.resolve()}", highlight=False, soft_wrap=True)


def _tidy_help() -> None:
    """Help as people read it: a docstring's line breaks inside a paragraph become spaces
    (typer's command list would keep them, wrapping mid-sentence), and flags that take no
    value show no ``<bool>``. Runs once, after every command is registered."""
    from typer.core import TyperOption

    for info in app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        info.help = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    if getattr(TyperOption.display_type_rich, "_bare_flags", False):
        return
    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: typing.Any) -> str | None:
        return None if self.is_flag and not self.count else shown(self, ctx)

    display_type_rich._bare_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


# `run --help` in panels, each option with a metavar saying what it takes (choices as
# a|b|c); an option not listed here (one added later) stays under "Options"
RUN_HELP: dict[str, dict[str, str | None]] = {
    "Data": {"dataset": "NAME|PATH", "split": "train|val|test", "limit": "N",
             "data_root": "PATH", "skip_unreadable": None, "batch_size": "N"},
    "Backend and output": {"backend": "NAME[?K=V&...]", "out": "DIR", "resume": None,
                           "overwrite": None, "dry_run": None, "yes": None},
    "Shots and budget": {"shots": "N|auto", "target_agreement": "FRACTION",
                         "initial_shots": "N", "max_shots_per_row": "N",
                         "max_total_shots": "N", "max_qpu_seconds": "SECONDS",
                         "price_per_qpu_second": "PRICE"},
    "Mitigation and packing": {"mitigate": "LIST", "readout_shots": "N",
                               "zne_scales": "1,S[,S...]",
                               "zne_extrapolation": "richardson|linear|exponential",
                               "zne_fold": "all|two",
                               "zne_twirls": "N",
                               "calibration_rows": "N", "max_copies": "K",
                               "packing": "best|max|auto", "job_size": "E", "seed": "N"},
    "Scheduler and retries": {"max_in_flight": "N", "job_timeout": "SECONDS",
                              "poll_interval": "SECONDS", "retries": "N",
                              "retry_wait": "SECONDS", "resubmit_unrecorded": None},
}  # fmt: skip


def _help_panels(command: str, panels: dict[str, dict[str, str | None]]) -> None:
    """Put ``command``'s options into rich help panels with the metavars given; and every
    command's positional arguments get their name in capitals (BUNDLE, not {bundle})."""
    for info in app.registered_commands:
        params = inspect.signature(info.callback).parameters.values()  # type: ignore[arg-type]
        for param in params:
            default = param.default
            if isinstance(default, typer.models.ArgumentInfo) and default.metavar is None:
                default.metavar = param.name.upper()
            if info.callback.__name__ != command or not isinstance(  # type: ignore[union-attr]
                default, typer.models.OptionInfo
            ):
                continue
            for panel, metavars in panels.items():
                if param.name in metavars:
                    default.rich_help_panel = panel
                    default.metavar = metavars[param.name] or default.metavar
    from typer.core import TyperArgument

    if getattr(TyperArgument._usage_display_name, "_plain", False):
        return

    def usage_name(self: TyperArgument) -> str:  # BUNDLE, not {BUNDLE}
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    def type_name(self: TyperArgument, ctx: typing.Any) -> str | None:  # BUNDLE, not <str>
        return None if self.metavar is not None else shown_argument(self, ctx)

    shown_argument = TyperArgument.display_type_rich
    usage_name._plain = True  # type: ignore[attr-defined]
    TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]
    TyperArgument.display_type_rich = type_name  # type: ignore[method-assign]


# `train` and `distill` share their flags (`TrainArgs`): one table serves both
TRAIN_HELP: dict[str, dict[str, str | None]] = {
    "Data": {"dataset": "NAME|PATH", "size": "28|224", "data_root": "PATH", "download": None,
             "limit": "N", "skip_unreadable": None},
    "Model": {"model": "qvit|vit", "qubits": "N", "heads": "N", "pairs": "I-J,..."},
    "Schedule": {"epochs": "N", "lr": "RATE", "batch_size": "N", "seed": "N"},
    "Output": {"out": "DIR", "resume": None, "overwrite": None},
    "Compute": {"device": "auto|cpu|cuda[:N]|mps", "precision": "32|bf16|16-mixed",
                "workers": "N", "nproc": "N"},
}  # fmt: skip


_tidy_help()
_help_panels("run", RUN_HELP)
_help_panels("train", TRAIN_HELP)  # the same option objects serve distill
_help_panels("distill", {"Teacher and distillation": {
    "kd_epochs": "N", "teacher_epochs": "N", "teacher_lr": "RATE", "teacher_checkpoint": "PATH",
    "teacher_weights": "PATH", "teacher_pretrained": None}})  # fmt: skip


def main() -> None:
    """Entry point that turns our errors into one line and exit status 1."""
    try:
        app(prog_name="qvit-hw")  # also under `python -m qvit_hw`
    except (QvitHwError, OSError) as exc:
        try:
            fail(one_line(exc))  # typer.Exit escapes here: app() is no longer there to catch it
        except typer.Exit as stop:
            sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
