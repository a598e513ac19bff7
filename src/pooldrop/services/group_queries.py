"""Reading groups back: the pool's groups by state, and one group with its manifest.

Every member sees every group (``group.*`` events go to all of them). The manifest lists uploads,
which follow the upload visibility rule: pool admins and aggregators (who process them) see every
entry, other members only their own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop.domain.groups import GroupState
from pooldrop.domain.roles import Action
from pooldrop.domain.timestamps import format_ts, parse_ts
from pooldrop.errors import ValidationFailed
from pooldrop.services.access import pool_access
from pooldrop.services.claims import get_group
from pooldrop.services.principals import Principal
from pooldrop.store.models import Group, Upload

STATES = tuple(s.value for s in GroupState)


def _cursor_value(cursor: str) -> datetime:
    try:
        return parse_ts(cursor)
    except ValidationFailed:
        raise ValidationFailed("cursor is not one this API returned") from None


async def list_groups(
    s: AsyncSession,
    principal: Principal,
    pool_id: str,
    *,
    state: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Group], str | None]:
    """Newest window first. A window start is unique in a pool, so it is the cursor."""
    await pool_access(s, principal, pool_id)
    stmt = select(Group).where(Group.pool_id == pool_id)
    if state:
        if state not in STATES:
            raise ValidationFailed(f"state must be one of {', '.join(STATES)}")
        stmt = stmt.where(Group.state == state)
    if cursor:
        stmt = stmt.where(Group.window_start < _cursor_value(cursor))
    rows = list((await s.scalars(stmt.order_by(Group.window_start.desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (format_ts(rows[-1].window_start) if more and rows else None)


async def group_with_manifest(
    s: AsyncSession, principal: Principal, pool_id: str, group_id: str
) -> tuple[Group, list[Upload]]:
    """The group and the uploads in it that the caller may see, ordered by (ts, upload_id)."""
    access = await pool_access(s, principal, pool_id)
    group = await get_group(s, pool_id, group_id)
    stmt = select(Upload).where(Upload.group_id == group.id, Upload.status == "stored")
    if not (access.can(Action.UPLOAD_READ_ALL) or access.can(Action.GROUP_WORK)):
        stmt = stmt.where(Upload.uploader_id == principal.id)
    uploads = list((await s.scalars(stmt.order_by(Upload.ts, Upload.id))).all())
    return group, uploads
