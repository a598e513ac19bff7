"""Redis pub/sub bus (redis-py's ``redis.asyncio``), direct or through Sentinel.

URLs:

    redis://[[user]:password@]host[:port][/db][?options]
    rediss://[[user]:password@]host[:port][/db][?options]        (TLS)
    redis+sentinel://[[user]:password@]host:26379[,host2:26379...]/service[/db][?options]

Pub/sub channels are global to a Redis server, so ``db`` only selects where the client's
connections are counted; topics are the channel names as given.

Options handled here (the rest go to redis-py, e.g. ``ssl_cert_reqs``, ``socket_keepalive``):

    connect_timeout=3        seconds to connect, and the limit of every publish/ping/subscribe
    queue_size=10000         per-subscription buffer; the oldest wake-up is dropped when full
    ping_interval=15         seconds a subscriber connection may stay silent before it PINGs;
                             no answer within twice that counts as a lost connection
    client_name=NAME         CLIENT SETNAME for every connection (default ``pooldrop``)
    sentinel_password=...    (Sentinel only) password of the Sentinel servers themselves
    sentinel_username=...    (Sentinel only) their user name
    sentinel_ssl=true        (Sentinel only) reach the Sentinels over TLS (the data nodes use
                             ``ssl=true``)

A bus holds one pooled client for publishing (a dead pooled connection is retried once at once,
then the call fails with ``BusError``) and, from its first ``subscribe()``, one pub/sub connection
shared by all its subscriptions. redis-py is told never to retry that one; when it drops (server
restart, failover, ``CLIENT KILL``) or goes silent, the bus's reader task reconnects with
jittered exponential backoff (``pooldrop.bus.reconnect``) and subscribes to every wanted topic
again; nothing is yielded in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from pooldrop.bus.base import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_QUEUE_SIZE,
    Bus,
    BusError,
    Subscription,
    check_topic,
    describe,
    pop_float,
    pop_int,
    query_dict,
    redact_url,
    scrub,
    url_secrets,
)
from pooldrop.bus.reconnect import reconnecting
from pooldrop.bus.subscription import QueueSubscription

log = logging.getLogger("pooldrop.bus")

_FAILURES = (RedisError, OSError, TimeoutError)
_TRUE = {"1", "true", "yes", "on"}


def _retry_once() -> Retry:
    # One immediate retry on a connection error heals a pooled connection that died while idle
    # (server restart); timeouts are not retried so an unreachable host fails within one timeout.
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def _never_retry() -> Retry:
    # For the pub/sub connection: no error is "supported", so redis-py neither retries nor
    # reconnects it behind our back; the reader's own loop (with backoff) is the one mechanism.
    return Retry(NoBackoff(), 0, supported_errors=())


@dataclass(frozen=True)
class _Config:
    """What a Redis bus URL says, parsed without any I/O."""

    connect_timeout: float
    queue_size: int
    ping_interval: float
    node: dict[str, Any]
    direct_url: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> tuple[aioredis.Redis, aioredis.Redis, Sentinel | None]:
        """Publishing and subscribing clients (no I/O yet) and the Sentinel manager, if any."""
        publishing = dict(self.node, retry=_retry_once())
        subscribing = dict(self.node, retry=_never_retry())
        if self.direct_url is not None:
            return (
                aioredis.Redis.from_url(self.direct_url, **publishing),
                aioredis.Redis.from_url(self.direct_url, **subscribing),
                None,
            )
        # redis-py leaves Sentinel and PubSub partly unannotated; the ignores below are for that.
        manager = Sentinel(  # type: ignore[no-untyped-call]
            list(self.sentinels), sentinel_kwargs=dict(self.sentinel_kwargs)
        )
        return (
            manager.master_for(self.service, **publishing),
            manager.master_for(self.service, **subscribing),
            manager,
        )


def _parse(url: str) -> _Config:
    parts = urlsplit(url)
    query = query_dict(url)
    timeout = pop_float(query, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    queue_size = pop_int(query, "queue_size", DEFAULT_QUEUE_SIZE)
    ping_interval = pop_float(query, "ping_interval", 15.0)
    node: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "client_name": query.pop("client_name", "pooldrop"),
    }
    if parts.scheme in ("redis", "rediss"):
        direct = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        return _Config(timeout, queue_size, ping_interval, node, direct_url=direct)

    # redis+sentinel://: a comma-separated host list that urllib cannot parse into host/port.
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            host, port = item.strip(), "26379"
        if not host or not port.isdigit():
            raise ValueError(f"bad Sentinel address {item!r} in {redact_url(url)}")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"Sentinel URL needs /service[/db]: {redact_url(url)}")
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": _retry_once(),
        "password": query.pop("sentinel_password", None) or None,
        "username": query.pop("sentinel_username", None) or None,
        "ssl": query.pop("sentinel_ssl", "").lower() in _TRUE,
    }
    node["db"] = int(path[1]) if len(path) == 2 else 0
    if "ssl" in query:
        node["ssl"] = query.pop("ssl").lower() in _TRUE
    node.update(query)  # anything else is a redis-py connection option, as for redis://
    user, _, password = userinfo.partition(":")
    if user:
        node["username"] = unquote(user)
    if password:
        node["password"] = unquote(password)
    return _Config(
        timeout,
        queue_size,
        ping_interval,
        node,
        sentinels=tuple(sentinels),
        service=path[0],
        sentinel_kwargs=sentinel_kwargs,
    )


class RedisBus(Bus):
    """Wake-ups over Redis PUBLISH/SUBSCRIBE; one pub/sub connection per bus."""

    def __init__(self, url: str) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "redis+sentinel"):
            raise ValueError(f"not a Redis URL: {redact_url(url)}")
        super().__init__(url)
        self._secrets = url_secrets(url)
        self._config = _parse(url)  # a bad URL fails here, at configuration time
        self._timeout = self._config.connect_timeout
        self._queue_size = self._config.queue_size
        self._ping_interval = self._config.ping_interval
        self._client: aioredis.Redis | None = None
        self._subscriber: aioredis.Redis | None = None
        self._sentinel: Sentinel | None = None
        self._closed = False
        # Subscriber state, owned by the reader task; subscribe() only adds and waits.
        self._topics: dict[str, set[QueueSubscription]] = {}
        self._active: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self.reconnects = 0
        """How many times the subscriber connection was re-established (for metrics and tests)."""

    @property
    def distributed(self) -> bool:
        return True

    @property
    def connected(self) -> bool:
        """True while the subscriber connection is up (always False before the first subscribe)."""
        return self._pubsub is not None

    async def start(self) -> None:
        if self._closed:
            raise BusError(f"bus {self.url} is closed")
        if self._client is not None:
            return
        self._client, self._subscriber, self._sentinel = self._config.build()
        try:
            await self.ping()
        except BusError:
            await self._close_clients()
            raise

    async def publish(self, topic: str, payload: bytes) -> None:
        check_topic(topic)
        client = self._require()
        await self._call("publish", lambda: client.publish(topic, payload))

    async def ping(self) -> None:
        client = self._require()
        await self._call("ping", client.ping)

    async def subscribe(self, topic: str) -> Subscription:
        check_topic(topic)
        self._require()
        sub = QueueSubscription(topic, maxsize=self._queue_size, on_close=self._unsubscribe)
        self._topics.setdefault(topic, set()).add(sub)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name=f"bus-reader {self.url}")
        if topic in self._active:
            return sub
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(topic, []).append(waiter)
        try:
            async with asyncio.timeout(self._timeout):
                pubsub = self._pubsub
                if pubsub is not None:
                    # A failure here means the connection is going away: the reader notices,
                    # reconnects and subscribes to every wanted topic, resolving the waiter.
                    with contextlib.suppress(*_FAILURES):
                        await pubsub.subscribe(topic)
                await waiter
        except BaseException as exc:
            with contextlib.suppress(ValueError):  # already popped if it was resolved
                self._waiters.get(topic, []).remove(waiter)
            sub.detach()
            self._forget(sub)
            if isinstance(exc, TimeoutError):
                raise BusError(
                    f"cannot subscribe to {topic!r} on Redis at {self.url}: "
                    f"no confirmation within {self._timeout:g}s (server unreachable?)"
                ) from None
            raise
        return sub

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(BusError(f"bus {self.url} is closed"))
        self._waiters.clear()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for subs in list(self._topics.values()):
            for sub in subs:
                sub.detach()
        self._topics.clear()
        await self._close_clients()

    # --- publishing side -------------------------------------------------------------------

    def _require(self) -> aioredis.Redis:
        if self._closed:
            raise BusError(f"bus {self.url} is closed")
        if self._client is None:
            raise BusError(f"bus {self.url} is not started")
        return self._client

    async def _call(self, what: str, call: Callable[[], Any]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await call()
        except _FAILURES as exc:
            raise BusError(
                f"Redis {what} failed at {self.url}: "
                f"{scrub(describe(exc, self._timeout), self._secrets)}"
            ) from None

    async def _close_clients(self) -> None:
        clients = (self._client, self._subscriber)
        self._client = self._subscriber = None
        sentinel, self._sentinel = self._sentinel, None
        for client in clients:
            if client is not None:
                await client.aclose()
        if sentinel is not None:
            await sentinel.aclose()

    # --- subscribing side ------------------------------------------------------------------

    async def _unsubscribe(self, sub: QueueSubscription) -> None:
        if not self._forget(sub):
            return
        pubsub = self._pubsub
        if pubsub is not None:
            # Best effort: if it fails the connection is gone, and the reconnection only
            # subscribes to topics that are still wanted.
            with contextlib.suppress(*_FAILURES):
                await pubsub.unsubscribe(sub.topic)

    def _forget(self, sub: QueueSubscription) -> bool:
        """Drop ``sub``; True when it was the topic's last local subscription."""
        subs = self._topics.get(sub.topic)
        if subs is None:
            return False
        subs.discard(sub)
        if subs:
            return False
        del self._topics[sub.topic]
        self._active.discard(sub.topic)
        return True

    async def _read_forever(self) -> None:
        while True:
            pubsub = await self._connect_subscriber()
            try:
                await self._pump(pubsub)
            except Exception as exc:
                # Anything but cancellation (close()) reconnects: a reader that died would leave
                # every subscription silent forever.
                log.warning(
                    "bus %s: subscriber connection lost (%s); reconnecting",
                    self.url,
                    scrub(describe(exc), self._secrets),
                    exc_info=not isinstance(exc, _FAILURES),
                )
            finally:
                self._pubsub = None
                self._active.clear()
                await self._discard(pubsub)
            self.reconnects += 1

    async def _connect_subscriber(self) -> PubSub:
        self._require()
        assert self._subscriber is not None  # built with the publishing client in start()
        client = self._subscriber
        async for attempt in reconnecting(f"bus {self.url} subscriber", secrets=self._secrets):
            with attempt:
                pubsub = client.pubsub()
                try:
                    async with asyncio.timeout(self._timeout):
                        await pubsub.connect()  # type: ignore[no-untyped-call]
                        # Published before the snapshot below, so a concurrent subscribe()
                        # either is in the snapshot or sends its own SUBSCRIBE.
                        self._pubsub = pubsub
                        topics = list(self._topics)
                        if topics:
                            await pubsub.subscribe(*topics)
                except BaseException:
                    self._pubsub = None
                    await self._discard(pubsub)
                    raise
                return pubsub
        raise AssertionError("unreachable: reconnecting() retries forever")

    async def _pump(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=min(1.0, self._ping_interval / 3))
            now = loop.time()
            if message is None:
                # A server that vanished without closing the socket (host down, partition)
                # only shows as silence: PING it, and give up when even that goes unanswered.
                silent = now - heard
                if silent > 2 * self._ping_interval:
                    raise RedisConnectionError(f"no reply to PING for {silent:.0f}s")
                if silent > self._ping_interval and not pinged:
                    await pubsub.ping()
                    pinged = True
                continue
            heard, pinged = now, False
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            topic = message["channel"].decode("ascii", "replace")
            for sub in tuple(self._topics.get(topic, ())):
                sub.put(message["data"])
        elif kind == "subscribe":
            topic = message["channel"].decode("ascii", "replace")
            if topic in self._topics:
                self._active.add(topic)
            for waiter in self._waiters.pop(topic, []):
                if not waiter.done():
                    waiter.set_result(None)

    @staticmethod
    async def _discard(pubsub: PubSub) -> None:
        with contextlib.suppress(*_FAILURES):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
