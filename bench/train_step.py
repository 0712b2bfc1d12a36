"""One train step (forward + backward + Adam, batch 32, 196 tokens): QViT vs ViT, and the
images per second of ViT and QViT steps on this CPU (and on each GPU where there is one).

Every variant runs in this process with the same shapes, interleaved repeat by repeat,
so machine noise hits all of them alike; the table reports each median as a ratio to
the ViT step of the same configuration.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from rich.console import Console

from qvit_hw.circuit import pennylane_qnode, statevector_per_qnn, tree
from qvit_hw.model import ModelConfig, VisionTransformer

BATCH = 32
CONFIGS = [(28, 4), (224, 4), (224, 8)]
TARGETS = {  # (variant, n) -> ratio the project aims for
    ("closed form (chain)", 4): 1.5,
    ("closed form (chain)", 8): 2.0,
    ("general path (chain spec)", 4): 3.0,
    ("general path (chain spec)", 8): 20.0,
    ("general path (tree spec)", 4): 3.0,
    ("general path (tree spec)", 8): 20.0,
}


def general_executor(spec, weights, angles, names=()):
    """Force the fused-unitary path even for chain specs."""
    return statevector_per_qnn(spec, angles, weights)


def pennylane_executor(spec, weights, angles, names=()):
    """PennyLane default.qubit, torch interface, backprop, tokens broadcast (as TorchLayer)."""
    qnode = _PL_CACHE.setdefault(spec, pennylane_qnode(spec, diff_method="backprop"))
    flat = angles.reshape(-1, spec.n_qubits)  # (B*T, n)
    outs = [torch.stack(qnode(flat, w), dim=-1) for w in weights]  # Q x (B*T, n)
    return torch.stack(outs, dim=-2).reshape(*angles.shape[:-1], len(weights), -1).to(angles)


_PL_CACHE: dict = {}


def make_step(
    model: VisionTransformer, size: int, executor=None, device: str = "cpu"
) -> Callable[[], None]:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 3, size, size, generator=g).to(device)
    labels = torch.randint(0, 2, (BATCH,), generator=g).to(device)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if executor is None:
            loss = F.cross_entropy(model(images), labels)
        else:
            with model.executor(executor):
                loss = F.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        if device != "cpu":
            torch.cuda.synchronize(device)  # the step is done, not just queued

    return step


def variants(size: int, n: int, with_pennylane: bool) -> dict[str, Callable[[], None]]:
    def model(kind: str, pairs=None) -> VisionTransformer:
        torch.manual_seed(0)
        return VisionTransformer(ModelConfig(model=kind, image_size=size, n_qubits=n, pairs=pairs))

    out = {
        "ViT (Linear Q/K/V)": make_step(model("vit"), size),
        "closed form (chain)": make_step(model("qvit"), size),
        "general path (chain spec)": make_step(model("qvit"), size, general_executor),
        "general path (tree spec)": make_step(model("qvit", tree(n).pairs), size),
    }
    if with_pennylane:
        out["PennyLane default.qubit"] = make_step(model("qvit"), size, pennylane_executor)
    return out


def measure(steps: dict[str, Callable[[], None]], repeats: int, slow: set[str]) -> dict:
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        step()
    for r in range(repeats):
        for name, step in steps.items():
            if name in slow and r >= 2:
                continue
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run(console: Console, repeats: int = 15) -> str:
    lines = [
        "## Train step: QViT / ViT",
        "",
        f"Forward + backward + Adam on batch {BATCH} (196 tokens, 2 heads, 6 QNNs), CPU, "
        f"median of {repeats} interleaved repeats (PennyLane: 2). Ratio = variant / ViT "
        "step of the same configuration; the paper's own simulation was about 8x at n=4.",
        "",
        "| image | n | variant | step (ms) | ratio to ViT | target |",
        "|---|---|---|---|---|---|",
    ]
    rates: list[tuple[str, int, int, str, float]] = []  # device, size, n, model, images/s
    for size, n in CONFIGS:
        steps = variants(size, n, with_pennylane=True)
        medians = measure(steps, repeats, slow={"PennyLane default.qubit"})
        for name, label in (("ViT (Linear Q/K/V)", "ViT"), ("closed form (chain)", "QViT")):
            rates.append((_cpu_name(), size, n, label, BATCH / medians[name]))
        base = medians["ViT (Linear Q/K/V)"]
        for name, t in medians.items():
            ratio = t / base
            target = TARGETS.get((name, n))
            verdict = (
                ""
                if target is None
                else f"<= {target:g}x " + ("met" if ratio <= target else "**missed**")
            )
            lines.append(f"| {size} | {n} | {name} | {t * 1e3:.1f} | {ratio:.2f}x | {verdict} |")
            console.print(f"{size}x{size} n={n} {name:28s} {t * 1e3:8.1f} ms  {ratio:7.2f}x")
    rates += gpu_rates(repeats)
    lines += [
        "",
        "### Train steps per second: images/s",
        "",
        f"Images per second of the train steps above (batch {BATCH}, forward + backward + "
        "Adam, QViT = closed form), on every device this machine has (GPU rows appear where "
        "torch sees CUDA).",
        "",
        "| device | image | n | model | images/s |",
        "|---|---|---|---|---|",
    ]
    for device, size, n, label, rate in rates:
        lines.append(f"| {device} | {size} | {n} | {label} | {rate:,.0f} |")
        console.print(f"{device} {size}x{size} n={n} {label:5s} {rate:10.0f} images/s")
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    return f"cpu ({torch.get_num_threads()} threads)"


def gpu_rates(repeats: int) -> list[tuple[str, int, int, str, float]]:
    """images/s of ViT and QViT steps on each CUDA device (none here: an empty list)."""
    rows = []
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        device = f"cuda:{index}"
        name = f"{device} ({torch.cuda.get_device_name(index)})"
        for size, n in CONFIGS:
            for kind, label in (("vit", "ViT"), ("qvit", "QViT")):
                torch.manual_seed(0)
                model = VisionTransformer(ModelConfig(model=kind, image_size=size, n_qubits=n))
                medians = measure({label: make_step(model, size, device=device)}, repeats, set())
                rows.append((name, size, n, label, BATCH / medians[label]))
    return rows


if __name__ == "__main__":
    print(run(Console()))
