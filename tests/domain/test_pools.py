from dataclasses import FrozenInstanceError
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldrop.domain.pools import LatePolicy, PoolSettings
from pooldrop.domain.sniffing import DEFAULT_FORBIDDEN_TYPES
from pooldrop.errors import ValidationFailed

GIB = 1024**3


def test_defaults() -> None:
    settings = PoolSettings(window=timedelta(minutes=15))
    assert settings.window_offset == timedelta(0)
    assert settings.allowed_lateness == timedelta(0)
    assert settings.late_policy is LatePolicy.REJECT
    assert settings.min_contributors is None
    assert settings.max_file_size == 67108864
    assert settings.forbidden_types == DEFAULT_FORBIDDEN_TYPES
    assert settings.lease == timedelta(minutes=5)
    assert settings.max_attempts == 3


def test_frozen() -> None:
    settings = PoolSettings(window=timedelta(minutes=15))
    with pytest.raises(FrozenInstanceError):
        settings.window = timedelta(hours=1)  # type: ignore[misc]


def test_late_policy_values() -> None:
    assert [str(p) for p in LatePolicy] == ["reject", "next_open"]


def test_constructor_normalises() -> None:
    settings = PoolSettings(
        window=timedelta(hours=1),
        late_policy="next_open",  # type: ignore[arg-type]
        forbidden_types=[".EXE", "ELF", ".exe"],  # type: ignore[arg-type]
    )
    assert settings.late_policy is LatePolicy.NEXT_OPEN
    assert settings.forbidden_types == (".exe", "elf")


M, D, S = timedelta(minutes=1), timedelta(days=1), timedelta(seconds=1)


@pytest.mark.parametrize(
    "changes",
    [
        {"window": M},
        {"window": 30 * D},
        {
            "window": timedelta(hours=1),
            "window_offset": timedelta(hours=1) - timedelta(microseconds=1),
        },
        {"allowed_lateness": 30 * D},
        {"min_contributors": 1},
        {"min_contributors": 1_000_000},
        {"max_file_size": 1},
        {"max_file_size": 10 * GIB},
        {"lease": S},
        {"lease": D},
        {"max_attempts": 1},
        {"max_attempts": 100},
        {"forbidden_types": ()},
    ],
)
def test_bounds_inclusive(changes: dict[str, Any]) -> None:
    values = {"window": timedelta(hours=1), **changes}
    settings = PoolSettings(**values)
    for name, value in changes.items():
        assert getattr(settings, name) == value


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"window": M - timedelta(microseconds=1)}, "window"),
        ({"window": 30 * D + timedelta(microseconds=1)}, "window"),
        ({"window": timedelta(0)}, "window"),
        ({"window": -M}, "window"),
        ({"window": 60}, "window"),
        ({"window_offset": timedelta(hours=1)}, "window_offset"),
        ({"window_offset": -S}, "window_offset"),
        ({"allowed_lateness": -S}, "allowed_lateness"),
        ({"allowed_lateness": 30 * D + S}, "allowed_lateness"),
        ({"late_policy": "later"}, "late_policy"),
        ({"late_policy": ["reject"]}, "late_policy"),
        ({"min_contributors": 0}, "min_contributors"),
        ({"min_contributors": 1_000_001}, "min_contributors"),
        ({"min_contributors": True}, "min_contributors"),
        ({"min_contributors": 2.0}, "min_contributors"),
        ({"max_file_size": 0}, "max_file_size"),
        ({"max_file_size": 10 * GIB + 1}, "max_file_size"),
        ({"max_file_size": "1"}, "max_file_size"),
        ({"lease": S - timedelta(microseconds=1)}, "lease"),
        ({"lease": D + S}, "lease"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 101}, "max_attempts"),
        ({"forbidden_types": ("exe",)}, "forbidden_types"),
        ({"forbidden_types": "elf"}, "forbidden_types"),
    ],
)
def test_bounds_name_the_field(changes: dict[str, Any], field: str) -> None:
    values = {"window": timedelta(hours=1), **changes}
    with pytest.raises(ValidationFailed) as info:
        PoolSettings(**values)
    assert info.value.detail.startswith(field)
    assert info.value.status == 422


def test_bound_messages_are_readable() -> None:
    with pytest.raises(ValidationFailed, match="window must be between 1m and 30d, got 30s"):
        PoolSettings(window=timedelta(seconds=30))
    with pytest.raises(ValidationFailed, match="got -1s"):
        PoolSettings(window=M, allowed_lateness=-S)
    with pytest.raises(ValidationFailed, match=r"less than the window \(1h\)"):
        PoolSettings(window=timedelta(hours=1), window_offset=timedelta(hours=2))


