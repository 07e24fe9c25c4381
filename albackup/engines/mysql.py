"""MySQL and MariaDB: consistent-snapshot transaction, unbuffered cursor, LOAD DATA LOCAL INFILE load.

Both PyMySQL (``mysql+pymysql``) and mysqlclient (``mysql+mysqldb``) are supported; the driver is
told apart by the module of the live DBAPI connection. The load streams rows into a temporary
tab-separated file and loads it with ``LOAD DATA LOCAL INFILE`` every ``load_group_bytes``; where
the server or the client does not allow local infile, it falls back to multi-row INSERTs.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import operator
import os
import re
import tempfile
import warnings
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy import types as sat
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex

from ..codec import LARGE_BYTES, LargeBase
from ..errors import LoadConflict, RestoreError, UnreadObject
from ..mapping import INT_RANGE, ColumnMove, Loss
from ..model import Check, Column, ForeignKey, Index, LogicalType, Routine, Schema, Sequence, Table
from ..values import (ISO_DATE_INLINE, ISO_DATETIME_INLINE, Converter, EchoHash, datetime_text, server_date_text,
                      with_inline)
from .base import Adapter, Snapshot, Verbatim, compile_lines, fetch_batches, prefetched, register

log = logging.getLogger(__name__)

_DEFINER = re.compile(r"\s+DEFINER\s*=\s*(`[^`]*`|'[^']*'|\S+)@(`[^`]*`|'[^']*'|\S+)", re.I)
_JSON_CHECK = re.compile(r"^\s*json_valid\(\s*`(?P<col>(?:[^`]|``)+)`\s*\)\s*$", re.I)
SESSION_SQL_MODE = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"

#: server errors meaning "LOAD DATA LOCAL is not allowed here": 1148 ER_NOT_ALLOWED_COMMAND,
#: 3948 ER_CLIENT_LOCAL_FILES_DISABLED (MySQL 8), 4166 ER_LOAD_INFILE_CAPABILITY_DISABLED (MariaDB),
#: 2068 CR_LOAD_DATA_LOCAL_INFILE_REJECTED (libmysqlclient refused the file)
LOCAL_INFILE_REFUSED = frozenset({1148, 3948, 4166, 2068})
#: server errors of a lost lock conflict: 1213 ER_LOCK_DEADLOCK, 1205 ER_LOCK_WAIT_TIMEOUT
LOCK_CONFLICT = frozenset({1213, 1205})
_LOAD_METHOD_KEY = "albackup.mysql.load_method"
LOAD_DATA = "load-data"
INSERT = "insert"


def strip_definer(sql: str) -> str:
    return _DEFINER.sub("", sql, count=1)


def with_definer(sql: str, definer: str) -> str:
    """``sql`` (CREATE … without a DEFINER clause) with ``DEFINER=definer`` where MySQL wants it:
    after CREATE [OR REPLACE] [ALGORITHM=…]."""
    return _DEFINER_AT.sub(lambda m: f"{m.group(0)} DEFINER={definer}", sql, count=1)


def routine_keyword(r: Routine) -> str:
    """The object type of ``r`` as DROP names it."""
    if r.kind != "routine":
        return r.kind.upper()
    m = re.search(r"\b(PROCEDURE|FUNCTION)\b", _blank_quoted(r.sql), re.I)
    return m.group(1).upper() if m else "PROCEDURE"


def _clamp(v: int | None) -> int | None:
    """A sequence bound within MariaDB's (a signed 64-bit range, one short at each end)."""
    return None if v is None else max(-(1 << 63) + 1, min(v, (1 << 63) - 2))


_DEFINER_AT = re.compile(r"^\s*CREATE(?:\s+OR\s+REPLACE)?(?:\s+ALGORITHM\s*=\s*\w+)?", re.I)


def definer_of(sql: str) -> str | None:
    """The ``user``@``host`` of the DEFINER clause in a SHOW CREATE statement (None: none)."""
    m = _DEFINER.search(sql)
    return f"{m.group(1)}@{m.group(2)}" if m else None


#: the MySQL/MariaDB spatial types, whose values are stored as a 4-byte SRID and the WKB
SPATIAL_TYPES = frozenset({"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
                           "multipolygon", "geometrycollection"})
_SPATIAL_UNKNOWN = re.compile(r"^Did not recognize type '(?:%s)' of column " % "|".join(SPATIAL_TYPES), re.I)
#: Table.options key of the table's create options SQLAlchemy does not read right, as
#: information_schema.TABLES.CREATE_OPTIONS lists them (row format and partitioning left out)
CREATE_OPTIONS = "mysql_create_options"
_CREATE_OPTION = re.compile(r"(`[^`]+`|\w+)(?:=('(?:[^']|'')*'|\S+))?")


def _create_options(text: str) -> str:
    """``text`` (CREATE_OPTIONS) without the options kept otherwise: ROW_FORMAT (a table option
    of its own) and ``partitioned`` (Table.partition_clause)."""
    keep = [m.group(0) for m in _CREATE_OPTION.finditer(text)
            if m.group(1).strip("`").lower() not in ("row_format", "partitioned")]
    return " ".join(keep)


_TABLE_OPTION = re.compile(r"(`(?:[^`]|``)+`|\w+)\s*=\s*('(?:[^'\\]|\\.|'')*'|\S+)")
#: table options SQLAlchemy reads and a restore makes itself
_OPTIONS_KEPT_OTHERWISE = frozenset({"ENGINE", "CHARSET", "COLLATE", "AUTO_INCREMENT", "ROW_FORMAT", "COMMENT"})


def _more_table_options(create_table: str) -> str:
    """The options at the end of a SHOW CREATE TABLE statement (after the columns' parenthesis,
    before any partition clause) that a restore does not make otherwise: STATS_*, CHECKSUM,
    PAGE_CHECKSUM, TRANSACTIONAL, MAX_ROWS, `PAGE_COMPRESSED`='1', …, as printed."""
    blank = _blank_quoted(create_table)
    start = blank.find("\n)")
    if start < 0:
        return ""
    end = (m.start() if (m := _PARTITION_START.search(blank, start)) else len(blank))
    return " ".join(m.group(0) for m in _TABLE_OPTION.finditer(create_table, start + 2, end)
                    if m.group(1).strip("`").upper() not in _OPTIONS_KEPT_OTHERWISE)


#: Table.options key of a system-versioned table's own row start and end columns and period, as
#: the ALTER TABLE clauses that add them (the columns are not read: the server sets them)
SYSTEM_TIME_COLUMNS = "mysql_system_time_columns"
_PERIOD_UNREAD = re.compile(r"^Unknown schema content: '\s*PERIOD FOR SYSTEM_TIME ")


def _drop_period_column(t: Table, c: Column) -> None:
    """``c`` (a ROW START/END column) out of ``t``: MariaDB adds the row end to the primary key and
    unique keys itself."""
    t.columns.remove(c)
    t.primary_key = [n for n in t.primary_key if n != c.name]
    for u in t.uniques:
        u.columns = [n for n in u.columns if n != c.name]
    for ix in t.indexes:
        if ix.unique:
            ix.columns = [n for n in ix.columns if n != c.name]


#: Table.options key of a MariaDB system-versioned table (WITH SYSTEM VERSIONING)
SYSTEM_VERSIONING = "mysql_system_versioning"
_COMPRESSED = re.compile(r"/\*M!\d+\s+COMPRESSED\s*\*/|\bCOMPRESSED\b", re.I)
_SEQUENCE_DEFAULT = re.compile(r"^NEXTVAL\((`(?:[^`]|``)+`)\)$")
_NEXTVAL = re.compile(r"^\s*nextval\(", re.I)


def _blank_quoted(sql: str) -> str:
    """``sql`` with the inside of each quoted string and identifier ('…', "…", `…`) blanked out
    (same length, no line breaks), so that a search for keywords sees only the SQL around them."""
    out = list(sql)
    i, n = 0, len(sql)
    while i < n:
        quote = sql[i]
        if quote not in "'\"`":
            i += 1
            continue
        j = i + 1
        while j < n:
            c = sql[j]
            if c == "\\" and quote != "`":
                j += 2
                continue
            if c == quote:
                if j + 1 < n and sql[j + 1] == quote:
                    j += 2
                    continue
                break
            j += 1
        for k in range(i + 1, min(j, n)):
            out[k] = "_"
        i = j + 1
    return "".join(out)


#: where the partition clause starts: a line of its own, inside MySQL's version comment or not
_PARTITION_START = re.compile(r"^[ \t]*(?P<comment>/\*!\d+[ \t]*)?(?P<clause>PARTITION\s+BY\b)", re.M | re.I)
#: the table options SQLAlchemy reads of a partitioned table (the clause replaces them)
_SA_PARTITION_OPTION = re.compile(r"^(?:mysql|mariadb)_(?:sub)?partition(?:s|_by|_definitions)$")
#: partition options naming places on the source server, left out of a restore
_SERVER_PLACE = re.compile(r"\s+(?:(?:DATA|INDEX)\s+DIRECTORY|TABLESPACE)\s*=?\s*(?:'_*'|`_*`|\w+)", re.I)


def partition_clause(create_table: str) -> str | None:
    """The partition clause at the end of a ``SHOW CREATE TABLE`` statement, from ``PARTITION BY``
    to the end: as MariaDB prints it, or taken out of the version comment MySQL prints it in
    (``/*!50100 PARTITION BY … */``). None for a table that is not partitioned."""
    m = _PARTITION_START.search(_blank_quoted(create_table))
    if m is None:
        return None
    clause = create_table[m.start("clause"):].strip()
    if m.group("comment"):
        clause = re.sub(r"\s*\*/$", "", clause)
    return clause


def restorable_partition_clause(clause: str) -> str:
    """``clause`` without the options that name places on the source server (a partition's
    DATA/INDEX DIRECTORY and TABLESPACE), which the target may not have."""
    spans = [m.span() for m in _SERVER_PLACE.finditer(_blank_quoted(clause))]
    for start, end in reversed(spans):
        clause = clause[:start] + clause[end:]
    return clause


