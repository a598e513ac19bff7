"""Idle subscribers hold no task of their own: heartbeats from the sweeper, eager writers."""

from __future__ import annotations

import asyncio
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
