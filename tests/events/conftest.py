"""Helpers for the event delivery tests: write events straight into the log, read SSE and WS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from pooldrop.services import events
from pooldrop.services.hub import EventHub
from tests.support.api import Actor, Api
from tests.support.server import LiveServer


async def record(
    server: LiveServer,
    pool_id: str,
    type_: str = events.GROUP_READY,
    data: dict[str, Any] | None = None,
    *,
    visible_to: str | None = None,
    count: int = 1,
) -> list[int]:
    """Append ``count`` events in one transaction, as a service would; their seqs."""
    rt = server.runtime
    async with rt.uow() as uow:
        recorded = [
            await events.record(rt, uow, pool_id, type_, data or {"n": i}, visible_to=visible_to)
            for i in range(count)
        ]
    return [e.seq for e in recorded]


def hub_of(server: LiveServer) -> EventHub:
    hub = server.runtime.hub
    assert hub is not None, "the app did not start an event hub"
    return hub


async def eventually(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Pool:
    """A pool with one member of each kind, for visibility tests."""

    id: str
    admin: Actor
    alice: Actor  # contributor
    bob: Actor  # contributor
    listener: Actor
    root: Actor  # global admin, not a member
    stranger: Actor  # a user outside the pool


@pytest.fixture
async def pool(api: Api) -> Pool:
    root = await api.user()  # first signup: global admin
    admin = await api.user()
    pid = (await api.pool(admin))["pool_id"]
    return Pool(
        id=pid,
        admin=admin,
        alice=await api.member(admin, pid, "contributor"),
        bob=await api.member(admin, pid, "contributor"),
        listener=await api.member(admin, pid, "listener"),
        root=root,
        stranger=await api.user(),
    )


# -- Server-Sent Events ---------------------------------------------------------------------


@dataclass
class SseEvent:
    id: int
    event: str
    data: dict[str, Any]


class SseReader:
    """Parses an SSE response line by line (comments are counted, not returned)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, within: float = 5.0) -> SseEvent:
        fields: dict[str, str] = {}
        async with asyncio.timeout(within):
            async for line in self.lines:
                if line == "":
                    if "data" in fields:
                        return SseEvent(
                            int(fields.get("id", "0")),
                            fields.get("event", "message"),
                            orjson.loads(fields["data"]),
                        )
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        raise AssertionError("the SSE stream ended")

    async def take(self, count: int, within: float = 5.0) -> list[SseEvent]:
        return [await self.next(within) for _ in range(count)]


async def open_sse(
    client: httpx.AsyncClient, path: str, stack: AsyncExitStack, **kw: Any
) -> SseReader:
    """Open ``path`` as a stream on ``client`` inside the AsyncExitStack ``stack``."""
    response = await stack.enter_async_context(client.stream("GET", path, **kw))
    assert response.status_code == 200, (await response.aread()).decode()
    assert response.headers["content-type"].startswith("text/event-stream")
    return SseReader(response)


# -- WebSocket ------------------------------------------------------------------------------


def ws_url(server: LiveServer, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + "/api/v1/ws" + (f"?{query}" if query else "")


class Ws:
    """A JSON WebSocket client: request/answer by rid, pushed frames collected separately."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self._rid = 0

    async def send(self, op: str, **fields: Any) -> str:
        self._rid += 1
        rid = f"r{self._rid}"
        await self.conn.send(orjson.dumps({"op": op, "rid": rid, **fields}).decode())
        return rid

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            raw = await self.conn.recv()
        frame: dict[str, Any] = orjson.loads(raw)
        return frame

    async def call(self, op: str, within: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send ``op`` and return its answer (the next frame must be it)."""
        rid = await self.send(op, **fields)
        frame = await self.recv(within)
        assert frame.get("rid") == rid, frame
        return frame

    async def events(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        got = []
        for _ in range(count):
            frame = await self.recv(within)
            assert frame["op"] == "event", frame
            got.append(frame["event"])
        return got

    async def closed_with(self, within: float = 5.0) -> tuple[int | None, str | None]:
        """Wait for the server to close; its close code and reason."""
        async with asyncio.timeout(within):
            await self.conn.wait_closed()
        rcvd = self.conn.close_code, self.conn.close_reason
        return rcvd


async def open_ws(
    server: LiveServer, stack: AsyncExitStack, token: str | None = None, *, query: str = ""
) -> Ws:
    """A connected client; with ``token`` it sends ``connect`` first."""
    conn = await stack.enter_async_context(connect(ws_url(server, query), open_timeout=5))
    ws = Ws(conn)
    if token is not None:
        answer = await ws.call("connect", access_token=token)
        assert answer["op"] == "connect", answer
    return ws


@pytest.fixture
async def exit_stack(api: Api) -> AsyncIterator[AsyncExitStack]:
    """Closes the streams and sockets a test opened, before its clients and server stop."""
    async with AsyncExitStack() as stack:
        yield stack
