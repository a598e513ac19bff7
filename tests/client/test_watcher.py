"""The listener loop: every result downloaded once, across restarts and lost state."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from pooldrop.client import Client, Result, ResultWatcher
from tests.client.conftest import Pool
from tests.client.support import in_thread
from tests.support.server import LiveServer


def watcher(server: LiveServer, pool: Pool, directory: Path, seen: list[Result]) -> ResultWatcher:
    client = Client(server.url, api_key=pool.listener.token)
    return ResultWatcher(client, pool.id, directory, on_result=lambda r, _p: seen.append(r))


async def test_restarts_neither_miss_nor_repeat(
    server: LiveServer, pool: Pool, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    seen: list[Result] = []
    await pool.cycle(0, b"one")

    def first() -> None:
        w = watcher(server, pool, out, seen)
        with w.client:
            assert w.run(count=1) == 1
            assert w.cursor is not None

    await in_thread(first)
    assert [p.read_bytes() for p in sorted(out.glob("*-r.bin"))] == [b"one"]

    # While it was down, two more results were published: the restart fetches exactly those.
    await pool.cycle(1, b"two")
    await pool.cycle(2, b"three")

    def second() -> None:
        w = watcher(server, pool, out, seen)
        with w.client:
            assert w.run(count=2) == 2

    await in_thread(second)
    assert [r.size for r in seen] == [3, 3, 5]

    # The cursor file is lost (a crash right after a download): what is on disk is not fetched
    # again, and the next new result is.
    (out / f".pooldrop-watch-{pool.id}.json").unlink()
    started = threading.Event()

    def third() -> None:
        w = watcher(server, pool, out, seen)
        with w.client:
            started.set()
            assert w.run(count=1) == 1

    task = asyncio.create_task(in_thread(third))
    assert await asyncio.to_thread(started.wait, 10)
    await pool.cycle(3, b"four!")
    await task
    contents = sorted(p.read_bytes() for p in out.glob("*-r.bin"))
    assert contents == [b"four!", b"one", b"three", b"two"]
    assert len(seen) == 4 and len({r.result_id for r in seen}) == 4
