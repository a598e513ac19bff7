"""The resumable machinery under tus and WebSocket: parts, writer generations, clean-up jobs."""

from __future__ import annotations

import hashlib
import os

import pytest
from sqlalchemy import delete

from pooldrop.api.deps import authenticate_credential
from pooldrop.services import transfers, uploads
from pooldrop.services.principals import Principal
from pooldrop.store.models import Transfer
from tests.conftest import START
from tests.support.server import LiveServer
from tests.uploads.conftest import PoolFixture


async def contributor(server: LiveServer, pool: PoolFixture) -> Principal:
    return await authenticate_credential(server.runtime, pool.contributor.token)


async def new_transfer(server: LiveServer, pool: PoolFixture, who: Principal, length: int) -> str:
    spec = uploads.UploadSpec(pool_id=pool.pool_id, name="p.bin", ts=START)
    t = await transfers.create(server.runtime, who, spec, length=length, protocol="tus")
    return t.id


async def test_a_crashed_writers_leftover_part_never_enters_the_file(
    pool: PoolFixture, server: LiveServer
) -> None:
    rt = server.runtime
    who = await contributor(server, pool)
    head, tail = os.urandom(1000), os.urandom(2000)
    tid = await new_transfer(server, pool, who, len(head) + len(tail))
    first = await transfers.take_over(rt, who, tid, 0)
    await first.write(head)
    assert await first.flush() == 1000
    # The first writer stores a part at 1000 but dies before counting it.
    first.part_size, first.hold = 500, True
    await first.write(b"\xff" * 600)
    assert len(await rt.blobs.list_prefix(f"transfers/{tid}")) == 2
    second = await transfers.take_over(rt, who, tid, 1000)
    await second.write(tail)
    assert await second.flush() == 3000
    outcome = await second.finish(who)
    assert outcome.created and outcome.upload.sha256 == hashlib.sha256(head + tail).hexdigest()
    assert await rt.blobs.list_prefix("transfers") == []


async def test_a_writer_taken_over_cannot_move_the_offset(
    pool: PoolFixture, server: LiveServer
) -> None:
    rt = server.runtime
    who = await contributor(server, pool)
    tid = await new_transfer(server, pool, who, 100)
    old = await transfers.take_over(rt, who, tid, 0)
    await old.write(b"a" * 40)
    new = await transfers.take_over(rt, who, tid, 0)
    with pytest.raises(transfers.TakenOver):
        await old.flush()
    assert (await transfers.get(rt, who, tid)).offset == 0
    await new.write(b"b" * 30)
    assert await new.flush() == 30
    assert len(await rt.blobs.list_prefix(f"transfers/{tid}")) == 1


async def test_storage_sweep_removes_orphans_at_most_every_interval(
    pool: PoolFixture, server: LiveServer
) -> None:
    rt = server.runtime
    who = await contributor(server, pool)

    async def orphan() -> str:
        tid = await new_transfer(server, pool, who, 100)
        writer = await transfers.take_over(rt, who, tid, 0)
        await writer.write(b"z" * 10)
        await writer.flush()
        # A crash between removing the row and its parts.
        async with rt.uow() as uow:
            await uow.session.execute(delete(Transfer).where(Transfer.id == tid))
        return tid

    live = await new_transfer(server, pool, who, 100)
    writer = await transfers.take_over(rt, who, live, 0)
    await writer.write(b"k" * 10)
    await writer.flush()
    first = await orphan()
    sweep = transfers.StorageSweep(interval=600)
    assert await sweep(rt) == 1
    keys = await rt.blobs.list_prefix("transfers")
    assert keys and all(k.startswith(f"transfers/{live}/") for k in keys)
    second = await orphan()
    assert await sweep(rt) == 0  # too soon
    server.clock.advance(601)
    assert await sweep(rt) == 1
    for tid in (first, second):
        assert await rt.blobs.list_prefix(f"transfers/{tid}") == []
    assert len(await rt.blobs.list_prefix("transfers")) == 1
