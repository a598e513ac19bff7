"""The reconnection policy shared by the networked backends, built on tenacity."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

from pooldrop.bus.base import describe, scrub

log = logging.getLogger("pooldrop.bus")

FIRST_DELAY = 0.1
MAX_DELAY = 10.0
JITTER = 0.5


def reconnecting(
    what: str,
    *,
    secrets: Iterable[str] = (),
    first: float = FIRST_DELAY,
    cap: float = MAX_DELAY,
    jitter: float = JITTER,
) -> AsyncRetrying:
    """Retry forever with jittered exponential backoff, logging each failed attempt.

    ``what`` names the connection in the log; ``secrets`` are scrubbed from logged errors.
    Jitter spreads the reconnections of many replicas after a broker restart; the cap keeps a
    subscriber that was cut off for an hour back within seconds of the broker's return. Only
    ``Exception`` is retried, so cancellation (closing the bus) stops it at once.
    """

    hidden = tuple(secrets)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.1fs",
            what,
            state.attempt_number,
            scrub(describe(exc), hidden) if exc else "no error",
            delay,
        )

    return AsyncRetrying(
        retry=retry_if_exception_type(Exception),
        # 0.1 s, 0.2 s, 0.4 s ... capped, plus up to ``jitter`` at random (tenacity 8 and 9 alike).
        wait=wait_exponential(multiplier=first, max=cap) + wait_random(0, jitter),
        before_sleep=before_sleep,
        reraise=True,
    )
