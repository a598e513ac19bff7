"""tus 1.0.0 resumable uploads at ``/api/v1/tus/``: core, creation, creation-with-upload,
termination, checksum (sha1, sha256) and expiration. The resumable machinery is
:mod:`pooldrop.services.transfers`; this module speaks the protocol.

``Upload-Metadata`` keys: ``pool_id``, ``ts``, ``filename`` (required), ``client_upload_id``,
``filetype``, ``metadata`` (a JSON object), ``sha256`` (hex, of the whole file) (optional).
Header syntax errors answer 400; field values are checked like a plain upload's (422, 413...).
Every PATCH takes the upload over from whichever connection wrote before (no 423 Locked: a
client resuming after a dropped connection must not wait for the server to notice the drop).
The final PATCH answers ``Pooldrop-Upload-Id``; so does HEAD on a finished upload.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from pooldrop.api.deps import PrincipalDep, RuntimeDep
from pooldrop.api.problems import error_response
from pooldrop.domain.pools import MAX_FILE_SIZE_LIMIT
from pooldrop.domain.timestamps import format_ts
from pooldrop.domain.validation import parse_sha256_hex, parse_upload_checksum
from pooldrop.errors import (
    ChecksumMismatch,
    FileTooLarge,
    PooldropError,
    UnsupportedMediaType,
    ValidationFailed,
)
from pooldrop.services import transfers, uploads
from pooldrop.services.principals import Principal
from pooldrop.store.models import Transfer

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
CHECKSUMS: dict[str, Callable[[], Any]] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
OFFSET_STREAM = "application/offset+octet-stream"
BASE_PATH = "/api/v1/tus"
MAX_METADATA_HEADER = 16 * 1024
_KEY = re.compile(r"[!-+\--~]+", re.ASCII)  # visible ASCII without ','; spaces split key/value
_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)


class BadRequest(ValidationFailed):
    """A tus header is missing or malformed."""

    status = 400


class UnsupportedVersion(PooldropError):
    status, code, title = 412, "unsupported_version", "Unsupported tus version"


class ChunkChecksumMismatch(ChecksumMismatch):
    status = 460  # tus checksum extension: "Checksum Mismatch"


class TusRoute(APIRoute):
    """Every answer carries ``Tus-Resumable``; errors are problem documents, rendered here so
    that they carry it too (authentication errors included)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def tus_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except PooldropError as exc:
                response = error_response(exc)
                if isinstance(exc, UnsupportedVersion):
                    response.headers["Tus-Version"] = TUS_VERSION
            except ClientDisconnect:
                response = Response(status_code=499)  # never sent: the client is gone
            response.headers["Tus-Resumable"] = TUS_VERSION
            return response

        return tus_handler


router = APIRouter(prefix=BASE_PATH, tags=["tus"], route_class=TusRoute)


def _http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def _require_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise UnsupportedVersion(f"this server speaks tus {TUS_VERSION}; send Tus-Resumable")


def _int_header(request: Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw.strip()):
        raise BadRequest(f"{name} must be a non-negative integer")
    return int(raw)


def parse_upload_metadata(header: str) -> dict[str, str]:
    """``key base64value, key2, ...`` into a dict of UTF-8 texts (a key alone maps to "")."""
    if len(header) > MAX_METADATA_HEADER:
        raise BadRequest("Upload-Metadata is too large")
    result: dict[str, str] = {}
    for item in header.split(","):
        if not item.strip():
            continue
        key, _, encoded = item.strip().partition(" ")
        if not _KEY.fullmatch(key) or key in result or " " in encoded.strip():
            raise BadRequest(f"malformed Upload-Metadata near {item.strip()[:40]!r}")
        try:
            result[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(f"Upload-Metadata {key!r} is not base64 of UTF-8 text") from None
    return result


def encode_upload_metadata(t: Transfer) -> str:
    fields = {
        "pool_id": t.pool_id,
        "ts": format_ts(t.ts),
        "filename": t.name,
        "filetype": t.content_type,
        "client_upload_id": t.client_upload_id,
        "sha256": t.expected_sha256,
        "metadata": json.dumps(t.metadata_, separators=(",", ":")) if t.metadata_ else None,
    }
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items() if v is not None
    )


def _spec(meta: dict[str, str]) -> uploads.UploadSpec:
    missing = [k for k in ("pool_id", "ts", "filename") if not meta.get(k)]
    if missing:
        raise BadRequest(f"Upload-Metadata needs {', '.join(missing)}")
    sha256 = meta.get("sha256")
    try:
        parse_sha256_hex(sha256)
    except ValidationFailed:
        raise BadRequest("Upload-Metadata sha256 must be 64 hexadecimal digits") from None
    return uploads.UploadSpec(
        pool_id=meta["pool_id"],
        name=meta["filename"],
        ts=meta["ts"],
        client_upload_id=meta.get("client_upload_id"),
        content_type=meta.get("filetype"),
        metadata=meta.get("metadata"),
        expected_sha256=bytes.fromhex(sha256) if sha256 else None,
    )


