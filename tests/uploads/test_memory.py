"""A 300 MB upload through a real `pooldrop serve` process: its RSS must stay flat."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest

SIZE = 300 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_GROWTH = 64 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    env = {
        **os.environ,
        "POOLDROP_PASSWORD_TIME_COST": "1",
        "POOLDROP_PASSWORD_MEMORY_KIB": "1024",
        "POOLDROP_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pooldrop",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        env=env,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("pooldrop serve did not start")
    try:
        yield url, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def test_300mb_upload_keeps_server_memory_flat(
    serve_process: tuple[str, psutil.Process],
) -> None:
    url, proc = serve_process
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        token = (
            await c.post(
                "/api/v1/auth/signup", json={"username": "big", "password": "big-password"}
            )
        ).json()["access_token"]
        c.headers["Authorization"] = f"Bearer {token}"
        pool = (
            await c.post(
                "/api/v1/pools", json={"name": "big", "window": "1d", "max_file_size": SIZE}
            )
        ).json()
        baseline = proc.memory_info().rss
        peak = baseline
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, proc.memory_info().rss)
                await asyncio.sleep(0.05)

        block = os.urandom(CHUNK)

        async def body() -> AsyncIterator[bytes]:
            for _ in range(SIZE // CHUNK):
                yield block

        sampler = asyncio.create_task(sample())
        r = await c.post(
            f"/api/v1/pools/{pool['pool_id']}/uploads",
            params={"ts": datetime.now(UTC).isoformat(), "name": "big.bin"},
            content=body(),
        )
        done.set()
        await sampler
        assert r.status_code == 201, r.text
        assert r.json()["size"] == SIZE
        growth = peak - baseline
        assert growth < MAX_GROWTH, f"server RSS grew by {growth / 2**20:.1f} MiB"

        # Back out through sendfile on the server's default loop (uvloop): byte-identical.
        expected = hashlib.sha256(block * (SIZE // CHUNK)).hexdigest()
        assert r.json()["sha256"] == expected
        got = hashlib.sha256()
        url = f"/api/v1/pools/{pool['pool_id']}/uploads/{r.json()['upload_id']}/content"
        async with c.stream("GET", url) as download:
            assert download.status_code == 200
            async for piece in download.aiter_bytes():
                got.update(piece)
        assert got.hexdigest() == expected
