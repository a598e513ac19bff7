"""One ticker per event loop for the timeouts of long-lived connections (idle limits, heartbeats).

A timer per connection costs more than half a kilobyte in uvloop and is re-armed on every frame;
ten thousand idle subscribers would hold ten thousand of them. Instead each connection registers
here and is asked once per ``TICK`` whether its deadline passed, so a timeout fires up to one tick
late (a 15 s heartbeat goes out after 15 to 16 s of silence).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

log = logging.getLogger("pooldrop.sweeper")

TICK = 1.0
"""Seconds between two passes over the registered connections."""


class Timed(Protocol):
    def tick(self, now: float) -> None:
        """Called once per pass with ``loop.time()``; act if a deadline passed."""


class Sweeper:
    """The connections of one event loop that want ``tick(now)`` called every ``TICK`` s."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._members: set[Timed] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, member: Timed) -> None:
        self._members.add(member)
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._run(), name="connection-sweeper")

    def discard(self, member: Timed) -> None:
        self._members.discard(member)

    def __len__(self) -> int:
        return len(self._members)

    async def _run(self) -> None:
        while self._members:
            await asyncio.sleep(TICK)
            now = self._loop.time()
            for member in tuple(self._members):
                try:
                    member.tick(now)
                except Exception:
                    log.exception("connection timeout check failed")
        self._task = None


_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sweeper] = (
    weakref.WeakKeyDictionary()
)


def sweeper() -> Sweeper:
    """The running loop's sweeper (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _sweepers.get(loop)
    if found is None:
        found = _sweepers[loop] = Sweeper(loop)
    return found
