"""Where the scheduled run sends backups: ``destinations`` in the config.

Each destination is a local path or ``s3://bucket/prefix`` with its S3 options. Credentials,
when given at all (boto3's standard chain is the default), come from secret sources, never
from plain text in the config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError
from .secrets import from_mapping
from .storage.base import StorageOptions

MiB = 1024 * 1024
DEST_KEYS = frozenset({"url", "region", "endpoint_url", "access_key_id", "secret_access_key", "session_token",
                       "profile", "server_side_encryption", "kms_key_id", "storage_class", "part_size_mb",
                       "max_attempts"})
SECRET_KEYS = ("access_key_id", "secret_access_key", "session_token")


@dataclass(frozen=True)
class Destination:
    url: str
    options: StorageOptions = field(default_factory=StorageOptions, compare=False)

    def __repr__(self) -> str:
        from .secrets import mask_secrets

        return f"Destination({mask_secrets(self.url)!r})"


def destination_from_mapping(d: Any, keypath: str) -> Destination:
    if isinstance(d, str):
        d = {"url": d}
    if not isinstance(d, Mapping):
        raise ConfigError(f"{keypath}: expected a path, an s3:// URL or a mapping with url")
    unknown = sorted(set(d) - DEST_KEYS)
    if unknown:
        raise ConfigError(f"{keypath}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(DEST_KEYS))}")
    url = d.get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{keypath}.url: expected a local path or s3://bucket/prefix")
    kw: dict[str, Any] = {}
    for k in ("region", "endpoint_url", "profile", "server_side_encryption", "kms_key_id", "storage_class"):
        if d.get(k) is not None:
            if not isinstance(d[k], str):
                raise ConfigError(f"{keypath}.{k}: expected a string")
            kw[k] = d[k]
    for k in SECRET_KEYS:
        v = d.get(k)
        if v is None:
            continue
        if isinstance(v, str):
            raise ConfigError(f"{keypath}.{k}: credentials are never written in the config; give "
                              "{env: NAME}, {file: PATH}, {fd: N} or {command: CMD} (or leave them out for boto3's chain)")
        kw[k] = from_mapping(v, f"{keypath}.{k}").read().decode("utf-8")
    if d.get("part_size_mb") is not None:
        v = d["part_size_mb"]
        if not isinstance(v, int) or isinstance(v, bool) or v < 5:
            raise ConfigError(f"{keypath}.part_size_mb: expected an integer of at least 5 (S3's minimum part)")
        kw["part_size"] = v * MiB
    if d.get("max_attempts") is not None:
        v = d["max_attempts"]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{keypath}.max_attempts: expected a positive integer")
        kw["max_attempts"] = v
    opts = StorageOptions(**kw)
    opts.validate()
    from .storage import open_storage

    open_storage(url, opts)   # checks the URL's form; contacts nothing
    return Destination(url, opts)


def destinations_from(value: Any, keypath: str) -> tuple[Destination, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{keypath}: expected a list of destinations")
    return tuple(destination_from_mapping(v, f"{keypath}[{i}]") for i, v in enumerate(value))
