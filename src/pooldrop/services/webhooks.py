"""Webhooks: a pool's events POSTed to outside URLs, signed per Standard Webhooks, retried.

Two scheduler jobs, each safe to run on several nodes at once:

``enqueue_deliveries``
    For each active webhook behind its pool's event head, reads the events after
    ``webhooks.cursor`` and creates one ``webhook_deliveries`` row per matching event, advancing
    the cursor with a compare-and-set (``UPDATE ... WHERE cursor = <seen>``) in the same
    transaction: a node that lost the race writes nothing. Only events every member may see
    (``visible_to`` is NULL) are delivered: upload events are private to their uploader and the
    pool admins, and a webhook URL is not a principal that could be checked against that.
``send_due_deliveries``
    Claims each due delivery with a conditional UPDATE (``attempts = <seen>`` and still due),
    moving ``next_attempt_at`` forward by ``CLAIM_SECONDS`` so no other node sends it meanwhile,
    then POSTs the event JSON and records the outcome: ``delivered`` on a 2xx, else another try
    after a jittered backoff (``BACKOFF``), ``failed`` after ``MAX_ATTEMPTS``. A node that dies
    mid-send leaves the claim to expire, and the delivery is tried again.

Signing (https://www.standardwebhooks.com): headers ``webhook-id`` (the delivery id, the same on
every retry, so receivers can deduplicate), ``webhook-timestamp`` (Unix seconds of this attempt)
and ``webhook-signature: v1,<base64 HMAC-SHA256>`` of ``"{id}.{timestamp}.{body}"`` keyed with
the base64-decoded part of the ``whsec_`` secret. The body is the event object of API.md
(``{seq, pool_id, type, at, data}``), byte for byte what the other channels send.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import delete, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop import __version__
from pooldrop.domain.roles import Action
from pooldrop.errors import NotFound, ValidationFailed
from pooldrop.services.access import pool_access
from pooldrop.services.events import EVENT_TYPES, event_out
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime
from pooldrop.store.db import UnitOfWork
from pooldrop.store.models import Event, Pool, Webhook, WebhookDelivery
from pooldrop.store.types import new_id

log = logging.getLogger("pooldrop.webhooks")

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
ALL_EVENTS = "*"
BACKOFF: tuple[float, ...] = (5, 30, 120, 600, 1800, 7200, 21600)
"""Seconds before the next try after attempt 1, 2, ...; each stretched by up to JITTER."""
MAX_ATTEMPTS = len(BACKOFF) + 1
JITTER = 0.25
SEND_TIMEOUT = 5.0
CLAIM_SECONDS = 60.0
"""How long a claimed delivery stays invisible to other nodes; well above SEND_TIMEOUT."""
ENQUEUE_BATCH = 500
# One pass sends its whole batch at once, so a hanging receiver costs the scheduler's pass
# (window triggers, lease expiry) at most about SEND_TIMEOUT, not SEND_TIMEOUT per delivery.
SEND_BATCH = 50
SEND_CONCURRENCY = 50

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

_jitter = random.Random()


# -- validation and signing -------------------------------------------------------------------


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def _secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def validate_secret(secret: str) -> str:
    """A ``whsec_`` + base64 secret of 24 to 64 bytes (the Standard Webhooks range)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValidationFailed("secret must look like whsec_<base64 of 24 to 64 random bytes>")
    try:
        key = _secret_key(secret)
    except (binascii.Error, ValueError):
        raise ValidationFailed("secret: the part after whsec_ is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValidationFailed(f"secret must decode to 24 to 64 bytes, not {len(key)}")
    return secret


def validate_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("url must be an absolute http:// or https:// URL")
    if len(url) > 2048:
        raise ValidationFailed("url is longer than 2048 characters")
    return url


def validate_event_types(types: list[str]) -> list[str]:
    """Known event types, or ``["*"]`` for all of them."""
    if not types:
        raise ValidationFailed('events must name at least one event type, or ["*"] for all')
    unknown = [t for t in types if t != ALL_EVENTS and t not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(
            f"unknown event type(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(EVENT_TYPES)}"
        )
    return [ALL_EVENTS] if ALL_EVENTS in types else sorted(set(types))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one request."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed try (jittered upwards only)."""
    base = BACKOFF[min(attempts, len(BACKOFF)) - 1]
    return base * (1 + JITTER * _jitter.random())


def wants(webhook: Webhook, event: Event) -> bool:
    if event.visible_to is not None:
        return False
    return ALL_EVENTS in webhook.events or event.type in webhook.events


# -- management -------------------------------------------------------------------------------


async def create_webhook(
    rt: Runtime,
    uow: UnitOfWork,
    principal: Principal,
    pool_id: str,
    url: str,
    events: list[str],
    secret: str | None,
) -> Webhook:
    """A webhook for events from now on (its cursor starts at the pool's head)."""
    access = await pool_access(uow.session, principal, pool_id, Action.POOL_MANAGE)
    hook = Webhook(
        id=new_id(),
        pool_id=pool_id,
        url=validate_url(url),
        events=validate_event_types(events),
        secret=validate_secret(secret) if secret is not None else generate_secret(),
        cursor=access.pool.event_seq,
        active=True,
        created_by=principal.id,
        created_at=rt.clock.now(),
    )
    uow.session.add(hook)
    return hook


async def list_webhooks(s: AsyncSession, principal: Principal, pool_id: str) -> list[Webhook]:
    await pool_access(s, principal, pool_id, Action.POOL_MANAGE)
    rows = await s.scalars(
        select(Webhook).where(Webhook.pool_id == pool_id).order_by(Webhook.created_at, Webhook.id)
    )
    return list(rows.all())


async def _webhook(s: AsyncSession, principal: Principal, pool_id: str, hook_id: str) -> Webhook:
    await pool_access(s, principal, pool_id, Action.POOL_MANAGE)
    hook = await s.get(Webhook, hook_id)
    if hook is None or hook.pool_id != pool_id:
        raise NotFound("no such webhook")
    return hook


async def delete_webhook(uow: UnitOfWork, principal: Principal, pool_id: str, hook_id: str) -> None:
    hook = await _webhook(uow.session, principal, pool_id, hook_id)
    await uow.session.delete(hook)


async def list_deliveries(
    s: AsyncSession,
    principal: Principal,
    pool_id: str,
    hook_id: str,
    *,
    limit: int,
    before: int | None,
) -> tuple[list[WebhookDelivery], int | None]:
    """The delivery log, newest event first; the second value is the next page's ``before``."""
    await _webhook(s, principal, pool_id, hook_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id)
    if before is not None:
        stmt = stmt.where(WebhookDelivery.event_seq < before)
    rows = list(
        (await s.scalars(stmt.order_by(WebhookDelivery.event_seq.desc()).limit(limit + 1))).all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].event_seq if more and rows else None)


# -- enqueueing -------------------------------------------------------------------------------


async def enqueue_deliveries(rt: Runtime) -> int:
    """Scheduler job: create deliveries for new events; returns how many were created."""
    async with rt.read() as s:
        behind = (
            await s.execute(
                select(Webhook.id, Webhook.cursor)
                .join(Pool, Pool.id == Webhook.pool_id)
                .where(Webhook.active == true(), Webhook.cursor < Pool.event_seq)
                .limit(ENQUEUE_BATCH)
            )
        ).all()
    created = 0
    for hook_id, cursor in behind:
        created += await _enqueue_one(rt, hook_id, cursor)
    return created


async def _enqueue_one(rt: Runtime, hook_id: str, cursor: int) -> int:
    async with rt.uow() as uow:
        s = uow.session
        hook = await s.get(Webhook, hook_id)
        if hook is None or hook.cursor != cursor:
            return 0
        head = await s.scalar(select(Pool.event_seq).where(Pool.id == hook.pool_id))
        if head is None:
            return 0
        events = (
            await s.scalars(
                select(Event)
                .where(Event.pool_id == hook.pool_id, Event.seq > cursor)
                .order_by(Event.seq)
                .limit(ENQUEUE_BATCH)
            )
        ).all()
        # A short page saw every event up to head (purged ones are simply not delivered).
        new_cursor = events[-1].seq if len(events) == ENQUEUE_BATCH else head
        won = await s.execute(
            update(Webhook)
            .where(Webhook.id == hook_id, Webhook.cursor == cursor)
            .values(cursor=new_cursor)
            .execution_options(synchronize_session=False)
        )
        if getattr(won, "rowcount", 0) != 1:
            return 0  # another node enqueued this range
        now = rt.clock.now()
        fresh = [
            WebhookDelivery(
                id=new_id(),
                webhook_id=hook_id,
                pool_id=hook.pool_id,
                event_seq=e.seq,
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            for e in events
            if e.seq <= new_cursor and wants(hook, e)
        ]
        s.add_all(fresh)
    return len(fresh)


async def purge_old_deliveries(rt: Runtime) -> int:
    """Scheduler job: forget finished deliveries older than the event retention."""
    cutoff = rt.clock.now() - timedelta(seconds=rt.settings.event_retention)
    async with rt.uow() as uow:
        result = await uow.session.execute(
            delete(WebhookDelivery)
            .where(WebhookDelivery.status != PENDING, WebhookDelivery.created_at < cutoff)
            .execution_options(synchronize_session=False)
        )
    return int(getattr(result, "rowcount", 0) or 0)


# -- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    delivery_id: str
    attempts: int  # after this try
    url: str
    secret: str
    body: bytes | None  # None: the event was purged before it could be sent


async def send_due_deliveries(rt: Runtime) -> int:
    """Scheduler job: send every due delivery once; returns how many were attempted."""
    now = rt.clock.now()
    async with rt.read() as s:
        due = (
            await s.execute(
                select(WebhookDelivery.id, WebhookDelivery.attempts)
                .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(SEND_BATCH)
            )
        ).all()
    if not due:
        return 0
    gate = asyncio.Semaphore(SEND_CONCURRENCY)
    async with httpx.AsyncClient(timeout=SEND_TIMEOUT, follow_redirects=False) as client:

        async def one(delivery_id: str, attempts: int) -> int:
            async with gate:
                claim = await _claim(rt, delivery_id, attempts)
                if claim is None:
                    return 0
                await _attempt(rt, client, claim)
                return 1

        sent = await asyncio.gather(*(one(d, a) for d, a in due))
    return sum(sent)


async def _claim(rt: Runtime, delivery_id: str, seen_attempts: int) -> _Claim | None:
    now = rt.clock.now()
    async with rt.uow() as uow:
        s = uow.session
        won = await s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.attempts == seen_attempts,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(
                attempts=seen_attempts + 1,
                next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS),
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(won, "rowcount", 0) != 1:
            return None
        row = (
            await s.execute(
                select(WebhookDelivery, Webhook)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.id == delivery_id)
            )
        ).first()
        if row is None:
            return None
        delivery, hook = row
        event = await s.get(Event, (delivery.pool_id, delivery.event_seq))
        body = orjson.dumps(event_out(event)) if event is not None else None
        return _Claim(delivery_id, seen_attempts + 1, hook.url, hook.secret, body)


async def _attempt(rt: Runtime, client: httpx.AsyncClient, claim: _Claim) -> None:
    if claim.body is None:
        await _record(rt, claim, None, "the event was purged before it could be delivered", True)
        return
    timestamp = int(rt.clock.now().timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": f"pooldrop-webhooks/{__version__}",
        "webhook-id": claim.delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(claim.secret, claim.delivery_id, timestamp, claim.body),
    }
    status: int | None = None
    error: str | None = None
    try:
        # httpx's timeout is per phase; this bounds the whole exchange (a slow-drip receiver).
        async with asyncio.timeout(SEND_TIMEOUT):
            # Streamed and never read: a receiver cannot make us buffer a large answer.
            async with client.stream("POST", claim.url, content=claim.body, headers=headers) as r:
                status = r.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except TimeoutError:
        error = f"no answer within {SEND_TIMEOUT:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    log.info(
        "webhook delivery %s attempt %d: %s",
        claim.delivery_id,
        claim.attempts,
        error or f"HTTP {status}",
    )
    await _record(rt, claim, status, error, False)


async def _record(
    rt: Runtime, claim: _Claim, status: int | None, error: str | None, give_up: bool
) -> None:
    now = rt.clock.now()
    values: dict[str, Any] = {"last_status_code": status, "last_error": error}
    if error is None:
        values |= {"status": DELIVERED, "delivered_at": now, "next_attempt_at": None}
    elif give_up or claim.attempts >= MAX_ATTEMPTS:
        values |= {"status": FAILED, "next_attempt_at": None}
    else:
        values["next_attempt_at"] = now + timedelta(seconds=backoff(claim.attempts))
    async with rt.uow() as uow:
        # Only the claimer of this attempt writes its outcome.
        await uow.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == claim.delivery_id,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.attempts == claim.attempts,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
