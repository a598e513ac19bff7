"""A blob store that fails on demand, for testing callers' retries.

    flaky = FlakyBlobStore(MemoryBlobStore())
    flaky.fail_writes = 2      # the next two BlobWriter.write calls raise BlobError
    flaky.fail_commits = 1     # the next BlobWriter.commit raises BlobError

A failing call raises before it reaches the wrapped store, so the wrapped writer's state is as if
the call never happened: a retry with the same bytes is exactly what the interface promises works.
Counters are shared by all writers of the store and count down across them. ``write_calls`` and
``commit_calls`` count every attempt, failed or not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from pooldrop.blobs import DEFAULT_CHUNK_SIZE, BlobError, BlobStore, BlobWriter


class FlakyBlobWriter:
    def __init__(self, store: FlakyBlobStore, inner: BlobWriter) -> None:
        self._store = store
        self._inner = inner
        self.key = inner.key

    @property
    def bytes_written(self) -> int:
        return self._inner.bytes_written

    async def write(self, data: bytes) -> None:
        self._store.write_calls += 1
        if self._store.fail_writes > 0:
            self._store.fail_writes -= 1
            raise BlobError(f"injected write failure for {self.key!r}")
        await self._inner.write(data)

    async def commit(self) -> None:
        self._store.commit_calls += 1
        if self._store.fail_commits > 0:
            self._store.fail_commits -= 1
            raise BlobError(f"injected commit failure for {self.key!r}")
        await self._inner.commit()

    async def abort(self) -> None:
        await self._inner.abort()


class FlakyBlobStore(BlobStore):
    """Wraps ``inner``; everything but writer ``write``/``commit`` passes straight through."""

    def __init__(self, inner: BlobStore, *, fail_writes: int = 0, fail_commits: int = 0) -> None:
        self.inner = inner
        self.url = inner.url
        self.fail_writes = fail_writes
        self.fail_commits = fail_commits
        self.write_calls = 0
        self.commit_calls = 0

    def writer(self, key: str) -> BlobWriter:
        return FlakyBlobWriter(self, self.inner.writer(key))

    async def open(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        return await self.inner.open(key, start, end, chunk_size)

    async def size(self, key: str) -> int:
        return await self.inner.size(key)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def delete_prefix(self, prefix: str) -> int:
        return await self.inner.delete_prefix(prefix)

    async def list_prefix(self, prefix: str) -> list[str]:
        return await self.inner.list_prefix(prefix)

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        return await self.inner.presigned_url(key, expires_in)

    async def ping(self) -> None:
        await self.inner.ping()

    async def sweep_staging(self, older_than_seconds: float) -> int:
        return await self.inner.sweep_staging(older_than_seconds)

    async def close(self) -> None:
        await self.inner.close()
