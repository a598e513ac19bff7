from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldrop.domain.windows import MAX_WINDOW, MIN_WINDOW, Window, window_for
from pooldrop.errors import ValidationFailed

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def test_bounds() -> None:
    assert timedelta(minutes=1) == MIN_WINDOW
    assert timedelta(days=30) == MAX_WINDOW


@pytest.mark.parametrize(
    ("ts", "size", "offset", "start"),
    [
        (at(2026, 1, 1, 0, 7), timedelta(minutes=15), timedelta(0), at(2026, 1, 1)),
        (at(2026, 1, 1, 0, 15), timedelta(minutes=15), timedelta(0), at(2026, 1, 1, 0, 15)),
        (at(2026, 1, 1, 0, 14, 59, 999999), timedelta(minutes=15), timedelta(0), at(2026, 1, 1)),
        (
            at(2026, 1, 1, 0, 7),
            timedelta(minutes=15),
            timedelta(minutes=10),
            at(2025, 12, 31, 23, 55),
        ),
        (
            at(2026, 1, 1, 0, 10),
            timedelta(minutes=15),
            timedelta(minutes=10),
            at(2026, 1, 1, 0, 10),
        ),
        (at(2026, 1, 1, 12), timedelta(days=1), timedelta(0), at(2026, 1, 1)),
        # Days are aligned to UTC midnight; an offset moves the boundary (here to 06:00 UTC).
        (at(2026, 1, 1, 5), timedelta(days=1), timedelta(hours=6), at(2025, 12, 31, 6)),
        # Weeks since the epoch start on Thursdays (1970-01-01 was one).
        (at(2026, 1, 5), timedelta(weeks=1), timedelta(0), at(2026, 1, 1)),
        (EPOCH, timedelta(minutes=1), timedelta(0), EPOCH),
        # Before the first aligned boundary after the epoch: floor, not truncation.
        (EPOCH, timedelta(hours=1), timedelta(minutes=30), at(1969, 12, 31, 23, 30)),
    ],
)
def test_window_for(ts: datetime, size: timedelta, offset: timedelta, start: datetime) -> None:
    window = window_for(ts, size, offset)
    assert window == Window(start, start + size)
    assert window.start.tzinfo is UTC
    assert window.contains(ts)


def test_ts_in_another_timezone() -> None:
    ts = datetime(2026, 1, 1, 2, 7, tzinfo=timezone(timedelta(hours=2)))
    assert window_for(ts, timedelta(minutes=15)) == Window(at(2026, 1, 1), at(2026, 1, 1, 0, 15))


def test_offset_is_taken_modulo_size() -> None:
    ts = at(2026, 1, 1, 0, 7)
    size = timedelta(minutes=15)
    expected = window_for(ts, size, timedelta(minutes=10))
    assert window_for(ts, size, timedelta(minutes=25)) == expected
    assert window_for(ts, size, timedelta(minutes=-5)) == expected


def test_no_float_drift_far_from_the_epoch() -> None:
    # 2.2e17 µs: far beyond float's exact integers; a float computation would misplace this.
    ts = at(9000, 1, 1) - US
    window = window_for(ts, timedelta(seconds=61))
    assert window.start <= ts < window.end
    assert (window.start - EPOCH) % timedelta(seconds=61) == timedelta(0)


def test_helpers() -> None:
    window = window_for(at(2026, 1, 1, 0, 7), timedelta(minutes=15))
    assert window.size == timedelta(minutes=15)
    assert window.next() == Window(at(2026, 1, 1, 0, 15), at(2026, 1, 1, 0, 30))
    assert window.previous() == Window(at(2025, 12, 31, 23, 45), at(2026, 1, 1))
    assert window.next().previous() == window
    assert not window.contains(window.end)
    assert window.contains(window.start)
    assert not window.contains(window.start - US)


def test_window_past_year_9999_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed, match="9999"):
        window_for(at(9999, 12, 31, 12), timedelta(days=30))
    last = window_for(at(9999, 12, 30, 12), timedelta(days=1))
    assert last.end == at(9999, 12, 31)
    with pytest.raises(ValidationFailed):
        last.next()


def test_previous_before_year_1_is_a_validation_error() -> None:
    first = Window(datetime.min.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC) + MIN_WINDOW)
    with pytest.raises(ValidationFailed):
        first.previous()


@pytest.mark.parametrize("size", [timedelta(0), timedelta(seconds=-60)])
def test_non_positive_size_is_a_programming_error(size: timedelta) -> None:
    with pytest.raises(ValueError, match="positive"):
        window_for(at(2026, 1, 1), size)


def test_naive_ts_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        window_for(datetime(2026, 1, 1), timedelta(minutes=1))


sizes = st.integers(min_value=MIN_WINDOW // US, max_value=MAX_WINDOW // US).map(
    lambda us: timedelta(microseconds=us)
)
round_sizes = st.sampled_from(
    [
        MIN_WINDOW,
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(days=1),
        timedelta(weeks=1),
        MAX_WINDOW,
    ]
)
instants = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 10, 1), timezones=st.just(UTC)
)


@st.composite
def size_and_offset(draw: st.DrawFn) -> tuple[timedelta, timedelta]:
    size = draw(st.one_of(sizes, round_sizes))
    offset_us = draw(st.integers(min_value=0, max_value=size // US - 1))
    return size, timedelta(microseconds=offset_us)


@settings(deadline=None)
@given(instants, size_and_offset())
def test_every_instant_is_in_exactly_one_window(
    ts: datetime, size_offset: tuple[timedelta, timedelta]
) -> None:
    size, offset = size_offset
    window = window_for(ts, size, offset)
    assert window.contains(ts)
    assert window.start <= ts < window.end
    assert window.end - window.start == size
    # Aligned: start sits on epoch + offset + k * size.
    assert (window.start - EPOCH - offset) % size == timedelta(0)
    # Its own boundaries map back to it, and its end opens the next window.
    assert window_for(window.start, size, offset) == window
    assert window_for(window.end - US, size, offset) == window
    assert window_for(window.end, size, offset) == window.next()
    assert window_for(window.start - US, size, offset) == window.previous()
    # Neighbours do not hold ts, so no other window does.
    assert not window.next().contains(ts)
    assert not window.previous().contains(ts)


@settings(deadline=None)
@given(instants, instants, size_and_offset())
def test_windows_are_ordered_like_their_instants(
    a: datetime, b: datetime, size_offset: tuple[timedelta, timedelta]
) -> None:
    size, offset = size_offset
    wa, wb = window_for(a, size, offset), window_for(b, size, offset)
    if a <= b:
        assert wa.start <= wb.start
    # Two windows either coincide or do not overlap at all.
    assert wa == wb or wa.end <= wb.start or wb.end <= wa.start
