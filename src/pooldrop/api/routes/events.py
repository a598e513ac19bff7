"""A pool's events over HTTP: long-poll and Server-Sent Events, both fed by the event hub.

Cursors (see ``services/retention.py``): ``after=N`` returns events with ``seq > N``; omitted
means from the oldest retained event; a cursor older than the retention answers 410 ``gone``.
Both endpoints send each event as the JSON the hub serialized once; nothing is re-encoded here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Annotated, Any
from urllib.parse import unquote

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from pooldrop.api.deps import (
    PrincipalDep,
    RuntimeDep,
    authenticate_credential,
    bearer_credential,
    runtime,
)
from pooldrop.api.eager import run_eagerly
from pooldrop.api.problems import error_response, problem
from pooldrop.api.sweeper import sweeper
from pooldrop.domain.validation import parse_count
from pooldrop.errors import PooldropError, Unavailable
from pooldrop.services.hub import EventHub, Frame, Subscription, SubscriptionClosed
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime

log = logging.getLogger("pooldrop.events")
router = APIRouter(prefix="/api/v1", tags=["events"])

MAX_WAIT = 60.0
"""Longest a long-poll waits, seconds (larger ``wait`` values are capped)."""
HEARTBEAT = 15.0
"""Seconds between SSE comment lines when nothing happens (keeps proxies from closing)."""
SSE_RETRY_MS = 2000
"""Reconnection delay suggested to EventSource clients."""


def hub_of(rt: Runtime) -> EventHub:
    if rt.hub is None:
        raise Unavailable("the event hub is not running")
    return rt.hub


@router.get("/pools/{pool_id}/events")
async def poll_events(
    pool_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    after: Annotated[int | None, Query(ge=0)] = None,
    wait: Annotated[float, Query(ge=0)] = 0.0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """``{events: [...], next}``: events after the cursor, at once if there are any, else the
    first to arrive within ``wait`` seconds (at most 60), else none.

    Send ``next`` as ``after`` on the following call; it moves past events this caller may not
    see, so a quiet pool is not re-scanned. 410 ``gone`` if ``after`` is older than retention.
    """
    sub = await hub_of(rt).subscribe(pool_id, principal, after)
    frames: list[Frame] = []
    try:
        first = await sub.get(wait=min(wait, MAX_WAIT))
        if first is not None:
            frames.append(first)
            while len(frames) < limit:
                more = await sub.get(wait=0)
                if more is None:
                    break
                frames.append(more)
        # At least the last frame's seq; further when the rest of the page was not visible.
        cursor = sub.cursor
    finally:
        await sub.close()
    body = b'{"events":[' + b",".join(f.payload for f in frames) + b'],"next":%d}' % cursor
    return Response(body, media_type="application/json")


def sse_chunk(frame: Frame) -> bytes:
    """One SSE message; the payload is single-line JSON, so one ``data:`` line suffices."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (frame.seq, frame.type.encode(), frame.payload)


def _sse_error(exc: PooldropError) -> bytes:
    # A problem-like message, then the stream ends: the client reconnects or gives up.
    body = orjson.dumps({"status": exc.status, "code": exc.code, "detail": exc.detail})
    return b"event: error\ndata: %s\n\n" % body


