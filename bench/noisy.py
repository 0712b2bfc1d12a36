"""Noisy device simulation: the fast engine (``fake_brisbane``) vs Aer
(``fake_brisbane?engine=aer``), side by side in one run.

(a) Throughput: rows/s (one row = one packed copy of one execution) of both engines on the
    same pubs, through the backend's submit/result: chain4 and chain8 packed on
    ibm_brisbane (`compile_qnn`, as many copies as fit), random rows, 1,000 shots;
    interleaved repeats, medians. Aer's rate includes its fixed cost per call (it converts
    the whole 127-qubit noise model every run), the fast engine's its sampling.
(b) Accuracy at the scale of ``make demo``: the demo's bundle (digits QViT with the demo's
    settings, trained here unless ``demo/`` holds a finished demo with those settings) on
    96 test images with readout mitigation and 1,000 shots, at several backend seeds per
    engine (agreement on 96 images moves by a few points with the shots drawn, so the
    engines are compared by their means over seeds): MAE of <Z> vs exact (mitigated and
    raw), prediction agreement with the exact model, wall seconds.
(c) Memory: peak resident set (``VmHWM``) of a process running 32 images of an
    n = 8 QViT (untrained, seeded) on fake_brisbane with the fast engine.

``python -m bench.run bench.noisy`` runs this section alone.
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from qvit_hw.backends import Pub, get_backend
from qvit_hw.circuit import chain, random_inputs
from qvit_hw.transpile import compile_qnn, get_target

ROOT = Path(__file__).resolve().parents[1]
BACKEND, DEVICE, SHOTS = "fake_brisbane", "ibm_brisbane", 1000
ENGINES = {"fast": BACKEND, "aer": f"{BACKEND}?engine=aer"}
SEEDS = {"fast": (1, 2, 3, 4, 5), "aer": (1, 2)}  # Aer takes ~9 min per run here
EXECUTIONS = 40  # per pub of (a), both engines
LARGE_EXECUTIONS = 2000  # the fast engine alone on a larger pub
REPEATS = 3
IMAGES = 96
MEMORY_IMAGES, MEMORY_LIMIT = 32, 2 << 30
MAE_TOLERANCE, AGREEMENT_POINTS = 0.05, 3.0


def run(console: Console) -> str:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_noisy_") as tmp:
            return _run(console, Path(tmp))
    finally:
        torch.set_num_threads(threads)


def _run(console: Console, tmp: Path) -> str:
    lines = [
        "## Noisy simulation: the fast engine vs Aer on fake_brisbane",
        "",
        "Both engines simulate the same `NoiseModel.from_backend(FakeBrisbane())`, each packed "
        "copy on its own physical qubits: *fast* (`engine=fast`, the default) computes every "
        "row's exact outcome distribution with the model's channels and samples the shots; "
        "*Aer* (`engine=aer`) runs every copy of every row as an Aer experiment. Target: "
        "the fast engine >= 100x Aer's rows/s, with equal distributions.",
        "",
    ]
    lines += _throughput_section(console)
    lines += _memory_section(console, tmp)
    lines += _demo_section(console, tmp)
    return "\n".join(lines) + "\n"


# --- (a) rows/s -------------------------------------------------------------------------


def _throughput_section(console: Console) -> list[str]:
    lines = [
        f"### Rows/s at {SHOTS:,} shots",
        "",
        f"Pubs of {EXECUTIONS} executions x k copies (random rows), the same pubs for both "
        f"engines, `submit` + `result`, median of {REPEATS} interleaved repeats after a "
        "warm-up (the fast engine's per-copy templates are built once per circuit: *build*). "
        f"*Fast, large pub*: {LARGE_EXECUTIONS:,} executions. *Max dev*: largest "
        "|<Z>(fast) - <Z>(Aer)| over rows and qubits in units of the two draws' combined "
        "standard error.",
        "",
        "| QNN | k | rows per pub | Aer rows/s | fast rows/s | ratio | fast, large pub | "
        "build (s) | max dev | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n in (4, 8):
        r = _throughput(n)
        met = "met" if r["ratio"] >= 100 and r["max_dev"] < 5 else "NOT met"
        console.print(
            f"chain{n}: Aer {r['aer']:,.0f} rows/s, fast {r['fast']:,.0f} rows/s "
            f"({r['ratio']:,.0f}x), large pub {r['large']:,.0f} rows/s, max dev "
            f"{r['max_dev']:.2f}"
        )
        lines.append(
            f"| chain{n} | {r['k']} | {r['rows']:,} | {r['aer']:,.0f} | {r['fast']:,.0f} | "
            f"{r['ratio']:,.0f}x | {r['large']:,.0f} | {r['build']:.2f} | {r['max_dev']:.2f} | "
            f">= 100x {met} |"
        )
    return [*lines, ""]


def _throughput(n: int) -> dict[str, Any]:
    spec = chain(n)
    compiled = compile_qnn(spec, get_target(DEVICE, live=False))
    k = compiled.copies
    x, w = random_inputs(spec, (LARGE_EXECUTIONS + EXECUTIONS) * k, seed=n)
    values = compiled.parameter_values(x, w)
    pub = Pub(compiled.circuit, values[:EXECUTIONS], SHOTS)
    large = Pub(compiled.circuit, values[EXECUTIONS:], SHOTS)
    backends = {name: get_backend(ENGINES[name]) for name in ("fast", "aer")}
    warm = Pub(compiled.circuit, values[:1], SHOTS)
    _ = backends["fast"].noise_model  # the device's model: once per process, shared
    start = time.perf_counter()
    backends["fast"].submit([warm])  # the copies' templates
    build = time.perf_counter() - start
    backends["aer"].submit([warm])  # the simulator and its noise model
    times: dict[str, list[float]] = {name: [] for name in backends}
    results: dict[str, Any] = {}
    for _ in range(REPEATS):
        for name, backend in backends.items():
            start = time.perf_counter()
            (results[name],) = backend.result(backend.submit([pub])).pubs
            times[name].append(time.perf_counter() - start)
    large_times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        backends["fast"].result(backends["fast"].submit([large]))
        large_times.append(time.perf_counter() - start)
    fast, aer = results["fast"].z, results["aer"].z
    combined = np.sqrt(np.clip(2 - fast**2 - aer**2, 1e-6, None) / SHOTS)
    rates = {name: pub.rows * k / statistics.median(t) for name, t in times.items()}
    return {
        "k": k,
        "rows": pub.rows * k,
        **rates,
        "ratio": rates["fast"] / rates["aer"],
        "large": large.rows * k / statistics.median(large_times),
        "build": build,
        "max_dev": float(np.max(np.abs(fast - aer) / combined)),
    }


# --- (b) the demo's 96 images with each engine -------------------------------------------


def _demo_section(console: Console, tmp: Path) -> list[str]:
    from qvit_hw.jobs.config import SchedulerConfig
    from qvit_hw.jobs.run import RunOptions, run_bundle

    bundle, origin = _demo_bundle(console, tmp)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ENGINES}
    preds = {}
    for name, backend in ENGINES.items():
        for seed in SEEDS[name]:
            console.print(f"{IMAGES} images on {backend}, seed {seed} ...")
            options = RunOptions(
                bundle=str(bundle),
                backend=f"{backend}{'&' if '?' in backend else '?'}seed={seed}",
                limit=IMAGES,
                mitigate="readout",
                scheduler=SchedulerConfig(shots=SHOTS, poll_interval=0.05),
            )
            start = time.perf_counter()
            s = run_bundle(options, tmp / f"run_{name}_{seed}")
            runs[name].append({"seed": seed, "summary": s, "seconds": time.perf_counter() - start})
            preds[name, seed] = _predictions(tmp / f"run_{name}_{seed}" / "predictions.csv")
            console.print(
                f"{name}, seed {seed}: {runs[name][-1]['seconds']:.1f} s, z MAE {s.z_mae:.4f} "
                f"(raw {s.z_mae_raw:.4f}), agreement {s.agreement:.1%}"
            )

    def mean(name: str, key: str) -> float:
        return statistics.fmean(getattr(r["summary"], key) for r in runs[name])

    mae = abs(mean("fast", "z_mae") - mean("aer", "z_mae")) / mean("aer", "z_mae")
    mae_raw = abs(mean("fast", "z_mae_raw") - mean("aer", "z_mae_raw")) / mean("aer", "z_mae_raw")
    points = 100 * abs(mean("fast", "agreement") - mean("aer", "agreement"))
    first = SEEDS["aer"][0]
    same = float(np.mean(preds["fast", first] == preds["aer", first]))
    lines = [
        f"### {IMAGES} digits test images, the `make demo` bundle",
        "",
        f"Bundle: {origin}. `run_bundle` with readout mitigation, {SHOTS:,} shots, batches "
        "of 8 images, polling every 0.05 s (as the demo), per engine at backend seeds "
        f"{', '.join(map(str, SEEDS['fast']))} (fast) and {', '.join(map(str, SEEDS['aer']))} "
        "(Aer). *MAE*: mean |<Z> - exact <Z>| over every QNN row and qubit, after readout "
        "mitigation and raw; *agreement*: share of images whose prediction equals the exact "
        "model's.",
        "",
        "| engine | seed | wall (s) | z MAE | z MAE raw | agreement | executions | jobs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ENGINES:
        for r in runs[name]:
            s = r["summary"]
            lines.append(
                f"| {name} | {r['seed']} | {r['seconds']:.1f} | {s.z_mae:.4f} | "
                f"{s.z_mae_raw:.4f} | {s.agreement:.1%} | {s.cost.get('executions', 0):,} | "
                f"{s.cost.get('jobs', 0)} |"
            )
        lines.append(
            f"| {name}, mean | | | {mean(name, 'z_mae'):.4f} | {mean(name, 'z_mae_raw'):.4f} | "
            f"{mean(name, 'agreement'):.1%} | | |"
        )
    ok = mae <= MAE_TOLERANCE and mae_raw <= MAE_TOLERANCE and points <= AGREEMENT_POINTS
    # the fastest run of each (the first pays for imports and template builds)
    wall = min(r["seconds"] for r in runs["aer"]) / min(r["seconds"] for r in runs["fast"])
    lines += [
        "",
        f"Fast vs Aer, means over seeds: z MAE differs by {mae:.1%} (raw: {mae_raw:.1%}; "
        f"target within {MAE_TOLERANCE:.0%}), agreement by {points:.1f} points (target within "
        f"{AGREEMENT_POINTS:.0f}): {'met' if ok else 'NOT met'}. At seed {first} the two "
        f"engines predict the same class for {same:.1%} of the images; wall time: Aer / fast "
        f"= {wall:.0f}x.",
        "",
    ]
    return lines


def _demo_bundle(console: Console, tmp: Path) -> tuple[Path, str]:
    """``demo/bundle`` of a finished demo with the default training settings, else the
    same training (digits QViT, `DemoOptions` defaults) into ``tmp``."""
    from qvit_hw.demo import DemoOptions
    from qvit_hw.export import export_bundle
    from qvit_hw.train import Schedule, TrainOptions, load_checkpoint, train

    options = DemoOptions()
    keys = ("epochs", "lr", "batch_size", "train_limit", "seed")
    demo = ROOT / "demo"
    try:
        state = json.loads((demo / "demo.json").read_text())
        settings = state.get("settings", {})
        if (
            state.get("status") == "complete"
            and all(settings.get(k) == getattr(options, k) for k in keys)
            and (demo / "bundle" / "manifest.json").is_file()
        ):
            return demo / "bundle", "`demo/bundle` (a finished `make demo`)"
    except (OSError, ValueError, AttributeError):
        pass
    console.print(f"training the demo's QViT on digits ({options.epochs} epochs) ...")
    start = time.perf_counter()
    topts = TrainOptions(
        dataset="digits",
        schedule=Schedule(epochs=options.epochs, lr=options.lr, batch_size=options.batch_size),
        seed=options.seed,
        limit=options.train_limit,
    )
    torch.set_num_threads(options.threads)
    trained = train(topts, tmp / "train", overwrite=True)
    model, info = load_checkpoint(trained.out / "best.pt")
    bundle = export_bundle(model, tmp / "bundle", info=info, overwrite=True)
    seconds = time.perf_counter() - start
    console.print(f"trained and exported in {seconds:.0f} s")
    return bundle, (
        f"trained here as `make demo` trains it ({options.epochs} epochs, lr {options.lr}, "
        f"batch {options.batch_size}, seed {options.seed}; {seconds:.0f} s)"
    )


def _predictions(path: Path) -> np.ndarray:
    with path.open(newline="") as f:
        return np.array([row["pred"] for row in csv.DictReader(f)])


# --- (c) peak memory of an n = 8 run ------------------------------------------------------

_MEMORY_RUN = """
import json, sys
def peak_kib():  # VmHWM: this process's own peak RSS (ru_maxrss keeps a parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from qvit_hw.jobs.config import SchedulerConfig
from qvit_hw.jobs.run import RunOptions, run_bundle
bundle, out, images = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = RunOptions(bundle, backend="fake_brisbane", limit=images, mitigate="readout",
                     scheduler=SchedulerConfig(shots=1000, poll_interval=0.05))
