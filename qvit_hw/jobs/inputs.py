"""A run's inputs, loaded and checked against each other: the bundle's model, the images
(of the data set it was trained on, at its size and class count) and their normalisation.
Shared by `run.run_bundle` and `preview.preview`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DataError

if TYPE_CHECKING:
    from ..data import ImageSet, Normalization
    from ..model import VisionTransformer
    from .run import RunOptions


def load_inputs(options: RunOptions) -> tuple[VisionTransformer, ImageSet, Normalization]:
    """The bundle's model, the images to run (checked against it) and their normalisation."""
    from ..data import DEFAULT_NORMALIZATION, Normalization, load_split
    from ..export import load_bundle

    model, manifest = load_bundle(options.bundle)
    cfg = model.config
    if cfg.model != "qvit":
        raise DataError(f"bundle {options.bundle} holds a {cfg.model} (no QNN layers to run)")
    trained_on = (manifest.get("dataset") or {}).get("name")
    dataset = options.dataset or trained_on
    if dataset is None:
        raise DataError(f"bundle {options.bundle} names no data set; give --dataset")
    data = load_split(dataset, options.split, cfg.image_size, options.data_root)
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
    saved = manifest.get("normalization")
    norm = Normalization.from_dict(saved) if saved else DEFAULT_NORMALIZATION
    return model, data.first(options.limit), norm
