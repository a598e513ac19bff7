"""The offline-first uploader: ``add`` files to a durable outbox, a flusher sends them as batches.

``add`` never touches the network. ``flush`` sends what is due, one batch per pool at a time, and
settles each file only on the server's answer for it:

- ``stored`` or ``duplicate`` (a replay of its ``client_upload_id``): delivered, local copy deleted;
- ``rejected`` with a permanent 4xx (``window_closed``, ``file_too_large``, ...): moved to
  ``rejected`` with the reason, never sent again (``requeue`` puts it back by hand);
- a transient failure (5xx, 429, network): retried later with exponential backoff and jitter.

A whole batch the server refuses with a 4xx is split in halves until the culprit stands alone, so
one bad file cannot hold back the others. When the server is unreachable the uploader backs off as
a whole. Because every file keeps its ``client_upload_id`` across attempts and restarts, a flush
killed at any point and started again delivers each file exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from pooldrop.client._async_client import AsyncClient
from pooldrop.client._batch import BatchEntry
from pooldrop.client._client import Client
from pooldrop.client._content import Content, Timestamp
from pooldrop.client._errors import (
    ApiError,
    Forbidden,
    NotFound,
    PooldropError,
    RateLimited,
    Unauthenticated,
    is_retryable,
)
from pooldrop.client._models import BatchItem, BatchResult
from pooldrop.client._outbox import DELIVERED, PENDING, REJECTED, Outbox, OutboxEntry

log = logging.getLogger("pooldrop.client.uploader")

NOT_THE_FILES = (Unauthenticated, Forbidden, NotFound)
"""Refusals of a whole batch that say nothing about its files: keep them pending, back off."""
TRANSIENT_CODES = frozenset({"internal_error", "unavailable", "rate_limited", "storage_failed"})


@dataclass
class FlushReport:
    """What one :meth:`Uploader.flush` did."""

    delivered: list[OutboxEntry] = field(default_factory=list)
    rejected: list[OutboxEntry] = field(default_factory=list)
    retrying: int = 0
    """Files that failed transiently in this flush and wait for their backoff."""
    error: str | None = None
    """Why the flush stopped early (server unreachable, credentials refused), if it did."""
    pending: int = 0
    """Files still waiting after this flush."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, in seconds, for the n-th consecutive failure."""

    initial: float = 1.0
    maximum: float = 300.0

    def __call__(self, failures: int) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** max(0, failures - 1))
        return random.uniform(ceiling / 2, ceiling)


def is_transient(status: int | None, code: str | None) -> bool:
    """Whether a per-file failure is worth sending again later."""
    if status is None:
        return code is None or code in TRANSIENT_CODES
    return status >= 500 or status in (408, 429) or code in TRANSIENT_CODES


@dataclass(frozen=True)
class SendBatch:
    """A step of a flush plan: send these entries as one batch, answer with the result."""

    pool_id: str
    entries: list[BatchEntry]


FlushPlan = Generator[SendBatch, BatchResult, None]


def step(plan: FlushPlan, answer: BatchResult | PooldropError | None = None) -> SendBatch | None:
    """Advance ``plan`` with the answer to its last step; ``None`` once it is finished."""
    try:
        if answer is None:
            return next(plan)
        if isinstance(answer, PooldropError):
            return plan.throw(answer)
        return plan.send(answer)
    except StopIteration:
        return None


