"""Thousands of idle event subscribers (WebSocket and SSE) in one client process, for ``fanout``.

The parent talks to each client process over a ``multiprocessing`` pipe:

    child  -> ("connected", {ok, failed, errors, cpu})      once every connection is subscribed
    parent -> ("published", group_id, t0)                   t0 = time.monotonic() before the PUT
    child  -> ("delivered", {latencies, missing, cpu})      after all got it or DELIVERY_WAIT
    parent -> ("stop",)

``time.monotonic()`` is CLOCK_MONOTONIC, one clock for every process on the machine, so a receipt
time in a child minus t0 in the parent is a delivery latency.

The subscribers are bare asyncio protocols on uvloop, not a WebSocket library: with 10,000
connections on a two-core machine a library client spent twice the server's CPU per delivery,
and the figure measured the clients. What a subscriber still does per pushed message is what
any client must: read the socket, take the frame (WebSocket) or chunk (SSE) apart, and parse the
JSON of a ``result.published`` to see which group it is for. The receipt time is taken when the
bytes arrive, before that parsing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import struct
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

DELIVERY_WAIT = 30.0
CONNECT_TIMEOUT = 60.0
KEEPALIVE_EVERY = 45.0
RESULT_EVENT = "result.published"
_RESULT_MARK = RESULT_EVENT.encode()


@dataclass(frozen=True)
class Plan:
    """What one client process opens."""

    host: str
    port: int
    pool_id: str
    tokens: list[str]
    websockets: int
    sse: int
    parallel_connects: int = 64


@dataclass
class Receipts:
    """When each ``result.published`` arrived, per group, across this process's connections."""

    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, event: Any, at: float, sse_type: str = "") -> None:
        if not isinstance(event, dict):
            return
        kind = event.get("type") or sse_type
        if kind != RESULT_EVENT:
            return
        data = event.get("data") if isinstance(event.get("data"), dict) else event
        group = str(data.get("group_id", "*")) if isinstance(data, dict) else "*"
        self.times[group].append(at)
        self.changed.set()


def parse_sse_block(block: str) -> tuple[str, str]:
    """(event type, data) of one SSE event block; comments and ids are ignored."""
    kind, data = "", []
    for line in block.splitlines():
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return kind, "\n".join(data)


