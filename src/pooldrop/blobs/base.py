"""The blob storage interface every backend implements.

A blob is an immutable byte string stored under a *key*. Writers stream a blob into a staging area
that no reader can see; ``commit`` makes it visible under its key in one atomic step, so a crash
never leaves a partial blob under a committed name. Nothing here holds a whole blob in memory.

Errors are vendor-neutral: every backend raises ``BlobNotFound`` for a missing key (``from None``:
the vendor's not-found adds nothing) and ``BlobError`` for any other storage failure (chaining the
vendor's exception as ``__cause__`` for the logs). Bad keys and arguments raise ``ValueError``.

Keys are relative, ``/``-separated paths whose segments use only the URL-unreserved characters
``A-Z a-z 0-9 - . _ ~``; no empty, ``.`` or ``..`` segment, no leading or trailing ``/``, at most
255 characters a segment (a file name's limit on common filesystems) and 1024 in all (S3's), and
the first segment may not be ``.staging`` (the local backend's staging area). Keeping to
unreserved characters means a key is spelled the same on disk, in an S3 path and in a signed URL,
with no escaping rules to disagree about.
"""

from __future__ import annotations

import contextlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 256 * 1024
MAX_KEY_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255
RESERVED_TOP_SEGMENT = ".staging"

_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


@dataclass(frozen=True)
class FileSpan:
    """``size`` bytes of a local file from offset 0: what a server can hand to sendfile."""

    path: Path
    size: int


class BlobNotFound(Exception):
    """No committed blob exists under the key."""


class BlobError(Exception):
    """Any other storage failure: unreachable backend, I/O error, refused request."""


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid blob key, else raise ``ValueError``."""
    if not isinstance(key, str) or not key:
        raise ValueError("blob key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"blob key is longer than {MAX_KEY_LENGTH} characters")
    segments = key.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ValueError(
                f"blob key {key!r} has an empty, '.' or '..' segment "
                "(keys are relative, '/'-separated, with no leading or trailing '/')"
            )
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise ValueError(
                f"blob key {key[:40]!r}... has a segment over {MAX_SEGMENT_LENGTH} characters"
            )
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(
                f"blob key {key!r} may only use the characters A-Z a-z 0-9 - . _ ~ and '/'"
            )
    if segments[0] == RESERVED_TOP_SEGMENT:
        raise ValueError(f"blob keys may not start with the reserved {RESERVED_TOP_SEGMENT!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Normalise a listing prefix: ``""`` means everything, a trailing ``/`` is optional.

    Prefixes match whole segments: ``"a/b"`` covers ``"a/b/c"`` but not ``"a/bc"`` nor ``"a/b"``
    itself. Returns the prefix without its trailing ``/``.
    """
    if prefix in ("", "/"):
        return ""
    return validate_key(prefix.removesuffix("/"))


def check_range(start: int, end: int | None, chunk_size: int) -> None:
    """Reject a read range that no backend could serve sensibly."""
    if start < 0:
        raise ValueError(f"range start must be >= 0, got {start}")
    if end is not None and end < start:
        raise ValueError(f"range end ({end}) must be >= start ({start})")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")


class BlobWriter(Protocol):
    """Streams one blob into staging; invisible to readers until ``commit``.

    A writer is used by one task at a time. ``write`` and ``commit`` are retry-safe: after either
    raised, calling it again (``write`` with the same bytes) neither duplicates nor loses data.
    """

    @property
    def key(self) -> str:
        """The key the blob is committed under."""
        ...

    @property
    def bytes_written(self) -> int:
        """Bytes accepted so far; final once ``commit`` returned."""
        ...

    async def write(self, data: bytes) -> None:
        """Append ``data``. On failure nothing of ``data`` counts: retry with the same bytes."""
        ...

    async def commit(self) -> None:
        """Make the blob visible under ``key`` atomically. Calling it again after success is a
        no-op; after a failure it finishes what is left."""
        ...

    async def abort(self) -> None:
        """Discard everything written. A no-op after ``commit`` or a previous ``abort``."""
        ...


@runtime_checkable
class PieceBlobWriter(BlobWriter, Protocol):
    """A writer that also takes a write as several pieces, sparing the caller a join (a copy of
    every byte). The built-in backends are all such writers."""

    async def write_pieces(self, pieces: Sequence[bytes]) -> None:
        """``write(b"".join(pieces))``, with the same rules on failure and retry."""
        ...


class BlobStore(ABC):
    """A flat namespace of immutable blobs, chosen by URL (see ``open_blob_store``)."""

    url: str
    """The URL the store was built from, with any password or secret removed."""

    @classmethod
    def from_url(cls, url: str) -> BlobStore:
        """Build the store from its URL (the backend module's docstring documents the format)."""
        raise NotImplementedError(f"{cls.__name__} is not built from a URL")

    @abstractmethod
    def writer(self, key: str) -> BlobWriter:
        """A new writer for ``key``. Does no I/O until the first ``write`` or ``commit``."""

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store ``chunks`` under ``key`` (write each, then commit); abort on any error.

        Returns the blob's size. Does not retry: callers that want retries drive a writer.
        """
        writer = self.writer(key)
        try:
            async for chunk in chunks:
                await writer.write(chunk)
            await writer.commit()
        except BaseException:
            # The original error matters more than a failed cleanup, which sweeping or bucket
            # lifecycle rules will finish later.
            with contextlib.suppress(Exception):
                await writer.abort()
            raise
        return writer.bytes_written

    @abstractmethod
    async def open(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of the blob (``end`` exclusive, ``None`` = to the end).

        Awaiting this raises ``BlobNotFound`` before anything is yielded. A range that runs past
        the end of the blob is cut at the end; one that starts past it yields nothing. Chunks are
        at most ``chunk_size`` bytes.
        """

    @abstractmethod
    async def size(self, key: str) -> int:
        """The committed blob's size in bytes; ``BlobNotFound`` if there is none."""

    async def exists(self, key: str) -> bool:
        """Whether a committed blob exists under ``key``."""
        try:
            await self.size(key)
        except BlobNotFound:
            return False
        return True

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the blob; no error if it does not exist."""

    @abstractmethod
    async def list_prefix(self, prefix: str) -> list[str]:
        """Sorted keys of committed blobs under ``prefix`` (see ``validate_prefix``)."""

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every committed blob under ``prefix``; returns how many were removed."""
        keys = await self.list_prefix(prefix)
        for key in keys:
            await self.delete(key)
        return len(keys)

    def local_path(self, key: str) -> Path | None:
        """A real file path of the committed blob (for ``sendfile``), or ``None`` for backends
        that have none. The path is where the blob would be: it may not exist."""
        validate_key(key)
        return None

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A URL that lets anyone GET the blob for ``expires_in`` seconds, or ``None`` where the
        backend or its configuration does not offer one."""
        validate_key(key)
        return None

    @abstractmethod
    async def ping(self) -> None:
        """Raise ``BlobError`` quickly if the storage is not usable."""

    async def sweep_staging(self, older_than_seconds: float) -> int:
        """Remove abandoned staging data older than this; returns how many items went.

        Backends without sweepable staging return 0.
        """
        return 0

    async def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections and clients. The store is unusable afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
