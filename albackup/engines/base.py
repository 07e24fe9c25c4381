"""The engine adapter: everything that differs between database engines lives in a subclass.

An adapter is found by SQLAlchemy dialect name (``for_engine``); nothing outside ``engines/``
tests a dialect name. The base class holds what most engines share; each subclass overrides
what its engine does differently.
"""
from __future__ import annotations

import abc
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy import types as sat
from sqlalchemy.engine import Connection

from ..errors import UnreadObject
from ..mapping import ColumnMove
from ..model import Column, LogicalType, Routine, Schema, Table
from ..values import INLINE_NAMES, Converter, EchoHash, batch_converter, canonicalizer

log = logging.getLogger(__name__)

_REGISTRY: dict[str, type["Adapter"]] = {}


def register(cls: type["Adapter"]) -> type["Adapter"]:
    for n in cls.dialect_names:
        _REGISTRY[n] = cls
    return cls


def adapter_class(dialect_name: str) -> type["Adapter"]:
    from . import mssql, mysql, postgresql, sqlite  # noqa: F401  (they register themselves)

    try:
        return _REGISTRY[dialect_name]
    except KeyError:
        from ..errors import ConfigError

        raise ConfigError(f"database engine {dialect_name!r} is not supported "
                          f"(supported: postgresql, mysql/mariadb, sqlite, mssql)") from None


def for_engine(engine: sa.Engine) -> "Adapter":
    return adapter_class(engine.dialect.name)(engine.dialect)


class Verbatim(sat.UserDefinedType):
    """A column type spelled exactly as the source engine spelled it (same-engine restores)."""

    cache_ok = True

    def __init__(self, spec: str, affinity: type | None = None) -> None:
        self.spec = spec
        self._affinity = affinity

    def get_col_spec(self, **kw: Any) -> str:
        return self.spec

    @property
    def _type_affinity(self) -> Any:  # lets SQLAlchemy see an integer column as one
        return self._affinity or super()._type_affinity


@dataclass
class Snapshot:
    method: str
    consistent: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "consistent": self.consistent, "detail": self.detail}


@dataclass
class Step:
    """One object a restore makes in dependency order (Adapter.ordered_steps)."""

    node: str
    label: str                  # for messages: "routine f", "table billing.invoice"
    what: Any                   # SQL ready for exec_driver_sql, or the TablePlan of a table
    exists: tuple[str, str | None] | None = None    # a type (name, schema): skipped where there
    defaults_later: bool = False                    # a table made without its column defaults


