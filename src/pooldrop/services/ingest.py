"""Streaming a body into blob storage: size limit, SHA-256, type sniffing and retries on the way.

Nothing here holds a whole file: chunks are gathered into writes of ``WRITE_SIZE`` and passed on.
A failed blob write is retried (3 attempts in all, with backoff) before the caller is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from pooldrop.blobs import BlobError, BlobStore, BlobWriter
from pooldrop.domain.sniffing import SNIFF_BYTES, forbidden_reason
from pooldrop.errors import ChecksumMismatch, EmptyFile, FileTooLarge, ForbiddenType

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

WRITE_SIZE = 4 * 1024 * 1024
# Below this, hashing on the event loop is cheaper than a trip to a worker thread.
HASH_IN_THREAD = 256 * 1024
STORAGE_ATTEMPTS = 3

T = TypeVar("T")


class StorageFailed(Exception):
    """Blob storage kept failing after every retry."""


@dataclass(frozen=True)
class Limits:
    max_size: int
    name: str
    forbidden: tuple[str, ...]
    expected_sha256: bytes | None


@dataclass(frozen=True)
class Stored:
    size: int
    sha256: str


async def with_retries(op: Callable[[], Awaitable[T]], backoff: float) -> T:
    """Run a blob operation, retrying BlobError with backoff; StorageFailed when all failed."""
    try:
        # The first attempt runs bare: setting up the retry machinery for every write of a large
        # upload cost more than the write's own bookkeeping, and it is only needed after a failure.
        return await op()
    except BlobError:
        pass
    await asyncio.sleep(backoff)
    try:
        # The remaining attempts wait backoff * 2, * 4 ... as one loop from the start would.
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(STORAGE_ATTEMPTS - 1),
            wait=wait_exponential(multiplier=backoff * 2, max=backoff * 8),
            retry=retry_if_exception_type(BlobError),
            reraise=True,
        ):
            with attempt:
                return await op()
    except BlobError as exc:
        raise StorageFailed(str(exc)) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _hash(hasher: Hash, pieces: list[bytes]) -> None:
    # Large batches run this in a worker thread: hashlib releases the GIL for large buffers.
    for piece in pieces:
        hasher.update(piece)


class _Sink:
    """Checks and hashes bytes as they pass, and writes them in large pieces.

    Chunks are kept as they came (no copy into a buffer) until ``WRITE_SIZE`` of them are there;
    those are then hashed and written in the background while the next ones are received (one
    batch in flight at a time, so order is kept): receiving and storing overlap instead of taking
    turns. A full batch is hashed in a worker thread, off the event loop that parses requests.
    """

    def __init__(self, writer: BlobWriter, limits: Limits, backoff: float) -> None:
        self.writer = writer
        self.limits = limits
        self.backoff = backoff
        self.hasher = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.pieces: list[bytes] = []
        self.pending = 0
        self.in_flight: asyncio.Task[None] | None = None

    async def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.limits.max_size:
            raise FileTooLarge(
                f"the file is larger than this pool's limit of {self.limits.max_size} bytes"
            )
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
            if len(self.head) >= SNIFF_BYTES:
                self._check_type()
        self.pieces.append(chunk)
        self.pending += len(chunk)
        if self.pending >= WRITE_SIZE:
            await self._flush()

    def _check_type(self) -> None:
        reason = forbidden_reason(self.limits.name, self.head, self.limits.forbidden)
        if reason:
            raise ForbiddenType(reason)

    async def _settle(self) -> None:
        """Wait for the batch in flight; its failure (StorageFailed) surfaces here."""
        task, self.in_flight = self.in_flight, None
        if task is not None:
            await task

    def _take(self) -> tuple[list[bytes], int]:
        taken = self.pieces, self.pending
        self.pieces, self.pending = [], 0
        return taken

    async def _flush(self) -> None:
        await self._settle()
        if self.pieces:
            self.in_flight = asyncio.create_task(self._store(*self._take()))

    async def _store(self, pieces: list[bytes], size: int) -> None:
        # Hashed once, before any attempt: a retried write must not hash its bytes again.
        if size >= HASH_IN_THREAD:
            await asyncio.to_thread(_hash, self.hasher, pieces)
        else:
            _hash(self.hasher, pieces)
        writer = self.writer
        # Duck-typed PieceBlobWriter: isinstance() on a runtime Protocol was a visible cost per
        # small upload.
        write_pieces = getattr(writer, "write_pieces", None)
        if write_pieces is not None:
            await with_retries(partial(write_pieces, pieces), self.backoff)
        else:
            data = b"".join(pieces)
            await with_retries(partial(writer.write, data), self.backoff)

    async def finish(self) -> Stored:
        if self.size == 0:
            raise EmptyFile("the file is empty")
        if len(self.head) < SNIFF_BYTES:
            self._check_type()
        await self._settle()
        if self.pieces:
            await self._store(*self._take())
        digest = self.hasher.digest()
        expected = self.limits.expected_sha256
        if expected is not None and digest != expected:
            raise ChecksumMismatch("the content does not match the sha-256 the client sent")
        await with_retries(self.writer.commit, self.backoff)
        return Stored(size=self.size, sha256=digest.hex())

    async def cancel(self) -> None:
        """Stop the batch in flight (if any) and wait until it no longer touches the writer."""
        task, self.in_flight = self.in_flight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def store_stream(
    blobs: BlobStore, key: str, body: AsyncIterable[bytes], limits: Limits, backoff: float
) -> Stored:
    """Stream ``body`` to ``key``; the blob becomes visible only if every check passed."""
    return await (await receive_stream(blobs, key, body, limits, backoff)).finish()


class Received:
    """A body read to its end, not yet checked as a whole nor made durable: ``finish()`` does
    that (digest check, fsync, commit). A caller with more to read can go on meanwhile."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink

    async def finish(self) -> Stored:
        try:
            return await self._sink.finish()
        except BaseException:
            await self._sink.cancel()
            await self._sink.writer.abort()
            raise


async def receive_stream(
    blobs: BlobStore, key: str, body: AsyncIterable[bytes], limits: Limits, backoff: float
) -> Received:
    """Read ``body`` to its end into a new blob at ``key``, checking size and type on the way."""
    writer = blobs.writer(key)
    sink = _Sink(writer, limits, backoff)
    try:
        async for chunk in body:
            await sink.feed(chunk)
    except BaseException:
        await sink.cancel()
        await writer.abort()
        raise
    return Received(sink)


async def hash_stream(body: AsyncIterable[bytes], max_size: int) -> tuple[int, str]:
    """Size and SHA-256 of a body that is not kept (a replay of a known client_upload_id)."""
    hasher = hashlib.sha256()
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > max_size:
            raise FileTooLarge(f"the file is larger than this pool's limit of {max_size} bytes")
        hasher.update(chunk)
    return size, hasher.hexdigest()
