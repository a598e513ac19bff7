"""The pooldrop Python SDK: talk to a pooldrop server over HTTP and WebSocket.

    from pooldrop.client import Client, Uploader

    with Client("http://127.0.0.1:8000", api_key="pdk_...") as c:
        c.upload(pool_id, "reading.json", ts=1767225600.0)

See ``docs/client.md``. Everything public is re-exported here; the ``_``-modules are private.
"""

from pooldrop.client._aggregator import Aggregator, CommandHandler, Handler, Heartbeat, Job
from pooldrop.client._async_client import AsyncClient, aenroll
from pooldrop.client._batch import BatchEntry
from pooldrop.client._client import Client, enroll
from pooldrop.client._config import Config, Profile, config_path
from pooldrop.client._content import Content, Timestamp, new_client_upload_id
from pooldrop.client._download import Progress
from pooldrop.client._endpoints import EventBatch
from pooldrop.client._errors import (
    ApiError,
    ChecksumMismatch,
    Conflict,
    ConnectionFailed,
    DuplicateConflict,
    EmptyFile,
    FileTooLarge,
    Forbidden,
    ForbiddenType,
    Gone,
    GroupNotReady,
    IntegrityError,
    JobFailed,
    LeaseLost,
    NotFound,
    PooldropError,
    RateLimited,
    ServerError,
    TransportError,
    TsInFuture,
    Unauthenticated,
    UsernameTaken,
    ValidationError,
    WindowClosed,
)
from pooldrop.client._events import AsyncEventStream, EventStream
from pooldrop.client._models import (
    BatchItem,
    BatchResult,
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
from pooldrop.client._outbox import Outbox, OutboxEntry
from pooldrop.client._retry import RetryPolicy
from pooldrop.client._uploader import AsyncUploader, Backoff, FlushReport, Uploader
from pooldrop.client._watcher import ResultWatcher, result_filename

__all__ = [
    "Aggregator",
    "ApiError",
    "AsyncClient",
    "AsyncEventStream",
    "AsyncUploader",
    "Backoff",
    "BatchEntry",
    "BatchItem",
    "BatchResult",
    "ChecksumMismatch",
    "Claim",
    "Client",
    "CommandHandler",
    "Config",
    "Conflict",
    "ConnectionFailed",
    "Content",
    "DuplicateConflict",
    "EmptyFile",
    "Enrollment",
    "Event",
    "EventBatch",
    "EventStream",
    "FileTooLarge",
    "FlushReport",
    "Forbidden",
    "ForbiddenType",
    "Gone",
    "Group",
    "GroupNotReady",
    "Handler",
    "Heartbeat",
    "Identity",
    "IntegrityError",
    "Job",
    "JobFailed",
    "Key",
    "KeySecret",
    "LeaseLost",
    "Member",
    "NotFound",
    "Outbox",
    "OutboxEntry",
    "Page",
    "Pool",
    "PooldropError",
    "Profile",
    "Progress",
    "RateLimited",
    "Result",
    "ResultWatcher",
    "RetryPolicy",
    "ServerError",
    "Session",
    "Timestamp",
    "TransportError",
    "TsInFuture",
    "Unauthenticated",
    "Upload",
    "Uploader",
    "UsernameTaken",
    "ValidationError",
    "WindowClosed",
    "aenroll",
    "config_path",
    "enroll",
    "new_client_upload_id",
    "result_filename",
]
