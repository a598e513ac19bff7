"""Tumbling event-time windows, aligned to the Unix epoch plus an offset, half-open [start, end).

All arithmetic is in whole microseconds (Python integers), so a boundary never drifts the way
float seconds would after fifty years of epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pooldrop.errors import ValidationFailed

MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=30)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Window:
    """One window ``[start, end)``; both ends timezone-aware UTC."""

    start: datetime
    end: datetime

    @property
    def size(self) -> timedelta:
        return self.end - self.start

    def contains(self, ts: datetime) -> bool:
        """True when ``start <= ts < end``."""
        return self.start <= ts < self.end

    def next(self) -> Window:
        """The window right after this one (same size)."""
        return Window(self.end, _at(self.end, self.end - self.start))

    def previous(self) -> Window:
        """The window right before this one (same size)."""
        return Window(_at(self.start, self.start - self.end), self.start)


def _at(base: datetime, delta: timedelta) -> datetime:
    try:
        return base + delta
    except OverflowError:
        raise ValidationFailed(
            "timestamp out of range: its window would reach past the supported years (up to 9999)"
        ) from None


def window_for(ts: datetime, size: timedelta, offset: timedelta = timedelta(0)) -> Window:
    """The window of length ``size`` holding ``ts``.

    Windows start at ``epoch + offset + k * size`` for every integer ``k``; an ``offset`` outside
    ``[0, size)`` is taken modulo ``size``. ``ts`` must be timezone-aware. A ``size`` that is not
    positive is a programming error (:class:`ValueError`); pools validate their bounds
    (:data:`MIN_WINDOW`..:data:`MAX_WINDOW`) before they get here.
    """
    if size <= timedelta(0):
        raise ValueError(f"window size must be positive, got {size!r}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"ts must be timezone-aware, got {ts!r}")
    size_us = size // _US
    offset_us = (offset // _US) % size_us
    t_us = (ts - _EPOCH) // _US
    # Floor division keeps this right for instants before the first aligned boundary, too.
    start_us = (t_us - offset_us) // size_us * size_us + offset_us
    start = _EPOCH + timedelta(microseconds=start_us)
    return Window(start, _at(start, size))