summary = run_bundle(options, out)
print(json.dumps({"maxrss_kib": peak_kib(),
                  "rows": summary.cost.get("rows"), "executions": summary.cost.get("executions"),
                  "z_mae": summary.z_mae}))
"""

_MEMORY_BASELINE = """
import json
def peak_kib():  # VmHWM: this process's own peak RSS (ru_maxrss keeps a parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
import qvit_hw.jobs.run, qvit_hw.backends.fake, qvit_hw.backends.noisy, qiskit_aer
from qvit_hw.backends import get_backend
from qvit_hw.backends.fake import device_noise_model
get_backend("fake_brisbane"); device_noise_model("fake_brisbane")
print(json.dumps({"maxrss_kib": peak_kib()}))
"""


def _memory_section(console: Console, tmp: Path) -> list[str]:
    from qvit_hw.data import Normalization
    from qvit_hw.export import export_bundle
    from qvit_hw.model import QViT

    torch.manual_seed(0)
    bundle = tmp / "qvit8"
    info = {"dataset": {"name": "digits", "size": 28}, "normalization": Normalization().to_dict()}
    export_bundle(QViT(num_classes=10, n_qubits=8), bundle, info=info)
    console.print(f"peak memory: {MEMORY_IMAGES} images of an n = 8 QViT on {BACKEND} ...")
    start = time.perf_counter()
    peak = _subprocess(_MEMORY_RUN, str(bundle), str(tmp / "run_qvit8"), str(MEMORY_IMAGES))
    seconds = time.perf_counter() - start
    base = _subprocess(_MEMORY_BASELINE)
    mib, base_mib = peak["maxrss_kib"] / 1024, base["maxrss_kib"] / 1024
    met = "met" if peak["maxrss_kib"] * 1024 < MEMORY_LIMIT else "NOT met"
    console.print(f"peak RSS {mib:,.0f} MiB (imports and noise model: {base_mib:,.0f} MiB)")
    return [
        "### Peak memory, n = 8",
        "",
        f"A QViT with n = 8 (28x28 digits, 196 tokens, 2 heads: 6 QNNs of 8 qubits; seeded, "
        f"untrained) on {MEMORY_IMAGES} test images, `fake_brisbane` (fast engine), readout "
        f"mitigation, {SHOTS:,} shots, in a fresh process: {peak['rows']:,} QNN rows, "
        f"{peak['executions']:,} executions, {seconds:.0f} s. Peak resident set "
        f"(`VmHWM`): **{mib:,.0f} MiB** (target < 2 GB: {met}); the same process after "
        f"only importing and building the device's noise model: {base_mib:,.0f} MiB.",
        "",
    ]


def _subprocess(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.noisy subprocess failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(run(Console()))
