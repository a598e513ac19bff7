"""Webhooks: management API, signed deliveries to a real receiver on 127.0.0.1, retries."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from pooldrop.services import events, webhooks
from tests.events.conftest import Pool, record
from tests.support.api import Api
from tests.support.server import LiveServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint: answers with the queued statuses (then 200) and keeps every request."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        request = Request(scope, receive)
        self.requests.append(Received(dict(request.headers), await request.body()))
        status = self.statuses.pop(0) if self.statuses else 200
        await Response(b"ok", status_code=status)(scope, receive, send)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = Receiver()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the receiver did not start"
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    app.url = f"http://127.0.0.1:{port}/hook"
    yield app
    server.should_exit = True
    await task


def verify(secret: str, req: Received) -> None:
    """Check a request the way a Standard Webhooks receiver does."""
    msg_id, timestamp = req.headers["webhook-id"], req.headers["webhook-timestamp"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{timestamp}.".encode() + req.body, hashlib.sha256).digest()
    ).decode()
    offered = [s.partition(",")[2] for s in req.headers["webhook-signature"].split(" ")]
    assert any(hmac.compare_digest(expected, s) for s in offered), "bad signature"


async def create(pool: Pool, url: str, events_: list[str] | None = None, **kw: Any) -> Any:
    r = await pool.admin.client.post(
        f"/api/v1/pools/{pool.id}/webhooks", json={"url": url, "events": events_ or ["*"], **kw}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def deliveries(pool: Pool, hook_id: str) -> list[dict[str, Any]]:
    r = await pool.admin.client.get(f"/api/v1/pools/{pool.id}/webhooks/{hook_id}/deliveries")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_manage_webhooks(pool: Pool) -> None:
    hook = await create(pool, "https://example.invalid/hook", ["group.ready", "result.published"])
    assert hook["secret"].startswith("whsec_")
    assert len(base64.b64decode(hook["secret"][6:])) == 32
    assert hook["events"] == ["group.ready", "result.published"] and hook["cursor"] == 0
    mine = "whsec_" + base64.b64encode(b"k" * 32).decode()
    given = await create(pool, "http://127.0.0.1:9/x", secret=mine)
    assert given["secret"] == mine
    listed = (await pool.admin.client.get(f"/api/v1/pools/{pool.id}/webhooks")).json()["items"]
    assert [h["webhook_id"] for h in listed] == [hook["webhook_id"], given["webhook_id"]]
    assert all("secret" not in h for h in listed)
    for bad in (
        {"url": "ftp://x/y", "events": ["*"]},
        {"url": "/relative", "events": ["*"]},
        {"url": "http://h/", "events": []},
        {"url": "http://h/", "events": ["upload.exploded"]},
        {"url": "http://h/", "events": ["*"], "secret": "plain"},
        {"url": "http://h/", "events": ["*"], "secret": "whsec_c2hvcnQ="},
        {"url": "http://h/", "events": ["*"], "extra": 1},
    ):
        r = await pool.admin.client.post(f"/api/v1/pools/{pool.id}/webhooks", json=bad)
        assert r.status_code == 422 and r.json()["code"] == "validation_error", bad
    path = f"/api/v1/pools/{pool.id}/webhooks/{hook['webhook_id']}"
    assert (await pool.admin.client.delete(path)).status_code == 204
    assert (await pool.admin.client.delete(path)).status_code == 404
    r = await pool.listener.client.post(
        f"/api/v1/pools/{pool.id}/webhooks", json={"url": "http://h/", "events": ["*"]}
    )
    assert r.status_code == 403


async def test_delivery_is_signed_and_carries_the_event(
    server: LiveServer, pool: Pool, receiver: Receiver
) -> None:
    await record(server, pool.id)  # before the webhook: not delivered
    hook = await create(pool, receiver.url)
    await record(server, pool.id, events.GROUP_READY, {"group_id": "g1"})
    await record(server, pool.id, events.UPLOAD_STORED, visible_to=pool.alice.id)  # private
    await record(server, pool.id, events.RESULT_PUBLISHED, {"result_id": "r1"})
    done = await server.scheduler.run_once()
    assert done["enqueue_webhook_deliveries"] == 2 and done["send_webhook_deliveries"] == 2
    assert len(receiver.requests) == 2
    bodies = [orjson.loads(req.body) for req in receiver.requests]
    assert sorted(b["seq"] for b in bodies) == [2, 4]
    first = next(b for b in bodies if b["seq"] == 2)
    assert first == {
        "seq": 2,
        "pool_id": pool.id,
        "type": "group.ready",
        "at": "2026-03-02T12:00:00Z",
        "data": {"group_id": "g1"},
    }
    for req in receiver.requests:
        verify(hook["secret"], req)
        assert req.headers["content-type"] == "application/json"
        assert req.headers["webhook-timestamp"] == str(int(server.clock.now().timestamp()))
    log = await deliveries(pool, hook["webhook_id"])
    assert [(d["event_seq"], d["status"], d["attempts"]) for d in log] == [
        (4, "delivered", 1),
        (2, "delivered", 1),
    ]
    assert {d["delivery_id"] for d in log} == {r.headers["webhook-id"] for r in receiver.requests}
    # Nothing new: nothing sent again.
    await server.scheduler.run_once()
    assert len(receiver.requests) == 2


async def test_failure_is_retried_with_backoff(
    server: LiveServer, pool: Pool, receiver: Receiver
) -> None:
    hook = await create(pool, receiver.url, ["result.published"])
    receiver.statuses = [500]
    await record(server, pool.id, events.GROUP_READY)  # filtered out by type
    await record(server, pool.id, events.RESULT_PUBLISHED)
    await server.scheduler.run_once()
    [d] = await deliveries(pool, hook["webhook_id"])
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("pending", 1, 500)
    assert d["last_error"] == "HTTP 500" and d["event_seq"] == 2
    await server.scheduler.run_once()
    server.clock.advance(4.9)  # the first backoff is 5 s (up to 6.25 s with jitter)
    await server.scheduler.run_once()
    assert len(receiver.requests) == 1
    server.clock.advance(1.5)
    await server.scheduler.run_once()
    assert len(receiver.requests) == 2
    [d] = await deliveries(pool, hook["webhook_id"])
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("delivered", 2, 200)
    assert d["last_error"] is None and d["delivered_at"] is not None
    # Both tries were the same message: receivers deduplicate on webhook-id.
    ids = {req.headers["webhook-id"] for req in receiver.requests}
    assert ids == {d["delivery_id"]}
    for req in receiver.requests:
        verify(hook["secret"], req)


async def test_gives_up_after_max_attempts(
    api: Api, server: LiveServer, pool: Pool, receiver: Receiver
) -> None:
    # A key, not a user: the clock jumps hours, past the access token's lifetime.
    admin_key = await api.key(pool.admin, pool.id, "admin")
    hook = await create(pool, receiver.url)
    receiver.statuses = [503] * 50
    await record(server, pool.id)
    for _ in range(webhooks.MAX_ATTEMPTS + 2):
        await server.scheduler.run_once()
        server.clock.advance(max(webhooks.BACKOFF) * (1 + webhooks.JITTER) + 1)
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS
    r = await admin_key.client.get(
        f"/api/v1/pools/{pool.id}/webhooks/{hook['webhook_id']}/deliveries"
    )
    [d] = r.json()["items"]
    assert (d["status"], d["attempts"], d["next_attempt_at"]) == (
        "failed",
        webhooks.MAX_ATTEMPTS,
        None,
    )
    # Finished deliveries are forgotten with the events they carried.
    server.clock.advance(server.settings.event_retention)
    assert (await server.scheduler.run_once())["purge_old_webhook_deliveries"] == 1
    r = await admin_key.client.get(
        f"/api/v1/pools/{pool.id}/webhooks/{hook['webhook_id']}/deliveries"
    )
    assert r.json()["items"] == []


async def test_unreachable_target_is_recorded(server: LiveServer, pool: Pool) -> None:
    hook = await create(pool, "http://127.0.0.1:9/nothing-listens-here")
    await record(server, pool.id)
    await server.scheduler.run_once()
    [d] = await deliveries(pool, hook["webhook_id"])
    assert d["status"] == "pending" and d["attempts"] == 1
    assert d["last_status_code"] is None and "Connect" in d["last_error"]


async def test_two_nodes_never_send_one_delivery_twice(
    server: LiveServer, pool: Pool, receiver: Receiver
) -> None:
    await create(pool, receiver.url)
    await record(server, pool.id, count=5)
    rt = server.runtime
    created = await asyncio.gather(*(webhooks.enqueue_deliveries(rt) for _ in range(3)))
    assert sum(created) == 5
    sent = await asyncio.gather(*(webhooks.send_due_deliveries(rt) for _ in range(3)))
    assert sum(sent) == 5
    seqs = sorted(orjson.loads(req.body)["seq"] for req in receiver.requests)
    assert seqs == [1, 2, 3, 4, 5]


async def test_delivery_log_is_for_pool_admins(
    api: Api, server: LiveServer, pool: Pool, receiver: Receiver
) -> None:
    hook = await create(pool, receiver.url)
    await record(server, pool.id)
    await server.scheduler.run_once()
    path = f"/api/v1/pools/{pool.id}/webhooks/{hook['webhook_id']}/deliveries"
    assert (await pool.listener.client.get(path)).status_code == 403
    assert (await pool.alice.client.get(path)).status_code == 403
    assert (await pool.stranger.client.get(path)).status_code == 404
    assert (await api.anon.get(path)).status_code == 401
    assert len((await pool.root.client.get(path)).json()["items"]) == 1
    other = (await api.pool(pool.admin))["pool_id"]
    wrong_pool = f"/api/v1/pools/{other}/webhooks/{hook['webhook_id']}/deliveries"
    assert (await pool.admin.client.get(wrong_pool)).status_code == 404
    r = await pool.admin.client.get(path, params={"limit": 1, "cursor": 1})
    assert r.json() == {"items": [], "next_cursor": None}
