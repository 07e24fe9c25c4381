"""MariaDB objects beyond tables restored whole: spatial columns, sequences, events, invisible
columns, system versioning, routines' SQL mode and definer; --clean over them; generators that
AUTO_INCREMENT cannot carry. Same-engine restores are compared with mariadb-dump's own output."""
from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from albackup import api, config
from albackup.errors import IntegrityError
from albackup.progress import Reporter
from albackup.restore import RestoreOptions

from .conftest import query_rows

SCHEMA = [
    "CREATE SEQUENCE s_order START WITH 1000 INCREMENT BY 10 MINVALUE 5 MAXVALUE 999999 CACHE 20 CYCLE",
    "CREATE TABLE orders (id BIGINT NOT NULL DEFAULT NEXTVAL(s_order) PRIMARY KEY, note VARCHAR(20) "
    "COMMENT 'free text', secret INT INVISIBLE DEFAULT 7, total DECIMAL(10,2) AS (id * 2) VIRTUAL, "
    "KEY k_note (note)) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci ROW_FORMAT=DYNAMIC "
    "COMMENT='orders table'",
    "INSERT INTO orders (note) VALUES ('a'), ('b')",
    "INSERT INTO orders (note, secret) VALUES ('c', 9)",
    "CREATE TABLE misc (id INT UNSIGNED ZEROFILL PRIMARY KEY, b BIT(5), s SET('a','b'), e ENUM('x','y') DEFAULT 'y', "
    "j JSON, v VARCHAR(10) CHARACTER SET latin1 COLLATE latin1_bin, "
    "t TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, c TEXT COMPRESSED, "
    "d DATETIME(3) DEFAULT NOW(3), FULLTEXT KEY ft (v) COMMENT 'full text', KEY k_e (e) COMMENT 'it''s a \\\\ key', "
    "CONSTRAINT ck CHECK (id < 1000))",
    "CREATE TABLE misc_child (id INT PRIMARY KEY, pid INT UNSIGNED ZEROFILL, KEY k (pid) COMMENT 'for the key', "
    "CONSTRAINT fk FOREIGN KEY (pid) REFERENCES misc (id) ON DELETE CASCADE ON UPDATE SET NULL)",
    "INSERT INTO misc (id, b, s, j, v, c) VALUES (1, b'101', 'a,b', '{\"a\": 1}', 'x', REPEAT('z', 500))",
    "INSERT INTO misc_child VALUES (1, 1)",
    "CREATE TABLE counters (id INT AUTO_INCREMENT PRIMARY KEY, n INT) ENGINE=Aria ROW_FORMAT=PAGE "
    "AUTO_INCREMENT=500",
    "INSERT INTO counters (n) VALUES (1)",
    "CREATE TABLE opts (id INT PRIMARY KEY) ENGINE=InnoDB STATS_PERSISTENT=1 STATS_AUTO_RECALC=0 "
    "STATS_SAMPLE_PAGES=12 CHECKSUM=1 PAGE_COMPRESSED=1 MAX_ROWS=1000 PACK_KEYS=1",
    "CREATE TABLE aria_opts (id INT PRIMARY KEY) ENGINE=Aria PAGE_CHECKSUM=0 TRANSACTIONAL=0",
    "CREATE TABLE descpk (a INT, b INT, PRIMARY KEY (a, b DESC)) STATS_PERSISTENT=0",
    "INSERT INTO descpk VALUES (1, 1), (1, 2)",
    "CREATE TABLE my_opts (id INT PRIMARY KEY) ENGINE=MyISAM CHECKSUM=1 DELAY_KEY_WRITE=1 MIN_ROWS=2 AVG_ROW_LENGTH=30",
    "CREATE TABLE hist (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING",
    "INSERT INTO hist VALUES (1, 1), (2, 2)",
    "UPDATE hist SET v = 20 WHERE id = 2",
    "CREATE TABLE hist_own (id INT PRIMARY KEY, v INT, rs TIMESTAMP(6) GENERATED ALWAYS AS ROW START INVISIBLE, "
    "re TIMESTAMP(6) GENERATED ALWAYS AS ROW END INVISIBLE, PERIOD FOR SYSTEM_TIME (rs, re), UNIQUE KEY uv (v)) "
    "WITH SYSTEM VERSIONING",
    "INSERT INTO hist_own (id, v) VALUES (1, 1), (2, 2)", "UPDATE hist_own SET v = 3 WHERE id = 2",
    "CREATE TABLE hist_vis (id INT PRIMARY KEY, v INT, s TIMESTAMP(6) AS ROW START, e TIMESTAMP(6) AS ROW END, "
    "PERIOD FOR SYSTEM_TIME (s, e)) WITH SYSTEM VERSIONING",
    "INSERT INTO hist_vis (id, v) VALUES (1, 1)",
    "CREATE TABLE places (id INT PRIMARY KEY, pos POINT NOT NULL, g GEOMETRY, line LINESTRING, area POLYGON, "
    "mp MULTIPOINT, ml MULTILINESTRING, mpg MULTIPOLYGON, gc GEOMETRYCOLLECTION, SPATIAL INDEX sp_pos (pos))",
    "INSERT INTO places VALUES (1, ST_GeomFromText('POINT(1 2)', 4326), ST_GeomFromText('POINT(5 6)', 3857), "
    "ST_GeomFromText('LINESTRING(0 0,1 1,2 1)'), ST_GeomFromText('POLYGON((0 0,4 0,4 4,0 0),(1 1,2 1,2 2,1 1))'), "
    "ST_GeomFromText('MULTIPOINT(1 1,2 2)'), ST_GeomFromText('MULTILINESTRING((0 0,1 1),(2 2,3 3))'), "
    "ST_GeomFromText('MULTIPOLYGON(((0 0,1 0,1 1,0 0)))'), "
    "ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1),LINESTRING(0 0,1 1))'))",
    "INSERT INTO places (id, pos) VALUES (2, ST_GeomFromText('POINT(-71.06 42.36)', 4326))",
    "SET SESSION sql_mode = 'ANSI_QUOTES,PIPES_AS_CONCAT'",
    "CREATE FUNCTION greet(x VARCHAR(10)) RETURNS VARCHAR(20) DETERMINISTIC RETURN 'hi ' || x",
    "CREATE PROCEDURE bump() MODIFIES SQL DATA UPDATE counters SET n = n + 1",
    "CREATE TRIGGER orders_bi BEFORE INSERT ON orders FOR EACH ROW SET NEW.note = 'x' || NEW.note",
    "SET SESSION sql_mode = DEFAULT",
    "CREATE ALGORITHM=MERGE SQL SECURITY INVOKER VIEW v_orders AS SELECT id, note FROM orders WITH CHECK OPTION",
    "CREATE EVENT ev_bump ON SCHEDULE EVERY 1 DAY STARTS '2031-01-01 00:00:00' ON COMPLETION PRESERVE DISABLE "
    "COMMENT 'nightly' DO CALL bump()",
    "CREATE EVENT ev_once ON SCHEDULE AT '2032-06-01 12:00:00' ENABLE DO DELETE FROM counters WHERE n > 100",
]


