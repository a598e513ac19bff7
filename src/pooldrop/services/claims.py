"""Claims and leases: how an external server takes a ready group, keeps it, and gives it back.

Every move is a compare-and-set ``UPDATE`` that names the state, and where there is one the lease,
it expects (``WHERE id = .. AND state = 'claimed' AND lease_id = ..``). With several nodes and
several aggregators each change therefore happens exactly once, and two claimers never hold the same
group: the loser of a race sees zero rows changed.

A *live* lease is one whose group is ``claimed`` under that ``lease_id``, held by the caller, and
not past ``lease_expires_at``. Only a live lease may heartbeat, release, download the archive or
publish the result; anything else is ``409 lease_lost``. (A pool admin may also download the
archive of a closed group without a lease: see ``services/archive.py``.)

Attempts are counted when a group is claimed. Losing the lease, by expiry or by a voluntary
``release``, ends that attempt: the group goes back to ``ready`` while attempts are left, else to
``failed`` (:func:`pooldrop.domain.groups.after_lease_loss`). A release counts because an
aggregator that keeps giving a group back cannot process it; not counting it would let a poison
group bounce between workers forever.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop.domain.groups import GroupState, Trigger, after_lease_loss
from pooldrop.domain.roles import Action
from pooldrop.domain.timestamps import format_ts
from pooldrop.errors import Forbidden, GroupNotReady, LeaseLost, NotFound, PooldropError
from pooldrop.services import events, groups
from pooldrop.services.access import pool_access
from pooldrop.services.pools import settings_of
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime
from pooldrop.services.views import group_view
from pooldrop.store.db import UnitOfWork
from pooldrop.store.models import Group, Pool

if TYPE_CHECKING:
    from pooldrop.services.hub import Subscription as HubSubscription

LONG_POLL_MAX = 60.0
"""The longest a claim request waits for a ready group, seconds; longer asks are cut to this."""

POLL_INTERVAL = 0.25
"""How often a waiting claim looks for a ready group again without an event hub, seconds."""

HUB_POLL_INTERVAL = 1.0
"""The same with a hub, which wakes the claim on every event; this only covers a group that was
ready but locked by a claimer that then rolled back (no event follows that)."""

EXPIRE_BATCH = 200
"""Expired leases handled per scheduler pass; the rest wait for the next pass."""

RELEASED = "released"
LEASE_EXPIRED = "lease_expired"


@dataclass(frozen=True)
class Lease:
    """A claimed group and the lease that holds it."""

    group: Group
    lease_id: str
    expires_at: datetime
    length: timedelta


def lease_out(lease: Lease) -> dict[str, Any]:
    """The API shape of a claim or heartbeat answer."""
    return {
        "group": group_view(lease.group),
        "lease_id": lease.lease_id,
        "lease_expires_at": format_ts(lease.expires_at),
        "lease_seconds": lease.length.total_seconds(),
    }


def live_lease(
    group_id: str, pool_id: str, lease_id: str, holder_id: str, now: datetime
) -> list[ColumnElement[bool]]:
    """WHERE clauses true only for a live lease (see the module docstring)."""
    return [
        Group.id == group_id,
        Group.pool_id == pool_id,
        Group.state == GroupState.CLAIMED,
        Group.lease_id == lease_id,
        Group.lease_holder == holder_id,
        Group.lease_expires_at > now,
    ]


def lease_problem(group: Group, lease_id: str, principal: Principal, now: datetime) -> str | None:
    """Why ``lease_id`` is not a live lease of ``group`` for ``principal``; None when it is."""
    if group.state != GroupState.CLAIMED:
        if group.state == GroupState.DONE and group.lease_id == lease_id:
            return "this lease ended when its result was published"
        return f"the group is {group.state}; this lease is not current"
    if group.lease_id != lease_id:
        return "this lease is not current: the group was claimed again under another lease"
    if group.lease_holder != principal.id:
        return "this lease is held by another principal"
    assert group.lease_expires_at is not None
    if group.lease_expires_at <= now:
        return f"the lease expired at {format_ts(group.lease_expires_at)}"
    return None


def check_lease(group: Group, lease_id: str, principal: Principal, now: datetime) -> None:
    """Raise ``LeaseLost`` (409) unless ``lease_id`` is a live lease of ``group``."""
    why = lease_problem(group, lease_id, principal, now)
    if why is not None:
        raise LeaseLost(why)


async def get_group(
    session: AsyncSession, pool_id: str, group_id: str, *, lock: bool = False
) -> Group:
    """The pool's group, fresh from the database (locked on PostgreSQL when ``lock``)."""
    stmt = select(Group).where(Group.id == group_id, Group.pool_id == pool_id)
    if lock:
        stmt = stmt.with_for_update()
    group = await session.scalar(stmt.execution_options(populate_existing=True))
    if group is None:
        raise NotFound("no such group")
    return group


