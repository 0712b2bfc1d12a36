"""The three splits of a run's data set, loaded as its options say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data import DEFAULT_NORMALIZATION, ImageSet, Normalization, load_split
from .options import TrainOptions


@dataclass(frozen=True)
class Splits:
    train: ImageSet
    val: ImageSet
    test: ImageSet
    norm: Normalization = DEFAULT_NORMALIZATION

    def describe(self) -> dict[str, Any]:
        t = self.train
        return {"name": t.name, "size": t.size, "task": t.task, "classes": list(t.classes)}


def load_splits(opts: TrainOptions, norm: Normalization = DEFAULT_NORMALIZATION) -> Splits:
    def one(split: str) -> ImageSet:
        data = load_split(opts.dataset, split, opts.size, opts.data_root, download=opts.download)
        return data.first(opts.limit)

    return Splits(one("train"), one("val"), one("test"), norm)
