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
from pooldrop.api.eager import run_eagerly
from pooldrop.api.sweeper import sweeper
from pooldrop.errors import Conflict, PooldropError, Unauthenticated, ValidationFailed
from pooldrop.services import upload_queries
from pooldrop.services.hub import EventHub, Frame, Subscription, SubscriptionClosed, Watch
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import Runtime
from pooldrop.services.views import upload_view

log = logging.getLogger("pooldrop.ws")

GATEWAY_PATH = "/api/v1/ws"
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


class _Push:
    """One subscription of a socket and its writer, while it has frames to write."""

    __slots__ = ("running", "sub", "task")

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.running = False
        self.task: asyncio.Task[None] | None = None  # the writer, once it had to wait


class Connection:
    """One accepted socket: its principal, subscriptions, transfers and writer lock.

    An idle socket holds no task of its own beyond the ASGI one, which reads client frames: the
    hub calls back when a subscription has frames (a writer runs until they are sent), the
    loop's sweeper checks the idle limit, and the hub's access check calls back when the
    principal loses access. Whatever ends the connection from outside the reading task
    interrupts that task's wait.
    """

    def __init__(self, rt: Runtime, ws: WebSocket) -> None:
        self.rt = rt
        self.ws = ws
        self.hub: EventHub | None = rt.hub
        self.principal: Principal | None = None
        self.watch: Watch | None = None
        self.subs: dict[str, _Push] = {}
        self.transfers: TransferOps | None = None
        self._send_lock = asyncio.Lock()
        self._ended = False
        self._close: tuple[int, str] | None = None
        self._reader: asyncio.Task[Any] | None = None
        self._interrupted = False
        self._last_frame = 0.0

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
        self._reader = asyncio.current_task()
        loop = asyncio.get_running_loop()
        self._last_frame = loop.time()
        sweeper().add(self)
        try:
            await self._read_loop()
        except asyncio.CancelledError:
            if not self._interrupted:
                raise
            # Our own interruption (see _finish), not the server's: carry on closing.
            if self._reader is not None:
                self._reader.uncancel()
        finally:
            self._reader = None
            await self._cleanup()
        if self._close is not None:
            await self._send_close(*self._close)

    def _finish(self, code: int | None = None, reason: str = "") -> None:
        """End the connection; ``code`` None means the client already went away."""
        if self._ended:
            return
        self._ended = True
        self._close = None if code is None else (code, reason)
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task() and not reader.done():
            self._interrupted = True
            reader.cancel()

    def tick(self, now: float) -> None:
        """The idle limit, checked by the loop's sweeper."""
        idle = self.rt.settings.ws_idle_timeout
        if now - self._last_frame >= idle:
            self._finish(CLOSE_IDLE, f"idle: no frame for {idle:g} s")

    async def _cleanup(self) -> None:
        sweeper().discard(self)
        pushes = list(self.subs.values())
        self.subs.clear()
        for push in pushes:
            await self._stop_push(push)
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
        loop = asyncio.get_running_loop()
        try:
            while not self._ended:
                message = await self.ws.receive()
                self._last_frame = loop.time()
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
            self.watch = self.hub.watch(self.principal, self._access_lost)

    def _access_lost(self) -> None:
        watch = self.watch
        self._finish(CLOSE_UNAUTHENTICATED, watch.error.detail if watch and watch.error else "")

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
        push = self.subs[pool_id] = _Push(sub)
        sub.listener = functools.partial(self._kick, push)
        self._kick(push)  # the backlog, if any

    async def op_unsubscribe(self, msg: dict[str, Any]) -> dict[str, Any]:
        pool_id = msg.get("pool_id")
        if not isinstance(pool_id, str):
            raise ValidationFailed("unsubscribe needs a pool_id")
        await self._drop(pool_id)
        return {"pool_id": pool_id}

    async def _drop(self, pool_id: str) -> None:
        push = self.subs.pop(pool_id, None)
        if push is not None:
            await self._stop_push(push)

    async def _stop_push(self, push: _Push) -> None:
        push.sub.listener = None
        task = push.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await push.sub.close()

    def _kick(self, push: _Push) -> None:
        """The hub has something for ``push.sub``: start its writer unless one is running."""
        if not push.running and not self._ended and self.subs.get(push.sub.pool_id) is push:
            push.running = True
            push.task = run_eagerly(self._pump(push), "ws-push")

    async def _pump(self, push: _Push) -> None:
        sub = push.sub
        try:
            while True:
                frame = await sub.get(wait=0)
                if frame is None:
                    # No await between the empty get and this: the next offer starts a writer.
                    push.running = False
                    return
                await self._send(frame.render(ws_event_text))
        except SubscriptionClosed:
            return
        except Unauthenticated as exc:
            self._finish(CLOSE_UNAUTHENTICATED, exc.detail)
        except PooldropError as exc:
            # Left the pool or it was deleted: tell the client, keep the socket.
            if self.subs.get(sub.pool_id) is push:
                del self.subs[sub.pool_id]
            sub.listener = None
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


async def gateway(websocket: WebSocket) -> None:
    await Connection(runtime(websocket), websocket).run()


# A plain Starlette route: the gateway takes no FastAPI dependencies, and FastAPI's per-request
# exit stacks and solved-dependency state would stay alive as long as each socket does.
router.add_websocket_route(GATEWAY_PATH, gateway)
