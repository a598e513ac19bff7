"""Set-up calls through pooldrop's public HTTP API: people, pools, keys, groups, results.

Nothing here is timed. The benchmark makes every principal through the API, as a user would, so
the measured requests are authenticated, validated and recorded like any other.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

_PARAM = re.compile(r"\{[^}]*\}")


class ApiError(RuntimeError):
    """pooldrop answered a set-up call with an unexpected status."""


class EndpointMissing(Exception):
    """The server does not have an endpoint a scenario needs (yet)."""

    def __init__(self, missing: Iterable[str]) -> None:
        self.missing = sorted(missing)
        super().__init__(", ".join(self.missing))


def route(method: str, path: str) -> str:
    """``"POST /api/v1/pools/{}/uploads"``: a route with its parameter names blanked."""
    return f"{method.upper()} {_PARAM.sub('{}', path)}"


UPLOAD = route("POST", "/api/v1/pools/{pool_id}/uploads")
BATCH = route("POST", "/api/v1/pools/{pool_id}/batches")
CLAIM = route("POST", "/api/v1/pools/{pool_id}/groups/{group_id}/claim")
ARCHIVE = route("GET", "/api/v1/pools/{pool_id}/groups/{group_id}/archive")
RESULT_PUT = route("PUT", "/api/v1/pools/{pool_id}/groups/{group_id}/result")
RESULT_CONTENT = route("GET", "/api/v1/pools/{pool_id}/results/{result_id}/content")
EVENTS_SSE = route("GET", "/api/v1/pools/{pool_id}/events/stream")
WEBSOCKET = "WS /api/v1/ws"


@dataclass(frozen=True)
class Pool:
    """A pool made for one scenario, with a key per role the scenario uses."""

    id: str
    admin_token: str
    contributor: str
    aggregator: str
    listener: str


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _check(r: httpx.Response, *expected: int) -> Any:
    if r.status_code not in expected:
        what = f"{r.request.method} {r.request.url.path}"
        raise ApiError(f"{what} -> {r.status_code}: {r.text[:500]}")
    return r.json() if r.content else None


class BenchApi:
    """A synchronous client for the set-up steps (close with ``close()``)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=300.0)
        self.nonce = secrets.token_hex(4)
        self._admin: str | None = None

    def close(self) -> None:
        self.http.close()

    def routes(self) -> set[str]:
        """The HTTP routes the server has, from its OpenAPI document, plus the WebSocket probe."""
        doc = _check(self.http.get("/openapi.json"), 200)
        found = {route(m, p) for p, ops in doc.get("paths", {}).items() for m in ops}
        if self._has_websocket():
            found.add(WEBSOCKET)
        return found

    def _has_websocket(self) -> bool:
        # WebSocket routes are not in OpenAPI; an upgrade to a missing route is refused (403/404).
        headers = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        try:
            r = self.http.get("/api/v1/ws", headers=headers, timeout=5.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 101

    def admin_token(self) -> str:
        """A user who owns the benchmark's pools (signed up once per server)."""
        if self._admin is None:
            body = _check(
                self.http.post(
                    "/api/v1/auth/signup",
                    json={"username": f"bench{self.nonce}", "password": secrets.token_urlsafe(16)},
                ),
                201,
            )
            self._admin = str(body["access_token"])
        return self._admin

    def key(self, token: str, pool_id: str, role: str) -> str:
        body = _check(
            self.http.post(
                f"/api/v1/pools/{pool_id}/keys",
                json={"name": f"bench-{role}-{secrets.token_hex(3)}", "role": role},
                headers=auth(token),
            ),
            201,
        )
        return str(body["secret"])

    def pool(self, label: str, **settings: Any) -> Pool:
        """A new pool with one contributor, aggregator and listener key."""
        token = self.admin_token()
        body = {
            "name": f"bench-{label}-{secrets.token_hex(3)}",
            "window": "1h",
            "late_policy": "next_open",
            "lease": "1h",
            **settings,
        }
        pool = _check(self.http.post("/api/v1/pools", json=body, headers=auth(token)), 201)
        pid = str(pool["pool_id"])
        return Pool(
            id=pid,
            admin_token=token,
            contributor=self.key(token, pid, "contributor"),
            aggregator=self.key(token, pid, "aggregator"),
            listener=self.key(token, pid, "listener"),
        )

    def upload(
        self, pool: Pool, data: bytes, *, name: str = "f.bin", ts: float | None = None
    ) -> dict[str, Any]:
        params = {
            "ts": str(int(ts if ts is not None else time.time())),
            "name": name,
            "client_upload_id": f"setup-{secrets.token_hex(8)}",
        }
        r = self.http.post(
            f"/api/v1/pools/{pool.id}/uploads",
            params=params,
            content=data,
            headers={**auth(pool.contributor), "Content-Type": "application/octet-stream"},
        )
        result: dict[str, Any] = _check(r, 201, 200)
        return result

    def claim(self, pool: Pool, group_id: str) -> str:
        """Claim (and so close) a group as the aggregator; returns the lease id."""
        r = self.http.post(
            f"/api/v1/pools/{pool.id}/groups/{group_id}/claim", headers=auth(pool.aggregator)
        )
        return str(_check(r, 200, 201)["lease_id"])

    def put_result(
        self, pool: Pool, group_id: str, lease_id: str, data: bytes, name: str = "result.bin"
    ) -> dict[str, Any]:
        r = self.http.put(
            f"/api/v1/pools/{pool.id}/groups/{group_id}/result",
            params={"lease_id": lease_id, "name": name},
            content=data,
            headers={**auth(pool.aggregator), "Content-Type": "application/octet-stream"},
        )
        result: dict[str, Any] = _check(r, 201, 200)
        return result
