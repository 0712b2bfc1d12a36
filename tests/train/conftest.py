"""Fixtures of the training tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qvit_hw.train import Schedule, TrainOptions


def tiny(model: str = "vit", epochs: int = 2, limit: int = 24, **kw: object) -> TrainOptions:
    """A few real digits images: seconds, not minutes."""
    return TrainOptions(
        "digits", model=model, limit=limit, schedule=Schedule(epochs=epochs, batch_size=8), **kw
    )


@pytest.fixture(name="tiny")
def tiny_fixture() -> Callable[..., TrainOptions]:
    """`tiny`: options of a seconds-long run on a few real digits images."""
    return tiny
