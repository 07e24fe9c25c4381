"""SQL Server through pyodbc: SNAPSHOT transaction, streaming cursor, fast_executemany load.

``pyodbc`` is never imported here: every DBAPI object comes from the SQLAlchemy connection, so
this module imports (and its SQL can be compiled and tested) on machines without an ODBC driver.

Parameters go to the server as ``?`` markers; only identifiers (bracket-quoted by the dialect's
preparer) and integers this module computed itself are ever spliced into SQL text.
"""
from __future__ import annotations

import dataclasses
import decimal
import logging
import math
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import types as sat
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Connection

from ..errors import AlbackupError, IntegrityError, RestoreError, UnreadObject
from ..mapping import ColumnMove, Loss, nan_loss, to_json_text
from ..model import Column, LogicalType, Routine, Schema, Table
from ..values import Converter, EchoHash
from .base import Adapter, Snapshot, portable_default, register

log = logging.getLogger(__name__)

SNAPSHOT_STATE_SQL = "SELECT snapshot_isolation_state FROM sys.databases WHERE name = DB_NAME()"
SNAPSHOT_OFF_DETAIL = ("snapshot isolation is off for this database; enable with "
                       "ALTER DATABASE ... SET ALLOW_SNAPSHOT_ISOLATION ON")
#: ODBC's manual-commit mode runs the session with IMPLICIT_TRANSACTIONS ON (bit 2 of @@OPTIONS):
#: there the next read opens the transaction, and an explicit BEGIN would nest a second one.
IDENTITY_SQL = "SELECT @@SERVERNAME, @@SERVICENAME, DB_NAME()"
BEGIN_SQL = "IF @@TRANCOUNT = 0 AND (@@OPTIONS & 2) = 0 BEGIN TRANSACTION"

NVARCHAR_MAX_N = 4000     # longest NVARCHAR(n) / NCHAR(n); beyond: NVARCHAR(max)
VARBINARY_MAX_N = 8000    # longest VARBINARY(n); beyond: VARBINARY(max)
MAX_FSP = 7               # DATETIME2 / DATETIMEOFFSET / TIME hold 100 ns
DECIMAL_MAX_P = 38
UNBOUNDED_DECIMAL = (38, 10)   # a decimal without precision (PostgreSQL numeric)
INTERVAL_CHARS = 100
ROUTINE_TYPES = {"TR": "trigger", "P": "routine", "FN": "routine", "IF": "routine", "TF": "routine"}

#: fractional-second digits SQL Server's own types hold when reflection does not say
_DEFAULT_FSP: tuple[tuple[type, int], ...] = (
    (mssql.SMALLDATETIME, 0),
    (mssql.DATETIME2, MAX_FSP),
    (mssql.DATETIMEOFFSET, MAX_FSP),
    (mssql.TIME, MAX_FSP),
    (sat.DateTime, 3),   # DATETIME: 1/300 s
)


class UnicodeEnum(sa.Enum):
    """A non-native enum for SQL Server: NVARCHAR(n) and a CHECK whose labels are N'…' literals.

    ``sa.Enum(native_enum=False)`` alone renders VARCHAR(n) and a CHECK of plain '…' literals,
    which the server converts to the database code page: labels outside it would turn into '?'.
    So this type makes no constraint of its own; once its column is in a table, the table gets
    a CHECK that compares the column as Unicode (public attach events only, for SQLAlchemy 2.0 and 2.1).
    """

    __visit_name__ = "NVARCHAR"
    cache_ok = True

    def __init__(self, *labels: str, length: int, name: str | None = None) -> None:
        super().__init__(*labels, native_enum=False, create_constraint=False, length=length, name=name)
        sa.event.listen(self, "after_parent_attach", _on_enum_column)


def _on_enum_column(enum: UnicodeEnum, column: sa.Column) -> None:
    def add_check(col: sa.Column, table: sa.Table) -> None:
        table.append_constraint(sa.CheckConstraint(sa.type_coerce(col, sa.Unicode()).in_(enum.enums),
                                                   name=enum.name))
    sa.event.listen(column, "after_parent_attach", add_check)


