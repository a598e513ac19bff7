"""What only ``memory://`` does: named in-process hubs."""

from __future__ import annotations

from pooldrop.bus import open_bus
from tests.bus.conftest import OpenBus
from tests.bus.support import receive, unique


async def test_same_hub_name_is_shared_and_other_names_are_isolated(
    open_started: OpenBus,
) -> None:
    hub = unique("hub").replace(".", "-")
    node_a = await open_started(f"memory://{hub}")
    node_b = await open_started(f"memory://{hub}")
    elsewhere = await open_started(f"memory://{hub}-other")
    default = await open_started("memory://")
    topic = unique()
    subs = [await bus.subscribe(topic) for bus in (node_a, node_b, elsewhere, default)]

    await node_a.publish(topic, b"on the named hub")
    await elsewhere.publish(topic, b"on the other hub")
    await default.publish(topic, b"on the default hub")

    assert await receive(subs[0]) == [b"on the named hub"]
    assert await receive(subs[1]) == [b"on the named hub"]
    assert await receive(subs[2]) == [b"on the other hub"]
    assert await receive(subs[3]) == [b"on the default hub"]
    assert [s.pending for s in subs] == [0, 0, 0, 0]


async def test_memory_works_without_start() -> None:
    bus = open_bus("memory://")
    topic = unique()
    sub = await bus.subscribe(topic)
    await bus.publish(topic, b"x")
    assert await receive(sub) == [b"x"]
    await bus.close()
