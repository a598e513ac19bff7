"""Resumable uploads (tus and the WebSocket gateway): bytes arrive over many connections, are kept
as blob parts, and when the last byte is in they go once through the plain upload path
(:func:`pooldrop.services.uploads.ingest`), which hashes, sniffs, places and records the file.

State lives in the ``transfers`` row and in blob parts, never in a process, so any node can resume.

Parts are committed blobs ``transfers/<id>/<start offset:020d>.<writer generation:010d>``. Whoever
appends holds the row's ``writer_token`` (the *generation*, bumped by every takeover); a part
counts only once ``UPDATE transfers SET offset = offset + n WHERE id AND offset = start AND
writer_token = generation`` hit its row. A writer that was taken over (its client vanished, a new
connection resumed) therefore cannot move the offset: its update hits nothing, it deletes its own
part and stops. Its blob may still linger (it crashed first); such an orphan always has a *lower*
generation than the part that counts at the same start offset, because a newer writer only ever
writes at or after the offset it took over at, and a part committed before that takeover ends at
or before it. So reading picks, at each offset, the part of the highest generation.

Finishing needs idempotency against two finishers (a client retrying while the first one is still
ingesting): a transfer without a client_upload_id uses ``transfer:<id>`` as one, so the second
finisher gets the first one's upload back instead of a twin.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult

from pooldrop.blobs import BlobNotFound, BlobWriter
from pooldrop.domain.sniffing import forbidden_reason
from pooldrop.errors import (
    Conflict,
    FileTooLarge,
    ForbiddenType,
    Gone,
    NotFound,
    PooldropError,
    Unavailable,
)
from pooldrop.services import uploads
from pooldrop.services.ingest import StorageFailed, with_retries
from pooldrop.services.principals import Principal
from pooldrop.services.recorder import Outcome
from pooldrop.services.runtime import Runtime
from pooldrop.store.models import Transfer
from pooldrop.store.types import new_id

log = logging.getLogger("pooldrop.transfers")

PREFIX = "transfers"
PART_SIZE = 8 * 1024 * 1024
"""Largest blob part: big enough to keep the part count low (a 64 MiB file is 8 parts), small
enough that a crash loses little and a taken-over writer notices soon."""
READ_CHUNK = 1024 * 1024
EXPIRE_BATCH = 500


class TakenOver(Conflict):
    """Another connection resumed this transfer; this one's bytes were not kept."""

    code, title = "transfer_taken_over", "Transfer taken over"


class OffsetMismatch(Conflict):
    code, title = "offset_mismatch", "Offset mismatch"


def canonical_id(raw: str) -> str:
    """The stored form of a transfer id given as a UUID in any usual spelling; NotFound if not."""
    try:
        return str(uuid.UUID(raw))
    except (ValueError, AttributeError, TypeError):
        raise NotFound("no such transfer") from None


def _part_prefix(transfer_id: str) -> str:
    return f"{PREFIX}/{transfer_id}"


def _part_key(transfer_id: str, start: int, token: str) -> str:
    return f"{PREFIX}/{transfer_id}/{start:020d}.{token}"


def _expiry(rt: Runtime) -> datetime:
    return rt.clock.now() + timedelta(seconds=rt.settings.transfer_expiry)


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


async def create(
    rt: Runtime, principal: Principal, spec: uploads.UploadSpec, *, length: int, protocol: str
) -> Transfer:
    """Validate like a plain upload (access, fields, declared size, lateness) and open a transfer.

    A bad upload is refused here, before any byte is sent.
    """
    prepared = await uploads.prepare(rt, principal, replace(spec, content_length=length))
    # The name alone can condemn a file: say so now rather than after its last byte.
    reason = forbidden_reason(prepared.name, b"", prepared.settings.forbidden_types)
    if reason:
        raise ForbiddenType(reason)
    now = rt.clock.now()
    transfer = Transfer(
        id=new_id(),
        protocol=protocol,
        pool_id=prepared.pool.id,
        uploader_id=principal.id,
        uploader_kind=principal.kind,
        length=length,
        offset=0,
        parts=0,
        name=prepared.name,
        ts=prepared.ts,
        content_type=prepared.content_type,
        client_upload_id=prepared.client_upload_id,
        metadata_=prepared.metadata,
        expected_sha256=prepared.expected_sha256.hex() if prepared.expected_sha256 else None,
        writer_token=None,
        upload_id=None,
        created_at=now,
        expires_at=_expiry(rt),
    )
    async with rt.uow() as uow:
        uow.session.add(transfer)
    return transfer


