"""The scheduled side: run (dump what is due, upload, move latest, prune), list and prune.

Each database's backups live under ``<destination>/<hostname>/<name>/`` (see repository.py).
Retention decisions come from the pure function in retention.py; this module only applies them.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import api
from .config import DatabaseConfig, RunConfig
from .errors import AlbackupError, ConfigError, StorageError
from .locks import DestinationLock
from .repository import Entry, Repository, remove_stale_workdirs
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
    """One repository per destination, holding only this database's own backups (see Owner)."""
    if not db.destinations:
        raise ConfigError(f"{db.source}: database {db.name}: no destinations configured")
    owner = api.backup_owner(db)
    return [Repository(open_storage(d.url, d.options), f"{hostname(cfg)}/{db.name}", owner)
            for d in db.destinations]


def _policy(db: DatabaseConfig) -> Policy:
    if db.retention is None:
        raise ConfigError(f"{db.source}: database {db.name}: no retention policy (retention: "
                          "{daily: 7, weekly: 4, ...}); refusing to decide what to keep")
    return db.retention


def _refs(entries: list[Entry]) -> list[BackupRef]:
    return [BackupRef(e.id, e.time, e.complete) for e in entries]


def _decisions(entries: list[Entry], policy: Policy, now: dt.datetime) -> list[Decision]:
    """Retention's decisions, except that damaged and future-dated sets are kept and flagged,
    never counted: they neither take a rule's place nor get removed."""
    plain = [e for e in entries if not e.damaged and not e.future(now)]
    out = apply_policy(_refs(plain), policy, now)
    for e in entries:
        if e.damaged:
            out.append(Decision(BackupRef(e.id, e.time, False), True, (f"damaged: {e.problem}",)))
        elif e.future(now):
            out.append(Decision(BackupRef(e.id, e.time, e.complete), True, ("future-dated",)))
    return sorted(out, key=lambda d: (d.backup.time, d.backup.id), reverse=True)


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
    remove_stale_workdirs(Path(cfg.workdir) if cfg.workdir else None)
    try:
        _hooks(cfg, "before_run", status="starting")
    except AlbackupError as exc:     # a failing before_run hook stops every database's backup
        for db in cfg.databases:
            res.entries.append(RunEntry(db.name, status="skipped") if db.skip else
                               RunEntry(db.name, status="failed", error=f"{type(exc).__name__}: {exc.message}",
                                        exc=exc))
        _notify(cfg, res, started, log_file)
        return res
    try:
        for db in cfg.databases:
            _run_db(cfg, db, now, res, progress)
    except KeyboardInterrupt as exc:     # SIGTERM/SIGINT (signals.py): what was written is gone already
        remove_stale_workdirs(Path(cfg.workdir) if cfg.workdir else None, own=True)   # if a signal cut that short
        _interrupted(cfg, res, exc)
        _notify(cfg, res, started, log_file)
        raise
    res.warnings += _hooks(cfg, "after_run", status="ok" if res.ok else "failed")
    _notify(cfg, res, started, log_file)
    return res


def _run_db(cfg: RunConfig, db: DatabaseConfig, now: dt.datetime, res: RunResult, progress: Any) -> None:
    entry = RunEntry(db.name)
    res.entries.append(entry)
    if db.skip:
        entry.status = "skipped"
        return
    t0 = time.monotonic()
    try:
        _run_one(cfg, db, now, entry, progress, res.warnings)
    except AlbackupError as exc:
        entry.status, entry.exc = "failed", exc
        entry.error = f"{type(exc).__name__}: {mask_secrets(exc.message, api.db_password(db))}"
        log.error("%s: %s", db.name, entry.error)
    finally:
        entry.seconds = round(time.monotonic() - t0, 3)
    res.warnings += _hooks(cfg, "after_dump", database=db.name, status=entry.status, error=entry.error,
                           backup=stored_backup_url(cfg, db, entry.backup) if entry.backup else None)


