"""Training options: the paper's schedule and the KD schedule."""

from __future__ import annotations

import pytest

from qvit_hw.train import KD_SCHEDULE, PAPER_SCHEDULE, Schedule


def test_paper_schedule_and_kd_schedule() -> None:
    assert (PAPER_SCHEDULE.epochs, PAPER_SCHEDULE.lr, PAPER_SCHEDULE.batch_size) == (100, 1e-3, 32)
    assert PAPER_SCHEDULE.milestones() == [50, 75]
    assert (KD_SCHEDULE.epochs, KD_SCHEDULE.milestones()) == (50, [])
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        Schedule(epochs=0)
