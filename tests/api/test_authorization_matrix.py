"""Every endpoint, called as every kind of caller; the expected answer is written in each cell.

Columns: anonymous, non-member, listener, contributor, aggregator, pool admin, global admin.
Each cell runs against a fresh pool, so destructive calls do not leak into other cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import START
from tests.support.api import Actor, Api

ACTORS = ("anon", "nonmember", "listener", "contributor", "aggregator", "admin", "global_admin")


@dataclass
class World:
    api: Api
    actors: dict[str, Actor]
    spare: Actor  # a user the pool admin can add or remove

    async def fresh_pool(self) -> dict[str, str]:
        admin = self.actors["admin"]
        pool = await self.api.pool(admin)
        pid = pool["pool_id"]
        for role in ("listener", "contributor", "aggregator"):
            r = await admin.client.put(
                f"/api/v1/pools/{pid}/members/{self.actors[role].id}", json={"role": role}
            )
            assert r.status_code in (200, 201)
        r = await admin.client.put(
            f"/api/v1/pools/{pid}/members/{self.spare.id}", json={"role": "listener"}
        )
        key = await admin.client.post(
            f"/api/v1/pools/{pid}/keys", json={"name": "k", "role": "contributor"}
        )
        upload = await admin.client.post(
            f"/api/v1/pools/{pid}/uploads",
            params={"ts": START.isoformat(), "name": "m.bin"},
            content=b"m",
        )
        return {
            "pool_id": pid,
            "user_id": self.spare.id,
            "key_id": key.json()["key_id"],
            "group_id": upload.json()["group_id"],  # an open group
        }


async def build_world(api: Api) -> World:
    global_admin = await api.user("root-admin")  # first signup: global admin
    actors = {
        "global_admin": global_admin,
        "admin": await api.user(),
        "nonmember": await api.user(),
        "listener": await api.user(),
        "contributor": await api.user(),
        "aggregator": await api.user(),
    }
    return World(api=api, actors=actors, spare=await api.user())


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    expect: tuple[int, int, int, int, int, int, int]
    body: dict[str, object] | None = None


R = Row
MATRIX: list[Row] = [
    #                                                         anon non  lis  con  agg  adm  gadm
    R("GET", "/api/v1/auth/validate", (401, 200, 200, 200, 200, 200, 200)),
    R("GET", "/api/v1/pools", (401, 200, 200, 200, 200, 200, 200)),
    R("POST", "/api/v1/pools", (401, 201, 201, 201, 201, 201, 201), {"name": "n", "window": "1h"}),
    R("GET", "/api/v1/pools/{pool_id}", (401, 404, 200, 200, 200, 200, 200)),
    R("PATCH", "/api/v1/pools/{pool_id}", (401, 404, 403, 403, 403, 200, 200), {"name": "renamed"}),
    R("DELETE", "/api/v1/pools/{pool_id}", (401, 404, 403, 403, 403, 204, 204)),
    R("GET", "/api/v1/pools/{pool_id}/members", (401, 404, 403, 403, 403, 200, 200)),
    R(
        "PUT",
        "/api/v1/pools/{pool_id}/members/{user_id}",
        (401, 404, 403, 403, 403, 200, 200),
        {"role": "contributor"},
    ),
    R("DELETE", "/api/v1/pools/{pool_id}/members/{user_id}", (401, 404, 403, 403, 403, 204, 204)),
    R("GET", "/api/v1/pools/{pool_id}/keys", (401, 404, 403, 403, 403, 200, 200)),
    R(
        "POST",
        "/api/v1/pools/{pool_id}/keys",
        (401, 404, 403, 403, 403, 201, 201),
        {"name": "k2", "role": "listener"},
    ),
    R("DELETE", "/api/v1/pools/{pool_id}/keys/{key_id}", (401, 404, 403, 403, 403, 204, 204)),
    R(
        "POST",
        "/api/v1/pools/{pool_id}/enrollments",
        (401, 404, 403, 403, 403, 201, 201),
        {"role": "contributor", "max_uses": 3, "expires_in": "1h"},
    ),
    R("GET", "/api/v1/admin/users", (401, 403, 403, 403, 403, 403, 200)),
    # Groups and the external server; lease calls with a lease nobody holds.
    R("GET", "/api/v1/pools/{pool_id}/groups", (401, 404, 200, 200, 200, 200, 200)),
    R("GET", "/api/v1/pools/{pool_id}/groups/{group_id}", (401, 404, 200, 200, 200, 200, 200)),
    R(
        "POST",
        "/api/v1/pools/{pool_id}/groups/{group_id}/close",
        (401, 404, 403, 403, 200, 200, 200),
    ),
    R("POST", "/api/v1/pools/{pool_id}/groups/claim", (401, 404, 403, 403, 204, 204, 204)),
    R(
        "POST",
        "/api/v1/pools/{pool_id}/groups/{group_id}/claim",
        (401, 404, 403, 403, 200, 200, 200),
    ),
    R(
        "POST",
        "/api/v1/pools/{pool_id}/groups/{group_id}/heartbeat",
        (401, 404, 403, 403, 409, 409, 409),
        {"lease_id": "none"},
    ),
    R(
        "POST",
        "/api/v1/pools/{pool_id}/groups/{group_id}/release",
        (401, 404, 403, 403, 409, 409, 409),
        {"lease_id": "none"},
    ),
    R(
        "GET",
        "/api/v1/pools/{pool_id}/groups/{group_id}/archive?lease_id=none",
        (401, 404, 403, 403, 409, 409, 409),
    ),
    R(
        "PUT",
        "/api/v1/pools/{pool_id}/groups/{group_id}/result?lease_id=none&name=r.bin",
        (401, 404, 403, 403, 409, 409, 409),
    ),
    R("GET", "/api/v1/pools/{pool_id}/results", (401, 404, 200, 200, 200, 200, 200)),
    R("GET", "/api/v1/pools/{pool_id}/results/latest", (401, 404, 404, 404, 404, 404, 404)),
    # Events and webhooks (the SSE stream never ends, so it is checked in tests/events).
    R("GET", "/api/v1/pools/{pool_id}/events?wait=0", (401, 404, 200, 200, 200, 200, 200)),
    R(
        "POST",
        "/api/v1/pools/{pool_id}/webhooks",
        (401, 404, 403, 403, 403, 201, 201),
        {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
    ),
    R("GET", "/api/v1/pools/{pool_id}/webhooks", (401, 404, 403, 403, 403, 200, 200)),
    R(
        "DELETE",
        "/api/v1/pools/{pool_id}/webhooks/00000000-0000-7000-8000-000000000000",
        (401, 404, 403, 403, 403, 404, 404),
    ),
    R(
        "GET",
        "/api/v1/pools/{pool_id}/webhooks/00000000-0000-7000-8000-000000000000/deliveries",
        (401, 404, 403, 403, 403, 404, 404),
    ),
    # Batches: access is decided before the body is read (a JSON body is then refused, 415).
    R("POST", "/api/v1/pools/{pool_id}/batches", (401, 404, 403, 415, 403, 415, 415), {}),
    # tus: OPTIONS is public; authentication comes before the protocol version check (412).
    # Creation checks the pool named in Upload-Metadata: tests/uploads/test_tus.py.
    R("OPTIONS", "/api/v1/tus/", (204, 204, 204, 204, 204, 204, 204)),
    R("POST", "/api/v1/tus/", (401, 412, 412, 412, 412, 412, 412)),
    R("DELETE", "/api/v1/tus/{pool_id}", (401, 412, 412, 412, 412, 412, 412)),
]


@pytest.mark.parametrize("row", MATRIX, ids=[f"{r.method} {r.path}" for r in MATRIX])
async def test_matrix(api: Api, row: Row) -> None:
    world = await build_world(api)
    got: list[int] = []
    for actor_name in ACTORS:
        ids = await world.fresh_pool()
        path = row.path.format(**ids)
        client = api.anon if actor_name == "anon" else world.actors[actor_name].client
        r = await client.request(row.method, path, json=row.body)
        got.append(r.status_code)
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/problem+json"), (
                actor_name,
                r.text,
            )
            assert "code" in r.json()
    assert tuple(got) == row.expect, dict(zip(ACTORS, got, strict=True))
