"""A pool's events over HTTP: long-poll and Server-Sent Events, both fed by the event hub.

Cursors (see ``services/retention.py``): ``after=N`` returns events with ``seq > N``; omitted
means from the oldest retained event; a cursor older than the retention answers 410 ``gone``.
Both endpoints send each event as the JSON the hub serialized once; nothing is re-encoded here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query
from fastapi.responses import Response, StreamingResponse

from pooldrop.api.deps import PrincipalDep, RuntimeDep
from pooldrop.errors import PooldropError, Unavailable, ValidationFailed
from pooldrop.services.hub import EventHub, Frame, Subscription, SubscriptionClosed
from pooldrop.services.runtime import Runtime

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


async def _stream(sub: Subscription) -> AsyncIterator[bytes]:
    try:
        yield b"retry: %d\n: connected\n\n" % SSE_RETRY_MS
        while True:
            try:
                frame = await sub.get(wait=HEARTBEAT)
            except SubscriptionClosed:
                return
            except PooldropError as exc:
                yield _sse_error(exc)
                return
            yield b": ping\n\n" if frame is None else frame.render(sse_chunk)
    finally:
        await sub.close()


@router.get("/pools/{pool_id}/events/stream")
async def stream_events(
    pool_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events: ``id:`` = seq, ``event:`` = type, ``data:`` = the event JSON.

    Resumes after ``Last-Event-ID`` (what EventSource sends on reconnect; it wins over
    ``?after=``). Comment heartbeats every 15 s. The stream ends with an ``error`` event when
    the caller's session ends or it leaves the pool. ``?access_token=`` authenticates too.
    """
    if last_event_id is not None and last_event_id.strip():
        try:
            after = int(last_event_id)
        except ValueError:
            raise ValidationFailed("Last-Event-ID must be an event seq (an integer)") from None
        if after < 0:
            raise ValidationFailed("Last-Event-ID must be >= 0")
    sub = await hub_of(rt).subscribe(pool_id, principal, after)
    return StreamingResponse(
        _stream(sub),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
