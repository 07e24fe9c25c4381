"""SQLite: one read transaction for the dump; executemany in one transaction for the load."""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy import types as sat
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles

from ..errors import UnreadObject
from ..mapping import ColumnMove, Loss, decimal_digits
from ..model import Column, Index, LogicalType, Routine, Schema, Table, Unique
from ..values import Converter, canonicalizer, decimal_text
from .base import Adapter, Snapshot, register

log = logging.getLogger(__name__)

#: the database header's settings a backup keeps (Schema.settings, ``sqlite_…``)
_SETTINGS = ("user_version", "application_id")

#: the shadow tables SQLite's own virtual table modules make, by module (for SQLite before
#: 3.37, whose pragma_table_list does not name them)
_SHADOWS = {"fts5": ("data", "idx", "content", "docsize", "config"),
            "fts4": ("content", "segments", "segdir", "docsize", "stat"),
            "fts3": ("content", "segments", "segdir", "docsize", "stat"),
            "rtree": ("node", "parent", "rowid"), "geopoly": ("node", "parent", "rowid")}


@compiles(sa.PrimaryKeyConstraint, "sqlite")
def _primary_key(constraint: sa.PrimaryKeyConstraint, compiler: Any, **kw: Any) -> str | None:
    """SQLAlchemy's primary key clause, with the DESC parts named in ``info["desc"]`` (the
    restore's plan sets it: SQLAlchemy's constraint has no order of its own)."""
    text = compiler.visit_primary_key_constraint(constraint, **kw)
    desc = constraint.info.get("desc")
    if not text or not desc:
        return text
    cols = ", ".join(compiler.preparer.quote(c.name) + (" DESC" if c.name in desc else "") for c in constraint.columns)
    return compiler.define_constraint_preamble(constraint, **kw) + f"PRIMARY KEY ({cols})"