@compiles(CreateIndex, "mysql")
@compiles(CreateIndex, "mariadb")
def _create_index(create: CreateIndex, compiler: Any, **kw: Any) -> str:
    """SQLAlchemy's CREATE INDEX with the index's COMMENT (``info["comment"]``, set by the
    restore's plan from the source's ``mysql_comment``)."""
    text = compiler.visit_create_index(create, **kw)
    comment = create.element.info.get("comment")
    if comment:
        text += " COMMENT " + compiler.sql_compiler.render_literal_value(str(comment), sat.String())
    return str(text)


@register
class MySQLAdapter(Adapter):
    name = "mysql"
    dialect_names = ("mysql", "mariadb")
    fulltext_index = {"mysql_prefix": "FULLTEXT"}
    max_identifier = 64
    identifier_chars = True
    schemas_as_prefix = True
    named_primary_keys = False
    default_case_insensitive = True   # utf8mb4_general_ci, utf8mb4_0900_ai_ci

    @property
    def name_spaces(self) -> dict[str, tuple[tuple[str, str], ...]]:   # type: ignore[override]
        """Indexes (a unique key is one) are named per table; a foreign key's name is unique in
        the database (InnoDB), apart from the index of the same name made for it; a check's name
        is unique per table on MariaDB (which names unnamed ones CONSTRAINT_1, … in each table)
        and per database on MySQL 8."""
        return {"index": (("index", "table"),), "key": (("index", "table"),),
                "foreign_key": (("foreign_key", "schema"),),
                "check": (("check", "table" if self.dialect.is_mariadb else "schema"),)}
    transactional_ddl = False
    key_text_chars = 768     # 3072-byte index keys / 4 bytes per utf8mb4 character

    def configure_engine(self, engine: sa.Engine) -> None:
        """Let connections of ``engine`` use LOAD DATA LOCAL INFILE (the restore's fast path).

        PyMySQL: only the CLIENT_LOCAL_FILES capability is announced at connect time; the
        driver's own switch (``_local_infile``) stays off and is turned on by ``load`` just for
        its own LOAD DATA statements, so a server cannot ask for a client file at any other time.
        mysqlclient: ``local_infile=2`` is MariaDB Connector/C's "auto" mode (a file request is
        accepted only right after a statement starting with LOAD); libmysqlclient reads it as on.
        An explicit ``local_infile`` in the URL or connect_args is left as it is.
        """
        driver = engine.dialect.driver
        if driver not in ("pymysql", "mysqldb"):
            return

        @sa.event.listens_for(engine, "do_connect")
        def _allow_local_files(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
            if driver == "pymysql":
                if "local_infile" not in cparams:
                    from pymysql.constants import CLIENT

                    cparams["client_flag"] = int(cparams.get("client_flag", 0)) | CLIENT.LOCAL_FILES
            else:
                cparams.setdefault("local_infile", 2)
                cparams.setdefault("charset", "utf8mb4")   # as PyMySQL: text decodes the same way

    def _session(self, conn: Connection) -> None:
        conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")
        conn.exec_driver_sql(f"SET SESSION sql_mode = '{SESSION_SQL_MODE}'")

    def begin_snapshot(self, conn: Connection) -> Snapshot:
        self._session(conn)
        conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        other = conn.exec_driver_sql(
            "SELECT table_name, engine FROM information_schema.tables WHERE table_schema = DATABASE() "
            "AND table_type = 'BASE TABLE' AND engine NOT IN ('InnoDB', 'Aria') ORDER BY table_name").fetchall()
        if other:
            names = ", ".join(f"{n} ({e})" for n, e in other[:10])
            return Snapshot("mysql-consistent-snapshot", False,
                            f"InnoDB tables read in one consistent snapshot; not transactional: {names}")
        return Snapshot("mysql-consistent-snapshot", True,
                        "START TRANSACTION WITH CONSISTENT SNAPSHOT (InnoDB)")

    supports_parallel_dump = True
    # InnoDB reads a primary key range in key order (the table is stored in it): a page after
    # the last key read costs no sort, and no boundary is searched for (units.KeyPages)
    supports_key_pages = True
    # the storage engine, the table's character set and collation (which its text columns
    # follow where they name none) and row format; its partitioning is Table.partition_clause
    # (see partition_clause_options)
    kept_table_options = frozenset({"mysql_engine", "mysql_default charset", "mysql_collate", "mysql_row_format",
                                    "mysql_system_versioning", "mysql_system_time_columns", "mysql_create_options"})
    table_options_by_sql = frozenset({"mysql_system_versioning", "mysql_system_time_columns", "mysql_create_options"})

    def table_option_sql(self, table: Table, qualified: str) -> list[str]:
        """The table's other create options (STATS_*, CHECKSUM, PAGE_CHECKSUM, TRANSACTIONAL,
        MAX_ROWS, PAGE_COMPRESSED, …), which SQLAlchemy misreads, set on the new, empty table."""
        more = table.options.get(CREATE_OPTIONS)
        return [f"ALTER TABLE {qualified} {self.literal_sql(str(more))}"] if more else []

    def table_last_sql(self, table: Table, name: str, schema: str | None) -> list[tuple[str, str]]:
        """A system-versioned table becomes one at the very end: MariaDB refuses other ALTERs of
        it (the indexes and keys added after the load) while system_versioning_alter_history is
        ERROR, its default."""
        if table.options.get(SYSTEM_VERSIONING):
            period = table.options.get(SYSTEM_TIME_COLUMNS)
            return [(f"table {table.key}: system versioning",
                     f"ALTER TABLE {self.qtable(name, schema)} " + (f"{self.literal_sql(str(period))}, " if period else "")
                     + "ADD SYSTEM VERSIONING")]
        return []

    @classmethod
    def source_notes(cls, table: Table, same_engine: bool) -> list[str]:
        notes = []
        if table.options.get(SYSTEM_VERSIONING):
            notes.append("system-versioned in the source: " + (
                "made so again, holding its current rows; the history rows are not kept" if same_engine
                else "restored as a plain table holding its current rows; the history rows are not kept"
                + (" (nor its row start and end columns)" if table.options.get(SYSTEM_TIME_COLUMNS) else "")))
        if same_engine:
            return notes
        for c in table.columns:
            if c.type.kind == "binary" and c.original_type.split("(")[0].lower() in SPATIAL_TYPES:
                notes.append(f"column {c.name!r}: {c.original_type} (spatial) carried as bytes: MariaDB/MySQL's "
                             "stored form, a 4-byte little-endian SRID then the WKB; it is not a spatial type there, "
                             "and spatial functions and SPATIAL indexes do not apply")
            if c.invisible:
                notes.append(f"column {c.name!r}: INVISIBLE is not kept (SELECT * shows it)")
        return notes

    def partition_clause_options(self, clause: str) -> tuple[dict[str, Any], str | None]:
        """The clause goes at the end of CREATE TABLE (SQLAlchemy's ``PARTITION BY`` table
        option), so the table is made partitioned, empty, before the load routes each row into
        its partition; an ALTER TABLE … PARTITION BY afterwards would only rebuild it once more.
        The keys and indexes added after the load include the partitioning columns as they did
        in the source (MySQL refuses a unique key that does not); a partitioned InnoDB table has
        no foreign keys, in the source either."""
        body = re.sub(r"^PARTITION\s+BY\s+", "", clause.strip(), count=1, flags=re.I)
        if re.match(r"SYSTEM_TIME\b", body, re.I):
            return {}, "PARTITION BY SYSTEM_TIME needs system versioning, which is not restored"
        # the option is read under the dialect's own name (mysql_… or mariadb_…)
        return {f"{self.dialect.name}_partition_by": self.literal_sql(restorable_partition_clause(body))}, None

    def reader(self, t: LogicalType) -> Converter:
        # stream() keeps DATE/DATETIME/TIMESTAMP as the server's text (_decimals_as_text)
        # the C parser refuses zero dates and the invalid ones ALLOW_INVALID_DATES lets in
        if t.kind == "date":
            return with_inline(lambda v: None if v is None else server_date_text(v), ISO_DATE_INLINE)
        if t.kind == "datetime" and not t.timezone:
            return with_inline(lambda v: None if v is None else _datetime_text_fast(v), ISO_DATETIME_INLINE)
        if t.kind == "binary":
            return with_inline(_binary_value, "({x} if {x}.__class__ is bytes else {f}({x}))")
        if t.kind == "decimal":    # the server's text, kept; a negative zero, should one come, made 0
            base = super().reader(t)

            def decimal(v: Any) -> Any:
                return _decimal_text(v) if isinstance(v, (str, bytes, bytearray)) else base(v)

            return with_inline(decimal, "({x} if {x}.__class__ is str and ({x}[:1] != '-' or {x}.strip('-0.')) "
                                        "else {f}({x}))")
        return super().reader(t)
    # Both drivers return int for integers, float for DOUBLE (FLOAT is read as DOUBLE and
    # rounded by the float32 reader), and str for text columns, whose CHAR padding MySQL already
    # strips on read; the session's sql_mode never sets PAD_CHAR_TO_FULL_LENGTH.
    # Decimals come as the server's text (see _decimals_as_text), already padded to their scale.
    passthrough_kinds = frozenset({"integer", "float", "string", "text", "char", "enum"})
    supports_parallel_restore = True

    def lock_for_snapshot(self, conn: Connection) -> str | None:
        """Before a parallel dump's snapshots: FLUSH TABLES WITH READ LOCK, so that the dump's own
        snapshot and every worker's start while nothing can commit. None when it is held, else
        why not (it needs the RELOAD privilege and waits at most lock_wait_timeout)."""
        try:
            conn.exec_driver_sql("SET SESSION lock_wait_timeout = 60")
            conn.exec_driver_sql("FLUSH TABLES WITH READ LOCK")
        except sa.exc.DBAPIError as exc:
            return str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        self._locked = True
        return None

    def release_snapshot_lock(self, conn: Connection) -> None:
        if getattr(self, "_locked", False):
            conn.exec_driver_sql("UNLOCK TABLES")
            self._locked = False

    def server_version(self, conn: Connection) -> str:
        return str(conn.exec_driver_sql("SELECT VERSION()").scalar())

    def refine_column(self, col: Column, info: dict[str, Any], table: Table) -> None:
        if info.get("autoincrement") is True:
            col.autoincrement = True

    def held_name(self, name: str) -> tuple[str, str | None]:
        """MySQL/MariaDB names hold characters of the Basic Multilingual Plane only (not U+0000,
        not an emoji: each becomes U+FFFD) and cannot end with a space (trailing spaces dropped)."""
        held, why = super().held_name(name)
        wide = "".join("\ufffd" if ord(ch) > 0xFFFF else ch for ch in held)
        if wide != held:
            held, why = wide, "MySQL/MariaDB names hold no character beyond U+FFFF"
        if held != held.rstrip(" "):
            held, why = held.rstrip(" ") or "_", "MySQL/MariaDB names cannot end with a space"
        return held, why

    def _unknown_types(self, table: Table, conn: Connection) -> None:
        """A type SQLAlchemy does not know (MariaDB's INET6, POINT): as the server names it."""
        unknown = [c for c in table.columns if c.type.kind == "native" and c.original_type == "NULL"]
        if unknown:
            named = dict(conn.exec_driver_sql(
                "SELECT column_name, column_type FROM information_schema.columns "
                "WHERE table_schema = coalesce(%s, DATABASE()) AND table_name = %s", (table.schema, table.name)).all())
            for c in unknown:
                if named.get(c.name):
                    c.original_type = str(named[c.name])
                    c.type = LogicalType("native", native=c.original_type)

    def prime_reflection(self, conn: Connection, insp: Any, name: str, schema: str | None) -> None:
        """SQLAlchemy reads SHOW CREATE TABLE line by line with patterns: a name holding a line
        break splits its line (the column, key or constraint is skipped) and a backtick in a
        name comes back doubled. Such names are read here in place of a stand-in name each, put
        back in what the parser made, and the result is what the inspector uses (also when no
        name needs it: SQLAlchemy then does not read SHOW CREATE TABLE again)."""
        row = conn.exec_driver_sql(f"SHOW CREATE TABLE {self.qtable(name, schema)}").first()
        if row is None or not str(row[0]).strip() or _VIEW.match(row[1]):
            return
        sql, names = _stand_ins(row[1])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            state = self.dialect._tabledef_parser.parse(sql, self.dialect._connection_charset)
        for w in caught:     # what it could not read, under the real names
            warnings.warn(_put_back(str(w.message), names), w.category)
        _put_back(state, names)
        insp.info_cache[("_setup_parser", (name,), (("schema", schema),))] = state
        if insp.get_columns(name, schema=schema) is not state.columns:
            raise UnreadObject(f"table {self.qtable_value(name, schema)}: names holding a line break or a backtick "
                               "cannot be read with this SQLAlchemy version")

    def refine_table(self, table: Table, conn: Connection) -> None:
        self._unknown_types(table, conn)
        if conn.dialect.is_mariadb and (conn.dialect.server_version_info or ()) >= (10, 5, 10):
            # MariaDB keeps a CHECK written on a column apart (LEVEL 'Column', named after the
            # column; the column appeared in 10.5.10) and SQLAlchemy does not read those: they
            # are restored as table checks.
            have = {c.sqltext for c in table.checks}
            for name, text in conn.exec_driver_sql(
                    "SELECT constraint_name, check_clause FROM information_schema.check_constraints "
                    "WHERE constraint_schema = coalesce(%s, DATABASE()) AND table_name = %s AND level = 'Column' "
                    "ORDER BY constraint_name", (table.schema, table.name)):
                if text not in have:
                    table.checks.append(Check(name, text))
        keep = []
        for chk in table.checks:
            m = _JSON_CHECK.match(chk.sqltext or "")
            if m:   # MariaDB spells JSON as LONGTEXT with a json_valid() check
                name = m.group("col").replace("``", "`")
                for c in table.columns:
                    if c.name == name and c.type.kind == "text":
                        c.type = LogicalType("json")
                        c.original_type = "JSON"
                continue
            keep.append(chk)
        table.checks = keep
        if any(_SA_PARTITION_OPTION.match(k) for k in table.options):
            # SQLAlchemy's reflection read SHOW CREATE TABLE and names the partitioning among the
            # options, but its reading of the partitions is not SQL that makes them again (commas
            # between values dropped, a parenthesis left over): the clause is taken as written
            row = conn.exec_driver_sql(f"SHOW CREATE TABLE {self.qtable(table.name, table.schema)}").first()
            clause = partition_clause(row[1]) if row else None
            if clause:
                table.partition_clause = clause
                table.options = {k: v for k, v in table.options.items() if not _SA_PARTITION_OPTION.match(k)}
            else:
                log.warning("table %s: partitioned, but its PARTITION BY clause was not found in SHOW CREATE "
                            "TABLE; it is restored as one table, without partitions", table.key)
        if any(c.autoincrement for c in table.columns):
            nxt = conn.exec_driver_sql(
                "SELECT auto_increment FROM information_schema.tables WHERE table_schema = "
                "coalesce(%s, DATABASE()) AND table_name = %s", (table.schema, table.name)).scalar()
            for c in table.columns:
                if c.autoincrement and nxt:
                    c.identity = {"next": int(nxt)}

    def reflect_unread(self, conn: Connection, table: Table, warnings: list[str]) -> list[str]:
        """SQLAlchemy's reading of SHOW CREATE TABLE skips a foreign key whose line holds a name
        with a backtick in it (with a warning): the table's foreign keys that it did not read
        come from information_schema instead."""
        rest = [w for w in warnings if not _UNREAD_FOREIGN_KEY.search(w)]
        if len(rest) < len(warnings):
            have = {fk.name for fk in table.foreign_keys}
            found: dict[str, ForeignKey] = {}
            for name, col, ref_schema, ref_table, ref_col, on_update, on_delete, own in conn.exec_driver_sql(
                    "SELECT k.constraint_name, k.column_name, k.referenced_table_schema, k.referenced_table_name, "
                    "k.referenced_column_name, r.update_rule, r.delete_rule, k.table_schema "
                    "FROM information_schema.key_column_usage k JOIN information_schema.referential_constraints r "
                    "ON r.constraint_schema = k.constraint_schema AND r.constraint_name = k.constraint_name "
                    "AND r.table_name = k.table_name "
                    "WHERE k.table_schema = coalesce(%s, DATABASE()) AND k.table_name = %s "
                    "AND k.referenced_table_name IS NOT NULL ORDER BY k.constraint_name, k.ordinal_position",
                    (table.schema, table.name)):
                if name in have:
                    continue
                fk = found.setdefault(name, ForeignKey(
                    name, [], ref_table, [], None if ref_schema == own else ref_schema,
                    None if on_delete == "RESTRICT" else on_delete, None if on_update == "RESTRICT" else on_update))
                fk.columns.append(col)
                fk.ref_columns.append(ref_col)
            table.foreign_keys.extend(found.values())
        rest = [w for w in rest if not _SPATIAL_UNKNOWN.match(w) and not _PERIOD_UNREAD.match(w)]   # _column_details
        return super().reflect_unread(conn, table, rest)

    def reflect_extras(self, conn: Connection, schema: Schema, schemas: list[str | None],
                       kinds: set[str]) -> None:
        self._descending_parts(conn, schema, schemas)
        self._column_details(conn, schema, schemas)
        self._index_comments(conn, schema, schemas)
        self._sequences(conn, schema)
        if "view" in kinds:
            for (name,) in conn.exec_driver_sql(
                    "SELECT table_name FROM information_schema.views WHERE table_schema = DATABASE() "
                    "ORDER BY table_name"):
                row = conn.exec_driver_sql(f"SHOW CREATE VIEW {self.q(name)}").first()
                schema.routines.append(Routine("view", name, strip_definer(row[1]), definer=definer_of(row[1]),
                                               client_charset=row[2], collation=row[3]))
        if "trigger" in kinds:
            for name, tbl in conn.exec_driver_sql(
                    "SELECT trigger_name, event_object_table FROM information_schema.triggers "
                    "WHERE trigger_schema = DATABASE() ORDER BY event_object_table, action_order"):
                row = conn.exec_driver_sql(f"SHOW CREATE TRIGGER {self.q(name)}").first()
                schema.routines.append(Routine("trigger", name, strip_definer(row[2]), None, tbl,
                                               sql_mode=row[1], definer=definer_of(row[2]),
                                               client_charset=row[3], collation=row[4]))
        if "routine" in kinds:
            found = []
            for name, typ in conn.exec_driver_sql(
                    "SELECT routine_name, routine_type FROM information_schema.routines "
                    "WHERE routine_schema = DATABASE() ORDER BY routine_type, routine_name"):
                row = conn.exec_driver_sql(f"SHOW CREATE {typ} {self.q(name)}").first()
                if row and row[2]:
                    found.append(Routine("routine", name, strip_definer(row[2]), sql_mode=row[1],
                                         definer=definer_of(row[2]), client_charset=row[3], collation=row[4]))
            schema.routines[:0] = found
            for (name,) in conn.exec_driver_sql(
                    "SELECT event_name FROM information_schema.events WHERE event_schema = DATABASE() "
                    "ORDER BY event_name"):
                # Event, sql_mode, time_zone, Create Event, …
                row = conn.exec_driver_sql(f"SHOW CREATE EVENT {self.q(name)}").first()
                if row and row[3]:
                    schema.routines.append(Routine("event", name, strip_definer(row[3]), sql_mode=row[1],
                                                   definer=definer_of(row[3]), time_zone=row[2],
                                                   client_charset=row[4], collation=row[5]))

    def _sequences(self, conn: Connection, schema: Schema) -> None:
        """MariaDB's sequences (tables of type SEQUENCE), each with its options and the next value
        it has not handed out to any connection's cache (as mariadb-dump keeps it: values cached
        by a connection but not used are skipped, as after a server restart)."""
        if not self.dialect.is_mariadb:
            return
        for (name,) in conn.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
                "AND table_type = 'SEQUENCE' ORDER BY table_name").fetchall():
            row = conn.exec_driver_sql(
                "SELECT next_not_cached_value, minimum_value, maximum_value, start_value, increment, "
                f"cache_size, cycle_option FROM {self.q(name)}").first()
            if row is None:
                continue
            nxt, lo, hi, start, inc, cache, cycle = row
            schema.sequences.append(Sequence(name, None, int(start), int(inc), int(lo), int(hi), bool(cycle),
                                             int(nxt), False, None, None, int(cache)))

    def _column_details(self, conn: Connection, schema: Schema, schemas: list[str | None]) -> None:
        """What SQLAlchemy's reading of SHOW CREATE TABLE misses, from information_schema.COLUMNS
        (one query per schema): the spatial types (GEOMETRY, POINT, LINESTRING, POLYGON, MULTI…,
        GEOMETRYCOLLECTION), whose values are their stored bytes (SRID then WKB), and other types
        it does not know; a default that draws from a sequence (NEXTVAL), which it does not read,
        without the source database's name."""
        for s in schemas:
            tables = {t.name: t for t in schema.tables if t.schema == s}
            if not tables:
                continue
            period: dict[str, list[str]] = {}
            for tname, cname, data_type, column_type, default, db, extra, generation in conn.exec_driver_sql(
                    "SELECT table_name, column_name, data_type, column_type, column_default, table_schema, extra, "
                    "generation_expression "
                    "FROM information_schema.columns WHERE table_schema = coalesce(%s, DATABASE()) "
                    "ORDER BY table_name, ordinal_position", (s,)):
                t = tables.get(tname)
                c = next((x for x in t.columns if x.name == cname), None) if t else None
                if c is None:
                    continue
                if str(generation or "").upper() in ("ROW START", "ROW END"):
                    _drop_period_column(t, c)    # the server sets it: made again with versioning (table_last_sql)
                    period.setdefault(tname, []).append(
                        f"ADD COLUMN {self.q(c.name)} {str(column_type).upper()} GENERATED ALWAYS AS "
                        f"{str(generation).upper()}" + (" INVISIBLE" if "INVISIBLE" in str(extra).upper() else ""))
                    continue
                self._column_detail(c, str(data_type), str(column_type), default, str(db), str(extra))
            self._table_details(conn, tables, s, period)

    def _column_detail(self, c: Column, data_type: str, column_type: str, default: Any, db: str,
                       extra: str) -> None:
        """One column's information_schema.COLUMNS row (see _column_details) into ``c``."""
        if data_type.lower() in SPATIAL_TYPES:
            c.original_type = column_type.upper()
            c.type = LogicalType("binary")
        elif c.original_type == "NULL":     # a type SQLAlchemy does not know
            c.original_type = column_type.upper()
            c.type = LogicalType("native", native=c.original_type)
        if _COMPRESSED.search(column_type) and "COMPRESSED" not in c.original_type.upper():
            c.original_type += " COMPRESSED"     # MariaDB: stored compressed (SQLAlchemy drops it)
        if "INVISIBLE" in extra.upper().split():
            c.invisible = True          # SQLAlchemy reads no default after INVISIBLE
            if c.default is None and default is not None and str(default).upper() != "NULL":
                c.default = str(default)
        if c.default is None and default and _NEXTVAL.match(str(default)):
            c.default = str(default).replace(f"{self.q(db)}.", "")

    def _table_details(self, conn: Connection, tables: dict[str, Table], s: str | None,
                       period: dict[str, list[str]]) -> None:
        """System versioning (with the row start and end columns ``period`` holds, as ALTER TABLE
        clauses) and the create options SQLAlchemy misreads, from information_schema.TABLES."""
        for tname, ttype, create_options in conn.exec_driver_sql(
                "SELECT table_name, table_type, create_options FROM information_schema.tables "
                "WHERE table_schema = coalesce(%s, DATABASE())", (s,)):
            t = tables.get(tname)
            if t is None:
                continue
            if ttype == "SYSTEM VERSIONED":
                t.options[SYSTEM_VERSIONING] = True
                cols = period.get(tname, [])
                if len(cols) == 2:
                    names = ", ".join(re.match(r"ADD COLUMN (`(?:[^`]|``)+`)", x).group(1) for x in cols)  # type: ignore[union-attr]
                    t.options[SYSTEM_TIME_COLUMNS] = ", ".join(cols) + f", ADD PERIOD FOR SYSTEM_TIME ({names})"
            if _create_options(str(create_options or "")):     # rare: then read as SHOW CREATE TABLE prints them
                row = conn.exec_driver_sql(f"SHOW CREATE TABLE {self.qtable(tname, s)}").first()
                more = _more_table_options(str(row[1])) if row else ""
                if more:
                    t.options[CREATE_OPTIONS] = more

    def _index_comments(self, conn: Connection, schema: Schema, schemas: list[str | None]) -> None:
        """Index comments (SQLAlchemy does not read them), one query per schema: an index's
        ``mysql_comment`` option."""
        for s in schemas:
            tables = {t.name: t for t in schema.tables if t.schema == s}
            if not tables:
                continue
            for tname, iname, comment in conn.exec_driver_sql(
                    "SELECT DISTINCT table_name, index_name, index_comment FROM information_schema.statistics "
                    "WHERE table_schema = coalesce(%s, DATABASE()) AND index_comment <> ''", (s,)):
                for ix in tables[tname].indexes if tname in tables else ():
                    if ix.name == iname:
                        ix.options = {**(ix.options or {}), "mysql_comment": str(comment)}

    def _descending_parts(self, conn: Connection, schema: Schema, schemas: list[str | None]) -> None:
        """The index parts stored descending (MariaDB 10.8+, MySQL 8: COLLATION 'D' in
        information_schema.STATISTICS), which SQLAlchemy does not reflect, one query per schema:
        into an index's ``column_sorting``; a unique index, which SQLAlchemy reads as a unique
        constraint, becomes the unique index it is (with its prefix lengths); the primary key's
        into ``primary_key_sorting``."""
        for s in schemas:
            tables = {t.name: t for t in schema.tables if t.schema == s}
            if not tables:
                continue
            found: dict[tuple[str, str], dict[str, tuple[bool, int | None]]] = {}
            for tname, iname, col, collation, sub_part in conn.exec_driver_sql(
                    "SELECT table_name, index_name, column_name, collation, sub_part "
                    "FROM information_schema.statistics WHERE table_schema = coalesce(%s, DATABASE()) "
                    "AND (collation = 'D' OR sub_part IS NOT NULL) ORDER BY table_name, index_name, seq_in_index",
                    (s,)):
                if tname in tables and col is not None:
                    found.setdefault((tname, iname), {})[col] = (collation == "D", sub_part)
            for (tname, iname), parts in found.items():
                sorting = {c: ["desc"] for c, (desc, _) in parts.items() if desc}
                if not sorting:
                    continue
                t = tables[tname]
                if iname == "PRIMARY":
                    t.primary_key_sorting = sorting
                    continue
                for ix in t.indexes:
                    if ix.name == iname:
                        ix.options = {**(ix.options or {}), "column_sorting": sorting}
                for u in [u for u in t.uniques if u.name == iname]:
                    t.uniques.remove(u)
                    length = {c: n for c, (_, n) in parts.items() if n is not None}
                    t.indexes.append(Index(iname, list(u.columns), True, None,
                                           {"column_sorting": sorting} | ({"mysql_length": length} if length else {})))

    def estimate_rows(self, conn: Connection, table: Table) -> int | None:
        n = conn.exec_driver_sql("SELECT table_rows FROM information_schema.tables WHERE table_schema = "
                                 "coalesce(%s, DATABASE()) AND table_name = %s", (table.schema, table.name)).scalar()
        return int(n) if n is not None else None

    def estimate_bytes(self, conn: Connection, table: Table) -> int | None:
        n = conn.exec_driver_sql("SELECT data_length FROM information_schema.tables WHERE table_schema = "
                                 "coalesce(%s, DATABASE()) AND table_name = %s", (table.schema, table.name)).scalar()
        return int(n) if n is not None else None

    def select_sql(self, table: Table, big: list[int] | None = None) -> str:
        """The table's SELECT; each ``big`` column's value is left out (NULL) when it is over
        LARGE_BYTES, and its length in bytes follows the table's columns (NULL when it is not)."""
        big = big or []
        cols, lengths = [], []
        for i, c in enumerate(table.columns):
            q = self.q(c.name)
            if c.type.kind == "float" and c.type.bits == 32:
                cols.append(f"CAST({q} AS DOUBLE)")   # FLOAT travels as 6 significant digits; DOUBLE is exact
            elif i in big:
                n = f"LENGTH({_large_bytes_expr(q, c.type.kind)})"
                cols.append(f"IF({n} > {LARGE_BYTES}, NULL, {q})")
                lengths.append(f"IF({n} > {LARGE_BYTES}, {n}, NULL)")
            else:
                cols.append(q)
        return f"SELECT {', '.join(cols + lengths)} FROM {self.qtable(table.name, table.schema)}"

    # A dump reads values over codec.LARGE_BYTES of MEDIUM/LONG BLOB and TEXT columns in pieces
    # (tables with a key to find their rows by); a restore makes a stored value whole before
    # loading it (streams_large_values stays False).

    def _large_capable(self, table: Table) -> list[int]:
        return [i for i, c in enumerate(table.columns)
                if c.type.kind in ("binary", "text") and (c.original_type or "").upper().startswith(("MEDIUM", "LONG"))]

    def stream(self, conn: Connection, table: Table, batch_rows: int, where: str = "",
               params: Any = None, large_values: bool = True) -> Iterator[list[Any]]:
        """Rows through the driver's unbuffered cursor (PyMySQL's or mysqlclient's SSCursor)."""
        raw = self.dbapi(conn)
        driver = dbapi_driver(raw)
        if driver == "pymysql":
            import pymysql.cursors

            cur = raw.cursor(pymysql.cursors.SSCursor)
        elif driver == "mysqldb":
            import MySQLdb.cursors

            cur = raw.cursor(MySQLdb.cursors.SSCursor)
        else:
            yield from super().stream(conn, table, batch_rows, where, params, large_values)
            return
        from ..units import split_key

        key = split_key(table) if large_values else None
        big = self._large_capable(table) if key else []
        n = len(table.columns)
        deferred: list[Any] = []
        try:
            with (_temporals_as_text(raw) if driver == "mysqldb" else contextlib.nullcontext()), \
                    _decimals_as_text(raw, driver):
                self.execute_where(cur, self.select_sql(table, big), where, params)
            sizes: list[int] = []
            batches = fetch_batches(cur, batch_rows, sizes=sizes)
            # mysqlclient waits for the server without the GIL: fetch ahead on a thread.
            # PyMySQL parses in Python, so a thread would only contend for the GIL.
            batches = prefetched(batches, sizes=sizes) if driver == "mysqldb" else batches
            if not big:
                yield from batches
            else:          # rows with a large value wait until the stream is done (one cursor at a time)
                lengths = [operator.itemgetter(n + j) for j in range(len(big))]
                cut = operator.itemgetter(slice(0, n))
                for batch in batches:
                    if any(any(map(length, batch)) for length in lengths):
                        out = []
                        for r in batch:
                            if any(r[n:]):
                                deferred.append(r)
                            else:
                                out.append(r[:n])
                    else:           # nearly always: no large value in the batch (C loops only)
                        out = list(map(cut, batch))
                    if out:
                        yield out
        finally:
            cur.close()
        if deferred:
            yield from self._large_rows(raw, table, key or [], big, deferred, batch_rows)

    def _large_rows(self, raw: Any, table: Table, key: list[str], big: list[int], rows: list[Any],
                    batch_rows: int) -> Iterator[list[Any]]:
        """The rows left out of the stream, each large value a _MyLarge read in pieces by the
        row's key, in the dump's snapshot."""
        n = len(table.columns)
        names = [c.name for c in table.columns]
        kidx = [names.index(k) for k in key]
        qt = self.qtable(table.name, table.schema)
        where = " AND ".join(f"{self.q(k)} = %s" for k in key)
        out: list[Any] = []
        for r in rows:
            row = list(r[:n])
            for j, i in enumerate(big):
                length = r[n + j]
                if length is not None:
                    c = table.columns[i]
                    row[i] = _MyLarge(raw, qt, self.q(c.name), c.type.kind, where, tuple(r[k] for k in kidx),
                                      int(length))
            out.append(row)
            if len(out) >= max(1, min(batch_rows, 16)):
                yield out
                out = []
        if out:
            yield out

    # ------------------------------------------------------------------ restore
    def exact_type(self, col: Column) -> sat.TypeEngine:
        spec = col.original_type + (" INVISIBLE" if col.invisible else "")
        return Verbatim(spec, sa.Integer if col.type.kind == "integer" else None)

    def target_type(self, col: Column, key_chars: int | None) -> tuple[LogicalType, sat.TypeEngine]:
        t = col.type
        k = t.kind
        if k == "integer":
            bits = t.bits or 64
            typ = {16: mysql.SMALLINT, 32: mysql.INTEGER, 64: mysql.BIGINT}[bits]
            return LogicalType("integer", bits=bits, unsigned=t.unsigned), typ(unsigned=t.unsigned)
        if k == "decimal":
            p, s = t.precision, t.scale or 0
            if p is not None and p <= 65 and s <= 30:
                return t, mysql.DECIMAL(p, s)
            return LogicalType("decimal", precision=65, scale=30), mysql.DECIMAL(65, 30)
        if k == "float":
            return t, (mysql.FLOAT() if t.bits == 32 else mysql.DOUBLE())
        if k == "boolean":
            return t, mysql.BOOLEAN()
        if k in ("string", "text", "char", "native", "interval"):
            n = t.length if k in ("string", "char") else None
            if key_chars is not None and (n is None or n > key_chars):
                return LogicalType("string", length=key_chars), mysql.VARCHAR(key_chars)
            if k == "char" and n and n <= 255:
                return t, mysql.CHAR(n)
            if n and n <= 16383:
                return LogicalType("string", length=n), mysql.VARCHAR(n)
            return LogicalType("text"), mysql.LONGTEXT()
        if k == "binary":
            n = t.length
            if key_chars is not None and (n is None or n > key_chars * 4):
                return LogicalType("binary", length=key_chars * 4), mysql.VARBINARY(key_chars * 4)
            if n and n <= 1024:
                return LogicalType("binary", length=n), mysql.VARBINARY(n)
            return LogicalType("binary"), mysql.LONGBLOB()
        if k == "date":
            return t, mysql.DATE()
        if k == "time":
            p = min(t.precision if t.precision is not None else 6, 6)
            return LogicalType("time", precision=p), mysql.TIME(fsp=p)
        if k == "datetime":
            p = min(t.precision if t.precision is not None else 6, 6)
            return LogicalType("datetime", precision=p), mysql.DATETIME(fsp=p)
        if k == "uuid":
            return LogicalType("char", length=36), mysql.CHAR(36)
        if k == "json":
            return t, mysql.JSON()
        if k == "enum":
            return t, mysql.ENUM(*(t.values or ()))
        if k == "array":
            return LogicalType("json"), mysql.JSON()
        return LogicalType("text"), mysql.LONGTEXT()

    def add_losses(self, move: ColumnMove, src: LogicalType) -> None:
        if move.target.kind == "float":
            from ..mapping import nan_loss

            nan_loss(move, "NaN and ±Infinity (MySQL has none)")
        if move.target.kind == "date" or move.target.kind == "datetime":
            move.losses.append(Loss("dates before year 1000 are outside MySQL's supported range",
                                    lambda v: isinstance(v, str) and v[:4] < "1000"))

    def writer(self, t: LogicalType) -> Converter:
        k = t.kind
        if k == "boolean":
            return int
        if k == "datetime":
            return lambda v: v.replace("T", " ")
        if k == "float":
            return lambda v: None if math.isnan(v) or math.isinf(v) else v
        return _same

    def begin_load(self, conn: Connection, concurrent: bool = False) -> None:
        self._session(conn)
        conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
        # With both checks off, MariaDB (10.6+) loads an empty table in bulk under a table lock:
        # the fastest path for one loader, but a second connection loading another chunk of the
        # same table then waits for the whole first chunk (failing after innodb_lock_wait_timeout)
        # or deadlocks with it. Chunks loaded side by side keep unique checks on: row locks only.
        conn.exec_driver_sql(f"SET SESSION unique_checks = {1 if concurrent else 0}")

    def end_load(self, conn: Connection) -> None:
        conn.exec_driver_sql("SET SESSION unique_checks = 1")

    def set_foreign_key_checks(self, conn: Connection, enabled: bool) -> None:
        conn.exec_driver_sql(f"SET SESSION foreign_key_checks = {1 if enabled else 0}")

    #: rows are loaded with one LOAD DATA statement per this many bytes of the temporary file
    load_group_bytes = 64 << 20
    #: folder for the temporary load files (None: the system's temporary folder)
    load_tmpdir: str | None = None

    def load(self, conn: Connection, table: Table, columns: list[str], writers: list[Converter],
             batches: Iterator[list[list[Any]]], identity: bool, echo: EchoHash | None = None) -> int:
        """LOAD DATA LOCAL INFILE where the client and server allow it, else multi-row INSERTs."""
        raw = self.dbapi(conn)
        fd, path = tempfile.mkstemp(prefix="albackup-load-", suffix=".tsv", dir=self.load_tmpdir)
        os.close(fd)
        try:
            if self.load_method(conn, table, columns, path) == LOAD_DATA:
                return self._load_data(raw, table, columns, writers, batches, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        log.debug("table %s: loading with multi-row INSERT", table.key)
        # PyMySQL and mysqlclient turn executemany of one INSERT ... VALUES into multi-row statements.
        try:
            return super().load(conn, table, columns, writers, batches, identity)
        except _driver_error(raw) as exc:
            if _code(exc) not in LOCK_CONFLICT:
                raise
            raise LoadConflict(f"table {table.key}: INSERT failed: {exc}") from None

    def load_method(self, conn: Connection, table: Table, columns: list[str], empty_file: str) -> str:
        """LOAD_DATA or INSERT: decided once per connection (kept in the pool entry's info)."""
        info = conn.connection.info
        method = info.get(_LOAD_METHOD_KEY)
        if method is None:
            method, why = self._probe_local_infile(conn, table, columns, empty_file)
            info[_LOAD_METHOD_KEY] = method
            log.debug("mysql load path for this connection: %s (%s)",
                      "LOAD DATA LOCAL INFILE" if method == LOAD_DATA else "multi-row INSERT", why)
        return method

    def _probe_local_infile(self, conn: Connection, table: Table, columns: list[str],
                            empty_file: str) -> tuple[str, str]:
        raw = self.dbapi(conn)
        driver = dbapi_driver(raw)
        if driver not in ("pymysql", "mysqldb"):
            return INSERT, f"driver {type(raw).__module__} is not PyMySQL or mysqlclient"
        if driver == "pymysql":
            from pymysql.constants import CLIENT

            if not hasattr(raw, "_local_infile"):
                return INSERT, "this PyMySQL has no local_infile switch"
            if not int(getattr(raw, "client_flag", 0)) & CLIENT.LOCAL_FILES:
                return INSERT, ("the connection was opened without local_infile "
                                "(engine not set up by MySQLAdapter.configure_engine)")
        cur = raw.cursor()
        try:
            try:
                cur.execute("SELECT @@GLOBAL.local_infile")
                row = cur.fetchone()
                if row is not None and row[0] is not None and int(row[0]) == 0:
                    return INSERT, "the server has local_infile=OFF"
            except Exception as exc:  # a server without the variable: the probe below decides
                log.debug("SELECT @@GLOBAL.local_infile failed: %s", exc)
            sql = ("LOAD DATA LOCAL INFILE %s INTO TABLE "
                   f"{self.qtable(table.name, table.schema)} CHARACTER SET utf8mb4 {_LOAD_FORMAT} "
                   f"({', '.join(self.q(c) for c in columns)})")
            try:
                with _local_files(raw, driver):
                    cur.execute(sql, (empty_file,))      # formatted: q() doubles a '%' in a name
            except _driver_error(raw) as exc:
                code = _code(exc)
                msg = str(exc.args[1] if len(exc.args) > 1 else exc)
                if code in LOCAL_INFILE_REFUSED:
                    return INSERT, f"LOAD DATA LOCAL refused ({code}: {msg})"
                return INSERT, f"LOAD DATA LOCAL probe failed ({code}: {msg})"
            return LOAD_DATA, "server and client allow local infile"
        finally:
            cur.close()

    def _load_data(self, raw: Any, table: Table, columns: list[str], writers: list[Converter],
                   batches: Iterator[list[list[Any]]], path: str) -> int:
        kinds = {c.name: c.type.kind for c in table.columns}
        modes: list[str | None] = [_COLUMN_MODE.get(kinds.get(c, "text"), TEXT) for c in columns]
        fields = [_field_encoder(i, kinds.get(c, "text"), modes, w)
                  for i, (c, w) in enumerate(zip(columns, writers))]
        driver = dbapi_driver(raw)
        cur = raw.cursor()
        loaded = pending = statements = 0

        def encode(row: list[Any]) -> str:
            return "\t".join([_NULL if v is None else f(v) for f, v in zip(fields, row)])

        try:
            with open(path, "wb") as f:
                def flush() -> None:
                    nonlocal loaded, pending, statements
                    if not pending:
                        return
                    f.flush()
                    self._load_file(cur, raw, driver, table, columns, modes, path, pending)
                    f.seek(0)
                    f.truncate()
                    loaded += pending
                    statements += 1
                    pending = 0

                compiled = None if any(m is None for m in modes) else _compile_lines(fields)
                for batch in batches:
                    if compiled is not None:      # every column's mode is fixed: one call a batch
                        if batch:
                            f.write(compiled(batch).encode("utf-8"))
                            pending += len(batch)
                        if f.tell() >= self.load_group_bytes:
                            flush()
                        continue
                    lines: list[str] = []
                    for row in batch:
                        while True:
                            try:
                                lines.append(encode(row))
                                break
                            except _ModeSwitch as sw:   # a column changed between bytes and text
                                if lines:
                                    f.write(("\n".join(lines) + "\n").encode("utf-8"))
                                    pending += len(lines)
                                    lines = []
                                flush()
                                modes[sw.index] = sw.mode
                    if lines:
                        f.write(("\n".join(lines) + "\n").encode("utf-8"))
                        pending += len(lines)
                    if f.tell() >= self.load_group_bytes:
                        flush()
                flush()
        finally:
            cur.close()
        log.debug("table %s: %d rows loaded with LOAD DATA LOCAL INFILE (%d statement(s))",
                  table.key, loaded, statements)
        return loaded

    def _load_file(self, cur: Any, raw: Any, driver: str, table: Table, columns: list[str],
                   modes: list[str | None], path: str, rows: int) -> None:
        """One LOAD DATA of the file at ``path`` (``rows`` rows); checks warnings and the row count."""
        use_vars = any(m in (HEX, BOOL) for m in modes)
        targets: list[str] = []
        sets: list[str] = []
        for i, (c, m) in enumerate(zip(columns, modes)):
            if not use_vars:
                targets.append(self.q(c))
                continue
            # Every column through a variable once there is a SET clause: MariaDB generates a new
            # AUTO_INCREMENT value for a 0 loaded straight into the column when SET is present,
            # whatever NO_AUTO_VALUE_ON_ZERO says; assigned from a variable, 0 stays 0.
            var = f"@c{i}"
            targets.append(var)
            expr = f"UNHEX({var})" if m == HEX else f"CAST({var} AS UNSIGNED)" if m == BOOL else var
            sets.append(f"{self.q(c)} = {expr}")
        sql = (f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.qtable(table.name, table.schema)} "
               f"CHARACTER SET utf8mb4 {_LOAD_FORMAT} ({', '.join(targets)})")
        if sets:
            sql += f" SET {', '.join(sets)}"
        try:
            with _local_files(raw, driver):
                cur.execute(sql, (path,))       # formatted: q() doubles a '%' in a name
            affected = cur.rowcount
            cur.execute("SHOW WARNINGS")
            warnings = [w for w in cur.fetchall() if str(w[0]).lower() != "note"]
        except _driver_error(raw) as exc:
            cls = LoadConflict if _code(exc) in LOCK_CONFLICT else RestoreError
            raise cls(f"table {table.key}: LOAD DATA LOCAL INFILE failed: {self.error_line(exc) or exc}") from None
        if warnings:
            shown = "; ".join(f"{w[0]} {w[1]}: {w[2]}" for w in warnings[:3])
            more = f" (and {len(warnings) - 3} more)" if len(warnings) > 3 else ""
            raise RestoreError(f"table {table.key}: LOAD DATA LOCAL INFILE reported {shown}{more}")
        if affected != rows:
            raise RestoreError(f"table {table.key}: LOAD DATA LOCAL INFILE loaded {affected} rows of the "
                               f"{rows} sent")

    def reset_identity(self, conn: Connection, table: Table, sa_table: sa.Table, same_engine: bool,
                       schema: Schema) -> None:
        qt = self.qtable(table.name, table.schema)
        for col in sa_table.columns:        # a sequence made for a generated column (carried_sequences)
            m = _SEQUENCE_DEFAULT.match(str(getattr(col.server_default, "arg", "")) if col.server_default else "")
            if m and not same_engine:
                mx = conn.exec_driver_sql(f"SELECT max({self.q(col.name)}) FROM {qt}").scalar()
                if mx is not None:      # SETVAL moves a sequence only forward: shared, it ends at the greatest
                    conn.exec_driver_sql(f"SELECT SETVAL({m.group(1)}, {int(mx)}, 1)")
        for c in table.columns:
            if not c.autoincrement or c.type.kind != "integer":
                continue
            qt = self.qtable(table.name, table.schema)
            mx = conn.exec_driver_sql(f"SELECT max({self.q(c.name)}) FROM {qt}").scalar()
            nxt = max(int(mx or 0) + 1, int((c.identity or {}).get("next") or 1))
            conn.exec_driver_sql(f"ALTER TABLE {qt} AUTO_INCREMENT = {nxt}")
            break

    def sorted_primary_key_sql(self, name: str, schema: str | None, parts: list[tuple[str, bool]]) -> str | None:
        cols = ", ".join(self.q(c) + (" DESC" if desc else "") for c, desc in parts)
        return f"ALTER TABLE {self.qtable(name, schema)} DROP PRIMARY KEY, ADD PRIMARY KEY ({cols})"

    def drop_table(self, conn: Connection, name: str, schema: str | None) -> None:
        conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.qtable(name, schema)}")

    def lock_for_clean(self, conn: Connection, name: str, schema: str | None) -> None:
        """Wait, at most lock_wait_timeout, for the metadata lock that replacing table ``name``
        needs, so that a wait that times out is known to be this table's; released at once (the
        DROP or RENAME that follows takes it again)."""
        conn.exec_driver_sql(f"LOCK TABLES {self.qtable(name, schema)} WRITE")
        conn.exec_driver_sql("UNLOCK TABLES")

    def server_identity(self, conn: Connection) -> tuple[Any, ...] | None:
        """MySQL's @@server_uuid where the server has one; MariaDB's @@hostname, @@port and
        @@datadir (the same through every address and socket). And the current database."""
        got = {str(k).lower(): v for k, v in conn.exec_driver_sql(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('server_uuid', 'hostname', 'port', 'datadir')")}
        db = conn.exec_driver_sql("SELECT DATABASE()").scalar()
        if got.get("server_uuid"):
            return ("mysql", "uuid", got["server_uuid"], db)
        return ("mysql", "host", got.get("hostname"), got.get("port"), got.get("datadir"), db)

    def set_lock_timeout(self, engine: sa.Engine, seconds: int) -> None:
        """Metadata locks (a DROP or ALTER waiting for another session's transaction) and InnoDB
        row locks alike."""
        @sa.event.listens_for(engine, "connect")
        def _lock_timeout(dbapi_conn: Any, record: Any) -> None:
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"SET SESSION lock_wait_timeout = {int(seconds)}, "
                            f"innodb_lock_wait_timeout = {int(seconds)}")
            finally:
                cur.close()

    def is_lock_timeout(self, exc: BaseException) -> bool:
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        return _code(orig) == 1205       # ER_LOCK_WAIT_TIMEOUT: metadata and row locks

    object_kinds = ("EVENT", "VIEW", "PROCEDURE", "FUNCTION", "SEQUENCE")

    def object_mark(self, conn: Connection) -> set[tuple[str, str, str]]:
        """The database's events, views, procedures, functions and sequences (triggers go with
        their tables)."""
        rows = conn.exec_driver_sql(
            "SELECT 'VIEW', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() "
            "UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = DATABASE() "
            "UNION ALL SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE() "
            "UNION ALL SELECT 'SEQUENCE', TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'SEQUENCE'").fetchall()
        return {(str(k), str(n), self.q(str(n))) for k, n in rows}

    def error_line(self, exc: BaseException) -> str | None:
        """A lost connection named as one: PyMySQL reports a connection the server killed as
        ``(0, '')``; 2006/2013 are the server gone away or lost mid-statement."""
        first = super().error_line(exc)
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        code = _code(orig)
        if first is not None and (code in (0, 2006, 2013) or first == "(0, '')"):
            return f"the connection to the server was lost ({first})"
        return first

    @property
    def swaps_on_clean(self) -> bool:   # type: ignore[override]
        """MariaDB: check constraint names are per table, so a table's copy can be built beside
        it (MySQL 8 names them per database: its --clean drops first)."""
        return bool(self.dialect.is_mariadb)

    def rename_tables(self, conn: Connection, renames: list[tuple[str | None, str, str]]) -> None:
        """One RENAME TABLE: atomic, all the renames or none."""
        conn.exec_driver_sql("RENAME TABLE " + ", ".join(f"{self.qtable(a, s)} TO {self.qtable(b, s)}"
                                                       for s, a, b in renames))
        conn.commit()

    def _backup_objects(self, schema: Schema, same_engine: bool, routines: bool) -> set[tuple[str, str]]:
        """(kind as object_mark names it, name) of what a restore of ``schema`` makes besides tables."""
        out = {("SEQUENCE", s.name) for s in schema.sequences} if same_engine and self.dialect.is_mariadb else set()
        if same_engine and routines:
            for r in schema.routines:
                if r.kind != "trigger":        # triggers go with their tables
                    out.add((routine_keyword(r), r.name))
        return out

    def clashing_objects(self, conn: Connection, schema: Schema, same_engine: bool, routines: bool) -> list[str]:
        want = self._backup_objects(schema, same_engine, routines)
        have = {(k, n) for k, n, _ in self.object_mark(conn)}
        lower = {(k, n.lower()) for k, n in want}      # routine and event names ignore case
        return sorted(f"{k.lower()} {n}" for k, n in have
                      if (k, n) in want or (k not in ("VIEW", "SEQUENCE") and (k, n.lower()) in lower))

    def clean_objects(self, conn: Connection, schema: Schema, same_engine: bool, routines: bool) -> list[str]:
        held = self.clashing_objects(conn, schema, same_engine, routines)
        objects = {(k.upper(), n, self.q(n)) for k, n in (x.split(" ", 1) for x in held)}
        left = self.drop_objects(conn, objects)
        if left:
            raise RestoreError(f"--clean could not drop {', '.join(left)}")
        return held

    # ------------------------------------------------------------ sequences, routines, events
    def prepare(self, conn: Connection, schema: Schema, tables: list[Table], same_engine: bool) -> None:
        """MariaDB: the sequences, before the tables whose defaults draw from them (NEXTVAL),
        each with its options and at the position it had."""
        if not self.dialect.is_mariadb:
            return
        have = {n for (n,) in conn.exec_driver_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
            "AND table_type = 'SEQUENCE'")}
        # one already there is the target's own (a restore without --clean refuses it), or one
        # --clean replaces once the tables are swapped in (Restorer._swap)
        for seq in schema.sequences if same_engine else self.carried_sequences(schema, tables):
            if seq.name not in have:
                self.create_sequence(conn, seq)

    def _auto_increment_fits(self, table: Table, col: Column, schema: Schema) -> str | None:
        """None when AUTO_INCREMENT can generate ``col``'s values as the source did: it leads the
        primary key (InnoDB wants the AUTO_INCREMENT column first in a key, and one per table) and
        its sequence feeds no other column. Else why not."""
        if not table.primary_key or table.primary_key[0] != col.name:
            where = "a column of the primary key after its first" if col.name in table.primary_key \
                else "a column outside the primary key"
            return f"{where}, which AUTO_INCREMENT cannot be"
        if col.sequence:
            users = [f"{t.key}.{c.name}" for t in schema.tables for c in t.columns
                     if c.sequence == col.sequence and (t is not table or c is not col)]
            if users:
                return f"its sequence also feeds {', '.join(users[:3])}{' …' if len(users) > 3 else ''}"
        return None

    def _sequence_for(self, table: Table, col: Column, schema: Schema) -> str:
        """The name of the MariaDB sequence that generates ``col`` (the source's, where it had one)."""
        if col.sequence:
            name = col.sequence.rsplit(".", 1)[-1].strip('"').replace('""', '"')
        else:
            name = f"{table.name}_{col.name}_seq"
        from ..ddl import fit_name

        taken = {t.name.lower() for t in schema.tables}
        name = fit_name(name, self.max_identifier)
        return name if name.lower() not in taken else fit_name(f"{name}_seq", self.max_identifier)

    def generated_column(self, table: Table, col: Column, schema: Schema) -> tuple[str | None, str] | None:
        why = self._auto_increment_fits(table, col, schema)
        if why is None:
            return None
        if not self.dialect.is_mariadb:
            return None, f"restored without generating its values ({why}; MySQL has no sequences)"
        seq = self._sequence_for(table, col, schema)
        return f"NEXTVAL({self.q(seq)})", f"values drawn from the MariaDB sequence {seq} ({why}), set after the " \
                                          "load to follow the restored rows"

    def carried_sequences(self, schema: Schema, tables: list[Table]) -> list[Sequence]:
        """Cross-engine: the sequences made for generated columns that AUTO_INCREMENT cannot
        carry (generated_column), with the source's options where it had a sequence."""
        records = {s.name: s for s in schema.sequences}
        out: dict[str, Sequence] = {}
        for t in tables:
            for c in t.columns:
                if not (c.autoincrement and c.type.kind == "integer") or self._auto_increment_fits(t, c, schema) is None:
                    continue
                name = self._sequence_for(t, c, schema)
                src = records.get((c.sequence or "").rsplit(".", 1)[-1].strip('"'))
                ident = c.identity or {}
                lo, hi = INT_RANGE[(c.type.bits or 64, c.type.unsigned)]
                out.setdefault(name, Sequence(
                    name, None, src.start if src else ident.get("start"), (src.increment if src else
                                                                           ident.get("increment")) or 1,
                    src.min_value if src else max(lo, 1), src.max_value if src else hi, bool(src and src.cycle)))
        return list(out.values())

    def create_sequence(self, conn: Connection, seq: Sequence) -> None:
        lo, hi = _clamp(seq.min_value), _clamp(seq.max_value)
        parts = [f"CREATE SEQUENCE {self.qtable(seq.name, None)}"]
        for kw, v in (("START WITH", _clamp(seq.start)), ("MINVALUE", lo), ("MAXVALUE", hi),
                      ("INCREMENT BY", seq.increment)):
            if v is not None:
                parts.append(f"{kw} {int(v)}")
        if seq.cache is not None:
            parts.append(f"CACHE {int(seq.cache)}" if seq.cache else "NOCACHE")
        parts.append("CYCLE" if seq.cycle else "NOCYCLE")
        conn.exec_driver_sql(" ".join(parts))
        if seq.last_value is not None:
            conn.exec_driver_sql(f"SELECT SETVAL({self.q(seq.name)}, {int(seq.last_value)}, "
                                 f"{1 if seq.is_called else 0})")

    def create_routines(self, conn: Connection, routines: list[Routine]) -> list[str]:
        """Each under the SQL mode it was made with (an event also in its time zone) and, where the
        restoring account may name it and it exists here, its definer; else it is made as the
        restoring account, and the log says so."""
        as_self: list[str] = []

        def make(r: Routine) -> None:
            if not self._create_routine(conn, r):
                as_self.append(f"{r.kind} {r.name} ({r.definer})")
        try:
            failures = self._create_in_turns(routines, make)
        finally:
            self._session(conn)
            conn.exec_driver_sql("SET NAMES utf8mb4")
        if as_self:
            log.warning("made as the restoring account, not as their definer (not allowed here, or the account "
                        "does not exist on this server): %s", ", ".join(as_self))
        return failures

    def _create_routine(self, conn: Connection, r: Routine) -> bool:
        """Make ``r``; False when it was made without its definer."""
        conn.exec_driver_sql("SET SESSION sql_mode = %s", (r.sql_mode if r.sql_mode is not None else SESSION_SQL_MODE,))
        conn.exec_driver_sql("SET SESSION time_zone = %s", (r.time_zone or "+00:00",))
        # the body's literals take the source connection's collation (and character set); the
        # statement is sent as utf8mb4 text, so the server reads it as such (character_set_client
        # stays utf8mb4: the body read back from the source was converted to it, and every
        # character of it is one the source's connection character set holds)
        if r.collation:
            conn.exec_driver_sql("SET SESSION collation_connection = %s", (r.collation,))
        plain = self.literal_sql(r.sql)
        if not r.definer:
            conn.exec_driver_sql(plain)
            return True
        try:
            conn.exec_driver_sql(with_definer(plain, self.literal_sql(r.definer)))
        except sa.exc.DBAPIError as exc:
            if _code(exc.orig) not in (1227, 1449):    # ER_SPECIFIC_ACCESS_DENIED, ER_NO_SUCH_USER
                raise
            conn.exec_driver_sql(plain)
            return False
        if any(w[1] == 1449 for w in conn.exec_driver_sql("SHOW WARNINGS")):
            conn.exec_driver_sql(f"DROP {routine_keyword(r)} {self.q(r.name)}")   # made for no account
            conn.exec_driver_sql(plain)
            return False
        return True


