"""Tables. ORM classes are persistence only; the API renders its own schemas from them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pooldrop.store.types import UTCDateTime, new_id

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def _id() -> Mapped[str]:
    return mapped_column(String(36), primary_key=True, default=new_id)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = _id()
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class AuthSession(Base):
    """A login. Access tokens name it; revoking it kills every token at once."""

    __tablename__ = "sessions"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Pool(Base):
    __tablename__ = "pools"
    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(200))
    # Durations in microseconds: exact window arithmetic on every database.
    window_us: Mapped[int] = mapped_column(BigInteger)
    window_offset_us: Mapped[int] = mapped_column(BigInteger, default=0)
    allowed_lateness_us: Mapped[int] = mapped_column(BigInteger, default=0)
    late_policy: Mapped[str] = mapped_column(String(16))
    min_contributors: Mapped[int | None] = mapped_column(Integer)
    max_file_size: Mapped[int] = mapped_column(BigInteger)
    forbidden_types: Mapped[list[Any]]
    lease_us: Mapped[int] = mapped_column(BigInteger)
    max_attempts: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    # The per-pool event counter; bumped inside each transaction that appends an event, so
    # sequence numbers follow commit order (the row lock serializes appenders).
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class Membership(Base):
    __tablename__ = "memberships"
    pool_id: Mapped[str] = mapped_column(
        ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = _id()
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    enrollment_id: Mapped[str | None] = mapped_column(String(36))
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Enrollment(Base):
    __tablename__ = "enrollments"
    id: Mapped[str] = _id()
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64))
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (
        UniqueConstraint("pool_id", "window_start"),
        Index("ix_groups_state_due_at", "state", "due_at"),
        Index("ix_groups_state_lease_expires_at", "state", "lease_expires_at"),
    )
    id: Mapped[str] = _id()
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    # window_end + allowed_lateness: when the window trigger fires.
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str | None] = mapped_column(String(16))
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    contributors: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_id: Mapped[str | None] = mapped_column(String(36))
    lease_holder: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None]
    result_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    ready_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]


class GroupContributor(Base):
    """Who contributed to a group: the primary key makes the distinct count exact."""

    __tablename__ = "group_contributors"
    group_id: Mapped[str] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    uploader_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class Upload(Base):
    __tablename__ = "uploads"
    __table_args__ = (
        UniqueConstraint("pool_id", "uploader_id", "client_upload_id"),
        Index("ix_uploads_pool_id_id", "pool_id", "id"),
        Index("ix_uploads_uploader_id_id", "uploader_id", "id"),
    )
    id: Mapped[str] = _id()
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"))
    group_id: Mapped[str | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    uploader_id: Mapped[str] = mapped_column(String(36))
    uploader_kind: Mapped[str] = mapped_column(String(8))
    client_upload_id: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    ts: Mapped[datetime]
    received_at: Mapped[datetime]
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(255))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    blob_key: Mapped[str | None] = mapped_column(String(300))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    late: Mapped[bool] = mapped_column(Boolean, default=False)


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (Index("ix_results_pool_id_id", "pool_id", "id"),)
    id: Mapped[str] = _id()
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"))
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(255))
    blob_key: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_at", "at"),)
    pool_id: Mapped[str] = mapped_column(
        ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]]
    # None: every member sees it; else only this principal (the uploader) and pool admins.
    visible_to: Mapped[str | None] = mapped_column(String(36))


class Webhook(Base):
    __tablename__ = "webhooks"
    id: Mapped[str] = _id()
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[Any]]
    secret: Mapped[str] = mapped_column(String(255))
    # Events up to this seq have had their deliveries created.
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_seq"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )
    id: Mapped[str] = _id()
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    pool_id: Mapped[str] = mapped_column(String(36))
    event_seq: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class Transfer(Base):
    """A resumable upload in progress (tus or WebSocket); its bytes live as blob parts."""

    __tablename__ = "transfers"
    __table_args__ = (Index("ix_transfers_expires_at", "expires_at"),)
    id: Mapped[str] = _id()
    protocol: Mapped[str] = mapped_column(String(8))
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"))
    uploader_id: Mapped[str] = mapped_column(String(36))
    uploader_kind: Mapped[str] = mapped_column(String(8))
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    parts: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(255))
    ts: Mapped[datetime]
    content_type: Mapped[str] = mapped_column(String(255))
    client_upload_id: Mapped[str | None] = mapped_column(String(128))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    expected_sha256: Mapped[str | None] = mapped_column(String(64))
    # Who is writing now: a new request takes over by replacing it (no 423 for a dead client).
    writer_token: Mapped[str | None] = mapped_column(String(36))
    upload_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
