"""Precision from the whole run: the Fourier fit and the surrogate, against uniform and
adaptive shots, on `shots` and `fake_brisbane` (359 digits test images).

(a) Agreement with the exact model against QPU seconds: uniform direct runs (100, 300,
    1,000 shots per row; their unfitted values are the raw stage of the fitted run, the
    same shots), `--shots auto` at 0.99, direct + `fourier`, and `characterize` (three
    shot levels per grid point) + `surrogate:`.
(b) The fit on an ideal device, three trained models (the `make demo` one and two with
    other seeds) x three backend seeds at 1,000 shots: agreement raw and fitted, MAE, the
    fitted values' z-scores against exact, and the disagreements against the summed flip
    probabilities.
(c) Unbiased for the device: fitted values on `fake_brisbane` against the fast engine's
    exact noisy <Z> of the same rows (`fake_brisbane?exact=1`), without readout mitigation
    and with it (`readout,fourier` against `?exact=1` with `readout`, its confusion
    inverted exactly).
(d) `characterize` + `surrogate:` against a direct fitted run on the same fake device
    (through a mock that logs every submit), n = 4 (the demo's bundle) and n = 8: submits
    during the surrogate runs, and the z-scores of surrogate - direct over their combined
    standard errors.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from bench.noisy import _demo_bundle

IMAGES = 359
SEEDS = (1, 2, 3)
MODEL_SEEDS = (0, 1, 2)  # 0: the demo's
CHAR_SHOTS = (1_000, 10_000, 100_000)
READOUT_SHOTS = 100_000  # readout calibration of the (c) readout variant: fake_brisbane's max
# (d): characterize shots per grid point, fake_brisbane's maximum: the surrogate's standard
# errors (sqrt((1 - z^2) / shots) at any x) stay ~3x the n = 4 direct fit's (70,000 rows per
# QNN), below the n = 8 one's on its widest cones
SURROGATE_SHOTS = 100_000
# (d) n = 8: a chain's outputs 6 and 7 have 3^8 = 6,561 terms, more than the 16 x 359 =
# 5,744 rows the test split gives a QNN (the fit refuses fewer rows than terms), so the
# direct fit runs on the train split's first 700 images (~11,000 distinct rows per QNN,
# 1.7 per term; all 1,258 took 38 minutes on `shots`, most of it the fit's n = 8 normal
# equations and row standard errors); the surrogate runs on both those and the test split
SURROGATE_DIRECT = {4: ("test", IMAGES), 8: ("train", 700)}
PARTIAL = Path(tempfile.gettempdir()) / "bench.fourier.partial.json"  # survives a crash


def run(console: Console) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        return _run(console, Path(tmp))


def trained_bundles(console: Console, tmp: Path) -> dict[int, Path]:
    """The demo's bundle (model seed 0) and one trained the same way per other seed."""
    bundles = {0: _demo_bundle(console, tmp)[0]}
    for seed in MODEL_SEEDS[1:]:
        bundles[seed] = _train(console, tmp, seed)
    return bundles


def _run(console: Console, tmp: Path) -> str:
    bundles = trained_bundles(console, tmp)
    done: dict[str, Any] = {}

    def measure(key: str, fn: Any, *args: Any) -> dict[str, Any]:
        start = time.perf_counter()
        done[key] = fn(*args)
        console.print(f"{key}: {_brief(done[key])} ({time.perf_counter() - start:.0f} s)")
        PARTIAL.write_text(json.dumps(done, indent=1, default=float))
        return done[key]

    demo = bundles[0]
    for backend, mitigate in (("shots?seed=1", "fourier"), ("fake_brisbane", "readout,fourier")):
        for shots in (100, 300, 1000):
            measure(f"{backend}|{mitigate}|{shots}", _direct, demo, tmp, backend, mitigate, shots)
        auto_mitigate = "readout" if "fake" in backend else "none"
        measure(f"{backend}|auto", _auto, demo, tmp, backend, auto_mitigate)
        for shots in CHAR_SHOTS:
            measure(f"{backend}|char|{shots}", _surrogate, demo, tmp, backend,
                    auto_mitigate, shots)  # fmt: skip
    for model in MODEL_SEEDS:
        for seed in SEEDS:
            key = f"model{model}|seed{seed}"
            if model == 0 and seed == 1:
                done[key] = done["shots?seed=1|fourier|1000"]
                continue
            measure(key, _direct, bundles[model], tmp, f"shots?seed={seed}", "fourier", 1000)
    measure("brisbane|unbiased", _unbiased, demo, tmp)
    measure("brisbane|unbiased|readout", _unbiased_readout, demo, tmp)
    measure("surrogate|n4", _surrogate_vs_direct, demo, tmp, 4)
    measure("surrogate|n8", _surrogate_vs_direct, n8_bundle(tmp), tmp, 8)
    return _markdown(done)


