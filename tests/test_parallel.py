"""Chunked and parallel dumps: key ranges over sparse, composite and missing keys; -j workers
that share one snapshot while another connection writes; values compared, never just counts."""
from __future__ import annotations

import json
import multiprocessing
import random
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from albackup import api, config
from albackup.archive import Backup
from albackup.restore import RestoreOptions

ENGINES = ["sqlite", "postgresql", "mysql"]


def _cfg(url: sa.URL, **kw: Any) -> config.DatabaseConfig:
    return config.url_config(url.render_as_string(hide_password=False), **kw)


def _eng(url: sa.URL) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool)


def _execute(url: sa.URL, *statements: str, analyze: tuple[str, ...] = ()) -> None:
    """Run ``statements`` in one transaction on a new engine, then ANALYZE ``analyze``."""
    e = _eng(url)
    with e.begin() as c:
        for sql in statements:
            c.exec_driver_sql(sql)
    _analyze(e, list(analyze))
    e.dispose()


def _analyze(e: sa.Engine, tables: list[str]) -> None:
    """ANALYZE ``tables``; on PostgreSQL once the statistics have counted every row inserted (a
    count reported after ANALYZE would make them look stale, and ranges be counted, not taken
    from the histogram)."""
    if e.dialect.name == "postgresql":
        deadline = time.monotonic() + 10
        with e.connect() as c:
            for t in tables:
                while c.exec_driver_sql(f"SELECT coalesce(n_mod_since_analyze, 0) < (SELECT count(*) FROM {t}) "
                                        f"FROM pg_stat_all_tables WHERE relid = '{t}'::regclass").scalar():
                    assert time.monotonic() < deadline, f"the statistics never counted the rows of {t}"
                    time.sleep(0.1)
                    c.rollback()
                c.rollback()
    with e.begin() as c:
        for t in tables:
            if e.dialect.name == "postgresql":
                c.exec_driver_sql(f"ANALYZE {t}")
            elif e.dialect.name in ("mysql", "mariadb"):
                c.exec_driver_sql(f"ANALYZE TABLE {t}")


SPARSE = [i * i + (7 if i % 3 else 0) for i in range(1, 601)]          # gaps growing to ~360,000


def build_keys(url: sa.URL) -> dict[str, list[tuple[Any, ...]]]:
    """Four tables of 600 rows: a sparse integer key, a composite (text, int) key, a unique
    NOT NULL index and no key at all."""
    rnd = random.Random(7)
    data = {
        "sparse": [(k, f"s{k}", rnd.random()) for k in SPARSE],
        "composite": [(f"g{i % 7}", i, f"v{i}") for i in range(600)],
        "uniq": [(f"code-{i:04d}", i % 11) for i in rnd.sample(range(5000), 600)],
        "nokey": [(i % 50, f"dup{i % 50}") for i in range(600)],     # duplicate rows on purpose
    }
    e = _eng(url)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE sparse (id BIGINT PRIMARY KEY, label VARCHAR(20), x DOUBLE PRECISION)")
        c.exec_driver_sql("CREATE TABLE composite (grp VARCHAR(10) NOT NULL, n INTEGER NOT NULL, "
                          "val VARCHAR(20), PRIMARY KEY (grp, n))")
        c.exec_driver_sql("CREATE TABLE uniq (code VARCHAR(20) NOT NULL, k INTEGER)")
        c.exec_driver_sql("CREATE UNIQUE INDEX uniq_code ON uniq (code)")
        c.exec_driver_sql("CREATE TABLE nokey (a INTEGER, b VARCHAR(20))")
        for name, rows in data.items():
            ph = ", ".join(["?" if e.dialect.paramstyle == "qmark" else "%s"] * len(rows[0]))
            c.exec_driver_sql(f"INSERT INTO {name} VALUES ({ph})", rows)
    _analyze(e, list(data))
    e.dispose()
    return data


def read_all(url: sa.URL, table: str, cols: str) -> list[tuple[Any, ...]]:
    e = _eng(url)
    with e.connect() as c:
        rows = [tuple(r) for r in c.exec_driver_sql(f"SELECT {cols} FROM {table}")]
    e.dispose()
    return sorted(rows, key=repr)


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("jobs", [1, 2])
def test_chunked_dump_of_sparse_composite_unique_and_keyless_tables(make_db, tmp_path: Path, kind: str,
                                                                      jobs: int) -> None:
    if kind == "sqlite" and jobs == 2:
        pytest.skip("SQLite dumps are read by one connection (-j is ignored; covered by the log test)")
    src = make_db(kind, "chk")
    data = build_keys(src)
    res = api.dump(_cfg(src, chunk_rows=100, jobs=jobs, batch_rows=37), tmp_path / "b")
    m = json.loads((res.path / "manifest.json").read_text())
    tables = m["tables"]
    # Keyed tables are cut into ranges of about chunk_rows rows, whatever the gaps in the key.
    for name, key in (("sparse", ["id"]), ("composite", ["grp", "n"]), ("uniq", ["code"])):
        chunks = tables[name]["chunks"]
        if name == "sparse" and kind == "mysql" and jobs == 2:
            # ranges of key values (units.KeyRanges), each a key page of at most chunk_rows:
            # the gaps grow with the key, and the ranges widen after them
            counts = [c["rows"] for c in chunks]
            assert sum(counts) == 600 and max(counts) <= 100 and 6 <= len(counts) <= 14, counts
        else:
            assert len(chunks) == 6, (name, [c["rows"] for c in chunks])
        if name == "sparse" and kind == "mysql" and jobs == 2:
            pass
        elif name == "sparse" and kind == "postgresql":
            # bounds from the key's histogram (fresh after ANALYZE): about 100 rows each
            assert all(88 <= c["rows"] <= 112 for c in chunks), [c["rows"] for c in chunks]
        else:
            assert [c["rows"] for c in chunks] == [100] * 6, name
        assert all(c["range"]["key"] == key for c in chunks)
        assert chunks[0]["range"]["after"] is None and chunks[-1]["range"]["upto"] is None
        for a, b in zip(chunks, chunks[1:]):
            assert a["range"]["upto"] == b["range"]["after"]
    # sparse keys: ranges follow the rows, not min/max arithmetic (counted keys, or on
    # PostgreSQL keys of the table that its histogram holds)
    uptos = [c["range"]["upto"][0] for c in tables["sparse"]["chunks"][:-1]]
    if kind == "postgresql":
        assert set(uptos) <= set(SPARSE) and uptos == sorted(uptos)
    elif jobs == 2:     # ranges of key values: each holds the rows of the keys in it
        assert uptos == sorted(uptos)
        for c in tables["sparse"]["chunks"]:
            lo, hi = c["range"]["after"], c["range"]["upto"]
            assert c["rows"] == sum(1 for k in SPARSE if (lo is None or k > lo[0]) and (hi is None or k <= hi[0]))
    else:
        assert uptos == [SPARSE[99], SPARSE[199], SPARSE[299], SPARSE[399], SPARSE[499]]
    nokey = tables["nokey"]["chunks"]
    if kind == "postgresql":      # physical block ranges
        assert len(nokey) >= 1 and all("ctid_blocks" in c["range"] for c in nokey)
    else:
        assert len(nokey) == 1 and "range" not in nokey[0]
    assert tables["nokey"]["rows"] == 600
    assert m["consistency"]["consistent"] is True
    if jobs == 2 and kind == "postgresql":
        assert m["consistency"]["method"] == "postgresql-exported-snapshot"
    if jobs == 2 and kind == "mysql":
        assert m["consistency"]["method"] == "mysql-consistent-snapshot-locked"
    assert api.verify(res.path).rows == 2400

    # One chunk re-read on its own holds exactly the keys of its range.
    b = Backup(res.path)
    c3 = tables["sparse"]["chunks"][2]
    rows = [r for batch in b.iter_chunk("sparse", 2) for r in batch]
    lo, hi = c3["range"]["after"][0], c3["range"]["upto"][0]
    assert sorted(r[0] for r in rows) == [k for k in SPARSE if lo < k <= hi]

    # Every row, restored into another database, exactly once (duplicates of the keyless table too).
    dst = make_db(kind, "chkd")
    api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert read_all(dst, "sparse", "id, label, x") == sorted(data["sparse"], key=repr)
    assert read_all(dst, "composite", "grp, n, val") == sorted(data["composite"], key=repr)
    assert read_all(dst, "uniq", "code, k") == sorted(data["uniq"], key=repr)
    assert read_all(dst, "nokey", "a, b") == sorted(data["nokey"], key=repr)


