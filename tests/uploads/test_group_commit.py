"""Group commit (services/recorder.py): concurrent uploads share a transaction, each its answer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from pooldrop.services import recorder
from tests.conftest import START
from tests.support.server import LiveServer
from tests.uploads.conftest import PoolFixture


def _body(size: int) -> bytes:
    # Random bytes, but never the leading bytes of a refused type (ELF, "MZ", "#!", ...).
    return b"data" + os.urandom(size - 4)


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the batches recorded together. The first batch is held back a little, so that
    uploads sent at the same time queue up behind it and form the next batch."""
    sizes: list[int] = []
    real = recorder.record_together

    async def held(rt: Any, items: list[Any]) -> list[Any]:
        if not sizes:
            await asyncio.sleep(0.3)
        sizes.append(len(items))
        return await real(rt, items)

    monkeypatch.setattr(recorder, "record_together", held)
    return sizes


async def _events(pool: PoolFixture) -> list[dict[str, Any]]:
    r = await pool.admin.client.get(
        f"/api/v1/pools/{pool.pool_id}/events", params={"after": 0, "wait": 0}
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["events"]
    return items


async def test_concurrent_uploads_are_recorded_together(
    pool: PoolFixture, batches: list[int]
) -> None:
    bodies = [_body(20_000) for _ in range(30)]
    ts = START + timedelta(seconds=5)
    responses = await asyncio.gather(
        *(pool.upload(b, ts=ts, client_upload_id=f"c-{i}") for i, b in enumerate(bodies))
    )
    assert [r.status_code for r in responses] == [201] * 30
    ids = {r.json()["upload_id"] for r in responses}
    assert len(ids) == 30
    assert max(batches) > 1, batches  # shared transactions, not one per upload
    assert sum(batches) == 30
    group_ids = {r.json()["group_id"] for r in responses}
    assert len(group_ids) == 1
    g = await pool.admin.client.get(f"/api/v1/pools/{pool.pool_id}/groups/{group_ids.pop()}")
    assert g.json()["file_count"] == 30 and g.json()["bytes"] == 30 * 20_000
    stored = [e for e in await _events(pool) if e["type"] == "upload.stored"]
    assert {e["data"]["upload_id"] for e in stored} == ids
    seqs = [e["seq"] for e in stored]
    assert seqs == sorted(seqs) and len(set(seqs)) == 30


async def test_twins_in_one_batch_get_one_upload(
    pool: PoolFixture, batches: list[int], server: LiveServer
) -> None:
    same, other = _body(10_000), _body(10_000)
    ts = START + timedelta(seconds=5)
    first = asyncio.ensure_future(pool.upload(_body(1000), ts=ts, client_upload_id="lead"))
    await asyncio.sleep(0.1)  # the lead's batch is held: the rest queue behind it together
    twins = await asyncio.gather(
        pool.upload(same, ts=ts, client_upload_id="twin"),
        pool.upload(same, ts=ts, client_upload_id="twin"),
        pool.upload(same, ts=ts, client_upload_id="clash"),
        pool.upload(other, ts=ts, client_upload_id="clash"),
        pool.upload(other, ts=ts, client_upload_id="solo"),
    )
    assert (await first).status_code == 201
    codes = [r.status_code for r in twins]
    assert sorted(codes[:2]) == [200, 201]
    assert twins[0].json()["upload_id"] == twins[1].json()["upload_id"]
    assert sorted(codes[2:4]) == [201, 409]
    clash = next(r for r in twins[2:4] if r.status_code == 409)
    assert clash.json()["code"] == "duplicate_conflict"
    assert codes[4] == 201
    # Four uploads kept, and no blob left behind by the replay or the refused twin.
    listed = await pool.contributor.client.get(f"/api/v1/pools/{pool.pool_id}/uploads")
    assert len(listed.json()["items"]) == 4
    assert len(await server.runtime.blobs.list_prefix("pools")) == 4


async def test_a_failed_batch_is_recorded_one_by_one(
    pool: PoolFixture, monkeypatch: pytest.MonkeyPatch, server: LiveServer
) -> None:
    async def broken(rt: Any, items: list[Any]) -> list[Any]:
        raise RuntimeError("batch transaction failed")

    monkeypatch.setattr(recorder, "record_together", broken)
    ts = START + timedelta(seconds=5)
    responses = await asyncio.gather(*(pool.upload(_body(5000), ts=ts) for _ in range(8)))
    assert [r.status_code for r in responses] == [201] * 8
    assert len(await server.runtime.blobs.list_prefix("pools")) == 8


async def test_a_cancelled_request_still_gets_recorded_with_its_blob(
    pool: PoolFixture, batches: list[int], server: LiveServer
) -> None:
    """A client that hangs up while its upload waits for the writer: the upload is kept whole
    (row and bytes), so its retry is answered as a replay."""
    data = _body(10_000)
    ts = START + timedelta(seconds=5)
    task = asyncio.ensure_future(pool.upload(data, ts=ts, client_upload_id="gone"))
    await asyncio.sleep(0.15)  # streamed, now waiting in the held batch
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until(lambda: _count(server), 1)
    again = await pool.upload(data, ts=ts, client_upload_id="gone")
    assert again.status_code == 200, again.text
    got = await pool.contributor.client.get(
        f"/api/v1/pools/{pool.pool_id}/uploads/{again.json()['upload_id']}/content"
    )
    assert got.content == data


async def _count(server: LiveServer) -> int:
    return len(await server.runtime.blobs.list_prefix("pools"))


async def _until(probe: Callable[[], Awaitable[int]], want: int) -> None:
    for _ in range(100):
        if await probe() == want:
            return
        await asyncio.sleep(0.05)
    assert await probe() == want
