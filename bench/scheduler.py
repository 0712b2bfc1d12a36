"""Scheduler overhead (rows/s to bound, packed, hashed job payloads) and hardware cost
(executions per image before and after dedup and packing) on the ibm_brisbane target.

Workload: real images (scikit-learn digits, test split, upsampled to 28x28) through a QViT's
QNN layer (chain, n = 4, 2 heads): 196 tokens x 6 QNNs = 1,176 rows per image. The token
angles are the model's own (seeded weights); identical patches at the same position give
identical tokens, which is what dedup finds.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from rich.console import Console

from qvit_hw.circuit import chain
from qvit_hw.data import load_split, to_tensor
from qvit_hw.devices.ibm import IBM_MAX_EXECUTIONS
from qvit_hw.export import token_angles
from qvit_hw.jobs.plan import QNNCall, Template, plan
from qvit_hw.model import QViT
from qvit_hw.transpile import circuit_key, compile_qnn, get_target, logical_qnn

TARGET, SHOTS = "ibm_brisbane", 1000
BATCHES = (1, 8, 32)
REPEATS = 5


def _layer_inputs(model: QViT, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The QNN layer's inputs for a batch: token angles (B, T, n) and weights (Q, P, 2)."""
    return token_angles(model, images), model.quantum_layers()[0].weight.detach()


def _layer_calls(model: QViT, angles: torch.Tensor, weights: torch.Tensor) -> list[QNNCall]:
    """What the scheduler's executor builds: every QNN on every token (angles (B*T, n))."""
    layer = model.quantum_layers()[0]
    x = angles.reshape(-1, angles.shape[-1]).double().numpy()  # (B*T, n)
    w = weights.double().numpy()  # (Q, P, 2)
    return [QNNCall(name, layer.spec, w[q], x) for q, name in enumerate(layer.names)]


def run(console: Console) -> str:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(console)
    finally:
        torch.set_num_threads(threads)


def _run(console: Console) -> str:
    spec = chain(4)
    torch.manual_seed(0)
    model = QViT(num_classes=10).eval()
    data = load_split("digits", "test", 28)
    images = to_tensor(np.asarray(data.images[: max(BATCHES)]))
    packed = compile_qnn(spec, get_target(TARGET, live=False))
    logical = logical_qnn(spec)
    templates = {
        "ibm_brisbane (packed)": Template(packed, circuit_key(packed.circuit)),
        "logical (statevector, shots)": Template(logical, circuit_key(logical.circuit)),
    }
    job_size = IBM_MAX_EXECUTIONS // SHOTS
    lines = [
        "## Scheduler: rows/s to job payloads, and executions per image",
        "",
        f"Real images (digits test split, 28x28) through a seeded QViT's QNN layer (chain, n = "
        f"4, 2 heads): 196 tokens x 6 QNNs = 1,176 rows per image. *Rows/s*: token angles "
        "(B, T, n) -> `QNNCall`s -> `plan` (dedup with np.unique, bind and pack with "
        "`CompiledQNN.parameter_values`, split into jobs within IBM's 10M executions at "
        f"{SHOTS:,} shots, sha256 payload hashes), one core (torch and numpy on one thread "
        f"of this machine), median of {REPEATS} repeats. Target: >= 50,000 rows/s.",
        "",
        "| template | k | batch (images) | rows | jobs | rows/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, template in templates.items():
        for batch in BATCHES:
            inputs = _layer_inputs(model, images[:batch])
            times = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                calls = _layer_calls(model, *inputs)
                p = plan(calls, lambda s, t=template: t, backend=TARGET, shots=SHOTS,
                         job_size=job_size)  # fmt: skip
                times.append(time.perf_counter() - start)
            rate = p.rows / statistics.median(times)
            console.print(f"{name}, batch {batch}: {rate:,.0f} rows/s ({len(p.jobs)} jobs)")
            lines.append(
                f"| {name} | {template.compiled.copies} | {batch} | {p.rows:,} | {len(p.jobs)} | "
                f"{rate:,.0f} |"
            )
    lines += [
        "",
        f"Executions per image on {TARGET} (k = {packed.copies} copies of the 4-qubit QNN per "
        "execution): dedup removes rows repeated within a scheduler call (a batch of images: "
        "the same patch at the same position gives the same token), packing puts k rows in "
        "one execution. Shots per image = executions x shots.",
        "",
        "| batch (images) | rows / image | after dedup | after dedup + packing | saving |",
        "|---:|---:|---:|---:|---:|",
    ]
    for batch in BATCHES:
        calls = _layer_calls(model, *_layer_inputs(model, images[:batch]))
        p = plan(calls, lambda s: templates["ibm_brisbane (packed)"], backend=TARGET,
                 shots=SHOTS, job_size=job_size)  # fmt: skip
        rows, unique, executions = p.rows / batch, p.unique_rows / batch, p.executions / batch
        console.print(f"batch {batch}: {rows:.0f} -> {unique:.1f} -> {executions:.1f} per image")
        lines.append(
            f"| {batch} | {rows:,.0f} | {unique:,.1f} | {executions:,.1f} | "
            f"{rows / executions:.0f}x |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(Console()))
