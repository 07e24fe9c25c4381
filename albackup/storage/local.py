"""Storage in a local folder: keys are relative paths below it.

Writes go through a temporary file in the target folder (created 0600, fsynced, renamed over the
target, folder fsynced), so a reader sees either the old object or the whole new one. Folders that
this creates are 0700; folders that become empty when their last object is deleted are removed,
so that a folder exists exactly when an object lies below it (as with S3 prefixes). The SHA-256 of
a stored file is kept in its extended attribute ``user.albackup.sha256`` where the file system
allows it.
"""
from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import io
import os
from pathlib import Path
from typing import BinaryIO, Iterable

from .base import (COPY_BUFFER, TEMP_RE, ObjectInfo, Storage, VerifyingReader, check_key, check_prefix,
                   check_sha256_arg, dir_prefix, fsync_dir, make_dirs, storage_error, temp_name)

XATTR = "user.albackup.sha256"


class LocalStorage(Storage):
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    # ------------------------------------------------------------ helpers
    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _key(self, path: Path) -> str:
        return "/".join(path.relative_to(self.root).parts)

    def _info(self, key: str, path: Path, st: os.stat_result | None = None) -> ObjectInfo:
        st = st or path.stat()
        return ObjectInfo(key=key, size=st.st_size,
                          last_modified=dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc),
                          sha256=_get_sha(path))

    def _write(self, key: str, chunks: Iterable[bytes], expect_size: int | None,
               expect_sha: str | None, what: str) -> ObjectInfo:
        dest = self._path(key)
        try:
            make_dirs(dest.parent)
        except OSError as e:
            raise storage_error(f"cannot create folder {dest.parent} for {self.where(key)}: "
                                f"{e.strerror or e}") from e
        tmp = dest.parent / temp_name()
        h = hashlib.sha256()
        n = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                for b in chunks:
                    out.write(b)
                    h.update(b)
                    n += len(b)
                out.flush()
                if expect_size is not None and n != expect_size:
                    raise storage_error(f"cannot store {self.where(key)}: {what} changed while it was "
                                        f"copied ({n} bytes read, {expect_size} expected); nothing stored")
                sha = h.hexdigest()
                if expect_sha is not None and sha != expect_sha:
                    raise storage_error(f"cannot store {self.where(key)}: {what} has SHA-256 {sha}, not the "
                                        f"expected {expect_sha}; nothing stored", code="ChecksumMismatch")
                _set_sha(tmp, sha)
                os.fsync(out.fileno())
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
            return self._info(key, dest)
        except OSError as e:
            _unlink(tmp)
            raise storage_error(f"cannot write {self.where(key)}: {e.strerror or e}") from e
        except BaseException:
            _unlink(tmp)
            raise

    # ------------------------------------------------------------ writing
    def put_file(self, key: str, src: Path, *, sha256: str | None = None) -> ObjectInfo:
        self._path(key)
        expect = check_sha256_arg(sha256)
        try:
            f = open(src, "rb")
        except OSError as e:
            raise storage_error(f"cannot store {self.where(key)}: cannot read local file {src}: "
                                f"{e.strerror or e}") from e
        with f:
            st = os.fstat(f.fileno())
            if not _is_regular(st):
                raise storage_error(f"cannot store {self.where(key)}: {src} is not a regular file")

            def chunks() -> Iterable[bytes]:
                try:
                    while b := f.read(COPY_BUFFER):
                        yield b
                except OSError as e:
                    raise storage_error(f"cannot store {self.where(key)}: cannot read local file {src}: "
                                        f"{e.strerror or e}") from e

            return self._write(key, chunks(), st.st_size, expect, f"local file {src}")

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        data = bytes(data)
        return self._write(key, [data], len(data), None, "data")

    # ------------------------------------------------------------ reading
    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            f = open(path, "rb")
            st = os.fstat(f.fileno())
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise storage_error(f"{self.where(key)} does not exist", code="NoSuchKey", not_found=True) from e
        except OSError as e:
            raise storage_error(f"cannot read {self.where(key)}: {e.strerror or e}") from e
        if not _is_regular(st):
            f.close()
            raise storage_error(f"{self.where(key)} does not exist (not a file)", code="NoSuchKey",
                                not_found=True)
        where = self.where(key)

        def read(n: int) -> bytes:
            try:
                return f.read(n)
            except OSError as e:
                raise storage_error(f"cannot read {where}: {e.strerror or e}") from e

        raw = VerifyingReader(read, st.st_size, _get_sha(path), where, close=f.close)
        return io.BufferedReader(raw, COPY_BUFFER)  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            return _is_regular(path.stat())
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as e:
            raise storage_error(f"cannot check {self.where(key)}: {e.strerror or e}") from e

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError) as e:
            raise storage_error(f"{self.where(key)} does not exist", code="NoSuchKey", not_found=True) from e
        except OSError as e:
            raise storage_error(f"cannot check {self.where(key)}: {e.strerror or e}") from e
        if not _is_regular(st):
            raise storage_error(f"{self.where(key)} does not exist (not a file)", code="NoSuchKey",
                                not_found=True)
        return self._info(key, path, st)

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        check_prefix(prefix)
        base, _, partial = prefix.rpartition("/")
        base_dir = self.root.joinpath(*base.split("/")) if base else self.root
        out: builtins.list[ObjectInfo] = []
        try:
            top = sorted(os.scandir(base_dir), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            raise storage_error(f"cannot list {self.where(prefix)}: {e.strerror or e}") from e

        def add_file(path: Path, st: os.stat_result) -> None:
            key = self._key(path)
            if key.startswith(prefix):
                out.append(ObjectInfo(key=key, size=st.st_size,
                                      last_modified=dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc)))

        def onerror(e: OSError) -> None:
            if not isinstance(e, FileNotFoundError):  # vanished while walking: fine
                raise storage_error(f"cannot list {self.where(prefix)}: {e.strerror or e}") from e

        for entry in top:
            if not entry.name.startswith(partial) or TEMP_RE.match(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    for d, dirs, files in os.walk(entry.path, onerror=onerror):
                        dirs.sort()
                        for name in files:
                            if TEMP_RE.match(name):
                                continue
                            p = Path(d, name)
                            st = p.lstat()
                            if _is_regular(st):
                                add_file(p, st)
                else:
                    st = entry.stat(follow_symlinks=False)
                    if _is_regular(st):
                        add_file(Path(entry.path), st)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise storage_error(f"cannot list {self.where(prefix)}: {e.strerror or e}") from e
        out.sort(key=lambda o: o.key)
        return out

    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        dp = dir_prefix(prefix)
        base = self.root.joinpath(*dp.rstrip("/").split("/")) if dp else self.root
        try:
            entries = builtins.list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            raise storage_error(f"cannot list {self.where(dp)}: {e.strerror or e}") from e
        out = []
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False) and _holds_file(Path(e.path)):
                    out.append(dp + e.name)
            except OSError as err:
                raise storage_error(f"cannot list {self.where(dp)}: {err.strerror or err}") from err
        return sorted(out)

    # ------------------------------------------------------------ deleting
    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            if _is_regular(path.lstat()):
                path.unlink()
            else:
                return
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            raise storage_error(f"cannot delete {self.where(key)}: {e.strerror or e}") from e
        self._prune(path.parent)
        fsync_dir(path.parent if path.parent.exists() else self.root)

    def _prune(self, d: Path) -> None:
        """Remove folders left empty, up to (not including) the root."""
        while d != self.root and self.root in d.parents:
            try:
                d.rmdir()
            except OSError:  # not empty (or gone, or not ours to remove): stop
                return
            d = d.parent


def _is_regular(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode)


def _holds_file(d: Path) -> bool:
    for _, _, files in os.walk(d):
        if any(not TEMP_RE.match(f) for f in files):
            return True
    return False


def _get_sha(path: Path) -> str | None:
    try:
        v = os.getxattr(path, XATTR).decode("ascii")
    except (OSError, AttributeError, UnicodeDecodeError):
        return None
    return v if len(v) == 64 else None


def _set_sha(path: Path, sha: str) -> None:
    try:
        os.setxattr(path, XATTR, sha.encode("ascii"))
    except (OSError, AttributeError):  # no xattrs on this file system (or platform): not recorded
        pass


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass
