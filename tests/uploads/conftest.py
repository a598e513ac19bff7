"""Helpers for upload tests: a pool with a contributor key, and a raw upload call."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.api import Actor, Api


@dataclass
class PoolFixture:
    api: Api
    admin: Actor
    pool_id: str
    contributor: Actor

    async def upload(
        self,
        content: bytes | AsyncIterator[bytes],
        *,
        ts: datetime | float | str,
        name: str = "data.bin",
        who: Actor | None = None,
        client_upload_id: str | None = None,
        digest: bytes | None = None,
        metadata: dict[str, Any] | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        actor = who or self.contributor
        params: dict[str, str] = {
            "ts": ts.isoformat() if isinstance(ts, datetime) else str(ts),
            "name": name,
        }
        if client_upload_id:
            params["client_upload_id"] = client_upload_id
        h = dict(headers or {})
        if digest is not None:
            h["Content-Digest"] = f"sha-256=:{base64.b64encode(digest).decode()}:"
        if metadata is not None:
            h["Pooldrop-Metadata"] = metadata if isinstance(metadata, str) else json.dumps(metadata)
        return await actor.client.post(
            f"/api/v1/pools/{self.pool_id}/uploads", params=params, content=content, headers=h
        )


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture
async def pool(api: Api) -> PoolFixture:
    admin = await api.user()
    p = await api.pool(admin, window="1m")
    contributor = await api.key(admin, p["pool_id"], "contributor")
    return PoolFixture(api=api, admin=admin, pool_id=p["pool_id"], contributor=contributor)
