"""``POST /pools/{pool_id}/batches``: many files in one streamed multipart request."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect

from pooldrop.api.deps import PrincipalDep, RuntimeDep
from pooldrop.api.multipart import read_parts
from pooldrop.api.problems import problem_body
from pooldrop.services import batches
from pooldrop.services.views import upload_view

router = APIRouter(prefix="/api/v1", tags=["uploads"])


def _render(result: batches.FileResult) -> dict[str, Any]:
    out: dict[str, Any] = {"part": result.part, "status": result.status}
    if result.upload is not None:
        out["upload"] = upload_view(result.upload)
    if result.error is not None:
        out["error"] = problem_body(result.error)
    return out


@router.post(
    "/pools/{pool_id}/batches",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "description": (
                            "First part `manifest`: JSON [{part, ts, name, client_upload_id?, "
                            "sha256?, metadata?}]; then one file part per entry, named by `part`."
                        ),
                    }
                }
            },
        }
    },
)
async def create_batch(
    pool_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Any:
    """Upload many files at once; each is stored, recognised as a duplicate, or rejected alone.

    A part the manifest does not name is skipped and reported as rejected after the entries.
    """
    try:
        async with aclosing(read_parts(request.headers.get("content-type"), request.stream())) as p:
            results = await batches.ingest_batch(rt, principal, pool_id, p)
    except ClientDisconnect:
        # Nobody is left to answer; what was stored stays, and a re-send reports it `duplicate`.
        return Response(status_code=499)
    return {"results": [_render(r) for r in results]}
