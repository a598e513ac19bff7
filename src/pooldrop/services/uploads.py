"""The upload use case: validate, stream to storage, then record and place it in its group.

Order matters for durability (DESIGN.md rule 1): the blob is committed first, the database row
second; a crash in between leaves an orphan blob (swept later), never a row without its bytes.
No database transaction is open while the body streams.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pooldrop.domain.groups import place_upload
from pooldrop.domain.pools import PoolSettings
from pooldrop.domain.roles import Action
from pooldrop.domain.timestamps import check_not_future, parse_ts
from pooldrop.domain.validation import (
    validate_client_upload_id,
    validate_content_type,
    validate_filename,
    validate_metadata,
)
from pooldrop.domain.windows import Window, window_for
from pooldrop.errors import (
    DuplicateConflict,
    EmptyFile,
    FileTooLarge,
    Unavailable,
    ValidationFailed,
    WindowClosed,
)
from pooldrop.services import events, groups
from pooldrop.services.access import pool_access
from pooldrop.services.caches import Caches
from pooldrop.services.ingest import Limits, Received, StorageFailed, hash_stream, receive_stream
from pooldrop.services.pools import settings_of
from pooldrop.services.principals import Principal
from pooldrop.services.recorder import Outcome, Recorder, StoredUpload, settled, upload_row
from pooldrop.services.runtime import Runtime
from pooldrop.services.views import upload_view
from pooldrop.store.models import Pool, Upload
from pooldrop.store.types import new_id

log = logging.getLogger("pooldrop.uploads")

PLACEMENT_TRIES = 3


@dataclass(frozen=True)
class UploadSpec:
    """What a client said about a file, before validation."""

    pool_id: str
    name: Any
    ts: Any
    client_upload_id: Any = None
    content_type: str | None = None
    metadata: Any = None
    expected_sha256: bytes | None = None
    content_length: int | None = None


@dataclass(frozen=True)
class Prepared:
    """A validated upload request for a pool the caller may upload to."""

    principal: Principal
    pool: Pool
    settings: PoolSettings
    name: str
    ts: datetime
    client_upload_id: str | None
    content_type: str
    metadata: dict[str, Any]
    expected_sha256: bytes | None
    # The earlier upload with the same client_upload_id, if any, as found by `prepare`.
    replay: Upload | None = None


async def prepare(rt: Runtime, principal: Principal, spec: UploadSpec) -> Prepared:
    """Every check that needs no body: access, fields, declared size, early lateness."""
    async with rt.read() as s:
        access = await pool_access(
            s, principal, spec.pool_id, Action.UPLOAD_CREATE, caches=rt.caches
        )
        settings = rt.caches.settings_for(access.pool, settings_of)
        if spec.ts is None:
            raise ValidationFailed("ts is required (RFC 3339 or Unix seconds)")
        ts = parse_ts(spec.ts)
        check_not_future(ts, rt.clock.now(), timedelta(seconds=rt.settings.clock_skew))
        name = validate_filename(spec.name if isinstance(spec.name, str) else "")
        prepared = Prepared(
            principal=principal,
            pool=access.pool,
            settings=settings,
            name=name,
            ts=ts,
            client_upload_id=validate_client_upload_id(spec.client_upload_id),
            content_type=validate_content_type(spec.content_type),
            metadata=validate_metadata(spec.metadata),
            expected_sha256=spec.expected_sha256,
        )
        if spec.content_length is not None:
            if spec.content_length > settings.max_file_size:
                raise FileTooLarge(
                    f"{spec.content_length} bytes is over this pool's limit of "
                    f"{settings.max_file_size} bytes"
                )
            if spec.content_length == 0:
                raise EmptyFile("the file is empty")
        # Refuse a late upload before reading its body (the authoritative check is at commit,
        # which also finds replays of uploads already on record).
        try:
            await _placement(s, prepared, rt.clock.now(), rt.caches)
        except WindowClosed:
            # ...unless it is the retry of an upload accepted before its window closed.
            replay = await _find_replay(s, prepared)
            if replay is None:
                raise
            return replace(prepared, replay=replay)
        return prepared


async def _find_replay(s: Any, p: Prepared) -> Upload | None:
    if p.client_upload_id is None:
        return None
    found: Upload | None = await s.scalar(
        select(Upload).where(
            Upload.pool_id == p.pool.id,
            Upload.uploader_id == p.principal.id,
            Upload.client_upload_id == p.client_upload_id,
        )
    )
    return found


async def _placement(s: Any, p: Prepared, now: datetime, caches: Caches | None = None) -> Any:
    own = window_for(p.ts, p.settings.window, p.settings.window_offset)
    current = window_for(now, p.settings.window, p.settings.window_offset)
    closed = await groups.closed_window_starts(s, p.pool.id, [own, current], caches)

    def group_open(w: Window) -> bool:
        return w.start not in closed

    return place_upload(p.ts, now, p.settings, group_open)


def _replay_outcome(existing: Upload, sha256: str) -> Outcome:
    if existing.sha256 != sha256:
        raise DuplicateConflict(
            f"client_upload_id {existing.client_upload_id!r} was already used for other content"
        )
    return Outcome(upload=existing, created=False)


async def ingest(rt: Runtime, p: Prepared, body: AsyncIterable[bytes]) -> Outcome:
    """Stream ``body`` into the pool. Returns the stored upload, or the first one on a replay."""
    return await settled(await store(rt, p, body))


async def store(rt: Runtime, p: Prepared, body: AsyncIterable[bytes]) -> asyncio.Future[Outcome]:
    """Stream ``body`` to storage now; the returned future resolves once it is recorded.

    A caller with more to stream (a batch) goes on while the upload waits for the group commit;
    await the future with :func:`pooldrop.services.recorder.settled`.
    """
    existing = p.replay
    if existing is not None and existing.status == "stored":
        size, sha256 = await hash_stream(body, p.settings.max_file_size)
        if size == 0:
            raise EmptyFile("the file is empty")
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        done.set_result(_replay_outcome(existing, sha256))
        return done

    upload_id = new_id()
    key = f"pools/{p.pool.id}/uploads/{upload_id}"
    limits = Limits(
        max_size=p.settings.max_file_size,
        name=p.name,
        forbidden=p.settings.forbidden_types,
        expected_sha256=p.expected_sha256,
    )
    try:
        received = await receive_stream(
            rt.blobs, key, body, limits, rt.settings.storage_retry_backoff
        )
    except StorageFailed as exc:
        raise await _storage_failed(rt, p, upload_id, exc) from exc
    # The body is read: making it durable and recording it need not hold up the caller's stream.
    return asyncio.ensure_future(_finish(rt, p, upload_id, key, received))


async def _finish(
    rt: Runtime, p: Prepared, upload_id: str, key: str, received: Received
) -> Outcome:
    try:
        stored = await received.finish()
    except StorageFailed as exc:
        raise await _storage_failed(rt, p, upload_id, exc) from exc
    item = StoredUpload(p, upload_id, key, stored.size, stored.sha256)
    return await settled(_recorder(rt).submit(item))


async def _storage_failed(
    rt: Runtime, p: Prepared, upload_id: str, exc: StorageFailed
) -> Unavailable:
    await _record_failure(rt, p, upload_id, str(exc))
    return Unavailable(
        "storage failed after 3 attempts; the upload was not kept, send it again later"
    )


def _recorder(rt: Runtime) -> Recorder:
    if rt.recorder is None:
        rt.recorder = Recorder(rt, partial(_record_alone, rt), rt.blobs.delete)
    return rt.recorder


async def _record_alone(rt: Runtime, item: StoredUpload) -> Outcome:
    """The per-upload path of the recorder: one transaction, every case handled."""
    try:
        return await _record_stored(
            rt, item.prepared, item.upload_id, item.key, item.size, item.sha256
        )
    except BaseException:
        await rt.blobs.delete(item.key)
        raise


async def _record_stored(
    rt: Runtime, p: Prepared, upload_id: str, key: str, size: int, sha256: str
) -> Outcome:
    for _ in range(PLACEMENT_TRIES):
        try:
            async with rt.uow() as uow:
                s = uow.session
                now = rt.clock.now()
                # A replay is answered as such even if its window has closed since. A twin
                # committing concurrently is caught by the unique index (IntegrityError below).
                previous = await _find_replay(s, p)
                if previous is not None and previous.status == "stored":
                    await rt.blobs.delete(key)
                    return _replay_outcome(previous, sha256)
                placement = await _placement(s, p, now)
                pool = await s.get(Pool, p.pool.id)
                if pool is None:
                    raise WindowClosed("the pool was deleted")
                if previous is not None:
                    # A retry of an upload that failed in storage: the row is reused.
                    await s.delete(previous)
                    await s.flush()
                stored = StoredUpload(p, upload_id, key, size, sha256)
                group_id = await groups.count_uploads(
                    rt, uow, pool, placement.window, [p.principal.id], size
                )
                if group_id is None:
                    continue  # closed between our look and our lock: place again
                upload = Upload(**upload_row(stored, placement, group_id, now))
                s.add(upload)
                await s.flush()
                await events.record(
                    rt,
                    uow,
                    pool.id,
                    events.UPLOAD_STORED,
                    upload_view(upload),
                    visible_to=p.principal.id,
                )
            return Outcome(upload=upload, created=True)
        except IntegrityError:
            # The same client_upload_id committed concurrently: answer as its replay.
            async with rt.read() as s:
                previous = await _find_replay(s, p)
            if previous is None:
                raise
            return _replay_outcome(previous, sha256)
    raise WindowClosed("the window kept closing while this upload was placed; send it again")


async def _record_failure(rt: Runtime, p: Prepared, upload_id: str, error: str) -> None:
    window = window_for(p.ts, p.settings.window, p.settings.window_offset)
    try:
        async with rt.uow() as uow:
            previous = await _find_replay(uow.session, p)
            if previous is not None:
                return  # already recorded (as failed, or stored meanwhile)
            upload = Upload(
                id=upload_id,
                pool_id=p.pool.id,
                group_id=None,
                uploader_id=p.principal.id,
                uploader_kind=p.principal.kind,
                client_upload_id=p.client_upload_id,
                name=p.name,
                ts=p.ts,
                received_at=rt.clock.now(),
                size=0,
                sha256="",
                content_type=p.content_type,
                metadata_=p.metadata,
                status="failed",
                error=f"storage failed: {error}"[:1000],
                blob_key=None,
                window_start=window.start,
                window_end=window.end,
                late=False,
            )
            uow.session.add(upload)
            await uow.session.flush()
            await events.record(
                rt,
                uow,
                p.pool.id,
                events.UPLOAD_FAILED,
                upload_view(upload),
                visible_to=p.principal.id,
            )
    except Exception:
        log.exception("could not record the failed upload %s", upload_id)
