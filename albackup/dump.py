"""Dump: one snapshot, reflect, stream every table into chunk files, publish with the manifest."""
from __future__ import annotations

import logging
import operator
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .archive import (LARGE_FEATURE, TEXT_ENCODING, TEXT_FEATURE, BackupWriter, ChunkWriter, Encryption, MAX_FRAME,
                      new_manifest)
from .engines.base import Adapter, database_error_line
from .errors import AlbackupError, ArchiveError, DumpError, RowTooLarge
from .gcpause import gc_paused
from .pgtext import ORDERED as ORDERED_FEATURE
from .pgtext import CopyTextRefused
from .model import Table
from .progress import Reporter, as_reporter
from .reflect import reflect_schema, resolve_schemas
from .units import Schedule, Unit, UnitResult, key_jsonable, plan_tables
from .codec import has_large, pack_each, row_packer
from .values import Converter, combine_v2

log = logging.getLogger(__name__)

#: a chunk file is closed and a new one started past this many stored bytes
CHUNK_BYTES = 256 << 20
#: a frame is cut short past this many (estimated) raw bytes, whatever its row count
BATCH_BYTES = 16 << 20

Progress = Callable[[str, int, int, float], None]   # table, rows, bytes, seconds


@dataclass
class DumpOptions:
    name: str
    host: str
    #: schema globs (None: the default schema); none: every schema (reflect.resolve_schemas)
    schemas: list[str | None] = field(default_factory=list)
    exclude_schemas: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    kinds: set[str] = field(default_factory=lambda: {"view", "trigger", "routine"})
    compression: str = "zstd"
    compression_level: int | None = None
    batch_rows: int = 5000
    require_consistent: bool = False
    jobs: int = 1
    chunk_rows: int = 1_000_000
    source_url: str = ""
    database: str | None = None


def _refuse_empty(conn: Connection, adapter: Adapter, opts: DumpOptions) -> None:
    """A dump that found no table where the database has some (in schemas it left out) fails."""
    chosen, skipped = resolve_schemas(conn, adapter, opts.schemas, opts.exclude_schemas)
    n = adapter.tables_elsewhere(conn, skipped) if skipped else 0
    if n:
        default = sa.inspect(conn).default_schema_name
        read = ", ".join(s or str(default) for s in chosen) or "none"
        raise DumpError(f"no table in schema(s) {read}; the database has {n} table(s) in the schema(s) left out: "
                        f"{', '.join(skipped)} (see --schema/--exclude-schema and the schemas key)")


@dataclass
class DumpResult:
    path: Path
    tables: int
    rows: int
    bytes: int
    seconds: float
    consistency: dict[str, Any]
    manifest: dict[str, Any]
    location: str = ""       # where the backup was published (a folder or an s3:// URL)

    def __post_init__(self) -> None:
        self.location = self.location or str(self.path)


def _convert_batch(table: Table, convert: Callable[[list[Any]], list[Any]] | None,
                   readers: list[Converter], raw: list[Any]) -> list[Any]:
    if convert is None:
        return raw
    try:
        return convert(raw)
    except Exception:
        for r in raw:
            for f, v, c in zip(readers, r, table.columns):
                try:
                    f(v)
                except Exception as exc:
                    raise DumpError(f"table {table.key}, column {c.name}: cannot read a value as "
                                    f"{c.type.describe()} ({type(exc).__name__}: {exc})") from None
        raise


def _frames(packed: list[bytes], total: int) -> Iterator[list[bytes]]:
    """Cut packed rows (``total`` bytes) into frames of at most about BATCH_BYTES (a frame holds
    at least one row, and stays below the format's MAX_FRAME unless that row alone does not)."""
    if total < BATCH_BYTES:
        yield packed
        return
    start = size = 0
    for i, n in enumerate(map(len, packed)):
        if start < i and size + n >= MAX_FRAME - 8:     # a wide row goes on a frame of its own
            yield packed[start:i]
            start, size = i, 0
        size += n
        if size >= BATCH_BYTES:
            yield packed[start:i + 1]
            start, size = i + 1, 0
    if start < len(packed):
        yield packed[start:]


