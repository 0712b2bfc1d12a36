"""Transpile once and bind vs transpile every bound circuit; packing factor k per target.

Workload: 28x28 images through the QNN layer of a QViT (chain, n = 4, 2 heads): 196 tokens
x 6 QNNs = 1,176 rows per image. "Once and bind" = `compile_qnn` (all k packed copies,
parameters unbound) + `CompiledQNN.parameter_values` for every row; "per bound circuit" =
qiskit's preset pass manager (same level, same target, built once) on each row's bound
circuit, timed on a sample of rows and scaled to all rows. Both are measured side by side,
interleaved, medians of repeats.
"""

from __future__ import annotations

import statistics
import time

from rich.console import Console

from qvit_hw.circuit import bind_values, chain, random_inputs
from qvit_hw.transpile import compile_qnn, get_target
from qvit_hw.transpile.compile import OPTIMIZATION_LEVEL, measured_circuit
from qvit_hw.transpile.layout import Chip, embeddings
from qvit_hw.transpile.packing import pack

TOKENS, QNNS, BATCH = 196, 6, 32
ROWS = TOKENS * QNNS  # one image
SAMPLE = 24  # bound circuits transpiled per repeat
REPEATS = 3
BIND_TARGETS = ("ibm_brisbane", "ibm_fez", "rigetti_ankaa_3")
PACK_TARGETS = ("ibm_brisbane", "ibm_torino", "ibm_fez", "ibm_marrakesh", "ibm_nighthawk",
                "rigetti_ankaa_3", "rigetti_cepheus_1_108q")  # fmt: skip


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def _bind_all(compiled, angles, weights) -> None:
    """Each QNN of the layer: its own rows, its own weights, the one shared template."""
    per_qnn = len(angles) // QNNS
    for q in range(QNNS):
        compiled.parameter_values(angles[q * per_qnn : (q + 1) * per_qnn], weights)


def _per_bound_circuit(spec, target, angles, weights) -> float:
    """Seconds per row: bind the logical circuit, then transpile it for the device."""
    from qiskit.transpiler import generate_preset_pass_manager

    template = measured_circuit(spec)
    pm = generate_preset_pass_manager(
        optimization_level=OPTIMIZATION_LEVEL, target=get_target(target).target, seed_transpiler=0
    )  # built once: the baseline is not charged for it
    start = time.perf_counter()
    for row in angles[:SAMPLE]:
        pm.run(template.assign_parameters(bind_values(template, row, weights)))
    return (time.perf_counter() - start) / SAMPLE


def run(console: Console) -> str:
    spec = chain(4)
    angles, weights = random_inputs(spec, BATCH * ROWS, seed=0)
    angles, weights = angles.numpy(), weights.numpy()
    for target in BIND_TARGETS:  # warm up imports, target snapshots and the transpiler
        compile_qnn(spec, target, max_copies=1)
    lines = [
        "## Transpile once and bind vs transpile every bound circuit",
        "",
        f"28x28 images through the QNN layer (chain, n = 4, 2 heads): {TOKENS} tokens x "
        f"{QNNS} QNNs = {ROWS:,} rows per image. *Once*: `compile_qnn` (preset pass manager, "
        f"optimization level {OPTIMIZATION_LEVEL}) with all k packed copies, or k = 1. *Bind*: "
        "`parameter_values` for every row. *Per bound circuit*: the same pass manager on each "
        f"row's bound circuit ({SAMPLE} rows timed per repeat, scaled to all rows). Speed-up = "
        "per-bound-circuit time / (once, all k + bind), for one image and for a batch of "
        f"{BATCH}. Medians of {REPEATS} interleaved repeats.",
        "",
        "| target | k | once, all k (ms) | once, k = 1 (ms) | bind (ns / row) "
        f"| per bound circuit (ms / row) | speed-up, 1 image | speed-up, {BATCH} images |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    image, batch = angles[:ROWS], angles
    for target in BIND_TARGETS:
        runs: dict[str, list[float]] = {"once": [], "single": [], "image": [], "batch": []}
        per_row = []
        for _ in range(REPEATS):
            t, compiled = _timed(compile_qnn, spec, target)
            runs["once"].append(t)
            runs["single"].append(_timed(compile_qnn, spec, target, max_copies=1)[0])
            runs["image"].append(_timed(_bind_all, compiled, image, weights)[0])
            runs["batch"].append(_timed(_bind_all, compiled, batch, weights)[0])
            per_row.append(_per_bound_circuit(spec, target, angles, weights))
        once, single, bind_image, bind_batch = (statistics.median(runs[k]) for k in runs)
        t_row = statistics.median(per_row)
        up_image = ROWS * t_row / (once + bind_image)
        up_batch = BATCH * ROWS * t_row / (once + bind_batch)
        console.print(
            f"{target}: once {once * 1e3:.1f} ms (k={compiled.copies}), per bound circuit "
            f"{t_row * 1e3:.2f} ms/row -> {up_image:.0f}x (1 image), {up_batch:.0f}x ({BATCH})"
        )
        lines.append(
            f"| {target} | {compiled.copies} | {once * 1e3:.1f} | {single * 1e3:.1f} | "
            f"{bind_batch / (BATCH * ROWS) * 1e9:.0f} | {t_row * 1e3:.2f} | {up_image:.0f}x | "
            f"{up_batch:,.0f}x |"
        )
    rows_per_s = BATCH * ROWS / bind_batch
    lines += [
        "",
        f"Binding runs at {rows_per_s:,.0f} rows/s on one core (numpy fancy indexing; "
        f"{BATCH * ROWS:,} rows, last target above; the scheduler needs >= 50,000). Packed "
        "compiles transpile once per distinct region shape (one on CZ and iSWAP chips, a few "
        "for ECR's coupler directions) and reuse the result on every copy of that shape.",
        "",
        *_packing_table(console),
    ]
    return "\n".join(lines) + "\n"


def _packing_table(console: Console) -> list[str]:
    lines = [
        "## Packing factor k per target",
        "",
        "Chain specs; placements ranked by calibration (2-qubit + readout errors; uniform on "
        "the Rigetti snapshots, which carry no per-qubit numbers), then greedy disjoint "
        "best-first. Broken couplers/qubits (error >= 0.5) are skipped; crosstalk between "
        "neighbouring copies is not modelled. *Paths* = candidate placements enumerated; "
        "*enumerate* = time to enumerate and score them (median of 3).",
        "",
        "| target | qubits | k (n = 4) | qubits used | k (n = 8) | qubits used "
        "| paths (n = 8) | enumerate (n = 8, ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target in PACK_TARGETS:
        dt = get_target(target)
        chip = Chip.of(dt)
        ks = {}
        for n in (4, 8):
            ks[n] = len(pack(embeddings(chip, chain(n))))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            found = embeddings(chip, chain(8))
            times.append(time.perf_counter() - start)
        console.print(f"{target}: k = {ks[4]} (n=4), {ks[8]} (n=8)")
        lines.append(
            f"| {target} | {dt.num_qubits} | {ks[4]} | {ks[4] * 4 / dt.num_qubits:.0%} | "
            f"{ks[8]} | {ks[8] * 8 / dt.num_qubits:.0%} | {len(found):,} | "
            f"{statistics.median(times) * 1e3:.1f} |"
        )
    return lines


if __name__ == "__main__":
    print(run(Console()))
