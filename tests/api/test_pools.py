"""Pools, members, keys and enrolment through the HTTP API."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.api import Api
from tests.support.server import LiveServer


async def test_create_pool_defaults_and_validation(api: Api) -> None:
    owner = await api.user()
    pool = await api.pool(owner, window="15m")
    assert pool["window"] == "15m"
    assert pool["allowed_lateness"] == "0s"
    assert pool["late_policy"] == "reject"
    assert pool["max_file_size"] == 67108864
    assert pool["lease"] == "5m" and pool["max_attempts"] == 3
    assert pool["role"] == "admin"
    for bad in (
        {"window": "30s"},
        {"window": "31d"},
        {"window": "PT1M", "lease": "0s"},
        {"window": "1m", "late_policy": "later"},
        {"window": "1m", "max_attempts": 0},
        {"window": "banana"},
    ):
        r = await owner.client.post("/api/v1/pools", json={"name": "p", **bad})
        assert r.status_code == 422, bad
        assert r.json()["code"] == "validation_error"
    ok = await owner.client.post(
        "/api/v1/pools", json={"name": "iso", "window": "PT1H", "lease": 90}
    )
    assert ok.status_code == 201 and ok.json()["window"] == "1h" and ok.json()["lease"] == "1m30s"


async def test_list_get_patch_delete(api: Api) -> None:
    owner = await api.user()
    stranger = await api.user()
    pool = await api.pool(owner)
    pid = pool["pool_id"]
    listed = (await owner.client.get("/api/v1/pools")).json()["items"]
    assert [p["pool_id"] for p in listed] == [pid]
    assert (await stranger.client.get("/api/v1/pools")).json()["items"] == []
    r = await owner.client.patch(f"/api/v1/pools/{pid}", json={"window": "2h", "name": "renamed"})
    assert r.status_code == 200 and r.json()["window"] == "2h" and r.json()["name"] == "renamed"
    r = await owner.client.patch(f"/api/v1/pools/{pid}", json={"window_offset": "3h"})
    assert r.status_code == 422  # offset must stay below the window
    assert (await stranger.client.get(f"/api/v1/pools/{pid}")).status_code == 404
    assert (await owner.client.delete(f"/api/v1/pools/{pid}")).status_code == 204
    assert (await owner.client.get(f"/api/v1/pools/{pid}")).status_code == 404


async def test_members(api: Api) -> None:
    owner = await api.user()
    pid = (await api.pool(owner))["pool_id"]
    bob = await api.user()
    r = await owner.client.put(f"/api/v1/pools/{pid}/members/{bob.id}", json={"role": "listener"})
    assert r.status_code == 201 and r.json()["role"] == "listener"
    r = await owner.client.put(
        f"/api/v1/pools/{pid}/members/{bob.id}", json={"role": "contributor"}
    )
    assert r.status_code == 200 and r.json()["role"] == "contributor"
    assert (await bob.client.get(f"/api/v1/pools/{pid}")).json()["role"] == "contributor"
    members = (await owner.client.get(f"/api/v1/pools/{pid}/members")).json()["items"]
    assert {m["username"]: m["role"] for m in members} == {
        owner.name: "admin",
        bob.name: "contributor",
    }
    r = await owner.client.put(f"/api/v1/pools/{pid}/members/{bob.id}", json={"role": "boss"})
    assert r.status_code == 422
    r = await owner.client.put(f"/api/v1/pools/{pid}/members/nope", json={"role": "listener"})
    assert r.status_code == 404
    # The last admin cannot leave or be demoted.
    r = await owner.client.put(f"/api/v1/pools/{pid}/members/{owner.id}", json={"role": "listener"})
    assert r.status_code == 422
    assert (await owner.client.delete(f"/api/v1/pools/{pid}/members/{owner.id}")).status_code == 422
    assert (await owner.client.delete(f"/api/v1/pools/{pid}/members/{bob.id}")).status_code == 204
    assert (await bob.client.get(f"/api/v1/pools/{pid}")).status_code == 404


async def test_keys_shown_once_and_revocable(api: Api) -> None:
    owner = await api.user()
    pid = (await api.pool(owner))["pool_id"]
    r = await owner.client.post(
        f"/api/v1/pools/{pid}/keys", json={"name": "sensor-1", "role": "contributor"}
    )
    assert r.status_code == 201
    created = r.json()
    assert created["secret"].startswith("pdk_")
    listed = (await owner.client.get(f"/api/v1/pools/{pid}/keys")).json()["items"]
    assert [k["key_id"] for k in listed] == [created["key_id"]]
    assert all("secret" not in k for k in listed)
    h = {"Authorization": f"Bearer {created['secret']}"}
    v = (await api.anon.get("/api/v1/auth/validate", headers=h)).json()
    assert v == {
        "principal_id": created["key_id"],
        "kind": "key",
        "username": None,
        "role": None,
        "pool_id": pid,
        "pool_role": "contributor",
    }
    assert (await api.anon.get(f"/api/v1/pools/{pid}", headers=h)).status_code == 200
    assert (
        await owner.client.delete(f"/api/v1/pools/{pid}/keys/{created['key_id']}")
    ).status_code == 204
    r = await api.anon.get("/api/v1/auth/validate", headers=h)
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    # A key is bound to its pool.
    other = (await api.pool(owner))["pool_id"]
    k2 = await api.key(owner, pid, "listener")
    assert (await k2.client.get(f"/api/v1/pools/{other}")).status_code == 404


async def test_enrollment_flow_and_limits(api: Api, server: LiveServer) -> None:
    owner = await api.user()
    pid = (await api.pool(owner))["pool_id"]
    r = await owner.client.post(
        f"/api/v1/pools/{pid}/enrollments",
        json={"role": "contributor", "max_uses": 2, "expires_in": "1h"},
    )
    assert r.status_code == 201
    token = r.json()["token"]
    for i in range(2):
        e = await api.anon.post("/api/v1/enroll", json={"token": token, "name": f"dev{i}"})
        assert e.status_code == 201
        assert e.json()["pool_id"] == pid and e.json()["role"] == "contributor"
        assert e.json()["secret"].startswith("pdk_")
    e = await api.anon.post("/api/v1/enroll", json={"token": token, "name": "dev3"})
    assert e.status_code == 401
    r = await owner.client.post(
        f"/api/v1/pools/{pid}/enrollments",
        json={"role": "listener", "max_uses": 5, "expires_in": "10m"},
    )
    token2 = r.json()["token"]
    server.clock.advance(601)
    e = await api.anon.post("/api/v1/enroll", json={"token": token2, "name": "late"})
    assert e.status_code == 401
    e = await api.anon.post("/api/v1/enroll", json={"token": "pde_bogus", "name": "x"})
    assert e.status_code == 401


async def test_fifty_simultaneous_enrolments_against_ten_uses(api: Api, server: LiveServer) -> None:
    owner = await api.user()
    pid = (await api.pool(owner))["pool_id"]
    r = await owner.client.post(
        f"/api/v1/pools/{pid}/enrollments",
        json={"role": "contributor", "max_uses": 10, "expires_in": "1h"},
    )
    token = r.json()["token"]
    # Fifty separate connections so the requests really overlap on the server.
    clients = [httpx.AsyncClient(base_url=server.url, timeout=60) for _ in range(50)]
    try:
        answers = await asyncio.gather(
            *(
                c.post("/api/v1/enroll", json={"token": token, "name": f"d{i}"})
                for i, c in enumerate(clients)
            )
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 10, codes
    assert codes.count(401) == 40, codes
    keys = (await owner.client.get(f"/api/v1/pools/{pid}/keys")).json()["items"]
    assert len(keys) == 10