@register
class SQLiteAdapter(Adapter):
    name = "sqlite"
    dialect_names = ("sqlite",)
    max_identifier = 10_000
    inline_constraints = True
    deferrable_constraints = True
    supports_schemas = False
    schemas_as_prefix = True
    composite_key_autoincrement = False
    primary_key_sorting_in_create = True
    # an index's name is unique in the database, with the tables' (sqlite_schema); constraint
    # names are not checked
    name_spaces = {"index": (("object", "schema"),), "key": (("constraint", "table"),),
                   "foreign_key": (("constraint", "table"),), "check": (("constraint", "table"),)}
    table_name_space = "object"

    def server_version(self, conn: Connection) -> str:
        return str(conn.exec_driver_sql("select sqlite_version()").scalar())

    def configure_engine(self, engine: sa.Engine) -> None:
        """Real transactions: pysqlite's own handling commits DDL behind our back, so we turn
        it off and emit BEGIN ourselves (SQLAlchemy's documented recipe). A failed restore then
        rolls back everything, CREATE and DROP TABLE included."""

        @sa.event.listens_for(engine, "connect")
        def _no_pysqlite_transactions(dbapi_conn: Any, record: Any) -> None:
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    def begin_snapshot(self, conn: Connection) -> Snapshot:
        conn.begin()   # BEGIN (see configure_engine)
        # The first read takes the shared lock that holds the snapshot for the whole dump.
        conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
        return Snapshot("sqlite-read-transaction", True, "one BEGIN ... read transaction")

    def refine_column(self, col: Column, info: dict[str, Any], table: Table) -> None:
        t = col.type
        if t.kind == "integer" and not t.unsigned:
            col.type = LogicalType("integer", bits=64)   # SQLite integers are 64-bit
        if t.kind == "float":
            col.type = LogicalType("float", bits=64)     # and its REAL is a double
        if col.original_type.upper() == "INTEGER" and table.primary_key == [col.name]:
            col.autoincrement = True                      # rowid alias

    def estimate_rows(self, conn: Connection, table: Table) -> int | None:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {self.q(table.name)}").scalar() or 0)

    def refine_table(self, table: Table, conn: Connection) -> None:
        """What SQLAlchemy's SQLite reflection misses: column-level UNIQUE, FK actions, the
        columns an index keeps descending, and indexes on expressions (taken from the statement
        that made them)."""
        qt = self.q(table.name)
        have = {tuple(u.columns) for u in table.uniques}
        indexed = {i.name for i in table.indexes}
        # a column's COLLATE, which no pragma reports, from the statement that made the table
        made = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                    (table.name,)).scalar()
        collations = column_collations(made or "")
        if table.options.get("sqlite_with_rowid") is False:      # SQLAlchemy reflects it
            for c in table.columns:      # no rowid: an INTEGER PRIMARY KEY is not given values
                c.autoincrement = False
        for c in table.columns:
            if c.name in collations:
                coll = collations[c.name]
                c.original_type = (f"{c.original_type} COLLATE "
                                   + (coll if coll.isidentifier() else '"' + coll.replace('"', '""') + '"'))
        desc: dict[str, dict[str, list[str]]] = {}
        coll_of: dict[str, dict[str, str]] = {}
        for iname, col, is_desc, coll in conn.exec_driver_sql(
                "SELECT l.name, x.name, x.desc, x.coll FROM pragma_index_list(?) l, pragma_index_xinfo(l.name) x "
                "WHERE x.key AND x.cid >= 0 ORDER BY l.name, x.seqno", (table.name,)):
            if is_desc:
                desc.setdefault(iname, {})[col] = ["desc"]
            if coll and coll.upper() != collations.get(col, "BINARY").upper():
                coll_of.setdefault(iname, {})[col] = coll      # COLLATE on the index column itself

        def read(iname: str) -> dict[str, Any]:
            """What pragma_index_xinfo says of the index beyond its columns."""
            return {**({"column_sorting": desc[iname]} if iname in desc else {}),
                    **({"column_collation": coll_of[iname]} if iname in coll_of else {})}

        for ix in table.indexes:
            if not ix.expressions and read(ix.name or ""):
                ix.options = {**(ix.options or {}), **read(ix.name or "")}
        for row in conn.exec_driver_sql(f"PRAGMA index_list({qt})").fetchall():
            name, unique, origin = row[1], row[2], row[3]
            if unique and origin == "u":
                cols = tuple(r[2] for r in conn.exec_driver_sql(f"PRAGMA index_info({self.q(name)})"))
                if name in desc or name in coll_of:
                    # UNIQUE (a DESC, b COLLATE NOCASE, …) in the table's definition: the unique
                    # index it is
                    table.uniques = [u for u in table.uniques if tuple(u.columns) != cols]
                    table.indexes.append(Index(None, list(cols), True, None, read(name)))
                elif cols not in have:
                    table.uniques.append(Unique(None, list(cols)))
                    have.add(cols)
            elif origin == "pk" and name in desc and not any(c.autoincrement for c in table.columns):
                # PRIMARY KEY (a DESC, b): SQLAlchemy reads the columns only. (A lone INTEGER key,
                # taken for the rowid by refine_column, is left as read: "INTEGER PRIMARY KEY
                # DESC" written on the column is made again as the rowid)
                table.primary_key_sorting = dict(desc[name])
            elif origin == "c" and name not in indexed:
                sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                                           (name,)).scalar()
                parts = index_parts(sql or "")
                if parts is None:
                    raise UnreadObject(f"table {table.key!r}: index {name!r} could not be read ({sql!r})")
                elements, where = parts
                table.indexes.append(Index(name, [], bool(unique), [elements],
                                           {"sqlite_where": where} if where else None))
        _named(table, constraint_names(made or ""))
        actions: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {}
        rows = conn.exec_driver_sql(f"PRAGMA foreign_key_list({qt})").fetchall()
        by_id: dict[int, list[Any]] = {}
        for r in rows:
            by_id.setdefault(r[0], []).append(r)
        for fk_rows in by_id.values():
            fk_rows.sort(key=lambda r: r[1])
            key = (fk_rows[0][2], tuple(r[3] for r in fk_rows))
            actions[key] = (fk_rows[0][5], fk_rows[0][6])
        for fk in table.foreign_keys:
            upd, dele = actions.get((fk.ref_table, tuple(fk.columns)), ("NO ACTION", "NO ACTION"))
            if fk.on_update is None and upd and upd != "NO ACTION":
                fk.on_update = upd
            if fk.on_delete is None and dele and dele != "NO ACTION":
                fk.on_delete = dele
        self.keep_statements(table, conn, made)

    def keep_statements(self, table: Table, conn: Connection, made: str | None) -> None:
        """The statements that made the table and its indexes (replayed into SQLite), what a
        virtual table is, and the columns declared ANY (SQLAlchemy reads them as NUMERIC: they
        hold any value, each kept as it is stored)."""
        table.create_sql = made
        cols = {c.name: c for c in table.columns}
        for name, declared in conn.exec_driver_sql("SELECT name, type FROM pragma_table_xinfo(?)", (table.name,)):
            if (declared or "").upper() == "ANY" and name in cols:
                cols[name].type, cols[name].original_type = LogicalType("native", native="ANY"), "ANY"
        module = virtual_module(made or "")
        if module:
            self.refine_virtual(table, module)
        table.index_sql = dict(conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL "
            "ORDER BY rowid", (table.name,)).all())

    def refine_virtual(self, table: Table, module: str) -> None:
        """A virtual table: its rows are read through it (never from its shadow tables); a
        full-text table's rowid (the document's id) is read as a column of its own, "rowid"."""
        table.virtual = module
        if module.startswith("fts") and not any(c.name.lower() == "rowid" for c in table.columns):
            table.columns.insert(0, Column("rowid", LogicalType("integer", bits=64), "INTEGER", nullable=False))
            table.primary_key = ["rowid"]
        content = fts_content(table.create_sql or "") if module.startswith("fts") else None
        if content:         # its rows are read from that table: replayed only with it
            table.options["sqlite_content"] = content
        if content == "":
            log.warning("table %s: a contentless %s table (content=''): its text is not stored, so its rows "
                        "are restored without it (MATCH finds none of them)", table.key, module)

    def hidden_tables(self, conn: Connection, schema: str | None) -> set[str]:
        """A virtual table's shadow tables, and the virtual tables that hold no rows of their own
        (fts5vocab, …: made again as they were, see ``reflect_extras``)."""
        tables = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all())
        derived = {name for name, sql in tables.items() if derived_virtual(sql or "")}
        try:
            return derived | {r[0] for r in conn.exec_driver_sql(
                "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'")}
        except sa.exc.DBAPIError:       # SQLite before 3.37
            pass
        return derived | ({f"{name}_{suffix}" for name, sql in tables.items()
                           for suffix in _SHADOWS.get(virtual_module(sql or "") or "", ())} & set(tables))

    def reflect_extras(self, conn: Connection, schema: Schema, schemas: list[str | None],
                       kinds: set[str]) -> None:
        rows = conn.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('view','trigger','table') "
            "AND sql IS NOT NULL ORDER BY rowid").fetchall()
        # a virtual table that shows what another holds (fts5vocab): made again with the views
        rows = [("view" if typ == "table" else typ, name, tbl, sql) for typ, name, tbl, sql in rows
                if typ != "table" or derived_virtual(sql)]
        for _, name, _, sql in rows:
            module = virtual_module(sql)
            if module and module not in _SHOWS_OTHERS:
                log.warning("table %s: a virtual table of module %s, which albackup does not know: its rows are "
                            "not dumped; it is made again with the views (into SQLite with that module)",
                            name, module)
        views = {name for typ, name, _, _ in rows if typ == "view"}
        for typ, name, tbl, sql in rows:
            if typ in kinds:     # a trigger on a view (INSTEAD OF) goes with the views
                schema.routines.append(Routine(typ, name, sql, None, tbl if typ == "trigger" and tbl not in views
                                               else None))
        for name in _SETTINGS:
            value = int(conn.exec_driver_sql(f"PRAGMA {name}").scalar() or 0)
            if value:
                schema.settings[f"sqlite_{name}"] = value
        # the tables in the order they were made (as sqlite3's .dump makes them again)
        order = {name: i for i, (name,) in enumerate(conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid"))}
        schema.tables.sort(key=lambda t: order.get(t.name, len(order)))
        try:
            seqs = dict(conn.exec_driver_sql("SELECT name, seq FROM sqlite_sequence").fetchall())
        except sa.exc.DBAPIError:
            seqs = {}
        for t in schema.tables:
            if t.name in seqs:
                for c in t.columns:
                    if c.autoincrement:
                        c.identity = {"next": int(seqs[t.name]) + 1, "sqlite_autoincrement": True}

    def reader(self, t: LogicalType) -> Converter:
        """SQLite keeps whatever a column is given: refuse values that do not match the declared
        type rather than change them (the error names the column)."""
        base = canonicalizer(t)
        check = _STRICT.get(t.kind)
        if check is None:
            return base

        def read(v: Any) -> Any:
            if v is None:
                return None
            if not check(v):
                raise ValueError(f"SQLite holds {v!r} ({type(v).__name__}) in a column declared "
                                 f"{t.describe()}; fix the value or declare the column as what it holds")
            return base(v)
        return read

    # ------------------------------------------------------------------ restore
    def target_type(self, col: Column, key_chars: int | None) -> tuple[LogicalType, sat.TypeEngine]:
        t = col.type
        k = t.kind
        if k == "integer":
            if t.unsigned and (t.bits or 64) == 64:
                return LogicalType("string", length=20), sa.VARCHAR(20)
            return LogicalType("integer", bits=64), sa.INTEGER()
        if k == "decimal":
            return t, sa.NUMERIC(t.precision, t.scale) if t.precision else sa.NUMERIC()
        if k == "float":
            return LogicalType("float", bits=64), sa.REAL()
        if k == "boolean":
            return t, sa.BOOLEAN()
        if k in ("string", "char"):
            return t, (sa.VARCHAR(t.length) if k == "string" else sa.CHAR(t.length))
        if k == "text":
            return t, sa.TEXT()
        if k == "binary":
            return LogicalType("binary"), sa.BLOB()
        if k == "date":
            return t, sa.DATE()
        if k == "time":
            return t, sa.TIME()
        if k == "datetime":
            return t, sa.DATETIME()
        if k == "uuid":
            return LogicalType("char", length=36), sa.CHAR(36)
        if k == "json":
            return t, sa.JSON()
        if k == "enum":
            n = max((len(v) for v in t.values or ("",)), default=1)
            return t, sa.Enum(*(t.values or ()), native_enum=False, create_constraint=True, length=max(n, 1))
        if k == "array":
            return LogicalType("json"), sa.JSON()
        return LogicalType("text"), sa.TEXT()

    def add_losses(self, move: ColumnMove, src: LogicalType) -> None:
        if move.target.kind == "decimal":
            scale = move.target.scale if move.target.precision is not None else None
            base = move.convert
            move.convert = lambda v: decimal_text(_decimal_param(base(v)), scale)
            move.losses.append(Loss("SQLite keeps decimals as 64-bit floats (15 significant digits)",
                                    lambda v: v in ("NaN", "Infinity", "-Infinity") or sum(decimal_digits(v)) > 15))
        if move.target.kind == "float":
            nan_loss_only(move)

    def writer(self, t: LogicalType) -> Converter:
        if t.kind == "datetime":
            return lambda v: v.replace("T", " ")   # SQLAlchemy's own SQLite spelling
        if t.kind == "decimal":
            return _decimal_param
        return lambda v: v

    def create_scratch(self, url: sa.URL, workdir: Any) -> tuple[sa.URL, Any]:
        import tempfile
        from pathlib import Path

        fd, path = tempfile.mkstemp(suffix=".sqlite", prefix="scratch-", dir=workdir)
        import os

        os.close(fd)
        os.unlink(path)
        return url.set(database=path), lambda: Path(path).unlink(missing_ok=True)

    replays_sql = True

    def prepare(self, conn: Connection, schema: Schema, tables: list[Table], same_engine: bool) -> None:
        """The database header's user_version and application_id, as the source had them."""
        for name in _SETTINGS:
            if same_engine and f"sqlite_{name}" in schema.settings:
                conn.exec_driver_sql(f"PRAGMA {name} = {int(schema.settings[f'sqlite_{name}'])}")

    #: WITHOUT ROWID and STRICT (SQLAlchemy reflects them), made again into SQLite
    kept_table_options = frozenset({"sqlite_with_rowid", "sqlite_strict"})

    def table_options(self, table: Table) -> dict[str, Any]:
        if any((c.identity or {}).get("sqlite_autoincrement") for c in table.columns):
            return {"sqlite_autoincrement": True}
        return {}

    def server_identity(self, conn: Connection) -> tuple[Any, ...] | None:
        """The main database's file as the file system knows it (device, inode): the same
        through a relative or absolute path, a symbolic or a hard link. An in-memory or
        temporary database is its connection's own."""
        path = next((r[2] for r in conn.exec_driver_sql("PRAGMA database_list") if r[1] == "main"), "")
        if not path:
            return ("sqlite", "memory", id(conn.connection.dbapi_connection))
        if not os.path.exists(path):
            return ("sqlite", "path", os.path.realpath(path))
        st = os.stat(path)
        return ("sqlite", "file", st.st_dev, st.st_ino)

    def begin_load(self, conn: Connection, concurrent: bool = False) -> None:
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")

    def validate_foreign_keys(self, conn: Connection, table: Table, sa_table: sa.Table) -> list[str]:
        rows = conn.exec_driver_sql(f"PRAGMA foreign_key_check({self.q(table.name)})").fetchall()
        return sorted({f"{table.name} → {r[2]}" for r in rows})

    def reset_identity(self, conn: Connection, table: Table, sa_table: sa.Table, same_engine: bool,
                       schema: Schema) -> None:
        for c in table.columns:
            nxt = (c.identity or {}).get("next")
            if c.autoincrement and nxt and (c.identity or {}).get("sqlite_autoincrement"):
                has = conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name='sqlite_sequence'").scalar()
                if has:
                    conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table.name,))
                    conn.exec_driver_sql(
                        f"INSERT INTO sqlite_sequence(name, seq) SELECT ?, max(coalesce(max({self.q(c.name)}), 0), ?) "
                        f"FROM {self.q(table.name)}", (table.name, int(nxt) - 1))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer()) or (
        isinstance(v, str) and v.strip().lstrip("+-").isdigit())


