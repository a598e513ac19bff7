"""What a listener holds: a ``Subscription`` to one pool's events, fed by the ``EventHub``.

Frames are shared: the hub serializes an event once into a ``Frame`` and every subscription
that may see it keeps a reference in its bounded deque. See ``services/hub.py`` for the flow.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
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
    """A connection's interest in its principal staying valid (see ``EventHub.watch``).

    ``on_end`` (if given) is called once, from the hub's access check, when the principal lost
    access; ``ended`` is an ``asyncio.Event`` made on first use, for callers that prefer to wait.
    """

    __slots__ = ("_ended", "_hub", "_on_end", "error", "principal")

    def __init__(
        self, hub: EventHub, principal: Principal, on_end: Callable[[], None] | None = None
    ) -> None:
        self.principal = principal
        self.error: PooldropError | None = None
        self._hub = hub
        self._on_end = on_end
        self._ended: asyncio.Event | None = None

    @property
    def ended(self) -> asyncio.Event:
        if self._ended is None:
            self._ended = asyncio.Event()
            if self.error is not None:
                self._ended.set()
        return self._ended

    def _fail(self, error: PooldropError) -> None:
        first = self.error is None
        self.error = error
        if self._ended is not None:
            self._ended.set()
        if first and self._on_end is not None:
            self._on_end()

    def close(self) -> None:
        self._hub._watches.discard(self)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription:
    """Events of one pool for one principal, after a cursor, in seq order, each once.

    Iterate with ``async for frame in sub`` (ends when closed) or call ``get(timeout)``. Both
    raise ``Unauthenticated`` when the principal's session ended or key was revoked, and
    ``NotFound`` when it left the pool or the pool was deleted. ``cursor`` is the seq after which
    the next call continues; it can move past events this principal may not see.

    One reader at a time. A transport that should not park a task per idle subscriber sets a
    ``listener``: it is called (synchronously, from the hub) whenever a frame, an error or the
    close arrives, and the transport then drains with ``get(wait=0)`` until it returns None.

    An idle subscription is a handful of slots: its buffers and its waiter are made on demand,
    because thousands of them sit idle for hours.
    """

    __slots__ = (
        "_backlog",
        "_closed",
        "_error",
        "_hub",
        "_queue",
        "_queue_size",
        "_resync",
        "_skip_to",
        "_waiter",
        "cursor",
        "listener",
        "pool_id",
        "principal",
        "sees_all",
    )

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
        self.listener: Callable[[], None] | None = None
        self._hub = hub
        self._queue: deque[Frame] | None = None
        self._queue_size = queue_size
        self._backlog: deque[Frame] | None = None
        self._skip_to = cursor
        self._resync = False
        self._error: PooldropError | None = None
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    def sees(self, visible_to: str | None) -> bool:
        return visible_to is None or self.sees_all or visible_to == self.principal.id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Frames buffered and not yet taken (backlog and live)."""
        return len(self._backlog or ()) + len(self._queue or ())

    def _notify(self) -> None:
        if self._waiter is not None:
            _wake(self._waiter)
        if self.listener is not None:
            self.listener()

    def _offer(self, frame: Frame) -> None:
        # Called by the hub, synchronously, in seq order.
        if self._closed or self._resync:
            return  # a resync will read it from the database
        if self._queue is None:
            self._queue = deque()
        if len(self._queue) >= self._queue_size:
            self._queue = None
            self._resync = True
            self._hub.stats.resyncs += 1
        else:
            self._queue.append(frame)
            self._hub.stats.dispatched += 1
        self._notify()

    def _add_backlog(self, frames: Iterable[Frame]) -> None:
        if self._backlog is None:
            self._backlog = deque(frames)
        else:
            self._backlog.extend(frames)
        if not self._backlog:
            self._backlog = None

    def _fail(self, error: PooldropError) -> None:
        self._error = error
        self._notify()

    def _take(self) -> Frame | None:
        backlog = self._backlog
        if backlog is not None:
            frame = self._pop_newer(backlog)
            if frame is not None:
                return frame
            self._backlog = None
        # The last backlog page covered everything up to _skip_to (visible or not).
        self.cursor = max(self.cursor, self._skip_to)
        if self._resync:
            return None
        queue = self._queue
        if queue is not None:
            frame = self._pop_newer(queue)
            if frame is not None:
                return frame
            self._queue = None
        return None

    def _pop_newer(self, frames: deque[Frame]) -> Frame | None:
        """The first of ``frames`` past the cursor (moving the cursor to it); older ones go."""
        while frames:
            frame = frames.popleft()
            if frame.seq > self.cursor:
                self.cursor = frame.seq
                return frame
        return None

    async def _read_page(self) -> None:
        # Buffer live frames again *before* reading, so nothing committed after the read is lost.
        self._resync = False
        self._queue = None
        page, covered_to, full = await self._hub._read_backlog(self, self.cursor)
        self._add_backlog(page)
        self._skip_to = max(self._skip_to, covered_to)
        if full:
            self._resync = True

    async def get(self, wait: float | None = None) -> Frame | None:
        """The next frame; None if none arrived within ``wait`` seconds (None: wait forever).

        Buffered frames and pending database reads are served whatever ``wait`` is; it bounds
        only the wait for new events. Raises ``SubscriptionClosed`` once closed.
        """
        deadline: float | None = None
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
            if wait is None:
                await self._wait(None)
                continue
            if wait <= 0:
                return None  # the writers' drain loop: no clock needed
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + wait
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await self._wait(remaining)

    async def _wait(self, delay: float | None) -> None:
        # A bare future and at most one timer: no task per waiting subscriber.
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        timer = None if delay is None else waiter.get_loop().call_later(delay, _wake, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if self._waiter is waiter:
                self._waiter = None

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
        self._queue = None
        self._backlog = None
        self._hub._unregister(self)
        self._notify()
        self.listener = None

    def __repr__(self) -> str:
        return f"<Subscription {self.pool_id} {self.principal.id} cursor={self.cursor}>"
