"""What a listener holds: a ``Subscription`` to one pool's events, fed by the ``EventHub``.

Frames are shared: the hub serializes an event once into a ``Frame`` and every subscription
that may see it keeps a reference in its bounded deque. See ``services/hub.py`` for the flow.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pooldrop.errors import PooldropError
from pooldrop.services.principals import Principal

if TYPE_CHECKING:
    from pooldrop.services.hub import EventHub

T = TypeVar("T")


class Frame:
    """One event, serialized once; shared by every subscriber that receives it.

    ``payload`` is the event's JSON (the ``event_out`` shape). ``render`` caches transport
    encodings (an SSE chunk, a WebSocket text frame) so they too are built once per event.
    """

    __slots__ = ("_renders", "payload", "seq", "type", "visible_to")

    def __init__(self, seq: int, type_: str, visible_to: str | None, payload: bytes) -> None:
        self.seq = seq
        self.type = type_
        self.visible_to = visible_to
        self.payload = payload
        self._renders: dict[Callable[[Frame], Any], Any] | None = None

    def render(self, fmt: Callable[[Frame], T]) -> T:
        """``fmt(self)``, computed on the first call only (keyed by the function)."""
        if self._renders is None:
            self._renders = {}
        try:
            value: T = self._renders[fmt]
        except KeyError:
            value = self._renders[fmt] = fmt(self)
        return value

    def __repr__(self) -> str:
        return f"<Frame {self.seq} {self.type}>"


class SubscriptionClosed(Exception):
    """``Subscription.get`` on a subscription that was closed (by its owner or by ``hub.stop``)."""


class Watch:
    """A connection's interest in its principal staying valid (see ``EventHub.watch``)."""

    def __init__(self, hub: EventHub, principal: Principal) -> None:
        self.principal = principal
        self.error: PooldropError | None = None
        self.ended = asyncio.Event()
        self._hub = hub

    def _fail(self, error: PooldropError) -> None:
        self.error = error
        self.ended.set()

    def close(self) -> None:
        self._hub._watches.discard(self)


class Subscription:
    """Events of one pool for one principal, after a cursor, in seq order, each once.

    Iterate with ``async for frame in sub`` (ends when closed) or call ``get(timeout)``. Both
    raise ``Unauthenticated`` when the principal's session ended or key was revoked, and
    ``NotFound`` when it left the pool or the pool was deleted. ``cursor`` is the seq after which
    the next call continues; it can move past events this principal may not see.
    """

    def __init__(
        self,
        hub: EventHub,
        pool_id: str,
        principal: Principal,
        sees_all: bool,
        cursor: int,
        queue_size: int,
    ) -> None:
        self.pool_id = pool_id
        self.principal = principal
        self.sees_all = sees_all
        self.cursor = cursor
        self._hub = hub
        self._queue: deque[Frame] = deque()
        self._queue_size = queue_size
        self._backlog: deque[Frame] = deque()
        self._skip_to = cursor
        self._resync = False
        self._error: PooldropError | None = None
        self._closed = False
        self._wakeup = asyncio.Event()

    def sees(self, visible_to: str | None) -> bool:
        return visible_to is None or self.sees_all or visible_to == self.principal.id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Frames buffered and not yet taken (backlog and live)."""
        return len(self._backlog) + len(self._queue)

    def _offer(self, frame: Frame) -> None:
        # Called by the hub, synchronously, in seq order.
        if self._closed or self._resync:
            return  # a resync will read it from the database
        if len(self._queue) >= self._queue_size:
            self._queue.clear()
            self._resync = True
            self._hub.stats.resyncs += 1
        else:
            self._queue.append(frame)
            self._hub.stats.dispatched += 1
        self._wakeup.set()

    def _fail(self, error: PooldropError) -> None:
        self._error = error
        self._wakeup.set()

    def _take(self) -> Frame | None:
        while self._backlog:
            frame = self._backlog.popleft()
            if frame.seq > self.cursor:
                self.cursor = frame.seq
                return frame
        # The last backlog page covered everything up to _skip_to (visible or not).
        self.cursor = max(self.cursor, self._skip_to)
        if self._resync:
            return None
        while self._queue:
            frame = self._queue.popleft()
            if frame.seq > self.cursor:
                self.cursor = frame.seq
                return frame
        return None

    async def _read_page(self) -> None:
        # Buffer live frames again *before* reading, so nothing committed after the read is lost.
        self._resync = False
        self._queue.clear()
        page, covered_to, full = await self._hub._read_backlog(self, self.cursor)
        self._backlog.extend(page)
        self._skip_to = max(self._skip_to, covered_to)
        if full:
            self._resync = True

    async def get(self, wait: float | None = None) -> Frame | None:
        """The next frame; None if none arrived within ``wait`` seconds (None: wait forever).

        Buffered frames and pending database reads are served whatever ``wait`` is; it bounds
        only the wait for new events. Raises ``SubscriptionClosed`` once closed.
        """
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        while True:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise SubscriptionClosed(self.pool_id)
            frame = self._take()
            if frame is not None:
                return frame
            if self._resync:
                await self._read_page()
                continue
            self._wakeup.clear()
            if deadline is None:
                await self._wakeup.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Frame:
        try:
            frame = await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None
        assert frame is not None
        return frame

    async def close(self) -> None:
        """Stop receiving; a pending ``get`` raises ``SubscriptionClosed``. Idempotent."""
        self._end()

    def _end(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._backlog.clear()
        self._wakeup.set()
        self._hub._unregister(self)

    def __repr__(self) -> str:
        return f"<Subscription {self.pool_id} {self.principal.id} cursor={self.cursor}>"
