"""Serving a stored blob: ETag (the sha256), If-None-Match (304), single Range (206), 416.

Local files go out with sendfile (api/zerocopy.py); other stores stream through, or redirect to a
short-lived presigned URL when that setting is on.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from pooldrop.api.zerocopy import ZeroCopyFileResponse
from pooldrop.services.runtime import Runtime

PRESIGN_SECONDS = 300
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def _disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "'")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """[start, end) of one satisfiable range; None: send it all; False: unsatisfiable."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m:
        return None  # several ranges or another unit: a full 200 is a valid answer
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            return False
        return max(0, size - n), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        return False
    return start, end


async def blob_response(
    request: Request,
    rt: Runtime,
    *,
    key: str,
    size: int,
    sha256: str,
    content_type: str,
    filename: str,
) -> Response:
    etag = f'"{sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": _disposition(filename),
        "Cache-Control": "private, max-age=31536000, immutable",
    }
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if rt.settings.download_redirect:
        url = await rt.blobs.presigned_url(key, PRESIGN_SECONDS)
        if url:
            return RedirectResponse(url, status_code=307, headers={"ETag": etag})
    wanted = parse_range(request.headers.get("range"), size)
    if wanted is False:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if wanted is None:
        start, end, status = 0, size, 200
    else:
        start, end = wanted  # type: ignore[misc]
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    path = rt.blobs.local_path(key)
    if path is not None:
        return ZeroCopyFileResponse(
            path, start=start, end=end, status_code=status, headers=headers, media_type=content_type
        )
    headers["Content-Length"] = str(end - start)
    chunks = await rt.blobs.open(key, start, end)
    return StreamingResponse(chunks, status_code=status, media_type=content_type, headers=headers)