def _check_visible(t: Transfer | None, principal: Principal, now: datetime) -> Transfer:
    # Per uploader: anyone else, admins included, learns nothing (not even that it exists).
    if t is None or t.uploader_id != principal.id:
        raise NotFound("no such transfer")
    if t.upload_id is None and t.expires_at <= now:
        raise Gone("this transfer expired; start the upload again")
    return t


async def get(rt: Runtime, principal: Principal, transfer_id: str) -> Transfer:
    """The caller's transfer; NotFound for unknown or someone else's, Gone once expired."""
    async with rt.read() as s:
        t = await s.get(Transfer, canonical_id(transfer_id))
    return _check_visible(t, principal, rt.clock.now())


async def take_over(
    rt: Runtime, principal: Principal, transfer_id: str, expected_offset: int | None = None
) -> TransferWriter:
    """Become the transfer's only writer, replacing any previous one (alive or dead).

    ``expected_offset`` (tus ``Upload-Offset``) must equal the durable offset: OffsetMismatch
    otherwise, and nothing changes. A finished transfer answers OffsetMismatch unless the
    expected offset is its length (a replay of the last request).
    """
    async with rt.uow() as uow:
        stmt = select(Transfer).where(Transfer.id == canonical_id(transfer_id)).with_for_update()
        t = _check_visible(await uow.session.scalar(stmt), principal, rt.clock.now())
        if expected_offset is not None and expected_offset != t.offset:
            raise OffsetMismatch(
                f"the upload is at offset {t.offset}, not {expected_offset}", offset=t.offset
            )
        if t.upload_id is None:
            t.writer_token = f"{int(t.writer_token or 0) + 1:010d}"
    return TransferWriter(rt, t)


