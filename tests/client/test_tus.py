"""Resumable (tus) uploads through the SDK: chunks, a broken connection, resuming by URL."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pooldrop.client import Client, RetryPolicy, TransportError, WindowClosed
from tests.client.support import LoseAnswers, Recording, in_thread, no_sleep
from tests.client.test_uploads import contributor
from tests.conftest import START
from tests.support.api import Api
from tests.support.server import LiveServer

TS = START + timedelta(seconds=5)
MB = 1024 * 1024


def is_patch(r: httpx.Request) -> bool:
    return r.method == "PATCH"


class FailSecondPatch(httpx.HTTPTransport):
    """The second PATCH never reaches the server (as when the client machine goes offline)."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            self.patches += 1
            if self.patches == 2:
                raise httpx.ConnectError("offline (test)", request=request)
        return super().handle_request(request)


async def test_chunked_upload_with_a_lost_answer(
    api: Api, server: LiveServer, tmp_path: Path
) -> None:
    pool_id, key, admin = await contributor(api)
    data = os.urandom(3 * MB + 100)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    lose = LoseAnswers(1, lambda r: r.method == "PATCH" and r.headers["upload-offset"] == str(MB))

    def scenario() -> None:
        policy = RetryPolicy(sleep=no_sleep)
        with Client(server.url, api_key=key, transport=lose, retry=policy) as c:
            up = c.upload_resumable(
                pool_id, path, ts=TS, chunk_size=MB, metadata={"run": 1}, client_upload_id="t-1"
            )
            assert up.size == len(data) and up.sha256 == hashlib.sha256(data).hexdigest()
            assert up.metadata == {"run": 1} and up.client_upload_id == "t-1" and up.ts == TS
            offsets = [r.headers["upload-offset"] for r in lose.requests if is_patch(r)]
            assert [r.method for r in lose.requests].count("HEAD") == 1
            # The second chunk's answer was lost: the server already had it, so after a HEAD the
            # upload went on from 2 MiB instead of sending that chunk again.
            assert offsets == ["0", str(MB), str(2 * MB), str(3 * MB)]
        with Client(server.url, token=admin) as c:
            assert [u.upload_id for u in c.iter_uploads(pool_id)] == [up.upload_id]

    await in_thread(scenario)


async def test_resume_by_url_in_a_new_client(api: Api, server: LiveServer, tmp_path: Path) -> None:
    pool_id, key, _ = await contributor(api)
    data = os.urandom(3 * MB)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    urls: list[str] = []

    def scenario() -> None:
        once = RetryPolicy(attempts=1, sleep=no_sleep)
        with (
            Client(server.url, api_key=key, transport=FailSecondPatch(), retry=once) as c,
            pytest.raises(TransportError),
        ):
            c.upload_resumable(pool_id, path, ts=TS, chunk_size=MB, on_url=urls.append)
        assert len(urls) == 1
        rec = Recording()
        with Client(server.url, api_key=key, transport=rec) as c:
            up = c.upload_resumable(pool_id, path, ts=TS, chunk_size=MB, url=urls[0])
        assert up.sha256 == hashlib.sha256(data).hexdigest()
        assert [r.method for r in rec.requests] == ["HEAD", "PATCH", "PATCH", "GET"]
        assert rec.requests[1].headers["upload-offset"] == str(MB)

    await in_thread(scenario)


async def test_validation_happens_at_the_end(api: Api, server: LiveServer) -> None:
    pool_id, key, _ = await contributor(api)

    def scenario() -> None:
        with Client(server.url, api_key=key) as c, pytest.raises(WindowClosed):
            c.upload_resumable(pool_id, b"late" * 1000, ts=START - timedelta(hours=1))

    await in_thread(scenario)
