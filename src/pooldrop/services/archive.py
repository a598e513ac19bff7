"""A group's files as one streamed ``tar``, with a ``manifest.json`` first.

Nothing is built in memory or on disk: each header comes from ``TarInfo.tobuf`` and each file's
bytes stream straight from blob storage, padded to the 512-byte block. Every size is known from
the database, so the archive's exact length is computed before its first byte is sent.

Layout, in the POSIX pax format (long and non-ASCII names survive)::

    manifest.json
    files/<upload_id>/<name>      one per stored upload of the group, ordered by (ts, upload_id)

The upload id directory makes every path unique however files are named, and names were checked
at upload (no ``/``, ``\\``, ``.``, ``..`` or control characters), so no path leaves the archive.

Who may download: the holder of a live lease (``lease_id``), or a pool admin without a lease once
the group has left ``open`` (to inspect a failed or finished group). The manifest cannot change
under either: uploads only join ``open`` groups.
"""

from __future__ import annotations

import json
import logging
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from pooldrop.blobs import BlobStore, FileSpan
from pooldrop.domain.groups import GroupState
from pooldrop.domain.roles import Action
from pooldrop.domain.timestamps import format_ts
from pooldrop.errors import GroupNotReady, ValidationFailed
from pooldrop.services.access import pool_access
from pooldrop.services.claims import check_lease, get_group
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime
from pooldrop.services.views import group_view
from pooldrop.store.models import Group, Upload

log = logging.getLogger("pooldrop.archive")

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


class ArchiveBroken(Exception):
    """A stored file did not stream as recorded; the response is cut short on purpose."""


@dataclass(frozen=True)
class Member:
    """One file of the archive: where it goes and where its bytes are."""

    path: str
    key: str
    size: int
    mtime: int


def member_path(upload: Upload) -> str:
    return f"files/{upload.id}/{upload.name}"


def header(path: str, size: int, mtime: int) -> bytes:
    """The tar header block(s) of a regular file; pax records are added when a name needs them."""
    info = tarfile.TarInfo(path)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def padding(size: int) -> int:
    return -size % BLOCK


def manifest_of(group: Group, uploads: list[Upload]) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "group": group_view(group),
        "uploads": [
            {
                "upload_id": u.id,
                "uploader_id": u.uploader_id,
                "ts": format_ts(u.ts),
                "name": u.name,
                "size": u.size,
                "sha256": u.sha256,
                "metadata": u.metadata_,
                "content_type": u.content_type,
                "late": u.late,
                "path": member_path(u),
            }
            for u in uploads
        ],
    }


@dataclass(frozen=True)
class Archive:
    """Everything needed to stream one group's archive, without any file content."""

    group: Group
    manifest: bytes
    members: tuple[Member, ...]
    mtime: int
    size: int = field(init=False)

    def __post_init__(self) -> None:
        total = len(header(MANIFEST_NAME, len(self.manifest), self.mtime))
        total += len(self.manifest) + padding(len(self.manifest))
        for m in self.members:
            total += len(header(m.path, m.size, m.mtime)) + m.size + padding(m.size)
        object.__setattr__(self, "size", total + self._trailer_size(total))

    @staticmethod
    def _trailer_size(body: int) -> int:
        # Two zero blocks end a tar; the record padding after them is what tar(1) writes too.
        end = body + 2 * BLOCK
        return 2 * BLOCK + (-end % RECORD)

    @property
    def filename(self) -> str:
        start = format_ts(self.group.window_start).replace(":", "")
        return f"group-{start}-{self.group.id}.tar"

    async def chunks(self, blobs: BlobStore) -> AsyncIterator[bytes]:
        """The archive's bytes; exactly :attr:`size` of them, or ``ArchiveBroken`` part way."""
        async for piece in self.pieces(blobs, spans=False):
            assert isinstance(piece, bytes)
            yield piece

    async def pieces(self, blobs: BlobStore, *, spans: bool) -> AsyncIterator[bytes | FileSpan]:
        """Like :meth:`chunks`; with ``spans``, a file on local disk comes as a :class:`FileSpan`
        for the server to send with sendfile (the server checks its size as it sends)."""
        sent = 0
        head = header(MANIFEST_NAME, len(self.manifest), self.mtime)
        yield head + self.manifest + bytes(padding(len(self.manifest)))
        sent += len(head) + len(self.manifest) + padding(len(self.manifest))
        for m in self.members:
            head = header(m.path, m.size, m.mtime)
            yield head
            local = blobs.local_path(m.key) if spans else None
            if local is not None:
                yield FileSpan(local, m.size)
                if padding(m.size):
                    yield bytes(padding(m.size))
                sent += len(head) + m.size + padding(m.size)
                continue
            got = 0
            stream = await blobs.open(m.key)
            try:
                async for chunk in stream:
                    got += len(chunk)
                    if got > m.size:
                        break
                    yield chunk
            finally:
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
            if got != m.size:
                log.error("blob %s has %d bytes, the database says %d", m.key, got, m.size)
                raise ArchiveBroken(f"{m.path}: stored file does not match its record")
            if padding(m.size):
                yield bytes(padding(m.size))
            sent += len(head) + m.size + padding(m.size)
        yield bytes(self._trailer_size(sent))


async def open_archive(
    rt: Runtime, principal: Principal, pool_id: str, group_id: str, lease_id: str | None
) -> Archive:
    """Check access and read the group's manifest; the content streams later from storage."""
    async with rt.read() as s:
        access = await pool_access(s, principal, pool_id, Action.GROUP_WORK)
        group = await get_group(s, pool_id, group_id)
        if lease_id is not None:
            check_lease(group, lease_id, principal, rt.clock.now())
        elif not access.can(Action.POOL_MANAGE):
            raise ValidationFailed("lease_id is required: claim the group, then download it")
        elif group.state == GroupState.OPEN:
            raise GroupNotReady("the group is still open: its manifest is not frozen yet")
        uploads = list(
            (
                await s.scalars(
                    select(Upload)
                    .where(Upload.group_id == group.id, Upload.status == "stored")
                    .order_by(Upload.ts, Upload.id)
                )
            ).all()
        )
    manifest = json.dumps(manifest_of(group, uploads), ensure_ascii=False, indent=1).encode()
    members = []
    for u in uploads:
        assert u.blob_key is not None
        members.append(
            Member(
                path=member_path(u),
                key=u.blob_key,
                size=u.size,
                mtime=int(u.received_at.timestamp()),
            )
        )
    frozen_at = group.ready_at or group.created_at
    return Archive(
        group=group, manifest=manifest, members=tuple(members), mtime=int(frozen_at.timestamp())
    )
