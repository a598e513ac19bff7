"""The ASGI application: `create_app(settings)` builds everything in the lifespan; no I/O before."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from pooldrop import __version__, web
from pooldrop.api import problems, ws
from pooldrop.api.gc_tuning import tune_gc
from pooldrop.api.routes import (
    admin,
    auth,
    batches,
    events,
    groups,
    health,
    pools,
    results,
    tus,
    uploads,
    webhooks,
)
from pooldrop.blobs import BlobStore
from pooldrop.bus import Bus
from pooldrop.clock import Clock
from pooldrop.config import Settings
from pooldrop.services.caches import listen_for_invalidations
from pooldrop.services.hub import EventHub
from pooldrop.services.runtime import start_runtime, stop_runtime
from pooldrop.services.scheduler import Scheduler, default_jobs


class _App(FastAPI):
    """FastAPI, except that the two long-lived endpoints of a fan-out (the WebSocket gateway
    and the SSE stream) are called directly.

    Each layer of the middleware stack and of FastAPI's routing keeps objects alive for as long
    as its connection lives: with thousands of idle subscribers they were about half of an SSE
    stream's memory and a sixth of a WebSocket's. Both endpoints answer errors themselves (the
    gateway in its own protocol, the stream as problem documents); their routes stay registered
    for the OpenAPI document.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket" and scope["path"] == ws.GATEWAY_PATH:
            scope["app"] = self
            await ws.gateway(WebSocket(scope, receive, send))
            return
        if kind == "http" and scope["method"] == "GET":
            stream = events.STREAM_PATH.fullmatch(scope["path"])
            if stream is not None:
                scope["app"] = self
                await events.serve_stream(scope, receive, send, stream["pool_id"])
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    blobs: BlobStore | None = None,
    bus: Bus | None = None,
    run_scheduler: bool = True,
    freeze_gc: bool = True,
    migrate: bool = True,
) -> FastAPI:
    """Build the app. Backends are opened when it starts, not here.

    Tests inject a fake ``clock``, a ``blobs`` store or a ``bus``, and may turn the background
    scheduler off to drive ``app.state.scheduler.run_once()`` themselves, and keep the garbage
    collector as it is (``freeze_gc``) when many apps share one process. ``migrate=False`` skips
    the schema upgrade at start-up, for a caller that has just run it (``pooldrop serve``).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await start_runtime(settings, clock=clock, blobs=blobs, bus=bus, migrate=migrate)
        app.state.runtime = rt
        hub = rt.hub = EventHub(rt)
        await hub.start()
        invalidations = (
            asyncio.create_task(listen_for_invalidations(rt), name="cache-invalidations")
            if rt.bus.distributed
            else None
        )
        scheduler = Scheduler(rt, default_jobs())
        app.state.scheduler = scheduler
        if run_scheduler:
            scheduler.start()
        if freeze_gc:
            # Start-up is over: what exists now lives as long as the process (api/gc_tuning.py).
            tune_gc()
        try:
            yield
        finally:
            if invalidations is not None:
                invalidations.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await invalidations
            await scheduler.stop()
            await hub.stop()
            await stop_runtime(rt)

    app = _App(
        title="pooldrop",
        version=__version__,
        summary="File drop box for pools of client applications.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    problems.install(app)
    for module in (
        health,
        auth,
        pools,
        uploads,
        batches,
        tus,
        admin,
        events,
        webhooks,
        ws,
        groups,
        results,
    ):
        app.include_router(module.router)
    app.include_router(auth.legacy)
    web.mount(app)
    return app
