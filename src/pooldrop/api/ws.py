"""The WebSocket gateway at ``/api/v1/ws``: JSON text frames both ways, file bytes in binary.

Client frames are ``{"op": ..., "rid": ..., ...}``; each is answered with the same ``op`` and
``rid`` plus its result, or with ``{"op": "error", "rid", "code", "status", "detail"}``:

    connect {access_token}         -> {principal_id, kind}       first, unless the handshake had
                                                                  ?access_token= or Authorization
    subscribe {pool_id, after?}    -> {pool_id, after}           then {"op":"event","event":{...}}
    unsubscribe {pool_id}          -> {pool_id}                  pushes, backlog first
    get-history {pool_id?}         -> {items: [upload, ...]}     the caller's uploads, newest first
    alive                          -> {}
    start-transfer {...}           -> what WsTransfers.start returns ({transfer_id, offset})
    <binary> 16-byte transfer id + data                          no answer unless an error
    complete-upload {transfer_id}  -> what WsTransfers.complete returns (the upload)

Close codes: 4401 not authenticated (no token, bad token, connect not first, session ended or
key revoked — checked by the event hub every ``auth_interval``), 4408 idle (no client frame for
``settings.ws_idle_timeout`` seconds), 1011 server error.

Pushed events reuse the hub's once-serialized JSON: the frame text is built once per event and
shared by every socket that receives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from pooldrop.api.deps import authenticate_credential, bearer_credential, runtime
from pooldrop.errors import Conflict, PooldropError, Unauthenticated, ValidationFailed
from pooldrop.services import upload_queries
from pooldrop.services.hub import EventHub, Frame, Subscription, SubscriptionClosed, Watch
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime
from pooldrop.services.views import upload_view

log = logging.getLogger("pooldrop.ws")

router = APIRouter()

CLOSE_UNAUTHENTICATED = 4401
CLOSE_IDLE = 4408
CLOSE_SERVER_ERROR = 1011
HISTORY_LIMIT = 100
TRANSFER_ID_BYTES = 16


class TransferOps(Protocol):
    """What ``pooldrop.api.ws_transfers.WsTransfers(rt, principal)`` provides."""

    async def start(self, msg: dict[str, Any]) -> dict[str, Any]: ...

    async def write(self, transfer_id: bytes, data: bytes) -> None: ...

    async def complete(self, msg: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class TransferFactory(Protocol):
    def __call__(self, rt: Runtime, principal: Principal) -> TransferOps: ...


@functools.cache
def transfer_factory() -> TransferFactory | None:
    """``WsTransfers`` if its module is installed; transfer ops answer ``not_implemented`` else."""
    try:
        module = importlib.import_module("pooldrop.api.ws_transfers")
    except ModuleNotFoundError as exc:
        if exc.name == "pooldrop.api.ws_transfers":
            return None
        raise
    factory: TransferFactory = module.WsTransfers
    return factory


def ws_event_text(frame: Frame) -> str:
    """The push frame around the hub's payload (built once per event, see ``Frame.render``)."""
    return '{"op":"event","event":' + frame.payload.decode() + "}"


def _error(rid: Any, code: str, detail: str, status: int | None = None, **extra: Any) -> bytes:
    return orjson.dumps(
        {"op": "error", "rid": rid, "code": code, "status": status, "detail": detail, **extra}
    )


class _NotImplementedOp(PooldropError):
    status, code, title = 501, "not_implemented", "Not implemented"


