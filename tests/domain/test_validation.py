import json
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldrop.domain.validation import (
    MAX_FILENAME_BYTES,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    parse_count,
    validate_client_upload_id,
    validate_filename,
    validate_metadata,
    validate_password,
    validate_username,
)
from pooldrop.errors import ValidationFailed

# ---------------------------------------------------------------- file names


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "report.pdf",
        "photo 2026-01-01.jpg",
        "..a",
        "a..",
        "...",
        ".hidden",
        "naïve €.txt",
        "日本語.txt",
        "x" * MAX_FILENAME_BYTES,
        "é" * (MAX_FILENAME_BYTES // 2),
        "a\u00a0b",
    ],
)
def test_filename_accepts(name: str) -> None:
    assert validate_filename(name) == name


def test_filename_is_nfc_normalised() -> None:
    decomposed = "cafe\u0301.txt"
    assert validate_filename(decomposed) == "caf\u00e9.txt"
    # The byte limit applies to the normalised form: 255 bytes of NFC pass although NFD is longer.
    name = "\u00e9" * (MAX_FILENAME_BYTES // 2)
    assert validate_filename(unicodedata.normalize("NFD", name)) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        (".", "not allowed"),
        ("..", "not allowed"),
        ("a/b", "'/'"),
        ("/etc/passwd", "'/'"),
        ("a\\b", "'\\'"),
        ("..\\..\\boot.ini", "'\\'"),
        ("a\x00b", "U+0000"),
        ("a\nb", "U+000A"),
        ("a\tb", "U+0009"),
        ("a\x1fb", "U+001F"),
        ("a\x7fb", "U+007F"),
        ("a\x80b", "U+0080"),
        ("a\x9fb", "U+009F"),
        ("evil\u202etxt.exe", "U+202E"),
        ("a\u2066b", "U+2066"),
        ("a\u2028b", "U+2028"),
        ("a\ud800b", "surrogate"),
        (" a", "whitespace"),
        ("a ", "whitespace"),
        ("\u3000a", "whitespace"),
        ("a\u00a0", "whitespace"),
        ("x" * (MAX_FILENAME_BYTES + 1), "256 bytes"),
        ("é" * 128, "256 bytes"),
        (b"a.txt", "text"),
        (None, "text"),
    ],
)
def test_filename_rejects(name: object, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_filename(name)  # type: ignore[arg-type]
    assert fragment in info.value.detail


@settings(deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_filename_accepted_names_are_safe(name: str) -> None:
    try:
        clean = validate_filename(name)
    except ValidationFailed:
        return
    assert clean == unicodedata.normalize("NFC", name)
    assert "/" not in clean and "\\" not in clean and clean not in (".", "..")
    assert len(clean.encode("utf-8")) <= MAX_FILENAME_BYTES
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in clean)
    assert clean == clean.strip()


# ---------------------------------------------------------------- metadata


def test_metadata_none_is_empty() -> None:
    assert validate_metadata(None) == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        (b'{"a": [1, 2.5, null, true, "x"]}', {"a": [1, 2.5, None, True, "x"]}),
        ("  {}  ", {}),
        ('{"é": "€"}', {"é": "€"}),
        ({"a": {"b": [1, {"c": None}]}}, {"a": {"b": [1, {"c": None}]}}),
    ],
)
def test_metadata_accepts(raw: str | bytes | dict[str, Any], expected: dict[str, Any]) -> None:
    assert validate_metadata(raw) == expected


def test_metadata_dict_is_copied() -> None:
    original = {"a": [1]}
    result = validate_metadata(original)
    result["a"].append(2)
    assert original == {"a": [1]}


def nest(depth: int) -> str:
    """A JSON object whose nesting depth is exactly ``depth`` (the top object counts)."""
    return '{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def test_metadata_depth_limit_is_exact() -> None:
    assert validate_metadata(nest(MAX_METADATA_DEPTH))
    with pytest.raises(ValidationFailed, match="nested deeper"):
        validate_metadata(nest(MAX_METADATA_DEPTH + 1))
    assert validate_metadata(json.loads(nest(MAX_METADATA_DEPTH)))
    with pytest.raises(ValidationFailed, match="nested deeper"):
        validate_metadata(json.loads(nest(MAX_METADATA_DEPTH + 1)))


