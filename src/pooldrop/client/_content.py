"""Upload bodies: a path, bytes or a file object, turned into a restartable, pre-hashed source.

The API wants the digest in a header (``Content-Digest``), which goes out before the body, so a
file is hashed in one streaming pass and then streamed again when sent; nothing is held whole in
memory. A non-seekable stream is spooled to a temporary file while it is hashed. Because the body
can be replayed from the start, a retry sends exactly the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

CHUNK_SIZE = 256 * 1024

Content = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
"""What upload calls accept: a path, the bytes themselves, or a binary file object."""

Timestamp = datetime | float | int | str
"""Event time: an aware ``datetime`` (naive means local time), Unix seconds, or RFC 3339 text."""


def new_client_upload_id() -> str:
    """A fresh id that makes retries of one upload safe (the server answers replays once)."""
    return str(uuid.uuid4())


def format_ts(ts: Timestamp | None) -> str:
    """``ts`` as the API reads it; ``None`` means now."""
    if ts is None:
        ts = datetime.now(UTC)
    if isinstance(ts, datetime):
        return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(ts, bool):
        raise TypeError("ts must be a datetime, Unix seconds or an RFC 3339 string")
    if isinstance(ts, int | float):
        return repr(float(ts))
    return ts


def content_digest(sha256: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` value for a sha-256 digest."""
    return f"sha-256=:{base64.b64encode(sha256).decode()}:"


class Source:
    """A body of known size and sha256 that can be streamed more than once."""

    def __init__(
        self,
        *,
        name: str,
        size: int,
        sha256: bytes,
        path: Path | None = None,
        data: bytes | None = None,
        temporary: bool = False,
    ) -> None:
        self.name = name
        self.size = size
        self.sha256 = sha256
        self._path = path
        self._data = data
        self._temporary = temporary

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()

    @property
    def digest_header(self) -> str:
        return content_digest(self.sha256)

    @property
    def path(self) -> Path | None:
        """The file on disk behind this source, if there is one."""
        return self._path

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, end)`` (default: to the end), a chunk at a time."""
        end = self.size if end is None else min(end, self.size)
        if self._data is not None:
            view = memoryview(self._data)
            for pos in range(start, end, CHUNK_SIZE):
                yield bytes(view[pos : min(pos + CHUNK_SIZE, end)])
            return
        assert self._path is not None
        with self._path.open("rb") as f:
            f.seek(start)
            left = end - start
            while left > 0 and (chunk := f.read(min(CHUNK_SIZE, left))):
                left -= len(chunk)
                yield chunk

    async def achunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """As :meth:`chunks`, reading the disk in a worker thread so the loop never blocks."""
        if self._data is not None:
            for chunk in self.chunks(start, end):
                yield chunk
            return
        assert self._path is not None
        end = self.size if end is None else min(end, self.size)
        f = await anyio.to_thread.run_sync(self._path.open, "rb")
        try:
            await anyio.to_thread.run_sync(f.seek, start)
            left = end - start
            while left > 0 and (
                chunk := await anyio.to_thread.run_sync(f.read, min(CHUNK_SIZE, left))
            ):
                left -= len(chunk)
                yield chunk
        finally:
            f.close()

    def close(self) -> None:
        """Remove the spool file of a non-seekable input."""
        if self._temporary and self._path is not None:
            self._path.unlink(missing_ok=True)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def counting(chunks: Iterator[bytes], progress: Callable[[int], None] | None) -> Iterator[bytes]:
    """``chunks``, reporting each one's size to ``progress`` as it is sent."""
    for chunk in chunks:
        if progress is not None:
            progress(len(chunk))
        yield chunk


async def acounting(
    chunks: AsyncIterator[bytes], progress: Callable[[int], None] | None
) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if progress is not None:
            progress(len(chunk))
        yield chunk


def hash_file(path: Path) -> tuple[int, bytes]:
    """Size and sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
            size += len(chunk)
    return size, h.digest()


def open_source(
    content: Content, *, name: str | None = None, sha256_hex: str | None = None
) -> Source:
    """Prepare ``content`` for upload. Close the result when done (it may own a spool file).

    ``sha256_hex``, when the caller already knows it for a path, spares the hashing read.
    """
    if isinstance(content, bytes | bytearray | memoryview):
        data = bytes(content)
        return Source(
            name=name or "upload.bin",
            size=len(data),
            sha256=hashlib.sha256(data).digest(),
            data=data,
        )
    if isinstance(content, str | os.PathLike):
        path = Path(content)
        if sha256_hex is not None:
            return Source(
                name=name or path.name,
                size=path.stat().st_size,
                sha256=bytes.fromhex(sha256_hex),
                path=path,
            )
        size, digest = hash_file(path)
        return Source(name=name or path.name, size=size, sha256=digest, path=path)
    return _spool(content, name)


def _spool(f: BinaryIO, name: str | None) -> Source:
    default_name = Path(str(getattr(f, "name", "") or "upload.bin")).name
    # A named, seekable file on disk is read in place; anything else is copied once while hashed.
    file_name = getattr(f, "name", None)
    if isinstance(file_name, str) and os.path.isfile(file_name) and _at_start(f):
        path = Path(file_name)
        size, digest = hash_file(path)
        return Source(name=name or path.name, size=size, sha256=digest, path=path)
    h = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(prefix="pooldrop-spool-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := f.read(CHUNK_SIZE):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return Source(
        name=name or default_name,
        size=size,
        sha256=h.digest(),
        path=Path(tmp),
        temporary=True,
    )


def _at_start(f: BinaryIO) -> bool:
    try:
        return f.seekable() and f.tell() == 0
    except (OSError, io.UnsupportedOperation):
        return False
