"""Following a pool's events: WebSocket first, then Server-Sent Events, then long-poll.

A stream remembers the ``seq`` of the last event it handed out (its ``cursor``). When a connection
drops it reconnects with backoff and asks for everything after the cursor, and it drops any event
at or below the cursor, so a caller sees each event once, in order, across reconnects. A transport
the server does not offer (404 at the handshake) is skipped for the rest of the stream; the last
one's answer is authoritative (a 404 there means the pool is unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import websockets
import websockets.asyncio.client
import websockets.sync.client
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from pooldrop.client import _endpoints as ep
from pooldrop.client._errors import (
    NotFound,
    PooldropError,
    TransportError,
    Unauthenticated,
    from_problem,
    from_response,
    is_retryable,
)
from pooldrop.client._models import Event

if TYPE_CHECKING:
    from pooldrop.client._async_client import AsyncClient
    from pooldrop.client._client import Client

TRANSPORTS = ("websocket", "sse", "longpoll")
KEEPALIVE = 25.0
"""Seconds between ``alive`` frames on an idle WebSocket (the server drops silent sockets)."""
CLOSE_AUTH = 4401
"""The gateway's close code for a missing, bad or revoked credential."""
ALIVE = json.dumps({"op": "alive"})
POLL_WAIT = 25.0
SSE_IDLE = 90.0
"""A stream silent this long (not even a comment) is presumed dead and reopened."""


class _Unsupported(Exception):
    """The server does not offer this transport."""


def transports_for(choice: str) -> list[str]:
    if choice == "auto":
        return list(TRANSPORTS)
    if choice not in TRANSPORTS:
        raise ValueError(f"transport must be auto or one of {', '.join(TRANSPORTS)}")
    return [choice]


def ws_url(base_url: str) -> str:
    scheme, rest = base_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{ep.API}/ws"


class _Cursor:
    """Dedup and filtering shared by both streams."""

    def __init__(self, after: int | None, types: Sequence[str] | None) -> None:
        self.value = after
        self.types = set(types) if types else None

    def admit(self, event: Event) -> bool:
        if self.value is not None and event.seq <= self.value:
            return False
        self.value = event.seq
        return self.types is None or event.type in self.types

    def advance(self, seq: int | None) -> None:
        if seq is not None and (self.value is None or seq > self.value):
            self.value = seq


def _on_frame(raw: str | bytes) -> Event | None:
    """The event a gateway frame pushes; an error frame raises its typed error."""
    msg = json.loads(raw)
    if not isinstance(msg, dict):
        return None
    if msg.get("op") == "error":
        raise from_problem(int(msg.get("status") or 400), msg)
    if msg.get("op") == "event":
        return Event.model_validate(msg["event"])
    return None


def _subscribe_frames(pool_id: str, cursor: int | None, client: Client | AsyncClient) -> list[str]:
    """``connect`` (the token travels in a frame, never in a URL that may be logged), then
    ``subscribe`` after the cursor."""
    frames = []
    if client.credential:
        frames.append(json.dumps({"op": "connect", "rid": "c", "access_token": client.credential}))
    sub: dict[str, Any] = {"op": "subscribe", "rid": "s", "pool_id": pool_id}
    if cursor is not None:
        sub["after"] = cursor
    frames.append(json.dumps(sub))
    return frames


def _handshake_error(e: Exception) -> Exception:
    if isinstance(e, InvalidStatus):
        # Starlette refuses a WebSocket to an unknown path with 403 before any auth happens
        # (the token goes in the first frame), so 403 here also means "no such endpoint".
        if e.response.status_code in (403, 404):
            return _Unsupported()
        return from_problem(e.response.status_code, _json(e.response.body))
    return TransportError(f"websocket: {e!r}")


class SSEParser:
    """Server-Sent Events framing: feed lines, get ``(id, event, data)`` at each blank line."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._id: str | None = None
        self._event: str | None = None

    def feed(self, line: str) -> tuple[str | None, str | None, str] | None:
        if line == "":
            if not self._data:
                self._event = None
                return None
            out = (self._id, self._event, "\n".join(self._data))
            self._data, self._event = [], None
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        return None


def _sse_message(_id: str | None, name: str | None, data: str) -> Event | None:
    """The event in one SSE message; an ``error`` message raises the typed error it carries."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if name == "error":
        raise from_problem(int(body.get("status") or 500), body)
    if "seq" in body:
        return Event.model_validate(body)
    return None