def _is_iso(parse: Callable[[str], Any], exact_len: int | None = None) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if not isinstance(v, str) or (exact_len is not None and len(v.strip()) != exact_len):
            return False
        try:
            parse(v.strip())
            return True
        except ValueError:
            return False
    return ok


_STRICT: dict[str, Callable[[Any], bool]] = {
    "integer": _is_int,
    "boolean": lambda v: v in (0, 1) or (isinstance(v, str) and v.strip().lower() in ("0", "1", "true", "false", "t", "f")),
    "float": lambda v: isinstance(v, (int, float)) or (isinstance(v, str) and _floatable(v)),
    "date": _is_iso(dt.date.fromisoformat, 10),
    "datetime": _is_iso(dt.datetime.fromisoformat),
    "time": _is_iso(dt.time.fromisoformat),
    "binary": lambda v: isinstance(v, bytes),
}


def _floatable(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def nan_loss_only(move: ColumnMove) -> None:
    """SQLite stores NaN as NULL (infinities survive)."""
    base = move.convert
    move.convert = lambda v: None if isinstance(v, float) and math.isnan(v) else base(v)
    move.losses.append(Loss("NaN stored as NULL (SQLite has no NaN)", lambda v: isinstance(v, float) and math.isnan(v)))


def _decimal_param(v: str) -> Any:
    """SQLite has no decimal storage: integers stay exact, the rest go as REAL."""
    if v in ("NaN", "Infinity", "-Infinity"):
        return float(v)
    if "." not in v or v.split(".")[1].strip("0") == "":
        try:
            i = int(v.split(".")[0])
            if -(1 << 63) <= i < (1 << 63):
                return i
        except ValueError:
            pass
    f = float(v)
    return f if not math.isnan(f) else None


def _quoted_end(sql: str, i: int) -> int:
    """Where the quoted name or string that starts at ``sql[i]`` ("…", `…`, […], '…') ends: the
    index after its closing quote (a doubled quote inside it is part of it)."""
    close = "]" if sql[i] == "[" else sql[i]
    j, n = i + 1, len(sql)
    while j < n:
        if sql[j] == close:
            if close != "]" and j + 1 < n and sql[j + 1] == close:
                j += 2           # a doubled quote inside the quoted text
                continue
            break
        j += 1
    return j + 1


def index_parts(sql: str) -> tuple[str, str | None] | None:
    """The element list (between the parentheses after the table's name) and the WHERE clause
    of a ``CREATE [UNIQUE] INDEX … ON table (…) [WHERE …]`` statement, quotes and nested
    parentheses respected; None when the statement is not of that shape."""
    i, n = 0, len(sql)
    depth, start = 0, -1
    on = False
    while i < n:
        ch = sql[i]
        if ch in "'\"`[":
            i = _quoted_end(sql, i)
            continue
        if not on and sql[i:i + 2].upper() == "ON" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")) \
                and (i + 2 >= n or not (sql[i + 2].isalnum() or sql[i + 2] == "_")):
            on = True
            i += 2
            continue
        if on and ch == "(":
            if depth == 0:
                start = i + 1
            depth += 1
        elif on and ch == ")" and depth:
            depth -= 1
            if depth == 0:
                elements = sql[start:i].strip()
                rest = sql[i + 1:].strip()
                if not rest:
                    return elements, None
                if rest[:5].upper() == "WHERE" and (len(rest) == 5 or not rest[5].isalnum()):
                    return elements, rest[5:].strip() or None
                return None
        i += 1
    return None


def _tokens(sql: str) -> list[str]:
    """SQLite SQL as tokens: quoted names and strings whole ("…", `…`, […], '…'), words,
    numbers, and single punctuation characters; comments and blanks dropped."""
    return [t for t, _, _ in _spans(sql)]


def _spans(sql: str) -> list[tuple[str, int, int]]:
    """``_tokens`` with where each starts and ends in ``sql``."""
    out: list[tuple[str, int, int]] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif ch in "'\"`[":
            j = _quoted_end(sql, i)
            out.append((sql[i:j], i, j))
            i = j
        elif ch.isalnum() or ch == "_" or ord(ch) > 127:
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$" or ord(sql[j]) > 127):
                j += 1
            out.append((sql[i:j], i, j))
            i = j
        else:
            out.append((ch, i, i + 1))
            i += 1
    return out


@dataclass
class ConstraintNames:
    """The names a ``CREATE TABLE`` statement gives its constraints (SQLAlchemy reads them with
    patterns that a name holding a quote, a comma or a line break defeats)."""
    primary_key: str | None = None
    uniques: dict[tuple[str, ...], str] = field(default_factory=dict)      # columns → name
    foreign_keys: dict[tuple[str, ...], str] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)                   # the check's SQL → name