def _train(console: Console, tmp: Path, seed: int) -> Path:
    """A QViT trained as the demo's, with another seed."""
    import torch

    from qvit_hw.demo import DemoOptions
    from qvit_hw.export import export_bundle
    from qvit_hw.train import Schedule, TrainOptions, load_checkpoint, train

    options = DemoOptions()
    console.print(f"training a demo QViT with seed {seed} ...")
    topts = TrainOptions(
        dataset="digits",
        schedule=Schedule(epochs=options.epochs, lr=options.lr, batch_size=options.batch_size),
        seed=seed,
    )
    torch.set_num_threads(options.threads)
    trained = train(topts, tmp / f"train{seed}", overwrite=True)
    model, info = load_checkpoint(trained.out / "best.pt")
    return export_bundle(model, tmp / f"bundle{seed}", info=info, overwrite=True)


def _options(bundle: Path, backend: str, mitigate: str, shots: int, adaptive: Any = None):
    from qvit_hw.jobs.config import SchedulerConfig
    from qvit_hw.jobs.run import RunOptions

    config = SchedulerConfig(shots=shots, poll_interval=0)
    return RunOptions(str(bundle), backend=backend, limit=IMAGES, batch_size=32,
                      mitigate=mitigate, scheduler=config, adaptive=adaptive)  # fmt: skip


def _direct(bundle: Path, tmp: Path, backend: str, mitigate: str, shots: int) -> dict[str, Any]:
    from qvit_hw.jobs.run import run_bundle

    out = tmp / f"direct-{abs(hash((str(bundle), backend, mitigate, shots)))}"
    summary = run_bundle(_options(bundle, backend, mitigate, shots), out)
    corrections = json.loads((out / "corrections.json").read_text())
    stages = {s["name"]: s for s in corrections["stages"]}
    raw_name = "+".join(mitigate.split(",")[:-1]) or "raw"
    with np.load(out / "rows.npz") as rows:
        err, se = rows["estimate"] - rows["exact"], rows["stderr"]
        z_sd = float(np.std(err / se))
    pred, exact, flip = _predictions(out)
    return {
        "agreement": summary.agreement,
        "agreement_unfitted": stages[raw_name]["agreement"],
        "mae": summary.z_mae,
        "mae_unfitted": stages[raw_name]["z_mae"],
        "fit_stderr": float(se.mean()),
        "z_sd": z_sd,
        "disagreements": int((pred != exact).sum()),
        "flip_sum": float(flip.sum()),
        "flip_var": float((flip * (1 - flip)).sum()),
        **_cost(summary.cost),
    }


def _auto(bundle: Path, tmp: Path, backend: str, mitigate: str) -> dict[str, Any]:
    from qvit_hw.jobs.config import AdaptiveConfig
    from qvit_hw.jobs.run import run_bundle

    out = tmp / f"auto-{abs(hash(backend))}"
    adaptive = AdaptiveConfig(target_agreement=0.99)
    summary = run_bundle(_options(bundle, backend, mitigate, 1000, adaptive), out)
    return {"agreement": summary.agreement, "mae": summary.z_mae, **_cost(summary.cost)}