def _interrupted(cfg: RunConfig, res: RunResult, exc: KeyboardInterrupt) -> None:
    """Mark the database being worked on (and those not reached) as failed: interrupted."""
    name = getattr(exc, "name", "SIGINT")
    started = {e.name for e in res.entries}
    last = res.entries[-1] if res.entries else None
    if last is not None and last.status != "skipped" and not last.error:
        last.error = (f"Interrupted: stopped by {name} after backup {last.backup} was stored" if last.backup else
                      f"Interrupted: stopped by {name}" if last.status == "not due" else
                      f"Interrupted: stopped by {name}; the incomplete backup was removed")
        last.status = "failed"
    for db in cfg.databases:
        if db.name not in started:
            res.entries.append(RunEntry(db.name, status="skipped" if db.skip else "failed",
                                        error=None if db.skip else f"Interrupted: not started ({name})"))
    log.error("run interrupted by %s", name)


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
    with contextlib.ExitStack() as stack:     # every destination's lock before anything is written
        for repo in repos:
            stack.enter_context(DestinationLock(repo, f"run of {db.name}"))
        _locked_run(cfg, db, now, entry, progress, warnings, policy, repos)


def _locked_run(cfg: RunConfig, db: DatabaseConfig, now: dt.datetime, entry: RunEntry, progress: Any,
                warnings: list[str], policy: Policy, repos: list[Repository]) -> None:
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
    """Due periods. The ``latest`` pointer, checked against the store (its set's listing and
    manifest), settles the common "not due" case; anything else is decided from the full listing.
    A ``latest`` naming a missing, damaged or future-dated set settles nothing."""
    latest, problem = repo.verified_latest()
    if problem:
        log.warning("%s: %s; deciding from the listing", mask_secrets(repo.where), problem)
    if latest is not None and not latest.future(now) and \
            not due_periods([BackupRef(latest.id, latest.time)], policy, now):
        return []
    return due_periods(_refs([e for e in repo.entries() if not e.future(now) and not e.damaged]), policy, now)


def prune_repository(repo: Repository, policy: Policy, now: dt.datetime, *, dry_run: bool) -> list[str]:
    return [d.backup.id for d in _prune_plan(repo, policy, now, dry_run=dry_run) if not d.keep]


def _prune_plan(repo: Repository, policy: Policy, now: dt.datetime, *, dry_run: bool) -> list[Decision]:
    """The decisions for one destination, with ``latest`` and the newest complete set always kept;
    unless dry_run, the rest is removed."""
    entries = repo.entries()
    latest = repo.latest()
    newest = next((e.id for e in entries if e.complete and not e.future(now)), None)
    out = []
    for d in _decisions(entries, policy, now):
        if not d.keep and d.backup.id in (latest, newest):
            d = Decision(d.backup, True, ("latest",))
        out.append(d)
        if not d.keep and not dry_run:
            _remove(repo, d.backup.id)
            log.info("pruned %s from %s", d.backup.id, mask_secrets(repo.where))
    return out


def _remove(repo: Repository, bid: str) -> None:
    """Delete one set; a signal in the middle lets the deletion finish first (later signals are
    ignored, see signals.py), so that no half-removed set stays behind."""
    try:
        repo.delete(bid)
    except KeyboardInterrupt:
        repo.delete(bid)
        raise


@dataclass
class Listed:
    database: str
    destination: str
    latest: str | None
    backups: list[dict[str, Any]]
    error: str | None = None      # the destination could not be read: nothing of it is listed


def _each_destination(cfg: RunConfig, db: DatabaseConfig) -> Iterator[tuple[Repository, str]]:
    for repo in repositories(cfg, db):
        yield repo, mask_secrets(repo.where)


def list_backups(cfg: RunConfig, *, now: dt.datetime | None = None) -> list[Listed]:
    """Every database's backups per destination: size, complete, verified, and the sets they are in.
    A destination that cannot be read is reported with its error; the others are still listed."""
    now = now or utcnow()
    out = []
    for db in cfg.databases:
        for repo, where in _each_destination(cfg, db):
            try:
                out.append(_listed(db, repo, where, now))
            except StorageError as exc:
                log.error("%s @ %s: %s", db.name, where, exc.message)
                out.append(Listed(db.name, where, None, [], error=exc.message))
    return out


