"""Durations as people and the API write them: ``90s``, ``1h30m``, ``1.5h``, ``PT15M`` or seconds.

Parsing goes through :class:`decimal.Decimal` and whole microseconds, so ``"0.1s"`` is exactly
100 000 µs and no float ever decides a window boundary.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from pooldrop.errors import ValidationFailed

_US_PER = {
    "w": 7 * 86_400_000_000,
    "d": 86_400_000_000,
    "h": 3_600_000_000,
    "m": 60_000_000,
    "s": 1_000_000,
    "ms": 1_000,
    "us": 1,
}
_UNIT_ORDER = ("w", "d", "h", "m", "s", "ms", "us")
_MAX_US = timedelta.max // timedelta(microseconds=1)

_NUMBER = r"\d+(?:\.\d+)?|\.\d+"
# A bare number is seconds; an exponent is accepted because JSON encoders emit ``1e-05``.
_BARE = re.compile(rf"(?:{_NUMBER})(?:e[+-]?\d+)?", re.ASCII)
# "ms" must be tried before "m" and "s" so "500ms" is not read as "500m" followed by junk.
_COMPACT_PART = re.compile(rf"({_NUMBER})\s*(ms|us|w|d|h|m|s)\s*", re.ASCII)
# ISO 8601 durations: years and months have no fixed length, so they are refused further down.
_ISO = re.compile(
    r"p(?:(?P<y>[\d.,]+)y)?(?:(?P<mo>[\d.,]+)m)?(?:(?P<w>[\d.,]+)w)?(?:(?P<d>[\d.,]+)d)?"
    r"(?:t(?:(?P<h>[\d.,]+)h)?(?:(?P<mi>[\d.,]+)m)?(?:(?P<s>[\d.,]+)s)?)?",
    re.ASCII,
)
_ISO_NUMBER = re.compile(rf"{_NUMBER}", re.ASCII)

_HELP = "use e.g. '90s', '15m', '1h30m', '1.5h', '1d', '1w', ISO 8601 'PT15M', or seconds"


def _fail(value: object, why: str) -> ValidationFailed:
    return ValidationFailed(f"invalid duration {value!r}: {why}")


def _to_us(value: object, amount: Decimal, unit_us: int) -> int:
    """Whole microseconds, rounded half-to-even below one microsecond."""
    # Compare before multiplying: a 40-digit amount would overflow the decimal context.
    if amount > Decimal(_MAX_US) / unit_us:
        raise _fail(value, "too large")
    return int((amount * unit_us).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _checked(value: object, us: int) -> timedelta:
    if us > _MAX_US:
        raise _fail(value, "too large")
    return timedelta(microseconds=us)


def _from_seconds(value: object, seconds: Decimal) -> timedelta:
    """``seconds`` is finite: callers refuse NaN and infinity before building a Decimal."""
    if seconds < 0:
        raise _fail(value, "must not be negative")
    return _checked(value, _to_us(value, seconds, _US_PER["s"]))


def _parse_compact(value: str, text: str) -> timedelta:
    pos, total, last_rank = 0, 0, -1
    while pos < len(text):
        match = _COMPACT_PART.match(text, pos)
        if match is None:
            raise _fail(value, _HELP)
        number, unit = match.groups()
        rank = _UNIT_ORDER.index(unit)
        # Units largest first and each once: "1m1h" or "1h1h" is far more likely a typo than intent.
        if rank <= last_rank:
            raise _fail(value, f"unit '{unit}' repeated or out of order (largest unit first)")
        last_rank = rank
        total += _to_us(value, Decimal(number), _US_PER[unit])
        pos = match.end()
    return _checked(value, total)


def _parse_iso(value: str, text: str) -> timedelta:
    match = _ISO.fullmatch(text)
    if match is None or text in ("p", "pt") or text.endswith("t"):
        raise _fail(value, "not a valid ISO 8601 duration (e.g. 'PT15M', 'P1DT2H')")
    parts = match.groupdict()
    if parts["y"] is not None or parts["mo"] is not None:
        raise _fail(value, "years and months have no fixed length; use weeks, days or hours")
    total = 0
    units = (("w", "w"), ("d", "d"), ("h", "h"), ("mi", "m"), ("s", "s"))
    for group, unit in units:
        raw = parts[group]
        if raw is None:
            continue
        # ISO 8601 allows a decimal comma as well as a point.
        number = raw.replace(",", ".")
        if not _ISO_NUMBER.fullmatch(number):
            raise _fail(value, f"bad number {raw!r}")
        total += _to_us(value, Decimal(number), _US_PER[unit])
    return _checked(value, total)


def parse_duration(value: str | int | float) -> timedelta:
    """Parse a non-negative duration.

    Accepts compact forms (``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1w"``, ``"500ms"``,
    ``"1h30m"``, ``"1.5h"``), ISO 8601 (``"PT15M"``, ``"P1DT2H30M"``, ``"PT0.5S"``) and bare numbers
    of seconds (``90``, ``1.5``, ``"90"``). Case-insensitive; surrounding spaces are ignored.
    Values finer than a microsecond are rounded to the nearest microsecond.

    Raises :class:`ValidationFailed` for anything negative, empty, malformed, non-finite or beyond
    what :class:`datetime.timedelta` holds.
    """
    if isinstance(value, bool):
        raise _fail(value, "expected a string or a number of seconds, not a boolean")
    if isinstance(value, int):
        return _from_seconds(value, Decimal(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(value, "must be a finite number")
        # repr() is the shortest decimal that round-trips: 0.1 means 0.1, not 0.1000000000000000055.
        return _from_seconds(value, Decimal(repr(value)))
    if not isinstance(value, str):
        raise _fail(value, "expected a string or a number of seconds")
    text = value.strip().lower()
    if not text:
        raise _fail(value, "empty; " + _HELP)
    if text.startswith("-"):
        raise _fail(value, "must not be negative")
    if text.startswith("+"):
        text = text[1:]
    if _BARE.fullmatch(text):
        return _from_seconds(value, Decimal(text))
    if text in ("nan", "inf", "infinity"):
        raise _fail(value, "must be a finite number")
    if text.startswith("p"):
        return _parse_iso(value, text)
    return _parse_compact(value, text)


def format_duration(td: timedelta) -> str:
    """Render a duration compactly, largest units first: ``"1d"``, ``"1h30m"``, ``"1.5s"``.

    Days are the largest unit (``"30d"`` rather than ``"4w2d"``); a fraction of a second is written
    as decimals of seconds. ``parse_duration(format_duration(td)) == td`` for every non-negative
    ``td``. Negative durations are a programming error here and raise :class:`ValueError`.
    """
    if td < timedelta(0):
        raise ValueError(f"cannot format a negative duration: {td!r}")
    us = td // timedelta(microseconds=1)
    if us == 0:
        return "0s"
    parts: list[str] = []
    for unit in ("d", "h", "m"):
        count, us = divmod(us, _US_PER[unit])
        if count:
            parts.append(f"{count}{unit}")
    if us:
        seconds, micros = divmod(us, _US_PER["s"])
        fraction = f".{micros:06d}".rstrip("0") if micros else ""
        parts.append(f"{seconds}{fraction}s")
    return "".join(parts)
