"""The process's long-lived parts, built at start-up from settings and hung on the app's state."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from pooldrop.blobs import BlobStore, open_blob_store
from pooldrop.bus import Bus, BusError, open_bus
from pooldrop.clock import Clock, SystemClock
from pooldrop.config import Settings, load_or_create_secret, redact_url
from pooldrop.services.caches import Caches
from pooldrop.services.passwords import Passwords
from pooldrop.services.ratelimit import SlidingWindowLimiter
from pooldrop.store.db import UnitOfWork, create_engine, session_factory, unit_of_work
from pooldrop.store.migrate import upgrade_async

if TYPE_CHECKING:
    from pooldrop.services.hub import EventHub
    from pooldrop.services.recorder import Recorder

log = logging.getLogger("pooldrop")

EVENTS_TOPIC = "pooldrop.events"


class StartupError(RuntimeError):
    """A backend could not be reached at start-up; the message names it (without password)."""


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    blobs: BlobStore
    bus: Bus
    clock: Clock
    secret: str
    login_limiter: SlidingWindowLimiter
    passwords: Passwords
    # SQLite: a second engine whose transactions do not take the write lock. Elsewhere: `engine`.
    read_engine: AsyncEngine | None = None
    read_sessions: async_sessionmaker[AsyncSession] | None = None
    hub: EventHub | None = field(default=None)
    # Group commit of stored uploads; made on first use (see services/recorder.py).
    recorder: Recorder | None = field(default=None)
    caches: Caches = field(default_factory=Caches)

    def uow(self) -> AbstractAsyncContextManager[UnitOfWork]:
        return unit_of_work(self.sessions)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only; nothing is committed."""
        async with (self.read_sessions or self.sessions)() as session:
            yield session

    async def wake(self, pool_id: str, seq: int) -> None:
        """Tell every node that ``pool_id`` has events up to ``seq`` (the log stays the truth)."""
        try:
            await self.bus.publish(EVENTS_TOPIC, f"{pool_id} {seq}".encode())
        except BusError as exc:
            # Subscribers also poll the log, so a missed wake-up only delays delivery.
            log.warning("event wake-up not published: %s", exc)


async def start_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    blobs: BlobStore | None = None,
    bus: Bus | None = None,
    migrate: bool = True,
) -> Runtime:
    settings = settings.resolved()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = settings.secret_key or load_or_create_secret(settings.data_dir)
    if migrate:
        try:
            await upgrade_async(settings.database_url)
        except Exception as exc:
            raise StartupError(
                f"database {redact_url(settings.database_url)} could not be migrated: {exc}"
            ) from exc
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        await engine.dispose()
        raise StartupError(
            f"database {redact_url(settings.database_url)} is not reachable: {exc}"
        ) from exc
    blobs = blobs or open_blob_store(settings.storage_url)
    try:
        await blobs.ping()
    except Exception as exc:
        await engine.dispose()
        raise StartupError(f"storage {blobs.url} is not reachable: {exc}") from exc
    bus = bus or open_bus(settings.bus_url)
    try:
        await bus.start()
    except Exception as exc:
        await engine.dispose()
        await blobs.close()
        raise StartupError(f"bus {bus.url} is not reachable: {exc}") from exc
    read_engine = (
        create_engine(settings.database_url, read_only=True) if settings.is_sqlite else None
    )
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        read_engine=read_engine,
        read_sessions=session_factory(read_engine) if read_engine else None,
        blobs=blobs,
        bus=bus,
        clock=clock or SystemClock(),
        secret=secret,
        login_limiter=SlidingWindowLimiter(settings.login_rate_limit, settings.login_rate_window),
        passwords=Passwords(settings.password_time_cost, settings.password_memory_kib),
    )


async def stop_runtime(rt: Runtime) -> None:
    await rt.bus.close()
    await rt.blobs.close()
    await rt.engine.dispose()
    if rt.read_engine is not None:
        await rt.read_engine.dispose()
