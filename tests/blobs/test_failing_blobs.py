"""FlakyBlobStore, the failure-injecting wrapper other suites use to test their retries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pooldrop.blobs import BlobError
from pooldrop.blobs.memory import MemoryBlobStore
from tests.support.failing_blobs import FlakyBlobStore


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_fails_the_next_n_writes_and_commits_then_recovers() -> None:
    store = FlakyBlobStore(MemoryBlobStore(), fail_writes=2, fail_commits=1)
    writer = store.writer("k")
    for _ in range(2):
        with pytest.raises(BlobError, match="injected write"):
            await writer.write(b"abc")
    await writer.write(b"abc")
    with pytest.raises(BlobError, match="injected commit"):
        await writer.commit()
    assert not await store.exists("k")
    await writer.commit()
    assert writer.bytes_written == 3
    assert (store.write_calls, store.commit_calls) == (3, 2)
    assert (store.fail_writes, store.fail_commits) == (0, 0)
    assert b"".join([c async for c in await store.open("k")]) == b"abc"


async def test_put_through_the_wrapper_aborts_on_failure() -> None:
    inner = MemoryBlobStore()
    store = FlakyBlobStore(inner, fail_commits=1)
    with pytest.raises(BlobError):
        await store.put("k", _one(b"x"))
    assert await inner.list_prefix("") == []
    assert await store.put("k", _one(b"xy")) == 2
    assert await inner.size("k") == 2
    assert store.url == inner.url and store.local_path("k") is None
    assert await store.delete_prefix("") == 1
