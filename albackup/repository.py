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
import os
import re
import shutil
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .archive import MANIFEST, NAME_RE, Backup, id_time
from .errors import StorageError
from .storage import Storage, open_storage
from .storage.base import ObjectInfo, StorageOptions

log = logging.getLogger(__name__)
LATEST = "latest"
VERIFIED = "verified.json"


#: a backup dated more than this after ``now`` is "future-dated": flagged, never counted as fresh
FUTURE_TOLERANCE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Owner:
    """Whose backups a repository holds: the name and host in backup ids (sanitised) and in manifests."""

    id_name: str
    id_host: str
    name: str

    def owns_id(self, bid: str) -> bool:
        m = NAME_RE.match(bid)
        return m is not None and m.group("name") == self.id_name and m.group("host") == self.id_host


@dataclass(frozen=True)
class Entry:
    id: str
    time: dt.datetime
    complete: bool
    verified: bool
    size: int
    #: why a set with a manifest does not count as complete ("manifest is empty", "chunk ... missing")
    problem: str | None = None

    @property
    def damaged(self) -> bool:
        return self.problem is not None

    def future(self, now: dt.datetime) -> bool:
        return self.time > now + FUTURE_TOLERANCE


def backup_time(bid: str) -> dt.datetime | None:
    return id_time(bid)


#: manifest verdicts already made in this process, by (location, size, modification time)
_CHECKED: dict[tuple[str, int, str], tuple[str, str | None]] = {}


