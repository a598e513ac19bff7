import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldrop.domain.sniffing import (
    CONTENT_KINDS,
    DEFAULT_FORBIDDEN_TYPES,
    MAX_FORBIDDEN_TYPES,
    SNIFF_BYTES,
    forbidden_reason,
    validate_forbidden_types,
)
from pooldrop.errors import ValidationFailed

ALL_KINDS = tuple(sorted(CONTENT_KINDS))

SAMPLES = {
    "elf": [b"\x7fELF\x02\x01\x01\x00"],
    "pe": [b"MZ\x90\x00\x03\x00\x00\x00", b"ZM\x00\x00"],
    "macho": [
        b"\xfe\xed\xfa\xce\x00\x00\x00\x07",  # 32-bit big-endian
        b"\xce\xfa\xed\xfe\x07\x00\x00\x00",  # 32-bit little-endian
        b"\xfe\xed\xfa\xcf\x01\x00\x00\x07",  # 64-bit big-endian
        b"\xcf\xfa\xed\xfe\x07\x00\x00\x01",  # 64-bit little-endian
        b"\xca\xfe\xba\xbe\x00\x00\x00\x02",  # universal, 2 architectures
        b"\xca\xfe\xba\xbf\x00\x00\x00\x02",  # universal 64
        b"\xbe\xba\xfe\xca\x02\x00\x00\x00",  # universal, byte-swapped
        b"\xbf\xba\xfe\xca\x02\x00\x00\x00",  # universal 64, byte-swapped
        b"\xca\xfe\xba\xbe",  # too short to tell from Java: refused as Mach-O
    ],
    "script": [b"#!/bin/s", b"#!"],
    "java-class": [
        b"\xca\xfe\xba\xbe\x00\x00\x00\x34",  # Java 8
        b"\xca\xfe\xba\xbe\x00\x00\x00\x2d",  # Java 1.0
        b"\xca\xfe\xba\xbe\xff\xff\x00\x41",  # Java 21 with preview features
    ],
    "ole": [b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"],
    "wasm": [b"\x00asm\x01\x00\x00\x00"],
    "dex": [b"dex\n035\x00"],
}

HARMLESS = [
    b"",
    b"hello wo",
    b"%PDF-1.7",
    b"\x89PNG\r\n\x1a\n",
    b"PK\x03\x04",
    b"# !/bin",
    b"M",
    b"\x7fEL",
]


def test_sniff_bytes_is_small() -> None:
    assert 4 <= SNIFF_BYTES <= 16
    assert all(len(head) <= SNIFF_BYTES for heads in SAMPLES.values() for head in heads)


def test_every_kind_has_samples() -> None:
    assert set(SAMPLES) == CONTENT_KINDS


@pytest.mark.parametrize(
    ("kind", "head"), [(kind, head) for kind, heads in SAMPLES.items() for head in heads]
)
def test_each_kind_matches_only_its_own_samples(kind: str, head: bytes) -> None:
    reason = forbidden_reason("data.bin", head, [kind])
    assert reason is not None
    assert reason.startswith("content looks like")
    assert reason.endswith("not allowed in this pool")
    for other in CONTENT_KINDS - {kind}:
        assert forbidden_reason("data.bin", head, [other]) is None, other


@pytest.mark.parametrize("head", HARMLESS)
def test_harmless_content_passes_every_kind(head: bytes) -> None:
    assert forbidden_reason("data.bin", head, ALL_KINDS) is None


def test_reason_names_the_kind() -> None:
    assert forbidden_reason("a.txt", b"\x7fELF", ["elf"]) == (
        "content looks like an ELF executable, which is not allowed in this pool"
    )
    assert "Mach-O" in (forbidden_reason("a", b"\xcf\xfa\xed\xfe", ["macho"]) or "")
    assert "Java class" in (forbidden_reason("a", SAMPLES["java-class"][0], ["java-class"]) or "")


@pytest.mark.parametrize(
    "name",
    ["setup.exe", "SETUP.EXE", "Setup.Exe", "tool.exe.", "tool.exe ..", "a.tar.exe", ".exe"],
)
def test_extension_is_matched_case_insensitively(name: str) -> None:
    assert forbidden_reason(name, b"", [".exe"]) == "extension .exe is not allowed in this pool"


@pytest.mark.parametrize("name", ["setup.exe.txt", "exe", "setupexe", "a.ex", "a.exes"])
def test_extension_must_be_the_ending(name: str) -> None:
    assert forbidden_reason(name, b"", [".exe"]) is None


def test_multi_part_extension() -> None:
    assert forbidden_reason("a.tar.gz", b"", [".tar.gz"]) is not None
    assert forbidden_reason("a.gz", b"", [".tar.gz"]) is None


def test_entries_are_normalised_when_checking() -> None:
    assert forbidden_reason("a.exe", b"", [" .EXE "]) is not None
    assert forbidden_reason("a.txt", b"\x7fELF", ["ELF"]) is not None


def test_extension_checked_before_content() -> None:
    assert forbidden_reason("a.exe", b"\x7fELF", ["elf", ".exe"]) == (
        "extension .exe is not allowed in this pool"
    )


def test_renamed_executable_is_caught_by_content() -> None:
    assert forbidden_reason("holiday.jpg", b"MZ\x90\x00", DEFAULT_FORBIDDEN_TYPES) is not None


def test_empty_list_allows_everything() -> None:
    assert forbidden_reason("a.exe", b"\x7fELF", []) is None


def test_defaults() -> None:
    assert validate_forbidden_types(DEFAULT_FORBIDDEN_TYPES) == DEFAULT_FORBIDDEN_TYPES
    for entry in (
        ".exe",
        ".dll",
        ".so",
        ".dylib",
        ".sh",
        ".bat",
        ".cmd",
        ".com",
        ".msi",
        ".scr",
        ".ps1",
        "elf",
        "pe",
        "macho",
        "script",
    ):
        assert entry in DEFAULT_FORBIDDEN_TYPES
    # OLE would refuse legacy Office documents too: opt-in only.
    assert "ole" not in DEFAULT_FORBIDDEN_TYPES


def test_validate_normalises_and_dedupes() -> None:
    assert validate_forbidden_types([" .EXE", ".exe", "ELF", "elf", ".Tar.GZ"]) == (
        ".exe",
        "elf",
        ".tar.gz",
    )
    assert validate_forbidden_types([]) == ()
    assert validate_forbidden_types(iter(["pe"])) == ("pe",)


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ("elf", "must be a list"),
        (b".exe", "must be a list"),
        (42, "must be a list"),
        ([1], "must be strings"),
        ([None], "must be strings"),
        (["."], "not a valid extension"),
        ([".."], "not a valid extension"),
        ([".ex e"], "not a valid extension"),
        ([".a/b"], "not a valid extension"),
        (["." + "a" * 40], "too long"),
        (["exe"], "did you mean '.exe'?"),
        (["foo bar"], "neither an extension"),
        ([""], "neither an extension"),
        ([f".x{i}" for i in range(MAX_FORBIDDEN_TYPES + 1)], "at most"),
    ],
)
def test_validate_rejects(entries: object, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_forbidden_types(entries)  # type: ignore[arg-type]
    assert fragment in info.value.detail


def test_max_entries_accepted() -> None:
    entries = [f".x{i}" for i in range(MAX_FORBIDDEN_TYPES)]
    assert len(validate_forbidden_types(entries + entries)) == MAX_FORBIDDEN_TYPES


@settings(deadline=None)
@given(st.binary(max_size=SNIFF_BYTES), st.text(max_size=20))
def test_never_crashes_and_reasons_are_sentences(head: bytes, name: str) -> None:
    reason = forbidden_reason(name, head, (*DEFAULT_FORBIDDEN_TYPES, "ole", "wasm", "dex"))
    assert reason is None or reason.endswith("not allowed in this pool")


@settings(deadline=None)
@given(st.binary(min_size=SNIFF_BYTES, max_size=64))
def test_only_the_leading_bytes_matter(data: bytes) -> None:
    assert forbidden_reason("x", data, ALL_KINDS) == forbidden_reason(
        "x", data[:SNIFF_BYTES], ALL_KINDS
    )
