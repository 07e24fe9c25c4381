"""The command line: parse, call ``api``, render text or --json, map errors to exit codes.

Both call shapes work: the old tool's ``albackup --cfg dump.yaml --backup-dir DIR dump`` and
``albackup dump --cfg dump.yaml --backup-dir DIR``. Options given after the command win.
"""
from __future__ import annotations

import json
from dataclasses import replace
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__, api, config
from .errors import (AlbackupError, BackupTooOld, CompareFailed, ConfigError, StorageError, UsageError,
                     exit_code_table)
from .keys import NONE as NO_ENCRYPTION
from .secrets import mask_secrets
from .priority import lower_priority
from .progress import ConsoleHandler, Reporter, for_terminal
from .keys import CliKeys, EncryptionConfig
from .restore import RestoreOptions

log = logging.getLogger("albackup")
DEFAULT_CONFIGS = ("albackup.yaml", "albackup.yml", "albackup.json")


class State:
    def __init__(self) -> None:
        self.cfg: str | None = None
        self.url: str | None = None
        self.backup_dir: str | None = None
        self.json = False
        self.debug = False
        self.verbose = 0
        self.quiet = False
        self.keys = CliKeys()
        self.reporter: Reporter | None = None


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options accepted both before and after the command."""
    f = click.option("--cfg", "-c", "cfg", metavar="FILE", help="Configuration file (YAML or JSON).")(f)
    f = click.option("--url", metavar="URL", help="SQLAlchemy database URL instead of a config file.")(f)
    f = click.option("--backup-dir", metavar="PATH", help="Backups folder (dump) or one backup (restore, verify, inspect).")(f)
    f = click.option("--json", "as_json", is_flag=True, default=None, help="Print a machine-readable result.")(f)
    f = click.option("--debug", "-d", is_flag=True, default=None, help="Debug logging; tracebacks on errors.")(f)
    f = click.option("-v", "--verbose", count=True, help="More detail in the log.")(f)
    f = click.option("--quiet", "-q", is_flag=True, default=None, help="Only errors on stderr.")(f)
    return f


def _key_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Where the backup's keys come from. Never a passphrase itself on the command line."""
    f = click.option("--passphrase-env", metavar="NAME", help="Passphrase from this environment variable.")(f)
    f = click.option("--passphrase-file", metavar="PATH", help="Passphrase from this file.")(f)
    f = click.option("--passphrase-fd", type=int, metavar="N", help="Passphrase read from this file descriptor.")(f)
    f = click.option("--passphrase-command", metavar="CMD", help="Passphrase printed by this command (no shell).")(f)
    f = click.option("--recipient", "recipients", multiple=True, metavar="PUBKEY|@FILE",
                     help="Encrypt to this public key (the backup host needs no secret).")(f)
    f = click.option("--key-file", metavar="PATH", help="Private key file, to read backups encrypted to its public key.")(f)
    return f


_KEY_ARGS = ("passphrase_env", "passphrase_file", "passphrase_fd", "passphrase_command", "recipients", "key_file")


def _merge(ctx: click.Context, **kw: Any) -> State:
    st: State = ctx.ensure_object(State)
    for k in _KEY_ARGS:
        v = kw.pop(k, None)
        if v:
            setattr(st.keys, k, tuple(v) if k == "recipients" else v)
    for k, attr in (("cfg", "cfg"), ("url", "url"), ("backup_dir", "backup_dir"), ("as_json", "json"),
                    ("debug", "debug"), ("quiet", "quiet")):
        v = kw.get(k)
        if v is not None and v is not False:
            setattr(st, attr, v)
    if kw.get("verbose"):
        st.verbose += kw["verbose"]
    _setup_logging(st)
    return st


def _setup_logging(st: State) -> None:
    level = logging.DEBUG if (st.debug or st.verbose) else logging.INFO
    if st.quiet:
        level = logging.ERROR
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_albackup", False):
            root.removeHandler(h)
    # on a terminal, log lines go through the console that draws the live bars (above them)
    h = ConsoleHandler() if sys.stderr.isatty() else logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    h._albackup = True  # type: ignore[attr-defined]
    root.addHandler(h)
    root.setLevel(level)
    if not (st.debug or st.verbose > 1):
        logging.getLogger("sqlalchemy").setLevel(logging.WARNING)


