"""A sliding-window counter per key (username, client address), kept in the process."""

from __future__ import annotations

import math
from collections import deque

from pooldrop.errors import RateLimited


class SlidingWindowLimiter:
    """Counts events per key within the last ``window`` seconds; refuses past ``limit``.

    In-process on purpose: it protects one node's CPU from password guessing (argon2 is costly).
    Several nodes each enforce their own limit, which multiplies the budget by the node count.
    """

    MAX_KEYS = 100_000

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    def _trim(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def check(self, keys: list[str], now: float) -> None:
        """Raise RateLimited if any key is over its budget."""
        for key in keys:
            hits = self._trim(key, now)
            if len(hits) >= self.limit:
                retry = max(1, math.ceil(hits[0] + self.window - now))
                raise RateLimited("too many failed attempts; try again later", retry_after=retry)

    def hit(self, keys: list[str], now: float) -> None:
        if len(self._hits) > self.MAX_KEYS:
            # Forget idle keys rather than grow without bound under a spray of usernames.
            for k in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                del self._hits[k]
        for key in keys:
            self._trim(key, now).append(now)

    def reset(self, keys: list[str]) -> None:
        for key in keys:
            self._hits.pop(key, None)
