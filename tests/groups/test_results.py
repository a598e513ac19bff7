"""PUT .../groups/{id}/result and the results endpoints."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta

from pooldrop.domain.timestamps import format_ts
from tests.conftest import START
from tests.groups.conftest import Work, sha256
from tests.support.server import LiveServer


async def result_blobs(server: LiveServer, pool_id: str) -> list[str]:
    return await server.runtime.blobs.list_prefix(f"pools/{pool_id}/results")


async def test_publishing_a_result_finishes_the_group(work: Work, server: LiveServer) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    lease = (await work.claim(gid))["lease_id"]
    server.clock.advance(seconds=30)
    data = os.urandom(200_000)
    r = await work.put_result(
        gid, lease, data, name="sum.csv", digest=hashlib.sha256(data).digest()
    )
    assert r.status_code == 201, r.text
    result = r.json()
    assert set(result) >= {
        "result_id",
        "pool_id",
        "group_id",
        "name",
        "size",
        "sha256",
        "created_at",
        "url",
    }
    assert result["group_id"] == gid and result["pool_id"] == work.pool_id
    assert result["name"] == "sum.csv" and result["size"] == len(data)
    assert result["sha256"] == sha256(data) and result["content_type"] == "application/x-result"
    assert result["created_at"] == format_ts(START + timedelta(seconds=30))
    assert result["url"] == work.url(f"/results/{result['result_id']}/content")

    g = await work.group(gid)
    assert (g.state, g.result_id, g.lease_expires_at) == ("done", result["result_id"], None)
    assert g.done_at == START + timedelta(seconds=30)
    evs = await work.events()
    assert evs[-1] == ("result.published", result)
    # Done is final: the scheduler never expires it, heartbeats are refused.
    server.clock.advance(hours=1)
    assert (await server.scheduler.run_once())["expire_leases"] == 0
    r = await work.lease_call("heartbeat", gid, lease)
    assert r.status_code == 409 and "result was published" in r.json()["detail"]


async def test_every_member_reads_results(work: Work, server: LiveServer) -> None:
    listener = await work.api.key(work.admin, work.pool_id, "listener", name="screen")
    outsider = await work.api.user()
    data = b"0123456789" * 1000
    published = []
    for minutes in (3, 2):
        gid = (await work.upload(b"x", START - timedelta(minutes=minutes)))["group_id"]
        lease = (await work.claim(gid))["lease_id"]
        server.clock.advance(seconds=1)
        r = await work.put_result(gid, lease, data + bytes([minutes]))
        published.append(r.json())

    listed = (await listener.client.get(work.url("/results"))).json()
    assert [x["result_id"] for x in listed["items"]] == [
        p["result_id"] for p in reversed(published)
    ]
    page = (await listener.client.get(work.url("/results"), params={"limit": 1})).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = await listener.client.get(work.url("/results"), params={"cursor": page["next_cursor"]})
    assert [x["result_id"] for x in rest.json()["items"]] == [published[0]["result_id"]]
    by_group = await listener.client.get(
        work.url("/results"), params={"group_id": published[0]["group_id"]}
    )
    assert [x["result_id"] for x in by_group.json()["items"]] == [published[0]["result_id"]]

    latest = await listener.client.get(work.url("/results/latest"))
    assert latest.json() == published[1]
    one = await listener.client.get(work.url(f"/results/{published[0]['result_id']}"))
    assert one.json() == published[0]
    assert (await listener.client.get(work.url("/results/nope"))).status_code == 404
    assert (await outsider.client.get(work.url("/results"))).status_code == 404

    content_url = published[1]["url"]
    full = await listener.client.get(content_url)
    assert full.status_code == 200 and full.content == data + bytes([2])
    etag = full.headers["etag"]
    assert etag == f'"{published[1]["sha256"]}"'
    part = await listener.client.get(content_url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data) + 1}"
    cached = await listener.client.get(content_url, headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    head = await listener.client.head(content_url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data) + 1)


async def test_latest_is_404_until_a_result_exists(work: Work) -> None:
    r = await work.contributor.client.get(work.url("/results/latest"))
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert (await work.contributor.client.get(work.url("/results"))).json()["items"] == []


async def test_one_result_per_group(work: Work, server: LiveServer) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    lease = (await work.claim(gid))["lease_id"]
    first = await work.put_result(gid, lease, b"the result")
    assert first.status_code == 201
    # The same lease retrying the same bytes (its answer was lost) gets the first result.
    again = await work.put_result(gid, lease, b"the result")
    assert again.status_code == 200 and again.json() == first.json()
    other = await work.put_result(gid, lease, b"another result")
    assert other.status_code == 409 and other.json()["code"] == "duplicate_conflict"
    stranger = await work.put_result(gid, "some-other-lease", b"the result")
    assert stranger.status_code == 409 and stranger.json()["code"] == "lease_lost"
    assert len(await result_blobs(server, work.pool_id)) == 1
    assert (await work.event_types()).count("result.published") == 1


async def test_stale_result_is_refused_and_its_blob_deleted(work: Work, server: LiveServer) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    lease = (await work.claim(gid))["lease_id"]

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 100_000
        # The lease runs out while the body is still arriving.
        server.clock.advance(minutes=5)
        yield b"b" * 100_000

    r = await work.aggregator.client.put(
        work.url(f"/groups/{gid}/result"),
        params={"lease_id": lease, "name": "r.bin"},
        content=body(),
    )
    assert r.status_code == 409 and r.json()["code"] == "lease_lost"
    assert await result_blobs(server, work.pool_id) == []
    assert (await work.group(gid)).state == "claimed"  # the scheduler will expire it
    assert "result.published" not in await work.event_types()


async def test_bad_results_leave_nothing(work: Work, server: LiveServer) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    lease = (await work.claim(gid))["lease_id"]
    r = await work.put_result(gid, lease, b"data", digest=hashlib.sha256(b"other").digest())
    assert r.status_code == 422 and r.json()["code"] == "checksum_mismatch"
    r = await work.put_result(gid, lease, b"")
    assert r.status_code == 422 and r.json()["code"] == "empty_file"
    r = await work.put_result(gid, lease, b"data", name="../up")
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = await work.put_result(gid, lease, b"MZ\x90\x00" + b"\x00" * 100, name="tool.exe")
    assert r.status_code == 415 and r.json()["code"] == "forbidden_type"
    assert await result_blobs(server, work.pool_id) == []
    assert (await work.group(gid)).state == "claimed"
    ok = await work.put_result(gid, lease, b"data")
    assert ok.status_code == 201