_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class EventStream(Response):
    """The SSE response: the hub's frames as they come, a comment every ``HEARTBEAT`` seconds.

    An idle stream holds no task of its own: the ASGI task waits for the client to go away, the
    subscription calls back when it has frames (a writer runs until they are sent), and the
    loop's sweeper says when a heartbeat is due. Starlette's ``StreamingResponse`` would park two
    tasks, a task group and a generator per stream: a third of an idle stream's memory.
    """

    media_type = "text/event-stream"

    def __init__(self, sub: Subscription) -> None:
        # No body and so no Content-Length: Response.__init__ would announce an empty one.
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_SSE_HEADERS)
        self.sub = sub
        self._send: Send | None = None
        self._writing = False
        self._writer: asyncio.Task[None] | None = None  # once a writer had to wait
        self._reader: asyncio.Task[Any] | None = None
        self._last_write = 0.0
        self._ping_due = False
        self._ended = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.sub
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send(
                {
                    "type": "http.response.body",
                    "body": b"retry: %d\n: connected\n\n" % SSE_RETRY_MS,
                    "more_body": True,
                }
            )
            self._send = send
            self._reader = asyncio.current_task()
            self._last_write = asyncio.get_running_loop().time()
            sweeper().add(self)
            sub.listener = self._kick
            self._kick()  # the backlog, if any
            await self._until_disconnect(receive)
        finally:
            self._reader = None
            sub.listener = None
            sweeper().discard(self)
            writer = self._writer
            if writer is not None and not writer.done():
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            await sub.close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _until_disconnect(self, receive: Receive) -> None:
        try:
            while not self._ended:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
        except asyncio.CancelledError:
            if not self._ended or self._reader is None:
                raise
            # The writer ended the stream (see _end), not the server.
            self._reader.uncancel()

    def _end(self) -> None:
        """Finish the response from the writer: wake the ASGI task out of ``receive``."""
        self._ended = True
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task() and not reader.done():
            reader.cancel()

    def tick(self, now: float) -> None:
        """The heartbeat, checked by the loop's sweeper."""
        if now - self._last_write >= HEARTBEAT and not self._ping_due:
            self._ping_due = True
            self._kick()

    def _kick(self) -> None:
        if not self._writing and not self._ended:
            self._writing = True
            self._writer = run_eagerly(self._write(), "sse-push")

    async def _write(self) -> None:
        sub, send = self.sub, self._send
        assert send is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    frame = await sub.get(wait=0)
                except SubscriptionClosed:
                    self._end()
                    return
                except PooldropError as exc:
                    await send(
                        {"type": "http.response.body", "body": _sse_error(exc), "more_body": True}
                    )
                    self._end()
                    return
                if frame is not None:
                    chunk = frame.render(sse_chunk)
                elif self._ping_due:
                    chunk = b": ping\n\n"
                else:
                    # No await between the empty get and this: the next offer starts a writer.
                    self._writing = False
                    return
                self._ping_due = False
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self._last_write = loop.time()
        except OSError:
            self._end()


@router.get("/pools/{pool_id}/events/stream")
async def stream_events(
    pool_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventStream:
    """Server-Sent Events: ``id:`` = seq, ``event:`` = type, ``data:`` = the event JSON.

    Resumes after ``Last-Event-ID`` (what EventSource sends on reconnect; it wins over
    ``?after=``). Comment heartbeats every 15 s. The stream ends with an ``error`` event when
    the caller's session ends or it leaves the pool. ``?access_token=`` authenticates too.
    """
    # Served by `serve_stream` below (see api/app.py); this route documents it and serves an
    # app mounted without pooldrop's front door.
    return await open_stream(rt, principal, pool_id, after, last_event_id)


async def open_stream(
    rt: Runtime, principal: Principal, pool_id: str, after: int | None, last_event_id: str | None
) -> EventStream:
    if last_event_id is not None and last_event_id.strip():
        after = parse_count(last_event_id, "Last-Event-ID")
    return EventStream(await hub_of(rt).subscribe(pool_id, principal, after))


STREAM_PATH = re.compile(r"/api/v1/pools/(?P<pool_id>[^/]+)/events/stream")


async def serve_stream(scope: Scope, receive: Receive, send: Send, pool_id: str) -> None:
    """``GET .../events/stream`` as a bare ASGI app, the same as the route above.

    An open stream lives as long as its client: FastAPI's routing, exit stacks and exception
    middleware stayed alive with each one and were half of an idle stream's memory (about 11 of
    24 KB). Errors are answered as the app would answer them.
    """
    request = Request(scope, receive)
    after = request.query_params.get("after")
    response: Response
    try:
        rt = runtime(request)
        principal = await authenticate_credential(rt, bearer_credential(request))
        response = await open_stream(
            rt,
            principal,
            unquote(pool_id),
            None if after is None else parse_count(after, "after"),
            request.headers.get("last-event-id"),
        )
    except PooldropError as exc:
        response = error_response(exc)
    except Exception:
        log.exception("unhandled error opening an event stream")
        response = problem(
            500, "internal_error", "Internal error", "the server failed; see its log"
        )
    await response(scope, receive, send)
