"""Helpers for SDK tests: run blocking SDK code off the loop, and transports that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking SDK code in a thread: the in-test server lives on this loop."""
    return await asyncio.to_thread(fn)


class Recording(httpx.HTTPTransport):
    """A real transport that remembers every request it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


class LoseAnswers(httpx.HTTPTransport):
    """Sends requests for real, but throws away the first ``n`` answers matching ``match``.

    ``sent`` lists the matching requests, ``requests`` every request.

    The server did the work; the client saw a broken connection. That is the case a retry with
    the same ``client_upload_id`` must survive without creating a duplicate.
    """

    def __init__(self, n: int, match: Callable[[httpx.Request], bool]) -> None:
        super().__init__()
        self.left = n
        self.match = match
        self.sent: list[httpx.Request] = []
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = super().handle_request(request)
        if self.match(request):
            self.sent.append(request)
            if self.left > 0:
                self.left -= 1
                response.read()
                response.close()
                raise httpx.ReadError("connection reset (test)", request=request)
        return response


class Refuse(httpx.BaseTransport):
    """Every request fails to connect, as when the server is down."""

    def __init__(self) -> None:
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        raise httpx.ConnectError("connection refused (test)", request=request)


def no_sleep(_seconds: float) -> None:
    """A retry policy's sleep for tests: backoff is computed, not waited."""


@contextlib.asynccontextmanager
async def serve_asgi(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port in this loop (no lifespan); yields its URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def without(app: ASGIApp, *, websocket: bool = True, sse: bool = False) -> ASGIApp:
    """``app`` as a server that lacks the WebSocket gateway (and, with ``sse``, the SSE stream)."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if websocket and scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})  # a 403 at the handshake
            return
        if sse and scope["type"] == "http" and scope["path"].endswith("/events/stream"):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})
            return
        await app(scope, receive, send)

    return wrapper
