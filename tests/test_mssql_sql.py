"""SQL Server adapter, checked at the SQL level: no server, the mssql+pyodbc dialect compiles the DDL
and recording doubles stand in for the SQLAlchemy connection and the pyodbc cursor."""
from __future__ import annotations

import decimal
import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc

from .conftest import require_component

from albackup.engines.base import adapter_class
from albackup.engines.mssql import BEGIN_SQL, SNAPSHOT_OFF_DETAIL, SNAPSHOT_STATE_SQL, MSSQLAdapter
from albackup.errors import IntegrityError, RestoreError, UnreadObject
from albackup.mapping import move
from albackup.model import Column, LogicalType as L, Routine, Schema, Table

EVIL = 'x"]; DROP TABLE y; --'

Answer = Callable[[str, Any], list[tuple[Any, ...]]]


def no_rows(sql: str, params: Any) -> list[tuple[Any, ...]]:
    return []


class Result:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self.rows)


# ------------------------------------------------------------- an independent T-SQL grammar
#: statements sqlglot's T-SQL grammar does not know (DBCC; the SNAPSHOT isolation level); each is checked by its
#: exact expected text in the tests instead
TSQL_UNPARSED = ("DBCC ", "SET TRANSACTION ISOLATION LEVEL SNAPSHOT")
_EMITTED: list[list[tuple[Any, ...]]] = []     # the logs of every FakeConnection of the running test


def assert_tsql(sql: str) -> None:
    """``sql`` parses as T-SQL with sqlglot's grammar (not SQLAlchemy's): a statement SQL Server
    would reject for its syntax (an unbalanced bracket, a clause out of place) fails here."""
    require_component("sqlglot", "the T-SQL parser sqlglot (pip install -r requirements-dev.txt)",
                      installed_by_scripts=True)
    import sqlglot
    from sqlglot.errors import ParseError

    if sql.lstrip().upper().startswith(TSQL_UNPARSED):
        return
    try:
        sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    except ParseError as exc:
        pytest.fail(f"not valid T-SQL for sqlglot: {str(exc).splitlines()[0]}\n{sql}")


@pytest.fixture(autouse=True)
def _every_statement_is_tsql() -> Iterator[None]:
    """Every statement a test's fake connections were given parses as T-SQL."""
    _EMITTED.clear()
    yield
    for log in _EMITTED:
        for entry in log:
            if entry[0] in ("sql", "execute", "executemany"):
                assert_tsql(entry[1])


class RecordingCursor:
    """Test double for a pyodbc cursor: records execute/executemany, answers fetchone."""

    def __init__(self, log: list[tuple[Any, ...]], answer: Answer,
                 fail_on: Callable[[str], bool] = lambda sql: False) -> None:
        self.log = log
        self.answer = answer
        self.fail_on = fail_on
        self.fast_executemany = False
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> None:
        self.log.append(("execute", sql, params))
        self._rows = self.answer(sql, params)

    def executemany(self, sql: str, seq: list[tuple[Any, ...]]) -> None:
        self.log.append(("executemany", sql, list(seq), self.fast_executemany))
        if self.fail_on(sql):
            raise RuntimeError("insert failed")

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def close(self) -> None:
        self.log.append(("close",))


class FakeDBAPIConnection:
    def __init__(self, owner: "FakeConnection") -> None:
        self.owner = owner

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self.owner.log, self.owner.answer, self.owner.fail_on)

    def commit(self) -> None:
        self.owner.log.append(("dbapi-commit",))


class FakePoolProxy:
    def __init__(self, dbapi_connection: FakeDBAPIConnection) -> None:
        self.dbapi_connection = dbapi_connection


class FakeConnection:
    """Just enough of sqlalchemy.engine.Connection: exec_driver_sql, begin_nested, .connection."""

    def __init__(self, answer: Answer = no_rows, raise_on: Callable[[str], bool] = lambda sql: False,
                 fail_on: Callable[[str], bool] = lambda sql: False) -> None:
        self.log: list[tuple[Any, ...]] = []
        _EMITTED.append(self.log)
        self.answer = answer
        self.raise_on = raise_on
        self.fail_on = fail_on
        self.connection = FakePoolProxy(FakeDBAPIConnection(self))

    def exec_driver_sql(self, sql: str, params: Any = None) -> Result:
        self.log.append(("sql", sql, params))
        if self.raise_on(sql):
            raise sa.exc.DBAPIError(sql, params, Exception(
                "[23000] The ALTER TABLE statement conflicted with the FOREIGN KEY constraint"))
        return Result(self.answer(sql, params))

    @contextmanager
    def begin_nested(self) -> Iterator[None]:
        self.log.append(("savepoint",))
        yield

    def statements(self) -> list[str]:
        return [e[1] for e in self.log if e[0] in ("sql", "execute", "executemany")]


@pytest.fixture()
def dialect() -> sa.Dialect:
    return mssql_pyodbc.dialect()


@pytest.fixture()
def ad(dialect: sa.Dialect) -> MSSQLAdapter:
    return MSSQLAdapter(dialect)


