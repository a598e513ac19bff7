"""In-process bus: the single-process default and the bus of unit tests.

URL: ``memory://`` or ``memory://NAME``

    memory://                 the process-wide default hub
    memory://tests-1          a separate hub named ``tests-1``

Every ``MemoryBus`` opened with the same name in one process shares one hub, the way kombu's
``memory://`` transport does: two instances behave like two nodes on one broker, which lets
tests run two app instances in one process. A different name is a different, isolated hub.
Nothing crosses a process boundary (``distributed`` is False).

Options: ``?queue_size=10000`` (per-subscription buffer; the oldest wake-up is dropped when full).
"""

from __future__ import annotations

import weakref
from urllib.parse import urlsplit

from pooldrop.bus.base import (
    DEFAULT_QUEUE_SIZE,
    Bus,
    BusError,
    Subscription,
    check_topic,
    pop_int,
    query_dict,
    redact_url,
    reject_unknown,
)
from pooldrop.bus.subscription import QueueSubscription


class _Hub:
    """Fan-out of one named in-process broker."""

    def __init__(self) -> None:
        self.topics: dict[str, set[QueueSubscription]] = {}

    def add(self, sub: QueueSubscription) -> None:
        self.topics.setdefault(sub.topic, set()).add(sub)

    def remove(self, sub: QueueSubscription) -> None:
        subs = self.topics.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.topics[sub.topic]

    def publish(self, topic: str, payload: bytes) -> None:
        for sub in tuple(self.topics.get(topic, ())):
            sub.put(payload)


# Weak values: a hub lives as long as some bus uses it, so named test hubs do not pile up.
_hubs: weakref.WeakValueDictionary[str, _Hub] = weakref.WeakValueDictionary()


def _hub(name: str) -> _Hub:
    hub = _hubs.get(name)
    if hub is None:
        hub = _hubs[name] = _Hub()
    return hub


class MemoryBus(Bus):
    """Fan-out between the ``MemoryBus`` instances of one process that share a hub name."""

    def __init__(self, url: str = "memory://") -> None:
        parts = urlsplit(url)
        if parts.scheme != "memory":
            raise ValueError(f"not a memory:// URL: {redact_url(url)}")
        query = query_dict(url)
        self._queue_size = pop_int(query, "queue_size", DEFAULT_QUEUE_SIZE)
        reject_unknown(query, "memory")
        super().__init__(url)
        self.name = parts.netloc + parts.path.rstrip("/")
        self._hub = _hub(self.name)
        self._subs: set[QueueSubscription] = set()
        self._closed = False

    @property
    def distributed(self) -> bool:
        return False

    async def start(self) -> None:
        self._check_open()

    async def publish(self, topic: str, payload: bytes) -> None:
        check_topic(topic)
        self._check_open()
        self._hub.publish(topic, payload)

    async def subscribe(self, topic: str) -> Subscription:
        check_topic(topic)
        self._check_open()
        sub = QueueSubscription(topic, maxsize=self._queue_size, on_close=self._forget)
        self._subs.add(sub)
        self._hub.add(sub)
        return sub

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True
        for sub in tuple(self._subs):
            await sub.close()

    async def _forget(self, sub: QueueSubscription) -> None:
        self._subs.discard(sub)
        self._hub.remove(sub)

    def _check_open(self) -> None:
        if self._closed:
            raise BusError(f"bus {self.url} is closed")
