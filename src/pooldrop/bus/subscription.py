"""The bounded, drop-oldest buffer behind every backend's subscriptions."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from pooldrop.bus.base import DEFAULT_QUEUE_SIZE


class QueueSubscription:
    """A ``Subscription`` fed by its backend through ``put()``.

    Payloads are wake-ups, so when a slow consumer lets ``maxsize`` of them pile up the oldest is
    dropped: memory stays bounded and the newest wake-up, the one that matters, survives.
    ``on_close`` lets the backend detach (unsubscribe, delete its queue) exactly once.
    """

    def __init__(
        self,
        topic: str,
        *,
        maxsize: int = DEFAULT_QUEUE_SIZE,
        on_close: Callable[[QueueSubscription], Awaitable[None]] | None = None,
    ) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.topic = topic
        self._items: deque[bytes] = deque(maxlen=maxsize)
        self._wakeup = asyncio.Event()
        self._on_close = on_close
        self._closed = False
        self._dropped = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def pending(self) -> int:
        return len(self._items)

    def put(self, payload: bytes) -> None:
        """Buffer ``payload``; never blocks. Ignored once closed."""
        if self._closed:
            return
        if len(self._items) == self._items.maxlen:
            self._dropped += 1  # the deque's maxlen evicts the oldest on append
        self._items.append(payload)
        self._wakeup.set()

    def detach(self) -> None:
        """End iteration without calling ``on_close``: the backend already let go of it."""
        self._closed = True
        self._items.clear()
        self._wakeup.set()

    async def close(self) -> None:
        if self._closed:
            return
        self.detach()
        if self._on_close is not None:
            await self._on_close(self)

    def __aiter__(self) -> QueueSubscription:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._items:
                return self._items.popleft()
            self._wakeup.clear()
            await self._wakeup.wait()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pending={self.pending}"
        return f"<QueueSubscription {self.topic!r} {state} dropped={self._dropped}>"
