"""The durable local outbox: files waiting to be sent, in a directory plus a SQLite table.

``add`` copies the file into ``<dir>/files/`` (fsync'd, then renamed into place, then the directory
fsync'd) and only then commits its row, in WAL mode with ``synchronous=FULL``: once ``add`` returns,
a crash or power cut cannot lose the file or its ``client_upload_id``. A crash between the copy and
the commit leaves a file with no row, swept later; never a row without its file.

An entry is ``pending`` until the server answers for it: ``delivered`` (its copy is deleted) or
``rejected`` with the server's reason. Several processes may share one outbox; SQLite serialises
their writes, and if two flushers race on an entry the server's ``client_upload_id`` keeps one copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pooldrop.client._content import CHUNK_SIZE, Content, Timestamp, format_ts, new_client_upload_id

PENDING, DELIVERED, REJECTED = "pending", "delivered", "rejected"
ORPHAN_AGE = 3600.0
"""A copied file with no row for this long was left by a crash mid-``add`` and is removed."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    client_upload_id TEXT NOT NULL UNIQUE,
    pool_id          TEXT NOT NULL,
    name             TEXT NOT NULL,
    ts               TEXT NOT NULL,
    metadata         TEXT,
    file             TEXT NOT NULL,
    size             INTEGER NOT NULL,
    sha256           TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL DEFAULT 0,
    error_code       TEXT,
    error            TEXT,
    upload_id        TEXT,
    created_at       REAL NOT NULL,
    finished_at      REAL
);
CREATE INDEX IF NOT EXISTS entries_due ON entries (state, next_attempt_at, id);
"""


@dataclass(frozen=True)
class OutboxEntry:
    """One file in the outbox and what became of it."""

    id: int
    client_upload_id: str
    pool_id: str
    name: str
    ts: str
    metadata: dict[str, Any] | None
    path: Path
    size: int
    sha256: str
    state: str
    attempts: int
    next_attempt_at: float
    error_code: str | None
    error: str | None
    upload_id: str | None
    created_at: float
    finished_at: float | None


class Outbox:
    """The SQLite-backed store behind :class:`Uploader` (usable on its own)."""

    def __init__(self, directory: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self.files = self.directory / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._db_path = self.directory / "outbox.sqlite3"
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: safe across threads and processes, cheap for SQLite.
        db = sqlite3.connect(self._db_path, timeout=30, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- adding ---------------------------------------------------------------------------

    def add(
        self,
        content: Content,
        *,
        pool_id: str,
        ts: Timestamp | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        client_upload_id: str | None = None,
    ) -> OutboxEntry:
        """Copy ``content`` in and record it; durable when this returns.

        ``ts`` defaults to now (the time the file was produced, not the time it is sent).
        Adding the same ``client_upload_id`` twice with the same bytes returns the first entry.
        """
        ts_text = format_ts(ts)
        cuid = client_upload_id or new_client_upload_id()
        if name is None:
            name = _default_name(content)
        meta_json = None if metadata is None else json.dumps(metadata, separators=(",", ":"))
        file_name = uuid.uuid4().hex
        size, sha256 = self._copy_in(content, self.files / file_name)
        now = self.clock()
        try:
            with self._tx() as db:
                existing = db.execute(
                    "SELECT * FROM entries WHERE client_upload_id = ?", (cuid,)
                ).fetchone()
                if existing is not None:
                    if existing["sha256"] != sha256:
                        raise ValueError(
                            f"client_upload_id {cuid!r} is already in the outbox with other content"
                        )
                    (self.files / file_name).unlink(missing_ok=True)
                    return self._entry(existing)
                cur = db.execute(
                    "INSERT INTO entries (client_upload_id, pool_id, name, ts, metadata, file,"
                    " size, sha256, created_at, next_attempt_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (cuid, pool_id, name, ts_text, meta_json, file_name, size, sha256, now, now),
                )
                row = db.execute("SELECT * FROM entries WHERE id = ?", (cur.lastrowid,)).fetchone()
        except BaseException:
            (self.files / file_name).unlink(missing_ok=True)
            raise
        return self._entry(row)

    def _copy_in(self, content: Content, dest: Path) -> tuple[int, str]:
        tmp = dest.with_suffix(".tmp")
        h = hashlib.sha256()
        size = 0
        with tmp.open("wb") as out:
            for chunk in _read(content):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        return size, h.hexdigest()

    # --- reading --------------------------------------------------------------------------

    def get(self, entry_id: int) -> OutboxEntry:
        with self._connect() as db:
            row = db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise KeyError(entry_id)
        return self._entry(row)

    def entries(self, state: str | None = None) -> list[OutboxEntry]:
        """Entries in order of addition, optionally only those in ``state``."""
        with self._connect() as db:
            if state is None:
                rows = db.execute("SELECT * FROM entries ORDER BY id").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM entries WHERE state = ? ORDER BY id", (state,)
                ).fetchall()
        return [self._entry(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many entries are in each state."""
        with self._connect() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM entries GROUP BY state").fetchall()
        out = {PENDING: 0, DELIVERED: 0, REJECTED: 0}
        out.update({r[0]: r[1] for r in rows})
        return out

    def due(self, *, limit: int, max_bytes: int) -> list[OutboxEntry]:
        """Pending entries whose backoff has passed, oldest first, for one pool, within limits.

        The first entry is always included, however large, so a big file is never stuck.
        """
        when = self.clock()
        with self._connect() as db:
            first = db.execute(
                "SELECT pool_id FROM entries WHERE state = 'pending' AND next_attempt_at <= ?"
                " ORDER BY id LIMIT 1",
                (when,),
            ).fetchone()
            if first is None:
                return []
            rows = db.execute(
                "SELECT * FROM entries WHERE state = 'pending' AND next_attempt_at <= ?"
                " AND pool_id = ? ORDER BY id LIMIT ?",
                (when, first[0], limit),
            ).fetchall()
        out: list[OutboxEntry] = []
        total = 0
        for r in rows:
            if out and total + r["size"] > max_bytes:
                break
            out.append(self._entry(r))
            total += r["size"]
        return out

    def next_due(self) -> float | None:
        """When the earliest pending entry may be tried, or ``None`` if nothing is pending."""
        with self._connect() as db:
            row = db.execute(
                "SELECT MIN(next_attempt_at) FROM entries WHERE state = 'pending'"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    # --- outcomes -------------------------------------------------------------------------

    def mark_delivered(self, entry: OutboxEntry, upload_id: str | None) -> None:
        """The server holds it: record the upload and delete the local copy."""
        with self._tx() as db:
            db.execute(
                "UPDATE entries SET state = 'delivered', upload_id = ?, finished_at = ?,"
                " error_code = NULL, error = NULL WHERE id = ?",
                (upload_id, self.clock(), entry.id),
            )
        # Deleted after the commit: a crash in between leaves an orphan copy, swept later.
        entry.path.unlink(missing_ok=True)

    def mark_rejected(self, entry: OutboxEntry, code: str, detail: str) -> None:
        """The server refused it for good; keep the copy so the user can look at it."""
        with self._tx() as db:
            db.execute(
                "UPDATE entries SET state = 'rejected', error_code = ?, error = ?,"
                " finished_at = ? WHERE id = ? AND state = 'pending'",
                (code, detail, self.clock(), entry.id),
            )

    def mark_retry(
        self, entries: Sequence[OutboxEntry], error: str, delay: Callable[[int], float]
    ) -> None:
        """Try these again later: ``delay(attempts)`` seconds from now."""
        now = self.clock()
        with self._tx() as db:
            for e in entries:
                attempts = e.attempts + 1
                db.execute(
                    "UPDATE entries SET attempts = ?, next_attempt_at = ?, error = ?"
                    " WHERE id = ? AND state = 'pending'",
                    (attempts, now + delay(attempts), error, e.id),
                )

    def make_due(self) -> int:
        """End the backoff of every pending entry (a person asked to send now)."""
        with self._tx() as db:
            return db.execute(
                "UPDATE entries SET next_attempt_at = ? WHERE state = 'pending'", (self.clock(),)
            ).rowcount

    def requeue(self, entry_ids: Sequence[int] | None = None) -> int:
        """Put rejected entries (all, or these) back in the queue; returns how many."""
        with self._tx() as db:
            sql = (
                "UPDATE entries SET state = 'pending', attempts = 0, next_attempt_at = 0,"
                " error_code = NULL, error = NULL, finished_at = NULL WHERE state = 'rejected'"
            )
            if entry_ids is None:
                return db.execute(sql).rowcount
            marks = ",".join("?" * len(entry_ids))
            return db.execute(f"{sql} AND id IN ({marks})", list(entry_ids)).rowcount

    def purge(self, *, older_than: float) -> int:
        """Forget delivered entries finished more than ``older_than`` seconds ago."""
        with self._tx() as db:
            return db.execute(
                "DELETE FROM entries WHERE state = 'delivered' AND finished_at < ?",
                (self.clock() - older_than,),
            ).rowcount

    def sweep_orphans(self, *, min_age: float = ORPHAN_AGE) -> int:
        """Remove copies no row refers to (left by a crash), if older than ``min_age``."""
        with self._connect() as db:
            known = {
                r[0] for r in db.execute("SELECT file FROM entries WHERE state != 'delivered'")
            }
        removed = 0
        cutoff = time.time() - min_age
        for p in self.files.iterdir():
            stem = p.name.removesuffix(".tmp")
            if stem not in known and p.stat().st_mtime < cutoff:
                p.unlink(missing_ok=True)
                removed += 1
        return removed

    def _entry(self, row: sqlite3.Row) -> OutboxEntry:
        return OutboxEntry(
            id=row["id"],
            client_upload_id=row["client_upload_id"],
            pool_id=row["pool_id"],
            name=row["name"],
            ts=row["ts"],
            metadata=None if row["metadata"] is None else json.loads(row["metadata"]),
            path=self.files / row["file"],
            size=row["size"],
            sha256=row["sha256"],
            state=row["state"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            error_code=row["error_code"],
            error=row["error"],
            upload_id=row["upload_id"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
        )


def _default_name(content: Content) -> str:
    if isinstance(content, str | os.PathLike):
        return Path(content).name
    file_name = getattr(content, "name", None)
    if isinstance(file_name, str) and file_name:
        return Path(file_name).name
    return "upload.bin"


def _read(content: Content) -> Iterator[bytes]:
    if isinstance(content, bytes | bytearray | memoryview):
        view = memoryview(bytes(content))
        for pos in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[pos : pos + CHUNK_SIZE])
        return
    if isinstance(content, str | os.PathLike):
        with Path(content).open("rb") as f:
            yield from _read_file(f)
        return
    yield from _read_file(content)


def _read_file(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_SIZE):
        yield chunk


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
