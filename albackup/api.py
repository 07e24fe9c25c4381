"""Use cases: dump, restore, verify, inspect, test_all. They return results and never print.

The only module that wires configuration, engines, archive and comparison together.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from .archive import MANIFEST, Backup, backup_id, read_manifest
from .compare import Comparison, compare_databases
from .config import DatabaseConfig, TestAllConfig, url_identity
from .dump import DumpOptions, DumpResult, run_dump
from .engines.base import Adapter, for_engine
from .keys import NONE as NO_ENCRYPTION
from .keys import EncryptionConfig, keyring, new_backup_encryption
from .errors import AlbackupError, CompareFailed, DatabaseUnavailable, RestoreRefused, TargetIsSource
from .repository import (Owner, Repository, Uploader, is_remote, open_remote_backup, remove_workdir,
                         split_location, temp_workdir)
from .restore import RestoreOptions, Restorer, RestoreResult
from .secrets import mask_secrets
from .storage import StorageOptions, open_storage
from .verify import VerifyResult, verify_backup

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int, float], None]


def db_password(db: DatabaseConfig | None) -> list[Any]:
    """The database's password, for secrets.mask_secrets: a message may echo it back."""
    return [db.url.password] if db is not None and db.url.password else []


def connect(db: DatabaseConfig, *, must_exist: bool = True) -> tuple[sa.Engine, Adapter]:
    """An engine for ``db`` whose server answered, and its adapter."""
    url = db.url
    label = db.display_url()
    if url.get_backend_name() == "sqlite" and must_exist:
        path = url.database or ""
        if path and path != ":memory:" and not Path(path).is_file():
            raise DatabaseUnavailable(f"{label}: SQLite file {path} does not exist")
    try:
        engine = sa.create_engine(url, poolclass=NullPool)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise DatabaseUnavailable(f"{label}: {mask_secrets(str(exc), db_password(db))}") from None
    except ImportError as exc:
        raise DatabaseUnavailable(f"{label}: the database driver is not installed ({exc.name}); "
                                  "pip install albackup's requirements.txt") from None
    adapter = for_engine(engine)
    adapter.configure_engine(engine)
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        msg = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        raise DatabaseUnavailable(f"{label}: cannot connect: {mask_secrets(msg, db_password(db))}") from None
    except ImportError as exc:
        raise DatabaseUnavailable(f"{label}: the database driver cannot load ({exc})") from None
    return engine, adapter


def _host(db: DatabaseConfig) -> str:
    h = db.url.host or ("local" if db.url.get_backend_name() == "sqlite" else "localhost")
    return re.sub(r"[^\w.\-]", "_", h)


def backup_owner(db: DatabaseConfig) -> Owner:
    """The name and host this database's backups carry in their ids and manifests."""
    return Owner(re.sub(r"[^\w.\-]", "_", db.name), _host(db), db.name)


def _kinds(db: DatabaseConfig) -> set[str]:
    return {k for k, on in (("view", db.views), ("trigger", db.triggers), ("routine", db.routines)) if on}


def dump(db: DatabaseConfig, backup_dir: Path | str, *, progress: Progress | None = None,
         now: dt.datetime | None = None, repos: list[Repository] | None = None,
         workdir: Path | None = None) -> DumpResult:
    """Dump ``db`` into ``backup_dir`` (a folder or ``s3://bucket/prefix``).

    ``repos``: also upload to these repositories as the dump goes (the scheduled run); the local
    copy then lives in a temporary folder under ``workdir`` and is removed unless ``backup_dir``
    is given as a local folder.
    """
    engine, adapter = connect(db)
    bid = backup_id(backup_owner(db).id_name, _host(db), now or dt.datetime.now(dt.timezone.utc))
    opts = DumpOptions(
        name=db.name, host=_host(db), schemas=list(db.schemas), exclude_schemas=db.exclude_schemas,
        include=db.include_tables,
        exclude=db.exclude_tables, kinds=_kinds(db), compression=db.compression,
        compression_level=db.compression_level, batch_rows=db.batch_rows, jobs=db.jobs, chunk_rows=db.chunk_rows,
        require_consistent=db.require_consistent, source_url=db.display_url(), database=db.url.database)
    encryption = new_backup_encryption(db.encryption)
    remote = is_remote(backup_dir)
    targets = list(repos or []) + ([Repository(open_storage(str(backup_dir)))] if remote else [])
    staging = temp_workdir(workdir) if remote or not str(backup_dir) else None
    try:
        sink = Uploader(targets, bid) if targets else None
        res = run_dump(engine, adapter, staging or Path(backup_dir), opts, bid, progress, encryption, sink)
        if remote:
            res.location = f"{str(backup_dir).rstrip('/')}/{res.path.name}"
        return res
    finally:
        engine.dispose()
        if staging is not None:
            remove_workdir(staging)


