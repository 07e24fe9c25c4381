"""Storage URLs: which backend a location names, and how to show a URL without its secrets."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError
from ..secrets import mask_secrets
from .base import check_prefix

SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: S3 bucket names (with the legacy underscore and upper case tolerated: servers decide)
BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{1,61}[A-Za-z0-9]$")


@dataclass(frozen=True)
class Location:
    scheme: str          # "file" or "s3"
    path: Path | None = None
    bucket: str = ""
    prefix: str = ""


def parse_url(url: str | Path) -> Location:
    """Where a storage URL points; ConfigError for anything not understood."""
    if isinstance(url, Path):
        return Location("file", path=url)
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"storage location {url!r} is empty: give a folder, file:///path or s3://bucket/prefix")
    m = SCHEME_RE.match(url)
    if not m:
        if re.match(r"^s3:(?!//)", url, re.IGNORECASE):
            raise ConfigError(f"storage location {mask_secrets(url)!r}: an S3 location is written s3://bucket/prefix")
        return Location("file", path=Path(url))
    scheme = m.group(1).lower()
    shown = mask_secrets(url)
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ConfigError(f"storage location {shown!r} is not a valid URL: {e}") from None
    if parts.query or parts.fragment:
        raise ConfigError(f"storage location {shown!r}: a storage URL takes no ?query or #fragment "
                          "(set region, endpoint and credentials as storage options)")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"storage location {shown!r}: file URLs name a local path (file:///path)")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"storage location {shown!r}: file URLs take an absolute path (file:///path)")
        return Location("file", path=Path(path))
    if scheme == "s3":
        if "@" in parts.netloc:
            raise ConfigError(f"storage location {shown!r}: do not put credentials in the URL; set "
                              "access_key_id/secret_access_key as storage options or use the AWS environment")
        bucket = parts.netloc
        if ":" in bucket:
            raise ConfigError(f"storage location {shown!r}: s3://BUCKET/prefix takes no port; set the "
                              "endpoint_url storage option for another server")
        if not BUCKET_RE.match(bucket) or ".." in bucket:
            raise ConfigError(f"storage location {shown!r}: {bucket!r} is not a valid bucket name")
        prefix = parts.path.strip("/")
        if prefix:
            try:
                check_prefix(prefix + "/")
            except Exception as e:
                raise ConfigError(f"storage location {shown!r}: invalid prefix: {e}") from None
        return Location("s3", bucket=bucket, prefix=prefix)
    raise ConfigError(f"storage location {shown!r}: unsupported scheme {scheme!r} "
                      "(use a local folder, file:///path or s3://bucket/prefix)")


def s3_url(bucket: str, prefix: str) -> str:
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


__all__ = ["Location", "parse_url", "s3_url"]
