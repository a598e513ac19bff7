"""Exceptions the SDK raises, one per stable problem ``code`` of the API.

    PooldropError                    anything the SDK reports
    ├── TransportError               the connection broke or timed out before an answer
    │   └── ConnectionFailed         no connection was made: the server never saw the request
    ├── IntegrityError               downloaded bytes do not match the announced sha256
    ├── JobFailed                    an aggregation handler or command failed
    └── ApiError(status, code)       the server answered with an RFC 9457 problem document
        ├── Unauthenticated          401 unauthenticated
        ├── Forbidden                403 forbidden
        ├── NotFound                 404 not_found
        ├── ValidationError          422 validation_error
        │   ├── EmptyFile            422 empty_file
        │   ├── ChecksumMismatch     422 checksum_mismatch
        │   └── TsInFuture           422 ts_in_future
        ├── FileTooLarge             413 file_too_large
        ├── ForbiddenType            415 forbidden_type
        ├── Conflict                 409 (any code)
        │   ├── WindowClosed         409 window_closed
        │   ├── DuplicateConflict    409 duplicate_conflict
        │   ├── LeaseLost            409 lease_lost
        │   ├── GroupNotReady        409 group_not_ready
        │   └── UsernameTaken        409 username_taken
        ├── Gone                     410 (a cursor older than the event retention)
        ├── RateLimited              429 rate_limited, with ``retry_after`` seconds
        └── ServerError              5xx

The class is chosen by ``code`` first and by HTTP status second, so a code the SDK does not know
still lands on the right family (a new 409 code is a ``Conflict``).
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx


class PooldropError(Exception):
    """Base of every error raised by :mod:`pooldrop.client`."""


class TransportError(PooldropError):
    """The request did not get an answer (refused, reset, timed out). Usually worth a retry."""


class ConnectionFailed(TransportError):
    """No connection was made, so the server never saw the request."""


class IntegrityError(PooldropError):
    """Bytes received do not hash to the sha256 the server announced."""


class JobFailed(PooldropError):
    """An aggregation handler or command failed; its group was released."""


class ApiError(PooldropError):
    """The server refused the request; ``code`` is the stable problem code to switch on."""

    status: int = 0
    code: str = "error"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.problem: dict[str, Any] = problem or {}

    def __str__(self) -> str:
        return f"{self.detail} ({self.code}, HTTP {self.status})"


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class ValidationError(ApiError):
    status, code = 422, "validation_error"


class EmptyFile(ValidationError):
    code = "empty_file"


class ChecksumMismatch(ValidationError):
    code = "checksum_mismatch"


class TsInFuture(ValidationError):
    code = "ts_in_future"


class FileTooLarge(ApiError):
    status, code = 413, "file_too_large"


class ForbiddenType(ApiError):
    status, code = 415, "forbidden_type"


class Conflict(ApiError):
    status, code = 409, "conflict"


class WindowClosed(Conflict):
    code = "window_closed"


class DuplicateConflict(Conflict):
    code = "duplicate_conflict"


class LeaseLost(Conflict):
    code = "lease_lost"


class GroupNotReady(Conflict):
    code = "group_not_ready"


class UsernameTaken(Conflict):
    code = "username_taken"


class Gone(ApiError):
    status, code = 410, "gone"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"

    def __init__(self, detail: str, *, retry_after: float = 1.0, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.retry_after = retry_after


class ServerError(ApiError):
    status, code = 500, "internal_error"


_BY_CODE: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        Unauthenticated,
        Forbidden,
        NotFound,
        ValidationError,
        EmptyFile,
        ChecksumMismatch,
        TsInFuture,
        FileTooLarge,
        ForbiddenType,
        WindowClosed,
        DuplicateConflict,
        LeaseLost,
        GroupNotReady,
        UsernameTaken,
        Gone,
        RateLimited,
    )
}
_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: FileTooLarge,
    415: ForbiddenType,
    422: ValidationError,
    429: RateLimited,
}


def error_class(status: int, code: str | None) -> type[ApiError]:
    """The exception class for a problem ``code`` (preferred) or an HTTP status."""
    if code in _BY_CODE and _BY_CODE[code].status == status:
        return _BY_CODE[code]
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)


def retry_after_seconds(value: str | None, default: float = 1.0) -> float:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def from_problem(
    status: int, problem: dict[str, Any], headers: httpx.Headers | None = None
) -> ApiError:
    """Build the typed error for a problem document (also used for per-file batch errors)."""
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    cls = error_class(status, code)
    kw: dict[str, Any] = {"status": status, "code": code or cls.code, "problem": problem}
    if cls is RateLimited:
        raw = headers.get("retry-after") if headers is not None else None
        fallback = problem.get("retry_after")
        default = float(fallback) if isinstance(fallback, int | float) else 1.0
        return RateLimited(detail, retry_after=retry_after_seconds(raw, default), **kw)
    return cls(detail, **kw)


def from_response(response: httpx.Response) -> ApiError:
    """The typed error for a non-2xx response; the body must already be read."""
    problem: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        problem = body
    elif response.content:
        problem = {"detail": response.text[:500]}
    return from_problem(response.status_code, problem, response.headers)


def is_retryable(exc: BaseException) -> bool:
    """Worth sending again unchanged: network failures, 5xx, 429."""
    return isinstance(exc, TransportError | ServerError | RateLimited)
