"""Pools, members, keys, enrolment tokens, and the unauthenticated enrol call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from pooldrop.api.deps import PrincipalDep, RuntimeDep
from pooldrop.api.schemas import (
    EnrollBody,
    EnrollmentCreate,
    EnrollmentOut,
    KeyCreate,
    KeyCreated,
    MemberOut,
    MemberPut,
    Page,
    PoolCreate,
    PoolOut,
    PoolPatch,
    key_out,
    member_out,
    pool_out,
)
from pooldrop.domain.roles import PoolRole
from pooldrop.domain.timestamps import format_ts
from pooldrop.services import keys, pools
from pooldrop.services.access import pool_access

router = APIRouter(prefix="/api/v1", tags=["pools"])


@router.post("/pools", status_code=201, response_model=PoolOut)
async def create_pool(body: PoolCreate, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.uow() as uow:
        pool = await pools.create_pool(rt, uow, principal, body.model_dump(exclude_none=True))
    return pool_out(pool, PoolRole.ADMIN)


@router.get("/pools", response_model=Page)
async def list_pools(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.uow() as uow:
        rows = await pools.list_pools(uow, principal)
    return {"items": [pool_out(p, r) for p, r in rows], "next_cursor": None}


@router.get("/pools/{pool_id}", response_model=PoolOut)
async def get_pool(pool_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.read() as session:
        access = await pool_access(session, principal, pool_id)
    return pool_out(access.pool, access.role)


@router.patch("/pools/{pool_id}", response_model=PoolOut)
async def patch_pool(
    pool_id: str, body: PoolPatch, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    async with rt.uow() as uow:
        pool = await pools.update_pool(
            rt, uow, principal, pool_id, body.model_dump(exclude_unset=True)
        )
    return pool_out(pool, PoolRole.ADMIN)


@router.delete("/pools/{pool_id}", status_code=204)
async def delete_pool(pool_id: str, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    async with rt.uow() as uow:
        await pools.delete_pool(rt, uow, principal, pool_id)
    return Response(status_code=204)


@router.get("/pools/{pool_id}/members", response_model=Page)
async def list_members(pool_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.uow() as uow:
        rows = await pools.list_members(uow, principal, pool_id)
    return {"items": [member_out(m, u) for m, u in rows], "next_cursor": None}


@router.put("/pools/{pool_id}/members/{user_id}", response_model=MemberOut)
async def put_member(
    pool_id: str,
    user_id: str,
    body: MemberPut,
    principal: PrincipalDep,
    rt: RuntimeDep,
    response: Response,
) -> dict[str, Any]:
    async with rt.uow() as uow:
        m, u, created = await pools.put_member(rt, uow, principal, pool_id, user_id, body.role)
    response.status_code = 201 if created else 200
    return member_out(m, u)


@router.delete("/pools/{pool_id}/members/{user_id}", status_code=204)
async def remove_member(
    pool_id: str, user_id: str, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    async with rt.uow() as uow:
        await pools.remove_member(uow, principal, pool_id, user_id)
    return Response(status_code=204)


@router.post("/pools/{pool_id}/keys", status_code=201, response_model=KeyCreated)
async def create_key(
    pool_id: str, body: KeyCreate, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    async with rt.uow() as uow:
        key, secret = await keys.create_key(rt, uow, principal, pool_id, body.model_dump())
    return {
        "key_id": key.id,
        "pool_id": pool_id,
        "name": key.name,
        "role": key.role,
        "secret": secret,
    }


@router.get("/pools/{pool_id}/keys", response_model=Page)
async def list_keys(pool_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.uow() as uow:
        rows = await keys.list_keys(uow, principal, pool_id)
    return {"items": [key_out(k) for k in rows], "next_cursor": None}


@router.delete("/pools/{pool_id}/keys/{key_id}", status_code=204)
async def revoke_key(
    pool_id: str, key_id: str, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    async with rt.uow() as uow:
        await keys.revoke_key(rt, uow, principal, pool_id, key_id)
    return Response(status_code=204)


@router.post("/pools/{pool_id}/enrollments", status_code=201, response_model=EnrollmentOut)
async def create_enrollment(
    pool_id: str, body: EnrollmentCreate, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    async with rt.uow() as uow:
        e, token = await keys.create_enrollment(rt, uow, principal, pool_id, body.model_dump())
    return {
        "enrollment_id": e.id,
        "pool_id": pool_id,
        "role": e.role,
        "max_uses": e.max_uses,
        "expires_at": format_ts(e.expires_at),
        "token": token,
    }


@router.post("/enroll", status_code=201, response_model=KeyCreated, tags=["enrolment"])
async def enroll(body: EnrollBody, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.uow() as uow:
        key, secret = await keys.enroll(rt, uow, body.token, body.name)
    return {
        "key_id": key.id,
        "pool_id": key.pool_id,
        "name": key.name,
        "role": key.role,
        "secret": secret,
    }