class Repository:
    def __init__(self, storage: Storage, prefix: str = "", owner: Owner | None = None) -> None:
        self.storage = storage
        self.prefix = prefix.strip("/")
        self.owner = owner

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    @property
    def where(self) -> str:
        return self.storage.where(self.prefix) if self.prefix else self.storage.where("")

    # ---------------------------------------------------------------- listing
    def entries(self) -> list[Entry]:
        """This database's backup sets here (complete or not), newest first, from one listing.

        With an owner, folders named for another database or host are not listed, and a set counts
        as complete only if its manifest parses, names this database and host, and every chunk it
        lists is stored with the size it gives (one manifest read per set, remembered)."""
        base = self.key() + "/" if self.prefix else ""
        objs: dict[str, dict[str, ObjectInfo]] = {}
        for obj in self.storage.list(base):
            bid, _, rest = obj.key[len(base):].partition("/")
            if rest and id_time(bid) is not None and (self.owner is None or self.owner.owns_id(bid)):
                objs.setdefault(bid, {})[rest] = obj
        out = []
        for bid, files in objs.items():
            verdict, problem = self._verdict(bid, files) if MANIFEST in files else ("incomplete", None)
            if verdict == "foreign":
                continue
            out.append(Entry(bid, id_time(bid), verdict == "complete", VERIFIED in files,  # type: ignore[arg-type]
                             sum(o.size for o in files.values()), problem))
        return sorted(out, key=lambda x: (x.time, x.id), reverse=True)

    def entry(self, bid: str) -> Entry | None:
        """One set, judged as :meth:`entries` does (a listing of its folder and its manifest)."""
        if id_time(bid) is None or (self.owner is not None and not self.owner.owns_id(bid)):
            return None
        base = self.key(bid) + "/"
        files = {o.key[len(base):]: o for o in self.storage.list(base)}
        if not files:
            return None
        verdict, problem = self._verdict(bid, files) if MANIFEST in files else ("incomplete", None)
        if verdict == "foreign":
            return None
        return Entry(bid, id_time(bid), verdict == "complete", VERIFIED in files,  # type: ignore[arg-type]
                     sum(o.size for o in files.values()), problem)

    def _verdict(self, bid: str, files: dict[str, ObjectInfo]) -> tuple[str, str | None]:
        m = files[MANIFEST]
        cache_key = (self.storage.where(self.key(bid, MANIFEST)), m.size,
                     f"{m.last_modified}|{m.etag}|{len(files)}|{sum(o.size for o in files.values())}")
        if cache_key not in _CHECKED:
            _CHECKED[cache_key] = self._judge(bid, files)
        return _CHECKED[cache_key]

    def _judge(self, bid: str, files: dict[str, ObjectInfo]) -> tuple[str, str | None]:
        """("complete" | "damaged" | "foreign", problem) for a set with a manifest object."""
        if files[MANIFEST].size == 0:
            return "damaged", "manifest.json is empty"
        try:
            data = json.loads(self.storage.get_bytes(self.key(bid, MANIFEST)))
        except StorageError as exc:
            if getattr(exc, "not_found", False):
                return "damaged", "manifest.json vanished while listing"
            if getattr(exc, "code", None) == "ChecksumMismatch":
                return "damaged", "manifest.json does not match its recorded SHA-256"
            raise
        except ValueError:
            return "damaged", "manifest.json is not JSON"
        return judge_manifest(data, files, self.owner)

    def latest(self) -> str | None:
        """The id ``latest`` names (None when there is no pointer or it is unreadable)."""
        return self.latest_pointer()[0]

    def latest_pointer(self) -> tuple[str | None, str | None]:
        """(id, problem): the id ``latest`` names, or None and why it names nothing usable."""
        try:
            data = json.loads(self.storage.get_bytes(self.key(LATEST)))
        except StorageError as exc:
            if getattr(exc, "not_found", False):
                return None, None
            raise
        except ValueError:
            return None, "latest is not readable JSON"
        bid = data.get("backup") if isinstance(data, dict) else None
        if not isinstance(bid, str) or id_time(bid) is None:
            return None, "latest does not name a backup"
        if self.owner is not None and not self.owner.owns_id(bid):
            return None, f"latest names {bid}, a backup of another database or host"
        return bid, None

    def verified_latest(self) -> tuple[Entry | None, str | None]:
        """The complete set ``latest`` names, or None and what is wrong with the pointer."""
        bid, problem = self.latest_pointer()
        if bid is None:
            return None, problem
        e = self.entry(bid)
        if e is None:
            return None, f"latest names {bid}, which is not stored here"
        if not e.complete:
            return None, f"latest names {bid}, which is not complete ({e.problem or 'no manifest'})"
        return e, None

    def set_latest(self, bid: str) -> None:
        self.storage.put_bytes(self.key(LATEST), json.dumps({"backup": bid}).encode())

    def mark_verified(self, bid: str, when: dt.datetime) -> None:
        self.storage.put_bytes(self.key(bid, VERIFIED),
                               json.dumps({"verified_at": when.strftime("%Y-%m-%dT%H:%M:%SZ")}).encode())

    def delete(self, bid: str) -> int:
        """Remove a set: its manifest first, so that a removal cut short leaves an incomplete set
        (never counted), not one whose manifest lists chunks that are gone."""
        self.storage.delete(self.key(bid, MANIFEST))
        return self.storage.delete_prefix(self.key(bid) + "/") + 1

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
    uploads the manifest and returns. Any failure (or an interruption) removes what this uploader
    wrote, object by object, and raises: it never deletes a key it did not write.
    """

    def __init__(self, repos: list[Repository], bid: str) -> None:
        self.repos = repos
        self.bid = bid
        self._threads = f"albackup-upload-{id(self):x}"
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(repos)), thread_name_prefix=self._threads)
        self._futures: list[Future[Any]] = []
        self._written: list[tuple[Repository, str]] = []     # every key a put was started for
        self._aborted = False

    def _put(self, repo: Repository, key: str, path: Path, sha256: str | None = None) -> Any:
        self._written.append((repo, key))
        return repo.storage.put_file(key, path, sha256=sha256)

    def add_chunk(self, path: Path, rel: str, sha256: str) -> None:
        for repo in self.repos:
            key = repo.key(self.bid, rel)
            self._written.append((repo, key))
            self._futures.append(self._pool.submit(self._upload, repo, key, path, sha256))

    def _upload(self, repo: Repository, key: str, path: Path, sha256: str) -> Any:
        if self._aborted:       # queued before an abort that could not see it (see abort)
            return None
        return repo.storage.put_file(key, path, sha256=sha256)

    def wait_chunks(self) -> None:
        """Every chunk file is up (raises the first upload's error)."""
        for f in self._futures:
            f.result()

    def finish(self, published: Path) -> None:
        """The manifest goes up last, to every destination: from now on the backup is complete."""
        try:
            self.wait_chunks()
            for repo in self.repos:
                self._put(repo, repo.key(self.bid, MANIFEST), published / MANIFEST)
        except BaseException:
            self.abort()
            raise
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Remove what this upload wrote: the manifest first (the set stops counting at once),
        then each chunk, after the uploads still running have ended."""
        if self._aborted:
            return
        self._aborted = True
        for f in self._futures:
            f.cancel()
        self._pool.shutdown(wait=True)
        for t in threading.enumerate():     # a signal inside submit() can leave a worker the pool does not know
            if t.name.startswith(self._threads + "_"):
                t.join()
        written = sorted(set(self._written), key=lambda rk: (not rk[1].endswith("/" + MANIFEST), rk[1]))
        for repo, key in written:
            try:
                repo.storage.delete(key)
            except StorageError as exc:
                log.warning("could not remove %s of the partial upload %s from %s: %s", key, self.bid,
                            repo.where, exc)


def judge_manifest(data: Any, files: dict[str, ObjectInfo], owner: Owner | None) -> tuple[str, str | None]:
    """Does a parsed manifest describe a complete set of ``owner``'s among the stored ``files``?
    An encrypted manifest seals its names and chunk list: only its format is checked then."""
    if not isinstance(data, dict) or data.get("format") != "albackup":
        return "damaged", "manifest.json is not an albackup manifest"
    if "sealed" in data:
        return "complete", None
    if owner is not None and (data.get("name") != owner.name or data.get("host") != owner.id_host):
        return "foreign", None
    tables = data.get("tables")
    if not isinstance(tables, dict):
        return "damaged", "manifest.json lists no tables"
    for t in tables.values():
        for c in (t.get("chunks") or []) if isinstance(t, dict) else [None]:
            if not isinstance(c, dict) or not isinstance(c.get("file"), str):
                return "damaged", "manifest.json has a malformed chunk entry"
            stored = files.get(c["file"])
            if stored is None:
                return "damaged", f"{c['file']} is missing"
            if isinstance(c.get("bytes"), int) and stored.size != c["bytes"]:
                return "damaged", f"{c['file']} holds {stored.size} bytes, the manifest says {c['bytes']}"
    return "complete", None


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
    return Path(tempfile.mkdtemp(prefix=f"albackup-{os.getpid()}-", dir=base))


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


_STAGING = re.compile(r"albackup-(\d+)-[A-Za-z0-9_]{8}")


def remove_stale_workdirs(base: Path | None = None, *, own: bool = False) -> list[Path]:
    """Remove the staging folders (``albackup-<pid>-…``) that a process killed outright (SIGKILL,
    power loss) left in ``base``: only this user's, and only when that process is gone. With
    ``own``, this process's own ones instead (after a signal cut its clean-up short)."""
    from .locks import pid_alive

    base = Path(base) if base is not None else Path(tempfile.gettempdir())
    removed = []
    try:
        found = list(os.scandir(base))
    except OSError:
        return []
    for e in found:
        m = _STAGING.fullmatch(e.name)
        try:
            mine = e.is_dir(follow_symlinks=False) and e.stat(follow_symlinks=False).st_uid == os.geteuid()
        except OSError:
            continue
        pid = int(m.group(1)) if m else -1
        if m and mine and ((pid == os.getpid()) if own else (pid != os.getpid() and not pid_alive(pid))):
            shutil.rmtree(e.path, ignore_errors=True)
            log.info("removed %s, left by an albackup process that was killed", e.path)
            removed.append(Path(e.path))
    return removed
