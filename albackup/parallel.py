"""Worker processes for ``-j/--jobs``: several connections reading one snapshot.

The dump's own connection opens the snapshot (PostgreSQL: and exports it; MySQL/MariaDB: under
FLUSH TABLES WITH READ LOCK), then forks the workers. Each worker opens its own connection,
joins the snapshot and reports ready; only when all are ready is the lock released and work
handed out, one unit (a table or a key range of one) at a time, the biggest first. Workers
write their chunk files into the backup's staging folder and send back the manifest entries;
progress events come back the same way. A worker that fails or dies fails the dump.

Processes are forked (POSIX), so the configuration, the engine and any encryption key are
inherited, never sent over a pipe or put on a command line. A forked worker leaves the parent's
connections alone and ends with ``os._exit``, so no inherited connection is ever closed by it.
"""
from __future__ import annotations

import collections
import logging
import multiprocessing
import threading
import time
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable

import sqlalchemy as sa

from .archive import BackupWriter
from .engines.base import Adapter, Snapshot
from .errors import AlbackupError, DumpError, LoadConflict
from .progress import Reporter
from .units import Unit, UnitResult

log = logging.getLogger(__name__)

#: times a chunk is loaded before a lost lock conflict (deadlock, lock wait timeout) fails the restore
LOAD_ATTEMPTS = 3

# Set in the parent just before the fork; read by the workers.
_STATE: dict[str, Any] = {}


class _PipeReporter(Reporter):
    """Progress of a unit in a worker, sent to the parent (at most a few events a second)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._last = 0.0

    def table_started(self, table: str, estimate: int | None) -> None:
        self.pipe.send(("started", table, estimate))

    def advanced(self, table: str, rows: int, size: int) -> None:
        now = time.monotonic()
        if now - self._last >= 0.2:
            self._last = now
            self.pipe.send(("advanced", table, rows, size))

    def table_done(self, table: str, rows: int, size: int, seconds: float) -> None:
        self.pipe.send(("table_done", table, rows, size, seconds))


class _LockedPipe:
    """A worker's end of its pipe, shared by the worker's threads: one message at a time."""

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe
        self._lock = threading.Lock()

    def send(self, obj: Any) -> None:
        with self._lock:
            self._pipe.send(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)


class _PipeLogHandler(logging.Handler):
    """A worker's log records, sent to the parent, which logs them through its own handlers (on a
    terminal: above the live bars, never written across them)."""

    def __init__(self, pipe: _LockedPipe) -> None:
        super().__init__()
        self.pipe = pipe

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.pipe.send(("log", record.name, record.levelno, text, record.created))
        except Exception:  # the parent is gone or the pipe is closed: nothing to tell
            pass


def _child_main(target: Callable[[int, Any], None], idx: int, pipe: Any) -> None:
    """A forked worker: its log records go to the parent, then it runs ``target``."""
    locked = _LockedPipe(pipe)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_PipeLogHandler(locked))
    target(idx, locked)


def _relay_log(msg: Any) -> None:
    _, name, levelno, text, created = msg
    record = logging.makeLogRecord({"name": name, "levelno": levelno, "levelname": logging.getLevelName(levelno),
                                    "msg": text, "created": created})
    logging.getLogger(name).handle(record)


def _describe(exc: BaseException) -> BaseException:
    """An exception that pickles and says what happened (never a traceback)."""
    from .dump import _as_dump_error

    if isinstance(exc, AlbackupError):
        return exc
    mapped = _as_dump_error(exc, _STATE["writer"].tmp, _STATE["engine"].dialect.dbapi)
    return mapped or DumpError(f"dump worker failed: {type(exc).__name__}: {exc}")


def _worker(idx: int, pipe: Any) -> None:
    from .dump import dump_unit

    engine: sa.Engine = _STATE["engine"]
    adapter: Adapter = _STATE["adapter"]
    engine.dispose(close=False)        # the parent's pooled connections are not ours to use
    try:
        with engine.connect() as conn:
            snap = adapter.join_snapshot(conn, _STATE["token"])
            pipe.send(("ready", idx, snap.to_dict()))
            reporter = _PipeReporter(pipe)
            while True:
                msg = pipe.recv()
                if msg is None:
                    break
                _, i, unit = msg
                r = dump_unit(conn, adapter, _STATE["writer"], unit, _STATE["opts"], reporter)
                r.index = i
                pipe.send(("done", i, r.chunks, r.rows, r.seconds, r.last))
    except BaseException as exc:  # reported to the parent, which fails the dump
        try:
            pipe.send(("error", idx, _describe(exc)))
        except Exception:
            pipe.send(("error", idx, DumpError(f"dump worker {idx} failed: {type(exc).__name__}")))
    finally:
        pipe.close()


class _Workers:
    """Forked worker processes, each with a duplex pipe; a dead worker is an error."""

    target: Any = None
    what = "worker"

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.procs: list[Any] = []
        self.pipes: list[Any] = []
        self.snaps: list[dict[str, Any]] = []
        self._finished: dict[int, bool] = {}
        self._exited: set[int] = set()

    def _state(self) -> dict[str, Any]:
        return {}

    def _failure(self, message: str) -> BaseException:
        return DumpError(message)

    def start(self, jobs: int) -> None:
        """Fork ``jobs`` workers and wait until each has connected (and joined the snapshot)."""
        ctx = multiprocessing.get_context("fork")
        _STATE.update(self._state())
        for i in range(jobs):
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(target=_child_main, args=(type(self).target, i, child_end),
                            name=f"albackup-{self.what}-{i + 1}", daemon=True)
            p.start()
            child_end.close()
            self.procs.append(p)
            self.pipes.append(parent_end)
        ready: set[int] = set()
        while len(ready) < jobs:
            for i, msg in self._messages(timeout=120):
                if msg[0] == "ready":
                    ready.add(i)
                    self.snaps.append(msg[2])
                else:
                    self._relay(msg, i)

    def _messages(self, timeout: float) -> Any:
        """(worker, message) pairs as they come; a dead worker is an error."""
        live = [p for p in self.pipes if not p.closed]
        sentinels = {p.sentinel: i for i, p in enumerate(self.procs) if i not in self._exited}
        got = wait(live + list(sentinels), timeout)
        if not got:
            raise self._failure(f"{self.what} workers did not answer within {timeout:.0f} s")
        out = []
        for obj in got:
            if obj in sentinels:
                i = sentinels[obj]
                self._exited.add(i)
                pipe = self.pipes[i]
                while not pipe.closed and pipe.poll():
                    try:
                        out.append((i, pipe.recv()))
                    except (EOFError, OSError):     # closed, or reset by the worker's death
                        break
                if not any(m[0] in ("error",) for _, m in out) and not self._finished.get(i):
                    out.append((i, ("error", i, self._dead(i))))
                continue
            i = self.pipes.index(obj)
            try:
                out.append((i, obj.recv()))
            except (EOFError, OSError):     # the worker is gone: its sentinel tells how it ended
                obj.close()
        return out

    def _dead(self, i: int) -> BaseException:
        """The error for worker ``i``, which ended without saying why."""
        self.procs[i].join(5)
        code = self.procs[i].exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return self._failure(f"{self.what} worker {i + 1} ended unexpectedly ({how})")

    def _relay(self, msg: Any, worker: int) -> bool:
        """Progress events and log records from a worker; True when ``msg`` was one."""
        kind = msg[0]
        if kind == "started":
            self.reporter.for_worker(worker).table_started(msg[1], msg[2])
        elif kind == "advanced":
            self.reporter.for_worker(worker).advanced(msg[1], msg[2], msg[3])
        elif kind == "table_done":
            self.reporter.for_worker(worker).table_done(msg[1], msg[2], msg[3], msg[4])
        elif kind == "log":
            _relay_log(msg)
        elif kind == "error":
            raise msg[2]
        else:
            return False
        return True

    def _dispatch(self, tasks: Iterable[Any], on_result: Any) -> None:
        """Hand ``tasks`` out one at a time to idle workers, taking each from the iterable only
        when a worker is free for it; ``on_result(worker, msg)`` per result. A task of None
        means nothing can be handed out until a result comes in: the worker waits for one."""
        queue = iter(tasks)
        busy: set[int] = set()
        idle: list[int] = []
        end = object()
        ended = False

        def give(w: int) -> None:
            nonlocal ended
            task = end if ended else next(queue, end)
            if task is end:
                ended = True
            elif task is None:
                idle.append(w)
            else:
                try:
                    self.pipes[w].send(task)
                except OSError:           # the worker is gone (its end of the pipe closed with it)
                    raise self._dead(w) from None
                busy.add(w)

        for w in range(len(self.procs)):
            give(w)
        while busy:
            for w, msg in self._messages(timeout=24 * 3600):
                if self._relay(msg, w):
                    continue
                busy.discard(w)
                on_result(w, msg)
                give(w)
                for i in list(idle):
                    if ended or i in busy:
                        break
                    idle.remove(i)
                    give(i)
        if not ended:
            raise self._failure("internal error: work was left that no worker could be given")

    def close(self) -> None:
        for w, p in enumerate(self.pipes):
            if not p.closed:
                try:
                    if not self._finished.get(w):
                        self._finished[w] = True
                        p.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(5)
        for p in self.pipes:
            p.close()
        _STATE.clear()


class DumpPool(_Workers):
    what = "dump"

    def __init__(self, engine: sa.Engine, adapter: Adapter, writer: BackupWriter, opts: Any, token: Any,
                 reporter: Reporter) -> None:
        super().__init__(reporter)
        self.engine = engine
        self.adapter = adapter
        self.writer = writer
        self.opts = opts
        self.token = token

    def _state(self) -> dict[str, Any]:
        return dict(engine=self.engine, adapter=self.adapter, writer=self.writer, opts=self.opts, token=self.token)

    def consistency(self, own: Snapshot, lock_refused: str | None) -> Snapshot:
        n = len(self.procs)
        if lock_refused is not None:
            return Snapshot(f"{own.method}-per-worker", False,
                            f"{n} workers started their own snapshots one after another; they are not "
                            f"guaranteed to be the same (FLUSH TABLES WITH READ LOCK was refused: {lock_refused})")
        methods = {s["method"] for s in self.snaps}
        consistent = own.consistent and all(s["consistent"] for s in self.snaps)
        if self.token is not None:
            return Snapshot(methods.pop() if len(methods) == 1 else own.method, consistent,
                            f"{n} workers read the snapshot exported by the dump's own transaction "
                            f"(pg_export_snapshot, SET TRANSACTION SNAPSHOT)")
        return Snapshot(f"{own.method}-locked", consistent,
                        f"the dump and {n} workers each started a consistent-snapshot transaction while "
                        f"FLUSH TABLES WITH READ LOCK held every commit back, so all read the same data; "
                        f"the lock was released as soon as the last worker had started"
                        + ("" if consistent else f" ({own.detail})"))

    def run(self, units: Iterable[tuple[int, Unit] | None], sink: Any,
            finished: Any = None) -> list[UnitResult]:
        """Dump the (index, unit) pairs as they come, each to the next idle worker (None: wait
        for a result); ``finished(result)`` per unit done. The workers were forked before the
        units were planned: each unit goes by value."""
        results: list[UnitResult] = []

        def done(w: int, msg: Any) -> None:
            r = UnitResult(msg[1], msg[2], msg[3], msg[4], msg[5])
            results.append(r)
            if finished is not None:
                finished(r)
            if sink is not None:
                for c in r.chunks:
                    sink.add_chunk(self.writer.tmp / c["file"], c["file"], c["sha256"])

        self._dispatch((None if x is None else ("unit", *x) for x in units), done)
        return results


DumpPool.target = _worker


# ------------------------------------------------------------------ restore

def _interleaved(loads: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(table, chunk, work) in the order the workers take them: the tables by their work, most
    first, one chunk of each in turn (each table's chunks most work first), so that workers
    running side by side mostly load different tables (chunks of one table loading at the same
    time contend for its extension lock) while the biggest table still starts first."""
    by_table: dict[int, list[tuple[int, int, int]]] = {}
    for x in sorted(loads, key=lambda x: -x[2]):
        by_table.setdefault(x[0], []).append(x)
    queues = sorted(by_table.values(), key=lambda q: -sum(x[2] for x in q))
    out = []
    while queues:
        out += [q.pop(0) for q in queues]
        queues = [q for q in queues if q]
    return out


class _BuildSchedule:
    """The tasks of RestorePool.load_and_build as workers come free (see there): an iterator for
    ``_dispatch`` (None: nothing to hand out until a running task is done) and its ``done``."""

    def __init__(self, loads: list[tuple[int, int, int]], hash_in: list[bool], normalize: bool, echo: list[bool],
                 ddl: dict[int, list[tuple[int, str]]], echo_parts: Callable[[int, list[Any]], list[Any]],
                 check: Callable[[int, int], str | None], ntables: int,
                 value_parts: Callable[[int], list[tuple[str, Any]]] | None = None) -> None:
        self.normalize, self.value_parts = normalize, value_parts
        self.loads = collections.deque(("load", ti, ci, hash_in[ti], normalize, echo[ti])
                                       for ti, ci, _ in _interleaved(loads))
        self.chunks_left = collections.Counter(ti for ti, _, _ in loads)
        self.loading: collections.Counter[int] = collections.Counter()    # chunks of each table running
        self.ddl, self.echo_parts, self.check = ddl, echo_parts, check
        self.statements: collections.deque[Any] = collections.deque()     # ready: tables loaded
        self.reads: collections.deque[Any] = collections.deque()          # ready: tables built
        self.ddl_left: dict[int, int] = {}
        self.table_of: dict[int, int] = {}
        self.running = 0
        self.loaded: dict[int, list[tuple[int, int, str, float, Any]]] = {ti: [] for ti in range(ntables)}
        self.echoed: dict[int, tuple[int, int]] = {}
        self.rehashed: dict[int, list[tuple[int, str]]] = {}
        self.failed: list[tuple[int, str]] = []
        self.error: str | None = None
        for ti in range(ntables):
            if not self.chunks_left[ti]:
                self._loaded(ti)

    def __iter__(self) -> "_BuildSchedule":
        return self

    def __next__(self) -> Any:
        if self.failed or self.error:
            raise StopIteration
        if self.statements:
            self.running += 1
            return self.statements.popleft()
        if self.loads:
            self.running += 1
            return self._next_load()
        if self.reads:
            self.running += 1
            return self.reads.popleft()
        if self.running:
            return None
        raise StopIteration

    def _next_load(self) -> Any:
        """The next chunk in _interleaved's order whose table no worker is loading, else the
        next: workers loading side by side keep to different tables while there are several
        (two COPYs into one table wait for each other to extend it), and share the last one."""
        pick = next((i for i, task in enumerate(self.loads) if not self.loading[task[1]]), 0)
        task = self.loads[pick]
        del self.loads[pick]
        self.loading[task[1]] += 1
        return task

    def done(self, w: int, m: Any) -> None:
        self.running -= 1
        kind = m[0]
        if kind == "loaded":
            ti = m[1]
            self.loaded[ti].append((m[2], m[3], m[4], m[5], m[6]))
            self.chunks_left[ti] -= 1
            self.loading[ti] -= 1
            if not self.chunks_left[ti]:
                self._loaded(ti)
        elif kind == "ddl_failed":
            self.failed.append((m[1], m[2]))
        elif kind == "ddl_done":
            ti = self.table_of[m[1]]
            self.ddl_left[ti] -= 1
            if not self.ddl_left[ti]:
                self._built(ti)
        elif kind == "echoed":
            rows, total = self.echoed.get(m[1], (0, 0))
            self.echoed[m[1]] = (rows + m[2], total + m[3])    # reduced where compared (echo_verdict)
        elif kind == "rehashed":
            self.rehashed.setdefault(m[1], []).append((m[2], m[3]))

    def _loaded(self, ti: int) -> None:
        self.error = self.error or self.check(ti, sum(p[0] for p in self.loaded[ti]))
        statements = self.ddl.get(ti, [])
        self.ddl_left[ti] = len(statements)
        for i, sql in statements:
            self.table_of[i] = ti
            self.statements.append(("ddl", i, sql))
        if not statements:
            self._built(ti)

    def _built(self, ti: int) -> None:
        if self.error:
            return
        blocks = self.echo_parts(ti, self.loaded[ti])
        if blocks:
            self.reads += [("echo", ti, b) for b in blocks]
        elif self.value_parts is not None:     # read back by value now, while others load
            self.reads += [("rehash", ti, self.normalize, where, params) for where, params in self.value_parts(ti)]