class TransferWriter:
    """Appends bytes at a transfer's durable offset as blob parts of at most ``part_size``.

    With ``hold=True`` (a tus chunk with a checksum) finished parts are stored but only counted
    by ``flush``, so ``discard`` can drop the whole chunk when its checksum fails.
    """

    def __init__(
        self, rt: Runtime, transfer: Transfer, *, part_size: int = PART_SIZE, hold: bool = False
    ) -> None:
        self.rt = rt
        self.transfer = transfer
        self.token = transfer.writer_token or ""
        self.part_size = part_size
        self.hold = hold
        self.offset: int = transfer.offset
        """Bytes durably counted."""
        self.received: int = transfer.offset
        """Bytes accepted, counted or not."""
        self.expires_at: datetime = transfer.expires_at
        self._current: BlobWriter | None = None
        self._sealed: list[str] = []

    @property
    def finished(self) -> bool:
        return self.transfer.upload_id is not None

    @property
    def complete(self) -> bool:
        return self.offset == self.transfer.length

    async def write(self, data: bytes) -> None:
        """Accept ``data``; FileTooLarge (nothing of it kept) if it runs past the length."""
        if self.finished:
            raise OffsetMismatch("this transfer is already finished")
        if self.received + len(data) > self.transfer.length:
            raise FileTooLarge(
                f"more bytes than the {self.transfer.length} declared for this upload"
            )
        view = memoryview(data)
        while view:
            writer = self._current
            if writer is None:
                key = _part_key(self.transfer.id, self.received, self.token)
                writer = self._current = self.rt.blobs.writer(key)
            piece = bytes(view[: self.part_size - writer.bytes_written])
            view = view[len(piece) :]
            await self._storage(partial(writer.write, piece))
            self.received += len(piece)
            if writer.bytes_written >= self.part_size:
                await self._seal()
                if not self.hold:
                    await self._count()

    async def flush(self) -> int:
        """Make every accepted byte durable; returns the durable offset.

        TakenOver if another writer took the transfer over meanwhile (these bytes are dropped).
        """
        if self._current is not None:
            await self._seal()
        await self._count()
        return self.offset

    async def discard(self) -> None:
        """Drop every accepted byte that is not durable yet."""
        current, self._current = self._current, None
        if current is not None:
            await current.abort()
        sealed, self._sealed = self._sealed, []
        for key in sealed:
            await self.rt.blobs.delete(key)
        self.received = self.offset

    async def _seal(self) -> None:
        writer, self._current = self._current, None
        assert writer is not None
        try:
            await self._storage(writer.commit)
        except BaseException:
            await writer.abort()
            raise
        self._sealed.append(writer.key)

    async def _count(self) -> None:
        if not self._sealed:
            return
        added = self.received - self.offset
        expires_at = _expiry(self.rt)
        t = Transfer
        async with self.rt.uow() as uow:
            result = await uow.session.execute(
                update(t)
                .where(
                    t.id == self.transfer.id, t.offset == self.offset, t.writer_token == self.token
                )
                .values(
                    offset=t.offset + added,
                    parts=t.parts + len(self._sealed),
                    expires_at=expires_at,
                )
            )
            won = _rowcount(result) == 1
        if not won:
            await self.discard()
            raise TakenOver("another connection resumed this upload; this one stopped")
        self._sealed = []
        self.offset += added
        self.expires_at = expires_at
        self.transfer.offset = self.offset
        self.transfer.expires_at = expires_at

    async def _storage(self, op: Callable[[], Awaitable[None]]) -> None:
        try:
            await with_retries(op, self.rt.settings.storage_retry_backoff)
        except StorageFailed as exc:
            raise Unavailable("storage failed; resume this upload later") from exc

    async def finish(self, principal: Principal) -> Outcome:
        """Send the complete transfer through the upload path; returns its outcome.

        A 4xx verdict (bad type, late, duplicate with other content...) ends the transfer: its
        row and parts go. A 5xx leaves it complete and unfinished, so finishing can be retried.
        """
        t = self.transfer
        if not self.complete:
            raise Conflict(f"the upload has {self.offset} of {t.length} bytes; send the rest")
        spec = uploads.UploadSpec(
            pool_id=t.pool_id,
            name=t.name,
            ts=t.ts,
            client_upload_id=t.client_upload_id or f"transfer:{t.id}",
            content_type=t.content_type,
            metadata=t.metadata_,
            expected_sha256=bytes.fromhex(t.expected_sha256) if t.expected_sha256 else None,
            content_length=t.length,
        )
        try:
            keys = await _part_chain(self.rt, t)
            prepared = await uploads.prepare(self.rt, principal, spec)
            outcome = await uploads.ingest(self.rt, prepared, _read_parts(self.rt, keys))
        except PooldropError as exc:
            if exc.status < 500:
                await _drop(self.rt, t.id)
            raise
        expires_at = _expiry(self.rt)
        async with self.rt.uow() as uow:
            result = await uow.session.execute(
                update(Transfer)
                .where(Transfer.id == t.id, Transfer.writer_token == self.token)
                .values(upload_id=outcome.upload.id, writer_token=None, expires_at=expires_at)
            )
            won = _rowcount(result) == 1
        if won:
            # The row now answers for the transfer; the parts are no longer needed.
            t.upload_id = outcome.upload.id
            await self.rt.blobs.delete_prefix(_part_prefix(t.id))
        return outcome


async def _part_chain(rt: Runtime, t: Transfer) -> list[str]:
    """The keys of the parts that make up ``[0, t.offset)``, in order (see the module doc)."""
    best: dict[int, tuple[str, str]] = {}
    for key in await rt.blobs.list_prefix(_part_prefix(t.id)):
        start_text, _, token = key.rsplit("/", 1)[1].partition(".")
        start = int(start_text)
        if start not in best or token > best[start][0]:
            best[start] = (token, key)
    keys: list[str] = []
    position = 0
    while position < t.offset:
        found = best.get(position)
        if found is None:
            log.error("transfer %s lost the part at offset %d", t.id, position)
            raise Gone("this upload's stored bytes are incomplete; start it again")
        keys.append(found[1])
        position += await rt.blobs.size(found[1])
    if position != t.offset:
        log.error("transfer %s parts end at %d, not %d", t.id, position, t.offset)
        raise Gone("this upload's stored bytes are inconsistent; start it again")
    return keys


