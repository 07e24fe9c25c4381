"""Work units of a dump: whole tables, or key ranges of big ones (keyset pagination).

A table larger than ``chunk_rows``, or than ``CHUNK_BYTES`` of stored data (by the engine's
estimates), is cut into ranges of its primary
key, or of a unique index over NOT NULL columns: each boundary is *the n-th key after the last
boundary* in key order (``ORDER BY key LIMIT 1 OFFSET n-1``), found by the server on the
snapshot the dump reads. Sparse keys, gaps and composite keys therefore give ranges of
``chunk_rows`` rows each; min/max arithmetic is never used. A table with no such key is one unit
(PostgreSQL: ranges of physical blocks, ``ctid``, which need no key).

On PostgreSQL a big table whose key is one integer column takes its boundaries from the
histogram of key values that ANALYZE keeps, when it is fresh and fine enough
(``Adapter.key_bounds``): no key is counted, and the ranges still hold about ``chunk_rows`` rows
each whatever the gaps, as the histogram's buckets hold equal numbers of rows. Stale or missing
statistics only make ranges uneven; every row is still in exactly one range.

On MySQL/MariaDB a table whose primary key is integers is read in key pages instead
(``KeyPages``): each range is the next ``chunk_rows`` keys after the last key read, and a
boundary is searched for only when a worker would otherwise wait. A parallel dump of such a
table whose key is one integer column reads it in ranges of key values that are key pages too
(``KeyRanges``): no boundary is ever searched for, so workers never wait for one; a range that
holds more than ``chunk_rows`` keys is read on from its last key, and one that holds none leaves
no chunk file.

Each range becomes one chunk file, so ranges dump (and restore) in parallel and a single chunk
can be re-read; the manifest records each chunk's range.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Iterator

from sqlalchemy.engine import Connection

from .engines.base import Adapter
from .model import Table


#: a key range holds at most about this much of the table's stored data (the engine's estimate),
#: so a wide table with fewer than ``chunk_rows`` rows is still shared among the workers
CHUNK_BYTES = 128 << 20


#: relative work per value of each kind on the data path (read, convert, pack; or unpack,
#: convert, load): numbers and booleans 1, text and bytes 2, values shaped from server text 4
_KIND_COST = {"integer": 1, "boolean": 1, "float": 1, "string": 2, "text": 2, "char": 2, "binary": 2, "enum": 2}


def row_cost(table: Table) -> int:
    """Estimated relative work per row of ``table``: orders the units of a dump or restore so
    that the longest run first and no single long unit is left for the end."""
    return sum(_KIND_COST.get(c.type.kind, 4) for c in table.columns) or 1


@dataclass
class Unit:
    """One piece of a dump: a table, or one key range of it (then exactly one chunk file)."""

    table_no: int
    table: Table
    chunk_no: int = 1
    where: str = ""
    params: tuple[Any, ...] | None = None
    range: dict[str, Any] | None = None     # None: the whole table
    estimate: int | None = None
    parts: int = 1              # units of its table
    cost: int = 0               # estimated work (``row_cost`` × rows): workers take the costliest first
    limit: int | None = None    # a key page: the next ``limit`` keys after range["after"] (KeyPages)
    ordered: bool = False       # a key range the table stores about in key order: read in key order

    @property
    def ranged(self) -> bool:
        """A range of its table: exactly one chunk file (a whole table rolls over into more)."""
        return self.range is not None

    @property
    def label(self) -> str:
        return self.table.key if self.parts == 1 else f"{self.table.key} [{self.chunk_no}/{self.parts}]"


def split_key(table: Table) -> list[str] | None:
    """The columns to cut a table by: its primary key, else a unique key over NOT NULL columns."""
    if table.primary_key:
        return list(table.primary_key)
    notnull = {c.name for c in table.columns if not c.nullable}
    for cols in [u.columns for u in table.uniques] + [i.columns for i in table.indexes
                                                       if i.unique and not i.expressions]:
        if cols and all(c in notnull for c in cols):
            return list(cols)
    return None


def key_jsonable(v: Any) -> Any:
    """A key value as the manifest's chunk ranges write it (bytes as ``{"hex": …}``, other
    values that JSON has no type for as text)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"hex": bytes(v).hex()}
    return str(v)


