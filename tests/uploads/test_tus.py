"""tus 1.0.0 at /api/v1/tus/: every status of the protocol, over raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import parsedate_to_datetime

import pytest

from tests.conftest import START
from tests.support.server import LiveServer
from tests.uploads.conftest import PoolFixture
from tests.uploads.tus_support import OFFSET_STREAM, TUS, Tus, raw_patch


@pytest.fixture
def tus(pool: PoolFixture) -> Tus:
    return Tus(pool.contributor, pool.pool_id)


async def parts(server: LiveServer) -> list[str]:
    return await server.runtime.blobs.list_prefix("transfers")


async def uploads_of(pool: PoolFixture) -> list[dict[str, object]]:
    # The contributor's key, not the admin's token: tests move the clock past token lifetimes.
    r = await pool.contributor.client.get(f"/api/v1/pools/{pool.pool_id}/uploads")
    items: list[dict[str, object]] = r.json()["items"]
    return items


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


async def test_options_advertises_the_server(pool: PoolFixture) -> None:
    r = await pool.api.anon.options("/api/v1/tus/")
    assert r.status_code == 204
    assert r.headers["tus-version"] == "1.0.0" and r.headers["tus-resumable"] == "1.0.0"
    assert set(r.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "checksum",
        "expiration",
    }
    assert int(r.headers["tus-max-size"]) >= 64 * 1024 * 1024
    assert r.headers["tus-checksum-algorithm"] == "sha1,sha256"


async def test_create_resume_and_finish(tus: Tus, pool: PoolFixture, server: LiveServer) -> None:
    data = os.urandom(300_000)
    r = await tus.create(len(data), filename="trace.bin", filetype="application/x-trace")
    assert r.status_code == 201, r.text
    url = r.headers["location"]
    assert url.startswith("/api/v1/tus/") and r.headers["upload-offset"] == "0"
    assert r.headers["tus-resumable"] == "1.0.0"
    expires = parsedate_to_datetime(r.headers["upload-expires"])
    assert expires == START + timedelta(seconds=server.settings.transfer_expiry)

    h = await tus.head(url)
    assert h.status_code == 200
    assert h.headers["upload-offset"] == "0" and h.headers["upload-length"] == str(len(data))
    assert h.headers["cache-control"] == "no-store"
    meta = dict(item.split(" ") for item in h.headers["upload-metadata"].split(","))
    assert base64.b64decode(meta["filename"]) == b"trace.bin"
    assert base64.b64decode(meta["pool_id"]).decode() == pool.pool_id

    server.clock.advance(30)
    r = await tus.patch(url, data[:100_000], 0)
    assert r.status_code == 204, r.text
    assert r.headers["upload-offset"] == "100000" and "pooldrop-upload-id" not in r.headers
    # Each received part pushes the expiry back.
    assert parsedate_to_datetime(r.headers["upload-expires"]) == expires + timedelta(seconds=30)
    assert (await tus.head(url)).headers["upload-offset"] == "100000"

    r = await tus.patch(url, data[100_000:], 100_000)
    assert r.status_code == 204, r.text
    assert r.headers["upload-offset"] == str(len(data))
    upload_id = r.headers["pooldrop-upload-id"]
    u = (
        await pool.contributor.client.get(f"/api/v1/pools/{pool.pool_id}/uploads/{upload_id}")
    ).json()
    assert u["size"] == len(data) and u["sha256"] == hashlib.sha256(data).hexdigest()
    assert u["name"] == "trace.bin" and u["content_type"] == "application/x-trace"
    assert u["client_upload_id"] == "transfer:" + url.rsplit("/", 1)[1]
    content = await pool.contributor.client.get(
        f"/api/v1/pools/{pool.pool_id}/uploads/{upload_id}/content"
    )
    assert content.content == data
    assert await parts(server) == []

    # Finished: HEAD and a replayed last request tell the same upload; nothing else is accepted.
    h = await tus.head(url)
    assert h.headers["upload-offset"] == str(len(data))
    assert h.headers["pooldrop-upload-id"] == upload_id
    again = await tus.patch(url, b"", len(data))
    assert again.status_code == 204 and again.headers["pooldrop-upload-id"] == upload_id
    assert (await tus.patch(url, data[:10], 0)).status_code == 409
    assert len(await uploads_of(pool)) == 1


async def test_creation_with_upload(tus: Tus, pool: PoolFixture) -> None:
    data = os.urandom(70_000)
    whole = await tus.create(len(data), body=data, client_upload_id="cwu-1")
    assert whole.status_code == 201, whole.text
    assert whole.headers["upload-offset"] == str(len(data))
    upload_id = whole.headers["pooldrop-upload-id"]
    partial = await tus.create(len(data), body=data[:30_000])
    assert partial.status_code == 201 and partial.headers["upload-offset"] == "30000"
    url = partial.headers["location"]
    r = await tus.patch(url, data[30_000:], 30_000)
    assert r.status_code == 204 and r.headers["pooldrop-upload-id"] != upload_id
    u = await pool.contributor.client.get(f"/api/v1/pools/{pool.pool_id}/uploads/{upload_id}")
    assert u.json()["client_upload_id"] == "cwu-1"
    wrong_type = await tus.create(10, body=b"0123456789", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and wrong_type.json()["code"] == "unsupported_media_type"


async def test_protocol_errors(tus: Tus, pool: PoolFixture, server: LiveServer) -> None:
    url = await tus.start(1000)
    no_version = await pool.contributor.client.head(url)
    assert no_version.status_code == 412 and no_version.headers["tus-version"] == "1.0.0"
    r = await pool.contributor.client.patch(
        url, content=b"x", headers={"Tus-Resumable": "0.2.2", "Content-Type": OFFSET_STREAM}
    )
    assert r.status_code == 412 and r.json()["code"] == "unsupported_version"

    r = await tus.patch(url, b"x" * 10, 0, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
    r = await tus.patch(url, b"x" * 10, 5)
    assert r.status_code == 409 and r.json()["code"] == "offset_mismatch"
    assert r.json()["offset"] == 0
    r = await tus.patch(url, b"x" * 10, 0, headers={"Upload-Offset": "-1"})
    assert r.status_code == 400 and r.json()["code"] == "validation_error"

    # More bytes than Upload-Length: refused by Content-Length, or while streaming.
    r = await tus.patch(url, b"x" * 1001, 0)
    assert r.status_code == 413 and r.json()["code"] == "file_too_large"

    async def too_much() -> AsyncIterator[bytes]:
        for _ in range(11):
            yield b"y" * 100

    r = await pool.contributor.client.patch(
        url,
        content=too_much(),
        headers={**TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"},
    )
    assert r.status_code == 413
    assert (await tus.head(url)).headers["upload-offset"] == "0"
    assert await parts(server) == []

    missing = "/api/v1/tus/00000000-0000-7000-8000-000000000000"
    assert (await tus.head(missing)).status_code == 404
    r = await tus.patch(missing, b"x", 0)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert (await tus.head("/api/v1/tus/not-an-id")).status_code == 404
    # Per uploader: another key of the pool, and even the pool's admin, see nothing.
    other = await pool.api.key(pool.admin, pool.pool_id, "contributor", name="other")
    assert (await tus.head(url, who=other)).status_code == 404
    assert (await tus.head(url, who=pool.admin)).status_code == 404
    assert (await tus.patch(url, b"x", 0, who=pool.admin)).status_code == 404
    r = await pool.admin.client.delete(url, headers=TUS)
    assert r.status_code == 404
    assert (await pool.api.anon.head(url, headers=TUS)).status_code == 401


async def test_creation_refused_before_any_byte(
    tus: Tus, pool: PoolFixture, server: LiveServer
) -> None:
    async def status(r_coro: object) -> tuple[int, str]:
        r = await r_coro  # type: ignore[misc]
        return r.status_code, r.json()["code"]

    assert await status(tus.create(0)) == (422, "empty_file")
    assert await status(tus.create(64 * 1024 * 1024 + 1)) == (413, "file_too_large")
    assert await status(tus.create(10, ts="yesterday")) == (422, "validation_error")
    assert await status(tus.create(10, ts=START + timedelta(hours=1))) == (422, "ts_in_future")
    assert await status(tus.create(10, ts=START - timedelta(minutes=5))) == (409, "window_closed")
    assert await status(tus.create(10, filename="../x")) == (422, "validation_error")
    assert await status(tus.create(10, metadata="[1]")) == (422, "validation_error")
    assert await status(tus.create(10, filename="setup.exe")) == (415, "forbidden_type")
    listener = await pool.api.key(pool.admin, pool.pool_id, "listener")
    assert await status(Tus(listener, pool.pool_id).create(10)) == (403, "forbidden")
    outsider = await pool.api.user()
    assert await status(Tus(outsider, pool.pool_id).create(10)) == (404, "not_found")
    # Header syntax: 400.
    bad_headers = [
        {"Upload-Length": "ten"},
        {"Upload-Defer-Length": "1"},
        {"Upload-Metadata": "pool_id not*base64"},
        {"Upload-Metadata": "filename " + base64.b64encode(b"a.bin").decode()},
        {"Upload-Metadata": "a YQ==,a YQ=="},
        {"Upload-Metadata": "sha256 " + base64.b64encode(b"nothex").decode()},
    ]
    for headers in bad_headers:
        assert await status(tus.create(10, headers=headers)) == (400, "validation_error"), headers
    r = await pool.contributor.client.post("/api/v1/tus/", headers=TUS)
    assert r.status_code == 400 and "Upload-Length" in r.json()["detail"]
    assert (
        await pool.contributor.client.post("/api/v1/tus/", headers={"Upload-Length": "5"})
    ).status_code == 412
    async with server.runtime.read() as s:
        from sqlalchemy import func, select

        from pooldrop.store.models import Transfer

        assert await s.scalar(select(func.count()).select_from(Transfer)) == 0


async def test_checksums(tus: Tus, server: LiveServer) -> None:
    data = os.urandom(90_000)
    url = await tus.start(len(data))
    r = await tus.patch(
        url, data[:30_000], 0, {"Upload-Checksum": checksum("sha256", data[:30_000])}
    )
    assert r.status_code == 204 and r.headers["upload-offset"] == "30000"
    wrong = checksum("sha1", data[:10])
    r = await tus.patch(url, data[30_000:60_000], 30_000, {"Upload-Checksum": wrong})
    assert r.status_code == 460 and r.json()["code"] == "checksum_mismatch"
    assert (await tus.head(url)).headers["upload-offset"] == "30000"  # the chunk was discarded
    assert len(await parts(server)) == 1
    for bad in (
        "md5 " + base64.b64encode(hashlib.md5(b"").digest()).decode(),
        "sha256",
        "crc32 AAAA",
    ):
        r = await tus.patch(url, data[30_000:60_000], 30_000, {"Upload-Checksum": bad})
        assert r.status_code == 400, bad
    r = await tus.patch(
        url, data[30_000:], 30_000, {"Upload-Checksum": checksum("sha1", data[30_000:])}
    )
    assert r.status_code == 204 and "pooldrop-upload-id" in r.headers


async def test_whole_file_checks_at_the_last_byte(tus: Tus, server: LiveServer) -> None:
    elf = b"\x7fELF\x02\x01\x01\x00" + os.urandom(5000)
    url = await tus.start(len(elf), filename="data.bin")
    r = await tus.patch(url, elf, 0)
    assert r.status_code == 415 and r.json()["code"] == "forbidden_type"
    assert (await tus.head(url)).status_code == 404  # the verdict ended the transfer
    data = os.urandom(5000)
    url = await tus.start(len(data), sha256=hashlib.sha256(b"other").hexdigest())
    r = await tus.patch(url, data, 0)
    assert r.status_code == 422 and r.json()["code"] == "checksum_mismatch"
    assert await parts(server) == []
    # The window closed while the bytes came: late at the last byte.
    url = await tus.start(len(data), ts=START + timedelta(seconds=30))
    server.clock.advance(120)
    r = await tus.patch(url, data, 0)
    assert r.status_code == 409 and r.json()["code"] == "window_closed"


async def test_expiration(tus: Tus, pool: PoolFixture, server: LiveServer) -> None:
    url = await tus.start(1000)
    assert (await tus.patch(url, b"a" * 400, 0)).status_code == 204
    finished = await tus.create(10, body=b"0123456789")
    assert await parts(server) != []
    server.clock.advance(server.settings.transfer_expiry + 1)
    assert (await tus.head(url)).status_code == 410
    r = await tus.patch(url, b"a" * 600, 400)
    assert r.status_code == 410 and r.json()["code"] == "gone"
    done = await server.scheduler.run_once()
    assert done["expire_transfers"] == 2
    assert (await tus.head(url)).status_code == 404
    assert (await tus.head(finished.headers["location"])).status_code == 404
    assert await parts(server) == []
    assert (await server.scheduler.run_once())["expire_transfers"] == 0
    assert len(await uploads_of(pool)) == 1  # expiry frees transfers, never uploads


async def test_termination(tus: Tus, server: LiveServer) -> None:
    url = await tus.start(1000)
    assert (await tus.patch(url, b"a" * 400, 0)).status_code == 204
    r = await tus.who.client.delete(url, headers=TUS)
    assert r.status_code == 204 and r.headers["tus-resumable"] == "1.0.0"
    assert (await tus.head(url)).status_code == 404
    assert (await tus.patch(url, b"a" * 600, 400)).status_code == 404
    assert await parts(server) == []
    assert (await tus.who.client.delete(url, headers=TUS)).status_code == 404


async def test_a_new_patch_takes_over_a_stalled_one(
    tus: Tus, pool: PoolFixture, server: LiveServer
) -> None:
    data = os.urandom(200_000)
    url = await tus.start(len(data))
    stalled = await raw_patch(server, pool.contributor, url, 0, len(data))
    await stalled.send(data[:50_000])
    await asyncio.sleep(0.1)  # the server is inside the stalled PATCH, holding the transfer
    r = await tus.patch(url, data, 0)  # no 423: the client moved on, so does the server
    assert r.status_code == 204, r.text
    upload_id = r.headers["pooldrop-upload-id"]
    # The old connection wakes up and sends its rest: it must not count, nor break anything.
    await stalled.send(data[50_000:])
    status, _, body = await stalled.response()
    assert status == 409 and json.loads(body)["code"] in ("transfer_taken_over", "offset_mismatch")
    await stalled.close()
    h = await tus.head(url)
    assert h.headers["upload-offset"] == str(len(data))
    assert h.headers["pooldrop-upload-id"] == upload_id
    got = await pool.contributor.client.get(
        f"/api/v1/pools/{pool.pool_id}/uploads/{upload_id}/content"
    )
    assert got.content == data
    assert await parts(server) == []
    assert len(await uploads_of(pool)) == 1


async def test_a_dropped_patch_keeps_what_arrived(
    tus: Tus, pool: PoolFixture, server: LiveServer
) -> None:
    data = os.urandom(300_000)
    url = await tus.start(len(data))
    cut = await raw_patch(server, pool.contributor, url, 0, len(data))
    await cut.send(data[:120_000])
    await asyncio.sleep(0.1)
    await cut.close()
    offset = 0
    for _ in range(300):
        offset = int((await tus.head(url)).headers["upload-offset"])
        if offset:
            break
        await asyncio.sleep(0.01)
    assert 0 < offset <= 120_000
    r = await tus.patch(url, data[offset:], offset)
    assert r.status_code == 204
    upload_id = r.headers["pooldrop-upload-id"]
    got = await pool.contributor.client.get(
        f"/api/v1/pools/{pool.pool_id}/uploads/{upload_id}/content"
    )
    assert got.content == data


async def test_a_large_patch_is_stored_in_parts(tus: Tus, pool: PoolFixture) -> None:
    data = os.urandom(20 * 1024 * 1024)  # more than two parts
    url = await tus.start(len(data))
    r = await tus.patch(url, data, 0)
    assert r.status_code == 204, r.text
    upload_id = r.headers["pooldrop-upload-id"]
    u = (
        await pool.contributor.client.get(f"/api/v1/pools/{pool.pool_id}/uploads/{upload_id}")
    ).json()
    assert u["sha256"] == hashlib.sha256(data).hexdigest() and u["size"] == len(data)
