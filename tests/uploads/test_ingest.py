"""store_stream: batching, hashing and retries of a streamed body, without the HTTP layer."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Iterable, Sequence

import pytest

from pooldrop.blobs import BlobError, BlobWriter, PieceBlobWriter
from pooldrop.blobs.memory import MemoryBlobStore
from pooldrop.errors import ChecksumMismatch, FileTooLarge
from pooldrop.services import ingest
from pooldrop.services.ingest import Limits, StorageFailed, store_stream, with_retries
from tests.support.failing_blobs import FlakyBlobStore

MiB = 1024 * 1024


def limits(max_size: int = 64 * MiB, sha256: bytes | None = None) -> Limits:
    return Limits(max_size=max_size, name="data.bin", forbidden=(), expected_sha256=sha256)


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


class RecordingStore(MemoryBlobStore):
    """Records each write's shape: ("pieces", count, bytes) or ("write", 1, bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int, int]] = []

    def writer(self, key: str) -> BlobWriter:
        inner = super().writer(key)
        calls = self.calls

        class Recording:
            key = inner.key

            @property
            def bytes_written(self) -> int:
                return inner.bytes_written

            async def write(self, data: bytes) -> None:
                calls.append(("write", 1, len(data)))
                await inner.write(data)

            async def write_pieces(self, pieces: Sequence[bytes]) -> None:
                calls.append(("pieces", len(pieces), sum(map(len, pieces))))
                await inner.write_pieces(pieces)

            async def commit(self) -> None:
                await inner.commit()

            async def abort(self) -> None:
                await inner.abort()

        return Recording()


async def test_large_body_goes_out_in_batches_of_pieces_without_joining() -> None:
    store = RecordingStore()
    data = payload(9 * MiB + 12345)
    stored = await store_stream(store, "k", chunked(data, 256 * 1024), limits(), 0.001)
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join([c async for c in await store.open("k")]) == data
    # Two full batches of 16 received chunks, then the rest at the end; never a joined write.
    assert [kind for kind, _, _ in store.calls] == ["pieces"] * 3
    assert [n for _, n, _ in store.calls][:2] == [16, 16]
    assert [size for _, _, size in store.calls][:2] == [ingest.WRITE_SIZE] * 2


async def test_a_writer_without_pieces_gets_joined_writes() -> None:
    inner = MemoryBlobStore()
    store = FlakyBlobStore(inner)
    assert not isinstance(store.writer("probe"), PieceBlobWriter)
    data = payload(5 * MiB)
    stored = await store_stream(store, "k", chunked(data, 100_000), limits(), 0.001)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert store.write_calls == 2  # one full batch, one remainder
    assert b"".join([c async for c in await inner.open("k")]) == data


async def test_failed_batch_writes_are_retried_without_hashing_twice() -> None:
    inner = MemoryBlobStore()
    store = FlakyBlobStore(inner, fail_writes=2)
    data = payload(6 * MiB)
    expected = hashlib.sha256(data)
    stored = await store_stream(
        store, "k", chunked(data, 64 * 1024), limits(sha256=expected.digest()), 0.001
    )
    assert stored.sha256 == expected.hexdigest()
    assert store.write_calls == 4  # the first batch took three attempts
    assert b"".join([c async for c in await inner.open("k")]) == data


async def test_a_batch_failing_in_the_background_stops_the_upload() -> None:
    inner = MemoryBlobStore()
    store = FlakyBlobStore(inner, fail_writes=3)
    with pytest.raises(StorageFailed):
        await store_stream(store, "k", chunked(payload(12 * MiB), MiB), limits(), 0.001)
    assert await inner.list_prefix("") == []
    assert store.commit_calls == 0


async def test_checksum_and_size_checks_still_stop_a_multi_batch_upload() -> None:
    store = MemoryBlobStore()
    data = payload(10 * MiB)
    with pytest.raises(ChecksumMismatch):
        await store_stream(store, "a", chunked(data, MiB), limits(sha256=b"\0" * 32), 0.001)
    with pytest.raises(FileTooLarge):
        await store_stream(store, "b", chunked(data, MiB), limits(max_size=9 * MiB), 0.001)
    assert await store.list_prefix("") == []


async def test_cancelling_mid_upload_stops_the_batch_in_flight_and_aborts() -> None:
    store = MemoryBlobStore()
    writing = asyncio.Event()
    stopped: list[str] = []

    class Stuck(MemoryBlobStore):
        def writer(self, key: str) -> BlobWriter:
            inner = store.writer(key)

            class StuckWriter:
                key = inner.key
                bytes_written = 0

                async def write(self, data: bytes) -> None:
                    writing.set()
                    try:
                        await asyncio.Event().wait()
                    except asyncio.CancelledError:
                        stopped.append("write")
                        raise

                async def commit(self) -> None:
                    await inner.commit()

                async def abort(self) -> None:
                    stopped.append("abort")
                    await inner.abort()

            return StuckWriter()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * MiB
        await asyncio.Event().wait()  # the client goes quiet

    task = asyncio.create_task(store_stream(Stuck(), "k", body(), limits(), 0.001))
    await writing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The batch's write was stopped before the writer was aborted, never after.
    assert stopped == ["write", "abort"]
    assert await store.list_prefix("") == []


async def test_with_retries_waits_with_backoff_only_after_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    outcomes: list[Iterable[int]] = []

    def flaky(failures: int) -> object:
        calls = [0]

        async def op() -> int:
            calls[0] += 1
            if calls[0] <= failures:
                raise BlobError("no")
            return calls[0]

        outcomes.append(calls)
        return op

    assert await with_retries(flaky(0), 1.0) == 1  # type: ignore[arg-type]
    assert slept == []
    assert await with_retries(flaky(2), 1.0) == 3  # type: ignore[arg-type]
    assert slept == [1.0, 2.0]
    slept.clear()
    with pytest.raises(StorageFailed):
        await with_retries(flaky(3), 1.0)  # type: ignore[arg-type]
    assert slept == [1.0, 2.0]
    assert list(outcomes[-1]) == [3]