def _db(st: State, *, allow_restore_flag: bool = False, **url_opts: Any) -> config.DatabaseConfig:
    if st.cfg and st.url:
        raise UsageError("give either --cfg or --url, not both")
    if st.url:
        return config.url_config(st.url, allow_restore=allow_restore_flag, **url_opts)
    if allow_restore_flag:
        raise UsageError("--allow-restore goes with --url; with a config file set allow_restore: true in it")
    path = st.cfg or next((p for p in DEFAULT_CONFIGS if Path(p).is_file()), None)
    if path is None:
        raise UsageError("no configuration: give --cfg FILE or --url URL (or put albackup.yaml/albackup.json here)")
    return config.database_config(path)


def _config_db(st: State) -> config.DatabaseConfig | None:
    """The database config that goes with --backup-dir: --cfg/--url's, or, for a run config, the
    database whose destination holds the backup."""
    if st.url or not st.cfg:
        return _db(st) if st.url else None
    try:
        return config.database_config(st.cfg)
    except ConfigError:
        run_cfg = config.test_all_config(st.cfg)   # a run/test_all config (or the original error again)
    for db in run_cfg.databases:
        if api.storage_options_for(st.backup_dir or "", db.destinations) is not None or any(
                str(st.backup_dir or "").startswith(d.url.rstrip("/") + "/") for d in db.destinations):
            return db
    return None


def _storage_options(st: State) -> Any:
    """For an s3:// --backup-dir: the options of the config's destination it lies under."""
    if not str(st.backup_dir or "").startswith("s3://"):
        return None
    db = _config_db(st)
    return api.storage_options_for(st.backup_dir, db.destinations) if db is not None else None


def _enc(st: State, db: config.DatabaseConfig | None = None) -> EncryptionConfig:
    """The config's encryption settings (when there is a config) with the command line's over them."""
    if db is None and (st.cfg or st.url):
        db = _config_db(st)
    base = db.encryption if db is not None else NO_ENCRYPTION
    return base.merged(st.keys.config())


def _out(st: State, data: Any, text: str | None = None) -> None:
    if st.reporter is not None:      # the live bars end before the result is printed
        st.reporter.close()
    if st.json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    elif text is not None:
        click.echo(text)


def _progress(st: State, verb: str = "dump") -> Reporter:
    """A live display on a terminal (nothing of it otherwise: a log line per table instead)."""
    rep = st.reporter = for_terminal(st.quiet or st.json, verb)
    click.get_current_context().call_on_close(rep.close)
    return rep


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@_common
@click.version_option(__version__, prog_name="albackup")
@click.pass_context
def cli(ctx: click.Context, **kw: Any) -> None:
    """albackup: logical backups of SQLite, PostgreSQL, MySQL/MariaDB and SQL Server databases.

    \b
    albackup --cfg dump.yaml --backup-dir ./backups dump
    albackup --cfg restore.yaml restore --backup-dir ./backups/shop@db1--20261122T093000Z
    albackup verify --backup-dir ./backups/shop@db1--20261122T093000Z
    albackup --cfg test_all.yaml test_all

    Exit codes: see `albackup exit-codes`.
    """
    _merge(ctx, **kw)


@cli.command()
@_common
@_key_options
@click.option("--tables", multiple=True, metavar="GLOBS", help="Only these tables (comma-separated globs).")
@click.option("--exclude-tables", multiple=True, metavar="GLOBS", help="Not these tables.")
@click.option("--schema", "schemas", multiple=True, metavar="GLOBS",
              help="Only these schemas (comma-separated globs; replace the config's schemas). Default: "
                   "PostgreSQL every schema but the system's; elsewhere the connection's default one.")
@click.option("--exclude-schema", "exclude_schemas", multiple=True, metavar="GLOBS",
              help="Not these schemas (added to the config's exclude_schemas).")
@click.option("--compression", type=click.Choice(["zstd", "gzip", "lzma", "none"]), help="Default: zstd.")
@click.option("--no-views", is_flag=True, help="Do not record views.")
@click.option("--no-triggers", is_flag=True, help="Do not record triggers.")
@click.option("--no-routines", is_flag=True, help="Do not record functions and procedures.")
@click.option("--low-priority", is_flag=True, help="Run at low CPU and I/O priority (nice, idle I/O class).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Worker processes sharing the dump's snapshot (PostgreSQL, MySQL/MariaDB). Default: "
                   "the config's jobs, else 1.")