def _cfg(url: sa.URL, **kw: object) -> config.DatabaseConfig:
    return config.url_config(url.render_as_string(hide_password=False), **kw)


def _exec(url: sa.URL, *stmts: str) -> None:
    e = sa.create_engine(url, poolclass=NullPool)
    try:
        with e.begin() as c:
            for s in stmts:
                c.exec_driver_sql(s)
    finally:
        e.dispose()


def _mariadb(make_db, prefix: str) -> sa.URL:
    url = make_db("mysql", prefix)
    e = sa.create_engine(url, poolclass=NullPool)
    try:
        with e.connect() as c:
            if not c.dialect.is_mariadb:
                pytest.skip("MariaDB features (sequences, system versioning, invisible columns)")
    finally:
        e.dispose()
    return url


def _schema_dump(url: sa.URL) -> str:
    """``mariadb-dump --no-data --routines --events --triggers`` of the database, its name
    replaced by DB (nothing else normalised)."""
    tool = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    if tool is None:
        pytest.skip("mariadb-dump is not installed")
    args = [tool, "--no-data", "--routines", "--events", "--triggers", "--skip-dump-date",
            f"--host={url.host}", f"--port={url.port or 3306}", f"--user={url.username}", url.database or ""]
    if url.password:
        args.insert(1, f"--password={url.password}")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return re.sub(rf"\b{re.escape(url.database or '')}\b", "DB", out)


