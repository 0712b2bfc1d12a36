"""Where and how a run computes: device, precision, loader workers and the process group.

``--device auto|cpu|cuda|cuda:N|mps`` (auto: CUDA when torch sees a GPU, else the CPU),
``--precision 32|bf16|16-mixed`` (``torch.autocast``; 16-mixed adds a GradScaler and needs
CUDA; the QNN simulator computes in float32 or float64 whatever the autocast says), and
``--workers N`` (a torch DataLoader with N worker processes; 0 reads in this process).

Under ``torchrun`` (WORLD_SIZE > 1 in the environment) `session` joins the process group:
gloo on the CPU, NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``). Every rank computes; only
rank 0 writes files and prints (`Runtime.main`). One code path serves every case: a single
CPU process is a world of one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ..data import Normalization, normalize

DEVICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("32", "bf16", "16-mixed")
_AUTOCAST = {"bf16": torch.bfloat16, "16-mixed": torch.float16}


def resolve_device(spec: str, local_rank: int | None = None) -> torch.device:
    """The torch device of a ``--device`` value; one-line ValueError when it is not there.

    Under torchrun (``local_rank`` given) ``cuda`` and ``auto`` mean ``cuda:LOCAL_RANK``.
    """
    text = spec.strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank or 0)
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("--device mps: this machine has no MPS (Apple GPU) device; use cpu")
        return torch.device("mps")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = "torch is built without CUDA" if torch.version.cuda is None else "no GPU seen"
            raise ValueError(
                f"--device {spec}: this machine has no CUDA device ({why}, torch "
                f"{torch.__version__}); use --device cpu or --device auto"
            )
        count = torch.cuda.device_count()
        if text == "cuda":
            index = local_rank or 0
        else:
            try:
                index = int(text.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"--device: expected {DEVICES}, got {spec!r}") from None
        if local_rank is not None:
            index = local_rank  # one GPU per rank
        if not 0 <= index < count:
            raise ValueError(f"--device {spec}: there are {count} CUDA devices (0..{count - 1})")
        return torch.device("cuda", index)
    raise ValueError(f"--device: expected {DEVICES}, got {spec!r}")


def check_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"--precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "16-mixed" and device.type != "cuda":
        raise ValueError(
            f"--precision 16-mixed needs a CUDA device (this run is on {device}); use bf16 or 32"
        )
    if precision != "32" and device.type == "mps":
        raise ValueError("--precision: mixed precision is not supported on mps here; use 32")
    return precision


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def device_line(requested: str, runtime: Runtime) -> str:
    """The one line a run prints about where it computes, and why there."""
    why = ""
    if requested.strip().lower() == "auto":
        why = (
            " (--device auto: CUDA is available)"
            if runtime.device.type == "cuda"
            else " (--device auto: no CUDA device, so the CPU)"
        )
    return runtime.describe() + why


@dataclass(frozen=True)
class Runtime:
    """The device, precision and workers of a run, and this process's place in it."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "32"
    workers: int = 0
    rank: int = 0
    world: int = 1
    requested: str = ""  # the --device value this came from
    _said: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def announce(self, console: Any) -> None:
        """Print `device_line` once per run, when the first stage starts training (so a run
        refused before that prints its one error line only)."""
        if console is not None and self.main and not self._said:
            console.print(device_line(self.requested, self), highlight=False)
        self._said["device"] = True

    def __post_init__(self) -> None:
        check_precision(self.precision, self.device)
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        text = f"device: {describe_device(self.device)}, precision {self.precision}"
        if self.distributed:
            text += f", {self.world} processes ({dist.get_backend()})"
        if self.workers:
            text += f", {self.workers} loader workers"
        return text

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for the forward pass; nothing at precision 32."""
        dtype = _AUTOCAST.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for float16 (16-mixed); a pass-through otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "16-mixed")

    def inputs(self, images: Tensor, norm: Normalization) -> Tensor:
        """uint8 (B, S, S, 3) from the loader -> normalised (B, 3, S, S) on the device."""
        return normalize(images.to(self.device, non_blocking=self.pin_memory), norm)

    # --- collectives (each a no-op for a world of one) -------------------------------------

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        if not self.distributed:
            return list(values)
        where = self.device if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor(values, dtype=torch.float64, device=where)
        dist.all_reduce(t)
        return t.tolist()

    def shard(self, n: int) -> range:
        """This rank's contiguous share of ``n`` items (evaluation)."""
        lo, hi = n * self.rank // self.world, n * (self.rank + 1) // self.world
        return range(lo, hi)

    def gather(self, local: Tensor) -> Tensor:
        """Every rank's `shard` result, concatenated in rank order (CPU tensors)."""
        if not self.distributed:
            return local
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, local.cpu())
        return torch.cat(parts)


@contextlib.contextmanager
def session(device: str = "auto", precision: str = "32", workers: int = 0) -> Iterator[Runtime]:
    """The `Runtime` of this process; joins (and leaves) torchrun's process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Runtime(resolve_device(device), precision, workers, requested=device)
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    where = resolve_device(device, local)
    check_precision(precision, where)
    created = not dist.is_initialized()
    if created:
        if where.type == "cuda":
            torch.cuda.set_device(where)
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
    try:
        rank, size = dist.get_rank(), dist.get_world_size()
        yield Runtime(where, precision, workers, rank, size, requested=device)
    finally:
        if created:
            dist.destroy_process_group()
