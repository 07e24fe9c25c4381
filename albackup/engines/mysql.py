"""MySQL and MariaDB: consistent-snapshot transaction, unbuffered cursor, multi-row INSERT load."""
from __future__ import annotations

import math
import re
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import types as sat
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from ..mapping import ColumnMove, Loss
from ..model import Column, LogicalType, Routine, Schema, Table
from ..values import Converter
from .base import Adapter, Snapshot, register

_DEFINER = re.compile(r"\s+DEFINER\s*=\s*(`[^`]*`|'[^']*'|\S+)@(`[^`]*`|'[^']*'|\S+)", re.I)
_JSON_CHECK = re.compile(r"^\s*json_valid\(\s*`(?P<col>(?:[^`]|``)+)`\s*\)\s*$", re.I)
SESSION_SQL_MODE = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"


def strip_definer(sql: str) -> str:
    return _DEFINER.sub("", sql, count=1)


@register
class MySQLAdapter(Adapter):
    name = "mysql"
    dialect_names = ("mysql", "mariadb")
    max_identifier = 64
    named_primary_keys = False
    transactional_ddl = False
    key_text_chars = 768     # 3072-byte index keys / 4 bytes per utf8mb4 character

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

    def server_version(self, conn: Connection) -> str:
        return str(conn.exec_driver_sql("SELECT VERSION()").scalar())

    def refine_column(self, col: Column, info: dict[str, Any], table: Table) -> None:
        if info.get("autoincrement") is True:
            col.autoincrement = True

    def refine_table(self, table: Table, conn: Connection) -> None:
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
        if any(c.autoincrement for c in table.columns):
            nxt = conn.exec_driver_sql(
                "SELECT auto_increment FROM information_schema.tables WHERE table_schema = "
                "coalesce(%s, DATABASE()) AND table_name = %s", (table.schema, table.name)).scalar()
            for c in table.columns:
                if c.autoincrement and nxt:
                    c.identity = {"next": int(nxt)}

    def reflect_extras(self, conn: Connection, schema: Schema, schemas: list[str | None],
                       kinds: set[str]) -> None:
        if "view" in kinds:
            for (name,) in conn.exec_driver_sql(
                    "SELECT table_name FROM information_schema.views WHERE table_schema = DATABASE()"):
                row = conn.exec_driver_sql(f"SHOW CREATE VIEW {self.q(name)}").first()
                schema.routines.append(Routine("view", name, strip_definer(row[1])))
        if "trigger" in kinds:
            for name, tbl in conn.exec_driver_sql(
                    "SELECT trigger_name, event_object_table FROM information_schema.triggers "
                    "WHERE trigger_schema = DATABASE()"):
                row = conn.exec_driver_sql(f"SHOW CREATE TRIGGER {self.q(name)}").first()
                schema.routines.append(Routine("trigger", name, strip_definer(row[2]), None, tbl))
        if "routine" in kinds:
            for name, typ in conn.exec_driver_sql(
                    "SELECT routine_name, routine_type FROM information_schema.routines "
                    "WHERE routine_schema = DATABASE()"):
                row = conn.exec_driver_sql(f"SHOW CREATE {typ} {self.q(name)}").first()
                if row and row[2]:
                    schema.routines.insert(0, Routine("routine", name, strip_definer(row[2])))

    def estimate_rows(self, conn: Connection, table: Table) -> int | None:
        n = conn.exec_driver_sql("SELECT table_rows FROM information_schema.tables WHERE table_schema = "
                                 "coalesce(%s, DATABASE()) AND table_name = %s", (table.schema, table.name)).scalar()
        return int(n) if n is not None else None

    def select_sql(self, table: Table) -> str:
        # FLOAT travels as text with 6 significant digits; widened to DOUBLE it is exact.
        cols = ", ".join(f"CAST({self.q(c.name)} AS DOUBLE)" if c.type.kind == "float" and c.type.bits == 32
                         else self.q(c.name) for c in table.columns)
        return f"SELECT {cols} FROM {self.qtable(table.name, table.schema)}"

    def stream(self, conn: Connection, table: Table, batch_rows: int) -> Iterator[list[Any]]:
        import pymysql.cursors

        cur = self.dbapi(conn).cursor(pymysql.cursors.SSCursor)
        try:
            cur.execute(self.select_sql(table))
            while True:
                rows = cur.fetchmany(batch_rows)
                if not rows:
                    break
                yield rows
        finally:
            cur.close()

    # ------------------------------------------------------------------ restore
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
        return lambda v: v

    def begin_load(self, conn: Connection) -> None:
        self._session(conn)
        conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
        conn.exec_driver_sql("SET SESSION unique_checks = 0")

    def end_load(self, conn: Connection) -> None:
        conn.exec_driver_sql("SET SESSION unique_checks = 1")

    def set_foreign_key_checks(self, conn: Connection, enabled: bool) -> None:
        conn.exec_driver_sql(f"SET SESSION foreign_key_checks = {1 if enabled else 0}")

    def load(self, conn: Connection, table: Table, columns: list[str], writers: list[Converter],
             batches: Iterator[list[list[Any]]], identity: bool) -> int:
        # PyMySQL turns executemany of one INSERT ... VALUES into multi-row statements.
        return super().load(conn, table, columns, writers, batches, identity)

    def reset_identity(self, conn: Connection, table: Table, sa_table: sa.Table, same_engine: bool,
                       schema: Schema) -> None:
        for c in table.columns:
            if not c.autoincrement or c.type.kind != "integer":
                continue
            qt = self.qtable(table.name, table.schema)
            mx = conn.exec_driver_sql(f"SELECT max({self.q(c.name)}) FROM {qt}").scalar()
            nxt = max(int(mx or 0) + 1, int((c.identity or {}).get("next") or 1))
            conn.exec_driver_sql(f"ALTER TABLE {qt} AUTO_INCREMENT = {nxt}")
            break

    def drop_table(self, conn: Connection, name: str, schema: str | None) -> None:
        conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.qtable(name, schema)}")
