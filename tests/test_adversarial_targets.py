"""Nothing albackup does may destroy a database it was not asked to touch, on the real servers:
a scratch target spelt otherwise than its source is still its source (test_all refuses it),
--clean on PostgreSQL never drops what the backup does not hold and leaves the target as found
when it fails (its connection killed mid-load), and a lock another session holds ends the
restore after lock_timeout with an error naming the table, instead of a wait of a day."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from albackup import api, config
from albackup.errors import ConfigError, RestoreRefused, TargetIsSource

from .conftest import query_rows

ROOT = Path(__file__).resolve().parents[1]
MARIADB_SOCKET = "/run/mysqld/mysqld.sock"


# ---------------------------------------------------------------------------------- helpers
def _url(u: sa.URL) -> str:
    return u.render_as_string(hide_password=False)


def _cfg(url: sa.URL | str, **kw: Any) -> config.DatabaseConfig:
    return config.url_config(url if isinstance(url, str) else _url(url), **kw)


def _exec(url: sa.URL, *stmts: str) -> None:
    e = sa.create_engine(url, poolclass=NullPool)
    with e.begin() as c:
        for s in stmts:
            c.exec_driver_sql(s)
    e.dispose()


_rows = query_rows


def _tables(url: sa.URL) -> set[str]:
    e = sa.create_engine(url, poolclass=NullPool)
    try:
        return set(sa.inspect(e).get_table_names())
    finally:
        e.dispose()


def _run(*argv: Any, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "albackup", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


def _popen(*argv: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "albackup", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("albackup: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------ test_all: the scratch is the source
def _source(url: sa.URL) -> None:
    _exec(url, "CREATE TABLE keep (id INT PRIMARY KEY, v VARCHAR(20))",
          "INSERT INTO keep VALUES (1, 'one'), (2, 'two'), (3, 'three')",
          "CREATE TABLE child (id INT PRIMARY KEY, keep_id INT REFERENCES keep (id))",
          "INSERT INTO child VALUES (10, 1), (20, 2)")


def _untouched(url: sa.URL) -> None:
    assert _rows(url, "SELECT id, v FROM keep ORDER BY id") == [(1, "one"), (2, "two"), (3, "three")]
    assert _rows(url, "SELECT id, keep_id FROM child ORDER BY id") == [(10, 1), (20, 2)]


def _test_all(src: config.DatabaseConfig, scratch: config.DatabaseConfig, tmp: Path) -> api.TestAllResult:
    return api.test_all(config.TestAllConfig(scratch=scratch, databases=(src,)), workdir=tmp)


PG_SPELLINGS = ["localhost:5432/{db}", "localhost/{db}", "127.0.0.1/{db}", "LOCALHOST:5432/{db}", "LocalHost/{db}",
                "vm:5432/{db}", "VM/{db}", "/{db}?host=localhost&port=5432", "/{db}?host=127.0.0.1"]


@pytest.mark.parametrize("spelling", PG_SPELLINGS)
def test_all_refuses_a_postgresql_scratch_that_is_the_source(spelling: str, pg, tmp_path: Path) -> None:
    src = pg.new("same")
    _source(src)
    scratch = "postgresql+psycopg2://root@" + spelling.format(db=src.database)
    assert scratch != _url(src)
    assert _rows(sa.engine.make_url(scratch), "SELECT 1") == [(1,)]    # reachable so: the servers are asked
    with pytest.raises(TargetIsSource) as exc:
        _test_all(_cfg(src, name="shop"), _cfg(scratch, allow_restore=True), tmp_path)
    assert exc.value.exit_code == 5
    assert "is the database of shop" in exc.value.message and "nothing was written" in exc.value.message
    _untouched(src)


def _mariadb_spellings() -> list[str]:
    out = ["localhost:3306", "localhost", "127.0.0.1", "LOCALHOST", "vm:3306", "Vm"]
    if Path(MARIADB_SOCKET).exists():
        out.append(f"localhost?unix_socket={MARIADB_SOCKET}")
    return out


@pytest.mark.parametrize("host", _mariadb_spellings())
def test_all_refuses_a_mariadb_scratch_that_is_the_source(host: str, my, tmp_path: Path) -> None:
    src = my.new("same")
    _source(src)
    base = _url(src)
    path = base.split("/")[-1]
    scratch = base.replace("127.0.0.1:3306/" + path, host.split("?")[0] + "/" + path
                           + ("?" + host.split("?")[1] if "?" in host else ""))
    assert scratch != base
    assert _rows(sa.engine.make_url(scratch), "SELECT 1") == [(1,)]
    with pytest.raises(TargetIsSource):
        _test_all(_cfg(src, name="crm"), _cfg(scratch, allow_restore=True), tmp_path)
    _untouched(src)


@pytest.mark.parametrize("spelling", ["relative", "dotted", "symlink", "hardlink"])
def test_all_refuses_a_sqlite_scratch_that_is_the_source(spelling: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "data" / "shop.sqlite"
    real.parent.mkdir()
    src = sa.engine.make_url(f"sqlite:///{real}")
    _source(src)
    monkeypatch.chdir(tmp_path)
    other = {"relative": "data/shop.sqlite", "dotted": f"{tmp_path}/data/../data/./shop.sqlite",
             "symlink": str(tmp_path / "link.sqlite"), "hardlink": str(tmp_path / "hard.sqlite")}[spelling]
    if spelling == "symlink":
        (tmp_path / "link.sqlite").symlink_to(real)
    if spelling == "hardlink":
        os.link(real, tmp_path / "hard.sqlite")
    with pytest.raises(TargetIsSource):
        _test_all(_cfg(src), _cfg(f"sqlite:///{other}", allow_restore=True), tmp_path / "w")
    _untouched(src)


def test_sql_server_identity_is_the_instance_and_database() -> None:
    """SQL Server (SQL level, no server here): @@SERVERNAME and @@SERVICENAME as the instance
    names itself (case aside), whatever host or port the URL spelt; and the database."""
    from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc

    from albackup.engines.mssql import IDENTITY_SQL, MSSQLAdapter

    from .test_mssql_sql import FakeConnection

    ad = MSSQLAdapter(mssql_pyodbc.dialect())

    def ident(name: str, service: str, db: str) -> Any:
        conn = FakeConnection(answer=lambda sql, p: [(name, service, db)])
        got = ad.server_identity(conn)  # type: ignore[arg-type]
        assert conn.statements() == [IDENTITY_SQL]
        return got

    assert IDENTITY_SQL == "SELECT @@SERVERNAME, @@SERVICENAME, DB_NAME()"
    assert ident("SQL01\\PAYROLL", "PAYROLL", "Payroll") == ident("sql01\\payroll", "payroll", "Payroll")
    assert ident("SQL01", "MSSQLSERVER", "Payroll") != ident("SQL01", "MSSQLSERVER", "Payroll_copy")
    assert ident("SQL01\\A", "A", "Payroll") != ident("SQL01\\B", "B", "Payroll")


def test_sql_server_clean_names_foreign_keys_from_outside() -> None:
    """SQL Server (SQL level): --clean's drop would take the foreign keys of other tables with
    the table; those of tables --clean does not replace are named, and refuse the restore."""
    from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc

    from albackup.engines.mssql import MSSQLAdapter

    from .test_mssql_sql import FakeConnection

    ad = MSSQLAdapter(mssql_pyodbc.dialect())
    conn = FakeConnection(answer=lambda sql, p: [("fk_audit_orders", "dbo", "audit", "dbo", "orders")])
    got = ad.clean_blockers(conn, [("orders", None), ("customers", "sales")], [])  # type: ignore[arg-type]
    assert got == ["foreign key fk_audit_orders on table dbo.audit depends on table dbo.orders"]
    (kind, sql, params), = conn.log
    assert "referenced_object_id IN (OBJECT_ID(?), OBJECT_ID(?))" in sql
    assert "parent_object_id NOT IN (OBJECT_ID(?), OBJECT_ID(?))" in sql
    assert params == ("[orders]", "[sales].[customers]") * 2
    assert ad.clean_blockers(FakeConnection(), [], []) == []  # type: ignore[arg-type]


def test_all_runs_into_another_database_on_the_same_server(pg, tmp_path: Path) -> None:
    """The same server under another name, but another database: that is what a scratch is."""
    src = pg.new("src")
    _source(src)
    scratch = pg.new("scr")
    res = _test_all(_cfg(src), _cfg(_url(scratch).replace("127.0.0.1", "vm"), allow_restore=True), tmp_path)
    assert res.ok, res.entries
    _untouched(src)
    assert _rows(scratch, "SELECT count(*) FROM keep") == [(3,)]


def test_all_guard_makes_no_missing_source_file(tmp_path: Path) -> None:
    """A source SQLite file that is not there stays not there: its entry fails as before."""
    missing = tmp_path / "nope.sqlite"
    res = _test_all(_cfg(f"sqlite:///{missing}"), _cfg(f"sqlite:///{tmp_path / 's.sqlite'}", allow_restore=True),
                    tmp_path)
    assert res.entries[0].status == "error" and "does not exist" in (res.entries[0].error or "")
    assert not missing.exists()


def test_test_all_command_refuses_before_dumping(pg, tmp_path: Path) -> None:
    """The command: a scratch the URL text cannot tell from another database (the host `vm` is
    this machine) ends the run with exit 5 and one line; nothing was dumped or written. Text that
    does tell (localhost for 127.0.0.1, the default port left out) is refused as the config loads."""
    src = pg.new("cmd")
    _source(src)
    name = _url(src).rsplit("/", 1)[1]
    cfg = _write(tmp_path / "t.yaml", f"scratch: {{url: 'postgresql://root@vm:5432/{name}', allow_restore: true}}\n"
                                      f"databases:\n  - {{name: shop, url: '{_url(src)}'}}\n")
    r = _run("--cfg", cfg, "test_all")
    assert r.returncode == 5, r.stderr
    line = _error_line(r.stderr)
    assert "scratch target postgresql" in line and "is the database of shop" in line
    _untouched(src)
    cfg.write_text(f"scratch: {{url: 'postgresql://root@localhost/{name}', allow_restore: true}}\n"
                   f"databases:\n  - {{name: shop, url: '{_url(src)}'}}\n")
    with pytest.raises(ConfigError, match="same database as the scratch target"):
        config.test_all_config(cfg)


# ------------------------------------------------------------ --clean on PostgreSQL: only the backup
def _pg_backup(src: sa.URL, tmp: Path, *extra: str) -> Path:
    _exec(src, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)",
          "INSERT INTO t SELECT g, 'new ' || g FROM generate_series(1, 50) g", *extra)
    return api.dump(_cfg(src), tmp / "b").path


def _pg_count(url: sa.URL, kind: str) -> int:
    sql = {"views": "SELECT count(*) FROM pg_views WHERE schemaname = 'public'",
           "fks": "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"}[kind]
    return int(_rows(url, sql)[0][0])


def test_clean_refuses_to_drop_what_the_backup_does_not_hold(pg, tmp_path: Path) -> None:
    backup = _pg_backup(pg.new("csrc"), tmp_path)
    dst = pg.new("cdst")
    _exec(dst, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'old'), (2, 'old two')",
          "CREATE TABLE other (id INT PRIMARY KEY, t_id INT REFERENCES t (id))", "INSERT INTO other VALUES (7, 1)",
          "CREATE VIEW v_all AS SELECT * FROM t", "CREATE VIEW v_ids AS SELECT id FROM t WHERE id > 1")
    plan = _run("restore", "--url", _url(dst), "--allow-restore", "--clean", "--plan", "--json",
                "--backup-dir", backup)
    assert plan.returncode == 0, plan.stderr
    refused = json.loads(plan.stdout)["refused"]
    assert refused == ["constraint other_t_id_fkey on table other depends on table t",
                       "view v_all depends on table t", "view v_ids depends on table t"]
    text = _run("restore", "--url", _url(dst), "--allow-restore", "--clean", "--plan", "--backup-dir", backup)
    assert "-- refused: --clean would drop these objects outside the backup" in text.stdout
    assert "view v_ids depends on table t" in text.stdout
    r = _run("restore", "--url", _url(dst), "--allow-restore", "--clean", "--backup-dir", backup)
    assert r.returncode == 5, r.stderr
    line = _error_line(r.stderr)
    assert "constraint other_t_id_fkey on table other depends on table t" in line
    assert "2 more" in line and "nothing was changed" in line
    assert _rows(dst, "SELECT id, v FROM t ORDER BY id") == [(1, "old"), (2, "old two")]
    assert _rows(dst, "SELECT * FROM other") == [(7, 1)]
    assert _pg_count(dst, "views") == 2 and _pg_count(dst, "fks") == 1
    # once what depends on t is gone, --clean replaces t (and leaves `other` alone)
    _exec(dst, "DROP VIEW v_all", "DROP VIEW v_ids", "ALTER TABLE other DROP CONSTRAINT other_t_id_fkey")
    r = _run("restore", "--url", _url(dst), "--allow-restore", "--clean", "--backup-dir", backup)
    assert r.returncode == 0, r.stderr
    assert _rows(dst, "SELECT count(*), min(v) FROM t") == [(50, "new 1")]
    assert _rows(dst, "SELECT * FROM other") == [(7, 1)]


def test_clean_replaces_the_views_the_backup_holds(pg, tmp_path: Path) -> None:
    """Views of the backup already in the target are dropped and made again (as pg_restore
    --clean does); a view of the target's own on them is not, and stops the restore."""
    backup = _pg_backup(pg.new("vsrc"), tmp_path, "CREATE VIEW tv AS SELECT id, v FROM t WHERE id <= 10",
                        "CREATE VIEW tv2 AS SELECT id FROM tv",
                        "CREATE MATERIALIZED VIEW tm AS SELECT count(*) AS n FROM t")
    dst = pg.new("vdst")
    assert _run("restore", "--url", _url(dst), "--allow-restore", "--backup-dir", backup).returncode == 0
    _exec(dst, "UPDATE t SET v = 'changed'", "CREATE TABLE mine (x INT)", "INSERT INTO mine VALUES (5)")
    r = _run("restore", "--url", _url(dst), "--allow-restore", "--clean", "--backup-dir", backup)
    assert r.returncode == 0, r.stderr
    assert _rows(dst, "SELECT count(*), min(v) FROM tv") == [(10, "new 1")]
    assert _rows(dst, "SELECT count(*) FROM tv2") == [(10,)]
    assert _rows(dst, "SELECT n FROM tm") == [(50,)]
    assert _rows(dst, "SELECT x FROM mine") == [(5,)]
    _exec(dst, "CREATE VIEW my_view AS SELECT * FROM tv2")
    r = _run("restore", "--url", _url(dst), "--allow-restore", "--clean", "--backup-dir", backup)
    assert r.returncode == 5 and "view my_view depends on view tv2" in _error_line(r.stderr)
    assert _rows(dst, "SELECT count(*) FROM my_view") == [(10,)]


