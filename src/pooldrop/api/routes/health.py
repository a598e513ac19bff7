"""Liveness, readiness (every backend reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from pooldrop.api.deps import RuntimeDep
from pooldrop.config import redact_url

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(rt: RuntimeDep) -> JSONResponse:
    async def database() -> None:
        async with rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    checks = {"database": database(), "storage": rt.blobs.ping(), "bus": rt.bus.ping()}
    names = list(checks)
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(c, CHECK_TIMEOUT) for c in checks.values()), return_exceptions=True
    )
    report: dict[str, Any] = {}
    for name, outcome in zip(names, outcomes, strict=True):
        report[name] = (
            {"ok": True}
            if not isinstance(outcome, BaseException)
            else {"ok": False, "error": type(outcome).__name__ + ": " + str(outcome)[:200]}
        )
    report["database"]["url"] = redact_url(rt.settings.database_url)
    report["storage"]["url"] = rt.blobs.url
    report["bus"]["url"] = rt.bus.url
    ok = all(v["ok"] for v in report.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": report}, 200 if ok else 503
    )


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
