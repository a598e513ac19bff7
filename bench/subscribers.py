"""Thousands of idle event subscribers (WebSocket and SSE) in one client process, for ``fanout``.

The parent talks to each client process over a ``multiprocessing`` pipe:

    child  -> ("connected", {ok, failed, errors, cpu})      once every connection is subscribed
    parent -> ("published", group_id, t0)                   t0 = time.monotonic() before the PUT
    child  -> ("delivered", {latencies, missing, cpu})      after all got it or DELIVERY_WAIT
    parent -> ("stop",)

``time.monotonic()`` is CLOCK_MONOTONIC, one clock for every process on the machine, so a receipt
time in a child minus t0 in the parent is a delivery latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

DELIVERY_WAIT = 30.0
CONNECT_TIMEOUT = 60.0
KEEPALIVE_EVERY = 45.0
RESULT_EVENT = "result.published"


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

    def record(self, event: Any, sse_type: str = "") -> None:
        if not isinstance(event, dict):
            return
        kind = event.get("type") or sse_type
        if kind != RESULT_EVENT:
            return
        data = event.get("data") if isinstance(event.get("data"), dict) else event
        group = str(data.get("group_id", "*")) if isinstance(data, dict) else "*"
        self.times[group].append(time.monotonic())
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


async def _sse(plan: Plan, token: str, receipts: Receipts, ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(plan.host, plan.port)
    try:
        writer.write(
            f"GET /api/v1/pools/{plan.pool_id}/events/stream?access_token={token} HTTP/1.1\r\n"
            f"Host: {plan.host}:{plan.port}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        status = await reader.readline()
        if b" 200 " not in status:
            raise ConnectionError(f"SSE answered {status.decode(errors='replace').strip()}")
        chunked = False
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        ready.set()
        buffer = ""
        while True:
            if chunked:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    return
                data = await reader.readexactly(size + 2)
                text = data[:-2].decode()
            else:
                raw = await reader.read(65536)
                if not raw:
                    return
                text = raw.decode()
            buffer += text.replace("\r\n", "\n")
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                kind, payload = parse_sse_block(block)
                if payload:
                    with contextlib.suppress(ValueError):
                        receipts.record(json.loads(payload), kind)
    finally:
        writer.close()


async def _ws_call(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    while True:
        reply = json.loads(await ws.recv())
        if reply.get("rid") == message["rid"]:
            if reply.get("op") == "error" or reply.get("error"):
                raise ConnectionError(f"WebSocket {message['op']} refused: {reply}")
            result: dict[str, Any] = reply
            return result


async def _ws(plan: Plan, token: str, receipts: Receipts, ready: asyncio.Event) -> None:
    uri = f"ws://{plan.host}:{plan.port}/api/v1/ws"
    async with connect(
        uri, compression=None, ping_interval=None, max_size=1 << 20, open_timeout=CONNECT_TIMEOUT
    ) as ws:
        await _ws_call(ws, {"op": "connect", "rid": 1, "access_token": token})
        await _ws_call(ws, {"op": "subscribe", "rid": 2, "pool_id": plan.pool_id})
        ready.set()

        async def keepalive() -> None:
            # The server closes a WebSocket that says nothing for a while; a connect of
            # thousands of clients can take longer than that.
            rid = 3
            while True:
                await asyncio.sleep(KEEPALIVE_EVERY * (0.5 + random.random()))
                rid += 1
                await ws.send(json.dumps({"op": "alive", "rid": rid}))

        ticker = asyncio.create_task(keepalive())
        try:
            async for message in ws:
                with contextlib.suppress(ValueError):
                    doc = json.loads(message)
                    if isinstance(doc, dict) and doc.get("op") == "event":
                        receipts.record(doc.get("event"))
        finally:
            ticker.cancel()


Opener = Callable[[Plan, str, Receipts, asyncio.Event], Coroutine[Any, Any, None]]


async def _open_all(
    plan: Plan, receipts: Receipts
) -> tuple[list[asyncio.Task[None]], int, list[str]]:
    gate = asyncio.Semaphore(plan.parallel_connects)
    errors: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def start(opener: Opener, token: str) -> None:
        ready = asyncio.Event()
        async with gate:
            task = asyncio.create_task(opener(plan, token, receipts, ready))
            waiter = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait(
                {task, waiter}, timeout=CONNECT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if waiter in done:
                tasks.append(task)
                return
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            exc = task.exception() if task.done() and not task.cancelled() else None
            errors.append(repr(exc) if exc else "timed out")

    ws: Opener = _ws
    sse: Opener = _sse
    openers = [ws] * plan.websockets + [sse] * plan.sse
    random.shuffle(openers)
    await asyncio.gather(
        *(start(o, plan.tokens[i % len(plan.tokens)]) for i, o in enumerate(openers))
    )
    return tasks, len(tasks), errors


async def _serve(plan: Plan, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    receipts = Receipts()
    tasks, ok, errors = await _open_all(plan, receipts)
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
            alive = sum(1 for t in tasks if not t.done())
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
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def child_main(plan: Plan, pipe: Connection) -> None:
    """Entry point of a client process (spawned by the ``fanout`` scenario)."""
    try:
        asyncio.run(_serve(plan, pipe))
    except Exception as exc:  # reported to the parent rather than lost in a child's stderr
        with contextlib.suppress(OSError):
            pipe.send(("error", repr(exc)))
    finally:
        pipe.close()
