"""The settings of the job layer, each written and validated once.

`SchedulerConfig` (shots, packing, job sizes, polling, budgets), `RetryConfig` (backoff
on transient errors) and `AdaptiveConfig` (``--shots auto``) are plain frozen
dataclasses: `qvit-hw run` reads its flags' defaults from them, `RunOptions` holds them,
and the scheduler, `Retry` and `adaptive.refine` take them as they are. Messages name
the command-line flag, which is how most users set them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..transpile.packing import PACKINGS

DEFAULT_SHOTS = 1000
DEFAULT_CALIBRATION_ROWS = 2048  # rows of known exact answer per template (learned mitigation)
DEFAULT_JOB_TIMEOUT = 4 * 3600.0  # seconds a job may take before the run stops (resumable)


def _whole(name: str, value: Any, *, optional: bool = False, minimum: int = 1) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        whole = "a whole number " if name == "shots" or minimum < 1 else ""
        raise ValueError(f"--{name.replace('_', '-')} must be {whole}>= {minimum}, got {value!r}")


def _seconds(name: str, value: Any, *, positive: bool) -> None:
    flag = f"--{name.replace('_', '-')}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{flag} must be a finite number of seconds, got {value!r}")
    if (value <= 0) if positive else (value < 0):
        raise ValueError(f"{flag} must be {'> 0' if positive else '>= 0'}, got {value!r}")


@dataclass(frozen=True)
class SchedulerConfig:
    """How QNN rows become jobs and how jobs are driven."""

    shots: int = DEFAULT_SHOTS  # per circuit (exact backends take none)
    max_copies: int | None = None  # packed copies per execution (None: as many as fit)
    # how copies are chosen: "best" placements, "max" copies, or "auto": max when learned
    # mitigation is on (same agreement, ~11 % fewer executions: bench/RESULTS.md), else best
    packing: str = "auto"
    calibration_rows: int = DEFAULT_CALIBRATION_ROWS  # per template, learned mitigation
    # shots of each readout calibration circuit (None: --shots, at least 50,000 where a
    # run-level fit follows: `QNNRunner.readout_shots`); two circuits per template, so more
    # is cheap, and their error is shared by every row read on that qubit
    readout_shots: int | None = None
    job_size: int | None = None  # executions per job (None: the backend's limit)
    max_in_flight: int = 4  # jobs submitted and not yet finished
    job_timeout: float = DEFAULT_JOB_TIMEOUT
    poll_interval: float = 1.0  # seconds between status polls
    seed: int = 0  # transpiler seed
    # budgets over the whole run (jobs found in the journal count too); not part of the
    # run's identity, so a stopped run resumes with a larger one
    max_total_shots: int | None = None
    max_qpu_seconds: float | None = None  # estimated (`cost`); IBM also enforces it
    # submit again a job whose intent was journaled without a job id on a backend that
    # cannot be asked whether it got it (the user checked it did not); not in the identity
    resubmit_unrecorded: bool = False
    # --mitigate ...,zne: noise scales (gates folded) and the extrapolation
    zne_scales: tuple[float, ...] = (1, 5)
    zne_extrapolation: str = "richardson"
    zne_fold: str = "all"  # which gates fold: "all" (every noisy gate) or "two" (2-qubit)
    # Pauli-twirl draws of the 2-qubit gates the rows are dealt over (0: none), so that
    # folding scales relaxation too (`mitigation.twirl`)
    zne_twirls: int = 8

    def __post_init__(self) -> None:
        from ..mitigation.zne import ZNEConfig

        zne = ZNEConfig(tuple(self.zne_scales), self.zne_extrapolation, self.zne_fold)
        object.__setattr__(self, "zne_scales", zne.scales)
        _whole("shots", self.shots)
        _whole("zne_twirls", self.zne_twirls, minimum=0)
        _whole("max_total_shots", self.max_total_shots, optional=True)
        if self.max_qpu_seconds is not None:
            _seconds("max_qpu_seconds", self.max_qpu_seconds, positive=True)
        _whole("max_in_flight", self.max_in_flight)
        _whole("max_copies", self.max_copies, optional=True)
        _whole("job_size", self.job_size, optional=True)
        _whole("calibration_rows", self.calibration_rows)
        _whole("readout_shots", self.readout_shots, optional=True)
        if self.packing not in ("auto", *PACKINGS):
            raise ValueError(
                f"--packing must be one of auto, {', '.join(PACKINGS)}, got {self.packing!r}"
            )
        _seconds("job_timeout", self.job_timeout, positive=True)
        _seconds("poll_interval", self.poll_interval, positive=False)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"--seed must be a whole number, got {self.seed!r}")


@dataclass(frozen=True)
class RetryConfig:
    """Retries of transient backend errors: exponential backoff with jitter, capped."""

    attempts: int = 8  # per backend call (--retries)
    initial: float = 1.0  # first backoff in seconds (--retry-wait); it doubles per retry
    jitter: float = 1.0  # up to this many seconds added at random
    max_wait: float = 60.0  # longest single backoff
    max_seconds: float = 900.0  # longest time one call may keep retrying

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ValueError(f"--retries must be a whole number >= 1, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"--retries must be >= 1, got {self.attempts}")
        _seconds("retry_wait", self.initial, positive=False)
        for name in ("jitter", "max_wait"):
            _seconds(name, getattr(self, name), positive=False)
        _seconds("max_seconds", self.max_seconds, positive=True)

    @classmethod
    def waiting(cls, attempts: int = 8, wait: float = 1.0) -> RetryConfig:
        """``--retries`` and ``--retry-wait``: the first backoff and as much jitter."""
        return cls(attempts=attempts, initial=wait, jitter=wait)


@dataclass(frozen=True)
class AdaptiveConfig:
    """``--shots auto``: the target, the first round's shots and the per-row ceiling."""

    target_agreement: float = 0.99
    initial_shots: int = 200
    max_shots_per_row: int = 32000
    draws: int = 400  # Monte Carlo draws per image and round
    growth: int = 4  # most a row's shots grow per round
    seed: int = 0

    def __post_init__(self) -> None:
        t = self.target_agreement
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0.5 <= t < 1:
            raise ValueError(f"--target-agreement must be in [0.5, 1), got {t!r}")
        for name in ("initial_shots", "max_shots_per_row", "draws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value!r}")
        if self.max_shots_per_row < self.initial_shots:
            raise ValueError(
                f"--max-shots-per-row ({self.max_shots_per_row}) must be >= --initial-shots "
                f"({self.initial_shots})"
            )
        if self.growth < 2:
            raise ValueError(f"growth must be >= 2, got {self.growth}")

    def round_shots(self) -> int:
        """The most shots one round adds to a row (what one job's circuits take): from a
        ladder level s to the level `allocate` may raise it to, at most the level at or
        above ``growth`` x s (capped at the ceiling); the first round's ``initial_shots``."""
        ladder = self.ladder
        up = np.searchsorted(ladder, np.minimum(ladder * self.growth, ladder[-1]), side="left")
        return int(
            max(self.initial_shots, (ladder[np.minimum(up, len(ladder) - 1)] - ladder).max())
        )

    def ceiling_for(self, max_shots: int) -> int | None:
        """The highest ``max_shots_per_row`` (at most this one's) whose rounds each take at
        most ``max_shots`` per circuit; None if not even ``initial_shots`` fits."""
        if self.initial_shots > max_shots:
            return None
        low, high = self.initial_shots, self.max_shots_per_row  # round_shots grows with it
        while low < high:
            mid = (low + high + 1) // 2
            if replace(self, max_shots_per_row=mid).round_shots() <= max_shots:
                low = mid
            else:
                high = mid - 1
        return low

    @property
    def ladder(self) -> np.ndarray:
        """The cumulative shot counts a row may have: initial x 2^(k/2) (a step of at most
        41 % over what a row needs), capped at the ceiling."""
        levels, k = [self.initial_shots], 1
        while levels[-1] < self.max_shots_per_row:
            step = max(levels[-1] + 1, round(self.initial_shots * 2 ** (k / 2)))
            levels.append(min(step, self.max_shots_per_row))
            k += 1
        return np.array(levels)
