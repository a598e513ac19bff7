"""Group commit: uploads whose bytes are durable are recorded together, one transaction per batch.

SQLite has one writer, and on any database a transaction costs its round trips and its commit
whatever it holds. So an upload that finished streaming does not open a transaction of its own: it
joins a queue, and one writer task records everything queued meanwhile in a single transaction,
with a handful of statements per batch instead of a dozen per upload. With one upload in flight
the batch is that upload and nothing waits; under load the batches grow by themselves.

Each caller still gets its own answer. Whatever needs a closer look (a retry of a failed attempt,
a second upload with the same ``client_upload_id``) is recorded alone by the per-upload path, and
so is every upload of a batch whose transaction fails (a replay of an upload on record, refused by
the unique index; a window that closed between our look and our lock; a deleted pool): the batch
is rolled back as a whole and nothing of it is half-recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert

from pooldrop.domain.groups import Placement, place_upload
from pooldrop.domain.windows import Window, window_for
from pooldrop.errors import PooldropError
from pooldrop.services import events, groups
from pooldrop.services.runtime import Runtime
from pooldrop.services.views import upload_view
from pooldrop.store.models import Upload

if TYPE_CHECKING:
    from pooldrop.services.uploads import Prepared

log = logging.getLogger("pooldrop.recorder")

UPLOADS = cast(Table, Upload.__table__)

MAX_BATCH = 256
"""Uploads per transaction at most; more wait for the next one."""


@dataclass(frozen=True)
class StoredUpload:
    """An upload whose blob is durable and whose row is not written yet."""

    prepared: Prepared
    upload_id: str
    key: str
    size: int
    sha256: str

    @property
    def identity(self) -> tuple[str, str, str] | None:
        p = self.prepared
        if p.client_upload_id is None:
            return None
        return (p.pool.id, p.principal.id, p.client_upload_id)


@dataclass(frozen=True)
class Outcome:
    upload: Upload
    created: bool  # False: an identical replay of a known client_upload_id


RecordAlone = Callable[[StoredUpload], Awaitable[Outcome]]


class _Contended(Exception):
    """The batch cannot be recorded as a whole; record its uploads one by one."""


@dataclass
class _Waiting:
    item: StoredUpload
    future: asyncio.Future[Outcome]


@dataclass
class Recorder:
    """The queue and its writer task (one per runtime), which runs while the queue is not empty."""

    rt: Runtime
    record_alone: RecordAlone
    delete_blob: Callable[[str], Awaitable[None]]
    _queue: list[_Waiting] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def submit(self, item: StoredUpload) -> asyncio.Future[Outcome]:
        """Queue ``item`` now; the future resolves once it is recorded (await it with `settled`)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(item, loop.create_future())
        self._queue.append(waiting)
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._drain(), name="pooldrop-recorder")
        return waiting.future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                await self._record_batch(batch)
            except BaseException as exc:
                for w in batch:
                    _settle(w.future, exc=exc)
                if not isinstance(exc, Exception):
                    raise
                log.exception("recording a batch of %d uploads failed", len(batch))

    async def _record_batch(self, batch: list[_Waiting]) -> None:
        together, alone = self._split(batch)
        if together:
            try:
                outcomes = await record_together(self.rt, [w.item for w in together])
            except Exception as exc:  # rolled back as a whole: each upload gets its own answer
                log.debug("batch of %d recorded one by one: %r", len(together), exc)
                alone = together + alone
            else:
                for w, outcome in zip(together, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        await self.delete_blob(w.item.key)
                        _settle(w.future, exc=outcome)
                    else:
                        _settle(w.future, outcome)
        for w in alone:
            try:
                outcome = await self.record_alone(w.item)
            except Exception as exc:  # the per-upload path deleted the blob
                _settle(w.future, exc=exc)
            else:
                _settle(w.future, outcome)

    @staticmethod
    def _split(batch: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
        """Uploads that can go into one transaction, and those that need the per-upload path:
        retries of a failed attempt, and twins (one ``client_upload_id``) after the first."""
        together: list[_Waiting] = []
        alone: list[_Waiting] = []
        seen: set[tuple[str, str, str]] = set()
        for w in batch:
            identity = w.item.identity
            if w.item.prepared.replay is not None or identity in seen:
                alone.append(w)
                continue
            if identity is not None:
                seen.add(identity)
            together.append(w)
        return together, alone


async def settled(future: asyncio.Future[Outcome]) -> Outcome:
    # Shielded: once queued, the upload is recorded (or its blob deleted) even if the client
    # goes away, so a cancelled request can never leave a row without its bytes.
    return await asyncio.shield(future)


def abandon(future: asyncio.Future[Outcome]) -> None:
    """Nobody will await ``future``: keep asyncio from reporting its exception as unretrieved."""
    future.add_done_callback(lambda f: f.cancelled() or f.exception())


def _settle(
    future: asyncio.Future[Outcome],
    outcome: Outcome | None = None,
    *,
    exc: BaseException | None = None,
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    elif outcome is not None:
        future.set_result(outcome)


async def record_together(rt: Runtime, items: list[StoredUpload]) -> list[Outcome | PooldropError]:
    """Record ``items`` in one transaction. Per upload: its outcome, or why it was refused
    (a late upload under the ``reject`` policy), in which case nothing of it was written.

    Raises (and writes nothing) when any upload is not a plain new one after all: a replay of an
    upload on record (the unique index refuses it), a window closed under it, a deleted pool.
    The caller then records them one by one. Replays are rare enough not to look for them first.
    """
    results: list[Outcome | PooldropError | None] = []
    async with rt.uow() as uow:
        s = uow.session
        conn = await s.connection()
        now = rt.clock.now()
        by_window: dict[tuple[str, datetime], list[StoredUpload]] = {}
        placements: dict[str, Placement] = {}
        for item in items:
            p = item.prepared
            # Placed against the cached closed windows; count_uploads checks the chosen one.
            closed = await groups.closed_window_starts(
                s, p.pool.id, [_window(p, p.ts), _window(p, now)], rt.caches
            )
            try:
                placement = place_upload(p.ts, now, p.settings, _open_unless(closed))
            except PooldropError as exc:
                results.append(exc)
                continue
            results.append(None)
            placements[item.upload_id] = placement
            by_window.setdefault((p.pool.id, placement.window.start), []).append(item)

        rows: list[dict[str, Any]] = []
        stored: dict[str, list[Upload]] = {}
        for mine in by_window.values():
            p = mine[0].prepared
            window = placements[mine[0].upload_id].window
            group_id = await groups.count_uploads(
                rt,
                uow,
                p.pool,
                window,
                [i.prepared.principal.id for i in mine],
                sum(i.size for i in mine),
            )
            if group_id is None:
                raise _Contended("a window closed while its uploads were placed")
            for item in mine:
                values = upload_row(item, placements[item.upload_id], group_id, now)
                stored.setdefault(p.pool.id, []).append(Upload(**values))
                rows.append({**values, "metadata": values.pop("metadata_")})
        if rows:
            await conn.execute(insert(UPLOADS), rows)
        for pool_id, uploads in stored.items():
            await events.record_many(
                rt,
                uow,
                pool_id,
                [(events.UPLOAD_STORED, upload_view(u), u.uploader_id) for u in uploads],
            )
    outcomes = {u.id: u for uploads in stored.values() for u in uploads}
    return [
        r if r is not None else Outcome(upload=outcomes[item.upload_id], created=True)
        for r, item in zip(results, items, strict=True)
    ]


def _open_unless(closed: frozenset[object]) -> Callable[[Window], bool]:
    return lambda w: w.start not in closed


def _window(p: Any, at: datetime) -> Window:
    return window_for(at, p.settings.window, p.settings.window_offset)


def upload_row(
    item: StoredUpload, placement: Placement, group_id: str, now: datetime
) -> dict[str, Any]:
    p = item.prepared
    return {
        "id": item.upload_id,
        "pool_id": p.pool.id,
        "group_id": group_id,
        "uploader_id": p.principal.id,
        "uploader_kind": p.principal.kind,
        "client_upload_id": p.client_upload_id,
        "name": p.name,
        "ts": p.ts,
        "received_at": now,
        "size": item.size,
        "sha256": item.sha256,
        "content_type": p.content_type,
        "metadata_": p.metadata,
        "status": "stored",
        "error": None,
        "blob_key": item.key,
        "window_start": placement.window.start,
        "window_end": placement.window.end,
        "late": placement.late,
    }