@click.pass_context
def dump(ctx: click.Context, tables: tuple[str, ...], exclude_tables: tuple[str, ...], schemas: tuple[str, ...],
         exclude_schemas: tuple[str, ...], compression: str | None,
         no_views: bool, no_triggers: bool, no_routines: bool, low_priority: bool, jobs: int | None,
         **kw: Any) -> None:
    """Back up a database into a new backup set under --backup-dir (its path is the last line)."""

    st = _merge(ctx, **kw)
    if low_priority:
        for note in lower_priority():
            log.info("%s", note)
    db = _db(st)
    changes: dict[str, Any] = {}
    if tables:
        changes["include_tables"] = _split(tables)
    if exclude_tables:
        changes["exclude_tables"] = db.exclude_tables + _split(exclude_tables)
    if schemas:
        changes["schemas"] = _split(schemas)
    if exclude_schemas:
        changes["exclude_schemas"] = db.exclude_schemas + _split(exclude_schemas)
    if compression:
        changes["compression"] = compression
    if jobs:
        changes["jobs"] = jobs
    for flag, key in ((no_views, "views"), (no_triggers, "triggers"), (no_routines, "routines")):
        if flag:
            changes[key] = False
    changes["encryption"] = _enc(st, db)
    db = replace(db, **changes)
    res = api.dump(db, st.backup_dir or ".", progress=_progress(st))
    log.info("backup %s: %d tables, %s rows, %s bytes in %.1fs (%s)", res.location, res.tables,
             f"{res.rows:,}", f"{res.bytes:,}", res.seconds, res.consistency["method"])
    _out(st, {"backup": res.location, "tables": res.tables, "rows": res.rows, "bytes": res.bytes,
              "seconds": round(res.seconds, 3), "consistency": res.consistency}, res.location)


@cli.command()
@_common
@_key_options
@click.option("--tables", multiple=True, metavar="GLOBS", help="Restore only these tables.")
@click.option("--exclude-tables", multiple=True, metavar="GLOBS", help="Do not restore these tables.")
@click.option("--clean", is_flag=True, help="Drop and replace tables the target already has.")
@click.option("--plan", "plan_only", is_flag=True, help="Print the DDL and the lossiness report; change nothing.")
@click.option("--accept-lossy", is_flag=True, help="Restore even where the target cannot hold every value.")
@click.option("--allow-restore", is_flag=True, help="With --url: allow writing to that database.")
@click.option("--skip-checks", is_flag=True, help="Do not recreate check constraints.")
@click.option("--no-routines", is_flag=True, help="Do not recreate views, triggers and routines.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Worker processes loading chunks, building indexes and checking tables in parallel "
                   "(PostgreSQL, MySQL/MariaDB; then not one transaction). Default: the config's jobs, else 1.")
@click.option("--read-back", type=click.Choice(["hash", "count"]), default=None,
              help="How each restored table is checked: hash reads every row back and compares it with "
                   "the backup's content hash; count compares row counts only (faster; trusts the load). "
                   "Default: the config's read_back, else hash.")
@click.option("--lock-timeout", type=click.IntRange(1, config.MAX_LOCK_TIMEOUT), default=None, metavar="SECONDS",
              help="How long a statement waits for a lock another session holds before the restore fails. "
                   "Default: the config's lock_timeout, else 60.")
@click.pass_context
def restore(ctx: click.Context, tables: tuple[str, ...], exclude_tables: tuple[str, ...], clean: bool,
            plan_only: bool, accept_lossy: bool, allow_restore: bool, skip_checks: bool, no_routines: bool,
            jobs: int | None, read_back: str | None, lock_timeout: int | None, **kw: Any) -> None:
    """Restore the backup at --backup-dir into the configured database (needs allow_restore)."""
    st = _merge(ctx, **kw)
    if not st.backup_dir:
        raise UsageError("restore needs --backup-dir PATH of one backup")
    db = _db(st, allow_restore_flag=allow_restore)
    opts = RestoreOptions(allow_restore=db.allow_restore, clean=clean, include=_split(tables),
                          exclude=_split(exclude_tables), accept_lossy=accept_lossy, plan_only=plan_only,
                          enable_ri_check=db.enable_ri_check, skip_checks=skip_checks, routines=not no_routines,
                          jobs=jobs or db.jobs, read_back=read_back or db.read_back,
                          lock_timeout=lock_timeout or db.lock_timeout)
    res = api.restore(st.backup_dir, replace(db, encryption=_enc(st, db)), opts, progress=_progress(st, "restore"))
    data = {"target": res.target, "planned_only": res.planned_only, "tables": res.tables,
            "rows": res.rows, "losses": [x.to_dict() for x in res.losses], "changes": res.changes,
            "refused": res.refused, "seconds": round(res.seconds, 3)}
    if plan_only:
        data["ddl"] = res.ddl
        lines = ["-- DDL"] + res.ddl + ["", "-- type changes and notes"] + (res.changes or ["(none)"])
        lines += ["", "-- lossiness report"]
        lines += [f"{x.table}.{x.column}: {x.source_type} → {x.target_type}: {x.reason} ({x.rows} rows)"
                  for x in res.losses] or ["(no loss)"]
        if res.refused:
            lines += ["", "-- refused: --clean would drop these objects outside the backup"] + res.refused
        _out(st, data, "\n".join(lines))
        return
    for x in res.losses:
        log.warning("lossy: %s.%s: %s (%d rows)", x.table, x.column, x.reason, x.rows)
    _out(st, data, f"restored {len(res.tables)} tables, {res.rows:,} rows into {res.target} in {res.seconds:.1f}s")


@cli.command()
@_common
@_key_options
@click.pass_context
def verify(ctx: click.Context, **kw: Any) -> None:
    """Check a backup without a database: manifest, checksums, every frame, counts and hashes."""
    st = _merge(ctx, **kw)
    if not st.backup_dir:
        raise UsageError("verify needs --backup-dir PATH of one backup")
    res = api.verify(st.backup_dir, _enc(st), _storage_options(st))
    _out(st, {"backup": res.location, "ok": True, "tables": res.tables, "rows": res.rows},
         f"OK {res.location}: {len(res.tables)} tables, {res.rows:,} rows verified")


@cli.command("inspect")
@_common
@_key_options
@click.pass_context
def inspect_cmd(ctx: click.Context, **kw: Any) -> None:
    """List a backup's tables, columns, types, rows and sizes."""
    st = _merge(ctx, **kw)
    if not st.backup_dir:
        raise UsageError("inspect needs --backup-dir PATH of one backup")
    info = api.inspect_backup(st.backup_dir, _enc(st), _storage_options(st))
    if info.get("encrypted") and "tables" not in info:
        slots = ", ".join(f"{x['type']}" + (f" {x['key_id']}" if x.get("key_id") else "") for x in info["key_slots"])
        _out(st, info, f"backup      {info['id']}\ncreated     {info['created_at']}\n"
                       f"encrypted   {info['cipher']}, key slots: {slots}\n"
                       "(give the passphrase or private key to see its tables)")
        return
    src = info["source"] or {}
    cons = info["consistency"] or {}
    lines = [f"backup      {info['id']}", f"created     {info['created_at']}",
             f"source      {src.get('engine')} {src.get('server_version')} ({src.get('url')})",
             f"read by     {src.get('dialect')}+{src['driver']}" if src.get("driver") else "read by     (not recorded)",
             f"consistency {cons.get('method')} ({'consistent' if cons.get('consistent') else 'NOT consistent'})",
             f"compression {info['compression']}", ""]
    for t in info["tables"]:
        lines.append(f"{t['table']}: {t['rows']:,} rows, {t['bytes']:,} bytes, {t['chunks']} chunk(s)")
        for c in t["columns"]:
            lines.append(f"    {c['name']:<30} {c['type']:<22} {c['original_type']}"
                         f"{'' if c['nullable'] else ' NOT NULL'}")
    for r in info["routines"]:
        lines.append(f"{r['kind']} {r['name']}")
    _out(st, info, "\n".join(lines))


def _test_all(ctx: click.Context, **kw: Any) -> None:
    st = _merge(ctx, **kw)
    path = st.cfg or next((p for p in DEFAULT_CONFIGS if Path(p).is_file()), None)
    if not path:
        raise UsageError("test_all needs --cfg FILE")
    cfg = config.test_all_config(path)
    cli_keys = st.keys.config()
    cfg = replace(cfg, databases=tuple(replace(db, encryption=db.encryption.merged(cli_keys)) for db in cfg.databases))
    res = api.test_all(cfg, progress=_progress(st))
    rows = [e.to_dict() for e in res.entries]
    header = f"{'database':<24} {'status':<10} {'tables':>6} {'rows':>12} {'diffs':>5} {'dump s':>8} {'restore s':>9}"
    lines = [header, "-" * len(header)]
    for e in res.entries:
        lines.append(f"{e.name:<24} {e.status:<10} {e.tables:>6} {e.rows:>12,} {len(e.differences):>5} "
                     f"{e.dump_seconds:>8.2f} {e.restore_seconds:>9.2f}")
        for d in e.differences:
            lines.append(f"    difference: {d}")
        if e.error:
            lines.append(f"    error: {e.error}")
    _out(st, {"ok": res.ok, "databases": rows}, "\n".join(lines))
    api.require_ok(res)


@cli.command("test_all")
@_common
@_key_options
@click.pass_context
def test_all(ctx: click.Context, **kw: Any) -> None:
    """Dump each configured database, restore into a scratch target, compare (also: test-all)."""
    _test_all(ctx, **kw)


@cli.command("test-all", hidden=True)
@_common
@_key_options
@click.pass_context
def test_all_dash(ctx: click.Context, **kw: Any) -> None:
    """Same as test_all."""
    _test_all(ctx, **kw)


def default_log_dir() -> Path:
    import os

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "albackup" / "logs"


def _run_config(st: State) -> config.RunConfig:
    path = st.cfg or next((p for p in DEFAULT_CONFIGS if Path(p).is_file()), None)
    if not path:
        raise UsageError("this command needs --cfg FILE (a config with databases, destinations and retention)")
    cfg = config.test_all_config(path)
    cli_keys = st.keys.config()
    return replace(cfg, databases=tuple(replace(db, encryption=db.encryption.merged(cli_keys))
                                        for db in cfg.databases))


@cli.command("run")
@_common
@_key_options
@click.option("--low-priority", is_flag=True, help="Run at low CPU and I/O priority (nice, idle I/O class).")
@click.pass_context
def run_cmd(ctx: click.Context, low_priority: bool, **kw: Any) -> None:
    """The scheduled run (cron, systemd timer): for each database, dump if a period is due, upload
    to every destination, move `latest`, prune. Exits non-zero if anything failed."""
    from . import jobs
    from .locks import ConfigLock
    from .runlog import start_run_log, stop_run_log
    from .signals import stop_on_signals

    stop_on_signals()        # SIGTERM/SIGINT: the run removes what it wrote, notifies, exits 143/130
    st = _merge(ctx, **kw)
    if low_priority:
        for note in lower_priority():
            log.info("%s", note)
    cfg = _run_config(st)
    log_dir = Path(cfg.log_dir).expanduser() if cfg.log_dir else default_log_dir()
    with ConfigLock(log_dir, cfg.source):    # one run per config at a time
        try:
            log_file = start_run_log(log_dir, jobs.utcnow())
        except OSError as exc:
            raise StorageError(f"log_dir {log_dir}: cannot write the run log there ({exc.strerror})") from None
        try:
            res = jobs.run(cfg, progress=_progress(st), log_file=str(log_file))
        finally:
            stop_run_log(log_file)
    lines = []
    for e in res.entries:
        what = f"{e.backup} ({e.rows:,} rows, {e.bytes:,} bytes)" if e.backup else ", ".join(e.due) or "-"
        lines.append(f"{e.name:<24} {e.status:<10} {what}" + (f"  pruned {len(e.pruned)}" if e.pruned else ""))
        if e.error:
            lines.append(f"    error: {e.error}")
    _out(st, {"ok": res.ok, "databases": [e.to_dict() for e in res.entries]}, "\n".join(lines))
    if not res.ok:
        failed = [e for e in res.entries if e.status == "failed"]
        # the exit code of the first failure's kind (documented per class)
        raise type(failed[0].exc or AlbackupError())(f"the run failed for {', '.join(e.name for e in failed)}")


