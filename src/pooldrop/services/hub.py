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
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from sqlalchemy import select

from pooldrop.bus import BusError
from pooldrop.bus import Subscription as BusSubscription
from pooldrop.domain.roles import PoolRole
from pooldrop.errors import NotFound, PooldropError
from pooldrop.services import hub_access, retention
from pooldrop.services.access import role_in_pool
from pooldrop.services.events import event_out
from pooldrop.services.principals import Principal
from pooldrop.services.runtime import EVENTS_TOPIC, Runtime
from pooldrop.services.subscription import Frame, Subscription, SubscriptionClosed, Watch
from pooldrop.store.models import Event, Pool

__all__ = ["EventHub", "Frame", "HubStats", "Subscription", "SubscriptionClosed", "Watch"]

log = logging.getLogger("pooldrop.hub")

PAGE_SIZE = 500
"""Events per database read (live fetch and subscriber backlog)."""
DEFAULT_QUEUE_SIZE = 1000
"""Live frames a subscriber may have waiting before it is switched to a database resync."""
DEFAULT_RING_SIZE = 128
"""Recent frames kept per watched pool, so a reconnect with a fresh cursor reads no database."""
DEFAULT_POLL_INTERVAL = 2.0
DEFAULT_AUTH_INTERVAL = 30.0


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
            sub._add_backlog(f for f in state.ring if f.seq > after and sub.sees(f.visible_to))
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

    def watch(self, principal: Principal, on_end: Callable[[], None] | None = None) -> Watch:
        """Be told (``on_end()`` called, ``watch.ended`` set, ``watch.error``) when ``principal``
        loses its session or key, at the next access check. Call ``watch.close()`` when done."""
        w = Watch(self, principal, on_end)
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
            heads = await hub_access.by_chunks(
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
        async with self.rt.read() as session:
            grants = await hub_access.load_grants(
                session,
                self.rt.clock.now(),
                [(s.pool_id, s.principal) for s in subs],
                [w.principal for w in watches],
            )
        cut = 0
        for w in watches:
            error = grants.error(w.principal)
            if error is not None:
                w._fail(error)
                cut += 1
        for sub in subs:
            error = grants.error(sub.principal)
            role = grants.pool_role(sub.principal, sub.pool_id) if error is None else None
            if error is None and role is None:
                error = NotFound("you are no longer a member of this pool")
            if error is not None:
                sub._fail(error)
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