@contextlib.contextmanager
def backup_at(location: Path | str, enc: EncryptionConfig = NO_ENCRYPTION, workdir: Path | None = None,
              options: StorageOptions | None = None) -> Iterator[Backup]:
    """The backup at a folder or an s3:// URL (chunks of a remote one are fetched when read)."""
    if is_remote(location):
        tmp = temp_workdir(workdir)
        try:
            yield open_remote_backup(str(location), tmp, keyring(enc), enc.expects_encrypted, options)
        finally:
            remove_workdir(tmp)
    else:
        yield Backup(location, keyring(enc), require_encryption=enc.expects_encrypted)


def open_backup(path: Path | str, enc: EncryptionConfig = NO_ENCRYPTION) -> Backup:
    """Open a local backup for reading with the keys ``enc`` names (an encrypted backup needs them)."""
    return Backup(path, keyring(enc), require_encryption=enc.expects_encrypted)


def storage_options_for(location: Path | str, destinations: Any) -> StorageOptions | None:
    """The options of the configured destination that ``location`` lies under (endpoint, keys)."""
    loc = str(location)
    for d in destinations or ():
        if loc.startswith(d.url.rstrip("/") + "/"):
            return d.options
    return None


def restore(backup_path: Path | str, db: DatabaseConfig, opts: RestoreOptions,
            progress: Progress | None = None) -> RestoreResult:
    options = storage_options_for(backup_path, db.destinations)
    with backup_at(backup_path, db.encryption, options=options) as backup:   # refused before connecting if bad
        return _restore(backup, db, opts, progress)


def _restore(backup: Backup, db: DatabaseConfig, opts: RestoreOptions, progress: Progress | None) -> RestoreResult:
    if not opts.allow_restore and not opts.plan_only:
        raise RestoreRefused(f"restore into {db.display_url()} refused: allow_restore is not set "
                             "(set allow_restore: true in the config, or --allow-restore with --url)")
    label = db.display_url()
    if opts.plan_only and db.url.get_backend_name() == "sqlite" and not Path(db.url.database or "").is_file():
        db = replace(db, url=db.url.set(database=":memory:"))   # a plan creates no file
    engine, adapter = connect(db, must_exist=False)
    adapter.set_lock_timeout(engine, opts.lock_timeout)
    try:
        return Restorer(backup, engine, adapter, opts, label, progress).run()
    finally:
        engine.dispose()


def verify(path: Path | str, enc: EncryptionConfig = NO_ENCRYPTION,
           options: StorageOptions | None = None) -> VerifyResult:
    with backup_at(path, enc, options=options) as b:
        res = verify_backup(b)
        res.path = Path(str(path)) if not is_remote(path) else res.path
        res.location = str(path)
        return res


def inspect_backup(path: Path | str, enc: EncryptionConfig = NO_ENCRYPTION,
                   options: StorageOptions | None = None) -> dict[str, Any]:
    if is_remote(path):
        parent, bid = split_location(str(path))
        tmp = temp_workdir()
        try:
            Repository(open_storage(parent, options)).storage.download(f"{bid}/{MANIFEST}", tmp / bid / MANIFEST)
            plain = read_manifest(tmp / bid)
        finally:
            remove_workdir(tmp)
    else:
        plain = read_manifest(path)
    if "encryption" in plain and not enc.can_read:
        # without a key only the plaintext header can be shown
        header = plain["encryption"]
        return {"backup": str(path), "id": split_location(str(path))[1], "format_version": plain["format_version"],
                "albackup_version": plain.get("albackup_version"), "created_at": plain.get("created_at"),
                "encrypted": True, "cipher": header.get("cipher"),
                "key_slots": [{k: v for k, v in slot.items() if k in ("type", "kdf", "n", "r", "p", "key_id")}
                              for slot in header.get("slots") or []]}
    with backup_at(path, enc, options=options) as b:
        return _describe(b, str(path))


