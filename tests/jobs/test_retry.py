"""Retries: transient errors retried with backoff and counted; the caps stop them."""

import pytest

from qvit_hw.errors import PermanentBackendError, RunInterrupted, TransientBackendError
from qvit_hw.jobs.retry import Retry


class FlakyCall:
    """Fails transiently ``failures`` times, then returns "ok"."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientBackendError("service busy")
        return "ok"


def test_transient_errors_are_retried_with_growing_waits():
    waits: list[float] = []
    retry = Retry(attempts=5, initial=1.0, max_wait=60.0, jitter=0.0, sleep=waits.append)
    assert retry.call(FlakyCall(3), what="submit") == "ok"
    assert retry.retries == 3
    assert waits == [1.0, 2.0, 4.0]  # exponential backoff (no jitter here)


def test_jitter_stays_within_its_bound():
    waits: list[float] = []
    Retry(attempts=4, initial=1.0, jitter=0.5, sleep=waits.append).call(FlakyCall(3), what="x")
    assert all(base <= w <= base + 0.5 for base, w in zip([1.0, 2.0, 4.0], waits, strict=True))


def test_attempts_are_capped():
    call = FlakyCall(10)
    retry = Retry(attempts=4, sleep=lambda s: None)
    with pytest.raises(RunInterrupted, match=r"submit of job 3 kept failing \(4 attempts"):
        retry.call(call, what="submit of job 3")
    assert call.calls == 4 and retry.retries == 3


def test_total_time_is_capped_by_the_injected_clock():
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    retry = Retry(attempts=100, max_seconds=30.0, jitter=0.0, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(RunInterrupted, match="over 31 s"):
        retry.call(FlakyCall(100), what="status")
    assert retry.retries == 5  # waits 1, 2, 4, 8, 16: 31 s > 30 s


def test_permanent_errors_are_not_retried():
    def rejected() -> None:
        raise PermanentBackendError("invalid circuit")

    retry = Retry(sleep=lambda s: None)
    with pytest.raises(PermanentBackendError, match="invalid circuit"):
        retry.call(rejected, what="submit")
    assert retry.retries == 0
