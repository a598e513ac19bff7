"""A group's life cycle and the rules that move it: triggers, leases and where uploads land.

::

    open --trigger--> ready --claim--> claimed --result--> done
                        ^                 |
                        +--lease lost-----+   (attempts < max_attempts, else -> failed)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pooldrop.domain.durations import format_duration
from pooldrop.domain.pools import LatePolicy, PoolSettings
from pooldrop.domain.timestamps import format_ts
from pooldrop.domain.windows import Window, window_for
from pooldrop.errors import GroupNotReady, WindowClosed


class GroupState(StrEnum):
    OPEN = "open"
    READY = "ready"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"


class Trigger(StrEnum):
    """Why a group left ``open``."""

    WINDOW = "window"
    QUORUM = "quorum"
    MANUAL = "manual"


TRANSITIONS: frozenset[tuple[GroupState, GroupState]] = frozenset(
    {
        (GroupState.OPEN, GroupState.READY),
        (GroupState.READY, GroupState.CLAIMED),
        (GroupState.CLAIMED, GroupState.DONE),
        # The lease expired or was released, with attempts left...
        (GroupState.CLAIMED, GroupState.READY),
        # ...or with none left.
        (GroupState.CLAIMED, GroupState.FAILED),
    }
)
"""Every legal move. Claiming an open group is two moves (open -> ready -> claimed), so the
manifest is frozen and ``group.ready`` is emitted on that path too."""

TERMINAL_STATES: frozenset[GroupState] = frozenset({GroupState.DONE, GroupState.FAILED})

MAX_NEXT_OPEN_STEPS = 1000
"""How many windows :func:`place_upload` looks ahead for an open one before giving up."""


def can_transition(src: GroupState, dst: GroupState) -> bool:
    """True when a group may move from ``src`` to ``dst``."""
    return (src, dst) in TRANSITIONS


def check_transition(src: GroupState, dst: GroupState) -> None:
    """Raise :class:`GroupNotReady` (409) unless ``src -> dst`` is a legal move."""
    if not can_transition(src, dst):
        raise GroupNotReady(f"the group is {src}; it cannot become {dst}")


def window_due(window_end: datetime, allowed_lateness: timedelta, now: datetime) -> bool:
    """The window trigger: true once ``now >= window_end + allowed_lateness``."""
    return now >= window_end + allowed_lateness


def quorum_reached(contributors: int, min_contributors: int | None) -> bool:
    """The quorum trigger: enough distinct contributors; never when the pool sets no quorum."""
    return min_contributors is not None and contributors >= min_contributors


def after_lease_loss(attempts: int, max_attempts: int) -> GroupState:
    """Where a claimed group goes when its lease expires or is released.

    ``attempts`` already counts the attempt that just ended.
    """
    return GroupState.READY if attempts < max_attempts else GroupState.FAILED


@dataclass(frozen=True)
class Placement:
    """Where an upload goes: ``window``; ``late`` when that is not its own event-time window."""

    window: Window
    late: bool


def _describe(window: Window) -> str:
    return f"[{format_ts(window.start)}, {format_ts(window.end)})"


def place_upload(
    ts: datetime,
    now: datetime,
    settings: PoolSettings,
    group_open: Callable[[Window], bool],
) -> Placement:
    """Decide which window an upload with event time ``ts`` joins at ``now``.

    Its own window when that window is not past ``end + allowed_lateness`` and
    ``group_open(window)`` (true when the window has no group yet or its group is open).
    Otherwise the upload is late: :class:`WindowClosed` under ``late_policy=reject``; under
    ``next_open`` the first open window from the one holding ``now`` (and after the upload's own
    window) onwards, with ``late=True``.
    """
    own = window_for(ts, settings.window, settings.window_offset)
    due = window_due(own.end, settings.allowed_lateness, now)
    if not due and group_open(own):
        return Placement(own, late=False)
    if settings.late_policy is LatePolicy.REJECT:
        if due:
            why = f"closed at {format_ts(own.end + settings.allowed_lateness)}"
            if settings.allowed_lateness:
                why += f" (allowed lateness {format_duration(settings.allowed_lateness)})"
        else:
            why = "closed early: its group is no longer open"
        raise WindowClosed(f"the window {_describe(own)} for ts {format_ts(ts)} {why}")
    current = window_for(now, settings.window, settings.window_offset)
    # A ts slightly ahead of now (within the clock skew) can have its own window after now's;
    # never move an upload backwards past its own closed window.
    candidate = current if current.start > own.start else own.next()
    for _ in range(MAX_NEXT_OPEN_STEPS):
        if group_open(candidate):
            return Placement(candidate, late=True)
        candidate = candidate.next()
    raise WindowClosed(
        f"no open window within {MAX_NEXT_OPEN_STEPS} windows after {_describe(own)} "
        f"for ts {format_ts(ts)}"
    )
