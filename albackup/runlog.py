"""A log file per run: ``<log_dir>/albackup-YYYYMMDDTHHMMSSZ.log``, the last 24 hours kept.

:func:`start_run_log` creates the file (mode 0600; the directory, when it has to be created, 0700),
attaches a DEBUG-level handler to the root logger and deletes the ``albackup-*.log`` files of
``log_dir`` that are older than ``keep``, judged by the UTC timestamp in their names (not their
modification times; files whose names do not parse are left alone, and so is the current one).
:func:`stop_run_log` detaches and closes the handler.

To let debug records reach the file, the root logger's level is lowered to DEBUG while the run
log is attached; handlers already on the root logger that had no level of their own (the
console) are given the root's previous level, so the console shows what it showed before. Both
are restored by :func:`stop_run_log`.

A log file never contains secrets: :class:`MaskSecrets` (a ``logging.Filter`` on the handler)
applies :func:`albackup.secrets.mask_secrets` to each record's final message and its formatted
traceback, and the handler's formatter masks the finished line once more.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .secrets import mask_secrets

log = logging.getLogger(__name__)

PREFIX = "albackup-"
SUFFIX = ".log"
KEEP = dt.timedelta(hours=24)
_NAME = re.compile(r"albackup-(\d{8}T\d{6}Z)\.log\Z")
_STAMP = "%Y%m%dT%H%M%SZ"


class MaskSecrets(logging.Filter):
    """Replaces a record's message (msg % args) and traceback text with their masked forms."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: let the handler report it
            return True
        masked = mask_secrets(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return True


class _MaskingFormatter(logging.Formatter):
    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


class _RunLogHandler(logging.FileHandler):
    """A FileHandler whose file is created 0600 and never through a symlink."""

    def _open(self):  # type: ignore[override]
        def opener(path: str, flags: int) -> int:
            fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                os.fchmod(fd, 0o600)
            except (AttributeError, OSError):
                pass
            return fd
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors, opener=opener)


@dataclass
class _Saved:
    """The root logger's level and the handlers given a level, while any run log is attached."""

    root_level: int
    pinned: list[logging.Handler]


_attached: dict[Path, logging.Handler] = {}
_saved: _Saved | None = None


def log_name(now: dt.datetime) -> str:
    """``albackup-YYYYMMDDTHHMMSSZ.log`` for ``now`` (a naive datetime is taken as UTC)."""
    return f"{PREFIX}{_utc(now).strftime(_STAMP)}{SUFFIX}"


def log_time(name: str) -> dt.datetime | None:
    """The UTC time in a run log's file name, or None when the name is not one."""
    m = _NAME.match(name)
    if not m:
        return None
    try:
        return dt.datetime.strptime(m.group(1), _STAMP).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def start_run_log(log_dir: Path, now: dt.datetime, keep: dt.timedelta = KEEP) -> Path:
    """Create this run's log file, attach it to the root logger, delete the ones older than keep."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        log_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(log_dir, 0o700)    # mkdir's mode is subject to the umask
    path = log_dir / log_name(now)
    if path in _attached:
        return path
    handler = _RunLogHandler(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(_MaskingFormatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
                                           "%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(MaskSecrets())
    global _saved
    root = logging.getLogger()
    if _saved is None:
        _saved = _Saved(root.level, [])
        if root.level == logging.NOTSET or root.level > logging.DEBUG:
            shown = root.level if root.level != logging.NOTSET else logging.WARNING
            for h in root.handlers:
                if h.level == logging.NOTSET:
                    h.setLevel(shown)
                    _saved.pinned.append(h)
            root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    _attached[path] = handler
    for old in prune_run_logs(log_dir, now, keep, current=path):
        log.debug("deleted old run log %s", old)
    return path


def stop_run_log(path: Path) -> None:
    """Detach and close the handler of ``start_run_log``; restore the root logger's level."""
    global _saved
    handler = _attached.pop(Path(path), None)
    if handler is None:
        return
    root = logging.getLogger()
    root.removeHandler(handler)
    handler.close()
    if not _attached and _saved is not None:    # the last run log: put the levels back
        if root.level == logging.DEBUG:         # unless someone has set another level since
            root.setLevel(_saved.root_level)
        for h in _saved.pinned:
            h.setLevel(logging.NOTSET)
        _saved = None


def prune_run_logs(log_dir: Path, now: dt.datetime, keep: dt.timedelta = KEEP,
                   current: Path | None = None) -> list[Path]:
    """Delete ``albackup-*.log`` in log_dir whose name's timestamp is older than ``now - keep``."""
    cutoff = _utc(now) - keep
    removed = []
    for p in sorted(Path(log_dir).glob(f"{PREFIX}*{SUFFIX}")):
        t = log_time(p.name)
        if t is None or t >= cutoff or (current is not None and p.name == Path(current).name):
            continue
        if p.is_dir() and not p.is_symlink():
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot delete old run log %s: %s", p, exc.strerror or type(exc).__name__)
            continue
        removed.append(p)
    return removed


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


__all__ = ["start_run_log", "stop_run_log", "prune_run_logs", "MaskSecrets", "log_name", "log_time"]
