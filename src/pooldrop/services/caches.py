"""Short-lived per-process caches of what nearly every request looks up: keys and pools.

Why: authenticating a ``pdk_`` key and loading its pool are two database round trips on every
upload and download, for rows that almost never change; at hundreds of requests a second they were
a large share of the server's time. Each process keeps them for a few seconds (cachetools'
``TTLCache``, bounded in size).

Revocation stays immediate: a change made through any node (a key revoked, a pool changed or
deleted) drops the entry in that process at once and, through the bus, in every other process.
The TTL only bounds how long a process that missed a bus message (bus down) may lag. Only keys that
are valid are cached; an unknown or revoked key is looked up every time.

Closed windows are cached for a second without invalidation: they only serve the early lateness
check made before a body is read. The check at commit (services/recorder.py) is authoritative, and a
window never reopens, so a stale answer costs at most a body read that is then refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from cachetools import TTLCache

from pooldrop.bus import BusError
from pooldrop.services.principals import Principal

if TYPE_CHECKING:
    from pooldrop.domain.pools import PoolSettings
    from pooldrop.services.runtime import Runtime
    from pooldrop.store.models import Pool

log = logging.getLogger("pooldrop.caches")

INVALIDATE_TOPIC = "pooldrop.invalidate"
KEY_TTL = 5.0
POOL_TTL = 5.0
CLOSED_WINDOWS_TTL = 1.0
MAX_ENTRIES = 20_000
RESUBSCRIBE_DELAY = 1.0


@dataclass(frozen=True)
class CachedKey:
    secret_hash: str
    principal: Principal


@dataclass
class Caches:
    keys: TTLCache[str, CachedKey] = field(default_factory=lambda: TTLCache(MAX_ENTRIES, KEY_TTL))
    pools: TTLCache[str, Pool] = field(default_factory=lambda: TTLCache(MAX_ENTRIES, POOL_TTL))
    # The settings derived from the cached pool row (keyed like `pools`, valid for that row only).
    settings: TTLCache[str, tuple[Pool, PoolSettings]] = field(
        default_factory=lambda: TTLCache(MAX_ENTRIES, POOL_TTL)
    )
    closed_windows: TTLCache[tuple[str, datetime], frozenset[object]] = field(
        default_factory=lambda: TTLCache(MAX_ENTRIES, CLOSED_WINDOWS_TTL)
    )

    # Bumped by every invalidation: a loader that read the database before it only caches what it
    # read if no invalidation happened meanwhile (its row may be the one just revoked).
    generation: int = 0

    def put_key(self, key_id: str, value: CachedKey, generation: int) -> None:
        if generation == self.generation:
            self.keys[key_id] = value

    def put_pool(self, pool: Pool, generation: int) -> None:
        if generation == self.generation:
            self.pools[pool.id] = pool

    def settings_for(self, pool: Pool, derive: Callable[[Pool], PoolSettings]) -> PoolSettings:
        """``derive(pool)`` (the pool's settings), computed once per cached pool object."""
        found = self.settings.get(pool.id)
        if found is not None and found[0] is pool:
            return found[1]
        settings = derive(pool)
        if pool is self.pools.get(pool.id):
            self.settings[pool.id] = (pool, settings)
        return settings

    def forget(self, kind: str, ident: str) -> None:
        self.generation += 1
        if kind == "key":
            self.keys.pop(ident, None)
        elif kind == "pool":
            self.pools.pop(ident, None)
            self.settings.pop(ident, None)
            # Its keys are gone too when the pool was deleted.
            self.keys.clear()
        else:
            self.clear()

    def clear(self) -> None:
        self.generation += 1
        self.settings.clear()
        self.keys.clear()
        self.pools.clear()
        self.closed_windows.clear()


async def forget_everywhere(rt: Runtime, kind: str, ident: str) -> None:
    """Drop a cached key or pool here and ask every other process to do the same."""
    rt.caches.forget(kind, ident)
    if not rt.bus.distributed:
        return
    try:
        await rt.bus.publish(INVALIDATE_TOPIC, f"{kind} {ident}".encode())
    except BusError as exc:
        log.warning("cache invalidation not published (other nodes lag up to the TTL): %s", exc)


async def listen_for_invalidations(rt: Runtime) -> None:
    """Apply other processes' invalidations until cancelled (a task for the app's lifetime)."""
    while True:
        try:
            sub = await rt.bus.subscribe(INVALIDATE_TOPIC)
            # Messages may have been missed while not subscribed.
            rt.caches.clear()
            try:
                async for payload in sub:
                    kind, _, ident = payload.decode(errors="replace").partition(" ")
                    rt.caches.forget(kind, ident)
            finally:
                await sub.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("cache invalidation listener: %s; resubscribing", exc)
        rt.caches.clear()
        await asyncio.sleep(RESUBSCRIBE_DELAY)
