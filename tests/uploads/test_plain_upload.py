"""POST /pools/{id}/uploads: streaming, digests, idempotency, rejections that leave nothing."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta

from tests.conftest import START
from tests.support.server import LiveServer
from tests.uploads.conftest import PoolFixture, sha


async def blob_files(server: LiveServer) -> list[str]:
    """Committed blobs, whatever the backend (staging is never listed)."""
    return await server.runtime.blobs.list_prefix("pools")


async def test_upload_returns_the_upload_object(pool: PoolFixture, server: LiveServer) -> None:
    data = os.urandom(300_000)
    ts = START + timedelta(seconds=10)
    r = await pool.upload(
        data,
        ts=ts,
        name="reading.bin",
        client_upload_id="c-1",
        metadata={"sensor": 7},
        headers={"Content-Type": "application/x-thing"},
    )
    assert r.status_code == 201, r.text
    u = r.json()
    assert u["pool_id"] == pool.pool_id and u["uploader_id"] == pool.contributor.id
    assert u["size"] == len(data) and u["sha256"] == hashlib.sha256(data).hexdigest()
    assert u["name"] == "reading.bin" and u["client_upload_id"] == "c-1"
    assert u["metadata"] == {"sensor": 7} and u["content_type"] == "application/x-thing"
    assert u["status"] == "stored" and u["late"] is False
    assert u["ts"] == "2026-03-02T12:00:10Z"
    assert u["window_start"] == "2026-03-02T12:00:00Z" and u["window_end"] == "2026-03-02T12:01:00Z"
    assert u["group_id"]
    got = await pool.contributor.client.get(
        f"/api/v1/pools/{pool.pool_id}/uploads/{u['upload_id']}/content"
    )
    assert got.status_code == 200 and got.content == data


async def test_unix_seconds_ts_and_chunked_body(pool: PoolFixture) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 100_000

    r = await pool.upload(body(), ts=START.timestamp() + 1.5)
    assert r.status_code == 201, r.text
    assert r.json()["size"] == 1_000_000
    assert r.json()["ts"] == "2026-03-02T12:00:01.500000Z"


async def test_content_digest_verified(pool: PoolFixture, server: LiveServer) -> None:
    data = b"hello world" * 1000
    ok = await pool.upload(data, ts=START, digest=sha(data))
    assert ok.status_code == 201
    bad = await pool.upload(data, ts=START, digest=sha(b"other"), client_upload_id="bad-1")
    assert bad.status_code == 422 and bad.json()["code"] == "checksum_mismatch"
    assert len(await blob_files(server)) == 1  # nothing kept of the bad one
    listed = (await pool.admin.client.get(f"/api/v1/pools/{pool.pool_id}/uploads")).json()["items"]
    assert len(listed) == 1
    malformed = await pool.upload(data, ts=START, headers={"Content-Digest": "sha-256=nope"})
    assert malformed.status_code == 422 and malformed.json()["code"] == "validation_error"


async def test_replay_same_content_returns_first(pool: PoolFixture, server: LiveServer) -> None:
    data = os.urandom(50_000)
    first = await pool.upload(data, ts=START, client_upload_id="same")
    again = await pool.upload(data, ts=START, client_upload_id="same")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    other = await pool.upload(b"different", ts=START, client_upload_id="same")
    assert other.status_code == 409 and other.json()["code"] == "duplicate_conflict"
    assert len(await blob_files(server)) == 1
    # Another uploader may use the same id independently.
    k2 = await pool.api.key(pool.admin, pool.pool_id, "contributor", name="k2")
    mine = await pool.upload(b"different", ts=START, client_upload_id="same", who=k2)
    assert mine.status_code == 201


async def test_empty_file(pool: PoolFixture, server: LiveServer) -> None:
    r = await pool.upload(b"", ts=START)
    assert r.status_code == 422 and r.json()["code"] == "empty_file"

    async def nothing() -> AsyncIterator[bytes]:
        if False:
            yield b""

    r = await pool.upload(nothing(), ts=START)
    assert r.status_code == 422 and r.json()["code"] == "empty_file"
    assert (await blob_files(server)) == []


async def test_too_large_by_header_and_by_stream(pool: PoolFixture, server: LiveServer) -> None:
    r = await pool.admin.client.patch(f"/api/v1/pools/{pool.pool_id}", json={"max_file_size": 1000})
    assert r.status_code == 200
    r = await pool.upload(b"x" * 1001, ts=START)
    assert r.status_code == 413 and r.json()["code"] == "file_too_large"

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * 400

    r = await pool.upload(chunked(), ts=START)
    assert r.status_code == 413 and r.json()["code"] == "file_too_large"
    assert (await pool.upload(b"z" * 1000, ts=START)).status_code == 201
    assert len(await blob_files(server)) == 1


async def test_forbidden_types(pool: PoolFixture, server: LiveServer) -> None:
    cases = [
        (b"plain text", "setup.exe"),
        (b"\x7fELF\x02\x01\x01\x00rest-of-binary", "data.bin"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "data.bin"),
        (b"\xcf\xfa\xed\xfe\x07\x00\x00\x01", "data.bin"),
        (b"#!/bin/sh\nrm -rf /\n", "notes.txt"),
        (b"#!", "tiny.txt"),
    ]
    for content, name in cases:
        r = await pool.upload(content, ts=START, name=name)
        assert r.status_code == 415, (name, content[:8])
        assert r.json()["code"] == "forbidden_type"
    assert (await blob_files(server)) == []
    # The pool's list is configurable.
    r = await pool.admin.client.patch(
        f"/api/v1/pools/{pool.pool_id}", json={"forbidden_types": [".csv"]}
    )
    assert r.status_code == 200
    assert (await pool.upload(b"#!/bin/sh\n", ts=START, name="x.sh")).status_code == 201
    assert (await pool.upload(b"a,b\n", ts=START, name="x.csv")).status_code == 415


async def test_bad_names_and_fields(pool: PoolFixture) -> None:
    for name in ("../etc/passwd", "a/b", "a\\b", "..", "bad\x01name", "x" * 256, ""):
        r = await pool.upload(b"data", ts=START, name=name)
        assert r.status_code == 422, repr(name)
        assert r.json()["code"] == "validation_error"
    r = await pool.upload(b"data", ts="yesterday")
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = await pool.upload(b"data", ts=START, metadata="[1, 2]")
    assert r.status_code == 422
    r = await pool.upload(b"data", ts=START, metadata={"k": "v" * 5000})
    assert r.status_code == 422
    r = await pool.upload(b"data", ts=START, client_upload_id="has space")
    assert r.status_code == 422


async def test_ts_in_future(pool: PoolFixture, server: LiveServer) -> None:
    skew = server.settings.clock_skew
    ok = await pool.upload(b"data", ts=START + timedelta(seconds=skew - 1))
    assert ok.status_code == 201
    r = await pool.upload(b"data", ts=START + timedelta(seconds=skew + 60))
    assert r.status_code == 422 and r.json()["code"] == "ts_in_future"


async def test_unknown_pool_and_roles(pool: PoolFixture) -> None:
    r = await pool.contributor.client.post(
        "/api/v1/pools/00000000-0000-0000-0000-000000000000/uploads",
        params={"ts": START.isoformat(), "name": "a"},
        content=b"x",
    )
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    listener = await pool.api.key(pool.admin, pool.pool_id, "listener")
    r = await pool.upload(b"x", ts=START, who=listener)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await pool.upload(b"x", ts=START, who=pool.admin)
    assert r.status_code == 201


async def test_storage_failures_are_retried_then_reported(api, server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    from tests.support.failing_blobs import FlakyBlobStore

    flaky = FlakyBlobStore(server.runtime.blobs)
    server.runtime.blobs = flaky
    server.runtime.settings = server.runtime.settings.model_copy(
        update={"storage_retry_backoff": 0.001}
    )
    admin = await api.user()
    pid = (await api.pool(admin))["pool_id"]
    key = await api.key(admin, pid, "contributor")
    flaky.fail_writes = 2  # two failures: the third attempt succeeds
    r = await key.client.post(
        f"/api/v1/pools/{pid}/uploads",
        params={"ts": START.isoformat(), "name": "a"},
        content=b"a" * 10,
    )
    assert r.status_code == 201, r.text
    flaky.fail_commits = 3  # every attempt fails
    r = await key.client.post(
        f"/api/v1/pools/{pid}/uploads",
        params={"ts": START.isoformat(), "name": "b", "client_upload_id": "b1"},
        content=b"b" * 10,
    )
    assert r.status_code == 503 and r.json()["code"] == "unavailable"
    listed = (await key.client.get(f"/api/v1/pools/{pid}/uploads?status=failed")).json()["items"]
    assert [u["name"] for u in listed] == ["b"] and listed[0]["status"] == "failed"
    r = await admin.client.get(f"/api/v1/pools/{pid}/events", params={"after": 0})
    failed = [e for e in r.json()["events"] if e["type"] == "upload.failed"]
    assert [e["data"]["name"] for e in failed] == ["b"]
    # The uploader hears of it too; another contributor does not.
    mine = (await key.client.get(f"/api/v1/pools/{pid}/events", params={"after": 0})).json()
    assert "upload.failed" in [e["type"] for e in mine["events"]]
    other = await api.key(admin, pid, "contributor", name="other")
    theirs = (await other.client.get(f"/api/v1/pools/{pid}/events", params={"after": 0})).json()
    assert "upload.failed" not in [e["type"] for e in theirs["events"]]
    # The retry of the same client_upload_id succeeds and replaces the failed record.
    r = await key.client.post(
        f"/api/v1/pools/{pid}/uploads",
        params={"ts": START.isoformat(), "name": "b", "client_upload_id": "b1"},
        content=b"b" * 10,
    )
    assert r.status_code == 201
    statuses = [
        u["status"] for u in (await key.client.get(f"/api/v1/pools/{pid}/uploads")).json()["items"]
    ]
    assert sorted(statuses) == ["stored", "stored"]
