from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldrop.domain.durations import format_duration, parse_duration
from pooldrop.errors import ValidationFailed

S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", 90 * S),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("1w1d", timedelta(days=8)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        (".5m", 30 * S),
        ("500ms", timedelta(milliseconds=500)),
        ("1s500ms", timedelta(milliseconds=1500)),
        ("250us", timedelta(microseconds=250)),
        ("1m30s", 90 * S),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1 h", timedelta(hours=1)),
        ("0s", timedelta(0)),
        ("0", timedelta(0)),
        ("  15M ", timedelta(minutes=15)),
        ("1H30M", timedelta(hours=1, minutes=30)),
        ("+5m", timedelta(minutes=5)),
        ("PT15M", timedelta(minutes=15)),
        ("pt15m", timedelta(minutes=15)),
        ("P1D", timedelta(days=1)),
        ("P2W", timedelta(weeks=2)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT0,5S", timedelta(milliseconds=500)),
        ("PT1.5H", timedelta(hours=1, minutes=30)),
        ("P0D", timedelta(0)),
        ("90", 90 * S),
        ("1.25", timedelta(seconds=1.25)),
        ("1e3", 1000 * S),
        ("1E-6", timedelta(microseconds=1)),
        # Below a microsecond: rounded half to even.
        ("0.0000005s", timedelta(0)),
        ("0.0000015s", timedelta(microseconds=2)),
        ("0.1s", timedelta(microseconds=100_000)),
    ],
)
def test_parse_text(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (90, 90 * S),
        (0, timedelta(0)),
        (1.5, timedelta(milliseconds=1500)),
        (0.1, timedelta(microseconds=100_000)),
        (86400 * 30, timedelta(days=30)),
        (1e-05, timedelta(microseconds=10)),
    ],
)
def test_parse_numbers_are_seconds(value: float, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-1s", "negative"),
        ("-5", "negative"),
        (-1, "negative"),
        (-0.5, "negative"),
        ("abc", "use e.g."),
        ("1x", "use e.g."),
        ("h", "use e.g."),
        ("1.h", "use e.g."),
        ("1h30", "use e.g."),
        ("1m1h", "out of order"),
        ("1h1h", "repeated"),
        ("nan", "finite"),
        ("inf", "finite"),
        ("Infinity", "finite"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("P", "ISO 8601"),
        ("PT", "ISO 8601"),
        ("P1DT", "ISO 8601"),
        ("P1H", "ISO 8601"),
        ("PT1D", "ISO 8601"),
        ("P1.2.3D", "bad number"),
        ("PT5,,S", "bad number"),
        ("P1M", "fixed length"),
        ("P1Y", "fixed length"),
        ("P1Y2M", "fixed length"),
        ("9" * 40 + "h", "too large"),
        ("999999999w", "too large"),
        ("999999999d23h60m", "too large"),
        ("P999999999W", "too large"),
        ("1e999999", "too large"),
        (10**30, "too large"),
        (1e300, "too large"),
        (True, "boolean"),
        (None, "expected"),
        ([1], "expected"),
    ],
)
def test_parse_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert fragment in info.value.detail
    assert info.value.status == 422


def test_parse_error_names_the_input() -> None:
    with pytest.raises(ValidationFailed, match="'fortnight'"):
        parse_duration("fortnight")


def test_largest_timedelta_parses() -> None:
    assert parse_duration(format_duration(timedelta.max)) == timedelta.max


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(minutes=15), "15m"),
        (timedelta(days=1), "1d"),
        (timedelta(days=30), "30d"),
        (timedelta(weeks=1), "7d"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(microseconds=1), "0.000001s"),
        (timedelta(days=1, seconds=1, microseconds=10), "1d1.00001s"),
        (timedelta(hours=2, seconds=5), "2h5s"),
    ],
)
def test_format(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


def test_format_negative_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta.max)


@settings(deadline=None)
@given(durations)
def test_format_round_trips(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


@settings(deadline=None)
@given(durations)
def test_format_is_canonical(td: timedelta) -> None:
    text = format_duration(td)
    # Re-formatting the parsed value yields the very same text: one spelling per duration.
    assert format_duration(parse_duration(text)) == text
    assert text == text.strip().lower()


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_integer_seconds_in_any_spelling(n: int) -> None:
    assert parse_duration(n) == parse_duration(str(n)) == parse_duration(f"{n}s") == n * S


@settings(deadline=None)
@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_float_seconds_match_decimal_text(x: float) -> None:
    assert parse_duration(x) == parse_duration(repr(x))