def _describe(b: Backup, location: str) -> dict[str, Any]:
    m = b.manifest
    tables = []
    for t in b.schema.tables:
        e = b.tables[t.key]
        tables.append({
            "table": t.key, "rows": e["rows"], "bytes": sum(int(c["bytes"]) for c in e["chunks"]),
            "chunks": len(e["chunks"]),
            "columns": [{"name": c.name, "type": c.type.describe(), "original_type": c.original_type,
                         "nullable": c.nullable} for c in t.columns],
            "primary_key": t.primary_key, "foreign_keys": len(t.foreign_keys), "indexes": len(t.indexes),
        })
    return {"backup": location, "id": b.id, "format_version": m["format_version"],
            "albackup_version": m.get("albackup_version"), "created_at": m.get("created_at"),
            "name": m.get("name"), "host": m.get("host"), "source": m.get("source"),
            "consistency": m.get("consistency"), "compression": m.get("compression"),
            "skipped": m.get("skipped"), "totals": m.get("totals"),
            "encrypted": b.encryption is not None,
            "routines": [{"kind": r.kind, "name": r.name} for r in b.schema.routines], "tables": tables}


def compare(source: DatabaseConfig, copy: DatabaseConfig) -> "Comparison":
    """Compare two live databases: schema (with original types on one engine) and data."""
    src_engine, src_adapter = connect(source)
    try:
        dst_engine, dst_adapter = connect(copy)
        try:
            return compare_databases(src_engine, src_adapter, dst_engine, dst_adapter,
                                     list(source.schemas), source.include_tables,
                                     source.exclude_tables)
        finally:
            dst_engine.dispose()
    finally:
        src_engine.dispose()


# --------------------------------------------------------------------------------- test_all
@dataclass
class TestAllEntry:
    name: str
    status: str = "ok"            # ok | different | error | skipped
    tables: int = 0
    rows: int = 0
    differences: list[str] = field(default_factory=list)
    error: str | None = None
    dump_seconds: float = 0.0
    restore_seconds: float = 0.0
    backup: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TestAllResult:
    entries: list[TestAllEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        ran = [e for e in self.entries if e.status != "skipped"]
        return bool(ran) and all(e.status == "ok" for e in ran) and sum(e.tables for e in ran) > 0


def identity(engine: sa.Engine, adapter: Adapter) -> tuple[Any, ...] | None:
    """The database ``engine`` connects to, as its server names it (Adapter.server_identity)."""
    with engine.connect() as conn:
        return adapter.server_identity(conn)


def refuse_same(source: DatabaseConfig, src: tuple[Any, ...] | None, target: DatabaseConfig,
                dst: tuple[Any, ...] | None) -> None:
    """TargetIsSource when ``target`` is ``source``'s database: by the servers' identities
    (``src``, ``dst``) where both are known, else by the URLs (config.url_identity)."""
    if src is not None and dst is not None:
        same = src == dst
    else:
        same = url_identity(source.url) == url_identity(target.url)
    if same:
        raise TargetIsSource(f"scratch target {target.display_url()} is the database of {source.name} "
                             f"({source.display_url()}): the same server and database; test_all would "
                             "overwrite it, so nothing was written (give the scratch target another database)")


def _guard_scratch(cfg: TestAllConfig) -> None:
    """Before anything runs: no database is its scratch target (each reachable one asked)."""
    if cfg.scratch is None:
        return
    dst = _identity_of(cfg.scratch, must_exist=False)
    for db in cfg.databases:
        if not db.skip:
            refuse_same(db, _identity_of(db), cfg.scratch, dst)


def _identity_of(db: DatabaseConfig, must_exist: bool = True) -> tuple[Any, ...] | None:
    """``db``'s identity, or None where it cannot be reached now (its own run reports that; a
    source's missing SQLite file is not made here)."""
    try:
        engine, adapter = connect(db, must_exist=must_exist)
    except DatabaseUnavailable:
        return None
    try:
        return identity(engine, adapter)
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def _scratch(db: DatabaseConfig, adapter: Adapter, workdir: Path) -> tuple[DatabaseConfig, Callable[[], None]]:
    """A scratch database on the source's own server (a temporary file for SQLite)."""
    url, drop = adapter.create_scratch(db.url, workdir)
    return replace(db, url=url, allow_restore=True, source=f"scratch for {db.name}"), drop


def test_all(cfg: TestAllConfig, *, workdir: Path | None = None, progress: Progress | None = None,
             after_restore: Callable[[DatabaseConfig, DatabaseConfig], None] | None = None) -> TestAllResult:
    """Dump, restore into scratch, compare. ``after_restore(source, scratch)`` runs between restore
    and compare (a hook: tests use it to plant differences)."""
    res = TestAllResult()
    _guard_scratch(cfg)
    tmp = Path(tempfile.mkdtemp(prefix="albackup-test-all-", dir=workdir))
    try:
        for db in cfg.databases:
            entry = TestAllEntry(db.name)
            res.entries.append(entry)
            if db.skip:
                entry.status = "skipped"
                continue
            try:
                _test_one(db, cfg.scratch, tmp, entry, progress, after_restore)
            except TargetIsSource:
                raise
            except AlbackupError as exc:
                entry.status = "error"
                entry.error = f"{type(exc).__name__}: {mask_secrets(exc.message, db_password(db))}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def _test_one(db: DatabaseConfig, scratch: DatabaseConfig | None, tmp: Path, entry: TestAllEntry,
              progress: Progress | None,
              after_restore: Callable[[DatabaseConfig, DatabaseConfig], None] | None) -> None:
    t0 = time.monotonic()
    stored: Repository | None = None
    if db.destinations:   # the whole way: up to the first destination and back from it
        dest = db.destinations[0]
        safe = re.sub(r"[^\w.-]", "_", db.name)
        stored = Repository(open_storage(dest.url, dest.options), f"test_all/{safe}")
        d = dump(db, "", progress=progress, repos=[stored], workdir=tmp)
        location: str | Path = f"{dest.url.rstrip('/')}/{stored.prefix}/{d.path.name}"
    else:
        d = dump(db, tmp / "backups", progress=progress)
        location = d.path
    entry.dump_seconds = round(time.monotonic() - t0, 3)
    entry.backup = str(location)
    try:
        _compare_copy(db, scratch, tmp, entry, progress, after_restore, d, location)
    finally:
        if stored is not None:
            stored.delete(d.path.name)


