"""The offline uploader against a live server: batches, exact-once delivery, rejections."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

from pooldrop.client import AsyncClient, AsyncUploader, Backoff, Client, OutboxEntry, Uploader
from tests.client.support import LoseAnswers, Recording, Refuse, in_thread
from tests.client.test_outbox import Clock
from tests.conftest import START
from tests.support.api import Api
from tests.support.server import LiveServer

TS = START + timedelta(seconds=5)
LATE = START - timedelta(minutes=10)


async def pool_with_key(api: Api) -> tuple[str, str, str]:
    admin = await api.user()
    pool = await api.pool(admin, window="1m")
    key = await api.key(admin, pool["pool_id"], "contributor")
    return pool["pool_id"], key.token, admin.token


def server_uploads(server: LiveServer, token: str, pool_id: str) -> list[str]:
    with Client(server.url, token=token) as c:
        return sorted(u.client_upload_id or "" for u in c.iter_uploads(pool_id))


async def test_flush_sends_batches_and_settles_each_file(
    api: Api, server: LiveServer, tmp_path: Path
) -> None:
    pool_id, key, admin = await pool_with_key(api)
    rec = Recording()
    seen: list[OutboxEntry] = []

    def scenario() -> None:
        with (
            Client(server.url, api_key=key, transport=rec) as client,
            Uploader(
                client, pool_id, outbox=tmp_path / "box", batch_files=4, on_outcome=seen.append
            ) as up,
        ):
            added = [up.add(f"reading {i}".encode(), ts=TS, name=f"r{i}.txt") for i in range(9)]
            late = up.add(b"too old", ts=LATE, name="old.txt")
            empty = up.add(b"", ts=TS, name="empty.txt")
            report = up.flush()
            assert report.error is None and report.pending == 0
            assert sorted(e.id for e in report.delivered) == [e.id for e in added]
            assert {e.id: e.error_code for e in report.rejected} == {
                late.id: "window_closed",
                empty.id: "empty_file",
            }
            assert all(e.upload_id for e in report.delivered)
            assert all(not e.path.exists() for e in report.delivered)
            assert {e.id for e in seen} == {e.id for e in [*added, late, empty]}
            # Batches, not single uploads: 11 files in 3 requests of at most 4.
            posts = [r for r in rec.requests if r.method == "POST"]
            assert [r.url.path.rsplit("/", 1)[-1] for r in posts] == ["batches"] * 3
            # Rejected files stay rejected: another flush sends nothing.
            rec.requests.clear()
            assert up.flush().rejected == [] and rec.requests == []
            assert {e.error_code for e in up.rejected()} == {"window_closed", "empty_file"}
            stored = server_uploads(server, admin, pool_id)
            assert stored == sorted(e.client_upload_id for e in added)

    await in_thread(scenario)


async def test_lost_answer_then_duplicate_delivers_once(
    api: Api, server: LiveServer, tmp_path: Path
) -> None:
    pool_id, key, admin = await pool_with_key(api)
    lose = LoseAnswers(1, lambda r: r.url.path.endswith("/batches"))
    clock = Clock()

    def scenario() -> None:
        with (
            Client(server.url, api_key=key, transport=lose) as client,
            Uploader(client, pool_id, outbox=tmp_path / "box", clock=clock) as up,
        ):
            added = [up.add(f"{i}".encode() * 50, ts=TS) for i in range(5)]
            first = up.flush()
            # The server stored them, but the answer was lost: nothing is settled yet.
            assert first.delivered == [] and first.retrying == 5 and first.error
            assert len(up.pending()) == 5
            assert up.flush().error  # still backing off: no request at all
            assert len(lose.sent) == 1
            clock.t += 600
            second = up.flush()
            assert len(second.delivered) == 5 and second.pending == 0
            assert len(lose.sent) == 2
            stored = server_uploads(server, admin, pool_id)
            assert stored == sorted(e.client_upload_id for e in added)

    await in_thread(scenario)


async def test_unreachable_server_backs_off_as_a_whole(tmp_path: Path) -> None:
    refuse = Refuse()
    clock = Clock()
    with (
        Client("http://127.0.0.1:9", api_key="pdk_x", transport=refuse) as client,
        Uploader(
            client, "p", outbox=tmp_path, clock=clock, backoff=Backoff(initial=2, maximum=60)
        ) as up,
    ):
        for i in range(3):
            up.add(b"x%d" % i, ts=TS)
        report = up.flush()
        assert "cannot reach" in (report.error or "") and report.pending == 3
        assert refuse.attempts == 1  # one request told it all; the rest were not tried
        wait = up.seconds_until_due()
        assert 1.0 <= wait <= 2.0
        up.flush()
        assert refuse.attempts == 1
        delays = []
        for _ in range(6):
            clock.t += 1000
            up.flush()
            delays.append(up.seconds_until_due(idle=1000))
        assert refuse.attempts == 7
        assert delays[-1] <= 60 and delays[-1] >= 30  # capped exponential growth
        assert all(e.state == "pending" for e in up.pending())


async def test_background_thread_delivers_what_is_added(
    api: Api, server: LiveServer, tmp_path: Path
) -> None:
    pool_id, key, admin = await pool_with_key(api)

    def scenario() -> None:
        with Uploader(server.url, pool_id, api_key=key, outbox=tmp_path / "box") as up:
            up.start()
            added = [up.add(b"bg %d" % i, ts=TS) for i in range(3)]
            deadline = time.monotonic() + 20
            while up.outbox.counts()["delivered"] < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            up.stop()
            assert up.outbox.counts() == {"pending": 0, "delivered": 3, "rejected": 0}
        assert server_uploads(server, admin, pool_id) == sorted(e.client_upload_id for e in added)

    await in_thread(scenario)


async def test_async_uploader_task(api: Api, server: LiveServer, tmp_path: Path) -> None:
    pool_id, key, admin = await pool_with_key(api)
    async with AsyncUploader(
        server.url, pool_id, api_key=key, outbox=tmp_path / "box", batch_files=2
    ) as up:
        added = [await up.add(b"async %d" % i, ts=TS) for i in range(3)]
        late = await up.add(b"late", ts=LATE)
        up.start()
        for _ in range(400):
            if up.outbox.counts()["pending"] == 0:
                break
            await asyncio.sleep(0.05)
        await up.stop()
        assert up.outbox.counts() == {"pending": 0, "delivered": 3, "rejected": 1}
        assert [e.error_code for e in up.rejected()] == ["window_closed"]
        assert (await up.flush()).delivered == []
    async with AsyncClient(server.url, token=admin) as c:
        stored = sorted([u.client_upload_id or "" async for u in c.iter_uploads(pool_id)])
    assert (
        stored == sorted(e.client_upload_id for e in added) and late.client_upload_id not in stored
    )
