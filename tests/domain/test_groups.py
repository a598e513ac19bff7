from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldrop.domain.groups import (
    MAX_NEXT_OPEN_STEPS,
    TERMINAL_STATES,
    GroupState,
    Placement,
    Trigger,
    after_lease_loss,
    can_transition,
    check_transition,
    place_upload,
    quorum_reached,
    window_due,
)
from pooldrop.domain.pools import LatePolicy, PoolSettings
from pooldrop.domain.windows import Window, window_for
from pooldrop.errors import GroupNotReady, WindowClosed

OPEN, R, C, D, F = (
    GroupState.OPEN,
    GroupState.READY,
    GroupState.CLAIMED,
    GroupState.DONE,
    GroupState.FAILED,
)
LEGAL = {(OPEN, R), (R, C), (C, D), (C, R), (C, F)}
MIN = timedelta(minutes=1)


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 1, 1, hour, minute, second, tzinfo=UTC)


def test_values() -> None:
    assert [str(s) for s in GroupState] == ["open", "ready", "claimed", "done", "failed"]
    assert [str(t) for t in Trigger] == ["window", "quorum", "manual"]
    assert {D, F} == TERMINAL_STATES


@pytest.mark.parametrize("dst", list(GroupState))
@pytest.mark.parametrize("src", list(GroupState))
def test_transitions(src: GroupState, dst: GroupState) -> None:
    legal = (src, dst) in LEGAL
    assert can_transition(src, dst) is legal
    if legal:
        check_transition(src, dst)
    else:
        with pytest.raises(GroupNotReady) as info:
            check_transition(src, dst)
        assert info.value.status == 409
        assert info.value.code == "group_not_ready"
        assert f"is {src}" in info.value.detail and str(dst) in info.value.detail


def test_open_cannot_be_claimed_directly() -> None:
    assert not can_transition(OPEN, C)
    assert can_transition(OPEN, R) and can_transition(R, C)


def test_terminal_states_go_nowhere() -> None:
    assert not any(can_transition(s, d) for s in TERMINAL_STATES for d in GroupState)


def test_window_due() -> None:
    end = at(1)
    assert not window_due(end, timedelta(0), end - timedelta(microseconds=1))
    assert window_due(end, timedelta(0), end)
    assert not window_due(end, MIN, end + timedelta(seconds=59))
    assert window_due(end, MIN, end + MIN)
    assert window_due(end, MIN, end + timedelta(days=1))


@pytest.mark.parametrize(
    ("contributors", "minimum", "reached"),
    [
        (0, None, False),
        (10**6, None, False),
        (0, 1, False),
        (1, 1, True),
        (2, 3, False),
        (3, 3, True),
        (4, 3, True),
    ],
)
def test_quorum_reached(contributors: int, minimum: int | None, reached: bool) -> None:
    assert quorum_reached(contributors, minimum) is reached


@pytest.mark.parametrize(
    ("attempts", "max_attempts", "state"),
    [(1, 3, R), (2, 3, R), (3, 3, F), (4, 3, F), (1, 1, F), (99, 100, R), (100, 100, F)],
)
def test_after_lease_loss(attempts: int, max_attempts: int, state: GroupState) -> None:
    assert after_lease_loss(attempts, max_attempts) is state
    check_transition(C, state)


# ---------------------------------------------------------------- placement

HOUR = PoolSettings(window=timedelta(hours=1))
HOUR_LATE_10M = PoolSettings(window=timedelta(hours=1), allowed_lateness=timedelta(minutes=10))
NEXT_OPEN = PoolSettings(window=timedelta(hours=1), late_policy=LatePolicy.NEXT_OPEN)


def all_open(window: Window) -> bool:
    return True


class Groups:
    """A fake of the store's question "is this window's group open?", recording what it is asked."""

    def __init__(self, *closed_starts: datetime) -> None:
        self.closed = set(closed_starts)
        self.asked: list[Window] = []

    def __call__(self, window: Window) -> bool:
        self.asked.append(window)
        return window.start not in self.closed


def test_on_time_upload_goes_to_its_window() -> None:
    placement = place_upload(at(0, 30), at(0, 45), HOUR, all_open)
    assert placement == Placement(Window(at(0), at(1)), late=False)


def test_upload_slightly_ahead_of_now_goes_to_its_own_window() -> None:
    placement = place_upload(at(1, 2), at(0, 59), HOUR, all_open)
    assert placement == Placement(Window(at(1), at(2)), late=False)


def test_window_offset_is_honoured() -> None:
    settings = PoolSettings(window=timedelta(hours=1), window_offset=timedelta(minutes=15))
    placement = place_upload(at(0, 10), at(0, 11), settings, all_open)
    assert placement.window == Window(datetime(2025, 12, 31, 23, 15, tzinfo=UTC), at(0, 15))


def test_lateness_keeps_the_window_open_until_end_plus_lateness() -> None:
    just_in = place_upload(at(0, 59), at(1, 9, 59), HOUR_LATE_10M, all_open)
    assert just_in == Placement(Window(at(0), at(1)), late=False)
    with pytest.raises(WindowClosed):
        place_upload(at(0, 59), at(1, 10), HOUR_LATE_10M, all_open)