def dump_unit(conn: Connection, adapter: Adapter, writer: BackupWriter, unit: Unit, opts: DumpOptions,
              progress: Reporter) -> UnitResult:
    """Dump one unit into its chunk file(s); a whole-table unit rolls over past CHUNK_BYTES."""
    try:
        return _dump_unit(conn, adapter, writer, unit, opts, progress)
    except RowTooLarge as exc:
        raise RowTooLarge(f"table {unit.table.key}: {exc}") from None


def _dump_unit(conn: Connection, adapter: Adapter, writer: BackupWriter, unit: Unit, opts: DumpOptions,
               progress: Reporter) -> UnitResult:
    with gc_paused():
        if unit.ranged and adapter.copy_text_ok(conn, unit.table, scan=False):
            # a range is one chunk file, dropped whole if the guarded COPY refuses a row: the
            # pass over the range that looks for such rows is the COPY itself
            try:
                return _dump_unit_text(conn, adapter, writer, unit, progress, guard=True)
            except CopyTextRefused:
                log.debug("%s: a value COPY text cannot carry; read by value", unit.label)
                return _dump_unit_rows(conn, adapter, writer, unit, opts, progress, started=True)
        if adapter.copy_text_ok(conn, unit.table, unit.where, unit.params):
            return _dump_unit_text(conn, adapter, writer, unit, progress)
        return _dump_unit_rows(conn, adapter, writer, unit, opts, progress)


def _dump_unit_rows(conn: Connection, adapter: Adapter, writer: BackupWriter, unit: Unit, opts: DumpOptions,
                    progress: Reporter, started: bool = False) -> UnitResult:
    table = unit.table
    label = unit.label
    if not started:
        progress.table_started(label, unit.estimate)
    readers = [adapter.reader(c.type) for c in table.columns]
    convert = adapter.batch_reader([c.type for c in table.columns])
    pack = row_packer()
    types = [c.type for c in table.columns]
    infos = []
    chunk_no = unit.chunk_no
    chunk: ChunkWriter = writer.chunk(unit.table_no, chunk_no, types)
    read = 0
    t0 = time.monotonic()
    held: list[bytes] = []      # rows waiting for a frame: fetches may be smaller than frames
    held_bytes = 0
    # a key page: its last key (each batch comes in key order; rows held back for their large
    # values come last, also in key order, so the last key is the greatest of the batches' last)
    names = [c.name for c in table.columns]
    key_of = (operator.itemgetter(*[names.index(k) for k in unit.range["key"]])
              if unit.limit and unit.range else None)
    last: Any = None
    try:
        for raw in adapter.stream(conn, table, opts.batch_rows, unit.where, unit.params):
            read += len(raw)
            rows = _convert_batch(table, convert, readers, raw)
            del raw
            if key_of is not None and rows:
                k = key_of(rows[-1])
                last = k if last is None or k > last else last
            try:
                packed = pack_each(pack, rows)
            except ArchiveError:
                if not any(has_large(r) for r in rows):
                    raise
                packed = []     # rows with values too large to hold: written piece by piece
                for r in rows:
                    if has_large(r):
                        chunk.write_large_row(r)
                    else:
                        packed.append(pack(r))
            del rows
            held += packed
            held_bytes += sum(map(len, packed))
            del packed
            if len(held) < opts.batch_rows and held_bytes < BATCH_BYTES:
                continue
            for frame in _frames(held, held_bytes):
                chunk.write_packed(frame)
            held, held_bytes = [], 0
            progress.advanced(label, read, chunk.bytes_written)
            if chunk.bytes_written >= CHUNK_BYTES and not unit.ranged:
                infos.append(chunk.close())
                chunk_no += 1
                chunk = writer.chunk(unit.table_no, chunk_no, types)
        for frame in _frames(held, held_bytes):
            chunk.write_packed(frame)
        progress.advanced(label, read, chunk.bytes_written)
        if unit.limit and read == 0 and unit.chunk_no > 1:
            chunk.abort()       # the page after a full last page: nothing, and no chunk file
            progress.table_done(label, 0, 0, time.monotonic() - t0)
            return UnitResult(0, [], 0, time.monotonic() - t0, None)
        infos.append(chunk.close())
    except BaseException:
        chunk.abort()
        raise
    if key_of is not None and last is not None:
        last = last if len(unit.range["key"]) > 1 else (last,)
    return _unit_done(unit, infos, read, t0, progress, "read {read} rows but wrote {written}", last)


