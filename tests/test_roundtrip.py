"""The type torture across all 9 source → target pairs of SQLite, PostgreSQL and MariaDB.

Every value is read back from the target and compared with what was written to the source;
where a pair cannot hold a value exactly, the lossiness report must name the column.
"""
from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from albackup import api, config
from albackup.errors import IntegrityError, RestoreRefused
from albackup.restore import RestoreOptions

from . import torture
from .conftest import require_mysqlclient

ENGINES = ["sqlite", "postgresql", "mysql"]

# (source, target) → the torture columns whose values the target cannot hold exactly
EXPECTED_LOSSES = {
    ("postgresql", "mysql"): {"tstz", "f32", "f64"},
    ("postgresql", "sqlite"): {"dec", "f32"},
    ("mysql", "postgresql"): {"txt"},
    ("mysql", "sqlite"): {"dec"},
    ("sqlite", "postgresql"): {"txt"},
}


def _cfg(url: sa.URL, **kw: object) -> config.DatabaseConfig:
    return config.url_config(url.render_as_string(hide_password=False), **kw)


def _approx_equal(col: str, src: object, got: object, lossy: bool) -> bool:
    if src == got:
        return True
    if lossy:
        if got is None and (src == "nan" or (isinstance(src, float) and math.isinf(src))):
            return True     # NaN/Infinity → NULL where the target has none
        if col == "dec" and isinstance(got, Decimal) and isinstance(src, Decimal):
            return abs(got - src) <= abs(src) * Decimal("1e-15")
        if col == "txt" and isinstance(src, str) and got == src.replace("\x00", ""):
            return True
    return False


PAIRS = [(s, d) for s in ENGINES for d in ENGINES]
SHORT = {"sqlite": "lite", "postgresql": "pg", "mysql": "maria"}


SERVERS = ["postgresql", "mysql"]
# every pair in one connection; the server pairs again with -j 2 and the torture table cut into
# key ranges of 2 rows, so that every value goes through the parallel, chunked paths too
RUNS = [(s, d, 1) for s, d in PAIRS] + [(s, d, 2) for s in SERVERS for d in SERVERS]


