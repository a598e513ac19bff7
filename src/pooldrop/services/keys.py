"""Pool keys for client apps and external servers, and self-enrolment with a token."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import select, update

from pooldrop.domain.durations import parse_duration
from pooldrop.domain.roles import Action, PoolRole, parse_pool_role
from pooldrop.errors import NotFound, Unauthenticated, ValidationFailed
from pooldrop.services.access import pool_access
from pooldrop.services.auth import hash_secret, make_key_secret
from pooldrop.services.caches import forget_everywhere
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime
from pooldrop.store.db import UnitOfWork
from pooldrop.store.models import ApiKey, Enrollment
from pooldrop.store.types import new_id

ENROLL_PREFIX = "pde_"
MAX_ENROLL_USES = 1_000_000
MAX_ENROLL_TTL = timedelta(days=365)


def _key_name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 200:
        raise ValidationFailed("name must be a non-empty string of at most 200 characters")
    return raw.strip()


def _new_key(
    rt: Runtime, pool_id: str, name: str, role: PoolRole, **extra: Any
) -> tuple[ApiKey, str]:
    key_id = new_id()
    secret = make_key_secret(key_id)
    key = ApiKey(
        id=key_id,
        pool_id=pool_id,
        name=name,
        role=role,
        secret_hash=hash_secret(secret),
        created_at=rt.clock.now(),
        **extra,
    )
    return key, secret


async def create_key(
    rt: Runtime, uow: UnitOfWork, principal: Principal, pool_id: str, body: dict[str, Any]
) -> tuple[ApiKey, str]:
    await pool_access(uow.session, principal, pool_id, Action.POOL_MANAGE)
    key, secret = _new_key(
        rt,
        pool_id,
        _key_name(body.get("name")),
        parse_pool_role(body.get("role")),
        created_by=principal.id,
    )
    uow.session.add(key)
    return key, secret


async def list_keys(uow: UnitOfWork, principal: Principal, pool_id: str) -> list[ApiKey]:
    await pool_access(uow.session, principal, pool_id, Action.POOL_MANAGE)
    rows = await uow.session.scalars(
        select(ApiKey).where(ApiKey.pool_id == pool_id).order_by(ApiKey.id)
    )
    return list(rows.all())


async def revoke_key(
    rt: Runtime, uow: UnitOfWork, principal: Principal, pool_id: str, key_id: str
) -> None:
    await pool_access(uow.session, principal, pool_id, Action.POOL_MANAGE)
    key = await uow.session.get(ApiKey, key_id)
    if key is None or key.pool_id != pool_id:
        raise NotFound("no such key")
    if key.revoked_at is None:
        key.revoked_at = rt.clock.now()
    uow.after_commit(partial(forget_everywhere, rt, "key", key_id))


async def create_enrollment(
    rt: Runtime, uow: UnitOfWork, principal: Principal, pool_id: str, body: dict[str, Any]
) -> tuple[Enrollment, str]:
    await pool_access(uow.session, principal, pool_id, Action.POOL_MANAGE)
    max_uses = body.get("max_uses")
    if (
        not isinstance(max_uses, int)
        or isinstance(max_uses, bool)
        or not 1 <= max_uses <= MAX_ENROLL_USES
    ):
        raise ValidationFailed(f"max_uses must be an integer from 1 to {MAX_ENROLL_USES}")
    ttl = parse_duration(body.get("expires_in", "7d"))
    if not timedelta(seconds=1) <= ttl <= MAX_ENROLL_TTL:
        raise ValidationFailed("expires_in must be from 1 second to 365 days")
    enrollment_id = new_id()
    token = f"{ENROLL_PREFIX}{enrollment_id.replace('-', '')}_{secrets.token_urlsafe(32)}"
    now = rt.clock.now()
    enrollment = Enrollment(
        id=enrollment_id,
        pool_id=pool_id,
        role=parse_pool_role(body.get("role")),
        token_hash=hash_secret(token),
        max_uses=max_uses,
        uses=0,
        expires_at=now + ttl,
        created_by=principal.id,
        created_at=now,
    )
    uow.session.add(enrollment)
    return enrollment, token


def _enrollment_id(token: str) -> str | None:
    if not token.startswith(ENROLL_PREFIX):
        return None
    hex_id, sep, _ = token[len(ENROLL_PREFIX) :].partition("_")
    if not sep or len(hex_id) != 32:
        return None
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


async def enroll(rt: Runtime, uow: UnitOfWork, token: Any, name: Any) -> tuple[ApiKey, str]:
    if not isinstance(token, str):
        raise ValidationFailed("token is required")
    key_name = _key_name(name)
    enrollment_id = _enrollment_id(token)
    enrollment = await uow.session.get(Enrollment, enrollment_id) if enrollment_id else None
    if enrollment is None or not hmac.compare_digest(enrollment.token_hash, hash_secret(token)):
        raise Unauthenticated("unknown enrollment token")
    now = rt.clock.now()
    # One conditional UPDATE decides: concurrent enrolments can never exceed max_uses.
    claimed = await uow.session.execute(
        update(Enrollment)
        .where(
            Enrollment.id == enrollment.id,
            Enrollment.uses < Enrollment.max_uses,
            Enrollment.expires_at > now,
            Enrollment.revoked_at.is_(None),
        )
        .values(uses=Enrollment.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise Unauthenticated("enrollment token expired or used up")
    key, secret = _new_key(
        rt, enrollment.pool_id, key_name, PoolRole(enrollment.role), enrollment_id=enrollment.id
    )
    uow.session.add(key)
    return key, secret
