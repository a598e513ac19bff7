"""What both clients share: building an httpx request from a :class:`Call`, mapping failures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from pooldrop.client._content import Source, acounting, counting
from pooldrop.client._endpoints import Call
from pooldrop.client._errors import ConnectionFailed, TransportError, from_response
from pooldrop.client._multipart import MultipartBody

USER_AGENT = "pooldrop-client/0.1"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def auth_headers(credential: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"} if credential else {}


def request_kwargs(call: Call[Any], credential: str | None, *, is_async: bool) -> dict[str, Any]:
    """Arguments for ``httpx.Client.build_request``; a body is a fresh iterator per attempt."""
    headers = dict(call.headers)
    if call.authenticated:
        headers.update(auth_headers(credential))
    kw: dict[str, Any] = {"params": call.params, "headers": headers}
    body = call.body
    if isinstance(body, Source | MultipartBody):
        if isinstance(body, MultipartBody):
            headers.update(body.headers)
        if is_async:
            chunks = body.achunks() if isinstance(body, Source) else body.__aiter__()
            kw["content"] = acounting(chunks, call.progress)
        else:
            kw["content"] = counting(
                body.chunks() if isinstance(body, Source) else iter(body), call.progress
            )
    elif body is not None:
        kw["content"] = body
    elif call.json is not None:
        kw["json"] = call.json
    return kw


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """httpx's network errors as the SDK's :class:`TransportError` family."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
        raise ConnectionFailed(f"cannot reach the server: {e}") from e
    except httpx.TransportError as e:
        raise TransportError(f"connection failed: {e!r}") from e


def check(response: httpx.Response) -> httpx.Response:
    """Raise the typed error of a non-2xx answer (whose body must be read)."""
    if not response.is_success:
        raise from_response(response)
    return response
