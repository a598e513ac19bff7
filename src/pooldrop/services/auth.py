"""Users, passwords, sessions and access tokens.

An access token is a short-lived HS256 JWT naming a server-side session (``sid``); every request
checks the session, so logout (revoking it) stops the token at once. Pool keys (``pdk_...``) are
resolved here too, so the API has one ``authenticate``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import jwt
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop.domain.roles import GlobalRole, PoolRole
from pooldrop.domain.validation import validate_password, validate_username
from pooldrop.errors import Forbidden, Unauthenticated, UsernameTaken
from pooldrop.services.caches import CachedKey
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime
from pooldrop.store.db import UnitOfWork
from pooldrop.store.models import ApiKey, AuthSession, User
from pooldrop.store.types import new_id

JWT_ALGORITHM = "HS256"
KEY_PREFIX = "pdk_"
FIRST_SIGNUP_LOCK = 0x706F6F6C64726F70  # a PostgreSQL advisory lock key of our own


@dataclass(frozen=True)
class IssuedToken:
    user: User
    access_token: str
    expires_in: int


def hash_secret(secret: str) -> str:
    # Key and enrolment secrets are 256-bit random: a fast hash is enough and keeps lookups cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


async def _issue(rt: Runtime, uow: UnitOfWork, user: User) -> IssuedToken:
    now = rt.clock.now()
    session = AuthSession(
        id=new_id(),
        user_id=user.id,
        created_at=now,
        expires_at=now + timedelta(seconds=rt.settings.session_ttl),
    )
    uow.session.add(session)
    return _sign(rt, user, session.id)


def _sign(rt: Runtime, user: User, session_id: str) -> IssuedToken:
    now = int(rt.clock.now().timestamp())
    ttl = rt.settings.access_token_ttl
    claims = {"sub": user.id, "sid": session_id, "typ": "access", "iat": now, "exp": now + ttl}
    token = jwt.encode(claims, rt.secret, algorithm=JWT_ALGORITHM)
    return IssuedToken(user=user, access_token=token, expires_in=ttl)


async def signup(rt: Runtime, uow: UnitOfWork, username: str, password: str) -> IssuedToken:
    username = validate_username(username)
    validate_password(password)
    s = uow.session
    users = await _count_users(s)
    if users == 0 and s.get_bind().dialect.name == "postgresql":
        # The first user becomes admin: two first signups at once must not both do so. (SQLite's
        # write transactions are serial already.) Wait for any other, then count again.
        await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FIRST_SIGNUP_LOCK})
        users = await _count_users(s)
    if users and not rt.settings.open_signup:
        raise Forbidden("signup is closed on this server; ask an admin for an account")
    if await s.scalar(select(User.id).where(User.username == username)):
        raise UsernameTaken(f"username {username!r} is taken")
    user = User(
        id=new_id(),
        username=username,
        password_hash=await rt.passwords.hash(password),
        role=GlobalRole.ADMIN if users == 0 else GlobalRole.USER,
        created_at=rt.clock.now(),
    )
    s.add(user)
    await s.flush()  # the session row refers to it
    return await _issue(rt, uow, user)


async def _count_users(s: AsyncSession) -> int:
    return await s.scalar(select(func.count()).select_from(User)) or 0


async def login(
    rt: Runtime, uow: UnitOfWork, username: str, password: str, address: str
) -> IssuedToken:
    keys = [f"user:{username.lower()}", f"addr:{address}"]
    mono = asyncio.get_running_loop().time()
    rt.login_limiter.check(keys, mono)
    user = await uow.session.scalar(select(User).where(User.username == username))
    ok = await rt.passwords.verify(
        user.password_hash if user else rt.passwords.dummy_hash, password
    )
    if not user or not ok or user.disabled:
        rt.login_limiter.hit(keys, mono)
        raise Unauthenticated("wrong username or password")
    rt.login_limiter.reset(keys[:1])
    return await _issue(rt, uow, user)


async def logout(rt: Runtime, uow: UnitOfWork, principal: Principal) -> None:
    if principal.kind != "user" or principal.session_id is None:
        raise Forbidden("keys have no session to end; revoke the key instead")
    session = await uow.session.get(AuthSession, principal.session_id)
    if session and session.revoked_at is None:
        session.revoked_at = rt.clock.now()


async def authenticate(rt: Runtime, session: AsyncSession, credential: str) -> Principal:
    if credential.startswith(KEY_PREFIX):
        return await _authenticate_key(rt, session, credential)
    principal, _ = await _user_session(rt, session, credential, allow_expired=False)
    return principal


async def refresh(rt: Runtime, uow: UnitOfWork, credential: str) -> IssuedToken:
    """A new access token for the same session, even after the old token expired.

    The session is the credential: while it is live (not logged out, not past ``session_ttl``)
    its holder may mint short-lived tokens. Logout still ends every token at once.
    """
    _, user = await _user_session(rt, uow.session, credential, allow_expired=True)
    claims = jwt.decode(credential, options={"verify_signature": False})
    return _sign(rt, user, claims["sid"])


async def _user_session(
    rt: Runtime, session: AsyncSession, credential: str, *, allow_expired: bool
) -> tuple[Principal, User]:
    try:
        claims = jwt.decode(
            credential,
            rt.secret,
            algorithms=[JWT_ALGORITHM],
            # Expiry is checked below against the injected clock, so tests can move time.
            options={"require": ["exp", "sub", "sid"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        raise Unauthenticated("invalid access token") from None
    if claims.get("typ") != "access":
        raise Unauthenticated("not an access token")
    if not isinstance(claims["exp"], int):
        raise Unauthenticated("invalid access token")
    if not allow_expired and claims["exp"] <= rt.clock.now().timestamp():
        raise Unauthenticated("access token expired; refresh it or log in again")
    row = (
        await session.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.id == claims["sid"], User.id == claims["sub"])
        )
    ).first()
    now = rt.clock.now()
    if row is None:
        raise Unauthenticated("session not found")
    login, user = row
    if login.revoked_at is not None or login.expires_at <= now or user.disabled:
        raise Unauthenticated("session ended; log in again")
    principal = Principal(
        id=user.id,
        kind="user",
        username=user.username,
        role=GlobalRole(user.role),
        session_id=login.id,
    )
    return principal, user


def make_key_secret(key_id: str) -> str:
    return f"{KEY_PREFIX}{key_id.replace('-', '')}_{secrets.token_urlsafe(32)}"


def _key_id_from_secret(secret: str) -> str | None:
    body = secret[len(KEY_PREFIX) :]
    hex_id, sep, _ = body.partition("_")
    if not sep or len(hex_id) != 32:
        return None
    try:
        int(hex_id, 16)
    except ValueError:
        return None
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def cached_principal(rt: Runtime, credential: str) -> Principal | None:
    """The key's principal from the process cache, without touching the database; else None."""
    if not credential.startswith(KEY_PREFIX):
        return None
    key_id = _key_id_from_secret(credential)
    cached = rt.caches.keys.get(key_id) if key_id else None
    if cached is not None and hmac.compare_digest(cached.secret_hash, hash_secret(credential)):
        return cached.principal
    return None


async def _authenticate_key(rt: Runtime, session: AsyncSession, secret: str) -> Principal:
    cached = cached_principal(rt, secret)
    if cached is not None:
        return cached
    key_id = _key_id_from_secret(secret)
    generation = rt.caches.generation
    key = await session.get(ApiKey, key_id) if key_id else None
    if key is None or not hmac.compare_digest(key.secret_hash, hash_secret(secret)):
        raise Unauthenticated("unknown key")
    if key.revoked_at is not None:
        raise Unauthenticated("key revoked")
    principal = Principal(
        id=key.id, kind="key", pool_id=key.pool_id, pool_role=PoolRole(key.role), name=key.name
    )
    rt.caches.put_key(key.id, CachedKey(key.secret_hash, principal), generation)
    return principal
