"""The error tree: every failure a client can see carries its HTTP status and a stable ``code``.

    PooldropError(status, code)
    ├── Unauthenticated          401 unauthenticated
    ├── Forbidden                403 forbidden
    ├── NotFound                 404 not_found
    ├── ValidationFailed         422 validation_error
    │   ├── EmptyFile            422 empty_file
    │   ├── ChecksumMismatch     422 checksum_mismatch
    │   └── TsInFuture           422 ts_in_future
    ├── FileTooLarge             413 file_too_large
    ├── ForbiddenType            415 forbidden_type
    ├── UnsupportedMediaType     415 unsupported_media_type
    ├── Conflict                 409 (code given)
    │   ├── WindowClosed         409 window_closed
    │   ├── DuplicateConflict    409 duplicate_conflict
    │   ├── LeaseLost            409 lease_lost
    │   ├── GroupNotReady        409 group_not_ready
    │   └── UsernameTaken        409 username_taken
    ├── Gone                     410 gone
    ├── RateLimited              429 rate_limited (carries retry_after)
    └── Unavailable              503 unavailable (a backend failed after retries)

The API layer renders them as RFC 9457 problem documents; the WebSocket gateway as error frames.
Domain code raises them too: they are plain exceptions with no I/O.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PooldropError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)


class Unauthenticated(PooldropError):
    status, code, title = 401, "unauthenticated", "Authentication required"


class Forbidden(PooldropError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(PooldropError):
    status, code, title = 404, "not_found", "Not found"


class ValidationFailed(PooldropError):
    status, code, title = 422, "validation_error", "Invalid input"


class EmptyFile(ValidationFailed):
    code, title = "empty_file", "Empty file"


class ChecksumMismatch(ValidationFailed):
    code, title = "checksum_mismatch", "Checksum mismatch"


class TsInFuture(ValidationFailed):
    code, title = "ts_in_future", "Timestamp in the future"


class FileTooLarge(PooldropError):
    status, code, title = 413, "file_too_large", "File too large"


class ForbiddenType(PooldropError):
    status, code, title = 415, "forbidden_type", "Forbidden file type"


class UnsupportedMediaType(PooldropError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class Conflict(PooldropError):
    status, code, title = 409, "conflict", "Conflict"


class WindowClosed(Conflict):
    code, title = "window_closed", "Window closed"


class DuplicateConflict(Conflict):
    code, title = "duplicate_conflict", "Duplicate with other content"


class LeaseLost(Conflict):
    code, title = "lease_lost", "Lease lost"


class GroupNotReady(Conflict):
    code, title = "group_not_ready", "Group not ready"


class UsernameTaken(Conflict):
    code, title = "username_taken", "Username taken"


class Gone(PooldropError):
    status, code, title = 410, "gone", "Gone"


class RateLimited(PooldropError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class Unavailable(PooldropError):
    status, code, title = 503, "unavailable", "Service unavailable"
