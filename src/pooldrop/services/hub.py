"""The per-process event hub: reads each pool's log once and hands the same bytes to every listener.

    bus wake-up "P N" ─┐
    poll (every 2 s)  ─┴─> fetch P's events seq > last_seq (one query), serialize each once
                             └─> Frame(seq, payload) ─> each local Subscription that may see it
    subscribe(P, after) ──> backlog from the hub's recent-frames ring, else from the database

The database log is the truth (DESIGN.md rule 4); the bus only makes the hub look sooner, and the
poll makes a lost wake-up (or a bus that is down) cost a few seconds, never an event.

No gap, no duplicate: a subscription registers first, then reads its backlog, then takes live
frames, and drops any frame whose seq is not above its cursor. Per subscription the state is a
cursor, a bounded deque of shared ``Frame`` objects and a flag: a subscriber that falls more than
``queue_size`` frames behind has its deque dropped and re-reads its gap from the database in pages
(a *resync*) at its own pace, so a slow client never holds memory without bound.

Every ``auth_interval`` seconds the hub re-checks, in a few batched queries, that each subscriber's
session or key is still valid and that it still belongs to the pool; a subscriber that lost access
gets ``Unauthenticated`` or ``NotFound`` from its iteration. Connections without subscriptions
(a WebSocket that only uploads) register a ``Watch`` for the same check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from sqlalchemy import Select, false, select
from sqlalchemy.ext.asyncio import AsyncSession

from pooldrop.bus import BusError
from pooldrop.bus import Subscription as BusSubscription
from pooldrop.domain.roles import GlobalRole, PoolRole
from pooldrop.errors import NotFound, PooldropError, Unauthenticated
from pooldrop.services import retention
from pooldrop.services.access import role_in_pool
from pooldrop.services.events import event_out
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import EVENTS_TOPIC, Runtime
from pooldrop.store.models import ApiKey, AuthSession, Event, Membership, Pool, User

log = logging.getLogger("pooldrop.hub")

T = TypeVar("T")

PAGE_SIZE = 500
"""Events per database read (live fetch and subscriber backlog)."""
DEFAULT_QUEUE_SIZE = 1000
"""Live frames a subscriber may have waiting before it is switched to a database resync."""
DEFAULT_RING_SIZE = 128
"""Recent frames kept per watched pool, so a reconnect with a fresh cursor reads no database."""
DEFAULT_POLL_INTERVAL = 2.0
DEFAULT_AUTH_INTERVAL = 30.0
_IN_CHUNK = 500  # ids per IN (...) list in the batched checks


class Frame:
    """One event, serialized once; shared by every subscriber that receives it.

    ``payload`` is the event's JSON (the ``event_out`` shape). ``render`` caches transport
    encodings (an SSE chunk, a WebSocket text frame) so they too are built once per event.
    """

    __slots__ = ("_renders", "payload", "seq", "type", "visible_to")

    def __init__(self, seq: int, type_: str, visible_to: str | None, payload: bytes) -> None:
        self.seq = seq
        self.type = type_
        self.visible_to = visible_to
        self.payload = payload
        self._renders: dict[Callable[[Frame], Any], Any] | None = None

    def render(self, fmt: Callable[[Frame], T]) -> T:
        """``fmt(self)``, computed on the first call only (keyed by the function)."""
        if self._renders is None:
            self._renders = {}
        try:
            value: T = self._renders[fmt]
        except KeyError:
            value = self._renders[fmt] = fmt(self)
        return value

    def __repr__(self) -> str:
        return f"<Frame {self.seq} {self.type}>"


class SubscriptionClosed(Exception):
    """``Subscription.get`` on a subscription that was closed (by its owner or by ``hub.stop``)."""


@dataclass
class HubStats:
    """Counters for tests and metrics."""

    serialized: int = 0
    """Events serialized to JSON (live fetches and database backlogs)."""
    fetches: int = 0
    """Live reads of a pool's new events."""
    dispatched: int = 0
    """Frames handed to subscribers."""
    resyncs: int = 0
    """Times a slow subscriber's queue overflowed and it switched to reading the database."""
    backlog_reads: int = 0
    """Database pages read for subscribers' backlogs."""
    ring_hits: int = 0
    """Subscriptions whose backlog came whole from the recent-frames ring."""
    wakeups: int = 0
    """Bus wake-ups received."""
    polls: int = 0
    """Poll passes over the watched pools."""