class Flusher:
    """What both uploaders share: the outbox, the settings and the flush logic.

    The logic is a generator (:meth:`plan`) that yields the batches to send and receives the
    server's answers, so the blocking and the asyncio uploader drive the same decisions.
    """

    def __init__(
        self,
        pool_id: str,
        outbox: str | Path,
        *,
        batch_files: int,
        batch_bytes: int,
        backoff: Backoff | None,
        clock: Callable[[], float],
        on_outcome: Callable[[OutboxEntry], None] | None,
        keep_delivered: float,
    ) -> None:
        self.pool_id = pool_id
        self.outbox = Outbox(outbox, clock=clock)
        self.batch_files = batch_files
        self.batch_bytes = batch_bytes
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.on_outcome = on_outcome
        self.keep_delivered = keep_delivered
        self._failures = 0
        self._offline_until = 0.0

    def _add(
        self,
        content: Content,
        ts: Timestamp | None,
        name: str | None,
        metadata: dict[str, Any] | None,
        client_upload_id: str | None,
        pool_id: str | None,
    ) -> OutboxEntry:
        return self.outbox.add(
            content,
            pool_id=pool_id or self.pool_id,
            ts=ts,
            name=name,
            metadata=metadata,
            client_upload_id=client_upload_id,
        )

    def pending(self) -> list[OutboxEntry]:
        return self.outbox.entries(PENDING)

    def rejected(self) -> list[OutboxEntry]:
        """Files the server refused for good, each with ``error_code`` and ``error``."""
        return self.outbox.entries(REJECTED)

    def delivered(self) -> list[OutboxEntry]:
        return self.outbox.entries(DELIVERED)

    def seconds_until_due(self, idle: float = 60.0) -> float:
        """How long a loop may sleep before something can be sent (at most ``idle``)."""
        now = self.clock()
        when = self.outbox.next_due()
        wait = idle if when is None else when - now
        wait = max(wait, self._offline_until - now)
        return max(0.05, min(idle, wait))

    # --- the plan ---------------------------------------------------------------------------

    def plan(self, report: FlushReport, force: bool) -> FlushPlan:
        """One flush: yields each batch to send, receives its result (or its error, thrown in)."""
        if not force and self.clock() < self._offline_until:
            report.error = "server unreachable; waiting before the next attempt"
            return
        self.outbox.sweep_orphans()
        self.outbox.purge(older_than=self.keep_delivered)
        if force:
            # Everything is due now; a file that fails again gets a fresh backoff as usual.
            self.outbox.make_due()
        while batch := self.outbox.due(limit=self.batch_files, max_bytes=self.batch_bytes):
            try:
                yield from self._send(batch, report)
            except NOT_THE_FILES as e:
                # The files are fine; the credentials or the pool are not. Keep them for later.
                self._went_offline(report, e, None)
                return
            except PooldropError as e:
                if not is_retryable(e):
                    raise
                self._went_offline(report, e, batch)
                return
            self._failures = 0

    def _finish(self, report: FlushReport) -> FlushReport:
        report.pending = self.outbox.counts()[PENDING]
        return report

    def _went_offline(
        self, report: FlushReport, e: PooldropError, batch: Sequence[OutboxEntry] | None
    ) -> None:
        self._failures += 1
        delay = self.backoff(self._failures)
        if isinstance(e, RateLimited):
            delay = max(delay, e.retry_after)
        self._offline_until = self.clock() + delay
        if batch:
            self.outbox.mark_retry(batch, str(e), self.backoff)
            report.retrying += len(batch)
        report.error = str(e)
        log.info("flush stopped: %s; next attempt in %.1fs", e, delay)

    def _send(self, batch: Sequence[OutboxEntry], report: FlushReport) -> FlushPlan:
        live = [e for e in batch if self._still_there(e)]
        if not live:
            return
        entries = [
            BatchEntry(
                content=e.path,
                ts=e.ts,
                name=e.name,
                client_upload_id=e.client_upload_id,
                metadata=e.metadata,
                part=f"e{e.id}",
                sha256=e.sha256,
            )
            for e in live
        ]
        try:
            result = yield SendBatch(live[0].pool_id, entries)
        except ApiError as err:
            if is_retryable(err) or isinstance(err, NOT_THE_FILES):
                raise
            if len(live) > 1:
                # Something in this batch is refused as a whole: find it by halving.
                half = len(live) // 2
                yield from self._send(live[:half], report)
                yield from self._send(live[half:], report)
                return
            self._reject(live[0], err.code, err.detail, report)
            return
        by_part = {item.part: item for item in result.results}
        retry: list[OutboxEntry] = []
        for e in live:
            item = by_part.get(f"e{e.id}")
            if item is None:
                retry.append(e)
            else:
                self._settle(e, item, retry, report)
        if retry:
            self.outbox.mark_retry(retry, "the server did not settle this file", self.backoff)
            report.retrying += len(retry)

    def _still_there(self, e: OutboxEntry) -> bool:
        if e.path.exists():
            return True
        # Another flusher delivered it and removed the copy; if not, it is lost for good.
        self.outbox.mark_rejected(e, "file_missing", f"the outbox copy {e.path} is gone")
        return False

    def _settle(
        self, e: OutboxEntry, item: BatchItem, retry: list[OutboxEntry], report: FlushReport
    ) -> None:
        if item.status in ("stored", "duplicate"):
            self.outbox.mark_delivered(e, item.upload.upload_id if item.upload else None)
            done = self.outbox.get(e.id)
            report.delivered.append(done)
            self._notify(done)
            return
        err = item.error or {}
        status = err.get("status") if isinstance(err.get("status"), int) else None
        code = err.get("code") if isinstance(err.get("code"), str) else None
        if is_transient(status, code):
            retry.append(e)
            return
        self._reject(e, code or "rejected", str(err.get("detail") or "rejected"), report)

    def _reject(self, e: OutboxEntry, code: str, detail: str, report: FlushReport) -> None:
        self.outbox.mark_rejected(e, code, detail)
        done = self.outbox.get(e.id)
        report.rejected.append(done)
        self._notify(done)

    def _notify(self, entry: OutboxEntry) -> None:
        if self.on_outcome is not None:
            self.on_outcome(entry)

    def _after_crash(self) -> None:
        log.exception("flush failed")
        self._offline_until = self.clock() + self.backoff(self._failures + 1)