def _split_head(buffer: bytearray) -> tuple[int, dict[bytes, bytes]] | None:
    """(status, lower-cased headers) of an HTTP response head at the start of ``buffer``, which
    loses it; None until the whole head arrived."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    del buffer[: end + 4]
    parts = lines[0].split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


class _Subscriber(asyncio.Protocol):
    """Common state: the transport, readiness, and how the connection ended."""

    def __init__(self, plan: Plan, token: str, receipts: Receipts) -> None:
        self.plan = plan
        self.token = token
        self.receipts = receipts
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.send_request()

    def send_request(self) -> None:
        raise NotImplementedError

    def fail(self, error: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed before subscribing"))
        if not self.closed.done():
            self.closed.set_result(None)


class SseSubscriber(_Subscriber):
    """``GET .../events/stream``: a chunked ``text/event-stream`` response, read event by event."""

    def __init__(self, plan: Plan, token: str, receipts: Receipts) -> None:
        super().__init__(plan, token, receipts)
        self.head_done = False
        self.chunked = False
        self.chunk_left = 0  # bytes of the current chunk still to come (then its CRLF)
        self.events = bytearray()  # de-chunked stream text not yet split into events

    def send_request(self) -> None:
        assert self.transport is not None
        p = self.plan
        self.transport.write(
            f"GET /api/v1/pools/{p.pool_id}/events/stream?access_token={self.token} HTTP/1.1\r\n"
            f"Host: {p.host}:{p.port}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        at = time.monotonic()
        self.buffer += data
        if not self.head_done:
            head = _split_head(self.buffer)
            if head is None:
                return
            status, headers = head
            if status != 200:
                self.fail(ConnectionError(f"SSE answered {status}"))
                return
            self.head_done = True
            self.chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
            self.ready.set_result(None)
        if self.chunked:
            self._dechunk()
        else:
            self.events += self.buffer
            self.buffer.clear()
        self._split_events(at)

    def _dechunk(self) -> None:
        buf = self.buffer
        while buf:
            if self.chunk_left:
                take = min(self.chunk_left, len(buf))
                self.events += buf[:take]
                del buf[:take]
                self.chunk_left -= take
                if self.chunk_left:
                    return
                self.chunk_left = -2  # the chunk's trailing CRLF
            if self.chunk_left < 0:
                if len(buf) < -self.chunk_left:
                    return
                del buf[: -self.chunk_left]
                self.chunk_left = 0
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                return
            size = int(bytes(buf[:end]).split(b";")[0], 16)
            del buf[: end + 2]
            if size == 0:
                if self.transport is not None:
                    self.transport.close()
                return
            self.chunk_left = size

    def _split_events(self, at: float) -> None:
        while True:
            end = self.events.find(b"\n\n")
            if end < 0:
                return
            block = bytes(self.events[:end])
            del self.events[: end + 2]
            if _RESULT_MARK not in block:
                continue  # comments, heartbeats and other event types
            kind, payload = parse_sse_block(block.decode())
            if payload:
                with contextlib.suppress(ValueError):
                    self.receipts.record(json.loads(payload), at, kind)


class WsSubscriber(_Subscriber):
    """``/api/v1/ws``: RFC 6455 by hand (client frames masked), ``connect`` then ``subscribe``."""

    def __init__(self, plan: Plan, token: str, receipts: Receipts) -> None:
        super().__init__(plan, token, receipts)
        self.upgraded = False
        self.rid = 0
        self.fragments = bytearray()

    def send_request(self) -> None:
        assert self.transport is not None
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            f"GET /api/v1/ws HTTP/1.1\r\nHost: {self.plan.host}:{self.plan.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def send_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(head + mask + masked)

    def call(self, op: str, **fields: Any) -> None:
        self.rid += 1
        self.send_frame(0x1, json.dumps({"op": op, "rid": self.rid, **fields}).encode())

    def data_received(self, data: bytes) -> None:
        at = time.monotonic()
        self.buffer += data
        if not self.upgraded:
            head = _split_head(self.buffer)
            if head is None:
                return
            if head[0] != 101:
                self.fail(ConnectionError(f"WebSocket upgrade answered {head[0]}"))
                return
            self.upgraded = True
            self.call("connect", access_token=self.token)
        self._frames(at)

    def _frames(self, at: float) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            first, second = buf[0], buf[1]
            n, offset = second & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, offset = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, offset = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < offset + n:
                return
            payload = bytes(buf[offset : offset + n])  # a server's frames are not masked
            del buf[: offset + n]
            opcode = first & 0x0F
            if opcode == 0x9:
                self.send_frame(0xA, payload)  # the server closes sockets that miss pongs
            elif opcode == 0x8:
                if self.transport is not None:
                    self.transport.close()
                return
            elif opcode in (0x0, 0x1):
                self.fragments += payload
                if first & 0x80:
                    message = bytes(self.fragments)
                    self.fragments.clear()
                    self._message(message, at)

    def _message(self, message: bytes, at: float) -> None:
        if self.ready.done():
            if _RESULT_MARK in message:
                with contextlib.suppress(ValueError):
                    doc = json.loads(message)
                    if isinstance(doc, dict) and doc.get("op") == "event":
                        self.receipts.record(doc.get("event"), at)
            return
        with contextlib.suppress(ValueError):
            reply = json.loads(message)
            if not isinstance(reply, dict) or reply.get("rid") != self.rid:
                return  # e.g. a backlog event pushed right after the subscribe answer
            if reply.get("op") == "error" or reply.get("error"):
                self.fail(ConnectionError(f"WebSocket call {self.rid} refused: {reply}"))
            elif self.rid == 1:
                self.call("subscribe", pool_id=self.plan.pool_id)
            else:
                self.ready.set_result(None)

    def alive(self) -> None:
        self.call("alive")


Opener = Callable[[Plan, str, Receipts], _Subscriber]


async def _keepalive(subscribers: list[WsSubscriber]) -> None:
    # The server closes a WebSocket that says nothing for a while; spread the "alive" frames
    # over the interval instead of sending 5,000 at once.
    step = KEEPALIVE_EVERY / max(1, len(subscribers))
    while True:
        for sub in subscribers:
            sub.alive()
            await asyncio.sleep(step)


async def _open_all(plan: Plan, receipts: Receipts) -> tuple[list[_Subscriber], list[str]]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(plan.parallel_connects)
    errors: list[str] = []
    opened: list[_Subscriber] = []

    async def start(opener: Opener, token: str) -> None:
        async with gate:
            sub = opener(plan, token, receipts)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await loop.create_connection(lambda: sub, plan.host, plan.port)
                    await sub.ready
            except (OSError, ConnectionError, TimeoutError) as exc:
                errors.append(repr(exc) if str(exc) else "timed out")
                if sub.transport is not None:
                    sub.transport.close()
                return
            opened.append(sub)

    openers: list[Opener] = [WsSubscriber] * plan.websockets + [SseSubscriber] * plan.sse
    random.shuffle(openers)
    await asyncio.gather(
        *(start(o, plan.tokens[i % len(plan.tokens)]) for i, o in enumerate(openers))
    )
    return opened, errors


async def _serve(plan: Plan, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    receipts = Receipts()
    subs, errors = await _open_all(plan, receipts)
    ok = len(subs)
    ticker = asyncio.create_task(_keepalive([s for s in subs if isinstance(s, WsSubscriber)]))
    pipe.send(
        (
            "connected",
            {"ok": ok, "failed": len(errors), "errors": errors[:5], "cpu": time.process_time()},
        )
    )
    try:
        while True:
            message = await loop.run_in_executor(None, pipe.recv)
            if message[0] == "stop":
                return
            _, group_id, t0 = message
            deadline = t0 + DELIVERY_WAIT
            alive = sum(1 for s in subs if not s.closed.done())
            while len(receipts.times.get(group_id, [])) < alive and time.monotonic() < deadline:
                receipts.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(receipts.changed.wait(), deadline - time.monotonic())
            got = receipts.times.get(group_id, []) or receipts.times.get("*", [])
            latencies = [t - t0 for t in got]
            pipe.send(
                (
                    "delivered",
                    {
                        "latencies": latencies,
                        "missing": max(0, ok - len(latencies)),
                        "dropped": ok - alive,
                        "cpu": time.process_time(),
                    },
                )
            )
    finally:
        ticker.cancel()
        for sub in subs:
            if sub.transport is not None:
                sub.transport.close()


def child_main(plan: Plan, pipe: Connection) -> None:
    """Entry point of a client process (spawned by the ``fanout`` scenario)."""
    try:
        import uvloop

        uvloop.run(_serve(plan, pipe))
    except Exception as exc:  # reported to the parent rather than lost in a child's stderr
        with contextlib.suppress(OSError):
            pipe.send(("error", repr(exc)))
    finally:
        pipe.close()
