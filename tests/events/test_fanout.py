"""One event to many listeners: serialized once, delivered to all; a dead bus only delays."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx

from pooldrop.bus import BusError
from pooldrop.bus.memory import MemoryBus
from pooldrop.clock import FakeClock
from pooldrop.config import Settings
from pooldrop.services import events
from tests.events.conftest import Pool, hub_of, open_sse, open_ws, record
from tests.support.api import Api
from tests.support.server import LiveServer, live_server

SSE_COUNT = 100
WS_COUNT = 100


async def test_one_event_reaches_200_subscribers_serialized_once(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    await record(server, pool.id)  # something in the ring already
    limits = httpx.Limits(max_connections=SSE_COUNT + 10)
    client = await exit_stack.enter_async_context(
        httpx.AsyncClient(
            base_url=server.url, headers=pool.listener.headers, limits=limits, timeout=30
        )
    )
    path = f"/api/v1/pools/{pool.id}/events/stream?after=1"
    streams = await asyncio.gather(*(open_sse(client, path, exit_stack) for _ in range(SSE_COUNT)))
    sockets = await asyncio.gather(
        *(open_ws(server, exit_stack, pool.listener.token) for _ in range(WS_COUNT))
    )
    answers = await asyncio.gather(*(ws.call("subscribe", pool_id=pool.id) for ws in sockets))
    assert {a["op"] for a in answers} == {"subscribe"}
    hub = hub_of(server)
    assert hub.subscriber_count == SSE_COUNT + WS_COUNT
    before = hub.stats.serialized

    await record(server, pool.id, events.RESULT_PUBLISHED, {"result_id": "big"})

    sse_got = await asyncio.gather(*(s.take(1, within=15) for s in streams))
    # WS subscribers with no cursor get the retained backlog (seq 1) first.
    ws_got = await asyncio.gather(*(ws.events(2, within=15) for ws in sockets))
    assert all([e.id for e in got] == [2] for got in sse_got)
    assert all(got[0].data["data"] == {"result_id": "big"} for got in sse_got)
    assert all([e["seq"] for e in got] == [1, 2] for got in ws_got)
    assert hub.stats.serialized - before == 1, "the event must be serialized once per process"
    assert hub.stats.fetches >= 1


class PublishFailsBus(MemoryBus):
    """A bus that accepts subscribers but loses every wake-up, like a broker that is down."""

    async def publish(self, topic: str, payload: bytes) -> None:
        raise BusError(f"bus {self.url} is unreachable (test)")


async def test_bus_outage_only_delays_delivery(settings: Settings, clock: FakeClock) -> None:
    bus = PublishFailsBus("memory://events-outage")
    async with (
        live_server(settings, clock, bus=bus) as server,
        Api(server) as api,
        AsyncExitStack() as stack,
    ):
        admin = await api.user()
        pid = (await api.pool(admin))["pool_id"]
        sse = await open_sse(admin.client, f"/api/v1/pools/{pid}/events/stream", stack)
        ws = await open_ws(server, stack, admin.token)
        await ws.call("subscribe", pool_id=pid)
        await record(server, pid, count=3)
        await record(server, pid, events.RESULT_PUBLISHED)
        # No wake-up arrives; the hub's poll (every 2 s) finds the events in the log.
        assert [e.id for e in await sse.take(4, within=8)] == [1, 2, 3, 4]
        assert [e["seq"] for e in await ws.events(4, within=8)] == [1, 2, 3, 4]
        hub = hub_of(server)
        assert hub.stats.wakeups == 0 and hub.stats.polls >= 1


async def test_event_written_on_one_node_wakes_another(
    settings: Settings, clock: FakeClock
) -> None:
    # Two app instances on one database and one bus, as two replicas behind a load balancer.
    async with (
        live_server(settings, clock) as node_a,
        live_server(settings, clock) as node_b,
        Api(node_a) as api,
        AsyncExitStack() as stack,
    ):
        admin = await api.user()
        pid = (await api.pool(admin))["pool_id"]
        on_b = await open_sse(
            api.anon, f"{node_b.url}/api/v1/pools/{pid}/events/stream", stack, headers=admin.headers
        )
        await record(node_a, pid, events.GROUP_READY)
        assert (await on_b.next(within=5)).id == 1
        assert hub_of(node_b).stats.wakeups >= 1  # node A's commit woke node B's hub
