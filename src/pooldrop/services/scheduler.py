"""Time-driven work that must happen without traffic: window triggers, lease expiry, clean-up.

Every job is a compare-and-set on rows (``UPDATE ... WHERE state = 'open' AND due_at <= now``), so
when several nodes run the scheduler at once each change still happens exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from pooldrop.services.runtime import Runtime

log = logging.getLogger("pooldrop.scheduler")

Job = Callable[[Runtime], Awaitable[int]]


class Scheduler:
    def __init__(self, rt: Runtime, jobs: list[tuple[str, Job]]) -> None:
        self.rt = rt
        self.jobs = jobs
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def run_once(self) -> dict[str, int]:
        """One pass of every job; returns how many things each changed (tests call this)."""
        done: dict[str, int] = {}
        async with self._lock:
            for name, job in self.jobs:
                try:
                    done[name] = await job(self.rt)
                except Exception:
                    # One failing job must not stop the others, nor the next pass.
                    log.exception("scheduler job %s failed", name)
                    done[name] = -1
        return done

    async def _loop(self) -> None:
        interval = self.rt.settings.scheduler_interval
        while True:
            await self.run_once()
            await asyncio.sleep(interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="pooldrop-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def default_jobs() -> list[tuple[str, Job]]:
    """The jobs every node runs, in order."""
    from pooldrop.services import claims, groups, retention, transfers, webhooks

    return [
        ("close_due_windows", groups.close_due_windows),
        ("expire_leases", claims.expire_leases),
        ("purge_expired_events", retention.purge_expired_events),
        ("enqueue_webhook_deliveries", webhooks.enqueue_deliveries),
        ("send_webhook_deliveries", webhooks.send_due_deliveries),
        ("purge_old_webhook_deliveries", webhooks.purge_old_deliveries),
        ("expire_transfers", transfers.expire_transfers),
        ("sweep_storage", transfers.StorageSweep()),
    ]