def test_registered_and_limits(ad: MSSQLAdapter) -> None:
    assert adapter_class("mssql") is MSSQLAdapter
    assert (ad.max_identifier, ad.max_params, ad.key_text_chars) == (128, 2100, 450)


# ------------------------------------------------------------------------------------ types

EVERY_TYPE = [
    ("i16", L("integer", bits=16)), ("i32", L("integer", bits=32)), ("i64", L("integer", bits=64)),
    ("u16", L("integer", bits=16, unsigned=True)), ("u32", L("integer", bits=32, unsigned=True)),
    ("u64", L("integer", bits=64, unsigned=True)),
    ("dec", L("decimal", precision=12, scale=2)), ("bigdec", L("decimal", precision=50, scale=20)),
    ("anydec", L("decimal")),
    ("f32", L("float", bits=32)), ("f64", L("float", bits=64)), ("flag", L("boolean")),
    ("s", L("string", length=200)), ("long_s", L("string", length=5000)), ("txt", L("text")),
    ("ch", L("char", length=3)),
    ("bin", L("binary")), ("bin16", L("binary", length=16)),
    ("d", L("date")), ("tm", L("time", precision=3)),
    ("ts", L("datetime", precision=6)), ("ts7", L("datetime")),
    ("tstz", L("datetime", precision=6, timezone=True)),
    ("iv", L("interval")), ("u", L("uuid")), ("j", L("json")), ("e", L("enum", values=("red", "grün"))),
    ("arr", L("array", item=L("integer", bits=32))), ("geo", L("native", native="geography")),
]

EXPECTED_CREATE = """
CREATE TABLE dbo.every (
\tid BIGINT NOT NULL IDENTITY(1,1), 
\ti16 SMALLINT NULL, 
\ti32 INTEGER NULL, 
\ti64 BIGINT NULL, 
\tu16 INTEGER NULL, 
\tu32 BIGINT NULL, 
\tu64 DECIMAL(20, 0) NULL, 
\tdec DECIMAL(12, 2) NULL, 
\tbigdec DECIMAL(38, 20) NULL, 
\tanydec DECIMAL(38, 10) NULL, 
\tf32 REAL NULL, 
\tf64 FLOAT(53) NULL, 
\tflag BIT NULL, 
\ts NVARCHAR(200) NULL, 
\tlong_s NVARCHAR(max) NULL, 
\ttxt NVARCHAR(max) NULL, 
\tch NCHAR(3) NULL, 
\tbin VARBINARY(max) NULL, 
\tbin16 VARBINARY(16) NULL, 
\td DATE NULL, 
\ttm TIME(3) NULL, 
\tts DATETIME2(6) NULL, 
\tts7 DATETIME2(7) NULL, 
\ttstz DATETIMEOFFSET(6) NULL, 
\tiv NVARCHAR(100) NULL, 
\tu UNIQUEIDENTIFIER NULL, 
\tj NVARCHAR(max) NULL, 
\te NVARCHAR(4) NULL, 
\tarr NVARCHAR(max) NULL, 
\tgeo NVARCHAR(max) NULL, 
\tPRIMARY KEY (id), 
\tCHECK (e IN (N'red', N'grün'))
)

"""


def test_create_table_every_logical_type(ad: MSSQLAdapter, dialect: sa.Dialect) -> None:
    md = sa.MetaData()
    table = sa.Table(
        "every", md, sa.Column("id", sa.BIGINT(), sa.Identity(start=1, increment=1), primary_key=True),
        *[sa.Column(n, ad.target_type(Column(n, t, ""), None)[1]) for n, t in EVERY_TYPE], schema="dbo")
    assert str(sa.schema.CreateTable(table).compile(dialect=dialect)) == EXPECTED_CREATE
    assert_tsql(EXPECTED_CREATE)


def test_target_logical_types(ad: MSSQLAdapter) -> None:
    got = {n: ad.target_type(Column(n, t, ""), None)[0].describe() for n, t in EVERY_TYPE}
    assert got == {
        "i16": "int16", "i32": "int32", "i64": "int64", "u16": "int32", "u32": "int64",
        "u64": "decimal(20,0)", "dec": "decimal(12,2)", "bigdec": "decimal(38,20)",
        "anydec": "decimal(38,10)", "f32": "float32", "f64": "float64", "flag": "boolean",
        "s": "string(200)", "long_s": "text", "txt": "text", "ch": "char(3)", "bin": "binary",
        "bin16": "binary(16)", "d": "date", "tm": "time(3)", "ts": "datetime(6)", "ts7": "datetime(7)",
        "tstz": "datetime(6) tz", "iv": "string(100)", "u": "uuid", "j": "json", "e": "enum(red,grün)",
        "arr": "json", "geo": "text",
    }


def test_decimal_beyond_38_digits_is_a_visible_loss(ad: MSSQLAdapter) -> None:
    src = L("decimal", precision=50, scale=20)
    dst, _ = ad.target_type(Column("x", src, ""), None)
    m = move(src, dst)
    assert [loss.reason for loss in m.losses] == ["decimals that do not fit decimal(38,20)"]
    assert m.losses[0].affects("1" + "0" * 20 + ".5") and not m.losses[0].affects("12.5")


