"""Who may do what in a pool: one table, read by :func:`can`."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from pooldrop.errors import ValidationFailed


class GlobalRole(StrEnum):
    """A user's role on the whole instance."""

    ADMIN = "admin"
    USER = "user"


class PoolRole(StrEnum):
    """A member's role in one pool."""

    ADMIN = "admin"
    CONTRIBUTOR = "contributor"
    LISTENER = "listener"
    AGGREGATOR = "aggregator"


class Action(StrEnum):
    """What a pool member can ask to do."""

    POOL_READ = "pool_read"
    """View the pool, its groups, results and events."""
    POOL_MANAGE = "pool_manage"
    """Edit or delete the pool; manage members, keys, enrollments and webhooks."""
    UPLOAD_CREATE = "upload_create"
    """Upload files."""
    UPLOAD_READ_ALL = "upload_read_all"
    """See every member's uploads, not only one's own."""
    GROUP_CLOSE = "group_close"
    """Close an open group now (the manual trigger)."""
    GROUP_WORK = "group_work"
    """Claim, heartbeat, release, download the archive of, and publish the result of a group."""


_A, _C, _L, _G = PoolRole.ADMIN, PoolRole.CONTRIBUTOR, PoolRole.LISTENER, PoolRole.AGGREGATOR

PERMISSIONS: MappingProxyType[Action, frozenset[PoolRole]] = MappingProxyType(
    {
        Action.POOL_READ: frozenset({_A, _C, _L, _G}),
        Action.POOL_MANAGE: frozenset({_A}),
        Action.UPLOAD_CREATE: frozenset({_A, _C}),
        Action.UPLOAD_READ_ALL: frozenset({_A}),
        Action.GROUP_CLOSE: frozenset({_A, _G}),
        Action.GROUP_WORK: frozenset({_A, _G}),
    }
)
"""The single source of truth: the pool roles allowed each action."""


def can(role: PoolRole, action: Action) -> bool:
    """True when a member with ``role`` may perform ``action`` in its pool."""
    return role in PERMISSIONS[action]


def parse_pool_role(value: object) -> PoolRole:
    """A pool role from API input; anything else is a :class:`ValidationFailed`."""
    if isinstance(value, str):
        try:
            return PoolRole(value)
        except ValueError:
            pass
    choices = ", ".join(repr(str(role)) for role in PoolRole)
    raise ValidationFailed(f"role must be one of {choices}, got {value!r}")