def _key(principal: Principal) -> tuple[str, str]:
    if principal.kind == "key":
        return ("key", principal.id)
    return ("session", principal.session_id or "")


class Watch:
    """A connection's interest in its principal staying valid (see ``EventHub.watch``)."""

    def __init__(self, hub: EventHub, principal: Principal) -> None:
        self.principal = principal
        self.error: PooldropError | None = None
        self.ended = asyncio.Event()
        self._hub = hub

    def _fail(self, error: PooldropError) -> None:
        self.error = error
        self.ended.set()

    def close(self) -> None:
        self._hub._watches.discard(self)


class Subscription:
    """Events of one pool for one principal, after a cursor, in seq order, each once.

    Iterate with ``async for frame in sub`` (ends when closed) or call ``get(timeout)``. Both
    raise ``Unauthenticated`` when the principal's session ended or key was revoked, and
    ``NotFound`` when it left the pool or the pool was deleted. ``cursor`` is the seq after which
    the next call continues; it can move past events this principal may not see.
    """

    def __init__(
        self,
        hub: EventHub,
        pool_id: str,
        principal: Principal,
        sees_all: bool,
        cursor: int,
        queue_size: int,
    ) -> None:
        self.pool_id = pool_id
        self.principal = principal
        self.sees_all = sees_all
        self.cursor = cursor
        self._hub = hub
        self._queue: deque[Frame] = deque()
        self._queue_size = queue_size
        self._backlog: deque[Frame] = deque()
        self._skip_to = cursor
        self._resync = False
        self._error: PooldropError | None = None
        self._closed = False
        self._wakeup = asyncio.Event()

    def sees(self, visible_to: str | None) -> bool:
        return visible_to is None or self.sees_all or visible_to == self.principal.id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Frames buffered and not yet taken (backlog and live)."""
        return len(self._backlog) + len(self._queue)

    def _offer(self, frame: Frame) -> None:
        # Called by the hub, synchronously, in seq order.
        if self._closed or self._resync:
            return  # a resync will read it from the database
        if len(self._queue) >= self._queue_size:
            self._queue.clear()
            self._resync = True
            self._hub.stats.resyncs += 1
        else:
            self._queue.append(frame)
            self._hub.stats.dispatched += 1
        self._wakeup.set()

    def _fail(self, error: PooldropError) -> None:
        self._error = error
        self._wakeup.set()

    def _take(self) -> Frame | None:
        while self._backlog:
            frame = self._backlog.popleft()
            if frame.seq > self.cursor:
                self.cursor = frame.seq
                return frame
        # The last backlog page covered everything up to _skip_to (visible or not).
        self.cursor = max(self.cursor, self._skip_to)
        if self._resync:
            return None
        while self._queue:
            frame = self._queue.popleft()
            if frame.seq > self.cursor:
                self.cursor = frame.seq
                return frame
        return None

    async def _read_page(self) -> None:
        # Buffer live frames again *before* reading, so nothing committed after the read is lost.
        self._resync = False
        self._queue.clear()
        page, covered_to, full = await self._hub._read_backlog(self, self.cursor)
        self._backlog.extend(page)
        self._skip_to = max(self._skip_to, covered_to)
        if full:
            self._resync = True

    async def get(self, wait: float | None = None) -> Frame | None:
        """The next frame; None if none arrived within ``wait`` seconds (None: wait forever).

        Buffered frames and pending database reads are served whatever ``wait`` is; it bounds
        only the wait for new events. Raises ``SubscriptionClosed`` once closed.
        """
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        while True:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise SubscriptionClosed(self.pool_id)
            frame = self._take()
            if frame is not None:
                return frame
            if self._resync:
                await self._read_page()
                continue
            self._wakeup.clear()
            if deadline is None:
                await self._wakeup.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Frame:
        try:
            frame = await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None
        assert frame is not None
        return frame

    async def close(self) -> None:
        """Stop receiving; a pending ``get`` raises ``SubscriptionClosed``. Idempotent."""
        self._end()

    def _end(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._backlog.clear()
        self._wakeup.set()
        self._hub._unregister(self)

    def __repr__(self) -> str:
        return f"<Subscription {self.pool_id} {self.principal.id} cursor={self.cursor}>"


class _PoolState:
    """The hub's view of one pool that has local subscribers."""

    def __init__(self, pool_id: str, ring_size: int) -> None:
        self.pool_id = pool_id
        self.lock = asyncio.Lock()
        self.initialized = False
        self.last_seq = 0  # every event up to here was fetched and dispatched
        self.ring: deque[Frame] = deque(maxlen=ring_size)
        self.ring_floor = 0  # the ring holds every event in (ring_floor, last_seq]
        self.refs = 0  # subscriptions plus subscribe() calls in progress
        self.subs: set[Subscription] = set()
        # Private events (visible_to set) go to their principal and to admins only: index both
        # so a private event costs O(admins + that principal's connections), not O(members).
        self.by_principal: dict[str, set[Subscription]] = {}
        self.admins: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None
        self.dirty = False

    def add(self, sub: Subscription) -> None:
        self.subs.add(sub)
        self.by_principal.setdefault(sub.principal.id, set()).add(sub)
        if sub.sees_all:
            self.admins.add(sub)

    def remove(self, sub: Subscription) -> None:
        self.subs.discard(sub)
        self.admins.discard(sub)
        peers = self.by_principal.get(sub.principal.id)
        if peers is not None:
            peers.discard(sub)
            if not peers:
                del self.by_principal[sub.principal.id]

    def dispatch(self, frame: Frame) -> None:
        self.last_seq = frame.seq
        if not self.ring.maxlen:
            self.ring_floor = frame.seq
        elif len(self.ring) == self.ring.maxlen:
            self.ring_floor = self.ring[0].seq
        self.ring.append(frame)
        if frame.visible_to is None:
            targets: Iterable[Subscription] = self.subs
        else:
            targets = self.admins | self.by_principal.get(frame.visible_to, set())
        for sub in tuple(targets):
            sub._offer(frame)