async def _read_parts(rt: Runtime, keys: list[str]) -> AsyncIterator[bytes]:
    for key in keys:
        try:
            chunks = await rt.blobs.open(key, chunk_size=READ_CHUNK)
        except BlobNotFound:
            raise Unavailable("a part of this upload vanished while it was read") from None
        async for chunk in chunks:
            yield chunk


async def _drop(rt: Runtime, transfer_id: str) -> None:
    async with rt.uow() as uow:
        await uow.session.execute(delete(Transfer).where(Transfer.id == transfer_id))
    await rt.blobs.delete_prefix(_part_prefix(transfer_id))


async def terminate(rt: Runtime, principal: Principal, transfer_id: str) -> None:
    """End the caller's transfer and free its bytes (tus termination). A running writer's next
    part then finds no row and is dropped."""
    async with rt.read() as s:
        t = await s.get(Transfer, canonical_id(transfer_id))
    if t is None or t.uploader_id != principal.id:
        raise NotFound("no such transfer")
    await _drop(rt, t.id)


async def expire_transfers(rt: Runtime) -> int:
    """Scheduler job: remove transfers past ``expires_at`` with their parts; returns how many.

    An unfinished transfer's expiry slides with each part it receives; a finished one's row is
    kept that long after finishing so a retried last request still gets its answer.
    """
    now = rt.clock.now()
    due = select(Transfer.id).where(Transfer.expires_at <= now).limit(EXPIRE_BATCH)
    async with rt.uow() as uow:
        # DELETE ... RETURNING: when several nodes run this, each id is removed by exactly one.
        result = await uow.session.execute(
            delete(Transfer)
            .where(Transfer.id.in_(due.scalar_subquery()), Transfer.expires_at <= now)
            .returning(Transfer.id)
        )
        ids = list(result.scalars())
    for transfer_id in ids:
        await rt.blobs.delete_prefix(_part_prefix(transfer_id))
    return len(ids)


async def sweep_orphan_parts(rt: Runtime) -> int:
    """Remove parts whose transfer row is gone (a crash between deleting a row and its parts).

    Safe against running writers: a row is created before any of its parts, and a part written
    after its row went is deleted by its own writer.
    """
    by_id: dict[str, list[str]] = {}
    for key in await rt.blobs.list_prefix(PREFIX):
        by_id.setdefault(key.split("/")[1], []).append(key)
    if not by_id:
        return 0
    ids = list(by_id)
    live: set[str] = set()
    async with rt.read() as s:
        for i in range(0, len(ids), EXPIRE_BATCH):
            chunk = ids[i : i + EXPIRE_BATCH]
            live.update(await s.scalars(select(Transfer.id).where(Transfer.id.in_(chunk))))
    removed = 0
    for transfer_id in set(ids) - live:
        removed += await rt.blobs.delete_prefix(_part_prefix(transfer_id))
    return removed


class StorageSweep:
    """Scheduler job, at most once per ``interval`` seconds of the runtime's clock: abandoned
    staging blobs (older than ``staging_age``) and orphaned transfer parts.

    Both walk storage listings, too costly for every scheduler pass.
    """

    def __init__(self, interval: float = 600.0, staging_age: float = 3600.0) -> None:
        self.interval = timedelta(seconds=interval)
        self.staging_age = staging_age
        self._last: datetime | None = None

    async def __call__(self, rt: Runtime) -> int:
        now = rt.clock.now()
        if self._last is not None and now - self._last < self.interval:
            return 0
        self._last = now
        return await rt.blobs.sweep_staging(self.staging_age) + await sweep_orphan_parts(rt)