def _big_pg(url: sa.URL, rows: int) -> None:
    _exec(url, "CREATE TABLE a_first (id INT PRIMARY KEY, v TEXT)", "INSERT INTO a_first VALUES (1, 'x')",
          "CREATE TABLE b_big (id INT PRIMARY KEY, v TEXT, w TEXT)",
          f"INSERT INTO b_big SELECT g, md5(g::text), repeat(md5(g::text), 4) FROM generate_series(1, {rows}) g")


def _old_target(url: sa.URL) -> None:
    _exec(url, "CREATE TABLE a_first (id INT PRIMARY KEY, v TEXT)", "INSERT INTO a_first VALUES (1, 'old')",
          "CREATE TABLE b_big (id INT PRIMARY KEY, v TEXT, w TEXT)",
          "INSERT INTO b_big VALUES (1, 'old', 'old'), (2, 'old', 'old')",
          "CREATE TABLE unrelated (x INT)", "INSERT INTO unrelated VALUES (42)")


def _as_found(url: sa.URL) -> None:
    assert _tables(url) == {"a_first", "b_big", "unrelated"}
    assert _rows(url, "SELECT id, v FROM a_first") == [(1, "old")]
    assert _rows(url, "SELECT id, v, w FROM b_big ORDER BY id") == [(1, "old", "old"), (2, "old", "old")]
    assert _rows(url, "SELECT x FROM unrelated") == [(42,)]


def _kill_copy(url: sa.URL, proc: subprocess.Popen[str], timeout: float = 120) -> int:
    """Wait until a session of another process is loading rows into ``url``'s database (COPY),
    then end it from this connection (pg_terminate_backend); returns its pid."""
    e = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + timeout
    try:
        with e.connect() as c:
            while time.monotonic() < deadline and proc.poll() is None:
                pid = c.exec_driver_sql(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND state = 'active' AND query LIKE 'COPY %% FROM STDIN%%' LIMIT 1").scalar()
                if pid is not None:
                    assert c.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar()
                    return int(pid)
                time.sleep(0.01)
    finally:
        e.dispose()
    out, err = proc.communicate(timeout=30)
    raise AssertionError(f"no COPY was seen (exit {proc.returncode}): {err[-2000:]}")


@pytest.mark.parametrize("jobs", [1, 2])
def test_clean_killed_mid_load_leaves_the_target_as_found(jobs: int, pg, tmp_path: Path) -> None:
    """--clean on PostgreSQL is one transaction (-j too): its connection ended by the server in
    the middle of the load leaves the old tables and their rows, and exits 10."""
    src = pg.new("ksrc")
    _big_pg(src, 300_000)
    backup = api.dump(_cfg(src), tmp_path / "b").path
    dst = pg.new("kdst")
    _old_target(dst)
    proc = _popen("restore", "--url", _url(dst), "--allow-restore", "--clean", "-j", jobs, "--backup-dir", backup)
    _kill_copy(dst, proc)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 10, err
    line = _error_line(err)
    assert "failed and was rolled back" in line and "connection" in line
    _as_found(dst)


# ------------------------------------------------------------------------ lock waits end
def _hold(url: sa.URL, *stmts: str) -> tuple[sa.Engine, sa.Connection, int]:
    """A second session that keeps its transaction open (and the locks it took)."""
    e = sa.create_engine(url, poolclass=NullPool)
    c = e.connect()
    c.begin()
    for s in stmts:
        c.exec_driver_sql(s)
    pid = c.exec_driver_sql("SELECT pg_backend_pid()" if e.dialect.name == "postgresql"
                            else "SELECT CONNECTION_ID()").scalar()
    return e, c, int(pid)


def _restore_with_timeout(dst: sa.URL, backup: Path, tmp: Path,
                          seconds: int) -> tuple[subprocess.CompletedProcess[str], float]:
    cfg = _write(tmp / "target.yaml", f"url: '{_url(dst)}'\nallow_restore: true\nlock_timeout: {seconds}\n")
    t0 = time.monotonic()
    try:
        r = _run("--cfg", cfg, "restore", "--clean", "--backup-dir", backup, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the restore still waited for the lock after 90 s")
    return r, time.monotonic() - t0


def test_postgresql_lock_wait_ends_after_lock_timeout(pg, tmp_path: Path) -> None:
    src = pg.new("lsrc")
    _big_pg(src, 100)
    backup = api.dump(_cfg(src), tmp_path / "b").path
    dst = pg.new("ldst")
    _old_target(dst)
    e, holder, pid = _hold(dst, "SELECT count(*) FROM a_first")     # ACCESS SHARE, held open
    try:
        r, secs = _restore_with_timeout(dst, backup, tmp_path, 2)
    finally:
        holder.rollback()
        holder.close()
        e.dispose()
    assert r.returncode == 10, r.stderr
    line = _error_line(r.stderr)
    assert "table a_first is locked by another session" in line and f"pid {pid}" in line
    assert "lock_timeout (2 s) passed" in line
    assert secs < 30
    _as_found(dst)


def test_mariadb_lock_wait_ends_after_lock_timeout(my, tmp_path: Path) -> None:
    src = my.new("lsrc")
    _exec(src, "CREATE TABLE a_first (id INT PRIMARY KEY, v TEXT)", "INSERT INTO a_first VALUES (1, 'new')",
          "CREATE TABLE b_big (id INT PRIMARY KEY, v TEXT, w TEXT)", "INSERT INTO b_big VALUES (1, 'new', 'new')")
    backup = api.dump(_cfg(src), tmp_path / "b").path
    dst = my.new("ldst")
    _old_target(dst)
    # the metadata lock of a table read in an open transaction: DROP TABLE waits for it
    e, holder, _ = _hold(dst, "SELECT count(*) FROM a_first")
    try:
        r, secs = _restore_with_timeout(dst, backup, tmp_path, 2)
        assert holder.exec_driver_sql("SELECT v FROM a_first").fetchall() == [("old",)]
    finally:
        holder.rollback()
        holder.close()
        e.dispose()
    assert r.returncode == 10, r.stderr
    line = _error_line(r.stderr)
    assert "table a_first is locked by another session" in line and "lock_timeout (2 s) passed" in line
    assert secs < 30
    assert _rows(dst, "SELECT id, v FROM a_first") == [(1, "old")]


# ------------------------------------------------------------------------ the config key
@pytest.mark.parametrize("value", ["0", "-1", "1.5", "'10'", "true", "31536001"])
def test_lock_timeout_must_be_whole_seconds(value: str, tmp_path: Path) -> None:
    cfg = _write(tmp_path / "c.yaml", f"driver: sqlite\ndatabase: x.db\nlock_timeout: {value}\n")
    with pytest.raises(ConfigError) as exc:
        config.database_config(cfg)
    assert "lock_timeout" in exc.value.message and "whole number of seconds" in exc.value.message
    assert exc.value.exit_code == 3


def test_lock_timeout_default_and_value(tmp_path: Path) -> None:
    assert config.database_config(_write(tmp_path / "a.yaml", "driver: sqlite\ndatabase: x.db\n")).lock_timeout == 60
    cfg = _write(tmp_path / "b.yaml", "driver: sqlite\ndatabase: x.db\nlock_timeout: 5\n")
    assert config.database_config(cfg).lock_timeout == 5


def test_target_is_source_is_a_refusal() -> None:
    assert issubclass(TargetIsSource, RestoreRefused) and TargetIsSource.exit_code == 5
