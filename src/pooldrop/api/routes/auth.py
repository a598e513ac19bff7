"""Signup, login, logout, validate; at /api/v1/auth and at the original /auth paths."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from pooldrop.api.deps import PrincipalDep, RuntimeDep, bearer_credential, client_address
from pooldrop.api.schemas import Credentials, PasswordOnly, TokenOut, ValidateOut
from pooldrop.errors import Forbidden, Unauthenticated
from pooldrop.services import auth
from pooldrop.services.auth import IssuedToken
from pooldrop.services.principals import Principal

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
legacy = APIRouter(prefix="/auth", tags=["auth (original paths)"])


def _token_out(t: IssuedToken) -> dict[str, Any]:
    return {
        "user_id": t.user.id,
        "username": t.user.username,
        "role": t.user.role,
        "access_token": t.access_token,
        "token_type": "bearer",
        "expires_in": t.expires_in,
    }


def _validate_out(p: Principal) -> dict[str, Any]:
    return {
        "principal_id": p.id,
        "kind": p.kind,
        "username": p.username,
        "role": p.role.value if p.role else None,
        "pool_id": p.pool_id,
        "pool_role": p.pool_role.value if p.pool_role else None,
    }


@router.post("/signup", status_code=201, response_model=TokenOut)
@legacy.post("/signup", status_code=201, response_model=TokenOut)
async def signup(body: Credentials, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.uow() as uow:
        issued = await auth.signup(rt, uow, body.username, body.password)
    return _token_out(issued)


@router.post("/login", response_model=TokenOut)
async def login(body: Credentials, request: Request, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.uow() as uow:
        issued = await auth.login(rt, uow, body.username, body.password, client_address(request))
    return _token_out(issued)


@legacy.put("/login/{user_name}", response_model=TokenOut)
async def login_legacy(
    user_name: str, body: PasswordOnly, request: Request, rt: RuntimeDep
) -> dict[str, Any]:
    async with rt.uow() as uow:
        issued = await auth.login(rt, uow, user_name, body.password, client_address(request))
    return _token_out(issued)


@router.post("/refresh", response_model=TokenOut)
async def refresh(request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """A fresh access token for the caller's session; the old token may already have expired."""
    credential = bearer_credential(request)
    if not credential or credential.startswith(auth.KEY_PREFIX):
        raise Unauthenticated("send the access token of a live session")
    async with rt.uow() as uow:
        issued = await auth.refresh(rt, uow, credential)
    return _token_out(issued)


@router.post("/logout", status_code=204)
async def logout(principal: PrincipalDep, rt: RuntimeDep) -> Response:
    async with rt.uow() as uow:
        await auth.logout(rt, uow, principal)
    return Response(status_code=204)


@legacy.put("/logout/{user_name}", status_code=204)
async def logout_legacy(user_name: str, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    if principal.username != user_name:
        raise Forbidden("the token does not belong to this user")
    async with rt.uow() as uow:
        await auth.logout(rt, uow, principal)
    return Response(status_code=204)


@router.get("/validate", response_model=ValidateOut)
@legacy.get("/validate", response_model=ValidateOut)
async def validate(principal: PrincipalDep) -> dict[str, Any]:
    return _validate_out(principal)
