"""Upload history with cursor pagination, visibility, and content downloads with HTTP caching."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta

from tests.conftest import START
from tests.support.api import Api
from tests.uploads.conftest import PoolFixture


async def test_history_pages_and_visibility(pool: PoolFixture, api: Api) -> None:
    other = await api.key(pool.admin, pool.pool_id, "contributor", name="other")
    ids = []
    for i in range(5):
        r = await pool.upload(f"mine {i}".encode(), ts=START + timedelta(seconds=i))
        ids.append(r.json()["upload_id"])
    await pool.upload(b"theirs", ts=START, who=other)
    base = f"/api/v1/pools/{pool.pool_id}/uploads"
    page1 = (await pool.contributor.client.get(base, params={"limit": 2})).json()
    assert [u["upload_id"] for u in page1["items"]] == ids[::-1][:2]
    page2 = (
        await pool.contributor.client.get(base, params={"limit": 2, "cursor": page1["next_cursor"]})
    ).json()
    page3 = (
        await pool.contributor.client.get(base, params={"limit": 2, "cursor": page2["next_cursor"]})
    ).json()
    seen = [u["upload_id"] for p in (page1, page2, page3) for u in p["items"]]
    assert seen == ids[::-1] and page3["next_cursor"] is None
    # Pool admins see everyone's; mine=true narrows to their own.
    everyone = (await pool.admin.client.get(base, params={"limit": 100})).json()["items"]
    assert len(everyone) == 6
    assert (await pool.admin.client.get(base, params={"mine": "true"})).json()["items"] == []
    # A contributor cannot read another's upload.
    theirs = everyone[0]["upload_id"]
    assert (await pool.contributor.client.get(f"{base}/{theirs}")).status_code == 404
    assert (await pool.admin.client.get(f"{base}/{theirs}")).status_code == 200
    mine_everywhere = (await pool.contributor.client.get("/api/v1/uploads")).json()["items"]
    assert len(mine_everywhere) == 5


async def test_admin_uploads_is_global_admin_only(pool: PoolFixture, api: Api) -> None:
    await pool.upload(b"x", ts=START)
    # The first user of the instance (the pool fixture's admin) is the global admin.
    r = await pool.admin.client.get("/api/v1/admin/uploads")
    assert r.status_code == 200 and len(r.json()["items"]) == 1
    someone = await api.user()
    assert (await someone.client.get("/api/v1/admin/uploads")).status_code == 403
    assert (await pool.contributor.client.get("/api/v1/admin/uploads")).status_code == 403


async def test_download_etag_range_and_304(pool: PoolFixture) -> None:
    data = os.urandom(200_000)
    u = (await pool.upload(data, ts=START, name="résumé data.bin")).json()
    url = f"/api/v1/pools/{pool.pool_id}/uploads/{u['upload_id']}/content"
    c = pool.contributor.client
    full = await c.get(url)
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    assert full.status_code == 200 and full.content == data
    assert full.headers["etag"] == etag
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20data.bin" in full.headers["content-disposition"]
    part = await c.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = await c.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    cached = await c.get(url, headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    bad = await c.get(url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert bad.status_code == 416


async def test_large_download_is_byte_identical_with_ranges(pool: PoolFixture) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    r = await pool.admin.client.patch(
        f"/api/v1/pools/{pool.pool_id}", json={"max_file_size": len(data)}
    )
    assert r.status_code == 200
    u = (await pool.upload(data, ts=START)).json()
    url = f"/api/v1/pools/{pool.pool_id}/uploads/{u['upload_id']}/content"
    c = pool.contributor.client
    full = await c.get(url)
    assert full.content == data and int(full.headers["content-length"]) == len(data)
    mid = await c.get(url, headers={"Range": "bytes=1000000-3999999"})
    assert mid.status_code == 206 and mid.content == data[1_000_000:4_000_000]
    head = await c.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(data)
