"""Event streams: every transport, dropped connections, resume from a cursor, fallback."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pooldrop.client import AsyncClient, Client, Event, RetryPolicy
from tests.bus.support import TcpProxy
from tests.client.conftest import CYCLE, Pool
from tests.client.support import in_thread, serve_asgi, without
from tests.support.server import LiveServer

FAST = RetryPolicy(attempts=3, initial=0.05, maximum=0.2)


class Collector:
    """Reads a stream in a thread until it has seen ``results`` published results."""

    def __init__(self, url: str, key: str, pool_id: str, transport: str, results: int) -> None:
        self.client = Client(url, api_key=key, retry=FAST)
        self.stream = self.client.events(pool_id, transport=transport)
        self.events: list[Event] = []
        self.results = results
        self.progress = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            for ev in self.stream:
                with self.progress:
                    self.events.append(ev)
                    self.progress.notify_all()
                if sum(e.type == "result.published" for e in self.events) == self.results:
                    break
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.client.close()
            with self.progress:
                self.progress.notify_all()

    def wait_for(self, count: int, timeout: float = 20) -> None:
        with self.progress:
            ok = self.progress.wait_for(
                lambda: len(self.events) >= count or self.error or not self.thread.is_alive(),
                timeout,
            )
        assert ok and self.error is None, self.error
        assert len(self.events) >= count


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
async def test_dropped_connection_resumes_without_gap_or_repeat(
    transport: str, server: LiveServer, pool: Pool
) -> None:
    proxy = TcpProxy(int(server.url.rsplit(":", 1)[1]))
    await proxy.start()
    c = Collector(f"http://127.0.0.1:{proxy.port}", pool.listener.token, pool.id, transport, 3)
    c.thread.start()
    try:
        await pool.cycle(0)
        await asyncio.to_thread(c.wait_for, 3)
        await proxy.stop()  # the connection drops; reconnects are refused for a while
        await pool.cycle(1)
        await asyncio.sleep(0.3)
        await proxy.start()
        await pool.cycle(2)
        await asyncio.to_thread(c.wait_for, 9)
        await asyncio.to_thread(c.thread.join, 10)
    finally:
        c.stream.close()
        await proxy.stop()
    assert [e.type for e in c.events] == CYCLE * 3
    seqs = [e.seq for e in c.events]
    assert seqs == sorted(set(seqs))
    assert c.stream.cursor == seqs[-1]
    assert c.stream.transport == transport


async def test_resume_after_a_cursor_and_filter_types(server: LiveServer, pool: Pool) -> None:
    await pool.cycle(0)
    await pool.cycle(1)

    def scenario() -> None:
        with Client(server.url, api_key=pool.listener.token) as c:
            everything = c.poll_events(pool.id).events
            assert [e.type for e in everything] == CYCLE * 2
            middle = everything[2].seq
            stream = c.events(pool.id, after=middle, types=["result.published"])
            got = next(iter(stream))
            stream.close()
            assert got.seq == everything[5].seq and got.type == "result.published"
            assert got.data["name"] == "r.bin"  # the result object itself
        with Client(server.url, api_key=pool.contributor.token) as c:
            batch = c.poll_events(pool.id, limit=1)
            assert [e.type for e in batch.events] == ["upload.stored"] and batch.next

    await in_thread(scenario)


@pytest.mark.parametrize(("sse", "expected"), [(False, "sse"), (True, "longpoll")])
async def test_auto_falls_back_when_the_server_lacks_a_transport(
    sse: bool, expected: str, server: LiveServer, pool: Pool
) -> None:
    await pool.cycle(0)
    async with serve_asgi(without(server.app, websocket=True, sse=sse)) as url:

        def scenario() -> tuple[str | None, list[str]]:
            with Client(url, api_key=pool.listener.token) as c:
                stream = c.events(pool.id)
                types = [e.type for _, e in zip(range(3), stream, strict=False)]
                stream.close()
                return stream.transport, types

        transport, types = await in_thread(scenario)
    assert transport == expected and types == CYCLE


async def test_async_stream(server: LiveServer, pool: Pool) -> None:
    await pool.cycle(0)
    async with AsyncClient(server.url, api_key=pool.listener.token) as c:
        for transport in ("websocket", "sse", "longpoll"):
            stream = c.events(pool.id, transport=transport)
            got: list[Event] = []
            async for ev in stream:
                got.append(ev)
                if len(got) == 3:
                    break
            await stream.aclose()
            assert [e.type for e in got] == CYCLE, transport
