"""Typed views of the API's JSON answers.

Models accept fields they do not know (the API may add fields) and keep them reachable through
``model_extra``; the fields API.md names are typed. Times are timezone-aware ``datetime``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Session(Model):
    """The answer of signup and login."""

    user_id: str
    username: str
    role: str
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class Identity(Model):
    """Who the server thinks the caller is (``GET /auth/validate``)."""

    principal_id: str
    kind: Literal["user", "key"]
    username: str | None = None
    role: str | None = None
    pool_id: str | None = None
    pool_role: str | None = None


class Pool(Model):
    pool_id: str
    name: str
    window: str
    window_offset: str = "0s"
    allowed_lateness: str = "0s"
    late_policy: str = "reject"
    min_contributors: int | None = None
    max_file_size: int
    forbidden_types: list[str] = Field(default_factory=list)
    lease: str
    max_attempts: int
    created_at: datetime
    role: str | None = Field(None, description="The caller's role in this pool.")


class Member(Model):
    pool_id: str
    user_id: str
    username: str
    role: str
    created_at: datetime


class Key(Model):
    key_id: str
    pool_id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None
    enrollment_id: str | None = None


class KeySecret(Model):
    """A freshly created or enrolled key; ``secret`` is shown only this once."""

    key_id: str
    pool_id: str
    name: str | None = None
    role: str
    secret: str


class Enrollment(Model):
    enrollment_id: str | None = None
    pool_id: str | None = None
    role: str | None = None
    max_uses: int | None = None
    expires_at: datetime | None = None
    token: str


class Upload(Model):
    upload_id: str
    pool_id: str
    group_id: str | None = None
    uploader_id: str | None = None
    client_upload_id: str | None = None
    name: str
    ts: datetime
    received_at: datetime | None = None
    size: int
    sha256: str
    content_type: str | None = None
    metadata: dict[str, Any] | None = None
    status: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    late: bool = False


class BatchItem(Model):
    """One file's fate in a batch: ``stored``, ``duplicate`` or ``rejected`` (with ``error``)."""

    part: str
    status: Literal["stored", "duplicate", "rejected"]
    upload: Upload | None = None
    error: dict[str, Any] | None = None

    @property
    def code(self) -> str | None:
        """The problem code of a rejection."""
        return None if self.error is None else self.error.get("code")


class BatchResult(Model):
    results: list[BatchItem]


class Group(Model):
    group_id: str
    pool_id: str
    window_start: datetime
    window_end: datetime
    state: str
    file_count: int = 0
    bytes: int = 0
    contributors: int = 0
    attempts: int = 0
    lease_expires_at: datetime | None = None
    result_id: str | None = None
    manifest: list[Upload] | None = None


class Claim(Model):
    """A group held under a lease: heartbeat before ``lease_expires_at`` to keep it."""

    group: Group
    lease_id: str
    lease_expires_at: datetime
    lease_seconds: float | None = None


class Result(Model):
    result_id: str
    pool_id: str
    group_id: str
    name: str
    size: int
    sha256: str
    created_at: datetime
    url: str | None = None


class Event(Model):
    seq: int
    pool_id: str
    type: str
    at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class Page(Model, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
