"""RabbitMQ (AMQP 0-9-1) bus with aio-pika.

URL: ``amqp://user:password@host:5672/vhost?exchange=pooldrop`` (``amqps://`` for TLS; an empty
path is the default vhost ``/``; write a vhost ``/`` as ``%2F``).

Options handled here (the rest go to aio-pika/aiormq, e.g. ``name=...`` for the connection name
shown by ``rabbitmqctl list_connections``, ``cafile=...``; ``heartbeat`` defaults to 10 seconds
here instead of aiormq's 60, so a silently dead broker is noticed in about 30 s):

    exchange=pooldrop        the exchange carrying every topic
    connect_timeout=3        seconds to connect, and the limit of every publish/ping/subscribe
    queue_size=10000         per-subscription buffer, here and on the broker (``x-max-length``
                             with ``drop-head``); the oldest wake-up is dropped when full

Topology: ONE durable *direct* exchange; a topic is a routing key. Each subscription is an
exclusive, auto-delete, server-named queue bound to the exchange with its topic, consumed
without acks. A direct exchange gives exact-match fan-out to every bound queue, which is the
whole contract; a topic exchange would read ``*`` and ``#`` in names as wildcards, and one
exchange per topic would need a declaration (and a permission) for every new topic. One
exchange means one name for an operator to grant or inspect. It is declared durable so that
publishers keep working after a broker restart before any subscriber has come back; messages
are transient (wake-ups are worthless after a restart).

Reconnection is pooldrop's own, not ``connect_robust``: robust connections retry at a fixed
interval and restore queues under their old names, which the broker refuses for server-named
(``amq.gen-``) queues and can race with the old exclusive queue. Here one supervisor task
watches the connection and both channels (publishing, consuming); on any unexpected close it
reconnects with jittered exponential backoff, declares the exchange and gives every live
subscription a fresh queue. While disconnected ``publish`` fails fast and nothing is yielded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.exceptions import AMQPError

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

# RuntimeError covers aio-pika's ChannelInvalidStateError (use of a closed channel).
_FAILURES = (AMQPError, RuntimeError, OSError, TimeoutError)


@dataclass(eq=False)
class _Consumer:
    """A subscription and the broker queue currently feeding it (none while disconnected)."""

    sub: QueueSubscription
    active: asyncio.Event = field(default_factory=asyncio.Event)
    queue: AbstractQueue | None = None
    tag: str | None = None


@dataclass
class _Link:
    """One live connection with its two channels and the declared exchange."""

    connection: AbstractConnection
    publishing: AbstractChannel
    consuming: AbstractChannel
    exchange: AbstractExchange


class AmqpBus(Bus):
    """Wake-ups over a RabbitMQ direct exchange; one connection, two channels per bus."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"not an AMQP URL: {redact_url(url)}")
        super().__init__(url)
        query = query_dict(url)
        self.exchange_name = query.pop("exchange", "pooldrop") or "pooldrop"
        self._timeout = pop_float(query, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self._queue_size = pop_int(query, "queue_size", DEFAULT_QUEUE_SIZE)
        # aiormq's default (60 s, and three missed beats) takes minutes to notice a broker that
        # vanished without closing the socket; 10 s notices it in about half a minute.
        query.setdefault("heartbeat", "10")
        self._broker_url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urlencode(query), "")
        )
        self._secrets = url_secrets(url)
        self._link: _Link | None = None
        self._generation = 0  # numbers each connection attempt
        self._live: int | None = None  # the attempt whose link is in use; only its close counts
        self._consumers: dict[QueueSubscription, _Consumer] = {}
        self._lock = asyncio.Lock()
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self.reconnects = 0
        """How many times the connection was re-established (for metrics and tests)."""

    @property
    def distributed(self) -> bool:
        return True

    @property
    def connected(self) -> bool:
        """True while the connection (shared by publishing and subscriptions) is up."""
        return self._link is not None

    async def start(self) -> None:
        if self._closed:
            raise BusError(f"bus {self.url} is closed")
        if self._started:
            return
        try:
            async with asyncio.timeout(self._timeout):  # one deadline for the whole handshake
                await self._connect()
        except _FAILURES as exc:
            raise self._error("cannot connect to", exc) from None
        self._started = True
        self._supervisor = asyncio.create_task(self._supervise(), name=f"bus {self.url}")

    async def publish(self, topic: str, payload: bytes) -> None:
        check_topic(topic)
        link = self._require_link()
        message = aio_pika.Message(payload, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT)
        try:
            # Publisher confirms: returning means the broker routed it (or found no subscriber).
            async with asyncio.timeout(self._timeout):
                await link.exchange.publish(message, routing_key=topic)
        except _FAILURES as exc:
            raise self._error("publish failed at", exc) from None

    async def ping(self) -> None:
        link = self._require_link()
        try:
            async with asyncio.timeout(self._timeout):
                # A passive declare is a cheap round trip that also proves the exchange exists.
                await link.publishing.get_exchange(self.exchange_name, ensure=True)
        except _FAILURES as exc:
            raise self._error("ping failed at", exc) from None

    async def subscribe(self, topic: str) -> Subscription:
        check_topic(topic)
        self._require_started()
        sub = QueueSubscription(topic, maxsize=self._queue_size, on_close=self._unsubscribe)
        consumer = _Consumer(sub)
        self._consumers[sub] = consumer
        async with self._lock:
            link = self._link
            if link is not None and not consumer.active.is_set():
                try:
                    if await self._attach(consumer, link):
                        consumer.active.set()
                except _FAILURES as exc:
                    # The supervisor sees the closed channel and attaches it after reconnecting.
                    log.warning("bus %s: subscribe failed (%s)", self.url, self._scrub(exc))
        try:
            await asyncio.wait_for(consumer.active.wait(), self._timeout)
            self._require_started()  # close() wakes waiting subscribers to say it closed
        except BaseException as exc:
            sub.detach()
            if self._consumers.pop(sub, None) is not None and consumer.queue and consumer.tag:
                with contextlib.suppress(*_FAILURES):
                    await consumer.queue.cancel(consumer.tag)
            if isinstance(exc, TimeoutError):
                raise BusError(
                    f"cannot subscribe to {topic!r} on RabbitMQ at {self.url}: "
                    f"not connected within {self._timeout:g}s"
                ) from None
            raise
        return sub

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        for consumer in list(self._consumers.values()):
            consumer.sub.detach()
            consumer.active.set()
        self._consumers.clear()
        await self._drop_link()

    # --- connection life cycle -------------------------------------------------------------

    async def _connect(self) -> None:
        """One attempt: connection, channels, exchange, then a queue for every subscription."""
        connection = await aio_pika.connect(self._broker_url, timeout=self._timeout)
        try:
            async with asyncio.timeout(self._timeout):
                publishing = await connection.channel(publisher_confirms=True)
                consuming = await connection.channel(publisher_confirms=False)
                exchange = await publishing.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.DIRECT, durable=True
                )
            link = _Link(connection, publishing, consuming, exchange)
            self._generation += 1
            generation = self._generation
            on_close = functools.partial(self._on_close, generation)
            for closable in (connection, publishing, consuming):
                closable.close_callbacks.add(on_close)
            async with self._lock:
                attached = []
                try:
                    for consumer in list(self._consumers.values()):
                        async with asyncio.timeout(self._timeout):
                            if await self._attach(consumer, link):
                                attached.append(consumer)
                except BaseException:
                    for consumer in attached:  # their queues die with this connection
                        consumer.queue = consumer.tag = None
                    raise
                # From here a close is a lost connection; before, it fails this attempt.
                self._link, self._live = link, generation
                for consumer in attached:
                    consumer.active.set()
        except BaseException:
            with contextlib.suppress(*_FAILURES):
                await connection.close()
            raise

    async def _attach(self, consumer: _Consumer, link: _Link) -> bool:
        """Give ``consumer`` a fresh queue on ``link``; False if it was closed meanwhile.

        The caller sets ``consumer.active`` once the whole link is usable.
        """
        sub = consumer.sub
        if sub.closed:
            return False
        queue = await link.consuming.declare_queue(
            "",
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": self._queue_size, "x-overflow": "drop-head"},
        )
        await queue.bind(self.exchange_name, routing_key=sub.topic)

        async def deliver(message: AbstractIncomingMessage) -> None:
            sub.put(message.body)

        tag = await queue.consume(deliver, no_ack=True)
        if sub.closed:  # closed while we were declaring: don't leave a consumer behind
            await queue.cancel(tag)
            return False
        consumer.queue, consumer.tag = queue, tag
        return True

    def _on_close(self, generation: int, _sender: Any, exc: BaseException | None) -> None:
        if self._closed or generation != self._live:
            return
        self._live = None  # the connection and both channels report it: act once
        log.warning(
            "bus %s: connection lost (%s); reconnecting",
            self.url,
            self._scrub(exc) if exc else "closed",
        )
        self._link = None
        for consumer in self._consumers.values():
            consumer.active.clear()
            consumer.queue = consumer.tag = None
        self._lost.set()

    async def _supervise(self) -> None:
        while True:
            await self._lost.wait()
            self._lost.clear()
            await self._drop_link()
            async for attempt in reconnecting(f"bus {self.url}", secrets=self._secrets):
                with attempt:
                    await self._connect()
            self.reconnects += 1
            log.info("bus %s: reconnected", self.url)

    async def _drop_link(self) -> None:
        link, self._link, self._live = self._link, None, None
        connection = link.connection if link is not None else None
        if connection is None:
            return
        with contextlib.suppress(*_FAILURES):
            await connection.close()

    # --- subscriptions ---------------------------------------------------------------------

    async def _unsubscribe(self, sub: QueueSubscription) -> None:
        consumer = self._consumers.pop(sub, None)
        if consumer is None or consumer.queue is None or consumer.tag is None:
            return
        # Cancelling the only consumer deletes the auto-delete queue. Best effort: if the
        # connection is gone the exclusive queue went with it.
        with contextlib.suppress(*_FAILURES):
            async with asyncio.timeout(self._timeout):
                await consumer.queue.cancel(consumer.tag)

    # --- helpers ---------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._closed:
            raise BusError(f"bus {self.url} is closed")
        if not self._started:
            raise BusError(f"bus {self.url} is not started")

    def _require_link(self) -> _Link:
        self._require_started()
        if self._link is None:
            raise BusError(f"not connected to RabbitMQ at {self.url} (reconnecting)")
        return self._link

    def _scrub(self, exc: BaseException) -> str:
        return scrub(describe(exc, self._timeout), self._secrets)

    def _error(self, what: str, exc: BaseException) -> BusError:
        return BusError(f"RabbitMQ {what} {self.url}: {self._scrub(exc)}")