class Adapter(abc.ABC):
    name = "base"
    dialect_names: tuple[str, ...] = ()
    max_identifier = 63
    #: ``max_identifier`` counts characters (else UTF-8 bytes, as PostgreSQL does)
    identifier_chars = False
    #: longest text a key (PK, unique, index) column may hold, in characters; None: unlimited
    key_text_chars: int | None = None
    #: bytes a key's text character takes (the other columns of a key take from its length)
    key_char_bytes = 4
    #: text columns that name no collation compare case-insensitively (MySQL/MariaDB and SQL
    #: Server as they are usually set up: their database's default collation decides)
    default_case_insensitive = False
    #: foreign keys and checks go inside CREATE TABLE (engines that cannot ALTER TABLE ADD them)
    inline_constraints = False
    #: foreign keys may be DEFERRABLE (INITIALLY DEFERRED)
    deferrable_constraints = False
    #: a check may be added NOT VALID (not checked against the rows already there)
    not_valid_constraints = False
    #: the primary key is added after the load, built once from the loaded rows (PostgreSQL,
    #: whose tables are heaps); elsewhere it is part of CREATE TABLE (InnoDB and SQL Server
    #: tables are stored in primary key order, so a key added later rebuilds the whole table)
    primary_key_after_load = False
    #: where the engine wants each kind of name unique: kind ("index"; "key": a primary key or
    #: unique constraint; "foreign_key"; "check") → the namespaces it is taken in, each
    #: (namespace, "schema" or "table"); the default: indexes and keys unique per table, and
    #: constraints apart from them, per table
    name_spaces: dict[str, tuple[tuple[str, str], ...]] = {
        "index": (("index", "table"),), "key": (("index", "table"),),
        "foreign_key": (("constraint", "table"),), "check": (("constraint", "table"),)}
    #: the namespace that tables share with the names above (PostgreSQL: relations; SQLite:
    #: schema objects; SQL Server: objects), None where tables have one of their own
    table_name_space: str | None = None
    supports_schemas = True
    #: from another engine, a table of a schema other than the source's default is named
    #: ``schema_table`` (ddl.target_name): the target has no schemas inside a database
    schemas_as_prefix = False
    #: DDL runs inside transactions (savepoints survive it); MySQL commits on every DDL
    transactional_ddl = True
    #: primary keys keep their names (MySQL calls every primary key PRIMARY)
    named_primary_keys = True
    #: generated keys are IDENTITY columns (else: the engine's AUTO_INCREMENT)
    identity_columns = False
    #: the indexes SQLAlchemy reflects may include the primary key's own (a unique index over the
    #: key's columns is then taken for it); where not, such an index is one the user made beside it
    indexes_list_primary_key = True
    #: a column of a composite primary key may generate its values (SQLite: only a lone INTEGER
    #: PRIMARY KEY does)
    composite_key_autoincrement = True

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self.prep = dialect.identifier_preparer

    def configure_engine(self, engine: sa.Engine) -> None:
        """Driver settings every connection needs (called once per engine)."""

    # ---------------------------------------------------------------- naming and quoting
    def q(self, name: str) -> str:
        return self.prep.quote_identifier(name)

    def held_name(self, name: str) -> tuple[str, str | None]:
        """``name`` as the engine can hold it (its length aside, see ``ddl.target_name``), and
        why it changed (None: it did not)."""
        if "\x00" in name:
            return name.replace("\x00", "\ufffd") or "_", f"{self.name} names cannot hold a NUL character"
        return name, None

    def qtable(self, name: str, schema: str | None) -> str:
        return f"{self.q(schema)}.{self.q(name)}" if schema else self.q(name)

    def qtable_value(self, name: str, schema: str | None) -> str:
        """The quoted table name as a parameter value (``'"s"."t"'::regclass``): never a doubled
        '%' (``q`` doubles them for the statement's text, see ``execute``)."""
        p = self.prep

        def one(n: str) -> str:   # each '%' in it came doubled: undone exactly (SQL Server: [a]]b])
            quoted = p.quote_identifier(n)
            return quoted.replace("%%", "%") if getattr(p, "_double_percents", False) else quoted

        return f"{one(schema)}.{one(name)}" if schema else one(name)

    def placeholders(self, n: int) -> str:
        style = self.dialect.paramstyle
        mark = "?" if style == "qmark" else "%s"
        return ", ".join([mark] * n)

    @staticmethod
    def dbapi(conn: Connection) -> Any:
        return conn.connection.dbapi_connection

    # ---------------------------------------------------------------- dump side
    def server_version(self, conn: Connection) -> str:
        info = self.dialect.server_version_info or ()
        return ".".join(str(x) for x in info)

    @abc.abstractmethod
    def begin_snapshot(self, conn: Connection) -> Snapshot:
        """Start the dump's one consistent read and say which method was achieved."""

    def prime_reflection(self, conn: Connection, insp: Any, name: str, schema: str | None) -> None:
        """Before ``table`` is reflected: read what SQLAlchemy's reflection would misread."""

    def foreign_keys(self, conn: Connection, name: str, schema: str | None) -> list[dict[str, Any]] | None:
        """The table's foreign keys read from the catalogue, as SQLAlchemy's inspector gives
        them, where its reading failed (None: the adapter cannot)."""
        return None

    def refine_column(self, col: Column, info: dict[str, Any], table: Table) -> None:
        """Adjust a reflected column (logical type, autoincrement) for engine specifics."""

    def refine_table(self, table: Table, conn: Connection) -> None:
        """Adjust a reflected table (drop checks the engine makes itself, …)."""

    def reflect_unread(self, conn: Connection, table: Table, warnings: list[str]) -> list[str]:
        """What SQLAlchemy warned it could not read while reflecting ``table`` (after
        ``refine_table``): an adapter reads what it can itself and returns the rest, which
        fails the dump. A type SQLAlchemy did not know is no loss where the adapter read it
        (``reflect.reflect_schema`` checks that no column is left without one)."""
        for w in warnings:
            if w.startswith("Did not recognize type"):
                log.warning("table %s: %s", table.key, w)
        return [w for w in warnings if not w.startswith("Did not recognize type")]

    def reflect_extras(self, conn: Connection, schema: Schema, schemas: list[str | None],
                       kinds: set[str]) -> None:
        """Sequences, enum types and the routines named in ``kinds`` (view/trigger/routine)."""
        insp = sa.inspect(conn)
        if "view" in kinds:
            for s in schemas:
                for v in insp.get_view_names(schema=s):
                    try:
                        sql = insp.get_view_definition(v, schema=s)
                    except Exception as exc:  # engine-specific permission issues
                        raise UnreadObject(f"view {self.qtable_value(v, s)}: its definition could not be read "
                                           f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                                           "leave views out with views: false") from exc
                    schema.routines.append(Routine("view", v, self.view_sql(v, s, sql), s))

    def view_sql(self, name: str, schema: str | None, definition: str) -> str:
        d = definition.strip()
        if d.upper().startswith("CREATE"):
            return d
        return f"CREATE VIEW {self.qtable_value(name, schema)} AS {d}"

    def user_schemas(self, conn: Connection) -> list[str] | None:
        """Every schema of the database that is not the system's (what a dump takes when no
        ``schemas`` are named), or None where a dump takes the connection's default schema."""
        return None

    def tables_elsewhere(self, conn: Connection, skipped: list[str]) -> int:
        """How many tables the schemas ``skipped`` hold (an empty dump checks it found what is there)."""
        insp = sa.inspect(conn)
        return sum(len(insp.get_table_names(schema=s)) for s in skipped)

    def partition_children(self, conn: Connection, schema: str | None) -> dict[str, str]:
        """Tables of ``schema`` that are partitions of another table (name → the key of the
        partitioned table at the top, whose rows include theirs). None here."""
        return {}

    def hidden_tables(self, conn: Connection, schema: str | None) -> set[str]:
        """Tables of ``schema`` the engine keeps for another object (SQLite: a virtual table's
        shadow tables): neither dumped nor restored, that object makes them again. None here."""
        return set()

    #: the sa.Index options of a full-text index (MySQL/MariaDB FULLTEXT): a SQLite FTS table
    #: restored here gets one over its text columns; None where the engine has none
    fulltext_index: dict[str, Any] | None = None

    #: a restore into the same engine replays the statements that made each table and index
    #: (Table.create_sql, Table.index_sql) where the backup holds them (SQLite)
    replays_sql = False

    def estimate_rows(self, conn: Connection, table: Table) -> int | None:
        """The engine's cheap row estimate for progress display (None: unknown)."""
        return None

    def count_rows(self, conn: Connection, table: Table) -> int:
        """The table's exact row count."""
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {self.qtable(table.name, table.schema)}").scalar() or 0)

    def estimate_bytes(self, conn: Connection, table: Table) -> int | None:
        """The engine's cheap estimate of the table's stored size, indexes left out (None: unknown);
        with the row estimate it sizes a dump's key ranges and orders the work."""
        return None

    def read_from(self, table: Table) -> str:
        """The FROM of a statement that reads ``table``'s own rows."""
        return self.qtable(table.name, table.schema)

    def select_sql(self, table: Table) -> str:
        cols = ", ".join(self.q(c.name) for c in table.columns)
        return f"SELECT {cols} FROM {self.read_from(table)}"

    def stream(self, conn: Connection, table: Table, batch_rows: int, where: str = "",
               params: Any = None, large_values: bool = True) -> Iterator[list[Any]]:
        """Raw DBAPI rows of ``table``, a batch at a time, through a streaming cursor.
        ``where`` (with its DBAPI ``params``) restricts them to one key range. ``large_values``
        False: the caller knows no value is large enough to be read in pieces (engines that read
        large values in pieces then skip looking for them)."""
        cur = self.dbapi(conn).cursor()
        try:
            self.execute_where(cur, self.select_sql(table), where, params)
            yield from fetch_batches(cur, batch_rows)
        finally:
            cur.close()

    # ---------------------------------------------------------------- chunks and parallel dumps
    #: big tables may be cut into key ranges (units.py)
    supports_key_split = True
    #: worker processes can share the dump's snapshot (export_snapshot/join_snapshot)
    supports_parallel_dump = False
    #: chunk files can be loaded by several connections at once (restore -j)
    supports_parallel_restore = False
    #: load() takes rows holding codec.LargeValue objects (batches of codec.LargeRows) and
    #: streams them; elsewhere large values are made whole before they are loaded
    streams_large_values = False

    def execute(self, cur: Any, sql: str, params: Any = None) -> None:
        """Run ``sql`` on a raw DBAPI cursor. ``q`` quotes names as SQLAlchemy does, which
        doubles a '%' in them for the drivers that format parameters client-side (psycopg2,
        PyMySQL, mysqlclient), as ``exec_driver_sql`` needs: on those drivers the statement must
        always be formatted, so no parameters is an empty tuple, never None."""
        if params is None and self.formats:
            params = ()
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)

    @property
    def formats(self) -> bool:
        """The driver formats parameters into the statement (``%s``; a literal '%' is ``%%``)."""
        return self.dialect.paramstyle in ("format", "pyformat")

    def literal_sql(self, sql: str) -> str:
        """SQL text not built with ``q`` (a view's or routine's definition, a literal) made safe
        for ``exec_driver_sql``, which always formats on the drivers that do: each '%' doubled."""
        return sql.replace("%", "%%") if self.formats else sql

    def execute_where(self, cur: Any, sql: str, where: str = "", params: Any = None) -> None:
        """``sql`` + a ``where`` clause with its DBAPI ``params`` (see ``execute``)."""
        self.execute(cur, sql + where, params)

    def key_compare(self, key: list[str], op: str, values: tuple[Any, ...]) -> tuple[str, list[Any]]:
        """``(key) op (values)`` in key order, for op ``>`` or ``<=``, spelled out column by column."""
        mark = "?" if self.dialect.paramstyle == "qmark" else "%s"
        strict = ">" if op == ">" else "<"
        last = len(key) - 1

        def build(i: int) -> tuple[str, list[Any]]:
            c = self.q(key[i])
            if i == last:
                return f"{c} {op} {mark}", [values[i]]
            inner, p = build(i + 1)
            return f"({c} {strict} {mark} OR ({c} = {mark} AND {inner}))", [values[i], values[i], *p]

        return build(0)

    #: big tables with an integer key are read in key pages (units.KeyPages): ``stream`` with
    #: ``page_sql`` after the WHERE gives the rows in key order
    supports_key_pages = False

    def page_sql(self, key: list[str], n: int) -> str:
        """What follows a key page's WHERE: the next ``n`` rows in key order."""
        cols = ", ".join(self.q(k) for k in key)
        return f" ORDER BY {cols} LIMIT {int(n)}"

    def nth_key_sql(self, table: Table, key: list[str], where: str, n: int) -> str:
        cols = ", ".join(self.q(k) for k in key)
        return (f"SELECT {cols} FROM {self.read_from(table)}{where} "
                f"ORDER BY {cols} LIMIT 1 OFFSET {int(n) - 1}")

    def nth_key(self, conn: Connection, table: Table, key: list[str], after: tuple[Any, ...] | None,
                n: int) -> tuple[Any, ...] | None:
        """The ``n``-th key (in key order) after ``after`` (from the start when None), or None."""
        cur = self.dbapi(conn).cursor()
        try:
            if after is None:
                self.execute(cur, self.nth_key_sql(table, key, "", n))
            else:
                cond, params = self.key_compare(key, ">", after)
                self.execute(cur, self.nth_key_sql(table, key, f" WHERE {cond}", n), tuple(params))
            row = cur.fetchone()
        finally:
            cur.close()
        return None if row is None else tuple(row)

    def key_span(self, conn: Connection, table: Table, column: str) -> tuple[int, int] | None:
        """The least and the greatest value of the integer ``column`` (an index's first column:
        two lookups), or None when the table has none."""
        q = self.q(column)
        lo, hi = conn.exec_driver_sql(f"SELECT MIN({q}), MAX({q}) FROM {self.read_from(table)}").one()
        return None if lo is None or hi is None else (int(lo), int(hi))

    def key_bounds(self, conn: Connection, table: Table, key: list[str],
                   n: int) -> list[tuple[Any, ...]] | None:
        """Boundaries about ``n`` rows apart for ranges of ``table`` over ``key``, known without
        reading the table (the planner's statistics), or None: the boundaries are then found by
        counting keys (``nth_key``). Whatever they are, the ranges they make hold every row once."""
        return None

    def key_in_order(self, conn: Connection, table: Table, key: list[str]) -> bool:
        """Whether ``table`` is stored about in the order of its integer ``key`` (by the planner's
        statistics), so that its key ranges can be read in key order with no sort."""
        return False

    def keyless_ranges(self, conn: Connection, table: Table, estimate: int,
                       chunk_rows: int) -> list[tuple[str, tuple[Any, ...] | None, dict[str, Any]]]:
        """Ranges of a table without a usable key: (where, params, manifest range); none here."""
        return []

    def lock_for_snapshot(self, conn: Connection) -> str | None:
        """Before ``begin_snapshot`` of a parallel dump: hold what makes the workers' snapshots
        equal to the dump's. None when held (or not needed), else why it could not be."""
        return None

    def export_snapshot(self, conn: Connection) -> Any:
        """After ``begin_snapshot``: what workers need to read the same snapshot."""
        return None

    def join_snapshot(self, conn: Connection, token: Any) -> Snapshot:
        """In a worker: start reading the snapshot ``token`` describes."""
        return self.begin_snapshot(conn)

    def release_snapshot_lock(self, conn: Connection) -> None:
        """Once every worker has joined: release what held the snapshot still (MySQL's lock)."""

    def reader(self, t: LogicalType) -> Converter:
        """DBAPI value → canonical value of logical type ``t``."""
        return canonicalizer(t)

    #: logical kinds whose DBAPI value, on this engine's read path, is already canonical
    passthrough_kinds: frozenset[str] = frozenset()

    def batch_reader(self, types: list[LogicalType]) -> Callable[[list[Any]], list[Any]] | None:
        """DBAPI rows → canonical rows for a table of these types, compiled once (None: the
        rows are canonical as fetched)."""
        return batch_converter([None if self.passthrough(t) else self.reader(t) for t in types])

    def passthrough(self, t: LogicalType) -> bool:
        if t.kind == "float":
            return "float" in self.passthrough_kinds and (t.bits or 64) == 64
        return t.kind in self.passthrough_kinds

    # ---------------------------------------------------------------- restore side
    @abc.abstractmethod
    def target_type(self, col: Column, key_chars: int | None) -> tuple[LogicalType, sat.TypeEngine]:
        """The logical type and SQLAlchemy type a column gets on this engine (cross-engine)."""

    @classmethod
    def source_notes(cls, table: Table, same_engine: bool) -> list[str]:
        """Source side: what of ``table`` (read from this engine) a restore does not carry, or
        carries otherwise than its logical types say, for the plan (into the same engine when
        ``same_engine``)."""
        return []

    def exact_type(self, col: Column) -> sat.TypeEngine:
        """The column's original type, for a restore into the same engine."""
        return Verbatim(col.original_type, sa.Integer if col.type.kind == "integer" else None)

    def add_losses(self, move: "ColumnMove", src: LogicalType) -> None:
        """Add the losses this engine causes beyond the change of logical type (NaN, NUL, …)."""

    def writer(self, t: LogicalType) -> Converter:
        """Canonical value → the DBAPI parameter this engine's load path wants."""
        return _ident

    def table_options(self, table: Table) -> dict[str, Any]:
        """Dialect keyword arguments for sa.Table (e.g. sqlite_autoincrement)."""
        return {}

    #: the reflected table options (Table.options) a restore into the same engine keeps
    kept_table_options: frozenset[str] = frozenset()
    #: those of them made by statements of their own (``table_option_sql``), not by SQLAlchemy
    table_options_by_sql: frozenset[str] = frozenset()

    def table_last_sql(self, table: Table, name: str, schema: str | None) -> list[tuple[str, str]]:
        """(label, statement)s that give the table restored as ``schema.name`` the options that need its
        indexes and keys (same engine): run at the end, after the foreign keys and identities."""
        return []

    def table_option_sql(self, table: Table, qualified: str) -> list[str]:
        """Statements right after ``CREATE TABLE`` (same engine) that give the table named
        ``qualified`` its options of ``table_options_by_sql``."""
        return []

    def partition_sql(self, table: Table, name: str, schema: str | None) -> list[str]:
        """Same engine: the statements that recreate ``table``'s partitions once it exists as
        ``schema.name`` (its rows are then loaded into it and routed by the server). None here."""
        return []

    def partition_clause_options(self, clause: str) -> tuple[dict[str, Any], str | None]:
        """Same engine: the sa.Table keyword arguments that partition a table as ``clause``
        (Table.partition_clause, MySQL/MariaDB) again, or ``({}, why not)``."""
        return {}, f"{self.name} cannot make this partitioning again"

    #: a primary key's DESC parts are written in CREATE TABLE itself (SQLite, which cannot
    #: change a key later), instead of by ``sorted_primary_key_sql``
    primary_key_sorting_in_create = False

    def sorted_primary_key_sql(self, name: str, schema: str | None, parts: list[tuple[str, bool]]) -> str | None:
        """Same engine: the statement that remakes the primary key of the new, empty table
        ``schema.name`` with its parts (column, descending) in that order; None where the engine
        cannot (the key is then made ascending)."""
        return None

    def server_default(self, col: Column, same_engine: bool) -> str | None:
        if same_engine:
            return col.default
        return portable_default(col.default)

    def prepare(self, conn: Connection, schema: Schema, tables: list[Table], same_engine: bool) -> None:
        """Create what tables depend on (enum types, sequences, schemas)."""

    def after_create(self, conn: Connection, tables: list[Table], same_engine: bool, schema: Schema) -> None:
        """Things to do after CREATE TABLE (sequence ownership, …)."""

    def begin_load(self, conn: Connection, concurrent: bool = False) -> None:
        """Session settings for loading (foreign key checks off, strict modes). ``concurrent``:
        other connections load into the same table at the same time (chunks with ``-j``)."""

    def end_load(self, conn: Connection) -> None:
        pass

    #: echo_read() prints a loaded table back in the text its load sent (load() fills ``echo``)
    echo_check = False

    def copy_text_ok(self, conn: Connection, table: Table, where: str = "", params: Any = None,
                     scan: bool = True) -> bool:
        """Whether this unit of ``table`` can be dumped as the server's COPY text (pgtext.py).
        Without ``scan``, only what the columns' types and the connection say: its rows are
        then checked by ``copy_text(guard=True)`` as they are read."""
        return False

    def copy_text(self, conn: Connection, table: Table, where: str, params: Any,
                  on_frame: Callable[[bytes], None], guard: bool = False,
                  order_by: list[str] | None = None) -> int:
        """Dump a unit as COPY text, in blocks of whole lines; returns the rows the server sent.
        Only where ``copy_text_ok`` said yes. With ``guard``, the rows ``copy_text_ok`` would have
        looked for make it raise pgtext.CopyTextRefused, the connection's transaction intact.
        ``order_by``: the lines in the order of these (key) columns."""
        raise NotImplementedError(f"{self.name} dumps are read by value only")

    #: load_text() takes a COPY text chunk as it is stored (same engine, nothing converted)
    loads_copy_text = False

    def load_text(self, conn: Connection, table: Table, columns: list[str], frames: Iterator[bytes]) -> None:
        """Load the frames of a COPY text chunk as they are (the caller counts their lines)."""
        raise NotImplementedError(f"{self.name} restores load values only")

    def echo_parts(self, conn: Connection, table: Table) -> list[Any]:
        """Parts of ``table`` that echo_read can print back one by one (None: the whole table)."""
        return [None]

    def echo_read(self, conn: Connection, table: Table, columns: list[str], blocks: Any = None,
                  bits: int = 64) -> tuple[int, int]:
        """(rows, EchoHash(bits) hash of the lines) of ``columns`` of ``table`` (or of one part,
        ``blocks``, of echo_parts) as the server prints them in the load's text format; only
        where ``echo_check`` (the restore asks no other adapter)."""
        raise NotImplementedError(f"{self.name} restores are read back by value only")

    def load(self, conn: Connection, table: Table, columns: list[str], writers: list[Converter],
             batches: Iterator[list[list[Any]]], identity: bool, echo: EchoHash | None = None) -> int:
        """Insert all batches; returns rows inserted. Default: one executemany per batch.
        ``echo`` (only where ``echo_check``) receives the text lines as they are sent."""
        sql = (f"INSERT INTO {self.qtable(table.name, table.schema)} "
               f"({', '.join(self.q(c) for c in columns)}) VALUES ({self.placeholders(len(columns))})")
        cur = self.dbapi(conn).cursor()
        n = 0
        try:
            for batch in batches:
                params = [tuple(None if v is None else w(v) for w, v in zip(writers, row)) for row in batch]
                cur.executemany(sql, params)
                n += len(params)
        finally:
            cur.close()
        return n

    def add_foreign_key(self, conn: Connection, fk: sa.ForeignKeyConstraint, validate: bool) -> None:
        conn.execute(sa.schema.AddConstraint(fk))

    def validate_foreign_keys(self, conn: Connection, table: Table, sa_table: sa.Table) -> list[str]:
        """Names of the foreign keys of ``table`` that have orphan rows (generic orphan query)."""
        bad = []
        for fk in sa_table.foreign_key_constraints:
            if fk.info.get("not_valid"):        # it was not valid in the source either
                continue
            if self.count_orphans(conn, sa_table, fk):
                bad.append(fk.name or ",".join(c.name for c in fk.columns))
        return bad

    def count_orphans(self, conn: Connection, sa_table: sa.Table, fk: sa.ForeignKeyConstraint) -> int:
        child = sa_table.alias("c")
        parent = fk.referred_table.alias("p")
        pairs = [(child.c[e.parent.name], parent.c[e.column.name]) for e in fk.elements]
        cond = sa.and_(*[c.isnot(None) for c, _ in pairs])
        exists = sa.exists().where(sa.and_(*[p == c for c, p in pairs]))
        q = sa.select(sa.func.count()).select_from(child).where(cond, ~exists)
        return int(conn.execute(q).scalar() or 0)

    def reset_identity(self, conn: Connection, table: Table, sa_table: sa.Table, same_engine: bool,
                       schema: Schema) -> None:
        """Make the next generated value follow the restored rows."""

    def existing_tables(self, conn: Connection, schema: str | None) -> set[str]:
        return set(sa.inspect(conn).get_table_names(schema=schema))

    def drop_table(self, conn: Connection, name: str, schema: str | None) -> None:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.qtable(name, schema)}")

    # ---------------------------------------------------------------- whose database, --clean, locks
    def server_identity(self, conn: Connection) -> tuple[Any, ...] | None:
        """The connected database as the server names it, whatever the URL's spelling: the
        server's own identity and the database's name. None where the engine cannot say."""
        return None

    def set_lock_timeout(self, engine: sa.Engine, seconds: int) -> None:
        """Every new connection of ``engine`` waits at most ``seconds`` for a lock."""

    def is_lock_timeout(self, exc: BaseException) -> bool:
        """Whether ``exc`` (SQLAlchemy's or the driver's) is the server giving up a lock wait."""
        return False

    def lock_holders(self, conn: Connection, name: str, schema: str | None) -> list[str]:
        """The other sessions holding a lock on table ``name`` (for the message of a lock wait
        that timed out); empty where the engine cannot say."""
        return []

    def lock_for_clean(self, conn: Connection, name: str, schema: str | None) -> None:
        """--clean: take the lock that dropping table ``name`` needs, in this transaction."""

    def existing_views(self, conn: Connection, views: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
        """--clean: those of ``views`` (the backup's, restored again) that the target holds and
        that --clean drops before they are made again (none where the engine replaces them)."""
        return []

    def clean_blockers(self, conn: Connection, tables: list[tuple[str, str | None]],
                       views: list[tuple[str, str | None]]) -> list[str]:
        """--clean: the objects outside ``tables`` and ``views`` that depend on them (a view, a
        foreign key, a function of another table), each as "what depends on what"; --clean
        refuses to drop what they need. Empty where the engine cannot say."""
        return []

    #: --clean drops its tables in one statement (``drop_for_clean``), else one at a time
    drops_together = False

    def drop_for_clean(self, conn: Connection, tables: list[tuple[str, str | None]],
                       views: list[tuple[str, str | None]]) -> None:
        """--clean: drop ``views`` and ``tables`` (never what depends on them)."""
        for name, schema in tables:
            self.drop_table(conn, name, schema)

    def generated_column(self, table: Table, col: Column, schema: Schema) -> tuple[str | None, str] | None:
        """Into another engine: how the target generates the values of ``col``, which the source
        generates (AUTO_INCREMENT, an identity, a sequence's default), where its own way (an
        AUTO_INCREMENT or identity key column) cannot: (the column's default SQL or None, what
        the plan says). None: its own way, as usual."""
        return None

    def error_line(self, exc: BaseException) -> str | None:
        """The first line of the server's message when ``exc`` is a database error (else None),
        as a restore's failure reports it."""
        return database_error_line(exc, self.dialect.dbapi)

    #: restore --clean makes the tables it replaces under new names and swaps them in at once
    #: when they are loaded and checked (``rename_tables``): where DDL is not transactional, a
    #: failure before then leaves the old tables as they were
    swaps_on_clean = False

    def rename_tables(self, conn: Connection, renames: list[tuple[str | None, str, str]]) -> None:
        """(schema, name, new name) renamed all at once, in this order. Called only where
        ``swaps_on_clean`` is set."""
        raise NotImplementedError(f"{self.name} does not swap tables")

    def clashing_objects(self, conn: Connection, schema: Schema, same_engine: bool, routines: bool) -> list[str]:
        """The objects other than tables the restore of ``schema`` makes (``routines``: its views,
        routines, triggers and events too) that the target already holds under the same name, as
        "kind name": a restore without --clean refuses them, --clean replaces them
        (``clean_objects``). None here: the engine replaces them itself or has none."""
        return []

    def clean_objects(self, conn: Connection, schema: Schema, same_engine: bool, routines: bool) -> list[str]:
        """--clean: drop ``clashing_objects``, dependents first; returns what was dropped."""
        return []

    #: the kinds ``object_mark`` returns, in the order a failed restore drops them
    object_kinds: tuple[str, ...] = ()

    def object_mark(self, conn: Connection) -> set[tuple[str, str, str]]:
        """The objects other than tables that a restore makes (views, routines, types,
        sequences, schemas…) as (kind, name, name as SQL for ``exec_driver_sql``): taken before a restore that is not
        one transaction, so that a failed one drops what it made (``drop_objects``)."""
        return set()

    def drop_objects(self, conn: Connection, objects: set[tuple[str, str, str]]) -> list[str]:
        """Drop ``objects`` (from ``object_mark``; kinds are SQL keywords), in ``object_kinds``
        order; returns those that could not be dropped."""
        left = []
        for kind, _name, ident in sorted(objects, key=lambda o: (self.object_kinds.index(o[0]), o[2])):
            try:
                self.run_ddl(conn, f"DROP {kind} IF EXISTS {ident}{self.drop_cascade}")
            except sa.exc.DBAPIError:
                left.append(f"{kind.lower()} {ident}")
        return left

    drop_cascade = ""

    def run_ddl(self, conn: Connection, sql: str) -> None:
        """One statement that may fail while the restore goes on: in a savepoint where DDL is
        transactional (a failure then leaves the transaction usable)."""
        if self.transactional_ddl:
            with conn.begin_nested():
                conn.exec_driver_sql(sql)
        else:
            conn.exec_driver_sql(sql)

    def made_names(self, schema: Schema, tables: list[Table], same_engine: bool) -> set[str]:
        """The names of the objects other than tables a restore of ``tables`` may make: a failed
        restore drops only what it made under these names (never another session's objects)."""
        return ({r.name for r in schema.routines} | {e.name for e in schema.enums} | {d.name for d in schema.domains}
                | {s.name for s in schema.sequences} | set(schema.extensions) | {t.schema for t in tables if t.schema})

    def set_foreign_key_checks(self, conn: Connection, enabled: bool) -> None:
        pass

    def create_scratch(self, url: sa.URL, workdir: Any) -> tuple[sa.URL, Callable[[], None]]:
        """Create an empty scratch database beside ``url``'s; returns its URL and a drop function."""
        import secrets

        name = f"albackup_scratch_{secrets.token_hex(4)}"
        eng = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        try:
            with eng.connect() as c:
                c.exec_driver_sql(f"CREATE DATABASE {self.q(name)}")
        finally:
            eng.dispose()

        def drop() -> None:
            e = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
            try:
                with e.connect() as c:
                    c.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.q(name)}")
            finally:
                e.dispose()

        return url.set(database=name), drop

    #: functions and procedures are made before the tables (which may call them)
    routines_before_tables = False
    #: a same-engine restore makes every object in one dependency order (ordered_steps)
    orders_objects = False

    def ordered_steps(self, schema: Schema, plans: list[Any], routines: bool) -> tuple[list[Step], list[Step]]:
        """Where ``orders_objects``: the objects of a same-engine restore of ``plans`` (TablePlans;
        views, routines and triggers only when ``routines``), as the steps made before the load
        and those made after it. Called only where ``orders_objects`` is set."""
        raise NotImplementedError(f"{self.name} does not order a restore's objects itself")

    def type_exists(self, conn: Connection, name: str, schema: str | None) -> bool:
        return False

    def check_catalogue(self, conn: Connection, schema: Schema, keys: set[str], routines: bool,
                        unchecked_keys: bool = False) -> list[str]:
        """After a same-engine restore of the tables ``keys``: what of the backup's objects the
        target lacks or holds otherwise, one line each (nothing where the engine keeps no
        catalogue in the backup). ``unchecked_keys``: foreign keys were added unchecked."""
        return []

    def defer_routine_checks(self, conn: Connection) -> None:
        """Before routines are made ahead of the tables: their bodies are not checked now."""

    def create_routines(self, conn: Connection, routines: list[Routine]) -> list[str]:
        """Create views/triggers/routines (same engine). Returns failures as messages."""
        return self._create_in_turns(routines, lambda r: self.run_ddl(conn, self.literal_sql(self._view_name_once(r))))

    @staticmethod
    def _create_in_turns(routines: list[Routine], make: Callable[[Routine], Any]) -> list[str]:
        """Each of ``routines`` made by ``make``, in turns: one that fails is tried again once
        another was made. Returns the failures of the turn that made nothing, as messages."""
        pending = list(routines)
        while pending:
            errors: list[str] = []
            before = len(pending)
            for r in list(pending):
                try:
                    make(r)
                    pending.remove(r)
                except sa.exc.DBAPIError as exc:
                    errors.append(f"{r.kind} {r.name}: {str(exc.orig).splitlines()[0]}")
            if len(pending) == before:
                return errors
        return []


    def _view_name_once(self, r: Routine) -> str:
        """A routine's SQL as the manifest keeps it: plain SQL text. Backups before this was so
        kept a view's name with each '%' doubled (``create_routines`` doubles them once more)."""
        old = f"CREATE VIEW {self.qtable(r.name, r.schema)} AS "
        if r.kind == "view" and "%" in r.name and self.formats and r.sql.startswith(old):
            return f"CREATE VIEW {self.qtable_value(r.name, r.schema)} AS " + r.sql[len(old):]
        return r.sql


