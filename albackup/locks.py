"""Locks that keep two runs from writing the same backups at once.

* :class:`ConfigLock`: one run per config file on this machine. An ``flock`` on
  ``<log_dir>/run-<hash of the config path>.lock``, which the kernel releases when the holder
  exits, however it ends (so a dead holder never blocks). The file says who holds it.
* :class:`DestinationLock`: one writer per database and destination, whichever host or config it
  runs from. An object ``<host>/<name>/locks/<token>.json`` naming its holder (host, pid, start
  time). Taking it: look for other holders, write ours, look again; any live other holder means
  ours is removed and the run stops with :class:`~albackup.errors.Locked` (exit 17). A lock is
  stale, and removed by the next run, when its holder was on this host and its process is gone,
  or when it is older than :data:`STALE_AFTER`. Each lock has its own key, so removing a stale
  one never removes a live one written meanwhile.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from .errors import Locked, StorageError

log = logging.getLogger(__name__)

#: a destination lock older than this is taken over whoever holds it (no run lasts this long)
STALE_AFTER = dt.timedelta(hours=24)
LOCKS = "locks"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def this_host() -> str:
    return socket.gethostname()


def holder(what: str) -> dict[str, Any]:
    return {"host": this_host(), "pid": os.getpid(), "started": _stamp(_now()), "what": what,
            "token": secrets.token_hex(8)}


def describe(h: dict[str, Any]) -> str:
    return f"host {h.get('host', '?')}, pid {h.get('pid', '?')}, since {h.get('started', '?')}"


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # someone else's process: alive
        return True
    return True


def stale_reason(h: dict[str, Any], now: dt.datetime) -> str | None:
    """Why a lock's holder no longer holds it, or None when it may still be running."""
    try:
        started = dt.datetime.strptime(str(h.get("started")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return "it does not say when it was taken"
    if now - started > STALE_AFTER:
        return f"it is older than {STALE_AFTER.total_seconds() / 3600:.0f} hours"
    if h.get("host") == this_host() and not pid_alive(h.get("pid")):
        return f"process {h.get('pid')} on this host has ended"
    return None


class ConfigLock:
    """One run per config on this machine (see the module docstring)."""

    def __init__(self, lock_dir: Path, config_path: str) -> None:
        digest = hashlib.sha256(os.path.realpath(config_path).encode()).hexdigest()[:16]
        self.path = Path(lock_dir) / f"run-{digest}.lock"
        self.config_path = config_path
        self._fd: int | None = None

    def __enter__(self) -> "ConfigLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot create the run lock ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                h = json.loads(os.read(fd, 4096) or b"{}")
            except ValueError:
                h = {}
            os.close(fd)
            raise Locked(f"another albackup run of {self.config_path} is running ({describe(h)}; lock "
                         f"{self.path}); not starting a second one") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder(f"config {self.config_path}")).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)         # closing releases the flock; the file stays (removing it would race)
            self._fd = None


class DestinationLock:
    """One writer per database and destination (see the module docstring)."""

    def __init__(self, repo: Any, what: str) -> None:
        self.repo = repo
        self.info = holder(what)
        self.key = repo.key(LOCKS, f"{self.info['token']}.json")
        self.held = False

    def __enter__(self) -> "DestinationLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        self._refuse_if_held()
        self.repo.storage.put_bytes(self.key, json.dumps(self.info).encode())
        self.held = True
        try:
            self._refuse_if_held()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                self.repo.storage.delete(self.key)
            except StorageError as exc:
                log.warning("could not remove the lock %s: %s", self.repo.storage.where(self.key), exc)

    def _refuse_if_held(self) -> None:
        now = _now()
        for obj in self.repo.storage.list(self.repo.key(LOCKS) + "/"):
            if obj.key == self.key or not obj.key.endswith(".json"):
                continue
            h = self._read(obj.key)
            if h is None:
                continue
            reason = stale_reason(h, now)
            if reason is None:
                raise Locked(f"{self.repo.storage.where(obj.key)}: another albackup run holds this destination "
                             f"({describe(h)}); stopping")
            log.warning("removing the stale lock %s (%s): %s", self.repo.storage.where(obj.key), describe(h), reason)
            self.repo.storage.delete(obj.key)

    def _read(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.repo.storage.get_bytes(key))
        except StorageError as exc:
            if getattr(exc, "not_found", False):
                return None       # released meanwhile
            raise
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}
