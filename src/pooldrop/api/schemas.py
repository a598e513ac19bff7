"""Request bodies and response shapes of the public API (see API.md). Rows are rendered here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pooldrop.domain.roles import PoolRole
from pooldrop.domain.timestamps import format_ts
from pooldrop.services.pools import settings_of
from pooldrop.store.models import ApiKey, Membership, Pool, User

Duration = str | float


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(Body):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class PasswordOnly(Body):
    password: str = Field(max_length=1024)


class TokenOut(BaseModel):
    user_id: str
    username: str
    role: str
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class ValidateOut(BaseModel):
    principal_id: str
    kind: Literal["user", "key"]
    username: str | None = None
    role: str | None = None
    pool_id: str | None = None
    pool_role: str | None = None


class PoolPatch(Body):
    name: str | None = None
    window: Duration | None = None
    window_offset: Duration | None = None
    allowed_lateness: Duration | None = None
    late_policy: Literal["reject", "next_open"] | None = None
    min_contributors: int | None = None
    max_file_size: int | None = None
    forbidden_types: list[str] | None = None
    lease: Duration | None = None
    max_attempts: int | None = None


class PoolCreate(PoolPatch):
    """A new pool: the settings of a patch, with a name and a window required."""

    name: str
    window: Duration


class PoolOut(BaseModel):
    pool_id: str
    name: str
    window: str
    window_offset: str
    allowed_lateness: str
    late_policy: str
    min_contributors: int | None
    max_file_size: int
    forbidden_types: list[str]
    lease: str
    max_attempts: int
    created_at: str
    role: str = Field(description="The caller's role in this pool.")


class MemberPut(Body):
    role: PoolRole


class MemberOut(BaseModel):
    pool_id: str
    user_id: str
    username: str
    role: str
    created_at: str


class KeyCreate(Body):
    name: str
    role: PoolRole


class KeyOut(BaseModel):
    key_id: str
    pool_id: str
    name: str
    role: str
    created_at: str
    revoked_at: str | None
    enrollment_id: str | None


class KeyCreated(BaseModel):
    key_id: str
    pool_id: str
    name: str
    role: str
    secret: str = Field(description="Shown once; store it now.")


class EnrollmentCreate(Body):
    role: PoolRole
    max_uses: int
    expires_in: Duration = "7d"


class EnrollmentOut(BaseModel):
    enrollment_id: str
    pool_id: str
    role: str
    max_uses: int
    expires_at: str
    token: str = Field(description="Shown once; hand it to the apps that should enrol.")


class EnrollBody(Body):
    token: str
    name: str


class UserOut(BaseModel):
    user_id: str
    username: str
    role: str
    created_at: str


class Page(BaseModel):
    items: list[Any]
    next_cursor: str | None = None


def pool_out(pool: Pool, role: PoolRole) -> dict[str, Any]:
    out = settings_of(pool).to_output()
    return {
        "pool_id": pool.id,
        "name": pool.name,
        **out,
        "created_at": format_ts(pool.created_at),
        "role": role.value,
    }


def member_out(m: Membership, u: User) -> dict[str, Any]:
    return {
        "pool_id": m.pool_id,
        "user_id": u.id,
        "username": u.username,
        "role": m.role,
        "created_at": format_ts(m.created_at),
    }


def key_out(k: ApiKey) -> dict[str, Any]:
    return {
        "key_id": k.id,
        "pool_id": k.pool_id,
        "name": k.name,
        "role": k.role,
        "created_at": format_ts(k.created_at),
        "revoked_at": format_ts(k.revoked_at) if k.revoked_at else None,
        "enrollment_id": k.enrollment_id,
    }


def user_out(u: User) -> dict[str, Any]:
    return {
        "user_id": u.id,
        "username": u.username,
        "role": u.role,
        "created_at": format_ts(u.created_at),
    }
