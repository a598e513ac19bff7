"""Every plain JSON call of the API as data: method, path, query, body and how to read the answer.

Both clients execute these the same way (sync or async), so a call is described once here and the
client methods stay one line each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from pooldrop.client._content import Source
from pooldrop.client._models import (
    Claim,
    Enrollment,
    Event,
    Group,
    Identity,
    Key,
    KeySecret,
    Member,
    Page,
    Pool,
    Result,
    Session,
    Upload,
)
from pooldrop.client._multipart import MultipartBody

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

API = "/api/v1"

Body = bytes | Source | MultipartBody


@dataclass
class Call(Generic[T]):
    """One HTTP exchange; ``parse`` turns a 2xx answer into the return value."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Body | None = None
    idempotent: bool = True
    authenticated: bool = True
    progress: Callable[[int], None] | None = None
    """Told the size of each body chunk as it is sent."""


def seg(value: str) -> str:
    """A path segment, escaped (ids come from the server, but a caller may pass anything)."""
    return quote(str(value), safe="")


def pool_path(pool_id: str, *rest: str) -> str:
    return "/".join([f"{API}/pools/{seg(pool_id)}", *(seg(r) for r in rest)])


def query(**params: Any) -> dict[str, Any]:
    """Query parameters without the ``None`` ones; booleans as ``true``/``false``."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else v
    return out


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: cls.model_validate_json(r.content)


def model_or_none(cls: type[M]) -> Callable[[httpx.Response], M | None]:
    return lambda r: (
        None if r.status_code == 204 or not r.content else cls.model_validate_json(r.content)
    )


def page(cls: type[M]) -> Callable[[httpx.Response], Page[M]]:
    return lambda r: Page[cls].model_validate_json(r.content)  # type: ignore[valid-type]


def items(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    return lambda r: Page[cls].model_validate_json(r.content).items  # type: ignore[valid-type]


def nothing(_r: httpx.Response) -> None:
    return None


# --- auth -----------------------------------------------------------------------------------


def signup(username: str, password: str) -> Call[Session]:
    return Call(
        "POST",
        f"{API}/auth/signup",
        model(Session),
        json={"username": username, "password": password},
        idempotent=False,
        authenticated=False,
    )


def login(username: str, password: str) -> Call[Session]:
    return Call(
        "POST",
        f"{API}/auth/login",
        model(Session),
        json={"username": username, "password": password},
        idempotent=False,
        authenticated=False,
    )


def logout() -> Call[None]:
    return Call("POST", f"{API}/auth/logout", nothing, idempotent=False)


def validate() -> Call[Identity]:
    return Call("GET", f"{API}/auth/validate", model(Identity))


# --- pools, members, keys, enrolment --------------------------------------------------------


def create_pool(name: str, window: str | float, settings: dict[str, Any]) -> Call[Pool]:
    body = {"name": name, "window": window, **{k: v for k, v in settings.items() if v is not None}}
    return Call("POST", f"{API}/pools", model(Pool), json=body, idempotent=False)


def list_pools() -> Call[list[Pool]]:
    return Call("GET", f"{API}/pools", items(Pool))


def get_pool(pool_id: str) -> Call[Pool]:
    return Call("GET", pool_path(pool_id), model(Pool))


def update_pool(pool_id: str, changes: dict[str, Any]) -> Call[Pool]:
    return Call("PATCH", pool_path(pool_id), model(Pool), json=changes)


def delete_pool(pool_id: str) -> Call[None]:
    return Call("DELETE", pool_path(pool_id), nothing)


def list_members(pool_id: str) -> Call[list[Member]]:
    return Call("GET", pool_path(pool_id, "members"), items(Member))


def set_member(pool_id: str, user_id: str, role: str) -> Call[Member]:
    return Call("PUT", pool_path(pool_id, "members", user_id), model(Member), json={"role": role})


def remove_member(pool_id: str, user_id: str) -> Call[None]:
    return Call("DELETE", pool_path(pool_id, "members", user_id), nothing)


def create_key(pool_id: str, name: str, role: str) -> Call[KeySecret]:
    return Call(
        "POST",
        pool_path(pool_id, "keys"),
        model(KeySecret),
        json={"name": name, "role": role},
        idempotent=False,
    )


def list_keys(pool_id: str) -> Call[list[Key]]:
    return Call("GET", pool_path(pool_id, "keys"), items(Key))


def revoke_key(pool_id: str, key_id: str) -> Call[None]:
    return Call("DELETE", pool_path(pool_id, "keys", key_id), nothing)


def create_enrollment(
    pool_id: str, role: str, max_uses: int, expires_in: str | float
) -> Call[Enrollment]:
    return Call(
        "POST",
        pool_path(pool_id, "enrollments"),
        model(Enrollment),
        json={"role": role, "max_uses": max_uses, "expires_in": expires_in},
        idempotent=False,
    )


def enroll(token: str, name: str) -> Call[KeySecret]:
    # Not idempotent: a replay after a lost answer would spend a second use of the token.
    return Call(
        "POST",
        f"{API}/enroll",
        model(KeySecret),
        json={"token": token, "name": name},
        idempotent=False,
        authenticated=False,
    )


# --- uploads --------------------------------------------------------------------------------


def upload(
    pool_id: str,
    source: Source,
    *,
    ts: str,
    name: str,
    client_upload_id: str,
    metadata_json: str | None,
    content_type: str | None,
) -> Call[Upload]:
    headers = {
        "Content-Digest": source.digest_header,
        "Content-Length": str(source.size),
        "Content-Type": content_type or "application/octet-stream",
    }
    if metadata_json is not None:
        headers["Pooldrop-Metadata"] = metadata_json
    # Safe to replay: the server answers a repeated client_upload_id with the first upload.
    return Call(
        "POST",
        pool_path(pool_id, "uploads"),
        model(Upload),
        params={"ts": ts, "name": name, "client_upload_id": client_upload_id},
        headers=headers,
        body=source,
    )


def list_uploads(
    pool_id: str | None,
    *,
    mine: bool | None = None,
    group_id: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page[Upload]]:
    path = pool_path(pool_id, "uploads") if pool_id else f"{API}/uploads"
    params = query(mine=mine, group_id=group_id, status=status, limit=limit, cursor=cursor)
    return Call("GET", path, page(Upload), params=params)


def get_upload(pool_id: str, upload_id: str) -> Call[Upload]:
    return Call("GET", pool_path(pool_id, "uploads", upload_id), model(Upload))


# --- groups ---------------------------------------------------------------------------------


def list_groups(
    pool_id: str, *, state: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Call[Page[Group]]:
    params = query(state=state, limit=limit, cursor=cursor)
    return Call("GET", pool_path(pool_id, "groups"), page(Group), params=params)


def get_group(pool_id: str, group_id: str) -> Call[Group]:
    return Call("GET", pool_path(pool_id, "groups", group_id), model(Group))


def close_group(pool_id: str, group_id: str) -> Call[Group]:
    return Call("POST", pool_path(pool_id, "groups", group_id, "close"), model(Group))


def claim(pool_id: str, wait: float) -> Call[Claim | None]:
    # A lost answer would leave a lease nobody holds (it expires), so only unsent claims retry.
    return Call(
        "POST",
        pool_path(pool_id, "groups", "claim"),
        model_or_none(Claim),
        params=query(wait=wait or None),
        idempotent=False,
    )


def claim_group(pool_id: str, group_id: str) -> Call[Claim]:
    return Call(
        "POST", pool_path(pool_id, "groups", group_id, "claim"), model(Claim), idempotent=False
    )


def heartbeat(pool_id: str, group_id: str, lease_id: str) -> Call[Claim]:
    return Call(
        "POST",
        pool_path(pool_id, "groups", group_id, "heartbeat"),
        model(Claim),
        json={"lease_id": lease_id},
    )


def release(pool_id: str, group_id: str, lease_id: str) -> Call[Group]:
    # A replay after a lost answer is refused with lease_lost, which the caller can ignore.
    return Call(
        "POST",
        pool_path(pool_id, "groups", group_id, "release"),
        model(Group),
        json={"lease_id": lease_id},
        idempotent=False,
    )


def put_result(
    pool_id: str, group_id: str, lease_id: str, source: Source, name: str
) -> Call[Result]:
    return Call(
        "PUT",
        pool_path(pool_id, "groups", group_id, "result"),
        model(Result),
        params={"lease_id": lease_id, "name": name},
        headers={
            "Content-Digest": source.digest_header,
            "Content-Length": str(source.size),
            "Content-Type": "application/octet-stream",
        },
        body=source,
    )


# --- results and events ---------------------------------------------------------------------


def list_results(
    pool_id: str,
    *,
    group_id: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page[Result]]:
    params = query(group_id=group_id, limit=limit, cursor=cursor)
    return Call("GET", pool_path(pool_id, "results"), page(Result), params=params)


def latest_result(pool_id: str) -> Call[Result]:
    return Call("GET", pool_path(pool_id, "results", "latest"), model(Result))


def get_result(pool_id: str, result_id: str) -> Call[Result]:
    return Call("GET", pool_path(pool_id, "results", result_id), model(Result))


@dataclass(frozen=True)
class EventBatch:
    """A long-poll answer: the events after the cursor and the cursor to ask with next."""

    events: list[Event]
    next: int


def _event_batch(r: httpx.Response) -> EventBatch:
    body = r.json()
    events = [Event.model_validate(e) for e in body.get("events", [])]
    return EventBatch(events=events, next=int(body.get("next") or 0))


def poll_events(
    pool_id: str, *, after: int | None, wait: float | None, limit: int | None
) -> Call[EventBatch]:
    params = query(after=after, wait=wait, limit=limit)
    return Call("GET", pool_path(pool_id, "events"), _event_batch, params=params)