@cli.command("list")
@_common
@_key_options
@click.pass_context
def list_cmd(ctx: click.Context, **kw: Any) -> None:
    """Each database's backups per destination: size, sets they belong to, verified or not."""
    from . import jobs

    st = _merge(ctx, **kw)
    listed = jobs.list_backups(_run_config(st))
    lines = []
    for x in listed:
        if x.error:
            lines.append(f"{x.database} @ {x.destination}: ERROR {x.error}")
            continue
        lines.append(f"{x.database} @ {x.destination} (latest: {x.latest or '-'})")
        for b in x.backups:
            state = ("verified" if b["verified"] else "complete") if b["complete"] else \
                ("DAMAGED" if b["problem"] else "INCOMPLETE")
            lines.append(f"    {b['id']:<48} {b['bytes']:>12,} {state:<10} {', '.join(b['sets'])}")
    _out(st, [x.__dict__ for x in listed], "\n".join(lines))
    _fail_unreadable([f"{x.database} @ {x.destination}" for x in listed if x.error])


def _fail_unreadable(where: list[str]) -> None:
    """Exit 13 (after printing what could be read) when a destination could not be read."""
    if where:
        raise StorageError(f"cannot read {len(where)} destination(s): {', '.join(where)}")


@cli.command("prune")
@_common
@click.option("--dry-run", is_flag=True, help="Print every backup with keep/remove and the rules that keep it.")
@click.pass_context
def prune_cmd(ctx: click.Context, dry_run: bool, **kw: Any) -> None:
    """Remove the backups no retention rule keeps (never the newest complete one)."""
    from . import jobs

    st = _merge(ctx, **kw)
    report = jobs.prune(_run_config(st), dry_run=dry_run)
    lines = [f"ERROR  {r['database']} @ {r['destination']}: {r['error']}" if "error" in r else
             f"{'keep  ' if r['keep'] else 'remove'} {r['database']} {r['backup']}  {', '.join(r['reasons'])}"
             for r in report]
    _out(st, report, "\n".join(lines) or "no backups")
    _fail_unreadable([f"{r['database']} @ {r['destination']}" for r in report if "error" in r])


@cli.command("check")
@_common
@click.pass_context
def check_cmd(ctx: click.Context, **kw: Any) -> None:
    """Exit 16 when a database's newest complete backup is older than its max_age, missing, future-dated,
    `latest` names no complete backup, or a destination cannot be read (for monitoring)."""
    from . import jobs

    st = _merge(ctx, **kw)
    cfg = _run_config(st)
    res = jobs.check(cfg)
    lines = []
    for f in res:
        age = "no backup" if f.age_seconds is None else f"{f.age_seconds / 3600:.1f}h old"
        lines.append(f"{'STALE' if f.stale else 'ok   '} {f.database} @ {f.destination}: {f.newest or '-'} ({age}, "
                     f"max {f.max_age_seconds / 3600:.1f}h)" + (f": {f.problem}" if f.problem else ""))
    _out(st, [f.__dict__ for f in res], "\n".join(lines))
    stale = sorted({f.database for f in res if f.stale})
    if stale and cfg.notifications:
        from .notify import Event, notify

        now = jobs.utcnow()
        event = Event("stale", f"albackup on {jobs.hostname(cfg)}: newest backup too old, missing or unreadable "
                               f"for {', '.join(stale)}",
                      jobs.hostname(cfg), now, now, [{"name": f.database, "status": "stale", "backup": f.newest,
                                                      "error": f.problem, "destinations": [f.destination]}
                                                     for f in res if f.stale])
        for w in notify(list(cfg.notifications), event):
            log.warning("%s", w)
    if stale:
        raise BackupTooOld(f"newest backup too old, missing or unreadable for {', '.join(stale)}")


@cli.command("compare")
@_common
@click.option("--target-url", required=True, metavar="URL", help="The copy to compare the source with.")
@click.pass_context
def compare_cmd(ctx: click.Context, target_url: str, **kw: Any) -> None:
    """Compare a database (--cfg or --url) with a copy (--target-url): schema and data."""
    st = _merge(ctx, **kw)
    src = _db(st)
    res = api.compare(src, config.url_config(target_url))
    _out(st, {"ok": not res.differences and res.tables > 0, "tables": res.tables, "rows": res.rows,
              "differences": res.differences},
         "\n".join([f"compared {res.tables} tables, {res.rows:,} rows: "
                    f"{len(res.differences)} difference(s)"] + [f"    {d}" for d in res.differences]))
    if res.differences or res.tables == 0:
        raise CompareFailed(f"{len(res.differences)} difference(s)" if res.differences else "no table compared")


