"""A thin test driver over the public HTTP API: sign people up, make pools, keys and members."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from tests.support.server import LiveServer

_counter = itertools.count(1)


@dataclass
class Actor:
    """Someone calling the API: a user (token) or a key (secret)."""

    id: str
    token: str
    name: str
    client: httpx.AsyncClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.anon = server.client()
        self._clients: list[httpx.AsyncClient] = [self.anon]

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for c in self._clients:
            await c.aclose()

    def _actor(self, id_: str, token: str, name: str) -> Actor:
        client = self.server.client(token)
        self._clients.append(client)
        return Actor(id=id_, token=token, name=name, client=client)

    async def user(self, name: str | None = None, password: str = "correct horse battery") -> Actor:
        name = name or f"user{next(_counter)}"
        r = await self.anon.post(
            "/api/v1/auth/signup", json={"username": name, "password": password}
        )
        assert r.status_code == 201, r.text
        body = r.json()
        return self._actor(body["user_id"], body["access_token"], name)

    async def pool(self, owner: Actor, **settings: Any) -> dict[str, Any]:
        body = {"name": f"pool{next(_counter)}", "window": "1m", **settings}
        r = await owner.client.post("/api/v1/pools", json=body)
        assert r.status_code == 201, r.text
        result: dict[str, Any] = r.json()
        return result

    async def member(self, admin: Actor, pool_id: str, role: str) -> Actor:
        user = await self.user()
        r = await admin.client.put(
            f"/api/v1/pools/{pool_id}/members/{user.id}", json={"role": role}
        )
        assert r.status_code in (200, 201), r.text
        return user

    async def key(self, admin: Actor, pool_id: str, role: str, name: str = "app") -> Actor:
        r = await admin.client.post(
            f"/api/v1/pools/{pool_id}/keys", json={"name": name, "role": role}
        )
        assert r.status_code == 201, r.text
        body = r.json()
        return self._actor(body["key_id"], body["secret"], name)