def _ident(v: Any) -> Any:
    return v


#: a fetched batch is kept near this many bytes, whatever the width of the rows (drivers hold
#: a few times as much while they fetch it: psycopg2 receives bytea as hex text)
BATCH_BYTES = 4 << 20


def compile_lines(writers: list[Converter], null: str, what: str) -> Callable[[list[Any]], str]:
    """rows → text lines for a bulk load (COPY, LOAD DATA): fields joined by tabs, each by its
    column's writer (``str`` inlined), NULL as ``null``; one function compiled for the table."""
    parts = []
    for i, w in enumerate(writers):
        fast = getattr(w, "inline", None)
        val = (f"r[{i}]" if w is str else fast.format(x=f"r[{i}]", f=f"w{i}") if fast is not None
               else f"w{i}(r[{i}])")
        parts.append(f"{{NULL if r[{i}] is None else {val}}}")
    src = "def lines(rows):\n    return ''.join([f\"" + "\\t".join(parts) + "\\n\" for r in rows])\n"
    env: dict[str, Any] = {f"w{i}": w for i, w in enumerate(writers) if w is not str}
    env.update(INLINE_NAMES)
    env["NULL"] = null
    exec(compile(src, f"<albackup {what} lines>", "exec"), env)  # noqa: S102 - only indices are formatted in
    return env["lines"]  # type: ignore[no-any-return]


