from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldrop.domain.timestamps import EPOCH, check_not_future, format_ts, parse_ts
from pooldrop.errors import TsInFuture, ValidationFailed

NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)
NEW_YEAR_UNIX = 1767225600


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T00:00:00Z", NEW_YEAR),
        ("2026-01-01t00:00:00z", NEW_YEAR),
        ("2026-01-01 00:00:00Z", NEW_YEAR),
        ("  2026-01-01T00:00:00Z  ", NEW_YEAR),
        ("2026-01-01T01:00:00+01:00", NEW_YEAR),
        ("2025-12-31T19:30:00-04:30", NEW_YEAR),
        ("2026-01-01T00:00:00-00:00", NEW_YEAR),
        ("2026-01-01T00:00:00.25Z", NEW_YEAR + timedelta(milliseconds=250)),
        ("2026-01-01T00:00:00.123456Z", NEW_YEAR + timedelta(microseconds=123456)),
        # Beyond microseconds: rounded to the nearest (half to even).
        ("2026-01-01T00:00:00.1234565Z", NEW_YEAR + timedelta(microseconds=123456)),
        ("2026-01-01T00:00:00.1234575Z", NEW_YEAR + timedelta(microseconds=123458)),
        ("2025-12-31T23:59:59.9999999Z", NEW_YEAR),
        # A leap second folds into the next second, as POSIX time does.
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", EPOCH),
        ("1969-12-31T23:00:00-01:00", EPOCH),
        ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (NEW_YEAR_UNIX, NEW_YEAR),
        (0, EPOCH),
        (float(NEW_YEAR_UNIX) + 0.5, NEW_YEAR + timedelta(milliseconds=500)),
        (1767225600.123456, NEW_YEAR + timedelta(microseconds=123456)),
        (str(NEW_YEAR_UNIX), NEW_YEAR),
        ("1767225600.5", NEW_YEAR + timedelta(milliseconds=500)),
        ("+1767225600", NEW_YEAR),
        ("1.7672256e9", NEW_YEAR),
        ("253402300799.999999", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))), NEW_YEAR),
    ],
)
def test_parse(value: str | float | datetime, expected: datetime) -> None:
    parsed = parse_ts(value)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2026-01-01T00:00:00", "offset is required"),
        ("2026-01-01", "RFC 3339"),
        ("2026-01-01T00:00Z", "RFC 3339"),
        ("2026-1-1T00:00:00Z", "RFC 3339"),
        ("20260101T000000Z", "RFC 3339"),
        ("2026-01-01T00:00:00+0100", "RFC 3339"),
        ("2026-01-01T00:00:00.Z", "RFC 3339"),
        ("yesterday", "RFC 3339"),
        ("", "empty"),
        ("  ", "empty"),
        ("2026-02-30T00:00:00Z", "day is out of range"),
        ("2026-13-01T00:00:00Z", "month"),
        ("2026-01-01T24:00:00Z", "hour"),
        ("2026-01-01T00:60:00Z", "minute"),
        ("2026-01-01T00:00:61Z", "second"),
        ("2026-01-01T00:00:00+24:00", "offset out of range"),
        ("2026-01-01T00:00:00+01:60", "offset out of range"),
        ("1969-12-31T23:59:59Z", "year"),
        ("1970-01-01T00:30:00+01:00", "year"),
        ("0001-01-01T00:00:00+01:00", "year"),
        ("9999-12-31T23:00:00-02:00", "year"),
        ("9999-12-31T23:59:59.9999996Z", "year"),
        (-1, "year"),
        (-0.5, "year"),
        ("-1", "year"),
        (253402300800, "year"),
        ("253402300799.9999996", "year"),
        ("1e999999", "year"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (float("-inf"), "finite"),
        ("nan", "RFC 3339"),
        (True, "boolean"),
        (False, "boolean"),
        (None, "expected"),
        (b"2026-01-01T00:00:00Z", "expected"),
        (datetime(2026, 1, 1), "timezone-aware"),
        (datetime(1969, 12, 31, tzinfo=UTC), "year"),
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "year"),
    ],
)
def test_parse_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_ts(value)  # type: ignore[arg-type]
    assert fragment in info.value.detail
    assert info.value.code == "validation_error"


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (NEW_YEAR, "2026-01-01T00:00:00Z"),
        (NEW_YEAR + timedelta(milliseconds=250), "2026-01-01T00:00:00.250000Z"),
        (NEW_YEAR + timedelta(microseconds=1), "2026-01-01T00:00:00.000001Z"),
        (datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "2026-01-01T00:00:00Z"),
        (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05Z"),
    ],
)
def test_format(dt: datetime, text: str) -> None:
    assert format_ts(dt) == text


def test_format_naive_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_ts(datetime(2026, 1, 1))


instants = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
    timezones=st.just(UTC),
)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@settings(deadline=None)
@given(instants)
def test_format_round_trips(dt: datetime) -> None:
    assert parse_ts(format_ts(dt)) == dt


@settings(deadline=None)
@given(instants, offsets)
def test_any_offset_means_the_same_instant(dt: datetime, tz: timezone) -> None:
    local = dt.astimezone(tz) if 1 < dt.year < 9999 else dt
    text = local.isoformat()
    parsed = parse_ts(text)
    assert parsed == dt
    assert parsed.tzinfo is UTC


@settings(deadline=None)
@given(instants)
def test_unix_seconds_agree_with_rfc3339(dt: datetime) -> None:
    micros = (dt - EPOCH) // timedelta(microseconds=1)
    seconds, fraction = divmod(micros, 1_000_000)
    assert parse_ts(f"{seconds}.{fraction:06d}") == dt
    if fraction == 0:
        assert parse_ts(seconds) == dt


def test_check_not_future_allows_up_to_the_skew() -> None:
    skew = timedelta(minutes=5)
    check_not_future(NEW_YEAR, NEW_YEAR, skew)
    check_not_future(NEW_YEAR - timedelta(days=400), NEW_YEAR, skew)
    check_not_future(NEW_YEAR + skew, NEW_YEAR, skew)


def test_check_not_future_says_by_how_much() -> None:
    with pytest.raises(TsInFuture) as info:
        check_not_future(NEW_YEAR + timedelta(minutes=15), NEW_YEAR, timedelta(minutes=5))
    assert info.value.status == 422
    assert info.value.code == "ts_in_future"
    assert "15m ahead" in info.value.detail
    assert "5m" in info.value.detail
    assert "2026-01-01T00:15:00Z" in info.value.detail


def test_check_not_future_zero_skew() -> None:
    with pytest.raises(TsInFuture, match=r"0\.000001s ahead"):
        check_not_future(NEW_YEAR + timedelta(microseconds=1), NEW_YEAR, timedelta(0))
