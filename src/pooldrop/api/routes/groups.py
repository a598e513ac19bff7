"""Groups and the external server: list and inspect groups, close, claim, lease, archive, result."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from pooldrop.api.deps import PrincipalDep, RuntimeDep
from pooldrop.api.schemas import Body
from pooldrop.api.zerocopy import ZeroCopyStreamResponse
from pooldrop.domain.validation import expected_sha256
from pooldrop.services import archive, claims, group_queries, results
from pooldrop.services.views import group_view, result_view, upload_view

router = APIRouter(prefix="/api/v1", tags=["groups"])

_RAW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class LeaseBody(Body):
    lease_id: str


@router.get("/pools/{pool_id}/groups")
async def list_groups(
    pool_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The pool's groups, newest window first."""
    async with rt.read() as s:
        rows, next_cursor = await group_queries.list_groups(
            s, principal, pool_id, state=state, limit=limit, cursor=cursor
        )
    return {"items": [group_view(g) for g in rows], "next_cursor": next_cursor}


@router.post(
    "/pools/{pool_id}/groups/claim",
    responses={204: {"description": "No group became ready within `wait` seconds"}},
)
async def claim_next(
    pool_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    wait: Annotated[float, Query(ge=0, description="Long-poll seconds (at most 60).")] = 0,
) -> Response:
    """Claim the oldest ready group; waits up to `wait` seconds for one."""
    lease = await claims.claim_next(rt, principal, pool_id, wait, gone=request.is_disconnected)
    if lease is None:
        return Response(status_code=204)
    return JSONResponse(claims.lease_out(lease))


@router.get("/pools/{pool_id}/groups/{group_id}")
async def get_group(
    pool_id: str, group_id: str, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """The group with `manifest`: its uploads the caller may see."""
    async with rt.read() as s:
        group, uploads = await group_queries.group_with_manifest(s, principal, pool_id, group_id)
    return {**group_view(group), "manifest": [upload_view(u) for u in uploads]}


@router.post("/pools/{pool_id}/groups/{group_id}/close")
async def close_group(
    pool_id: str, group_id: str, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """`open` -> `ready` now; a group that is no longer open is returned unchanged."""
    group = await claims.close_group(rt, principal, pool_id, group_id)
    return group_view(group)


@router.post("/pools/{pool_id}/groups/{group_id}/claim")
async def claim_group(
    pool_id: str, group_id: str, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Claim this group; an open group is closed first (the manual trigger)."""
    lease = await claims.claim_group(rt, principal, pool_id, group_id)
    return claims.lease_out(lease)


@router.post("/pools/{pool_id}/groups/{group_id}/heartbeat")
async def heartbeat(
    pool_id: str, group_id: str, body: LeaseBody, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Extend the lease to now + the pool's lease length."""
    lease = await claims.heartbeat(rt, principal, pool_id, group_id, body.lease_id)
    return claims.lease_out(lease)


@router.post("/pools/{pool_id}/groups/{group_id}/release")
async def release(
    pool_id: str, group_id: str, body: LeaseBody, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Give the lease back: `ready` again (the attempt counts), or `failed` after the last one."""
    group = await claims.release(rt, principal, pool_id, group_id, body.lease_id)
    return group_view(group)


@router.get(
    "/pools/{pool_id}/groups/{group_id}/archive",
    response_class=ZeroCopyStreamResponse,
    responses={200: {"content": {"application/x-tar": {}}}},
)
async def get_archive(
    pool_id: str,
    group_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    lease_id: str | None = None,
) -> ZeroCopyStreamResponse:
    """The group's files and `manifest.json` as one streamed tar (exact Content-Length)."""
    built = await archive.open_archive(rt, principal, pool_id, group_id, lease_id)
    headers = {
        "Content-Length": str(built.size),
        # The name is ASCII by construction: no RFC 6266 encoding needed.
        "Content-Disposition": f'attachment; filename="{built.filename}"',
        "Cache-Control": "no-store",
    }
    return ZeroCopyStreamResponse(
        built.pieces(rt.blobs, spans=True), media_type="application/x-tar", headers=headers
    )


@router.put(
    "/pools/{pool_id}/groups/{group_id}/result",
    status_code=201,
    responses={200: {"description": "A retry of the same result by the same lease"}},
    openapi_extra=_RAW_BODY,
)
async def put_result(
    pool_id: str,
    group_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    lease_id: Annotated[str, Query(description="The live lease on this group.")],
    name: Annotated[str, Query(description="The result's file name (no path).")],
    content_digest: Annotated[str | None, Header(description="sha-256=:<base64>:")] = None,
) -> JSONResponse:
    """Publish the group's one result; the raw body is the file. The group becomes `done`."""
    published = await results.put_result(
        rt,
        principal,
        pool_id,
        group_id,
        lease_id,
        name,
        request.stream(),
        expected_sha256=expected_sha256(content_digest),
        content_type=request.headers.get("content-type"),
    )
    return JSONResponse(
        result_view(published.result), status_code=201 if published.created else 200
    )
