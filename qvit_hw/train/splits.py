"""The three splits of a run's data set, loaded as its options say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import DEFAULT_NORMALIZATION, ImageSet, Normalization, load_split
from ..errors import DataError
from .options import TrainOptions


@dataclass(frozen=True)
class Splits:
    train: ImageSet
    val: ImageSet
    test: ImageSet
    norm: Normalization = DEFAULT_NORMALIZATION

    def describe(self) -> dict[str, Any]:
        """What checkpoints and bundles record of the data: name, size, task, class names,
        the source's fingerprint, for an image folder where it lay, and the images of each
        class in each split (after --limit)."""
        t = self.train
        counts = {
            s.split: dict(
                zip(
                    t.classes, np.bincount(s.labels, minlength=len(t.classes)).tolist(), strict=True
                )
            )
            for s in (self.train, self.val, self.test)
        }
        return {
            "name": t.name, "size": t.size, "task": t.task, "classes": list(t.classes),
            "fingerprint": t.fingerprint, "root": t.root, "images": counts,
        }  # fmt: skip

    def warnings(self) -> list[str]:
        """One line per thing worth knowing before training: splits that lack classes (their
        AUC is n/a) and unreadable images left out."""
        out = [
            f"{why}; use a larger --limit or more images" if s.split != "train" else why
            for s in (self.train, self.val, self.test)
            if (why := s.coverage())
        ]
        skipped = sorted({f for s in (self.train, self.val, self.test) for f in s.skipped})
        if skipped:
            out.append(f"left out {len(skipped)} unreadable images (first: {skipped[0]})")
        return out


def announce(splits: Splits, console: Any) -> None:
    """`Splits.warnings`, one yellow line each (nothing without a console)."""
    if console is not None:
        for line in splits.warnings():
            console.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


def load_splits(opts: TrainOptions, norm: Normalization = DEFAULT_NORMALIZATION) -> Splits:
    """The train, val and test splits, each cut to ``opts.limit`` images (`ImageSet.subset`).
    A train split that holds one class is refused: the model would learn one answer."""

    def one(split: str) -> ImageSet:
        data = load_split(
            opts.dataset, split, opts.size, opts.data_root,
            download=opts.download, skip_unreadable=opts.skip_unreadable,
        )  # fmt: skip
        return data.subset(opts.limit)

    splits = Splits(one("train"), one("val"), one("test"), norm)
    present = set(splits.train.labels.tolist())
    if len(present) < 2:
        only = splits.train.classes[present.pop()] if present else "none"
        limit = f" (--limit {opts.limit})" if opts.limit is not None else ""
        raise DataError(
            f"the train split{limit} holds only class {only!r} of "
            f"{list(splits.train.classes)}: a model trained on it learns one answer; give "
            "more images of the other classes"
        )
    return splits
