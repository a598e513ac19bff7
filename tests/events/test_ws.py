"""The WebSocket gateway: connect, subscribe, pushes, history, alive, closing rules."""

from __future__ import annotations

from contextlib import AsyncExitStack

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pooldrop.clock import FakeClock
from pooldrop.config import Settings
from pooldrop.services import events
from tests.events.conftest import Pool, Ws, hub_of, open_ws, record, ws_url
from tests.support.api import Api
from tests.support.server import LiveServer, live_server


async def test_connect_op_then_alive(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    ws = await open_ws(server, exit_stack)
    answer = await ws.call("connect", access_token=pool.alice.token)
    assert answer == {
        "op": "connect",
        "rid": "r1",
        "principal_id": pool.alice.id,
        "kind": "user",
    }
    assert await ws.call("alive") == {"op": "alive", "rid": "r2"}
    again = await ws.call("connect", access_token=pool.alice.token)
    assert again["op"] == "error" and again["code"] == "conflict"


async def test_token_at_handshake_by_query_or_header(
    api: Api, server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    by_query = await open_ws(server, exit_stack, query=f"access_token={pool.listener.token}")
    assert (await by_query.call("alive"))["op"] == "alive"
    key = await api.key(pool.admin, pool.id, "listener")
    conn = await exit_stack.enter_async_context(
        connect(ws_url(server), additional_headers=key.headers, open_timeout=5)
    )
    by_header = Ws(conn)
    answer = await by_header.call("subscribe", pool_id=pool.id)
    assert answer == {"op": "subscribe", "rid": "r1", "pool_id": pool.id, "after": 0}


async def test_bad_or_missing_credentials_close_4401(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    bad_query = await open_ws(server, exit_stack, query="access_token=nonsense")
    assert await bad_query.closed_with() == (4401, "invalid access token")
    bad_connect = await open_ws(server, exit_stack)
    await bad_connect.send("connect", access_token="pdk_nope")
    assert await bad_connect.closed_with() == (4401, "unknown key")
    not_first = await open_ws(server, exit_stack)
    await not_first.send("subscribe", pool_id=pool.id)
    code, reason = await not_first.closed_with()
    assert code == 4401 and reason and "connect" in reason
    binary_first = await open_ws(server, exit_stack)
    await binary_first.conn.send(b"\x00" * 20)
    assert (await binary_first.closed_with())[0] == 4401
    bad_header = await exit_stack.enter_async_context(
        connect(ws_url(server), additional_headers={"Authorization": "Basic x"}, open_timeout=5)
    )
    assert (await Ws(bad_header).closed_with())[0] == 4401


async def test_logout_closes_the_socket(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    ws = await open_ws(server, exit_stack, pool.listener.token)
    idle = await open_ws(server, exit_stack, pool.alice.token)  # subscribed to nothing
    await ws.call("subscribe", pool_id=pool.id)
    assert (await pool.listener.client.post("/api/v1/auth/logout")).status_code == 204
    assert (await pool.alice.client.post("/api/v1/auth/logout")).status_code == 204
    # The hub re-checks sessions every 30 s; the test runs that check now.
    await hub_of(server).check_access()
    assert await ws.closed_with() == (4401, "session ended; log in again")
    assert (await idle.closed_with())[0] == 4401


async def test_subscribe_with_after_then_live_push(
    api: Api, server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    await record(server, pool.id, count=4)
    ws = await open_ws(server, exit_stack, pool.listener.token)
    answer = await ws.call("subscribe", pool_id=pool.id, after=2)
    assert answer == {"op": "subscribe", "rid": "r2", "pool_id": pool.id, "after": 2}
    assert [e["seq"] for e in await ws.events(2)] == [3, 4]
    await record(server, pool.id, events.RESULT_PUBLISHED, {"result_id": "r"})
    [pushed] = await ws.events(1)
    assert pushed["seq"] == 5 and pushed["type"] == "result.published"
    assert pushed["data"] == {"result_id": "r"} and pushed["pool_id"] == pool.id
    # Several pools on one socket.
    other = (await api.pool(pool.admin))["pool_id"]
    assert (await ws.call("subscribe", pool_id=other))["op"] == "error"  # not a member
    mine = (await ws.call("alive"))["op"]
    assert mine == "alive"
    admin = await open_ws(server, exit_stack, pool.admin.token)
    await admin.call("subscribe", pool_id=pool.id, after=5)
    await admin.call("subscribe", pool_id=other)
    await record(server, other)
    await record(server, pool.id)
    got = await admin.events(2)
    assert sorted((e["pool_id"], e["seq"]) for e in got) == sorted([(other, 1), (pool.id, 6)])
    # Unsubscribed pools push nothing more.
    assert (await admin.call("unsubscribe", pool_id=other))["pool_id"] == other
    await record(server, other)
    await record(server, pool.id)
    assert [(e["pool_id"], e["seq"]) for e in await admin.events(1)] == [(pool.id, 7)]


async def test_errors_are_frames_with_the_rid(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    ws = await open_ws(server, exit_stack, pool.stranger.token)
    nope = await ws.call("subscribe", pool_id=pool.id)
    assert nope["op"] == "error" and nope["code"] == "not_found" and nope["status"] == 404
    unknown = await ws.call("dance")
    assert unknown["code"] == "validation_error" and "dance" in unknown["detail"]
    bad = await ws.call("subscribe", pool_id=pool.id, after="x")
    assert bad["code"] == "validation_error"
    await ws.conn.send("not json")
    assert (await ws.recv())["code"] == "validation_error"
    await ws.conn.send(orjson.dumps([1, 2]).decode())
    assert (await ws.recv())["op"] == "error"
    assert (await ws.call("alive"))["op"] == "alive"  # still open


async def test_gone_cursor_is_an_error_frame(
    api: Api, server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    key = await api.key(pool.admin, pool.id, "listener")
    await record(server, pool.id, count=2)
    server.clock.advance(server.settings.event_retention + 1)
    await record(server, pool.id)
    await server.scheduler.run_once()
    ws = await open_ws(server, exit_stack, key.token)
    gone = await ws.call("subscribe", pool_id=pool.id, after=0)
    assert gone["code"] == "gone" and gone["status"] == 410 and gone["oldest_seq"] == 3


async def test_get_history_lists_own_uploads(
    server: LiveServer, pool: Pool, exit_stack: AsyncExitStack
) -> None:
    ws = await open_ws(server, exit_stack, pool.alice.token)
    assert await ws.call("get-history") == {"op": "get-history", "rid": "r2", "items": []}
    answer = await ws.call("get-history", pool_id=pool.id)
    assert answer["items"] == []
    r = await pool.alice.client.post(
        f"/api/v1/pools/{pool.id}/uploads",
        params={"ts": server.clock.now().timestamp(), "name": "a.txt"},
        content=b"hello",
    )
    assert r.status_code == 201, r.text
    items = (await ws.call("get-history", pool_id=pool.id))["items"]
    assert [u["upload_id"] for u in items] == [r.json()["upload_id"]]
    assert items[0]["size"] == 5 and items[0]["uploader_id"] == pool.alice.id
    assert (await ws.call("get-history"))["items"] == items
    stranger = await open_ws(server, exit_stack, pool.stranger.token)
    assert (await stranger.call("get-history", pool_id=pool.id))["code"] == "not_found"


async def test_idle_socket_is_closed(settings: Settings, clock: FakeClock) -> None:
    quick = settings.model_copy(update={"ws_idle_timeout": 0.3})
    async with live_server(quick, clock) as server, Api(server) as api:
        user = await api.user()
        async with AsyncExitStack() as stack:
            ws = await open_ws(server, stack, user.token)
            for _ in range(3):  # frames keep it open
                assert (await ws.call("alive"))["op"] == "alive"
            code, reason = await ws.closed_with(within=3)
            assert code == 4408 and reason and "idle" in reason
            silent = await open_ws(server, stack)  # never even connects
            assert (await silent.closed_with(within=3))[0] == 4408


async def test_server_shutdown_closes_sockets(settings: Settings, clock: FakeClock) -> None:
    async with live_server(settings, clock) as server, Api(server) as api:
        user = await api.user()
        conn = await connect(ws_url(server, f"access_token={user.token}"), open_timeout=5)
    try:
        await conn.recv()
        raise AssertionError("expected the socket to be closed")
    except ConnectionClosed:
        pass
    finally:
        await conn.close()
    assert conn.close_code == 1012
