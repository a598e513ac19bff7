"""Results: every member of a pool may list, read and download them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from pooldrop.api.deps import PrincipalDep, RuntimeDep
from pooldrop.api.downloads import blob_response
from pooldrop.services import results
from pooldrop.services.views import result_view

router = APIRouter(prefix="/api/v1", tags=["results"])


@router.get("/pools/{pool_id}/results")
async def list_results(
    pool_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    group_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The pool's results, newest first."""
    async with rt.read() as s:
        rows, next_cursor = await results.list_results(
            s, principal, pool_id, group_id=group_id, limit=limit, cursor=cursor
        )
    return {"items": [result_view(r) for r in rows], "next_cursor": next_cursor}


@router.get("/pools/{pool_id}/results/latest")
async def latest_result(pool_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """The most recently published result; 404 while there is none."""
    async with rt.read() as s:
        result = await results.latest_result(s, principal, pool_id)
    return result_view(result)


@router.get("/pools/{pool_id}/results/{result_id}")
async def get_result(
    pool_id: str, result_id: str, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    async with rt.read() as s:
        result = await results.get_result(s, principal, pool_id, result_id)
    return result_view(result)


@router.get("/pools/{pool_id}/results/{result_id}/content")
@router.head("/pools/{pool_id}/results/{result_id}/content", include_in_schema=False)
async def get_result_content(
    pool_id: str, result_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """The result file: `ETag` is its sha256; `Range` and `If-None-Match` are honoured."""
    async with rt.read() as s:
        result = await results.get_result(s, principal, pool_id, result_id)
    return await blob_response(
        request,
        rt,
        key=result.blob_key,
        size=result.size,
        sha256=result.sha256,
        content_type=result.content_type,
        filename=result.name,
    )