def _unit_done(unit: Unit, infos: list[Any], read: int, t0: float, progress: Reporter, mismatch: str,
               last: tuple[Any, ...] | None = None) -> UnitResult:
    """A unit's chunk files written: their rows checked against the rows ``read`` (``mismatch``
    says it otherwise), the unit reported done, and its result with the manifest's chunk entries
    (a key page's range ends at its ``last`` key, or runs to the end when it was not full)."""
    written = sum(c.rows for c in infos)
    if written != read:
        raise DumpError(f"table {unit.table.key}: {mismatch.format(read=read, written=written)}")
    secs = time.monotonic() - t0
    progress.table_done(unit.label, read, sum(c.bytes for c in infos), secs)
    chunks = [c.to_dict() for c in infos]
    if unit.range is not None:
        chunks[0]["range"] = unit.range
        if unit.limit and last is not None and read >= unit.limit:
            chunks[0]["range"] = dict(unit.range, upto=[key_jsonable(v) for v in last])
    return UnitResult(0, chunks, read, secs, last)


def _dump_unit_text(conn: Connection, adapter: Adapter, writer: BackupWriter, unit: Unit,
                    progress: Reporter, guard: bool = False) -> UnitResult:
    """Dump one unit as the server's COPY text (pgtext.py): frames of whole lines go from the
    COPY's pipe to the chunk writer on a helper thread; no value becomes a Python object. A
    range the plan marked ``ordered`` is read in key order and hashed whole (pgtext.ORDERED)."""
    table = unit.table
    label = unit.label
    progress.table_started(label, unit.estimate)
    types = [c.type for c in table.columns]
    infos: list[Any] = []
    order_by = list(unit.range["key"]) if unit.ordered and unit.range and unit.range.get("key") else None
    state = {"chunk": writer.chunk(unit.table_no, unit.chunk_no, types, text=True, ordered=bool(order_by)),
             "no": unit.chunk_no}
    t0 = time.monotonic()

    def on_frame(data: bytes) -> None:
        chunk = state["chunk"]
        chunk.write_text(data)
        progress.advanced(label, sum(i.rows for i in infos) + chunk.rows, chunk.bytes_written)
        if chunk.bytes_written >= CHUNK_BYTES and not unit.ranged:
            infos.append(chunk.close())
            state["no"] += 1
            state["chunk"] = writer.chunk(unit.table_no, state["no"], types, text=True)

    try:
        sent = adapter.copy_text(conn, table, unit.where, unit.params, on_frame, guard=guard, order_by=order_by)
        infos.append(state["chunk"].close())
    except BaseException:
        state["chunk"].abort()
        raise
    if sent < 0:        # the driver did not say: the lines written are the count
        sent = sum(c.rows for c in infos)
    return _unit_done(unit, infos, sent, t0, progress, "the server sent {read} rows but {written} were written")


