"""A pool's webhooks and their delivery log; pool admins only (see ``services/webhooks.py``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from pooldrop.api.deps import PrincipalDep, RuntimeDep
from pooldrop.domain.timestamps import format_ts
from pooldrop.services import webhooks
from pooldrop.store.models import Webhook, WebhookDelivery

router = APIRouter(prefix="/api/v1", tags=["webhooks"])


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    events: list[str] = Field(max_length=20)
    secret: str | None = Field(None, max_length=255)


def webhook_out(hook: Webhook) -> dict[str, Any]:
    return {
        "webhook_id": hook.id,
        "pool_id": hook.pool_id,
        "url": hook.url,
        "events": hook.events,
        "active": hook.active,
        "cursor": hook.cursor,
        "created_at": format_ts(hook.created_at),
    }


def delivery_out(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "delivery_id": d.id,
        "webhook_id": d.webhook_id,
        "event_seq": d.event_seq,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": format_ts(d.next_attempt_at) if d.next_attempt_at else None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": format_ts(d.created_at),
        "delivered_at": format_ts(d.delivered_at) if d.delivered_at else None,
    }


@router.post("/pools/{pool_id}/webhooks", status_code=201)
async def create_webhook(
    pool_id: str, body: WebhookCreate, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Deliver this pool's future events to ``url``. ``events``: types, or ``["*"]`` for all.

    The signing ``secret`` (``whsec_...``) is generated unless given, and shown only here.
    """
    async with rt.uow() as uow:
        hook = await webhooks.create_webhook(
            rt, uow, principal, pool_id, body.url, body.events, body.secret
        )
    return {**webhook_out(hook), "secret": hook.secret}


@router.get("/pools/{pool_id}/webhooks")
async def list_webhooks(pool_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    async with rt.read() as s:
        hooks = await webhooks.list_webhooks(s, principal, pool_id)
    return {"items": [webhook_out(h) for h in hooks], "next_cursor": None}


@router.delete("/pools/{pool_id}/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(
    pool_id: str, webhook_id: str, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    async with rt.uow() as uow:
        await webhooks.delete_webhook(uow, principal, pool_id, webhook_id)
    return Response(status_code=204)


@router.get("/pools/{pool_id}/webhooks/{webhook_id}/deliveries")
async def list_deliveries(
    pool_id: str,
    webhook_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    """The delivery log, newest event first: status, attempts, last HTTP status and error."""
    async with rt.read() as s:
        rows, more = await webhooks.list_deliveries(
            s, principal, pool_id, webhook_id, limit=limit, before=cursor
        )
    return {"items": [delivery_out(d) for d in rows], "next_cursor": more}
