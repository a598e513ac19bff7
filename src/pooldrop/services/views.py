"""The public shapes of uploads, groups and results (API.md), used by the API and event payloads.

Events carry these objects, so they are built in the service layer and rendered exactly once.
"""

from __future__ import annotations

from typing import Any

from pooldrop.domain.timestamps import format_ts
from pooldrop.store.models import Group, Result, Upload


def _ts(value: Any) -> str | None:
    return format_ts(value) if value is not None else None


def upload_view(u: Upload) -> dict[str, Any]:
    return {
        "upload_id": u.id,
        "pool_id": u.pool_id,
        "group_id": u.group_id,
        "uploader_id": u.uploader_id,
        "client_upload_id": u.client_upload_id,
        "name": u.name,
        "ts": format_ts(u.ts),
        "received_at": format_ts(u.received_at),
        "size": u.size,
        "sha256": u.sha256,
        "content_type": u.content_type,
        "metadata": u.metadata_,
        "status": u.status,
        "error": u.error,
        "window_start": format_ts(u.window_start),
        "window_end": format_ts(u.window_end),
        "late": u.late,
    }


def group_view(g: Group) -> dict[str, Any]:
    return {
        "group_id": g.id,
        "pool_id": g.pool_id,
        "window_start": format_ts(g.window_start),
        "window_end": format_ts(g.window_end),
        "state": g.state,
        "trigger": g.trigger,
        "file_count": g.file_count,
        "bytes": g.bytes,
        "contributors": g.contributors,
        "attempts": g.attempts,
        "lease_expires_at": _ts(g.lease_expires_at),
        "result_id": g.result_id,
        "created_at": format_ts(g.created_at),
        "ready_at": _ts(g.ready_at),
        "done_at": _ts(g.done_at),
    }


def result_view(r: Result) -> dict[str, Any]:
    return {
        "result_id": r.id,
        "pool_id": r.pool_id,
        "group_id": r.group_id,
        "name": r.name,
        "size": r.size,
        "sha256": r.sha256,
        "content_type": r.content_type,
        "created_at": format_ts(r.created_at),
        "url": f"/api/v1/pools/{r.pool_id}/results/{r.id}/content",
    }
