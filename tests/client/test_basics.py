"""Auth, pools, members, keys and enrolment through the SDK against a live server."""

from __future__ import annotations

import pytest

from pooldrop.client import (
    AsyncClient,
    Client,
    Conflict,
    NotFound,
    Unauthenticated,
    UsernameTaken,
    ValidationError,
    aenroll,
    enroll,
)
from tests.client.support import in_thread
from tests.support.server import LiveServer

PASSWORD = "correct horse battery"


async def test_signup_login_whoami_logout(server: LiveServer) -> None:
    def scenario() -> None:
        with Client(server.url) as c:
            first = c.signup("alice", PASSWORD)
            assert first.role == "admin" and first.username == "alice"
            with pytest.raises(UsernameTaken) as taken:
                c.signup("alice", PASSWORD)
            assert taken.value.status == 409 and taken.value.code == "username_taken"
            assert isinstance(taken.value, Conflict)
            session = c.login("alice", PASSWORD)
            assert c.credential == session.access_token
            me = c.whoami()
            assert me.kind == "user" and me.username == "alice" and me.principal_id == first.user_id
            token = c.credential
            c.logout()
            assert c.credential is None
        with Client(server.url, token=token) as stale:
            with pytest.raises(Unauthenticated) as e:
                stale.whoami()
            assert e.value.status == 401
        with Client(server.url) as c, pytest.raises(Unauthenticated):
            c.login("alice", "wrong password!")

    await in_thread(scenario)


async def test_pools_members_keys(server: LiveServer) -> None:
    def scenario() -> None:
        with Client(server.url) as admin, Client(server.url) as bob:
            admin.signup("owner", PASSWORD)
            bob_id = bob.signup("bob", PASSWORD).user_id
            pool = admin.create_pool("sensors", "15m", allowed_lateness="5m", lease="2m")
            assert pool.window == "15m" and pool.allowed_lateness == "5m" and pool.role == "admin"
            assert [p.pool_id for p in admin.list_pools()] == [pool.pool_id]
            assert admin.get_pool(pool.pool_id).lease == "2m"
            assert admin.update_pool(pool.pool_id, name="renamed").name == "renamed"
            with pytest.raises(ValidationError) as bad:
                admin.create_pool("x", "30s")
            assert bad.value.code == "validation_error" and "window" in bad.value.detail
            # Strangers see nothing of the pool: 404, not 403.
            with pytest.raises(NotFound):
                bob.get_pool(pool.pool_id)
            assert admin.set_member(pool.pool_id, bob_id, "listener").role == "listener"
            assert bob.get_pool(pool.pool_id).role == "listener"
            roles = {m.username: m.role for m in admin.list_members(pool.pool_id)}
            assert roles == {"owner": "admin", "bob": "listener"}
            admin.remove_member(pool.pool_id, bob_id)
            with pytest.raises(NotFound):
                bob.get_pool(pool.pool_id)

            key = admin.create_key(pool.pool_id, "app", "contributor")
            assert key.secret.startswith("pdk_") and key.role == "contributor"
            assert [k.key_id for k in admin.list_keys(pool.pool_id)] == [key.key_id]
            with Client(server.url, api_key=key.secret) as app:
                me = app.whoami()
                assert me.kind == "key" and me.pool_id == pool.pool_id
                admin.revoke_key(pool.pool_id, key.key_id)
                with pytest.raises(Unauthenticated):
                    app.whoami()
            admin.delete_pool(pool.pool_id)
            with pytest.raises(NotFound):
                admin.get_pool(pool.pool_id)

    await in_thread(scenario)


async def test_enrolment(server: LiveServer) -> None:
    def scenario() -> None:
        with Client(server.url) as admin:
            admin.signup("owner", PASSWORD)
            pool = admin.create_pool("p", "1m")
            token = admin.create_enrollment(pool.pool_id, "contributor", max_uses=2).token
        first = enroll(server.url, token, "app-1")
        assert first.pool_id == pool.pool_id and first.role == "contributor"
        with Client(server.url) as app:
            second = app.enroll(token, "app-2")
            # The client now authenticates with its new key.
            assert app.credential == second.secret and app.whoami().kind == "key"
        assert first.secret != second.secret
        with pytest.raises(Unauthenticated) as used_up:
            enroll(server.url, token, "app-3")
        assert "used up" in used_up.value.detail

    await in_thread(scenario)


async def test_async_client(server: LiveServer) -> None:
    async with AsyncClient(server.url) as admin:
        await admin.signup("owner", PASSWORD)
        pool = await admin.create_pool("p", "1h")
        assert [p.name for p in await admin.list_pools()] == ["p"]
        token = (await admin.create_enrollment(pool.pool_id, "listener", 1)).token
        key = await aenroll(server.url, token, "listener-app")
        async with AsyncClient(server.url, api_key=key.secret) as app:
            assert (await app.whoami()).pool_role == "listener"
            with pytest.raises(NotFound):
                await app.get_pool("no-such-pool")
        await admin.logout()
        with pytest.raises(Unauthenticated):
            await admin.list_pools()