# ------------------------------------------------------------------------------------ drivers
_UNREAD_FOREIGN_KEY = re.compile(r"^Unknown schema content: '\s*CONSTRAINT .* FOREIGN KEY ", re.S)


_VIEW = re.compile(r"^CREATE\s.*\bVIEW\b", re.S | re.I)
_QUOTED = re.compile(r"`(?:``|[^`])*`|'(?:''|\\.|[^'\\])*'|\"(?:\"\"|\\.|[^\"\\])*\"", re.S)


def _stand_ins(sql: str) -> tuple[str, dict[str, str]]:
    """SHOW CREATE TABLE with each name holding a line break or a backtick replaced by a plain
    stand-in name; and the stand-ins → the names."""
    names: dict[str, str] = {}
    seen: dict[str, str] = {}

    def one(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok[0] != "`" or not any(ch in tok[1:-1] for ch in "`\n\r"):
            return tok
        name = tok[1:-1].replace("``", "`")
        if name not in seen:
            n = len(seen)
            while f"albk_name_{n}" in sql:
                n += 1000
            seen[name] = f"albk_name_{n}"
            names[seen[name]] = name
        return f"`{seen[name]}`"

    return _QUOTED.sub(one, sql), names


def _put_back(x: Any, names: dict[str, str]) -> Any:
    """The names in place of their stand-ins throughout what the parser made (in SQL text such
    as a check's, quoted again)."""
    def text(s: str) -> str:
        if s in names:
            return names[s]
        for k, v in names.items():
            if k in s:
                s = s.replace(f"`{k}`", "`" + v.replace("`", "``") + "`")
        return s

    if isinstance(x, str):
        return text(x)
    if isinstance(x, list):
        x[:] = [_put_back(v, names) for v in x]
        return x
    if isinstance(x, tuple):
        return tuple(_put_back(v, names) for v in x)
    if isinstance(x, dict):
        for k in list(x):
            v = x.pop(k)
            x[text(k) if isinstance(k, str) else k] = _put_back(v, names)
        return x
    if hasattr(x, "__dict__") and type(x).__name__ == "ReflectedState":
        for k, v in vars(x).items():
            setattr(x, k, _put_back(v, names))
    return x


def dbapi_driver(raw: Any) -> str:
    """'pymysql', 'mysqldb' or the top module name of a live DBAPI connection's class."""
    top = type(raw).__module__.split(".")[0]
    return {"pymysql": "pymysql", "MySQLdb": "mysqldb"}.get(top, top)


def _code(exc: BaseException) -> int | None:
    """The server's error number of a PyMySQL/mysqlclient error."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


#: a large value is read from MySQL/MariaDB this many bytes at a time
MY_PIECE_BYTES = 8 << 20


def _binary_value(v: Any) -> Any:
    return v if v is None or isinstance(v, LargeBase) else bytes(v)


def _large_bytes_expr(q: str, kind: str) -> str:
    """A large-capable column as the bytes albackup stores: BLOBs as they are, text as UTF-8."""
    return q if kind == "binary" else f"CAST(CONVERT({q} USING utf8mb4) AS BINARY)"


class _MyLarge(LargeBase):
    """A large value still in the database, read MY_PIECE_BYTES at a time (SUBSTRING of its
    bytes) by the row's key, on the dump's connection and so in its snapshot. The server reads
    the whole value again for each piece, hence pieces larger than PostgreSQL's."""

    def __init__(self, raw: Any, qtable: str, qcol: str, kind: str, where: str, key: tuple[Any, ...],
                 length: int) -> None:
        self.raw, self.key, self.length = raw, key, length
        self.kind = 0 if kind == "binary" else 1
        self.sql = f"SELECT SUBSTRING({_large_bytes_expr(qcol, kind)}, %s, %s) FROM {qtable} WHERE {where}"
        self.qtable = qtable

    def pieces(self) -> Iterator[bytes]:
        sql = self.sql
        cur = self.raw.cursor()
        try:
            for pos in range(1, max(self.length, 1) + 1, MY_PIECE_BYTES):
                cur.execute(sql, (pos, MY_PIECE_BYTES, *self.key))
                row = cur.fetchone()
                if row is None:
                    raise RuntimeError(f"a row of {self.qtable} is gone from the snapshot")
                if row[0]:
                    yield bytes(row[0])
        finally:
            cur.close()


def _driver_error(raw: Any) -> type[BaseException]:
    import sys

    mod = sys.modules.get(type(raw).__module__.split(".")[0])
    return getattr(mod, "Error", Exception)


@contextlib.contextmanager
def _local_files(raw: Any, driver: str) -> Iterator[None]:
    """PyMySQL answers a server's file request only inside this block (mysqlclient: auto mode)."""
    if driver != "pymysql":
        yield
        return
    prev = raw._local_infile
    raw._local_infile = True
    try:
        yield
    finally:
        raw._local_infile = prev


def _or_text(f: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(s: str) -> Any:
        v = f(s)
        return s if v is None else v

    return convert


@contextlib.contextmanager
def _temporals_as_text(raw: Any) -> Iterator[None]:
    """mysqlclient reads dates it cannot parse ('0000-00-00') as None; PyMySQL keeps the text.

    For the statement run inside this block, mysqlclient's temporal converters keep the text as
    PyMySQL does, so both drivers give the same values (and the same errors).
    """
    from MySQLdb.constants import FIELD_TYPE

    conv = raw.converter
    saved: dict[int, Any] = {}
    for name in ("DATE", "NEWDATE", "DATETIME", "TIMESTAMP", "TIME"):
        code = getattr(FIELD_TYPE, name, None)
        f = conv.get(code) if code is not None else None
        if callable(f):
            saved[code] = f
            conv[code] = _or_text(f)
    try:
        yield
    finally:
        conv.update(saved)


def _decimal_text(v: Any) -> str:
    s = v.decode("ascii") if isinstance(v, (bytes, bytearray)) else str(v)
    return s[1:] if s[:1] == "-" and not s.strip("-0.") else s     # "-0.00" → "0.00"


_datetime_fromiso = _dt.datetime.fromisoformat


def _server_text(v: Any) -> str:
    return v.decode("ascii") if isinstance(v, (bytes, bytearray)) else str(v)




def _datetime_text_fast(v: Any) -> Any:
    """The server's DATETIME text → canonical ISO (fraction padded to 6 digits, none when zero)."""
    if type(v) is str:
        return _datetime_fromiso(v).isoformat()
    return datetime_text(v, False)


@contextlib.contextmanager
def _decimals_as_text(raw: Any, driver: str) -> Iterator[None]:
    """For the statement run inside this block, DECIMAL values stay the server's text (which is
    their canonical form: plain notation, padded to the column's scale) instead of becoming
    Decimal objects that albackup would only turn back into text; DATE, DATETIME and TIMESTAMP
    values stay text too, for the C parser of the readers (the drivers parse them in Python)."""
    if driver == "pymysql":
        from pymysql.constants import FIELD_TYPE

        conv = raw.decoders
    else:
        from MySQLdb.constants import FIELD_TYPE  # type: ignore[no-redef]

        conv = raw.converter
    codes = [FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL]
    temporal = [getattr(FIELD_TYPE, n) for n in ("DATE", "NEWDATE", "DATETIME", "TIMESTAMP") if hasattr(FIELD_TYPE, n)]
    saved = {c: conv.get(c) for c in codes + temporal}
    # mysqlclient decodes a field whose converter is ``str`` itself in C (no Python call per
    # value); PyMySQL calls a converter per value anyway, and hands over bytes for some types
    for c in codes:
        conv[c] = str if driver == "mysqldb" else _decimal_text
    for c in temporal:
        conv[c] = str if driver == "mysqldb" else _server_text
    try:
        yield
    finally:
        for c, f in saved.items():
            if f is None:
                conv.pop(c, None)
            else:
                conv[c] = f


# ------------------------------------------------------------------------- LOAD DATA format
_LOAD_FORMAT = "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
_NULL = "\\N"
TEXT, HEX, BOOL = "text", "hex", "bool"
#: how a target column's values are written; None (native): bytes as hex, text as text, by the values
_COLUMN_MODE: dict[str, str | None] = {"binary": HEX, "boolean": BOOL, "native": None}
_BYTES = (bytes, bytearray, memoryview)


def _same(v: Any) -> Any:
    return v


def _esc(v: str) -> str:
    """Backslash, tab, newline, carriage return and NUL escaped for LOAD DATA's ESCAPED BY '\\'."""
    if "\\" in v or "\t" in v or "\n" in v or "\r" in v or "\x00" in v:
        return (v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
                .replace("\x00", "\\0"))
    return v


class _ModeSwitch(Exception):
    def __init__(self, index: int, mode: str) -> None:
        super().__init__(index, mode)
        self.index = index
        self.mode = mode


def _text(v: Any) -> str:
    t = type(v)
    if t is str:
        return _esc(v)
    if t is bool:
        return "1" if v else "0"
    if t is int:
        return str(v)
    if t is float:
        return repr(v)
    if isinstance(v, _BYTES):
        return _esc(bytes(v).decode("utf-8"))
    return _esc(str(v))


def _int_text(v: Any) -> str:
    return str(v) if type(v) is int else _text(v)


def _str_text(v: Any) -> str:
    return _esc(v) if type(v) is str else _text(v)


# The common cases inside the compiled line comprehension (an int is formatted by the f-string
# itself; a string without a character to escape goes as it is); the functions do the rest.
with_inline(_int_text, "({x} if {x}.__class__ is int else {f}({x}))")
with_inline(_str_text, "({x} if {x}.__class__ is str and _BS not in {x} and _TAB not in {x} and _LF not in {x} "
                       "and _CR not in {x} and _NUL not in {x} else {f}({x}))")


def _hex(v: Any) -> str:
    return bytes(v).hex() if isinstance(v, _BYTES) else str(v).encode("utf-8").hex()


def _bool(v: Any) -> str:
    return "1" if v else "0"


def _compile_lines(fields: list[Callable[[Any], str]]) -> Callable[[list[Any]], str]:
    """rows → the load file's lines, one function compiled for the table's field encoders."""
    return compile_lines(fields, _NULL, "LOAD DATA")


def _field_encoder(i: int, kind: str, modes: list[str | None], writer: Converter) -> Callable[[Any], str]:
    """Canonical value (not None) → the column's writer → one field of the load file."""
    m = modes[i]
    if m == HEX:
        enc: Callable[[Any], str] = _hex
    elif m == BOOL:
        enc = _bool
    elif m == TEXT:
        enc = _int_text if kind == "integer" else _text if kind == "float" else _str_text
    else:
        def enc(v: Any) -> str:   # native: the mode follows the values, bytes as hex, the rest as text
            want = HEX if isinstance(v, _BYTES) else TEXT
            have = modes[i]
            if have is None:
                modes[i] = have = want
            elif have != want:
                raise _ModeSwitch(i, want)
            return _hex(v) if want == HEX else _text(v)
    if writer is _same:
        return enc

    def field(v: Any) -> str:
        v = writer(v)
        return _NULL if v is None else enc(v)

    return field