def test_key_columns_get_index_sized_types(ad: MSSQLAdapter, dialect: sa.Dialect) -> None:
    def ddl(t: L) -> tuple[str, str]:
        lt, typ = ad.target_type(Column("k", t, ""), 450)
        return lt.describe(), typ.compile(dialect=dialect)

    assert ddl(L("text")) == ("string(450)", "NVARCHAR(450)")
    assert ddl(L("string", length=1000)) == ("string(450)", "NVARCHAR(450)")
    assert ddl(L("string", length=100)) == ("string(100)", "NVARCHAR(100)")
    assert ddl(L("char", length=2)) == ("char(2)", "NCHAR(2)")
    assert ddl(L("binary")) == ("binary(900)", "VARBINARY(900)")
    assert ddl(L("uuid")) == ("uuid", "UNIQUEIDENTIFIER")


# ------------------------------------------------------------------------------------ foreign keys

def _fk_tables() -> sa.ForeignKeyConstraint:
    md = sa.MetaData()
    sa.Table("parent", md, sa.Column("id", sa.INTEGER(), primary_key=True, autoincrement=False), schema="sales")
    child = sa.Table("child", md, sa.Column("id", sa.INTEGER(), primary_key=True, autoincrement=False),
                     sa.Column("parent_id", sa.INTEGER()),
                     sa.ForeignKeyConstraint(["parent_id"], ["sales.parent.id"], name="fk_child_parent"),
                     schema="sales")
    return next(iter(child.foreign_key_constraints))


def test_foreign_key_added_with_nocheck_then_checked(ad: MSSQLAdapter) -> None:
    conn = FakeConnection()
    ad.add_foreign_key(conn, _fk_tables(), validate=True)  # type: ignore[arg-type]
    assert conn.statements() == [
        "ALTER TABLE sales.child WITH NOCHECK ADD CONSTRAINT fk_child_parent FOREIGN KEY(parent_id) "
        "REFERENCES sales.parent (id)",
        "ALTER TABLE [sales].[child] WITH CHECK CHECK CONSTRAINT [fk_child_parent]",
    ]
    assert ad.validate_foreign_keys(conn, Table("child"), _fk_tables().table) == []  # type: ignore[arg-type]


def test_foreign_key_without_validation_is_only_added(ad: MSSQLAdapter) -> None:
    conn = FakeConnection()
    ad.add_foreign_key(conn, _fk_tables(), validate=False)  # type: ignore[arg-type]
    assert conn.statements() == [
        "ALTER TABLE sales.child WITH NOCHECK ADD CONSTRAINT fk_child_parent FOREIGN KEY(parent_id) "
        "REFERENCES sales.parent (id)"]


def test_foreign_key_that_does_not_hold_raises_integrity_error(ad: MSSQLAdapter) -> None:
    conn = FakeConnection(raise_on=lambda sql: "CHECK CHECK CONSTRAINT" in sql)
    with pytest.raises(IntegrityError) as err:
        ad.add_foreign_key(conn, _fk_tables(), validate=True)  # type: ignore[arg-type]
    assert str(err.value) == ("table child: foreign key fk_child_parent does not hold ([23000] The ALTER "
                              "TABLE statement conflicted with the FOREIGN KEY constraint)")


# ------------------------------------------------------------------------------------ load

IDENT_SQL = "SELECT name FROM sys.identity_columns WHERE object_id = OBJECT_ID(?)"


def _load(ad: MSSQLAdapter, conn: FakeConnection, table: Table, ncols: int,
          batches: list[list[list[Any]]]) -> int:
    cols = [c.name for c in table.columns][:ncols]
    writers = [ad.writer(c.type) for c in table.columns][:ncols]
    return ad.load(conn, table, cols, writers, iter(batches), True)  # type: ignore[arg-type]


def _wide_table(ncols: int, name: str = "t") -> Table:
    return Table(name, "dbo", [Column("id", L("integer", bits=64), "BIGINT", autoincrement=True)]
                 + [Column(f"c{i}", L("integer", bits=32), "INT") for i in range(1, ncols)])


