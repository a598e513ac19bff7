"""Blob backends for the contract suite: every test asking for ``backend`` runs on memory://,
file:// (a temporary directory) and s3:// (a real moto server, one unique prefix per test).

The S3 server fixture only calls ``tests.support.s3server``, so it can move to the top-level
conftest unchanged when other suites need S3.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import httpx
import pytest

from pooldrop.blobs import BlobStore, open_blob_store
from pooldrop.blobs.local import LocalBlobStore, open_staging_file
from pooldrop.blobs.memory import MemoryBlobStore
from pooldrop.blobs.s3 import S3BlobStore
from tests.conftest import S3_BUCKET as BUCKET
from tests.support.failing_blobs import FlakyBlobStore
from tests.support.s3server import s3_url

PART_SIZE = 5 * 1024 * 1024  # S3's smallest part, so a few MiB already make a multipart upload


class Faults(Protocol):
    """Arms one failure of the next physical write or commit step of a store's writers."""

    @property
    def fired(self) -> int: ...

    def arm_write(self) -> None: ...

    def arm_commit(self) -> None: ...


@dataclass
class CountingFaults:
    writes: int = 0
    commits: int = 0
    fired: int = 0

    def arm_write(self) -> None:
        self.writes += 1

    def arm_commit(self) -> None:
        self.commits += 1

    def take_write(self) -> bool:
        if self.writes:
            self.writes -= 1
            self.fired += 1
            return True
        return False

    def take_commit(self) -> bool:
        if self.commits:
            self.commits -= 1
            self.fired += 1
            return True
        return False


class FlakyFaults:
    """Faults for the memory backend, whose writes cannot fail half-way: FlakyBlobStore's."""

    def __init__(self, store: FlakyBlobStore) -> None:
        self._store = store
        self._armed = 0

    @property
    def fired(self) -> int:
        return self._armed - self._store.fail_writes - self._store.fail_commits

    def arm_write(self) -> None:
        self._store.fail_writes += 1
        self._armed += 1

    def arm_commit(self) -> None:
        self._store.fail_commits += 1
        self._armed += 1


class FaultyFile:
    """A staging file whose armed ``write`` stores half the bytes and then fails (a disk error
    mid-write), and whose armed ``fileno`` fails (so the commit's fsync cannot happen)."""

    def __init__(self, inner: BinaryIO, faults: CountingFaults) -> None:
        self._inner = inner
        self._faults = faults

    def write(self, data: bytes) -> int:
        if self._faults.take_write():
            self._inner.write(data[: len(data) // 2])
            raise OSError(errno.EIO, "injected write failure")
        return self._inner.write(data)

    def fileno(self) -> int:
        if self._faults.take_commit():
            raise OSError(errno.EIO, "injected fsync failure")
        return self._inner.fileno()

    def seek(self, offset: int) -> int:
        return self._inner.seek(offset)

    def truncate(self, size: int | None = None) -> int:
        return self._inner.truncate(size)

    def close(self) -> None:
        self._inner.close()


class FaultyTransport(httpx.AsyncBaseTransport):
    """Sends an armed UploadPart or CompleteMultipartUpload to the server, then loses the answer:
    the server did the work but the client sees an error, the hardest case for a retry."""

    def __init__(self, faults: CountingFaults) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._faults = faults

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        response = await self._inner.handle_async_request(request)
        is_part = request.method == "PUT" and "partNumber" in params
        is_complete = request.method == "POST" and "uploadId" in params
        if (is_part and self._faults.take_write()) or (is_complete and self._faults.take_commit()):
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("injected: connection lost before the answer", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Backend:
    name: str
    url: str
    open_faulty: Callable[[], tuple[BlobStore, Faults]]
    leftovers: Callable[[BlobStore], Awaitable[int]]
    """How many uncommitted staging items (files, multipart uploads) the store holds."""
    age_staging: Callable[[BlobStore], Awaitable[None]]
    """Make every staging item look two hours old."""


async def _no_leftovers(store: BlobStore) -> int:
    return 0


async def _nothing_to_age(store: BlobStore) -> None:
    return None


@pytest.fixture(params=["memory", "file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":

        def memory_faulty() -> tuple[BlobStore, Faults]:
            flaky = FlakyBlobStore(MemoryBlobStore())
            return flaky, FlakyFaults(flaky)

        return Backend("memory", "memory://", memory_faulty, _no_leftovers, _nothing_to_age)

    if request.param == "file":
        root = tmp_path / "blobs"

        def file_faulty() -> tuple[BlobStore, Faults]:
            faults = CountingFaults()

            def opener(path: Path) -> BinaryIO:
                return cast(BinaryIO, FaultyFile(open_staging_file(path), faults))

            return LocalBlobStore(root, opener=opener), faults

        async def staging_files(store: BlobStore) -> int:
            staging = root / ".staging"
            return len(list(staging.iterdir())) if staging.exists() else 0

        async def age_files(store: BlobStore) -> None:
            two_hours_ago = time.time() - 7200
            for path in (root / ".staging").iterdir():
                os.utime(path, (two_hours_ago, two_hours_ago))

        return Backend("file", f"file://{root}", file_faulty, staging_files, age_files)

    endpoint: str = request.getfixturevalue("s3_endpoint")
    url = s3_url(endpoint, BUCKET, f"t{uuid.uuid4().hex}", part_size="5MiB", presign="1")

    def s3_faulty() -> tuple[BlobStore, Faults]:
        faults = CountingFaults()
        return S3BlobStore.from_url(url, transport=FaultyTransport(faults)), faults

    async def pending_uploads(store: BlobStore) -> int:
        assert isinstance(store, S3BlobStore)
        return len(await store.api.list_multipart(store.prefix + "/"))

    # Moto reports every multipart upload as initiated on a fixed date in 2010: already old.
    return Backend("s3", url, s3_faulty, pending_uploads, _nothing_to_age)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[BlobStore]:
    async with open_blob_store(backend.url) as blob_store:
        yield blob_store
