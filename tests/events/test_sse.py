"""GET /api/v1/pools/{pool_id}/events/stream: Server-Sent Events with exact resumption."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx

from pooldrop.services import events
from tests.events.conftest import Pool, eventually, hub_of, open_sse, record
from tests.support.api import Api
from tests.support.server import LiveServer


def _path(pool: Pool) -> str:
    return f"/api/v1/pools/{pool.id}/events/stream"


async def test_stream_sends_backlog_then_live_events(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    await record(server, pool.id, count=2)
    sse = await open_sse(pool.listener.client, _path(pool), exit_stack)
    got = await sse.take(2)
    assert [(e.id, e.event) for e in got] == [(1, "group.ready"), (2, "group.ready")]
    assert got[0].data["seq"] == 1 and got[0].data["pool_id"] == pool.id
    assert "connected" in sse.comments
    await record(server, pool.id, events.RESULT_PUBLISHED, {"result_id": "x"})
    live = await sse.next()
    assert (live.id, live.event, live.data["data"]) == (3, "result.published", {"result_id": "x"})
    assert sse.response.headers["cache-control"] == "no-cache"


async def test_last_event_id_resumes_exactly(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    await record(server, pool.id, count=5)
    # EventSource reconnects to the same URL with the header: the header wins over ?after=.
    sse = await open_sse(
        pool.listener.client,
        _path(pool) + "?after=0",
        exit_stack,
        headers={"Last-Event-ID": "2"},
    )
    assert [e.id for e in await sse.take(3)] == [3, 4, 5]
    await record(server, pool.id, count=2)
    assert [e.id for e in await sse.take(2)] == [6, 7]
    by_query = await open_sse(pool.listener.client, _path(pool) + "?after=6", exit_stack)
    assert (await by_query.next()).id == 7


async def test_bad_last_event_id_and_gone_cursor(api: Api, server: LiveServer, pool: Pool) -> None:
    r = await pool.listener.client.get(_path(pool), headers={"Last-Event-ID": "abc"})
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    key = await api.key(pool.admin, pool.id, "listener")  # keys outlive the clock jump
    await record(server, pool.id, count=2)
    server.clock.advance(server.settings.event_retention + 1)
    await server.scheduler.run_once()
    r = await key.client.get(_path(pool), headers={"Last-Event-ID": "1"})
    assert r.status_code == 410 and r.json()["code"] == "gone"


async def test_bad_after_and_unknown_pool_are_problem_documents(api: Api, pool: Pool) -> None:
    """The stream is served outside FastAPI's routing (api/app.py); its refusals still are
    RFC 9457 documents with the codes the rest of the API uses."""
    for bad in ("abc", "-1"):
        r = await pool.listener.client.get(_path(pool) + f"?after={bad}")
        assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
        assert r.headers["content-type"] == "application/problem+json"
    r = await pool.admin.client.get("/api/v1/pools/nope/events/stream")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await api.anon.get(_path(pool))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


async def test_access_token_in_query(
    api: Api, server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    await record(server, pool.id)
    sse = await open_sse(api.anon, _path(pool) + f"?access_token={pool.listener.token}", exit_stack)
    assert (await sse.next()).id == 1
    r = await api.anon.get(_path(pool) + "?access_token=nonsense")
    assert r.status_code == 401


async def test_stream_shows_only_visible_events(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    bob = await open_sse(pool.bob.client, _path(pool), exit_stack)
    alice = await open_sse(pool.alice.client, _path(pool), exit_stack)
    await record(server, pool.id, events.UPLOAD_STORED, visible_to=pool.alice.id)
    await record(server, pool.id, events.GROUP_READY)
    assert [e.id for e in await alice.take(2)] == [1, 2]
    assert [e.id for e in await bob.take(1)] == [2]


async def test_logout_ends_the_stream(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    sse = await open_sse(pool.listener.client, _path(pool), exit_stack)
    hub = hub_of(server)
    await eventually(lambda: hub.subscriber_count == 1, "the stream to subscribe")
    other = await open_sse(pool.alice.client, _path(pool), exit_stack)
    assert (await pool.listener.client.post("/api/v1/auth/logout")).status_code == 204
    assert await hub.check_access() == 1
    end = await sse.next()
    assert end.event == "error" and end.data["code"] == "unauthenticated"
    rest = [line async for line in sse.lines]
    assert rest == []  # the server ended the response
    # Other members keep streaming.
    await record(server, pool.id)
    assert (await other.next()).id == 1


async def test_removed_member_stream_ends(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    sse = await open_sse(pool.bob.client, _path(pool), exit_stack)
    r = await pool.admin.client.delete(f"/api/v1/pools/{pool.id}/members/{pool.bob.id}")
    assert r.status_code == 204
    assert await hub_of(server).check_access() == 1
    end = await sse.next()
    assert end.event == "error" and end.data["code"] == "not_found"


async def test_client_disconnect_unsubscribes(server: LiveServer, pool: Pool) -> None:
    hub = hub_of(server)
    client = httpx.AsyncClient(base_url=server.url, headers=pool.admin.headers)
    async with client, client.stream("GET", _path(pool)) as r:
        assert r.status_code == 200
        await eventually(lambda: hub.subscriber_count == 1, "the stream to subscribe")
    await eventually(lambda: hub.subscriber_count == 0, "the stream to unsubscribe")
