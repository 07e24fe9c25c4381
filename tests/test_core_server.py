"""Core behaviour on live servers: test_all, identifiers, routines, snapshots, sequences."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from albackup import api, config
from albackup.archive import Backup
from albackup.errors import DumpError
from albackup.restore import RestoreOptions

from . import torture


def _cfg(url: sa.URL, **kw: object) -> config.DatabaseConfig:
    return config.url_config(url.render_as_string(hide_password=False), **kw)


def _exec(url: sa.URL, *stmts: str) -> None:
    e = sa.create_engine(url, poolclass=NullPool)
    with e.begin() as c:
        for s in stmts:
            c.exec_driver_sql(s)
    e.dispose()


def _test_all_cfg(*dbs: config.DatabaseConfig) -> config.TestAllConfig:
    return config.TestAllConfig(scratch=None, databases=tuple(dbs))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_test_all_passes_and_catches_planted_differences(kind: str, make_db, tmp_path: Path) -> None:
    src = make_db(kind, "ta")
    torture.build(src)
    db = _cfg(src, name="ta")
    ok = api.test_all(_test_all_cfg(db), workdir=tmp_path)
    assert ok.ok, ok.entries[0]
    assert ok.entries[0].tables == 9 and ok.entries[0].rows > 0

    def change_row(source: config.DatabaseConfig, scratch: config.DatabaseConfig) -> None:
        _exec(scratch.url, "UPDATE tree SET parent_id = 3 WHERE id = 1")

    bad = api.test_all(_test_all_cfg(db), workdir=tmp_path, after_restore=change_row)
    assert not bad.ok
    assert bad.entries[0].status == "different"
    assert any("tree" in d and "data" in d for d in bad.entries[0].differences), bad.entries[0].differences

    def drop_index(source: config.DatabaseConfig, scratch: config.DatabaseConfig) -> None:
        e = sa.create_engine(scratch.url, poolclass=NullPool)
        ix = [i["name"] for i in sa.inspect(e).get_indexes("parent") if i["column_names"] == ["qty"]][0]
        e.dispose()
        on = " ON parent" if kind == "mysql" else ""
        q = "`" if kind == "mysql" else '"'
        _exec(scratch.url, f"DROP INDEX {q}{ix}{q}{on}")

    bad = api.test_all(_test_all_cfg(db), workdir=tmp_path, after_restore=drop_index)
    assert bad.entries[0].status == "different"
    assert any("parent" in d and "indexes" in d for d in bad.entries[0].differences)


def test_test_all_zero_tables_fails(make_db, tmp_path: Path) -> None:
    src = make_db("sqlite", "empty")
    sqlite3.connect(src.database).close()
    res = api.test_all(_test_all_cfg(_cfg(src, name="e")), workdir=tmp_path)
    assert not res.ok


def test_long_names_and_colliding_index_names(make_db, tmp_path: Path) -> None:
    """SQLite allows names PostgreSQL and MySQL cannot hold; MySQL index names collide in PostgreSQL."""
    long_t = "t_" + "x" * 70
    src = make_db("sqlite", "long")
    con = sqlite3.connect(src.database)
    con.executescript(f"""
        CREATE TABLE "{long_t}" (id INTEGER PRIMARY KEY, "{'c' * 80}" TEXT, v INTEGER);
        CREATE INDEX "{'i' * 90}" ON "{long_t}" (v);
        INSERT INTO "{long_t}" VALUES (1, 'a', 2);
    """)
    con.commit()
    con.close()
    b = api.dump(_cfg(src), tmp_path / "b")
    for kind in ("postgresql", "mysql"):
        dst = make_db(kind, "longdst")
        plan = api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(plan_only=True))
        assert any("renamed" in c for c in plan.changes)
        res = api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
        assert res.rows == 1
        e = sa.create_engine(dst, poolclass=NullPool)
        names = sa.inspect(e).get_table_names()
        assert len(names) == 1 and names[0].startswith("t_xxx") and len(names[0]) <= 64
        with e.connect() as c:
            assert c.exec_driver_sql(f"SELECT * FROM {e.dialect.identifier_preparer.quote(names[0])}").fetchall()[0][2] == 2
        e.dispose()

    my = make_db("mysql", "dupix")
    _exec(my, "CREATE TABLE a (id INT PRIMARY KEY, v INT, INDEX idx (v))",
          "CREATE TABLE b (id INT PRIMARY KEY, v INT, INDEX idx (v))", "INSERT INTO a VALUES (1, 1)")
    b2 = api.dump(_cfg(my), tmp_path / "b2")
    pg = make_db("postgresql", "dupdst")
    api.restore(b2.path, _cfg(pg, allow_restore=True), RestoreOptions(allow_restore=True))
    e = sa.create_engine(pg, poolclass=NullPool)
    insp = sa.inspect(e)
    ia = [i["name"] for i in insp.get_indexes("a")]
    ib = [i["name"] for i in insp.get_indexes("b")]
    assert len(ia) == 1 and len(ib) == 1 and ia != ib
    e.dispose()


def test_postgresql_views_triggers_functions_sequences(make_db, tmp_path: Path) -> None:
    src = make_db("postgresql", "rt")
    _exec(src,
          "CREATE SEQUENCE standalone START 100",
          "SELECT nextval('standalone')", "SELECT nextval('standalone')",
          "CREATE TABLE t (id serial PRIMARY KEY, v int, changed int DEFAULT 0)",
          "INSERT INTO t (v) VALUES (1), (2), (3)",
          "DELETE FROM t WHERE id = 3",
          "CREATE VIEW tv AS SELECT id, v * 2 AS v2 FROM t",
          "CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.changed := 1; RETURN NEW; END $$",
          "CREATE TRIGGER t_bump BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION bump()")
    b = api.dump(_cfg(src), tmp_path / "b")
    kinds = {(r.kind, r.name) for r in Backup(b.path).schema.routines}
    assert {("view", "tv"), ("trigger", "t_bump"), ("routine", "bump")} <= kinds
    dst = make_db("postgresql", "rtdst")
    api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    e = sa.create_engine(dst, poolclass=NullPool)
    with e.begin() as c:
        assert c.exec_driver_sql("SELECT v2 FROM tv ORDER BY id").scalars().all() == [2, 4]
        assert c.exec_driver_sql("SELECT nextval('standalone')").scalar() == 102
        # the serial continues after the highest id ever handed out (3 was deleted)
        assert c.exec_driver_sql("INSERT INTO t (v) VALUES (9) RETURNING id").scalar() == 4
        c.exec_driver_sql("UPDATE t SET v = 5 WHERE id = 1")
        assert c.exec_driver_sql("SELECT changed FROM t WHERE id = 1").scalar() == 1
    e.dispose()
    # --no-views etc. leave them out and the manifest says so
    b2 = api.dump(config.url_config(src.render_as_string(False), views=False, triggers=False, routines=False),
                  tmp_path / "b2")
    m = Backup(b2.path).manifest
    assert m["schema"]["routines"] == []
    assert {s["kind"] for s in m["skipped"]} == {"view", "trigger", "routine"}


def test_mysql_views_and_triggers(make_db, tmp_path: Path) -> None:
    src = make_db("mysql", "myrt")
    _exec(src, "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT, changed INT DEFAULT 0)",
          "INSERT INTO t (v) VALUES (1), (2), (3)", "DELETE FROM t WHERE id = 3",
          "CREATE VIEW tv AS SELECT id, v * 2 AS v2 FROM t",
          "CREATE TRIGGER t_bump BEFORE UPDATE ON t FOR EACH ROW SET NEW.changed = 1")
    b = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("mysql", "myrtdst")
    api.restore(b.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    e = sa.create_engine(dst, poolclass=NullPool)
    with e.begin() as c:
        assert c.exec_driver_sql("SELECT v2 FROM tv ORDER BY id").scalars().all() == [2, 4]
        c.exec_driver_sql("INSERT INTO t (v) VALUES (9)")
        assert c.exec_driver_sql("SELECT max(id) FROM t").scalar() == 4
        c.exec_driver_sql("UPDATE t SET v = 5 WHERE id = 1")
        assert c.exec_driver_sql("SELECT changed FROM t WHERE id = 1").scalar() == 1
    e.dispose()


@pytest.mark.parametrize("kind", ["postgresql", "mysql", "sqlite"])
def test_dump_reads_one_snapshot(kind: str, make_db, tmp_path: Path) -> None:
    """Rows written by another connection while the dump runs are not in the backup."""
    src = make_db(kind, "snap")
    _exec(src, "CREATE TABLE a1 (id INT PRIMARY KEY)", "CREATE TABLE z9 (id INT PRIMARY KEY)",
          "INSERT INTO a1 VALUES (1)", "INSERT INTO z9 VALUES (1)")
    writes: list[str] = []

    def write_during_dump(table: str, rows: int, size: int, secs: float) -> None:
        if table == "a1" and kind != "sqlite":
            _exec(src, "INSERT INTO z9 VALUES (2)")
            writes.append(table)

    b = api.dump(_cfg(src), tmp_path / "b", progress=write_during_dump)
    m = Backup(b.path).manifest
    assert m["consistency"]["consistent"] is True
    assert m["tables"]["z9"]["rows"] == 1
    if kind != "sqlite":
        assert writes == ["a1"]


def test_mysql_require_consistent_fails_on_myisam(make_db, tmp_path: Path) -> None:
    src = make_db("mysql", "myisam")
    _exec(src, "CREATE TABLE m (id INT PRIMARY KEY) ENGINE=MyISAM", "INSERT INTO m VALUES (1)")
    b = api.dump(_cfg(src), tmp_path / "b")
    cons = Backup(b.path).manifest["consistency"]
    assert cons["consistent"] is False and "MyISAM" in cons["detail"]
    with pytest.raises(DumpError, match="consistent"):
        api.dump(config.url_config(src.render_as_string(False), require_consistent=True), tmp_path / "c")
    assert not list((tmp_path / "c").glob("*")) or all(p.name.startswith(".") is False and False
                                                         for p in (tmp_path / "c").iterdir())


def test_interrupted_dump_leaves_no_backup(make_db, tmp_path: Path) -> None:
    src = make_db("sqlite", "intr")
    torture.build(src)

    def boom(table: str, rows: int, size: int, secs: float) -> None:
        if table == "parent":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.dump(_cfg(src), tmp_path / "b", progress=boom)
    assert list((tmp_path / "b").iterdir()) == []


def test_manifest_records_schema_and_hashes(make_db, tmp_path: Path) -> None:
    src = make_db("postgresql", "mf")
    torture.build(src)
    b = api.dump(_cfg(src, name="shop"), tmp_path / "b")
    m = json.loads((b.path / "manifest.json").read_text())
    assert b.path.name.startswith("shop@127.0.0.1--")
    assert m["format_version"] == 1 and m["source"]["engine"] == "postgresql"
    assert m["source"]["server_version"]
    t = {x["name"]: x for x in m["schema"]["tables"]}["torture"]
    cols = {c["name"]: c for c in t["columns"]}
    assert cols["tstz"]["type"] == {"kind": "datetime", "timezone": True, "precision": 6} or \
        cols["tstz"]["type"]["timezone"] is True
    assert cols["dec"]["original_type"] == "NUMERIC(38, 10)"
    assert cols["mood"]["type"]["kind"] == "enum" and cols["mood"]["type"]["values"] == ["sad", "ok", "happy"]
    chunk = m["tables"]["torture"]["chunks"][0]
    assert set(chunk) == {"file", "rows", "bytes", "sha256", "content_hash"}
    assert (b.path / chunk["file"]).stat().st_size == chunk["bytes"]


def test_test_all_into_a_configured_scratch_of_another_engine(make_db, tmp_path: Path) -> None:
    src = make_db("sqlite", "xsrc")
    torture.build(src)
    scratch = _cfg(make_db("mysql", "xscratch"), allow_restore=True)
    cfg = config.TestAllConfig(scratch=scratch, databases=(_cfg(src, name="x"),))
    res = api.test_all(cfg, workdir=tmp_path)
    assert res.ok, res.entries
    assert res.entries[0].tables == 9

    def change(source: config.DatabaseConfig, target: config.DatabaseConfig) -> None:
        _exec(target.url, "UPDATE child SET note = 'changed' WHERE a = 2")

    res = api.test_all(cfg, workdir=tmp_path, after_restore=change)
    assert res.entries[0].status == "different"
    assert res.entries[0].differences == ["table child: data differs in column(s) note"]