def _surrogate(bundle: Path, tmp: Path, backend: str, mitigate: str, shots: int) -> dict[str, Any]:
    from qvit_hw.jobs.characterize import CharacterizeOptions, characterize
    from qvit_hw.jobs.config import SchedulerConfig
    from qvit_hw.jobs.run import run_bundle

    char = tmp / f"char-{abs(hash((backend, shots)))}"
    options = CharacterizeOptions(str(bundle), backend, mitigate,
                                  SchedulerConfig(shots=shots, poll_interval=0))  # fmt: skip
    record = characterize(options, char)
    out = tmp / f"sur-{abs(hash((backend, shots)))}"
    summary = run_bundle(_options(bundle, f"surrogate:{char}", "none", 1000), out)
    cost = record["cost"]
    qpu = cost.get("qpu_seconds_estimated")
    return {
        "agreement": summary.agreement,
        "mae": summary.z_mae,
        "qpu_seconds": qpu,
        "qpu_per_image": None if qpu is None else qpu / IMAGES,
        "shots_per_image": cost["shots"] / IMAGES,
        "characterize_shots": cost["shots"],
    }


def _unbiased(bundle: Path, tmp: Path) -> dict[str, Any]:
    """Fitted values (no readout correction: the engine's exact values include readout
    error, which the fit must reproduce) against the exact noisy <Z> of the same rows."""
    from qvit_hw.jobs.run import run_bundle

    fitted, exact = tmp / "unbiased-fit", tmp / "unbiased-exact"
    run_bundle(_options(bundle, "fake_brisbane", "fourier", 1000), fitted)
    run_bundle(_options(bundle, "fake_brisbane?exact=1", "none", 1000), exact)
    with np.load(fitted / "rows.npz") as a, np.load(exact / "rows.npz") as b:
        assert np.array_equal(a["qubits"], b["qubits"])
        z = (a["estimate"] - b["estimate"]) / a["stderr"]
        bias = float(np.abs(a["estimate"] - b["estimate"]).mean())
        ideal_gap = float(np.abs(b["estimate"] - b["exact"]).mean())
        se = float(a["stderr"].mean())
    return {"z_sd": float(z.std()), "z_mean": float(z.mean()), "mae_vs_noisy": bias,
            "fit_stderr": se, "noisy_vs_ideal": ideal_gap}  # fmt: skip


def _unbiased_readout(bundle: Path, tmp: Path) -> dict[str, Any]:
    """`_unbiased` with readout mitigation: `readout,fourier` on fake_brisbane against
    `fake_brisbane?exact=1` with `readout` (exact noisy values, whose confusion calibrated
    on the exact backend has no shot noise, so it is inverted exactly). The fitted run's
    calibration has `READOUT_SHOTS` shots per circuit; its own error is not in the rows'
    error bars, but the fit carries it into the fitted values'."""
    from qvit_hw.jobs.config import SchedulerConfig
    from qvit_hw.jobs.run import RunOptions, run_bundle

    def options(backend: str, mitigate: str) -> RunOptions:
        config = SchedulerConfig(shots=1000, readout_shots=READOUT_SHOTS, poll_interval=0)
        return RunOptions(str(bundle), backend=backend, limit=IMAGES, batch_size=32,
                          mitigate=mitigate, scheduler=config)  # fmt: skip

    fitted, exact = tmp / "unbiased-ro-fit", tmp / "unbiased-ro-exact"
    run_bundle(options("fake_brisbane", "readout,fourier"), fitted)
    run_bundle(options("fake_brisbane?exact=1", "readout"), exact)
    return _readout_stats(fitted, exact)


