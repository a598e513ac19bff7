"""Pool-scoped authorization: what role a principal holds in a pool, and whether it may act.

A principal that is not a member gets NotFound, never Forbidden, so pool ids don't leak.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop.domain.roles import Action, PoolRole, can
from pooldrop.errors import Forbidden, NotFound
from pooldrop.services.caches import Caches
from pooldrop.services.principals import Principal
from pooldrop.store.models import Membership, Pool


@dataclass(frozen=True)
class PoolAccess:
    pool: Pool
    role: PoolRole
    principal: Principal

    def can(self, action: Action) -> bool:
        return can(self.role, action)


async def role_in_pool(
    session: AsyncSession, principal: Principal, pool_id: str
) -> PoolRole | None:
    if principal.kind == "key":
        return principal.pool_role if principal.pool_id == pool_id else None
    if principal.is_global_admin:
        return PoolRole.ADMIN
    role = await session.scalar(
        select(Membership.role).where(
            Membership.pool_id == pool_id, Membership.user_id == principal.id
        )
    )
    return PoolRole(role) if role else None


async def pool_access(
    session: AsyncSession,
    principal: Principal,
    pool_id: str,
    action: Action = Action.POOL_READ,
    *,
    for_update: bool = False,
    caches: Caches | None = None,
) -> PoolAccess:
    """The pool and the caller's role in it, or NotFound / Forbidden.

    With ``caches``, the pool row may come from the process's short-lived cache: for reads that
    need the pool's settings, not a lock on it.
    """
    role = await role_in_pool(session, principal, pool_id)
    pool = None
    if role is not None:
        # A locked read must come from the database, whatever the caller passed.
        caches = None if for_update else caches
        pool = caches.pools.get(pool_id) if caches is not None else None
        if pool is None:
            generation = caches.generation if caches is not None else 0
            stmt = select(Pool).where(Pool.id == pool_id)
            if for_update:
                stmt = stmt.with_for_update()
            pool = await session.scalar(stmt)
            if pool is not None and caches is not None:
                caches.put_pool(pool, generation)
    if pool is None or role is None:
        raise NotFound("no such pool")
    if not can(role, action):
        raise Forbidden(f"your role in this pool ({role}) may not do this")
    return PoolAccess(pool=pool, role=role, principal=principal)
