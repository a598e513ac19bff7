"""The event hub on its own: no gap and no duplicate under concurrent writes, slow subscribers,
the recent-frames ring, access changes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from pooldrop.domain.roles import PoolRole
from pooldrop.errors import Gone, NotFound
from pooldrop.services import events
from pooldrop.services.auth import authenticate
from pooldrop.services.hub import EventHub, Subscription, SubscriptionClosed
from pooldrop.services.principals import Principal
from pooldrop.store.models import Pool as PoolRow
from tests.events.conftest import Pool, hub_of, record
from tests.support.api import Actor
from tests.support.server import LiveServer


async def principal_of(server: LiveServer, actor: Actor) -> Principal:
    async with server.runtime.read() as session:
        return await authenticate(server.runtime, session, actor.token)


async def drain(sub: Subscription, until: int, within: float = 10.0) -> list[int]:
    """Seqs from ``sub`` until one >= ``until`` arrives."""
    seqs: list[int] = []
    async with asyncio.timeout(within):
        async for frame in sub:
            seqs.append(frame.seq)
            if frame.seq >= until:
                return seqs
    return seqs


@pytest.fixture
async def small_hub(server: LiveServer) -> AsyncIterator[EventHub]:
    """A second hub on the same runtime with tiny buffers, so overflow is easy to reach."""
    hub = EventHub(server.runtime, queue_size=5, ring_size=4, page_size=7, poll_interval=0.05)
    await hub.start()
    yield hub
    await hub.stop()


async def test_subscribers_joining_during_writes_miss_nothing_and_repeat_nothing(
    server: LiveServer, pool: Pool
) -> None:
    hub = hub_of(server)
    who = await principal_of(server, pool.listener)
    total = 150
    rng = random.Random(7)

    async def writer() -> None:
        for _ in range(total // 5):
            await record(server, pool.id, count=5)
            await asyncio.sleep(0)

    async def joiner() -> tuple[int, list[int]]:
        await asyncio.sleep(rng.random() * 0.3)
        async with server.runtime.read() as session:
            head = await session.scalar(select(PoolRow.event_seq).where(PoolRow.id == pool.id))
        after = rng.randint(0, head or 0)
        sub = await hub.subscribe(pool.id, who, after)
        try:
            return after, await drain(sub, total)
        finally:
            await sub.close()

    joined = asyncio.gather(*(joiner() for _ in range(12)))
    await writer()
    for after, seqs in await joined:
        assert seqs == list(range(after + 1, total + 1)), after


async def test_slow_subscriber_resyncs_from_the_log(
    server: LiveServer, pool: Pool, small_hub: EventHub
) -> None:
    who = await principal_of(server, pool.listener)
    sub = await small_hub.subscribe(pool.id, who, 0)
    fast = await small_hub.subscribe(pool.id, who, 0)
    for _ in range(8):
        await record(server, pool.id, count=5)
    await small_hub.poll()
    # The slow one holds at most queue_size frames, then switches to reading the database.
    assert sub.pending <= 5
    assert small_hub.stats.resyncs >= 1
    assert await drain(fast, 40) == list(range(1, 41))
    assert await drain(sub, 40) == list(range(1, 41))
    await record(server, pool.id, count=2)
    assert await drain(sub, 42) == [41, 42]
    await sub.close()
    await fast.close()
    assert small_hub.subscriber_count == 0


async def test_recent_cursor_is_served_from_the_ring(server: LiveServer, pool: Pool) -> None:
    hub = hub_of(server)
    who = await principal_of(server, pool.listener)
    watcher = await hub.subscribe(pool.id, who)  # keeps the pool watched
    await record(server, pool.id, count=3)
    assert await drain(watcher, 3) == [1, 2, 3]
    reads, serialized = hub.stats.backlog_reads, hub.stats.serialized
    again = await hub.subscribe(pool.id, who, 1)
    assert await drain(again, 3) == [2, 3]
    assert (hub.stats.backlog_reads, hub.stats.serialized) == (reads, serialized)
    await again.close()
    await watcher.close()


async def test_get_with_wait_returns_none_and_close_ends_iteration(
    server: LiveServer, pool: Pool
) -> None:
    hub = hub_of(server)
    sub = await hub.subscribe(pool.id, await principal_of(server, pool.listener))
    assert await sub.get(wait=0.05) is None
    await sub.close()
    with pytest.raises(SubscriptionClosed):
        await sub.get(wait=0)
    assert [f async for f in sub] == []


async def test_subscribe_checks_membership_and_cursor(server: LiveServer, pool: Pool) -> None:
    hub = hub_of(server)
    with pytest.raises(NotFound):
        await hub.subscribe(pool.id, await principal_of(server, pool.stranger))
    with pytest.raises(NotFound):
        await hub.subscribe("no-such-pool", await principal_of(server, pool.root))
    await record(server, pool.id, count=2)
    server.clock.advance(server.settings.event_retention + 1)
    await server.scheduler.run_once()
    key = Principal(id="k", kind="key", pool_id=pool.id, pool_role=PoolRole.LISTENER)
    with pytest.raises(Gone):
        await hub.subscribe(pool.id, key, 1)
    assert hub.subscriber_count == 0


async def test_member_removed_or_pool_deleted_ends_the_subscription(
    server: LiveServer, pool: Pool
) -> None:
    hub = hub_of(server)
    bob = await hub.subscribe(pool.id, await principal_of(server, pool.bob))
    alice = await hub.subscribe(pool.id, await principal_of(server, pool.alice))
    r = await pool.admin.client.delete(f"/api/v1/pools/{pool.id}/members/{pool.bob.id}")
    assert r.status_code == 204
    assert await hub.check_access() == 1
    with pytest.raises(NotFound):
        await bob.get(wait=1)
    assert await alice.get(wait=0) is None
    assert (await pool.admin.client.delete(f"/api/v1/pools/{pool.id}")).status_code == 204
    await hub.poll()
    with pytest.raises(NotFound):
        await alice.get(wait=1)
    await bob.close()
    await alice.close()


async def test_role_change_changes_visibility(server: LiveServer, pool: Pool) -> None:
    hub = hub_of(server)
    sub = await hub.subscribe(pool.id, await principal_of(server, pool.bob))
    await record(server, pool.id, events.UPLOAD_STORED, visible_to=pool.alice.id)
    r = await pool.admin.client.put(
        f"/api/v1/pools/{pool.id}/members/{pool.bob.id}", json={"role": "admin"}
    )
    assert r.status_code == 200
    assert await hub.check_access() == 0
    await record(server, pool.id, events.UPLOAD_STORED, visible_to=pool.alice.id)
    assert await drain(sub, 2) == [2]
    await sub.close()
