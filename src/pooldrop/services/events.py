"""The durable per-pool event log (transactional outbox).

``record`` appends in the caller's transaction and bumps the pool's counter in the same
transaction: the counter's row lock orders appenders, so sequence numbers follow commit order and a
reader's cursor can never skip an event that commits later. The wake-up goes out after commit.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, update

from pooldrop.domain.timestamps import format_ts
from pooldrop.services.runtime import Runtime
from pooldrop.store.db import UnitOfWork
from pooldrop.store.models import Event, Pool

UPLOAD_STORED = "upload.stored"
UPLOAD_FAILED = "upload.failed"
GROUP_READY = "group.ready"
GROUP_CLAIMED = "group.claimed"
GROUP_LEASE_EXPIRED = "group.lease_expired"
GROUP_FAILED = "group.failed"
RESULT_PUBLISHED = "result.published"

EVENTS = cast(Table, Event.__table__)
POOLS = cast(Table, Pool.__table__)
_TAKE_SEQS = (
    update(POOLS)
    .where(POOLS.c.id == bindparam("b_pool"))
    .values(event_seq=POOLS.c.event_seq + bindparam("b_n"))
    .returning(POOLS.c.event_seq)
)

EVENT_TYPES = (
    UPLOAD_STORED,
    UPLOAD_FAILED,
    GROUP_READY,
    GROUP_CLAIMED,
    GROUP_LEASE_EXPIRED,
    GROUP_FAILED,
    RESULT_PUBLISHED,
)


async def record(
    rt: Runtime,
    uow: UnitOfWork,
    pool_id: str,
    type_: str,
    data: dict[str, Any],
    *,
    visible_to: str | None = None,
) -> Event:
    """Append an event; ``visible_to`` limits it to that principal and the pool's admins."""
    assert type_ in EVENT_TYPES, type_
    seq = await _take_seqs(uow, pool_id, 1)
    event = Event(
        pool_id=pool_id, seq=seq, type=type_, at=rt.clock.now(), data=data, visible_to=visible_to
    )
    uow.session.add(event)
    _wake_after_commit(rt, uow, pool_id, seq)
    return event


async def record_many(
    rt: Runtime, uow: UnitOfWork, pool_id: str, items: list[tuple[str, dict[str, Any], str | None]]
) -> None:
    """Append ``(type, data, visible_to)`` events in order with one counter bump and one insert."""
    assert all(t in EVENT_TYPES for t, _, _ in items), items
    last = await _take_seqs(uow, pool_id, len(items))
    at = rt.clock.now()
    first = last - len(items) + 1
    conn = await uow.session.connection()
    await conn.execute(
        insert(EVENTS),
        [
            {"pool_id": pool_id, "seq": first + i, "type": t, "at": at, "data": d, "visible_to": v}
            for i, (t, d, v) in enumerate(items)
        ],
    )
    _wake_after_commit(rt, uow, pool_id, last)


async def _take_seqs(uow: UnitOfWork, pool_id: str, n: int) -> int:
    """Reserve ``n`` sequence numbers of the pool's log; returns the last one."""
    seq = await uow.session.scalar(_TAKE_SEQS, {"b_pool": pool_id, "b_n": n})
    assert seq is not None, f"pool {pool_id} vanished mid-transaction"
    return int(seq)


def _wake_after_commit(rt: Runtime, uow: UnitOfWork, pool_id: str, seq: int) -> None:
    async def _wake() -> None:
        await rt.wake(pool_id, seq)

    uow.after_commit(_wake)


def event_out(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "pool_id": event.pool_id,
        "type": event.type,
        "at": format_ts(event.at),
        "data": event.data,
    }
