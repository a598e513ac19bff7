"""The lean uvicorn WebSocket protocol (api/ws_protocol.py): same behaviour, less per socket."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest
import uvicorn

from pooldrop.api.ws_protocol import LeanWebSocketProtocol, _Flag, _Inbox
from pooldrop.clock import FakeClock
from pooldrop.config import Settings
from tests.events.conftest import hub_of, open_ws, record
from tests.support.api import Api
from tests.support.server import live_server


async def test_gateway_works_over_the_lean_protocol(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[LeanWebSocketProtocol] = []

    class Counting(LeanWebSocketProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    real_config = uvicorn.Config

    def config(*args: Any, **kwargs: Any) -> uvicorn.Config:
        return real_config(*args, **{**kwargs, "ws": Counting})

    monkeypatch.setattr(uvicorn, "Config", config)
    quick = settings.model_copy(update={"ws_idle_timeout": 1.5})
    async with live_server(quick, clock) as server, Api(server) as api:
        user = await api.user()
        pool = await api.pool(user)
        async with AsyncExitStack() as stack:
            ws = await open_ws(server, stack, user.token)
            answer = await ws.call("subscribe", pool_id=pool["pool_id"])
            assert answer["op"] == "subscribe"
            assert made and made[0].request is None and made[0].response is None
            await record(server, pool["pool_id"])
            assert [e["seq"] for e in await ws.events(1)] == [1]
            assert (await ws.call("alive"))["op"] == "alive"
            code, _ = await ws.closed_with(within=5)
            assert code == 4408
        await asyncio.sleep(0.05)
        assert hub_of(server).subscriber_count == 0


async def test_inbox_and_flag_behave_like_queue_and_event() -> None:
    inbox = _Inbox()
    assert inbox.empty()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert await getter == 1
    assert inbox.qsize() == 1 and await inbox.get() == 2 and inbox.empty()
    cancelled = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    inbox.put_nowait(3)  # not lost to the cancelled reader
    assert await inbox.get() == 3

    flag = _Flag()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True]
    flag.clear()
    assert not flag.is_set()
