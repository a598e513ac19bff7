"""Uploads land in event-time windows; groups close on the window, on quorum, and late data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from pooldrop.store.models import Event, Group
from tests.conftest import START
from tests.support.api import Api
from tests.support.server import LiveServer
from tests.uploads.conftest import PoolFixture


async def groups_of(server: LiveServer, pool_id: str) -> list[Group]:
    async with server.runtime.read() as s:
        rows = await s.scalars(
            select(Group).where(Group.pool_id == pool_id).order_by(Group.window_start)
        )
        return list(rows.all())


async def event_types(server: LiveServer, pool_id: str) -> list[str]:
    async with server.runtime.read() as s:
        rows = await s.scalars(
            select(Event.type).where(Event.pool_id == pool_id).order_by(Event.seq)
        )
        return list(rows.all())


async def make_pool(api: Api, **settings: Any) -> PoolFixture:
    admin = await api.user()
    p = await api.pool(admin, **settings)
    key = await api.key(admin, p["pool_id"], "contributor")
    return PoolFixture(api=api, admin=admin, pool_id=p["pool_id"], contributor=key)


async def test_group_appears_with_first_upload_and_counts(
    pool: PoolFixture, server: LiveServer
) -> None:
    assert await groups_of(server, pool.pool_id) == []  # empty windows have no group
    k2 = await pool.api.key(pool.admin, pool.pool_id, "contributor", name="k2")
    await pool.upload(b"a" * 10, ts=START + timedelta(seconds=1))
    await pool.upload(b"b" * 20, ts=START + timedelta(seconds=2))
    await pool.upload(b"c" * 30, ts=START + timedelta(seconds=3), who=k2)
    await pool.upload(b"d" * 40, ts=START - timedelta(seconds=30) + timedelta(minutes=1))
    [g] = await groups_of(server, pool.pool_id)
    assert (g.file_count, g.bytes, g.contributors, g.state) == (4, 100, 2, "open")
    assert g.window_start == START and g.window_end == START + timedelta(minutes=1)


async def test_batch_like_offline_files_land_in_their_own_windows(
    api: Api, server: LiveServer
) -> None:
    p = await make_pool(api, window="1m", allowed_lateness="1h")
    for minutes_ago in (50, 30, 10, 0):
        r = await p.upload(b"x", ts=START - timedelta(minutes=minutes_ago))
        assert r.status_code == 201, r.text
    starts = [g.window_start for g in await groups_of(server, p.pool_id)]
    assert starts == [START - timedelta(minutes=m) for m in (50, 30, 10, 0)]


async def test_window_trigger_fires_without_traffic(api: Api, server: LiveServer) -> None:
    p = await make_pool(api, window="1m", allowed_lateness="30s")
    await p.upload(b"x", ts=START)
    server.clock.advance(seconds=60 + 29)
    assert (await server.scheduler.run_once())["close_due_windows"] == 0
    server.clock.advance(seconds=1)
    assert (await server.scheduler.run_once())["close_due_windows"] == 1
    [g] = await groups_of(server, p.pool_id)
    assert g.state == "ready" and g.trigger == "window"
    assert await event_types(server, p.pool_id) == ["upload.stored", "group.ready"]
    assert (await server.scheduler.run_once())["close_due_windows"] == 0  # exactly once


async def test_quorum_trigger(api: Api, server: LiveServer) -> None:
    p = await make_pool(api, window="1h", min_contributors=3)
    keys = [p.contributor] + [
        await api.key(p.admin, p.pool_id, "contributor", name=f"k{i}") for i in range(2)
    ]
    await p.upload(b"1", ts=START, who=keys[0])
    await p.upload(b"2", ts=START, who=keys[0])  # same contributor twice counts once
    await p.upload(b"3", ts=START, who=keys[1])
    [g] = await groups_of(server, p.pool_id)
    assert g.state == "open" and g.contributors == 2
    await p.upload(b"4", ts=START, who=keys[2])
    [g] = await groups_of(server, p.pool_id)
    assert g.state == "ready" and g.trigger == "quorum" and g.file_count == 4
    # The group is frozen: the next upload for that window is late.
    r = await p.upload(b"5", ts=START, who=keys[0])
    assert r.status_code == 409 and r.json()["code"] == "window_closed"


async def test_late_upload_rejected_by_default(api: Api, server: LiveServer) -> None:
    p = await make_pool(api, window="1m")
    server.clock.advance(seconds=90)
    r = await p.upload(b"late", ts=START + timedelta(seconds=5))
    assert r.status_code == 409 and r.json()["code"] == "window_closed"
    assert "closed" in r.json()["detail"]
    assert await groups_of(server, p.pool_id) == []


async def test_late_upload_goes_to_next_open_window(api: Api, server: LiveServer) -> None:
    p = await make_pool(api, window="1m", late_policy="next_open")
    server.clock.advance(seconds=150)  # now = 12:02:30
    r = await p.upload(b"late", ts=START + timedelta(seconds=5))
    assert r.status_code == 201, r.text
    u = r.json()
    assert u["late"] is True
    assert u["ts"] == "2026-03-02T12:00:05Z"
    assert u["window_start"] == "2026-03-02T12:02:00Z"
    on_time = await p.upload(b"now", ts=START + timedelta(seconds=149))
    assert on_time.json()["late"] is False and on_time.json()["group_id"] == u["group_id"]


async def test_late_after_early_close_next_open(api: Api, server: LiveServer) -> None:
    p = await make_pool(api, window="1h", late_policy="next_open", min_contributors=1)
    first = await p.upload(b"a", ts=START)  # quorum of one: the window's group is ready at once
    assert first.status_code == 201
    second = await p.upload(b"b", ts=START + timedelta(seconds=1))
    assert second.status_code == 201
    assert second.json()["late"] is True
    assert second.json()["window_start"] == "2026-03-02T13:00:00Z"


async def test_allowed_lateness_accepts_stragglers(api: Api, server: LiveServer) -> None:
    p = await make_pool(api, window="1m", allowed_lateness="5m")
    server.clock.advance(minutes=4)
    r = await p.upload(b"straggler", ts=START + timedelta(seconds=5))
    assert r.status_code == 201 and r.json()["late"] is False


async def test_changing_lateness_moves_open_groups_trigger(api: Api, server: LiveServer) -> None:
    p = await make_pool(api, window="1m")
    await p.upload(b"x", ts=START)
    r = await p.admin.client.patch(f"/api/v1/pools/{p.pool_id}", json={"allowed_lateness": "10m"})
    assert r.status_code == 200
    server.clock.advance(minutes=5)
    assert (await server.scheduler.run_once())["close_due_windows"] == 0
    server.clock.advance(minutes=6)
    assert (await server.scheduler.run_once())["close_due_windows"] == 1
