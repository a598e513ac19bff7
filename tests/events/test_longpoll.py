"""GET /api/v1/pools/{pool_id}/events: backlog, long-poll, cursors, retention, visibility."""

from __future__ import annotations

import asyncio
import time

from pooldrop.services import events
from tests.events.conftest import Pool, eventually, hub_of, record
from tests.support.api import Api
from tests.support.server import LiveServer


def _path(pool: Pool) -> str:
    return f"/api/v1/pools/{pool.id}/events"


async def test_backlog_is_returned_at_once(server: LiveServer, pool: Pool) -> None:
    await record(server, pool.id, count=3)
    started = time.monotonic()
    r = await pool.listener.client.get(_path(pool), params={"after": 0, "wait": 30})
    assert time.monotonic() - started < 5
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert [e["seq"] for e in body["events"]] == [1, 2, 3] and body["next"] == 3
    first = body["events"][0]
    assert first["pool_id"] == pool.id and first["type"] == "group.ready"
    assert first["data"] == {"n": 0} and first["at"].endswith("Z")
    r = await pool.listener.client.get(_path(pool), params={"after": 1, "limit": 1})
    assert [e["seq"] for e in r.json()["events"]] == [2] and r.json()["next"] == 2
    # No cursor: from the oldest retained event.
    r = await pool.listener.client.get(_path(pool))
    assert [e["seq"] for e in r.json()["events"]] == [1, 2, 3]


async def test_long_poll_waits_and_wakes_on_a_new_event(server: LiveServer, pool: Pool) -> None:
    await record(server, pool.id)
    hub = hub_of(server)
    waiting = asyncio.create_task(
        pool.listener.client.get(_path(pool), params={"after": 1, "wait": 20})
    )
    await eventually(lambda: hub.subscriber_count == 1, "the long-poll to subscribe")
    await asyncio.sleep(0.05)
    assert not waiting.done()
    started = time.monotonic()
    await record(server, pool.id, events.RESULT_PUBLISHED, {"result_id": "r1"})
    r = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 2
    body = r.json()
    assert [(e["seq"], e["type"]) for e in body["events"]] == [(2, "result.published")]
    assert body["next"] == 2
    await eventually(lambda: hub.subscriber_count == 0, "the long-poll to unsubscribe")


async def test_long_poll_times_out_empty(server: LiveServer, pool: Pool) -> None:
    await record(server, pool.id, count=2)
    started = time.monotonic()
    r = await pool.listener.client.get(_path(pool), params={"after": 2, "wait": 0.3})
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3
    assert r.json() == {"events": [], "next": 2}
    r = await pool.listener.client.get(_path(pool), params={"after": 2})
    assert r.json() == {"events": [], "next": 2}


async def test_wait_is_capped_and_validated(pool: Pool) -> None:
    for bad in ({"after": -1}, {"wait": -1}, {"limit": 0}, {"limit": 5000}, {"after": "x"}):
        r = await pool.listener.client.get(_path(pool), params=bad)
        assert r.status_code == 422 and r.json()["code"] == "validation_error", bad


async def test_cursor_catch_up_gets_every_event_once_in_order(
    server: LiveServer, pool: Pool
) -> None:
    await record(server, pool.id, count=120)
    seen: list[int] = []
    cursor = 0
    writer_done = False

    async def writer() -> None:
        nonlocal writer_done
        for _ in range(6):
            await record(server, pool.id, count=10)
            await asyncio.sleep(0.01)
        writer_done = True

    task = asyncio.create_task(writer())
    while True:
        r = await pool.listener.client.get(_path(pool), params={"after": cursor, "limit": 37})
        body = r.json()
        seen += [e["seq"] for e in body["events"]]
        assert body["next"] >= cursor
        cursor = body["next"]
        if not body["events"] and writer_done:
            break
    await task
    assert seen == list(range(1, 181))


async def test_cursor_older_than_retention_is_gone(
    api: Api, server: LiveServer, pool: Pool
) -> None:
    # A key, not a user: moving the clock by the retention also expires access tokens.
    app = await api.key(pool.admin, pool.id, "listener")
    await record(server, pool.id, count=3)
    server.clock.advance(server.settings.event_retention + 1)
    await record(server, pool.id, count=2)  # seq 4, 5: recent
    done = await server.scheduler.run_once()
    assert done["purge_expired_events"] == 3
    for after in (0, 1, 2):
        r = await app.client.get(_path(pool), params={"after": after})
        assert r.status_code == 410, after
        problem = r.json()
        assert problem["code"] == "gone" and problem["oldest_seq"] == 4
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await app.client.get(_path(pool), params={"after": 3})
    assert [e["seq"] for e in r.json()["events"]] == [4, 5]
    r = await app.client.get(_path(pool))
    assert [e["seq"] for e in r.json()["events"]] == [4, 5]
    # Everything purged: only a cursor at the head is still valid.
    server.clock.advance(server.settings.event_retention + 1)
    assert (await server.scheduler.run_once())["purge_expired_events"] == 2
    assert (await app.client.get(_path(pool), params={"after": 4})).status_code == 410
    r = await app.client.get(_path(pool), params={"after": 5})
    assert r.json() == {"events": [], "next": 5}
    assert (await app.client.get(_path(pool))).json() == {"events": [], "next": 5}


async def test_private_events_reach_only_their_principal_and_admins(
    server: LiveServer, pool: Pool
) -> None:
    await record(server, pool.id, events.GROUP_READY)
    await record(server, pool.id, events.UPLOAD_STORED, {"u": 1}, visible_to=pool.alice.id)
    await record(server, pool.id, events.UPLOAD_FAILED, {"u": 2}, visible_to=pool.bob.id)
    expected = {
        "alice": [1, 2],
        "bob": [1, 3],
        "listener": [1],
        "admin": [1, 2, 3],
        "root": [1, 2, 3],
    }
    for name, seqs in expected.items():
        actor = getattr(pool, name)
        r = await actor.client.get(_path(pool), params={"after": 0})
        body = r.json()
        assert [e["seq"] for e in body["events"]] == seqs, name
        # The cursor moves past what the caller may not see.
        assert body["next"] == 3, name


async def test_private_live_event_skips_other_members(server: LiveServer, pool: Pool) -> None:
    hub = hub_of(server)
    waits = {
        name: asyncio.create_task(
            getattr(pool, name).client.get(_path(pool), params={"after": 0, "wait": 1.5})
        )
        for name in ("alice", "bob", "listener", "admin", "root")
    }
    await eventually(lambda: hub.subscriber_count == 5, "five long-polls")
    await record(server, pool.id, events.UPLOAD_STORED, visible_to=pool.alice.id)
    got = {name: [e["seq"] for e in (await t).json()["events"]] for name, t in waits.items()}
    assert got == {"alice": [1], "bob": [], "listener": [], "admin": [1], "root": [1]}


async def test_non_member_gets_404_and_anonymous_401(api: Api, pool: Pool) -> None:
    for path in (_path(pool), _path(pool) + "/stream"):
        r = await pool.stranger.client.get(path)
        assert r.status_code == 404 and r.json()["code"] == "not_found", path
        r = await api.anon.get(path)
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated", path
    r = await pool.admin.client.get("/api/v1/pools/nope/events")
    assert r.status_code == 404
    # A key is a member of its own pool only.
    key = await api.key(pool.admin, pool.id, "listener")
    assert (await key.client.get(_path(pool))).status_code == 200
    other = (await api.pool(pool.admin))["pool_id"]
    assert (await key.client.get(f"/api/v1/pools/{other}/events")).status_code == 404
