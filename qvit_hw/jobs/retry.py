"""Retries of transient backend errors: exponential backoff with jitter, capped (tenacity).

`Retry.call(fn, ...)` retries `TransientBackendError` up to ``attempts`` times and for at
most ``max_seconds`` (by the injected ``clock``), sleeping with the injected ``sleep``, so
tests run instantly. It counts every retry. When it gives up it raises RunInterrupted:
the error may pass (network, service busy), and the journal lets ``--resume`` continue.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from ..errors import RunInterrupted, TransientBackendError

T = TypeVar("T")


class Retry:
    """Retry policy plus the count of retries it made."""

    def __init__(
        self,
        *,
        attempts: int = 8,
        max_seconds: float = 900.0,
        initial: float = 1.0,
        max_wait: float = 60.0,
        jitter: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        if max_seconds <= 0 or initial < 0 or max_wait < 0 or jitter < 0:
            raise ValueError("max_seconds must be > 0; initial, max_wait and jitter >= 0")
        self.attempts, self.max_seconds = attempts, max_seconds
        self.initial, self.max_wait, self.jitter = initial, max_wait, jitter
        self.sleep, self.clock = sleep, clock
        self.retries = 0

    def call(self, fn: Callable[..., T], *args: Any, what: str) -> T:
        """``fn(*args)``, retried on TransientBackendError; ``what`` names it in errors."""
        start = self.clock()

        def out_of_time(_: Any) -> bool:
            return self.clock() - start >= self.max_seconds

        def count(_: Any) -> None:
            self.retries += 1

        retrying = Retrying(
            retry=retry_if_exception_type(TransientBackendError),
            wait=wait_exponential_jitter(self.initial, self.max_wait, jitter=self.jitter),
            stop=stop_after_attempt(self.attempts) | out_of_time,
            sleep=self.sleep,
            before_sleep=count,
            reraise=True,
        )
        try:
            return retrying(fn, *args)
        except TransientBackendError as exc:
            attempts = retrying.statistics.get("attempt_number", self.attempts)
            raise RunInterrupted(
                f"{what} kept failing ({attempts} attempts over {self.clock() - start:.0f} s; "
                f"last: {exc})"
            ) from exc
