"""Request-scoped helpers: the runtime, the caller, the client's address."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from pooldrop.errors import Unauthenticated
from pooldrop.services import auth
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime


def runtime(conn: HTTPConnection) -> Runtime:
    rt: Runtime = conn.app.state.runtime
    return rt


async def _runtime(conn: HTTPConnection) -> Runtime:
    # A coroutine on purpose: FastAPI runs plain-function dependencies in a worker thread.
    return runtime(conn)


def bearer_credential(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("use 'Authorization: Bearer <token or key>'")
        return value.strip()
    # WebSocket and EventSource clients cannot set headers.
    return conn.query_params.get("access_token")


async def authenticate_credential(rt: Runtime, credential: str | None) -> Principal:
    if not credential:
        raise Unauthenticated("authentication required")
    cached = auth.cached_principal(rt, credential)
    if cached is not None:
        return cached
    async with rt.read() as session:
        return await auth.authenticate(rt, session, credential)


async def current_principal(request: Request) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal = await authenticate_credential(runtime(request), bearer_credential(request))
    request.state.principal = principal
    return principal


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
