"""Bus fixtures: ``bus_url`` runs a test once per backend; ``open_started`` opens and closes buses.

A backend whose server is down fails the test with the command that starts it; nothing is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from pooldrop.bus import Bus, open_bus
from tests.bus.support import (
    AMQP_URL,
    BACKENDS,
    REDIS_URL,
    START_RABBITMQ,
    START_REDIS,
    require_port,
    sentinel_process,
)

OpenBus = Callable[[str], Awaitable[Bus]]


@pytest.fixture(scope="session")
def sentinel_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    require_port(6379, START_REDIS)
    with sentinel_process(tmp_path_factory.mktemp("sentinel")) as port:
        yield port


def backend_url(name: str, request: pytest.FixtureRequest) -> str:
    """The base URL of backend ``name``, after checking that its server is up."""
    if name == "memory":
        return "memory://"
    if name == "redis":
        require_port(6379, START_REDIS)
        return REDIS_URL
    if name == "sentinel":
        port = request.getfixturevalue("sentinel_port")
        return f"redis+sentinel://127.0.0.1:{port}/mymaster/15"
    require_port(5672, START_RABBITMQ)
    return AMQP_URL


@pytest.fixture(params=BACKENDS)
def bus_url(request: pytest.FixtureRequest) -> str:
    return backend_url(request.param, request)


@pytest.fixture(params=[b for b in BACKENDS if b != "memory"])
def net_url(request: pytest.FixtureRequest) -> str:
    """Like ``bus_url`` for the backends that cross processes (not ``memory://``)."""
    return backend_url(request.param, request)


@pytest.fixture
async def open_started() -> AsyncIterator[OpenBus]:
    """``await open_started(url)``: a started bus, closed after the test."""
    buses: list[Bus] = []

    async def opener(url: str) -> Bus:
        bus = open_bus(url)
        await bus.start()
        buses.append(bus)
        return bus

    yield opener
    for bus in reversed(buses):
        await bus.close()


@pytest.fixture
async def bus(bus_url: str, open_started: OpenBus) -> Bus:
    return await open_started(bus_url)
