"""Following a pool's events: WebSocket first, then Server-Sent Events, then long-poll.

A stream remembers the ``seq`` of the last event it handed out (its ``cursor``). When a connection
drops it reconnects with backoff and asks for everything after the cursor, and it drops any event
at or below the cursor, so a caller sees each event once, in order, across reconnects. A transport
the server does not offer (404 at the handshake) is skipped for the rest of the stream; the last
one's answer is authoritative (a 404 there means the pool is unknown).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import websockets
import websockets.asyncio.client
import websockets.sync.client
from websockets.exceptions import InvalidStatus, WebSocketException

from pooldrop.client import _endpoints as ep
from pooldrop.client._errors import (
    ApiError,
    NotFound,
    PooldropError,
    TransportError,
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


def _frame_error(msg: dict[str, Any]) -> ApiError | None:
    """An error answer on the WebSocket, as the typed error."""
    err = msg.get("error")
    if isinstance(err, dict):
        return from_problem(int(err.get("status") or 400), err)
    if msg.get("op") == "error" or (msg.get("code") and msg.get("status")):
        return from_problem(int(msg.get("status") or 400), msg)
    return None


def _subscribe_frame(pool_id: str, cursor: int | None, credential: str | None) -> list[str]:
    frames = []
    if credential:
        frames.append(json.dumps({"op": "connect", "rid": "c", "access_token": credential}))
    sub: dict[str, Any] = {"op": "subscribe", "rid": "s", "pool_id": pool_id}
    if cursor is not None:
        sub["after"] = cursor
    frames.append(json.dumps(sub))
    return frames


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


def _sse_event(data: str) -> Event | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if isinstance(body, dict) and "seq" in body:
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
        try:
            ws = websockets.sync.client.connect(
                ws_url(self.client.base_url), open_timeout=10, max_size=2**24
            )
        except InvalidStatus as e:
            # Starlette refuses a WebSocket to an unknown path with 403 before any auth happens
            # (the token goes in the first frame), so 403 here also means "no such endpoint".
            if e.response.status_code in (403, 404):
                raise _Unsupported from None
            raise from_problem(e.response.status_code, _json(e.response.body)) from None
        except (OSError, WebSocketException, TimeoutError) as e:
            raise TransportError(f"websocket: {e!r}") from e
        self._ws = ws
        try:
            for frame in _subscribe_frame(self.pool_id, self._cursor.value, self.client.credential):
                ws.send(frame)
            while not self._closed.is_set():
                try:
                    raw = ws.recv(timeout=KEEPALIVE)
                except TimeoutError:
                    ws.send(json.dumps({"op": "alive"}))
                    continue
                msg = json.loads(raw)
                error = _frame_error(msg)
                if error is not None:
                    raise error
                if msg.get("op") == "event":
                    yield Event.model_validate(msg["event"])
        except WebSocketException as e:
            raise TransportError(f"websocket closed: {e!r}") from e
        except OSError as e:
            raise TransportError(f"websocket: {e!r}") from e
        finally:
            self._ws = None
            ws.close()

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
                    if got is not None and (event := _sse_event(got[2])) is not None:
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
        try:
            ws = await websockets.asyncio.client.connect(
                ws_url(self.client.base_url), open_timeout=10, max_size=2**24
            )
        except InvalidStatus as e:
            # Starlette refuses a WebSocket to an unknown path with 403 before any auth happens
            # (the token goes in the first frame), so 403 here also means "no such endpoint".
            if e.response.status_code in (403, 404):
                raise _Unsupported from None
            raise from_problem(e.response.status_code, _json(e.response.body)) from None
        except (OSError, WebSocketException, TimeoutError) as e:
            raise TransportError(f"websocket: {e!r}") from e
        try:
            for frame in _subscribe_frame(self.pool_id, self._cursor.value, self.client.credential):
                await ws.send(frame)
            while not self._closed:
                try:
                    raw = await asyncio.wait_for(ws.recv(), KEEPALIVE)
                except TimeoutError:
                    await ws.send(json.dumps({"op": "alive"}))
                    continue
                msg = json.loads(raw)
                error = _frame_error(msg)
                if error is not None:
                    raise error
                if msg.get("op") == "event":
                    yield Event.model_validate(msg["event"])
        except WebSocketException as e:
            raise TransportError(f"websocket closed: {e!r}") from e
        except OSError as e:
            raise TransportError(f"websocket: {e!r}") from e
        finally:
            await ws.close()

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
                    if got is not None and (event := _sse_event(got[2])) is not None:
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
