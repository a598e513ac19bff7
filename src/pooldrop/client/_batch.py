"""Batches: many files with their own event times in one multipart request."""

from __future__ import annotations

import contextlib
import json
import mimetypes
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pooldrop.client._content import (
    Content,
    Source,
    Timestamp,
    format_ts,
    new_client_upload_id,
    open_source,
)
from pooldrop.client._multipart import FilePart, MultipartBody


@dataclass
class BatchEntry:
    """One file of a batch. ``part`` names its form field (default ``file<N>``)."""

    content: Content
    ts: Timestamp | None = None
    name: str | None = None
    client_upload_id: str | None = None
    metadata: dict[str, Any] | None = None
    part: str | None = None
    sha256: str | None = field(default=None, repr=False)
    """The file's sha256 when already known (spares the extra hashing read)."""


def guess_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


@contextlib.contextmanager
def prepare_batch(entries: Sequence[BatchEntry]) -> Iterator[tuple[MultipartBody, list[str]]]:
    """The multipart body for ``entries`` and the part name of each, in order."""
    sources: list[Source] = []
    try:
        manifest: list[dict[str, Any]] = []
        files: list[FilePart] = []
        for i, e in enumerate(entries):
            src = open_source(e.content, name=e.name, sha256_hex=e.sha256)
            sources.append(src)
            part = e.part or f"file{i}"
            item: dict[str, Any] = {
                "part": part,
                "ts": format_ts(e.ts),
                "name": src.name,
                "client_upload_id": e.client_upload_id or new_client_upload_id(),
                "sha256": src.sha256_hex,
            }
            if e.metadata is not None:
                item["metadata"] = e.metadata
            manifest.append(item)
            files.append(FilePart(part, src.name, src, guess_type(src.name)))
        body = MultipartBody(json.dumps(manifest).encode(), files)
        yield body, [m["part"] for m in manifest]
    finally:
        for s in sources:
            s.close()