def _restore_worker(idx: int, pipe: Any) -> None:
    from .restore import _target_model, has_large_values, hash_as_converted, load_chunk, loaded_names, rehash
    from .values import EchoHash, RowHash

    restorer = _STATE["restorer"]
    plan = _STATE["plan"]
    engine: sa.Engine = restorer.engine
    adapter: Adapter = restorer.adapter
    backup = restorer.backup
    engine.dispose(close=False)
    try:
        with engine.connect() as conn:
            pipe.send(("ready", idx, {"method": "restore", "consistent": True}))
            reporter = _PipeReporter(pipe)
            while True:
                msg = pipe.recv()
                if msg is None:
                    break
                if msg[0] == "load":
                    _, ti, ci, hash_in, normalize, echo_in = msg
                    tp = plan.tables[ti]
                    key = tp.table.key
                    nchunks = len(backup.tables[key]["chunks"])
                    label = key if nchunks == 1 else f"{key} [{ci + 1}/{nchunks}]"
                    t0 = time.monotonic()
                    reporter.table_started(label, int(backup.tables[key]["chunks"][ci]["rows"]))
                    as_text = restorer.text_load(tp, plan.same_engine)
                    for attempt in range(1, LOAD_ATTEMPTS + 1):
                        h = RowHash([c.target for c in tp.columns], normalize) if hash_in else None
                        echo = EchoHash(backup.line_hash_bits) if echo_in else None
                        done = [0]

                        def advanced(n: int, label: str = label, done: list[int] = done) -> None:
                            done[0] += n
                            reporter.advanced(label, done[0], 0)

                        try:
                            with conn.begin():
                                adapter.begin_load(conn, concurrent=nchunks > 1)
                                n = load_chunk(conn, adapter, backup, tp, ci, h, advanced, echo, as_text)
                                adapter.end_load(conn)
                            break
                        except LoadConflict as exc:   # rolled back whole: the chunk is loaded again
                            if attempt == LOAD_ATTEMPTS:
                                raise
                            log.warning("%s: %s; loading it again (attempt %d of %d)", label, exc,
                                        attempt + 1, LOAD_ATTEMPTS)
                            time.sleep(0.2 * attempt)
                    secs = time.monotonic() - t0
                    reporter.table_done(label, n, 0, secs)
                    pipe.send(("loaded", ti, n, h.rows if h else n, h.hexdigest() if h else "", secs,
                               echo.state() if echo else None))
                elif msg[0] == "ddl":
                    _, i, sql = msg
                    try:
                        with conn.begin():
                            conn.exec_driver_sql(sql)
                    except sa.exc.DBAPIError as exc:
                        pipe.send(("ddl_failed", i, str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip()
                                   else type(exc.orig).__name__))
                        continue
                    pipe.send(("ddl_done", i))
                elif msg[0] == "rehash":
                    _, ti, normalize, where, params = msg
                    with conn.begin():
                        h = rehash(conn, adapter, plan.tables[ti], normalize,
                                   has_large_values(backup, plan.tables[ti].table.key), where, params)
                    pipe.send(("rehashed", ti, h.rows, h.hexdigest()))
                elif msg[0] == "echo":
                    _, ti, blocks = msg
                    with conn.begin():
                        rows, total = adapter.echo_read(conn, _target_model(plan.tables[ti]),
                                                        loaded_names(plan.tables[ti]), blocks,
                                                        bits=backup.line_hash_bits)
                    pipe.send(("echoed", ti, rows, total))
                elif msg[0] == "hash_in":
                    _, ti, ci, normalize = msg
                    pipe.send(("hashed", ti, *hash_as_converted(backup, plan.tables[ti], normalize, ci)))
    except BaseException as exc:  # reported to the parent, which fails the restore
        from .errors import RestoreError

        err: BaseException = (exc if isinstance(exc, AlbackupError)
                              else restorer._as_restore_error(exc, restorer._failed_how())
                              or RestoreError(f"restore worker failed: {type(exc).__name__}: {exc}"))
        try:
            pipe.send(("error", idx, err))
        except Exception:
            pipe.send(("error", idx, RestoreError(f"restore worker {idx} failed: {type(exc).__name__}")))
    finally:
        pipe.close()