def _fsp(p: int | None) -> int:
    """Fractional-second digits on SQL Server for a logical precision (None: the default, 7)."""
    return MAX_FSP if p is None else max(0, min(p, MAX_FSP))


def cut_fraction(v: str, digits: int) -> str:
    """``v`` (a canonical time/datetime) with at most ``digits`` fraction digits, trailing zeros dropped.

    The ODBC driver refuses a string with more fraction digits than the column holds (22008
    "Datetime field overflow", e.g. 6 digits for DATETIME); trailing zeros carry nothing.
    """
    head, dot, rest = v.partition(".")
    if not dot:
        return v
    i = 0
    while i < len(rest) and rest[i].isdigit():
        i += 1
    frac = rest[:i][:digits].rstrip("0")
    return head + ("." + frac if frac else "") + rest[i:]


def _to_int(v: Any) -> Any:
    """Identity seeds come back as Decimal (sql_variant); keep them JSON-able."""
    if isinstance(v, decimal.Decimal) and v == v.to_integral_value():
        return int(v)
    return v


def _decimal_param(v: Any) -> decimal.Decimal | None:
    d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
    return d if d.is_finite() else None


def _float_param(v: Any) -> float | None:
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f


def _nonfinite_decimal(v: Any) -> bool:
    return isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity")


def _time_out_of_day(v: Any) -> bool:
    """A canonical time SQL Server's TIME cannot hold (MySQL TIME: negative or 24 h and more)."""
    if not isinstance(v, str):
        return False
    head = v.split(":", 1)[0]
    return head.startswith("-") or not head.isdigit() or int(head) > 23


def _unknown(c: Column) -> bool:
    """A column whose type SQLAlchemy did not know (reflect.py spells it NULL)."""
    return c.type.kind == "native" and c.original_type == "NULL"


