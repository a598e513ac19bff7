"""POST /pools/{id}/batches: streamed multipart batches where each file stands or falls alone."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tracemalloc
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import START
from tests.support.api import Actor
from tests.support.server import LiveServer
from tests.uploads.conftest import PoolFixture

BOUNDARY = "pooldrop-batch-7f3a9c"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def _head(name: str, content_type: str = "application/octet-stream", first: bool = False) -> bytes:
    lead = "" if first else "\r\n"
    return (
        f'{lead}--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"'
        f"\r\nContent-Type: {content_type}\r\n\r\n"
    ).encode()


def pieces(manifest: Any, files: Iterable[tuple[str, bytes]]) -> list[bytes]:
    """The body as pieces: manifest part, then (head, data) per file, then the closing line."""
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    out = [_head("manifest", "application/json", first=True) + raw]
    for name, data in files:
        out += [_head(name), data]
    out.append(f"\r\n--{BOUNDARY}--\r\n".encode())
    return out


async def post_batch(
    who: Actor, pool_id: str, body: bytes | AsyncIterator[bytes], content_type: str = CONTENT_TYPE
) -> httpx.Response:
    return await who.client.post(
        f"/api/v1/pools/{pool_id}/batches", content=body, headers={"Content-Type": content_type}
    )


def entry(part: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "part": part,
        "ts": (START + timedelta(seconds=seconds)).isoformat(),
        "name": f"{part}.bin",
        **extra,
    }


async def stored_keys(server: LiveServer) -> list[str]:
    return await server.runtime.blobs.list_prefix("pools")


async def test_files_land_in_their_own_windows(pool: PoolFixture) -> None:
    # Earlier windows stay open a while: an offline client's files are late, not refused.
    r = await pool.admin.client.patch(
        f"/api/v1/pools/{pool.pool_id}", json={"allowed_lateness": "10m"}
    )
    assert r.status_code == 200, r.text
    files = {f"f{i}": os.urandom(50_000 + i) for i in range(3)}
    manifest = [
        entry("f0", -130, client_upload_id="b-0", metadata={"n": 0}),
        entry("f1", -70, sha256=hashlib.sha256(files["f1"]).hexdigest()),
        {"part": "f2", "ts": START.timestamp() - 5, "name": "third.bin"},
    ]
    r = await post_batch(pool.contributor, pool.pool_id, b"".join(pieces(manifest, files.items())))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["part"] for x in results] == ["f0", "f1", "f2"]
    assert [x["status"] for x in results] == ["stored"] * 3, results
    uploads = [x["upload"] for x in results]
    assert [u["window_start"] for u in uploads] == [
        "2026-03-02T11:57:00Z",
        "2026-03-02T11:58:00Z",
        "2026-03-02T11:59:00Z",
    ]
    assert len({u["group_id"] for u in uploads}) == 3
    assert uploads[0]["client_upload_id"] == "b-0" and uploads[0]["metadata"] == {"n": 0}
    assert uploads[2]["name"] == "third.bin"
    for (part, data), u in zip(files.items(), uploads, strict=True):
        assert u["sha256"] == hashlib.sha256(data).hexdigest(), part
        got = await pool.contributor.client.get(
            f"/api/v1/pools/{pool.pool_id}/uploads/{u['upload_id']}/content"
        )
        assert got.content == data


async def test_each_file_stands_or_falls_alone(pool: PoolFixture, server: LiveServer) -> None:
    good = os.urandom(10_000)
    manifest = [
        entry("good", 1),
        entry("exe", 2, name="tool.exe"),
        entry("badts", 3, ts="yesterday"),
        entry("digest", 4, sha256="00" * 32),
        entry("badsha", 5, sha256="not-hex"),
        entry("empty", 6),
        entry("future", 7, ts=(START + timedelta(hours=2)).isoformat()),
        entry("absent", 8),
        entry("elf", 9),
    ]
    files = [
        ("good", good),
        ("exe", b"harmless text"),
        ("badts", b"x"),
        ("digest", b"y" * 100),
        ("badsha", b"z"),
        ("empty", b""),
        ("future", b"f"),
        ("stray", b"not in the manifest"),
        ("elf", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 100),
        ("good", b"the same part again"),
    ]
    r = await post_batch(pool.contributor, pool.pool_id, b"".join(pieces(manifest, files)))
    assert r.status_code == 200, r.text
    got = {
        (x["part"], x["status"], (x.get("error") or {}).get("code")) for x in r.json()["results"]
    }
    assert got == {
        ("good", "stored", None),
        ("exe", "rejected", "forbidden_type"),
        ("badts", "rejected", "validation_error"),
        ("digest", "rejected", "checksum_mismatch"),
        ("badsha", "rejected", "validation_error"),
        ("empty", "rejected", "empty_file"),
        ("future", "rejected", "ts_in_future"),
        ("absent", "rejected", "validation_error"),
        ("elf", "rejected", "forbidden_type"),
        ("stray", "rejected", "validation_error"),
        ("good", "rejected", "validation_error"),
    }
    results = r.json()["results"]
    # Manifest order first, then the parts the manifest did not expect.
    assert [x["part"] for x in results] == [e["part"] for e in manifest] + ["stray", "good"]
    absent = results[7]["error"]
    assert absent["status"] == 422 and "part missing" in absent["detail"]
    assert absent["type"].endswith("/validation_error")
    assert results[1]["error"]["status"] == 415
    assert len(await stored_keys(server)) == 1
    listed = (await pool.admin.client.get(f"/api/v1/pools/{pool.pool_id}/uploads")).json()
    assert [u["name"] for u in listed["items"]] == ["good.bin"]


async def test_late_file_rejected_others_stored(pool: PoolFixture) -> None:
    # No lateness allowed: the window before START is closed, the current one open.
    manifest = [entry("late", -50), entry("now", 10)]
    files = [("late", b"late bytes"), ("now", b"current bytes")]
    r = await post_batch(pool.contributor, pool.pool_id, b"".join(pieces(manifest, files)))
    results = {x["part"]: x for x in r.json()["results"]}
    assert results["late"]["status"] == "rejected"
    assert results["late"]["error"]["code"] == "window_closed"
    assert results["now"]["status"] == "stored"


async def test_whole_batch_errors(pool: PoolFixture, server: LiveServer) -> None:
    ok_file = [("a", b"data")]

    async def code_of(body: bytes, content_type: str = CONTENT_TYPE) -> tuple[int, str]:
        r = await post_batch(pool.contributor, pool.pool_id, body, content_type)
        return r.status_code, r.json()["code"]

    assert await code_of(b"{}", "application/json") == (415, "unsupported_media_type")
    assert await code_of(b"x", "multipart/form-data") == (415, "unsupported_media_type")
    not_first = _head("a", first=True) + b"data" + f"\r\n--{BOUNDARY}--\r\n".encode()
    assert await code_of(not_first) == (422, "validation_error")
    for manifest in (
        b"not json",
        b"[]",
        b'{"part": "a"}',
        b'[{"ts": 1, "name": "a"}]',
        json.dumps([entry("a", 1), entry("a", 2)]).encode(),
        json.dumps([entry("manifest", 1)]).encode(),
        b"[" + b" " * (1024 * 1024) + b"]",
    ):
        assert await code_of(b"".join(pieces(manifest, ok_file))) == (422, "validation_error")
    assert await code_of(b"garbage without any boundary") == (422, "validation_error")
    truncated = b"".join(pieces([entry("a", 1)], ok_file))[:-10]
    assert await code_of(truncated) == (422, "validation_error")
    server.runtime.settings = server.runtime.settings.model_copy(update={"max_request_files": 2})
    many = [entry(f"p{i}", i) for i in range(3)]
    assert await code_of(b"".join(pieces(many, []))) == (422, "validation_error")
    assert await stored_keys(server) == []
    # Unexpected parts are reported, up to as many as the manifest has entries.
    strays = [("a", b"data")] + [(f"x{i}", b"?") for i in range(3)]
    assert await code_of(b"".join(pieces([entry("a", 1), entry("b", 2)], strays))) == (
        422,
        "validation_error",
    )
    # Access comes before the body is looked at: outsiders and listeners learn nothing more.
    listener = await pool.api.key(pool.admin, pool.pool_id, "listener")
    body = b"".join(pieces([entry("a", 1)], ok_file))
    assert (await post_batch(listener, pool.pool_id, body)).status_code == 403
    outsider = await pool.api.user()
    assert (await post_batch(outsider, pool.pool_id, body)).status_code == 404
    assert (await pool.api.anon.post(f"/api/v1/pools/{pool.pool_id}/batches")).status_code == 401


async def _wait_for_uploads(pool: PoolFixture, count: int) -> list[dict[str, Any]]:
    for _ in range(500):
        r = await pool.contributor.client.get(f"/api/v1/pools/{pool.pool_id}/uploads")
        items: list[dict[str, Any]] = r.json()["items"]
        if len(items) >= count:
            return items
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} uploads never appeared")


async def test_resent_batch_after_a_cut_creates_no_duplicates(
    pool: PoolFixture, server: LiveServer
) -> None:
    files = [(f"f{i}", os.urandom(200_000)) for i in range(5)]
    manifest = [entry(name, i, client_upload_id=f"cut-{i}") for i, (name, _) in enumerate(files)]
    body = pieces(manifest, files)
    # Cut inside the 4th file: the first three are complete on the wire.
    cut = sum(len(p) for p in body[:7]) + 1000
    full = b"".join(body)
    url = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = (
        f"POST /api/v1/pools/{pool.pool_id}/batches HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {pool.contributor.token}\r\nContent-Type: {CONTENT_TYPE}\r\n"
        f"Content-Length: {len(full)}\r\n\r\n"
    ).encode()
    writer.write(head + full[:cut])
    await writer.drain()
    await _wait_for_uploads(pool, 3)
    writer.close()
    await writer.wait_closed()
    assert await reader.read() == b""  # the server answered nothing to a cut request

    r = await post_batch(pool.contributor, pool.pool_id, full)
    assert r.status_code == 200, r.text
    statuses = [x["status"] for x in r.json()["results"]]
    assert statuses == ["duplicate"] * 3 + ["stored"] * 2
    items = await _wait_for_uploads(pool, 5)
    assert sorted(u["client_upload_id"] for u in items) == [f"cut-{i}" for i in range(5)]
    assert len(await stored_keys(server)) == 5
    again = await post_batch(pool.contributor, pool.pool_id, full)
    assert [x["status"] for x in again.json()["results"]] == ["duplicate"] * 5


# The route's memory does not depend on the backends, except the blob writer's own buffering,
# which the blob suite measures per backend (S3 holds a multipart part, several MiB, in memory).
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_memory_stays_bounded_for_a_large_batch(pool: PoolFixture) -> None:
    chunk = os.urandom(64 * 1024)
    per_file = 256  # chunks: 16 MiB a file
    manifest = [entry(f"big{i}", i) for i in range(3)]
    parts = pieces(manifest, [(f"big{i}", b"") for i in range(3)])
    expected = hashlib.sha256(chunk * per_file).hexdigest()

    async def body() -> AsyncIterator[bytes]:
        yield parts[0]
        for i in range(3):
            yield parts[1 + 2 * i]
            for _ in range(per_file):
                yield chunk
        yield parts[-1]

    tracemalloc.start()
    try:
        r = await post_batch(pool.contributor, pool.pool_id, body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 200, r.text
    assert [x["upload"]["sha256"] for x in r.json()["results"]] == [expected] * 3
    # 48 MiB went through; client, server and storage together held a small fraction of it.
    assert peak < 16 * 1024 * 1024, peak