class EventHub:
    """One per process. ``await start()``, then ``subscribe`` per listener; ``await stop()``."""

    def __init__(
        self,
        rt: Runtime,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        auth_interval: float = DEFAULT_AUTH_INTERVAL,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        ring_size: int = DEFAULT_RING_SIZE,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.rt = rt
        self.poll_interval = poll_interval
        self.auth_interval = auth_interval
        self.queue_size = queue_size
        self.ring_size = ring_size
        self.page_size = page_size
        self.stats = HubStats()
        self._pools: dict[str, _PoolState] = {}
        self._watches: set[Watch] = set()
        self._bus_sub: BusSubscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the bus (if it is reachable) and start the poll and access loops."""
        if self._started:
            return
        self._started = True
        try:
            self._bus_sub = await self.rt.bus.subscribe(EVENTS_TOPIC)
        except BusError as exc:
            # Not fatal: the poll still delivers every event, only later.
            log.warning("event hub runs on polling only, bus subscribe failed: %s", exc)
        else:
            self._tasks.append(asyncio.create_task(self._read_bus(), name="hub-bus"))
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="hub-poll"))
        self._tasks.append(asyncio.create_task(self._access_loop(), name="hub-access"))

    async def stop(self) -> None:
        """End every subscription's iteration and stop the background tasks."""
        if self._bus_sub is not None:
            await self._bus_sub.close()
        tasks = self._tasks + [s.task for s in self._pools.values() if s.task is not None]
        self._tasks = []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for state in list(self._pools.values()):
            for sub in list(state.subs):
                sub._end()
        self._pools.clear()
        self._started = False

    # -- subscribing ------------------------------------------------------------------------

    async def subscribe(
        self, pool_id: str, principal: Principal, after: int | None = None
    ) -> Subscription:
        """Events of ``pool_id`` with seq > ``after`` that ``principal`` may see, then live ones.

        ``after=None`` starts at the oldest retained event. Raises ``NotFound`` unless the
        principal is a member, ``Gone`` if events after ``after`` were purged (see
        ``retention.check_cursor``). When it returns, the first page of the backlog is loaded.
        """
        if after is not None and after < 0:
            raise ValueError("after must be >= 0")
        async with self.rt.read() as session:
            role = await role_in_pool(session, principal, pool_id)
            bounds = await retention.log_bounds(session, pool_id) if role else None
        if role is None or bounds is None:
            raise NotFound("no such pool")
        _head, floor = bounds
        if after is None:
            after = floor
        else:
            retention.check_cursor(after, floor)
        state = self._pools.get(pool_id)
        if state is None:
            state = self._pools[pool_id] = _PoolState(pool_id, self.ring_size)
        state.refs += 1
        try:
            await self._initialize(state)
        except BaseException:
            self._release(state)
            raise
        sub = Subscription(self, pool_id, principal, role == PoolRole.ADMIN, after, self.queue_size)
        # From here to state.add() nothing awaits: the ring and the live feed meet exactly.
        if after >= state.ring_floor:
            sub._backlog.extend(f for f in state.ring if f.seq > after and sub.sees(f.visible_to))
            sub._skip_to = max(after, state.last_seq)
            self.stats.ring_hits += 1
        else:
            sub._resync = True
        state.add(sub)
        if sub._resync:
            try:
                await sub._read_page()
            except BaseException:
                sub._end()
                raise
        return sub

    def watch(self, principal: Principal) -> Watch:
        """Be told (``watch.ended`` set, ``watch.error``) when ``principal`` loses its session
        or key, at the next access check. Call ``watch.close()`` when done."""
        w = Watch(self, principal)
        self._watches.add(w)
        return w

    @property
    def subscriber_count(self) -> int:
        return sum(len(s.subs) for s in self._pools.values())

    def _unregister(self, sub: Subscription) -> None:
        state = self._pools.get(sub.pool_id)
        if state is not None and sub in state.subs:
            state.remove(sub)
            self._release(state)

    def _release(self, state: _PoolState) -> None:
        state.refs -= 1
        if state.refs <= 0 and self._pools.get(state.pool_id) is state:
            del self._pools[state.pool_id]
            if state.task is not None:
                state.task.cancel()

    async def _initialize(self, state: _PoolState) -> None:
        if state.initialized:
            return
        async with state.lock:
            if state.initialized:
                return
            async with self.rt.read() as session:
                head = await session.scalar(select(Pool.event_seq).where(Pool.id == state.pool_id))
            # Events up to head are read by each subscriber from the database (or were before
            # it registered); the hub dispatches from here on.
            state.last_seq = state.ring_floor = head or 0
            state.initialized = True

    # -- reading the log --------------------------------------------------------------------

    def _frame(self, event: Event) -> Frame:
        self.stats.serialized += 1
        payload = orjson.dumps(event_out(event))
        return Frame(event.seq, event.type, event.visible_to, payload)

    async def _read_backlog(self, sub: Subscription, after: int) -> tuple[list[Frame], int, bool]:
        """A page of ``sub``'s visible events after ``after``; how far it covers; whether full."""
        self.stats.backlog_reads += 1
        async with self.rt.read() as session:
            # Read the head first: every event up to it is committed, so a short page covers it.
            head = await session.scalar(select(Pool.event_seq).where(Pool.id == sub.pool_id))
            stmt = select(Event).where(Event.pool_id == sub.pool_id, Event.seq > after)
            if not sub.sees_all:
                stmt = stmt.where(
                    (Event.visible_to.is_(None)) | (Event.visible_to == sub.principal.id)
                )
            rows = (await session.scalars(stmt.order_by(Event.seq).limit(self.page_size))).all()
        frames = [self._frame(e) for e in rows]
        full = len(frames) == self.page_size
        covered = frames[-1].seq if full else max(after, head or 0, *(f.seq for f in frames))
        return frames, covered, full

    def _schedule(self, state: _PoolState) -> None:
        if state.task is not None and not state.task.done():
            state.dirty = True
            return
        state.dirty = False
        state.task = asyncio.create_task(self._fetch_loop(state), name=f"hub-{state.pool_id}")

    async def _fetch_loop(self, state: _PoolState) -> None:
        try:
            while True:
                state.dirty = False
                await self._fetch(state)
                if not state.dirty:
                    return
        except Exception:
            # The next wake-up or poll retries from last_seq: nothing is skipped.
            log.exception("event hub could not read pool %s", state.pool_id)

    async def _fetch(self, state: _PoolState) -> None:
        async with state.lock:
            if not state.initialized:
                return
            while True:
                async with self.rt.read() as session:
                    rows = (
                        await session.scalars(
                            select(Event)
                            .where(Event.pool_id == state.pool_id, Event.seq > state.last_seq)
                            .order_by(Event.seq)
                            .limit(self.page_size)
                        )
                    ).all()
                self.stats.fetches += 1
                for event in rows:
                    state.dispatch(self._frame(event))
                if len(rows) < self.page_size:
                    return

    async def _read_bus(self) -> None:
        assert self._bus_sub is not None
        async for payload in self._bus_sub:
            self.stats.wakeups += 1
            try:
                pool_id, seq_text = payload.decode().split(" ")
                seq = int(seq_text)
            except ValueError:
                log.warning("ignoring malformed event wake-up %r", payload[:100])
                continue
            state = self._pools.get(pool_id)
            if state is not None and seq > state.last_seq:
                self._schedule(state)

    # -- polling ----------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.poll()
            except Exception:
                log.exception("event hub poll failed")

    async def poll(self) -> int:
        """Look at every watched pool's head now and fetch the ones with new events.

        Runs every ``poll_interval`` seconds; returns how many pools had news.
        """
        self.stats.polls += 1
        states = dict(self._pools)
        behind: list[_PoolState] = []
        async with self.rt.read() as session:
            heads = await _by_chunks(
                session,
                list(states),
                lambda ids: select(Pool.id, Pool.event_seq).where(Pool.id.in_(ids)),
            )
        found = {pool_id: head for pool_id, head in heads}
        for pool_id, state in states.items():
            head = found.get(pool_id)
            if head is None:
                self._fail_pool(state, NotFound("the pool was deleted"))
            elif head > state.last_seq and state.initialized:
                behind.append(state)
        for state in behind:
            self._schedule(state)
        # A fetch cancelled because its last subscriber left is not a poll failure.
        await asyncio.gather(
            *(s.task for s in behind if s.task is not None), return_exceptions=True
        )
        return len(behind)

    def _fail_pool(self, state: _PoolState, error: PooldropError) -> None:
        for sub in list(state.subs):
            sub._fail(error)

    # -- access checks ----------------------------------------------------------------------

    async def _access_loop(self) -> None:
        while True:
            await asyncio.sleep(self.auth_interval)
            try:
                await self.check_access()
            except Exception:
                log.exception("event hub access check failed")

    async def check_access(self) -> int:
        """Re-verify every subscriber's session or key and pool membership now.

        Runs every ``auth_interval`` seconds; returns how many subscribers and watches were cut
        off. A member whose pool role changed keeps its subscription with the new visibility.
        """
        subs = [sub for state in self._pools.values() for sub in state.subs]
        watches = list(self._watches)
        principals = [s.principal for s in subs] + [w.principal for w in watches]
        now = self.rt.clock.now()
        session_ids = sorted(
            {p.session_id for p in principals if p.kind == "user" and p.session_id}
        )
        key_ids = sorted({p.id for p in principals if p.kind == "key"})
        async with self.rt.read() as session:
            live_sessions = dict(
                await _by_chunks(
                    session,
                    session_ids,
                    lambda ids: (
                        select(AuthSession.id, User.role)
                        .join(User, User.id == AuthSession.user_id)
                        .where(
                            AuthSession.id.in_(ids),
                            AuthSession.revoked_at.is_(None),
                            AuthSession.expires_at > now,
                            User.disabled == false(),
                        )
                    ),
                )
            )
            live_keys = {
                key_id
                for key_id, _ in await _by_chunks(
                    session,
                    key_ids,
                    lambda ids: select(ApiKey.id, ApiKey.pool_id).where(
                        ApiKey.id.in_(ids), ApiKey.revoked_at.is_(None)
                    ),
                )
            }

            def error_for(p: Principal) -> PooldropError | None:
                if p.kind == "key":
                    return None if p.id in live_keys else Unauthenticated("key revoked")
                if p.session_id in live_sessions:
                    return None
                return Unauthenticated("session ended; log in again")

            cut = 0
            for w in watches:
                err = error_for(w.principal)
                if err is not None:
                    w._fail(err)
                    cut += 1
            by_pool: dict[str, list[Subscription]] = {}
            for sub in subs:
                err = error_for(sub.principal)
                if err is not None:
                    sub._fail(err)
                    cut += 1
                    continue
                if sub.principal.kind == "user":
                    role = live_sessions[sub.principal.session_id]
                    if role == GlobalRole.ADMIN:
                        self._set_sees_all(sub, True)
                    else:
                        by_pool.setdefault(sub.pool_id, []).append(sub)
            for pool_id, members in by_pool.items():
                roles = dict(
                    await _by_chunks(
                        session,
                        sorted({m.principal.id for m in members}),
                        _membership_query(pool_id),
                    )
                )
                for sub in members:
                    role = roles.get(sub.principal.id)
                    if role is None:
                        sub._fail(NotFound("you are no longer a member of this pool"))
                        cut += 1
                    else:
                        self._set_sees_all(sub, role == PoolRole.ADMIN)
        return cut

    def _set_sees_all(self, sub: Subscription, sees_all: bool) -> None:
        if sub.sees_all == sees_all:
            return
        sub.sees_all = sees_all
        state = self._pools.get(sub.pool_id)
        if state is not None and sub in state.subs:
            (state.admins.add if sees_all else state.admins.discard)(sub)


def _membership_query(pool_id: str) -> Callable[[list[str]], Select[Any, Any]]:
    def query(user_ids: list[str]) -> Select[Any, Any]:
        return select(Membership.user_id, Membership.role).where(
            Membership.pool_id == pool_id, Membership.user_id.in_(user_ids)
        )

    return query


async def _by_chunks(
    session: AsyncSession, ids: Sequence[str], query: Callable[[list[str]], Select[Any, Any]]
) -> list[tuple[Any, Any]]:
    """Rows of ``query(chunk)`` over ``ids`` in chunks, so IN lists stay short."""
    rows: list[tuple[Any, Any]] = []
    for i in range(0, len(ids), _IN_CHUNK):
        result = await session.execute(query(list(ids[i : i + _IN_CHUNK])))
        rows.extend((r[0], r[1]) for r in result)
    return rows
