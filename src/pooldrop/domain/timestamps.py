"""Event timestamps: RFC 3339 or Unix seconds in, timezone-aware UTC datetimes out.

Accepted range is the years 1970 to 9999 in UTC: nothing in pooldrop predates the Unix epoch, and
:class:`datetime.datetime` ends at 9999.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from pooldrop.domain.durations import format_duration
from pooldrop.errors import TsInFuture, ValidationFailed

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_YEAR, _MAX_YEAR = 1970, 9999
_MAX_SECONDS = (datetime(_MAX_YEAR, 12, 31, tzinfo=UTC) - EPOCH) // timedelta(seconds=1) + 86_400

_RFC3339 = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?:(?P<zulu>[Zz])|(?P<sign>[+-])(?P<off_h>\d{2}):(?P<off_m>\d{2}))?",
    re.ASCII,
)
_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)

_HELP = "use RFC 3339 like '2026-01-01T12:00:00Z' or '2026-01-01T13:00:00+01:00', or Unix seconds"


def _fail(value: object, why: str) -> ValidationFailed:
    return ValidationFailed(f"invalid timestamp {value!r}: {why}")


def _in_range(value: object, dt: datetime) -> datetime:
    if not _MIN_YEAR <= dt.year <= _MAX_YEAR:
        raise _fail(value, f"year must be between {_MIN_YEAR} and {_MAX_YEAR} (UTC)")
    return dt


def _from_unix(value: object, seconds: Decimal) -> datetime:
    """``seconds`` is finite: callers refuse NaN and infinity before building a Decimal."""
    # Range first, so a huge exponent never reaches integer arithmetic.
    if seconds < 0:
        raise _fail(value, f"year must be between {_MIN_YEAR} and {_MAX_YEAR} (UTC)")
    if seconds >= Decimal(_MAX_SECONDS):
        raise _fail(value, f"year must be between {_MIN_YEAR} and {_MAX_YEAR} (UTC)")
    micros = int((seconds * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    try:
        return _in_range(value, EPOCH + timedelta(microseconds=micros))
    except OverflowError:
        # Rounding up the very last microsecond of 9999 lands here.
        raise _fail(value, f"year must be between {_MIN_YEAR} and {_MAX_YEAR} (UTC)") from None


def _from_rfc3339(value: str, match: re.Match[str]) -> datetime:
    g = match.groupdict()
    if g["zulu"] is None and g["sign"] is None:
        raise _fail(value, "a UTC offset is required ('Z' or '+01:00'); local times are ambiguous")
    second = int(g["second"])
    # RFC 3339 allows a leap second (:60); POSIX time folds it into the next second, and so do we.
    leap = second == 60
    try:
        offset_h, offset_m = int(g["off_h"] or 0), int(g["off_m"] or 0)
        if offset_h > 23 or offset_m > 59:
            raise ValueError("UTC offset out of range")
        naive = datetime(
            int(g["year"]),
            int(g["month"]),
            int(g["day"]),
            int(g["hour"]),
            int(g["minute"]),
            59 if leap else second,
        )
    except ValueError as exc:
        raise _fail(value, str(exc)) from None
    offset = timedelta(hours=offset_h, minutes=offset_m)
    if g["sign"] == "-":
        offset = -offset
    fraction = g["fraction"] or "0"
    micros = int((Decimal("0." + fraction) * 1_000_000).quantize(Decimal(1), ROUND_HALF_EVEN))
    extra = timedelta(seconds=1 if leap else 0, microseconds=micros)
    try:
        # Shift in naive space first: an aware datetime near year 1 or 9999 cannot be converted.
        utc_naive = naive - offset + extra
    except OverflowError:
        raise _fail(value, f"year must be between {_MIN_YEAR} and {_MAX_YEAR} (UTC)") from None
    return _in_range(value, utc_naive.replace(tzinfo=UTC))


def parse_ts(value: str | int | float | datetime) -> datetime:
    """Parse an event timestamp into a timezone-aware UTC datetime with microsecond precision.

    Accepts RFC 3339 (``2026-01-01T12:00:00Z``, ``...T13:00:00.25+01:00``; a space or lowercase
    ``t``/``z`` are tolerated) and Unix seconds as a number or numeric string (``1767225600.5``).
    An aware :class:`datetime` is converted to UTC. Fractions beyond microseconds are rounded.

    Raises :class:`ValidationFailed` for times without an offset, years outside 1970..9999 (UTC),
    NaN/infinity, booleans and anything else unparsable.
    """
    if isinstance(value, bool):
        raise _fail(value, "expected RFC 3339 text or Unix seconds, not a boolean")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise _fail(value, "a timezone-aware datetime is required")
        try:
            return _in_range(value, value.astimezone(UTC))
        except OverflowError:
            raise _fail(value, f"year must be between {_MIN_YEAR} and {_MAX_YEAR} (UTC)") from None
    if isinstance(value, int):
        return _from_unix(value, Decimal(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(value, "must be a finite number")
        # repr() gives the shortest decimal that round-trips, i.e. what the client wrote.
        return _from_unix(value, Decimal(repr(value)))
    if not isinstance(value, str):
        raise _fail(value, "expected RFC 3339 text or Unix seconds")
    text = value.strip()
    if not text:
        raise _fail(value, "empty; " + _HELP)
    if _NUMERIC.fullmatch(text):
        return _from_unix(value, Decimal(text))
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _fail(value, _HELP)
    return _from_rfc3339(value, match)


def format_ts(dt: datetime) -> str:
    """RFC 3339 in UTC with ``Z``; microseconds only when non-zero.

    ``2026-01-01T00:00:00Z``, ``2026-01-01T00:00:00.250000Z``. Naive datetimes raise
    :class:`ValueError`: the caller lost track of the timezone.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"cannot format a naive datetime: {dt!r}")
    u = dt.astimezone(UTC)
    # Built by hand: strftime's %Y does not zero-pad years below 1000 on every platform.
    text = f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
    if u.microsecond:
        text += f".{u.microsecond:06d}"
    return text + "Z"


def check_not_future(ts: datetime, now: datetime, skew: timedelta) -> None:
    """Refuse an event time more than ``skew`` ahead of ``now`` (:class:`TsInFuture`, 422)."""
    ahead = ts - now
    if ahead > skew:
        raise TsInFuture(
            f"ts {format_ts(ts)} is {format_duration(ahead)} ahead of the server clock "
            f"(at most {format_duration(skew)} of clock skew is allowed)"
        )
