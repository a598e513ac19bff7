"""Streaming a body into blob storage: size limit, SHA-256, type sniffing and retries on the way.

Nothing here holds a whole file: chunks are coalesced into writes of ``WRITE_SIZE`` and passed on.
A failed blob write is retried (3 attempts in all, with backoff) before the caller is told.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from pooldrop.blobs import BlobError, BlobStore, BlobWriter
from pooldrop.domain.sniffing import SNIFF_BYTES, forbidden_reason
from pooldrop.errors import ChecksumMismatch, EmptyFile, FileTooLarge, ForbiddenType

WRITE_SIZE = 1024 * 1024
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
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(STORAGE_ATTEMPTS),
            wait=wait_exponential(multiplier=backoff, max=backoff * 8),
            retry=retry_if_exception_type(BlobError),
            reraise=True,
        ):
            with attempt:
                return await op()
    except BlobError as exc:
        raise StorageFailed(str(exc)) from exc
    raise AssertionError("unreachable")  # pragma: no cover


class _Sink:
    """Checks and hashes bytes as they pass, and writes them in large pieces."""

    def __init__(self, writer: BlobWriter, limits: Limits, backoff: float) -> None:
        self.writer = writer
        self.limits = limits
        self.backoff = backoff
        self.hasher = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.buffer = bytearray()

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
        self.hasher.update(chunk)
        self.buffer += chunk
        if len(self.buffer) >= WRITE_SIZE:
            await self._flush()

    def _check_type(self) -> None:
        reason = forbidden_reason(self.limits.name, self.head, self.limits.forbidden)
        if reason:
            raise ForbiddenType(reason)

    async def _flush(self) -> None:
        if self.buffer:
            data = bytes(self.buffer)
            self.buffer.clear()
            await with_retries(lambda: self.writer.write(data), self.backoff)

    async def finish(self) -> Stored:
        if self.size == 0:
            raise EmptyFile("the file is empty")
        if len(self.head) < SNIFF_BYTES:
            self._check_type()
        digest = self.hasher.digest()
        expected = self.limits.expected_sha256
        if expected is not None and digest != expected:
            raise ChecksumMismatch("the content does not match the sha-256 the client sent")
        await self._flush()
        await with_retries(self.writer.commit, self.backoff)
        return Stored(size=self.size, sha256=digest.hex())


async def store_stream(
    blobs: BlobStore, key: str, body: AsyncIterable[bytes], limits: Limits, backoff: float
) -> Stored:
    """Stream ``body`` to ``key``; the blob becomes visible only if every check passed."""
    writer = blobs.writer(key)
    sink = _Sink(writer, limits, backoff)
    try:
        async for chunk in body:
            await sink.feed(chunk)
        return await sink.finish()
    except BaseException:
        await writer.abort()
        raise


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
