"""Blob storage behind one small interface, the backend chosen by URL scheme.

    open_blob_store("file:///var/lib/pooldrop/blobs")          # local disk (blobs/local.py)
    open_blob_store("memory://")                               # in-process, tests (blobs/memory.py)
    open_blob_store("s3://bucket/prefix?endpoint=...&region=...")  # S3-compatible (blobs/s3.py)

A backend module is imported only when its scheme is used, so the S3 client library is never
loaded by a deployment on local disk. Adding a backend is one module and one line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib

from pooldrop.blobs._url import redact
from pooldrop.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobError,
    BlobNotFound,
    BlobStore,
    BlobWriter,
    FileSpan,
    PieceBlobWriter,
    validate_key,
    validate_prefix,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_CHUNK_SIZE",
    "BlobError",
    "BlobNotFound",
    "BlobStore",
    "BlobWriter",
    "FileSpan",
    "PieceBlobWriter",
    "open_blob_store",
    "validate_key",
    "validate_prefix",
]

BACKENDS: dict[str, str] = {
    "file": "pooldrop.blobs.local:LocalBlobStore",
    "memory": "pooldrop.blobs.memory:MemoryBlobStore",
    "s3": "pooldrop.blobs.s3:S3BlobStore",
}
"""URL scheme -> ``"module:Class"``; the class has a ``from_url(url)`` classmethod."""


def open_blob_store(url: str) -> BlobStore:
    """Build the blob store a URL names. Does no I/O: call ``ping`` to check it is reachable.

    Raises ``ValueError`` for an unknown scheme (naming the known ones) or bad options.
    """
    scheme, sep, _ = url.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in BACKENDS:
        known = ", ".join(f"{s}://" for s in sorted(BACKENDS))
        raise ValueError(
            f"unknown blob storage URL {redact(url.split('?', 1)[0])!r}: "
            f"the scheme must be one of {known}"
        )
    module_name, _, class_name = BACKENDS[scheme].partition(":")
    backend: type[BlobStore] = getattr(importlib.import_module(module_name), class_name)
    return backend.from_url(url)
