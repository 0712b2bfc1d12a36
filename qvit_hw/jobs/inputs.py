"""A run's inputs, loaded and checked against each other: the bundle's model, the images
(of the data set it was trained on, at its size, with its class names) and their
normalisation. Shared by `run.run_bundle` and `preview.preview`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError

if TYPE_CHECKING:
    from ..data import ImageSet, Normalization
    from ..model import VisionTransformer
    from .run import RunOptions


def load_inputs(options: RunOptions) -> tuple[VisionTransformer, ImageSet, Normalization]:
    """The bundle's model, the images to run (checked against it: data set, class count and
    class names) and their normalisation. An image folder the bundle was trained on is
    found where it lay at training unless --data-root (or --dataset PATH) says otherwise."""
    from ..data import DEFAULT_NORMALIZATION, Normalization, dataset_source, load_split
    from ..export import load_bundle

    model, manifest = load_bundle(options.bundle)
    cfg = model.config
    if cfg.model != "qvit":
        raise DataError(f"bundle {options.bundle} holds a {cfg.model} (no QNN layers to run)")
    recorded: dict[str, Any] = manifest.get("dataset") or {}
    trained_on = recorded.get("name")
    if options.dataset is None and trained_on is None:
        raise DataError(f"bundle {options.bundle} names no data set; give --dataset")
    dataset, root = dataset_source(options.dataset or trained_on, options.data_root)
    if root is None and dataset == trained_on and isinstance(recorded.get("root"), str):
        root = recorded["root"] if Path(recorded["root"]).is_dir() else None
    data = load_split(
        dataset, options.split, cfg.image_size, root, skip_unreadable=options.skip_unreadable
    )
    if trained_on and data.name != trained_on:
        raise DataError(
            f"bundle {options.bundle} was trained on {trained_on}, not {data.name}: its "
            "predictions there would mean nothing (omit --dataset to use its own)"
        )
    if data.num_classes != cfg.num_classes:
        raise DataError(
            f"bundle {options.bundle} predicts {cfg.num_classes} classes, {data.name} has "
            f"{data.num_classes}"
        )
    names = recorded.get("classes")
    if isinstance(names, list) and list(data.classes) != names:
        raise DataError(
            f"the images' classes {list(data.classes)} are not the bundle's {names}: its "
            "predictions would name the wrong classes (rename the class folders to the "
            "bundle's, or run another bundle)"
        )
    saved = manifest.get("normalization")
    norm = Normalization.from_dict(saved) if saved else DEFAULT_NORMALIZATION
    return model, data.subset(options.limit), norm


def data_notes(data: ImageSet) -> list[str]:
    """What a user should know about a run's images: a split without every class (its AUC
    is n/a, and why) and unreadable images left out."""
    notes = [why] if (why := data.coverage()) else []
    if data.skipped:
        notes.append(f"left out {len(data.skipped)} unreadable images (first: {data.skipped[0]})")
    return notes
