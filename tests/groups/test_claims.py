"""Closing, claiming, long-polling, heartbeats, releases and lease expiry."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from pooldrop.domain.timestamps import format_ts
from pooldrop.services import claims
from tests.conftest import START
from tests.groups.conftest import Work, make_work
from tests.support.api import Api
from tests.support.server import LiveServer


async def test_close_is_the_manual_trigger_and_is_idempotent(work: Work) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    closed = await work.close(gid, who=work.aggregator)
    assert closed["state"] == "ready" and closed["trigger"] == "manual"
    assert closed["ready_at"] == format_ts(START)
    again = await work.close(gid)
    assert again["state"] == "ready" and again["ready_at"] == closed["ready_at"]
    assert await work.event_types() == ["upload.stored", "group.ready"]
    missing = await work.admin.client.post(work.url("/groups/nope/close"))
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


async def test_claim_next_takes_the_oldest_ready_group(work: Work, server: LiveServer) -> None:
    newer = (await work.upload(b"n", START))["group_id"]
    older = (await work.upload(b"o", START - timedelta(minutes=5)))["group_id"]
    middle = (await work.upload(b"m", START - timedelta(minutes=2)))["group_id"]
    for gid in (newer, older):
        await work.close(gid)
    r = await work.claim_next()
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"group", "lease_id", "lease_expires_at", "lease_seconds"}
    assert body["group"]["group_id"] == older and body["group"]["state"] == "claimed"
    assert body["group"]["attempts"] == 1 and body["lease_seconds"] == 300
    assert body["lease_expires_at"] == format_ts(START + timedelta(minutes=5))
    assert body["group"]["lease_expires_at"] == body["lease_expires_at"]
    assert (await work.claim_next()).json()["group"]["group_id"] == newer
    # The open group in between is never handed out by claim-next.
    assert (await work.claim_next()).status_code == 204
    assert (await work.group(middle)).state == "open"
    g = await work.group(older)
    assert g.lease_holder == work.aggregator.id and g.lease_id == body["lease_id"]
    claimed = [d for t, d in await work.events() if t == "group.claimed"]
    assert [d["group_id"] for d in claimed] == [older, newer]
    assert all("lease_id" not in d for d in claimed)  # the lease is the holder's secret


async def test_claim_next_times_out_with_204(work: Work) -> None:
    started = time.monotonic()
    r = await work.claim_next(wait=0.6)
    elapsed = time.monotonic() - started
    assert r.status_code == 204 and r.content == b""
    assert 0.55 <= elapsed < 5


async def test_long_poll_wakes_when_a_group_becomes_ready(work: Work) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    waiting = asyncio.create_task(work.claim_next(wait=30))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    started = time.monotonic()
    await work.close(gid)  # from another client, while the claim waits
    r = await asyncio.wait_for(waiting, 10)
    assert time.monotonic() - started < 2.5
    assert r.status_code == 200 and r.json()["group"]["group_id"] == gid


async def test_long_poll_wakes_on_the_window_trigger(work: Work, server: LiveServer) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    waiting = asyncio.create_task(work.claim_next(wait=30))
    await asyncio.sleep(0.3)
    server.clock.advance(minutes=61, seconds=1)
    assert (await server.scheduler.run_once())["close_due_windows"] == 1
    r = await asyncio.wait_for(waiting, 10)
    assert r.status_code == 200 and r.json()["group"]["group_id"] == gid
    assert r.json()["group"]["trigger"] == "window"


async def test_wait_is_capped_not_refused(work: Work) -> None:
    assert claims.LONG_POLL_MAX == 60
    gid = (await work.upload(b"x", START))["group_id"]
    await work.close(gid)
    r = await work.claim_next(wait=3600)
    assert r.status_code == 200 and r.json()["group"]["group_id"] == gid
    r = await work.aggregator.client.post(work.url("/groups/claim"), params={"wait": -1})
    assert r.status_code == 422 and r.json()["code"] == "validation_error"


async def test_claim_this_closes_an_open_group_first(work: Work) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    body = await work.claim(gid)
    assert body["group"]["state"] == "claimed" and body["group"]["trigger"] == "manual"
    assert body["group"]["attempts"] == 1
    assert await work.event_types() == ["upload.stored", "group.ready", "group.claimed"]


async def test_claim_this_refuses_claimed_done_and_failed(api: Api, server: LiveServer) -> None:
    work = await make_work(api, server, max_attempts=1, lease="10s")
    other = await api.key(work.admin, work.pool_id, "aggregator", name="other")
    gid = (await work.upload(b"x", START))["group_id"]
    lease = (await work.claim(gid))["lease_id"]

    r = await other.client.post(work.url(f"/groups/{gid}/claim"))
    assert r.status_code == 409 and r.json()["code"] == "group_not_ready"
    assert "already claimed by another worker" in r.json()["detail"]
    r = await work.aggregator.client.post(work.url(f"/groups/{gid}/claim"))
    assert r.status_code == 409 and "claimed by you" in r.json()["detail"]

    assert (await work.put_result(gid, lease, b"result")).status_code == 201
    r = await other.client.post(work.url(f"/groups/{gid}/claim"))
    assert r.status_code == 409 and r.json()["code"] == "group_not_ready"
    assert "done" in r.json()["detail"]

    gid2 = (await work.upload(b"y", START - timedelta(minutes=3)))["group_id"]
    await work.claim(gid2)
    server.clock.advance(seconds=10)
    assert (await server.scheduler.run_once())["expire_leases"] == 1
    r = await other.client.post(work.url(f"/groups/{gid2}/claim"))
    assert r.status_code == 409 and "failed after 1 attempts" in r.json()["detail"]


async def test_heartbeat_extends_the_lease(work: Work, server: LiveServer) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    lease = (await work.claim(gid))["lease_id"]
    server.clock.advance(seconds=200)
    r = await work.lease_call("heartbeat", gid, lease)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = format_ts(START + timedelta(seconds=200 + 300))
    assert body["lease_id"] == lease and body["lease_expires_at"] == expected
    assert body["group"]["lease_expires_at"] == expected
    # Past the first expiry but within the extended one: nothing expires.
    server.clock.advance(seconds=200)
    assert (await server.scheduler.run_once())["expire_leases"] == 0
    assert (await work.group(gid)).state == "claimed"


async def test_expired_lease_is_lost_even_before_the_scheduler_runs(
    work: Work, server: LiveServer
) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    lease = (await work.claim(gid))["lease_id"]
    server.clock.advance(seconds=300)
    r = await work.lease_call("heartbeat", gid, lease)
    assert r.status_code == 409 and r.json()["code"] == "lease_lost"
    assert "expired" in r.json()["detail"]
    r = await work.lease_call("heartbeat", gid, "not-a-lease")
    assert r.status_code == 409 and "not current" in r.json()["detail"]


async def test_stale_holder_gets_lease_lost_everywhere(
    api: Api, work: Work, server: LiveServer
) -> None:
    second = await api.key(work.admin, work.pool_id, "aggregator", name="second")
    gid = (await work.upload(b"x", START))["group_id"]
    stale = (await work.claim(gid))["lease_id"]
    server.clock.advance(minutes=5)
    assert (await server.scheduler.run_once())["expire_leases"] == 1
    g = await work.group(gid)
    assert (g.state, g.attempts, g.lease_id) == ("ready", 1, None)
    fresh = (await work.claim(gid, who=second))["lease_id"]
    assert (await work.group(gid)).attempts == 2

    for op in ("heartbeat", "release"):
        r = await work.lease_call(op, gid, stale)
        assert r.status_code == 409 and r.json()["code"] == "lease_lost", (op, r.text)
        assert "claimed again" in r.json()["detail"]
    r = await work.aggregator.client.get(
        work.url(f"/groups/{gid}/archive"), params={"lease_id": stale}
    )
    assert r.status_code == 409 and r.json()["code"] == "lease_lost"
    r = await work.put_result(gid, stale, b"late result")
    assert r.status_code == 409 and r.json()["code"] == "lease_lost"
    # Another principal presenting the current lease id does not hold it either.
    r = await work.lease_call("heartbeat", gid, fresh)
    assert r.status_code == 409 and "another principal" in r.json()["detail"]
    r = await work.lease_call("heartbeat", gid, fresh, who=second)
    assert r.status_code == 200


async def test_lease_expiry_returns_to_ready_then_fails(api: Api, server: LiveServer) -> None:
    work = await make_work(api, server, lease="10s", max_attempts=2)
    gid = (await work.upload(b"x", START))["group_id"]
    await work.close(gid)

    assert (await work.claim_next()).status_code == 200
    server.clock.advance(seconds=9)
    assert (await server.scheduler.run_once())["expire_leases"] == 0
    server.clock.advance(seconds=1)
    assert (await server.scheduler.run_once())["expire_leases"] == 1
    assert (await server.scheduler.run_once())["expire_leases"] == 0  # exactly once
    g = await work.group(gid)
    assert (g.state, g.attempts, g.lease_expires_at) == ("ready", 1, None)

    assert (await work.claim_next()).json()["group"]["attempts"] == 2
    server.clock.advance(seconds=10)
    assert (await server.scheduler.run_once())["expire_leases"] == 1
    g = await work.group(gid)
    assert (g.state, g.attempts) == ("failed", 2)
    assert (await work.claim_next()).status_code == 204

    evs = await work.events()
    assert [t for t, _ in evs] == [
        "upload.stored",
        "group.ready",
        "group.claimed",
        "group.lease_expired",
        "group.claimed",
        "group.failed",
    ]
    expired, failed = evs[3][1], evs[5][1]
    assert expired["state"] == "ready" and expired["reason"] == "lease_expired"
    assert failed["state"] == "failed" and failed["attempts"] == 2
    assert failed["reason"] == "lease_expired"


async def test_release_gives_the_group_back(api: Api, server: LiveServer) -> None:
    work = await make_work(api, server, max_attempts=2)
    gid = (await work.upload(b"x", START))["group_id"]
    lease = (await work.claim(gid))["lease_id"]
    r = await work.lease_call("release", gid, lease)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "ready" and r.json()["attempts"] == 1  # the attempt counts
    assert r.json()["lease_expires_at"] is None
    again = await work.lease_call("release", gid, lease)
    assert again.status_code == 409 and again.json()["code"] == "lease_lost"

    lease = (await work.claim_next()).json()["lease_id"]
    r = await work.lease_call("release", gid, lease)
    assert r.json()["state"] == "failed" and r.json()["attempts"] == 2
    evs = await work.events()
    tail = [(t, d.get("reason")) for t, d in evs[2:]]
    assert tail == [
        ("group.claimed", None),
        ("group.ready", "released"),
        ("group.claimed", None),
        ("group.failed", "released"),
    ]


async def test_release_needs_a_lease_body(work: Work) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    r = await work.aggregator.client.post(work.url(f"/groups/{gid}/release"), json={})
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
