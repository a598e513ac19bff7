"""Pools, their settings and their members."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import delete, select

from pooldrop.domain.groups import GroupState
from pooldrop.domain.pools import LatePolicy, PoolSettings
from pooldrop.domain.roles import Action, PoolRole, parse_pool_role
from pooldrop.errors import Forbidden, NotFound, ValidationFailed
from pooldrop.services.access import pool_access
from pooldrop.services.caches import forget_everywhere
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime
from pooldrop.store.db import UnitOfWork
from pooldrop.store.models import Group, Membership, Pool, User
from pooldrop.store.types import new_id

SETTING_FIELDS = (
    "window",
    "window_offset",
    "allowed_lateness",
    "late_policy",
    "min_contributors",
    "max_file_size",
    "forbidden_types",
    "lease",
    "max_attempts",
)


def _us(td: timedelta) -> int:
    return td // timedelta(microseconds=1)


def settings_of(pool: Pool) -> PoolSettings:
    return PoolSettings(
        window=timedelta(microseconds=pool.window_us),
        window_offset=timedelta(microseconds=pool.window_offset_us),
        allowed_lateness=timedelta(microseconds=pool.allowed_lateness_us),
        late_policy=LatePolicy(pool.late_policy),
        min_contributors=pool.min_contributors,
        max_file_size=pool.max_file_size,
        forbidden_types=tuple(pool.forbidden_types),
        lease=timedelta(microseconds=pool.lease_us),
        max_attempts=pool.max_attempts,
    )


def _apply(pool: Pool, settings: PoolSettings) -> None:
    pool.window_us = _us(settings.window)
    pool.window_offset_us = _us(settings.window_offset)
    pool.allowed_lateness_us = _us(settings.allowed_lateness)
    pool.late_policy = settings.late_policy.value
    pool.min_contributors = settings.min_contributors
    pool.max_file_size = settings.max_file_size
    pool.forbidden_types = list(settings.forbidden_types)
    pool.lease_us = _us(settings.lease)
    pool.max_attempts = settings.max_attempts


def _name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 200:
        raise ValidationFailed("name must be a non-empty string of at most 200 characters")
    return raw.strip()


async def create_pool(
    rt: Runtime, uow: UnitOfWork, principal: Principal, body: dict[str, Any]
) -> Pool:
    if principal.kind != "user":
        raise Forbidden("keys cannot create pools")
    if "window" not in body:
        raise ValidationFailed("window is required")
    settings = PoolSettings.from_input(**{k: v for k, v in body.items() if k in SETTING_FIELDS})
    now = rt.clock.now()
    pool = Pool(
        id=new_id(),
        name=_name(body.get("name")),
        created_by=principal.id,
        created_at=now,
        event_seq=0,
    )
    _apply(pool, settings)
    uow.session.add(pool)
    await uow.session.flush()  # the membership row refers to it
    uow.session.add(
        Membership(pool_id=pool.id, user_id=principal.id, role=PoolRole.ADMIN, created_at=now)
    )
    return pool


async def list_pools(uow: UnitOfWork, principal: Principal) -> list[tuple[Pool, PoolRole]]:
    s = uow.session
    if principal.kind == "key":
        pool = await s.get(Pool, principal.pool_id)
        assert principal.pool_role is not None
        return [(pool, principal.pool_role)] if pool else []
    if principal.is_global_admin:
        pools = (await s.scalars(select(Pool).order_by(Pool.created_at, Pool.id))).all()
        return [(p, PoolRole.ADMIN) for p in pools]
    rows = (
        await s.execute(
            select(Pool, Membership.role)
            .join(Membership, Membership.pool_id == Pool.id)
            .where(Membership.user_id == principal.id)
            .order_by(Pool.created_at, Pool.id)
        )
    ).all()
    return [(p, PoolRole(r)) for p, r in rows]


async def update_pool(
    rt: Runtime, uow: UnitOfWork, principal: Principal, pool_id: str, body: dict[str, Any]
) -> Pool:
    access = await pool_access(uow.session, principal, pool_id, Action.POOL_MANAGE)
    pool = access.pool
    unknown = set(body) - set(SETTING_FIELDS) - {"name"}
    if unknown:
        raise ValidationFailed(f"unknown fields: {', '.join(sorted(unknown))}")
    current = settings_of(pool).to_output()
    current.update({k: v for k, v in body.items() if k in SETTING_FIELDS})
    settings = PoolSettings.from_input(**current)
    if "name" in body:
        pool.name = _name(body["name"])
    lateness_changed = _us(settings.allowed_lateness) != pool.allowed_lateness_us
    _apply(pool, settings)
    if lateness_changed:
        # Open groups close at window_end + the pool's lateness: move their trigger time too.
        open_groups = await uow.session.scalars(
            select(Group).where(Group.pool_id == pool.id, Group.state == GroupState.OPEN)
        )
        for group in open_groups:
            group.due_at = group.window_end + settings.allowed_lateness
    uow.after_commit(partial(forget_everywhere, rt, "pool", pool_id))
    return pool


async def delete_pool(rt: Runtime, uow: UnitOfWork, principal: Principal, pool_id: str) -> None:
    access = await pool_access(uow.session, principal, pool_id, Action.POOL_MANAGE)
    await uow.session.delete(access.pool)

    async def _drop_blobs() -> None:
        await rt.blobs.delete_prefix(f"pools/{pool_id}/")

    uow.after_commit(_drop_blobs)
    uow.after_commit(partial(forget_everywhere, rt, "pool", pool_id))


async def list_members(
    uow: UnitOfWork, principal: Principal, pool_id: str
) -> list[tuple[Membership, User]]:
    await pool_access(uow.session, principal, pool_id, Action.POOL_MANAGE)
    rows = await uow.session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.pool_id == pool_id)
        .order_by(Membership.created_at, User.username)
    )
    return [(m, u) for m, u in rows.all()]


async def put_member(
    rt: Runtime, uow: UnitOfWork, principal: Principal, pool_id: str, user_id: str, role: Any
) -> tuple[Membership, User, bool]:
    await pool_access(uow.session, principal, pool_id, Action.POOL_MANAGE)
    pool_role = parse_pool_role(role)
    user = await uow.session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    member = await uow.session.get(Membership, (pool_id, user_id))
    created = member is None
    if member is None:
        member = Membership(
            pool_id=pool_id, user_id=user_id, role=pool_role, created_at=rt.clock.now()
        )
        uow.session.add(member)
    else:
        if member.role == PoolRole.ADMIN and pool_role != PoolRole.ADMIN:
            await _keep_one_admin(uow, pool_id, user_id)
        member.role = pool_role
    return member, user, created


async def remove_member(uow: UnitOfWork, principal: Principal, pool_id: str, user_id: str) -> None:
    await pool_access(uow.session, principal, pool_id, Action.POOL_MANAGE)
    member = await uow.session.get(Membership, (pool_id, user_id))
    if member is None:
        raise NotFound("not a member")
    if member.role == PoolRole.ADMIN:
        await _keep_one_admin(uow, pool_id, user_id)
    await uow.session.execute(
        delete(Membership).where(Membership.pool_id == pool_id, Membership.user_id == user_id)
    )


async def _keep_one_admin(uow: UnitOfWork, pool_id: str, leaving_user_id: str) -> None:
    others = await uow.session.scalar(
        select(Membership.user_id)
        .where(
            Membership.pool_id == pool_id,
            Membership.role == PoolRole.ADMIN,
            Membership.user_id != leaving_user_id,
        )
        .limit(1)
    )
    if others is None:
        raise ValidationFailed("a pool keeps at least one admin")
