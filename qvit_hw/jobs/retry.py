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
from .config import RetryConfig

T = TypeVar("T")


class Retry:
    """Retry policy (a `RetryConfig`, or its fields as keywords) plus the count of retries
    it made."""

    def __init__(
        self,
        config: RetryConfig | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        **fields: Any,
    ) -> None:
        if config is not None and fields:
            raise TypeError("give a RetryConfig or its fields, not both")
        self.config = config if config is not None else RetryConfig(**fields)
        self.sleep, self.clock = sleep, clock
        self.retries = 0

    @property
    def attempts(self) -> int:
        return self.config.attempts

    def call(self, fn: Callable[..., T], *args: Any, what: str) -> T:
        """``fn(*args)``, retried on TransientBackendError; ``what`` names it in errors."""
        start = self.clock()

        cfg = self.config

        def out_of_time(_: Any) -> bool:
            return self.clock() - start >= cfg.max_seconds

        def count(_: Any) -> None:
            self.retries += 1

        retrying = Retrying(
            retry=retry_if_exception_type(TransientBackendError),
            wait=wait_exponential_jitter(cfg.initial, cfg.max_wait, jitter=cfg.jitter),
            stop=stop_after_attempt(cfg.attempts) | out_of_time,
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
