"""When and how long to wait before sending a request again: exponential backoff with jitter.

Idempotent requests (reads, heartbeats, uploads that carry a ``client_upload_id``) are retried on
network failures, 5xx and 429; others only when the connection was never made, so a retried
``create_pool`` cannot create two pools. A 429 waits at least its ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import tenacity

from pooldrop.client._errors import ConnectionFailed, RateLimited, is_retryable


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a client tries. ``attempts=1`` turns retries off."""

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0
    sleep: Callable[[float], None] | None = field(default=None, compare=False)
    async_sleep: Callable[[float], Awaitable[None]] | None = field(default=None, compare=False)

    def delay(self, failures: int) -> float:
        """Equal jitter: uniform between half and all of the capped exponential delay."""
        ceiling = min(self.maximum, self.initial * 2 ** max(0, failures - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        delay = self.delay(state.attempt_number)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return max(delay, exc.retry_after)
        return delay

    def _predicate(self, idempotent: bool) -> Callable[[BaseException], bool]:
        if idempotent:
            return is_retryable
        return lambda exc: isinstance(exc, ConnectionFailed)

    def retrying(self, idempotent: bool) -> tenacity.Retrying:
        return tenacity.Retrying(
            sleep=self.sleep or time.sleep,
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._predicate(idempotent)),
            reraise=True,
        )

    def async_retrying(self, idempotent: bool) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(
            sleep=self.async_sleep or asyncio.sleep,
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._predicate(idempotent)),
            reraise=True,
        )


NO_RETRY = RetryPolicy(attempts=1)
"""One attempt only: for callers that keep their own schedule (the outbox flusher)."""
