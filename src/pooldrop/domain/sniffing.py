"""Forbidden file types, judged by the name's extension and by the content's leading bytes.

A pool's ``forbidden_types`` mixes two kinds of entry:

- extensions, with a leading dot (``".exe"``, ``".tar.gz"``), matched case-insensitively against
  the end of the file name;
- content kinds (``"elf"``, ``"pe"``, ``"macho"``, ``"script"``, ...), matched against the first
  :data:`SNIFF_BYTES` bytes, so renaming ``tool.exe`` to ``tool.txt`` does not get it through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable

from pooldrop.errors import ValidationFailed

SNIFF_BYTES = 8
"""How many leading bytes :func:`forbidden_reason` needs; fewer (a short file) is fine."""

MAX_FORBIDDEN_TYPES = 256
_MAX_ENTRY_LENGTH = 32
_EXTENSION = re.compile(r"(?:\.[a-z0-9][a-z0-9_+~-]*)+", re.ASCII)

# Mach-O thin magics as they appear on disk: 32/64-bit, big- and little-endian.
_MACHO_THIN = (
    b"\xfe\xed\xfa\xce",
    b"\xce\xfa\xed\xfe",
    b"\xfe\xed\xfa\xcf",
    b"\xcf\xfa\xed\xfe",
)
# Universal ("fat") headers are big-endian on disk; the swapped forms are accepted defensively.
_MACHO_FAT_OTHER = (b"\xca\xfe\xba\xbf", b"\xbe\xba\xfe\xca", b"\xbf\xba\xfe\xca")
_CAFEBABE = b"\xca\xfe\xba\xbe"
# Java class files share CAFEBABE with fat Mach-O. The next big-endian word is nfat_arch in a fat
# binary (a handful of architectures) and minor<<16|major in a class file (major >= 45 since
# Java 1.0), so a small value means Mach-O. This is the same split that file(1) makes.
_FIRST_JAVA_MAJOR = 45


def _is_elf(head: bytes) -> bool:
    return head.startswith(b"\x7fELF")


def _is_pe(head: bytes) -> bool:
    # "MZ" opens every DOS/Windows executable, DLL and driver; "ZM" is an old DOS variant.
    return head[:2] in (b"MZ", b"ZM")


def _cafebabe_word(head: bytes) -> int | None:
    if not head.startswith(_CAFEBABE) or len(head) < 8:
        return None
    return int.from_bytes(head[4:8], "big")


def _is_macho(head: bytes) -> bool:
    if head[:4] in _MACHO_THIN or head[:4] in _MACHO_FAT_OTHER:
        return True
    if head.startswith(_CAFEBABE):
        word = _cafebabe_word(head)
        # Too short to tell: err on the side of refusing an executable.
        return word is None or word < _FIRST_JAVA_MAJOR
    return False


def _is_java_class(head: bytes) -> bool:
    word = _cafebabe_word(head)
    return word is not None and word >= _FIRST_JAVA_MAJOR


def _is_script(head: bytes) -> bool:
    return head.startswith(b"#!")


def _is_ole(head: bytes) -> bool:
    return head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


def _is_wasm(head: bytes) -> bool:
    return head.startswith(b"\x00asm")


def _is_dex(head: bytes) -> bool:
    return head.startswith(b"dex\n")


_KINDS: dict[str, tuple[Callable[[bytes], bool], str]] = {
    "elf": (_is_elf, "an ELF executable"),
    "pe": (_is_pe, "a Windows/DOS executable (MZ)"),
    "macho": (_is_macho, "a Mach-O executable"),
    "script": (_is_script, "a script with a #! interpreter line"),
    "java-class": (_is_java_class, "a Java class file"),
    # Not in the defaults: the same container holds legacy .doc/.xls files.
    "ole": (_is_ole, "an OLE compound file (MSI installer or legacy Office document)"),
    "wasm": (_is_wasm, "a WebAssembly module"),
    "dex": (_is_dex, "an Android DEX executable"),
}
CONTENT_KINDS: frozenset[str] = frozenset(_KINDS)

DEFAULT_FORBIDDEN_TYPES: tuple[str, ...] = (
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
    ".vbs",
    ".wsf",
    ".hta",
    ".pif",
    ".cpl",
    ".jar",
    "elf",
    "pe",
    "macho",
    "script",
)


def _normalise(entry: str) -> str:
    return entry.strip().lower()


def validate_forbidden_types(entries: Iterable[str]) -> tuple[str, ...]:
    """Normalise a pool's ``forbidden_types``: trimmed, lowercase, duplicates dropped, order kept.

    Raises :class:`ValidationFailed` for a bare string (a list is expected), non-strings,
    malformed extensions, unknown content kinds and lists over :data:`MAX_FORBIDDEN_TYPES`.
    """
    if isinstance(entries, str | bytes) or not isinstance(entries, Iterable):
        raise ValidationFailed("forbidden_types must be a list of extensions and content kinds")
    seen: dict[str, None] = {}
    for raw in entries:
        if not isinstance(raw, str):
            raise ValidationFailed(f"forbidden_types entries must be strings, got {raw!r}")
        entry = _normalise(raw)
        if len(entry) > _MAX_ENTRY_LENGTH:
            raise ValidationFailed(f"forbidden_types entry {raw!r} is too long")
        if entry.startswith("."):
            if not _EXTENSION.fullmatch(entry):
                raise ValidationFailed(f"forbidden_types entry {raw!r} is not a valid extension")
        elif entry not in _KINDS:
            hint = f"; did you mean '.{entry}'?" if _EXTENSION.fullmatch("." + entry) else ""
            kinds = ", ".join(sorted(_KINDS))
            raise ValidationFailed(
                f"forbidden_types entry {raw!r} is neither an extension (with a leading dot) "
                f"nor a known content kind ({kinds}){hint}"
            )
        seen[entry] = None
        if len(seen) > MAX_FORBIDDEN_TYPES:
            raise ValidationFailed(
                f"forbidden_types holds at most {MAX_FORBIDDEN_TYPES} distinct entries"
            )
    return tuple(seen)


def forbidden_reason(name: str, head: bytes, forbidden: Collection[str]) -> str | None:
    """Why this file may not enter the pool, or ``None`` when it may.

    ``head`` is the file's first :data:`SNIFF_BYTES` bytes (or all of it, if shorter).
    ``forbidden`` is a pool's list; entries are compared case-insensitively.
    """
    # Windows drops trailing dots and spaces, so "tool.exe." still runs as tool.exe.
    lowered = name.rstrip(". ").lower()
    entries = [_normalise(entry) for entry in forbidden]
    for entry in entries:
        if entry.startswith(".") and lowered.endswith(entry):
            return f"extension {entry} is not allowed in this pool"
    for entry in entries:
        kind = _KINDS.get(entry)
        if kind is not None and kind[0](head):
            return f"content looks like {kind[1]}, which is not allowed in this pool"
    return None
