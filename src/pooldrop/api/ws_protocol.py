"""uvicorn's sans-I/O WebSocket protocol with less held per idle socket.

Selected with ``ws="pooldrop.api.ws_protocol:LeanWebSocketProtocol"`` in ``uvicorn.run``. Same
wire behaviour; what changes is what an idle connection keeps: uvicorn gives each socket an
``asyncio.Queue`` (three deques and an ``Event``, about 3 KB) for client frames and an ``Event``
for flow control, and keeps the parsed handshake request and response after the handshake. Here
the inbox and the flag make their buffers on demand and the handshake objects are let go.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class _Inbox:
    """What uvicorn's protocol uses of ``asyncio.Queue``: one reader, unbounded."""

    __slots__ = ("_getter", "_items")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._getter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items or ())

    async def get(self) -> Any:
        while not self._items:
            getter = self._getter = asyncio.get_running_loop().create_future()
            try:
                await getter
            finally:
                self._getter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item


class _Flag:
    """What uvicorn's protocol uses of ``asyncio.Event``, with no deque until someone waits."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """``WebSocketsSansIOProtocol`` with an on-demand inbox and flag; handshake objects freed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.writable.set()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # Sent: nothing reads the handshake again.
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]
