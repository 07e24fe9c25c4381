"""Where backups are kept: a local folder or an S3 bucket, chosen by URL, knowing nothing of archives.

>>> st = open_storage("s3://my-bucket/backups", StorageOptions(region="eu-west-1"))
>>> st.put_file("shop@db1--20261122T125807Z/data/00001-00001.chunk", path, sha256=digest)

``open_storage`` takes a local path, ``file:///path`` or ``s3://bucket/prefix``; the returned
:class:`Storage` stores objects under '/'-separated keys relative to that root. See
:mod:`albackup.storage.base` for the interface and its guarantees.
"""
from __future__ import annotations

from pathlib import Path

from .base import ObjectInfo, Storage, StorageOptions
from .local import LocalStorage
from .urls import parse_url

__all__ = ["LocalStorage", "ObjectInfo", "S3Storage", "Storage", "StorageOptions", "open_storage"]


def open_storage(url: str | Path, options: StorageOptions | None = None) -> Storage:
    """The storage a URL names: a local path or ``file:///path`` → :class:`LocalStorage`,
    ``s3://bucket/prefix`` → :class:`S3Storage` (``options`` say how to reach it). Nothing is
    contacted or created yet. ConfigError for a URL or options that cannot work."""
    loc = parse_url(url)
    if loc.scheme == "s3":
        from .s3 import S3Storage

        return S3Storage(loc.bucket, loc.prefix, options)
    assert loc.path is not None
    return LocalStorage(loc.path)


def __getattr__(name: str) -> object:
    # S3Storage imports boto3 only when asked for
    if name == "S3Storage":
        from .s3 import S3Storage

        return S3Storage
    raise AttributeError(name)
