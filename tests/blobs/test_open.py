"""Choosing a backend by URL: the scheme table and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pooldrop.blobs import BACKENDS, open_blob_store
from pooldrop.blobs.local import LocalBlobStore
from pooldrop.blobs.memory import MemoryBlobStore


@pytest.mark.parametrize(
    "url", ["ftp://host/path", "gs://bucket", "/just/a/path", "relative", "minio://x"]
)
def test_unknown_scheme_names_the_known_ones(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_blob_store(url)
    message = str(info.value)
    assert "file://, memory://, s3://" in message
    assert url.split("?")[0] in message


def test_unknown_scheme_error_hides_the_password() -> None:
    with pytest.raises(ValueError) as info:
        open_blob_store("ftp://user:hunter2@host/x")
    assert "hunter2" not in str(info.value)


def test_every_table_entry_names_a_backend_class() -> None:
    assert set(BACKENDS) == {"file", "memory", "s3"}
    for target in BACKENDS.values():
        module, _, name = target.partition(":")
        assert module.startswith("pooldrop.blobs.") and name.endswith("BlobStore")


def test_scheme_is_case_insensitive(tmp_path: Path) -> None:
    assert isinstance(open_blob_store("MEMORY://"), MemoryBlobStore)
    assert isinstance(open_blob_store(f"File://{tmp_path}"), LocalBlobStore)


def test_unknown_option_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"fsnyc.*known options: fsync"):
        open_blob_store(f"file://{tmp_path}?fsnyc=0")
    with pytest.raises(ValueError, match="no options"):
        open_blob_store("memory://?x=1")


def test_memory_stores_share_nothing() -> None:
    first, second = open_blob_store("memory://same"), open_blob_store("memory://same")
    assert first is not second
    assert first.url == "memory://same"


def test_backends_are_imported_only_when_chosen(tmp_path: Path) -> None:
    code = (
        "import sys, pooldrop.blobs as b; b.open_blob_store('memory://'); "
        f"b.open_blob_store('file://{tmp_path}/unused'); "
        "assert 'obstore' not in sys.modules and 'pooldrop.blobs.s3' not in sys.modules, 'eager'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
