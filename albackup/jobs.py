"""The scheduled side: run (dump what is due, upload, move latest, prune), list and prune.

Each database's backups live under ``<destination>/<hostname>/<name>/`` (see repository.py).
Retention decisions come from the pure function in retention.py; this module only applies them.
"""
from __future__ import annotations

import datetime as dt
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import api
from .config import DatabaseConfig, RunConfig
from .errors import AlbackupError, ConfigError, StorageError
from .repository import Entry, Repository, backup_time
from .retention import BackupRef, Decision, Policy, apply_policy, due_periods
from .secrets import mask_secrets
from .storage import open_storage

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int, float], None]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def hostname(cfg: RunConfig) -> str:
    return cfg.hostname or socket.gethostname().split(".")[0] or "localhost"


def repositories(cfg: RunConfig, db: DatabaseConfig) -> list[Repository]:
    if not db.destinations:
        raise ConfigError(f"{db.source}: database {db.name}: no destinations configured")
    return [Repository(open_storage(d.url, d.options), f"{hostname(cfg)}/{db.name}") for d in db.destinations]


def _policy(db: DatabaseConfig) -> Policy:
    if db.retention is None:
        raise ConfigError(f"{db.source}: database {db.name}: no retention policy (retention: "
                          "{daily: 7, weekly: 4, ...}); refusing to decide what to keep")
    return db.retention


def _refs(entries: list[Entry]) -> list[BackupRef]:
    return [BackupRef(e.id, e.time, e.complete) for e in entries]


@dataclass
class RunEntry:
    name: str
    status: str = "not due"         # backed up | not due | failed | skipped
    due: list[str] = field(default_factory=list)
    backup: str | None = None
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    pruned: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    error: str | None = None
    exc: AlbackupError | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "exc"}


@dataclass
class RunResult:
    entries: list[RunEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)    # failed notifications, failed after-hooks

    @property
    def ok(self) -> bool:
        return all(e.status != "failed" for e in self.entries)


def run(cfg: RunConfig, *, now: dt.datetime | None = None, progress: Any = None,
        log_file: str | None = None) -> RunResult:
    """For each database: dump if any period is due, upload, verify, move latest, prune; then
    notify. Hooks run at every stage (see hooks.py)."""
    now = now or utcnow()
    started = utcnow()
    res = RunResult()
    try:
        _hooks(cfg, "before_run", status="starting")
    except AlbackupError as exc:     # a failing before_run hook stops every database's backup
        for db in cfg.databases:
            res.entries.append(RunEntry(db.name, status="skipped") if db.skip else
                               RunEntry(db.name, status="failed", error=f"{type(exc).__name__}: {exc.message}",
                                        exc=exc))
        _notify(cfg, res, started, log_file)
        return res
    for db in cfg.databases:
        entry = RunEntry(db.name)
        res.entries.append(entry)
        if db.skip:
            entry.status = "skipped"
            continue
        t0 = time.monotonic()
        try:
            _run_one(cfg, db, now, entry, progress, res.warnings)
        except AlbackupError as exc:
            entry.status, entry.exc = "failed", exc
            entry.error = f"{type(exc).__name__}: {mask_secrets(exc.message, api.db_password(db))}"
            log.error("%s: %s", db.name, entry.error)
        entry.seconds = round(time.monotonic() - t0, 3)
        res.warnings += _hooks(cfg, "after_dump", database=db.name, status=entry.status, error=entry.error,
                               backup=stored_backup_url(cfg, db, entry.backup) if entry.backup else None)
    res.warnings += _hooks(cfg, "after_run", status="ok" if res.ok else "failed")
    _notify(cfg, res, started, log_file)
    return res


def _hooks(cfg: RunConfig, stage: str, **kw: Any) -> list[str]:
    if not cfg.hooks:
        return []
    from .hooks import run_hooks

    extra = {"ALBACKUP_HOST": hostname(cfg), **(kw.pop("extra", None) or {})}
    return run_hooks(cfg.hooks, stage, extra=extra, **kw)


def _notify(cfg: RunConfig, res: RunResult, started: dt.datetime, log_file: str | None) -> None:
    """Notifications never change the run's outcome: a failing notifier is a warning."""
    from .notify import event_from_run, notify

    event = event_from_run(res, host=hostname(cfg), started=started, finished=utcnow(), log_file=log_file,
                           warnings=res.warnings)
    res.warnings += notify(list(cfg.notifications), event)
    res.warnings += _hooks(cfg, "after_notify", status="failed" if not res.ok else "ok")
    for w in res.warnings:
        log.warning("%s", w)


