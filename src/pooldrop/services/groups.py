"""Groups: one per pool and event-time window, created by the first upload that lands in it.

Every state change is a compare-and-set (``UPDATE ... WHERE state = <expected>``): whichever node or
request gets there first wins, the others see zero rows and move on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop.domain.groups import GroupState, Trigger, quorum_reached
from pooldrop.domain.windows import Window
from pooldrop.services import events
from pooldrop.services.caches import Caches
from pooldrop.services.runtime import Runtime
from pooldrop.services.views import group_view
from pooldrop.store.db import UnitOfWork
from pooldrop.store.models import Group, GroupContributor, Pool
from pooldrop.store.types import new_id

DUE_BATCH = 200
GROUPS = cast(Table, Group.__table__)
CONTRIBUTORS = cast(Table, GroupContributor.__table__)

# Hot statements, built once (building and cache-keying them per call was a visible cost).
_COUNT_INTO_OPEN = (
    update(GROUPS)
    .where(
        GROUPS.c.pool_id == bindparam("b_pool"),
        GROUPS.c.window_start == bindparam("b_start"),
        GROUPS.c.state == GroupState.OPEN,
    )
    .values(
        file_count=GROUPS.c.file_count + bindparam("b_files"),
        bytes=GROUPS.c.bytes + bindparam("b_bytes"),
    )
    .returning(GROUPS.c.id)
)
_ADD_CONTRIBUTORS = (
    update(GROUPS)
    .where(GROUPS.c.id == bindparam("b_group"))
    .values(contributors=GROUPS.c.contributors + bindparam("b_n"))
    .returning(GROUPS.c.contributors)
)


def _insert(session: AsyncSession) -> Any:
    # Both dialects offer INSERT ... ON CONFLICT DO NOTHING, each through its own construct.
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def group_for_window(rt: Runtime, uow: UnitOfWork, pool: Pool, window: Window) -> Group:
    """The window's group, created if missing, locked for this transaction (PostgreSQL)."""
    s = uow.session
    find = (
        select(Group)
        .where(Group.pool_id == pool.id, Group.window_start == window.start)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    # Most uploads join a group that exists already: one statement instead of two.
    group = await s.scalar(find)
    if group is not None:
        return group
    now = rt.clock.now()
    stmt = (
        _insert(s)(Group)
        .values(
            id=new_id(),
            pool_id=pool.id,
            window_start=window.start,
            window_end=window.end,
            due_at=window.end + timedelta(microseconds=pool.allowed_lateness_us),
            state=GroupState.OPEN,
            file_count=0,
            bytes=0,
            contributors=0,
            attempts=0,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["pool_id", "window_start"])
    )
    await s.execute(stmt)
    group = await s.scalar(find)
    assert group is not None
    return group


async def closed_window_starts(
    session: AsyncSession, pool_id: str, windows: list[Window], caches: Caches | None = None
) -> frozenset[object]:
    """Which of these windows (and any later one) already have a group that is not open.

    With ``caches`` the answer may be a second old: it may miss a window that closed since, never
    list an open one (a window does not reopen). Callers then rely on ``count_uploads``'s check.
    """
    earliest = min(w.start for w in windows)
    slot = (pool_id, earliest)
    cached = caches.closed_windows.get(slot) if caches is not None else None
    if cached is not None:
        return cached
    rows = await session.scalars(
        select(Group.window_start).where(
            Group.pool_id == pool_id,
            Group.state != GroupState.OPEN,
            Group.window_start >= earliest,
        )
    )
    closed = frozenset(rows.all())
    if caches is not None:
        caches.closed_windows[slot] = closed
    return closed


async def count_uploads(
    rt: Runtime, uow: UnitOfWork, pool: Pool, window: Window, uploader_ids: list[str], size: int
) -> str | None:
    """Count uploads (one per entry of ``uploader_ids``, ``size`` bytes in all) into the window's
    group, made if missing, and fire the quorum trigger when it is reached. Returns the group's id,
    or None when the group is not open (the uploads must be placed again).

    The counting ``UPDATE ... WHERE state = 'open'`` is also the authoritative open check, and it
    locks the group row until commit, so a trigger cannot close it under these uploads.
    """
    conn = await uow.session.connection()
    bump = {
        "b_pool": pool.id,
        "b_start": window.start,
        "b_files": len(uploader_ids),
        "b_bytes": size,
    }
    group_id = (await conn.execute(_COUNT_INTO_OPEN, bump)).scalar()
    if group_id is None:
        group = await group_for_window(rt, uow, pool, window)
        if group.state != GroupState.OPEN:
            return None
        group_id = (await conn.execute(_COUNT_INTO_OPEN, bump)).scalar_one()
    added = await conn.execute(
        _insert(uow.session)(CONTRIBUTORS)
        .values([{"group_id": group_id, "uploader_id": u} for u in dict.fromkeys(uploader_ids)])
        .on_conflict_do_nothing(index_elements=["group_id", "uploader_id"])
    )
    if added.rowcount:
        contributors = (
            await conn.execute(_ADD_CONTRIBUTORS, {"b_group": group_id, "b_n": added.rowcount})
        ).scalar_one()
        if quorum_reached(contributors, pool.min_contributors):
            ready = await uow.session.get(Group, group_id, populate_existing=True)
            assert ready is not None
            await mark_ready(rt, uow, ready, Trigger.QUORUM)
    return str(group_id)


async def mark_ready(rt: Runtime, uow: UnitOfWork, group: Group, trigger: Trigger) -> bool:
    """open -> ready, freezing the manifest; records ``group.ready``. False if it was not open."""
    now = rt.clock.now()
    changed = await uow.session.execute(
        update(Group)
        .where(Group.id == group.id, Group.state == GroupState.OPEN)
        .values(state=GroupState.READY, trigger=trigger, ready_at=now)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await uow.session.refresh(group)
    await events.record(rt, uow, group.pool_id, events.GROUP_READY, group_view(group))
    return True


async def close_due_windows(rt: Runtime) -> int:
    """Scheduler job: the window trigger for every open group whose window (+ lateness) is over."""
    now = rt.clock.now()
    async with rt.read() as s:
        due = list(
            (
                await s.scalars(
                    select(Group.id)
                    .where(Group.state == GroupState.OPEN, Group.due_at <= now)
                    .order_by(Group.due_at)
                    .limit(DUE_BATCH)
                )
            ).all()
        )
    closed = 0
    for group_id in due:
        # One short transaction per group: it holds the pool's event counter only briefly.
        async with rt.uow() as uow:
            group = await uow.session.get(Group, group_id)
            if group is not None and await mark_ready(rt, uow, group, Trigger.WINDOW):
                closed += 1
    return closed