def test_metadata_size_limit_is_exact_and_measured_compact() -> None:
    overhead = len('{"k":""}')
    fits = {"k": "x" * (MAX_METADATA_BYTES - overhead)}
    assert validate_metadata(fits) == fits
    # Whitespace in the input does not count: only the compact encoding does.
    assert validate_metadata(json.dumps(fits, indent=4)) == fits
    with pytest.raises(ValidationFailed, match="4097 bytes"):
        validate_metadata({"k": "x" * (MAX_METADATA_BYTES - overhead + 1)})
    # Counted in UTF-8 bytes, not characters (and not \u escapes).
    with pytest.raises(ValidationFailed, match="at most 4096"):
        validate_metadata(json.dumps({"k": "é" * 2100}))


def test_metadata_self_reference_is_refused() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValidationFailed, match="nested deeper"):
        validate_metadata(cyclic)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("[]", "JSON object"),
        ('"x"', "JSON object"),
        ("1", "JSON object"),
        ("null", "JSON object"),
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ("{'a': 1}", "not valid JSON"),
        ('{"a": 1,}', "not valid JSON"),
        ('{"a": 1' + "1" * 5000 + "}", "number is too long"),
        ('{"a": 1, "a": 2}', "twice"),
        ('{"a": NaN}', "finite"),
        ('{"a": -Infinity}', "finite"),
        ('{"a": 1e400}', "out of range"),
        ('{"a": "\\ud800"}', "surrogate"),
        ('{"\\udc00": 1}', "surrogate"),
        ("[" * 60_000, "nested deeper"),
        ("{" + " " * 70_000 + "}", "larger than"),
        (b"\xff{}", "UTF-8"),
        ({1: "a"}, "keys must be strings"),
        ({"a": float("nan")}, "finite"),
        ({"a": (1, 2)}, "must be JSON"),
        ({"a": b"x"}, "must be JSON"),
        ({"a": {1, 2}}, "must be JSON"),
        ({"a": "\ud800"}, "surrogate"),
        (["a"], "JSON object"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_metadata_rejects(raw: Any, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_metadata(raw)
    assert fragment in info.value.detail


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=20,
)


@settings(deadline=None)
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_metadata_text_and_dict_agree(value: dict[str, Any]) -> None:
    text = json.dumps(value)
    try:
        from_dict = validate_metadata(value)
    except ValidationFailed as exc:
        with pytest.raises(ValidationFailed) as info:
            validate_metadata(text)
        assert info.value.detail == exc.detail
        return
    assert validate_metadata(text) == from_dict == value


# ---------------------------------------------------------------- ids and credentials


@pytest.mark.parametrize(
    "value", ["a", "A-b_c.d:e", "0" * 128, "550e8400-e29b-41d4-a716-446655440000"]
)
def test_client_upload_id_accepts(value: str) -> None:
    assert validate_client_upload_id(value) == value


def test_client_upload_id_none_passes() -> None:
    assert validate_client_upload_id(None) is None


@pytest.mark.parametrize("value", ["", "0" * 129, "a b", "a/b", "é", "a\n", 5])
def test_client_upload_id_rejects(value: object) -> None:
    with pytest.raises(ValidationFailed, match="client_upload_id"):
        validate_client_upload_id(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["abc", "Alice", "a.b_c-d", "0day", "x" * 64, "a.."])
def test_username_accepts(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize(
    "name", ["ab", "x" * 65, ".abc", "_abc", "-abc", "a b", "ab@c", "äbc", "abc\n", None]
)
def test_username_rejects(name: object) -> None:
    with pytest.raises(ValidationFailed, match="username"):
        validate_username(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("pw", ["x" * 8, "x" * 1024, "pässwörd", "        "])
def test_password_accepts(pw: str) -> None:
    assert validate_password(pw) == pw


@pytest.mark.parametrize(
    ("pw", "fragment"),
    [("x" * 7, "8 to 1024"), ("x" * 1025, "8 to 1024"), (b"password", "text"), (None, "text")],
)
def test_password_rejects(pw: object, fragment: str) -> None:
    with pytest.raises(ValidationFailed, match=fragment):
        validate_password(pw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- counts (headers, cursors)


@pytest.mark.parametrize(("raw", "want"), [("0", 0), ("17", 17), (" 5 ", 5)])
def test_parse_count_accepts_non_negative_integers(raw: str, want: int) -> None:
    assert parse_count(raw, "after") == want


@pytest.mark.parametrize("raw", ["", "x", "1.5", "-1", "1e3"])
def test_parse_count_refuses_the_rest_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationFailed, match=r"^after must be"):
        parse_count(raw, "after")
