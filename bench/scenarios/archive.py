"""``archive``: stream a group of 1,000 x 500 KB files as tar, against ``tar -cf - DIR``."""

from __future__ import annotations

import asyncio
import http.client
import os
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.api import ARCHIVE, CLAIM, UPLOAD, Pool, auth
from bench.core import Context, Outcome, paired_runs, ratio_outcome
from bench.wrk import LoadError

TARGET = ">= 0.5 x `tar -cf - DIR` piped to /dev/null"
MIN_RATIO = 0.5
FILE_SIZE = 500 * 1000
BUFFER = 1 << 20


def _drain_http(url: str, path: str, headers: dict[str, str]) -> tuple[int, float]:
    """GET ``path`` and count the body's bytes; (bytes, seconds) from request to last byte."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
    buf = bytearray(BUFFER)
    try:
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise LoadError(f"archive: {resp.status} {resp.read(500)!r}")
        total = 0
        while n := resp.readinto(buf):
            total += n
        return total, time.perf_counter() - start
    finally:
        conn.close()


def _drain_tar(directory: Path) -> tuple[int, float]:
    """``tar -cf - DIR`` into a pipe we read and drop.

    Not ``> /dev/null`` itself: GNU tar notices that and skips reading the files.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(["tar", "-cf", "-", "-C", str(directory), "."], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    total = 0
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, BUFFER):
        total += len(chunk)
    if proc.wait() != 0:
        raise LoadError(f"tar exited with {proc.returncode}")
    return total, time.perf_counter() - start


def _count_members(url: str, path: str, headers: dict[str, str]) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise LoadError(f"archive: {resp.status} {resp.read(500)!r}")
        with tarfile.open(fileobj=resp, mode="r|") as tar:
            return sum(1 for m in tar if m.isfile() and m.size == FILE_SIZE)
    finally:
        conn.close()


async def _upload_all(ctx: Context, pool: Pool, files: list[Path], ts: int) -> str:
    sem = asyncio.Semaphore(8)
    groups: set[str] = set()
    async with httpx.AsyncClient(base_url=ctx.pooldrop.url, timeout=300) as client:

        async def one(path: Path) -> None:
            async with sem:
                data = await asyncio.to_thread(path.read_bytes)
                r = await client.post(
                    f"/api/v1/pools/{pool.id}/uploads",
                    params={"ts": str(ts), "name": path.name, "client_upload_id": path.stem},
                    content=data,
                    headers={**auth(pool.contributor), "Content-Type": "application/octet-stream"},
                )
                if r.status_code not in (200, 201):
                    raise LoadError(f"set-up upload failed: {r.status_code} {r.text[:300]}")
                groups.add(str(r.json()["group_id"]))

        await asyncio.gather(*(one(p) for p in files))
    if len(groups) != 1:
        raise LoadError(f"the files landed in {len(groups)} groups, expected one")
    return groups.pop()


def run(ctx: Context) -> Outcome:
    ctx.require(UPLOAD, CLAIM, ARCHIVE)
    count = ctx.pick(1000, 200, 10)
    source = ctx.work / f"archive-{count}"
    source.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = source / f"a{i:05d}.bin"
        if not path.exists():
            path.write_bytes(os.urandom(FILE_SIZE))
        files.append(path)
    pool = ctx.api.pool("archive", window="1d")
    group_id = asyncio.run(_upload_all(ctx, pool, files, int(time.time())))
    lease = ctx.api.claim(pool, group_id)
    url_path = f"/api/v1/pools/{pool.id}/groups/{group_id}/archive?lease_id={lease}"
    headers = auth(pool.aggregator)

    # Checked once, untimed: the archive holds every file (and its manifest).
    members = _count_members(ctx.pooldrop.url, url_path, headers)
    if members != count:
        raise LoadError(f"archive holds {members} files of {FILE_SIZE} bytes, expected {count}")

    def ours(i: int) -> float:
        size, seconds = _drain_http(ctx.pooldrop.url, url_path, headers)
        return size / seconds / 1e6

    def theirs(i: int) -> float:
        size, seconds = _drain_tar(source)
        return size / seconds / 1e6

    # tar is the baseline even without nginx: it is a local command.
    stats: dict[str, Any] = {}
    p, n = paired_runs(ctx, ours, theirs, stats=stats)
    return ratio_outcome(
        ctx,
        p,
        n,
        unit="MB/s",
        min_ratio=MIN_RATIO,
        baseline_label="tar",
        values={"files": count, "file_bytes": FILE_SIZE, **stats},
    )