@dataclass
class TableUnits:
    """The units of one table, in key order: a key range is planned only when it is taken, so
    the workers start on the first ranges while the dump's connection finds the next boundaries.
    A table read in key pages has ``pages`` instead."""

    units: Iterator[Unit]
    cost: int           # estimated work of one of its units
    pages: "KeyPages | KeyRanges | None" = None
    _head: list[Unit] = field(default_factory=list)     # the next unit, planned by ``more``

    def next_unit(self) -> Unit | None:
        return self._head.pop() if self._head else next(self.units, None)

    def more(self) -> bool:
        """Whether a unit is left to hand out, now or later (the next one is planned now if it
        is not yet)."""
        if self.pages is not None:
            return not self.pages.finished
        if not self._head:
            u = next(self.units, None)
            if u is None:
                return False
            self._head.append(u)
        return True


class KeyPages:
    """The key ranges of a big table whose key is integers, found as they are read: each range
    is the next ``n`` keys after the last key of the range before it (``WHERE key > last ORDER
    BY key LIMIT n``, keyset pagination), so no boundary is searched for while ranges are read
    one after another. Only when a worker would otherwise wait is the end of the range being
    read found ahead (``nth_key``, as ``_key_ranges`` finds every boundary), and the next range
    handed out at once. The manifest records each range's last key (``upto``; None for the
    last range: everything after ``after``)."""

    def __init__(self, conn: Connection, adapter: Adapter, no: int, table: Table, key: list[str], n: int,
                 expected: int, estimate: int) -> None:
        self.conn, self.adapter, self.no, self.table, self.key, self.n = conn, adapter, no, table, key, n
        self.expected = expected
        self.estimate = estimate
        self.handed = 0                             # ranges handed out
        self.lo: tuple[Any, ...] | None = None      # the next range starts after this key
        self.ready = True                           # ... which is known
        self.latest_lo: tuple[Any, ...] | None = None   # where the last range handed out starts
        self.finished = False                       # no range after the last one handed out

    def take(self, force: bool = False) -> Unit | None:
        """The next range, or None: none is left, or (unless ``force``) where it starts is known
        only when the range being read is done."""
        if self.finished:
            return None
        if not self.ready:
            if not force:
                return None
            hi = self.adapter.nth_key(self.conn, self.table, self.key, self.latest_lo, self.n)
            if hi is None:              # the range being read is the last
                self.finished = True
                return None
            self.lo, self.ready = hi, True
        self.handed += 1
        unit = self._unit(self.handed, self.lo)
        self.latest_lo, self.ready = self.lo, False
        return unit

    def done(self, unit: Unit, rows: int, last: tuple[Any, ...] | None) -> None:
        """``unit`` has been read: ``rows`` rows, the last key ``last``."""
        if unit.chunk_no != self.handed or self.ready:
            return              # a range whose end was found ahead
        if rows < self.n or last is None:
            self.finished = True
        else:
            self.lo, self.ready = tuple(last), True

    def _unit(self, chunk_no: int, lo: tuple[Any, ...] | None) -> Unit:
        unit = _range_unit(self.adapter, self.no, self.table, self.key, chunk_no, lo, None, self.n)
        unit.where += self.adapter.page_sql(self.key, self.n)
        unit.limit = self.n
        unit.estimate = min(self.n, max(1, self.estimate - self.n * (chunk_no - 1)))
        unit.parts = max(self.expected, chunk_no)
        unit.cost = unit.estimate * row_cost(self.table)
        return unit