def _in_key_order(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A table's chunk entries in the order of their key ranges where those are ranges of one
    integer key (units.KeyRanges hands the rest of a full range out after ranges past it), each
    range running up to where the next starts: a range read empty left no chunk file, and the
    range before it takes its keys (none of which is a row)."""
    ranges = [c.get("range") or {} for c in chunks]
    if len(chunks) < 2 or not all("key" in r and len(r["key"]) == 1 for r in ranges):
        return chunks
    if not all(type(v) is int for r in ranges for e in ("after", "upto") if r.get(e) is not None for v in r[e]):
        return chunks
    out = sorted(chunks, key=lambda c: (c["range"]["after"] is not None, c["range"]["after"] or []))
    for a, b in zip(out, out[1:]):
        upto, after = a["range"]["upto"], b["range"]["after"]
        if upto is None or after is None or upto > after:
            raise DumpError(f"internal error: the key ranges of a table overlap ({a['file']}, {b['file']})")
        if upto < after:
            a["range"] = dict(a["range"], upto=after)
    return out


def _table_entry(results: list[UnitResult]) -> dict[str, Any]:
    chunks = _in_key_order([c for r in results for c in r.chunks])
    if chunks and chunks[-1].get("range", {}).get("upto") is not None and "key" in chunks[-1]["range"]:
        # a full last key page (the page after it was empty): it runs to the end
        chunks[-1]["range"] = dict(chunks[-1]["range"], upto=None)
    return {"rows": sum(r.rows for r in results), "bytes": sum(int(c["bytes"]) for c in chunks),
            "seconds": round(sum(r.seconds for r in results), 3),
            "content_hash": combine_v2([c["content_hash"] for c in chunks]), "chunks": chunks}


def _as_dump_error(exc: BaseException, backup_dir: Path, dbapi: Any = None) -> DumpError | None:
    """Database and file-system failures become a DumpError; everything else passes as it is.
    ``dbapi``: the driver module, whose own errors (raised by the raw cursors the data path
    reads with, not wrapped by SQLAlchemy) are database failures too."""
    if isinstance(exc, AlbackupError):
        return None
    first = database_error_line(exc, dbapi)
    if first is not None:
        return DumpError(f"database error during dump: {first}")
    if isinstance(exc, OSError):
        return DumpError(f"cannot write the backup under {backup_dir}: {exc.strerror or exc}")
    return None


def run_dump(engine: sa.Engine, adapter: Adapter, backup_dir: Path, opts: DumpOptions, bid: str,
             progress: Progress | Reporter | None = None, encryption: Encryption | None = None,
             sink: Any = None) -> DumpResult:
    """Dump into ``backup_dir``. ``sink`` (a repository.Uploader) receives each chunk file as it
    is finished and the published backup last; if it fails, nothing is published anywhere."""
    t0 = time.monotonic()
    reporter = as_reporter(progress)
    writer = BackupWriter(backup_dir, bid, opts.compression, opts.compression_level, encryption)
    try:
        with engine.connect() as conn:
            parallel = opts.jobs > 1 and adapter.supports_parallel_dump
            if opts.jobs > 1 and not parallel:
                log.info("%s dumps are read by one connection: -j %d is ignored (its snapshot cannot be "
                         "shared with other connections)", adapter.name, opts.jobs)
            lock_refused = adapter.lock_for_snapshot(conn) if parallel else None
            snap = adapter.begin_snapshot(conn)
            token = adapter.export_snapshot(conn) if parallel else None
            pool = None
            if parallel:
                from .parallel import DumpPool

                pool = DumpPool(engine, adapter, writer, opts, token, reporter)
                try:
                    pool.start(opts.jobs)
                except BaseException:
                    pool.close()       # the workers that did start
                    raise
                finally:
                    adapter.release_snapshot_lock(conn)
                snap = pool.consistency(snap, lock_refused)
            try:
                if opts.require_consistent and not snap.consistent:
                    raise DumpError(f"no consistent snapshot could be had ({snap.detail}); "
                                    "require_consistent is set")
                version = adapter.server_version(conn)
                schema = reflect_schema(conn, adapter, opts.schemas, opts.include, opts.exclude, opts.kinds,
                                        opts.exclude_schemas)
                if opts.include and not schema.tables:
                    raise DumpError(f"no table matches the include globs {', '.join(opts.include)}")
                if not schema.tables:
                    _refuse_empty(conn, adapter, opts)
                units: list[Unit] = []
                schedule = Schedule(plan_tables(conn, adapter, schema.tables, opts.chunk_rows,
                                                opts.jobs if pool is not None else 1))

                def planned() -> Iterator[tuple[int, Unit] | None]:
                    """Units as workers come free (key boundaries found on ``conn``), None while
                    the next one waits for a unit being read (a key page's last key)."""
                    for u in schedule:
                        if u is None:
                            yield None
                            continue
                        units.append(u)
                        yield len(units) - 1, u

                def finished(r: UnitResult) -> None:
                    schedule.done(units[r.index], r.rows, r.last)

                if pool is not None:
                    done = pool.run(planned(), sink, finished)
                else:
                    done = []
                    for item in planned():
                        if item is None:     # one connection: every unit handed out is done
                            raise DumpError("internal error: a dump unit waits for itself")
                        i, unit = item
                        r = dump_unit(conn, adapter, writer, unit, opts, reporter)
                        r.index = i
                        done.append(r)
                        finished(r)
                        if sink is not None:
                            for c in r.chunks:
                                sink.add_chunk(writer.tmp / c["file"], c["file"], c["sha256"])
            finally:
                if pool is not None:
                    pool.close()
            by_table: dict[int, list[UnitResult]] = {}
            for r in sorted(done, key=lambda r: (units[r.index].table_no, units[r.index].chunk_no)):
                by_table.setdefault(units[r.index].table_no, []).append(r)
            tables: dict[str, Any] = {}
            for no, table in enumerate(schema.tables, start=1):
                tables[table.key] = _table_entry(by_table.get(no, []))
                if len(by_table.get(no, [])) > 1:
                    reporter.table_done(table.key, tables[table.key]["rows"], tables[table.key]["bytes"],
                                        tables[table.key]["seconds"])
            skipped = [k for k in ("view", "trigger", "routine") if k not in opts.kinds]
        rows = sum(t["rows"] for t in tables.values())
        size = sum(t["bytes"] for t in tables.values())
        manifest = new_manifest(
            name=opts.name, host=opts.host,
            source={"engine": adapter.name, "dialect": engine.dialect.name, "driver": engine.dialect.driver,
                    "server_version": version,
                    "url": opts.source_url, "database": opts.database},
            consistency=snap.to_dict(),
            compression=writer.compressor.name,
            skipped=[{"kind": k, "reason": "not requested"} for k in skipped],
            schema=schema.to_dict(),
            tables=tables,
            totals={"tables": len(tables), "rows": rows, "bytes": size},
        )
        if any(c.get("large_values") for t in tables.values() for c in t["chunks"]):
            manifest["features"] = [*manifest["features"], LARGE_FEATURE]
        if any(c.get("encoding") == TEXT_ENCODING for t in tables.values() for c in t["chunks"]):
            manifest["features"] = [*manifest["features"], TEXT_FEATURE]
        if any(c.get("line_order") for t in tables.values() for c in t["chunks"]):
            manifest["features"] = [*manifest["features"], ORDERED_FEATURE]
        if sink is not None:
            sink.wait_chunks()
        path = writer.commit(manifest)
        if sink is not None:
            try:
                sink.finish(path)
            except BaseException:
                import shutil

                shutil.rmtree(path, ignore_errors=True)   # not published remotely: not a backup here either
                raise
    except BaseException as exc:
        writer.abort()
        if sink is not None:
            sink.abort()
        mapped = _as_dump_error(exc, backup_dir, engine.dialect.dbapi)
        if mapped is None:
            raise
        raise mapped from None
    return DumpResult(path, len(tables), rows, size, time.monotonic() - t0, snap.to_dict(), manifest)
