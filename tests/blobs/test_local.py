"""What only the file:// backend has: URL path rules, the staging directory, flat memory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from pooldrop.blobs import BlobError, open_blob_store
from pooldrop.blobs.local import LocalBlobStore, open_staging_file

MiB = 1024 * 1024


def local(url: str) -> LocalBlobStore:
    store = open_blob_store(url)
    assert isinstance(store, LocalBlobStore)
    return store


def test_absolute_url(tmp_path: Path) -> None:
    store = local(f"file://{tmp_path}/blobs")
    assert store.root == tmp_path / "blobs"
    assert store.url == f"file://{tmp_path}/blobs"
    assert store.fsync


@pytest.mark.parametrize("url", ["file://./data/blobs", "file://data/blobs", "file:data/blobs"])
def test_relative_urls_resolve_against_the_working_directory(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert local(url).root.resolve() == tmp_path / "data" / "blobs"


def test_url_path_is_percent_decoded_and_takes_options(tmp_path: Path) -> None:
    store = local(f"file://{tmp_path}/with%20space?fsync=0")
    assert store.root == tmp_path / "with space"
    assert not store.fsync


@pytest.mark.parametrize("url", ["file://", "file:", "file://?fsync=1"])
def test_url_without_a_path_is_an_error(url: str) -> None:
    with pytest.raises(ValueError, match="needs a directory"):
        open_blob_store(url)


def test_bad_option_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        open_blob_store(f"file://{tmp_path}?fsync=maybe")


async def test_root_is_created_lazily(tmp_path: Path) -> None:
    store = local(f"file://{tmp_path}/not/yet")
    store.writer("k")
    assert not (tmp_path / "not").exists()
    await store.ping()
    assert (tmp_path / "not" / "yet" / ".staging").is_dir()
    assert list((tmp_path / "not" / "yet" / ".staging").iterdir()) == []


async def test_ping_fails_on_an_unusable_root(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"in the way")
    store = local(f"file://{tmp_path}/a-file/blobs")
    with pytest.raises(BlobError, match="blob storage at"):
        await store.ping()


async def test_uncommitted_bytes_never_appear_under_the_key(tmp_path: Path) -> None:
    # A writer that stops before commit (the process died) leaves only a staging file.
    store = LocalBlobStore(tmp_path)
    writer = store.writer("pools/p/u")
    await writer.write(os.urandom(MiB))
    assert not (tmp_path / "pools").exists()
    staged = list((tmp_path / ".staging").iterdir())
    assert len(staged) == 1 and staged[0].stat().st_size == MiB
    assert await LocalBlobStore(tmp_path).list_prefix("") == []
    await writer.abort()
    assert list((tmp_path / ".staging").iterdir()) == []


async def test_committed_file_is_where_local_path_says(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    writer = store.writer("pools/p/u")
    await writer.write(b"content")
    await writer.commit()
    assert store.local_path("pools/p/u") == tmp_path / "pools" / "p" / "u"
    assert (tmp_path / "pools" / "p" / "u").read_bytes() == b"content"


async def test_delete_prunes_emptied_directories(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    for key in ["pools/p1/a/1", "pools/p1/a/2", "pools/p2/b/1"]:
        await store.put(key, _chunks([b"x"]))
    await store.delete("pools/p2/b/1")
    assert not (tmp_path / "pools" / "p2").exists()
    assert await store.delete_prefix("pools/p1") == 2
    assert not (tmp_path / "pools").exists()
    assert await asyncio.to_thread(tmp_path.is_dir)  # pruning stops at the root


async def test_a_key_cannot_also_be_a_directory(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("a/b", _chunks([b"file"]))
    with pytest.raises(BlobError):
        await store.put("a/b/c", _chunks([b"under a file"]))
    assert list((tmp_path / ".staging").iterdir()) == []
    assert await store.list_prefix("") == ["a/b"]


async def test_small_writes_are_batched_into_few_thread_hops(tmp_path: Path) -> None:
    hops: list[int] = []  # one seek per trip to the worker thread
    writes: list[int] = []

    class Counting:
        def __init__(self, inner: BinaryIO) -> None:
            self.inner = inner

        def seek(self, offset: int) -> int:
            hops.append(offset)
            return self.inner.seek(offset)

        def write(self, data: bytes) -> int:
            writes.append(len(data))
            return self.inner.write(data)

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    def opener(path: Path) -> BinaryIO:
        return cast(BinaryIO, Counting(open_staging_file(path)))

    store = LocalBlobStore(tmp_path, opener=opener)
    writer = store.writer("many/small")
    for _ in range(1024):
        await writer.write(b"x" * 1024)
    await writer.commit()
    assert await store.size("many/small") == MiB
    # 1 MiB in 1 KiB writes: four 256 KiB batches, plus the commit's (empty) flush.
    assert hops == [0, 256 * 1024, 512 * 1024, 768 * 1024, MiB]
    assert sum(writes) == MiB and len(writes) <= 8


async def test_sweep_removes_only_old_staging_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    old, fresh = store.writer("old"), store.writer("fresh")
    await old.write(os.urandom(300 * 1024))
    await fresh.write(os.urandom(300 * 1024))
    (old_file,) = [p for p in (tmp_path / ".staging").iterdir() if p == old._staging]
    past = time.time() - 7200
    os.utime(old_file, (past, past))
    assert await store.sweep_staging(3600) == 1
    assert [p.name for p in (tmp_path / ".staging").iterdir()] == [fresh._staging.name]
    await fresh.commit()
    assert await store.size("fresh") == 300 * 1024
    with pytest.raises(BlobError, match="vanished"):
        await old.commit()
    assert await LocalBlobStore(tmp_path / "none").sweep_staging(1) == 0


async def test_fifty_mib_put_keeps_memory_flat(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    digest = hashlib.sha256()

    async def generate() -> AsyncIterator[bytes]:
        for i in range(200):  # 200 x 256 KiB = 50 MiB, each chunk different
            chunk = i.to_bytes(4, "big") * (64 * 1024)
            digest.update(chunk)
            yield chunk

    tracemalloc.start()
    try:
        size = await store.put("big/blob", generate())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 50 * MiB
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    read_back = hashlib.sha256()
    async for chunk in await store.open("big/blob", chunk_size=MiB):
        read_back.update(chunk)
    assert read_back.hexdigest() == digest.hexdigest()


async def _chunks(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item
