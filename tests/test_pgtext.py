"""PostgreSQL COPY text chunks (albackup/pgtext.py): dumped as the server prints them, restored
into PostgreSQL as they are, decoded to the same values as the cursor path everywhere else."""
from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import NullPool
from xxhash import xxh3_64_intdigest, xxh3_128_intdigest

from albackup import api, pgtext
from albackup.archive import Backup
from albackup.engines.postgresql import PostgreSQLAdapter
from albackup.errors import ArchiveError, IntegrityError
from albackup.restore import RestoreOptions
from albackup.values import MOD2

from . import torture
from .test_roundtrip import EXPECTED_LOSSES, _approx_equal, _cfg


def _eng(url: sa.URL) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool)


def _cursor_rows(url: sa.URL, table: str) -> list[Any]:
    """The rows of ``table`` as albackup's cursor read path gives them (the msgpack chunks' values)."""
    from albackup.reflect import reflect_schema

    e = _eng(url)
    adapter = PostgreSQLAdapter(e.dialect)
    try:
        with e.connect() as c, c.begin():
            adapter.begin_snapshot(c)
            schema = reflect_schema(c, adapter, [None], (table,), (), set())
            t = schema.tables[0]
            convert = adapter.batch_reader([col.type for col in t.columns])
            rows = []
            for raw in adapter.stream(c, t, 1000):
                rows += [list(r) for r in (raw if convert is None else convert(raw))]
    finally:
        e.dispose()
    return rows


def _key(row: list[Any]) -> str:
    return repr([(type(v).__name__, v if not isinstance(v, float) or not math.isnan(v) else "nan") for v in row])


def _backup_rows(path: Path, table: str) -> list[Any]:
    b = Backup(path)
    return [[bytes(v) if isinstance(v, memoryview) else v for v in r] for batch in b.iter_batches(table) for r in batch]


def _norm(rows: list[Any]) -> list[str]:
    return sorted(_key([bytes(v) if isinstance(v, memoryview) else v for v in r]) for r in rows)


# ------------------------------------------------------------------ the torture, without arrays
TEXT_RUNS = [("sqlite", 1), ("postgresql", 1), ("mysql", 1), ("postgresql", 2), ("mysql", 2)]


@pytest.mark.parametrize(("dst_kind", "jobs"), TEXT_RUNS, ids=[f"to-{d}-j{j}" for d, j in TEXT_RUNS])
def test_torture_as_copy_text_round_trips_everywhere(dst_kind: str, jobs: int, make_db, tmp_path: Path) -> None:
    """The PostgreSQL type torture (arrays dropped: those tables are read by value) is dumped as
    COPY text, verified, decoded to the cursor path's values, and restored into every engine
    with each value read back; into PostgreSQL the chunks go in as stored and are read back as
    text."""
    src = make_db("postgresql", "txs")
    torture.build(src)
    with _eng(src).begin() as c:
        c.exec_driver_sql("ALTER TABLE torture DROP COLUMN arr_i, DROP COLUMN arr_t")
        c.exec_driver_sql("ANALYZE torture")
    dumped = api.dump(_cfg(src, name="tt", jobs=jobs, chunk_rows=2 if jobs > 1 else 1_000_000), tmp_path / "b")
    b = Backup(dumped.path)
    assert "pg-copy-text-v2" in b.features
    chunks = b.tables["torture"]["chunks"]
    assert all(c["encoding"] == "pg-copy-text" for c in chunks) and (jobs == 1 or len(chunks) >= 2)
    assert api.verify(dumped.path).rows == dumped.rows
    # decoded, the chunks hold exactly what the cursor path reads
    assert _norm(_backup_rows(dumped.path, "torture")) == _norm(_cursor_rows(src, "torture"))

    dst = make_db(dst_kind, "txd")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True),
                      RestoreOptions(allow_restore=True, accept_lossy=True, jobs=jobs))
    assert res.rows == dumped.rows
    if dst_kind == "postgresql":
        assert {t["table"]: t["read_back"] for t in res.tables}["torture"] == "text"
    lossy = EXPECTED_LOSSES.get(("postgresql", dst_kind), set())
    want = torture.expected_source("postgresql")
    got = torture.read_torture(dst)
    assert sorted(got) == sorted(want)
    bad = [(rid, col, v, got[rid].get(col)) for rid, row in want.items() for col, v in row.items()
           if not col.startswith("arr_") and not _approx_equal(col, v, got[rid].get(col), col in lossy)]
    assert not bad, bad[:5]