def _readout_stats(fitted: Path, exact: Path) -> dict[str, Any]:
    """`_unbiased_readout`'s numbers from its two runs' folders."""
    with np.load(fitted / "rows.npz") as a, np.load(exact / "rows.npz") as b:
        assert np.array_equal(a["qubits"], b["qubits"])
        z = (a["estimate"] - b["estimate"]) / a["stderr"]
        # the exact values read through the fitted run's own (shot-noisy) calibration:
        # what its readout correction converges to; z against them leaves the
        # calibration's error out, so the two z's show how much of the misfit it is
        ours, theirs = _readout_errors(fitted, a["qubits"]), _readout_errors(exact, a["qubits"])
        raw = (1 - theirs[0] - theirs[1]) * b["estimate"] + (theirs[1] - theirs[0])
        through_ours = (raw - (ours[1] - ours[0])) / (1 - ours[0] - ours[1])
        z_ours = (a["estimate"] - through_ours) / a["stderr"]
        return {
            "z_sd": float(z.std()),
            "z_mean": float(z.mean()),
            "z_sd_own_calibration": float(z_ours.std()),
            "z_mean_own_calibration": float(z_ours.mean()),
            "calibration_shift": float(np.abs(through_ours - b["estimate"]).mean()),
            "mae_vs_noisy": float(np.abs(a["estimate"] - b["estimate"]).mean()),
            "fit_stderr": float(a["stderr"].mean()),
            "noisy_vs_ideal": float(np.abs(b["estimate"] - b["exact"]).mean()),
            "readout_shots": json.loads((fitted / "run.json").read_text())["readout_shots"],
        }