class EventStream:
    """A blocking iterator over one pool's events (see :meth:`Client.events`)."""

    def __init__(
        self,
        client: Client,
        pool_id: str,
        *,
        after: int | None = None,
        transport: str = "auto",
        types: Sequence[str] | None = None,
    ) -> None:
        self.client = client
        self.pool_id = pool_id
        self._cursor = _Cursor(after, types)
        self._transports = transports_for(transport)
        self._closed = threading.Event()
        self._ws: websockets.sync.client.ClientConnection | None = None
        self.transport: str | None = None
        """The transport in use now."""

    @property
    def cursor(self) -> int | None:
        """The ``seq`` of the last event handed out (resume from it later)."""
        return self._cursor.value

    def close(self) -> None:
        """Stop the stream; safe from another thread."""
        self._closed.set()
        ws = self._ws
        if ws is not None:
            ws.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        failures = 0
        policy = self.client.retry
        while not self._closed.is_set():
            self.transport = self._transports[0]
            try:
                for event in self._open(self.transport):
                    failures = 0
                    if self._cursor.admit(event):
                        yield event
            except _Unsupported:
                if len(self._transports) == 1:
                    raise NotFound(f"the server offers no {self.transport} event stream") from None
                self._transports.pop(0)
                continue
            except PooldropError as e:
                if self._closed.is_set():
                    return
                if not is_retryable(e):
                    raise
                failures += 1
                self._closed.wait(policy.delay(failures))

    def _open(self, transport: str) -> Iterator[Event]:
        if transport == "websocket":
            return self._websocket()
        if transport == "sse":
            return self._sse()
        return self._longpoll()

    def _websocket(self) -> Iterator[Event]:
        with contextlib.ExitStack() as stack:
            try:
                ws = stack.enter_context(
                    websockets.sync.client.connect(
                        ws_url(self.client.base_url), open_timeout=10, max_size=2**24
                    )
                )
            except (OSError, WebSocketException, TimeoutError) as e:
                raise _handshake_error(e) from e
            self._ws = ws
            try:
                for frame in _subscribe_frames(self.pool_id, self._cursor.value, self.client):
                    ws.send(frame)
                while not self._closed.is_set():
                    try:
                        raw = ws.recv(timeout=KEEPALIVE)
                    except TimeoutError:
                        ws.send(ALIVE)
                        continue
                    if (event := _on_frame(raw)) is not None:
                        yield event
            except (OSError, WebSocketException) as e:
                raise _ws_closed(e) from e
            finally:
                self._ws = None

    def _sse(self) -> Iterator[Event]:
        headers = {"Accept": "text/event-stream"}
        if self._cursor.value is not None:
            headers["Last-Event-ID"] = str(self._cursor.value)
        path = ep.pool_path(self.pool_id, "events", "stream")
        timeout = httpx.Timeout(10.0, read=SSE_IDLE)
        with self.client.stream("GET", path, headers=headers, timeout=timeout) as r:
            if not r.is_success:
                r.read()
                if r.status_code == 404 and _route_missing(r):
                    raise _Unsupported
                raise from_response(r)
            parser = SSEParser()
            try:
                for line in r.iter_lines():
                    if self._closed.is_set():
                        return
                    got = parser.feed(line)
                    if got is not None and (event := _sse_message(*got)) is not None:
                        yield event
            except httpx.TransportError as e:
                raise TransportError(f"event stream broke: {e!r}") from e
        raise TransportError("event stream ended")

    def _longpoll(self) -> Iterator[Event]:
        while not self._closed.is_set():
            batch = self.client.call(_longpoll_call(self.pool_id, self._cursor.value))
            yield from batch.events
            self._cursor.advance(batch.next)


def _longpoll_call(pool_id: str, cursor: int | None) -> ep.Call[ep.EventBatch]:
    return ep.poll_events(pool_id, after=cursor, wait=POLL_WAIT, limit=None)


