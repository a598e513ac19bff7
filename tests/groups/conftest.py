"""Helpers for the external server's loop: a pool with a contributor and an aggregator key."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from pooldrop.store.models import Event, Group
from tests.support.api import Actor, Api
from tests.support.server import LiveServer

# Past windows stay open this long, so a test can fill several windows before closing them.
LATENESS = "1h"


@dataclass
class Work:
    api: Api
    server: LiveServer
    admin: Actor
    pool_id: str
    contributor: Actor
    aggregator: Actor

    def url(self, suffix: str = "") -> str:
        return f"/api/v1/pools/{self.pool_id}{suffix}"

    async def upload(
        self, data: bytes, ts: datetime, name: str = "f.bin", who: Actor | None = None
    ) -> dict[str, Any]:
        r = await (who or self.contributor).client.post(
            self.url("/uploads"), params={"ts": ts.isoformat(), "name": name}, content=data
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    async def close(self, group_id: str, who: Actor | None = None) -> dict[str, Any]:
        r = await (who or self.admin).client.post(self.url(f"/groups/{group_id}/close"))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def claim_next(self, who: Actor | None = None, wait: float = 0) -> httpx.Response:
        return await (who or self.aggregator).client.post(
            self.url("/groups/claim"), params={"wait": wait}
        )

    async def claim(self, group_id: str, who: Actor | None = None) -> dict[str, Any]:
        r = await (who or self.aggregator).client.post(self.url(f"/groups/{group_id}/claim"))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def lease_call(
        self, op: str, group_id: str, lease_id: str, who: Actor | None = None
    ) -> httpx.Response:
        return await (who or self.aggregator).client.post(
            self.url(f"/groups/{group_id}/{op}"), json={"lease_id": lease_id}
        )

    async def put_result(
        self,
        group_id: str,
        lease_id: str,
        data: bytes,
        name: str = "result.bin",
        who: Actor | None = None,
        digest: bytes | None = None,
    ) -> httpx.Response:
        headers = {"Content-Type": "application/x-result"}
        if digest is not None:
            headers["Content-Digest"] = f"sha-256=:{base64.b64encode(digest).decode()}:"
        return await (who or self.aggregator).client.put(
            self.url(f"/groups/{group_id}/result"),
            params={"lease_id": lease_id, "name": name},
            content=data,
            headers=headers,
        )

    async def group(self, group_id: str) -> Group:
        async with self.server.runtime.read() as s:
            g = await s.get(Group, group_id)
            assert g is not None
            return g

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        async with self.server.runtime.read() as s:
            rows = await s.scalars(
                select(Event).where(Event.pool_id == self.pool_id).order_by(Event.seq)
            )
            return [(e.type, e.data) for e in rows.all()]

    async def event_types(self) -> list[str]:
        return [t for t, _ in await self.events()]


async def make_work(api: Api, server: LiveServer, **settings: Any) -> Work:
    admin = await api.user()
    p = await api.pool(admin, **{"window": "1m", "allowed_lateness": LATENESS, **settings})
    pid = p["pool_id"]
    return Work(
        api=api,
        server=server,
        admin=admin,
        pool_id=pid,
        contributor=await api.key(admin, pid, "contributor", name="sensor"),
        aggregator=await api.key(admin, pid, "aggregator", name="agg"),
    )


@pytest.fixture
async def work(api: Api, server: LiveServer) -> Work:
    return await make_work(api, server)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
