"""The type-torture schema, built per source engine with that engine's own types, and its values.

Values are written through SQLAlchemy Core with plain Python objects and read back through the
DBAPI; ``norm`` (defined here, independent of albackup) turns what a driver returns into a
comparable Python value.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import struct
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

D = decimal.Decimal
BLOB_5MB = bytes(range(256)) * (5 * 1024 * 1024 // 256)
TEXT = "héllo 🎉 e\u0301 \\ back\\slash 'single' \"double\" \ttab\nnewline\r\n 中文"
UTC = dt.timezone.utc

# column → (DDL per engine (None: the engine's schema does not have it), kind for norm)
COLUMNS: dict[str, tuple[dict[str, str | None], str]] = {
    "i16": ({"postgresql": "smallint", "mysql": "smallint", "sqlite": "SMALLINT"}, "int"),
    "i32": ({"postgresql": "integer", "mysql": "int", "sqlite": "INTEGER"}, "int"),
    "i64": ({"postgresql": "bigint", "mysql": "bigint", "sqlite": "BIGINT"}, "int"),
    "u64": ({"postgresql": None, "mysql": "bigint unsigned", "sqlite": None}, "int"),
    "dec": ({"postgresql": "numeric(38,10)", "mysql": "decimal(38,10)", "sqlite": None}, "dec"),
    "dec_s": ({"postgresql": "numeric(10,2)", "mysql": "decimal(10,2)", "sqlite": "NUMERIC(10,2)"}, "dec"),
    "f32": ({"postgresql": "real", "mysql": "float", "sqlite": None}, "f32"),
    "f64": ({"postgresql": "double precision", "mysql": "double", "sqlite": "REAL"}, "float"),
    "flag": ({"postgresql": "boolean", "mysql": "boolean", "sqlite": "BOOLEAN"}, "bool"),
    "vs": ({"postgresql": "varchar(100)", "mysql": "varchar(100)", "sqlite": "VARCHAR(100)"}, "str"),
    "txt": ({"postgresql": "text", "mysql": "longtext", "sqlite": "TEXT"}, "str"),
    "ch": ({"postgresql": "char(10)", "mysql": "char(10)", "sqlite": "CHAR(10)"}, "char"),
    "bin": ({"postgresql": "bytea", "mysql": "longblob", "sqlite": "BLOB"}, "bytes"),
    "d": ({"postgresql": "date", "mysql": "date", "sqlite": "DATE"}, "date"),
    "ts": ({"postgresql": "timestamp(6)", "mysql": "datetime(6)", "sqlite": "DATETIME"}, "ts"),
    "tstz": ({"postgresql": "timestamptz", "mysql": None, "sqlite": None}, "tstz"),
    "tm": ({"postgresql": "time(6)", "mysql": "time(6)", "sqlite": "TIME"}, "time"),
    "u": ({"postgresql": "uuid", "mysql": None, "sqlite": None}, "uuid"),
    "j": ({"postgresql": "jsonb", "mysql": "json", "sqlite": "JSON"}, "json"),
    "mood": ({"postgresql": "mood", "mysql": "enum('sad','ok','happy')", "sqlite": None}, "str"),
    "iv": ({"postgresql": "interval", "mysql": None, "sqlite": None}, "str"),
    "arr_i": ({"postgresql": "integer[]", "mysql": None, "sqlite": None}, "array"),
    "arr_t": ({"postgresql": "text[]", "mysql": None, "sqlite": None}, "array"),
}

ROWS: list[dict[str, Any]] = [
    {"id": 1, "i16": 32767, "i32": 2147483647, "i64": 9223372036854775807, "u64": 18446744073709551615,
     "dec": D("1234567890123456789012345678.1234567890"), "dec_s": D("12345678.90"),
     "f32": 3.4028234663852886e38, "f64": 1.7976931348623157e308, "flag": True, "vs": TEXT[:100],
     "txt": TEXT * 3, "ch": "abc", "bin": b"\x00\x01\xff\x00", "d": dt.date(1850, 1, 1),
     "ts": dt.datetime(1899, 12, 31, 23, 59, 59, 999999),
     "tstz": dt.datetime(2150, 6, 15, 12, 0, 0, 1, tzinfo=UTC), "tm": dt.time(23, 59, 59, 999999),
     "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": {"a": [1, 2.5, "x"], "b": None, "ü": True},
     "mood": "happy", "iv": "1 year 2 mons 3 days 04:05:06.5", "arr_i": [1, None, -3],
     "arr_t": ["a", 'b"c', None, "d\\e", ""]},
    {"id": 2, "i16": -32768, "i32": -2147483648, "i64": -9223372036854775808, "u64": 0,
     "dec": D("-0.0000000001"), "dec_s": D("-0.01"), "f32": -0.25, "f64": -2.2250738585072014e-308,
     "flag": False, "vs": "", "txt": "", "ch": "", "bin": BLOB_5MB, "d": dt.date(2199, 12, 31),
     "ts": dt.datetime(2150, 6, 15, 12, 0, 0, 1),
     "tstz": dt.datetime(1901, 1, 1, 0, 0, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
     "tm": dt.time(0, 0, 0), "u": "00000000-0000-0000-0000-000000000000", "j": [], "mood": "sad",
     "iv": "-00:00:00.000001", "arr_i": [], "arr_t": []},
    {"id": 3},   # every other column NULL
    {"id": 4, "i16": 0, "i32": 0, "i64": 0, "u64": 9223372036854775808, "dec": D("0"), "dec_s": D("0"),
     "f32": 1.5, "f64": 0.1, "flag": True, "vs": "x", "txt": "NUL\x00inside", "ch": "a b", "bin": b"",
     "d": dt.date(1970, 1, 1), "ts": dt.datetime(1970, 1, 1), "tstz": dt.datetime(2000, 1, 1, tzinfo=UTC),
     "tm": dt.time(12, 0), "u": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12".lower(), "j": {"nested": {"k": "v"}},
     "mood": "ok", "iv": "00:00:00", "arr_i": [0], "arr_t": ["only"]},
]
# Values only some engines can store: NaN/Infinity floats (PostgreSQL), NUL in text (not PostgreSQL).
PG_EXTRA = {5: {"f32": float("nan"), "f64": float("inf")}, 6: {"f64": float("-inf"), "f32": float("nan")}}


def columns_for(engine: str) -> list[str]:
    return [c for c, (ddl, _) in COLUMNS.items() if ddl[engine] is not None]


def rows_for(engine: str) -> list[dict[str, Any]]:
    cols = set(columns_for(engine))
    out = []
    for r in ROWS:
        row = {k: v for k, v in r.items() if k == "id" or k in cols}
        if engine == "postgresql" and isinstance(row.get("txt"), str):
            row["txt"] = row["txt"].replace("\x00", "")
        out.append(row)
    if engine == "postgresql":
        for rid, vals in PG_EXTRA.items():
            out.append({"id": rid, **vals})
    return out


def _ddl(engine: str) -> list[str]:
    q = (lambda n: f"`{n}`") if engine == "mysql" else (lambda n: f'"{n}"')
    cols = ", ".join(f"{q(c)} {COLUMNS[c][0][engine]}" for c in columns_for(engine))
    out = []
    if engine == "postgresql":
        out.append("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
    out.append(f"CREATE TABLE torture (id integer PRIMARY KEY, {cols})")
    return out


def structure(md: sa.MetaData, engine: str) -> None:
    """The structural torture, portable through SQLAlchemy Core."""
    sa.Table("parent", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("code", sa.String(20), nullable=False, unique=True),
             sa.Column("qty", sa.Integer, index=True),
             sa.Column("created", sa.DateTime, server_default=sa.text("CURRENT_TIMESTAMP")),
             sa.CheckConstraint("qty >= 0", name="ck_parent_qty"),
             comment="parents of children")
    sa.Table("child", md,
             sa.Column("a", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("b", sa.String(10), primary_key=True),
             sa.Column("parent_id", sa.Integer, sa.ForeignKey("parent.id", name="fk_child_parent")),
             sa.Column("note", sa.String(50), comment="a note"))
    sa.Table("tree", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("parent_id", sa.Integer, sa.ForeignKey("tree.id", name="fk_tree_parent")))
    sa.Table("cyc_a", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("b_id", sa.Integer, sa.ForeignKey("cyc_b.id", name="fk_a_b", use_alter=True)))
    sa.Table("cyc_b", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("a_id", sa.Integer, sa.ForeignKey("cyc_a.id", name="fk_b_a")))
    sa.Table("nopk", md, sa.Column("x", sa.Integer), sa.Column("y", sa.String(10)))
    sa.Table("empty", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("v", sa.Text))
    odd = sa.Table('x"; DROP TABLE y; --', md,
                   sa.Column("select", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("Mixed Case", sa.String(20)),
                   sa.Column("ünï", sa.String(20)))
    sa.Index("ix odd ünï", odd.c["ünï"])


STRUCT_ROWS = {
    "parent": [{"id": 1, "code": "p1", "qty": 5}, {"id": 2, "code": "p2", "qty": 0}, {"id": 7, "code": "p7", "qty": 1}],
    "child": [{"a": 1, "b": "x", "parent_id": 1, "note": "n"}, {"a": 1, "b": "y", "parent_id": 2, "note": None},
              {"a": 2, "b": "x", "parent_id": None, "note": "é"}],
    "tree": [{"id": 1, "parent_id": None}, {"id": 2, "parent_id": 1}, {"id": 3, "parent_id": 2}],
    "cyc_a": [{"id": 1, "b_id": None}, {"id": 2, "b_id": None}],
    "cyc_b": [{"id": 1, "a_id": 2}],
    "nopk": [{"x": 1, "y": "dup"}, {"x": 1, "y": "dup"}, {"x": None, "y": None}],
    "empty": [],
    'x"; DROP TABLE y; --': [{"select": 1, "Mixed Case": "M", "ünï": "ü"}],
}


def build(url: sa.URL) -> None:
    """Create and fill the torture schema on ``url`` (an empty database)."""
    engine = url.get_backend_name()
    engine = "mysql" if engine == "mariadb" else engine
    e = sa.create_engine(url, poolclass=NullPool)
    with e.begin() as c:
        for stmt in _ddl(engine):
            c.exec_driver_sql(stmt)
    md = sa.MetaData()
    structure(md, engine)
    md.create_all(e)
    with e.begin() as c:
        t = sa.Table("torture", sa.MetaData(), autoload_with=c)
        for row in rows_for(engine):
            if engine == "mysql" and row.get("j") is not None:
                row = {**row, "j": json.dumps(row["j"])}   # MariaDB's JSON reflects as LONGTEXT
            c.execute(t.insert().values(**row))
        for name, rows in STRUCT_ROWS.items():
            if rows:
                c.execute(md.tables[name].insert(), rows)
        # close the FK cycle after both rows exist
        c.execute(md.tables["cyc_a"].update().where(md.tables["cyc_a"].c.id == 2).values(b_id=1))
    e.dispose()


# ------------------------------------------------------------------------------ reading back
def norm(kind: str, v: Any) -> Any:
    """A driver's value → a plain comparable value (independent of albackup)."""
    if v is None:
        return None
    if kind == "int":
        return int(v) if not isinstance(v, str) else int(D(v))
    if kind == "dec":
        return D(str(v)) if not isinstance(v, float) else D(repr(v))
    if kind in ("float", "f32"):
        f = float(v)
        if kind == "f32" and not (math.isnan(f) or math.isinf(f)):
            f = struct.unpack("<f", struct.pack("<f", f))[0]
        return "nan" if math.isnan(f) else f
    if kind == "bool":
        return bool(int(v)) if not isinstance(v, str) else v.lower() in ("1", "t", "true")
    if kind in ("str",):
        return v if isinstance(v, str) else (bytes(v).decode() if isinstance(v, (bytes, memoryview)) else str(v))
    if kind == "char":
        return str(v).rstrip(" ")
    if kind == "bytes":
        return bytes(v)
    if kind == "date":
        return v if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else dt.date.fromisoformat(str(v)[:10])
    if kind == "ts":
        return v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(str(v))
    if kind == "tstz":
        x = v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(str(v))
        return x.astimezone(UTC) if x.tzinfo else x.replace(tzinfo=UTC)
    if kind == "time":
        if isinstance(v, dt.timedelta):
            return (dt.datetime.min + v).time()
        return v if isinstance(v, dt.time) else dt.time.fromisoformat(str(v))
    if kind == "uuid":
        return str(uuid.UUID(str(v)))
    if kind == "json":
        return json.loads(v) if isinstance(v, (str, bytes)) else v
    if kind == "array":
        return json.loads(v) if isinstance(v, str) else list(v)
    raise AssertionError(kind)


