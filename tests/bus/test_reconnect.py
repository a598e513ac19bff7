"""Subscriptions survive a lost connection: they go quiet, reconnect with backoff, and resume.

Each test cuts only its own bus's connection (by client name), never the shared servers:
  * Redis: ``CLIENT KILL ID <id> TYPE pubsub`` on the subscriber connection;
  * RabbitMQ: ``rabbitmqctl close_connection`` on the bus's connection (the management HTTP API
    is not enabled on these machines, and ``close_all_connections`` would hit other suites);
  * both: a loopback TCP proxy in front of the server is stopped and started again, which is what
    the bus sees when its server restarts or becomes unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time

import pytest
import redis.asyncio as aioredis

from pooldrop.bus import Bus, BusError, Subscription, open_bus
from pooldrop.bus.amqp import AmqpBus
from pooldrop.bus.redis import RedisBus
from tests.bus.conftest import OpenBus, backend_url
from tests.bus.support import (
    AMQP_URL,
    START_RABBITMQ,
    TcpProxy,
    eventually,
    receive,
    require_port,
    unique,
    with_options,
)


async def publish_until_received(bus: Bus, topic: str, sub: Subscription, within: float) -> bytes:
    """Publish every 50 ms until ``sub`` yields; what is published while down is lost."""
    received: list[bytes] = []

    async def listen() -> None:
        received.extend(await receive(sub, 1, within=within))

    listener = asyncio.create_task(listen())
    try:
        for attempt in range(int(within / 0.05)):
            if listener.done():
                break
            with contextlib.suppress(BusError):  # still reconnecting
                await bus.publish(topic, b"after-%d" % attempt)
            await asyncio.sleep(0.05)
        await listener
    finally:
        listener.cancel()
    return received[0]


def reconnects(bus: Bus) -> int:
    assert isinstance(bus, RedisBus | AmqpBus)
    return bus.reconnects


def connected(bus: Bus) -> bool:
    assert isinstance(bus, RedisBus | AmqpBus)
    return bus.connected


@pytest.fixture(params=["redis", "sentinel"])
def redis_family_url(request: pytest.FixtureRequest) -> str:
    return backend_url(request.param, request)


async def test_redis_subscriber_survives_client_kill(
    redis_family_url: str, open_started: OpenBus
) -> None:
    name = unique("pd-kill").replace(".", "-")
    bus = await open_started(with_options(redis_family_url, client_name=name))
    topic = unique()
    sub = await bus.subscribe(topic)
    await bus.publish(topic, b"before")
    assert await receive(sub) == [b"before"]

    admin = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        mine = [c for c in await admin.client_list(_type="pubsub") if c["name"] == name]
        assert len(mine) == 1, mine
        assert await admin.client_kill_filter(_id=mine[0]["id"], _type="pubsub") == 1

        payload = await publish_until_received(bus, topic, sub, within=10)
        assert payload.startswith(b"after-")
        assert reconnects(bus) >= 1
        again = [c for c in await admin.client_list(_type="pubsub") if c["name"] == name]
        assert len(again) == 1 and again[0]["id"] != mine[0]["id"]
    finally:
        await admin.aclose()


def _rabbitmqctl(*args: str) -> str:
    binary = shutil.which("rabbitmqctl")
    if binary is None:
        pytest.fail("rabbitmqctl is not on PATH; it comes with rabbitmq-server. " + START_RABBITMQ)
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def _connection_pids(name: str) -> list[str]:
    out = _rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "client_properties")
    return [line.split("\t", 1)[0] for line in out.splitlines() if f'"{name}"' in line]


async def test_amqp_subscriber_survives_a_closed_connection(open_started: OpenBus) -> None:
    require_port(5672, START_RABBITMQ)
    name = unique("pd-close")
    bus = await open_started(with_options(AMQP_URL, name=name))
    topic = unique()
    sub = await bus.subscribe(topic)
    await bus.publish(topic, b"before")
    assert await receive(sub) == [b"before"]

    pids = await asyncio.to_thread(_connection_pids, name)
    assert len(pids) == 1, pids
    await asyncio.to_thread(_rabbitmqctl, "close_connection", pids[0], "pooldrop reconnect test")

    payload = await publish_until_received(bus, topic, sub, within=10)
    assert payload.startswith(b"after-")
    assert reconnects(bus) >= 1
    again = await asyncio.to_thread(_connection_pids, name)
    assert len(again) == 1 and again != pids


@pytest.fixture(params=["redis", "amqp"])
def proxied(request: pytest.FixtureRequest) -> tuple[str, int]:
    """(URL with ``{port}`` for the proxy, real server port) for each proxiable backend.

    Short timeouts keep the tests quick: a 1 s connect timeout, a Redis subscriber that PINGs
    after 0.3 s of silence, an AMQP heartbeat of 1 s (aiormq gives up after three missed).
    """
    backend_url(request.param, request)  # fails with a hint if the real server is down
    if request.param == "redis":
        return "redis://127.0.0.1:{port}/15?connect_timeout=1&ping_interval=0.3", 6379
    return "amqp://guest:guest@127.0.0.1:{port}/?connect_timeout=1&heartbeat=1", 5672


async def test_subscription_survives_a_server_outage(
    proxied: tuple[str, int], open_started: OpenBus
) -> None:
    template, server_port = proxied
    proxy = TcpProxy(server_port)
    await proxy.start()
    try:
        bus = await open_started(template.format(port=proxy.port))
        topic = unique()
        sub = await bus.subscribe(topic)
        await bus.publish(topic, b"before")
        assert await receive(sub) == [b"before"]

        await proxy.stop()  # the server is gone
        began = time.monotonic()
        with pytest.raises(BusError):
            await bus.publish(topic, b"lost")
        assert time.monotonic() - began < 1.5  # within connect_timeout=1, not hanging
        with pytest.raises(BusError):
            await bus.ping()
        with pytest.raises(BusError):
            await bus.subscribe(unique())  # can't be confirmed while down: says so
        await asyncio.sleep(0.3)
        assert sub.pending == 0  # nothing is yielded while disconnected

        await proxy.start()  # the server is back on the same address
        payload = await publish_until_received(bus, topic, sub, within=20)
        assert payload.startswith(b"after-")
        await eventually(lambda: reconnects(bus) >= 1, "the bus counted a reconnect")
        await bus.ping()
    finally:
        await proxy.stop()


async def test_subscription_survives_a_silent_network(
    proxied: tuple[str, int], open_started: OpenBus
) -> None:
    # The server neither answers nor closes the socket: only keep-alives can tell.
    template, server_port = proxied
    proxy = TcpProxy(server_port)
    await proxy.start()
    try:
        bus = await open_started(template.format(port=proxy.port))
        topic = unique()
        sub = await bus.subscribe(topic)
        await bus.publish(topic, b"before")
        assert await receive(sub) == [b"before"]

        proxy.blackhole = True
        began = time.monotonic()
        with pytest.raises(BusError):
            await bus.publish(topic, b"lost")
        assert time.monotonic() - began < 1.5  # the 1 s timeout, not a hang
        # Redis: two unanswered 0.3 s PING intervals; AMQP: three missed 1 s heartbeats (~6 s).
        await eventually(lambda: not connected(bus), "the silence was noticed", within=15)
        assert sub.pending == 0

        proxy.blackhole = False
        payload = await publish_until_received(bus, topic, sub, within=20)
        assert payload.startswith(b"after-")
        await eventually(lambda: reconnects(bus) >= 1, "the dead connection was replaced")
    finally:
        await proxy.stop()


async def test_close_interrupts_a_pending_subscribe(proxied: tuple[str, int]) -> None:
    template, server_port = proxied
    proxy = TcpProxy(server_port)
    await proxy.start()
    bus = open_bus(
        template.format(port=proxy.port).replace("connect_timeout=1", "connect_timeout=5")
    )
    try:
        await bus.start()
        await bus.subscribe(unique())  # the subscriber side is connected
        await proxy.stop()
        pending = asyncio.create_task(bus.subscribe(unique()))
        await asyncio.sleep(0.2)
        began = time.monotonic()
        await bus.close()
        with pytest.raises(BusError, match="closed"):
            await pending
        assert time.monotonic() - began < 2  # not the 5 s subscribe timeout
    finally:
        await bus.close()
        await proxy.stop()