def _run_one(cfg: RunConfig, db: DatabaseConfig, now: dt.datetime, entry: RunEntry,
             progress: Any, warnings: list[str]) -> None:
    policy = _policy(db)
    repos = repositories(cfg, db)
    entry.destinations = [r.where for r in repos]
    entry.due = _due(repos[0], policy, now)
    if not entry.due and policy.keep_within is None:
        return     # nothing new, and period rules only change their verdict when backups arrive
    if entry.due:
        _hooks(cfg, "before_dump", database=db.name, status="due")   # raises: a failing pre-hook stops it
        workdir = Path(cfg.workdir) if cfg.workdir else None
        d = api.dump(db, "", now=now, repos=repos, workdir=workdir, progress=progress)
        entry.status, entry.backup, entry.rows, entry.bytes = "backed up", d.path.name, d.rows, d.bytes
        for repo in repos:            # stored, checked against the manifest: now it may be "latest"
            repo.mark_verified(d.path.name, now)
            repo.set_latest(d.path.name)
        log.info("%s: backup %s is stored in %s (due: %s)", db.name, d.path.name,
                 ", ".join(entry.destinations), ", ".join(entry.due))
        warnings += _hooks(cfg, "after_upload", database=db.name, backup=stored_backup_url(cfg, db, d.path.name),
                           status="ok")
    for repo in repos:                # only reached when the dump (if any) succeeded
        entry.pruned += prune_repository(repo, policy, now, dry_run=False)
    warnings += _hooks(cfg, "after_retention", database=db.name, status="ok",
                       extra={"ALBACKUP_PRUNED": " ".join(entry.pruned)})


def _due(repo: Repository, policy: Policy, now: dt.datetime) -> list[str]:
    """Due periods. The ``latest`` pointer (one small read) settles the common "not due" case;
    anything else is decided from the full listing."""
    latest = repo.latest()
    t = backup_time(latest) if latest else None
    if t is not None and not due_periods([BackupRef(latest, t)], policy, now):  # type: ignore[arg-type]
        return []
    return due_periods(_refs(repo.entries()), policy, now)


def prune_repository(repo: Repository, policy: Policy, now: dt.datetime, *, dry_run: bool) -> list[str]:
    latest = repo.latest()
    removed = []
    for d in apply_policy(_refs(repo.entries()), policy, now):
        if d.keep or d.backup.id == latest:
            continue
        removed.append(d.backup.id)
        if not dry_run:
            repo.delete(d.backup.id)
            log.info("pruned %s from %s", d.backup.id, mask_secrets(repo.where))
    return removed


@dataclass
class Listed:
    database: str
    destination: str
    latest: str | None
    backups: list[dict[str, Any]]


def list_backups(cfg: RunConfig, *, now: dt.datetime | None = None) -> list[Listed]:
    """Every database's backups per destination: size, complete, verified, and the sets they are in."""
    now = now or utcnow()
    out = []
    for db in cfg.databases:
        for repo in repositories(cfg, db):
            entries = repo.entries()
            decisions = {d.backup.id: d for d in apply_policy(_refs(entries), db.retention, now)} \
                if db.retention is not None else {}
            out.append(Listed(db.name, mask_secrets(repo.where), repo.latest(), [
                {"id": e.id, "time": e.time.strftime("%Y-%m-%dT%H:%M:%SZ"), "complete": e.complete,
                 "verified": e.verified, "bytes": e.size,
                 "sets": list(decisions[e.id].reasons) if e.id in decisions else [],
                 "keep": decisions[e.id].keep if e.id in decisions else True} for e in entries]))
    return out


def prune(cfg: RunConfig, *, now: dt.datetime | None = None, dry_run: bool = False) -> list[dict[str, Any]]:
    """Apply each database's policy to each destination; with dry_run only say what would go."""
    now = now or utcnow()
    report = []
    for db in cfg.databases:
        policy = _policy(db)
        for repo in repositories(cfg, db):
            latest = repo.latest()
            decisions: list[Decision] = apply_policy(_refs(repo.entries()), policy, now)
            for d in decisions:
                keep = d.keep or d.backup.id == latest
                report.append({"database": db.name, "destination": mask_secrets(repo.where), "backup": d.backup.id,
                               "keep": keep, "reasons": list(d.reasons) or (["latest"] if keep else [])})
            if not dry_run:
                prune_repository(repo, policy, now, dry_run=False)
    return report


@dataclass
class Freshness:
    database: str
    destination: str
    newest: str | None
    age_seconds: float | None
    max_age_seconds: float
    stale: bool


def check(cfg: RunConfig, *, now: dt.datetime | None = None) -> list[Freshness]:
    """Each database's newest complete backup per destination against its ``max_age``.

    The alert that still fires when the scheduled job itself stopped running.
    """
    now = now or utcnow()
    out = []
    for db in cfg.databases:
        if db.skip:
            continue
        if db.max_age is None:
            raise ConfigError(f"{db.source}: database {db.name}: no max_age for check (e.g. max_age: 26h)")
        for repo in repositories(cfg, db):
            newest = next((e for e in repo.entries() if e.complete), None)
            age = (now - newest.time).total_seconds() if newest else None
            out.append(Freshness(db.name, mask_secrets(repo.where), newest.id if newest else None, age,
                                 db.max_age.total_seconds(), age is None or age > db.max_age.total_seconds()))
    return out


def stored_backup_url(cfg: RunConfig, db: DatabaseConfig, bid: str) -> str:
    dest = db.destinations[0].url.rstrip("/")
    return f"{dest}/{hostname(cfg)}/{db.name}/{bid}"


__all__ = ["run", "list_backups", "prune", "RunResult", "RunEntry", "StorageError"]
