"""The bounded buffer every backend's subscriptions share."""

from __future__ import annotations

import asyncio

import pytest

from pooldrop.bus.subscription import QueueSubscription


async def test_drops_oldest_and_counts() -> None:
    sub = QueueSubscription("t", maxsize=2)
    for payload in (b"1", b"2", b"3", b"4"):
        sub.put(payload)
    assert (sub.pending, sub.dropped) == (2, 2)
    assert [await anext(sub), await anext(sub)] == [b"3", b"4"]
    assert sub.pending == 0


async def test_close_runs_the_backend_hook_once_and_ignores_later_puts() -> None:
    calls: list[QueueSubscription] = []

    async def on_close(sub: QueueSubscription) -> None:
        calls.append(sub)

    sub = QueueSubscription("t", on_close=on_close)
    sub.put(b"buffered")
    await sub.close()
    await sub.close()
    sub.put(b"late")
    assert calls == [sub]
    assert sub.closed and sub.pending == 0
    assert [p async for p in sub] == []  # buffered wake-ups are not delivered after close


async def test_detach_wakes_a_waiting_consumer() -> None:
    sub = QueueSubscription("t")
    waiting = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)
    sub.detach()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        QueueSubscription("t", maxsize=0)