# ------------------------------------------------------------------ decoding = the cursor path
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
_ROW = st.tuples(
    st.integers(-2**63, 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32, allow_nan=False, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**20, max_value=10**20),
    st.booleans(),
    _TEXT,
    st.text(st.sampled_from("ab \\\t\n\r\b\f\v"), max_size=6),
    st.binary(max_size=30),
    st.dates(),
    st.datetimes(),
    st.times(),
)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(_ROW, min_size=1, max_size=60))
def test_decoded_copy_text_equals_the_cursor_path(pg, tmp_path_factory: pytest.TempPathFactory,
                                                  rows: list[Any]) -> None:
    """Random values of every kind COPY text is used for, NULLs included: the rows a dump stores
    as text, decoded, equal the rows the cursor path reads, value for value and type for type."""
    src = pg.new("txh")
    tmp = tmp_path_factory.mktemp("txh")
    e = _eng(src)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE h (id serial PRIMARY KEY, i bigint, f float8, r real, n numeric(30,4), "
                          "b boolean, t text, ch char(8), by bytea, d date, ts timestamp, tm time, "
                          "tz timestamptz, j jsonb, u uuid, iv interval)")
        cur = c.connection.dbapi_connection.cursor()
        for k, r in enumerate(rows):
            vals = list(r) + [r[9], json.dumps({"s": r[5], "k": k}), f"{k:032x}", f"{k} days {k % 24}:00:00.{k:06d}"]
            if k % 7 == 3:
                vals = [None] * len(vals)
            cur.execute("INSERT INTO h (i, f, r, n, b, t, ch, by, d, ts, tm, tz, j, u, iv) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::timestamp AT TIME ZONE 'UTC', "
                        "%s, %s, %s)", vals)
    e.dispose()
    dumped = api.dump(_cfg(src, name="h"), tmp / "b")
    assert Backup(dumped.path).tables["h"]["chunks"][0]["encoding"] == "pg-copy-text"
    want = _cursor_rows(src, "h")
    got = _backup_rows(dumped.path, "h")
    assert len(got) == len(rows)
    assert _norm(got) == _norm(want)


# ------------------------------------------------------------------ the pipe, errors, damage
def test_copy_out_hands_whole_lines_and_raises_the_consumers_error(pg) -> None:
    url = pg.new("txp")
    e = _eng(url)
    try:
        with e.connect() as c:
            cur = c.connection.dbapi_connection.cursor()
            frames: list[bytes] = []
            got: list[int] = []

            def on_frame(data: bytes) -> None:
                assert data.endswith(b"\n")
                got.append(data.count(b"\n"))
                frames.append(data)

            pgtext.copy_out(cur, "COPY (SELECT g, repeat('x', 300) FROM generate_series(1, 40000) g) TO STDOUT",
                            on_frame)
            assert sum(got) == 40000 and cur.rowcount == 40000 and len(frames) >= 2
            assert b"".join(frames).split(b"\n")[39999].startswith(b"40000\t")

            def failing(data: bytes) -> None:
                raise OSError(28, "No space left on device")

            before = threading.active_count()
            with pytest.raises(OSError, match="No space left"):
                pgtext.copy_out(cur, "COPY (SELECT g, repeat('x', 300) FROM generate_series(1, 200000) g) TO STDOUT",
                                failing)
            assert threading.active_count() == before     # the helper thread ended
    finally:
        e.dispose()


def test_dump_refuses_a_value_without_canonical_form_naming_it(make_db, tmp_path: Path) -> None:
    from albackup.errors import DumpError

    src = make_db("postgresql", "txr")
    with _eng(src).begin() as c:
        c.exec_driver_sql("CREATE TABLE v (id int PRIMARY KEY, note text, d date)")
        # text that merely looks suspect is decoded and let through; an infinite date has no
        # canonical form
        c.exec_driver_sql("INSERT INTO v VALUES (1, 'infinity BC 10000-01-01', '2020-02-29'), (2, NULL, 'infinity')")
    with pytest.raises(DumpError, match=r"table v, column d: cannot read a value as date"):
        api.dump(_cfg(src), tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []
    with _eng(src).begin() as c:
        c.exec_driver_sql("DELETE FROM v WHERE id = 2")
    res = api.dump(_cfg(src), tmp_path / "b")
    assert _backup_rows(res.path, "v") == [[1, "infinity BC 10000-01-01", "2020-02-29"]]


def _text_backup(make_db, tmp_path: Path) -> tuple[sa.URL, Path]:
    src = make_db("postgresql", "txd")
    with _eng(src).begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id int PRIMARY KEY, s text)")
        c.exec_driver_sql("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g")
    return src, api.dump(_cfg(src), tmp_path / "b").path


