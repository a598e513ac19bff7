"""Idle subscribers hold no task of their own: heartbeats from the sweeper, eager writers."""

from __future__ import annotations

import asyncio
import socket
from contextlib import AsyncExitStack

import pytest

from pooldrop.api import sweeper
from pooldrop.api.eager import run_eagerly
from pooldrop.api.routes import events as sse_route
from tests.events.conftest import Pool, eventually, hub_of, open_sse, open_ws, record
from tests.support.server import LiveServer


async def test_quiet_stream_gets_heartbeats_and_still_events(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse_route, "HEARTBEAT", 0.2)
    monkeypatch.setattr(sweeper, "TICK", 0.05)
    sse = await open_sse(pool.listener.client, f"/api/v1/pools/{pool.id}/events/stream", exit_stack)
    await eventually(lambda: hub_of(server).subscriber_count == 1, "the stream to subscribe")
    # Comments are collected while reading towards the next event.
    reading = asyncio.create_task(sse.next(within=5))
    await eventually(lambda: sse.comments.count("ping") >= 2, "two heartbeats", within=3)
    await record(server, pool.id)
    assert (await reading).id == 1
    assert sse.comments[0] == "connected"


async def test_idle_subscribers_park_no_task(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    def ours() -> set[str]:
        # Tasks running pooldrop code (the ASGI tasks run uvicorn's; clients run their own).
        return {
            t.get_name()
            for t in asyncio.all_tasks()
            if "pooldrop" in getattr(t.get_coro(), "__qualname__", "")
            or "pooldrop" in str(getattr(getattr(t.get_coro(), "cr_code", None), "co_filename", ""))
        }

    before = ours()
    assert "hub-poll" in before  # the filter does see pooldrop's tasks
    for _ in range(5):
        ws = await open_ws(server, exit_stack, pool.listener.token)
        await ws.call("subscribe", pool_id=pool.id)
        await open_sse(pool.alice.client, f"/api/v1/pools/{pool.id}/events/stream", exit_stack)
    await eventually(lambda: hub_of(server).subscriber_count == 10, "ten subscribers")
    assert ours() - before <= {"connection-sweeper"}
    await record(server, pool.id)
    assert (await ws.events(1))[0]["seq"] == 1
    await asyncio.sleep(0.1)
    assert ours() - before <= {"connection-sweeper"}, "writers end once their frames are sent"


async def test_run_eagerly_finishes_in_place_or_carries_on_in_a_task() -> None:
    steps: list[str] = []

    async def quick() -> None:
        steps.append("quick")

    assert run_eagerly(quick(), "quick") is None
    assert steps == ["quick"]

    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def slow() -> None:
        steps.append("slow started")
        steps.append(await gate)

    task = run_eagerly(slow(), "slow")
    assert task is not None and steps[-1] == "slow started"
    gate.set_result("slow resumed")
    await task
    assert steps[-1] == "slow resumed"


async def test_run_eagerly_passes_cancellation_and_logs_early_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = run_eagerly(waits_forever(), "forever")
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]

    async def broken() -> None:
        raise ValueError("boom")

    assert run_eagerly(broken(), "broken") is None
    assert "broken failed" in caplog.text


async def test_a_stalled_reader_does_not_hold_up_the_others(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    """A subscriber that stops reading fills its socket; the others still get every event."""
    path = f"/api/v1/pools/{pool.id}/events/stream"
    host, port = server.url.removeprefix("http://").split(":")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few events
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=raw)
    exit_stack.callback(writer.close)
    writer.write(
        f"GET {path}?access_token={pool.listener.token} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    transport = writer.transport
    assert isinstance(transport, asyncio.ReadTransport)
    transport.pause_reading()  # from now on it reads nothing
    live = await open_sse(pool.listener.client, path, exit_stack)
    await eventually(lambda: hub_of(server).subscriber_count == 2, "both streams to subscribe")

    # 12.5 MB: more than the kernel's socket buffers take (~4 MB) plus the 1,000 frames the hub
    # lets a subscriber have waiting.
    seqs = await record(server, pool.id, data={"blob": "x" * 5_000}, count=2_500)
    got = [(await live.next(within=10)).id for _ in seqs]
    assert got == seqs
    # ...while the stalled one really fell behind: its queue overflowed into a database resync.
    assert hub_of(server).stats.resyncs >= 1
