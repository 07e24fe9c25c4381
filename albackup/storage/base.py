"""The storage interface: objects under '/'-separated keys, with no idea of what a backup is.

Every backend (a local folder, an S3 bucket) implements :class:`Storage`. Keys are relative to the
storage root, '/'-separated, never empty, never absolute, with no empty, ``.`` or ``..`` part.
Every failure is a :class:`~albackup.errors.StorageError` (exit code 13) whose message is one line,
names the location and key, and never contains a secret. A StorageError raised because an object
does not exist has ``not_found = True``; ``code`` carries the backend's error code when there is one
(for S3: ``NoSuchKey``, ``NoSuchBucket``, ``AccessDenied``, ``BadDigest``, ...).
"""
from __future__ import annotations

import abc
import builtins
import datetime as dt
import hashlib
import io
import os
import re
import secrets
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO, Callable

from ..fsutil import fsync_dir  # noqa: F401  (used here and by local.py)
from ..errors import ConfigError, StorageError

MiB = 1024 * 1024
GiB = 1024 * MiB
#: read/write buffer for streaming copies
COPY_BUFFER = 1 * MiB
#: S3 limits: parts per upload, smallest part (all but the last), largest part, largest object
S3_MAX_PARTS = 10_000
S3_MIN_PART = 5 * MiB
S3_MAX_PART = 5 * GiB
S3_MAX_OBJECT = 5 * 1024 * GiB
#: names of the temporary files that local writes go through (never listed)
TEMP_PREFIX = ".albk-tmp-"
TEMP_RE = re.compile(r"^\.albk-tmp-[0-9a-f]{16}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SSE = ("AES256", "aws:kms", "aws:kms:dsse")
_ADDRESSING = ("path", "virtual", "auto")
_SECRET_FIELDS = ("access_key_id", "secret_access_key", "session_token")


def storage_error(message: str, *, code: str | None = None, not_found: bool = False) -> StorageError:
    """A StorageError with a one-line message and the backend's error code attached."""
    err = StorageError(" ".join(message.split()))
    err.code = code  # type: ignore[attr-defined]
    err.not_found = not_found  # type: ignore[attr-defined]
    return err


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object. ``sha256`` is the hex SHA-256 of its content when the backend recorded it
    (S3 metadata ``x-amz-meta-sha256``, a local file's ``user.albackup.sha256`` attribute); listings
    do not carry it."""

    key: str
    size: int
    last_modified: dt.datetime | None = None
    sha256: str | None = None
    etag: str | None = None


@dataclass
class StorageOptions:
    """How to reach a storage location. Only S3 uses them; a local folder ignores them.

    Credentials left as None come from boto3's standard chain (environment, shared config and
    credentials files, ``profile``, container or instance roles).
    """

    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    profile: str | None = None
    #: "AES256", "aws:kms" or "aws:kms:dsse"; kms_key_id only with the aws:kms ones
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    storage_class: str | None = None
    #: multipart part size; raised automatically so that no upload needs more than 10,000 parts
    part_size: int = 64 * MiB
    #: files larger than this go up in parts (default: part_size)
    multipart_threshold: int | None = None
    #: botocore "standard" retry mode: total attempts per request, the first one included
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    #: "path", "virtual" or "auto"; default: "path" when endpoint_url is set, else "auto"
    addressing_style: str | None = None

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and v is not None:
                parts.append(f"{f.name}='***'")
            elif f.name == "endpoint_url" and v is not None:
                from ..secrets import mask_secrets

                parts.append(f"{f.name}={mask_secrets(v)!r}")
            else:
                parts.append(f"{f.name}={v!r}")
        return f"StorageOptions({', '.join(parts)})"

    __str__ = __repr__

    @property
    def threshold(self) -> int:
        return self.part_size if self.multipart_threshold is None else self.multipart_threshold

    def validate(self) -> None:
        """ConfigError for options that no request could succeed with."""
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigError("storage options: access_key_id and secret_access_key go together")
        if self.session_token is not None and self.access_key_id is None:
            raise ConfigError("storage options: session_token needs access_key_id and secret_access_key")
        if self.server_side_encryption is not None and self.server_side_encryption not in _SSE:
            raise ConfigError(f"storage options: server_side_encryption must be one of {', '.join(_SSE)}, "
                              f"not {self.server_side_encryption!r}")
        if self.kms_key_id is not None and not (self.server_side_encryption or "").startswith("aws:kms"):
            raise ConfigError("storage options: kms_key_id needs server_side_encryption 'aws:kms'")
        if self.storage_class is not None and not re.fullmatch(r"[A-Z][A-Z0-9_]*", self.storage_class):
            raise ConfigError(f"storage options: storage_class {self.storage_class!r} is not a storage class "
                              "name such as STANDARD, STANDARD_IA or GLACIER_IR")
        if self.addressing_style is not None and self.addressing_style not in _ADDRESSING:
            raise ConfigError(f"storage options: addressing_style must be path, virtual or auto, "
                              f"not {self.addressing_style!r}")
        for name in ("part_size", "multipart_threshold"):
            v = getattr(self, name)
            if v is None and name == "multipart_threshold":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or not S3_MIN_PART <= v <= S3_MAX_PART:
                raise ConfigError(f"storage options: {name} must be an integer from 5 MiB to 5 GiB "
                                  f"({S3_MIN_PART} to {S3_MAX_PART} bytes), not {v!r}")
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ConfigError(f"storage options: max_attempts must be an integer of at least 1, "
                              f"not {self.max_attempts!r}")
        for name in ("connect_timeout", "read_timeout"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"storage options: {name} must be a positive number of seconds, not {v!r}")
        if self.endpoint_url is not None and not re.match(r"^https?://[^/?#]+", self.endpoint_url):
            from ..secrets import mask_secrets

            raise ConfigError(f"storage options: endpoint_url must be an http:// or https:// URL, "
                              f"not {mask_secrets(self.endpoint_url)!r}")


# ---------------------------------------------------------------- keys

def check_key(key: str) -> str:
    """The key itself, or StorageError when it is not a valid relative '/'-separated key."""
    if not isinstance(key, str) or not key:
        raise storage_error(f"invalid storage key {key!r}: keys are non-empty strings")
    if key.startswith("/") or key.endswith("/"):
        raise storage_error(f"invalid storage key {key!r}: keys are relative and do not end with '/'")
    _check_parts(key, key.split("/"))
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: "" (everything), or a key prefix that may end with '/'."""
    if not isinstance(prefix, str):
        raise storage_error(f"invalid storage prefix {prefix!r}")
    if prefix == "":
        return prefix
    if prefix.startswith("/"):
        raise storage_error(f"invalid storage prefix {prefix!r}: prefixes are relative")
    parts = prefix.split("/")
    if parts[-1] == "":
        parts = parts[:-1]
    _check_parts(prefix, parts, last_partial=not prefix.endswith("/"))
    return prefix


def dir_prefix(prefix: str) -> str:
    """A folder prefix for list_dirs: "" or "a/b/" (a trailing '/' is added)."""
    check_prefix(prefix)
    return prefix if prefix == "" or prefix.endswith("/") else prefix + "/"


def _check_parts(whole: str, parts: builtins.list[str], last_partial: bool = False) -> None:
    if _CONTROL_RE.search(whole):
        raise storage_error(f"invalid storage key {whole!r}: control characters are not allowed")
    if len(whole.encode("utf-8", "surrogatepass")) > 1024:
        raise storage_error(f"invalid storage key {whole[:60]!r}...: longer than 1024 bytes")
    try:
        whole.encode("utf-8")
    except UnicodeEncodeError:
        raise storage_error(f"invalid storage key {whole!r}: not valid Unicode text") from None
    for i, p in enumerate(parts):
        partial = last_partial and i == len(parts) - 1
        if p == "" or (p in (".", "..") and not partial):
            raise storage_error(f"invalid storage key {whole!r}: empty, '.' or '..' path part")


# ---------------------------------------------------------------- hashing helpers

def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(COPY_BUFFER):
            h.update(b)
    return h.hexdigest()


def check_sha256_arg(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise storage_error(f"invalid expected SHA-256 {sha256!r}: 64 hex digits expected")
    return sha256.lower()


class VerifyingReader(io.RawIOBase):
    """A raw stream over ``read(n)`` that hashes what passes and, at the end, checks the length and
    (when known) the SHA-256. A short or damaged object raises StorageError instead of ending."""

    def __init__(self, read: Callable[[int], bytes], size: int | None, sha256: str | None, where: str,
                 close: Callable[[], None] | None = None) -> None:
        self._read = read
        self._size = size
        self._sha = sha256
        self._where = where
        self._close = close
        self._hash = hashlib.sha256()
        self._n = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._done or len(b) == 0:
            return 0
        data = self._read(len(b))
        if not data:
            self._finish()
            return 0
        n = len(data)
        if self._size is not None and self._n + n > self._size:
            raise storage_error(f"{self._where}: more data than the {self._size} bytes announced")
        b[:n] = data
        self._hash.update(data)
        self._n += n
        return n

    def _finish(self) -> None:
        self._done = True
        if self._size is not None and self._n != self._size:
            raise storage_error(f"{self._where}: truncated: got {self._n} of {self._size} bytes")
        if self._sha is not None and self._hash.hexdigest() != self._sha:
            raise storage_error(f"{self._where}: SHA-256 mismatch: the content does not match the "
                                f"recorded {self._sha}", code="ChecksumMismatch")

    def close(self) -> None:
        if not self.closed and self._close is not None:
            try:
                self._close()
            except Exception:  # closing a half-read HTTP body or file must not mask the real outcome
                pass
        super().close()


def make_dirs(path: Path, stop: Path | None = None) -> None:
    """mkdir -p with mode 0700 for every folder created (existing folders are left as they are)."""
    missing: builtins.list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p or (stop is not None and p == stop):
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask


def temp_name() -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}"


# ---------------------------------------------------------------- the interface

class Storage(abc.ABC):
    """Objects under '/'-separated keys below one root (a folder, a bucket and prefix)."""

    #: a display form of the location, credentials masked (e.g. "s3://bucket/prefix", "/var/backups")
    url: str = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __enter__(self) -> "Storage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release connections. The storage may not be used afterwards."""

    def where(self, key: str) -> str:
        """The display location of a key (for messages)."""
        return f"{self.url.rstrip('/')}/{key}" if key else self.url

    # --- writing
    @abc.abstractmethod
    def put_file(self, key: str, src: Path, *, sha256: str | None = None) -> ObjectInfo:
        """Store a finished local file under key (replacing what was there), streaming with
        bounded memory, and verify the stored size and SHA-256. With ``sha256`` given, a file whose
        content does not hash to it is refused and nothing is stored. The SHA-256 is recorded with
        the object (see :class:`ObjectInfo`)."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Store a small object from memory."""

    # --- reading
    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A binary stream of the object's content. Reading it to the end checks its length and,
        when recorded, its SHA-256 (StorageError on mismatch)."""

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as f:
            return f.read()

    def download(self, key: str, dest: Path) -> ObjectInfo:
        """Stream the object into ``dest`` atomically (temporary file in dest's folder, fsync,
        rename): dest is either the whole verified object or untouched."""
        dest = Path(dest)
        parent = dest.parent
        try:
            make_dirs(parent)
        except OSError as e:
            raise storage_error(f"cannot create folder {parent} to download {self.where(key)}: "
                                f"{e.strerror or e}") from e
        tmp = parent / temp_name()
        h = hashlib.sha256()
        n = 0
        try:
            with self.open_read(key) as src:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while b := src.read(COPY_BUFFER):
                        out.write(b)
                        h.update(b)
                        n += len(b)
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, dest)
            fsync_dir(parent)
        except OSError as e:
            _unlink(tmp)
            raise storage_error(f"cannot download {self.where(key)} to {dest}: {e.strerror or e}") from e
        except BaseException:
            _unlink(tmp)
            raise
        return ObjectInfo(key=key, size=n, sha256=h.hexdigest())

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size, last modification and recorded SHA-256 of one object; StorageError with
        ``not_found`` when it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a plain string prefix, as in S3: pass
        "a/" for the contents of folder a), sorted by key. Listings carry no sha256."""

    @abc.abstractmethod
    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        """The folders one level below the folder ``prefix`` ("" is the root; a trailing '/' is
        optional) that hold at least one object, as keys without a trailing '/', sorted:
        ``list_dirs("b")`` → ``["b/x", "b/y"]``. (On S3 this costs one listing request for the
        level plus a one-page listing per folder found, because some S3-compatible servers keep
        listing folders whose objects are all gone.)"""

    # --- deleting
    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; removing an object that does not exist is not an error."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix``; returns how many. The empty prefix
        (everything) is refused."""
        check_prefix(prefix)
        if prefix == "":
            raise storage_error(f"refusing to delete everything under {self.url}: give a prefix")
        items = self.list(prefix)
        for o in items:
            self.delete(o.key)
        return len(items)


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass
