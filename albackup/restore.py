"""Restore: plan, refuse what is unsafe, create, load, constrain, validate, reset, rehash.

A failure at any step rolls back what can be rolled back and drops every table this restore
created, then reports the restore as failed.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateTable

from .archive import Backup
from .codec import LargeBase
from .ddl import Plan, TablePlan, build_plan, constraint_label, create_table_sql, fit_name, plan_sql
from .engines.base import Adapter, Step, causes
from .errors import AlbackupError, IntegrityError, LockTimeout, RestoreError, RestoreRefused
from .gcpause import gc_paused
from .model import Column, Table
from .progress import as_reporter
from .reflect import matches
from .units import key_range_where, row_cost
from .mapping import _ident
from .values import HASH_V2, ColumnRowHashes, EchoHash, RowHash, batch_converter, combine_v2, normalizing_kind

log = logging.getLogger(__name__)


@dataclass
class LossReport:
    table: str
    column: str
    source_type: str
    target_type: str
    reason: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RestoreResult:
    target: str
    tables: list[dict[str, Any]] = field(default_factory=list)
    losses: list[LossReport] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    ddl: list[str] = field(default_factory=list)
    #: what --clean refuses to take away: objects outside the backup that depend on what it drops
    refused: list[str] = field(default_factory=list)
    planned_only: bool = False
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t["rows"] for t in self.tables)


def select_tables(backup: Backup, include: tuple[str, ...], exclude: tuple[str, ...]) -> list[Table]:
    return [t for t in backup.schema.tables if matches(t.key, t.name, include, exclude)]


def _count_chunk(backup: Backup, key: str, lossy: list[tuple[int, Any]], chunk: int) -> list[list[int]]:
    """Rows of one chunk file affected by each loss of each lossy column."""
    counts = [[0] * len(c.move.losses) for _, c in lossy]
    for batch in backup.iter_chunk(key, chunk, lazy_large=True):   # large values stay in pieces
        for k, (i, c) in enumerate(lossy):
            values = _column_values(batch, i)
            for j, loss in enumerate(c.move.losses):
                if _may_affect(loss, values):
                    counts[k][j] += sum(1 for v in values if _affects(loss, v))
    return counts


def _column_values(batch: list[Any], i: int) -> list[Any]:
    """The non-NULL values of column ``i`` of a batch (what a loss is tested on)."""
    return [v for v in [row[i] for row in batch] if v is not None]


def _may_affect(loss: Any, values: list[Any]) -> bool:
    """False when the loss's fast test of a whole batch says no value is affected."""
    return loss.none_affected is None or not loss.none_affected(values)


def _refuse_affected(tp: TablePlan, batch: list[Any]) -> None:
    """A batch about to be loaded, checked for values a loss of ``tp.loss_guard``'s columns would
    affect (see guard_losses): the first one refuses the restore."""
    for i, c in tp.loss_guard:
        values = _column_values(batch, i)
        for loss in c.move.losses:
            if _may_affect(loss, values) and any(_affects(loss, v) for v in values):
                raise RestoreRefused(f"restore would lose data in {tp.table.key}.{c.source.name}: {loss.reason}; "
                                     "see restore --plan, or pass --accept-lossy (the tables this restore "
                                     "created were dropped)")


def _affects(loss: Any, v: Any) -> bool:
    if isinstance(v, LargeBase):
        return bool(loss.affects_large(v)) if loss.affects_large is not None else bool(loss.affects(v.materialize()))
    return bool(loss.affects(v))


# Set in the parent just before the fork of count_losses' pool; read by its workers.
_LOSS_STATE: dict[str, Any] = {}


def _count_task(task: tuple[int, int]) -> tuple[int, list[list[int]]]:
    key, lossy = _LOSS_STATE["tables"][task[0]]
    return task[0], _count_chunk(_LOSS_STATE["backup"], key, lossy, task[1])


def count_losses(backup: Backup, plan: Plan, jobs: int = 1) -> list[LossReport]:
    """Rows affected by each lossy column, counted from the archive's data (with ``jobs`` > 1, the
    chunk files are counted by that many forked processes). A loss that affects no value of the
    backup takes its fix out of the column's conversion (where it says how)."""
    import multiprocessing

    tables = [(tp.table.key, [(i, c) for i, c in enumerate(tp.columns) if c.move.losses]) for tp in plan.tables]
    tasks = [(ti, ci) for ti, (key, lossy) in enumerate(tables) if lossy
             for ci in range(len(backup.tables[key]["chunks"]))]
    totals = [[[0] * len(c.move.losses) for _, c in lossy] for _, lossy in tables]
    if jobs > 1 and len(tasks) > 1 and not multiprocessing.current_process().daemon:
        for ti, ci in tasks:       # a stored (S3) backup's chunks are fetched here, not by the workers
            backup.chunk_path(backup.tables[tables[ti][0]]["chunks"][ci]["file"])
        _LOSS_STATE.update(backup=backup, tables=tables)
        try:
            with multiprocessing.get_context("fork").Pool(min(jobs, len(tasks))) as pool:
                results = list(pool.imap_unordered(_count_task, tasks))
        finally:
            _LOSS_STATE.clear()
    else:
        results = [(ti, _count_chunk(backup, tables[ti][0], tables[ti][1], ci)) for ti, ci in tasks]
    for ti, counts in results:
        for k, row in enumerate(counts):
            for j, n in enumerate(row):
                totals[ti][k][j] += n
    out: list[LossReport] = []
    for ti, (key, lossy) in enumerate(tables):
        for k, (i, c) in enumerate(lossy):
            for j, n in enumerate(totals[ti][k]):
                if n:
                    out.append(LossReport(key, c.source.name, c.source.type.describe(), c.target.describe(),
                                          c.move.losses[j].reason, n))
            _drop_fixes(c, totals[ti][k])
    return out


def _drop_fixes(c: Any, affected: list[int]) -> None:
    """Take out of the column's conversion the fixes of its losses that affect no value
    (``affected``: rows per loss); they wrap the conversion in order, so undo from the last."""
    for j in reversed(range(len(c.move.losses))):
        loss = c.move.losses[j]
        if affected[j] or loss.unfixed is None:
            break
        c.move.convert = loss.unfixed


def guard_losses(plan: Plan) -> None:
    """Where the restore refuses any loss (no --accept-lossy) and a refusal found late costs
    nothing (every table is created by this restore, and dropped again when it fails), the
    losses are not counted in a pass of their own over the backup: each lossy column converts
    without its fixes (no value may need them), and the load checks every batch of its values
    before it goes in (``_refuse_affected``), so the first affected value refuses the restore."""
    for tp in plan.tables:
        tp.loss_guard = [(i, c) for i, c in enumerate(tp.columns) if c.move.losses]
        for _, c in tp.loss_guard:
            _drop_fixes(c, [0] * len(c.move.losses))


def _identity_move(tp: TablePlan) -> bool:
    return all(c.move.convert is _ident for c in tp.columns)


