"""Resumable uploads over WebSocket: WsTransfers against a live server's runtime, and once end
to end through the gateway with a real WebSocket client."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from pooldrop.api.deps import authenticate_credential
from pooldrop.api.ws_transfers import WsTransfers
from pooldrop.errors import (
    Conflict,
    FileTooLarge,
    ForbiddenType,
    NotFound,
    ValidationFailed,
    WindowClosed,
)
from pooldrop.services import transfers
from pooldrop.store.models import Transfer
from tests.conftest import START
from tests.support.api import Actor
from tests.support.server import LiveServer
from tests.uploads.conftest import PoolFixture

FRAME = 64 * 1024


async def connection(server: LiveServer, who: Actor) -> WsTransfers:
    return WsTransfers(server.runtime, await authenticate_credential(server.runtime, who.token))


def start_msg(pool: PoolFixture, size: int, **extra: Any) -> dict[str, Any]:
    return {
        "pool_id": pool.pool_id,
        "name": "w.bin",
        "ts": START.isoformat(),
        "size": size,
        **extra,
    }


async def send(conn: WsTransfers, tid: str, data: bytes) -> None:
    key = uuid.UUID(tid).bytes
    for i in range(0, len(data), FRAME):
        await conn.write(key, data[i : i + FRAME])


async def durable_offset(server: LiveServer, tid: str) -> int:
    async with server.runtime.read() as s:
        offset = await s.scalar(select(Transfer.offset).where(Transfer.id == str(uuid.UUID(tid))))
    return int(offset or 0)


async def content(pool: PoolFixture, upload: dict[str, Any]) -> bytes:
    url = f"/api/v1/pools/{pool.pool_id}/uploads/{upload['upload_id']}/content"
    return (await pool.contributor.client.get(url)).content


async def test_frames_are_gathered_into_parts(pool: PoolFixture, server: LiveServer) -> None:
    data = os.urandom(transfers.PART_SIZE + 2 * 1024 * 1024)
    conn = await connection(server, pool.contributor)
    started = await conn.start(
        start_msg(pool, len(data), client_upload_id="ws-1", metadata={"a": 1})
    )
    tid = started["transfer_id"]
    assert len(tid) == 32 and int(tid, 16) >= 0 and started["offset"] == 0
    await send(conn, tid, data)
    # 160 frames made one full part so far; the rest waits in the open part.
    assert len(await server.runtime.blobs.list_prefix("transfers")) == 1
    assert await durable_offset(server, tid) == transfers.PART_SIZE
    upload = await conn.complete({"transfer_id": tid})
    assert upload["size"] == len(data) and upload["sha256"] == hashlib.sha256(data).hexdigest()
    assert upload["client_upload_id"] == "ws-1" and upload["metadata"] == {"a": 1}
    assert await content(pool, upload) == data
    assert await server.runtime.blobs.list_prefix("transfers") == []
    # Completing again answers the same upload.
    assert (await conn.complete({"transfer_id": tid}))["upload_id"] == upload["upload_id"]
    await conn.close()


async def test_close_keeps_bytes_for_a_resume_elsewhere(
    pool: PoolFixture, server: LiveServer
) -> None:
    data = os.urandom(500_000)
    first = await connection(server, pool.contributor)
    tid = (await first.start(start_msg(pool, len(data))))["transfer_id"]
    await send(first, tid, data[:300_000])
    assert await durable_offset(server, tid) == 0  # still in the open part
    await first.close()
    second = await connection(server, pool.contributor)
    resumed = await second.start({"transfer_id": tid})
    assert resumed == {"transfer_id": tid, "offset": 300_000, "size": len(data)}
    await send(second, tid, data[300_000:])
    upload = await second.complete({"transfer_id": tid})
    assert await content(pool, upload) == data
    await second.close()


async def test_complete_on_another_connection(pool: PoolFixture, server: LiveServer) -> None:
    data = os.urandom(100_000)
    first = await connection(server, pool.contributor)
    tid = (await first.start(start_msg(pool, len(data), sha256=hashlib.sha256(data).hexdigest())))[
        "transfer_id"
    ]
    await send(first, tid, data)
    await first.close()
    other = await connection(server, pool.contributor)
    upload = await other.complete({"transfer_id": tid})
    assert await content(pool, upload) == data


async def test_a_resume_takes_over_a_live_connection(pool: PoolFixture, server: LiveServer) -> None:
    data = os.urandom(400_000)
    old = await connection(server, pool.contributor)
    tid = (await old.start(start_msg(pool, len(data))))["transfer_id"]
    await send(old, tid, data[:100_000])
    new = await connection(server, pool.contributor)
    assert (await new.start({"transfer_id": tid}))["offset"] == 0
    await send(new, tid, data)
    # The old connection still thinks it writes: its bytes must not count.
    await send(old, tid, data[100_000:200_000])
    await old.close()
    assert await durable_offset(server, tid) == 0
    upload = await new.complete({"transfer_id": tid})
    assert await content(pool, upload) == data
    assert await server.runtime.blobs.list_prefix("transfers") == []


async def test_errors(pool: PoolFixture, server: LiveServer) -> None:
    conn = await connection(server, pool.contributor)
    with pytest.raises(ValidationFailed):
        await conn.start(start_msg(pool, True))
    with pytest.raises(ValidationFailed):
        await conn.start(start_msg(pool, 10, sha256="xyz"))
    with pytest.raises(ValidationFailed):
        await conn.start({"name": "a", "ts": START.isoformat(), "size": 1})
    with pytest.raises(ValidationFailed):
        await conn.start({"transfer_id": 7})
    with pytest.raises(NotFound):
        await conn.start({"transfer_id": "nonsense"})
    with pytest.raises(ForbiddenType):
        await conn.start(start_msg(pool, 10, name="run.exe"))
    with pytest.raises(WindowClosed):
        await conn.start(start_msg(pool, 10, ts=START.timestamp() - 3600))
    with pytest.raises(NotFound):
        await conn.write(b"\x00" * 16, b"data")
    tid = (await conn.start(start_msg(pool, 10)))["transfer_id"]
    with pytest.raises(FileTooLarge):
        await conn.write(uuid.UUID(tid).bytes, b"x" * 11)
    await conn.write(uuid.UUID(tid).bytes, b"x" * 4)
    with pytest.raises(Conflict) as incomplete:
        await conn.complete({"transfer_id": tid})
    assert incomplete.value.extra == {"offset": 4}
    # Another uploader cannot see, resume or complete it.
    other = await connection(server, await pool.api.key(pool.admin, pool.pool_id, "contributor"))
    with pytest.raises(NotFound):
        await other.start({"transfer_id": tid})
    with pytest.raises(NotFound):
        await other.complete({"transfer_id": tid})
    await conn.write(uuid.UUID(tid).bytes, b"y" * 6)
    upload = await conn.complete({"transfer_id": tid})
    assert await content(pool, upload) == b"xxxxyyyyyy"
    await conn.close()
    await other.close()


class Gateway:
    """A minimal client of the gateway's JSON ops."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.rid = 0

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        self.rid += 1
        await self.ws.send(orjson.dumps({"op": op, "rid": self.rid, **fields}).decode())
        while True:
            answer: dict[str, Any] = orjson.loads(await self.ws.recv())
            if answer.get("rid") == self.rid:
                return answer
            assert answer["op"] != "error", answer