def _checksum(request: Request) -> tuple[Callable[[], Any], bytes] | None:
    raw = request.headers.get("upload-checksum")
    if raw is None:
        return None
    try:
        algorithm, digest = parse_upload_checksum(raw)
    except ValidationFailed as exc:
        raise BadRequest(exc.detail) from None
    if algorithm not in CHECKSUMS:
        raise BadRequest(f"checksum algorithm {algorithm!r} is not supported; use sha1 or sha256")
    return CHECKSUMS[algorithm], digest


def _has_body(request: Request) -> bool:
    length = _int_header(request, "content-length")
    return bool(length) or "chunked" in request.headers.get("transfer-encoding", "").lower()


def _require_offset_stream(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != OFFSET_STREAM:
        raise UnsupportedMediaType(f"send the bytes as Content-Type: {OFFSET_STREAM}")


def _progress(writer: transfers.TransferWriter) -> dict[str, str]:
    headers = {
        "Upload-Offset": str(writer.offset),
        "Upload-Expires": _http_date(writer.expires_at),
    }
    if writer.transfer.upload_id is not None:
        headers["Pooldrop-Upload-Id"] = writer.transfer.upload_id
    return headers


async def _receive(
    request: Request, principal: Principal, writer: transfers.TransferWriter
) -> dict[str, str]:
    """Append the request body at the writer's offset; finish the upload at its last byte."""
    checksum = _checksum(request)
    if writer.finished:
        return _progress(writer)
    writer.hold = checksum is not None
    hasher = checksum[0]() if checksum else None
    try:
        async for chunk in request.stream():
            if hasher is not None:
                hasher.update(chunk)
            await writer.write(chunk)
    except ClientDisconnect:
        # tus keeps what arrived of an interrupted chunk, unless a checksum must vouch for it.
        if hasher is None:
            with contextlib.suppress(transfers.TakenOver):
                await writer.flush()
        else:
            await writer.discard()
        raise
    except BaseException:
        await writer.discard()
        raise
    if checksum is not None and hasher is not None and hasher.digest() != checksum[1]:
        await writer.discard()
        raise ChunkChecksumMismatch("the chunk does not match Upload-Checksum; it was discarded")
    await writer.flush()
    if writer.complete:
        await writer.finish(principal)
    return _progress(writer)


def _check_room(request: Request, offset: int, length: int) -> None:
    size = _int_header(request, "content-length")
    if size is not None and offset + size > length:
        raise FileTooLarge(f"{offset + size} bytes is more than Upload-Length {length}")


@router.options("", include_in_schema=False)
@router.options("/")
@router.options("/{transfer_id}")
async def options() -> Response:
    """What this tus server supports (no authentication needed)."""
    return Response(
        status_code=204,
        headers={
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(MAX_FILE_SIZE_LIMIT),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
        },
    )


@router.post("", include_in_schema=False)
@router.post("/", status_code=201)
async def create(request: Request, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    """Create an upload (validated like a plain upload before any byte), optionally with its
    first bytes (creation-with-upload)."""
    _require_version(request)
    if request.headers.get("upload-defer-length") is not None:
        raise BadRequest("Upload-Defer-Length is not supported; send Upload-Length")
    length = _int_header(request, "upload-length")
    if length is None:
        raise BadRequest("Upload-Length is required")
    spec = _spec(parse_upload_metadata(request.headers.get("upload-metadata", "")))
    with_body = _has_body(request)
    if with_body:
        _require_offset_stream(request)
        _check_room(request, 0, length)
    transfer = await transfers.create(rt, principal, spec, length=length, protocol="tus")
    writer = await transfers.take_over(rt, principal, transfer.id, 0)
    headers = await _receive(request, principal, writer) if with_body else _progress(writer)
    headers["Location"] = f"{BASE_PATH}/{transfer.id}"
    return Response(status_code=201, headers=headers)


@router.head("/{transfer_id}")
async def head(
    transfer_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Where the upload stands: ``Upload-Offset`` is where the next PATCH starts."""
    _require_version(request)
    t = await transfers.get(rt, principal, transfer_id)
    headers = {
        "Upload-Offset": str(t.offset),
        "Upload-Length": str(t.length),
        "Upload-Expires": _http_date(t.expires_at),
        "Upload-Metadata": encode_upload_metadata(t),
        "Cache-Control": "no-store",
    }
    if t.upload_id is not None:
        headers["Pooldrop-Upload-Id"] = t.upload_id
    return Response(status_code=200, headers=headers)


@router.patch("/{transfer_id}", status_code=204)
async def patch(
    transfer_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Append bytes at ``Upload-Offset``; the last byte finishes the upload."""
    _require_version(request)
    _require_offset_stream(request)
    offset = _int_header(request, "upload-offset")
    if offset is None:
        raise BadRequest("Upload-Offset is required")
    current = await transfers.get(rt, principal, transfer_id)
    _check_room(request, offset, current.length)
    writer = await transfers.take_over(rt, principal, transfer_id, offset)
    return Response(status_code=204, headers=await _receive(request, principal, writer))


@router.delete("/{transfer_id}", status_code=204)
async def terminate(
    transfer_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Abandon the upload and free its bytes (termination)."""
    _require_version(request)
    await transfers.terminate(rt, principal, transfer_id)
    return Response(status_code=204)