def _converted(backup: Backup, tp: TablePlan, hasher: RowHash | None,
               on_batch: Callable[[int], None] | None, loaded_only: bool = True,
               chunk: int | None = None, lazy_large: bool = False, guard: bool = False) -> Iterator[list[Any]]:
    convert = batch_converter([None if c.move.convert is _ident else c.move.convert for c in tp.columns],
                              skip_none=True)
    keep = [i for i, c in enumerate(tp.columns) if c.loaded]
    all_loaded = len(keep) == len(tp.columns) or not loaded_only
    lazy = convert is None and lazy_large     # large values streamed only where nothing converts them
    source = (backup.iter_batches(tp.table.key, lazy) if chunk is None
              else backup.iter_chunk(tp.table.key, chunk, lazy))
    guarded = guard and bool(tp.loss_guard)
    for batch in source:
        if guarded:
            _refuse_affected(tp, batch)
        rows = batch if convert is None else convert(batch)
        if hasher is not None:
            hasher.update(rows)
        if on_batch:
            on_batch(len(rows))
        yield rows if all_loaded else [[r[i] for i in keep] for r in rows]


def _target_model(tp: TablePlan) -> Table:
    cols = [Column(sc.name, cp.target, "") for sc, cp in zip(tp.sa_table.columns, tp.columns)]
    return Table(tp.name, tp.schema, cols, partition_by=tp.table.partition_by if tp.partitioned else None)


def read_hash(conn: Connection, adapter: Adapter, table: Table, normalize: bool,
              large_values: bool = True, where: str = "", params: Any = None) -> RowHash:
    """The content hash (version 2) of a live table (or of the rows ``where`` selects, with
    ``params``), read through the adapter's dump path."""
    types = [c.type for c in table.columns]
    convert = adapter.batch_reader(types)
    h = RowHash(types, normalize)
    with gc_paused():
        for raw in adapter.stream(conn, table, 5000, where, params, large_values=large_values):
            h.update(raw if convert is None else convert(raw))
    return h


def rehash(conn: Connection, adapter: Adapter, tp: TablePlan, normalize: bool = True,
           large_values: bool = True, where: str = "", params: Any = None) -> RowHash:
    return read_hash(conn, adapter, _target_model(tp), normalize, large_values, where, params)


def _integer_key_ranges(backup: Backup, tp: TablePlan) -> tuple[list[str], list[dict[str, Any]]] | None:
    """Where every chunk of ``tp`` is a range of one integer key that the target holds (and
    loads) as integers: the key's names in the target and each chunk's range; else None."""
    ranges = [c.get("range") or {} for c in backup.tables[tp.table.key]["chunks"]]
    key = ranges[0].get("key") if ranges else None
    if not key or any(r.get("key") != key for r in ranges):
        return None
    names = [c.name for c in tp.table.columns]
    target: list[str] = []
    for k in key:
        if k not in names:
            return None
        i = names.index(k)
        if tp.table.columns[i].type.kind != "integer" or tp.columns[i].target.kind != "integer" \
                or not tp.columns[i].loaded:
            return None
        target.append(tp.sa_table.columns[i].name)
    ends = [v for r in ranges for v in (r.get("after"), r.get("upto")) if v is not None]
    if any(len(v) != len(key) or not all(type(x) is int for x in v) for v in ends):
        return None
    return target, ranges


def read_back_parts(adapter: Adapter, backup: Backup, tp: TablePlan) -> list[tuple[str, tuple[Any, ...]]]:
    """The target's rows of ``tp`` as key ranges that workers can read back side by side: cut
    at the ``after`` keys of the backup's chunks where those are ranges of integer key columns
    that the target holds as integers (integers sort alike in every engine, so the ranges hold
    every row exactly once, and their hashes add up to the table's); else one part, the whole
    table. Each part: (WHERE clause or "", its DBAPI parameters)."""
    whole = [("", ())]
    found = _integer_key_ranges(backup, tp) if len(backup.tables[tp.table.key]["chunks"]) > 1 else None
    if found is None:
        return whole
    target, ranges = found
    cuts = {tuple(r["after"]) for r in ranges if r.get("after") is not None}
    if not cuts:
        return whole
    bounds: list[tuple[Any, ...] | None] = [None, *sorted(cuts), None]
    return [key_range_where(adapter, target, lo, hi) for lo, hi in zip(bounds, bounds[1:])]


def text_key_parts(backup: Backup, tp: TablePlan) -> list[dict[str, Any]] | None:
    """The parts a table loaded as COPY text is printed back in when some of its chunks are in
    key order (pgtext.ORDERED, hashed whole): one per chunk, its key range (in the target's
    names), read in key order where the chunk is, else hashed line by line; their hashes add
    up as the load's (values.EchoHash.add of each chunk's). None: no chunk in key order, or
    chunks that are not all ranges of one integer key (then the text read back differs, and
    the values are compared)."""
    chunks = backup.tables[tp.table.key]["chunks"]
    found = _integer_key_ranges(backup, tp) if any(c.get("line_order") for c in chunks) else None
    if found is None:
        return None
    target, ranges = found
    return [{"key": target, "after": r.get("after"), "upto": r.get("upto"), "ordered": bool(c.get("line_order"))}
            for r, c in zip(ranges, chunks)]


def loaded_names(tp: TablePlan) -> list[str]:
    """The target's names of the columns a load sends, in the order it sends them."""
    return [sc.name for sc, cp in zip(tp.sa_table.columns, tp.columns) if cp.loaded]


def hash_as_converted(backup: Backup, tp: TablePlan, normalize: bool, chunk: int | None = None) -> tuple[int, str]:
    """(rows, content hash) of the backup's rows of ``tp`` (or of one chunk) as they are converted
    on their way in: the expected read-back where the manifest's hash is not."""
    h = RowHash([c.target for c in tp.columns], normalize)
    with gc_paused():
        for _ in _converted(backup, tp, h, None, chunk=chunk):
            pass
    return h.rows, h.hexdigest()


def load_chunk(conn: Connection, adapter: Adapter, backup: Backup, tp: TablePlan, chunk: int,
               hasher: RowHash | None, on_batch: Callable[[int], None] | None, echo: EchoHash | None,
               as_text: bool) -> int:
    """Load one chunk file of ``tp``; returns the rows sent. With ``as_text`` (the target takes
    the backup's COPY text as it is, see Restorer.text_load) a COPY text chunk goes in as stored
    and its lines' hash, from the manifest, is what ``echo`` expects back; every other chunk is
    decoded, converted and loaded through the adapter's writers."""
    with gc_paused():
        return _load_chunk(conn, adapter, backup, tp, chunk, hasher, on_batch, echo, as_text)


def _load_chunk(conn: Connection, adapter: Adapter, backup: Backup, tp: TablePlan, chunk: int,
                hasher: RowHash | None, on_batch: Callable[[int], None] | None, echo: EchoHash | None,
                as_text: bool) -> int:
    key = tp.table.key
    if as_text and hasher is None and backup.is_text(key, chunk):
        c = backup.tables[key]["chunks"][chunk]
        sent = [0]

        def frames() -> Iterator[bytes]:
            for data, lines in backup.iter_text(key, chunk):
                sent[0] += lines
                if on_batch:
                    on_batch(lines)
                yield data

        adapter.load_text(conn, _target_model(tp), loaded_names(tp), frames())
        n = sent[0]
        if echo is not None:
            echo.add(n, int(c["content_hash"], 16))
        return n
    return adapter.load(conn, _target_model(tp), loaded_names(tp), [cp.writer for cp in tp.loaded_columns],
                        _converted(backup, tp, hasher, on_batch, chunk=chunk, lazy_large=adapter.streams_large_values,
                                   guard=True),
                        tp.identity, echo=echo)


