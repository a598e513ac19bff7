"""Resumable uploads over one WebSocket connection; the gateway (:mod:`pooldrop.api.ws`) hands
transfer ops and binary frames here.

The machinery is tus's (:mod:`pooldrop.services.transfers`, protocol ``ws``): frames are buffered
into blob parts of ``PART_SIZE`` so thousands of small frames do not become thousands of blobs,
and a dropped connection (``close``) makes every byte received so far durable. A client resumes
with ``start-transfer {transfer_id}`` on any connection, to any node, from the offset returned.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from pooldrop.domain.validation import parse_sha256_hex
from pooldrop.errors import Conflict, NotFound, PooldropError, ValidationFailed
from pooldrop.services import transfers, uploads
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime
from pooldrop.services.views import upload_view
from pooldrop.store.models import Upload

log = logging.getLogger("pooldrop.ws")


def _transfer_id(msg: dict[str, Any]) -> str:
    raw = msg.get("transfer_id")
    if not isinstance(raw, str):
        raise ValidationFailed("transfer_id is required (32 hexadecimal digits)")
    return transfers.canonical_id(raw)


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed("size must be the file's length in bytes")
    return value


class WsTransfers:
    """The transfers of one connection's principal: start or resume, write, complete, close."""

    def __init__(self, rt: Runtime, principal: Principal) -> None:
        self.rt = rt
        self.principal = principal
        self._writers: dict[bytes, transfers.TransferWriter] = {}

    async def start(self, msg: dict[str, Any]) -> dict[str, Any]:
        """``start-transfer``: a new upload ``{pool_id, name, ts, size, sha256?,
        client_upload_id?, metadata?, content_type?}`` or a resumed one ``{transfer_id}``.

        Answers ``{transfer_id, offset, size}``: send bytes from ``offset`` on. Resuming takes the
        transfer over from any other connection still writing it.
        """
        if "transfer_id" in msg:
            transfer_id = _transfer_id(msg)
        else:
            pool_id = msg.get("pool_id")
            if not isinstance(pool_id, str):
                raise ValidationFailed("pool_id is required")
            spec = uploads.UploadSpec(
                pool_id=pool_id,
                name=msg.get("name"),
                ts=msg.get("ts"),
                client_upload_id=msg.get("client_upload_id"),
                content_type=msg.get("content_type"),
                metadata=msg.get("metadata"),
                expected_sha256=parse_sha256_hex(msg.get("sha256")),
            )
            length = _size(msg.get("size"))
            created = await transfers.create(
                self.rt, self.principal, spec, length=length, protocol="ws"
            )
            transfer_id = created.id
        key = uuid.UUID(transfer_id).bytes
        previous = self._writers.pop(key, None)
        if previous is not None:
            # Restarted on this very connection: keep what it already sent.
            with contextlib.suppress(PooldropError):
                await previous.flush()
        writer = await transfers.take_over(self.rt, self.principal, transfer_id)
        self._writers[key] = writer
        answer: dict[str, Any] = {
            "transfer_id": uuid.UUID(transfer_id).hex,
            "offset": writer.offset,
            "size": writer.transfer.length,
        }
        if writer.transfer.upload_id is not None:
            answer["upload_id"] = writer.transfer.upload_id
        return answer

    async def write(self, transfer_id: bytes, data: bytes) -> None:
        """A binary frame: append ``data`` at the transfer's current offset."""
        writer = self._writers.get(transfer_id)
        if writer is None:
            raise NotFound("no transfer with this id was started on this connection")
        try:
            await writer.write(data)
        except transfers.TakenOver:
            del self._writers[transfer_id]
            raise

    async def complete(self, msg: dict[str, Any]) -> dict[str, Any]:
        """``complete-upload {transfer_id}``: the upload object once every byte is in.

        Works on a transfer started on another connection too, when its bytes are all durable.
        """
        transfer_id = _transfer_id(msg)
        key = uuid.UUID(transfer_id).bytes
        writer = self._writers.pop(key, None)
        if writer is None:
            writer = await transfers.take_over(self.rt, self.principal, transfer_id)
        await writer.flush()
        if writer.transfer.upload_id is not None:
            return await self._upload(writer.transfer.upload_id)
        if not writer.complete:
            self._writers[key] = writer
            raise Conflict(
                f"the transfer has {writer.offset} of {writer.transfer.length} bytes; "
                "send the rest first",
                offset=writer.offset,
            )
        outcome = await writer.finish(self.principal)
        return upload_view(outcome.upload)

    async def _upload(self, upload_id: str) -> dict[str, Any]:
        async with self.rt.read() as s:
            upload = await s.get(Upload, upload_id)
        if upload is None:
            raise NotFound("the upload of this transfer no longer exists")
        return upload_view(upload)

    async def close(self) -> None:
        """The connection is gone: keep every byte received, for a resume elsewhere."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            try:
                await writer.flush()
            except PooldropError as exc:
                log.info("transfer %s not flushed on close: %s", writer.transfer.id, exc.detail)