class RestorePool(_Workers):
    what = "restore"

    def __init__(self, restorer: Any, plan: Any, reporter: Reporter) -> None:
        super().__init__(reporter)
        self.restorer = restorer
        self.plan = plan

    def _failure(self, message: str) -> BaseException:
        from .errors import RestoreError

        return RestoreError(message)

    def _state(self) -> dict[str, Any]:
        return dict(restorer=self.restorer, plan=self.plan)

    def hash_in(self, chunks: list[tuple[int, int]], normalize: bool) -> dict[int, list[tuple[int, str]]]:
        """The backup's (table, chunk)s hashed as converted: {table: [(rows, hash)]}."""
        out: dict[int, list[tuple[int, str]]] = {}
        self._dispatch([("hash_in", ti, ci, normalize) for ti, ci in chunks],
                       lambda w, m: out.setdefault(m[1], []).append((m[2], m[3])))
        return out

    def load_and_build(self, loads: list[tuple[int, int, int]], hash_in: list[bool], normalize: bool,
                       echo: list[bool], ddl: dict[int, list[tuple[int, str]]],
                       echo_parts: Callable[[int, list[Any]], list[Any]],
                       check: Callable[[int, int], str | None],
                       value_parts: Callable[[int], list[tuple[str, Any]]] | None = None) -> Any:
        """The chunk files loaded, and each table's indexes and constraints built as soon as its
        last chunk is in, while the workers load the other tables; then its text read back in
        parts (``echo_parts(table)``, asked when the table's statements are done) as workers come
        free. A worker takes a statement before a chunk, and a chunk before a read-back part.
        ``echo_parts(table, its loads)`` gives the parts (none: the table is not read back so);
        a table with none is read back by value then, in the parts ``value_parts(table)`` gives
        (restore.read_back_parts; none, or no ``value_parts``: after the load, not here).
        ``ddl``: {table: [(statement number, SQL)]}; ``check(table, rows loaded)`` is an error
        message or None once a table's chunks are all in. Returns (loads {table: [(rows loaded,
        rows hashed, hash as converted, seconds, EchoHash state or None)]}, read-backs {table:
        (rows, hash of its lines)}, failed statements [(number, why)], the error of ``check``,
        read-backs by value {table: [(rows, content hash) of each part]}).
        A failed statement or check hands out nothing more; what runs is let finish."""
        sched = _BuildSchedule(loads, hash_in, normalize, echo, ddl, echo_parts, check, len(self.plan.tables),
                               value_parts)
        self._dispatch(sched, sched.done)
        return sched.loaded, sched.echoed, sched.failed, sched.error, sched.rehashed

    def _biggest_first(self, tables: list[int]) -> list[int]:
        return sorted(tables, key=lambda ti: -self.restorer.backup.rows(self.plan.tables[ti].table.key))

    def rehash(self, normalize: bool, tables: list[int],
               parts: dict[int, list[tuple[str, tuple[Any, ...]]]] | None = None) -> dict[int, tuple[int, str]]:
        """Each table's (rows, content hash) read back, biggest table first, each in its
        ``parts`` (restore.read_back_parts: key ranges, workers read them side by side; their
        hashes add up) or whole."""
        from .values import combine_v2

        got: dict[int, list[tuple[int, str]]] = {ti: [] for ti in tables}
        tasks = [("rehash", ti, normalize, where, params) for ti in self._biggest_first(tables)
                 for where, params in (parts or {}).get(ti, [("", ())])]
        self._dispatch(tasks, lambda w, m: got[m[1]].append((m[2], m[3])))
        return {ti: (sum(r for r, _ in p), combine_v2([h for _, h in p])) for ti, p in got.items()}


RestorePool.target = _restore_worker