def _same_schema(src: sa.URL, dst: sa.URL) -> None:
    a, b = _schema_dump(src), _schema_dump(dst)
    diff = "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True), "source", "restored"))
    print(diff)
    assert a == b, diff


_rows = query_rows


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_restored_schema_dumps_as_the_source_does(jobs: int, make_db, tmp_path: Path) -> None:
    src = _mariadb(make_db, "objs")
    _exec(src, *SCHEMA)
    uncached = _rows(src, "SELECT next_not_cached_value FROM s_order")[0][0]
    b = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("mysql", "objsdst")
    res = api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert any("history rows are not kept" in n for n in res.changes)
    _same_schema(src, dst)
    assert api.compare(_cfg(src), _cfg(dst)).differences == []
    # values: geometry bytes (SRID and WKB), the invisible column, the current rows of hist
    for sql in ("SELECT id, HEX(pos), ST_SRID(pos), HEX(g), ST_SRID(g), ST_AsText(area), HEX(gc) FROM places "
                "ORDER BY id",
                "SELECT id, note, secret, total FROM orders ORDER BY id",
                "SELECT id, v FROM hist ORDER BY id",
                "SELECT id, v FROM hist_own ORDER BY id",
                "SELECT event_name, status, interval_value, interval_field, starts, execute_at, on_completion, "
                "event_comment, sql_mode, time_zone, definer FROM information_schema.events "
                "WHERE event_schema = DATABASE() ORDER BY event_name",
                "SELECT routine_name, sql_mode, definer FROM information_schema.routines "
                "WHERE routine_schema = DATABASE() ORDER BY routine_name",
                "SELECT trigger_name, sql_mode, definer FROM information_schema.triggers "
                "WHERE trigger_schema = DATABASE()"):
        assert _rows(dst, sql) == _rows(src, sql), sql
    assert _rows(src, "SELECT ST_SRID(pos) FROM places WHERE id = 1") == [(4326,)]
    # the sequence goes on from the first value no connection of the source had taken (as
    # mariadb-dump's SETVAL), its default draws from it, the trigger concatenates under its
    # PIPES_AS_CONCAT, the function too
    assert _rows(dst, "SELECT NEXTVAL(s_order)") == [(uncached,)]
    _exec(dst, "INSERT INTO orders (note) VALUES ('d')")
    assert _rows(dst, "SELECT id, note FROM orders ORDER BY id DESC LIMIT 1") == [(uncached + 10, "xd")]
    assert _rows(dst, "SELECT greet('x')") == [("hi x",)]


@pytest.mark.parametrize("dst_kind", ["postgresql", "sqlite"])
def test_spatial_columns_into_another_engine_are_their_stored_bytes_as_the_plan_says(dst_kind: str, make_db,
                                                                                     tmp_path: Path) -> None:
    src = _mariadb(make_db, "geo")
    _exec(src, "CREATE TABLE places (id INT PRIMARY KEY, pos POINT NOT NULL, area POLYGON, SPATIAL INDEX sp (pos))",
          "INSERT INTO places VALUES (1, ST_GeomFromText('POINT(1 2)', 4326), "
          "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')), (2, ST_GeomFromText('POINT(3 4)'), NULL)")
    b = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db(dst_kind, "geodst")
    plan = api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, plan_only=True))
    notes = "\n".join(plan.changes)
    assert "column 'pos': POINT (spatial) carried as bytes" in notes and "SRID then the WKB" in notes
    assert "column 'area': POLYGON (spatial)" in notes
    assert "index sp is engine-specific (SPATIAL) and was not kept" in notes
    assert not plan.losses
    api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    want = _rows(src, "SELECT id, pos, area FROM places ORDER BY id")
    got = [(i, bytes(p), a if a is None else bytes(a)) for i, p, a in _rows(dst, "SELECT id, pos, area FROM places "
                                                                             "ORDER BY id")]
    assert got == want
    # the bytes are the SRID (little-endian) followed by the WKB
    srid = int.from_bytes(got[0][1][:4], "little")
    assert srid == 4326 and _rows(src, "SELECT HEX(ST_AsBinary(pos)) FROM places WHERE id = 1")[0][0] == \
        got[0][1][4:].hex().upper()


