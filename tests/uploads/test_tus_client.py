"""The real tus client (tuspy): an upload stopped half-way is finished by a new process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.conftest import START
from tests.support.server import LiveServer
from tests.uploads.conftest import PoolFixture

SIZE = 50 * 1024 * 1024
CHUNK = 10 * 1024 * 1024  # not a multiple of the server's part size

# One run of the client, as its own process: it knows the upload only through its URL store.
CLIENT = """
import json, sys
from tusclient import client
from tusclient.storage.filestorage import FileStorage

endpoint, key, path, store, pool_id, ts, chunk_size, stop_at = sys.argv[1:]
tus = client.TusClient(endpoint, headers={"Authorization": "Bearer " + key})
uploader = tus.uploader(
    path,
    chunk_size=int(chunk_size),
    metadata={"pool_id": pool_id, "ts": ts, "filename": "big.bin"},
    store_url=True,
    url_storage=FileStorage(store),
)
resumed_at = uploader.offset
uploader.upload(stop_at=int(stop_at) or None)
last = uploader.request.response_headers if uploader.request else {}
print(json.dumps({
    "url": uploader.url,
    "resumed_at": resumed_at,
    "offset": uploader.offset,
    "upload_id": last.get("pooldrop-upload-id"),
}))
"""


async def run_client(tmp_path: Path, *args: str) -> dict[str, Any]:
    script = tmp_path / "tus_client.py"
    script.write_text(CLIENT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def test_tuspy_resumes_in_a_new_process(
    pool: PoolFixture, server: LiveServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    args = [
        f"{server.url}/api/v1/tus/",
        pool.contributor.token,
        str(path),
        str(tmp_path / "urls.json"),
        pool.pool_id,
        START.isoformat(),
        str(CHUNK),
    ]
    first = await run_client(tmp_path, *args, str(SIZE // 2))
    assert SIZE // 2 <= first["offset"] < SIZE and first["upload_id"] is None
    second = await run_client(tmp_path, *args, "0")
    assert second["url"] == first["url"] and second["resumed_at"] == first["offset"]
    assert second["offset"] == SIZE and second["upload_id"]

    listed = await pool.contributor.client.get(f"/api/v1/pools/{pool.pool_id}/uploads")
    items = listed.json()["items"]
    assert [u["upload_id"] for u in items] == [second["upload_id"]]
    assert items[0]["sha256"] == hashlib.sha256(data).hexdigest() and items[0]["size"] == SIZE
    got = hashlib.sha256()
    url = f"/api/v1/pools/{pool.pool_id}/uploads/{second['upload_id']}/content"
    async with pool.contributor.client.stream("GET", url) as r:
        async for chunk in r.aiter_bytes():
            got.update(chunk)
    assert got.hexdigest() == hashlib.sha256(data).hexdigest()
    assert await server.runtime.blobs.list_prefix("transfers") == []