def test_a_text_chunk_announced_as_msgpack_is_refused(make_db, tmp_path: Path) -> None:
    _, path = _text_backup(make_db, tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    del m["tables"]["t"]["chunks"][0]["encoding"]
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArchiveError, match="chunk holds COPY text, the manifest says msgpack rows"):
        api.verify(path)
    m["tables"]["t"]["chunks"][0]["encoding"] = "csv"
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArchiveError, match="unknown chunk encoding 'csv'"):
        api.verify(path)


@pytest.mark.parametrize("jobs", [1, 2])
def test_line_hashes_have_64_bits_and_v1_backups_with_128_still_restore(make_db, tmp_path: Path, jobs: int) -> None:
    """A new text chunk's hash is the sum of XXH3-64 of its lines modulo 2^64 (pg-copy-text-v2);
    a backup written with XXH3-128 line hashes (pg-copy-text-v1, older backups) still verifies and
    restores into PostgreSQL with its text read back and compared, at 128 bits."""
    _, path = _text_backup(make_db, tmp_path)
    b = Backup(path)
    assert "pg-copy-text-v2" in b.features and b.line_hash_bits == 64
    lines = [ln for data, _ in b.iter_text("t", 0) for ln in data.splitlines(True)]
    assert len(lines) == 500
    assert b.tables["t"]["chunks"][0]["content_hash"] == f"{sum(map(xxh3_64_intdigest, lines)) % (1 << 64):016x}"

    m = json.loads((path / "manifest.json").read_text())       # the same backup as v1 wrote it
    m["features"] = [("pg-copy-text-v1" if f == "pg-copy-text-v2" else f) for f in m["features"]]
    old = f"{sum(map(xxh3_128_intdigest, lines)) % MOD2:032x}"
    m["tables"]["t"]["chunks"][0]["content_hash"] = m["tables"]["t"]["content_hash"] = old
    (path / "manifest.json").write_text(json.dumps(m))
    assert Backup(path).line_hash_bits == 128
    assert api.verify(path).tables[0]["rows"] == 500
    dst = make_db("postgresql", "txo")
    res = api.restore(path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert [(t["table"], t["rows"], t["read_back"]) for t in res.tables] == [("t", 500, "text")]
    with _eng(dst).connect() as c:
        assert c.exec_driver_sql("SELECT count(*), sum(id), max(s) FROM t").one() == (500, 125250, "row 99")

    m["tables"]["t"]["chunks"][0]["content_hash"] = m["tables"]["t"]["content_hash"] = f"{int(old, 16) ^ 1:032x}"
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IntegrityError, match="content hash does not match the manifest"):
        api.verify(path)


def test_verify_and_restore_check_the_line_hash(make_db, tmp_path: Path) -> None:
    """A manifest whose text hash does not match its lines fails verify; a restore into
    PostgreSQL then finds the text read back different and checks the values instead (they are
    the backup's, so it succeeds, read back by value)."""
    _, path = _text_backup(make_db, tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    c = m["tables"]["t"]["chunks"][0]
    c["content_hash"] = f"{(int(c['content_hash'], 16) + 1) % (1 << 64):016x}"
    m["tables"]["t"]["content_hash"] = c["content_hash"]
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IntegrityError, match="content hash does not match the manifest"):
        api.verify(path)
    dst = make_db("postgresql", "txv")
    res = api.restore(path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    assert [(t["table"], t["rows"], t["read_back"]) for t in res.tables] == [("t", 500, "values")]


def _trigger_on_t(e: sa.Engine, on_row_77: str) -> None:
    """Once a restore creates table t, a BEFORE INSERT trigger on it runs ``on_row_77`` (PL/pgSQL)
    for the row whose id is 77 (an event trigger adds it)."""
    with e.begin() as c:
        c.exec_driver_sql(f"""
            CREATE FUNCTION row_77() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.id = 77 THEN {on_row_77} END IF;
              RETURN NEW;
            END $$""")
        c.exec_driver_sql("""
            CREATE FUNCTION arm() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF to_regclass('public.t') IS NOT NULL AND NOT EXISTS (
                  SELECT 1 FROM pg_trigger WHERE tgname = 'row_77_t') THEN
                CREATE TRIGGER row_77_t BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION row_77();
              END IF;
            END $$""")
        c.exec_driver_sql("CREATE EVENT TRIGGER arm ON ddl_command_end WHEN TAG IN ('CREATE TABLE') "
                          "EXECUTE FUNCTION arm()")


def test_a_row_lost_on_the_way_in_fails_the_restore(make_db, tmp_path: Path) -> None:
    """The server drops a row of a chunk that went in as stored (a trigger): the row count read
    back fails the restore and its tables are dropped."""
    _, path = _text_backup(make_db, tmp_path)
    dst = make_db("postgresql", "txl")
    e = _eng(dst)
    _trigger_on_t(e, "RETURN NULL;")
    with pytest.raises(IntegrityError, match="table t: target holds 499 rows after restore, expected 500"):
        api.restore(path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True))
    with e.connect() as c:
        assert c.exec_driver_sql("SELECT to_regclass('t')").scalar() is None
    e.dispose()