def test_jobs_are_ignored_with_a_log_line_for_sqlite(make_db, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    src = make_db("sqlite", "j")
    build_keys(src)
    with caplog.at_level("INFO"):
        res = api.dump(_cfg(src, jobs=2, chunk_rows=100), tmp_path / "b")
    assert "-j 2 is ignored" in caplog.text
    assert res.rows == 2400 and res.consistency["method"] == "sqlite-read-transaction"


def test_chunk_rows_zero_never_cuts(make_db, tmp_path: Path) -> None:
    src = make_db("postgresql", "z")
    build_keys(src)
    res = api.dump(_cfg(src, chunk_rows=0), tmp_path / "b")
    m = json.loads((res.path / "manifest.json").read_text())
    assert all(len(t["chunks"]) == 1 for t in m["tables"].values())


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_wide_table_is_cut_by_stored_size_into_ranges_of_equal_rows(make_db, tmp_path: Path, kind: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer rows than chunk_rows, but more stored data than CHUNK_BYTES (lowered here): cut into
    key ranges of equal row counts, the work of each estimated by its column kinds, and every
    value dumped and restored."""
    from albackup import units

    src = make_db(kind, "wide")
    rows = [(i, "w" * 900, f"t{i}") for i in range(1, 3001)]
    e = _eng(src)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE wide (id INTEGER PRIMARY KEY, body VARCHAR(1000), tag VARCHAR(10))")
        c.exec_driver_sql("CREATE TABLE narrow (id INTEGER PRIMARY KEY)")
        c.exec_driver_sql("INSERT INTO wide VALUES (%s, %s, %s)", rows)
        c.exec_driver_sql("INSERT INTO narrow VALUES (%s)", [(i,) for i in range(100)])
    _analyze(e, ["wide", "narrow"])
    e.dispose()
    monkeypatch.setattr(units, "CHUNK_BYTES", 512 << 10)
    res = api.dump(_cfg(src, chunk_rows=1_000_000, jobs=2), tmp_path / "b")
    m = json.loads((res.path / "manifest.json").read_text())
    counts = [c["rows"] for c in m["tables"]["wide"]["chunks"]]
    assert len(counts) >= 3 and sum(counts) == 3000, counts
    if kind == "postgresql":
        # equal ranges; the rows the estimate missed go to the last, never a small remainder
        assert len(set(counts[:-1])) == 1 and counts[-1] <= counts[0] * 5 // 4 + 1, counts
        assert counts[0] // 4 <= counts[-1], counts
    else:
        # ranges of key values (units.KeyRanges) that aim at 7/8 of a full key page, then
        # narrow as the keys run out so that both workers finish together
        page = units.KeyRanges.AIM  # (the page: the rows of a range of equal stored size)
        assert counts[0] >= counts[-1] and counts == sorted(counts, reverse=True), counts
        assert counts[-1] >= counts[0] // 8 - 1 and page == 7, counts
    chunks = m["tables"]["wide"]["chunks"]
    assert chunks[0]["range"]["after"] is None and chunks[-1]["range"]["upto"] is None
    assert all(a["range"]["upto"] == b["range"]["after"] for a, b in zip(chunks, chunks[1:]))
    assert len(m["tables"]["narrow"]["chunks"]) == 1
    dst = make_db(kind, "wided")
    api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    assert read_all(dst, "wide", "id, body, tag") == sorted(rows, key=repr)


def test_units_cost_by_rows_and_column_kinds() -> None:
    from albackup.model import Column, LogicalType, Table
    from albackup.units import row_cost

    narrow = Table("n", None, [Column("a", LogicalType("integer"), ""), Column("b", LogicalType("char"), "")])
    mixed = Table("m", None, [Column("a", LogicalType("integer"), ""), Column("t", LogicalType("datetime"), ""),
                              Column("j", LogicalType("json"), ""), Column("s", LogicalType("text"), "")])
    assert (row_cost(narrow), row_cost(mixed)) == (3, 11)
    assert row_cost(Table("e", None, [])) == 1


@pytest.mark.parametrize("rows, chunks", [(1020, [100] * 9 + [120]), (1030, [100] * 10 + [30]),
                                          (1000, [100] * 10), (110, [110])])
def test_a_small_remainder_is_merged_into_the_last_range(make_db, tmp_path: Path, rows: int,
                                                         chunks: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Boundaries found by counting keys: under a quarter of a range after the last boundary
    joins the range before; a quarter or more is a range of its own; a table the estimate made
    look bigger is one chunk. Every row is in exactly one chunk."""
    from albackup.engines.postgresql import PostgreSQLAdapter

    monkeypatch.setattr(PostgreSQLAdapter, "key_bounds", lambda *a: None)     # as without statistics
    src = make_db("postgresql", "rem")
    _execute(src, "CREATE TABLE r (id INTEGER PRIMARY KEY)", f"INSERT INTO r SELECT generate_series(1, {rows})",
             analyze=("r",))
    if rows == 110:        # an estimate of ten ranges for a table that holds 1.1 of them
        _execute(src, "UPDATE pg_class SET reltuples = 1000 WHERE relname = 'r'")
    res = api.dump(_cfg(src, chunk_rows=100), tmp_path / "b")
    m = json.loads((res.path / "manifest.json").read_text())
    assert [c["rows"] for c in m["tables"]["r"]["chunks"]] == chunks
    assert all(("range" in c) == (len(chunks) > 1) for c in m["tables"]["r"]["chunks"])
    ids = sorted(r[0] for batch in Backup(res.path).iter_batches("r") for r in batch)
    assert ids == list(range(1, rows + 1))


# ------------------------------------------------------------------ one snapshot under writes

ACCOUNTS = 6000


def _bank(url: sa.URL) -> None:
    e = _eng(url)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE acct (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL, pad VARCHAR(200))")
        c.exec_driver_sql("CREATE TABLE ledger (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount BIGINT)")
        c.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        c.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
        c.exec_driver_sql("INSERT INTO acct VALUES (%s, %s, %s)", [(i, 0, "x" * 150) for i in range(ACCOUNTS)])
    _analyze(e, ["acct", "ledger", "counter"])
    e.dispose()


def _transfers(url: sa.URL, stop: threading.Event, done: list[int]) -> None:
    """Move money between far-apart accounts (so between chunks), one commit per transfer; every
    transfer also writes a ledger row and bumps the counter. Any snapshot has sum(balance) = 0
    and count(ledger) = counter.n."""
    rnd = random.Random(1)
    e = _eng(url)
    n = 0
    with e.connect() as c:
        while not stop.is_set() and n < 100_000:
            a = rnd.randrange(0, ACCOUNTS // 2)
            b = rnd.randrange(ACCOUNTS // 2, ACCOUNTS)
            amt = rnd.randrange(1, 1000)
            with c.begin():
                c.exec_driver_sql("UPDATE acct SET balance = balance - %s WHERE id = %s", (amt, a))
                c.exec_driver_sql("UPDATE acct SET balance = balance + %s WHERE id = %s", (amt, b))
                c.exec_driver_sql("INSERT INTO ledger VALUES (%s, %s, %s, %s)", (n, a, b, amt))
                c.exec_driver_sql("UPDATE counter SET n = n + 1 WHERE id = 1")
            n += 1
            done[0] = n
    e.dispose()


class _SlowReporter:
    """Slows the dump's reading down (progress is reported per batch) so the writer gets in."""

    def __init__(self) -> None:
        from albackup.progress import Reporter

        self.__class__ = type("Slow", (Reporter,), {"advanced": lambda self, t, r, s: time.sleep(0.01)})


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_parallel_dump_under_writes_is_one_snapshot(make_db, tmp_path: Path, kind: str) -> None:
    src = make_db(kind, "snap")
    _bank(src)
    stop = threading.Event()
    done = [0]
    writer = threading.Thread(target=_transfers, args=(src, stop, done), daemon=True)
    writer.start()
    try:
        while done[0] < 50:            # the writer is running before the dump starts
            time.sleep(0.01)
        before = done[0]
        res = api.dump(_cfg(src, jobs=2, chunk_rows=500, batch_rows=50), tmp_path / "b",
                       progress=_SlowReporter())  # type: ignore[arg-type]
        after = done[0]
    finally:
        stop.set()
        writer.join(30)
    assert after - before > 20, "the writer made no progress during the dump: the test proves nothing"
    m = json.loads((res.path / "manifest.json").read_text())
    assert len(m["tables"]["acct"]["chunks"]) >= 10
    assert m["consistency"]["consistent"] is True
    b = Backup(res.path)
    acct = [r for batch in b.iter_batches("acct") for r in batch]
    ledger = [r for batch in b.iter_batches("ledger") for r in batch]
    counter = [r for batch in b.iter_batches("counter") for r in batch]
    assert len(acct) == ACCOUNTS
    assert sum(r[1] for r in acct) == 0, "accounts read at different moments: not one snapshot"
    assert len(ledger) == counter[0][1], "ledger and counter read at different moments"
    # the ledger replays to exactly the balances that were dumped
    bal = [0] * ACCOUNTS
    for _, s, d, amt in ledger:
        bal[s] -= amt
        bal[d] += amt
    assert bal == [r[1] for r in sorted(acct)]
    assert before <= len(ledger) <= after


def test_parallel_worker_failure_fails_the_dump_and_leaves_nothing(make_db, tmp_path: Path) -> None:
    from albackup.errors import DumpError

    src = make_db("postgresql", "wf")
    _execute(src, "CREATE TABLE d (id INTEGER PRIMARY KEY, v DATE)",
             "INSERT INTO d SELECT g, DATE '2020-01-01' + g FROM generate_series(1, 3000) g",
             "UPDATE d SET v = 'infinity' WHERE id = 2500", analyze=("d",))
    with pytest.raises(DumpError, match=r"table d, column v"):
        api.dump(_cfg(src, jobs=2, chunk_rows=500), tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []


# ------------------------------------------------------------------ parallel restore

@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_parallel_restore_loads_chunks_builds_keys_and_checks(make_db, tmp_path: Path, kind: str) -> None:
    src = make_db(kind, "prs")
    data = build_keys(src)
    e = _eng(src)
    with e.begin() as c:     # a foreign key into a chunked table, validated after the parallel load
        c.exec_driver_sql("CREATE TABLE child (id INTEGER PRIMARY KEY, sparse_id BIGINT NOT NULL, "
                          "CONSTRAINT fk_child_sparse FOREIGN KEY (sparse_id) REFERENCES sparse (id))")
        c.exec_driver_sql("INSERT INTO child VALUES (%s, %s)", [(i, SPARSE[i * 7 % 600]) for i in range(300)])
    e.dispose()
    res = api.dump(_cfg(src, chunk_rows=100), tmp_path / "b")
    dst = make_db(kind, "prd")
    out = api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    assert out.rows == 2700
    assert read_all(dst, "sparse", "id, label, x") == sorted(data["sparse"], key=repr)
    assert read_all(dst, "composite", "grp, n, val") == sorted(data["composite"], key=repr)
    assert read_all(dst, "nokey", "a, b") == sorted(data["nokey"], key=repr)
    insp = sa.inspect(_eng(dst))
    assert insp.get_pk_constraint("composite")["constrained_columns"] == ["grp", "n"]
    assert [ix["name"] for ix in insp.get_indexes("uniq") if ix["unique"]] == ["uniq_code"]
    assert [fk["referred_table"] for fk in insp.get_foreign_keys("child")] == ["sparse"]
    cmp = api.compare(_cfg(src), _cfg(dst))
    assert cmp.differences == []


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_parallel_restore_failure_drops_what_it_created(make_db, tmp_path: Path, kind: str) -> None:
    """A unique index that the data breaks (the backup was edited by hand) fails the restore,
    names the index, and leaves the target as it was: empty."""
    from albackup.errors import RestoreError

    src = make_db(kind, "pf")
    e = _eng(src)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, code VARCHAR(10))")
        c.exec_driver_sql("CREATE INDEX t_code ON t (code)")
        c.exec_driver_sql("INSERT INTO t VALUES (%s, %s)", [(i, "same") for i in range(50)])
    e.dispose()
    res = api.dump(_cfg(src), tmp_path / "b")
    m = json.loads((res.path / "manifest.json").read_text())
    for t in m["schema"]["tables"]:
        for ix in t["indexes"]:
            ix["unique"] = True
    (res.path / "manifest.json").write_text(json.dumps(m))
    dst = make_db(kind, "pfd")
    with pytest.raises(RestoreError, match="index t_code could not be created"):
        api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    assert sa.inspect(_eng(dst)).get_table_names() == []


def test_mysql_parallel_dump_without_reload_privilege_says_it_is_not_consistent(make_db, tmp_path: Path) -> None:
    """Without RELOAD, FLUSH TABLES WITH READ LOCK is refused: the workers' snapshots are taken
    one after another, the manifest says the dump is not consistent, and require_consistent
    turns that into a failure."""
    import secrets

    from albackup.errors import DumpError

    src = make_db("mysql", "nr")
    build_keys(src)
    user = f"albk_nr_{secrets.token_hex(3)}"
    root = _eng(src)
    with root.begin() as c:
        c.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'pw-{user}'")
        c.exec_driver_sql(f"GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES ON `{src.database}`.* TO '{user}'@'%%'")
    try:
        limited = src.set(username=user, password=f"pw-{user}")
        res = api.dump(_cfg(limited, jobs=2, chunk_rows=100), tmp_path / "b")
        assert res.consistency["consistent"] is False
        assert res.consistency["method"] == "mysql-consistent-snapshot-per-worker"
        assert "FLUSH TABLES WITH READ LOCK was refused" in res.consistency["detail"]
        assert api.verify(res.path).rows == 2400
        with pytest.raises(DumpError, match="require_consistent"):
            api.dump(_cfg(limited, jobs=2, chunk_rows=100, require_consistent=True), tmp_path / "c")
        assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == []
    finally:
        with root.begin() as c:
            c.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
        root.dispose()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_read_back_parts_hold_every_row_once_cut_where_the_chunks_start(make_db, tmp_path: Path, kind: str) -> None:
    """-j restores read a table with an integer key back in key ranges side by side, cut at the
    first keys of its backup's chunks: the ranges hold every row once and their hashes add up to
    the table's. A key with text in it (whose order is the engine's) is read whole."""
    from albackup.ddl import build_plan
    from albackup.engines import for_engine
    from albackup.restore import read_back_parts, rehash
    from albackup.values import combine_v2

    src = make_db(kind, "rbp")
    build_keys(src)
    res = api.dump(_cfg(src, chunk_rows=100), tmp_path / "b")
    dst = make_db(kind, "rbq")
    out = api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    assert out.rows == 2400
    b = Backup(res.path)
    e = _eng(dst)
    adapter = for_engine(e)
    tps = {tp.table.key: tp for tp in build_plan(b.schema, b.schema.tables, adapter).tables}
    parts = read_back_parts(adapter, b, tps["sparse"])
    assert len(b.tables["sparse"]["chunks"]) >= 3 and len(parts) == len(b.tables["sparse"]["chunks"])
    try:
        with e.connect() as c:
            counts = [c.exec_driver_sql(f"SELECT count(*) FROM sparse{where}", params).scalar()
                      for where, params in parts]
            assert sum(counts) == 600 and all(counts)
            whole = rehash(c, adapter, tps["sparse"])
            pieces = [rehash(c, adapter, tps["sparse"], where=where, params=params) for where, params in parts]
    finally:
        e.dispose()
    assert sum(h.rows for h in pieces) == whole.rows == 600
    assert combine_v2([h.hexdigest() for h in pieces]) == whole.hexdigest()
    assert read_back_parts(adapter, b, tps["composite"]) == [("", ())]
    assert read_back_parts(adapter, b, tps["nokey"]) == [("", ())]
    b.tables["sparse"]["chunks"] = []            # a table with no chunk file (no rows): whole
    assert read_back_parts(adapter, b, tps["sparse"]) == [("", ())]


def _big_table(url: sa.URL) -> None:
    """400,000 rows of 260 bytes: long enough to kill a worker in the middle of it."""
    e = _eng(url)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 8) AS pad "
                          "FROM generate_series(1, 400000) g")
        c.exec_driver_sql("ALTER TABLE big ADD PRIMARY KEY (id)")
        c.exec_driver_sql("ANALYZE big")
    e.dispose()


def _kill_a_worker(kind: str) -> None:
    import multiprocessing
    import os
    import signal

    deadline = time.monotonic() + 30
    victims: list[Any] = []
    while not victims and time.monotonic() < deadline:
        victims = [p for p in multiprocessing.active_children() if p.name.startswith(f"albackup-{kind}-")]
        time.sleep(0.05)
    assert victims, f"no {kind} worker was seen"
    time.sleep(0.3)
    os.kill(victims[0].pid, signal.SIGKILL)


def test_a_killed_dump_worker_fails_the_dump_and_leaves_nothing(make_db, tmp_path: Path) -> None:
    """SIGKILL one worker in the middle of a -j 2 dump: the dump fails with a message naming the
    worker, the other worker is stopped, and no backup (nor staging folder) is left."""
    import multiprocessing

    from albackup.errors import DumpError

    src = make_db("postgresql", "kill")
    _big_table(src)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            api.dump(_cfg(src, jobs=2, chunk_rows=10000, batch_rows=200), tmp_path / "b")
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    _kill_a_worker("dump")
    t.join(60)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DumpError), errors
    assert "dump worker" in str(errors[0]) and "ended unexpectedly (killed by signal 9)" in str(errors[0])
    assert not any(p.is_alive() for p in multiprocessing.active_children() if p.name.startswith("albackup-dump-"))
    assert list((tmp_path / "b").iterdir()) == []


def test_a_killed_restore_worker_fails_the_restore_and_drops_its_tables(make_db, tmp_path: Path) -> None:
    from albackup.errors import RestoreError

    src = make_db("postgresql", "rk")
    _big_table(src)
    res = api.dump(_cfg(src, chunk_rows=10000), tmp_path / "b")
    dst = make_db("postgresql", "rkd")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    _kill_a_worker("restore")
    t.join(60)
    assert len(errors) == 1 and isinstance(errors[0], RestoreError), errors
    assert "restore worker" in str(errors[0]) and "killed by signal 9" in str(errors[0])
    assert sa.inspect(_eng(dst)).get_table_names() == []


def test_parallel_progress_reports_each_range_and_each_table(make_db, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """Off a terminal, -j prints a log line per finished range (from whichever worker ran it)
    and one per table with its totals."""
    from albackup.progress import LogReporter

    src = make_db("postgresql", "prog")
    build_keys(src)
    with caplog.at_level("INFO", logger="albackup"):
        api.dump(_cfg(src, jobs=2, chunk_rows=100), tmp_path / "b", progress=LogReporter())  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records if r.name == "albackup"]
    for i in range(1, 7):      # about 100 rows each (bounds from the key's histogram)
        assert any(re.match(rf"table sparse \[{i}/6\]: \d+ rows", m) for m in lines), lines
    assert any(m.startswith("table sparse: 600 rows") for m in lines), lines
    assert any(m.startswith("table nokey") for m in lines), lines


@pytest.mark.parametrize("value, column", [("'0044-03-15 BC'::date", "d"), ("'infinity'::timestamp", "ts"),
                                           ("'2000-01-01 10:00:00 BC'::timestamptz", "tz")])
def test_postgresql_values_without_canonical_form_are_refused(make_db, tmp_path: Path, value: str,
                                                              column: str) -> None:
    """BC and infinite dates/timestamps: the dump fails naming the column (never a silent change)."""
    from albackup.errors import DumpError

    src = make_db("postgresql", "bc")
    e = _eng(src)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE v (id INTEGER PRIMARY KEY, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ)")
        c.exec_driver_sql("INSERT INTO v VALUES (1, '2020-01-01', '2020-01-01 10:00:00', '2020-01-01 10:00:00+00')")
        c.exec_driver_sql(f"INSERT INTO v (id, {column}) VALUES (2, {value})")
    e.dispose()
    with pytest.raises(DumpError, match=rf"table v, column {column}"):
        api.dump(_cfg(src), tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []



def _conflicting_loads(monkeypatch: pytest.MonkeyPatch, marks: Path, first: int | None) -> None:
    """Every LOAD DATA of table "sparse" leaves a file in ``marks``; the first ``first`` of them
    (all when None), in whichever worker, fail the way the server reports a lost lock conflict."""
    import os
    import tempfile

    from albackup.engines.mysql import MySQLAdapter
    from albackup.errors import LoadConflict

    real = MySQLAdapter._load_file
    marks.mkdir()

    def load_file(self: Any, cur: Any, raw: Any, driver: str, table: Any, *a: Any) -> None:
        if table.name == "sparse":
            fd, _ = tempfile.mkstemp(dir=marks, prefix="load-")
            os.close(fd)
            for i in range(first or 0):       # O_EXCL: exactly ``first`` loads lose, across workers
                try:
                    (marks / f"lost-{i}").open("x").close()
                except FileExistsError:
                    continue
                break
            else:
                if first is not None:
                    return real(self, cur, raw, driver, table, *a)
            raise LoadConflict(f"table {table.key}: LOAD DATA LOCAL INFILE failed: (1213, 'Deadlock found')")
        real(self, cur, raw, driver, table, *a)

    monkeypatch.setattr(MySQLAdapter, "_load_file", load_file)


def test_a_chunk_that_loses_a_lock_conflict_is_loaded_again(make_db, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk load that loses a lock conflict (the server rolled it back) is loaded again from
    its chunk file, and the restore goes on; the values are those of the source."""
    src = make_db("mysql", "lc")
    data = build_keys(src)
    res = api.dump(_cfg(src, chunk_rows=100), tmp_path / "b")
    _conflicting_loads(monkeypatch, tmp_path / "marks", first=1)
    dst = make_db("mysql", "lcd")
    out = api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    assert out.rows == 2400
    assert len(list((tmp_path / "marks").glob("load-*"))) == 7      # six chunks of "sparse", one loaded twice
    assert read_all(dst, "sparse", "id, label, x") == sorted(data["sparse"], key=repr)
    assert api.compare(_cfg(src), _cfg(dst)).differences == []


def test_a_chunk_that_keeps_losing_lock_conflicts_fails_the_restore(make_db, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from albackup.errors import RestoreError

    src = make_db("mysql", "lk")
    build_keys(src)
    res = api.dump(_cfg(src, chunk_rows=100), tmp_path / "b")
    _conflicting_loads(monkeypatch, tmp_path / "marks", first=None)
    dst = make_db("mysql", "lkd")
    with pytest.raises(RestoreError, match=r"table sparse: LOAD DATA LOCAL INFILE failed: .*Deadlock"):
        api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    assert len(list((tmp_path / "marks").glob("load-*"))) >= 3     # two workers without retries: at most 2
    assert sa.inspect(_eng(dst)).get_table_names() == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_postgresql_primary_key_is_built_after_the_load(make_db, tmp_path: Path, jobs: int) -> None:
    """PostgreSQL: CREATE TABLE without the key, rows loaded, then the key added under its own
    name; a key the data breaks (the backup was edited by hand) fails the restore, names the
    key, and leaves the target empty."""
    from albackup.errors import RestoreError

    src = make_db("postgresql", "pk")
    e = _eng(src)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INTEGER CONSTRAINT t_ident PRIMARY KEY, v VARCHAR(10) NOT NULL)")
        c.exec_driver_sql("INSERT INTO t VALUES (%s, %s)", [(i, "same" if i % 2 else f"v{i}") for i in range(200)])
    e.dispose()
    res = api.dump(_cfg(src, chunk_rows=50), tmp_path / "b")
    dst = make_db("postgresql", "pkd")
    plan = api.restore(res.path, _cfg(dst), RestoreOptions(plan_only=True, jobs=jobs))
    assert plan.ddl == ['CREATE TABLE "t" (\n\t"id" INTEGER NOT NULL, \n\t"v" VARCHAR(10) NOT NULL\n);',
                        'ALTER TABLE "t" ADD CONSTRAINT t_ident PRIMARY KEY ("id");']
    api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    pk = sa.inspect(_eng(dst)).get_pk_constraint("t")
    assert (pk["name"], pk["constrained_columns"]) == ("t_ident", ["id"])
    assert read_all(dst, "t", "id, v") == sorted([(i, "same" if i % 2 else f"v{i}") for i in range(200)], key=repr)

    m = json.loads((res.path / "manifest.json").read_text())
    m["schema"]["tables"][0]["primary_key"] = ["v"]
    (res.path / "manifest.json").write_text(json.dumps(m))
    bad = make_db("postgresql", "pkb")
    with pytest.raises(RestoreError, match="table t: primary key t_ident could not be created: could not create unique index"):
        api.restore(res.path, _cfg(bad, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert sa.inspect(_eng(bad)).get_table_names() == []


def test_key_ranges_are_planned_as_they_are_taken(make_db) -> None:
    """Boundaries found by counting keys (a text key: no histogram bounds): the workers start on
    the first range while the next boundaries are still to be found; taking the first range
    costs two boundary queries, not one per range. An integer key with fresh statistics costs
    none."""
    from albackup import units
    from albackup.engines import for_engine
    from albackup.reflect import reflect_schema

    src = make_db("postgresql", "lazy")
    build_keys(src)
    e = _eng(src)
    adapter = for_engine(e)
    calls: list[Any] = []
    real = adapter.nth_key

    def counting(*a: Any, **kw: Any) -> Any:
        calls.append(a[3])
        return real(*a, **kw)

    adapter.nth_key = counting  # type: ignore[method-assign]
    try:
        with e.connect() as conn:
            schema = reflect_schema(conn, adapter, [None], include=["uniq", "sparse"])
            plans = units.plan_tables(conn, adapter, [schema.table("uniq")], 100)
            first = next(plans[0].units)
            assert len(calls) == 2 and first.label == "uniq [1/6]"
            rest = list(plans[0].units)
            # each boundary found once (the sixth is the last key), one query finding none after
            # it, one remainder check: the same queries as planning everything first
            assert len(calls) == 8
            calls.clear()
            sparse = [u for p in units.plan_tables(conn, adapter, [schema.table("sparse")], 100) for u in p.units]
            assert calls == [] and len(sparse) == 6
    finally:
        e.dispose()
    assert [u.label for u in rest] == [f"uniq [{i}/6]" for i in range(2, 7)]
    assert rest[-1].range["upto"] is None and first.range["after"] is None
    assert sparse[0].range["after"] is None and sparse[-1].range["upto"] is None


@pytest.mark.parametrize("jobs", [1, 2])
def test_mysql_key_pages_search_no_boundary_while_read_one_after_another(make_db, tmp_path: Path, jobs: int,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """MySQL/MariaDB, a big table with an integer key: with one connection each range is the
    next chunk_rows keys after the last key read (keyset pagination), and no boundary is
    searched for at all. With two workers, a table keyed by one integer column is read in
    ranges of key values, each at most a key page (units.KeyRanges): no boundary is searched
    for either; one keyed by two integers in key pages, whose boundaries are found only while a
    worker would otherwise wait. Ranges chain, sparse keys included, and a full last page is
    not followed by an empty chunk."""
    from albackup.engines.mysql import MySQLAdapter

    src = make_db("mysql", "pages")
    keys = [i * 7 + (i % 5) * 1000 for i in range(1, 1201)]          # sparse, not in insert order
    keys = sorted(set(keys))[:1200]
    other = list(range(1, 1001))
    e = _eng(src)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE big (id BIGINT PRIMARY KEY, v VARCHAR(20))")
        c.exec_driver_sql("CREATE TABLE other (a INT, b INT, w VARCHAR(20), PRIMARY KEY (a, b))")
        c.exec_driver_sql("INSERT INTO big VALUES (%s, %s)", [(k, f"v{k}") for k in reversed(keys)])
        c.exec_driver_sql("INSERT INTO other VALUES (%s, %s, %s)", [(i % 3, i, f"w{i}") for i in other])
    _analyze(e, ["big", "other"])
    e.dispose()
    calls: list[Any] = []
    real = MySQLAdapter.nth_key

    def counting(self: Any, *a: Any, **kw: Any) -> Any:
        calls.append(a[1].name)
        return real(self, *a, **kw)

    monkeypatch.setattr(MySQLAdapter, "nth_key", counting)
    res = api.dump(_cfg(src, chunk_rows=100, jobs=jobs, batch_rows=33), tmp_path / "b")
    m = json.loads((res.path / "manifest.json").read_text())
    big = m["tables"]["big"]["chunks"]
    assert big[0]["range"]["after"] is None and big[-1]["range"]["upto"] is None
    for a, b in zip(big, big[1:]):
        assert a["range"]["upto"] == b["range"]["after"]
    if jobs == 1:
        assert [c["rows"] for c in big] == [100] * (len(keys) // 100) + ([len(keys) % 100] if len(keys) % 100 else [])
        assert [c["range"]["upto"][0] for c in big[:-1]] == [keys[i * 100 + 99] for i in range(len(big) - 1)]
    else:
        counts = [c["rows"] for c in big]
        assert sum(counts) == len(keys) and max(counts) <= 100 and len(counts) <= 2 * len(keys) // 100, counts
        for c in big:
            lo, hi = c["range"]["after"], c["range"]["upto"]
            assert c["rows"] == sum(1 for k in keys if (lo is None or k > lo[0]) and (hi is None or k <= hi[0]))
    oth = m["tables"]["other"]["chunks"]
    assert [c["rows"] for c in oth] == [100] * 10 and oth[1]["range"]["after"] == oth[0]["range"]["upto"]
    # the empty page after each full last page left no chunk file behind
    assert sorted(p.name for p in (res.path / "data").iterdir()) == sorted(Path(c["file"]).name for c in big + oth)
    if jobs == 1:
        assert calls == []
    else:
        assert "big" not in calls and len(calls) < len(oth) // 2, calls
    # a chunk re-read on its own holds exactly the keys of its range
    b = Backup(res.path)
    lo, hi = big[3]["range"]["after"][0], big[3]["range"]["upto"][0]
    assert sorted(r[0] for batch in b.iter_chunk("big", 3) for r in batch) == [k for k in keys if lo < k <= hi]
    dst = make_db("mysql", "pagesd")
    api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert read_all(dst, "big", "id, v") == sorted(((k, f"v{k}") for k in keys), key=repr)
    assert read_all(dst, "other", "a, b, w") == sorted(((i % 3, i, f"w{i}") for i in other), key=repr)


def test_mysql_parallel_key_ranges_follow_clustered_keys_and_empty_ranges_leave_no_chunk(
        make_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers, a key of one integer column whose values come in two dense clusters a
    trillion apart, plus a stale estimate: the ranges of key values (units.KeyRanges) narrow
    inside the clusters, widen across the gap, never hold more than a key page, and the ranges
    read empty leave no chunk file while the manifest's ranges still join up; no boundary is
    counted. Restored, every row is there once."""
    from albackup.engines.mysql import MySQLAdapter

    src = make_db("mysql", "kr")
    keys = list(range(-150, 150)) + [10 ** 12 + i * 3 for i in range(400)]
    e = _eng(src)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE clustered (id BIGINT PRIMARY KEY, v VARCHAR(20))")
        c.exec_driver_sql("INSERT INTO clustered VALUES (%s, %s)", [(k, f"v{k}") for k in keys])
    _analyze(e, ["clustered"])
    e.dispose()
    calls: list[Any] = []
    monkeypatch.setattr(MySQLAdapter, "nth_key", lambda self, *a, **kw: calls.append(a) or None)
    monkeypatch.setattr(MySQLAdapter, "estimate_rows", lambda self, conn, table: 350)    # stale: 700 rows
    res = api.dump(_cfg(src, chunk_rows=100, jobs=2, batch_rows=33), tmp_path / "b")
    assert calls == []
    m = json.loads((res.path / "manifest.json").read_text())
    chunks = m["tables"]["clustered"]["chunks"]
    counts = [c["rows"] for c in chunks]
    assert sum(counts) == len(keys) and max(counts) <= 100 and 0 not in counts[1:], counts
    assert len(chunks) <= 16, counts            # the gap of 10^12 crossed in a few ranges
    assert chunks[0]["range"]["after"] is None and chunks[-1]["range"]["upto"] is None
    for a, b in zip(chunks, chunks[1:]):
        assert a["range"]["upto"] == b["range"]["after"]
    for c in chunks:
        lo, hi = c["range"]["after"], c["range"]["upto"]
        assert c["rows"] == sum(1 for k in keys if (lo is None or k > lo[0]) and (hi is None or k <= hi[0]))
    assert sorted(p.name for p in (res.path / "data").iterdir()) == sorted(Path(c["file"]).name for c in chunks)
    assert api.verify(res.path).rows == len(keys)
    dst = make_db("mysql", "krd")
    api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    assert read_all(dst, "clustered", "id, v") == sorted(((k, f"v{k}") for k in keys), key=repr)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(keys=list(range(100)), n=10, estimate=100, workers=2, seed=1)
@example(keys=[*range(-5, 60), *range(10 ** 15, 10 ** 15 + 90, 3)], n=7, estimate=20, workers=3, seed=5)
@given(keys=st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), min_size=1, max_size=300, unique=True)
       | st.lists(st.integers(0, 2000), min_size=1, max_size=300, unique=True)
       | st.builds(lambda start, step, size: list(range(start, start + step * size, step)),
                   st.integers(-10 ** 6, 10 ** 6), st.integers(1, 4), st.integers(1, 300)),
       n=st.integers(1, 40), estimate=st.integers(1, 2000), workers=st.integers(2, 4), seed=st.integers(0, 2 ** 32))
def test_key_ranges_hand_out_every_key_once_whatever_the_keys_and_the_order_ranges_end(
        keys: list[int], n: int, estimate: int, workers: int, seed: int) -> None:
    """units.KeyRanges under a simulated parallel dump: any keys (BIGINT's extremes, clusters,
    one key), any estimate, workers finishing in any order. Every range reads at most a key page
    and binds no value outside the key's least and greatest; the manifest's entries
    (dump._in_key_order, as _table_entry writes them) chain from the start to the end, and each
    holds exactly the keys in its range, every key once."""
    from albackup.dump import _table_entry
    from albackup.engines import adapter_class
    from albackup.model import Column, LogicalType, Table
    from albackup.units import KeyRanges, Schedule, TableUnits, UnitResult

    keys = sorted(keys)
    adapter = adapter_class("mysql")(sa.dialects.mysql.mysqldb.dialect())
    table = Table("t", columns=[Column("id", LogicalType("integer", bits=64), "BIGINT", nullable=False)],
                  primary_key=["id"])
    pages = KeyRanges(adapter, 1, table, ["id"], n, 1, estimate, keys[0], keys[-1], workers)
    sched = Schedule([TableUnits(iter(()), 1, pages)])
    rnd = random.Random(seed)
    reading: list[Any] = []
    results = []
    ended = False
    while True:
        while not ended and len(reading) < workers:
            try:
                u = next(sched)
            except StopIteration:
                ended = True
                break
            if u is None:
                break
            assert u.limit == n and all(keys[0] <= v <= keys[-1] for v in (u.params or ()))
            reading.append(u)
        if not reading:
            assert ended
            break
        u = reading.pop(rnd.randrange(len(reading)))
        lo, hi = u.range["after"], u.range["upto"]
        rows = [k for k in keys if (lo is None or k > lo[0]) and (hi is None or k <= hi[0])][:n]
        last = (rows[-1],) if rows else None
        if rows or u.chunk_no == 1:        # dump_unit: a later range read empty leaves no chunk
            rng = dict(u.range, upto=[last[0]]) if last is not None and len(rows) >= n else u.range
            results.append(UnitResult(0, [{"file": f"data/00001-{u.chunk_no:05d}.chunk", "rows": len(rows),
                                           "bytes": 1, "content_hash": "0" * 32, "range": rng}], len(rows)))
        sched.done(u, len(rows), last)
    assert pages.finished
    entry = _table_entry(results)
    chunks = entry["chunks"]
    assert entry["rows"] == len(keys)
    assert chunks[0]["range"]["after"] is None and chunks[-1]["range"]["upto"] is None
    for a, b in zip(chunks, chunks[1:]):
        assert a["range"]["upto"] == b["range"]["after"]
    for c in chunks:
        lo, hi = c["range"]["after"], c["range"]["upto"]
        assert c["rows"] == sum(1 for k in keys if (lo is None or k > lo[0]) and (hi is None or k <= hi[0])) <= n


_STARTED = multiprocessing.get_context("fork").Event()


def _ready_then_quit(idx: int, pipe: Any) -> None:
    pipe.send(("ready", idx, {}))
    _STARTED.wait(30)      # quits once the parent has seen it ready (not while it starts the pool)
    pipe.close()


def test_a_task_for_a_worker_that_is_gone_fails_with_the_workers_end() -> None:
    """Handing a unit to a worker that has just died (its pipe closed) fails the run with the
    worker's end, as a DumpError, not a broken pipe."""
    from albackup.errors import DumpError
    from albackup.parallel import _Workers
    from albackup.progress import Reporter

    class Quitter(_Workers):
        target = staticmethod(_ready_then_quit)

    pool = Quitter(Reporter())
    _STARTED.clear()
    pool.start(1)
    _STARTED.set()
    pool.procs[0].join(10)
    assert pool.procs[0].exitcode == 0
    try:
        with pytest.raises(DumpError, match=r"worker 1 ended unexpectedly \(exit code 0\)"):
            pool._dispatch([("unit", 0, None)] * 3, lambda w, m: None)
    finally:
        pool.close()


def _ready_then_quit_unread(idx: int, pipe: Any) -> None:
    pipe.send(("ready", idx, {}))
    time.sleep(0.5)       # the task the parent sends meanwhile is never read: the socket is reset


def test_a_worker_that_dies_with_a_task_unread_fails_with_its_end() -> None:
    """A worker that ends with a task unread resets its pipe: the run fails with the worker's
    end, as a DumpError, not 'connection reset by peer'."""
    from albackup.errors import DumpError
    from albackup.parallel import _Workers
    from albackup.progress import Reporter

    class Quitter(_Workers):
        target = staticmethod(_ready_then_quit_unread)

    pool = Quitter(Reporter())
    pool.start(1)
    try:
        with pytest.raises(DumpError, match=r"worker 1 ended unexpectedly \(exit code 0\)"):
            pool._dispatch([("unit", 0, "x" * 100_000)] * 3, lambda w, m: None)
    finally:
        pool.close()


def test_restore_schedule_builds_a_table_as_soon_as_its_chunks_are_in() -> None:
    """-j restore: a table's statements are handed out as soon as its last chunk is in, before
    the other tables' chunks; its text read-back parts after its statements are done, after the
    chunks still waiting; a worker waits (None) while only running tasks can bring more work;
    a failed statement or a wrong row count hands out nothing more."""
    from albackup.parallel import _BuildSchedule

    def schedule(check: Any = lambda ti, n: None) -> _BuildSchedule:
        # table 0: 3 chunks, one statement; table 1: 1 chunk, two statements; table 2: no chunk
        loads = [(0, 0, 300), (0, 1, 300), (0, 2, 300), (1, 0, 100)]
        ddl = {0: [(0, "CREATE INDEX a")], 1: [(1, "CREATE INDEX b1"), (2, "CREATE INDEX b2")], 2: []}
        return _BuildSchedule(loads, [False] * 3, False, [True] * 3, ddl,
                              lambda ti, parts: [f"part{ti}.{k}" for k in range(2)], check, 3)

    s = schedule()
    # table 2 holds no rows: built (nothing to build) and read back at once, after the rest
    first, second = next(s), next(s)
    assert first[:3] == ("load", 0, 0) and second[:3] == ("load", 1, 0)
    s.done(1, ("loaded", 1, 10, 10, "", 0.1, None))           # table 1 is in
    assert next(s) == ("ddl", 1, "CREATE INDEX b1")           # before table 0's next chunk
    assert next(s) == ("ddl", 2, "CREATE INDEX b2")
    assert next(s)[:3] == ("load", 0, 1)
    s.done(0, ("ddl_done", 1))
    s.done(0, ("ddl_done", 2))                                # table 1 built: its parts queue
    assert next(s)[:3] == ("load", 0, 2)                      # ... behind the waiting chunk
    assert next(s) == ("echo", 2, "part2.0") and next(s) == ("echo", 2, "part2.1")
    assert next(s) == ("echo", 1, "part1.0") and next(s) == ("echo", 1, "part1.1")
    assert next(s) is None                                    # table 0's chunks still run
    for ci in range(3):
        s.done(0, ("loaded", 0, 5, 5, "", 0.1, None))
    assert next(s) == ("ddl", 0, "CREATE INDEX a")
    assert next(s) is None
    s.done(0, ("ddl_done", 0))
    assert [next(s), next(s)] == [("echo", 0, "part0.0"), ("echo", 0, "part0.1")]
    for _ in range(6):
        s.done(0, ("echoed", 0, 1, 1))
    with pytest.raises(StopIteration):
        next(s)
    assert sum(p[0] for p in s.loaded[0]) == 15 and s.echoed[0] == (6, 6)

    s = schedule()
    next(s), next(s)
    s.done(1, ("loaded", 1, 10, 10, "", 0.1, None))
    next(s)
    s.done(1, ("ddl_failed", 1, "duplicate key"))
    with pytest.raises(StopIteration):
        next(s)
    assert s.failed == [(1, "duplicate key")]

    s = schedule(lambda ti, n: f"table {ti}: loaded {n}" if ti == 1 else None)
    next(s), next(s)
    s.done(1, ("loaded", 1, 9, 9, "", 0.1, None))
    with pytest.raises(StopIteration):
        next(s)
    assert s.error == "table 1: loaded 9"


def test_restore_schedule_reads_a_table_back_by_value_once_built_beside_the_loads() -> None:
    """-j restore: a table not read back as text (no echo parts) is read back by value in the
    parts value_parts gives as soon as it is built, while the other table's chunks still load;
    each part's (rows, hash) is kept; without value_parts nothing is read back here."""
    from albackup.parallel import _BuildSchedule

    loads = [(0, 0, 300), (0, 1, 300), (1, 0, 100)]
    ddl: dict[int, list[tuple[int, str]]] = {0: [], 1: [(0, "CREATE INDEX b")]}

    def value_parts(ti: int) -> list[tuple[str, Any]]:
        return [(f"WHERE k <= {ti}", (ti,)), (f"WHERE k > {ti}", (ti,))]

    s = _BuildSchedule(loads, [False] * 2, True, [False] * 2, ddl, lambda ti, parts: [],
                       lambda ti, n: None, 2, value_parts)
    assert next(s)[:3] == ("load", 0, 0) and next(s)[:3] == ("load", 1, 0)
    s.done(1, ("loaded", 1, 10, 10, "", 0.1, None))
    assert next(s) == ("ddl", 0, "CREATE INDEX b")
    s.done(1, ("ddl_done", 0))                         # table 1 built: read back, table 0 loads on
    assert next(s)[:3] == ("load", 0, 1)
    assert next(s) == ("rehash", 1, True, "WHERE k <= 1", (1,))
    assert next(s) == ("rehash", 1, True, "WHERE k > 1", (1,))
    assert next(s) is None
    s.done(1, ("rehashed", 1, 4, "aa"))
    s.done(1, ("rehashed", 1, 6, "bb"))
    s.done(0, ("loaded", 0, 5, 5, "", 0.1, None))
    s.done(0, ("loaded", 0, 5, 5, "", 0.1, None))      # table 0: no statement, built at once
    assert [next(s), next(s)] == [("rehash", 0, True, "WHERE k <= 0", (0,)), ("rehash", 0, True, "WHERE k > 0", (0,))]
    s.done(0, ("rehashed", 0, 10, "cc"))
    s.done(1, ("rehashed", 0, 0, "dd"))
    with pytest.raises(StopIteration):
        next(s)
    assert s.rehashed == {1: [(4, "aa"), (6, "bb")], 0: [(10, "cc"), (0, "dd")]}

    s = _BuildSchedule(loads[2:], [False] * 2, True, [False] * 2, {0: [], 1: []}, lambda ti, parts: [],
                       lambda ti, n: None, 2)
    assert next(s)[:3] == ("load", 1, 0)
    s.done(0, ("loaded", 1, 10, 10, "", 0.1, None))
    with pytest.raises(StopIteration):
        next(s)
    assert s.rehashed == {}


def test_restore_schedule_keeps_workers_loading_side_by_side_on_different_tables() -> None:
    """-j restore: a free worker takes a chunk of a table no other worker is loading (two COPYs
    into one table wait for each other to extend it), in the interleaved order otherwise; the
    last table's chunks are shared."""
    from albackup.parallel import _BuildSchedule

    # table 0: 3 chunks; table 1: 2 smaller ones; interleaved: (0,0) (1,0) (0,1) (1,1) (0,2)
    loads = [(0, 0, 300), (0, 1, 300), (0, 2, 300), (1, 0, 100), (1, 1, 100)]
    s = _BuildSchedule(loads, [False] * 2, False, [False] * 2, {0: [], 1: []}, lambda ti, parts: [],
                       lambda ti, n: None, 2)
    assert next(s)[:3] == ("load", 0, 0) and next(s)[:3] == ("load", 1, 0)
    s.done(1, ("loaded", 1, 10, 10, "", 0.1, None))
    assert next(s)[:3] == ("load", 1, 1)        # not (0, 1): table 0 is being loaded
    s.done(1, ("loaded", 1, 10, 10, "", 0.1, None))
    assert next(s)[:3] == ("load", 0, 1)        # the last table: shared
    s.done(0, ("loaded", 0, 10, 10, "", 0.1, None))
    assert next(s)[:3] == ("load", 0, 2)
    assert next(s) is None


def test_postgresql_key_bounds_come_from_a_fresh_histogram_only(make_db) -> None:
    """Range boundaries from pg_stats: keys of the table, about n rows apart over a sparse key;
    none for a composite key, for a histogram coarser than the ranges, or once more than a
    tenth of the rows changed since the last ANALYZE (then keys are counted)."""
    from albackup.engines.postgresql import PostgreSQLAdapter
    from albackup.model import Table

    src = make_db("postgresql", "kb")
    data = build_keys(src)
    keys = sorted(r[0] for r in data["sparse"])
    e = _eng(src)
    adapter = PostgreSQLAdapter(e.dialect)
    with e.connect() as c:
        bounds = adapter.key_bounds(c, Table(name="sparse"), ["id"], 150)
        assert bounds and all(len(b) == 1 and b[0] in keys for b in bounds)
        edges = [None, *[b[0] for b in bounds], None]
        sizes = [sum(1 for k in keys if (lo is None or k > lo) and (hi is None or k <= hi))
                 for lo, hi in zip(edges, edges[1:])]
        assert sum(sizes) == 600 and all(130 <= n <= 170 for n in sizes), sizes
        assert adapter.key_bounds(c, Table(name="composite"), ["grp", "n"], 100) is None
        assert adapter.key_bounds(c, Table(name="sparse"), ["id"], 5) is None      # 6 rows a bucket
    with e.begin() as c:
        c.exec_driver_sql("INSERT INTO sparse SELECT g, 'new', 0 FROM generate_series(400000, 400099) g")
    e.dispose()
    e = _eng(src)
    deadline = time.monotonic() + 10
    with e.connect() as c:
        while c.exec_driver_sql("SELECT n_mod_since_analyze FROM pg_stat_all_tables "
                                "WHERE relid = 'sparse'::regclass").scalar() < 100:
            assert time.monotonic() < deadline, "the statistics never saw the insert"
            time.sleep(0.2)
            c.rollback()
        assert adapter.key_bounds(c, Table(name="sparse"), ["id"], 150) is None
    e.dispose()


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_empty_range_between_histogram_bounds_is_an_empty_chunk(make_db, tmp_path: Path, jobs: int) -> None:
    """Rows deleted since the last ANALYZE (too few to make the statistics stale) can leave a
    range between two bounds empty: it is a chunk of no rows, and the backup verifies and
    restores with every other row."""
    src = make_db("postgresql", f"hole{jobs}")
    _execute(src, "CREATE TABLE h (id INTEGER PRIMARY KEY, v TEXT)",
             "INSERT INTO h SELECT g, 'v' || g FROM generate_series(1, 1000) g", analyze=("h",))
    _execute(src, "DELETE FROM h WHERE id BETWEEN 401 AND 480")
    res = api.dump(_cfg(src, chunk_rows=50, jobs=jobs), tmp_path / "b")
    chunks = json.loads((res.path / "manifest.json").read_text())["tables"]["h"]["chunks"]
    assert len(chunks) >= 15 and 0 in [c["rows"] for c in chunks], [c["rows"] for c in chunks]
    assert sum(c["rows"] for c in chunks) == 920
    assert api.verify(res.path).rows == 920
    dst = make_db("postgresql", f"holed{jobs}")
    api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    want = [(i, f"v{i}") for i in range(1, 1001) if not 401 <= i <= 480]
    assert read_all(dst, "h", "id, v") == sorted(want, key=repr)
