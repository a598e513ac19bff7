"""Plain uploads, upload history and content downloads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from pooldrop.api.deps import PrincipalDep, RuntimeDep
from pooldrop.api.downloads import blob_response
from pooldrop.api.routes.admin import require_global_admin
from pooldrop.domain.validation import expected_sha256, parse_count
from pooldrop.errors import ValidationFailed
from pooldrop.services import upload_queries, uploads
from pooldrop.services.views import upload_view

router = APIRouter(prefix="/api/v1", tags=["uploads"])

MAX_METADATA_HEADER = 8192


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    return None if raw is None else parse_count(raw, "Content-Length")


def _param(name: str, where: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


@router.post(
    "/pools/{pool_id}/uploads",
    status_code=201,
    responses={200: {"description": "An identical replay of a known client_upload_id"}},
    openapi_extra={
        # The hottest route reads its query and headers itself: FastAPI's per-parameter
        # validation was a tenth of the server's time per small upload. They are documented here.
        "parameters": [
            _param("ts", "query", "Event time: RFC 3339 or Unix seconds.", required=True),
            _param("name", "query", "File name (no path).", required=True),
            _param("client_upload_id", "query", "Makes retries safe."),
            _param("content-digest", "header", "sha-256=:<base64>:"),
            _param("pooldrop-metadata", "header", "JSON object, at most 4 KiB."),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
    },
)
async def create_upload(
    pool_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> JSONResponse:
    """Upload one file; the raw request body is the file, streamed to storage."""
    query, headers = request.query_params, request.headers
    pooldrop_metadata = headers.get("pooldrop-metadata")
    if pooldrop_metadata is not None and len(pooldrop_metadata) > MAX_METADATA_HEADER:
        raise ValidationFailed("Pooldrop-Metadata is too large")
    spec = uploads.UploadSpec(
        pool_id=pool_id,
        name=query.get("name"),
        ts=query.get("ts"),
        client_upload_id=query.get("client_upload_id"),
        content_type=headers.get("content-type"),
        metadata=pooldrop_metadata,
        expected_sha256=expected_sha256(headers.get("content-digest")),
        content_length=_content_length(request),
    )
    prepared = await uploads.prepare(rt, principal, spec)
    outcome = await uploads.ingest(rt, prepared, request.stream())
    return JSONResponse(upload_view(outcome.upload), status_code=201 if outcome.created else 200)


@router.get("/pools/{pool_id}/uploads")
async def list_pool_uploads(
    pool_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    mine: bool = False,
    group_id: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    async with rt.read() as s:
        rows, next_cursor = await upload_queries.list_pool_uploads(
            s,
            principal,
            pool_id,
            mine=mine,
            group_id=group_id,
            status=status,
            limit=limit,
            cursor=cursor,
        )
    return {"items": [upload_view(u) for u in rows], "next_cursor": next_cursor}


@router.get("/pools/{pool_id}/uploads/{upload_id}")
async def get_upload(
    pool_id: str, upload_id: str, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    async with rt.read() as s:
        upload = await upload_queries.get_upload(s, principal, pool_id, upload_id)
    return upload_view(upload)


@router.get("/pools/{pool_id}/uploads/{upload_id}/content")
@router.head("/pools/{pool_id}/uploads/{upload_id}/content", include_in_schema=False)
async def get_upload_content(
    pool_id: str, upload_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    async with rt.read() as s:
        upload = await upload_queries.get_upload(s, principal, pool_id, upload_id, stored=True)
    assert upload.blob_key is not None
    return await blob_response(
        request,
        rt,
        key=upload.blob_key,
        size=upload.size,
        sha256=upload.sha256,
        content_type=upload.content_type,
        filename=upload.name,
    )


@router.get("/uploads")
async def my_uploads(
    principal: PrincipalDep,
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    async with rt.read() as s:
        rows, next_cursor = await upload_queries.list_uploads(
            s, uploader_id=principal.id, limit=limit, cursor=cursor
        )
    return {"items": [upload_view(u) for u in rows], "next_cursor": next_cursor}


@router.get("/admin/uploads", tags=["admin"])
async def all_uploads(
    principal: PrincipalDep,
    rt: RuntimeDep,
    uploader_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    require_global_admin(principal)
    async with rt.read() as s:
        rows, next_cursor = await upload_queries.list_uploads(
            s, uploader_id=uploader_id, limit=limit, cursor=cursor
        )
    return {"items": [upload_view(u) for u in rows], "next_cursor": next_cursor}