@register
class MSSQLAdapter(Adapter):
    name = "mssql"
    dialect_names = ("mssql",)

    def nth_key_sql(self, table: Table, key: list[str], where: str, n: int) -> str:
        cols = ", ".join(self.q(k) for k in key)
        return (f"SELECT {cols} FROM {self.qtable(table.name, table.schema)}{where} "
                f"ORDER BY {cols} OFFSET {int(n) - 1} ROWS FETCH NEXT 1 ROWS ONLY")
    max_identifier = 128
    identifier_chars = True    # sysname: 128 characters
    max_params = 2100          # parameters per statement; a statement must stay below it
    key_text_chars = 450       # 900-byte index keys / 2 bytes per NVARCHAR character
    key_char_bytes = 2
    # PK/UNIQUE/FK/CHECK constraints are schema objects on SQL Server, as tables are; indexes
    # are named per table
    name_spaces = {"index": (("index", "table"),), "key": (("object", "schema"),),
                   "foreign_key": (("object", "schema"),), "check": (("object", "schema"),)}
    table_name_space = "object"
    identity_columns = True          # generated keys are IDENTITY columns
    default_case_insensitive = True  # SQL_Latin1_General_CP1_CI_AS, as most servers are set up

    # ---------------------------------------------------------------- naming and quoting
    @property
    def mark(self) -> str:
        """The parameter marker: pyodbc's qmark (pymssql, the other driver, uses %s)."""
        return "%s" if self.dialect.paramstyle in ("format", "pyformat") else "?"

    def placeholders(self, n: int) -> str:
        return ", ".join([self.mark] * n)

    def literal_name(self, quoted: str) -> str:
        """A quoted object name as an N'…' string, for commands that take no parameters (DBCC)."""
        return "N'" + quoted.replace("'", "''") + "'"

    # ---------------------------------------------------------------- dump side
    def server_version(self, conn: Connection) -> str:
        # SERVERPROPERTY returns sql_variant, which pyodbc cannot fetch: cast it.
        return str(conn.exec_driver_sql(
            "SELECT CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128))").scalar())

    def begin_snapshot(self, conn: Connection) -> Snapshot:
        state = conn.exec_driver_sql(SNAPSHOT_STATE_SQL).scalar()
        if state != 1:   # 0 off, 2/3 in transition: a SNAPSHOT transaction would fail
            return Snapshot("mssql-read-committed", False, SNAPSHOT_OFF_DETAIL)
        # The SELECT above opened a transaction (ODBC manual commit = implicit transactions), and
        # SQL Server refuses to switch an open transaction to SNAPSHOT (error 3951): end it first.
        self.dbapi(conn).commit()
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL SNAPSHOT")
        conn.exec_driver_sql(BEGIN_SQL)
        return Snapshot("mssql-snapshot", True,
                        "one SNAPSHOT isolation transaction for reflection and every table")

    def refine_column(self, col: Column, info: dict[str, Any], table: Table) -> None:
        ident = info.get("identity")
        if ident is not None:
            col.autoincrement = True
            # "always": an IDENTITY takes no explicit value unless IDENTITY_INSERT is ON (the load
            # switches it on); it also makes a same-engine restore keep the seed and increment.
            col.identity = {"always": True,
                            **{k: _to_int(ident[k]) for k in ("start", "increment") if ident.get(k) is not None}}
        t = col.type
        if t.kind in ("datetime", "time") and t.precision is None:
            typ = info.get("type")
            for cls, p in _DEFAULT_FSP:
                if isinstance(typ, cls):
                    col.type = dataclasses.replace(t, precision=p)
                    break

    def refine_table(self, table: Table, conn: Connection) -> None:
        """Fraction digits of DATETIME2/DATETIMEOFFSET/TIME (reflection drops them), identity state,
        and the name of a type SQLAlchemy does not know (hierarchyid, sql_variant, an alias type)."""
        if not any(c.autoincrement or c.type.kind in ("datetime", "time") or _unknown(c) for c in table.columns):
            return
        rows = conn.exec_driver_sql(
            "SELECT c.name, c.scale, TYPE_NAME(c.system_type_id), CAST(ic.last_value AS DECIMAL(38, 0)), "
            "TYPE_NAME(c.user_type_id) FROM sys.columns c LEFT JOIN sys.identity_columns ic "
            "ON ic.object_id = c.object_id AND ic.column_id = c.column_id "
            f"WHERE c.object_id = OBJECT_ID({self.mark})",
            (self.qtable(table.name, table.schema),)).fetchall()
        by_name = {c.name: c for c in table.columns}
        for name, scale, type_name, last, user_type in rows:
            c = by_name.get(name)
            if c is None:
                continue
            if _unknown(c) and user_type:
                c.original_type = self.q(user_type) if user_type != user_type.lower() or " " in user_type \
                    else user_type
                c.type = LogicalType("native", native=c.original_type)
            tn = (type_name or "").lower()
            if tn in ("datetime2", "datetimeoffset", "time") and scale is not None:
                c.type = dataclasses.replace(c.type, precision=int(scale))
                if c.original_type.strip().lower() == tn:
                    c.original_type = f"{c.original_type.strip()}({int(scale)})"
            if c.autoincrement and last is not None:
                c.identity = {**(c.identity or {}), "last": int(last)}

    def reflect_extras(self, conn: Connection, schema: Schema, schemas: list[str | None],
                       kinds: set[str]) -> None:
        if "view" in kinds:   # views: sys.sql_modules, read by SQLAlchemy's inspector
            super().reflect_extras(conn, schema, schemas, kinds)
        wanted = {"trigger", "routine"} & kinds
        if not wanted:
            return
        default = str(conn.exec_driver_sql("SELECT SCHEMA_NAME()").scalar())
        names = sorted({s or default for s in schemas})
        rows = conn.exec_driver_sql(
            "SELECT s.name, o.name, o.type, OBJECT_NAME(o.parent_object_id), m.definition "
            "FROM sys.sql_modules m JOIN sys.objects o ON o.object_id = m.object_id "
            "JOIN sys.schemas s ON s.schema_id = o.schema_id "
            "WHERE o.is_ms_shipped = 0 AND o.type IN ('TR', 'P', 'FN', 'IF', 'TF') "
            f"AND s.name IN ({self.placeholders(len(names))}) "
            "ORDER BY o.create_date, o.object_id", tuple(names)).fetchall()
        routines: list[Routine] = []
        for sname, oname, otype, parent, definition in rows:
            kind = ROUTINE_TYPES.get(str(otype).strip())
            if kind not in wanted:
                continue
            if definition is None:   # WITH ENCRYPTION: the text is not readable
                raise UnreadObject(f"{kind} {self.qtable_value(oname, sname)}: its definition is encrypted "
                                   f"(WITH ENCRYPTION) and cannot be read; leave {kind}s out with "
                                   f"{'triggers' if kind == 'trigger' else 'routines'}: false")
            s = None if sname == default else sname
            if kind == "trigger":
                schema.routines.append(Routine("trigger", oname, definition, s, parent))
            else:
                routines.append(Routine("routine", oname, definition, s))
        schema.routines[:0] = routines   # functions and procedures before views that use them

    # stream: the base class's plain cursor + fetchmany streams with pyodbc (a default result
    # set is read from the wire as it is fetched). The connection stays busy until it is drained.

    # ------------------------------------------------------------------ restore
    def target_type(self, col: Column, key_chars: int | None) -> tuple[LogicalType, sat.TypeEngine]:
        t = col.type
        k = t.kind
        if k == "integer":
            bits = t.bits or 64
            if t.unsigned:
                bits = {16: 32, 32: 64, 64: 0}.get(bits, 0)
            if bits == 0:
                return LogicalType("decimal", precision=20, scale=0), mssql.DECIMAL(20, 0)
            typ = {16: mssql.SMALLINT(), 32: mssql.INTEGER(), 64: mssql.BIGINT()}[bits]
            return LogicalType("integer", bits=bits), typ
        if k == "decimal":
            p, s = t.precision, t.scale or 0
            if p is not None and p <= DECIMAL_MAX_P:
                return LogicalType("decimal", precision=p, scale=s), mssql.DECIMAL(p, s)
            p, s = (DECIMAL_MAX_P, min(s, DECIMAL_MAX_P)) if p is not None else UNBOUNDED_DECIMAL
            return LogicalType("decimal", precision=p, scale=s), mssql.DECIMAL(p, s)
        if k == "float":
            if t.bits == 32:
                return LogicalType("float", bits=32), mssql.REAL()
            return LogicalType("float", bits=64), mssql.FLOAT(53)
        if k == "boolean":
            return t, mssql.BIT()
        if k in ("string", "char", "text", "native", "json", "array"):
            n = t.length if k in ("string", "char") else None
            if key_chars is not None and (n is None or n > key_chars):
                return LogicalType("string", length=key_chars), mssql.NVARCHAR(key_chars)
            if k == "char" and n is not None and n <= NVARCHAR_MAX_N:
                return LogicalType("char", length=n), mssql.NCHAR(n)
            if k == "string" and n is not None and n <= NVARCHAR_MAX_N:
                return LogicalType("string", length=n), mssql.NVARCHAR(n)
            if k in ("json", "array"):
                return LogicalType("json"), mssql.NVARCHAR()
            return LogicalType("text"), mssql.NVARCHAR()
        if k == "binary":
            n = t.length
            if key_chars is not None and (n is None or n > key_chars * 2):
                n = key_chars * 2
            if n is not None and n <= VARBINARY_MAX_N:
                return LogicalType("binary", length=n), mssql.VARBINARY(n)
            return LogicalType("binary"), mssql.VARBINARY()
        if k == "date":
            return t, mssql.DATE()
        if k == "time":
            p = _fsp(t.precision)
            return LogicalType("time", precision=p), mssql.TIME(precision=p)
        if k == "datetime":
            p = _fsp(t.precision)
            if t.timezone:
                return LogicalType("datetime", precision=p, timezone=True), mssql.DATETIMEOFFSET(p)
            return LogicalType("datetime", precision=p), mssql.DATETIME2(p)
        if k == "interval":
            return LogicalType("string", length=INTERVAL_CHARS), mssql.NVARCHAR(INTERVAL_CHARS)
        if k == "uuid":
            return t, mssql.UNIQUEIDENTIFIER(as_uuid=False)
        if k == "enum":
            values = tuple(t.values or ())
            n = max([len(v) for v in values] + [1])
            if key_chars is not None and n > key_chars:
                return LogicalType("string", length=key_chars), mssql.NVARCHAR(key_chars)
            # Unnamed CHECK: SQL Server names it; a fixed name would clash across tables (schema-wide).
            return t, UnicodeEnum(*values, length=n)
        return LogicalType("text"), mssql.NVARCHAR()

    def add_losses(self, move: ColumnMove, src: LogicalType) -> None:
        k = move.target.kind
        if k == "float":
            nan_loss(move, "NaN and ±Infinity (SQL Server has none)")
        elif k == "decimal" and src.kind == "decimal" and not move.losses:
            # (a lossy decimal move already turns NaN and ±Infinity into NULL)
            base = move.convert
            move.convert = lambda v, base=base: None if _nonfinite_decimal(v) else base(v)
            move.losses.append(Loss("decimal NaN and ±Infinity (SQL Server has none) stored as NULL",
                                    _nonfinite_decimal))
        elif k == "time" and src.kind == "time":
            base_t = move.convert
            move.convert = lambda v, base=base_t: None if _time_out_of_day(v) else base(v)
            move.losses.append(Loss("times outside 00:00:00–23:59:59 (SQL Server TIME) stored as NULL",
                                    _time_out_of_day))
        # DATE/DATETIME2/DATETIMEOFFSET hold years 0001–9999, every date a canonical value can hold.

    def writer(self, t: LogicalType) -> Converter:
        k = t.kind
        if k == "boolean":
            return bool
        if k == "integer":
            return int
        if k == "decimal":
            return _decimal_param
        if k == "float":
            return _float_param
        if k == "datetime":
            # 'YYYY-MM-DD HH:MM:SS[.fffffff][+00:00]': the ODBC literal form, read the same way
            # whatever the session's DATEFORMAT/LANGUAGE, by DATETIME2 and DATETIMEOFFSET alike.
            p = _fsp(t.precision)
            return lambda v, p=p: cut_fraction(v.replace("T", " "), p)
        if k == "time":
            p = _fsp(t.precision)
            return lambda v, p=p: cut_fraction(v, p)
        if k == "binary":
            return bytes
        if k == "array":
            return lambda v: v if isinstance(v, str) else to_json_text(v)
        if k in ("uuid", "date", "string", "text", "char", "enum", "interval", "json"):
            return str
        return lambda v: v   # native: as the engine gave it

    def server_default(self, col: Column, same_engine: bool) -> str | None:
        if same_engine:
            return col.default
        if col.autoincrement:   # an IDENTITY column takes no DEFAULT
            return None
        d = portable_default(col.default)
        if d == "CURRENT_DATE":   # no CURRENT_DATE in T-SQL
            return "(CONVERT(date, GETDATE()))"
        if d == "CURRENT_TIMESTAMP" and col.type.timezone:   # CURRENT_TIMESTAMP has no offset
            return "SYSDATETIMEOFFSET()"
        if d is not None and d.startswith("'") and not d.isascii():
            return "N" + d   # an NVARCHAR literal: keeps characters outside the code page
        return d

    def prepare(self, conn: Connection, schema: Schema, tables: list[Table], same_engine: bool) -> None:
        for s in sorted({t.schema for t in tables if t.schema}):
            if conn.exec_driver_sql(f"SELECT SCHEMA_ID({self.mark})", (s,)).scalar() is None:
                conn.exec_driver_sql(f"CREATE SCHEMA {self.q(s)}")   # must be alone in its batch

    def begin_load(self, conn: Connection, concurrent: bool = False) -> None:
        # Strings reaching a legacy DATETIME server-side are then read year-month-day.
        conn.exec_driver_sql("SET DATEFORMAT ymd")

    def rows_per_statement(self, ncols: int) -> int:
        """Rows per executemany call: all their parameters together stay below ``max_params``."""
        if ncols >= self.max_params:
            raise RestoreError(f"an INSERT of {ncols} columns needs more than the "
                               f"{self.max_params - 1} parameters SQL Server takes in one statement")
        return max(1, (self.max_params - 1) // max(ncols, 1))

    def load(self, conn: Connection, table: Table, columns: list[str], writers: list[Converter],
             batches: Iterator[list[list[Any]]], identity: bool, echo: EchoHash | None = None) -> int:
        """executemany with fast_executemany, < 2100 parameters per call, IDENTITY_INSERT around it.

        ``identity``: the caller says the table has an identity column among ``columns``; the
        catalog decides (SQLAlchemy makes an integer primary key IDENTITY on SQL Server even when
        the source had none, and SET IDENTITY_INSERT fails on a table without one).
        """
        qt = self.qtable(table.name, table.schema)
        sql = (f"INSERT INTO {qt} ({', '.join(self.q(c) for c in columns)}) "
               f"VALUES ({self.placeholders(len(columns))})")
        step = self.rows_per_statement(len(columns))
        cur = self.dbapi(conn).cursor()
        n = 0
        try:
            cur.fast_executemany = True   # parameter arrays: one round trip per call
            cur.execute(f"SELECT name FROM sys.identity_columns WHERE object_id = OBJECT_ID({self.mark})",
                        (qt,))
            row = cur.fetchone()
            ident_on = row is not None and row[0] in columns
            if identity and not ident_on:
                log.debug("%s: no identity column among the loaded columns; IDENTITY_INSERT not needed", qt)
            if ident_on:
                cur.execute(f"SET IDENTITY_INSERT {qt} ON")
            failed = True
            try:
                for batch in batches:
                    params = [tuple(None if v is None else w(v) for w, v in zip(writers, r)) for r in batch]
                    for i in range(0, len(params), step):
                        cur.executemany(sql, params[i:i + step])
                    n += len(params)
                failed = False
            finally:
                if ident_on:
                    try:
                        cur.execute(f"SET IDENTITY_INSERT {qt} OFF")
                    except Exception:
                        if not failed:
                            raise
                        log.warning("%s: SET IDENTITY_INSERT OFF failed after the load failed", qt)
        finally:
            cur.close()
        return n

    def set_foreign_key_checks(self, conn: Connection, enabled: bool) -> None:
        """Nothing to switch: foreign keys are added after the load, WITH NOCHECK (add_foreign_key)."""

    def add_foreign_key(self, conn: Connection, fk: sa.ForeignKeyConstraint, validate: bool) -> None:
        table = fk.table
        ddl = str(sa.schema.AddConstraint(fk).compile(dialect=self.dialect))
        prefix = f"ALTER TABLE {self.prep.format_table(table)}"
        if not ddl.startswith(prefix + " "):
            raise AlbackupError(f"unexpected foreign key DDL for SQL Server: {ddl!r}")
        conn.exec_driver_sql(f"{prefix} WITH NOCHECK{ddl[len(prefix):]}")
        if not validate:
            return
        qt = self.qtable(table.name, table.schema)
        target = self.q(fk.name) if fk.name else "ALL"
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(f"ALTER TABLE {qt} WITH CHECK CHECK CONSTRAINT {target}")
        except sa.exc.DBAPIError as exc:
            raise IntegrityError(f"table {table.name}: foreign key {fk.name} does not hold "
                                 f"({str(exc.orig).splitlines()[0]})") from None

    def validate_foreign_keys(self, conn: Connection, table: Table, sa_table: sa.Table) -> list[str]:
        return []   # WITH CHECK CHECK CONSTRAINT already checked every row

    def reset_identity(self, conn: Connection, table: Table, sa_table: sa.Table, same_engine: bool,
                       schema: Schema) -> None:
        col = next((c for c in table.columns
                    if c.autoincrement and c.type.kind in ("integer", "decimal")), None)
        if col is None:
            return
        info = col.identity or {}
        inc = int(info.get("increment") or 1)
        qt = self.qtable(table.name, table.schema)
        row = conn.exec_driver_sql(
            f"SELECT OBJECTPROPERTY(OBJECT_ID({self.mark}), 'TableHasIdentity'), "
            f"{'MAX' if inc > 0 else 'MIN'}({self.q(col.name)}) FROM {qt}", (qt,)).first()
        if row is None or not row[0]:
            return   # the column did not become an IDENTITY here
        extreme = None if row[1] is None else int(row[1])
        last = info.get("last")
        if last is None and info.get("next") is not None:   # MySQL/SQLite: the next value
            last = int(info["next"]) - inc
        if extreme is None and last is None:
            return   # no rows, nothing recorded: the identity starts at its seed
        if extreme is None:
            # No row was inserted since CREATE TABLE: the next row takes the reseed value itself.
            value = int(last) + inc
        else:
            pick = max if inc > 0 else min
            value = pick(x for x in (extreme, last) if x is not None)
        conn.exec_driver_sql(
            f"DBCC CHECKIDENT ({self.literal_name(qt)}, RESEED, {int(value)}) WITH NO_INFOMSGS")

    def server_identity(self, conn: Connection) -> tuple[Any, ...] | None:
        """The instance's name as it calls itself (@@SERVERNAME: the machine and instance,
        @@SERVICENAME: the service) and the current database."""
        row = conn.exec_driver_sql(IDENTITY_SQL).first()
        if row is None:
            return None
        name, service, db = row
        return ("mssql", str(name or "").upper(), str(service or "").upper(), db)

    def clean_blockers(self, conn: Connection, tables: list[tuple[str, str | None]],
                       views: list[tuple[str, str | None]]) -> list[str]:
        """The foreign keys of other tables that reference the tables --clean replaces
        (``drop_table`` would drop them with their table). A schema-bound view or function stops
        the DROP itself, inside the restore's transaction."""
        if not tables:
            return []
        names = tuple(self.qtable(n, s) for n, s in tables)
        marks = ", ".join(f"OBJECT_ID({self.mark})" for _ in names)
        rows = conn.exec_driver_sql(
            "SELECT fk.name, OBJECT_SCHEMA_NAME(fk.parent_object_id), OBJECT_NAME(fk.parent_object_id), "
            "OBJECT_SCHEMA_NAME(fk.referenced_object_id), OBJECT_NAME(fk.referenced_object_id) "
            f"FROM sys.foreign_keys fk WHERE fk.referenced_object_id IN ({marks}) "
            f"AND fk.parent_object_id NOT IN ({marks})", names + names).fetchall()
        return sorted(f"foreign key {fk} on table {s}.{t} depends on table {rs}.{rt}" for fk, s, t, rs, rt in rows)

    def drop_table(self, conn: Connection, name: str, schema: str | None) -> None:
        qt = self.qtable(name, schema)
        refs = conn.exec_driver_sql(
            "SELECT OBJECT_SCHEMA_NAME(fk.parent_object_id), OBJECT_NAME(fk.parent_object_id), fk.name "
            f"FROM sys.foreign_keys fk WHERE fk.referenced_object_id = OBJECT_ID({self.mark}) "
            "AND fk.parent_object_id <> fk.referenced_object_id", (qt,)).fetchall()
        for s, t, fk in refs:   # what PostgreSQL's DROP ... CASCADE would drop
            conn.exec_driver_sql(f"ALTER TABLE {self.qtable(t, s)} DROP CONSTRAINT {self.q(fk)}")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {qt}")