def _objects(url: sa.URL) -> set[tuple[str, str]]:
    return set(_rows(url, "SELECT 'table', table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
                          "UNION ALL SELECT routine_type, routine_name FROM information_schema.routines "
                          "WHERE routine_schema = DATABASE() UNION ALL SELECT 'event', event_name "
                          "FROM information_schema.events WHERE event_schema = DATABASE() UNION ALL "
                          "SELECT 'trigger', trigger_name FROM information_schema.triggers "
                          "WHERE trigger_schema = DATABASE()"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_clean_replaces_everything_the_backup_brings_and_leaves_the_rest(jobs: int, make_db, tmp_path: Path) -> None:
    src = _mariadb(make_db, "clean")
    _exec(src, *SCHEMA)
    b = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("mysql", "cleandst")
    api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    # the target moves on: rows, a sequence's position, a changed procedure; and gets objects of its own
    _exec(dst, "INSERT INTO counters (n) VALUES (5)", "SELECT NEXTVAL(s_order)", "DROP PROCEDURE bump",
          "CREATE PROCEDURE bump() SELECT 'changed'", "CREATE TABLE mine (x INT)", "CREATE PROCEDURE my_proc() SELECT 1",
          "CREATE VIEW my_view AS SELECT x FROM mine")
    with pytest.raises(Exception, match="already holds"):
        api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    _exec(dst, "DROP TABLE counters, hist, hist_own, hist_vis, orders, places, misc_child, misc, opts, aria_opts, "
          "my_opts, descpk")   # no table left
    with pytest.raises(Exception, match=r"already holds 6 of the backup's other objects \(event ev_bump, "
                                        r"event ev_once, function greet, procedure bump, sequence s_order, view "
                                        r"v_orders\)"):
        api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, clean=True, jobs=jobs))
    api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, clean=True, jobs=jobs))
    assert _objects(dst) == _objects(src) | {("table", "mine"), ("PROCEDURE", "my_proc")} | {("table", "my_view")}
    _exec(src, "CREATE TABLE mine (x INT)", "CREATE PROCEDURE my_proc() SELECT 1",
          "CREATE VIEW my_view AS SELECT x FROM mine")
    _same_schema(src, dst)
    assert _rows(dst, "SELECT id, n FROM counters") == [(500, 1)]
    assert _rows(dst, "SELECT NEXTVAL(s_order)") == [(1200,)]     # the backup's position, not the target's 1400


class _KillOnTable(Reporter):
    """A progress reporter that kills the restore's connection when it starts loading ``table``."""

    def __init__(self, url: sa.URL, table: str) -> None:
        self.url, self.table, self.killed = url, table, False

    def table_started(self, table: str, estimate: int | None) -> None:
        if table != self.table:
            return
        e = sa.create_engine(self.url, poolclass=NullPool)
        try:
            with e.connect() as c:
                ids = c.exec_driver_sql("SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
                                        "AND id <> CONNECTION_ID()").scalars().all()
                for i in ids:
                    c.exec_driver_sql(f"KILL CONNECTION {int(i)}")
                self.killed = bool(ids)
        finally:
            e.dispose()



