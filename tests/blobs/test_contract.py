"""The blob storage contract, run against every backend (see conftest: memory, file, s3)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable

import httpx
import pytest

from pooldrop.blobs import BlobError, BlobNotFound, BlobStore, BlobWriter, PieceBlobWriter
from tests.blobs.conftest import PART_SIZE, Backend

MiB = 1024 * 1024


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def aiter_of(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def read(store: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in await store.open(key, start, end)])


async def test_round_trip_of_a_multipart_blob(store: BlobStore) -> None:
    # Larger than two S3 parts, in odd-sized chunks so parts never line up with chunks.
    data = payload(2 * PART_SIZE + 123_457)
    size = await store.put("pools/p1/uploads/u1", aiter_of(pieces(data, 100_003)))
    assert size == len(data)
    assert await store.size("pools/p1/uploads/u1") == len(data)
    assert await store.exists("pools/p1/uploads/u1")
    assert await read(store, "pools/p1/uploads/u1") == data


async def test_chunks_respect_chunk_size(store: BlobStore) -> None:
    data = payload(1 * MiB + 17)
    await store.put("k", aiter_of([data]))
    chunks = [c async for c in await store.open("k", chunk_size=64 * 1024)]
    assert max(len(c) for c in chunks) <= 64 * 1024
    assert b"".join(chunks) == data


async def test_empty_blob_is_allowed(store: BlobStore) -> None:
    assert await store.put("empty", aiter_of([])) == 0
    assert await store.exists("empty")
    assert await store.size("empty") == 0
    assert await read(store, "empty") == b""


async def test_ranged_reads(store: BlobStore) -> None:
    data = payload(300_000)
    await store.put("r", aiter_of(pieces(data, 70_000)))
    assert await read(store, "r", 1000) == data[1000:]
    assert await read(store, "r", 1000, 2000) == data[1000:2000]
    assert await read(store, "r", 0, 1) == data[:1]
    assert await read(store, "r", 299_999) == data[-1:]
    assert await read(store, "r", 5, 5) == b""
    # Ranges running past the end are cut there; ones starting past it are empty.
    assert await read(store, "r", 299_000, 400_000) == data[299_000:]
    assert await read(store, "r", 300_000) == b""
    assert await read(store, "r", 500_000, 600_000) == b""


async def test_bad_ranges_are_rejected(store: BlobStore) -> None:
    await store.put("r", aiter_of([b"abc"]))
    with pytest.raises(ValueError):
        await store.open("r", -1)
    with pytest.raises(ValueError):
        await store.open("r", 2, 1)


async def test_missing_blob(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await store.open("no/such/blob")
    with pytest.raises(BlobNotFound):
        await store.open("no/such/blob", 10, 20)
    with pytest.raises(BlobNotFound):
        await store.size("no/such/blob")
    assert not await store.exists("no/such/blob")


async def test_staging_is_invisible_until_commit(store: BlobStore, backend: Backend) -> None:
    data = payload(PART_SIZE + 1000)  # on S3 a part is already uploaded before commit
    writer = store.writer("staged/blob")
    for chunk in pieces(data, 256 * 1024):
        await writer.write(chunk)
    assert writer.bytes_written == len(data)
    assert not await store.exists("staged/blob")
    assert await store.list_prefix("") == []
    assert await store.list_prefix("staged") == []
    with pytest.raises(BlobNotFound):
        await store.size("staged/blob")
    await writer.commit()
    assert await store.list_prefix("") == ["staged/blob"]
    assert await read(store, "staged/blob") == data
    assert await backend.leftovers(store) == 0


async def test_commit_replaces_an_existing_blob(store: BlobStore) -> None:
    await store.put("k", aiter_of([b"first version"]))
    writer = store.writer("k")
    await writer.write(b"second")
    assert await read(store, "k") == b"first version"
    await writer.commit()
    assert await read(store, "k") == b"second"


async def test_commit_twice_is_a_no_op_and_writes_after_it_fail(store: BlobStore) -> None:
    writer = store.writer("k")
    await writer.write(b"hello")
    await writer.commit()
    await writer.commit()
    assert writer.bytes_written == 5
    with pytest.raises(BlobError):
        await writer.write(b"more")
    await writer.abort()  # after commit: nothing to discard, the blob stays
    assert await read(store, "k") == b"hello"


async def test_abort_leaves_nothing(store: BlobStore, backend: Backend) -> None:
    writer = store.writer("gone/blob")
    for chunk in pieces(payload(PART_SIZE + 5000), 512 * 1024):
        await writer.write(chunk)
    await writer.abort()
    await writer.abort()
    assert not await store.exists("gone/blob")
    assert await store.list_prefix("") == []
    assert await backend.leftovers(store) == 0
    with pytest.raises(BlobError):
        await writer.write(b"x")


async def test_abort_before_any_write(store: BlobStore, backend: Backend) -> None:
    writer = store.writer("never/written")
    await writer.abort()
    assert not await store.exists("never/written")
    assert await backend.leftovers(store) == 0


async def test_put_aborts_when_the_source_fails(store: BlobStore, backend: Backend) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield payload(PART_SIZE)
        yield b"tail"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await store.put("broken", broken())
    assert not await store.exists("broken")
    assert await backend.leftovers(store) == 0


async def test_delete_is_idempotent(store: BlobStore) -> None:
    await store.put("d/blob", aiter_of([b"x"]))
    await store.delete("d/blob")
    assert not await store.exists("d/blob")
    await store.delete("d/blob")
    await store.delete("never/existed")


async def test_list_and_delete_prefix(store: BlobStore) -> None:
    for key in ["a/b/1", "a/b/2", "a/bc/3", "z/1", "a/b/deep/4"]:
        await store.put(key, aiter_of([key.encode()]))
    assert await store.list_prefix("") == ["a/b/1", "a/b/2", "a/b/deep/4", "a/bc/3", "z/1"]
    # Prefixes match whole segments: "a/b" does not cover "a/bc".
    assert await store.list_prefix("a/b") == ["a/b/1", "a/b/2", "a/b/deep/4"]
    assert await store.list_prefix("a/b/") == ["a/b/1", "a/b/2", "a/b/deep/4"]
    assert await store.list_prefix("nothing/here") == []
    assert await store.delete_prefix("a/b/") == 3
    assert await store.list_prefix("") == ["a/bc/3", "z/1"]
    assert await store.delete_prefix("a/b") == 0
    assert await read(store, "a/bc/3") == b"a/bc/3"
    # A deleted prefix can be written again (the local backend pruned its directories).
    await store.put("a/b/1", aiter_of([b"again"]))
    assert await read(store, "a/b/1") == b"again"


async def test_write_is_retry_safe(backend: Backend) -> None:
    store, faults = backend.open_faulty()
    async with store:
        data = payload(2 * PART_SIZE + 99_999, seed=7)
        writer = store.writer("retry/write")
        for i, chunk in enumerate(pieces(data, MiB)):
            if i == 6:
                faults.arm_write()
            try:
                await writer.write(chunk)
            except BlobError:
                await writer.write(chunk)
        assert faults.fired == 1
        assert writer.bytes_written == len(data)
        await writer.commit()
        assert await store.size("retry/write") == len(data)
        assert await read(store, "retry/write") == data


async def test_commit_is_retry_safe(backend: Backend) -> None:
    store, faults = backend.open_faulty()
    async with store:
        data = payload(PART_SIZE + 4321, seed=8)
        writer = store.writer("retry/commit")
        for chunk in pieces(data, MiB):
            await writer.write(chunk)
        faults.arm_commit()
        with pytest.raises(BlobError):
            await writer.commit()
        assert faults.fired == 1
        await writer.commit()
        assert writer.bytes_written == len(data)
        assert await read(store, "retry/commit") == data
        assert await backend.leftovers(store) == 0


def odd_batches(data: bytes, seed: int) -> list[list[bytes]]:
    """``data`` cut into pieces of 1 byte to 700 kB, grouped 1 to 8 at a time."""
    rng = random.Random(seed)
    cut: list[bytes] = []
    at = 0
    while at < len(data):
        size = rng.choice([1, 100, 4096, 65_535, 65_536, 300_001, 700_000])
        cut.append(data[at : at + size])
        at += size
    batches: list[list[bytes]] = []
    while cut:
        take = rng.randint(1, 8)
        batches.append(cut[:take])
        cut = cut[take:]
    return batches


async def write_batch(writer: BlobWriter, batch: list[bytes]) -> None:
    # The memory backend's faulty store wraps writers in a plain BlobWriter.
    if isinstance(writer, PieceBlobWriter):
        await writer.write_pieces(batch)
    else:
        await writer.write(b"".join(batch))


async def test_write_pieces_is_a_write_of_the_joined_pieces(store: BlobStore) -> None:
    data = payload(2 * PART_SIZE + 77_777, seed=9)
    writer = store.writer("pieces/blob")
    assert isinstance(writer, PieceBlobWriter)
    await writer.write_pieces([])
    await writer.write_pieces([b"", b""])
    for batch in odd_batches(data, seed=9):
        await writer.write_pieces(batch)
    assert writer.bytes_written == len(data)
    await writer.commit()
    assert await read(store, "pieces/blob") == data


async def test_write_pieces_is_retry_safe(backend: Backend) -> None:
    store, faults = backend.open_faulty()
    async with store:
        data = payload(2 * PART_SIZE + 4_444, seed=10)
        writer = store.writer("retry/pieces")
        big = odd_batches(data, seed=10)
        for i, batch in enumerate(big):
            if i == len(big) // 2:
                faults.arm_write()
            try:
                await write_batch(writer, batch)
            except BlobError:
                await write_batch(writer, batch)
        assert faults.fired == 1
        assert writer.bytes_written == len(data)
        await writer.commit()
        assert await read(store, "retry/pieces") == data
        assert await backend.leftovers(store) == 0


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "trailing/",
        "a//b",
        "../up",
        "a/../b",
        "./a",
        "a/./b",
        "back\\slash",
        "sp ace",
        "nul\x00",
        "pct%20",
        "ünïcode",
        ".staging/x",
        "x" * 256,
        "x/" * 512 + "x",
    ],
)
async def test_invalid_keys_are_rejected(store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.writer(key)
    with pytest.raises(ValueError):
        await store.size(key)
    with pytest.raises(ValueError):
        await store.open(key)
    with pytest.raises(ValueError):
        await store.delete(key)
    with pytest.raises(ValueError):
        await store.put(key, aiter_of([b"x"]))


async def test_valid_unusual_keys(store: BlobStore) -> None:
    long_key = "/".join(["y" * 99] * 10)  # 999 characters
    keys = ["A-Z_a.z~0", "x/.hidden/y", "deep/" * 20 + "leaf", "x" * 255, long_key]
    for key in keys:
        await store.put(key, aiter_of([key.encode()]))
        assert await read(store, key) == key.encode()
    assert await store.list_prefix("") == sorted(keys)


async def test_presigned_url(store: BlobStore, backend: Backend) -> None:
    await store.put("signed/blob", aiter_of([b"presigned content"]))
    url = await store.presigned_url("signed/blob", 60)
    if backend.name != "s3":
        assert url is None
        return
    assert url is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == b"presigned content"


async def test_local_path(store: BlobStore, backend: Backend) -> None:
    await store.put("on/disk", aiter_of([b"bytes on disk"]))
    path = store.local_path("on/disk")
    if backend.name != "file":
        assert path is None
        return
    assert path is not None
    assert path.read_bytes() == b"bytes on disk"


async def test_ping_and_url(store: BlobStore, backend: Backend) -> None:
    await store.ping()
    assert store.url.split(":", 1)[0] == backend.name
    assert "secret" not in store.url


async def test_sweep_staging(store: BlobStore, backend: Backend) -> None:
    fresh = store.writer("in/progress")
    await fresh.write(payload(PART_SIZE + 1))
    # ~30 years: nothing is that old, not even moto's fixed 2010 upload dates.
    assert await store.sweep_staging(1e9) == 0
    await fresh.commit()

    abandoned = store.writer("crashed/writer")
    await abandoned.write(payload(PART_SIZE + 1, seed=3))
    await backend.age_staging(store)
    removed = await store.sweep_staging(3600)
    assert removed == (0 if backend.name == "memory" else 1)
    assert await backend.leftovers(store) == 0
    assert await store.list_prefix("") == ["in/progress"]
    assert await store.size("in/progress") == PART_SIZE + 1