def read_torture(url: sa.URL) -> dict[int, dict[str, Any]]:
    """Every torture row on ``url`` as {id: {column: normalised value}}."""
    e = sa.create_engine(url, poolclass=NullPool)
    out: dict[int, dict[str, Any]] = {}
    with e.connect() as c:
        cols = [r["name"] for r in sa.inspect(c).get_columns("torture")]
        dbapi = c.connection.dbapi_connection
        cur = dbapi.cursor()
        qc = (lambda n: f"`{n}`") if e.dialect.name in ("mysql", "mariadb") else (lambda n: f'"{n}"')
        my = e.dialect.name in ("mysql", "mariadb")
        sel = ", ".join(f"CAST({qc(n)} AS DOUBLE)" if my and n == "f32" else qc(n) for n in cols)
        if e.dialect.name == "postgresql":
            cur.execute("SET TIME ZONE 'UTC'")
            if "iv" in cols:
                sel = sel.replace('"iv"', '"iv"::text')
        cur.execute(f"SELECT {sel} FROM torture")
        names = cols
        for row in cur.fetchall():
            rec = dict(zip(names, row))
            rid = int(rec.pop("id"))
            out[rid] = {k: norm(COLUMNS[k][1], v) for k, v in rec.items()}
    e.dispose()
    return out


def expected_source(engine: str) -> dict[int, dict[str, Any]]:
    out = {}
    for r in rows_for(engine):
        rid = r["id"]
        out[rid] = {c: norm(COLUMNS[c][1], r.get(c)) for c in columns_for(engine)}
    return out
