"""Uploads through the SDK: sources, digests, idempotent retries, rejections, downloads."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from datetime import timedelta
from pathlib import Path

import pytest

from pooldrop.client import (
    AsyncClient,
    ChecksumMismatch,
    Client,
    DuplicateConflict,
    EmptyFile,
    IntegrityError,
    RetryPolicy,
    TsInFuture,
    Upload,
    WindowClosed,
)
from pooldrop.client import _endpoints as ep
from pooldrop.client._content import Source, format_ts
from tests.client.support import LoseAnswers, Recording, in_thread, no_sleep
from tests.conftest import START
from tests.support.api import Api
from tests.support.server import LiveServer

TS = START + timedelta(seconds=5)


async def contributor(api: Api) -> tuple[str, str, str]:
    """(pool_id, contributor key, admin token) of a fresh 1-minute pool."""
    admin = await api.user()
    pool = await api.pool(admin, window="1m")
    key = await api.key(admin, pool["pool_id"], "contributor")
    return pool["pool_id"], key.token, admin.token


async def test_upload_path_bytes_and_streams(api: Api, server: LiveServer, tmp_path: Path) -> None:
    pool_id, key, _ = await contributor(api)
    data = os.urandom(700_000)
    path = tmp_path / "reading.bin"
    path.write_bytes(data)
    rec = Recording()

    def scenario() -> list[Upload]:
        with Client(server.url, api_key=key, transport=rec) as c:
            from_path = c.upload(pool_id, path, ts=TS, metadata={"sensor": 3})
            from_bytes = c.upload(pool_id, b"abc" * 1000, ts=TS.timestamp(), name="b.txt")
            with path.open("rb") as f:
                from_file = c.upload(pool_id, f, ts="2026-03-02T12:00:07Z")
            # A stream that cannot seek is spooled while hashed.
            from_pipe = c.upload(pool_id, io.BufferedReader(io.BytesIO(data)), ts=TS, name="p")
            return [from_path, from_bytes, from_file, from_pipe]

    up_path, up_bytes, up_file, up_pipe = await in_thread(scenario)
    digest = hashlib.sha256(data).hexdigest()
    assert up_path.name == "reading.bin" and up_path.size == len(data)
    assert up_path.sha256 == digest and up_path.metadata == {"sensor": 3}
    assert up_path.ts == TS and up_path.status == "stored" and up_path.client_upload_id
    assert up_bytes.name == "b.txt" and up_bytes.size == 3000 and up_bytes.ts == TS
    assert up_file.sha256 == digest and up_file.name == "reading.bin"
    assert up_pipe.sha256 == digest and up_pipe.name == "p"
    first = rec.requests[0]
    b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert first.headers["content-digest"] == f"sha-256=:{b64}:"
    assert first.headers["content-length"] == str(len(data))
    assert first.url.params["client_upload_id"] == up_path.client_upload_id
    # Every upload got its own generated client_upload_id.
    ids = {u.client_upload_id for u in (up_path, up_bytes, up_file, up_pipe)}
    assert len(ids) == 4


async def test_lost_answer_is_retried_without_a_duplicate(api: Api, server: LiveServer) -> None:
    pool_id, key, admin = await contributor(api)
    lose = LoseAnswers(2, lambda r: r.url.path.endswith("/uploads") and r.method == "POST")

    def scenario() -> Upload:
        policy = RetryPolicy(attempts=4, sleep=no_sleep)
        with Client(server.url, api_key=key, transport=lose, retry=policy) as c:
            return c.upload(pool_id, b"only once" * 100, ts=TS)

    upload = await in_thread(scenario)
    assert len(lose.sent) == 3  # two answers lost, the third got through
    assert {r.url.params["client_upload_id"] for r in lose.sent} == {upload.client_upload_id}
    with Client(server.url, token=admin) as c:
        stored = await in_thread(lambda: c.list_uploads(pool_id).items)
    assert [u.upload_id for u in stored] == [upload.upload_id]


async def test_replay_and_conflicting_replay(api: Api, server: LiveServer) -> None:
    pool_id, key, _ = await contributor(api)

    def scenario() -> None:
        with Client(server.url, api_key=key) as c:
            a = c.upload(pool_id, b"one", ts=TS, client_upload_id="cu-1")
            b = c.upload(pool_id, b"one", ts=TS, client_upload_id="cu-1")
            assert a.upload_id == b.upload_id
            with pytest.raises(DuplicateConflict) as e:
                c.upload(pool_id, b"two", ts=TS, client_upload_id="cu-1")
            assert e.value.status == 409

    await in_thread(scenario)


async def test_rejections_are_typed(api: Api, server: LiveServer) -> None:
    pool_id, key, _ = await contributor(api)

    def scenario() -> None:
        with Client(server.url, api_key=key, retry=RetryPolicy(sleep=no_sleep)) as c:
            with pytest.raises(WindowClosed) as closed:
                c.upload(pool_id, b"late", ts=START - timedelta(minutes=10))
            assert closed.value.code == "window_closed" and closed.value.status == 409
            with pytest.raises(TsInFuture):
                c.upload(pool_id, b"early", ts=START + timedelta(hours=1))
            with pytest.raises(EmptyFile):
                c.upload(pool_id, b"", ts=TS)
            # A body that does not match its announced digest is refused, not stored.
            wrong = Source(name="x", size=3, sha256=hashlib.sha256(b"xyz").digest(), data=b"abc")
            call = ep.upload(
                pool_id,
                wrong,
                ts=format_ts(TS),
                name="x",
                client_upload_id="cu-x",
                metadata_json=None,
                content_type=None,
            )
            with pytest.raises(ChecksumMismatch):
                c.call(call)
            assert c.list_uploads(pool_id).items == []

    await in_thread(scenario)


async def test_history_pages_and_verified_resumed_download(
    api: Api, server: LiveServer, tmp_path: Path
) -> None:
    pool_id, key, _ = await contributor(api)
    data = os.urandom(1_000_000)
    rec = Recording()

    def scenario() -> None:
        with Client(server.url, api_key=key, transport=rec) as c:
            for i in range(5):
                c.upload(pool_id, data if i == 0 else f"{i}".encode() * 10, ts=TS, name=f"f{i}")
            page = c.list_uploads(pool_id, limit=2)
            assert len(page.items) == 2 and page.next_cursor
            every = list(c.iter_uploads(pool_id, limit=2))
            assert sorted(u.name for u in every) == [f"f{i}" for i in range(5)]
            big = next(u for u in every if u.name == "f0")

            dest = tmp_path / "out" / "f0.bin"
            # Half a download already on disk: only the rest is fetched.
            dest.parent.mkdir()
            (dest.parent / "f0.bin.part").write_bytes(data[:400_000])
            rec.requests.clear()
            assert c.download_upload(big, dest) == dest
            assert dest.read_bytes() == data
            assert rec.requests[-1].headers["range"] == "bytes=400000-"
            assert not (dest.parent / "f0.bin.part").exists()
            # Downloading again is a no-op: the file is there with the right digest.
            rec.requests.clear()
            c.download_upload(big, dest)
            assert rec.requests == []

            # A corrupt partial file is caught by the digest and never lands under the name.
            other = tmp_path / "other.bin"
            (tmp_path / "other.bin.part").write_bytes(b"\0" * 400_000)
            with pytest.raises(IntegrityError):
                c.download_upload(big, other)
            assert not other.exists() and not (tmp_path / "other.bin.part").exists()
            c.download_upload(big, other)
            assert other.read_bytes() == data

    await in_thread(scenario)


async def test_async_upload_and_download(api: Api, server: LiveServer, tmp_path: Path) -> None:
    pool_id, key, _ = await contributor(api)
    data = os.urandom(600_000)
    src = tmp_path / "a.bin"
    src.write_bytes(data)
    async with AsyncClient(server.url, api_key=key) as c:
        up = await c.upload(pool_id, src, ts=TS, client_upload_id="async-1")
        again = await c.upload(pool_id, src, ts=TS, client_upload_id="async-1")
        assert up.upload_id == again.upload_id and up.sha256 == hashlib.sha256(data).hexdigest()
        names = [u.name async for u in c.iter_uploads(pool_id)]
        assert names == ["a.bin"]
        dest = await c.download_upload(up, tmp_path / "copy.bin")
        assert dest.read_bytes() == data


async def test_progress_is_reported_while_sending(
    api: Api, server: LiveServer, tmp_path: Path
) -> None:
    pool_id, key, _ = await contributor(api)
    path = tmp_path / "p.bin"
    path.write_bytes(os.urandom(1_000_000))
    sizes: list[int] = []
    async with AsyncClient(server.url, api_key=key) as c:
        await c.upload(pool_id, path, ts=TS, progress=sizes.append)
    assert sum(sizes) == 1_000_000 and len(sizes) > 1  # chunk by chunk, not at the end
