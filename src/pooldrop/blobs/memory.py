"""In-process blob storage for unit tests and single-process experiments.

URL: ``memory://`` or ``memory://<any name>``; no options. The name is only a label: every
``open_blob_store("memory://...")`` call returns a new, empty store, and stores share nothing.
To share blobs, share the store object (tests hand the same instance to the app and to asserts).

Semantics match the other backends: a writer's bytes are invisible until ``commit``, which
replaces any previous blob under the key in one step; ``abort`` drops them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from pooldrop.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobError,
    BlobNotFound,
    BlobStore,
    check_range,
    validate_key,
    validate_prefix,
)


class MemoryBlobWriter:
    def __init__(self, store: MemoryBlobStore, key: str) -> None:
        self.key = key
        self.bytes_written = 0
        self._store = store
        self._chunks: list[bytes] = []
        self._state = "open"

    async def write(self, data: bytes) -> None:
        await self.write_pieces((data,))

    async def write_pieces(self, pieces: Sequence[bytes]) -> None:
        if self._state != "open":
            raise BlobError(f"writer for {self.key!r} is {self._state}")
        for piece in pieces:
            if piece:
                self._chunks.append(bytes(piece))
                self.bytes_written += len(piece)

    async def commit(self) -> None:
        if self._state == "committed":
            return
        if self._state != "open":
            raise BlobError(f"writer for {self.key!r} is {self._state}")
        self._store._blobs[self.key] = b"".join(self._chunks)
        self._chunks = []
        self._state = "committed"

    async def abort(self) -> None:
        if self._state == "open":
            self._chunks = []
            self._state = "aborted"


class MemoryBlobStore(BlobStore):
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._blobs: dict[str, bytes] = {}

    @classmethod
    def from_url(cls, url: str) -> MemoryBlobStore:
        if "?" in url:
            raise ValueError("memory:// takes no options")
        return cls(url)

    def writer(self, key: str) -> MemoryBlobWriter:
        return MemoryBlobWriter(self, validate_key(key))

    def _get(self, key: str) -> bytes:
        try:
            return self._blobs[validate_key(key)]
        except KeyError:
            raise BlobNotFound(key) from None

    async def open(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        check_range(start, end, chunk_size)
        blob = self._get(key)
        stop = len(blob) if end is None else min(end, len(blob))

        async def chunks() -> AsyncIterator[bytes]:
            view = memoryview(blob)
            for pos in range(start, stop, chunk_size):
                yield bytes(view[pos : min(pos + chunk_size, stop)])

        return chunks()

    async def size(self, key: str) -> int:
        return len(self._get(key))

    async def delete(self, key: str) -> None:
        self._blobs.pop(validate_key(key), None)

    async def list_prefix(self, prefix: str) -> list[str]:
        prefix = validate_prefix(prefix)
        if not prefix:
            return sorted(self._blobs)
        return sorted(k for k in self._blobs if k.startswith(prefix + "/"))

    async def ping(self) -> None:
        return None