def split_by_bytes(rows: list[Any], max_bytes: int) -> list[list[Any]]:
    """``rows`` cut into runs of about ``max_bytes`` (estimated from up to 16 sampled rows)."""
    if len(rows) <= 1:
        return [rows]
    step = max(1, len(rows) // 16)
    sample = [_row_size(r) for r in rows[::step]]
    per = max(1, int(max_bytes / max(sum(sample) / len(sample), max(sample) / 4, 1.0)))
    if per >= len(rows):
        return [rows]
    return [rows[i:i + per] for i in range(0, len(rows), per)]


def _row_size(r: Any) -> int:
    size = 0
    for v in r:
        size += len(v) if isinstance(v, (str, bytes, bytearray, memoryview)) else 8
    return size


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what led to it, first cause first: its ``__cause__``, or the exception it was
    raised while handling (a rollback or close that failed after the real error), unless that
    was hidden with ``from None``."""
    chain = [exc]
    while len(chain) < 32:
        e = chain[-1]
        nxt = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    return chain[::-1]


def database_error_line(exc: BaseException, dbapi: Any) -> str | None:
    """The first line of the server's message when ``exc`` is a database error, or was raised
    while handling one (the first such error of the chain, not the "connection already closed"
    of the rollback after it): SQLAlchemy's wrapper, or the driver's own (``dbapi.Error``,
    raised by the raw cursors the data path uses); None for anything else."""
    if not isinstance(exc, Exception):
        return None                          # Ctrl-C, exit: never a database error
    driver_error = getattr(dbapi, "Error", None)
    for e in causes(exc):
        if isinstance(e, sa.exc.DBAPIError) and e.orig is not None:
            e = e.orig
        elif not (isinstance(driver_error, type) and isinstance(e, driver_error)):
            continue
        text = str(e).strip()
        if text and text != "(0, '')":      # PyMySQL on a connection that is already gone
            return text.splitlines()[0]
    return None if not isinstance(exc, sa.exc.DBAPIError) and not (
        isinstance(driver_error, type) and isinstance(exc, driver_error)) else type(exc).__name__


def fetch_batches(cur: Any, max_rows: int, max_bytes: int = BATCH_BYTES,
                  sizes: list[int] | None = None) -> Iterator[list[Any]]:
    """``fetchmany`` in batches sized by bytes as well as rows: the first batch is small, later
    ones hold about ``max_bytes`` (so a table of 50 MB blobs is read a row or two at a time,
    a narrow table ``max_rows`` at a time). Memory stays bounded whatever the table.

    The width of a batch is estimated from up to 64 of its rows spread over it (and its widest
    sampled row), not from every value: sizing must not cost a Python loop over every value.
    ``sizes``, when given, receives each batch's estimated size just before it is yielded."""
    n = 1           # the first fetch learns how wide the rows are
    while True:
        rows = cur.fetchmany(n)
        if not rows:
            return
        step = max(1, len(rows) // 64)
        sample = [_row_size(r) for r in rows[::step]]
        if sizes is not None:
            sizes.append(sum(sample) * len(rows) // len(sample))
        yield rows
        avg = max(sum(sample) / len(sample), max(sample) / 8, 1.0)
        n = max(1, min(max_rows, int(max_bytes / avg)))


_END = object()
#: a fetched batch this large is not fetched ahead of the consumer (memory over speed)
AHEAD_BYTES = 8 << 20


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetched(batches: Iterator[Any], depth: int = 2, sizes: list[int] | None = None) -> Iterator[Any]:
    """Run ``batches`` on a helper thread, ``depth`` items ahead of the consumer.

    For drivers that release the GIL while they wait for the server (psycopg2, mysqlclient):
    the next batch is fetched while this one is converted, packed and hashed. After a batch
    whose size (from ``sizes``, filled by ``fetch_batches``) is over AHEAD_BYTES, the helper
    waits until the consumer asks for the next one: rows of 50 MB values are not piled up.
    The helper owns the iterator until it ends; closing this generator stops the helper and
    waits for it."""
    import queue
    import threading

    q: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()
    want = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in batches:
                big = bool(sizes) and sizes[-1] > AHEAD_BYTES
                want.clear()
                if not put(item):
                    break
                while big and not stop.is_set() and not want.wait(0.1):
                    pass
            else:
                put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=run, name="albackup-prefetch", daemon=True)
    t.start()
    try:
        while True:
            if q.empty():
                want.set()
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
            want.set()
    finally:
        stop.set()
        t.join()


_CAST = re.compile(r"^('(?:[^']|'')*'|\(?-?[\d.]+\)?)::[\w\s\[\]\"().]+$")


def portable_default(default: str | None) -> str | None:
    """A server default another engine understands: literals and the current timestamp only."""
    if default is None:
        return None
    d = default.strip()
    while d.startswith("(") and d.endswith(")"):
        d = d[1:-1].strip()
    m = _CAST.match(d)
    if m:  # PostgreSQL spells literals with a cast: 'abc'::character varying, (0)::numeric
        d = m.group(1).strip()
        while d.startswith("(") and d.endswith(")"):
            d = d[1:-1].strip()
    up = d.upper()
    if up in ("CURRENT_TIMESTAMP", "NOW()", "CURRENT_TIMESTAMP()", "GETDATE()", "SYSDATETIME()", "LOCALTIMESTAMP"):
        return "CURRENT_TIMESTAMP"
    if up in ("CURRENT_DATE", "CURDATE()"):
        return "CURRENT_DATE"
    if up in ("NULL",):
        return None
    if up in ("TRUE", "FALSE"):
        return "1" if up == "TRUE" else "0"
    try:
        float(d)
        return d
    except ValueError:
        pass
    if len(d) >= 2 and d[0] == "'" and d[-1] == "'" and "'" not in d[1:-1].replace("''", ""):
        return d
    return None


Fn = Callable[..., Any]
