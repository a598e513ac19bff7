"""Global-admin views across every pool."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from pooldrop.api.deps import PrincipalDep, RuntimeDep
from pooldrop.api.schemas import Page, user_out
from pooldrop.errors import Forbidden
from pooldrop.services.principals import Principal
from pooldrop.store.models import User

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


def require_global_admin(principal: Principal) -> None:
    if not principal.is_global_admin:
        raise Forbidden("global admins only")


@router.get("/users", response_model=Page)
async def list_users(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    require_global_admin(principal)
    async with rt.read() as session:
        users = (await session.scalars(select(User).order_by(User.created_at, User.id))).all()
    return {"items": [user_out(u) for u in users], "next_cursor": None}
