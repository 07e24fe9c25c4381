"""The MySQL/MariaDB fast load (LOAD DATA LOCAL INFILE), its INSERT fallback, and mysqlclient dumps.

Values are checked by reading source and target back through the DBAPI, independently of
albackup; which load path ran is read from the adapter's debug log.
"""
from __future__ import annotations

import fcntl
import json
import logging
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from albackup import api, config
from albackup.engines import for_engine
from albackup.engines.mysql import MySQLAdapter, dbapi_driver
from albackup.errors import DumpError, RestoreError
from albackup.model import Column, LogicalType, Table
from albackup.restore import RestoreOptions

from . import torture
from .conftest import require_mysqlclient

LOGGER = "albackup.engines.mysql"
#: local_infile is a server-wide setting: the test that turns it off holds this file's lock
#: exclusively; every other test of this module holds it shared (pytest-xdist runs tests side
#: by side, and one asserting the LOAD DATA path would otherwise see the INSERT fallback)
_INFILE_LOCK = Path(tempfile.gettempdir()) / "albackup-tests-local-infile.lock"


@pytest.fixture(autouse=True)
def _server_local_infile(request: pytest.FixtureRequest) -> Iterator[None]:
    exclusive = request.node.get_closest_marker("turns_local_infile_off") is not None
    with open(_INFILE_LOCK, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

BLOB_1MB = bytes(range(256)) * 4096          # 1 MiB, zero bytes included

TRICKY_DDL = """
CREATE TABLE tricky (
  id INT AUTO_INCREMENT PRIMARY KEY,
  s VARCHAR(200),
  t LONGTEXT,
  b LONGBLOB,
  vb VARBINARY(16),
  flag BOOLEAN,
  bit1 BIT(1),
  bits BIT(10),
  amount DECIMAL(30,10),
  ts DATETIME(6),
  tm TIME(6),
  d DATE,
  j JSON,
  tags SET('a','b','c'),
  f DOUBLE,
  u BIGINT UNSIGNED
)"""
TRICKY_COLS = ["id", "s", "t", "b", "vb", "flag", "bit1", "bits", "amount", "ts", "tm", "d", "j", "tags", "f", "u"]
TRICKY_ROWS: list[tuple[Any, ...]] = [
    # id 0 in an AUTO_INCREMENT column stays 0 (NO_AUTO_VALUE_ON_ZERO)
    (0, "tab\there", "line1\nline2\r\nback\\slash NUL\x00end \\N literal 🎉\ttab\rCR", BLOB_1MB,
     b"\x00\x00\x01\x00", True, 1, b"\x02\xaa", Decimal("-12345678901234567890.0123456789"),
     "2020-02-29 23:59:59.999999", "-838:59:59.000000", "1000-01-01", '{"a": "tab\\t", "n": null, "e": "🎉"}',
     "a,c", 0.1, 18446744073709551615),
    (1, "", "\\N", b"", None, False, 0, b"\x00\x00", Decimal("0"), "1970-01-01 00:00:00.000001", "00:00:00",
     "2199-12-31", "[]", "", 1e300, 0),
    (2,) + (None,) * 15,
    (3, "NULL", "\\", b"\\N", b"\t\n\r\\", True, 1, b"\x03\xff", Decimal("0.0000000001"),
     "1999-12-31 23:59:59.5", "12:34:56.123456", None, '"just a string"', "b", -2.5e-308, 1),
    (4, "\\", "\t", b"\x00", b"", None, None, None, Decimal("99999999999999999999.9999999999"), None, None,
     None, None, None, None, None),
    (5, "\n", "\r", b"\n", None, False, 0, None, None, None, "-00:00:00.000001", None, None, None, None, None),
    (6, "\x00", "\\\\N", None, None, None, None, None, None, None, None, None, None, None, None, None),
    (7, "中文 é\u0301 'single' \"double\"", "trailing backslash \\", None, None, None, None, None, None, None, None,
     None, None, None, None, None),
]
SINGLE_ROWS = [("",), (None,), ("x",), ("",), ("\\N",)]   # a one-column table: an empty string is an empty line


def _cfg(url: sa.URL, **kw: Any) -> config.DatabaseConfig:
    return config.url_config(url.render_as_string(hide_password=False), **kw)


def _raw(url: sa.URL) -> Any:
    return sa.create_engine(url, poolclass=NullPool)


def build_tricky(url: sa.URL, many: int = 0) -> None:
    e = _raw(url)
    with e.begin() as c:
        c.exec_driver_sql("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO'")
        c.exec_driver_sql(TRICKY_DDL)
        cur = c.connection.dbapi_connection.cursor()
        marks = ", ".join(["%s"] * len(TRICKY_COLS))
        cur.executemany(f"INSERT INTO tricky ({', '.join(TRICKY_COLS)}) VALUES ({marks})", TRICKY_ROWS)
        c.exec_driver_sql("CREATE TABLE single (v VARCHAR(10))")
        cur.executemany("INSERT INTO single (v) VALUES (%s)", SINGLE_ROWS)
        if many:
            c.exec_driver_sql("CREATE TABLE many (id INT PRIMARY KEY, name VARCHAR(40), flag BOOLEAN, "
                              "data VARBINARY(8))")
            cur.executemany("INSERT INTO many VALUES (%s, %s, %s, %s)",
                            [(i, f"name\t{i}\n", i % 2 == 0, i.to_bytes(4, "big")) for i in range(many)])
        cur.close()
    e.dispose()


def read_rows(url: sa.URL, table: str, order: str | None = "id") -> list[tuple[Any, ...]]:
    e = _raw(url)
    try:
        with e.connect() as c:
            cur = c.connection.dbapi_connection.cursor()
            cur.execute(f"SELECT * FROM `{table}`" + (f" ORDER BY `{order}`" if order else ""))
            rows = [tuple(json.loads(v) if isinstance(v, str) and i == 12 and table == "tricky" else v
                          for i, v in enumerate(r)) for r in cur.fetchall()]
            cur.close()
            return rows if order else sorted(rows, key=repr)
    finally:
        e.dispose()


def assert_same_data(src: sa.URL, dst: sa.URL, many: int = 0) -> None:
    want = read_rows(src, "tricky")
    got = read_rows(dst, "tricky")
    assert len(got) == len(TRICKY_ROWS)
    for w, g in zip(want, got):
        assert w == g, [(TRICKY_COLS[i], a if not isinstance(a, bytes) or len(a) < 64 else len(a),
                         b if not isinstance(b, bytes) or len(b) < 64 else len(b))
                        for i, (a, b) in enumerate(zip(w, g)) if a != b]
    assert got[0][0] == 0 and got[0][3] == BLOB_1MB
    assert read_rows(dst, "single", None) == read_rows(src, "single", None)
    assert sorted(read_rows(dst, "single", None), key=repr) == sorted(SINGLE_ROWS, key=repr)
    if many:
        assert read_rows(dst, "many") == read_rows(src, "many")


def load_log(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """{table: statements} for LOAD DATA loads, {table: 'insert'} for INSERT loads, and 'why'."""
    out: dict[str, Any] = {}
    for r in caplog.records:
        if r.name != LOGGER:
            continue
        msg = r.getMessage()
        m = re.match(r"table (\S+): (\d+) rows loaded with LOAD DATA LOCAL INFILE \((\d+) statement", msg)
        if m:
            out[m.group(1)] = int(m.group(3))
        m = re.match(r"table (\S+): loading with multi-row INSERT", msg)
        if m:
            out[m.group(1)] = "insert"
        if msg.startswith("mysql load path for this connection"):
            out.setdefault("why", []).append(msg)
    return out


# ------------------------------------------------------------------------------ LOAD DATA path
@pytest.mark.parametrize("group_bytes", [None, 1], ids=["one-load", "load-per-batch"])
def test_load_data_path_keeps_tricky_values(make_db, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch, group_bytes: int | None) -> None:
    src = make_db("mysql", "fsrc")
    many = 12000 if group_bytes else 0
    build_tricky(src, many)
    dumped = api.dump(_cfg(src, name="fast", batch_rows=5000), tmp_path / "b")
    if group_bytes:
        monkeypatch.setattr(MySQLAdapter, "load_group_bytes", group_bytes)
    dst = make_db("mysql", "fdst")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert res.rows == dumped.rows
    used = load_log(caplog)
    assert used["tricky"] >= 1 and used["single"] == 1, used
    assert len(used["why"]) == 1 and "LOAD DATA LOCAL INFILE" in used["why"][0], used   # decided once
    if many:
        assert used["many"] >= 3, used       # 12000 rows in batches of 5000: one LOAD per batch
    assert_same_data(src, dst, many)


def test_cross_engine_into_mysql_uses_load_data(make_db, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SQLite → MariaDB: booleans (TINYINT), blobs and text through LOAD DATA."""
    src = make_db("sqlite", "lsrc")
    torture.build(src)
    dumped = api.dump(_cfg(src, name="t"), tmp_path / "b")
    dst = make_db("mysql", "ldst")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, accept_lossy=True))
    assert isinstance(load_log(caplog)["torture"], int)
    want = torture.expected_source("sqlite")
    got = torture.read_torture(dst)
    assert got == want


# ------------------------------------------------------------------------------ fallback
def _admin(url: sa.URL) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


@pytest.mark.parametrize("jobs", [1, 2])
def test_read_back_count_into_mysql(make_db, tmp_path: Path, jobs: int) -> None:
    """--read-back count on MySQL/MariaDB: loaded as usual, rows counted instead of rehashed."""
    src = make_db("mysql", "cnt")
    build_tricky(src, 3000)
    dumped = api.dump(_cfg(src, name="cnt"), tmp_path / "b")
    dst = make_db("mysql", "cntd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True),
                      RestoreOptions(allow_restore=True, jobs=jobs, read_back="count"))
    assert {t["table"]: t["read_back"] for t in res.tables} == {"tricky": "count", "single": "count", "many": "count"}
    assert_same_data(src, dst, 3000)


@pytest.mark.turns_local_infile_off
def test_fallback_to_insert_when_server_has_local_infile_off(make_db, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    src = make_db("mysql", "osrc")
    build_tricky(src)
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("mysql", "odst")
    admin = _admin(dst)
    with admin.connect() as c:
        prev = int(c.exec_driver_sql("SELECT @@GLOBAL.local_infile").scalar())
        try:
            c.exec_driver_sql("SET GLOBAL local_infile = 0")
            with caplog.at_level(logging.DEBUG, logger=LOGGER):
                res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
        finally:
            c.exec_driver_sql(f"SET GLOBAL local_infile = {prev}")
    admin.dispose()
    assert res.rows == dumped.rows
    used = load_log(caplog)
    assert used["tricky"] == "insert" and used["single"] == "insert", used
    assert any("local_infile=OFF" in w for w in used["why"]), used
    assert_same_data(src, dst)


def test_fallback_when_the_server_refuses_the_statement(make_db, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that did not announce local files: the server's refusal (1148/4166) means INSERT."""
    from pymysql.constants import CLIENT

    def no_local_files(self: MySQLAdapter, engine: sa.Engine) -> None:
        @sa.event.listens_for(engine, "connect")
        def pretend(dbapi_conn: Any, rec: Any) -> None:   # the precheck believes it, the server does not
            dbapi_conn.client_flag |= CLIENT.LOCAL_FILES

    src = make_db("mysql", "rsrc")
    build_tricky(src)
    dumped = api.dump(_cfg(src), tmp_path / "b")
    monkeypatch.setattr(MySQLAdapter, "configure_engine", no_local_files)
    dst = make_db("mysql", "rdst")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    used = load_log(caplog)
    assert used["tricky"] == "insert", used
    assert any(re.search(r"refused \((1148|3948|4166)", w) for w in used["why"]), used
    assert_same_data(src, dst)


def test_engine_without_local_files_uses_insert(make_db, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_db("mysql", "nsrc")
    build_tricky(src)
    dumped = api.dump(_cfg(src), tmp_path / "b")
    monkeypatch.setattr(MySQLAdapter, "configure_engine", lambda self, engine: None)
    dst = make_db("mysql", "ndst")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    used = load_log(caplog)
    assert used["tricky"] == "insert" and any("without local_infile" in w for w in used["why"]), used
    assert_same_data(src, dst)


# ------------------------------------------------------------------------------ adapter-level checks
def _adapter_load(url: sa.URL, ddl: str, table: Table, rows: list[list[Any]],
                  batches: int = 1) -> tuple[int, list[tuple[Any, ...]]]:
    engine = sa.create_engine(url, poolclass=NullPool)
    adapter = for_engine(engine)
    adapter.configure_engine(engine)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(ddl)
            conn.commit()
            with conn.begin():
                adapter.begin_load(conn)
                cols = [c.name for c in table.columns]
                writers = [adapter.writer(c.type) for c in table.columns]
                step = max(1, len(rows) // batches)
                it: Iterator[list[list[Any]]] = iter([rows[i:i + step] for i in range(0, len(rows), step)])
                n = adapter.load(conn, table, cols, writers, it, False)
                got = conn.exec_driver_sql(f"SELECT * FROM {adapter.qtable(table.name, None)}").fetchall()
            return n, [tuple(r) for r in got]
    finally:
        engine.dispose()


def test_native_column_switching_between_bytes_and_text(make_db, caplog: pytest.LogCaptureFixture) -> None:
    url = make_db("mysql", "nat")
    t = Table("nat", None, [Column("id", LogicalType("integer", bits=32), ""),
                            Column("v", LogicalType("native", native="BLOB"), "")])
    rows = [[1, b"\x00\x01"], [2, None], [3, "abc\t"], [4, "d"], [5, b"\xff"]]
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        n, got = _adapter_load(url, "CREATE TABLE nat (id INT PRIMARY KEY, v BLOB)", t, rows)
    assert n == 5
    assert sorted(got) == [(1, b"\x00\x01"), (2, None), (3, b"abc\t"), (4, b"d"), (5, b"\xff")]
    assert load_log(caplog)["nat"] == 3       # bytes | text | bytes: one LOAD per run


def test_load_warnings_become_restore_errors(make_db) -> None:
    url = make_db("mysql", "warn")
    t = Table("dup", None, [Column("id", LogicalType("integer", bits=32), "")])
    with pytest.raises(RestoreError, match=r"table dup: .*1062"):   # LOCAL skips duplicates with a warning
        _adapter_load(url, "CREATE TABLE dup (id INT PRIMARY KEY)", t, [[1], [2], [1]])
    t = Table("bad", None, [Column("n", LogicalType("integer", bits=32), "")])
    with pytest.raises(RestoreError, match=r"table bad: .*(1366|1265)"):
        _adapter_load(url, "CREATE TABLE bad (n INT)", t, [["x"]])


def test_auto_increment_zero_and_null(make_db) -> None:
    url = make_db("mysql", "ai")
    t = Table("ai", None, [Column("id", LogicalType("integer", bits=32), ""),
                           Column("b", LogicalType("binary"), ""), Column("f", LogicalType("boolean"), "")])
    n, got = _adapter_load(url, "CREATE TABLE ai (id INT AUTO_INCREMENT PRIMARY KEY, b BLOB, f BIT(1))", t,
                           [[0, b"\x00", True], [5, b"", False], [None, None, None]])
    assert n == 3
    assert sorted(got) == [(0, b"\x00", b"\x01"), (5, b"", b"\x00"), (6, None, None)]
    # no binary/boolean column: the columns are loaded directly, without a SET clause
    t = Table("ai2", None, [Column("id", LogicalType("integer", bits=32), ""), Column("s", LogicalType("text"), "")])
    n, got = _adapter_load(url, "CREATE TABLE ai2 (id INT AUTO_INCREMENT PRIMARY KEY, s TEXT)", t,
                           [[0, "zero"], [5, ""], [None, None]])
    assert sorted(got) == [(0, "zero"), (5, ""), (6, None)]


def test_pymysql_answers_file_requests_only_during_its_own_load(make_db) -> None:
    from pymysql.constants import CLIENT

    url = make_db("mysql", "guard")
    engine = sa.create_engine(url, poolclass=NullPool)
    adapter = for_engine(engine)
    adapter.configure_engine(engine)
    t = Table("g", None, [Column("s", LogicalType("text"), "")])
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw.client_flag & CLIENT.LOCAL_FILES and raw._local_infile is False
            conn.exec_driver_sql("CREATE TABLE g (s TEXT)")
            adapter.begin_load(conn)
            assert adapter.load(conn, t, ["s"], [adapter.writer(t.columns[0].type)], iter([[["a"], ["b"]]]), False) == 2
            assert raw._local_infile is False
            # a file request outside the adapter's own LOAD DATA is refused by the client (PyMySQL
            # leaves that connection unusable: it is thrown away)
            cur = raw.cursor()
            with pytest.raises(RuntimeError, match="local_infile"):
                cur.execute("LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE g")
            conn.invalidate()
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ mysqlclient
@pytest.fixture
def needs_mysqldb() -> None:
    require_mysqlclient()



def _as_driver(url: sa.URL, driver: str) -> sa.URL:
    return url.set(drivername=f"{url.get_backend_name()}+{driver}")


@pytest.mark.usefixtures("needs_mysqldb")
def test_mysqldb_and_pymysql_dumps_hash_the_same(make_db, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_db("mysql", "drv")
    torture.build(src)
    build_tricky(src, 7000)
    out = {}
    for driver in ("pymysql", "mysqldb"):
        url = _as_driver(src, driver)
        eng = sa.create_engine(url, poolclass=NullPool)
        with eng.connect() as c:
            assert dbapi_driver(c.connection.dbapi_connection) == driver
        eng.dispose()
        out[driver] = api.dump(_cfg(url, name=f"drv_{driver}"), tmp_path / driver)
    assert {d: out[d].manifest["source"]["driver"] for d in out} == {"pymysql": "pymysql", "mysqldb": "mysqldb"}
    a, b = (out[d].manifest["tables"] for d in ("pymysql", "mysqldb"))
    assert set(a) == set(b) and len(a) >= 10
    for key in a:
        assert (a[key]["rows"], a[key]["content_hash"]) == (b[key]["rows"], b[key]["content_hash"]), key

    # and the restore through mysqlclient takes the LOAD DATA path too
    dst = _as_driver(make_db("mysql", "drvdst"), "mysqldb")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        res = api.restore(out["mysqldb"].path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert res.rows == out["mysqldb"].rows
    used = load_log(caplog)
    assert isinstance(used["tricky"], int) and isinstance(used["torture"], int), used
    assert_same_data(src, _as_driver(dst, "pymysql"), 7000)


def test_decimal_reader_keeps_the_server_text_and_makes_negative_zero_zero() -> None:
    import sqlalchemy.dialects.mysql.pymysql as d

    adapter = MySQLAdapter(d.dialect())
    t = LogicalType("decimal", precision=12, scale=2)
    convert = adapter.batch_reader([LogicalType("integer", bits=32), t])
    rows = [(1, "-0.00"), (2, "-1.50"), (3, None), (4, "2.00"), (5, b"-0.00"), (6, Decimal("7.5"))]
    assert convert(rows) == [(1, "0.00"), (2, "-1.50"), (3, None), (4, "2.00"), (5, "0.00"), (6, "7.50")]


@pytest.mark.usefixtures("needs_mysqldb")
def test_mysqldb_reads_zero_dates_like_pymysql(make_db, tmp_path: Path) -> None:
    """mysqlclient would read '0000-00-00' as None (a silent NULL); both drivers must fail alike."""
    src = make_db("mysql", "zero")
    e = _raw(src)
    with e.begin() as c:
        c.exec_driver_sql("SET SESSION sql_mode = ''")
        c.exec_driver_sql("CREATE TABLE z (id INT PRIMARY KEY, d DATE, dt DATETIME)")
        c.exec_driver_sql("INSERT INTO z VALUES (1, '0000-00-00', '2020-01-01 00:00:00')")
    e.dispose()
    errors = {}
    for driver in ("pymysql", "mysqldb"):
        with pytest.raises(DumpError) as info:
            api.dump(_cfg(_as_driver(src, driver), name=f"z_{driver}"), tmp_path / driver)
        errors[driver] = str(info.value)
    assert errors["pymysql"] == errors["mysqldb"] and "column d" in errors["pymysql"]


def test_chunks_loaded_side_by_side_take_row_locks_not_the_table(make_db) -> None:
    """Two connections load into one empty table at once (two chunks with -j). With both checks
    off MariaDB bulk-loads an empty table under a table lock, so the second load waits and fails
    (LoadConflict); loaded as concurrent, each takes row locks and both go in."""
    from albackup.errors import LoadConflict

    url = make_db("mysql", "side")
    engine = sa.create_engine(url, poolclass=NullPool)
    adapter = for_engine(engine)
    adapter.configure_engine(engine)
    t = Table("side", None, [Column("id", LogicalType("integer", bits=32), ""), Column("s", LogicalType("text"), "")])
    writers = [adapter.writer(c.type) for c in t.columns]

    def attempt(concurrent: bool) -> list[int]:
        with engine.begin() as c:
            c.exec_driver_sql("DROP TABLE IF EXISTS side")
            c.exec_driver_sql("CREATE TABLE side (id INT PRIMARY KEY, s TEXT)")
        with engine.connect() as a, engine.connect() as b:
            for conn in (a, b):
                conn.begin()
                conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
                adapter.begin_load(conn, concurrent=concurrent)
            adapter.load(a, t, ["id", "s"], writers, iter([[[i, f"a{i}"] for i in range(100)]]), False)
            try:
                adapter.load(b, t, ["id", "s"], writers, iter([[[i, f"b{i}"] for i in range(100, 200)]]), False)
            finally:
                a.commit()
            b.commit()
        with engine.connect() as c:
            return [r[0] for r in c.exec_driver_sql("SELECT id FROM side ORDER BY id")]

    try:
        assert attempt(concurrent=True) == list(range(200))
        with engine.connect() as c:
            version = str(c.exec_driver_sql("SELECT VERSION()").scalar())
        if "mariadb" in version.lower():
            with pytest.raises(LoadConflict, match=r"table side: .*1205"):
                attempt(concurrent=False)
    finally:
        engine.dispose()
