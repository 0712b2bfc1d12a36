"""Checkpoints: what a run writes, rebuilding the model, atomic writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import qvit_hw.train.checkpoint as checkpoint_module
from qvit_hw.train import (
    TrainOptions,
    evaluate,
    load_checkpoint,
    load_splits,
    read_checkpoint,
    save_atomic,
    train,
)

Tiny = Callable[..., TrainOptions]


def test_train_writes_checkpoints_that_rebuild_the_model(tmp_path: Path, tiny: Tiny) -> None:
    result = train(tiny(epochs=4), tmp_path)

    assert [r["lr"] for r in result.history] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt", "metrics.json"]
    assert read_checkpoint(tmp_path / "last.pt")["epoch"] == 4

    model, info = load_checkpoint(tmp_path / "best.pt")
    assert info["stage"] == "train" and info["arch"] == "vision-transformer"
    assert info["config"]["model"] == "vit" and info["config"]["num_classes"] == 10
    images = info["dataset"].pop("images")
    assert info["dataset"] == {"name": "digits", "size": 28, "task": "multi-class",
                               "classes": [str(i) for i in range(10)],
                               "fingerprint": "sklearn:load_digits", "root": None}  # fmt: skip
    for split in ("train", "val", "test"):  # --limit 24 of 10 similar classes: 2 or 3 each
        assert list(images[split]) == [str(i) for i in range(10)]
        assert sum(images[split].values()) == 24 and set(images[split].values()) == {2, 3}
    assert info["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert info["epoch"] == result.best["epoch"] == info["metrics"]["best"]["epoch"]
    best_auc = max(r["val_auc"] for r in result.history)
    assert result.best["val_auc"] == best_auc  # validation picks the checkpoint

    splits = load_splits(tiny())
    test = evaluate(model, splits.test, splits.norm)
    assert info["metrics"]["test"] == pytest.approx(vars(test))
    assert vars(result.test) == pytest.approx(vars(test))

    import json

    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in doc["history"]] == [1, 2, 3, 4]
    assert doc["best"]["epoch"] == info["epoch"] and doc["test"]["acc"] == pytest.approx(test.acc)


def test_an_interrupted_checkpoint_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_atomic({"epoch": 1}, path)

    def killed_mid_write(obj: object, f: Path) -> None:
        Path(f).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"epoch": 2}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
