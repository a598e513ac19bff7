"""The bus contract, written once and run against every backend (see ``bus_url``).

Two ``Bus`` instances opened on the same URL stand for two nodes. For ``memory://`` they share
the process-wide hub, so they fan out to each other like two nodes on one broker; a different
hub name is isolated (``test_memory.py``).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import pytest

from pooldrop.bus import Bus, BusError, open_bus
from tests.bus.conftest import OpenBus
from tests.bus.support import (
    TcpProxy,
    eventually,
    free_port,
    receive,
    unique,
    with_options,
)


async def test_publish_after_subscribe_is_received(bus: Bus) -> None:
    topic = unique()
    sub = await bus.subscribe(topic)
    await bus.publish(topic, b"hello")
    assert await receive(sub) == [b"hello"]
    assert sub.pending == 0


async def test_subscription_is_active_when_subscribe_returns(
    bus_url: str, open_started: OpenBus
) -> None:
    # Another node publishes the instant subscribe() returns, over and over: a subscription that
    # only became active later would miss one of these.
    node_a, node_b = await open_started(bus_url), await open_started(bus_url)
    for i in range(20):
        topic = unique()
        sub = await node_b.subscribe(topic)
        await node_a.publish(topic, b"%d" % i)
        assert await receive(sub) == [b"%d" % i]
        await sub.close()


async def test_fan_out_to_every_subscriber_on_every_node(
    bus_url: str, open_started: OpenBus
) -> None:
    node_a, node_b = await open_started(bus_url), await open_started(bus_url)
    topic = unique()
    subs = [
        await node_a.subscribe(topic),
        await node_a.subscribe(topic),
        await node_b.subscribe(topic),
        await node_b.subscribe(topic),
    ]
    await node_a.publish(topic, b"from-a")
    await node_b.publish(topic, b"from-b")
    for sub in subs:
        assert await receive(sub, 2) == [b"from-a", b"from-b"]


async def test_other_topics_are_not_received(bus: Bus) -> None:
    mine, other = unique(), unique()
    sub = await bus.subscribe(mine)
    other_sub = await bus.subscribe(other)
    # Published first from the same bus: had it been routed to ``sub`` it would come first.
    await bus.publish(other, b"not for you")
    await bus.publish(mine, b"for you")
    assert await receive(sub) == [b"for you"]
    assert await receive(other_sub) == [b"not for you"]
    assert sub.pending == 0


async def test_order_from_one_publisher_is_preserved(bus_url: str, open_started: OpenBus) -> None:
    publisher, listener = await open_started(bus_url), await open_started(bus_url)
    topic = unique()
    sub = await listener.subscribe(topic)
    sent = [b"%04d" % i for i in range(300)]
    for payload in sent:
        await publisher.publish(topic, payload)
    assert await receive(sub, len(sent)) == sent


async def test_closing_a_subscription_ends_its_iteration(bus: Bus) -> None:
    topic = unique()
    sub = await bus.subscribe(topic)
    got: list[bytes] = []

    async def consume() -> None:
        async for payload in sub:
            got.append(payload)

    consumer = asyncio.create_task(consume())
    await bus.publish(topic, b"one")
    await eventually(lambda: bool(got), "the consumer got the first message")
    await sub.close()
    await asyncio.wait_for(consumer, 2)  # the loop ended by itself
    assert got == [b"one"]
    assert [p async for p in sub] == []  # and a closed subscription stays empty
    await sub.close()  # idempotent


async def test_closing_one_subscription_keeps_the_others(bus: Bus) -> None:
    topic = unique()
    first, second = await bus.subscribe(topic), await bus.subscribe(topic)
    await first.close()
    await bus.publish(topic, b"still here")
    assert await receive(second) == [b"still here"]


async def test_resubscribing_after_close_receives_again(bus: Bus) -> None:
    topic = unique()
    for round_ in range(5):
        sub = await bus.subscribe(topic)
        await bus.publish(topic, b"%d" % round_)
        assert await receive(sub) == [b"%d" % round_]
        await sub.close()


async def test_closing_the_bus_ends_every_iteration(bus_url: str) -> None:
    bus = open_bus(bus_url)
    await bus.start()
    sub = await bus.subscribe(unique())
    consumer = asyncio.create_task(receive(sub, 1, within=10))
    await asyncio.sleep(0.05)
    await bus.close()
    await asyncio.wait_for(consumer, 2)
    with pytest.raises(BusError, match="closed"):
        await bus.publish(unique(), b"x")
    with pytest.raises(BusError, match="closed"):
        await bus.subscribe(unique())
    await bus.close()  # idempotent


async def test_slow_consumer_keeps_only_the_newest(bus_url: str, open_started: OpenBus) -> None:
    bus = await open_started(with_options(bus_url, queue_size=3))
    topic = unique()
    sub = await bus.subscribe(topic)
    for i in range(10):
        await bus.publish(topic, b"%d" % i)
    await eventually(lambda: sub.dropped + sub.pending == 10, "all 10 messages arrived")
    assert (sub.pending, sub.dropped) == (3, 7)
    assert await receive(sub, 3) == [b"7", b"8", b"9"]


async def test_ping_and_distributed(bus: Bus, bus_url: str) -> None:
    await bus.ping()
    assert bus.distributed is (not bus_url.startswith("memory:"))


async def test_topics_are_checked(bus: Bus) -> None:
    for bad in ["", "has space", "wild.*", "wild.#", "é", "x" * 201]:
        with pytest.raises(ValueError, match="invalid bus topic"):
            await bus.publish(bad, b"x")
        with pytest.raises(ValueError, match="invalid bus topic"):
            await bus.subscribe(bad)


async def test_unstarted_bus_refuses_work(bus_url: str) -> None:
    bus = open_bus(bus_url)
    try:
        if bus.distributed:
            with pytest.raises(BusError, match="not started"):
                await bus.publish(unique(), b"x")
        else:  # memory:// has nothing to connect to: start() is optional
            await bus.publish(unique(), b"x")
    finally:
        await bus.close()


# --- unreachable servers: only for the backends that have one ---------------------------


def _unreachable(net_url: str) -> str:
    """``net_url`` pointed at a loopback port nothing listens on, with a password in it."""
    scheme, _, rest = net_url.partition("://")
    path = rest.partition("/")[2]
    return f"{scheme}://pooldrop:s3cr3t-pw@127.0.0.1:{free_port()}/{path}"


async def test_start_fails_fast_when_unreachable(net_url: str) -> None:
    url = _unreachable(net_url)
    bus = open_bus(url)
    began = time.monotonic()
    with pytest.raises(BusError) as caught:
        await bus.start()
    assert time.monotonic() - began < 3.5
    assert "127.0.0.1" in str(caught.value)
    assert "s3cr3t-pw" not in str(caught.value)
    assert caught.value.__cause__ is None  # the vendor error, which might hold the URL, is cut
    await bus.close()


async def test_password_is_never_shown(net_url: str) -> None:
    url = _unreachable(net_url)
    bus = open_bus(url)
    assert "s3cr3t-pw" not in bus.url
    assert "s3cr3t-pw" not in repr(bus)
    assert "pooldrop@127.0.0.1" in bus.url
    await bus.close()


async def test_wrong_password_on_a_live_server_is_reported_without_it(net_url: str) -> None:
    scheme, _, rest = net_url.partition("://")
    hostpart = rest.rpartition("@")[2]
    bus = open_bus(f"{scheme}://pooldrop:s3cr3t-pw@{hostpart}")
    with pytest.raises(BusError) as caught:
        await bus.start()
    assert "s3cr3t-pw" not in str(caught.value)
    await bus.close()


async def test_start_fails_fast_when_the_server_never_answers(net_url: str) -> None:
    # A proxy that accepts connections and swallows every byte: a hung server or a black hole.
    target = urlsplit(net_url)
    host_port = target.netloc.rpartition("@")[2]
    proxy = TcpProxy(int(host_port.rpartition(":")[2]))
    proxy.blackhole = True
    await proxy.start()
    try:
        url = with_options(net_url.replace(host_port, f"127.0.0.1:{proxy.port}"), connect_timeout=1)
        bus = open_bus(url)
        began = time.monotonic()
        with pytest.raises(BusError, match="no answer within 1s"):
            await bus.start()
        assert time.monotonic() - began < 1.5
        await bus.close()
    finally:
        await proxy.stop()