class KeyRanges:
    """The key ranges of a big table whose key is one integer column, for a parallel dump:
    ranges of key *values* (lo, hi], each read as a key page (``ORDER BY key LIMIT n``), handed
    out as workers come free with no boundary searched for: no worker waits for another's range
    to end, and the server counts no keys (``nth_key`` reads every row it counts past).

    - The key values still to read are spans (at first one, from the least key in the
      snapshot to the end). A range is cut from the front of a span: as wide as the key values
      that about ``n`` rows (``AIM``) spanned in the last range read (at first, the span shared
      by the engine's row estimate); one that held no row makes the next sixteen times as wide
      (one too wide for the keys after a gap comes back full, and its rest is cut anew).
      So sparse keys give wide ranges and dense keys narrow ones. The width only shapes the
      ranges: which rows a range holds is decided by its WHERE, so every row is read once.
    - A range that comes back full (``n`` rows) leaves the rest of it, after its last key, as a
      span of its own, cut next: no range is more than ``n`` rows, and a dense cluster of keys
      inside a wide range is still read by several workers.
    - One that holds no row leaves no chunk file; the manifest's ranges still join up
      (dump._table_entry).
    - When it is the last table with units left (``tail``), the ranges narrow as the key values
      run out (each about what is left divided among the workers, down to an eighth), so the
      workers finish together.
    - The last range has no upper bound, so no row depends on the greatest key being right."""

    #: a range aims at this many eighths of ``n`` rows, so that one that holds a few more rows
    #: than the ranges before it is still read whole (no small rest to read after it)
    AIM = 7

    def __init__(self, adapter: Adapter, no: int, table: Table, key: list[str], n: int,
                 expected: int, estimate: int, least: int, greatest: int, workers: int) -> None:
        self.adapter, self.no, self.table, self.key, self.n = adapter, no, table, key, n
        self.expected, self.workers = expected, max(1, workers)
        self.greatest = greatest
        self.width = max(1, (greatest - least + 1) * self.AIM * n // (8 * max(1, estimate)))
        # key values still to read: [after, upto] (upto None: to the end), the next cut first
        self.spans: collections.deque[list[Any]] = collections.deque([[least - 1, None]])
        self.reading: dict[int, tuple[int, int | None]] = {}   # chunk_no -> (after, upto)
        self.handed = 0
        self.tail = False

    @property
    def finished(self) -> bool:
        return not self.spans and not self.reading

    def _end(self, upto: int | None) -> int:
        """Where a span or range ending at ``upto`` ends (None: at the greatest key)."""
        return self.greatest if upto is None else upto

    def take(self, force: bool = False) -> Unit | None:
        """The next range, or None while no key value is left to cut (a range being read may
        still leave the rest of it)."""
        if not self.spans:
            return None
        span = self.spans[0]
        lo, upto = span
        width = self.width
        if self.tail:
            left = sum(self._end(u) - after for after, u in self.spans)
            width = min(width, max(-(-width // 8), -(-left // self.workers)))
        hi: int | None = lo + width
        if hi >= self._end(upto):      # type: ignore[operator]
            hi = upto
            self.spans.popleft()
        else:
            span[0] = hi
        rows = (self._end(hi) - lo) * self.AIM * self.n // (8 * self.width)
        return self._unit(lo, hi, rows)

    def done(self, unit: Unit, rows: int, last: tuple[Any, ...] | None) -> None:
        """``unit`` has been read: ``rows`` rows, the last key ``last``."""
        lo, hi = self.reading.pop(unit.chunk_no)
        full = rows >= self.n and last is not None
        if full and (hi is None or last[0] < hi):       # type: ignore[index]
            self.spans.appendleft([last[0], hi])        # type: ignore[index]
        if rows:
            end = last[0] if full else self._end(hi)       # type: ignore[index]
            self.width = max(1, (end - lo) * self.AIM * self.n // (8 * rows))
        else:
            self.width *= 16

    def _unit(self, lo: int, hi: int | None, rows: int) -> Unit:
        """The range of keys after ``lo`` up to ``hi`` (the first from the start, the last to
        the end), read as a key page; ``rows``: about how many it holds (for the progress)."""
        self.handed += 1
        after = None if self.handed == 1 else (lo,)
        unit = _range_unit(self.adapter, self.no, self.table, self.key, self.handed,
                           after, None if hi is None else (hi,), self.n)
        unit.where += self.adapter.page_sql(self.key, self.n)
        unit.limit = self.n
        unit.estimate = max(1, min(self.n, rows))
        unit.parts = max(self.expected, self.handed)
        unit.cost = unit.estimate * row_cost(self.table)
        self.reading[self.handed] = (lo, hi)
        return unit


class Schedule:
    """Units as workers come free, from the costliest tables first. A table in key pages gives
    its next range when the one before is done; while none is ready, another table's unit is
    taken, and only when there is none is a range's end found ahead. A table in ranges of key
    values gives ranges until its keys are all cut, then the rests of full ones as they come
    back; when it is the only table left, its ranges narrow (``KeyRanges.tail``). ``next``
    gives None when nothing can be handed out until a unit being read is done (``done``)."""

    def __init__(self, tables: list[TableUnits]) -> None:
        self.tables = list(tables)
        self.out = 0        # units handed out and not yet done

    def __iter__(self) -> "Schedule":
        return self

    def __next__(self) -> Unit | None:
        ranges = [t for t in self.tables if isinstance(t.pages, KeyRanges) and not t.pages.tail]
        if len(ranges) == 1 and not any(t.more() for t in self.tables if t is not ranges[0]):
            ranges[0].pages.tail = True         # type: ignore[union-attr]  (the last table left)
        for t in list(self.tables):
            u = t.next_unit() if t.pages is None else t.pages.take()
            if u is not None:
                self.out += 1
                return u
            if t.pages is None or t.pages.finished:
                self.tables.remove(t)
        for t in [t for t in self.tables if t.pages is not None]:
            u = t.pages.take(force=True)
            if u is not None:
                self.out += 1
                return u
        if self.out > 0 and any(t.pages is not None and not t.pages.finished for t in self.tables):
            return None
        raise StopIteration

    def done(self, unit: Unit, rows: int, last: tuple[Any, ...] | None) -> None:
        self.out -= 1
        for t in self.tables:
            if t.pages is not None and t.pages.no == unit.table_no:
                t.pages.done(unit, rows, last)


def plan_tables(conn: Connection, adapter: Adapter, tables: list[Table], chunk_rows: int,
                workers: int = 1) -> list[TableUnits]:
    """Each table's units, the costliest tables' first. Key boundaries are found on ``conn``
    (in the dump's snapshot) as the units are taken, one range ahead. ``workers``: how many
    read the units (KeyRanges for more than one)."""
    out: list[TableUnits] = []
    for no, table in enumerate(tables, start=1):
        est = adapter.estimate_rows(conn, table)
        size = adapter.estimate_bytes(conn, table)
        per_unit = chunk_rows
        if chunk_rows and est and size and size > CHUNK_BYTES * 3 // 2:
            by_size = max(1000, est * CHUNK_BYTES // size)
            if by_size < chunk_rows:                 # ranges of equal size, none a small remainder
                per_unit = -(-est // -(-est // by_size))
        whole = Unit(no, table, estimate=est, cost=(est or 0) * row_cost(table))
        if not (per_unit and est and est > per_unit * 3 // 2 and adapter.supports_key_split):
            out.append(TableUnits(iter([whole]), whole.cost))
            continue
        expected = -(-est // per_unit)
        cost = min(est, per_unit) * row_cost(table)
        key = split_key(table)
        integers = bool(key) and all(c.type.kind == "integer" for c in table.columns if c.name in (key or ()))
        if integers and key == list(table.primary_key) and adapter.supports_key_pages:
            span = adapter.key_span(conn, table, key[0]) if workers > 1 and len(key) == 1 else None
            if span is None:
                pages: KeyPages | KeyRanges = KeyPages(conn, adapter, no, table, key, per_unit, expected, est)
            else:
                pages = KeyRanges(adapter, no, table, key, per_unit, expected, est, *span, workers)
            out.append(TableUnits(iter(()), cost, pages))
            continue
        if key:
            bounds = adapter.key_bounds(conn, table, key, per_unit) if integers else None
            ordered = integers and adapter.key_in_order(conn, table, key)
            units = (_bound_ranges(adapter, no, table, key, bounds, est, per_unit) if bounds
                     else _key_ranges(conn, adapter, no, table, key, per_unit, expected, whole))
            out.append(TableUnits(_marked(units, ordered), cost))
            continue
        pieces = [Unit(no, table, i + 1, where, params, rng)
                  for i, (where, params, rng) in enumerate(adapter.keyless_ranges(conn, table, est, per_unit))]
        if len(pieces) <= 1:
            out.append(TableUnits(iter([whole]), whole.cost))
            continue
        for p in pieces:
            p.parts = len(pieces)
            p.estimate = max(1, est // len(pieces))
            p.cost = p.estimate * row_cost(table)
        out.append(TableUnits(iter(pieces), cost))
    out.sort(key=lambda t: -t.cost)
    return out


def _key_ranges(conn: Connection, adapter: Adapter, no: int, table: Table, key: list[str],
                chunk_rows: int, expected: int, whole: Unit) -> Iterator[Unit]:
    """Ranges of ``chunk_rows`` keys, each boundary the n-th key after the previous one, found
    one range ahead of the range handed out; under a quarter of a range after the last boundary
    joins the last range. A table with no boundary at all is ``whole``."""
    lo: tuple[Any, ...] | None = None
    hi = adapter.nth_key(conn, table, key, None, chunk_rows)
    if hi is None:
        yield whole
        return
    no_in_table = 0
    while True:
        nxt = adapter.nth_key(conn, table, key, hi, chunk_rows) if hi is not None else None
        if hi is not None and nxt is None and adapter.nth_key(conn, table, key, hi, max(1, chunk_rows // 4)) is None:
            hi = None    # under a quarter of a range after this boundary: merged into this range
            if lo is None:               # the estimate was high: the table is one unit after all
                yield whole
                return
        no_in_table += 1
        unit = _range_unit(adapter, no, table, key, no_in_table, lo, hi, chunk_rows)
        unit.parts = no_in_table if hi is None else max(expected, no_in_table + 1)
        if hi is None and whole.estimate:      # the rest of the estimate
            unit.estimate = max(1, whole.estimate - chunk_rows * (no_in_table - 1))
        unit.cost = (unit.estimate or chunk_rows) * row_cost(table)
        yield unit
        if hi is None:
            return
        lo, hi = hi, nxt        # nxt None: the range after hi is the last


def _marked(units: Iterator[Unit], ordered: bool) -> Iterator[Unit]:
    """``units``, each key range marked ``ordered`` (read in key order) when ``ordered``."""
    for u in units:
        u.ordered = ordered and u.ranged
        yield u


def _bound_ranges(adapter: Adapter, no: int, table: Table, key: list[str], bounds: list[tuple[Any, ...]],
                  estimate: int, chunk_rows: int) -> Iterator[Unit]:
    """Ranges between ``bounds`` (adapter.key_bounds: known ahead, no key counted), the first
    from the start, the last to the end; each about ``estimate`` / ranges rows."""
    edges: list[tuple[Any, ...] | None] = [None, *bounds, None]
    parts = len(edges) - 1
    for i in range(parts):
        unit = _range_unit(adapter, no, table, key, i + 1, edges[i], edges[i + 1], chunk_rows)
        unit.parts = parts
        unit.estimate = max(1, estimate // parts)
        unit.cost = unit.estimate * row_cost(table)
        yield unit


def key_range_where(adapter: Adapter, key: list[str], lo: tuple[Any, ...] | None,
                    hi: tuple[Any, ...] | None) -> tuple[str, tuple[Any, ...]]:
    """`` WHERE key > lo AND key <= hi`` (either side left out when None; "" when both are) and
    its DBAPI parameters."""
    conds: list[str] = []
    params: list[Any] = []
    for op, bound in ((">", lo), ("<=", hi)):
        if bound is not None:
            sql, p = adapter.key_compare(key, op, bound)
            conds.append(sql)
            params += p
    return (" WHERE " + " AND ".join(conds)) if conds else "", tuple(params)


def _range_unit(adapter: Adapter, no: int, table: Table, key: list[str], chunk_no: int,
                lo: tuple[Any, ...] | None, hi: tuple[Any, ...] | None, chunk_rows: int) -> Unit:
    where, params = key_range_where(adapter, key, lo, hi)
    rng = {"key": key, "after": None if lo is None else [key_jsonable(v) for v in lo],
           "upto": None if hi is None else [key_jsonable(v) for v in hi]}
    return Unit(no, table, chunk_no, where, params, rng, chunk_rows if hi is not None else None)


@dataclass
class UnitResult:
    index: int
    chunks: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    last: tuple[Any, ...] | None = None     # a key page's last key
