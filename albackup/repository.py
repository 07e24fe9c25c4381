"""Backup sets kept in a storage location (a folder or an S3 prefix).

Layout under the repository's root::

    <backup id>/data/NNNNN-NNNNN.chunk   uploaded as each is finished
    <backup id>/manifest.json            uploaded last: a backup without it is incomplete
    <backup id>/verified.json            written once the stored copy was checked
    latest                               {"backup": id}: moved only after a verified upload

The scheduled run keeps one repository per database under ``<prefix>/<hostname>/<name>/``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .archive import MANIFEST, NAME_RE, Backup
from .errors import StorageError
from .storage import Storage, open_storage
from .storage.base import StorageOptions

log = logging.getLogger(__name__)
LATEST = "latest"
VERIFIED = "verified.json"


@dataclass(frozen=True)
class Entry:
    id: str
    time: dt.datetime
    complete: bool
    verified: bool
    size: int


def backup_time(bid: str) -> dt.datetime | None:
    m = NAME_RE.match(bid)
    if not m:
        return None
    return dt.datetime.strptime(m.group("ts"), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)


class Repository:
    def __init__(self, storage: Storage, prefix: str = "") -> None:
        self.storage = storage
        self.prefix = prefix.strip("/")

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    @property
    def where(self) -> str:
        return self.storage.where(self.prefix) if self.prefix else self.storage.where("")

    # ---------------------------------------------------------------- listing
    def entries(self) -> list[Entry]:
        """Every backup set here (complete or not), newest first, from one listing."""
        base = self.key() + "/" if self.prefix else ""
        found: dict[str, dict[str, Any]] = {}
        times: dict[str, dt.datetime | None] = {}
        for obj in self.storage.list(base):
            rel = obj.key[len(base):]
            bid, _, rest = rel.partition("/")
            if bid not in times:
                times[bid] = backup_time(bid)
            if not rest or times[bid] is None:
                continue
            e = found.setdefault(bid, {"complete": False, "verified": False, "size": 0})
            e["size"] += obj.size
            if rest == MANIFEST:
                e["complete"] = True
            elif rest == VERIFIED:
                e["verified"] = True
        out = [Entry(bid, times[bid], e["complete"], e["verified"], e["size"])  # type: ignore[arg-type]
               for bid, e in found.items()]
        return sorted(out, key=lambda x: (x.time, x.id), reverse=True)

    def latest(self) -> str | None:
        try:
            data = json.loads(self.storage.get_bytes(self.key(LATEST)))
        except StorageError as exc:
            if getattr(exc, "not_found", False):
                return None
            raise
        except ValueError:
            return None
        return data.get("backup") if isinstance(data, dict) else None

    def set_latest(self, bid: str) -> None:
        self.storage.put_bytes(self.key(LATEST), json.dumps({"backup": bid}).encode())

    def mark_verified(self, bid: str, when: dt.datetime) -> None:
        self.storage.put_bytes(self.key(bid, VERIFIED),
                               json.dumps({"verified_at": when.strftime("%Y-%m-%dT%H:%M:%SZ")}).encode())

    def delete(self, bid: str) -> int:
        return self.storage.delete_prefix(self.key(bid) + "/")

    # ---------------------------------------------------------------- reading
    def open(self, bid: str, workdir: Path, keyring: Any = None, require_encryption: bool = False) -> Backup:
        """The backup, with its manifest here and each chunk downloaded when first read."""
        local = workdir / bid
        (local / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
        self.storage.download(self.key(bid, MANIFEST), local / MANIFEST)
        lock = threading.Lock()

        def fetch(rel: str) -> Path:
            dest = local / rel
            with lock:
                if not dest.exists():
                    self.storage.download(self.key(bid, rel), dest)
            return dest

        return Backup(local, keyring, require_encryption, fetch=fetch)


class Uploader:
    """Sends a backup's chunk files up as they are finished, then the manifest last.

    ``add_chunk`` is called by the dump as each chunk file closes; ``finish`` waits for them,
    uploads the manifest and returns. Any failure removes what was uploaded and raises.
    """

    def __init__(self, repos: list[Repository], bid: str) -> None:
        self.repos = repos
        self.bid = bid
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(repos)), thread_name_prefix="albackup-upload")
        self._futures: list[Future[Any]] = []

    def add_chunk(self, path: Path, rel: str, sha256: str) -> None:
        for repo in self.repos:
            self._futures.append(self._pool.submit(repo.storage.put_file, repo.key(self.bid, rel), path,
                                                   sha256=sha256))

    def wait_chunks(self) -> None:
        """Every chunk file is up (raises the first upload's error)."""
        for f in self._futures:
            f.result()

    def finish(self, published: Path) -> None:
        """The manifest goes up last, to every destination: from now on the backup is complete."""
        try:
            self.wait_chunks()
            for repo in self.repos:
                repo.storage.put_file(repo.key(self.bid, MANIFEST), published / MANIFEST)
        except BaseException:
            self.abort()
            raise
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        for f in self._futures:
            f.cancel()
        self._pool.shutdown(wait=True)
        for repo in self.repos:
            try:
                repo.delete(self.bid)
            except StorageError as exc:
                log.warning("could not remove the partial upload %s from %s: %s", self.bid, repo.where, exc)


def split_location(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b/<id>`` → (``s3://bucket/a/b``, ``<id>``); the same for local paths."""
    url = url.rstrip("/")
    parent, _, last = url.rpartition("/")
    return parent or ".", last


def is_remote(url: str | Path) -> bool:
    return str(url).startswith("s3://")


def open_remote_backup(url: str, workdir: Path, keyring: Any = None, require_encryption: bool = False,
                       options: StorageOptions | None = None) -> Backup:
    parent, bid = split_location(url)
    return Repository(open_storage(parent, options)).open(bid, workdir, keyring, require_encryption)


def temp_workdir(base: Path | None = None) -> Path:
    if base is not None:
        try:
            Path(base).mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StorageError(f"workdir {base}: cannot create it ({exc.strerror})") from None
    return Path(tempfile.mkdtemp(prefix="albackup-", dir=base))


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
