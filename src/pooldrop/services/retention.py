"""How long the event log keeps events, and what a cursor older than that means.

Cursor semantics (shared by long-poll, SSE, the WebSocket gateway and the hub):

- A cursor ``after`` asks for every event with ``seq > after``. Sequence numbers start at 1 and
  have no holes except at the front, where the retention job deletes the oldest events.
- The pool's *retained floor* is the seq below the oldest retained event
  (``min(seq) - 1``; the pool's head ``pools.event_seq`` when every event was purged; 0 when none
  ever was). Every event with ``seq > floor`` is still in the log.
- ``after < floor`` means events the client never saw are gone: 410 ``gone`` (``Gone``, whose
  problem document carries ``oldest_seq`` and ``floor``). The client should start again without a
  cursor and reconcile its state (e.g. re-read the latest results).
- ``after`` omitted means "from the oldest retained event" (``after = floor``), never 410.

The floor is derived from the log itself (no purge marker column): purges remove a prefix of each
pool's log because ``at`` grows with ``seq`` on one clock.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop.errors import Gone
from pooldrop.services.runtime import Runtime
from pooldrop.store.models import Event, Pool


async def log_bounds(session: AsyncSession, pool_id: str) -> tuple[int, int] | None:
    """``(head, floor)`` of the pool's log in one query, or None if there is no such pool.

    ``head`` is the last seq assigned; every event with seq above ``floor`` is still retained.
    """
    oldest = select(func.min(Event.seq)).where(Event.pool_id == pool_id).scalar_subquery()
    row = (await session.execute(select(Pool.event_seq, oldest).where(Pool.id == pool_id))).first()
    if row is None:
        return None
    head, first = int(row[0]), row[1]
    return head, (head if first is None else int(first) - 1)


def check_cursor(after: int, floor: int) -> None:
    """Raise ``Gone`` if events after ``after`` were purged (see the module docstring)."""
    if after < floor:
        raise Gone(
            f"events after {after} were purged (retention); the oldest kept is {floor + 1}: "
            "start again without a cursor",
            oldest_seq=floor + 1,
            floor=floor,
        )


async def purge_expired_events(rt: Runtime) -> int:
    """Scheduler job: delete events older than ``settings.event_retention`` seconds.

    A plain ``DELETE ... WHERE at < cutoff`` is idempotent, so nodes running it at once agree.
    """
    cutoff = rt.clock.now() - timedelta(seconds=rt.settings.event_retention)
    async with rt.uow() as uow:
        result = await uow.session.execute(
            delete(Event).where(Event.at < cutoff).execution_options(synchronize_session=False)
        )
    return int(getattr(result, "rowcount", 0) or 0)