def test_late_upload_is_rejected_under_reject() -> None:
    with pytest.raises(WindowClosed) as info:
        place_upload(at(0, 30), at(1), HOUR, all_open)
    assert info.value.status == 409
    assert info.value.code == "window_closed"
    detail = info.value.detail
    assert "[2026-01-01T00:00:00Z, 2026-01-01T01:00:00Z)" in detail
    assert "ts 2026-01-01T00:30:00Z" in detail
    assert "closed at 2026-01-01T01:00:00Z" in detail
    assert "lateness" not in detail


def test_reject_detail_mentions_lateness() -> None:
    with pytest.raises(
        WindowClosed, match=r"closed at 2026-01-01T01:10:00Z \(allowed lateness 10m\)"
    ):
        place_upload(at(0, 30), at(2), HOUR_LATE_10M, all_open)


def test_window_closed_early_rejects_even_on_time() -> None:
    groups = Groups(at(0))
    with pytest.raises(WindowClosed, match="closed early: its group is no longer open"):
        place_upload(at(0, 30), at(0, 40), HOUR, groups)


def test_due_window_is_not_asked_about() -> None:
    groups = Groups()
    with pytest.raises(WindowClosed):
        place_upload(at(0, 30), at(1), HOUR, groups)
    assert groups.asked == []


def test_next_open_puts_late_upload_into_the_current_window() -> None:
    groups = Groups()
    placement = place_upload(at(0, 30), at(3, 20), NEXT_OPEN, groups)
    assert placement == Placement(Window(at(3), at(4)), late=True)
    assert groups.asked == [Window(at(3), at(4))]


def test_next_open_skips_windows_closed_early() -> None:
    # Own window closed by quorum, the next one too: the upload lands two windows on.
    groups = Groups(at(0), at(1))
    placement = place_upload(at(0, 30), at(0, 40), NEXT_OPEN, groups)
    assert placement == Placement(Window(at(2), at(3)), late=True)
    assert groups.asked == [Window(at(0), at(1)), Window(at(1), at(2)), Window(at(2), at(3))]


def test_next_open_never_moves_an_upload_backwards() -> None:
    # ts is ahead of now (within skew) and its window already closed: go forward, not to now's.
    groups = Groups(at(1))
    placement = place_upload(at(1, 1), at(0, 59), NEXT_OPEN, groups)
    assert placement == Placement(Window(at(1), at(2)).next(), late=True)


def test_next_open_gives_up_after_a_bound() -> None:
    def never_open(window: Window) -> bool:
        return False

    with pytest.raises(WindowClosed, match=f"no open window within {MAX_NEXT_OPEN_STEPS}"):
        place_upload(at(0, 30), at(0, 40), NEXT_OPEN, never_open)


def test_next_open_with_lateness() -> None:
    settings = PoolSettings(
        window=timedelta(hours=1),
        allowed_lateness=timedelta(minutes=10),
        late_policy=LatePolicy.NEXT_OPEN,
    )
    assert place_upload(at(0, 30), at(1, 5), settings, all_open).late is False
    assert place_upload(at(0, 30), at(1, 10), settings, all_open) == Placement(
        Window(at(1), at(2)), late=True
    )


instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@settings(deadline=None)
@given(
    ts=instants,
    lag=st.timedeltas(min_value=timedelta(minutes=-5), max_value=timedelta(days=60)),
    size=st.timedeltas(min_value=MIN, max_value=timedelta(days=30)),
    lateness=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
    closed_ahead=st.integers(min_value=0, max_value=3),
)
def test_next_open_placement_properties(
    ts: datetime, lag: timedelta, size: timedelta, lateness: timedelta, closed_ahead: int
) -> None:
    now = ts + lag
    settings = PoolSettings(
        window=size, allowed_lateness=lateness, late_policy=LatePolicy.NEXT_OPEN
    )
    own = window_for(ts, size)
    current = window_for(now, size)
    # Close the own window and the next few after "now", as early quorums would.
    closed_starts = {own.start}
    w = current
    for _ in range(closed_ahead):
        closed_starts.add(w.start)
        w = w.next()
    groups = Groups(*closed_starts)
    placement = place_upload(ts, now, settings, groups)
    assert placement.late is True
    assert placement.window.start not in closed_starts
    assert placement.window.start > own.start
    assert placement.window.end > now  # never a window that is already over
    assert placement.window.size == size
    assert window_for(placement.window.start, size) == placement.window


@settings(deadline=None)
@given(
    ts=instants,
    lag=st.timedeltas(min_value=timedelta(minutes=-5), max_value=timedelta(days=60)),
    size=st.timedeltas(min_value=MIN, max_value=timedelta(days=30)),
    lateness=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
)
def test_reject_placement_properties(
    ts: datetime, lag: timedelta, size: timedelta, lateness: timedelta
) -> None:
    now = ts + lag
    settings = PoolSettings(window=size, allowed_lateness=lateness)
    own = window_for(ts, size)
    if window_due(own.end, lateness, now):
        with pytest.raises(WindowClosed):
            place_upload(ts, now, settings, all_open)
    else:
        assert place_upload(ts, now, settings, all_open) == Placement(own, late=False)