@pytest.mark.parametrize("jobs", [1, 2])
def test_clean_whose_connection_is_killed_leaves_the_target_as_it_was_and_says_so(jobs: int, make_db,
                                                                                 tmp_path: Path) -> None:
    src = _mariadb(make_db, "kill")
    _exec(src, "CREATE TABLE counters (id INT AUTO_INCREMENT PRIMARY KEY, n INT)",
          "CREATE TABLE orders (id INT PRIMARY KEY, c INT, FOREIGN KEY (c) REFERENCES counters (id))",
          "CREATE TABLE hist (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING",
          "INSERT INTO counters (n) VALUES (1), (2)", "INSERT INTO orders VALUES (1, 1), (2, 2)",
          "INSERT INTO hist VALUES (1, 1)", "CREATE PROCEDURE bump() UPDATE counters SET n = n + 1",
          "CREATE TABLE descpk (a INT, b INT, PRIMARY KEY (a, b DESC)) ENGINE=Aria TRANSACTIONAL=0",
          "INSERT INTO descpk VALUES (1, 1)",
          "CREATE TRIGGER orders_bi BEFORE INSERT ON orders FOR EACH ROW SET NEW.c = NEW.c")
    b = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("mysql", "killdst")
    api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    _exec(dst, "INSERT INTO counters (n) VALUES (5)", "UPDATE hist SET v = 99", "INSERT INTO orders VALUES (3, 3)")
    before = {t: _rows(dst, f"SELECT * FROM {t} ORDER BY 1") for t in ("counters", "hist", "orders")}
    schema_before = _schema_dump(dst)
    objects_before = _objects(dst)
    killer = _KillOnTable(dst, "orders")
    with pytest.raises(Exception) as err:
        api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, clean=True, jobs=jobs),
                    progress=killer)
    msg = str(err.value)
    print(msg)
    assert killer.killed
    assert "rolled back" not in msg
    assert "the target is as it was" in msg and "connection to the server was lost" in msg
    assert _objects(dst) == objects_before
    assert {t: _rows(dst, f"SELECT * FROM {t} ORDER BY 1") for t in before} == before
    assert _schema_dump(dst) == schema_before


def test_postgresql_generators_auto_increment_cannot_carry_become_mariadb_sequences(make_db, tmp_path: Path) -> None:
    """A generator on a column that is not the first of the key, an identity outside the key, a
    sequence shared by two tables, two generated columns in one key: each restores into MariaDB
    (no 1075 "there can be only one auto column"), as the plan says, and goes on after the rows."""
    src = make_db("postgresql", "gens")
    _exec(src, "CREATE TABLE ev (at timestamp NOT NULL, id bigserial, v int, PRIMARY KEY (at, id))",
          "INSERT INTO ev (at, v) VALUES ('2024-01-01', 1), ('2024-01-02', 2)",
          "CREATE SEQUENCE shared START 50",
          "CREATE TABLE a (id int PRIMARY KEY DEFAULT nextval('shared'), x int)",
          "CREATE TABLE b (id int PRIMARY KEY DEFAULT nextval('shared'), y int)",
          "INSERT INTO a (x) VALUES (1), (2)", "INSERT INTO b (y) VALUES (3)",
          "CREATE TABLE c (id int PRIMARY KEY, n int GENERATED BY DEFAULT AS IDENTITY)",
          "INSERT INTO c (id) VALUES (1), (2)",
          "CREATE TABLE d (a serial, b serial, v int, PRIMARY KEY (a, b))", "INSERT INTO d (v) VALUES (1)",
          "CREATE TABLE e (id serial PRIMARY KEY, v int)", "INSERT INTO e (v) VALUES (1)")
    b = api.dump(_cfg(src), tmp_path / "b")
    dst = _mariadb(make_db, "gensdst")
    plan = api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, plan_only=True))
    notes = "\n".join(plan.changes)
    assert "ev: column 'id': values drawn from the MariaDB sequence ev_id_seq (a column of the primary key after " \
           "its first" in notes
    assert "a: column 'id': values drawn from the MariaDB sequence shared (its sequence also feeds b.id)" in notes
    assert "c: column 'n': values drawn from the MariaDB sequence c_n_seq (a column outside the primary key" in notes
    assert "d: column 'b': values drawn from the MariaDB sequence d_b_seq" in notes and "d: column 'a'" not in notes
    assert "column 'id'" not in "\n".join(n for n in plan.changes if n.startswith("e:"))
    api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    _exec(dst, "INSERT INTO a (x) VALUES (9)", "INSERT INTO b (y) VALUES (9)", "INSERT INTO c (id) VALUES (3)",
          "INSERT INTO d (v) VALUES (2)", "INSERT INTO e (v) VALUES (2)", "INSERT INTO ev (at, v) VALUES ('2024-02-02', 3)")
    assert _rows(dst, "SELECT id, x FROM a ORDER BY id") == [(50, 1), (51, 2), (53, 9)]
    assert _rows(dst, "SELECT id, y FROM b ORDER BY id") == [(52, 3), (54, 9)]
    assert _rows(dst, "SELECT id, n FROM c ORDER BY id") == [(1, 1), (2, 2), (3, 3)]
    assert _rows(dst, "SELECT a, b, v FROM d ORDER BY a") == [(1, 1, 1), (2, 2, 2)]
    assert _rows(dst, "SELECT id, v FROM e ORDER BY id") == [(1, 1), (2, 2)]
    assert _rows(dst, "SELECT id, v FROM ev ORDER BY id") == [(1, 1), (2, 2), (3, 3)]
    assert _rows(dst, "SELECT extra FROM information_schema.columns WHERE table_schema = DATABASE() "
                      "AND table_name = 'e' AND column_name = 'id'") == [("auto_increment",)]


