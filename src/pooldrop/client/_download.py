"""Downloads to a path that resume with ``Range`` and end verified against a known sha256.

Bytes go to ``<dest>.part``; an interrupted download continues from the part's length (guarded by
``If-Range`` on the ETag, so a changed file restarts from zero); the finished part is checked
against the expected digest and only then renamed over ``dest``. A mismatch deletes the part and
raises :class:`IntegrityError`, so a wrong file is never left under the final name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import httpx

from pooldrop.client._content import CHUNK_SIZE
from pooldrop.client._errors import IntegrityError, TransportError, from_response

Progress = Callable[[int], None]
"""Called with the number of bytes just received (also for bytes already on disk at resume)."""


class Download:
    """The state of one resumable, verified download (no I/O of its own beyond the disk)."""

    def __init__(self, dest: Path, sha256: str | None, progress: Progress | None = None) -> None:
        self.dest = dest
        self.part = dest.with_name(dest.name + ".part")
        self.sha256 = sha256.lower() if sha256 else None
        self.progress = progress
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()

    def already_done(self) -> bool:
        """``dest`` exists with the expected digest (a repeated download is a no-op)."""
        if self.sha256 is None or not self.dest.is_file():
            return False
        return _file_sha256(self.dest) == self.sha256

    def request_headers(self) -> dict[str, str]:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        offset = self.part.stat().st_size if self.part.exists() else 0
        if offset and self.sha256:
            return {"Range": f"bytes={offset}-", "If-Range": f'"{self.sha256}"'}
        return {}

    def begin(self, response: httpx.Response) -> bool:
        """Open the part file for this answer; ``False`` when the part is already complete."""
        if response.status_code == 416:
            # The part already holds every byte (or is junk longer than the file): finish or redo.
            if self.sha256 and self.part.exists() and _file_sha256(self.part) == self.sha256:
                self._hash = _hasher_of(self.part)
                return False
            self.part.unlink(missing_ok=True)
            raise TransportError("download range refused; restarting from zero")
        if response.status_code == 206 and _range_start(response) == self._part_size():
            self._hash = _hasher_of(self.part)
            if self.progress:
                self.progress(self._part_size())
            self._file = self.part.open("ab")
            return True
        if response.status_code == 200:
            self._hash = hashlib.sha256()
            self._file = self.part.open("wb")
            return True
        if response.status_code == 206:
            self.part.unlink(missing_ok=True)
            raise TransportError("server answered an unexpected range; restarting from zero")
        raise from_response(response)

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)
        self._hash.update(chunk)
        if self.progress:
            self.progress(len(chunk))

    def finish(self) -> Path:
        """Check the digest, then move the part into place durably."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        got = self._hash.hexdigest()
        if self.sha256 is not None and got != self.sha256:
            self.part.unlink(missing_ok=True)
            raise IntegrityError(
                f"{self.dest.name}: sha256 {got} does not match the expected {self.sha256}"
            )
        os.replace(self.part, self.dest)
        return self.dest

    def abort(self) -> None:
        """Close the part after a broken transfer, keeping its bytes for the next attempt."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _part_size(self) -> int:
        return self.part.stat().st_size if self.part.exists() else 0


def _range_start(response: httpx.Response) -> int | None:
    value = response.headers.get("content-range", "")
    unit, _, spec = value.partition(" ")
    if unit.strip() != "bytes" or "-" not in spec:
        return None
    try:
        return int(spec.split("-", 1)[0])
    except ValueError:
        return None


def _hasher_of(path: Path) -> hashlib._Hash:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
    return h


def _file_sha256(path: Path) -> str:
    return _hasher_of(path).hexdigest()