def test_load_wraps_identity_insert_and_chunks_below_2100_parameters(ad: MSSQLAdapter) -> None:
    ncols = 10
    table = _wide_table(ncols)
    rows = [[r * 100 + c for c in range(ncols)] for r in range(1000)]
    conn = FakeConnection(answer=lambda sql, p: [("id",)] if sql == IDENT_SQL else [])
    n = _load(ad, conn, table, ncols, [rows[:450], rows[450:]])
    assert n == 1000
    insert = ("INSERT INTO [dbo].[t] ([id], [c1], [c2], [c3], [c4], [c5], [c6], [c7], [c8], [c9]) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    log = conn.log
    assert log[0] == ("execute", IDENT_SQL, ("[dbo].[t]",))
    assert log[1] == ("execute", "SET IDENTITY_INSERT [dbo].[t] ON", None)
    assert log[-2] == ("execute", "SET IDENTITY_INSERT [dbo].[t] OFF", None)
    assert log[-1] == ("close",)
    calls = log[2:-2]
    assert all(c[0] == "executemany" and c[1] == insert and c[3] is True for c in calls)
    # 2099 // 10 = 209 rows a call; each batch is sliced on its own
    assert [len(c[2]) for c in calls] == [209, 209, 32, 209, 209, 132]
    assert all(len(c[2]) * ncols < 2100 for c in calls)
    sent = [list(p) for c in calls for p in c[2]]
    assert sent == rows   # every row exactly once, in order


def test_load_of_a_wide_table_stays_below_2100_parameters(ad: MSSQLAdapter) -> None:
    ncols = 700
    table = _wide_table(ncols, "wide")
    rows = [[r] * ncols for r in range(7)]
    conn = FakeConnection()
    assert _load(ad, conn, table, ncols, [rows]) == 7
    calls = [e for e in conn.log if e[0] == "executemany"]
    assert [len(c[2]) for c in calls] == [2, 2, 2, 1]
    assert max(len(c[2]) * ncols for c in calls) == 1400
    assert [list(p) for c in calls for p in c[2]] == rows
    # the catalog has no identity column here: no IDENTITY_INSERT at all
    assert not any("IDENTITY_INSERT" in s for s in conn.statements())


def test_load_refuses_more_columns_than_parameters(ad: MSSQLAdapter) -> None:
    with pytest.raises(RestoreError):
        _load(ad, FakeConnection(), _wide_table(2100), 2100, [[[0] * 2100]])


def test_identity_insert_is_switched_off_when_the_load_fails(ad: MSSQLAdapter) -> None:
    conn = FakeConnection(answer=lambda sql, p: [("id",)] if sql == IDENT_SQL else [],
                          fail_on=lambda sql: sql.startswith("INSERT"))
    with pytest.raises(RuntimeError, match="insert failed"):
        _load(ad, conn, _wide_table(2), 2, [[[1, 2]]])
    assert [e[1] for e in conn.log if e[0] == "execute"] == [
        IDENT_SQL, "SET IDENTITY_INSERT [dbo].[t] ON", "SET IDENTITY_INSERT [dbo].[t] OFF"]
    assert conn.log[-1] == ("close",)


def test_load_converts_values_with_the_writers(ad: MSSQLAdapter) -> None:
    table = Table("v", None, [
        Column("b", L("boolean"), "BIT"), Column("m", L("decimal", precision=19, scale=4), "MONEY"),
        Column("ts", L("datetime", precision=7), "DATETIME2"),
        Column("tz", L("datetime", precision=7, timezone=True), "DATETIMEOFFSET"),
        Column("u", L("uuid"), "UNIQUEIDENTIFIER"), Column("x", L("binary"), "VARBINARY(max)"),
        Column("f", L("float", bits=64), "FLOAT"),
    ])
    conn = FakeConnection()
    row = [True, "12.5000", "2024-02-29T23:59:59.123456", "2024-02-29T23:59:59.5+00:00",
           "0b7e5d8c-1b4a-4c1e-9f0e-3a2b1c0d9e8f", b"\x00\xff", float("nan")]
    names, writers = [c.name for c in table.columns], [ad.writer(c.type) for c in table.columns]
    ad.load(conn, table, names, writers, iter([[row, [None] * 7]]), False)  # type: ignore[arg-type]
    (call,) = [e for e in conn.log if e[0] == "executemany"]
    assert call[1] == "INSERT INTO [v] ([b], [m], [ts], [tz], [u], [x], [f]) VALUES (?, ?, ?, ?, ?, ?, ?)"
    assert call[2] == [
        (True, decimal.Decimal("12.5000"), "2024-02-29 23:59:59.123456", "2024-02-29 23:59:59.5+00:00",
         "0b7e5d8c-1b4a-4c1e-9f0e-3a2b1c0d9e8f", b"\x00\xff", None),
        (None,) * 7,
    ]


def test_datetime_writer_cuts_to_the_column_precision(ad: MSSQLAdapter) -> None:
    legacy = ad.writer(L("datetime", precision=3))           # DATETIME: 3 digits at most
    assert legacy("2001-02-03T04:05:06.007000") == "2001-02-03 04:05:06.007"
    assert legacy("2001-02-03T04:05:06") == "2001-02-03 04:05:06"
    assert ad.writer(L("datetime", precision=0))("2001-02-03T04:05:06.900000") == "2001-02-03 04:05:06"
    assert ad.writer(L("time", precision=7))("04:05:06.120000") == "04:05:06.12"


# ------------------------------------------------------------------------------------ identity

def _ident_table(identity: dict[str, Any] | None, name: str = "t", schema: str | None = "dbo") -> Table:
    return Table(name, schema, [Column("id", L("integer", bits=32), "INT", autoincrement=True,
                                       identity=identity), Column("v", L("text"), "NVARCHAR(max)")])


def _reset(ad: MSSQLAdapter, table: Table, has_identity: int, extreme: Any) -> FakeConnection:
    conn = FakeConnection(answer=lambda sql, p: [(has_identity, extreme)])
    ad.reset_identity(conn, table, sa.Table(table.name, sa.MetaData()), True, Schema("mssql"))  # type: ignore[arg-type]
    return conn


def test_reset_identity_reseeds_to_the_max(ad: MSSQLAdapter) -> None:
    conn = _reset(ad, _ident_table({"start": 1, "increment": 1}), 1, 41)
    assert conn.log == [
        ("sql", "SELECT OBJECTPROPERTY(OBJECT_ID(?), 'TableHasIdentity'), MAX([id]) FROM [dbo].[t]",
         ("[dbo].[t]",)),
        ("sql", "DBCC CHECKIDENT (N'[dbo].[t]', RESEED, 41) WITH NO_INFOMSGS", None),
    ]


def test_reset_identity_keeps_a_recorded_higher_value(ad: MSSQLAdapter) -> None:
    conn = _reset(ad, _ident_table({"start": 1, "increment": 1, "last": 100}), 1, 41)
    assert conn.statements()[-1] == "DBCC CHECKIDENT (N'[dbo].[t]', RESEED, 100) WITH NO_INFOMSGS"
    conn = _reset(ad, _ident_table({"next": 500}), 1, 41)            # MySQL's AUTO_INCREMENT
    assert conn.statements()[-1] == "DBCC CHECKIDENT (N'[dbo].[t]', RESEED, 499) WITH NO_INFOMSGS"
    # empty table: the first row after a reseed of a never-used table takes the value itself
    conn = _reset(ad, _ident_table({"last": 100}), 1, None)
    assert conn.statements()[-1] == "DBCC CHECKIDENT (N'[dbo].[t]', RESEED, 101) WITH NO_INFOMSGS"


def test_reset_identity_does_nothing_without_rows_or_identity(ad: MSSQLAdapter) -> None:
    assert len(_reset(ad, _ident_table({"start": 1, "increment": 1}), 1, None).log) == 1   # empty
    assert len(_reset(ad, _ident_table(None), 0, 41).log) == 1     # target column is no IDENTITY
    plain = Table("p", None, [Column("id", L("integer", bits=32), "INT")])
    assert _reset(ad, plain, 1, 41).log == []                      # no identity column: no SQL


def test_reset_identity_quotes_the_name_inside_the_literal(ad: MSSQLAdapter) -> None:
    conn = _reset(ad, _ident_table({"increment": 1}, name="o'brien]", schema="s"), 1, 7)
    assert conn.statements()[-1] == "DBCC CHECKIDENT (N'[s].[o''brien]]]', RESEED, 7) WITH NO_INFOMSGS"


# ------------------------------------------------------------------------------------ snapshot

def test_begin_snapshot_when_snapshot_isolation_is_on(ad: MSSQLAdapter) -> None:
    conn = FakeConnection(answer=lambda sql, p: [(1,)] if sql == SNAPSHOT_STATE_SQL else [])
    snap = ad.begin_snapshot(conn)  # type: ignore[arg-type]
    assert (snap.method, snap.consistent) == ("mssql-snapshot", True)
    assert conn.log == [
        ("sql", "SELECT snapshot_isolation_state FROM sys.databases WHERE name = DB_NAME()", None),
        ("dbapi-commit",),
        ("sql", "SET TRANSACTION ISOLATION LEVEL SNAPSHOT", None),
        ("sql", "IF @@TRANCOUNT = 0 AND (@@OPTIONS & 2) = 0 BEGIN TRANSACTION", None),
    ]
    assert BEGIN_SQL == conn.log[-1][1]


@pytest.mark.parametrize("state", [0, 2, 3])
def test_begin_snapshot_when_snapshot_isolation_is_off(ad: MSSQLAdapter, state: int) -> None:
    conn = FakeConnection(answer=lambda sql, p: [(state,)])
    snap = ad.begin_snapshot(conn)  # type: ignore[arg-type]
    assert snap.to_dict() == {
        "method": "mssql-read-committed", "consistent": False,
        "detail": "snapshot isolation is off for this database; enable with "
                  "ALTER DATABASE ... SET ALLOW_SNAPSHOT_ISOLATION ON"}
    assert snap.detail == SNAPSHOT_OFF_DETAIL
    assert conn.statements() == [SNAPSHOT_STATE_SQL]


def test_server_version_casts_the_sql_variant(ad: MSSQLAdapter) -> None:
    conn = FakeConnection(answer=lambda sql, p: [("16.0.4135.4",)])
    assert ad.server_version(conn) == "16.0.4135.4"  # type: ignore[arg-type]
    assert conn.statements() == ["SELECT CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128))"]


# ------------------------------------------------------------------------------------ losses

def test_nan_and_infinity_become_null_as_a_declared_loss(ad: MSSQLAdapter) -> None:
    src = L("float", bits=64)
    dst, _ = ad.target_type(Column("f", src, ""), None)
    m = move(src, dst)
    ad.add_losses(m, src)
    assert [loss.reason for loss in m.losses] == ["NaN and ±Infinity (SQL Server has none) stored as NULL"]
    assert [m.losses[0].affects(v) for v in (math.nan, math.inf, -math.inf, 1.5)] == [True, True, True, False]
    assert m.convert(math.nan) is None and m.convert(-math.inf) is None and m.convert(1.5) == 1.5


def test_decimal_nan_and_out_of_day_times_are_losses(ad: MSSQLAdapter) -> None:
    src = L("decimal", precision=10, scale=2)
    m = move(src, ad.target_type(Column("d", src, ""), None)[0])
    ad.add_losses(m, src)
    assert [loss.reason for loss in m.losses] == ["decimal NaN and ±Infinity (SQL Server has none) stored as NULL"]
    assert m.convert("NaN") is None and m.convert("1.50") == "1.50"
    t = L("time", precision=6)
    m = move(t, ad.target_type(Column("t", t, ""), None)[0])
    ad.add_losses(m, t)
    assert [m.losses[-1].affects(v) for v in ("838:59:59", "-01:00:00", "23:59:59.5")] == [True, True, False]
    assert m.convert("838:59:59") is None and m.convert("12:00:00") == "12:00:00"


def test_dates_have_no_range_loss(ad: MSSQLAdapter) -> None:
    for src in (L("date"), L("datetime", precision=6)):
        m = move(src, ad.target_type(Column("d", src, ""), None)[0])
        ad.add_losses(m, src)
        assert m.losses == []


# ------------------------------------------------------------------------------------ quoting

def test_identifiers_are_bracket_quoted(ad: MSSQLAdapter) -> None:
    assert ad.q(EVIL) == '[x"]]; DROP TABLE y; --]'
    table = Table(EVIL, EVIL, [Column(EVIL, L("integer", bits=32), "INT")])
    conn = FakeConnection(answer=lambda sql, p: [(EVIL,)] if sql == IDENT_SQL else [])
    ad.load(conn, table, [EVIL], [int], iter([[[1]]]), True)  # type: ignore[arg-type]
    qt = '[x"]]; DROP TABLE y; --].[x"]]; DROP TABLE y; --]'
    assert conn.log[0] == ("execute", IDENT_SQL, (qt,))   # the name goes as a parameter
    assert [e[1] for e in conn.log[1:-1]] == [
        f"SET IDENTITY_INSERT {qt} ON",
        f'INSERT INTO {qt} ([x"]]; DROP TABLE y; --]) VALUES (?)',
        f"SET IDENTITY_INSERT {qt} OFF",
    ]


def test_drop_table_drops_referencing_foreign_keys_first(ad: MSSQLAdapter) -> None:
    conn = FakeConnection(answer=lambda sql, p: [("dbo", "child", "fk_child_parent")]
                          if sql.startswith("SELECT") else [])
    ad.drop_table(conn, "parent", None)  # type: ignore[arg-type]
    assert conn.log == [
        ("sql", "SELECT OBJECT_SCHEMA_NAME(fk.parent_object_id), OBJECT_NAME(fk.parent_object_id), fk.name "
                "FROM sys.foreign_keys fk WHERE fk.referenced_object_id = OBJECT_ID(?) "
                "AND fk.parent_object_id <> fk.referenced_object_id", ("[parent]",)),
        ("sql", "ALTER TABLE [dbo].[child] DROP CONSTRAINT [fk_child_parent]", None),
        ("sql", "DROP TABLE IF EXISTS [parent]", None),
    ]


# ------------------------------------------------------------------------------------ reflection

def test_refine_column_identity_and_fraction_digits(ad: MSSQLAdapter) -> None:
    from sqlalchemy.dialects import mssql

    t = Table("t")
    c = Column("id", L("integer", bits=64), "BIGINT")
    ad.refine_column(c, {"type": mssql.BIGINT(), "identity": {"start": decimal.Decimal(5), "increment": 2}}, t)
    assert (c.autoincrement, c.identity) == (True, {"always": True, "start": 5, "increment": 2})
    c = Column("ts", L("datetime"), "DATETIME2")
    ad.refine_column(c, {"type": mssql.DATETIME2()}, t)
    assert c.type == L("datetime", precision=7) and not c.autoincrement
    c = Column("tz", L("datetime", timezone=True), "DATETIMEOFFSET")
    ad.refine_column(c, {"type": mssql.DATETIMEOFFSET()}, t)
    assert c.type == L("datetime", precision=7, timezone=True)
    c = Column("old", L("datetime"), "DATETIME")
    ad.refine_column(c, {"type": sa.DATETIME()}, t)
    assert c.type == L("datetime", precision=3)


def test_refine_table_reads_scale_and_identity_state(ad: MSSQLAdapter) -> None:
    t = Table("t", None, [Column("id", L("integer", bits=32), "INT", autoincrement=True,
                                 identity={"start": 1, "increment": 1}),
                          Column("ts", L("datetime", precision=7), "DATETIME2")])
    conn = FakeConnection(answer=lambda sql, p: [("id", 0, "int", decimal.Decimal(57), "int"),
                                                 ("ts", 3, "datetime2", None, "datetime2")])
    ad.refine_table(t, conn)  # type: ignore[arg-type]
    assert conn.log[0][2] == ("[t]",)
    assert t.columns[0].identity == {"start": 1, "increment": 1, "last": 57}
    assert (t.columns[1].type, t.columns[1].original_type) == (L("datetime", precision=3), "DATETIME2(3)")


def test_refine_table_names_a_type_sqlalchemy_does_not_know(ad: MSSQLAdapter, dialect: sa.Dialect) -> None:
    """hierarchyid, sql_variant or an alias type (reflected as NullType, spelled NULL) gets the
    name the server gives it, so a restore into SQL Server makes the column as it was."""
    t = Table("t", None, [Column("id", L("integer", bits=32), "INT"), Column("h", L("native", native="NULL"), "NULL"),
                          Column("p", L("native", native="NULL"), "NULL")])
    conn = FakeConnection(answer=lambda sql, p: [("id", 0, "int", None, "int"),
                                                 ("h", 0, "hierarchyid", None, "hierarchyid"),
                                                 ("p", 0, "varchar", None, "Phone")])
    ad.refine_table(t, conn)  # type: ignore[arg-type]
    assert "TYPE_NAME(c.user_type_id)" in conn.statements()[0]
    assert [(c.original_type, c.type.kind) for c in t.columns] == [("INT", "integer"), ("hierarchyid", "native"),
                                                                   ("[Phone]", "native")]
    assert ad.exact_type(t.columns[1]).compile(dialect=dialect) == "hierarchyid"


def test_reflect_extras_keeps_triggers_and_routines(ad: MSSQLAdapter) -> None:
    def answer(sql: str, p: Any) -> list[tuple[Any, ...]]:
        if sql == "SELECT SCHEMA_NAME()":
            return [("dbo",)]
        return [("dbo", "trg_audit", "TR", "orders", "CREATE TRIGGER trg_audit ON orders AFTER INSERT AS ..."),
                ("dbo", "add_one", "FN", None, "CREATE FUNCTION add_one(@x int) RETURNS int AS ..."),
                ("sales", "p_load", "P ", None, "CREATE PROCEDURE sales.p_load AS ...")]

    conn = FakeConnection(answer=answer)
    schema = Schema("mssql")
    ad.reflect_extras(conn, schema, [None, "sales"], {"trigger", "routine"})  # type: ignore[arg-type]
    assert conn.log[1][2] == ("dbo", "sales")
    assert "s.name IN (?, ?)" in conn.log[1][1]
    assert schema.routines == [
        Routine("routine", "add_one", "CREATE FUNCTION add_one(@x int) RETURNS int AS ..."),
        Routine("routine", "p_load", "CREATE PROCEDURE sales.p_load AS ...", "sales"),
        Routine("trigger", "trg_audit", "CREATE TRIGGER trg_audit ON orders AFTER INSERT AS ...", None, "orders"),
    ]


def test_an_encrypted_routine_fails_the_dump_naming_it(ad: MSSQLAdapter) -> None:
    """WITH ENCRYPTION: its text cannot be read, so a backup without it would lose it unseen."""
    def answer(sql: str, p: Any) -> list[tuple[Any, ...]]:
        return [("dbo",)] if sql == "SELECT SCHEMA_NAME()" else [("dbo", "se]cret", "P ", None, None)]

    with pytest.raises(UnreadObject, match=r"routine \[dbo\]\.\[se\]\]cret\]: its definition is encrypted.*routines: false"):
        ad.reflect_extras(FakeConnection(answer=answer), Schema("mssql"), [None], {"routine"})  # type: ignore[arg-type]


def test_server_default_portable_spellings(ad: MSSQLAdapter) -> None:
    assert ad.server_default(Column("d", L("date"), "", default="CURRENT_DATE"), False) == \
        "(CONVERT(date, GETDATE()))"
    assert ad.server_default(Column("s", L("text"), "", default="'grün'::text"), False) == "N'grün'"
    assert ad.server_default(Column("i", L("integer"), "", default="nextval('s')", autoincrement=True),
                             False) is None
    assert ad.server_default(Column("x", L("integer"), "", default="((0))"), True) == "((0))"
    assert ad.server_default(Column("t", L("datetime", timezone=True), "", default="now()"), False) == \
        "SYSDATETIMEOFFSET()"
    assert ad.server_default(Column("t", L("datetime"), "", default="now()"), False) == "CURRENT_TIMESTAMP"


def test_restore_plan_for_sql_server(ad: MSSQLAdapter) -> None:
    """The restore planner with this adapter: IDENTITY key, key-sized text, NVARCHAR enum CHECK."""
    from albackup.ddl import build_plan, create_table_sql
    from albackup.model import Unique

    t = Table("orders", None, [
        Column("id", L("integer", bits=64), "bigint", nullable=False, autoincrement=True,
               identity={"always": False, "start": 1, "increment": 1}),
        Column("code", L("text"), "text"),
        Column("state", L("enum", values=("new", "done")), "state_enum"),
    ], primary_key=["id"], primary_key_name="orders_pkey", uniques=[Unique("orders_code_key", ["code"])])
    tp = build_plan(Schema("postgresql", tables=[t]), [t], ad).tables[0]
    assert_tsql(create_table_sql(tp, ad))
    lines = [ln.strip() for ln in create_table_sql(tp, ad).strip().splitlines()]
    assert lines[0] == "CREATE TABLE [orders] ("
    assert "[id] BIGINT NOT NULL IDENTITY(1,1)," in lines
    assert "[code] NVARCHAR(450) NULL," in lines
    assert "[state] NVARCHAR(4) NULL," in lines
    assert "CHECK ([state] IN (N'new', N'done'))" in lines
    assert tp.identity is True


# ---------------------------------------------------------------- key ranges (chunked dumps)

def test_key_range_sql_uses_offset_fetch_and_spelled_out_comparisons() -> None:
    a = MSSQLAdapter(mssql_pyodbc.dialect(paramstyle="qmark"))     # pyodbc's own paramstyle
    t = Table(EVIL, "dbo", [Column("grp", L("string", length=10), "NVARCHAR(10)", nullable=False),
                            Column("n", L("integer", bits=32), "INT", nullable=False)], primary_key=["grp", "n"])
    sql = a.nth_key_sql(t, ["grp", "n"], "", 1000)
    assert sql == ('SELECT [grp], [n] FROM [dbo].[x"]]; DROP TABLE y; --] ORDER BY [grp], [n] '
                   'OFFSET 999 ROWS FETCH NEXT 1 ROWS ONLY')
    cond, params = a.key_compare(["grp", "n"], ">", ("g1", 7))
    assert cond == "([grp] > ? OR ([grp] = ? AND [n] > ?))" and params == ["g1", "g1", 7]
    cond, params = a.key_compare(["grp", "n"], "<=", ("g2", 3))
    assert cond == "([grp] < ? OR ([grp] = ? AND [n] <= ?))" and params == ["g2", "g2", 3]
    # pyodbc's qmark style: a '%' in a name stays as it is, and no parameters are None
    assert not a.formats and a.q("a%b") == "[a%b]"
    sql = a.nth_key_sql(t, ["grp", "n"], f" WHERE {cond}", 5)
    assert_tsql(sql)
    assert sql == ('SELECT [grp], [n] FROM [dbo].[x"]]; DROP TABLE y; --] WHERE ([grp] < ? OR ([grp] = ? AND '
                   '[n] <= ?)) ORDER BY [grp], [n] OFFSET 4 ROWS FETCH NEXT 1 ROWS ONLY')
    # one connection: a SQL Server dump is never read by workers
    assert not a.supports_parallel_dump and not a.supports_parallel_restore


def test_index_names_are_per_table_and_constraint_names_per_schema(ad: MSSQLAdapter) -> None:
    """SQL Server names indexes per table, but a key, foreign key or check is a schema object,
    like a table: a PostgreSQL backup with a foreign key named alike on two tables, or a MySQL
    one with a constraint named after a table, gets numbered names with a note; indexes of the
    same name on two tables keep it."""
    from albackup.ddl import build_plan
    from albackup.model import Check, ForeignKey, Index

    def table(name: str, **kw: Any) -> Table:
        return Table(name=name, schema="dbo", primary_key=["id"],
                     columns=[Column("id", L("integer", bits=32), "int", nullable=False),
                              Column("o", L("integer", bits=32), "int")], **kw)

    schema = Schema(engine="postgresql", tables=[
        table("o"),
        table("a", foreign_keys=[ForeignKey("fk_o", ["o"], "o", ["id"], "dbo")], indexes=[Index("by_o", ["o"])],
              checks=[Check("o", "o > 0")]),
        table("b", foreign_keys=[ForeignKey("fk_o", ["o"], "o", ["id"], "dbo")], indexes=[Index("by_o", ["o"])]),
    ])
    plan = build_plan(schema, schema.tables, ad)
    from albackup.ddl import plan_sql

    for stmt in plan_sql(plan, ad):
        assert_tsql(stmt)
    by = {p.name: p for p in plan.tables}
    assert [ix.name for ix in by["a"].indexes] == ["by_o"] and [ix.name for ix in by["b"].indexes] == ["by_o"]
    assert [fk.name for fk in by["a"].foreign_keys] == ["fk_o"]
    assert [fk.name for fk in by["b"].foreign_keys] == ["fk_o_2"]
    assert [c.name for c in by["a"].checks] == ["o_2"]       # a table is named o
    assert by["b"].notes == ["foreign key 'fk_o' restored as 'fk_o_2' (the name is taken in mssql)"]
    assert by["a"].notes == ["check constraint 'o' restored as 'o_2' (the name is taken in mssql)"]


def test_the_tsql_check_catches_what_sql_server_would_refuse() -> None:
    """The grammar check is not a formality: malformed statements fail it."""
    for bad in ("CREATE TABLE [t] ([a] INT NOT NULL, CONSTRAINT [pk] PRIMARY KEY ([a])",
                "SELECT [a] FROM [t] WHERE", "INSERT INTO [t] ([a], [b] VALUES (?, ?)"):
        with pytest.raises(pytest.fail.Exception, match="not valid T-SQL"):
            assert_tsql(bad)
    assert_tsql("SELECT [a] FROM [t] WHERE [a] > ? ORDER BY [a] OFFSET 4 ROWS FETCH NEXT 1 ROWS ONLY")