def _compare_copy(db: DatabaseConfig, scratch: DatabaseConfig | None, tmp: Path, entry: TestAllEntry,
                  progress: Progress | None, after_restore: Callable[[DatabaseConfig, DatabaseConfig], None] | None,
                  d: DumpResult, location: str | Path) -> None:
    if d.tables == 0:
        entry.status, entry.error = "error", "the database has no tables: nothing to compare"
        return
    src_engine, src_adapter = connect(db)
    drop: Callable[[], None] = lambda: None  # noqa: E731
    try:
        if scratch is None:
            target, drop = _scratch(db, src_adapter, tmp)
        else:
            target = scratch
            dst_engine, dst_adapter = connect(target, must_exist=False)
            try:    # asked again just before the restore: the guard at the start may have found one down
                refuse_same(db, identity(src_engine, src_adapter), target, identity(dst_engine, dst_adapter))
            finally:
                dst_engine.dispose()
        t1 = time.monotonic()
        opts = db.destinations[0].options if db.destinations else None
        with backup_at(location, db.encryption, options=opts) as backup:
            _restore(backup, replace(target, encryption=db.encryption),
                     RestoreOptions(allow_restore=True, clean=scratch is not None,
                                    enable_ri_check=db.enable_ri_check, jobs=db.jobs,
                                    lock_timeout=target.lock_timeout), progress)
        entry.restore_seconds = round(time.monotonic() - t1, 3)
        if after_restore is not None:
            after_restore(db, target)
        dst_engine, dst_adapter = connect(target)
        try:
            cmp = compare_databases(src_engine, src_adapter, dst_engine, dst_adapter,
                                    list(db.schemas), db.include_tables, db.exclude_tables,
                                    ignore_extra=scratch is not None)
        finally:
            dst_engine.dispose()
        entry.tables, entry.rows, entry.differences = cmp.tables, cmp.rows, cmp.differences
        if cmp.differences:
            entry.status = "different"
        elif cmp.tables == 0:
            entry.status = "error"
            entry.error = "no table was compared"
    finally:
        src_engine.dispose()
        drop()


def require_ok(result: TestAllResult) -> None:
    if not result.ok:
        bad = [e.name for e in result.entries if e.status not in ("ok", "skipped")]
        raise CompareFailed(f"test_all failed for {', '.join(bad) if bad else 'every database (nothing compared)'}")