def constraint_names(sql: str) -> ConstraintNames:
    out = ConstraintNames()
    spans = _spans(sql)
    start = next((k for k, s in enumerate(spans) if s[0] == "("), None)
    if start is None:
        return out
    for part in _top_level(spans, start):
        column = None if part[0][0].upper() in ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN") \
            else _unquote(part[0][0])
        k = 0
        while k < len(part) - 2:
            if part[k][0].upper() == "CONSTRAINT" and _depth(part, k) == 0:
                _one_constraint(sql, part, k + 2, _unquote(part[k + 1][0]), column, out)
            k += 1
    return out


def _depth(part: list[tuple[str, int, int]], k: int) -> int:
    return sum(1 if t == "(" else -1 if t == ")" else 0 for t, _, _ in part[:k])


def _top_level(spans: list[tuple[str, int, int]], start: int) -> list[list[tuple[str, int, int]]]:
    """The definitions between the parentheses at ``start`` and their match, each whole."""
    parts: list[list[tuple[str, int, int]]] = [[]]
    depth = 0
    for s in spans[start + 1:]:
        if s[0] == ")" and depth == 0:
            break
        if s[0] == "," and depth == 0:
            parts.append([])
            continue
        depth += 1 if s[0] == "(" else -1 if s[0] == ")" else 0
        parts[-1].append(s)
    return [p for p in parts if p]


def _one_constraint(sql: str, part: list[tuple[str, int, int]], k: int, name: str, column: str | None,
                    out: ConstraintNames) -> None:
    kind = part[k][0].upper() if k < len(part) else ""
    paren = next((j for j in range(k, len(part)) if part[j][0] == "("), None)
    inner = _top_level(part, paren) if paren is not None else []
    cols = tuple(_unquote(p[0][0]) for p in inner)
    if kind == "PRIMARY":
        out.primary_key = name
    elif kind == "UNIQUE":
        out.uniques[cols if column is None else (column,)] = name
    elif kind == "FOREIGN":
        out.foreign_keys[cols] = name
    elif kind == "REFERENCES" and column is not None:
        out.foreign_keys[(column,)] = name
    elif kind == "CHECK" and paren is not None:
        depth, end = 0, None
        for t, _, e in part[paren:]:
            depth += 1 if t == "(" else -1 if t == ")" else 0
            if depth == 0:
                end = e
                break
        if end is not None:
            out.checks[sql[part[paren][2]:end - 1].strip()] = name


def _named(table: Table, names: ConstraintNames) -> None:
    """The table's constraints under the names its statement gives them."""
    if table.primary_key and names.primary_key is not None:
        table.primary_key_name = names.primary_key
    for u in table.uniques:
        u.name = names.uniques.get(tuple(u.columns), u.name)
    for c in table.checks:
        c.name = names.checks.get(c.sqltext.strip(), c.name)
    for fk in table.foreign_keys:
        fk.name = names.foreign_keys.get(tuple(fk.columns), fk.name)


def _unquote(token: str) -> str:
    if token[:1] in "\"`'" and len(token) >= 2:
        return token[1:-1].replace(token[0] * 2, token[0])
    if token[:1] == "[":
        return token[1:-1]
    return token


def _definitions(sql: str) -> tuple[list[list[str]], list[str]]:
    """A ``CREATE TABLE`` statement's column and constraint definitions (each as its tokens
    outside parentheses) and the tokens after the list (the table options)."""
    toks = _tokens(sql)
    try:
        start = toks.index("(")
    except ValueError:
        return [], []                   # CREATE TABLE … AS SELECT
    parts: list[list[str]] = []
    depth, part = 0, []
    for i, tok in enumerate(toks[start + 1:], start + 1):
        if tok == "(":
            depth += 1
        elif tok == ")" and depth:
            depth -= 1
        elif depth == 0 and tok in (",", ")"):
            parts.append(part)
            part = []
            if tok == ")":
                return parts, toks[i + 1:]
        elif depth == 0:
            part.append(tok)
    return parts, []


def column_collations(sql: str) -> dict[str, str]:
    """``{column: collation}`` for the columns of a ``CREATE TABLE`` statement that name one
    other than BINARY (``name TEXT COLLATE NOCASE``), which SQLite's pragmas do not report."""
    out: dict[str, str] = {}
    for part in _definitions(sql)[0]:
        if part and part[0].upper() not in ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"):
            for k in range(1, len(part) - 1):
                if part[k].upper() == "COLLATE" and _unquote(part[k + 1]).upper() != "BINARY":
                    out[_unquote(part[0])] = _unquote(part[k + 1])
    return out