@pytest.mark.parametrize("jobs", [1, 2])
def test_read_back_count_loads_as_stored_and_counts_rows_only(make_db, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    """read_back="count" (--read-back count): the chunks still go in as stored, and each table's
    rows are counted instead of read back: a value the server changes on the way in passes
    unseen (what the faster check gives up), a row it drops fails the restore."""
    _, path = _text_backup(make_db, tmp_path)

    def by_value(*args: Any, **kw: Any) -> int:
        raise AssertionError("a COPY text chunk was loaded by value")

    monkeypatch.setattr(PostgreSQLAdapter, "load", by_value)     # the -j workers fork after this
    opts = RestoreOptions(allow_restore=True, jobs=jobs, read_back="count")
    changed = make_db("postgresql", f"txc{jobs}")
    e = _eng(changed)
    _trigger_on_t(e, "NEW.s := 'changed';")
    res = api.restore(path, _cfg(changed, allow_restore=True), opts)
    assert [(t["table"], t["rows"], t["read_back"]) for t in res.tables] == [("t", 500, "count")]
    with e.connect() as c:
        assert c.exec_driver_sql("SELECT count(*), count(*) FILTER (WHERE s = 'row ' || id), "
                                 "min(s) FILTER (WHERE id = 77) FROM t").one() == (500, 499, "changed")
    e.dispose()
    lost = make_db("postgresql", f"txk{jobs}")
    e = _eng(lost)
    _trigger_on_t(e, "RETURN NULL;")
    with pytest.raises(IntegrityError, match="table t: target holds 499 rows after restore, expected 500"):
        api.restore(path, _cfg(lost, allow_restore=True), opts)
    with e.connect() as c:
        assert c.exec_driver_sql("SELECT to_regclass('t')").scalar() is None
    e.dispose()


def test_large_values_are_not_dumped_as_text(make_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit holding a value over LARGE_BYTES is read by value (in pieces), not as COPY text."""
    import albackup.engines.postgresql as pgmod

    monkeypatch.setattr(pgmod, "LARGE_BYTES", 1000)
    src = make_db("postgresql", "txg")
    with _eng(src).begin() as c:
        c.exec_driver_sql("CREATE TABLE small (id int PRIMARY KEY, s text)")
        c.exec_driver_sql("INSERT INTO small VALUES (1, 'short')")
        c.exec_driver_sql("CREATE TABLE big (id int PRIMARY KEY, s text)")
        c.exec_driver_sql("INSERT INTO big VALUES (1, repeat('y', 5000))")
    res = api.dump(_cfg(src), tmp_path / "b")
    b = Backup(res.path)
    assert b.tables["small"]["chunks"][0].get("encoding") == "pg-copy-text"
    assert b.tables["big"]["chunks"][0].get("encoding") is None
    assert _backup_rows(res.path, "big") == [[1, "y" * 5000]]
    assert os.path.getsize(res.path / b.tables["big"]["chunks"][0]["file"]) > 0


def test_parallel_restore_reads_back_in_block_ranges(make_db, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With -j, a table's text read-back is cut into ranges of physical blocks that the workers
    print back side by side; the parts add up to the table (and a missing row is still found)."""
    src = make_db("postgresql", "txb")
    with _eng(src).begin() as c:
        c.exec_driver_sql("CREATE TABLE w (id int PRIMARY KEY, s text, f float8)")
        c.exec_driver_sql("INSERT INTO w SELECT g, repeat('w', g %% 50), g / 7.0 FROM generate_series(1, 20000) g")
        c.exec_driver_sql("ANALYZE w")
    dumped = api.dump(_cfg(src, jobs=2, chunk_rows=5000), tmp_path / "b")
    assert len(Backup(dumped.path).tables["w"]["chunks"]) == 4
    monkeypatch.setattr(PostgreSQLAdapter, "ECHO_PART_BYTES", 64 << 10)
    dst = make_db("postgresql", "txc")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    assert [(t["table"], t["rows"], t["read_back"]) for t in res.tables] == [("w", 20000, "text")]
    e = _eng(dst)
    with e.connect() as c:
        parts = PostgreSQLAdapter(e.dialect).echo_parts(c, Backup(dumped.path).schema.table("w"))
        assert len(parts) > 5 and parts[0][0] == 0 and parts[-1][1] is None
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        whole = PostgreSQLAdapter(e.dialect).echo_read(c, Backup(dumped.path).schema.table("w"), ["id", "s", "f"])
        summed = [PostgreSQLAdapter(e.dialect).echo_read(c, Backup(dumped.path).schema.table("w"), ["id", "s", "f"], p)
                  for p in parts]
        assert whole == (sum(r for r, _ in summed), sum(h for _, h in summed) % (1 << 64)) and whole[0] == 20000
    e.dispose()
    assert api.compare(_cfg(src), _cfg(dst)).differences == []


def test_chunks_load_one_table_after_another_in_turn() -> None:
    from albackup.parallel import _interleaved

    loads = [(0, 0, 10), (0, 1, 9), (0, 2, 8), (1, 0, 5), (1, 1, 6), (2, 0, 1)]
    assert _interleaved(loads) == [(0, 0, 10), (1, 1, 6), (2, 0, 1), (0, 1, 9), (1, 0, 5), (0, 2, 8)]


@pytest.mark.parametrize("dst_kind", ["postgresql", "sqlite"])
def test_encrypted_copy_text_backup(make_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dst_kind: str) -> None:
    """COPY text frames are sealed like any other: nothing of the rows is readable on disk, and
    the backup restores (as stored into PostgreSQL, decoded into SQLite) with the passphrase."""
    from dataclasses import replace

    from albackup.keys import EncryptionConfig
    from albackup.secrets import SecretSource

    monkeypatch.setenv("ALBK_TXT_PASS", "correct horse battery staple")
    enc = EncryptionConfig(passphrase=SecretSource(env="ALBK_TXT_PASS"), scrypt_n=1024)
    src = make_db("postgresql", "txe")
    with _eng(src).begin() as c:
        c.exec_driver_sql("CREATE TABLE cards (id int PRIMARY KEY, holder text, number char(19))")
        c.exec_driver_sql("INSERT INTO cards SELECT g, 'holder-' || g, '4111-1111-1111-' || lpad(g::text, 4, '0') "
                          "FROM generate_series(1, 300) g")
    dumped = api.dump(replace(_cfg(src), encryption=enc), tmp_path / "b")
    for f in dumped.path.rglob("*.chunk"):
        data = f.read_bytes()
        assert b"holder-1" not in data and b"4111-1111" not in data, f
    assert api.verify(dumped.path, enc).rows == 300
    dst = make_db(dst_kind, "txf")
    res = api.restore(dumped.path, replace(_cfg(dst, allow_restore=True), encryption=enc),
                      RestoreOptions(allow_restore=True))
    assert res.rows == 300
    if dst_kind == "postgresql":
        assert res.tables[0]["read_back"] == "text"
    with _eng(dst).connect() as c:
        got = c.exec_driver_sql("SELECT id, holder, number FROM cards ORDER BY id").fetchall()
    assert got[0] == (1, "holder-1", "4111-1111-1111-0001") and len(got) == 300


def test_dump_sessions_print_in_the_text_settings_without_jit(pg) -> None:
    """Every dump session (the dump's own and each worker's) reads in pgtext.SETTINGS, and with
    JIT and parallel query off, for its transaction only."""
    url = pg.new("txs")
    e = _eng(url)
    adapter = PostgreSQLAdapter(e.dialect)
    try:
        with e.connect() as c:
            before = c.exec_driver_sql("SHOW jit").scalar()
            workers = c.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar()
        assert workers != "0"      # the server's default: else the test below proves nothing
        with e.connect() as c, c.begin():
            adapter.begin_snapshot(c)
            got = [c.exec_driver_sql(f"SHOW {name}").scalar()
                   for name in ("TimeZone", "DateStyle", "IntervalStyle", "extra_float_digits", "bytea_output", "jit",
                                "max_parallel_workers_per_gather")]
            token = adapter.export_snapshot(c)
            with e.connect() as w, w.begin():
                adapter.join_snapshot(w, token)
                assert w.exec_driver_sql("SHOW jit").scalar() == "off"
                assert w.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar() == "0"
        with e.connect() as c:
            assert c.exec_driver_sql("SHOW jit").scalar() == before   # SET LOCAL: only that transaction
            assert c.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar() == workers
    finally:
        e.dispose()
    assert got == ["UTC", "ISO, MDY", "postgres", "3", "hex", "off", "0"]


def test_a_driver_error_from_the_raw_cursors_is_a_dump_error(pg) -> None:
    """The data path reads with the driver's own cursors (COPY, server-side cursors): their
    errors are database failures (DumpError, exit 9), not internal errors."""
    import psycopg2

    from albackup.dump import _as_dump_error
    from albackup.errors import DumpError

    url = pg.new("txq")
    e = _eng(url)
    try:
        with e.connect() as c:
            cur = c.connection.dbapi_connection.cursor()
            cur.execute("SET statement_timeout = 1")
            with pytest.raises(psycopg2.Error) as info:
                pgtext.copy_out(cur, "COPY (SELECT pg_sleep(0.2)) TO STDOUT", lambda data: None)
    finally:
        e.dispose()
    mapped = _as_dump_error(info.value, Path("/nonexistent"), psycopg2)
    assert isinstance(mapped, DumpError) and DumpError.exit_code == 9
    assert str(mapped) == "database error during dump: canceling statement due to statement timeout"
    assert _as_dump_error(info.value, Path("/nonexistent")) is None      # without the driver: not ours


def test_ctrl_c_during_a_copy_text_unit_stops_the_dump(make_db, tmp_path: Path) -> None:
    """SIGINT while psycopg2 runs a unit's COPY (C code, calling the pipe's C write): the dump
    stops with exit code 130 and leaves neither a backup nor its staging folder."""
    import signal
    import subprocess
    import sys
    import time

    src = make_db("postgresql", "txi")
    with _eng(src).begin() as c:
        c.exec_driver_sql("CREATE TABLE big (id int PRIMARY KEY, s text)")
        c.exec_driver_sql("INSERT INTO big SELECT g, md5(g::text) || md5((g + 1)::text) FROM generate_series(1, 2000000) g")
    cfg = tmp_path / "db.yaml"
    cfg.write_text(f"url: {src.render_as_string(hide_password=False)}\nchunk_rows: 0\n")
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "albackup", "--cfg", str(cfg), "dump", "-q", "--backup-dir", str(out)],
                         cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:     # until the COPY has written 2 MB
            if any(f.stat().st_size > 2 << 20 for f in out.glob(".*/data/*.chunk")):
                break
            time.sleep(0.02)
        assert p.poll() is None, "the dump ended before it could be interrupted"
        assert any(f.stat().st_size > 2 << 20 for f in out.glob(".*/data/*.chunk"))
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, err.decode()
    assert err.decode().strip() == "albackup: interrupted"
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_load_the_server_refuses_fails_the_restore_and_drops_the_tables(make_db, tmp_path: Path,
                                                                         jobs: int) -> None:
    """A COPY text chunk the server refuses on the way in (a trigger raises on row 77): the restore
    fails with the server's message (RestoreError, exit 10), and the tables it created are gone."""
    from albackup.errors import RestoreError

    _, path = _text_backup(make_db, tmp_path)
    dst = make_db("postgresql", "txz")
    e = _eng(dst)
    _trigger_on_t(e, "RAISE EXCEPTION 'row 77 is not welcome';")
    with pytest.raises(RestoreError, match="row 77 is not welcome") as info:
        api.restore(path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert info.value.exit_code == 10
    with e.connect() as c:
        assert c.exec_driver_sql("SELECT to_regclass('t')").scalar() is None
    e.dispose()


def test_the_pass_for_large_values_and_dates_names_what_it_found(pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pass over a unit that decides between COPY text and reading by value: nothing found
    in a range is [] (the short scan), and a range holding a large value or a date without a
    canonical form names that column (or -1 for the date condition), the range given as
    parameters."""
    import albackup.engines.postgresql as pgmod
    from albackup.reflect import reflect_schema

    monkeypatch.setattr(pgmod, "LARGE_BYTES", 1000)
    url = pg.new("txl")
    e = _eng(url)
    raw = e.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute('CREATE TABLE "pl" (id int PRIMARY KEY, "ab" text, b bytea, d date)')
        cur.execute("""INSERT INTO "pl" SELECT g, 'v' || g, '\\x00'::bytea, DATE '2024-01-01' + g
                       FROM generate_series(1, 100) g""")
        cur.execute("""UPDATE "pl" SET "ab" = repeat('x', 2000) WHERE id = 50""")
        cur.execute("""UPDATE "pl" SET b = decode(repeat('ab', 1500), 'hex') WHERE id = 55""")
        cur.execute("""UPDATE "pl" SET d = 'infinity' WHERE id = 80""")
        raw.commit()
    finally:
        raw.close()
    adapter = PostgreSQLAdapter(e.dialect)
    dates = ['"d" < \'0001-01-01\' OR "d" > \'9999-12-31\'']
    try:
        with e.connect() as c, c.begin():
            adapter.begin_snapshot(c)
            table = reflect_schema(c, adapter, [None]).table("pl")

            def found(lo: int, hi: int, more: list[str] | None = None) -> list[int]:
                return adapter._large_columns(c, table, ' WHERE "id" > %s AND "id" <= %s', (lo, hi), more)

            assert found(0, 40) == [] and found(0, 40, dates) == []
            assert found(40, 52) == [1]
            assert found(40, 60) == [1, 2]
            assert found(60, 100) == [] and found(60, 100, dates) == [-1]
            assert adapter._large_columns(c, table, "", None, dates) == [1, 2, -1]
            assert adapter.copy_text_ok(c, table, ' WHERE "id" > %s AND "id" <= %s', (0, 40))
            assert not adapter.copy_text_ok(c, table, ' WHERE "id" > %s AND "id" <= %s', (60, 100))
    finally:
        e.dispose()


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_range_holding_a_row_copy_cannot_carry_is_read_by_value(make_db, tmp_path: Path, jobs: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A key range is dumped by a guarded COPY (no pass over it first): the range holding a
    value over LARGE_BYTES makes the server stop that COPY, its chunk file is dropped and the
    range is read by value in pieces; the other ranges stay COPY text and the snapshot goes on.
    A range holding an infinite date fails the dump naming the column, as a whole table does."""
    import albackup.engines.postgresql as pgmod
    from albackup.errors import DumpError

    src = make_db("postgresql", f"txq{jobs}")
    with _eng(src).begin() as c:
        c.exec_driver_sql("CREATE TABLE r (id int PRIMARY KEY, s text, d date)")
        c.exec_driver_sql("INSERT INTO r SELECT g, 'v' || g, DATE '2024-01-01' + g FROM generate_series(1, 600) g")
        c.exec_driver_sql("UPDATE r SET s = repeat('x', 5000) WHERE id = 250")
        c.exec_driver_sql("ANALYZE r")
    want = _cursor_rows(src, "r")       # values whole (LARGE_BYTES as it is)
    monkeypatch.setattr(pgmod, "LARGE_BYTES", 1000)
    res = api.dump(_cfg(src, chunk_rows=100, jobs=jobs), tmp_path / "b")
    b = Backup(res.path)
    chunks = b.tables["r"]["chunks"]
    assert len(chunks) == 6 and sum(c["rows"] for c in chunks) == 600
    held = [c for c in chunks if c["range"]["after"] is not None and c["range"]["after"][0] < 250
            and (c["range"]["upto"] is None or c["range"]["upto"][0] >= 250)]
    assert len(held) == 1
    assert [c.get("encoding") for c in chunks] == [None if c is held[0] else "pg-copy-text" for c in chunks]
    assert held[0].get("large_values") == 1
    # every file under data/ is a chunk of the manifest: the dropped COPY left nothing behind
    assert sorted(p.name for p in (res.path / "data").iterdir()) == sorted(Path(c["file"]).name for c in chunks)
    assert _norm(_backup_rows(res.path, "r")) == _norm(want)
    assert api.verify(res.path).rows == 600
    dst = make_db("postgresql", f"txqd{jobs}")
    api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    monkeypatch.undo()
    assert _norm(_cursor_rows(dst, "r")) == _norm(want)
    monkeypatch.setattr(pgmod, "LARGE_BYTES", 1000)

    with _eng(src).begin() as c:
        c.exec_driver_sql("UPDATE r SET d = 'infinity' WHERE id = 420")
    with pytest.raises(DumpError, match=r"table r, column d: cannot read a value as date"):
        api.dump(_cfg(src, chunk_rows=100, jobs=jobs), tmp_path / "c")


def _ordered_source(make_db, name: str, shuffled: bool = False) -> tuple[sa.URL, list[Any]]:
    """Table t (id int key, s text, f float8), 2,000 rows inserted in key order (or shuffled),
    analyzed; and its rows as the cursor path reads them."""
    import random

    src = make_db("postgresql", name)
    ids = list(range(1, 2001))
    if shuffled:
        random.Random(5).shuffle(ids)
    e = _eng(src)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id int PRIMARY KEY, s text, f float8)")
        c.exec_driver_sql("INSERT INTO t SELECT g, 'row ' || g || E'\\ttab', g / 7.0 FROM unnest(%s::int[]) g", (ids,))
    e.dispose()
    _analyze_when_counted(src, "t", 2000)
    return src, _cursor_rows(src, "t")


def _analyze_when_counted(url: sa.URL, table: str, changed: int) -> None:
    """ANALYZE ``table`` once the statistics have counted the ``changed`` rows (a backend reports
    them when it ends): a report after ANALYZE would make its statistics look stale."""
    import time

    e = _eng(url)
    deadline = time.monotonic() + 10
    with e.connect() as c:
        while (c.exec_driver_sql(f"SELECT n_mod_since_analyze FROM pg_stat_all_tables WHERE relid = '{table}'::regclass")
               .scalar() or 0) < changed:
            assert time.monotonic() < deadline, "the statistics never counted the rows"
            time.sleep(0.1)
            c.rollback()
        c.rollback()
        c.exec_driver_sql(f"ANALYZE {table}")
        c.commit()
    e.dispose()


@pytest.mark.parametrize("jobs", [1, 2])
def test_key_ranges_stored_in_key_order_are_read_in_key_order_and_hashed_whole(make_db, tmp_path: Path,
                                                                              jobs: int) -> None:
    """A table stored in key order (pg_stats correlation): each key range is read with ORDER BY
    its key and its chunk hashed whole (XXH3-64 of the text, feature pg-copy-text-ordered-v1);
    verify checks it; a restore into PostgreSQL reads each range back in key order and compares
    (read_back "text"), into another engine decodes the lines; a row the target changes or
    drops fails the restore."""
    from xxhash import xxh3_64_hexdigest

    src, want = _ordered_source(make_db, f"txo{jobs}")
    res = api.dump(_cfg(src, chunk_rows=300, jobs=jobs), tmp_path / "b")
    b = Backup(res.path)
    chunks = b.tables["t"]["chunks"]
    assert "pg-copy-text-ordered-v1" in b.features and len(chunks) >= 5
    for i, c in enumerate(chunks):
        assert c["encoding"] == "pg-copy-text" and c["line_order"] == "key"
        text = b"".join(data for data, _ in b.iter_text("t", i))
        ids = [int(line.split(b"\t")[0]) for line in text.splitlines()]
        assert ids == sorted(ids) and len(ids) == c["rows"]
        assert c["content_hash"] == xxh3_64_hexdigest(text)
    assert api.verify(res.path).rows == 2000
    assert _norm(_backup_rows(res.path, "t")) == _norm(want)

    dst = make_db("postgresql", f"txod{jobs}")
    r = api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    assert [(t["table"], t["rows"], t["read_back"]) for t in r.tables] == [("t", 2000, "text")]
    assert _norm(_cursor_rows(dst, "t")) == _norm(want)
    lite = make_db("sqlite", f"txol{jobs}")
    api.restore(res.path, _cfg(lite, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    with _eng(lite).connect() as c:
        assert sorted(tuple(r) for r in c.exec_driver_sql("SELECT id, s, f FROM t")) == \
            sorted((i, f"row {i}\ttab", i / 7.0) for i in range(1, 2001))

    changed = make_db("postgresql", f"txox{jobs}")
    _trigger_on_t(_eng(changed), "NEW.s := 'changed';")
    with pytest.raises(IntegrityError, match="table t: values read back from the target differ from"):
        api.restore(res.path, _cfg(changed, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    lost = make_db("postgresql", f"txoy{jobs}")
    _trigger_on_t(_eng(lost), "RETURN NULL;")
    with pytest.raises(IntegrityError, match="table t: target holds 1999 rows after restore, expected 2000"):
        api.restore(res.path, _cfg(lost, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))


def test_a_table_stored_out_of_key_order_is_read_as_it_lies(make_db, tmp_path: Path) -> None:
    """Rows inserted in random key order (no correlation): the ranges are read without ORDER BY
    (no sort), their lines hashed one by one, and the restore reads them back as before."""
    src, want = _ordered_source(make_db, "txu", shuffled=True)
    res = api.dump(_cfg(src, chunk_rows=300, jobs=2), tmp_path / "b")
    b = Backup(res.path)
    assert "pg-copy-text-ordered-v1" not in b.features
    assert len(b.tables["t"]["chunks"]) >= 5 and not any(c.get("line_order") for c in b.tables["t"]["chunks"])
    dst = make_db("postgresql", "txud")
    r = api.restore(res.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    assert [(t["table"], t["rows"], t["read_back"]) for t in r.tables] == [("t", 2000, "text")]
    assert _norm(_cursor_rows(dst, "t")) == _norm(want)


def test_a_manifest_with_line_order_where_it_does_not_fit_is_refused(make_db, tmp_path: Path) -> None:
    """line_order on a chunk of msgpack rows, or without the feature that names it, is damage."""
    from albackup.errors import ArchiveError

    src, _ = _ordered_source(make_db, "txm")
    res = api.dump(_cfg(src, chunk_rows=300), tmp_path / "b")
    mpath = res.path / "manifest.json"
    good = json.loads(mpath.read_text())
    for damage in ("feature", "encoding", "value"):
        m = json.loads(json.dumps(good))
        c = m["tables"]["t"]["chunks"][1]
        if damage == "feature":
            m["features"].remove("pg-copy-text-ordered-v1")
        elif damage == "encoding":
            del c["encoding"]
        else:
            c["line_order"] = "physical"
        mpath.write_text(json.dumps(m))
        with pytest.raises(ArchiveError, match="manifest is incomplete or damaged.*line_order"):
            Backup(res.path)
    mpath.write_text(json.dumps(good))
    assert api.verify(res.path).rows == 2000
