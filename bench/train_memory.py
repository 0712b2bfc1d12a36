"""Training on data that does not fit in memory: peak resident memory of one epoch at 224.

Writes a synthetic MedMNIST-layout ``bloodmnist_224.npz`` (deflated, as medmnist ships its
files) whose train split holds 20,000 RGB 224x224 images (3.0 GB uncompressed), then in
child processes (their own ``VmHWM``, as bench/noisy.py measures):

(a) the first load: the npz member decompressed once, streaming, to the raw ``.npy`` cache;
(b) one epoch of QViT training (n = 4, 2 heads, batch 32) reading batches from the
    memory-mapped cache, then validation and test;
(c) a baseline process that imports the same modules and builds the model, for reference.

Target: (b) below 1.5 GB, the size of half the train split. ``python -m bench.run
bench.train_memory`` runs this section alone (several minutes on 2 CPU cores, 6 GB of disk).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from rich.console import Console

N_TRAIN, N_EVAL, SIZE, CHUNK, POOL = 20_000, 256, 224, 500, 97
TARGET_GIB = 1.5

_PEAK = """
import json, sys, time
def peak_kib():  # VmHWM: this process's own peak RSS (ru_maxrss keeps a parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""

_LOAD = (
    _PEAK
    + """
from qvit_hw.data import load_split
start = time.perf_counter()
data = load_split("bloodmnist", "train", 224, sys.argv[1])
print(json.dumps({"peak_kib": peak_kib(), "seconds": time.perf_counter() - start,
                  "images": len(data)}))
"""
)

_TRAIN = (
    _PEAK
    + """
from qvit_hw.train import Schedule, TrainOptions, train
opts = TrainOptions("bloodmnist", size=224, model="qvit", data_root=sys.argv[1],
                    schedule=Schedule(epochs=1, batch_size=32), device="cpu")
start = time.perf_counter()
result = train(opts, sys.argv[2])
print(json.dumps({"peak_kib": peak_kib(), "seconds": time.perf_counter() - start,
                  "train_loss": result.history[0]["train_loss"]}))
"""
)

_BASELINE = (
    _PEAK
    + """
import torch
from qvit_hw.model import ModelConfig, VisionTransformer
from qvit_hw.train import train  # noqa: F401
VisionTransformer(ModelConfig(image_size=224, num_classes=8))
print(json.dumps({"peak_kib": peak_kib()}))
"""
)


def write_synthetic_npz(path: Path, n_train: int = N_TRAIN, seed: int = 0) -> int:
    """A bloodmnist_224.npz in medmnist's layout, written chunk by chunk (never in memory
    whole): smooth blobs plus a little noise, so it deflates somewhat, as real images do.
    Returns the train split's uncompressed bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE

    def images(n: int) -> np.ndarray:
        cx, cy = rng.random((2, n, 1, 1), dtype=np.float32)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) * 20.0)  # (n, S, S)
        rgb = blob[..., None] * np.array([200, 120, 160], np.float32)
        noise = rng.integers(0, 8, rgb.shape, dtype=np.uint8)
        return (rgb.astype(np.uint8) + noise).astype(np.uint8)  # (n, S, S, 3)

    pool = images(POOL)  # distinct images, cycled (generating 20,000 would take minutes)

    def member(zf: zipfile.ZipFile, name: str, n: int) -> int:
        shape = (n, SIZE, SIZE, 3)
        with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
            header = {"descr": "|u1", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_2_0(f, header)
            for start in range(0, n, CHUNK):
                rows = np.arange(start, min(start + CHUNK, n)) % POOL
                f.write(pool[rows].tobytes())
        return int(np.prod(shape))

    def labels(zf: zipfile.ZipFile, name: str, n: int) -> None:
        with zf.open(f"{name}.npy", "w") as f:
            np.lib.format.write_array(f, rng.integers(0, 8, (n, 1), dtype=np.uint8))

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        total = member(zf, "train_images", n_train)
        labels(zf, "train_labels", n_train)
        for split in ("val", "test"):
            member(zf, f"{split}_images", N_EVAL)
            labels(zf, f"{split}_labels", N_EVAL)
    return total


def _child(code: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(console: Console) -> str:
    with tempfile.TemporaryDirectory(prefix="qvit-bench-memory-") as tmp:
        root = Path(tmp)
        path = root / "bloodmnist_224.npz"
        start = time.perf_counter()
        raw = write_synthetic_npz(path)
        wrote = time.perf_counter() - start
        console.print(
            f"wrote {path.name}: {path.stat().st_size / 2**30:.2f} GiB on disk, train split "
            f"{raw / 2**30:.2f} GiB uncompressed ({wrote:.0f} s)"
        )
        load = _child(_LOAD, str(root))
        console.print(f"first load (decompress to .npy): {load}")
        fit = _child(_TRAIN, str(root), str(root / "run"))
        console.print(f"1 epoch: {fit}")
        base = _child(_BASELINE)
    gib = {k: v["peak_kib"] / 2**20 for k, v in (("load", load), ("fit", fit), ("base", base))}
    verdict = "met" if gib["fit"] < TARGET_GIB else "**missed**"
    return "\n".join(
        [
            "## Training memory: one epoch on a 3 GB split",
            "",
            f"Synthetic `bloodmnist_224.npz` in medmnist's layout (deflated): train split "
            f"{N_TRAIN:,} RGB 224x224 images = {raw / 2**30:.2f} GiB uncompressed, val/test "
            f"{N_EVAL} each. QViT n=4, 2 heads, batch 32, CPU; peak resident memory (VmHWM) "
            "of each child process.",
            "",
            "| process | peak RSS | seconds | target |",
            "|---|---|---|---|",
            f"| first load: decompress the member once to a raw .npy | {gib['load']:.2f} GiB | "
            f"{load['seconds']:.0f} | |",
            f"| 1 epoch of training from the memory map (+ val, test) | {gib['fit']:.2f} GiB | "
            f"{fit['seconds']:.0f} | < {TARGET_GIB} GiB {verdict} |",
            f"| imports + model only (baseline) | {gib['base']:.2f} GiB | | |",
            "",
        ]
    )


if __name__ == "__main__":
    print(run(Console()))