def test_from_input_parses_api_values() -> None:
    settings = PoolSettings.from_input(
        window="15m",
        window_offset=60,
        allowed_lateness="PT30S",
        late_policy="next_open",
        min_contributors=3,
        max_file_size=1000,
        forbidden_types=[".exe", "elf"],
        lease="1.5m",
        max_attempts=5,
    )
    assert settings == PoolSettings(
        window=timedelta(minutes=15),
        window_offset=M,
        allowed_lateness=timedelta(seconds=30),
        late_policy=LatePolicy.NEXT_OPEN,
        min_contributors=3,
        max_file_size=1000,
        forbidden_types=(".exe", "elf"),
        lease=timedelta(seconds=90),
        max_attempts=5,
    )


def test_from_input_none_means_default() -> None:
    settings = PoolSettings.from_input(
        window=3600,
        window_offset=None,
        allowed_lateness=None,
        late_policy=None,
        min_contributors=None,
        max_file_size=None,
        forbidden_types=None,
        lease=None,
        max_attempts=None,
    )
    assert settings == PoolSettings(window=timedelta(hours=1))


def test_from_input_tolerances() -> None:
    settings = PoolSettings.from_input(
        window=timedelta(hours=1), late_policy=" Next-Open ", max_file_size=1000.0
    )
    assert settings.late_policy is LatePolicy.NEXT_OPEN
    assert settings.max_file_size == 1000


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({}, "window is required"),
        ({"window": None}, "window is required"),
        ({"window": "soon"}, "window: invalid duration 'soon'"),
        ({"window": "1h", "lease": "-1s"}, "lease: invalid duration"),
        ({"window": "1h", "name": "x"}, "unknown pool setting(s): name"),
        ({"window": "1h", "late_policy": 1}, "late_policy must be one of 'reject', 'next_open'"),
        ({"window": "1h", "late_policy": "never"}, "late_policy must be one of"),
        ({"window": "1h", "max_attempts": True}, "max_attempts must be a whole number"),
        ({"window": "1h", "max_attempts": 2.5}, "max_attempts must be a whole number"),
        ({"window": "1h", "max_attempts": "3"}, "max_attempts must be a whole number"),
        ({"window": "1h", "max_attempts": float("inf")}, "max_attempts must be a whole number"),
        ({"window": "1h", "forbidden_types": "elf"}, "forbidden_types must be a list"),
        ({"window": "30s"}, "window must be between"),
    ],
)
def test_from_input_rejects(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        PoolSettings.from_input(**raw)
    assert fragment in info.value.detail


def test_to_output() -> None:
    settings = PoolSettings(
        window=timedelta(hours=1, minutes=30),
        late_policy=LatePolicy.NEXT_OPEN,
        min_contributors=2,
        forbidden_types=(".exe",),
    )
    assert settings.to_output() == {
        "window": "1h30m",
        "window_offset": "0s",
        "allowed_lateness": "0s",
        "late_policy": "next_open",
        "min_contributors": 2,
        "max_file_size": 67108864,
        "forbidden_types": [".exe"],
        "lease": "5m",
        "max_attempts": 3,
    }
    assert type(settings.to_output()["late_policy"]) is str


def test_updated() -> None:
    settings = PoolSettings(window=timedelta(hours=1), min_contributors=3)
    changed = settings.updated(lease="10m", late_policy="next_open", max_attempts=None)
    assert changed.lease == timedelta(minutes=10)
    assert changed.late_policy is LatePolicy.NEXT_OPEN
    assert changed.max_attempts == 3
    assert changed.min_contributors == 3
    assert settings.lease == timedelta(minutes=5)
    with pytest.raises(ValidationFailed, match="window_offset"):
        settings.updated(window_offset="2h")
    with pytest.raises(ValidationFailed, match="unknown"):
        settings.updated(colour="blue")


@st.composite
def pool_settings(draw: st.DrawFn) -> PoolSettings:
    us = timedelta(microseconds=1)
    window = draw(st.timedeltas(min_value=M, max_value=30 * D))
    return PoolSettings(
        window=window,
        window_offset=draw(st.timedeltas(min_value=timedelta(0), max_value=window - us)),
        allowed_lateness=draw(st.timedeltas(min_value=timedelta(0), max_value=30 * D)),
        late_policy=draw(st.sampled_from(LatePolicy)),
        min_contributors=draw(st.none() | st.integers(1, 1_000_000)),
        max_file_size=draw(st.integers(1, 10 * GIB)),
        forbidden_types=tuple(
            draw(st.lists(st.sampled_from(DEFAULT_FORBIDDEN_TYPES), unique=True))
        ),
        lease=draw(st.timedeltas(min_value=S, max_value=D)),
        max_attempts=draw(st.integers(1, 100)),
    )


@settings(deadline=None)
@given(pool_settings())
def test_output_round_trips(settings: PoolSettings) -> None:
    assert PoolSettings.from_input(**settings.to_output()) == settings