async def _take(
    rt: Runtime, uow: UnitOfWork, pool: Pool, group: Group, principal: Principal
) -> Lease | None:
    """ready -> claimed under a new lease; records ``group.claimed``. None if it was not ready."""
    now = rt.clock.now()
    length = settings_of(pool).lease
    # The lease id is the holder's capability: random, never derived from time.
    lease_id = str(uuid.uuid4())
    expires = now + length
    changed = await uow.session.execute(
        update(Group)
        .where(Group.id == group.id, Group.state == GroupState.READY)
        .values(
            state=GroupState.CLAIMED,
            lease_id=lease_id,
            lease_holder=principal.id,
            lease_expires_at=expires,
            attempts=Group.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await uow.session.refresh(group)
    await events.record(rt, uow, pool.id, events.GROUP_CLAIMED, group_view(group))
    return Lease(group=group, lease_id=lease_id, expires_at=expires, length=length)


async def _claim_oldest(rt: Runtime, principal: Principal, pool_id: str) -> Lease | None:
    async with rt.uow() as uow:
        s = uow.session
        access = await pool_access(s, principal, pool_id, Action.GROUP_WORK)
        # SKIP LOCKED (PostgreSQL; SQLite serializes writers anyway): concurrent claimers each
        # get a different row instead of queueing behind the first one's lock.
        group = await s.scalar(
            select(Group)
            .where(Group.pool_id == pool_id, Group.state == GroupState.READY)
            .order_by(Group.window_start)
            .limit(1)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        if group is None:
            return None
        return await _take(rt, uow, access.pool, group, principal)


async def _any_ready(rt: Runtime, pool_id: str) -> bool:
    async with rt.read() as s:
        found = await s.scalar(
            select(Group.id)
            .where(Group.pool_id == pool_id, Group.state == GroupState.READY)
            .limit(1)
        )
    return found is not None


async def _subscribe(rt: Runtime, principal: Principal, pool_id: str) -> HubSubscription | None:
    """Live events of the pool from now on, to wake a waiting claim; None without a hub."""
    if rt.hub is None:
        return None
    async with rt.read() as s:
        head = await s.scalar(select(Pool.event_seq).where(Pool.id == pool_id))
    try:
        return await rt.hub.subscribe(pool_id, principal, after=head or 0)
    except PooldropError:
        return None  # polling alone still finds the group


async def claim_next(
    rt: Runtime,
    principal: Principal,
    pool_id: str,
    wait: float = 0.0,
    *,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> Lease | None:
    """Claim the pool's oldest ``ready`` group (by window start), waiting up to ``wait`` seconds.

    A waiting claim looks again whenever the pool records an event (through the process's event
    hub, which hears other nodes over the bus) and at least every :data:`POLL_INTERVAL` seconds
    (:data:`HUB_POLL_INTERVAL` with a hub). Returns None when nothing was claimed in time, or
    when ``gone()`` says the caller left. ``wait`` is capped at :data:`LONG_POLL_MAX`.
    """
    async with rt.read() as s:
        await pool_access(s, principal, pool_id, Action.GROUP_WORK)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(max(wait, 0.0), LONG_POLL_MAX)
    # Subscribed before the first look, so a group that becomes ready after it wakes us.
    events_sub = await _subscribe(rt, principal, pool_id) if wait > 0 else None
    interval = POLL_INTERVAL if events_sub is None else HUB_POLL_INTERVAL
    first = True
    try:
        while True:
            # A read first: most looks find nothing, and a read takes no row locks.
            if first or await _any_ready(rt, pool_id):
                lease = await _claim_oldest(rt, principal, pool_id)
                if lease is not None:
                    return lease
            first = False
            remaining = deadline - loop.time()
            if remaining <= 0 or (gone is not None and await gone()):
                return None
            pause = min(interval, remaining)
            if events_sub is None:
                await asyncio.sleep(pause)
            else:
                await _next_event(events_sub, pause)
    finally:
        if events_sub is not None:
            await events_sub.close()


async def _next_event(events_sub: HubSubscription, seconds: float) -> None:
    try:
        await events_sub.get(seconds)
    except PooldropError:
        # The subscription failed (access re-check): sleep instead; the claim re-checks access.
        await asyncio.sleep(seconds)


def _not_claimable(group: Group, principal: Principal) -> str:
    if group.state == GroupState.CLAIMED:
        assert group.lease_expires_at is not None
        who = "you" if group.lease_holder == principal.id else "another worker"
        return (
            f"the group is already claimed by {who}; the lease runs until "
            f"{format_ts(group.lease_expires_at)}"
        )
    if group.state == GroupState.DONE:
        return f"the group is done: its result {group.result_id} is published"
    if group.state == GroupState.FAILED:
        return f"the group failed after {group.attempts} attempts"
    return f"the group is {group.state}"


async def claim_group(rt: Runtime, principal: Principal, pool_id: str, group_id: str) -> Lease:
    """Claim this group. An ``open`` group is closed first (the manual trigger) and then claimed.

    ``409 group_not_ready`` when it is already claimed, done or failed.
    """
    async with rt.uow() as uow:
        s = uow.session
        access = await pool_access(s, principal, pool_id, Action.GROUP_WORK)
        group = await get_group(s, pool_id, group_id, lock=True)
        if group.state == GroupState.OPEN:
            if not access.can(Action.GROUP_CLOSE):
                raise Forbidden(f"your role in this pool ({access.role}) may not close groups")
            await groups.mark_ready(rt, uow, group, Trigger.MANUAL)
        lease = await _take(rt, uow, access.pool, group, principal)
        if lease is None:
            raise GroupNotReady(_not_claimable(group, principal))
    return lease


async def close_group(rt: Runtime, principal: Principal, pool_id: str, group_id: str) -> Group:
    """``open`` -> ``ready`` now (the manual trigger). A group that already left ``open`` is
    returned unchanged, so a retried close is harmless."""
    async with rt.uow() as uow:
        s = uow.session
        await pool_access(s, principal, pool_id, Action.GROUP_CLOSE)
        group = await get_group(s, pool_id, group_id, lock=True)
        if group.state == GroupState.OPEN:
            await groups.mark_ready(rt, uow, group, Trigger.MANUAL)
    return group


async def _lease_lost(
    s: AsyncSession, pool_id: str, group_id: str, lease_id: str, principal: Principal, now: datetime
) -> LeaseLost:
    group = await get_group(s, pool_id, group_id)
    return LeaseLost(lease_problem(group, lease_id, principal, now) or "the lease is not current")


async def heartbeat(
    rt: Runtime, principal: Principal, pool_id: str, group_id: str, lease_id: str
) -> Lease:
    """Extend a live lease to now + the pool's lease length; ``409 lease_lost`` otherwise."""
    async with rt.uow() as uow:
        s = uow.session
        access = await pool_access(s, principal, pool_id, Action.GROUP_WORK)
        now = rt.clock.now()
        length = settings_of(access.pool).lease
        changed = await s.execute(
            update(Group)
            .where(*live_lease(group_id, pool_id, lease_id, principal.id, now))
            .values(lease_expires_at=now + length)
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            raise await _lease_lost(s, pool_id, group_id, lease_id, principal, now)
        group = await get_group(s, pool_id, group_id)
    return Lease(group=group, lease_id=lease_id, expires_at=now + length, length=length)


async def _end_lease(
    rt: Runtime,
    uow: UnitOfWork,
    group: Group,
    max_attempts: int,
    reason: str,
    *conditions: ColumnElement[bool],
) -> bool:
    """claimed -> ready or failed, as the attempts left decide; records the matching event."""
    target = after_lease_loss(group.attempts, max_attempts)
    changed = await uow.session.execute(
        update(Group)
        .where(
            Group.id == group.id,
            Group.state == GroupState.CLAIMED,
            Group.lease_id == group.lease_id,
            *conditions,
        )
        .values(state=target, lease_id=None, lease_holder=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await uow.session.refresh(group)
    if target == GroupState.FAILED:
        type_ = events.GROUP_FAILED
    elif reason == LEASE_EXPIRED:
        type_ = events.GROUP_LEASE_EXPIRED
    else:
        # Given back: it is claimable again, which is what group.ready tells aggregators.
        type_ = events.GROUP_READY
    await events.record(rt, uow, group.pool_id, type_, {**group_view(group), "reason": reason})
    return True


async def release(
    rt: Runtime, principal: Principal, pool_id: str, group_id: str, lease_id: str
) -> Group:
    """Give a live lease back: the group returns to ``ready`` (the attempt stays counted), or
    becomes ``failed`` when that was its last attempt."""
    async with rt.uow() as uow:
        s = uow.session
        access = await pool_access(s, principal, pool_id, Action.GROUP_WORK)
        group = await get_group(s, pool_id, group_id, lock=True)
        now = rt.clock.now()
        check_lease(group, lease_id, principal, now)
        ended = await _end_lease(
            rt,
            uow,
            group,
            access.pool.max_attempts,
            RELEASED,
            Group.lease_holder == principal.id,
            Group.lease_expires_at > now,
        )
        if not ended:
            raise await _lease_lost(s, pool_id, group_id, lease_id, principal, now)
    return group


async def expire_leases(rt: Runtime) -> int:
    """Scheduler job: every claimed group whose lease ran out goes back to ``ready`` with
    ``group.lease_expired``, or to ``failed`` with ``group.failed`` after its last attempt."""
    now = rt.clock.now()
    async with rt.read() as s:
        due = (
            await s.execute(
                select(Group.id, Group.lease_id)
                .where(Group.state == GroupState.CLAIMED, Group.lease_expires_at <= now)
                .order_by(Group.lease_expires_at)
                .limit(EXPIRE_BATCH)
            )
        ).all()
    expired = 0
    for group_id, lease_id in due:
        # One short transaction per group: it holds the pool's event counter only briefly.
        async with rt.uow() as uow:
            group = await uow.session.get(
                Group, group_id, with_for_update=True, populate_existing=True
            )
            # A heartbeat or a result may have got there between our look and this lock.
            if group is None or group.state != GroupState.CLAIMED or group.lease_id != lease_id:
                continue
            pool = await uow.session.get(Pool, group.pool_id)
            if pool is None:
                continue
            if await _end_lease(
                rt, uow, group, pool.max_attempts, LEASE_EXPIRED, Group.lease_expires_at <= now
            ):
                expired += 1
    return expired
