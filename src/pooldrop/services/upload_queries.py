"""Reading uploads back: who sees which (own, or all for pool and global admins), paginated."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop.domain.roles import Action
from pooldrop.errors import NotFound, ValidationFailed
from pooldrop.services.access import pool_access
from pooldrop.services.principals import Principal
from pooldrop.store.models import Upload

STATUSES = ("stored", "failed")


async def _page(
    s: AsyncSession, stmt: Select[Upload], limit: int, cursor: str | None
) -> tuple[list[Upload], str | None]:
    # Newest first; ids are time-ordered, so the last id seen is the cursor.
    if cursor:
        stmt = stmt.where(Upload.id < cursor)
    rows = list((await s.scalars(stmt.order_by(Upload.id.desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def list_pool_uploads(
    s: AsyncSession,
    principal: Principal,
    pool_id: str,
    *,
    mine: bool,
    group_id: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Upload], str | None]:
    access = await pool_access(s, principal, pool_id)
    stmt = select(Upload).where(Upload.pool_id == pool_id)
    if mine or not access.can(Action.UPLOAD_READ_ALL):
        stmt = stmt.where(Upload.uploader_id == principal.id)
    if group_id:
        stmt = stmt.where(Upload.group_id == group_id)
    if status:
        if status not in STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}")
        stmt = stmt.where(Upload.status == status)
    return await _page(s, stmt, limit, cursor)


async def list_uploads(
    s: AsyncSession, *, uploader_id: str | None, limit: int, cursor: str | None
) -> tuple[list[Upload], str | None]:
    stmt = select(Upload)
    if uploader_id:
        stmt = stmt.where(Upload.uploader_id == uploader_id)
    return await _page(s, stmt, limit, cursor)


async def get_upload(
    s: AsyncSession, principal: Principal, pool_id: str, upload_id: str, *, stored: bool = False
) -> Upload:
    access = await pool_access(s, principal, pool_id)
    upload = await s.get(Upload, upload_id)
    if (
        upload is None
        or upload.pool_id != pool_id
        or (upload.uploader_id != principal.id and not access.can(Action.UPLOAD_READ_ALL))
    ):
        raise NotFound("no such upload")
    if stored and upload.status != "stored":
        raise NotFound("this upload has no content (it failed)")
    return upload