def _analyze(url: sa.URL) -> None:
    e = sa.create_engine(url, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("ANALYZE torture" if e.dialect.name == "postgresql" else "ANALYZE TABLE torture")
    e.dispose()


@pytest.mark.parametrize(("src_kind", "dst_kind", "jobs"), RUNS,
                         ids=[f"{SHORT[s]}-to-{SHORT[d]}" + ("" if j == 1 else f"-j{j}") for s, d, j in RUNS])
def test_torture_roundtrip(src_kind: str, dst_kind: str, jobs: int, make_db, tmp_path: Path) -> None:
    src = make_db(src_kind, "src")
    torture.build(src)
    if jobs > 1:
        _analyze(src)
    dumped = api.dump(_cfg(src, name="torture", jobs=jobs, chunk_rows=2 if jobs > 1 else 1_000_000),
                      tmp_path / "backups")
    assert api.verify(dumped.path).rows == dumped.rows
    if jobs > 1:
        assert len(api.open_backup(dumped.path).tables["torture"]["chunks"]) >= 2

    dst = make_db(dst_kind, "dst")
    if dst_kind == "sqlite":
        dst_cfg = _cfg(dst, allow_restore=True)
    else:
        dst_cfg = _cfg(dst, allow_restore=True)
    expected_lossy = EXPECTED_LOSSES.get((src_kind, dst_kind), set())

    plan = api.restore(dumped.path, dst_cfg, RestoreOptions(plan_only=True))
    reported = {(x.table, x.column) for x in plan.losses}
    assert reported == {("torture", c) for c in expected_lossy}, plan.losses
    for x in plan.losses:
        assert x.rows > 0 and x.reason

    if expected_lossy:
        # nothing to replace: the load's own check refuses at the first affected value, and the
        # tables the restore made are dropped again
        with pytest.raises(RestoreRefused, match="--accept-lossy") as refused:
            api.restore(dumped.path, dst_cfg, RestoreOptions(allow_restore=True, jobs=jobs))
        assert any(f"torture.{c}:" in str(refused.value) for c in expected_lossy), refused.value
        e = sa.create_engine(dst, poolclass=NullPool)
        try:
            assert sa.inspect(e).get_table_names() == []
        finally:
            e.dispose()
    res = api.restore(dumped.path, dst_cfg, RestoreOptions(allow_restore=True, accept_lossy=True, jobs=jobs))
    assert res.rows == dumped.rows

    want = torture.expected_source(src_kind)
    got = torture.read_torture(dst)
    assert sorted(got) == sorted(want)
    mismatches = []
    for rid, row in want.items():
        for col, v in row.items():
            if not _approx_equal(col, v, got[rid].get(col), col in expected_lossy):
                mismatches.append((rid, col, v if not isinstance(v, bytes) else len(v),
                                   got[rid].get(col) if not isinstance(got[rid].get(col), bytes) else len(got[rid][col])))
    assert not mismatches, mismatches[:10]
    _check_structure(dst, src_kind, dst_kind)


def _check_structure(url: sa.URL, src_kind: str, dst_kind: str) -> None:
    e = sa.create_engine(url, poolclass=NullPool)
    try:
        insp = sa.inspect(e)
        names = set(insp.get_table_names())
        assert set(torture.STRUCT_ROWS) | {"torture"} <= names
        assert insp.get_pk_constraint("child")["constrained_columns"] == ["a", "b"]
        fks = {(t, tuple(f["constrained_columns"]), f["referred_table"])
               for t in ("child", "tree", "cyc_a", "cyc_b") for f in insp.get_foreign_keys(t)}
        assert fks == {("child", ("parent_id",), "parent"), ("tree", ("parent_id",), "tree"),
                       ("cyc_a", ("b_id",), "cyc_b"), ("cyc_b", ("a_id",), "cyc_a")}
        uniq = {tuple(u["column_names"]) for u in insp.get_unique_constraints("parent")}
        uniq |= {tuple(i["column_names"]) for i in insp.get_indexes("parent") if i.get("unique")}
        assert ("code",) in uniq
        assert ("qty",) in {tuple(i["column_names"]) for i in insp.get_indexes("parent")}
        checks = insp.get_check_constraints("parent")
        assert any("qty" in c["sqltext"] for c in checks), checks
        odd = 'x"; DROP TABLE y; --'
        assert ["ünï"] in [i["column_names"] for i in insp.get_indexes(odd)]
        if src_kind != "sqlite" and dst_kind != "sqlite":
            assert insp.get_table_comment("parent")["text"] == "parents of children"
            assert {c["name"]: c.get("comment") for c in insp.get_columns("child")}["note"] == "a note"
        with e.begin() as c:
            md = sa.MetaData()
            parent = sa.Table("parent", md, autoload_with=c)
            counts = {t: c.execute(sa.select(sa.func.count()).select_from(sa.Table(t, md, autoload_with=c))).scalar()
                      for t in torture.STRUCT_ROWS}
            assert counts == {t: len(r) for t, r in torture.STRUCT_ROWS.items()}
            nopk = sa.Table("nopk", md, autoload_with=c)
            assert sorted(c.execute(sa.select(nopk.c.x, nopk.c.y)).fetchall(), key=repr) == \
                sorted([(1, "dup"), (1, "dup"), (None, None)], key=repr)
            oddt = sa.Table(odd, md, autoload_with=c)
            assert c.execute(sa.select(oddt)).fetchall() == [(1, "M", "ü")]
            new_id = c.execute(parent.insert().values(code="new", qty=1).returning(parent.c.id)).scalar() \
                if dst_kind != "mysql" else c.execute(parent.insert().values(code="new", qty=1)).inserted_primary_key[0]
            assert new_id == 8, "identity/sequence not reset past the restored rows"
        with pytest.raises(sa.exc.DBAPIError):
            with e.begin() as c:
                if dst_kind == "sqlite":
                    c.exec_driver_sql("PRAGMA foreign_keys = ON")
                c.execute(sa.text("INSERT INTO child (a, b, parent_id) VALUES (9, 'z', 999)"))
    finally:
        e.dispose()


def test_restore_refuses_orphans_and_cleans_up(make_db, tmp_path: Path) -> None:
    """RI validation: a backup with an orphan row fails the restore, and the target is left clean."""
    import sqlite3

    src = make_db("sqlite", "orph")
    con = sqlite3.connect(src.database)
    con.executescript("""
        CREATE TABLE p (id INTEGER PRIMARY KEY);
        CREATE TABLE c (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id));
        INSERT INTO p VALUES (1); INSERT INTO c VALUES (1, 1), (2, 42);
    """)
    con.commit()
    con.close()
    dumped = api.dump(_cfg(src), tmp_path / "b")
    for kind in ("sqlite", "postgresql", "mysql"):
        dst = make_db(kind, "orphdst")
        with pytest.raises(IntegrityError, match="c"):
            api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
        e = sa.create_engine(dst, poolclass=NullPool)
        assert not ({"p", "c"} & set(sa.inspect(e).get_table_names())), kind
        e.dispose()
        # with the check off, the same backup restores (a reporting database may want this)
        api.restore(dumped.path, _cfg(dst, allow_restore=True),
                    RestoreOptions(allow_restore=True, enable_ri_check=False))
        e = sa.create_engine(dst, poolclass=NullPool)
        with e.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM c")).scalar() == 2
        e.dispose()


PG_OBJECTS_SOURCE = [
    "CREATE SCHEMA extra",
    "CREATE EXTENSION IF NOT EXISTS citext",
    "CREATE TYPE extra.mood AS ENUM ('sad', 'ok')",
    "CREATE DOMAIN extra.posint AS integer CHECK (VALUE > 0)",
    "CREATE FUNCTION extra.twice(x integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 2 * x'",
    "CREATE SEQUENCE extra.free_seq",
    "CREATE TABLE extra.p (id integer PRIMARY KEY, m extra.mood, n extra.posint DEFAULT extra.twice(3), "
    "s bigint DEFAULT nextval('extra.free_seq'), name citext)",
    "CREATE TABLE extra.c (id integer PRIMARY KEY, p_id integer REFERENCES extra.p (id))",
    "CREATE VIEW extra.v AS SELECT id, extra.twice(id) AS t FROM extra.p",
    "INSERT INTO extra.p (id, m, name) VALUES (1, 'ok', 'One')",
    # an orphan row, let in past the foreign key's triggers: the restore's check refuses it
    "ALTER TABLE extra.c DISABLE TRIGGER ALL",
    "INSERT INTO extra.c VALUES (1, 1), (2, 42)",
    "ALTER TABLE extra.c ENABLE TRIGGER ALL",
]

_PG_MADE = """SELECT 'schema' FROM pg_namespace WHERE nspname = 'extra'
UNION ALL SELECT 'extension' FROM pg_extension WHERE extname = 'citext'
UNION ALL SELECT 'type ' || typname FROM pg_type WHERE typname IN ('mood', 'posint')
UNION ALL SELECT 'function' FROM pg_proc WHERE proname = 'twice'
UNION ALL SELECT 'relation ' || relname FROM pg_class WHERE relname IN ('free_seq', 'p', 'c', 'v')"""


@pytest.mark.parametrize("jobs", [1, 2])
def test_failed_restore_leaves_nothing_it_made(make_db, tmp_path: Path, jobs: int) -> None:
    """PostgreSQL → PostgreSQL, a restore that fails at the foreign key check: with -j1 the
    transaction is rolled back; with -j2 (not one transaction) the cleanup drops the tables and
    everything made before them (schema, extension, enum, domain, function, sequence, view).
    What the target held before stays."""
    src = _source(make_db, "postgresql", "made", PG_OBJECTS_SOURCE)
    dumped = api.dump(_cfg(src, schemas=["extra"]), tmp_path / "b")
    dst = make_db("postgresql", "madedst")
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.begin() as c:       # already there: another function and a view of the same shape
            c.exec_driver_sql("CREATE FUNCTION thrice(x integer) RETURNS integer LANGUAGE sql AS 'SELECT 3 * x'")
            c.exec_driver_sql("CREATE VIEW keep_me AS SELECT thrice(1) AS t")
            before = {r[0] for r in c.exec_driver_sql(_PG_MADE)}
        assert before == set()
        with pytest.raises(IntegrityError, match="c"):
            api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
        with e.connect() as c:
            assert {r[0] for r in c.exec_driver_sql(_PG_MADE)} == set()
            assert c.exec_driver_sql("SELECT t FROM keep_me").scalar() == 3
        # with the check off, the same backup restores, and every one of them is made
        api.restore(dumped.path, _cfg(dst, allow_restore=True),
                    RestoreOptions(allow_restore=True, jobs=jobs, enable_ri_check=False))
        with e.connect() as c:
            assert {r[0] for r in c.exec_driver_sql(_PG_MADE)} == {
                "schema", "extension", "type mood", "type posint", "function", "relation free_seq",
                "relation p", "relation c", "relation v"}
            assert c.exec_driver_sql("SELECT t FROM extra.v").scalar() == 2
    finally:
        e.dispose()


def test_mysql_cleanup_drops_only_the_views_and_routines_it_made(make_db) -> None:
    """MySQL/MariaDB DDL is not transactional: what a failed restore made is told from what was
    there before it by the mark taken first, and by its name in the backup."""
    dst = make_db("mysql", "mymark")
    e, a = api.connect(_cfg(dst))
    try:
        with e.begin() as c:
            c.exec_driver_sql("CREATE TABLE t (id int PRIMARY KEY)")
            c.exec_driver_sql("CREATE VIEW old_v AS SELECT id FROM t")
            mark = a.object_mark(c)
            c.exec_driver_sql("CREATE VIEW `new%%v` AS SELECT id FROM t")
            c.exec_driver_sql("CREATE PROCEDURE new_p() SELECT 1")
            c.exec_driver_sql("CREATE FUNCTION new_f() RETURNS int DETERMINISTIC RETURN 1")
            c.exec_driver_sql("CREATE VIEW other_v AS SELECT id FROM t")     # not named in the backup
            made = {o for o in a.object_mark(c) - mark if o[1] in {"new%v", "new_p", "new_f", "old_v"}}
            assert {(k, n) for k, n, _ in made} == {("VIEW", "new%v"), ("PROCEDURE", "new_p"), ("FUNCTION", "new_f")}
            assert a.drop_objects(c, made) == []
            assert {(k, n) for k, n, _ in a.object_mark(c)} == {("VIEW", "old_v"), ("VIEW", "other_v")}
    finally:
        e.dispose()


@pytest.mark.parametrize("jobs", [1, 2])
def test_nul_fix_runs_only_on_columns_whose_backup_holds_a_nul(make_db, tmp_path: Path, jobs: int) -> None:
    """SQLite → PostgreSQL: text that holds NUL loses it (counted, reported); a text column of
    the same table without any NUL goes in unconverted (its conversion is the identity), and
    both come back as they should. With -j2 the six chunk files are counted by two processes."""
    from albackup.engines.postgresql import _no_nul
    from albackup.mapping import _ident
    from albackup.restore import Restorer

    src = make_db("sqlite", "nul")
    rows = [(i, f"clean {i} \\ tab\there", f"dirty\x00{i}" if i % 3 == 0 else f"fine {i}") for i in range(1, 301)]
    e = sa.create_engine(src, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, clean TEXT, dirty TEXT)")
        c.exec_driver_sql("INSERT INTO t VALUES (?, ?, ?)", rows)
    e.dispose()
    dumped = api.dump(_cfg(src, chunk_rows=50), tmp_path / "b")
    dst = make_db("postgresql", "nuld")
    cfg = _cfg(dst, allow_restore=True)
    opts = RestoreOptions(allow_restore=True, accept_lossy=True, jobs=jobs)
    with api.backup_at(dumped.path) as backup:
        assert len(backup.tables["t"]["chunks"]) == 6
        engine, adapter = api.connect(cfg, must_exist=False)
        try:
            plan, res = Restorer(backup, engine, adapter, opts, "pg").plan()
        finally:
            engine.dispose()
    moves = {c.source.name: c.move for c in plan.tables[0].columns}
    assert moves["clean"].convert is _ident and moves["dirty"].convert is not _ident
    assert [(x.column, x.rows) for x in res.losses] == [("dirty", 100)]
    api.restore(dumped.path, cfg, opts)
    e = sa.create_engine(dst, poolclass=NullPool)
    with e.connect() as c:
        got = [tuple(r) for r in c.exec_driver_sql("SELECT id, clean, dirty FROM t ORDER BY id")]
    e.dispose()
    assert got == [(i, a, b.replace("\x00", "")) for i, a, b in rows]
    assert _no_nul(["a", "b"]) and not _no_nul(["a", "b\x00"]) and not _no_nul(["a", b"bytes"])


def _source(make_db, kind: str, prefix: str, statements: list[str]) -> sa.URL:
    """A new database on ``kind`` made by ``statements`` (run as written, in one transaction)."""
    src = make_db(kind, prefix)
    e = sa.create_engine(src, poolclass=NullPool)
    try:
        with e.begin() as c:
            for stmt in statements:
                c.exec_driver_sql(stmt)
    finally:
        e.dispose()
    return src


PERCENT_RUNS = [("postgresql", "postgresql", "", 2), ("mysql", "mysql", "", 2), ("mysql", "mysql", "mysqldb", 2),
                ("postgresql", "mysql", "mysqldb", 1), ("mysql", "postgresql", "", 1), ("sqlite", "postgresql", "", 1),
                ("postgresql", "sqlite", "", 1)]


@pytest.mark.parametrize(("src_kind", "dst_kind", "driver", "jobs"), PERCENT_RUNS,
                         ids=[f"{SHORT[s]}-to-{SHORT[d]}{'-' + v if v else ''}-j{j}" for s, d, v, j in PERCENT_RUNS])
def test_names_with_a_percent_sign(src_kind: str, dst_kind: str, driver: str, jobs: int, make_db,
                                   tmp_path: Path) -> None:
    """Table, column, index and key names holding a '%' (which drivers that format parameters
    read as a placeholder), a ':' (SQLAlchemy's text() reads ':name' as a parameter) or a '?'
    dump in key ranges, load (COPY, LOAD DATA, INSERT) and compare."""
    if driver == "mysqldb":
        require_mysqlclient()

    def with_driver(url: sa.URL) -> sa.URL:
        return url.set(drivername=f"mysql+{driver}") if driver and url.drivername.startswith("mysql") else url

    src = with_driver(make_db(src_kind, "pct"))
    md = sa.MetaData()
    parent = sa.Table("p%:ct", md, sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("a%b", sa.String(40), nullable=False), sa.Column("100%", sa.LargeBinary))
    sa.Index("ix%:u", parent.c["a%b"], unique=True)
    child = sa.Table("c%h?ild", md, sa.Column("id%", sa.Integer, primary_key=True),
                     sa.Column("p%:id", sa.Integer, sa.ForeignKey("p%:ct.id", name="fk%p")))
    e = sa.create_engine(src, poolclass=NullPool)
    md.create_all(e)
    rows = [{"id": i, "a%b": f"v%s{i}%%", "100%": bytes([i % 256, 37])} for i in range(1, 61)]
    with e.begin() as c:
        c.execute(parent.insert(), rows)
        c.execute(child.insert(), [{"id%": i, "p%:id": i % 60 + 1} for i in range(1, 31)])
        if src_kind == "postgresql":
            c.exec_driver_sql('ANALYZE "p%%:ct"')
        elif src_kind == "mysql":
            c.exec_driver_sql("ANALYZE TABLE `p%%:ct`")
    e.dispose()
    dumped = api.dump(_cfg(src, jobs=jobs, chunk_rows=10), tmp_path / "b")
    if jobs > 1:
        assert len(api.open_backup(dumped.path).tables["p%:ct"]["chunks"]) >= 4
    assert api.verify(dumped.path).rows == 90
    dst = with_driver(make_db(dst_kind, "pcd"))
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert res.rows == 90
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        md2 = sa.MetaData()
        with e.connect() as c:
            p = sa.Table("p%:ct", md2, autoload_with=c)
            got = [dict(r._mapping) for r in c.execute(sa.select(p).order_by(p.c.id))]
            assert got == rows
            assert sa.inspect(c).get_foreign_keys("c%h?ild")[0]["referred_table"] == "p%:ct"
            assert any(i["name"] == "ix%:u" and i["unique"] for i in sa.inspect(c).get_indexes("p%:ct"))
    finally:
        e.dispose()
    assert api.compare(_cfg(src), _cfg(dst)).differences == []


def test_across_engines_a_unique_index_and_a_unique_constraint_compare_equal() -> None:
    """MySQL reflects a unique index as a unique constraint too: across engines the two forms
    are one; a unique index that became a plain one, or an expression index, still differs."""
    from albackup.compare import compare_schema
    from albackup.model import Column, Index, LogicalType, Schema, Table, Unique

    def schema(engine: str, uniques: list[Unique], indexes: list[Index]) -> Schema:
        cols = [Column(n, LogicalType("integer", bits=32), "INTEGER", nullable=False) for n in ("id", "a", "b")]
        return Schema(engine, [Table("t", columns=cols, primary_key=["id"], uniques=uniques, indexes=indexes)])

    pg = schema("postgresql", [], [Index("ix", ["a"], unique=True), Index("ie", [], True, ["lower(b)"])])
    my = schema("mysql", [Unique("ix", ["a"])], [Index("ix", ["a"], unique=True), Index("ie", [], True, ["lower(b)"])])
    assert compare_schema(pg, my, exact_types=False) == []
    assert compare_schema(my, pg, exact_types=False) == []
    assert compare_schema(pg, my, exact_types=True) == ["table t: unique constraints differ"]
    plain = schema("mysql", [], [Index("ix", ["a"]), Index("ie", [], True, ["lower(b)"])])
    assert compare_schema(pg, plain, exact_types=False) == [
        "table t: unique constraints differ",
        "table t: indexes differ (missing [], extra [(('a',), False, ())])"]
    noexpr = schema("mysql", [Unique("ix", ["a"])], [])
    assert compare_schema(pg, noexpr, exact_types=False) == [
        "table t: indexes differ (missing [((), True, ('lower(b)',))], extra [])"]


_SQL_TEXT = {
    "postgresql": [
        "CREATE TYPE mood AS ENUM ('100%', 'a:b', 'it''s')",
        """CREATE TABLE t (id serial PRIMARY KEY, j jsonb DEFAULT '{"a":1}', p text DEFAULT '5%'
           CHECK (p <> ':x' AND p NOT LIKE '%zz'), m mood DEFAULT '100%', g int GENERATED ALWAYS AS (id % 7) STORED)""",
        "CREATE INDEX t_expr ON t ((j->>'a:b'), (p || '%'))",
        "COMMENT ON TABLE t IS '50% :x off'",
        "CREATE VIEW v AS SELECT id, p FROM t WHERE p LIKE '%5%' OR p = ':v'",
        "CREATE FUNCTION f(x text) RETURNS text LANGUAGE sql AS $$ SELECT x || '%:z' $$",
        "INSERT INTO t (p, m) VALUES ('5%', 'a:b'), ('y', 'it''s'), (':v', '100%')",
    ],
    "mysql": [
        """CREATE TABLE t (id int AUTO_INCREMENT PRIMARY KEY, j varchar(40) DEFAULT '{"a":1}',
           p varchar(20) DEFAULT '5%' CHECK (p <> ':x' AND p NOT LIKE '%zz'), m enum('100%','a:b','it''s') DEFAULT '100%',
           g int GENERATED ALWAYS AS (length(p) % 7) STORED) COMMENT '50% :x off'""",
        "CREATE VIEW v AS SELECT id, p FROM t WHERE p LIKE '%5%' OR p = ':v'",
        "CREATE FUNCTION f(x text) RETURNS text DETERMINISTIC RETURN CONCAT(x, '%:z')",
        "INSERT INTO t (p, m) VALUES ('5%', 'a:b'), ('y', 'it''s'), (':v', '100%')",
    ],
    "sqlite": [
        """CREATE TABLE t (id integer PRIMARY KEY, j text DEFAULT '{"a":1}', p text DEFAULT '5%'
           CHECK (p <> ':x' AND p NOT LIKE '%zz'), g int GENERATED ALWAYS AS (length(p) % 7) STORED)""",
        "CREATE INDEX t_expr ON t (lower(p) || '%:q')",
        "CREATE INDEX t_part ON t (lower(p), g DESC) WHERE p IS NOT NULL",
        "CREATE VIEW v AS SELECT id, p FROM t WHERE p LIKE '%5%' OR p = ':v'",
        "INSERT INTO t (p) VALUES ('5%'), ('y'), (':v')",
    ],
}


@pytest.mark.parametrize("kind", ENGINES)
def test_sql_text_with_a_percent_sign_and_a_colon(kind: str, make_db, tmp_path: Path) -> None:
    """Defaults, checks, generated columns, expression indexes, enum labels, comments, views and
    routines holding '%' and ':name' are recreated as they were (no placeholder read in them),
    MariaDB's column-level CHECK included, and a stored generated column stays stored."""
    src = make_db(kind, "sqt")
    e = sa.create_engine(src, poolclass=NullPool)
    raw = e.raw_connection()
    try:
        cur = raw.cursor()
        for stmt in _SQL_TEXT[kind]:
            if kind == "sqlite":
                cur.execute(stmt)
            else:
                cur.execute(stmt.replace("%", "%%"), ())
        raw.commit()
    finally:
        raw.close()
        e.dispose()
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db(kind, "sqd")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert api.compare(_cfg(src), _cfg(dst)).differences == []
    e = sa.create_engine(dst, poolclass=NullPool)

    def run(c: sa.Connection, sql: str) -> sa.CursorResult:
        return c.exec_driver_sql(sql if kind == "sqlite" else sql.replace("%", "%%"))

    try:
        with e.begin() as c:
            assert run(c, "SELECT p FROM v ORDER BY id").scalars().all() == ["5%", ":v"]
            run(c, "INSERT INTO t (p) VALUES ('new')")
            j, g = run(c, "SELECT j, g FROM t WHERE p = 'new'").one()
            assert (json.loads(j) if isinstance(j, str) else j) == {"a": 1}
            assert g == (4 if kind == "postgresql" else 3)     # PostgreSQL: id % 7, the sequence past the rows
            run(c, "INSERT INTO t (j) VALUES ('{}')")
            assert run(c, "SELECT p FROM t WHERE p IS NOT NULL ORDER BY id DESC").scalars().first() == "5%"
            if kind != "sqlite":
                assert run(c, "SELECT f('a')").scalar() == "a%:z"
                assert sa.inspect(c).get_table_comment("t")["text"] == "50% :x off"
            if kind == "sqlite":     # expression indexes, which SQLAlchemy does not read
                got = dict(run(c, "SELECT name, sql FROM sqlite_master WHERE type = 'index'").all())
                assert got["t_expr"].endswith(" (lower(p) || '%:q')")
                assert got["t_part"].endswith(" (lower(p), g DESC) WHERE p IS NOT NULL")
            if kind == "postgresql":
                assert run(c, "SELECT enum_range(NULL::mood)::text").scalar() == "{100%,a:b,it's}"
                assert run(c, "SELECT m FROM t WHERE p = 'new'").scalar() == "100%"
            if kind == "mysql":
                assert run(c, "SELECT m FROM t WHERE p = 'new'").scalar() == "100%"
                assert run(c, "SELECT extra FROM information_schema.columns WHERE table_schema = DATABASE() "
                              "AND table_name = 't' AND column_name = 'g'").scalar() == "STORED GENERATED"
        with pytest.raises(sa.exc.DBAPIError):
            with e.begin() as c:
                run(c, "INSERT INTO t (p) VALUES (':x')")
    finally:
        e.dispose()


_INDEXES = {
    "postgresql": ["CREATE TABLE t (id int PRIMARY KEY, email text, deleted timestamptz, doc jsonb, n int)",
                   "CREATE UNIQUE INDEX t_email ON t (email) WHERE deleted IS NULL",
                   "CREATE INDEX t_doc ON t USING gin (doc)",
                   "CREATE INDEX t_n ON t (n DESC NULLS LAST) INCLUDE (email)",
                   "CREATE INDEX t_low ON t (lower(email) text_pattern_ops)",
                   """INSERT INTO t VALUES (1, 'a@x', now(), '{"k": 1}', 1), (2, 'a@x', NULL, '{"k": 2}', NULL)"""],
    "mysql": ["CREATE TABLE t (id int PRIMARY KEY, body text, name varchar(200), KEY kb (body(20)), FULLTEXT KEY ft (body))",
              "INSERT INTO t VALUES (1, 'hello world', 'n'), (2, 'hello again', 'm')"],
}


@pytest.mark.parametrize(("src_kind", "dst_kind"), [("postgresql", "postgresql"), ("mysql", "mysql"),
                                                    ("postgresql", "mysql"), ("mysql", "postgresql")])
def test_index_options_are_kept(src_kind: str, dst_kind: str, make_db, tmp_path: Path) -> None:
    """On the same engine an index keeps what it is beyond its columns (a partial index's WHERE,
    GIN, DESC NULLS LAST, INCLUDE, an operator class; a prefix length, FULLTEXT); across
    engines such an index is left out with a note naming why, never made a plain index."""
    src = make_db(src_kind, "ixs")
    e = sa.create_engine(src, poolclass=NullPool)
    with e.begin() as c:
        for stmt in _INDEXES[src_kind]:
            c.exec_driver_sql(stmt)
    e.dispose()
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db(dst_kind, "ixd")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, accept_lossy=True))
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            if (src_kind, dst_kind) == ("postgresql", "postgresql"):
                defs = dict(c.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 't'").all())
                assert defs["t_email"].endswith("USING btree (email) WHERE (deleted IS NULL)")
                assert defs["t_doc"].endswith("USING gin (doc)")
                assert defs["t_n"].endswith("USING btree (n DESC NULLS LAST) INCLUDE (email)")
                assert defs["t_low"].endswith("USING btree (lower(email) text_pattern_ops)")
            elif src_kind == dst_kind:
                ddl = c.exec_driver_sql("SHOW CREATE TABLE t").one()[1]
                assert "KEY `kb` (`body`(20))" in ddl and "FULLTEXT KEY `ft` (`body`)" in ddl
            else:
                names = {i["name"] for i in sa.inspect(c).get_indexes("t")}
                if src_kind == "postgresql":
                    assert not names & {"t_email", "t_doc", "t_low"}
                    assert "t_n" in names
                else:
                    assert "ft" not in names and "kb" in names
    finally:
        e.dispose()
    if src_kind == dst_kind:
        assert api.compare(_cfg(src), _cfg(dst)).differences == []
    plan = api.restore(dumped.path, _cfg(make_db(dst_kind, "ixp"), allow_restore=True),
                       RestoreOptions(plan_only=True))
    notes = " | ".join(plan.changes)
    if (src_kind, dst_kind) == ("postgresql", "mysql"):
        assert "index t_email is engine-specific (partial: WHERE (deleted IS NULL))" in notes
        assert "index t_doc is engine-specific (USING gin)" in notes
    elif (src_kind, dst_kind) == ("mysql", "postgresql"):
        assert "index ft is engine-specific (FULLTEXT)" in notes


_DESC = {
    "mysql": ["CREATE TABLE t (id int NOT NULL, a int NOT NULL, b varchar(40), c int, PRIMARY KEY (id DESC, a), "
              "KEY t_ab (a DESC, b), UNIQUE KEY t_c (c DESC, a), KEY t_pre (b(8) DESC, a))",
              "INSERT INTO t VALUES (1, 1, 'x', 1), (2, 2, 'y', 2), (3, 2, NULL, NULL)"],
    "sqlite": ["CREATE TABLE t (id integer PRIMARY KEY, a int, b varchar(40), c int, d int, UNIQUE (d DESC))",
               "CREATE INDEX t_ab ON t (a DESC, b)",
               "CREATE UNIQUE INDEX t_c ON t (c DESC, a)",
               "INSERT INTO t VALUES (1, 1, 'x', 1, 1), (2, 2, 'y', 2, 2), (3, 2, NULL, NULL, NULL)"],
    "postgresql": ["CREATE TABLE t (id int PRIMARY KEY, a int, b varchar(40), c int)",
                   "CREATE INDEX t_ab ON t (a DESC, b)",
                   "CREATE UNIQUE INDEX t_c ON t (c DESC, a)",
                   "CREATE INDEX t_n ON t (a DESC NULLS LAST, b NULLS FIRST)",
                   "INSERT INTO t VALUES (1, 1, 'x', 1), (2, 2, 'y', 2), (3, 2, NULL, NULL)"],
}


def _index_parts(c: sa.Connection, kind: str) -> dict[str, tuple[bool, list[str]]]:
    """Each index of table ``t`` as the target's catalog has it: (unique, ["col DESC", "col", …])."""
    out: dict[str, tuple[bool, list[str]]] = {}
    if kind == "mysql":
        rows = c.exec_driver_sql(
            "SELECT index_name, non_unique = 0, column_name, collation = 'D' FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND table_name = 't' ORDER BY index_name, seq_in_index").all()
    elif kind == "sqlite":
        rows = c.exec_driver_sql(
            "SELECT l.name, l.\"unique\", x.name, x.desc FROM pragma_index_list('t') l, pragma_index_xinfo(l.name) x "
            "WHERE x.key AND x.cid >= 0 ORDER BY l.name, x.seqno").all()
    else:   # indoption: 1 DESC, 2 NULLS FIRST (the default of DESC)
        rows = c.exec_driver_sql(
            "SELECT i.relname, x.indisunique, a.attname || CASE o.opt & 3 WHEN 1 THEN ' DESC NULLS LAST' "
            "WHEN 3 THEN ' DESC' WHEN 2 THEN ' NULLS FIRST' ELSE '' END, false "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "CROSS JOIN LATERAL unnest(x.indkey::int2[], x.indoption::int2[]) WITH ORDINALITY o(attnum, opt, n) "
            "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = o.attnum "
            "WHERE x.indrelid = 't'::regclass ORDER BY i.relname, o.n").all()
    for name, unique, col, desc in rows:
        out.setdefault(name, (bool(unique), []))[1].append(col + (" DESC" if desc else ""))
    return out


DESC_RUNS = [("mysql", "mysql"), ("sqlite", "sqlite"), ("mysql", "postgresql"), ("sqlite", "postgresql"),
             ("postgresql", "mysql"), ("postgresql", "sqlite")]


@pytest.mark.parametrize(("src_kind", "dst_kind"), DESC_RUNS, ids=[f"{SHORT[s]}-to-{SHORT[d]}" for s, d in DESC_RUNS])
def test_desc_index_parts_are_kept(src_kind: str, dst_kind: str, make_db, tmp_path: Path) -> None:
    """A DESC index part (MariaDB 10.8+ and SQLite, which SQLAlchemy does not read, and
    PostgreSQL) is restored DESC into the same engine and into another one; NULLS FIRST/LAST
    only into PostgreSQL (elsewhere the plan says so), a MariaDB primary key's DESC part only
    into MariaDB; same-engine compare sees a part that became ascending."""
    src = _source(make_db, src_kind, "dsc", _DESC[src_kind])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db(dst_kind, "dsd")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert api.compare(_cfg(src), _cfg(dst)).differences == []
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            got = _index_parts(c, dst_kind)
            if dst_kind == "mysql":
                ddl = c.exec_driver_sql("SHOW CREATE TABLE t").one()[1]
    finally:
        e.dispose()
    assert got["t_ab"] == (False, ["a DESC", "b"])
    assert got["t_c"] == (True, ["c DESC", "a"])
    if src_kind == "mysql":
        assert got["t_pre"] == (False, ["b DESC", "a"])
        pk = "PRIMARY" if dst_kind == "mysql" else "t_pkey"
        assert got[pk] == (True, ["id DESC", "a"] if dst_kind == "mysql" else ["id", "a"])
    if src_kind == "sqlite":    # UNIQUE (d DESC) in the table's definition: a unique index (into
        # SQLite the table's own, made by its definition as in the source)
        assert got["ix_t_d" if dst_kind != "sqlite" else "sqlite_autoindex_t_1"] == (True, ["d DESC"])
    if src_kind == "postgresql":
        assert got["t_n"] == (False, ["a DESC", "b"])
    if (src_kind, dst_kind) == ("mysql", "mysql"):
        assert "KEY `t_pre` (`b`(8) DESC,`a`)" in ddl
    plan = api.restore(dumped.path, _cfg(make_db(dst_kind, "dsp"), allow_restore=True),
                       RestoreOptions(plan_only=True))
    notes = " | ".join(plan.changes)
    if (src_kind, dst_kind) == ("mysql", "postgresql"):
        assert "t: primary key: the descending order of id is not kept" in notes
    if src_kind == "postgresql":
        assert "t: index t_n: a NULLS LAST, b NULLS FIRST is not kept" in notes
    if src_kind == dst_kind:
        assert "not kept" not in notes
        # the target's index made ascending (and MariaDB's primary key): compare says so
        e = sa.create_engine(dst, poolclass=NullPool)
        try:
            with e.begin() as c:
                c.exec_driver_sql("DROP INDEX t_ab" + (" ON t" if dst_kind == "mysql" else ""))
                c.exec_driver_sql("CREATE INDEX t_ab ON t (a, b)")
                if dst_kind == "mysql":
                    c.exec_driver_sql("ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, a)")
        finally:
            e.dispose()
        diff = api.compare(_cfg(src), _cfg(dst)).differences
        assert any(d.startswith("table t: indexes differ") and "desc" in d for d in diff), diff
        if dst_kind == "mysql":
            assert "table t: primary key order differs (descending: ['id'] ≠ [])" in diff


def test_a_mariadb_json_column_moves_to_postgresql_as_json_text_unchanged(make_db, tmp_path: Path) -> None:
    """MariaDB's JSON is LONGTEXT with a column-level json_valid() CHECK (which SQLAlchemy does
    not read): it is found, the column restores into PostgreSQL as json holding the text as it
    was (key order, duplicate keys, spacing, number spelling), and the read-back compares lines."""
    src = make_db("mysql", "mjs")
    e = sa.create_engine(src, poolclass=NullPool)
    docs = ['{"b": 1, "a": [1.0e2, 2]}', '{"k":1,"k":2}', '[ ]', None]
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE d (id int PRIMARY KEY, doc JSON, note text CHECK (note <> 'x'))")
        c.execute(sa.text("INSERT INTO d VALUES (:i, :d, 'n')"), [{"i": i, "d": d} for i, d in enumerate(docs)])
    e.dispose()
    dumped = api.dump(_cfg(src), tmp_path / "b")
    table = api.open_backup(dumped.path).schema.table("d")
    assert [c.type.kind for c in table.columns] == ["integer", "json", "text"]
    assert [(k.name, k.sqltext) for k in table.checks] == [("note", "`note` <> 'x'")]
    dst = make_db("postgresql", "mjd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert res.tables[0]["read_back"] == "text"
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert c.exec_driver_sql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                     "WHERE attrelid = 'd'::regclass AND attname = 'doc'").scalar() == "json"
            assert c.exec_driver_sql("SELECT doc::text FROM d ORDER BY id").scalars().all() == docs
    finally:
        e.dispose()


@pytest.mark.parametrize(("dst_kind", "jobs"), [("postgresql", 1), ("postgresql", 2), ("sqlite", 1)])
def test_a_partitioned_table_is_backed_up_once_with_its_partitions_rows(dst_kind: str, jobs: int, make_db,
                                                                         tmp_path: Path) -> None:
    """The rows of a partitioned PostgreSQL table are read through it, and its partitions (sub-
    partitions too) are not tables of their own: each row is in the backup once. Into
    PostgreSQL the partitions are made again and each row lands in its own; elsewhere the
    restore says it makes one table of it. A DEFERRABLE foreign key stays deferrable."""
    src = _source(make_db, "postgresql", "prt", [
        "CREATE TABLE m (id int, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
        "CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        "CREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY HASH (id)",
        "CREATE TABLE m_2025_a PARTITION OF m_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
        "CREATE TABLE m_2025_b PARTITION OF m_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 1)",
        "INSERT INTO m SELECT g, DATE '2024-01-01' + g, 'v' || g FROM generate_series(1, 600) g",
        "ANALYZE m",
        "CREATE TABLE p (id int PRIMARY KEY)",
        "CREATE TABLE c (id int PRIMARY KEY, pid int REFERENCES p DEFERRABLE INITIALLY DEFERRED)",
        "INSERT INTO p VALUES (1)",
        "INSERT INTO c VALUES (1, 1)",
    ])
    dumped = api.dump(_cfg(src, jobs=jobs, chunk_rows=100), tmp_path / "b")
    b = api.open_backup(dumped.path)
    assert sorted(b.tables) == ["c", "m", "p"] and dumped.rows == 602
    assert b.schema.table("m").partitions == ["m_2024", "m_2025", "m_2025_a", "m_2025_b"]
    if jobs > 1:
        assert len(b.tables["m"]["chunks"]) >= 4       # the partitioned table is cut into key ranges
    dst = make_db(dst_kind, "prd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert res.rows == 602
    merged = any("m: partitioned in the source (4 partitions: m_2024, m_2025, m_2025_a, m_2025_b): restored as one "
                 "table holding all their rows" in x for x in res.changes)
    assert merged == (dst_kind != "postgresql")
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert c.exec_driver_sql("SELECT count(*), count(DISTINCT id), min(v), max(at) FROM m").one()[:3] == \
                (600, 600, "v1")
            if dst_kind == "postgresql":
                assert sorted(sa.inspect(c).get_table_names()) == ["c", "m", "m_2024", "m_2025", "m_2025_a", "m_2025_b",
                                                                  "p"]
                where = dict(c.exec_driver_sql("SELECT tableoid::regclass::text, count(*) FROM m GROUP BY 1").all())
                assert where == {"m_2024": 365, "m_2025_a": where["m_2025_a"], "m_2025_b": 235 - where["m_2025_a"]}
                assert c.exec_driver_sql("SELECT pg_get_partkeydef('m_2025'::regclass)").scalar() == "HASH (id)"
                assert c.exec_driver_sql("SELECT condeferrable, condeferred FROM pg_constraint "
                                         "WHERE contype = 'f' AND conrelid = 'c'::regclass").one() == (True, True)
            else:
                assert sorted(sa.inspect(c).get_table_names()) == ["c", "m", "p"]
    finally:
        e.dispose()
    assert api.compare(_cfg(src), _cfg(dst)).differences == []


@pytest.mark.parametrize(("dst_kind", "jobs"), [("postgresql", 1), ("postgresql", 2), ("sqlite", 1)])
def test_a_partitions_own_indexes_and_constraints_are_kept(dst_kind: str, jobs: int, make_db,
                                                           tmp_path: Path) -> None:
    """PostgreSQL: indexes and constraints made on one partition alone (not through the
    partitioned table) are in the backup with that partition and made again on it; those the
    partitions have from the partitioned table are not theirs. Elsewhere the plan says they are
    not kept; compare sees one that is missing."""
    src = _source(make_db, "postgresql", "pown", [
        "CREATE TABLE m (id int, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
        "CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        "CREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY HASH (id)",
        "CREATE TABLE m_2025_a PARTITION OF m_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
        "CREATE TABLE m_2025_b PARTITION OF m_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 1)",
        "CREATE INDEX m_v ON m (v)",
        "CREATE INDEX m_2024_recent ON m_2024 (at DESC) WHERE v LIKE 'v5%%'",
        "ALTER TABLE m_2024 ADD CONSTRAINT m_2024_v_short CHECK (length(v) < 50)",
        "ALTER TABLE m_2024 ADD CONSTRAINT m_2024_v_uq UNIQUE (v)",
        "CREATE INDEX m_2025_own ON m_2025 (v, id)",
        "ALTER TABLE m_2024 SET (fillfactor = 80, autovacuum_enabled = false)",
        "INSERT INTO m SELECT g, DATE '2024-01-01' + g, 'v' || g FROM generate_series(1, 600) g",
    ])
    dumped = api.dump(_cfg(src, jobs=jobs, chunk_rows=100), tmp_path / "b")
    tree = {p["name"]: p for p in api.open_backup(dumped.path).schema.table("m").partition_tree}
    assert [(x["name"], x["unique"], x["sql"]) for x in tree["m_2024"]["indexes"]] == [
        ("m_2024_recent", False, "USING btree (at DESC) WHERE (v ~~ 'v5%'::text)")]
    assert [(x["name"], x["sql"]) for x in tree["m_2024"]["constraints"]] == [
        ("m_2024_v_short", "CHECK ((length(v) < 50))"), ("m_2024_v_uq", "UNIQUE (v)")]
    assert [(x["name"], x["sql"]) for x in tree["m_2025"]["indexes"]] == [("m_2025_own", "USING btree (v, id)")]
    assert "indexes" not in tree["m_2025_a"] and "constraints" not in tree["m_2025_a"]
    assert tree["m_2024"]["options"] == {"postgresql_storage": ["fillfactor=80", "autovacuum_enabled=false"]}
    assert "options" not in tree["m_2025"]
    dst = make_db(dst_kind, "pownd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert res.rows == 600
    dropped = [x for x in res.changes if "the partitions' own indexes and constraints (4: " in x]
    assert len(dropped) == (dst_kind != "postgresql")
    if dst_kind != "postgresql":
        return
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            defs = dict(c.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename LIKE 'm%%'").all())
            assert defs["m_2024_recent"].endswith("ON public.m_2024 USING btree (at DESC) WHERE (v ~~ 'v5%'::text)")
            assert "m_2024_v_uq" in defs and "m_2025_own" in defs
            # the sub-partitions' indexes of m_2025_own are made through it, attached to it
            assert c.exec_driver_sql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'm_2025_own'::regclass"
                                     ).scalar() == 2
            assert c.exec_driver_sql("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = "
                                     "'m_2024_v_short' AND conrelid = 'm_2024'::regclass").scalar() == \
                "CHECK ((length(v) < 50))"
            assert c.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = 'm_2024'").scalar() == \
                ["fillfactor=80", "autovacuum_enabled=false"]
        assert api.compare(_cfg(src), _cfg(dst)).differences == []
        with e.begin() as c:
            c.exec_driver_sql("DROP INDEX m_2024_recent")
        assert api.compare(_cfg(src), _cfg(dst)).differences == [
            "table m: the partitions' own indexes, constraints and options differ (m_2024_recent on m_2024)"]
    finally:
        e.dispose()


@pytest.mark.parametrize("dst_kind", ["sqlite", "postgresql"])
def test_sqlite_column_and_index_collations_are_kept(dst_kind: str, make_db, tmp_path: Path) -> None:
    """SQLite: a column's COLLATE (which no pragma reports: read from the CREATE TABLE) and an
    index column's own COLLATE are made again, so the restored table compares text as the
    source did; compare sees a collation that is lost. Into another engine the plan says the
    index's collation is not kept."""
    src = _source(make_db, "sqlite", "coll", [
        'CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT COLLATE NOCASE, "odd, name" VARCHAR(20) '
        "COLLATE RTRIM NOT NULL DEFAULT 'x', code TEXT CHECK (code <> 'q'), b TEXT COLLATE BINARY)",
        "CREATE INDEX t_code ON t (code COLLATE NOCASE DESC)",
        "CREATE INDEX t_name ON t (name)",
        "INSERT INTO t VALUES (1, 'Abc', 'y  ', 'X1', 'b'), (2, 'abd', 'z', 'x2', 'B')",
        "CREATE TABLE u (id INTEGER PRIMARY KEY, tag TEXT, UNIQUE (tag COLLATE NOCASE))",
        "INSERT INTO u VALUES (1, 'Red')",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    table = api.open_backup(dumped.path).schema.table("t")
    assert {c.name: c.original_type for c in table.columns} == {
        "id": "INTEGER", "name": "TEXT COLLATE NOCASE", "odd, name": "VARCHAR(20) COLLATE RTRIM", "code": "TEXT",
        "b": "TEXT"}
    assert {i.name: (i.options or {}).get("column_collation") for i in table.indexes} == {
        "t_code": {"code": "NOCASE"}, "t_name": None}
    dst = make_db(dst_kind, "colld")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    note = [x for x in res.changes if "index t_code: code COLLATE NOCASE is not kept" in x]
    assert len(note) == (dst_kind != "sqlite")
    assert len([x for x in res.changes if "u: index ix_u_tag: tag COLLATE NOCASE is not kept" in x]) == \
        (dst_kind != "sqlite"), res.changes
    if dst_kind != "sqlite":
        return
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert c.exec_driver_sql("SELECT id FROM t WHERE name = 'ABC'").scalars().all() == [1]
            assert c.exec_driver_sql("SELECT id FROM t WHERE \"odd, name\" = 'y'").scalars().all() == [1]
            assert c.exec_driver_sql("SELECT coll FROM pragma_index_xinfo('t_code') WHERE key").scalar() == "NOCASE"
            with pytest.raises(sa.exc.IntegrityError, match="UNIQUE"):    # the table's UNIQUE (tag COLLATE NOCASE)
                c.exec_driver_sql("INSERT INTO u VALUES (2, 'RED')")
        assert api.compare(_cfg(src), _cfg(dst)).differences == []
        with e.begin() as c:       # the same table without its collations
            c.exec_driver_sql("DROP TABLE t")
            c.exec_driver_sql('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, "odd, name" VARCHAR(20) NOT NULL '
                              "DEFAULT 'x', code TEXT CHECK (code <> 'q'), b TEXT)")
            c.exec_driver_sql("CREATE INDEX t_code ON t (code DESC)")
            c.exec_driver_sql("CREATE INDEX t_name ON t (name)")
            c.exec_driver_sql("INSERT INTO t VALUES (1, 'Abc', 'y  ', 'X1', 'b'), (2, 'abd', 'z', 'x2', 'B')")
        diff = api.compare(_cfg(src), _cfg(dst)).differences
        assert len(diff) == 2 and "name" in diff[0] and "COLLATE NOCASE" in diff[0] and "indexes differ" in diff[1], diff
    finally:
        e.dispose()


def test_sqlite_without_rowid_and_strict_tables_stay_so(make_db, tmp_path: Path) -> None:
    """SQLite: WITHOUT ROWID and STRICT are table options no pragma reports: read from the
    CREATE TABLE and made again; an INTEGER PRIMARY KEY of a table without rowid is given no
    values (it is no rowid alias); compare sees a table that lost them."""
    src = _source(make_db, "sqlite", "rowid", [
        "CREATE TABLE w (k INTEGER PRIMARY KEY, v TEXT) WITHOUT ROWID",
        "CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT, n INTEGER) STRICT",
        "CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT) STRICT, WITHOUT ROWID",
        "INSERT INTO w VALUES (5, 'a')", "INSERT INTO s VALUES (1, 'x', 3)", "INSERT INTO b VALUES (2, 'y')",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    schema = api.open_backup(dumped.path).schema
    assert schema.table("w").options == {"sqlite_with_rowid": False}
    assert schema.table("s").options == {"sqlite_strict": True} and schema.table("s").columns[0].autoincrement
    assert schema.table("b").options == {"sqlite_strict": True, "sqlite_with_rowid": False}
    assert not schema.table("w").columns[0].autoincrement
    dst = make_db("sqlite", "rowidd")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            made = dict(c.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all())
            assert made["w"].rstrip().endswith("WITHOUT ROWID") and made["s"].rstrip().endswith("STRICT")
            with pytest.raises(sa.exc.IntegrityError, match="cannot store TEXT value in INTEGER column"):
                c.exec_driver_sql("INSERT INTO s VALUES (2, 'z', 'not a number')")
            with pytest.raises(sa.exc.IntegrityError, match="NOT NULL"):
                c.exec_driver_sql("INSERT INTO w (v) VALUES ('no key')")    # no rowid to give it one
        assert api.compare(_cfg(src), _cfg(dst)).differences == []
        with e.begin() as c:
            c.exec_driver_sql("DROP TABLE s")
            c.exec_driver_sql("CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)")
            c.exec_driver_sql("INSERT INTO s VALUES (1, 'x', 3)")
        assert api.compare(_cfg(src), _cfg(dst)).differences == ["table s: table options differ (sqlite_strict=True)"]
    finally:
        e.dispose()


@pytest.mark.parametrize("jobs", [1, 2])
def test_postgresql_unlogged_tables_and_storage_parameters_are_kept(jobs: int, make_db, tmp_path: Path) -> None:
    """PostgreSQL: an UNLOGGED table stays unlogged, and storage parameters (the table's and its
    TOAST table's) are set again; compare sees them; another engine takes the rows only."""
    src = _source(make_db, "postgresql", "unl", [
        "CREATE UNLOGGED TABLE u (id int PRIMARY KEY, v text)",
        "CREATE TABLE f (id int PRIMARY KEY, v text) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.05)",
        "ALTER TABLE f SET (toast.autovacuum_enabled = false)",
        "INSERT INTO u SELECT g, 'u' || g FROM generate_series(1, 300) g",
        "INSERT INTO f SELECT g, 'f' || g FROM generate_series(1, 300) g",
    ])
    dumped = api.dump(_cfg(src, jobs=jobs, chunk_rows=100), tmp_path / "b")
    schema = api.open_backup(dumped.path).schema
    assert schema.table("u").options == {"postgresql_unlogged": True}
    assert schema.table("f").options == {"postgresql_storage": [
        "fillfactor=70", "autovacuum_vacuum_scale_factor=0.05", "toast.autovacuum_enabled=false"]}
    dst = make_db("postgresql", "unld")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            got = {r[0]: r[1:] for r in c.exec_driver_sql(
                "SELECT relname, relpersistence, reloptions, (SELECT reloptions FROM pg_class t "
                "WHERE t.oid = c.reltoastrelid) FROM pg_class c WHERE relname IN ('u', 'f')")}
            assert got == {"u": ("u", None, None), "f": ("p", ["fillfactor=70", "autovacuum_vacuum_scale_factor=0.05"],
                                                         ["autovacuum_enabled=false"])}
            assert c.exec_driver_sql("SELECT count(*) FROM u").scalar() == 300
        assert api.compare(_cfg(src), _cfg(dst)).differences == []
        with e.begin() as c:
            c.exec_driver_sql("ALTER TABLE u SET LOGGED")
            c.exec_driver_sql("ALTER TABLE f RESET (fillfactor)")
        assert api.compare(_cfg(src), _cfg(dst)).differences == [
            "table f: table options differ (postgresql_storage=['fillfactor=70', 'autovacuum_vacuum_scale_factor=0.05', "
            "'toast.autovacuum_enabled=false'])", "table u: table options differ (postgresql_unlogged=True)"]
    finally:
        e.dispose()
    lite = make_db("sqlite", "unll")
    assert api.restore(dumped.path, _cfg(lite, allow_restore=True), RestoreOptions(allow_restore=True)).rows == 600


@pytest.mark.parametrize("jobs", [1, 2])
def test_postgresql_materialized_views_keep_their_indexes(jobs: int, make_db, tmp_path: Path) -> None:
    """A materialized view is made again with its indexes, so one with a unique index can still
    be refreshed CONCURRENTLY; one never refreshed stays empty; names holding a '%' stay as they
    are."""
    src = _source(make_db, "postgresql", "mvix", [
        "CREATE TABLE t (id int PRIMARY KEY, v text)",
        "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g",
        "CREATE MATERIALIZED VIEW mv AS SELECT id, upper(v) AS u FROM t",
        "CREATE UNIQUE INDEX mv_id ON mv (id)",
        "CREATE INDEX mv_u ON mv (u) WHERE id > 10",
        'CREATE MATERIALIZED VIEW "m%%v" AS SELECT id FROM t',
        'CREATE INDEX "m%%v_i" ON "m%%v" (id DESC)',
        "CREATE MATERIALIZED VIEW never AS SELECT id / 0 AS boom FROM t WITH NO DATA",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("postgresql", "mvixd")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.begin() as c:
            defs = dict(c.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('mv', 'm%%v')").all())
            assert defs == {"mv_id": "CREATE UNIQUE INDEX mv_id ON public.mv USING btree (id)",
                            "mv_u": "CREATE INDEX mv_u ON public.mv USING btree (u) WHERE (id > 10)",
                            "m%v_i": 'CREATE INDEX "m%v_i" ON public."m%v" USING btree (id DESC)'}
            c.exec_driver_sql("UPDATE t SET v = 'changed' WHERE id = 1")
            # one never refreshed stays unfilled (filling it would fail: division by zero)
            assert c.exec_driver_sql("SELECT relname, relispopulated FROM pg_class WHERE relkind = 'm' "
                                     "ORDER BY relname").all() == [("m%v", True), ("mv", True), ("never", False)]
        with e.connect() as c:      # CONCURRENTLY runs outside a transaction block
            c.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("REFRESH MATERIALIZED VIEW CONCURRENTLY mv")
            assert c.exec_driver_sql("SELECT u FROM mv WHERE id = 1").scalar() == "CHANGED"
    finally:
        e.dispose()


@pytest.mark.parametrize("jobs", [1, 2])
def test_postgresql_replica_identity_and_column_settings_are_kept(jobs: int, make_db, tmp_path: Path) -> None:
    """PostgreSQL: REPLICA IDENTITY (FULL, NOTHING, or using an index, set once the index is
    built), and columns' STORAGE, COMPRESSION and STATISTICS other than their type's default,
    are set again; compare sees what differs."""
    src = _source(make_db, "postgresql", "rid", [
        "CREATE TABLE f (id int PRIMARY KEY, v text, w text, n int)",
        "ALTER TABLE f REPLICA IDENTITY FULL",
        "ALTER TABLE f ALTER COLUMN v SET STORAGE EXTERNAL, ALTER COLUMN w SET COMPRESSION lz4, "
        "ALTER COLUMN n SET STATISTICS 500",
        "CREATE TABLE z (id int PRIMARY KEY)", "ALTER TABLE z REPLICA IDENTITY NOTHING",
        "CREATE TABLE i (id int PRIMARY KEY, k int NOT NULL)", "CREATE UNIQUE INDEX i_k ON i (k)",
        "ALTER TABLE i REPLICA IDENTITY USING INDEX i_k",
        "INSERT INTO f VALUES (1, 'a', 'b', 3)", "INSERT INTO z VALUES (1)", "INSERT INTO i VALUES (1, 2)",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    schema = api.open_backup(dumped.path).schema
    assert schema.table("f").options == {
        "postgresql_replica_identity": "full", "postgresql_column_storage": {"v": "external"},
        "postgresql_column_compression": {"w": "lz4"}, "postgresql_column_statistics": {"n": 500}}
    assert schema.table("i").options == {"postgresql_replica_identity": {"index": "i_k"}}
    dst = make_db("postgresql", "ridd")
    planned = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True,
                                                                                      plan_only=True))
    assert planned.ddl[-1] == 'ALTER TABLE "i" REPLICA IDENTITY USING INDEX "i_k";', planned.ddl[-3:]
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert dict(c.exec_driver_sql("SELECT relname, relreplident FROM pg_class WHERE relname IN ('f', 'z', 'i')"
                                          ).all()) == {"f": "f", "z": "n", "i": "i"}
            assert c.exec_driver_sql("SELECT indexrelid::regclass::text FROM pg_index WHERE indisreplident").all() == \
                [("i_k",)]
            assert c.exec_driver_sql("SELECT attname, attstorage, attcompression, attstattarget FROM pg_attribute "
                                     "WHERE attrelid = 'f'::regclass AND attnum > 0 ORDER BY attnum").all() == [
                ("id", "p", "", -1), ("v", "e", "", -1), ("w", "x", "l", -1), ("n", "p", "", 500)]
        assert api.compare(_cfg(src), _cfg(dst)).differences == []
        with e.begin() as c:
            c.exec_driver_sql("ALTER TABLE f ALTER COLUMN v SET STORAGE EXTENDED")
            c.exec_driver_sql("ALTER TABLE i REPLICA IDENTITY DEFAULT")
        assert api.compare(_cfg(src), _cfg(dst)).differences == [
            "table f: table options differ (postgresql_column_storage={'v': 'external'})",
            "table i: table options differ (postgresql_replica_identity={'index': 'i_k'})"]
    finally:
        e.dispose()


def test_compare_sees_a_foreign_key_that_lost_deferrable_on_the_same_engine() -> None:
    from albackup.compare import compare_schema
    from albackup.model import Column, ForeignKey, LogicalType, Schema, Table

    def schema(deferrable: bool | None, initially: str | None) -> Schema:
        col = Column("id", LogicalType("integer", bits=32), "INTEGER", nullable=False)
        return Schema("postgresql", [Table("p", columns=[col], primary_key=["id"]),
                                     Table("c", columns=[col], primary_key=["id"],
                                           foreign_keys=[ForeignKey("fk", ["id"], "p", ["id"], None, None, None,
                                                                    deferrable, initially)])])

    kept, lost = schema(True, "DEFERRED"), schema(None, None)
    assert compare_schema(kept, schema(True, "deferred"), exact_types=True) == []
    assert compare_schema(kept, lost, exact_types=True)[0].startswith("table c: foreign keys differ")
    assert compare_schema(kept, lost, exact_types=False) == []      # across engines: not every engine has it


def test_compare_sees_partitioning_that_differs_on_the_same_engine() -> None:
    from albackup.compare import compare_schema
    from albackup.model import Column, LogicalType, Schema, Table

    def schema(by: str | None, bound: str = "FOR VALUES FROM (1) TO (9)") -> Schema:
        col = Column("id", LogicalType("integer", bits=32), "INTEGER", nullable=False)
        tree = [{"name": "m_1", "schema": None, "parent": "m", "bound": bound, "partition_by": None}] if by else []
        return Schema("postgresql", [Table("m", columns=[col], primary_key=["id"], partitions=["m_1"] if by else [],
                                           partition_by=by, partition_tree=tree)])

    assert compare_schema(schema("RANGE (id)"), schema("RANGE (id)"), exact_types=True) == []
    assert compare_schema(schema("RANGE (id)"), schema(None), exact_types=True) == [
        "table m: partitioning differs (RANGE (id) with 1 partitions ≠ none with 0)"]
    assert compare_schema(schema("RANGE (id)"), schema("RANGE (id)", "FOR VALUES FROM (1) TO (5)"),
                          exact_types=True)[0].startswith("table m: partitioning differs")
    assert compare_schema(schema("RANGE (id)"), schema(None), exact_types=False) == []


# run through exec_driver_sql, which formats: '%%' is one '%'
MY_PARTITIONED = [
    "CREATE TABLE r (id int NOT NULL, d date NOT NULL, v varchar(20), PRIMARY KEY (id, d), UNIQUE KEY r_dv (d, v), "
    "KEY r_v (v)) PARTITION BY RANGE (YEAR(d)) (PARTITION p2020 VALUES LESS THAN (2021), PARTITION `p 2021` VALUES "
    "LESS THAN (2022) COMMENT 'the 50%% year', PARTITION pmax VALUES LESS THAN MAXVALUE)",
    "INSERT INTO r WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 600) "
    "SELECT n, DATE '2020-06-01' + INTERVAL n DAY, concat('v', n) FROM g",
    "CREATE TABLE h (id int NOT NULL PRIMARY KEY, v int) PARTITION BY HASH (id) PARTITIONS 3",
    "INSERT INTO h WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 200) "
    "SELECT n, n * 2 FROM g",
    "CREATE TABLE l (id int NOT NULL, k varchar(4) NOT NULL, PRIMARY KEY (id, k)) PARTITION BY LIST COLUMNS (k) "
    "(PARTITION pab VALUES IN ('a', 'b'), PARTITION pc VALUES IN ('c', 'd%%'))",
    "INSERT INTO l VALUES (1, 'a'), (2, 'b'), (3, 'b'), (4, 'c'), (5, 'd%%')",
    "CREATE TABLE plain (id int PRIMARY KEY)",
    "INSERT INTO plain VALUES (1)",
]


def _my_partitions(url: sa.URL) -> dict[str, list[tuple[str, str | None, int]]]:
    """Per partitioned table: each partition's name, bound and row count (counted in it)."""
    e = sa.create_engine(url, poolclass=NullPool)
    out: dict[str, list[tuple[str, str | None, int]]] = {}
    try:
        with e.connect() as c:
            for table, name, bound in c.exec_driver_sql(
                    "SELECT table_name, partition_name, partition_description FROM information_schema.partitions "
                    "WHERE table_schema = DATABASE() AND partition_name IS NOT NULL "
                    "ORDER BY table_name, partition_ordinal_position").all():
                n = c.exec_driver_sql(f"SELECT count(*) FROM `{table}` PARTITION (`{name}`)").scalar()
                out.setdefault(table, []).append((name, bound, n))
    finally:
        e.dispose()
    return out


@pytest.mark.parametrize(("dst_kind", "jobs"), [("mysql", 1), ("mysql", 2), ("postgresql", 1), ("sqlite", 1)])
def test_mysql_partitioned_tables_keep_their_partitions(dst_kind: str, jobs: int, make_db, tmp_path: Path) -> None:
    """A partitioned MariaDB/MySQL table is restored into the same engine with its partitions
    (names, bounds, each row in its own); into another engine it is one table holding all the
    rows, and the plan says so."""
    src = _source(make_db, "mysql", "mpt", MY_PARTITIONED)
    want = _my_partitions(src)
    assert [(n, b) for n, b, _ in want["r"]] == [("p2020", "2021"), ("p 2021", "2022"), ("pmax", "MAXVALUE")]
    assert [n for _, _, n in want["r"]] == [213, 365, 22] and [n for _, _, n in want["l"]] == [3, 2]
    dumped = api.dump(_cfg(src, jobs=jobs, chunk_rows=100), tmp_path / "b")
    b = api.open_backup(dumped.path)
    assert b.schema.table("r").partition_clause.startswith("PARTITION BY RANGE (year(`d`))")
    assert "PARTITIONS 3" in b.schema.table("h").partition_clause and b.schema.table("plain").partition_clause is None
    assert not any("partition" in k for k in b.schema.table("r").options)
    dst = make_db(dst_kind, "mpd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert res.rows == 600 + 200 + 5 + 1
    notes = sorted(x for x in res.changes if "partitioned" in x)
    if dst_kind == "mysql":
        assert notes == []
        assert _my_partitions(dst) == want
        assert api.compare(_cfg(src), _cfg(dst)).differences == []
        e = sa.create_engine(dst, poolclass=NullPool)
        try:
            with e.begin() as c:
                assert c.exec_driver_sql("SELECT partition_comment FROM information_schema.partitions WHERE "
                                         "table_schema = DATABASE() AND partition_name = 'p 2021'").scalar() == \
                    "the 50% year"
                c.exec_driver_sql("ALTER TABLE h REMOVE PARTITIONING")
                c.exec_driver_sql("ALTER TABLE l REORGANIZE PARTITION pc INTO (PARTITION pc VALUES IN ('c'), "
                                  "PARTITION pd VALUES IN ('d%%'))")
        finally:
            e.dispose()
        assert sorted(api.compare(_cfg(src), _cfg(dst)).differences) == [
            "table h: partitioning differs (PARTITION BY HASH (`id`) ≠ none)",
            "table l: partitioning differs (PARTITION BY LIST  COLUMNS(`k`), with other partitions)"]
    else:
        assert notes == [
            "h: partitioned in the source (PARTITION BY HASH (`id`)): restored as one table holding all the rows of "
            "its partitions",
            "l: partitioned in the source (PARTITION BY LIST  COLUMNS(`k`)): restored as one table holding all the "
            "rows of its partitions",
            "r: partitioned in the source (PARTITION BY RANGE (year(`d`))): restored as one table holding all the "
            "rows of its partitions"]
        e = sa.create_engine(dst, poolclass=NullPool)
        try:
            with e.connect() as c:
                assert c.exec_driver_sql("SELECT count(*), count(DISTINCT id), min(v) FROM r").one() == (600, 600, "v1")
                assert c.exec_driver_sql("SELECT count(*), sum(v) FROM h").one() == (200, 200 * 201)
                assert c.exec_driver_sql("SELECT k FROM l ORDER BY id").scalars().all() == ["a", "b", "b", "c", "d%"]
        finally:
            e.dispose()
        assert api.compare(_cfg(src), _cfg(dst)).differences == []


def test_the_partition_clause_is_read_from_show_create_table() -> None:
    """MariaDB prints the clause plainly, MySQL inside a version comment; a PARTITION BY in a
    comment or a string (a line of its own included) is not it."""
    from albackup.engines.mysql import partition_clause, restorable_partition_clause

    mysql = ("CREATE TABLE `r` (\n  `id` int NOT NULL,\n  `d` date NOT NULL COMMENT 'a\n PARTITION BY x',\n"
             "  PRIMARY KEY (`id`,`d`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='PARTITION BY y'\n"
             "/*!50100 PARTITION BY RANGE (year(`d`))\n(PARTITION p2020 VALUES LESS THAN (2021) ENGINE = InnoDB,\n"
             " PARTITION `p 2021` VALUES LESS THAN MAXVALUE COMMENT = 'it''s */ here' ENGINE = InnoDB) */")
    assert partition_clause(mysql) == (
        "PARTITION BY RANGE (year(`d`))\n(PARTITION p2020 VALUES LESS THAN (2021) ENGINE = InnoDB,\n"
        " PARTITION `p 2021` VALUES LESS THAN MAXVALUE COMMENT = 'it''s */ here' ENGINE = InnoDB)")
    assert partition_clause("CREATE TABLE `h` (\n  `id` int NOT NULL\n) ENGINE=InnoDB\n"
                            "/*!50500 PARTITION BY LIST  COLUMNS(k)\n(PARTITION pa VALUES IN ('a','b')) */") == \
        "PARTITION BY LIST  COLUMNS(k)\n(PARTITION pa VALUES IN ('a','b'))"
    maria = ("CREATE TABLE `h` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB\n"
             " PARTITION BY HASH (`id`)\nPARTITIONS 3")
    assert partition_clause(maria) == "PARTITION BY HASH (`id`)\nPARTITIONS 3"
    assert partition_clause("CREATE TABLE `t` (\n  `v` text DEFAULT 'x\nPARTITION BY HASH (v)'\n) "
                            "ENGINE=InnoDB COMMENT='\n PARTITION BY'") is None
    assert restorable_partition_clause(
        "PARTITION BY RANGE (id)\n(PARTITION p0 VALUES LESS THAN (9) DATA DIRECTORY = '/srv/a b' "
        "INDEX DIRECTORY = '/srv/i' COMMENT = 'DATA DIRECTORY = ''/x''' ENGINE = InnoDB,\n"
        " PARTITION p1 VALUES LESS THAN MAXVALUE TABLESPACE = `ts1` ENGINE = InnoDB)") == (
        "PARTITION BY RANGE (id)\n(PARTITION p0 VALUES LESS THAN (9) COMMENT = 'DATA DIRECTORY = ''/x''' "
        "ENGINE = InnoDB,\n PARTITION p1 VALUES LESS THAN MAXVALUE ENGINE = InnoDB)")


def test_the_partition_clause_is_in_the_manifest_and_compared() -> None:
    from albackup.compare import compare_schema
    from albackup.model import Column, LogicalType, Schema, Table

    def schema(clause: str | None) -> Schema:
        col = Column("id", LogicalType("integer", bits=32), "INT(11)", nullable=False)
        return Schema("mysql", [Table("h", columns=[col], primary_key=["id"], partition_clause=clause)])

    four, three = "PARTITION BY HASH (`id`)\nPARTITIONS 4", "PARTITION BY HASH (`id`)\nPARTITIONS 3"
    assert Schema.from_dict(schema(four).to_dict()).tables[0].partition_clause == four
    assert "partition_clause" not in schema(None).to_dict()["tables"][0]
    assert compare_schema(schema(four), schema(" PARTITION BY HASH (`id`) PARTITIONS 4"), exact_types=True) == []
    assert compare_schema(schema(four), schema(three), exact_types=True) == [
        "table h: partitioning differs (PARTITION BY HASH (`id`), with other partitions)"]
    assert compare_schema(schema(four), schema(None), exact_types=True) == [
        "table h: partitioning differs (PARTITION BY HASH (`id`) ≠ none)"]
    assert compare_schema(schema(four), schema(None), exact_types=False) == []


@pytest.mark.parametrize("url", ["mysql+pymysql://", "mariadb+pymysql://"])
def test_restore_plans_make_the_partition_clause_again_or_say_why_not(url: str) -> None:
    """Into MySQL/MariaDB (either dialect name) CREATE TABLE ends with the clause, less what
    names places on the source server; the plan says when it cannot be made again."""
    from albackup.ddl import build_plan, create_table_sql
    from albackup.engines import for_engine
    from albackup.model import Column, LogicalType, Schema, Table

    def plan(engine: str, clause: str | None, options: dict[str, str] | None = None, into: str = url):
        col = Column("id", LogicalType("integer", bits=32), "INT(11)", nullable=False)
        t = Table("t", columns=[col], primary_key=["id"], partition_clause=clause, options=options or {})
        adapter = for_engine(sa.create_engine(into))
        tp = build_plan(Schema(engine, [t]), [t], adapter).tables[0]
        return create_table_sql(tp, adapter), tp.notes

    sql, notes = plan("mysql", "PARTITION BY RANGE (id)\n(PARTITION `p 1` VALUES LESS THAN (10) DATA DIRECTORY = "
                               "'/srv/d' COMMENT = '5%',\n PARTITION p2 VALUES LESS THAN MAXVALUE)")
    assert notes == [] and sql.rstrip().endswith(
        "PARTITION BY RANGE (id)\n(PARTITION `p 1` VALUES LESS THAN (10) COMMENT = '5%%',\n"
        " PARTITION p2 VALUES LESS THAN MAXVALUE)")
    sql, notes = plan("mysql", "PARTITION BY SYSTEM_TIME \n(PARTITION `p_hist` HISTORY,\n PARTITION `p_cur` CURRENT)")
    assert "PARTITION" not in sql and notes == [
        "partitioned in the source (PARTITION BY SYSTEM_TIME): restored as one table, without partitions "
        "(PARTITION BY SYSTEM_TIME needs system versioning, which is not restored)"]
    sql, notes = plan("mysql", None, {"mysql_partition_by": "HASH (`id`)", "mysql_partitions": "3"})
    assert "PARTITION" not in sql and notes == [
        "partitioned in the source (PARTITION BY HASH (`id`)): restored as one table, without partitions (the "
        "backup does not hold its partitions' definitions)"]
    sql, notes = plan("mysql", "PARTITION BY HASH (`id`)\nPARTITIONS 3", into="sqlite://")
    assert "PARTITION" not in sql and notes == [
        "partitioned in the source (PARTITION BY HASH (`id`)): restored as one table holding all the rows of its "
        "partitions"]


@pytest.mark.parametrize("dst_kind", ["postgresql", "mysql"])
def test_inheritance_exclusion_constraints_and_extensions(dst_kind: str, make_db, tmp_path: Path) -> None:
    """A PostgreSQL table others inherit from is read with ONLY (each row once, in its own
    table); an EXCLUDE constraint is made again into PostgreSQL, with the extension it needs,
    and named as not kept elsewhere."""
    src = make_db("postgresql", "inh")
    e = sa.create_engine(src, poolclass=NullPool)
    with e.begin() as c:
        if not c.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'btree_gist'").first():
            pytest.skip("the server has no btree_gist extension (postgresql-contrib)")
        for stmt in ["CREATE EXTENSION btree_gist",
                     "CREATE TABLE base (id int PRIMARY KEY, v text)",
                     "CREATE TABLE kid (extra int) INHERITS (base)",
                     "INSERT INTO base VALUES (1, 'b')", "INSERT INTO kid VALUES (2, 'k', 5)",
                     "CREATE TABLE room (id int PRIMARY KEY, r int, d date, e date, "
                     "EXCLUDE USING gist (r WITH =, daterange(d, e) WITH &&))",
                     "INSERT INTO room VALUES (1, 1, '2024-01-01', '2024-01-03')"]:
            c.exec_driver_sql(stmt)
    e.dispose()
    dumped = api.dump(_cfg(src), tmp_path / "b")
    assert dumped.rows == 3 and "btree_gist" in api.open_backup(dumped.path).schema.extensions
    dst = make_db(dst_kind, "ind")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert any("base: other tables inherit from it in the source" in x for x in res.changes)
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert c.exec_driver_sql("SELECT id FROM base").scalars().all() == [1]
            assert c.exec_driver_sql("SELECT id, extra FROM kid").all() == [(2, 5)]
        if dst_kind == "postgresql":
            with pytest.raises(sa.exc.IntegrityError, match="room_r_daterange_excl|conflicting key"):
                with e.begin() as c:
                    c.exec_driver_sql("INSERT INTO room VALUES (2, 1, '2024-01-02', '2024-01-05')")
        else:
            assert any("constraint room_r_daterange_excl (EXCLUDE USING gist" in x and "was not kept" in x
                       for x in res.changes)
    finally:
        e.dispose()
    if dst_kind == "postgresql":
        assert api.compare(_cfg(src), _cfg(dst)).differences == []


@pytest.mark.parametrize("dst_kind", ["postgresql", "mysql"])
def test_domains_enum_arrays_identities_and_materialized_views(dst_kind: str, make_db, tmp_path: Path) -> None:
    """A PostgreSQL domain (made again with its CHECK), an array of an enum type (read as its
    labels), an identity column outside the primary key (still an identity, past the rows) and
    a materialized view (made again, with its rows, after the data)."""
    src = _source(make_db, "postgresql", "dom", [
        "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
        "CREATE TYPE color AS ENUM ('red', 'green')",
        "CREATE TABLE t (id int PRIMARY KEY, n posint, cs color[], g int GENERATED ALWAYS AS IDENTITY)",
        "INSERT INTO t (id, n, cs) VALUES (1, 5, '{red,green}'), (2, 7, NULL), (3, NULL, '{}')",
        "CREATE MATERIALIZED VIEW mv AS SELECT id, n FROM t WHERE n IS NOT NULL",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db(dst_kind, "dod")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, accept_lossy=True))
    if dst_kind == "postgresql":
        assert api.compare(_cfg(src), _cfg(dst)).differences == []
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            cs_sql = "cs::text[]" if dst_kind == "postgresql" else "cs"
            rows = c.exec_driver_sql(f"SELECT id, n, {cs_sql}, g FROM t ORDER BY id").all()
            cs = [r[2] if not isinstance(r[2], str) else json.loads(r[2]) for r in rows]
            assert [(r[0], r[1], r[3]) for r in rows] == [(1, 5, 1), (2, 7, 2), (3, None, 3)]
            assert cs == [["red", "green"], None, []]
        if dst_kind == "postgresql":
            with e.begin() as c:
                assert c.exec_driver_sql("SELECT id, n FROM mv ORDER BY id").all() == [(1, 5), (2, 7)]
                assert c.exec_driver_sql("INSERT INTO t (id) VALUES (4) RETURNING g").scalar() == 4
            with pytest.raises(sa.exc.IntegrityError, match="posint_check"):
                with e.begin() as c:
                    c.exec_driver_sql("INSERT INTO t (id, n) VALUES (5, 0)")
    finally:
        e.dispose()


def test_mysql_table_options_are_kept(make_db, tmp_path: Path) -> None:
    """Into MySQL/MariaDB again a table keeps its storage engine, character set and collation
    (its text columns follow them) and a partitioned table its partitions."""
    src = _source(make_db, "mysql", "myo", [
        "CREATE TABLE l1 (id int PRIMARY KEY, name varchar(50)) DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci",
        "INSERT INTO l1 VALUES (1, 'Åsa'), (2, 'y'), (3, 'ü')",
        "CREATE TABLE mi (id int PRIMARY KEY, v int) ENGINE=MyISAM",
        "INSERT INTO mi VALUES (1, 1)",
        "CREATE TABLE pt (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (YEAR(at)) (PARTITION "
        "p2024 VALUES LESS THAN (2025), PARTITION pmax VALUES LESS THAN MAXVALUE)",
        "INSERT INTO pt VALUES (1, '2024-05-01'), (2, '2026-01-01')",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("mysql", "myd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert not any("partitioned" in x for x in res.changes)
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            opts = {r[0]: (r[1], r[2]) for r in c.exec_driver_sql(
                "SELECT table_name, engine, table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE()")}
            assert opts == {"l1": ("InnoDB", "latin1_swedish_ci"), "mi": ("MyISAM", opts["mi"][1]),
                            "pt": ("InnoDB", opts["pt"][1])}
            # latin1_swedish_ci sorts ü with y
            assert c.exec_driver_sql("SELECT name FROM l1 ORDER BY name, id").scalars().all() == ["y", "ü", "Åsa"]
            assert c.exec_driver_sql("SELECT partition_name, table_rows FROM information_schema.partitions "
                                     "WHERE table_schema = DATABASE() AND table_name = 'pt' "
                                     "ORDER BY partition_ordinal_position").all() == [("p2024", 1), ("pmax", 1)]
    finally:
        e.dispose()
    assert api.compare(_cfg(src), _cfg(dst)).differences == []


@pytest.mark.parametrize("src_kind", ["postgresql", "sqlite"])
def test_keys_mixing_text_and_other_columns_fit_mysql_key_length(src_kind: str, make_db, tmp_path: Path) -> None:
    """Into MariaDB, the text columns of a key share the 3072 bytes its other columns leave (a
    key of an int and a text used to get a 768-character text, 3080 bytes: "Specified key was
    too long"); the values, shorter than that, come back whole."""
    ddl = ["CREATE TABLE t (id integer PRIMARY KEY, n integer, s text, d date, u text)",
           "CREATE INDEX t_ns ON t (n, s)",
           "CREATE UNIQUE INDEX t_snd ON t (s, n, d)",
           "CREATE INDEX t_su ON t (s, u, id)"]
    rows = [(i, i % 7, "x" * (360 + i), f"2026-01-{i:02d}", f"u{i}") for i in range(1, 21)]
    src = _source(make_db, src_kind, "keylen", ddl)
    e = sa.create_engine(src, poolclass=NullPool)
    with e.begin() as c:
        c.execute(sa.text("INSERT INTO t VALUES (:a, :b, :c, :d, :e)"),
                  [dict(zip("abcde", r)) for r in rows])
    e.dispose()
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("mysql", "keylend")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            lengths = dict(c.exec_driver_sql(
                "SELECT column_name, character_maximum_length FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name = 't' AND data_type = 'varchar'").all())
            # (n, s): 766 characters after the int's 8 bytes; (s, n, d): 765; (s, u, id): two
            # texts share 766
            assert lengths == {"s": 383, "u": 383}, lengths
            got = [(r[0], r[1], r[2], str(r[3]), r[4]) for r in c.exec_driver_sql("SELECT id, n, s, d, u FROM t ORDER BY id")]
            indexes = {r[0] for r in c.exec_driver_sql(
                "SELECT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() "
                "AND table_name = 't'")}
    finally:
        e.dispose()
    assert indexes == {"PRIMARY", "t_ns", "t_snd", "t_su"}
    assert got == rows and res.rows == 20


def test_mysql_auto_increment_in_a_composite_key_into_sqlite(make_db, tmp_path: Path) -> None:
    """MariaDB → SQLite: SQLite generates values only for a lone INTEGER PRIMARY KEY, so an
    AUTO_INCREMENT column of a composite key is restored as a plain column, with a note (the
    restore used to stop at CREATE TABLE)."""
    src = _source(make_db, "mysql", "cai", [
        "CREATE TABLE c (a int AUTO_INCREMENT, b int, v varchar(10), PRIMARY KEY (a, b))",
        "INSERT INTO c (b, v) VALUES (1, 'x'), (2, 'y'), (1, 'z')",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("sqlite", "caid")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert any("'a': restored without generating its values" in x for x in res.changes), res.changes
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert c.exec_driver_sql("SELECT a, b, v FROM c ORDER BY a").all() == [(1, 1, "x"), (2, 2, "y"), (3, 1, "z")]
            assert [r[1] for r in c.exec_driver_sql("PRAGMA table_info(c)").all() if r[5]] == ["a", "b"]
    finally:
        e.dispose()


def test_mariadb_urls_keep_table_and_index_options(make_db, tmp_path: Path) -> None:
    """SQLAlchemy's MariaDB dialect (a mariadb:// URL) names MySQL's table and index options
    mariadb_…: the manifest keeps them as mysql_… either way, and a restore through either URL
    makes them again (they were dropped without a word)."""
    def as_mariadb(url: sa.URL) -> sa.URL:
        return url.set(drivername="mariadb+" + url.drivername.split("+")[1])

    src = _source(make_db, "mysql", "mdbu", [
        "CREATE TABLE l1 (id int PRIMARY KEY, body text, KEY kb (body(20))) ENGINE=MyISAM "
        "DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci",
        "INSERT INTO l1 VALUES (1, 'Åsa'), (2, 'y')",
    ])
    dumped = api.dump(_cfg(as_mariadb(src)), tmp_path / "b")
    table = json.loads((dumped.path / "manifest.json").read_text())["schema"]["tables"][0]
    assert table["options"]["mysql_engine"] == "MyISAM" and not any(k.startswith("mariadb_") for k in table["options"])
    assert table["indexes"][0]["options"]["mysql_length"] == {"body": 20}
    for i, url in enumerate((lambda u: u, as_mariadb)):
        dst = make_db("mysql", f"mdbud{i}")
        api.restore(dumped.path, _cfg(url(dst), allow_restore=True), RestoreOptions(allow_restore=True))
        e = sa.create_engine(dst, poolclass=NullPool)
        try:
            with e.connect() as c:
                assert c.exec_driver_sql("SELECT engine, table_collation FROM information_schema.tables "
                                         "WHERE table_schema = DATABASE() AND table_name = 'l1'").one() == \
                    ("MyISAM", "latin1_swedish_ci")
                assert c.exec_driver_sql("SELECT sub_part FROM information_schema.statistics WHERE table_schema = "
                                         "DATABASE() AND index_name = 'kb'").scalar() == 20
                assert c.exec_driver_sql("SELECT body FROM l1 ORDER BY id").scalars().all() == ["Åsa", "y"]
        finally:
            e.dispose()
        assert api.compare(_cfg(src), _cfg(url(dst))).differences == []

    # A backup taken through a mariadb:// URL before the manifest said mysql_… holds the
    # dialect's own names: its options are restored too (they were ignored).
    m = dumped.path / "manifest.json"
    m.write_text(m.read_text().replace('"mysql_', '"mariadb_'))
    old = json.loads(m.read_text())["schema"]["tables"][0]
    assert old["options"]["mariadb_engine"] == "MyISAM" and old["indexes"][0]["options"]["mariadb_length"]
    dst = make_db("mysql", "mdbuold")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert c.exec_driver_sql("SELECT engine, table_collation FROM information_schema.tables "
                                     "WHERE table_schema = DATABASE() AND table_name = 'l1'").one() == \
                ("MyISAM", "latin1_swedish_ci")
            assert c.exec_driver_sql("SELECT sub_part FROM information_schema.statistics WHERE table_schema = "
                                     "DATABASE() AND index_name = 'kb'").scalar() == 20
    finally:
        e.dispose()
    assert api.compare(_cfg(src), _cfg(dst)).differences == []


def test_compare_sees_every_table_option_a_restore_keeps(make_db, tmp_path: Path) -> None:
    """MySQL/MariaDB: compare checks the table options a restore makes again (engine, charset,
    collation, row format), so a row format restored is checked and one lost is reported."""
    src = _source(make_db, "mysql", "rowf", [
        "CREATE TABLE r (id int PRIMARY KEY, v varchar(10)) ROW_FORMAT=REDUNDANT",
        "INSERT INTO r VALUES (1, 'x')",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("mysql", "rowfd")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert api.compare(_cfg(src), _cfg(dst)).differences == []
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.begin() as c:
            c.exec_driver_sql("ALTER TABLE r ROW_FORMAT=DYNAMIC")
    finally:
        e.dispose()
    assert api.compare(_cfg(src), _cfg(dst)).differences == [
        "table r: table options differ (mysql_row_format=REDUNDANT)"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_functions_a_table_calls_are_made_before_it(jobs: int, make_db, tmp_path: Path) -> None:
    """PostgreSQL functions are made before the tables (a default, a check and an index call
    them), their bodies unchecked then (one reads a table made after it)."""
    src = _source(make_db, "postgresql", "fn", [
        "CREATE FUNCTION next_code() RETURNS text LANGUAGE sql AS $$ SELECT 'C7' $$",
        "CREATE FUNCTION is_ok(t text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT t <> 'bad' $$",
        "CREATE TABLE t (id int PRIMARY KEY, code text DEFAULT next_code(), v text CHECK (is_ok(v)))",
        "CREATE INDEX t_ok ON t (is_ok(v))",
        "CREATE FUNCTION t_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM t $$",
        "INSERT INTO t (id, v) VALUES (1, 'good')",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("postgresql", "fnd")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert api.compare(_cfg(src), _cfg(dst)).differences == []
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.begin() as c:
            c.exec_driver_sql("INSERT INTO t (id, v) VALUES (2, 'fine')")
            assert c.exec_driver_sql("SELECT code FROM t WHERE id = 2").scalar() == "C7"
            assert c.exec_driver_sql("SELECT t_count()").scalar() == 2
        with pytest.raises(sa.exc.IntegrityError, match="t_v_check"):
            with e.begin() as c:
                c.exec_driver_sql("INSERT INTO t (id, v) VALUES (3, 'bad')")
    finally:
        e.dispose()


@pytest.mark.parametrize("dst_kind", ["postgresql", "mysql"])
def test_not_valid_constraints_restore_with_the_rows_they_never_checked(dst_kind: str, make_db,
                                                                        tmp_path: Path) -> None:
    """A PostgreSQL CHECK or foreign key added NOT VALID (rows from before it break it) is
    restored NOT VALID into PostgreSQL, and still holds for new rows; elsewhere the check is
    named as not kept and the foreign key is not held against the old rows."""
    src = _source(make_db, "postgresql", "nv", [
        "CREATE TABLE p (id int PRIMARY KEY)",
        "CREATE TABLE t (id int PRIMARY KEY, v int, pid int)",
        "INSERT INTO p VALUES (1)",
        "INSERT INTO t VALUES (1, -5, 1), (2, 3, 99)",
        "ALTER TABLE t ADD CONSTRAINT v_pos CHECK (v > 0) NOT VALID",
        "ALTER TABLE t ADD CONSTRAINT t_pid_fk FOREIGN KEY (pid) REFERENCES p NOT VALID",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db(dst_kind, "nvd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert c.exec_driver_sql("SELECT id, v, pid FROM t ORDER BY id").all() == [(1, -5, 1), (2, 3, 99)]
        if dst_kind == "postgresql":
            with e.connect() as c:
                got = c.exec_driver_sql("SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 't'::regclass "
                                        "AND contype IN ('c', 'f') ORDER BY 1").all()
                assert got == [("t_pid_fk", False), ("v_pos", False)]
            with pytest.raises(sa.exc.IntegrityError, match="v_pos"):
                with e.begin() as c:
                    c.exec_driver_sql("INSERT INTO t VALUES (3, -1, 1)")
            assert api.compare(_cfg(src), _cfg(dst)).differences == []
        else:
            assert any("check v_pos was NOT VALID in the source" in x for x in res.changes)
            with e.connect() as c:
                assert [f["name"] for f in sa.inspect(c).get_foreign_keys("t")] == ["t_pid_fk"]
    finally:
        e.dispose()


@pytest.mark.parametrize(("dst_kind", "jobs"), [("mysql", 2), ("postgresql", 1)])
def test_mysql_names_holding_a_backtick(dst_kind: str, jobs: int, make_db, tmp_path: Path) -> None:
    """SQLAlchemy reads a MySQL name holding a backtick with the backtick doubled, and skips a
    foreign key line holding one: the names are read as they are, and every foreign key kept."""
    src = _source(make_db, "mysql", "btk", [
        "CREATE TABLE `p``q` (`i``d` int PRIMARY KEY, `v``x` varchar(40) NOT NULL, w text, "
        "UNIQUE KEY `u``k` (`v``x`), KEY `w``ix` (w(10), `v``x` DESC), CONSTRAINT `c``k` CHECK (`i``d` > 0))",
        "CREATE TABLE c (id int PRIMARY KEY, `p``id` int, pid2 int, KEY (`p``id`), "
        "CONSTRAINT `f``k` FOREIGN KEY (`p``id`) REFERENCES `p``q` (`i``d`) ON DELETE CASCADE, "
        "CONSTRAINT plain FOREIGN KEY (pid2) REFERENCES `p``q` (`i``d`))",
        "INSERT INTO `p``q` VALUES " + ", ".join(f"({i}, 'v`{i}', 'w{i}')" for i in range(1, 41)),
        "INSERT INTO c VALUES " + ", ".join(f"({i}, {i % 40 + 1}, {i % 7 + 1})" for i in range(1, 21)),
    ])
    dumped = api.dump(_cfg(src, jobs=jobs, chunk_rows=10), tmp_path / "b")
    man = api.open_backup(dumped.path)
    assert [c.name for c in man.schema.table("p`q").columns] == ["i`d", "v`x", "w"]
    assert [c.name for c in man.schema.table("p`q").checks] == ["c`k"]
    if jobs > 1:
        assert len(man.tables["p`q"]["chunks"]) >= 4
    assert api.verify(dumped.path).rows == 60
    dst = make_db(dst_kind, "btd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert res.rows == 60
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            if dst_kind == "postgresql":   # PostgreSQL's own reading: the names as they are
                got = c.exec_driver_sql('SELECT "i`d", "v`x" FROM "p`q" ORDER BY 1').all()
                fks = {(r[0], r[1]) for r in c.exec_driver_sql(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f'")}
                assert fks == {("f`k", 'FOREIGN KEY ("p`id") REFERENCES "p`q"("i`d") ON DELETE CASCADE'),
                               ("plain", 'FOREIGN KEY (pid2) REFERENCES "p`q"("i`d")')}
                assert {r[0] for r in c.exec_driver_sql("SELECT indexname FROM pg_indexes")} >= {"u`k", "w`ix"}
            else:
                got = c.exec_driver_sql("SELECT `i``d`, `v``x` FROM `p``q` ORDER BY 1").all()
                fks = {(r[0], r[1], r[2], r[3]) for r in c.exec_driver_sql(
                    "SELECT k.constraint_name, k.column_name, k.referenced_table_name, r.delete_rule "
                    "FROM information_schema.key_column_usage k JOIN information_schema.referential_constraints r "
                    "USING (constraint_schema, constraint_name) WHERE k.table_schema = DATABASE() "
                    "AND k.referenced_table_name IS NOT NULL")}
                assert fks == {("f`k", "p`id", "p`q", "CASCADE"), ("plain", "pid2", "p`q", "RESTRICT")}
                parts = c.exec_driver_sql(
                    "SELECT index_name, column_name, sub_part, collation FROM information_schema.statistics "
                    "WHERE table_schema = DATABASE() AND table_name = 'p`q' AND index_name = 'w`ix' "
                    "ORDER BY seq_in_index").all()
                desc = "D" if c.dialect.server_version_info >= (10, 8) else "A"
                assert parts == [("w`ix", "w", 10, "A"), ("w`ix", "v`x", None, desc)]
            assert got == [(i, f"v`{i}") for i in range(1, 41)]
    finally:
        e.dispose()
    assert api.compare(_cfg(src), _cfg(dst)).differences == []


def _index_names(c: sa.Connection, kind: str) -> set[tuple[str, str]]:
    """(table, index) of every index that is not a primary key's, as the server lists them."""
    if kind == "postgresql":
        sql = ("SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public' "
               "AND indexname NOT LIKE '%%pkey'")
    elif kind == "mysql":
        sql = ("SELECT DISTINCT table_name, index_name FROM information_schema.statistics "
               "WHERE table_schema = DATABASE() AND index_name <> 'PRIMARY'")
    else:
        sql = "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"
    return {(r[0], r[1]) for r in c.exec_driver_sql(sql)}


def _foreign_key_names(c: sa.Connection, kind: str) -> set[tuple[str, str]]:
    insp = sa.inspect(c)
    return {(t, fk["name"]) for t in insp.get_table_names() for fk in insp.get_foreign_keys(t)}


NAME_RUNS = [("postgresql", "mysql"), ("postgresql", "sqlite"), ("mysql", "postgresql"), ("mysql", "sqlite"),
             ("mysql", "mysql")]


@pytest.mark.parametrize(("src_kind", "dst_kind"), NAME_RUNS, ids=[f"{SHORT[s]}-to-{SHORT[d]}" for s, d in NAME_RUNS])
def test_index_and_constraint_names_follow_the_targets_rules(src_kind: str, dst_kind: str, make_db,
                                                             tmp_path: Path) -> None:
    """Each engine has its own rules for where an index's or a constraint's name must be unique:
    PostgreSQL names foreign keys per table, MySQL per database; MySQL names indexes per table,
    PostgreSQL and SQLite per schema, together with the tables. A name is kept where the target
    allows it, and otherwise numbered with a note; a MySQL foreign key keeps the name its own
    index shares."""
    if src_kind == "postgresql":
        statements = [
            "CREATE TABLE owner (id int PRIMARY KEY)",
            "CREATE TABLE a (id int PRIMARY KEY, owner_id int, CONSTRAINT fk_owner FOREIGN KEY (owner_id) "
            "REFERENCES owner (id))",
            "CREATE TABLE b (id int PRIMARY KEY, owner_id int, CONSTRAINT fk_owner FOREIGN KEY (owner_id) "
            "REFERENCES owner (id))",
            "CREATE INDEX by_owner ON a (owner_id)",
        ]
        kept_fks = {("a", "fk_owner"), ("b", "fk_owner")}
        kept_ix = {("a", "by_owner")}
    else:
        statements = [
            "CREATE TABLE owner (id int PRIMARY KEY)",
            "CREATE TABLE a (id int PRIMARY KEY, owner_id int, name varchar(20), KEY by_name (name), "
            "KEY owner (id, name), CONSTRAINT fk_a FOREIGN KEY (owner_id) REFERENCES owner (id), "
            "CHECK (owner_id > 0))",     # MariaDB names each table's first unnamed check CONSTRAINT_1
            "CREATE TABLE b (id int PRIMARY KEY, owner_id int, name varchar(20), KEY by_name (name), "
            "CONSTRAINT fk_b FOREIGN KEY (owner_id) REFERENCES owner (id), CHECK (owner_id > 0))",
        ]
        kept_fks = {("a", "fk_a"), ("b", "fk_b")}
        # MySQL made an index for each foreign key, named after it
        kept_ix = {("a", "by_name"), ("b", "by_name"), ("a", "owner"), ("a", "fk_a"), ("b", "fk_b")}
    src = _source(make_db, src_kind, "nms", statements + [
        "INSERT INTO owner VALUES (1), (2)", "INSERT INTO a (id, owner_id) VALUES (1, 1), (2, 2)",
        "INSERT INTO b (id, owner_id) VALUES (1, 2)"])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db(dst_kind, "nmd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert res.rows == 5
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            fks, ixs = _foreign_key_names(c, dst_kind), _index_names(c, dst_kind)
            assert sorted(c.exec_driver_sql("SELECT id, owner_id FROM b").all()) == [(1, 2)]
    finally:
        e.dispose()
    renamed = sorted(x for x in res.changes if "restored as" in x)
    if (src_kind, dst_kind) == ("postgresql", "mysql"):     # one database-wide namespace for foreign keys
        assert fks == {("a", "fk_owner"), ("b", "fk_owner_2")}
        assert renamed == ["b: foreign key 'fk_owner' restored as 'fk_owner_2' (the name is taken in mysql)"]
        assert ("a", "by_owner") in ixs
    elif src_kind == "postgresql" or dst_kind == "mysql":
        assert fks == kept_fks and ixs >= kept_ix and renamed == []
    else:   # MySQL's per-table index names into one namespace per schema, shared with the tables
        assert fks == kept_fks
        assert ixs >= {("a", "by_name"), ("b", "by_name_2"), ("a", "owner_2")}
        assert renamed == [f"a: index 'owner' restored as 'owner_2' (the name is taken in {dst_kind})",
                           f"b: index 'by_name' restored as 'by_name_2' (the name is taken in {dst_kind})"]
    assert api.compare(_cfg(src), _cfg(dst)).differences == []


def _text_table(engine: str, types: list[str], options: dict[str, str] | None = None) -> "Schema":
    from albackup.model import Column, LogicalType, Schema, Table
    cols = [Column("id", LogicalType("integer", bits=32), "INTEGER", nullable=False)]
    cols += [Column(f"c{i}", LogicalType("string", length=20), t) for i, t in enumerate(types)]
    return Schema(engine=engine, tables=[Table(name="t", primary_key=["id"], columns=cols, options=options or {})])


COLLATION_CASES = [
    # source engine, its text columns' types, table options, target → the note's start, or None
    ("mysql", ["VARCHAR(20)", "VARCHAR(20) COLLATE utf8mb4_bin"], {"mysql_collate": "utf8mb4_general_ci"},
     "postgresql", "text in 1 column(s) of 1 table(s) compares case-insensitively in the mysql source "
                   "(utf8mb4_general_ci); postgresql compares it case-sensitively"),
    ("mysql", ["VARCHAR(20)"], {}, "sqlite",
     "text in 1 column(s) of 1 table(s) compares case-insensitively in the mysql source (the default); sqlite"),
    ("mysql", ["VARCHAR(20) COLLATE utf8mb4_bin"], {"mysql_collate": "utf8mb4_general_ci"}, "postgresql", None),
    ("postgresql", ["VARCHAR(20)", 'TEXT COLLATE "C"'], {}, "mysql",
     'text in 2 column(s) of 1 table(s) compares case-sensitively in the postgresql source (C, the default); '
     "mysql usually compares it case-insensitively"),
    ("postgresql", ['TEXT COLLATE "C"'], {}, "sqlite", None),
    ("sqlite", ["TEXT COLLATE NOCASE", "TEXT"], {}, "postgresql",
     "text in 1 column(s) of 1 table(s) compares case-insensitively in the sqlite source (NOCASE)"),
    ("sqlite", ["TEXT COLLATE NOCASE"], {}, "mysql", None),
    ("mssql", ["NVARCHAR(20) COLLATE SQL_Latin1_General_CP1_CI_AS"], {}, "postgresql",
     "text in 1 column(s) of 1 table(s) compares case-insensitively in the mssql source "
     "(SQL_Latin1_General_CP1_CI_AS)"),
    ("mssql", ["NVARCHAR(20) COLLATE Latin1_General_CS_AS"], {}, "mysql",
     "text in 1 column(s) of 1 table(s) compares case-sensitively in the mssql source (Latin1_General_CS_AS)"),
]


@pytest.mark.parametrize(("src", "types", "options", "dst", "note"), COLLATION_CASES)
def test_the_plan_says_when_text_changes_how_it_compares_case(src: str, types: list[str], options: dict[str, str],
                                                                dst: str, note: str | None) -> None:
    """Collations are each engine's own and are not carried across engines: the plan says, in
    one note, when the move changes whether text compares case-insensitively."""
    from albackup.ddl import build_plan
    from albackup.engines.base import adapter_class

    def adapter(engine: str):   # a dialect without its driver (SQL Server's pyodbc may not load here)
        url = {"postgresql": "postgresql+psycopg2://", "mysql": "mysql+pymysql://", "sqlite": "sqlite://",
               "mssql": "mssql+pyodbc://"}[engine]
        return adapter_class(engine)(sa.engine.make_url(url).get_dialect()())

    schema = _text_table(src, types, options)
    got = [n for n in build_plan(schema, schema.tables, adapter(dst)).notes if n.startswith("text in")]
    if note is None:
        assert got == []
    else:
        assert len(got) == 1 and got[0].startswith(note), got
    # into the same engine collations are kept, and nothing is said
    assert [n for n in build_plan(schema, schema.tables, adapter(src)).notes if n.startswith("text in")] == []


def test_a_mariadb_ci_column_moved_to_postgresql_compares_case_sensitively_as_the_plan_says(
        make_db, tmp_path: Path) -> None:
    src = _source(make_db, "mysql", "cic", [
        "CREATE TABLE p (id int PRIMARY KEY, email varchar(40) COLLATE utf8mb4_general_ci, "
        "code varchar(10) COLLATE utf8mb4_bin) DEFAULT CHARSET=utf8mb4",
        "INSERT INTO p VALUES (1, 'Ann@Example.org', 'A'), (2, 'bob@example.org', 'b')"])
    e = sa.create_engine(src, poolclass=NullPool)
    with e.connect() as c:     # the source finds it whatever the case
        assert c.exec_driver_sql("SELECT id FROM p WHERE email = 'ann@example.org'").scalars().all() == [1]
    e.dispose()
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db("postgresql", "cid")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert [x for x in res.changes if x.startswith("text in")] == [
        "text in 1 column(s) of 1 table(s) compares case-insensitively in the mysql source (utf8mb4_general_ci); "
        "postgresql compares it case-sensitively (columns take the target database's default collation): lookups, "
        "ordering and unique keys that relied on that behave differently"]
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert c.exec_driver_sql("SELECT id FROM p WHERE email = 'ann@example.org'").scalars().all() == []
    finally:
        e.dispose()


@pytest.mark.parametrize("dst_kind", ["sqlite", "postgresql"])
def test_sqlite_primary_key_desc_parts_are_kept(dst_kind: str, make_db, tmp_path: Path) -> None:
    """SQLite: a primary key's DESC part (PRIMARY KEY (a DESC, b), in a rowid table or one
    WITHOUT ROWID) is read from its index and written in CREATE TABLE again; compare sees it.
    Into another engine the plan says it is not kept."""
    src = _source(make_db, "sqlite", "pkd", [
        "CREATE TABLE k (a TEXT, b INT, v TEXT, PRIMARY KEY (a DESC, b))",
        "CREATE TABLE w (a TEXT, b INT, PRIMARY KEY (a, b DESC)) WITHOUT ROWID",
        "CREATE TABLE plain (a TEXT, b INT, PRIMARY KEY (a, b))",
        "INSERT INTO k VALUES ('x', 1, 'v'), ('y', 2, NULL)", "INSERT INTO w VALUES ('x', 1), ('x', 2)",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    b = api.open_backup(dumped.path)
    assert [b.schema.table(n).primary_key_sorting for n in ("k", "w", "plain")] == [{"a": ["desc"]}, {"b": ["desc"]}, {}]
    dst = make_db(dst_kind, "pkdd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert res.rows == 4
    notes = sorted(x for x in res.changes if "descending order" in x)
    if dst_kind != "sqlite":
        assert notes == ["k: primary key: the descending order of a is not kept",
                         "w: primary key: the descending order of b is not kept"]
        return
    assert notes == []
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            def parts(t: str) -> list[tuple[str, int]]:
                return c.exec_driver_sql(
                    "SELECT x.name, x.desc FROM pragma_index_list(?) l, pragma_index_xinfo(l.name) x "
                    "WHERE l.origin = 'pk' AND x.key ORDER BY x.seqno", (t,)).all()
            assert parts("k") == [("a", 1), ("b", 0)] and parts("w") == [("a", 0), ("b", 1)]
            assert parts("plain") == [("a", 0), ("b", 0)]
            assert c.exec_driver_sql("SELECT a, b, v FROM k ORDER BY a").all() == [("x", 1, "v"), ("y", 2, None)]
    finally:
        e.dispose()
    assert api.compare(_cfg(src), _cfg(dst)).differences == []
    e = sa.create_engine(dst, poolclass=NullPool)
    with e.begin() as c:      # the same table with an ascending key: compare sees it
        c.exec_driver_sql("DROP TABLE k")
        c.exec_driver_sql("CREATE TABLE k (a TEXT, b INT, v TEXT, PRIMARY KEY (a, b))")
        c.exec_driver_sql("INSERT INTO k VALUES ('x', 1, 'v'), ('y', 2, NULL)")
    e.dispose()
    assert [d for d in api.compare(_cfg(src), _cfg(dst)).differences if "primary key order" in d] == [
        "table k: primary key order differs (descending: ['a'] ≠ [])"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_postgresql_a_partitions_replica_identity_and_column_settings_are_kept(jobs: int, make_db,
                                                                                 tmp_path: Path) -> None:
    """PostgreSQL: a partition's own REPLICA IDENTITY (FULL, or using an index: its own, or the
    one the partitioned table's index made on it), its columns' STATISTICS and the NOT NULL it has
    alone are set on it again; compare sees what differs."""
    src = _source(make_db, "postgresql", "prid", [
        "CREATE TABLE m (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
        "CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        "CREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
        "CREATE TABLE m_2026 PARTITION OF m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
        "ALTER TABLE m_2024 REPLICA IDENTITY FULL",
        "ALTER TABLE m_2025 REPLICA IDENTITY USING INDEX m_2025_pkey",
        "CREATE UNIQUE INDEX m_2026_v ON m_2026 (v)", "ALTER TABLE m_2026 ALTER COLUMN v SET NOT NULL",
        "ALTER TABLE m_2026 REPLICA IDENTITY USING INDEX m_2026_v",
        "ALTER TABLE m_2025 ALTER COLUMN v SET STATISTICS 300",
        "INSERT INTO m VALUES (1, '2024-05-01', 'a'), (2, '2025-05-01', 'b'), (3, '2026-05-01', 'c')",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    tree = {p["name"]: p.get("options") for p in api.open_backup(dumped.path).schema.table("m").partition_tree}
    assert tree == {"m_2024": {"postgresql_replica_identity": "full"},
                    "m_2025": {"postgresql_replica_identity": {"index": "m_2025_pkey"},
                               "postgresql_column_statistics": {"v": 300}},
                    "m_2026": {"postgresql_replica_identity": {"index": "m_2026_v"},
                               "postgresql_column_not_null": ["v"]}}
    dst = make_db("postgresql", "pridd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert res.rows == 3
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert dict(c.exec_driver_sql("SELECT relname::text, relreplident::text FROM pg_class "
                                          "WHERE relname IN ('m', 'm_2024', 'm_2025', 'm_2026')").all()) == {
                "m": "d", "m_2024": "f", "m_2025": "i", "m_2026": "i"}
            assert sorted(c.exec_driver_sql("SELECT indexrelid::regclass::text FROM pg_index "
                                            "WHERE indisreplident").all()) == [("m_2025_pkey",), ("m_2026_v",)]
            assert c.exec_driver_sql("SELECT attstattarget FROM pg_attribute WHERE attrelid = 'm_2025'::regclass "
                                     "AND attname = 'v'").scalar() == 300
            assert c.exec_driver_sql("SELECT attrelid::regclass::text, attnotnull FROM pg_attribute "
                                     "WHERE attname = 'v' AND attrelid IN ('m'::regclass, 'm_2025'::regclass, "
                                     "'m_2026'::regclass) ORDER BY 1").all() == [
                ("m", False), ("m_2025", False), ("m_2026", True)]
        assert api.compare(_cfg(src), _cfg(dst)).differences == []
        with e.begin() as c:
            c.exec_driver_sql("ALTER TABLE m_2024 REPLICA IDENTITY DEFAULT")
        diff = api.compare(_cfg(src), _cfg(dst)).differences
        assert diff == ["table m: the partitions' own indexes, constraints and options differ "
                        '({"postgresql_replica_identity": "full"} on m_2024)'], diff
    finally:
        e.dispose()


@pytest.mark.parametrize("mariadb", [True, False])
def test_check_names_are_per_table_on_mariadb_and_per_database_on_mysql(mariadb: bool) -> None:
    """MariaDB names an unnamed check CONSTRAINT_1 in each table; MySQL 8 wants a check's name
    unique in the database: into MySQL the second is numbered, with a note."""
    from albackup.ddl import build_plan
    from albackup.engines.base import adapter_class
    from albackup.model import Check, Column, LogicalType, Schema, Table

    def table(name: str) -> Table:
        return Table(name=name, primary_key=["id"], checks=[Check("CONSTRAINT_1", "`id` > 0")],
                     columns=[Column("id", LogicalType("integer", bits=32), "INTEGER", nullable=False)])

    dialect = sa.engine.make_url("mysql+pymysql://").get_dialect()()
    dialect.is_mariadb = mariadb
    schema = Schema(engine="mysql", tables=[table("a"), table("b")])
    plan = build_plan(schema, schema.tables, adapter_class("mysql")(dialect))
    assert [c.name for tp in plan.tables for c in tp.checks] == \
        ["CONSTRAINT_1", "CONSTRAINT_1" if mariadb else "CONSTRAINT_1_2"]
    assert [n for tp in plan.tables for n in tp.notes] == ([] if mariadb else [
        "check constraint 'CONSTRAINT_1' restored as 'CONSTRAINT_1_2' (the name is taken in mysql)"])


def test_what_sqlalchemy_cannot_read_is_logged_naming_the_table(make_db, tmp_path: Path, caplog) -> None:
    """A type SQLAlchemy does not know is a warning in the log that names the table (not a
    Python warning on stderr), and its values come back as they were."""
    import logging

    src = _source(make_db, "postgresql", "unr", [
        "CREATE TABLE t (id int PRIMARY KEY, l pg_lsn)", "INSERT INTO t VALUES (1, '0/16B3748'), (2, NULL)"])
    with caplog.at_level(logging.WARNING):
        dumped = api.dump(_cfg(src), tmp_path / "b")
    assert "table t: Did not recognize type 'pg_lsn' of column 'l'" in [r.getMessage() for r in caplog.records]
    dst = make_db("postgresql", "unrd")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        with e.connect() as c:
            assert c.exec_driver_sql("SELECT id, l::text FROM t ORDER BY id").all() == [(1, "0/16B3748"), (2, None)]
    finally:
        e.dispose()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_compare_sees_a_name_the_copy_lost_on_the_same_engine(kind: str, make_db, tmp_path: Path) -> None:
    """Into the same engine every name is kept: compare names an index, foreign key, unique
    constraint or check of the source that the copy does not have under that name."""
    src = _source(make_db, kind, "cnm", [
        "CREATE TABLE owner (id int PRIMARY KEY, code varchar(10), CONSTRAINT owner_code UNIQUE (code), "
        "CONSTRAINT positive CHECK (id > 0))",
        "CREATE TABLE a (id int PRIMARY KEY, owner_id int, CONSTRAINT fk_owner FOREIGN KEY (owner_id) "
        "REFERENCES owner (id))",
        "CREATE INDEX by_owner ON a (owner_id, id)",
    ])
    dumped = api.dump(_cfg(src), tmp_path / "b")
    dst = make_db(kind, "cnmd")
    api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert api.compare(_cfg(src), _cfg(dst)).differences == []
    e = sa.create_engine(dst, poolclass=NullPool)
    with e.begin() as c:
        if kind == "postgresql":
            c.exec_driver_sql("ALTER INDEX by_owner RENAME TO by_owner_2")
            c.exec_driver_sql("ALTER TABLE a RENAME CONSTRAINT fk_owner TO fk_owner_2")
        else:
            c.exec_driver_sql("ALTER TABLE a RENAME INDEX by_owner TO by_owner_2")
            c.exec_driver_sql("ALTER TABLE a DROP FOREIGN KEY fk_owner")
            c.exec_driver_sql("ALTER TABLE a ADD CONSTRAINT fk_owner_2 FOREIGN KEY (owner_id) REFERENCES owner (id)")
    e.dispose()
    diff = [d for d in api.compare(_cfg(src), _cfg(dst)).differences if "names" in d]
    assert diff == ["table a: names not in the copy: foreign key fk_owner, index by_owner"], diff
