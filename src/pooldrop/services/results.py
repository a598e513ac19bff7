"""Results: the one file an aggregator publishes for a group, and reading results back.

Publishing follows the upload rules (DESIGN.md rule 1): the body is streamed and hashed into
``pools/<pool_id>/results/<result_id>`` with no transaction open, then one transaction moves the
group ``claimed -> done`` (a compare-and-set on the live lease), inserts the result and records
``result.published`` for every member. A lease that is no longer live at that moment gets
``409 lease_lost`` and the blob is deleted.

One result per group. A retry by the lease that published it (same content) answers with the
first result; other content under that lease is ``409 duplicate_conflict``; any other lease on a
done group is ``409 lease_lost``.

Results pass the pool's forbidden-type check (every member downloads them) but not its
per-upload size limit: an aggregate may be larger than any one input, so the cap is the
instance-wide :data:`RESULT_MAX_SIZE`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop.domain.groups import GroupState
from pooldrop.domain.pools import MAX_FILE_SIZE_LIMIT
from pooldrop.domain.roles import Action
from pooldrop.domain.validation import validate_content_type, validate_filename
from pooldrop.errors import (
    DuplicateConflict,
    EmptyFile,
    LeaseLost,
    NotFound,
    Unavailable,
)
from pooldrop.services import events
from pooldrop.services.access import pool_access
from pooldrop.services.claims import check_lease, get_group, lease_problem, live_lease
from pooldrop.services.ingest import Limits, StorageFailed, hash_stream, store_stream
from pooldrop.services.pools import settings_of
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime
from pooldrop.services.views import result_view
from pooldrop.store.models import Group, Result
from pooldrop.store.types import new_id

RESULT_MAX_SIZE = MAX_FILE_SIZE_LIMIT


@dataclass(frozen=True)
class Published:
    result: Result
    created: bool  # False: a retry of the same result by the lease that published it


def _published_by(group: Group, lease_id: str, principal: Principal) -> bool:
    return (
        group.state == GroupState.DONE
        and group.lease_id == lease_id
        and group.lease_holder == principal.id
    )


async def _result_of(s: AsyncSession, group: Group) -> Result:
    result = await s.scalar(select(Result).where(Result.group_id == group.id))
    if result is None:  # pragma: no cover - done and result are written in one transaction
        raise NotFound("the group's result is missing")
    return result


async def _replay(
    rt: Runtime, pool_id: str, group_id: str, lease_id: str, principal: Principal, sha256: str
) -> Published | None:
    """The first result when this lease already published ``sha256``; None if it did not."""
    async with rt.read() as s:
        group = await get_group(s, pool_id, group_id)
        if not _published_by(group, lease_id, principal):
            return None
        first = await _result_of(s, group)
    if first.sha256 != sha256:
        raise DuplicateConflict("this lease already published a result with other content")
    return Published(result=first, created=False)


async def put_result(
    rt: Runtime,
    principal: Principal,
    pool_id: str,
    group_id: str,
    lease_id: str,
    name: str,
    body: AsyncIterable[bytes],
    expected_sha256: bytes | None = None,
    content_type: str | None = None,
) -> Published:
    """Publish the group's result under a live lease: the group becomes ``done``."""
    name = validate_filename(name)
    ctype = validate_content_type(content_type)
    async with rt.read() as s:
        access = await pool_access(s, principal, pool_id, Action.GROUP_WORK)
        group = await get_group(s, pool_id, group_id)
        retry = _published_by(group, lease_id, principal)
        if not retry:
            # Refuse a stale lease before reading a byte of the body.
            check_lease(group, lease_id, principal, rt.clock.now())
        settings = settings_of(access.pool)
    if retry:
        size, sha256 = await hash_stream(body, RESULT_MAX_SIZE)
        if size == 0:
            raise EmptyFile("the file is empty")
        replay = await _replay(rt, pool_id, group_id, lease_id, principal, sha256)
        assert replay is not None  # a done group stays done
        return replay

    result_id = new_id()
    key = f"pools/{pool_id}/results/{result_id}"
    limits = Limits(
        max_size=RESULT_MAX_SIZE,
        name=name,
        forbidden=settings.forbidden_types,
        expected_sha256=expected_sha256,
    )
    try:
        stored = await store_stream(rt.blobs, key, body, limits, rt.settings.storage_retry_backoff)
    except StorageFailed as exc:
        raise Unavailable(
            "storage failed after 3 attempts; the result was not kept, send it again"
        ) from exc
    try:
        result = await _commit(
            rt,
            principal,
            pool_id,
            group_id,
            lease_id,
            result_id,
            name,
            ctype,
            key,
            stored.size,
            stored.sha256,
        )
    except LeaseLost:
        await rt.blobs.delete(key)
        # Our own retry may have won the race: answer as its replay.
        replay = await _replay(rt, pool_id, group_id, lease_id, principal, stored.sha256)
        if replay is None:
            raise
        return replay
    except BaseException:
        await rt.blobs.delete(key)
        raise
    return Published(result=result, created=True)


async def _commit(
    rt: Runtime,
    principal: Principal,
    pool_id: str,
    group_id: str,
    lease_id: str,
    result_id: str,
    name: str,
    content_type: str,
    key: str,
    size: int,
    sha256: str,
) -> Result:
    async with rt.uow() as uow:
        s = uow.session
        now = rt.clock.now()
        # The lease id and holder stay on the done group: they recognise the publisher's retry.
        changed = await s.execute(
            update(Group)
            .where(*live_lease(group_id, pool_id, lease_id, principal.id, now))
            .values(state=GroupState.DONE, result_id=result_id, done_at=now, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            group = await get_group(s, pool_id, group_id)
            raise LeaseLost(lease_problem(group, lease_id, principal, now) or "lease not current")
        result = Result(
            id=result_id,
            pool_id=pool_id,
            group_id=group_id,
            name=name,
            size=size,
            sha256=sha256,
            content_type=content_type,
            blob_key=key,
            created_by=principal.id,
            created_at=now,
        )
        s.add(result)
        await s.flush()
        await events.record(rt, uow, pool_id, events.RESULT_PUBLISHED, result_view(result))
    return result


async def list_results(
    s: AsyncSession,
    principal: Principal,
    pool_id: str,
    *,
    group_id: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[Result], str | None]:
    """The pool's results, newest first; ids are time-ordered, so the last id is the cursor."""
    await pool_access(s, principal, pool_id, Action.POOL_READ)
    stmt = select(Result).where(Result.pool_id == pool_id)
    if group_id:
        stmt = stmt.where(Result.group_id == group_id)
    if cursor:
        stmt = stmt.where(Result.id < cursor)
    rows = list((await s.scalars(stmt.order_by(Result.id.desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def latest_result(s: AsyncSession, principal: Principal, pool_id: str) -> Result:
    """The most recently published result of the pool; NotFound when there is none yet."""
    await pool_access(s, principal, pool_id, Action.POOL_READ)
    result = await s.scalar(
        select(Result)
        .where(Result.pool_id == pool_id)
        .order_by(Result.created_at.desc(), Result.id.desc())
        .limit(1)
    )
    if result is None:
        raise NotFound("this pool has no result yet")
    return result


async def get_result(s: AsyncSession, principal: Principal, pool_id: str, result_id: str) -> Result:
    await pool_access(s, principal, pool_id, Action.POOL_READ)
    result = await s.get(Result, result_id)
    if result is None or result.pool_id != pool_id:
        raise NotFound("no such result")
    return result
