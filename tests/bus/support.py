"""Helpers for the bus tests: the servers, a cuttable TCP proxy, a private Sentinel, receiving."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from pooldrop.bus import Subscription

REDIS_URL = "redis://127.0.0.1:6379/15"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"

START_REDIS = (
    "Redis is not reachable at 127.0.0.1:6379. Start it with "
    '`redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no`'
)
START_RABBITMQ = (
    "RabbitMQ is not reachable at 127.0.0.1:5672. Start it with `rabbitmq-server -detached` "
    "(it needs a few seconds; `rabbitmqctl await_startup` waits for it)."
)
BACKENDS = ("memory", "redis", "sentinel", "amqp")


def require_port(port: int, hint: str) -> None:
    """Fail the test (never skip) with ``hint`` unless something listens on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    except OSError as exc:
        pytest.fail(f"{hint} ({exc})", pytrace=False)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def with_options(url: str, **options: str | int) -> str:
    """``url`` with query ``options`` added."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(options)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def unique(prefix: str = "t") -> str:
    """A topic (or client name) no other test uses."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


async def receive(sub: Subscription, count: int = 1, within: float = 5.0) -> list[bytes]:
    """The next ``count`` payloads of ``sub``; fails the test after ``within`` seconds."""
    got: list[bytes] = []
    try:
        async with asyncio.timeout(within):
            async for payload in sub:
                got.append(payload)
                if len(got) == count:
                    break
    except TimeoutError:
        pytest.fail(f"received {len(got)} of {count} messages within {within}s: {got[:5]!r}")
    return got


async def eventually(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``within`` s."""
    step = 0.01
    for _ in range(int(within / step)):
        if condition():
            return
        await asyncio.sleep(step)
    pytest.fail(f"not within {within}s: {what}")


class TcpProxy:
    """A loopback TCP forwarder that a test can cut and restore, to play "server down".

    ``stop()`` closes the listener and every forwarded connection, as a crashed server would;
    ``start()`` listens again on the same port. While ``blackhole`` is true the proxy still
    accepts connections but silently drops every byte, as a partitioned network does.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self.blackhole = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if not self.blackhole:
                    dst.write(data)
                    await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(dst)
            dst.transport.abort()


@contextlib.contextmanager
def sentinel_process(tmp: Path) -> Iterator[int]:
    """A private Redis Sentinel watching the shared Redis as ``mymaster``; yields its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed; Sentinel tests need it: apt-get install redis-server"
        )
    port = free_port()
    conf = tmp / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {tmp}\n"
        "sentinel monitor mymaster 127.0.0.1 6379 1\n"
        "sentinel down-after-milliseconds mymaster 60000\n"
    )
    proc = subprocess.Popen(
        [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server --sentinel did not start (exit {proc.poll()})")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