def has_large_values(backup: Backup, key: str) -> bool:
    """Whether the backup stored any value of this table in pieces (then the read-back looks for
    large values to read them in pieces too; otherwise none can be there)."""
    return any(c.get("large_values") for c in backup.tables[key]["chunks"])


@dataclass
class RestoreOptions:
    allow_restore: bool = False
    clean: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    accept_lossy: bool = False
    plan_only: bool = False
    enable_ri_check: bool = True
    skip_checks: bool = False
    routines: bool = True
    jobs: int = 1
    #: how the restored tables are checked: "hash" (every row read back and compared with the
    #: backup's content hash) or "count" (row counts only: faster, and trusts the load)
    read_back: str = "hash"
    #: seconds a statement of the restore waits for a lock another session holds
    lock_timeout: int = 60


class Restorer:
    def __init__(self, backup: Backup, engine: sa.Engine, adapter: Adapter, opts: RestoreOptions,
                 target_label: str, progress: Any = None) -> None:
        self.backup = backup
        self.engine = engine
        self.adapter = adapter
        self.opts = opts
        self.label = target_label
        self.progress = as_reporter(progress)
        self.created: list[TablePlan] = []
        #: --clean: what it dropped of the target (kind and name), and the tables it replaced
        #: (swapped in, see _swap), for the message of a failed restore
        self.dropped: list[str] = []
        self.replaced: list[str] = []
        self.old_left: list[str] = []
        #: --clean has begun to make the tables it replaces under new names (``_stage``)
        self.staging = False
        self._marked: set[tuple[str, str, str]] | None = None     # see _mark_objects
        self._made_names: set[str] = set()
        #: --clean: the backup's views the target holds, dropped before they are made again
        self._clean_views: list[tuple[str, str | None]] = []
        #: the table whose lock the restore is waiting for (named when the wait times out)
        self._waiting: tuple[str, str | None] | None = None
        #: the objects made after the load, in order (where the adapter orders them: _create)
        self._late: list[Step] | None = None
        #: column defaults set after what they call is made (a cycle broken, see _create_table)
        self._later_defaults: dict[str, list[str]] = {}
        #: what each table's load sent, where the read-back compares text (echo_check)
        self.echoes: dict[str, EchoHash] = {}
        #: how each table was read back: "text" (as loaded, line for line), "values" (rehashed)
        #: or "count" (rows counted, with read_back="count")
        self.read_back: dict[str, str] = {}
        if opts.read_back not in ("hash", "count"):
            raise RestoreRefused(f"read_back must be hash or count, not {opts.read_back!r}")
        self.counting = opts.read_back == "count"

    def plan(self, count: bool = True) -> tuple[Plan, RestoreResult]:
        """The restore's plan and its report; the losses are counted unless not ``count``."""
        if not self.backup.schema.tables:
            raise RestoreRefused(f"backup {self.backup.id} holds no tables: nothing to restore")
        tables = select_tables(self.backup, self.opts.include, self.opts.exclude)
        if not tables:
            raise RestoreRefused("no table of the backup matches --tables/--exclude-tables")
        plan = build_plan(self.backup.schema, tables, self.adapter, skip_checks=self.opts.skip_checks)
        res = RestoreResult(self.label)
        if count:
            res.losses = self.count_losses(plan)
        res.changes = plan.notes + [f"{tp.table.key}: {n}" for tp in plan.tables for n in tp.notes]
        if self.backup.schema.routines and plan.same_engine and (self.opts.include or self.opts.exclude
                                                                 or not self.opts.routines):
            res.changes.append("views, triggers and routines are not restored (partial restore or --no-routines)")
        res.ddl = plan_sql(plan, self.adapter)
        return plan, res

    def count_losses(self, plan: Plan) -> list[LossReport]:
        return count_losses(self.backup, plan, self.opts.jobs if self.adapter.supports_parallel_restore else 1)

    def run(self) -> RestoreResult:
        t0 = time.monotonic()
        if not self.opts.allow_restore and not self.opts.plan_only:
            raise RestoreRefused(f"restore into {self.label} refused: allow_restore is not set "
                                 "(set allow_restore: true in the config, or --allow-restore with --url)")
        with self.engine.connect() as conn:
            plan, res = self.plan(count=False)   # once connected: the dialect knows MariaDB from MySQL
            existing = self._existing(conn, plan)
            clash = [tp.name for tp in plan.tables if tp.name in existing.get(tp.schema, set())]
            held = self.adapter.clashing_objects(conn, self.backup.schema, plan.same_engine,
                                                 self._routines_wanted(plan))
            if self.opts.clean:
                self._clean_views = self.adapter.existing_views(conn, self._backup_views(plan))
                res.refused = self.adapter.clean_blockers(conn, self._clean_tables(plan, clash), self._clean_views)
        if self.opts.plan_only:
            res.losses = self.count_losses(plan)
            res.planned_only = True
            res.tables = [{"table": tp.table.key, "target": tp.name, "rows": self.backup.rows(tp.table.key),
                           "exists": tp.name in existing.get(tp.schema, set())} for tp in plan.tables]
            return res
        if clash and not self.opts.clean:
            shown = ", ".join(sorted(clash)[:10]) + (" …" if len(clash) > 10 else "")
            raise RestoreRefused(f"target {self.label} already holds {len(clash)} of the tables ({shown}); "
                                 "use --clean to drop and replace them")
        if res.refused:
            raise self._clean_refused(res.refused)
        if held and not self.opts.clean:
            shown = ", ".join(held[:10]) + (" …" if len(held) > 10 else "")
            raise RestoreRefused(f"target {self.label} already holds {len(held)} of the backup's other objects "
                                 f"({shown}); use --clean to drop and replace them")
        if self.opts.accept_lossy or clash:     # the losses are reported (or the target is not to be touched)
            res.losses = self.count_losses(plan)
        else:
            guard_losses(plan)      # checked as they load: nothing is replaced, so a late refusal costs nothing
        if res.losses and not self.opts.accept_lossy:
            first = res.losses[0]
            raise RestoreRefused(
                f"restore would lose data in {len(res.losses)} column(s), e.g. {first.table}.{first.column}: "
                f"{first.reason} ({first.rows} rows); see restore --plan, or pass --accept-lossy")
        for change in res.changes:   # a name the target cannot hold: never a silent change
            if " renamed to " in change or " restored as " in change:
                log.warning("%s", change)
        self._execute(plan, res, clash)
        for t in res.tables:
            t["read_back"] = self.read_back.get(t["table"], "values")
        res.seconds = time.monotonic() - t0
        return res

    def _existing(self, conn: Connection, plan: Plan) -> dict[str | None, set[str]]:
        return {s: self.adapter.existing_tables(conn, s) for s in {tp.schema for tp in plan.tables}}

    def _backup_views(self, plan: Plan) -> list[tuple[str, str | None]]:
        """The views this restore makes again (with the routines)."""
        if not self._routines_wanted(plan):
            return []
        return [(r.name, r.schema) for r in self.backup.schema.routines if r.kind == "view"]

    @staticmethod
    def _clean_tables(plan: Plan, clash: list[str] | set[str]) -> list[tuple[str, str | None]]:
        """The target's tables --clean drops (those the restore makes again), dependents first."""
        return [(tp.name, tp.schema) for tp in reversed(plan.tables) if tp.name in clash]

    def _clean_refused(self, blockers: list[str]) -> RestoreRefused:
        more = f" ({len(blockers) - 1} more: see restore --plan --clean)" if len(blockers) > 1 else ""
        return RestoreRefused(f"restore --clean into {self.label} refused: {blockers[0]}, is not in the backup "
                              f"and would be lost{more}; drop or change it first, or restore into another "
                              "database (nothing was changed)")

    # ---------------------------------------------------------------- the steps
    def _execute(self, plan: Plan, res: RestoreResult, clash: list[str]) -> None:
        a = self.adapter
        drops = bool(clash or self._clean_views)
        if self.opts.jobs > 1 and a.supports_parallel_restore and not (drops and a.transactional_ddl):
            return self._execute_parallel(plan, res, clash)
        if self.opts.jobs > 1:
            log.info("%s: -j %d is ignored (%s)", a.name, self.opts.jobs,
                     "--clean replaces tables in one transaction" if a.supports_parallel_restore
                     else "restores run in one connection")
        staged: list[tuple[TablePlan, str, str]] = []
        try:
            with self.engine.connect() as conn:
                if clash and a.swaps_on_clean:
                    staged = self._stage(conn, plan, set(clash))
                    conn.rollback()
                if not a.transactional_ddl:
                    self._mark_objects(conn, plan)
                with conn.begin():
                    self._create(conn, plan, [] if staged else clash, bool(staged))
                    a.begin_load(conn)
                    expected = self._load(conn, plan, res)
                    a.end_load(conn)
                    self._constraints(conn, plan)
                    if not staged:
                        self._finish(conn, plan)
                    if a.transactional_ddl:
                        self._rehash(conn, plan, expected)
                if not a.transactional_ddl:
                    # MySQL: read back after the commit. Rows still uncommitted from a bulk load
                    # (unique_checks off) cost InnoDB many times more to read; the DDL committed
                    # anyway, and a mismatch still drops every table this restore created.
                    with conn.begin():
                        self._rehash(conn, plan, expected)
                if staged:
                    with conn.begin():
                        self._validate_foreign_keys(conn, plan)     # before the target is touched
                    self._swap(conn, plan, staged, res)
                    with conn.begin():
                        self._finish(conn, plan, validated=True)
        except BaseException as exc:
            if not self.adapter.transactional_ddl:
                self._cleanup()     # elsewhere the rollback undid every CREATE (and --clean's DROPs)
            self._raise_failed(exc, bool(staged))

    def _raise_failed(self, exc: BaseException, staged: bool) -> None:
        """Raise the failure of a restore: a database error as a RestoreError saying what was
        left (``_failed_how``); albackup's own errors (also one that a failed rollback followed)
        as they are, with that added where --clean had touched the target, or would have, and
        DDL is not transactional."""
        ours = exc if isinstance(exc, AlbackupError) else \
            next((e for e in causes(exc) if isinstance(e, AlbackupError)), None)
        if ours is not None:
            if not self.adapter.transactional_ddl and (staged or self.staging or self.dropped or self.replaced):
                raise type(ours)(f"{ours.message}; restore {self._failed_how()}") from None
            raise ours from None
        mapped = self._as_restore_error(exc, self._failed_how())
        if mapped is None:
            raise exc
        raise mapped from None

    def _failed_how(self) -> str:
        """What a failed restore did to the target, for its message: rolled back only where DDL
        is transactional; elsewhere what --clean had already dropped or replaced, and that the
        tables and objects the restore made were dropped."""
        if self.adapter.transactional_ddl:
            return "failed and was rolled back"
        if self.replaced:
            names = ", ".join(self.replaced[:10]) + (" …" if len(self.replaced) > 10 else "")
            old = (f"the old ones are kept as {', '.join(self.old_left)}" if self.old_left
                   else "the old ones are gone")
            return (f"failed after --clean had replaced {len(self.replaced)} table(s) ({names}): the restored "
                    f"tables stay, holding the backup's rows (checked), and {old}; not finished")
        gone = self.dropped
        if gone:
            names = ", ".join(gone[:10]) + (" …" if len(gone) > 10 else "")
            return (f"failed after --clean had dropped {names} (they are gone; DDL is not transactional here); "
                    "the tables and objects this restore made were dropped")
        return "failed; the target is as it was (the tables and objects this restore made were dropped)"

    def _stage(self, conn: Connection, plan: Plan, clash: set[str]) -> list[tuple[TablePlan, str, str]]:
        """--clean where DDL is not transactional (adapter.swaps_on_clean): each table to replace is
        made and loaded under a new name, beside the old one, and swapped in by ``_swap`` once
        its rows are in and checked. Returns (plan, final name, name the old table takes)."""
        self.staging = True
        out = []
        limit = self.adapter.max_identifier
        for tp in plan.tables:
            if tp.name not in clash:
                continue
            new, old = fit_name(f"{tp.name}~albk-new", limit), fit_name(f"{tp.name}~albk-old", limit)
            left = self.adapter.existing_tables(conn, tp.schema) & {new, old}
            if left:
                raise RestoreRefused(f"target {self.label} holds {', '.join(sorted(left))}, left by an interrupted "
                                     "restore --clean: check it and drop it")
            out.append((tp, tp.name, old))
            # the statements right after CREATE TABLE (options, a DESC primary key) name it
            was, now = f"ALTER TABLE {self.adapter.qtable(tp.name, tp.schema)} ", \
                f"ALTER TABLE {self.adapter.qtable(new, tp.schema)} "
            if any(not sql.startswith(was) for sql in tp.after_create):
                raise RestoreError(f"table {tp.table.key}: cannot be made under a new name for --clean")
            tp.after_create = [now + sql[len(was):] for sql in tp.after_create]
            tp.name = tp.sa_table.name = new
        return out

    def _swap(self, conn: Connection, plan: Plan, staged: list[tuple[TablePlan, str, str]],
              res: RestoreResult) -> None:
        """The staged tables take the places of the old ones in one atomic RENAME TABLE; then the
        old tables, and the backup's other objects the target held, are dropped (and its
        sequences made again, at the backup's positions)."""
        a = self.adapter
        for tp, final, _ in staged:           # a lock another session holds is named when it times out
            self._waiting = (final, tp.schema)
            a.lock_for_clean(conn, final, tp.schema)
        renames = [(tp.schema, final, old) for tp, final, old in staged] + \
                  [(tp.schema, tp.name, final) for tp, final, old in staged]
        a.rename_tables(conn, renames)
        self._waiting = None
        temp = {tp.name: final for tp, final, _ in staged}
        for tp, final, _ in staged:
            tp.name = tp.sa_table.name = final
        self.replaced = [final for _, final, _ in staged]
        self.created = []        # from here a failure leaves the restored tables (their rows are checked)
        for t in res.tables:
            t["target"] = temp.get(t["target"], t["target"])
        self.old_left = [old for _, _, old in staged]
        with conn.begin():
            a.set_foreign_key_checks(conn, False)
            for tp, _, old in staged:
                a.drop_table(conn, old, tp.schema)
                self.old_left.remove(old)
            a.clean_objects(conn, self.backup.schema, plan.same_engine, self._routines_wanted(plan))
            a.prepare(conn, self.backup.schema, [tp.table for tp in plan.tables], plan.same_engine)

    def _as_restore_error(self, exc: BaseException, what: str) -> AlbackupError | None:
        """A database error (through SQLAlchemy, or the driver's own from the raw cursors the
        load and the read-back use) as a RestoreError naming the target and the first line of
        the server's message; an error of ours that a failed rollback followed, as it is; None for
        everything else (raised as it is)."""
        if isinstance(exc, AlbackupError):
            return None
        ours = [e for e in causes(exc) if isinstance(e, AlbackupError)]
        if ours:
            return ours[0]
        first = self.adapter.error_line(exc)
        if first is None:
            return None
        if self.adapter.is_lock_timeout(exc):
            return self._lock_timeout(what, first)
        return RestoreError(f"restore into {self.label} {what}: {first}")

    def _lock_timeout(self, what: str, first: str) -> LockTimeout:
        """A lock wait that outlasted lock_timeout, naming the table and who holds it."""
        waited = f"lock_timeout ({self.opts.lock_timeout} s) passed"
        if self._waiting is None:
            return LockTimeout(f"restore into {self.label} {what}: {waited} waiting for a lock: {first}")
        name, schema = self._waiting
        try:
            with self.engine.connect() as conn:
                holders = self.adapter.lock_holders(conn, name, schema)
        except Exception:      # the message goes out without them
            holders = []
        by = f" held by {'; '.join(holders)}" if holders else ""
        return LockTimeout(f"restore into {self.label} {what}: table {f'{schema}.' if schema else ''}{name} is "
                           f"locked by another session{by}; {waited}")

    def from_manifest(self, tp: TablePlan, normalize: bool) -> bool:
        """The manifest's hash is the expected one when the values go in as they are stored (and
        are compared as stored); otherwise the values are hashed as converted, on the way in.
        Not where a chunk is COPY text: its hash is that of its lines, not of its values."""
        return (HASH_V2 in self.backup.features and _identity_move(tp)
                and not (normalize and any(normalizing_kind(c.target) for c in tp.columns))
                and not self.backup.text_hashed(tp.table.key))

    def text_load(self, tp: TablePlan, same_engine: bool) -> bool:
        """Whether COPY text chunks of ``tp`` go in as stored: into the engine they came from
        (PostgreSQL), every column loaded, nothing converted, and read back as text (or only
        counted)."""
        return (same_engine and self.adapter.loads_copy_text and _identity_move(tp) and not tp.loss_guard
                and (self.counting or self.echo_for(tp)))

    def echo_for(self, tp: TablePlan) -> bool:
        """Whether the read-back of ``tp`` compares the text its load sent with the text the
        server prints back (the adapter can, every column is loaded, no value went in pieces)."""
        return (not self.counting and self.adapter.echo_check and all(cp.loaded for cp in tp.columns)
                and not has_large_values(self.backup, tp.table.key))

    def hashes_in(self, tp: TablePlan, normalize: bool) -> bool:
        """Whether the load hashes the values of ``tp`` as it converts them (the expected
        read-back where neither the text nor the manifest's hash will do)."""
        return not self.counting and not self.echo_for(tp) and not self.from_manifest(tp, normalize)

    def count_back(self, conn: Connection, tp: TablePlan) -> None:
        """read_back="count": the target's row count against the backup's."""
        rows = self.adapter.count_rows(conn, _target_model(tp))
        want = self.backup.rows(tp.table.key)
        if rows != want:
            raise IntegrityError(f"table {tp.table.key}: target holds {rows} rows after restore, expected {want}")
        self.read_back[tp.table.key] = "count"

    def expected(self, tp: TablePlan, normalize: bool) -> tuple[int, str]:
        """The read-back's expected (rows, hash) where it was not taken on the way in: the
        manifest's, or the backup's rows hashed as converted."""
        if self.from_manifest(tp, normalize):
            key = tp.table.key
            return self.backup.rows(key), combine_v2([c["content_hash"] for c in self.backup.tables[key]["chunks"]])
        return hash_as_converted(self.backup, tp, normalize)

    def echo_matches(self, conn: Connection, tp: TablePlan, echo: EchoHash, same_engine: bool) -> bool:
        """The table printed back by the server against the text its load sent: True when every
        line is the same; a different row count fails; other differences (a value the server
        spells otherwise) leave the decision to the value read-back (False)."""
        parts = (text_key_parts(self.backup, tp) if self.text_load(tp, same_engine) else None) or [None]
        rows = total = 0
        for part in parts:
            r, t = self.adapter.echo_read(conn, _target_model(tp), loaded_names(tp), part, bits=echo.bits)
            rows, total = rows + r, total + t
        return self.echo_verdict(tp, echo, rows, total)

    def echo_verdict(self, tp: TablePlan, echo: EchoHash, rows: int, total: int) -> bool:
        if rows != echo.rows:
            raise IntegrityError(f"table {tp.table.key}: target holds {rows} rows after restore, "
                                 f"expected {echo.rows}")
        if total % echo.mod == echo.total:
            self.read_back[tp.table.key] = "text"
            return True
        log.info("table %s: the server prints some values otherwise than they were loaded; "
                 "comparing the values read back with the backup instead", tp.table.key)
        return False

    def _execute_parallel(self, plan: Plan, res: RestoreResult, clash: list[str]) -> None:
        """-j N: tables created (and committed) first, then chunk files loaded by N workers in
        parallel, each table's indexes and constraints built as soon as its chunks are in (beside
        the loads of the others) and then the table read back (as text, or by value), foreign
        keys added and validated, identities reset, and what is left read back by value. Not one
        transaction: a failure drops every table this restore created (as on MySQL)."""
        from .parallel import RestorePool

        a = self.adapter
        normalize = self._normalize(plan)
        pool = None
        staged: list[tuple[TablePlan, str, str]] = []
        try:
            with self.engine.connect() as conn:
                if clash and a.swaps_on_clean:
                    staged = self._stage(conn, plan, set(clash))
                    conn.rollback()
                self._mark_objects(conn, plan)
                with conn.begin():
                    self._create(conn, plan, [] if staged else clash, bool(staged))
            for tp in plan.tables:     # a stored (S3) backup's chunks are fetched here, not by workers
                for c in self.backup.tables[tp.table.key]["chunks"]:
                    self.backup.chunk_path(c["file"])
            pool = RestorePool(self, plan, self.progress)
            pool.start(self.opts.jobs)
            loads = [(ti, ci, int(c["rows"]) * row_cost(tp.table)) for ti, tp in enumerate(plan.tables)
                     for ci, c in enumerate(self.backup.tables[tp.table.key]["chunks"])]
            echo_in = [self.echo_for(tp) for tp in plan.tables]
            hash_in = [self.hashes_in(tp, normalize) for tp in plan.tables]
            # Each table's indexes and constraints as soon as its chunks are in, beside the other
            # tables' loads; then its text read back in parts, by the workers as they come free.
            # Nothing of it changes a row. (Statements are numbered biggest table first: the
            # first failed one in that order is the one reported.)
            ddl: dict[int, list[tuple[int, str]]] = {}
            labels: list[tuple[str, bool]] = []
            by_size = sorted(range(len(plan.tables)), key=lambda ti: -self.backup.rows(plan.tables[ti].table.key))
            for ti in by_size:
                tp = plan.tables[ti]
                statements = [(f"table {tp.table.key}: {constraint_label(add.element)}",
                               str(add.compile(dialect=a.dialect)), isinstance(add.element, sa.CheckConstraint))
                              for add in tp.deferred]
                statements += [(f"table {tp.table.key}: index {ix.name}", str(CreateIndex(ix).compile(dialect=a.dialect)),
                                False) for ix in tp.indexes]
                statements += [(label, sql, False) for label, sql in tp.after_load]
                ddl[ti] = [(len(labels) + i, sql) for i, (_, sql, _) in enumerate(statements)]
                labels += [(label, is_check) for label, _, is_check in statements]

            def check(ti: int, n: int) -> str | None:
                want = self.backup.rows(plan.tables[ti].table.key)
                return None if n == want else f"table {plan.tables[ti].table.key}: loaded {n} rows, the backup holds {want}"

            with self.engine.connect() as conn:
                def echo_parts(ti: int, parts: list[Any]) -> list[Any]:
                    if not echo_in[ti] or not all(EchoHash.of(p[4]).valid for p in parts):
                        return []
                    keyed = text_key_parts(self.backup, plan.tables[ti]) if self.text_load(
                        plan.tables[ti], plan.same_engine) else None
                    if keyed:
                        return keyed
                    conn.rollback()
                    return list(a.echo_parts(conn, _target_model(plan.tables[ti])))

                def value_parts(ti: int) -> list[tuple[str, Any]]:
                    """A table not read back as text is read back by value as soon as it is built,
                    beside the other tables' loads (nothing after this changes a row)."""
                    if self.counting or echo_in[ti]:
                        return []
                    return read_back_parts(a, self.backup, plan.tables[ti])

                t_load = time.monotonic()
                loaded, got_echo, failed, wrong, early = pool.load_and_build(loads, hash_in, normalize, echo_in, ddl,
                                                                             echo_parts, check, value_parts)
                conn.rollback()
            log.debug("restore: %d chunk files loaded, %d indexes and constraints built, %d tables read back "
                      "as text and %d by value, in %.1fs", len(loads), len(labels), len(got_echo), len(early),
                      time.monotonic() - t_load)
            if wrong:
                raise RestoreError(wrong)
            if failed:
                i, why = min(failed)
                what, is_check = labels[i]
                raise RestoreError(f"{what} could not be created: {why}"
                                   + (" (use --skip-checks to restore without it)" if is_check else ""))
            expected: dict[str, tuple[int, str]] = {}
            for ti, tp in enumerate(plan.tables):
                key = tp.table.key
                parts = loaded[ti]
                n = sum(p[0] for p in parts)
                if echo_in[ti]:
                    echo = EchoHash(self.backup.line_hash_bits)
                    for p in parts:
                        echo.merge(EchoHash.of(p[4]))
                    self.echoes[key] = echo
                elif hash_in[ti]:
                    expected[key] = (sum(p[1] for p in parts), combine_v2([p[2] for p in parts]))
                elif not self.counting:
                    expected[key] = (n, combine_v2([c["content_hash"] for c in self.backup.tables[key]["chunks"]]))
                res.tables.append({"table": key, "target": tp.name, "rows": n,
                                   "seconds": round(sum(p[3] for p in parts), 3)})
            t_fin = time.monotonic()
            if not staged:      # staged: after the read-back (the workers know the tables by their new names)
                with self.engine.connect() as conn:
                    with conn.begin():
                        self._finish(conn, plan)
            log.debug("restore: foreign keys, routines and identities in %.1fs", time.monotonic() - t_fin)
            t_back = time.monotonic()
            if self.counting:
                with self.engine.connect() as conn:
                    for tp in plan.tables:
                        self.count_back(conn, tp)
            else:
                self._read_back_parallel(pool, plan, expected, normalize, got_echo, early)
            log.debug("restore: the rest read back in %.1fs", time.monotonic() - t_back)
            if staged:
                with self.engine.connect() as conn:
                    with conn.begin():
                        self._validate_foreign_keys(conn, plan)     # before the target is touched
                    self._swap(conn, plan, staged, res)
                    with conn.begin():
                        self._finish(conn, plan, validated=True)
        except BaseException as exc:
            if pool is not None:
                pool.close()
                pool = None
            self._cleanup()
            self._raise_failed(exc, bool(staged))
        finally:
            if pool is not None:
                pool.close()

    def _read_back_parallel(self, pool: Any, plan: Plan, expected: dict[str, tuple[int, str]],
                            normalize: bool, got_echo: dict[int, tuple[int, int]],
                            early: dict[int, list[tuple[int, str]]] | None = None) -> None:
        """Every table read back: as text where its load's text was kept (``got_echo``, printed
        back by the workers with the indexes), and by value where not (rehashed by the workers
        with the loads, ``early``: each part's (rows, hash), or now), or where the text differs."""
        tables = plan.tables
        by_value = [ti for ti, tp in enumerate(tables) if ti not in got_echo
                    or not self.echo_verdict(tp, self.echoes[tp.table.key], *got_echo[ti])]
        missing = [ti for ti in by_value if tables[ti].table.key not in expected]
        for ti in missing:
            if self.from_manifest(tables[ti], normalize):
                expected[tables[ti].table.key] = self.expected(tables[ti], normalize)
        to_hash = [ti for ti in missing if tables[ti].table.key not in expected]   # hashed by the workers
        hashed = pool.hash_in([(ti, ci) for ti in to_hash
                               for ci in range(len(self.backup.tables[tables[ti].table.key]["chunks"]))], normalize)
        for ti, parts in hashed.items():
            expected[tables[ti].table.key] = (sum(p[0] for p in parts), combine_v2([p[1] for p in parts]))
        early = early or {}
        late = [ti for ti in by_value if ti not in early]
        got = pool.rehash(normalize, late,
                          {ti: read_back_parts(self.adapter, self.backup, tables[ti]) for ti in late}) if late else {}
        for ti in by_value:
            if ti in early:
                got[ti] = (sum(r for r, _ in early[ti]), combine_v2([h for _, h in early[ti]]))
        for ti in by_value:
            self._check_read_back(tables[ti], *got[ti], expected[tables[ti].table.key], None)

    def _create(self, conn: Connection, plan: Plan, clash: list[str], staged: bool = False) -> None:
        """--clean's drops, schemas/types/sequences, the tables (steps 1–3). ``staged``: the
        tables to replace are made under new names (_stage), and nothing is dropped now."""
        a = self.adapter
        if clash or self._clean_views:
            self._drop_existing(conn, plan, set(clash))
        if self.opts.clean and not staged:
            self.dropped += a.clean_objects(conn, self.backup.schema, plan.same_engine, self._routines_wanted(plan))
        a.prepare(conn, self.backup.schema, [tp.table for tp in plan.tables], plan.same_engine)
        if a.orders_objects and plan.same_engine:
            # every object in one dependency order; routine bodies are not checked now (a
            # function may read a table that does not exist yet), as in pg_dump's output
            a.defer_routine_checks(conn)
            early, self._late = a.ordered_steps(self.backup.schema, plan.tables, self._routines_wanted(plan))
            self._run_steps(conn, early)
        else:
            if a.routines_before_tables and self._routines_wanted(plan):
                # functions and procedures first: a column default, check, generated column or
                # index may call one (their bodies are not checked now)
                early_routines = [r for r in self.backup.schema.routines if r.kind == "routine"]
                if early_routines:
                    a.defer_routine_checks(conn)
                    self._raise_routine_failures(a.create_routines(conn, early_routines))
            self._create_tables(conn, plan)
        a.after_create(conn, [tp.table for tp in plan.tables], plan.same_engine, self.backup.schema)

    def _run_steps(self, conn: Connection, steps: list[Step]) -> None:
        """Objects made in the order given (Adapter.ordered_steps): a table from its plan, the
        rest from their SQL; the first that cannot be made fails the restore, naming it. A
        backup that does not say what needs what (taken before albackup kept it) is made in
        turns instead: what fails is tried again once something else was made."""
        a = self.adapter
        pending: list[tuple[Step, str]] = []
        for st in steps:
            if not isinstance(st.what, str):
                if st.node.endswith("#defaults"):
                    for sql in self._later_defaults.pop(st.what.table.key, []):
                        conn.exec_driver_sql(sql)
                else:
                    self._create_table(conn, st.what, st.defaults_later)
                pending = self._retry(conn, pending)
                continue
            if st.exists and a.type_exists(conn, *st.exists):
                continue
            try:
                a.run_ddl(conn, st.what)
            except sa.exc.DBAPIError as exc:
                pending.append((st, f"{st.label}: {str(exc.orig).strip().splitlines()[0]}"))
                if self.backup.schema.depends:
                    self._raise_routine_failures([pending[0][1]])
                continue
            pending = self._retry(conn, pending)
        if pending:
            self._raise_routine_failures([why for _, why in pending])

    def _retry(self, conn: Connection, pending: list[tuple[Step, str]]) -> list[tuple[Step, str]]:
        """The steps that failed, tried again in turns while any of them succeeds; those left."""
        while pending:
            left = []
            for st, why in pending:
                try:
                    self.adapter.run_ddl(conn, st.what)
                except sa.exc.DBAPIError as exc:
                    left.append((st, f"{st.label}: {str(exc.orig).strip().splitlines()[0]}"))
            if len(left) == len(pending):
                return left
            pending = left
        return pending

    def _finish(self, conn: Connection, plan: Plan, validated: bool = False) -> None:
        """Foreign keys and their validation (unless ``validated`` already), routines, identities
        (steps 6–8), then the options that need the indexes and keys (TablePlan.last: a replica
        identity using an index), and the check of the schema made against the backup's."""
        self._foreign_keys(conn, plan, validated)
        if self._late is not None:
            self._run_steps(conn, self._late)
        elif self._routines_wanted(plan):
            self._routines(conn, plan)
        for tp in plan.tables:
            self.adapter.reset_identity(conn, tp.target_table, tp.sa_table, plan.same_engine, self.backup.schema)
        for tp in plan.tables:
            for label, sql in tp.last:
                try:
                    self.adapter.run_ddl(conn, sql)
                except sa.exc.DBAPIError as exc:
                    raise RestoreError(f"{label} could not be set: {str(exc.orig).strip().splitlines()[0]}") from None
        if plan.same_engine:
            self._check_schema(conn, plan)

    def _check_schema(self, conn: Connection, plan: Plan) -> None:
        """The target's catalogue of what was made against the backup's: anything missing or
        different fails the restore, naming the first."""
        wrong = self.adapter.check_catalogue(conn, self.backup.schema, {tp.table.key for tp in plan.tables},
                                             self._routines_wanted(plan), not self.opts.enable_ri_check)
        if wrong:
            raise RestoreError(f"restore into {self.label}: the schema made differs from the backup's: {wrong[0]}"
                               + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""))

    def _drop_existing(self, conn: Connection, plan: Plan, names: set[str]) -> None:
        """--clean: lock the tables it replaces, check again (under the locks) that nothing
        outside the backup depends on them, then drop them and the backup's views."""
        a = self.adapter
        tables = self._clean_tables(plan, names)
        for name, schema in tables:
            self._waiting = (name, schema)
            a.lock_for_clean(conn, name, schema)
        self._waiting = None
        blockers = a.clean_blockers(conn, tables, self._clean_views)
        if blockers:
            raise self._clean_refused(blockers)
        if a.drops_together:
            a.drop_for_clean(conn, tables, self._clean_views)
            self.dropped += [f"table {name}" for name, _ in tables]
        else:
            for name, schema in tables:
                self._waiting = (name, schema)
                a.drop_table(conn, name, schema)
                self.dropped.append(f"table {name}")
        self._waiting = None

    def _create_tables(self, conn: Connection, plan: Plan) -> None:
        for tp in plan.tables:
            self._create_table(conn, tp)

    def _create_table(self, conn: Connection, tp: TablePlan, defaults_later: bool = False) -> None:
        """CREATE TABLE, its options and comments. ``defaults_later``: its column defaults that
        call something are left out and kept for their step (``_later_defaults``)."""
        d = self.adapter.dialect
        held = [(c, c.server_default) for c in tp.sa_table.columns if defaults_later
                and c.server_default is not None and "(" in str(getattr(c.server_default, "arg", ""))]
        try:
            for c, _ in held:
                c.server_default = None
            conn.exec_driver_sql(create_table_sql(tp, self.adapter))
        finally:
            for c, default in held:
                c.server_default = default
        self._later_defaults[tp.table.key] = [
            f"ALTER TABLE {self.adapter.qtable(tp.name, tp.schema)} ALTER COLUMN {self.adapter.q(c.name)} "
            f"SET DEFAULT {self.adapter.literal_sql(str(default.arg))}" for c, default in held]
        self.created.append(tp)
        for sql in tp.after_create:
            conn.exec_driver_sql(sql)
        if d.supports_comments and not d.inline_comments:
            if tp.sa_table.comment:
                conn.execute(sa.schema.SetTableComment(tp.sa_table))
            for col in tp.sa_table.columns:
                if col.comment:
                    conn.execute(sa.schema.SetColumnComment(col))

    def _normalize(self, plan: Plan) -> bool:
        """Compare decimals and JSON by value (not spelling) when reading back from another engine."""
        return not plan.same_engine

    def _load(self, conn: Connection, plan: Plan, res: RestoreResult) -> dict[str, tuple[int, str]]:
        expected: dict[str, tuple[int, str]] = {}
        normalize = self._normalize(plan)
        for tp in plan.tables:
            t0 = time.monotonic()
            echo = EchoHash(self.backup.line_hash_bits) if self.echo_for(tp) else None
            h = RowHash([c.target for c in tp.columns], normalize) if self.hashes_in(tp, normalize) else None
            key = tp.table.key
            self.progress.table_started(key, self.backup.rows(key))
            done = [0]

            def advanced(n: int, key: str = key, done: list[int] = done) -> None:
                done[0] += n
                self.progress.advanced(key, done[0], 0)

            as_text = self.text_load(tp, plan.same_engine)
            n = sum(load_chunk(conn, self.adapter, self.backup, tp, ci, h, advanced, echo, as_text)
                    for ci in range(len(self.backup.tables[key]["chunks"])))
            want = self.backup.rows(tp.table.key)
            if n != want:
                raise RestoreError(f"table {tp.table.key}: loaded {n} rows, the backup holds {want}")
            if echo is not None:
                self.echoes[key] = echo     # the expected hash is computed only if the text differs
            elif self.counting:
                pass                        # only the rows are counted (count_back)
            elif h is None:
                entry = self.backup.tables[tp.table.key]
                expected[tp.table.key] = (n, combine_v2([c["content_hash"] for c in entry["chunks"]]))
            else:
                expected[tp.table.key] = (h.rows, h.hexdigest())
            secs = time.monotonic() - t0
            res.tables.append({"table": tp.table.key, "target": tp.name, "rows": n, "seconds": round(secs, 3)})
            self.progress.table_done(tp.table.key, n, 0, secs)
        return expected

    def _constraints(self, conn: Connection, plan: Plan) -> None:
        for tp in plan.tables:
            for add in tp.deferred:
                c = add.element
                try:
                    conn.execute(add)
                except sa.exc.DBAPIError as exc:
                    raise RestoreError(f"table {tp.table.key}: {constraint_label(c)} could not be created: "
                                       f"{str(exc.orig).strip().splitlines()[0]}"
                                       + (" (use --skip-checks to restore without it)"
                                          if isinstance(c, sa.CheckConstraint) else "")) from None
            for ix in tp.indexes:
                conn.execute(CreateIndex(ix))
            for label, sql in tp.after_load:
                try:
                    with conn.begin_nested():
                        conn.exec_driver_sql(sql)
                except sa.exc.DBAPIError as exc:
                    raise RestoreError(f"{label} could not be created: "
                                       f"{str(exc.orig).strip().splitlines()[0]}") from None

    def _foreign_keys(self, conn: Connection, plan: Plan, validated: bool = False) -> None:
        validate = self.opts.enable_ri_check and not validated
        a = self.adapter
        if not a.inline_constraints:
            for tp in plan.tables:
                for fk in tp.foreign_keys:
                    a.add_foreign_key(conn, fk, validate and not fk.info.get("not_valid"))
        a.set_foreign_key_checks(conn, True)
        if validate:
            self._validate_foreign_keys(conn, plan)

    def _validate_foreign_keys(self, conn: Connection, plan: Plan) -> None:
        """Orphan rows of each foreign key the plan adds (by a query, whether the key exists yet
        or not); none allowed unless enable_ri_check is false."""
        if not self.opts.enable_ri_check:
            return
        for tp in plan.tables:
            bad = self.adapter.validate_foreign_keys(conn, tp.target_table, tp.sa_table)
            if bad:
                raise IntegrityError(f"table {tp.table.key}: referential integrity fails for "
                                     f"{', '.join(bad)} (orphan rows); set enable_ri_check: false to "
                                     "restore anyway")

    def _routines_wanted(self, plan: Plan) -> bool:
        return plan.same_engine and self.opts.routines and not (self.opts.include or self.opts.exclude)

    def _routines(self, conn: Connection, plan: Plan) -> None:
        names = {tp.table.name for tp in plan.tables}
        wanted = [r for r in self.backup.schema.routines if (r.table is None or r.table in names)
                  and not (self.adapter.routines_before_tables and r.kind == "routine")]
        order = {"routine": 0, "view": 1, "trigger": 2, "event": 3}
        wanted.sort(key=lambda r: order.get(r.kind, 3))
        self._raise_routine_failures(self.adapter.create_routines(conn, wanted))

    @staticmethod
    def _raise_routine_failures(failures: list[str]) -> None:
        if failures:
            raise RestoreError(f"could not recreate {failures[0]}" +
                               (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")
                               + "; use --no-routines to restore without views/triggers/routines")

    def _rehash(self, conn: Connection, plan: Plan, expected: dict[str, tuple[int, str]]) -> None:
        normalize = self._normalize(plan)
        for tp in plan.tables:
            key = tp.table.key
            if self.counting:
                self.count_back(conn, tp)
                continue
            echo = self.echoes.get(key)
            if echo is not None and echo.valid and self.echo_matches(conn, tp, echo, plan.same_engine):
                continue
            want = expected[key] if key in expected else self.expected(tp, normalize)
            got = rehash(conn, self.adapter, tp, normalize, has_large_values(self.backup, key))
            self._check_read_back(tp, got.rows, got.hexdigest(), want, conn)

    def _check_read_back(self, tp: TablePlan, rows: int, digest: str, want: tuple[int, str],
                         conn: Connection | None) -> None:
        """Row count and content hash read back against what the backup holds; on a hash mismatch
        a diagnostic pass (on ``conn``, else a new connection) names the differing columns."""
        want_rows, want_hash = want
        if rows != want_rows:
            raise IntegrityError(f"table {tp.table.key}: target holds {rows} rows after restore, "
                                 f"expected {want_rows}")
        if digest != want_hash:
            if conn is None:
                with self.engine.connect() as c:
                    cols = self._differing_columns(c, tp)
            else:
                cols = self._differing_columns(conn, tp)
            raise IntegrityError(f"table {tp.table.key}: values read back from the target differ from "
                                 f"the backup in column(s) {', '.join(cols) or '?'} (content hash mismatch)")

    def _differing_columns(self, conn: Connection, tp: TablePlan) -> list[str]:
        """A second, diagnostic pass: per-column hashes of the backup (as converted) and the target."""
        types = [c.target for c in tp.columns]
        want = ColumnRowHashes(types)
        for rows in _converted(self.backup, tp, None, None, loaded_only=False):
            want.update(rows)
        got = ColumnRowHashes(types)
        model = _target_model(tp)
        convert = self.adapter.batch_reader(types)
        for raw in self.adapter.stream(conn, model, 5000):
            got.update(raw if convert is None else convert(raw))
        return [c.source.name for c, a, b in zip(tp.columns, want.digests(), got.digests()) if a != b]

    def _mark_objects(self, conn: Connection, plan: Plan) -> None:
        """Before a restore that is not one transaction: the objects other than tables already
        there, so that a failed restore drops those it made (``_cleanup``)."""
        with conn.begin():
            self._marked = self.adapter.object_mark(conn)
        self._made_names = self.adapter.made_names(self.backup.schema, [tp.table for tp in plan.tables],
                                                   plan.same_engine)

    def _cleanup(self) -> None:
        """After a failed restore that was not one transaction: drop the tables it created, and
        the views, routines, types, sequences, schemas and extensions it made (those named in
        the backup that were not there before it started)."""
        if not self.created and self._marked is None:
            return
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    self.adapter.set_foreign_key_checks(conn, False)
                    existing = {s: self.adapter.existing_tables(conn, s) for s in {tp.schema for tp in self.created}}
                    for tp in reversed(self.created):
                        if tp.name in existing.get(tp.schema, set()):
                            self.adapter.drop_table(conn, tp.name, tp.schema)
        except Exception as exc:  # the restore already failed; say what is left
            log.error("cleanup after the failed restore did not finish (%s); drop these tables by hand: %s",
                      type(exc).__name__, ", ".join(tp.name for tp in self.created))
            return
        if self._marked is None:
            return
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    made = {o for o in self.adapter.object_mark(conn) - self._marked if o[1] in self._made_names}
                    left = self.adapter.drop_objects(conn, made)
        except Exception as exc:
            left = [f"({type(exc).__name__})"]
        if left:
            log.error("cleanup after the failed restore left what it made: %s; drop them by hand", ", ".join(left))
