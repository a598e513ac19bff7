"""Batches: many files in one streamed request, each standing or falling alone.

An offline client sends what it cached as one request: a JSON manifest first, then the files.
Each file goes through the plain upload path (:func:`pooldrop.services.uploads.store`) while the
request streams, so each lands in the window of its own ``ts``, a file's failure touches no other,
and a batch re-sent after a dropped connection stores nothing twice (its ``client_upload_id``s).
A file is made durable and recorded (group commit) while the next one streams.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pooldrop.domain.roles import Action
from pooldrop.domain.validation import parse_sha256_hex
from pooldrop.errors import PooldropError, ValidationFailed
from pooldrop.services import uploads
from pooldrop.services.access import pool_access
from pooldrop.services.principals import Principal
from pooldrop.services.recorder import Outcome, abandon, settled
from pooldrop.services.runtime import Runtime
from pooldrop.store.models import Upload

MANIFEST = "manifest"
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_PART_NAME = 255


class BatchPart(AsyncIterable[bytes], Protocol):
    """A part of the request: its form field name and content type, then its bytes."""

    name: str
    content_type: str | None

    async def read(self, limit: int) -> bytes: ...


@dataclass(frozen=True)
class Entry:
    """One manifest line: what the client says about the file in part ``part``."""

    part: str
    ts: Any
    name: Any
    client_upload_id: Any = None
    sha256: Any = None
    metadata: Any = None


@dataclass(frozen=True)
class FileResult:
    part: str
    status: Literal["stored", "duplicate", "rejected"]
    upload: Upload | None = None
    error: PooldropError | None = None


def parse_manifest(raw: bytes, max_entries: int) -> list[Entry]:
    """The manifest's entries. Anything that stops files being matched to entries (not a list,
    a ``part`` missing or repeated, too many entries) fails the whole batch; a bad field of one
    entry only rejects that file, later."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("the manifest is not valid JSON") from None
    if not isinstance(value, list) or not value:
        raise ValidationFailed("the manifest must be a non-empty JSON array of objects")
    if len(value) > max_entries:
        raise ValidationFailed(f"a batch holds at most {max_entries} files, not {len(value)}")
    entries: list[Entry] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValidationFailed(f"manifest entry {i} is not an object")
        part = item.get("part")
        if not isinstance(part, str) or not part or len(part) > MAX_PART_NAME:
            raise ValidationFailed(f"manifest entry {i} needs 'part': the file's form field name")
        if part == MANIFEST or part in seen:
            raise ValidationFailed(f"manifest entry {i}: part name {part!r} is already taken")
        seen.add(part)
        entries.append(
            Entry(
                part=part,
                ts=item.get("ts"),
                name=item.get("name"),
                client_upload_id=item.get("client_upload_id"),
                sha256=item.get("sha256"),
                metadata=item.get("metadata"),
            )
        )
    return entries


async def _store_one(
    rt: Runtime, principal: Principal, pool_id: str, entry: Entry, part: BatchPart
) -> FileResult | asyncio.Future[Outcome]:
    """Stream one file to storage: its result if it was refused, else its pending record."""
    try:
        spec = uploads.UploadSpec(
            pool_id=pool_id,
            name=entry.name,
            ts=entry.ts,
            client_upload_id=entry.client_upload_id,
            content_type=part.content_type,
            metadata=entry.metadata,
            expected_sha256=parse_sha256_hex(entry.sha256),
        )
        prepared = await uploads.prepare(rt, principal, spec)
        return await uploads.store(rt, prepared, part)
    except PooldropError as exc:
        return FileResult(entry.part, "rejected", error=exc)


async def _result(part: str, pending: FileResult | asyncio.Future[Outcome]) -> FileResult:
    if isinstance(pending, FileResult):
        return pending
    try:
        outcome = await settled(pending)
    except PooldropError as exc:
        return FileResult(part, "rejected", error=exc)
    status: Literal["stored", "duplicate"] = "stored" if outcome.created else "duplicate"
    return FileResult(part, status, upload=outcome.upload)


async def ingest_batch(
    rt: Runtime, principal: Principal, pool_id: str, parts: AsyncIterator[BatchPart]
) -> list[FileResult]:
    """Store every file of a batch; one result per manifest entry, in manifest order, then one
    ``rejected`` result per part the manifest does not name (its bytes are skipped).

    Whole-batch failures: the caller may not upload to the pool, the first part is not a valid
    manifest, or the body is malformed (files stored before that point stay stored).
    """
    async with rt.read() as s:
        await pool_access(s, principal, pool_id, Action.UPLOAD_CREATE)
    first = await anext(parts, None)
    if first is None or first.name != MANIFEST:
        raise ValidationFailed("the first part must be the JSON 'manifest'")
    entries = parse_manifest(await first.read(MAX_MANIFEST_BYTES), rt.settings.max_request_files)
    by_part = {e.part: e for e in entries}
    # Files are recorded while later ones stream (group commit), so results are collected last.
    done: dict[str, FileResult | asyncio.Future[Outcome]] = {}
    strays: list[FileResult] = []
    try:
        async for part in parts:
            entry = by_part.get(part.name)
            if entry is None or part.name in done:
                if len(strays) >= len(entries):
                    raise ValidationFailed("too many parts that the manifest does not name")
                why = "is not in the manifest" if entry is None else "was sent twice"
                strays.append(
                    FileResult(
                        part.name, "rejected", error=ValidationFailed(f"part {why}; skipped")
                    )
                )
                continue
            done[part.name] = await _store_one(rt, principal, pool_id, entry, part)
    except BaseException:
        # The files stored so far are still recorded; nobody waits for their answers.
        for pending in done.values():
            if isinstance(pending, asyncio.Future):
                abandon(pending)
        raise
    missing = ValidationFailed("part missing: the request had no file for this entry")
    results = [
        await _result(e.part, done.get(e.part) or FileResult(e.part, "rejected", error=missing))
        for e in entries
    ]
    return results + strays
