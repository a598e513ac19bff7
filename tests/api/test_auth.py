"""Signup, login, logout and token validation through a real HTTP client."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta

import jwt

from tests.support.api import Api
from tests.support.server import LiveServer


async def test_first_user_is_admin_then_users(api: Api) -> None:
    r1 = await api.anon.post(
        "/api/v1/auth/signup", json={"username": "alice", "password": "pw-alice-123"}
    )
    r2 = await api.anon.post(
        "/api/v1/auth/signup", json={"username": "bob", "password": "pw-bob-1234"}
    )
    assert r1.status_code == 201 and r2.status_code == 201
    assert r1.json()["role"] == "admin"
    assert r2.json()["role"] == "user"
    body = r2.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    assert set(body) >= {"user_id", "username", "role", "access_token", "token_type", "expires_in"}


async def test_simultaneous_first_signups_make_one_admin(api: Api) -> None:
    replies = await asyncio.gather(
        *(
            api.anon.post(
                "/api/v1/auth/signup", json={"username": f"first{i}", "password": "pw-first-123"}
            )
            for i in range(6)
        )
    )
    assert [r.status_code for r in replies] == [201] * 6
    assert sorted(r.json()["role"] for r in replies) == ["admin"] + ["user"] * 5


async def test_signup_token_works_at_once(api: Api) -> None:
    r = await api.anon.post(
        "/api/v1/auth/signup", json={"username": "carol", "password": "pw-carol-123"}
    )
    token = r.json()["access_token"]
    v = await api.anon.get("/api/v1/auth/validate", headers={"Authorization": f"Bearer {token}"})
    assert v.status_code == 200
    assert v.json()["kind"] == "user" and v.json()["username"] == "carol"


async def test_username_taken_is_409(api: Api) -> None:
    await api.user("dave")
    r = await api.anon.post(
        "/api/v1/auth/signup", json={"username": "dave", "password": "another-pw-1"}
    )
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "username_taken"


async def test_signup_validation_is_problem_json(api: Api) -> None:
    r = await api.anon.post("/api/v1/auth/signup", json={"username": "x", "password": "short"})
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error"
    r = await api.anon.post("/api/v1/auth/signup", json={"username": "erin"})
    assert r.status_code == 422 and r.json()["code"] == "validation_error"


async def test_login_and_wrong_password(api: Api) -> None:
    await api.user("frank", password="frank-password")
    ok = await api.anon.post(
        "/api/v1/auth/login", json={"username": "frank", "password": "frank-password"}
    )
    assert ok.status_code == 200 and ok.json()["username"] == "frank"
    bad = await api.anon.post(
        "/api/v1/auth/login", json={"username": "frank", "password": "nope-nope"}
    )
    assert bad.status_code == 401 and bad.json()["code"] == "unauthenticated"
    ghost = await api.anon.post(
        "/api/v1/auth/login", json={"username": "ghost", "password": "nope-nope"}
    )
    assert ghost.status_code == 401


async def test_logout_ends_the_session_at_once(api: Api) -> None:
    user = await api.user()
    other = await api.anon.post(
        "/api/v1/auth/login", json={"username": user.name, "password": "correct horse battery"}
    )
    other_token = other.json()["access_token"]
    assert (await user.client.get("/api/v1/auth/validate")).status_code == 200
    assert (await user.client.post("/api/v1/auth/logout")).status_code == 204
    r = await user.client.get("/api/v1/auth/validate")
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    # Another login's session is not affected.
    r = await api.anon.get(
        "/api/v1/auth/validate", headers={"Authorization": f"Bearer {other_token}"}
    )
    assert r.status_code == 200


async def test_expired_token_is_401(api: Api, server: LiveServer) -> None:
    user = await api.user()
    server.clock.advance(seconds=server.settings.access_token_ttl + 1)
    r = await user.client.get("/api/v1/auth/validate")
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_forged_tokens_are_401(api: Api, server: LiveServer) -> None:
    user = await api.user()
    claims = jwt.decode(user.token, options={"verify_signature": False})
    other_key = jwt.encode(claims, "some-other-key-of-enough-length-0123456789", algorithm="HS256")
    alg_none = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    future = dict(claims, exp=claims["exp"] + 10**6)
    tampered = f"{user.token.split('.')[0]}.{_b64(future)}.{user.token.split('.')[2]}"
    for token in (
        other_key,
        alg_none,
        tampered,
        "garbage",
        "a.b.c",
        "pdk_nothing",
        "pdk_0123456789abcdef0123456789abcdef_x",
    ):
        r = await api.anon.get(
            "/api/v1/auth/validate", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 401, token
        assert r.json()["code"] == "unauthenticated"
    r = await api.anon.get(
        "/api/v1/auth/validate", headers={"Authorization": f"Basic {user.token}"}
    )
    assert r.status_code == 401
    assert (await api.anon.get("/api/v1/auth/validate")).status_code == 401


async def test_login_rate_limited_per_username(api: Api, server: LiveServer) -> None:
    await api.user("gina", password="gina-password")
    limit = server.settings.login_rate_limit
    for _ in range(limit):
        r = await api.anon.post(
            "/api/v1/auth/login", json={"username": "gina", "password": "wrong-pass"}
        )
        assert r.status_code == 401
    r = await api.anon.post(
        "/api/v1/auth/login", json={"username": "gina", "password": "gina-password"}
    )
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1


async def test_login_rate_limited_per_address(api: Api, server: LiveServer) -> None:
    limit = server.settings.login_rate_limit
    for i in range(limit):
        r = await api.anon.post(
            "/api/v1/auth/login", json={"username": f"nobody{i}", "password": "wrong-pass"}
        )
        assert r.status_code == 401
    r = await api.anon.post(
        "/api/v1/auth/login", json={"username": "someone-new", "password": "whatever1"}
    )
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"


async def test_legacy_paths(api: Api) -> None:
    r = await api.anon.post("/auth/signup", json={"username": "hank", "password": "hank-password"})
    assert r.status_code == 201
    r = await api.anon.put("/auth/login/hank", json={"password": "hank-password"})
    assert r.status_code == 200
    token = r.json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    assert (await api.anon.get("/auth/validate", headers=h)).json()["username"] == "hank"
    assert (await api.anon.put("/auth/logout/someone-else", headers=h)).status_code == 403
    assert (await api.anon.put("/auth/logout/hank", headers=h)).status_code == 204
    assert (await api.anon.get("/auth/validate", headers=h)).status_code == 401


async def test_closed_signup(api: Api, server: LiveServer) -> None:
    await api.user("first")
    server.runtime.settings = server.runtime.settings.model_copy(update={"open_signup": False})
    r = await api.anon.post(
        "/api/v1/auth/signup", json={"username": "late", "password": "late-password"}
    )
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


async def test_session_expiry(api: Api, server: LiveServer) -> None:
    user = await api.user()
    server.clock.advance(timedelta(seconds=server.settings.session_ttl + 1).total_seconds())
    assert (await user.client.get("/api/v1/auth/validate")).status_code == 401


async def test_refresh_keeps_the_session_alive_past_token_expiry(
    api: Api, server: LiveServer
) -> None:
    user = await api.user()
    server.clock.advance(seconds=server.settings.access_token_ttl + 5)
    assert (await user.client.get("/api/v1/auth/validate")).status_code == 401
    r = await user.client.post("/api/v1/auth/refresh")
    assert r.status_code == 200, r.text
    fresh = r.json()["access_token"]
    h = {"Authorization": f"Bearer {fresh}"}
    assert (await api.anon.get("/api/v1/auth/validate", headers=h)).status_code == 200
    # Logout ends the session: neither token can be refreshed any more.
    assert (await api.anon.post("/api/v1/auth/logout", headers=h)).status_code == 204
    assert (await user.client.post("/api/v1/auth/refresh")).status_code == 401
    assert (await api.anon.post("/api/v1/auth/refresh", headers=h)).status_code == 401


async def test_refresh_refuses_forgeries_and_keys(api: Api, server: LiveServer) -> None:
    user = await api.user()
    claims = jwt.decode(user.token, options={"verify_signature": False})
    forged = jwt.encode(claims, "another-key-of-sufficient-length-0123456789", algorithm="HS256")
    r = await api.anon.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    r = await api.anon.post("/api/v1/auth/refresh", headers={"Authorization": "Bearer pdk_x_y"})
    assert r.status_code == 401
    server.clock.advance(seconds=server.settings.session_ttl + 1)
    assert (await user.client.post("/api/v1/auth/refresh")).status_code == 401
