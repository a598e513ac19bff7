"""Blob storage in a directory of the local (or a mounted) filesystem.

URL: ``file://<path>[?fsync=1]``. Everything between ``file://`` (or plain ``file:``) and ``?`` is
the root directory, percent-decoded. A path starting with ``/`` is absolute
(``file:///var/lib/pooldrop/blobs``); any other is relative to the working directory when the
store is opened (``file://./pooldrop-data/blobs``, ``file://pooldrop-data/blobs`` and
``file:pooldrop-data/blobs`` are the same place). There is no host part: this is not RFC 8089's
``file://host/path``, since pooldrop never reads another host's disk. The root is created on the
first write or ``ping``.

Options:
    fsync  ``1`` (default) fsyncs each blob and its directory on commit; ``0`` skips that, for
           throwaway data only (a power cut may then lose committed blobs).

Layout: a committed blob lives at ``<root>/<key>``; a writer streams into a uniquely named
``<root>/.staging/<random>.tmp`` and ``commit`` fsyncs it, renames it into place with
``os.replace`` (atomic on POSIX) and fsyncs the directory, so a crash never leaves a partial file
under a committed name. ``sweep_staging`` removes staging files that crashed writers left.
Because keys are paths, a key cannot also be a prefix of another key here (``a/b`` and
``a/b/c``); writing the second fails with ``BlobError``.

Blocking file I/O runs in worker threads (``asyncio.to_thread``), one hop per 256 KiB or more of
writes and one per read chunk, never on the event loop. A write given as pieces
(``write_pieces``) goes out without joining them first, except runs of small ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar
from urllib.parse import unquote

from pooldrop.blobs._url import parse_bool, query_options
from pooldrop.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    RESERVED_TOP_SEGMENT,
    BlobError,
    BlobNotFound,
    BlobStore,
    check_range,
    validate_key,
    validate_prefix,
)

P = ParamSpec("P")
T = TypeVar("T")

# Small writes are gathered up to this size so that a stream of tiny chunks costs one thread hop
# per 256 KiB, not one per chunk.
FLUSH_AT = 256 * 1024
# Pieces smaller than this are joined before they are written: one syscall for a run of them.
SMALL_PIECE = 64 * 1024

Opener = Callable[[Path], BinaryIO]


def open_staging_file(path: Path) -> BinaryIO:
    """Create a new staging file; unbuffered, since the writer batches writes itself."""
    return open(path, "xb", buffering=0)


def _write_all(f: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = f.write(view)
        if not written:
            raise OSError("short write to staging file")
        view = view[written:]


def _coalesce(pieces: Sequence[bytes]) -> list[bytes]:
    """The pieces with every run of small ones joined into one."""
    out: list[bytes] = []
    run: list[bytes] = []
    for piece in pieces:
        if len(piece) < SMALL_PIECE:
            run.append(piece)
            continue
        if run:
            out.append(b"".join(run))
            run = []
        out.append(piece)
    if run:
        out.append(b"".join(run))
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _in_thread(what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except OSError as exc:
        raise BlobError(f"{what}: {exc}") from exc


class LocalBlobWriter:
    """Streams into ``.staging/<random>.tmp``.

    The event-loop side keeps the truth about what is written (``_file_len``, ``_pending``); the
    thread side only ever writes "these bytes at this offset, then cut the file there". That makes
    a retried write, or one whose task was cancelled while its thread finished, idempotent.
    """

    def __init__(self, store: LocalBlobStore, key: str) -> None:
        self.key = key
        self.bytes_written = 0
        self._store = store
        self._staging = store.staging_dir / f"{uuid.uuid4().hex}.tmp"
        self._file: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._file_len = 0
        self._state = "open"
        # Serialises thread-side work: a cancelled write's thread may still be running when the
        # next call (often ``abort``) starts.
        self._lock = threading.Lock()
        self._synced = False
        self._replaced = False

    def _check_open(self) -> None:
        if self._state != "open":
            raise BlobError(f"writer for {self.key!r} is {self._state}")

    async def write(self, data: bytes) -> None:
        await self.write_pieces((data,))

    async def write_pieces(self, pieces: Sequence[bytes]) -> None:
        self._check_open()
        size = sum(map(len, pieces))
        if not size:
            return
        if self._pending_len + size < FLUSH_AT:
            self._pending.extend(bytes(piece) for piece in pieces if piece)
            self._pending_len += size
            self.bytes_written += size
            return
        batch = [*self._pending, *pieces]
        await _in_thread(f"writing blob {self.key!r}", self._write_sync, batch, self._file_len)
        self._file_len += self._pending_len + size
        self._pending.clear()
        self._pending_len = 0
        self.bytes_written += size

    async def commit(self) -> None:
        if self._state == "committed":
            return
        self._check_open()
        await _in_thread(
            f"committing blob {self.key!r}", self._commit_sync, list(self._pending), self._file_len
        )
        self._file_len += self._pending_len
        self._pending.clear()
        self._pending_len = 0
        self._state = "committed"

    async def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        self._pending.clear()
        await _in_thread(f"aborting blob {self.key!r}", self._abort_sync)

    def __del__(self) -> None:
        # A writer dropped without commit or abort (its task crashed) must not leak a descriptor;
        # its staging file stays for sweep_staging.
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()

    # -- thread side -----------------------------------------------------------------------------

    def _ensure_file(self) -> BinaryIO:
        if self._file is None:
            try:
                self._file = self._store.opener(self._staging)
            except FileNotFoundError:
                self._store.staging_dir.mkdir(parents=True, exist_ok=True)
                self._file = self._store.opener(self._staging)
        return self._file

    def _write_at(self, pieces: Sequence[bytes], offset: int) -> None:
        f = self._ensure_file()
        f.seek(offset)
        for piece in _coalesce(pieces):
            _write_all(f, piece)
        # Cuts off whatever a failed earlier attempt wrote past this point.
        f.truncate()

    def _write_sync(self, pieces: Sequence[bytes], offset: int) -> None:
        with self._lock:
            self._write_at(pieces, offset)

    def _commit_sync(self, pieces: Sequence[bytes], offset: int) -> None:
        with self._lock:
            if not self._synced:
                self._write_at(pieces, offset)
                f = self._ensure_file()
                if self._store.fsync:
                    os.fsync(f.fileno())
                # Past fsync the bytes are durable: a failing close() must not make a retry
                # rewrite (or recreate) a file that is already complete.
                self._file = None
                self._synced = True
                f.close()
            if not self._replaced:
                self._store._install(self._staging, self._store._path(self.key))
                self._replaced = True

    def _abort_sync(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                finally:
                    self._file = None
            if not self._replaced:
                self._staging.unlink(missing_ok=True)


class LocalBlobStore(BlobStore):
    def __init__(
        self,
        root: Path | str,
        *,
        fsync: bool = True,
        opener: Opener = open_staging_file,
        url: str | None = None,
    ) -> None:
        """``opener`` creates staging files; tests pass one that wraps the file to inject faults."""
        self.root = Path(root).absolute()
        self.staging_dir = self.root / RESERVED_TOP_SEGMENT
        self.fsync = fsync
        self.opener = opener
        self.url = url or self.root.as_uri()

    @classmethod
    def from_url(cls, url: str) -> LocalBlobStore:
        base = url.split("?", 1)[0]
        scheme, _, rest = base.partition(":")
        if scheme.lower() != "file":
            raise ValueError(f"not a file URL: {url!r}")
        path = unquote(rest.removeprefix("//"))
        if not path:
            raise ValueError(
                "file:// needs a directory: file:///absolute/path or file://./relative/path"
            )
        options = query_options(url, {"fsync"})
        return cls(Path(path), fsync=parse_bool("fsync", options.get("fsync", "1")), url=url)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def writer(self, key: str) -> LocalBlobWriter:
        return LocalBlobWriter(self, validate_key(key))

    def local_path(self, key: str) -> Path:
        return self._path(key)

    async def _stat(self, key: str) -> os.stat_result:
        path = self._path(key)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(key) from None
        except OSError as exc:
            raise BlobError(f"stat of blob {key!r}: {exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise BlobNotFound(key)
        return st

    async def open(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        check_range(start, end, chunk_size)
        await self._stat(key)
        path = self._path(key)

        # The file is opened on first iteration, not here, so an iterator that is never consumed
        # holds no descriptor. A blob deleted in between raises BlobNotFound from iteration.
        async def chunks() -> AsyncIterator[bytes]:
            try:
                f = await asyncio.to_thread(open, path, "rb", buffering=0)
            except FileNotFoundError:
                raise BlobNotFound(key) from None
            except OSError as exc:
                raise BlobError(f"opening blob {key!r}: {exc}") from exc
            with f:
                pos = start
                while end is None or pos < end:
                    want = chunk_size if end is None else min(chunk_size, end - pos)
                    data = await _in_thread(
                        f"reading blob {key!r}", os.pread, f.fileno(), want, pos
                    )
                    if not data:
                        return
                    pos += len(data)
                    yield data

        return chunks()

    async def size(self, key: str) -> int:
        return (await self._stat(key)).st_size

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await _in_thread(f"deleting blob {key!r}", self._delete_sync, [path])

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list_prefix(prefix)
        paths = [self._path(k) for k in keys]
        await _in_thread(f"deleting blobs under {prefix!r}", self._delete_sync, paths)
        return len(keys)

    async def list_prefix(self, prefix: str) -> list[str]:
        prefix = validate_prefix(prefix)
        base = self._path(prefix) if prefix else self.root
        return await _in_thread(f"listing blobs under {prefix!r}", self._list_sync, base)

    async def ping(self) -> None:
        await _in_thread(f"blob storage at {self.root}", self._ping_sync)

    async def sweep_staging(self, older_than_seconds: float) -> int:
        """Remove staging files not modified for ``older_than_seconds`` (crashed writers)."""
        return await _in_thread("sweeping blob staging", self._sweep_sync, older_than_seconds)

    # -- thread side -----------------------------------------------------------------------------

    def _list_sync(self, base: Path) -> list[str]:
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            if Path(dirpath) == self.root and RESERVED_TOP_SEGMENT in dirnames:
                dirnames.remove(RESERVED_TOP_SEGMENT)
            for name in filenames:
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                try:
                    keys.append(validate_key(key))
                except ValueError:
                    continue  # a stray file someone else put here is not a blob
        return sorted(keys)

    def _delete_sync(self, paths: Sequence[Path]) -> None:
        parents: set[Path] = set()
        for path in paths:
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            parents.add(path.parent)
        # Prune directories the deletes emptied, deepest first, so millions of deleted uploads do
        # not leave millions of empty directories. A commit racing with this retries its mkdir.
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            self._prune(parent)

    def _prune(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or already gone): stop climbing
            directory = directory.parent

    def _makedirs(self, directory: Path) -> list[Path]:
        missing: list[Path] = []
        probe = directory
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
        return missing

    def _install(self, staging: Path, target: Path) -> None:
        for _ in range(3):
            created = self._makedirs(target.parent)
            try:
                os.replace(staging, target)
            except FileNotFoundError:
                if not staging.exists():
                    raise BlobError(f"staging file {staging.name} vanished before commit") from None
                continue  # a concurrent delete pruned the directory between mkdir and rename
            if self.fsync:
                _fsync_dir(target.parent)
                for path in created:
                    _fsync_dir(path.parent)
            return
        raise BlobError(f"could not create the directory for {target}")

    def _ping_sync(self) -> None:
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        probe = self.staging_dir / f"ping-{uuid.uuid4().hex}.tmp"
        probe.write_bytes(b"ping")
        probe.unlink()

    def _sweep_sync(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        try:
            entries = list(os.scandir(self.staging_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
