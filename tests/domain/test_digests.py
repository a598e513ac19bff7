import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldrop.domain import validation
from pooldrop.domain.digests import parse_upload_checksum
from pooldrop.domain.validation import expected_sha256, parse_content_digest
from pooldrop.errors import ValidationFailed

SHA256 = hashlib.sha256(b"hello").digest()
SHA512 = hashlib.sha512(b"hello").digest()
B256 = base64.b64encode(SHA256).decode()
B512 = base64.b64encode(SHA512).decode()


def test_reexported_from_validation() -> None:
    assert validation.parse_upload_checksum is parse_upload_checksum


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"sha-256=:{B256}:", {"sha-256": SHA256}),
        (f"sha-256=:{B256}:, sha-512=:{B512}:", {"sha-256": SHA256, "sha-512": SHA512}),
        (f"  sha-512=:{B512}:,sha-256=:{B256}:  ", {"sha-256": SHA256, "sha-512": SHA512}),
        (f"sha-256=:{B256}:\t,\tmd5=:AAAA:", {"sha-256": SHA256, "md5": b"\x00\x00\x00"}),
        # Missing "=" padding is tolerated, as RFC 8941 asks.
        (f"sha-256=:{B256.rstrip('=')}:", {"sha-256": SHA256}),
        # Parameters are parsed and ignored.
        (
            f'sha-256=:{B256}:;a=1;b=-2.5;c="x, \\"y\\" \\\\";d=?0;e;f=tok/en:1;g=:AA==:',
            {"sha-256": SHA256},
        ),
        (f"sha-256=:{B256}:; a=1", {"sha-256": SHA256}),
        # A repeated key keeps the last value.
        ("sha-256=:" + "A" * 43 + "=:, " + f"sha-256=:{B256}:", {"sha-256": SHA256}),
        ("unixsum=:AQ==:, *x.y_z-1=::", {"unixsum": b"\x01", "*x.y_z-1": b""}),
        ("", {}),
        ("   ", {}),
    ],
)
def test_parse(header: str, expected: dict[str, bytes]) -> None:
    assert parse_content_digest(header) == expected


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (f"SHA-256=:{B256}:", "algorithm name"),
        (f"sha-256={B256}", "byte sequence"),
        (f"sha-256=:{B256}", "byte sequence"),
        (f'sha-256="{B256}"', "byte sequence"),
        ("sha-256=:abc$:", "bad base64"),
        ("sha-256=:A:", "bad base64"),
        ("sha-256=:AAAA", "byte sequence"),
        ("sha-256", "has no value"),
        ("sha-256, sha-512", "has no value"),
        ("sha-256=:AAAA:", "32 bytes, got 3"),
        (f"sha-512=:{B256}:", "64 bytes, got 32"),
        (f"sha-256=:{B256}:,", "trailing comma"),
        (f"sha-256=:{B256}:, ", "trailing comma"),
        (f"sha-256=:{B256}: x", "expected ','"),
        (f"sha-256=:{B256}:;", "parameter name"),
        (f"sha-256=:{B256}:;A=1", "parameter name"),
        (f'sha-256=:{B256}:;a="x', "unterminated"),
        (f'sha-256=:{B256}:;a="\\x"', "bad escape"),
        (f'sha-256=:{B256}:;a="\u00e9"', "bad character"),
        (f"sha-256=:{B256}:;a=?2", "bad boolean"),
        (f"sha-256=:{B256}:;a=-", "a number"),
        (f"sha-256=:{B256}:;a=@1", "parameter value"),
        (f"sha-256=:{B256}:;a=(1)", "parameter value"),
        (",", "algorithm name"),
        ("1abc=:AA==:", "algorithm name"),
        ("x" * 9000, "too long"),
    ],
)
def test_parse_rejects(header: str, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_content_digest(header)
    assert info.value.detail.startswith("malformed Content-Digest header")
    assert fragment in info.value.detail


def test_parse_rejects_non_text() -> None:
    with pytest.raises(ValidationFailed, match="expected text"):
        parse_content_digest(b"sha-256=:AA==:")  # type: ignore[arg-type]


def test_expected_sha256() -> None:
    assert expected_sha256(None) is None
    assert expected_sha256("") is None
    assert expected_sha256(f"sha-512=:{B512}:") is None
    assert expected_sha256(f"sha-512=:{B512}:, sha-256=:{B256}:") == SHA256
    with pytest.raises(ValidationFailed):
        expected_sha256("sha-256=garbage")


@settings(deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64))
def test_round_trip(d256: bytes, d512: bytes) -> None:
    header = (
        f"sha-512=:{base64.b64encode(d512).decode()}:, sha-256=:{base64.b64encode(d256).decode()}:"
    )
    assert parse_content_digest(header) == {"sha-256": d256, "sha-512": d512}


@settings(deadline=None)
@given(st.text(max_size=60))
def test_garbage_raises_only_validation_failed(header: str) -> None:
    try:
        parsed = parse_content_digest(header)
    except ValidationFailed:
        return
    assert all(isinstance(v, bytes) for v in parsed.values())


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"sha256 {B256}", ("sha256", SHA256)),
        (f"SHA256 {B256}", ("sha256", SHA256)),
        (
            f"sha1 {base64.b64encode(hashlib.sha1(b'').digest()).decode()}",
            ("sha1", hashlib.sha1(b"").digest()),
        ),
        (f"sha512 {B512}", ("sha512", SHA512)),
        (
            f"md5 {base64.b64encode(hashlib.md5(b'').digest()).decode()}",
            ("md5", hashlib.md5(b"").digest()),
        ),
    ],
)
def test_upload_checksum(header: str, expected: tuple[str, bytes]) -> None:
    assert parse_upload_checksum(header) == expected


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ("", "expected '<algorithm> <base64>'"),
        ("sha256", "expected '<algorithm> <base64>'"),
        (f"sha256  {B256}", "expected '<algorithm> <base64>'"),
        (f"crc32 {B256}", "unsupported checksum algorithm 'crc32'"),
        ("sha256 !!!!", "bad base64"),
        (f"sha1 {B256}", "20 bytes, got 32"),
        (None, "expected '<algorithm> <base64>'"),
    ],
)
def test_upload_checksum_rejects(header: object, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_upload_checksum(header)  # type: ignore[arg-type]
    assert fragment in info.value.detail