def _ws_closed(e: OSError | WebSocketException) -> PooldropError:
    """A closed socket: 4401 means the credentials are no good (do not retry), else reconnect."""
    if isinstance(e, ConnectionClosed) and e.rcvd is not None and e.rcvd.code == CLOSE_AUTH:
        return Unauthenticated(e.rcvd.reason or "not authenticated", status=401)
    return TransportError(f"websocket closed: {e!r}")


def _route_missing(r: httpx.Response) -> bool:
    """A 404 for a path the server does not have (as opposed to an unknown pool)."""
    try:
        body = r.json()
    except ValueError:
        return True
    return not isinstance(body, dict) or body.get("detail") in ("Not Found", None)


def _json(body: bytes | bytearray | None) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class AsyncEventStream:
    """An async iterator over one pool's events (see :meth:`AsyncClient.events`)."""

    def __init__(
        self,
        client: AsyncClient,
        pool_id: str,
        *,
        after: int | None = None,
        transport: str = "auto",
        types: Sequence[str] | None = None,
    ) -> None:
        self.client = client
        self.pool_id = pool_id
        self._cursor = _Cursor(after, types)
        self._transports = transports_for(transport)
        self._closed = False
        self.transport: str | None = None

    @property
    def cursor(self) -> int | None:
        return self._cursor.value

    async def aclose(self) -> None:
        self._closed = True

    async def __aiter__(self) -> AsyncIterator[Event]:
        failures = 0
        policy = self.client.retry
        sleep = policy.async_sleep or asyncio.sleep
        while not self._closed:
            self.transport = self._transports[0]
            try:
                async for event in self._open(self.transport):
                    failures = 0
                    if self._cursor.admit(event):
                        yield event
            except _Unsupported:
                if len(self._transports) == 1:
                    raise NotFound(f"the server offers no {self.transport} event stream") from None
                self._transports.pop(0)
                continue
            except PooldropError as e:
                if self._closed or not is_retryable(e):
                    raise
                failures += 1
                await sleep(policy.delay(failures))

    def _open(self, transport: str) -> AsyncIterator[Event]:
        if transport == "websocket":
            return self._websocket()
        if transport == "sse":
            return self._sse()
        return self._longpoll()

    async def _websocket(self) -> AsyncIterator[Event]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                ws = await stack.enter_async_context(
                    websockets.asyncio.client.connect(
                        ws_url(self.client.base_url), open_timeout=10, max_size=2**24
                    )
                )
            except (OSError, WebSocketException, TimeoutError) as e:
                raise _handshake_error(e) from e
            try:
                for frame in _subscribe_frames(self.pool_id, self._cursor.value, self.client):
                    await ws.send(frame)
                while not self._closed:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), KEEPALIVE)
                    except TimeoutError:
                        await ws.send(ALIVE)
                        continue
                    if (event := _on_frame(raw)) is not None:
                        yield event
            except (OSError, WebSocketException) as e:
                raise _ws_closed(e) from e

    async def _sse(self) -> AsyncIterator[Event]:
        headers = {"Accept": "text/event-stream"}
        if self._cursor.value is not None:
            headers["Last-Event-ID"] = str(self._cursor.value)
        path = ep.pool_path(self.pool_id, "events", "stream")
        timeout = httpx.Timeout(10.0, read=SSE_IDLE)
        async with self.client.stream("GET", path, headers=headers, timeout=timeout) as r:
            if not r.is_success:
                await r.aread()
                if r.status_code == 404 and _route_missing(r):
                    raise _Unsupported
                raise from_response(r)
            parser = SSEParser()
            try:
                async for line in r.aiter_lines():
                    if self._closed:
                        return
                    got = parser.feed(line)
                    if got is not None and (event := _sse_message(*got)) is not None:
                        yield event
            except httpx.TransportError as e:
                raise TransportError(f"event stream broke: {e!r}") from e
        raise TransportError("event stream ended")

    async def _longpoll(self) -> AsyncIterator[Event]:
        while not self._closed:
            batch = await self.client.call(_longpoll_call(self.pool_id, self._cursor.value))
            for event in batch.events:
                yield event
            self._cursor.advance(batch.next)