@cli.command("chg-password")
@_common
@click.pass_context
def chg_password_cmd(ctx: click.Context, **kw: Any) -> None:
    """Set or change the database password in --cfg, stored encrypted (the key lives outside it)."""
    from .password import chg_password

    st = _merge(ctx, **kw)
    path = st.cfg or next((p for p in DEFAULT_CONFIGS if Path(p).is_file()), None)
    if not path:
        raise UsageError("chg-password needs --cfg FILE")
    written = chg_password(Path(path), lambda text, hide: click.prompt(text, hide_input=hide, default="",
                                                                       show_default=False))
    _out(st, {"config": str(written), "changed": True}, f"password in {written} changed (stored encrypted)")


@cli.command("keygen")
@click.option("--out", "out", required=True, metavar="PATH", help="Where to write the private key (mode 0600).")
def keygen(out: str) -> None:
    """Make a key pair: the private key goes to --out, the public key is printed (use it with --recipient)."""
    import os

    from .crypto import generate_keypair

    secret, public = generate_keypair()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{out} exists; not overwriting a key") from None
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    click.echo(public)


@cli.command("exit-codes")
def exit_codes() -> None:
    """Print the table of exit codes."""
    click.echo(exit_code_table())


def _one_line(text: str) -> str:
    """An error message as one line, secrets masked (a driver's message may span lines)."""
    return mask_secrets(" ".join(str(text).split()))


def _internal(exc: BaseException) -> str:
    """A bug's one line: its type and the first line of its message (a database error's: the
    server's, without SQLAlchemy's [SQL: …] and background lines)."""
    import sqlalchemy as sa

    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip()
    return _one_line(f"{type(orig).__name__}: {text.splitlines()[0] if text else ''}")


def _quiet_hooks(debug: bool) -> None:
    """Exceptions a library prints itself go to the log as one warning line naming their first
    cause (psycopg2 reports the server's error from inside a COPY whose session was ended, then
    fails with "invalid socket"); those a helper thread dies of, or that nothing can raise, to
    the debug log. The command's own error stays its one line. With --debug all are printed."""
    import threading

    from .engines.base import causes

    if debug:
        return

    def first(exc: BaseException) -> str:
        return _internal(causes(exc)[0])

    sys.excepthook = lambda t, v, tb: log.warning("reported by a library: %s", first(v))
    sys.unraisablehook = lambda u: log.debug("ignored: %s", first(u.exc_value)) if u.exc_value else None
    threading.excepthook = lambda a: log.debug("thread %s ended by %s", a.thread.name if a.thread else "?",
                                               first(a.exc_value)) if a.exc_value else None


def main(argv: list[str] | None = None) -> None:
    """The program. Called with ``argv`` (in-process, as the tests do), it puts back the signal
    handlers ``run`` installs; as the process's entry point it ignores the signals that come
    while the interpreter exits, so that they neither kill it nor change its exit code."""
    from .signals import ignore_signals, restore_signals

    try:
        _main(argv)
    finally:
        (restore_signals if argv is not None else ignore_signals)()


def _interrupted(exc: BaseException | None) -> None:
    """Exit 130 for Ctrl-C, 128 + the signal for one that signals.py turned into Terminated."""
    name = getattr(exc, "name", None)
    click.echo(f"albackup: interrupted by {name}" if name else "albackup: interrupted", err=True)
    sys.exit(getattr(exc, "exit_code", 130))


def _main(argv: list[str] | None) -> None:
    debug = "--debug" in (argv or sys.argv) or "-d" in (argv or sys.argv)
    _quiet_hooks(debug)
    try:
        rv = cli.main(args=argv, prog_name="albackup", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except click.exceptions.Abort as exc:       # click turns KeyboardInterrupt (and Terminated) into Abort
        _interrupted(exc.__cause__ or exc.__context__)
    except click.ClickException as exc:
        exc.show()
        sys.exit(UsageError.exit_code)
    except KeyboardInterrupt as exc:      # Ctrl-C, or signals.Terminated (SIGTERM: 143)
        _interrupted(exc)
    except AlbackupError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"albackup: error: {_one_line(exc.message)}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(f"albackup: internal error: {_internal(exc)} (run with --debug for details)", err=True)
        sys.exit(1)
