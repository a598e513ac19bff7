"""Liveness, readiness (every backend reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import text

from pooldrop.api.deps import RuntimeDep
from pooldrop.config import redact_url
from pooldrop.services.runtime import Runtime

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


class _HubCollector:
    """The event hub's live counters, read at scrape time (no state kept in prometheus_client)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        hub = self.rt.hub
        if hub is None:
            return
        yield GaugeMetricFamily(
            "pooldrop_event_subscribers",
            "Live event subscriptions on this node.",
            value=hub.subscriber_count,
        )
        for field in fields(hub.stats):
            yield CounterMetricFamily(
                f"pooldrop_hub_{field.name}",
                f"Event hub: {field.name} since start.",
                value=getattr(hub.stats, field.name),
            )


@router.get("/metrics")
async def metrics(rt: RuntimeDep) -> Response:
    # Process and platform metrics from the default registry, then this app's own.
    own = CollectorRegistry(auto_describe=False)
    own.register(_HubCollector(rt))
    return Response(generate_latest() + generate_latest(own), media_type=CONTENT_TYPE_LATEST)
