"""The local outbox store on its own: durable adds, states, due order, orphans."""

from __future__ import annotations

import io
import os
import sqlite3
from pathlib import Path

import pytest

from pooldrop.client import Outbox


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_add_copies_and_records_before_returning(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    src = tmp_path / "reading.json"
    src.write_text('{"v": [1, 2, 3]}')
    e = box.add(src, pool_id="p1", ts=1767225600.5, metadata={"k": 1})
    src.unlink()  # the outbox holds its own copy
    assert e.path.read_text() == '{"v": [1, 2, 3]}' and e.path.parent == box.files
    assert e.name == "reading.json" and e.ts == "1767225600.5" and e.state == "pending"
    assert e.metadata == {"k": 1} and e.size == 16 and len(e.client_upload_id) == 36
    # Another process opening the database sees the committed row at once.
    with sqlite3.connect(tmp_path / "box" / "outbox.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute("SELECT client_upload_id, state FROM entries").fetchall()
    assert rows == [(e.client_upload_id, "pending")]
    b = box.add(b"raw bytes", pool_id="p1", ts="2026-01-01T00:00:00Z", name="b.bin")
    f = box.add(io.BytesIO(b"from a stream"), pool_id="p1")
    assert b.path.read_bytes() == b"raw bytes" and f.path.read_bytes() == b"from a stream"
    assert f.name == "upload.bin" and f.ts.endswith("Z")
    assert [x.id for x in Outbox(tmp_path / "box").entries()] == [e.id, b.id, f.id]


def test_same_client_upload_id(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    a = box.add(b"same", pool_id="p", client_upload_id="cu-1")
    assert box.add(b"same", pool_id="p", client_upload_id="cu-1") == a
    with pytest.raises(ValueError, match="other content"):
        box.add(b"different", pool_id="p", client_upload_id="cu-1")
    assert len(box.entries()) == 1 and len(list(box.files.iterdir())) == 1


def test_states_backoff_and_due_order(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path, clock=clock)
    entries = [box.add(bytes([i]) * (i + 1), pool_id="p" if i < 4 else "q") for i in range(6)]
    due = box.due(limit=10, max_bytes=10**9)
    assert [e.id for e in due] == [e.id for e in entries[:4]]  # one pool per batch, oldest first
    assert [e.id for e in box.due(limit=2, max_bytes=10**9)] == [e.id for e in entries[:2]]
    assert [e.id for e in box.due(limit=10, max_bytes=3)] == [e.id for e in entries[:2]]
    # The first entry goes even when alone it exceeds the byte limit.
    assert [e.id for e in box.due(limit=10, max_bytes=0)] == [entries[0].id]

    box.mark_retry(entries[:4], "down", lambda attempts: 10.0 * attempts)
    assert box.get(entries[0].id).attempts == 1 and box.get(entries[0].id).error == "down"
    assert [e.pool_id for e in box.due(limit=10, max_bytes=10**9)] == ["q", "q"]
    assert box.next_due() == clock.t
    box.mark_delivered(entries[4], "up-4")
    box.mark_rejected(entries[5], "window_closed", "too late")
    assert not entries[4].path.exists() and entries[5].path.exists()
    assert box.next_due() == clock.t + 10
    clock.t += 10
    assert len(box.due(limit=10, max_bytes=10**9)) == 4
    assert box.counts() == {"pending": 4, "delivered": 1, "rejected": 1}
    rejected = box.get(entries[5].id)
    assert (rejected.error_code, rejected.error) == ("window_closed", "too late")
    # A rejected entry is never due again, until requeued by hand.
    assert entries[5].id not in [e.id for e in box.due(limit=10, max_bytes=10**9)]
    assert box.requeue() == 1 and box.get(entries[5].id).state == "pending"
    clock.t += 8 * 86400
    assert box.purge(older_than=7 * 86400) == 1 and box.counts()["delivered"] == 0


def test_orphan_copies_are_swept(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    kept = box.add(b"keep", pool_id="p")
    orphan = box.files / "0123abcd"
    orphan.write_bytes(b"left by a crash between copy and commit")
    fresh = box.files / "fresh.tmp"
    fresh.write_bytes(b"an add in progress")
    old = os.stat(orphan).st_mtime - 7200
    os.utime(orphan, (old, old))
    assert box.sweep_orphans() == 1
    assert not orphan.exists() and fresh.exists() and kept.path.exists()
