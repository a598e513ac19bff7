"""A listener's loop: download every result a pool publishes, once each, across restarts.

The watcher follows the pool's events and, for each ``result.published``, downloads the result into
a directory (verified against its sha256, resumed with ``Range`` if interrupted). Its cursor is kept
in a small state file, written atomically *after* each download, so a restart resumes exactly
where it stopped: a result downloaded just before a crash is found complete on disk and not
fetched again, and one not yet downloaded is fetched. If the cursor is older than the server's
event retention (410), the watcher catches up from the result list instead of missing results.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from pooldrop.client._client import Client
from pooldrop.client._download import Progress
from pooldrop.client._errors import Gone
from pooldrop.client._events import EventStream
from pooldrop.client._models import Result

RESULT_PUBLISHED = "result.published"


def result_filename(result: Result) -> str:
    """``<result_id>-<name>``: unique per result, and ids sort by time."""
    return f"{result.result_id}-{Path(result.name).name}"


class ResultWatcher:
    """Downloads each result of ``pool_id`` into ``directory``; see the module docstring."""

    def __init__(
        self,
        client: Client,
        pool_id: str,
        directory: str | Path,
        *,
        state_file: str | Path | None = None,
        transport: str = "auto",
        on_result: Callable[[Result, Path], None] | None = None,
        progress: Callable[[Result], Progress | None] | None = None,
    ) -> None:
        self.client = client
        self.pool_id = pool_id
        self.directory = Path(directory)
        self.state_file = (
            Path(state_file) if state_file else self.directory / f".pooldrop-watch-{pool_id}.json"
        )
        self.transport = transport
        self.on_result = on_result
        self.progress = progress
        self._stream_lock = threading.Lock()
        self._stream: EventStream | None = None
        self._stopped = threading.Event()

    @property
    def cursor(self) -> int | None:
        """The last event handled (from the state file)."""
        try:
            value = json.loads(self.state_file.read_text()).get("cursor")
        except FileNotFoundError:
            return None
        return value if isinstance(value, int) else None

    def _save(self, cursor: int) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".watch-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"pool_id": self.pool_id, "cursor": cursor}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    def fetch(self, result: Result) -> tuple[Path, bool]:
        """Download one result (a no-op if it is already there); ``(path, downloaded)``."""
        dest = self.directory / result_filename(result)
        fresh = not dest.exists()
        progress = self.progress(result) if self.progress else None
        self.client.download_result(result, dest, progress=progress)
        return dest, fresh

    def _handle(self, result: Result) -> bool:
        dest, fresh = self.fetch(result)
        if self.on_result is not None and fresh:
            self.on_result(result, dest)
        return fresh

    def catch_up(self) -> int:
        """Download every listed result not on disk yet; returns how many were fetched."""
        fetched = 0
        cursor: str | None = None
        while True:
            page = self.client.list_results(self.pool_id, cursor=cursor)
            for result in page.items:
                if not (self.directory / result_filename(result)).exists():
                    fetched += self._handle(result)
            if not page.next_cursor:
                return fetched
            cursor = page.next_cursor

    def run(self, *, count: int | None = None) -> int:
        """Watch until :meth:`stop` (or ``count`` new results); returns how many were fetched."""
        handled = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        after = self.cursor
        while not self._stopped.is_set():
            stream = self.client.events(self.pool_id, after=after, transport=self.transport)
            with self._stream_lock:
                self._stream = stream
            try:
                for event in stream:
                    if event.type == RESULT_PUBLISHED:
                        handled += self._handle(Result.model_validate(event.data))
                    self._save(event.seq)
                    if count is not None and handled >= count:
                        return handled
            except Gone:
                # Events we never saw have been purged: fall back to the list of results.
                handled += self.catch_up()
                after = None
            finally:
                stream.close()
        return handled

    def stop(self) -> None:
        """Stop :meth:`run` from another thread."""
        self._stopped.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()