def _listed(db: DatabaseConfig, repo: Repository, where: str, now: dt.datetime) -> Listed:
    entries = repo.entries()
    decisions = {d.backup.id: d for d in _decisions(entries, db.retention, now)} if db.retention is not None else {}
    return Listed(db.name, where, repo.latest(), [
        {"id": e.id, "time": e.time.strftime("%Y-%m-%dT%H:%M:%SZ"), "complete": e.complete,
         "verified": e.verified, "bytes": e.size, "problem": e.problem or ("future-dated" if e.future(now) else None),
         "sets": list(decisions[e.id].reasons) if e.id in decisions else [],
         "keep": decisions[e.id].keep if e.id in decisions else True} for e in entries])


def prune(cfg: RunConfig, *, now: dt.datetime | None = None, dry_run: bool = False) -> list[dict[str, Any]]:
    """Apply each database's policy to each destination; with dry_run only say what would go.
    A destination that fails is reported (``error``) and the others are still pruned."""
    now = now or utcnow()
    report: list[dict[str, Any]] = []
    for db in cfg.databases:
        policy = _policy(db)
        for repo, where in _each_destination(cfg, db):
            try:
                with contextlib.ExitStack() as stack:
                    if not dry_run:
                        stack.enter_context(DestinationLock(repo, f"prune of {db.name}"))
                    plan = _prune_plan(repo, policy, now, dry_run=dry_run)
            except StorageError as exc:
                log.error("%s @ %s: %s", db.name, where, exc.message)
                report.append({"database": db.name, "destination": where, "error": exc.message})
                continue
            report += [{"database": db.name, "destination": where, "backup": d.backup.id, "keep": d.keep,
                        "reasons": list(d.reasons)} for d in plan]
    return report


@dataclass
class Freshness:
    database: str
    destination: str
    newest: str | None
    age_seconds: float | None
    max_age_seconds: float
    stale: bool
    problem: str | None = None    # unreachable, latest dangling, future-dated or damaged sets


def check(cfg: RunConfig, *, now: dt.datetime | None = None) -> list[Freshness]:
    """Each database's newest complete backup per destination against its ``max_age``.

    The alert that still fires when the scheduled job itself stopped running. A destination that
    cannot be read, a ``latest`` naming no complete set, and a set dated in the future are stale
    too (with the problem named), never "ok".
    """
    now = now or utcnow()
    out = []
    for db in cfg.databases:
        if db.skip:
            continue
        if db.max_age is None:
            raise ConfigError(f"{db.source}: database {db.name}: no max_age for check (e.g. max_age: 26h)")
        for repo, where in _each_destination(cfg, db):
            try:
                out.append(_freshness(db, repo, where, now))
            except StorageError as exc:
                out.append(Freshness(db.name, where, None, None, db.max_age.total_seconds(), True,
                                     f"unreachable: {exc.message}"))
    return out


def _freshness(db: DatabaseConfig, repo: Repository, where: str, now: dt.datetime) -> Freshness:
    entries = repo.entries()
    newest = next((e for e in entries if e.complete and not e.future(now)), None)
    age = (now - newest.time).total_seconds() if newest else None
    problems = []
    future = [e.id for e in entries if e.future(now)]
    if future:
        problems.append(f"{len(future)} backup(s) dated in the future ({future[0]}): the clock was wrong "
                        "or they are not this host's")
    bid, pointer = repo.latest_pointer()
    if pointer is None and bid is not None and not any(e.id == bid and e.complete for e in entries):
        pointer = f"latest names {bid}, which is not a complete backup here"
    if pointer:
        problems.append(pointer)
    limit = db.max_age.total_seconds()   # type: ignore[union-attr]
    return Freshness(db.name, where, newest.id if newest else None, age, limit,
                     age is None or age > limit or bool(problems), "; ".join(problems) or None)


def stored_backup_url(cfg: RunConfig, db: DatabaseConfig, bid: str) -> str:
    dest = db.destinations[0].url.rstrip("/")
    return f"{dest}/{hostname(cfg)}/{db.name}/{bid}"


__all__ = ["run", "list_backups", "prune", "RunResult", "RunEntry", "StorageError"]