def _readout_errors(out: Path, qubits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A run's readout calibration (corrections.json) at each row's physical qubits:
    e0 = p(1|0) and e1 = p(0|1), each shaped as ``qubits``."""
    fitted = json.loads((out / "corrections.json").read_text())["fitted"]
    table = {int(q): e for t in fitted.values() for q, e in t["readout"]["qubits"].items()}
    e = np.array([table[int(q)] for q in qubits.ravel()]).reshape(*qubits.shape, 2)
    return e[..., 0], e[..., 1]


def n8_bundle(tmp: Path) -> Path:
    """An untrained n = 8 QViT (patch 7: 16 tokens of an image, a chain of 8 qubits) as
    tests/jobs/test_characterize.py exports it: `train` has no patch size option (28 x 28
    images get 2 x 2 patches, 196 tokens), and the fit's precision does not depend on
    what the weights learned."""
    import torch

    from qvit_hw.data import Normalization
    from qvit_hw.export import export_bundle
    from qvit_hw.model import QViT

    torch.manual_seed(2)
    info = {"dataset": {"name": "digits", "size": 28}, "normalization": Normalization().to_dict()}
    model = QViT(num_classes=10, patch_size=7, n_qubits=8)
    return export_bundle(model, tmp / "bundle-n8", info=info, overwrite=True)


def _submits(state: Path) -> int:
    log = state / "submits.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def _surrogate_vs_direct(bundle: Path, tmp: Path, n: int) -> dict[str, Any]:
    """On `mock?inner=fake_brisbane` (it logs every submit), one placement (--max-copies 1,
    so the direct fit and the surrogate share it), no readout mitigation (its calibration's
    error is in neither's error bars, and the two would calibrate apart): `characterize`
    at `SURROGATE_SHOTS`, a direct `fourier` run at 1,000 shots, and `surrogate:` runs
    of the 359 test images and of the direct run's images; z = (surrogate - direct) /
    sqrt(se_s^2 + se_d^2) over every row of the direct run."""
    from qvit_hw.jobs.characterize import CharacterizeOptions, characterize
    from qvit_hw.jobs.config import SchedulerConfig
    from qvit_hw.jobs.run import RunOptions, run_bundle

    root = tmp / f"surrogate-n{n}"
    state = root / "state"
    backend = f"mock?inner=fake_brisbane&state={state}"
    split, limit = SURROGATE_DIRECT[n]

    def options(backend: str, mitigate: str, split: str, limit: int | None) -> RunOptions:
        config = SchedulerConfig(shots=1000, max_copies=1, poll_interval=0)
        return RunOptions(str(bundle), backend=backend, split=split, limit=limit,
                          batch_size=32, mitigate=mitigate, scheduler=config)  # fmt: skip

    start = time.perf_counter()
    config = SchedulerConfig(shots=SURROGATE_SHOTS, max_copies=1, poll_interval=0)
    record = characterize(CharacterizeOptions(str(bundle), backend, "none", config), root / "char")
    char_s, char_submits = time.perf_counter() - start, _submits(state)
    start = time.perf_counter()
    direct = run_bundle(options(backend, "fourier", split, limit), root / "direct")
    direct_s = time.perf_counter() - start
    before = _submits(state)
    surrogate = f"surrogate:{root / 'char'}"
    start = time.perf_counter()
    test = run_bundle(options(surrogate, "none", "test", IMAGES), root / "surrogate-test")
    surrogate_s = time.perf_counter() - start
    same = root / "surrogate-test"
    if (split, limit) != ("test", IMAGES):
        same = root / "surrogate-direct"
        run_bundle(options(surrogate, "none", split, limit), same)
    submits = _submits(state) - before
    with np.load(same / "rows.npz") as s, np.load(root / "direct" / "rows.npz") as d:
        assert np.array_equal(s["qubits"], d["qubits"])  # the same placement per row
        z = (s["estimate"] - d["estimate"]) / np.sqrt(s["stderr"] ** 2 + d["stderr"] ** 2)
        return {
            "n": n,
            "characterize_shots": SURROGATE_SHOTS,
            "characterize_rows": record["cost"]["rows"],
            "characterize_submits": char_submits,
            "direct_submits": before - char_submits,
            "direct_split": split,
            "direct_images": direct.images,
            "surrogate_images": test.images,
            "submits": submits,
            "rows": int(d["estimate"].size),
            "se_surrogate": float(s["stderr"].mean()),
            "se_direct": float(d["stderr"].mean()),
            "z_sd": float(z.std()),
            "z_mean": float(z.mean()),
            "surrogate_agreement": test.agreement,
            "seconds": {"characterize": char_s, "direct": direct_s, "surrogate": surrogate_s},
        }


def _predictions(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import csv

    with (out / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    get = lambda k, t: np.array([t(r[k]) for r in rows])  # noqa: E731
    return get("pred", int), get("pred_exact", int), get("flip_probability", float)


def _cost(cost: dict[str, Any]) -> dict[str, Any]:
    qpu = cost.get("qpu_seconds_estimated")
    return {
        "qpu_seconds": qpu,
        "qpu_per_image": None if qpu is None else qpu / cost["images"],
        "shots_per_image": cost["shots"] / cost["images"],
    }


def _brief(r: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in r.items() if isinstance(v, float))


def _markdown(done: dict[str, Any]) -> str:
    def qpu(r: dict[str, Any]) -> str:
        return "n/a" if r.get("qpu_per_image") is None else f"{r['qpu_per_image']:.2f}"

    lines = [
        "## Precision from the whole run: the Fourier fit and the surrogate",
        "",
        f"The `make demo` bundle on the first {IMAGES} digits test images. *Agreement*: "
        "predictions equal to the exact model's. *QPU s / image*: the run's own estimate "
        "(`qvit_hw.jobs.cost`: repetition delay + circuit duration per shot, per-job "
        "overhead not counted), for `characterize` its whole cost divided by these images. "
        "Uniform runs are the unfitted stage of the fitted run at the same shots (the same "
        "results, replayed). `shots` (an ideal device) has no durations: its shots per "
        "image are the cost.",
        "",
        "| backend | method | shots | agreement | <Z> MAE | shots / image | QPU s / image |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for backend, mitigate in (("shots?seed=1", "fourier"), ("fake_brisbane", "readout,fourier")):
        row_level = "readout" if "fake" in backend else "none"
        for shots in (100, 300, 1000):
            r = done[f"{backend}|{mitigate}|{shots}"]
            lines.append(f"| `{backend}` | uniform, {row_level} | {shots:,} | "
                         f"{r['agreement_unfitted']:.1%} | {r['mae_unfitted']:.4f} | "
                         f"{r['shots_per_image']:,.0f} | {qpu(r)} |")  # fmt: skip
        r = done[f"{backend}|auto"]
        lines.append(f"| `{backend}` | `--shots auto` 0.99, {row_level} | auto | "
                     f"{r['agreement']:.1%} | {r['mae']:.4f} | {r['shots_per_image']:,.0f} | "
                     f"{qpu(r)} |")  # fmt: skip
        for shots in (100, 300, 1000):
            r = done[f"{backend}|{mitigate}|{shots}"]
            lines.append(f"| `{backend}` | direct + fourier, {row_level} | {shots:,} | "
                         f"{r['agreement']:.1%} | {r['mae']:.4f} | {r['shots_per_image']:,.0f} "
                         f"| {qpu(r)} |")  # fmt: skip
        for shots in CHAR_SHOTS:
            r = done[f"{backend}|char|{shots}"]
            lines.append(f"| `{backend}` | characterize + surrogate, {row_level} | {shots:,} | "
                         f"{r['agreement']:.1%} | {r['mae']:.4f} | {r['shots_per_image']:,.0f} "
                         f"| {qpu(r)} |")  # fmt: skip
    lines += [
        "",
        "Direct runs (uniform, adaptive, fitted) pay per image: their QPU seconds grow with "
        "the number of images. `characterize` pays once per device, bundle and calibration "
        "(its grid: 3^n points on every placement) and `surrogate:` submits nothing, so its "
        f"QPU seconds per image fall as 1 / images (the column divides it by {IMAGES}); its "
        "precision is set by the characterization's shots, not by the images.",
        "",
        "### The fit on an ideal device: three models x three seeds",
        "",
        "`shots?seed=S`, 1,000 shots, `--mitigate fourier`; *z sd*: standard deviation of "
        "(fitted - exact) / fitted stderr over every row; *flips*: disagreements observed "
        "against the summed flip probabilities (coefficient draws) +- 2 sd.",
        "",
        "| model | seed | agreement raw | agreement fitted | MAE raw | MAE fitted | z sd | "
        "disagreements | sum of flip probabilities |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in MODEL_SEEDS:
        for seed in SEEDS:
            r = done[f"model{model}|seed{seed}"]
            name = "demo" if model == 0 else f"seed {model}"
            lines.append(
                f"| {name} | {seed} | {r['agreement_unfitted']:.1%} | {r['agreement']:.1%} | "
                f"{r['mae_unfitted']:.4f} | {r['mae']:.4f} | {r['z_sd']:.3f} | "
                f"{r['disagreements']} | {r['flip_sum']:.1f} |"
            )
    lines += ["", *_verdicts(done), "", *_surrogate_lines(done), ""]
    return "\n".join(lines)


def _surrogate_lines(done: dict[str, Any]) -> list[str]:
    """(d): the surrogate against a direct fitted run, n = 4 and n = 8."""
    split8, images8 = SURROGATE_DIRECT[8]
    lines = [
        "### `characterize` + `surrogate:` against a direct fitted run, n = 4 and n = 8",
        "",
        "`mock?inner=fake_brisbane` (it logs every submit), one placement (`--max-copies 1`: "
        "the direct fit and the surrogate share it), no readout mitigation (its calibration's "
        f"error is in neither's error bars): `characterize` at {SURROGATE_SHOTS:,} shots per "
        "grid point (the device's maximum), a direct `--mitigate fourier` run at 1,000 shots, "
        "and `surrogate:` runs of the 359 test images and of the direct run's images. *z*: "
        "(surrogate - direct) / sqrt(se_s^2 + se_d^2) over every value (row x output) of the "
        "direct run. n = 4: the demo bundle, direct run on the 359 test images. n = 8: an "
        "untrained `QViT(num_classes=10, patch_size=7, n_qubits=8)` (`train` builds 2 x 2 "
        f"patches only), direct run on the {split8} split's first {images8} images, because "
        "a chain of 8 qubits has outputs with 3^8 = 6,561 terms and the 359 test images give "
        "a QNN 16 x 359 = 5,744 rows: the direct fit cannot run on them.",
        "",
        "| n | characterize: rows, submits | direct run: split, images, submits | "
        "surrogate runs: images, submits | values compared | mean stderr surrogate / direct | "
        "z sd | z mean |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in (4, 8):
        r = done[f"surrogate|n{n}"]
        images = f"{r['surrogate_images']} test"
        if r["direct_split"] != "test" or r["direct_images"] != r["surrogate_images"]:
            images += f" + {r['direct_images']} {r['direct_split']}"
        lines.append(
            f"| {n} | {r['characterize_rows']:,}, {r['characterize_submits']} | "
            f"{r['direct_split']}, {r['direct_images']}, {r['direct_submits']} | {images}, "
            f"**{r['submits']}** | {r['rows']:,} | {r['se_surrogate']:.4f} / "
            f"{r['se_direct']:.4f} | {r['z_sd']:.3f} | {r['z_mean']:+.3f} |"
        )
    lines.append("")
    for n in (4, 8):
        r = done[f"surrogate|n{n}"]
        within = "within" if 0.9 <= r["z_sd"] <= 1.1 else "outside"
        lines.append(
            f"- n = {n}: the surrogate runs submitted {r['submits']} jobs (target 0); z sd "
            f"{r['z_sd']:.3f}, {within} the target 0.9-1.1."
        )
    return lines


def _verdicts(done: dict[str, Any]) -> list[str]:
    out = []
    for model in MODEL_SEEDS:
        rs = [done[f"model{model}|seed{s}"] for s in SEEDS]
        agree = [r["agreement"] for r in rs]
        mae = max(r["mae"] / r["mae_unfitted"] for r in rs)
        observed = sum(r["disagreements"] for r in rs)
        expected = sum(r["flip_sum"] for r in rs)
        sd = np.sqrt(sum(r["flip_var"] for r in rs))
        z = float(np.sqrt(np.mean([r["z_sd"] ** 2 for r in rs])))
        name = "demo model" if model == 0 else f"model trained with seed {model}"
        out.append(
            f"- {name}: fitted agreement {np.mean(agree):.1%} on average, lowest "
            f"{min(agree):.1%} (targets >= 99 %, none below 98 %); MAE at most {mae:.3f}x the "
            f"unfitted (target <= 0.1); z sd {z:.3f} (target 0.9-1.1); disagreements "
            f"{observed} vs {expected:.1f} +- {2 * sd:.1f} expected over the seeds."
        )
    u = done["brisbane|unbiased"]
    out.append(
        f"- fake_brisbane, `--mitigate fourier`, 1,000 shots: fitted values against the exact "
        f"noisy <Z> of the same rows have z sd {u['z_sd']:.3f}, mean {u['z_mean']:+.3f} "
        f"(target sd 0.9-1.1); MAE {u['mae_vs_noisy']:.4f} for a mean fitted stderr of "
        f"{u['fit_stderr']:.4f}, while the device itself is {u['noisy_vs_ideal']:.4f} from "
        "the ideal model (that bias is what zero-noise extrapolation has to remove)."
    )
    out.append(_readout_line(done["brisbane|unbiased|readout"]))
    return out


def _readout_line(r: dict[str, Any]) -> str:
    """(c) with readout mitigation: one bullet."""
    within = "within" if 0.9 <= r["z_sd"] <= 1.1 else "outside"
    return (
        f"- fake_brisbane, `--mitigate readout,fourier`, 1,000 shots, readout calibration at "
        f"{r['readout_shots']:,} shots per circuit (the device's maximum): fitted values "
        "against `fake_brisbane?exact=1` with `--mitigate readout` (exact noisy values, the "
        f"confusion inverted exactly) have z sd {r['z_sd']:.3f}, mean {r['z_mean']:+.3f} "
        f"({within} the target 0.9-1.1); MAE {r['mae_vs_noisy']:.4f} for a mean fitted "
        f"stderr of {r['fit_stderr']:.4f}; the readout-corrected device is "
        f"{r['noisy_vs_ideal']:.4f} from the ideal model. The calibration's own shot error "
        f"moves the corrected values by {r['calibration_shift']:.4f} on average, the same on "
        "every row read on a qubit; the fit carries it in its error bars (against the exact "
        "values read through the fitted run's own calibration, which leaves it out, the z sd "
        f"is {r['z_sd_own_calibration']:.3f}, mean {r['z_mean_own_calibration']:+.3f})."
    )