class Uploader(Flusher):
    """Queue files durably now, deliver them when the server is reachable.

    ``client`` is a :class:`Client` or a server URL (then pass ``api_key=`` or ``token=``); the
    uploader closes a client it made. Use :meth:`flush` for one pass, :meth:`run` to loop, or
    :meth:`start`/:meth:`stop` (or ``with``) for a background thread.
    """

    def __init__(
        self,
        client: Client | str,
        pool_id: str,
        *,
        outbox: str | Path,
        api_key: str | None = None,
        token: str | None = None,
        batch_files: int = 100,
        batch_bytes: int = 32 * 1024 * 1024,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[OutboxEntry], None] | None = None,
        keep_delivered: float = 7 * 86400,
    ) -> None:
        super().__init__(
            pool_id,
            outbox,
            batch_files=batch_files,
            batch_bytes=batch_bytes,
            backoff=backoff,
            clock=clock,
            on_outcome=on_outcome,
            keep_delivered=keep_delivered,
        )
        self._owns_client = isinstance(client, str)
        self.client = (
            Client(client, api_key=api_key, token=token) if isinstance(client, str) else client
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()

    def add(
        self,
        content: Content,
        *,
        ts: Timestamp | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        client_upload_id: str | None = None,
        pool_id: str | None = None,
    ) -> OutboxEntry:
        """Copy a file into the outbox and record it durably, then return (no network).

        ``ts`` is the event time, default now. A background flusher is woken up.
        """
        entry = self._add(content, ts, name, metadata, client_upload_id, pool_id)
        self._wake.set()
        return entry

    def flush(self, *, force: bool = False) -> FlushReport:
        """Send everything that is due now; returns what happened. Never raises for the network.

        ``force`` sends every pending file at once, ignoring backoff (a person asked for it).
        """
        with self._flush_lock:
            report = FlushReport()
            plan = self.plan(report, force)
            send = step(plan)
            while send is not None:
                answer: BatchResult | PooldropError
                try:
                    answer = self.client.upload_batch(send.pool_id, send.entries, retry=False)
                except PooldropError as e:
                    answer = e
                send = step(plan, answer)
            return self._finish(report)

    def run(self, stop: threading.Event | None = None, *, idle: float = 60.0) -> None:
        """Flush, sleep until something is due (or :meth:`add` wakes it), repeat until ``stop``."""
        stop = stop or self._stop
        while not stop.is_set():
            try:
                self.flush()
            except Exception:  # a bug must not kill a background flusher silently
                self._after_crash()
            self._wake.wait(self.seconds_until_due(idle))
            self._wake.clear()

    def start(self) -> None:
        """Flush in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="pooldrop-uploader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        """Stop the background thread and close a client this uploader made."""
        self.stop()
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncUploader(Flusher):
    """:class:`Uploader` for asyncio: the same outbox and rules, flushed by a task.

    Outbox work (SQLite with fsync, file copies) runs in worker threads, the network in the loop.
    """

    def __init__(
        self,
        client: AsyncClient | str,
        pool_id: str,
        *,
        outbox: str | Path,
        api_key: str | None = None,
        token: str | None = None,
        batch_files: int = 100,
        batch_bytes: int = 32 * 1024 * 1024,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[OutboxEntry], None] | None = None,
        keep_delivered: float = 7 * 86400,
    ) -> None:
        super().__init__(
            pool_id,
            outbox,
            batch_files=batch_files,
            batch_bytes=batch_bytes,
            backoff=backoff,
            clock=clock,
            on_outcome=on_outcome,
            keep_delivered=keep_delivered,
        )
        self._owns_client = isinstance(client, str)
        self.client = (
            AsyncClient(client, api_key=api_key, token=token) if isinstance(client, str) else client
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    async def add(
        self,
        content: Content,
        *,
        ts: Timestamp | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        client_upload_id: str | None = None,
        pool_id: str | None = None,
    ) -> OutboxEntry:
        """As :meth:`Uploader.add`; durable when it returns."""
        entry = await anyio.to_thread.run_sync(
            functools.partial(self._add, content, ts, name, metadata, client_upload_id, pool_id)
        )
        self._wake.set()
        return entry

    async def flush(self, *, force: bool = False) -> FlushReport:
        """As :meth:`Uploader.flush`."""
        async with self._flush_lock:
            report = FlushReport()
            plan = self.plan(report, force)
            send = await anyio.to_thread.run_sync(step, plan)
            while send is not None:
                answer: BatchResult | PooldropError
                try:
                    answer = await self.client.upload_batch(send.pool_id, send.entries, retry=False)
                except PooldropError as e:
                    answer = e
                send = await anyio.to_thread.run_sync(step, plan, answer)
            return await anyio.to_thread.run_sync(self._finish, report)

    async def run(self, *, idle: float = 60.0) -> None:
        """Flush, sleep until something is due (or :meth:`add` wakes it), until cancelled."""
        while True:
            try:
                await self.flush()
            except Exception:  # a bug must not kill a background flusher silently
                self._after_crash()
            wait = await anyio.to_thread.run_sync(self.seconds_until_due, idle)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    def start(self) -> None:
        """Flush in a background task until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="pooldrop-uploader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def aclose(self) -> None:
        """Stop the task and close a client this uploader made."""
        await self.stop()
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncUploader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