def virtual_module(sql: str) -> str | None:
    """The module of a ``CREATE VIRTUAL TABLE … USING module(…)`` statement, lowercase; None
    for any other statement."""
    toks = _tokens(sql)
    if [t.upper() for t in toks[:3]] != ["CREATE", "VIRTUAL", "TABLE"]:
        return None
    for i, t in enumerate(toks[3:-1], 3):
        if t.upper() == "USING":
            return _unquote(toks[i + 1]).lower()
    return None


#: the virtual table modules whose tables hold rows of their own (others, such as fts5vocab,
#: show what other tables hold: they are made again as views are, and not dumped)
_OWN_ROWS = frozenset({"fts3", "fts4", "fts5", "rtree", "rtree_i32", "geopoly"})


#: the modules known to show what other tables hold (others not in _OWN_ROWS are taken so too,
#: with a warning)
_SHOWS_OTHERS = frozenset({"fts5vocab", "fts4aux", "dbstat", "sqlite_dbpage", "sqlite_stmt"})


def derived_virtual(sql: str) -> bool:
    module = virtual_module(sql)
    return module is not None and module not in _OWN_ROWS


def fts_content(sql: str) -> str | None:
    """The ``content=`` option of a full-text table: the table its text is read from (external
    content), "" (contentless: none kept), or None (the text is its own)."""
    toks = _tokens(sql)
    for i, t in enumerate(toks[:-2]):
        if t.lower() == "content" and toks[i + 1] == "=":
            return _unquote(toks[i + 2])
    return None
