"""Cross-process wake-up bus, chosen by URL scheme.

    bus = open_bus(settings.bus_url)      # no I/O yet
    await bus.start()                     # BusError if unreachable
    sub = await bus.subscribe("pooldrop.events")
    await bus.publish("pooldrop.events", b"...")
    async for payload in sub: ...

The database event log is the truth; the bus only shortens the wait before readers look at it.
A backend is imported only when its scheme is used, so ``memory://`` needs no Redis or RabbitMQ
client installed. Adding one is a module here and a line in ``BACKENDS``.
"""

from __future__ import annotations

from importlib import import_module
from urllib.parse import urlsplit

from pooldrop.bus.base import Bus, BusError, Subscription, redact_url

__all__ = ["BACKENDS", "Bus", "BusError", "Subscription", "open_bus"]

BACKENDS: dict[str, str] = {
    "memory": "pooldrop.bus.memory:MemoryBus",
    "redis": "pooldrop.bus.redis:RedisBus",
    "rediss": "pooldrop.bus.redis:RedisBus",
    "redis+sentinel": "pooldrop.bus.redis:RedisBus",
    "amqp": "pooldrop.bus.amqp:AmqpBus",
    "amqps": "pooldrop.bus.amqp:AmqpBus",
}
"""URL scheme -> ``"module:Class"`` of the backend, imported on first use."""


def open_bus(url: str) -> Bus:
    """The bus for ``url`` (not started). ``ValueError`` for an unknown scheme or bad option."""
    scheme = urlsplit(url).scheme.lower()
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(f"{name}://" for name in BACKENDS)
        raise ValueError(
            f"unsupported bus URL {redact_url(url)!r}: scheme {scheme or '(none)'!r} "
            f"is not one of {known}"
        )
    module_name, _, class_name = target.partition(":")
    backend: type[Bus] = getattr(import_module(module_name), class_name)
    return backend(url)
