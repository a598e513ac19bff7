"""A real pooldrop HTTP server on 127.0.0.1, in the test's own event loop.

Running uvicorn in-loop keeps the fake clock and the app's state reachable from the test while
every request still goes through a real socket and a real HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from pooldrop.api.app import create_app
from pooldrop.api.ws_protocol import LeanWebSocketProtocol
from pooldrop.api.zerocopy import ZeroCopyHttpToolsProtocol
from pooldrop.cli.server import KEEP_ALIVE_SECONDS
from pooldrop.clock import FakeClock
from pooldrop.config import Settings
from pooldrop.services.runtime import Runtime
from pooldrop.services.scheduler import Scheduler


@dataclass
class LiveServer:
    app: FastAPI
    url: str
    clock: FakeClock
    settings: Settings

    @property
    def runtime(self) -> Runtime:
        rt: Runtime = self.app.state.runtime
        return rt

    @property
    def scheduler(self) -> Scheduler:
        s: Scheduler = self.app.state.scheduler
        return s

    def client(self, token: str | None = None, **kw: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kw)


@contextlib.asynccontextmanager
async def live_server(
    settings: Settings, clock: FakeClock, **app_kw: Any
) -> AsyncIterator[LiveServer]:
    app = create_app(settings, clock=clock, run_scheduler=False, freeze_gc=False, **app_kw)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        ws=LeanWebSocketProtocol,
        http=ZeroCopyHttpToolsProtocol,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    server = uvicorn.Server(config)
    # Signal handling belongs to pytest, not to the in-test server.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(app=app, url=f"http://127.0.0.1:{port}", clock=clock, settings=settings)
    finally:
        server.should_exit = True
        await task