class Connection:
    """One accepted socket: its principal, subscriptions, transfers and writer lock."""

    def __init__(self, rt: Runtime, ws: WebSocket) -> None:
        self.rt = rt
        self.ws = ws
        self.hub: EventHub | None = rt.hub
        self.principal: Principal | None = None
        self.watch: Watch | None = None
        self.subs: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}
        self.transfers: TransferOps | None = None
        self._send_lock = asyncio.Lock()
        self._ended = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- life cycle -------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ws.accept()
        try:
            credential = bearer_credential(self.ws)
            if credential:
                await self._authenticate(credential)
        except Unauthenticated as exc:
            await self._send_close(CLOSE_UNAUTHENTICATED, exc.detail)
            return
        reader = asyncio.create_task(self._read_loop(), name="ws-reader")
        self._tasks.append(reader)
        try:
            await self._ended.wait()
        finally:
            await self._cleanup()
        if self._close is not None:
            await self._send_close(*self._close)

    def _finish(self, code: int | None = None, reason: str = "") -> None:
        """End the connection; ``code`` None means the client already went away."""
        if not self._ended.is_set():
            self._close = None if code is None else (code, reason)
            self._ended.set()

    async def _cleanup(self) -> None:
        tasks = self._tasks + [task for _, task in self.subs.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub, _ in self.subs.values():
            await sub.close()
        self.subs.clear()
        if self.watch is not None:
            self.watch.close()
        if self.transfers is not None:
            try:
                await self.transfers.close()
            except Exception:
                log.exception("closing WebSocket transfers failed")

    async def _send_close(self, code: int, reason: str) -> None:
        # Close reasons are limited to 123 bytes by RFC 6455.
        text = reason.encode()[:123].decode(errors="ignore")
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            async with self._send_lock:
                await self.ws.close(code, text)

    async def _send(self, text: str | bytes) -> None:
        async with self._send_lock:
            await self.ws.send_text(text if isinstance(text, str) else text.decode())

    # -- reading ----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        idle = self.rt.settings.ws_idle_timeout
        try:
            while not self._ended.is_set():
                try:
                    message = await asyncio.wait_for(self.ws.receive(), idle)
                except TimeoutError:
                    self._finish(CLOSE_IDLE, f"idle: no frame for {idle:g} s")
                    return
                if message["type"] == "websocket.disconnect":
                    self._finish()
                    return
                if message.get("text") is not None:
                    await self._on_text(message["text"])
                elif message.get("bytes") is not None:
                    await self._on_binary(message["bytes"])
        except (WebSocketDisconnect, OSError):
            self._finish()
        except Exception:
            log.exception("WebSocket connection failed")
            self._finish(CLOSE_SERVER_ERROR, "server error")

    async def _on_text(self, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict):
            await self._send(_error(None, "validation_error", "frames are JSON objects", 422))
            return
        op, rid = msg.get("op"), msg.get("rid")
        if self.principal is None and op != "connect":
            self._finish(CLOSE_UNAUTHENTICATED, "send {op: connect, access_token} first")
            return
        handler = self._ops.get(op) if isinstance(op, str) else None
        try:
            if handler is None:
                raise ValidationFailed(f"unknown op {op!r}")
            reply = await handler(self, msg)
        except Unauthenticated as exc:
            if op == "connect":
                self._finish(CLOSE_UNAUTHENTICATED, exc.detail)
                return
            await self._send(_error(rid, exc.code, exc.detail, exc.status))
            return
        except PooldropError as exc:
            await self._send(_error(rid, exc.code, exc.detail, exc.status, **exc.extra))
            return
        if reply is not None:
            await self._send(orjson.dumps({"op": op, "rid": rid, **reply}))

    async def _on_binary(self, data: bytes) -> None:
        if self.principal is None:
            self._finish(CLOSE_UNAUTHENTICATED, "send {op: connect, access_token} first")
            return
        if len(data) < TRANSFER_ID_BYTES:
            await self._send(
                _error(None, "validation_error", "a chunk starts with a 16-byte transfer id", 422)
            )
            return
        tid = data[:TRANSFER_ID_BYTES]
        try:
            await self._transfers().write(tid, data[TRANSFER_ID_BYTES:])
        except PooldropError as exc:
            await self._send(
                _error(
                    None, exc.code, exc.detail, exc.status, transfer_id=str(uuid.UUID(bytes=tid))
                )
            )

    # -- operations -------------------------------------------------------------------------

    async def _authenticate(self, credential: str) -> None:
        self.principal = await authenticate_credential(self.rt, credential)
        if self.hub is not None:
            self.watch = self.hub.watch(self.principal)
            self._tasks.append(asyncio.create_task(self._watch_access(self.watch)))

    async def _watch_access(self, watch: Watch) -> None:
        await watch.ended.wait()
        self._finish(CLOSE_UNAUTHENTICATED, watch.error.detail if watch.error else "")

    async def op_connect(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.principal is not None:
            raise Conflict("already connected")
        token = msg.get("access_token")
        if not isinstance(token, str) or not token:
            raise Unauthenticated("connect needs an access_token")
        await self._authenticate(token)
        assert self.principal is not None
        return {"principal_id": self.principal.id, "kind": self.principal.kind}

    async def op_subscribe(self, msg: dict[str, Any]) -> None:
        assert self.principal is not None
        pool_id, after = msg.get("pool_id"), msg.get("after")
        if not isinstance(pool_id, str) or not pool_id:
            raise ValidationFailed("subscribe needs a pool_id")
        if after is not None and (not isinstance(after, int) or isinstance(after, bool)):
            raise ValidationFailed("after must be an integer event seq")
        if after is not None and after < 0:
            raise ValidationFailed("after must be >= 0")
        if self.hub is None:
            raise _NotImplementedOp("the event hub is not running")
        await self._drop(pool_id)
        sub = await self.hub.subscribe(pool_id, self.principal, after)
        # The answer goes out before the first pushed event.
        try:
            await self._send(
                orjson.dumps(
                    {
                        "op": "subscribe",
                        "rid": msg.get("rid"),
                        "pool_id": pool_id,
                        "after": sub.cursor,
                    }
                )
            )
        except BaseException:
            await sub.close()
            raise
        task = asyncio.create_task(self._pump(sub), name=f"ws-pump-{pool_id}")
        self.subs[pool_id] = (sub, task)

    async def op_unsubscribe(self, msg: dict[str, Any]) -> dict[str, Any]:
        pool_id = msg.get("pool_id")
        if not isinstance(pool_id, str):
            raise ValidationFailed("unsubscribe needs a pool_id")
        await self._drop(pool_id)
        return {"pool_id": pool_id}

    async def _drop(self, pool_id: str) -> None:
        entry = self.subs.pop(pool_id, None)
        if entry is not None:
            sub, task = entry
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sub.close()

    async def _pump(self, sub: Subscription) -> None:
        try:
            while True:
                frame = await sub.get()
                assert frame is not None
                await self._send(frame.render(ws_event_text))
        except SubscriptionClosed:
            return
        except Unauthenticated as exc:
            self._finish(CLOSE_UNAUTHENTICATED, exc.detail)
        except PooldropError as exc:
            # Left the pool or it was deleted: tell the client, keep the socket.
            self.subs.pop(sub.pool_id, None)
            await sub.close()
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await self._send(
                    _error(None, exc.code, exc.detail, exc.status, pool_id=sub.pool_id)
                )
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._finish()

    async def op_get_history(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.principal is not None
        pool_id = msg.get("pool_id")
        if pool_id is not None and not isinstance(pool_id, str):
            raise ValidationFailed("pool_id must be a string")
        async with self.rt.read() as session:
            if pool_id is None:
                rows, _ = await upload_queries.list_uploads(
                    session, uploader_id=self.principal.id, limit=HISTORY_LIMIT, cursor=None
                )
            else:
                rows, _ = await upload_queries.list_pool_uploads(
                    session,
                    self.principal,
                    pool_id,
                    mine=True,
                    group_id=None,
                    status=None,
                    limit=HISTORY_LIMIT,
                    cursor=None,
                )
        return {"items": [upload_view(u) for u in rows]}

    async def op_alive(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _transfers(self) -> TransferOps:
        if self.transfers is None:
            factory = transfer_factory()
            if factory is None:
                raise _NotImplementedOp("file transfers over WebSocket are not available yet")
            assert self.principal is not None
            self.transfers = factory(self.rt, self.principal)
        return self.transfers

    async def op_start_transfer(self, msg: dict[str, Any]) -> dict[str, Any]:
        return await self._transfers().start(msg)

    async def op_complete_upload(self, msg: dict[str, Any]) -> dict[str, Any]:
        return await self._transfers().complete(msg)

    _ops: ClassVar[dict[str, Callable[[Connection, dict[str, Any]], Awaitable[Any]]]] = {
        "connect": op_connect,
        "subscribe": op_subscribe,
        "unsubscribe": op_unsubscribe,
        "get-history": op_get_history,
        "alive": op_alive,
        "start-transfer": op_start_transfer,
        "complete-upload": op_complete_upload,
    }


@router.websocket("/api/v1/ws")
async def gateway(websocket: WebSocket) -> None:
    await Connection(runtime(websocket), websocket).run()
