"""A pool's settings: how uploads are windowed, when groups close, what files are refused.

:class:`PoolSettings` is validated on construction, so an instance is always within bounds.
:meth:`PoolSettings.from_input` reads the API's raw JSON values; :meth:`PoolSettings.to_output`
writes them back in the same vocabulary, and the two round-trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pooldrop.domain.durations import format_duration, parse_duration
from pooldrop.domain.sniffing import DEFAULT_FORBIDDEN_TYPES, validate_forbidden_types
from pooldrop.domain.windows import MAX_WINDOW, MIN_WINDOW
from pooldrop.errors import ValidationFailed

GIB = 1024**3
MAX_LATENESS = timedelta(days=30)
MIN_LEASE = timedelta(seconds=1)
MAX_LEASE = timedelta(days=1)
MAX_MIN_CONTRIBUTORS = 1_000_000
MAX_FILE_SIZE_LIMIT = 10 * GIB
MAX_ATTEMPTS_LIMIT = 100
DEFAULT_MAX_FILE_SIZE = 64 * 1024 * 1024


class LatePolicy(StrEnum):
    """What happens to an upload whose window's group is no longer open."""

    REJECT = "reject"
    NEXT_OPEN = "next_open"


_DURATION_FIELDS = ("window", "window_offset", "allowed_lateness", "lease")
_INT_FIELDS = ("min_contributors", "max_file_size", "max_attempts")


@dataclass(frozen=True)
class PoolSettings:
    """The tunables of one pool, always within bounds (checked in ``__post_init__``)."""

    window: timedelta
    window_offset: timedelta = timedelta(0)
    allowed_lateness: timedelta = timedelta(0)
    late_policy: LatePolicy = LatePolicy.REJECT
    min_contributors: int | None = None
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    forbidden_types: tuple[str, ...] = field(default=DEFAULT_FORBIDDEN_TYPES)
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 3

    def __post_init__(self) -> None:
        self.validate()
        # Normalised once here, so equal settings compare equal however they were spelt.
        object.__setattr__(self, "forbidden_types", validate_forbidden_types(self.forbidden_types))
        object.__setattr__(self, "late_policy", LatePolicy(self.late_policy))

    def validate(self) -> None:
        """Raise :class:`ValidationFailed` naming the first field out of bounds."""
        for name in _DURATION_FIELDS:
            if not isinstance(getattr(self, name), timedelta):
                raise ValidationFailed(f"{name} must be a duration")
        _between("window", self.window, MIN_WINDOW, MAX_WINDOW)
        if not timedelta(0) <= self.window_offset < self.window:
            raise ValidationFailed(
                f"window_offset must be at least 0s and less than the window "
                f"({format_duration(self.window)})"
            )
        _between("allowed_lateness", self.allowed_lateness, timedelta(0), MAX_LATENESS)
        if not _is_late_policy(self.late_policy):
            raise ValidationFailed(_late_policy_help(self.late_policy))
        if self.min_contributors is not None:
            _int_between("min_contributors", self.min_contributors, 1, MAX_MIN_CONTRIBUTORS)
        _int_between("max_file_size", self.max_file_size, 1, MAX_FILE_SIZE_LIMIT)
        _between("lease", self.lease, MIN_LEASE, MAX_LEASE)
        _int_between("max_attempts", self.max_attempts, 1, MAX_ATTEMPTS_LIMIT)
        validate_forbidden_types(self.forbidden_types)

    @classmethod
    def from_input(cls, **raw: Any) -> PoolSettings:
        """Build settings from the API's JSON values.

        Durations are strings or seconds (see :func:`parse_duration`), ``late_policy`` a string,
        ``forbidden_types`` a list. A missing key or ``None`` takes the default (``window`` has
        none and is required). Unknown keys are refused so a typo never passes silently.
        """
        if raw.get("window") is None:
            raise ValidationFailed("window is required (e.g. '15m', '1h', '1d')")
        return cls(**_parse_fields(raw))

    def updated(self, **raw: Any) -> PoolSettings:
        """A copy with some fields changed from raw API values (for PATCH); ``None`` = unchanged."""
        return replace(self, **_parse_fields(raw))

    def to_output(self) -> dict[str, Any]:
        """The settings as the API shows them: durations formatted, enums as strings."""
        return {
            "window": format_duration(self.window),
            "window_offset": format_duration(self.window_offset),
            "allowed_lateness": format_duration(self.allowed_lateness),
            "late_policy": str(self.late_policy),
            "min_contributors": self.min_contributors,
            "max_file_size": self.max_file_size,
            "forbidden_types": list(self.forbidden_types),
            "lease": format_duration(self.lease),
            "max_attempts": self.max_attempts,
        }


_FIELD_NAMES = frozenset(f.name for f in fields(PoolSettings))


def _parse_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(raw) - _FIELD_NAMES)
    if unknown:
        raise ValidationFailed(
            f"unknown pool setting(s): {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_FIELD_NAMES))}"
        )
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None:
            continue
        if name in _DURATION_FIELDS:
            out[name] = _parse_named_duration(name, value)
        elif name in _INT_FIELDS:
            out[name] = _parse_int(name, value)
        elif name == "late_policy":
            out[name] = _parse_late_policy(value)
        else:  # forbidden_types
            out[name] = validate_forbidden_types(value)
    return out


def _parse_named_duration(name: str, value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value)
    except ValidationFailed as exc:
        raise ValidationFailed(f"{name}: {exc.detail}") from None


def _parse_int(name: str, value: Any) -> int:
    # bool is an int subclass, and 3.0 from a sloppy JSON encoder is still a whole number.
    if isinstance(value, bool):
        raise ValidationFailed(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise ValidationFailed(f"{name} must be a whole number, got {value!r}")
    return value


def _is_late_policy(value: object) -> bool:
    return isinstance(value, str) and value in {policy.value for policy in LatePolicy}


def _late_policy_help(value: object) -> str:
    choices = ", ".join(repr(str(p)) for p in LatePolicy)
    return f"late_policy must be one of {choices}, got {value!r}"


def _parse_late_policy(value: Any) -> LatePolicy:
    if isinstance(value, str):
        normalised = value.strip().lower().replace("-", "_")
        if _is_late_policy(normalised):
            return LatePolicy(normalised)
    raise ValidationFailed(_late_policy_help(value))


def _between(name: str, value: timedelta, low: timedelta, high: timedelta) -> None:
    if not low <= value <= high:
        raise ValidationFailed(
            f"{name} must be between {format_duration(low)} and {format_duration(high)}, "
            f"got {_signed(value)}"
        )


def _signed(value: timedelta) -> str:
    return format_duration(value) if value >= timedelta(0) else "-" + format_duration(-value)


def _int_between(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValidationFailed(f"{name} must be between {low} and {high}, got {value}")
