"""Who may still receive events: the batched re-check behind the hub's long-lived subscriptions.

A WebSocket or SSE stream authenticates once, then lives for hours. The hub periodically asks this
module, in a few IN-list queries for all of its subscribers at once, which sessions ended (logout,
expiry, disabled user), which keys were revoked, and what role each user now holds in each pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, false, select
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop.domain.roles import GlobalRole, PoolRole
from pooldrop.errors import PooldropError, Unauthenticated
from pooldrop.services.principals import Principal
from pooldrop.store.models import ApiKey, AuthSession, Membership, User

_IN_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class Grants:
    """What the database says now about a set of principals."""

    live_sessions: dict[str, str]
    """Session id -> its user's global role, for sessions still valid."""
    live_keys: set[str]
    """Ids of keys not revoked."""
    pool_roles: dict[str, dict[str, str]]
    """Pool id -> user id -> pool role, for the users asked about (not global admins)."""

    def error(self, principal: Principal) -> PooldropError | None:
        """Why ``principal`` may no longer act, or None."""
        if principal.kind == "key":
            return None if principal.id in self.live_keys else Unauthenticated("key revoked")
        if principal.session_id in self.live_sessions:
            return None
        return Unauthenticated("session ended; log in again")

    def pool_role(self, principal: Principal, pool_id: str) -> PoolRole | None:
        """The role ``principal`` holds in ``pool_id`` now (global admins: admin everywhere)."""
        if principal.kind == "key":
            return principal.pool_role if principal.pool_id == pool_id else None
        if self.live_sessions.get(principal.session_id or "") == GlobalRole.ADMIN:
            return PoolRole.ADMIN
        role = self.pool_roles.get(pool_id, {}).get(principal.id)
        return PoolRole(role) if role else None


async def load_grants(
    session: AsyncSession,
    now: datetime,
    memberships: Iterable[tuple[str, Principal]],
    others: Iterable[Principal] = (),
) -> Grants:
    """Check every ``(pool_id, principal)`` subscription and every other connected principal."""
    wanted = list(memberships)
    principals = [p for _, p in wanted] + list(others)
    session_ids = sorted({p.session_id for p in principals if p.kind == "user" and p.session_id})
    key_ids = sorted({p.id for p in principals if p.kind == "key"})
    live_sessions = {
        sid: role
        for sid, role in await by_chunks(
            session,
            session_ids,
            lambda ids: (
                select(AuthSession.id, User.role)
                .join(User, User.id == AuthSession.user_id)
                .where(
                    AuthSession.id.in_(ids),
                    AuthSession.revoked_at.is_(None),
                    AuthSession.expires_at > now,
                    User.disabled == false(),
                )
            ),
        )
    }
    live_keys = {
        key_id
        for key_id, _ in await by_chunks(
            session,
            key_ids,
            lambda ids: select(ApiKey.id, ApiKey.pool_id).where(
                ApiKey.id.in_(ids), ApiKey.revoked_at.is_(None)
            ),
        )
    }
    # Memberships matter only for live users who are not global admins.
    users_by_pool: dict[str, set[str]] = {}
    for pool_id, p in wanted:
        role = live_sessions.get(p.session_id or "")
        if p.kind == "user" and role is not None and role != GlobalRole.ADMIN:
            users_by_pool.setdefault(pool_id, set()).add(p.id)
    pool_roles = {
        pool_id: dict(await by_chunks(session, sorted(users), _membership_query(pool_id)))
        for pool_id, users in users_by_pool.items()
    }
    return Grants(live_sessions=live_sessions, live_keys=live_keys, pool_roles=pool_roles)


def _membership_query(pool_id: str) -> Callable[[list[str]], Select[Any, Any]]:
    def query(user_ids: list[str]) -> Select[Any, Any]:
        return select(Membership.user_id, Membership.role).where(
            Membership.pool_id == pool_id, Membership.user_id.in_(user_ids)
        )

    return query


async def by_chunks(
    session: AsyncSession, ids: Sequence[str], query: Callable[[list[str]], Select[Any, Any]]
) -> list[tuple[Any, Any]]:
    """Rows of ``query(chunk)`` over ``ids`` in chunks, so IN lists stay short."""
    rows: list[tuple[Any, Any]] = []
    for i in range(0, len(ids), _IN_CHUNK):
        result = await session.execute(query(list(ids[i : i + _IN_CHUNK])))
        rows.extend((r[0], r[1]) for r in result)
    return rows
