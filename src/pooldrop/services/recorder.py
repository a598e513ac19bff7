"""Group commit: uploads whose bytes are durable are recorded together, one transaction per batch.

SQLite has one writer, and on any database a transaction costs its round trips and its commit
whatever it holds. So an upload that finished streaming does not open a transaction of its own: it
joins a queue, and one writer task records everything queued meanwhile in a single transaction,
with a handful of statements per batch instead of a dozen per upload. With one upload in flight
the batch is that upload and nothing waits; under load the batches grow by themselves.

Each caller still gets its own answer. Whatever needs a closer look (a retry of a failed attempt,
two uploads with one ``client_upload_id``, one already on record) is recorded alone by the
per-upload path, and so is every upload of a batch whose transaction fails (a twin committed by
another node, a window that closed between our look and our lock, a deleted pool): the batch is
rolled back as a whole and nothing of it is half-recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert, select, tuple_

from pooldrop.domain.groups import GroupState, Placement, place_upload
from pooldrop.domain.windows import Window, window_for
from pooldrop.errors import PooldropError
from pooldrop.services import events, groups
from pooldrop.services.runtime import Runtime
from pooldrop.services.views import upload_view
from pooldrop.store.models import Pool, Upload

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

    async def record(self, item: StoredUpload) -> Outcome:
        return await settled(self.submit(item))

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
        together, alone = await self._split(batch)
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

    async def _split(self, batch: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
        """Uploads that can go into one transaction, and those that need the per-upload path."""
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
        if seen:
            known = await _known_identities(self.rt, seen)
            if known:
                alone += [w for w in together if w.item.identity in known]
                together = [w for w in together if w.item.identity not in known]
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


async def _known_identities(
    rt: Runtime, identities: Iterable[tuple[str, str, str]]
) -> set[tuple[str, str, str]]:
    """Which ``(pool, uploader, client_upload_id)`` already have a row (replays, in one query)."""
    columns = (Upload.pool_id, Upload.uploader_id, Upload.client_upload_id)
    async with rt.read() as s:
        rows = await s.execute(select(*columns).where(tuple_(*columns).in_(list(identities))))
        return {(r[0], r[1], str(r[2])) for r in rows}


async def record_together(rt: Runtime, items: list[StoredUpload]) -> list[Outcome | PooldropError]:
    """Record ``items`` in one transaction. Per upload: its outcome, or why it was refused
    (a late upload under the ``reject`` policy), in which case nothing of it was written."""
    results: list[Outcome | PooldropError | None] = []
    async with rt.uow() as uow:
        s = uow.session
        now = rt.clock.now()
        pools: dict[str, Pool] = {}
        closed: dict[str, set[object]] = {}
        for pool_id in {i.prepared.pool.id for i in items}:
            pool = await s.get(Pool, pool_id)
            if pool is None:
                raise _Contended("a pool was deleted")
            pools[pool_id] = pool
            mine = [i.prepared for i in items if i.prepared.pool.id == pool_id]
            closed[pool_id] = await groups.closed_window_starts(
                s, pool_id, [_window(p, p.ts) for p in mine] + [_window(mine[0], now)]
            )
        placed: list[tuple[StoredUpload, Placement]] = []
        for item in items:
            shut = closed[item.prepared.pool.id]
            try:
                placement = place_upload(
                    item.prepared.ts,
                    now,
                    item.prepared.settings,
                    lambda w, shut=shut: w.start not in shut,  # type: ignore[misc]
                )
            except PooldropError as exc:
                results.append(exc)
                continue
            placed.append((item, placement))
            results.append(None)

        by_group: dict[tuple[str, datetime], list[Upload]] = {}
        rows: list[dict[str, Any]] = []
        outcomes: list[Outcome] = []
        group_of: dict[tuple[str, datetime], Any] = {}
        for item, placement in placed:
            p = item.prepared
            slot = (p.pool.id, placement.window.start)
            group = group_of.get(slot)
            if group is None:
                group = await groups.group_for_window(rt, uow, pools[p.pool.id], placement.window)
                if group.state != GroupState.OPEN:
                    raise _Contended("a window closed while its uploads were placed")
                group_of[slot] = group
            values = _row(item, placement, group.id, now)
            upload = Upload(**values)
            by_group.setdefault(slot, []).append(upload)
            rows.append({**values, "metadata": values.pop("metadata_")})
            outcomes.append(Outcome(upload=upload, created=True))
        if rows:
            conn = await s.connection()
            await conn.execute(insert(UPLOADS), rows)
        for slot, uploads in by_group.items():
            await groups.add_uploads(
                rt,
                uow,
                pools[slot[0]],
                group_of[slot],
                [u.uploader_id for u in uploads],
                sum(u.size for u in uploads),
            )
        for pool_id in pools:
            mine_up = [o.upload for o in outcomes if o.upload.pool_id == pool_id]
            if mine_up:
                await events.record_many(
                    rt,
                    uow,
                    pool_id,
                    [(events.UPLOAD_STORED, upload_view(u), u.uploader_id) for u in mine_up],
                )
    done = iter(outcomes)
    return [r if r is not None else next(done) for r in results]


def _window(p: Any, at: datetime) -> Window:
    return window_for(at, p.settings.window, p.settings.window_offset)


def _row(item: StoredUpload, placement: Placement, group_id: str, now: datetime) -> dict[str, Any]:
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