def test_a_routine_made_through_latin1_returns_the_same_after_a_restore(make_db, tmp_path: Path) -> None:
    src = _mariadb(make_db, "latin")
    _exec(src.update_query_dict({"charset": "latin1"}), "CREATE TABLE t (id INT PRIMARY KEY)",
          "CREATE FUNCTION f() RETURNS VARCHAR(10) DETERMINISTIC RETURN CONCAT('é', 'ü')",
          "CREATE FUNCTION g() RETURNS INT DETERMINISTIC RETURN 'a' = 'A'")
    b = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("mysql", "latindst")
    api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    sql = "SELECT HEX(f()), g()"
    assert _rows(dst, sql) == _rows(src, sql) == [("C3A9C3BC", 1)]
    sql = ("SELECT routine_name, collation_connection FROM information_schema.routines WHERE routine_schema = "
           "DATABASE() ORDER BY 1")
    assert _rows(dst, sql) == _rows(src, sql) == [("f", "latin1_swedish_ci"), ("g", "latin1_swedish_ci")]


def test_a_definer_the_target_lacks_becomes_the_restoring_account_with_a_warning(make_db, tmp_path: Path,
                                                                                 caplog) -> None:
    src = _mariadb(make_db, "definer")
    _exec(src, "CREATE TABLE t (id INT PRIMARY KEY)", "CREATE DEFINER=`albk_nobody`@`nowhere` PROCEDURE p() SELECT 1",
          "CREATE PROCEDURE q() SELECT 2")
    b = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("mysql", "definerdst")
    api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    me = _rows(dst, "SELECT CURRENT_USER()")[0][0]
    sql = "SELECT routine_name, definer FROM information_schema.routines WHERE routine_schema = DATABASE() ORDER BY 1"
    assert _rows(src, sql) == [("p", "albk_nobody@nowhere"), ("q", me)]
    assert _rows(dst, sql) == [("p", me), ("q", me)]
    assert "made as the restoring account, not as their definer" in caplog.text and \
        "routine p (`albk_nobody`@`nowhere`)" in caplog.text


@pytest.mark.parametrize("jobs", [1, 2])
def test_clean_refused_by_orphan_rows_leaves_the_target_as_it_was(jobs: int, make_db, tmp_path: Path) -> None:
    src = _mariadb(make_db, "orphan")
    _exec(src, "CREATE TABLE parent (id INT PRIMARY KEY)",
          "CREATE TABLE child (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES parent (id))",
          "INSERT INTO parent VALUES (1)", "INSERT INTO child VALUES (1, 1)")
    dst = make_db("mysql", "orphandst")
    api.restore(api.dump(_cfg(src), tmp_path / "b1").path, _cfg(dst, allow_restore=True),
                RestoreOptions(allow_restore=True))
    _exec(src, "SET SESSION foreign_key_checks = 0", "INSERT INTO child VALUES (2, 7)")
    b = api.dump(_cfg(src), tmp_path / "b2")
    _exec(dst, "INSERT INTO parent VALUES (5)")
    before = _schema_dump(dst), _rows(dst, "SELECT * FROM parent"), _rows(dst, "SELECT * FROM child")
    with pytest.raises(IntegrityError, match=r"referential integrity fails .*; restore failed; the target is as it "
                                             r"was"):
        api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, clean=True, jobs=jobs))
    assert (_schema_dump(dst), _rows(dst, "SELECT * FROM parent"), _rows(dst, "SELECT * FROM child")) == before
