"""Batches of a split through a torch DataLoader: the epoch order of every rank, and
uint8 images read batch by batch from (memory-mapped) arrays.

The epoch order is ``DistributedSampler(shuffle=True, seed=seed)`` after ``set_epoch``:
a permutation of all N images drawn from ``seed + epoch``, padded to a multiple of the
world size W, rank r taking positions r, r + W, r + 2W, ... Local batches of B / W then
make up exactly the global batches of B that a single process takes from the same
permutation, so one process and W processes see the same batches. The padding (at most
W - 1 repeated images, in the last batch) gets weight 0, so it changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data import release_pages
from .runtime import Runtime

# bytes read between two `release_pages`: the kernel maps several times the pages a random
# read touches (read-around), so 16 MB read keep about 100-150 MB resident
RELEASE_EVERY = 16 << 20


class BatchReader(Dataset):
    """``reader[rows]`` is one whole batch: uint8 images (B, S, S, 3) and their targets.

    ``rows`` is a list of indices (one fancy-index read) or a range (one slice). Pages of a
    memory map are released every `RELEASE_EVERY` bytes, so resident memory stays near a
    batch's worth however large the file.
    """

    def __init__(self, images: np.ndarray, targets: Tensor | None = None) -> None:
        self.images, self.targets = images, targets
        self._read = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, rows: Sequence[int]) -> tuple[Tensor, Tensor]:
        if isinstance(rows, range) and rows.step == 1:
            pixels = np.array(self.images[rows.start : rows.stop])
            index = torch.arange(rows.start, rows.stop)
        else:
            index = torch.as_tensor(list(rows), dtype=torch.long)
            pixels = np.array(self.images[index.numpy()])
        self._read += pixels.nbytes
        if self._read >= RELEASE_EVERY:
            release_pages(self.images)
            self._read = 0
        targets = self.targets[index] if self.targets is not None else index
        return torch.from_numpy(pixels), targets


def loader(
    images: np.ndarray, batches: Sequence[Sequence[int]], runtime: Runtime, targets=None
) -> DataLoader:
    """A DataLoader that yields ``(uint8 images, targets)`` for each of ``batches``."""
    return DataLoader(
        BatchReader(images, targets),
        batch_size=None,  # every key is a whole batch
        sampler=batches,
        num_workers=runtime.workers,
        pin_memory=runtime.pin_memory,
    )


@dataclass(frozen=True)
class EpochPlan:
    """This rank's batches of one epoch and, per batch, which rows count (not padding)
    and how many images the global batch holds."""

    batches: list[list[int]]
    weights: list[Tensor]  # (b,) 1.0 for a real image, 0.0 for padding
    global_counts: list[int]


def epoch_plan(n: int, batch_size: int, epoch: int, seed: int, runtime: Runtime) -> EpochPlan:
    """The batches of ``epoch`` for this rank (``batch_size`` is the global batch)."""
    world, rank = runtime.world, runtime.rank
    if batch_size % world:
        raise ValueError(
            f"--batch-size {batch_size} (the global batch) is not a multiple of the "
            f"{world} processes"
        )
    local = batch_size // world
    sampler = DistributedSampler(
        range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    order = list(sampler)
    batches, weights, counts = [], [], []
    for k, start in enumerate(range(0, len(order), local)):
        rows = order[start : start + local]
        positions = [rank + (start + j) * world for j in range(len(rows))]  # in the padded order
        weights.append(torch.tensor([1.0 if p < n else 0.0 for p in positions]))
        batches.append(rows)
        counts.append(min(batch_size, n - k * batch_size))
    return EpochPlan(batches, weights, counts)


def eval_batches(n: int, batch: int, runtime: Runtime) -> list[range]:
    """Contiguous batches of this rank's shard of ``n`` images (evaluation)."""
    shard = runtime.shard(n)
    return [range(i, min(i + batch, shard.stop)) for i in range(shard.start, shard.stop, batch)]
