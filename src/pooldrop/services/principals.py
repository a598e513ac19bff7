"""Who is calling: a user (password + session) or a pool-scoped key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pooldrop.domain.roles import GlobalRole, PoolRole


@dataclass(frozen=True)
class Principal:
    id: str
    kind: Literal["user", "key"]
    username: str | None = None
    role: GlobalRole | None = None  # users only
    session_id: str | None = None  # users only
    pool_id: str | None = None  # keys only
    pool_role: PoolRole | None = None  # keys only
    name: str | None = None  # keys only

    @property
    def is_global_admin(self) -> bool:
        return self.kind == "user" and self.role == GlobalRole.ADMIN