async def test_end_to_end_over_a_websocket(pool: PoolFixture, server: LiveServer) -> None:
    url = server.url.replace("http://", "ws://") + "/api/v1/ws"
    data = os.urandom(700_000)
    async with connect(url, open_timeout=5) as ws:
        gw = Gateway(ws)
        assert (await gw.call("connect", access_token=pool.contributor.token))["op"] == "connect"
        started = await gw.call("start-transfer", **start_msg(pool, len(data)))
        assert started["op"] == "start-transfer" and started["offset"] == 0, started
        tid = started["transfer_id"]
        prefix = uuid.UUID(tid).bytes
        for i in range(0, 400_000, FRAME):
            await ws.send(prefix + data[i : min(i + FRAME, 400_000)])
        assert (await gw.call("alive"))["op"] == "alive"  # every frame before it was handled
    # The connection dropped: the gateway's close made the received bytes durable.
    for _ in range(500):
        if await durable_offset(server, tid) == 400_000:
            break
        await asyncio.sleep(0.01)
    async with connect(url, open_timeout=5) as ws:
        gw = Gateway(ws)
        await gw.call("connect", access_token=pool.contributor.token)
        resumed = await gw.call("start-transfer", transfer_id=tid)
        assert resumed["offset"] == 400_000, resumed
        for i in range(resumed["offset"], len(data), FRAME):
            await ws.send(prefix + data[i : i + FRAME])
        upload = await gw.call("complete-upload", transfer_id=tid)
    assert upload["op"] == "complete-upload", upload
    assert upload["size"] == len(data)
    assert await content(pool, upload) == data
    listed = await pool.contributor.client.get(f"/api/v1/pools/{pool.pool_id}/uploads")
    assert [u["upload_id"] for u in listed.json()["items"]] == [upload["upload_id"]]
