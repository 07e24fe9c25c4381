"""The PostgreSQL read-back by text: a restored table printed back by the server (COPY TO) is
compared line for line with the text its load sent (COPY FROM); where the server spells a value
otherwise, the table is read back by value instead. The writers spell values as PostgreSQL
prints them, so that ordinary tables are read back by text."""
from __future__ import annotations

import json
import random
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from xxhash import xxh3_64_intdigest, xxh3_128_intdigest

from albackup import api, config
from albackup.engines.postgresql import _float_text, copy_lines, copy_text_writer
from albackup.errors import IntegrityError
from albackup.model import LogicalType
from albackup.restore import RestoreOptions
from albackup.values import MOD2, EchoHash


def _cfg(url: sa.URL, **kw: object) -> config.DatabaseConfig:
    return config.url_config(url.render_as_string(hide_password=False), **kw)


def _echo(url: sa.URL, sql_type: str, t: LogicalType, values: list[Any]) -> list[tuple[Any, str, str]]:
    """``values`` written by the COPY writer for ``t`` into a ``sql_type`` column, then printed back
    by the server in the settings the read-back uses: [(value, sent, printed)], in order."""
    from albackup.engines import for_engine

    e = sa.create_engine(url, poolclass=NullPool)
    ad = for_engine(e)
    write = copy_lines([str, copy_text_writer(t)])
    sent = write([(i, v) for i, v in enumerate(values)]).encode()
    try:
        with e.begin() as c:
            c.exec_driver_sql("DROP TABLE IF EXISTS echo")
            c.exec_driver_sql(f"CREATE TABLE echo (i int, v {sql_type})")
            raw = c.connection.dbapi_connection
            import io

            raw.cursor().copy_expert("COPY echo (i, v) FROM STDIN", io.BytesIO(sent))
            for setting in ("TIME ZONE 'UTC'", "DateStyle = 'ISO, MDY'", "extra_float_digits = 1"):
                c.exec_driver_sql(f"SET LOCAL {setting}")
            out = io.BytesIO()
            raw.cursor().copy_expert("COPY (SELECT i, v FROM echo ORDER BY i) TO STDOUT", out)
    finally:
        e.dispose()
    return list(zip(values, sent.decode().splitlines(), out.getvalue().decode().splitlines()))


def _floats() -> list[float]:
    rnd = random.Random(20261203)
    special = [0.0, -0.0, 1.0, -1.0, 5.0, 0.1, 0.5, 1e-4, 9.99e-5, 1.5e-7, 1e15, -1e15, 1.2345e15,
               1234567890123456.8, 9999999999999998.0, 1e16, 123456789012345.6, 999999999999999.9,
               5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, float("inf"), float("-inf"),
               float("nan"), 12345.678, 100.0, 1e22, 1e21, 1e-7, 33.3]
    bits = [struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(3000)]
    scaled = [rnd.uniform(-1, 1) * 10 ** rnd.randint(-8, 20) for _ in range(3000)]
    whole = [float(rnd.randint(-10 ** 17, 10 ** 17)) for _ in range(1000)]
    return special + [v for v in bits if v == v] + scaled + whole


def test_floats_are_written_as_postgresql_prints_them(pg) -> None:
    """Every float8 goes in spelled as PostgreSQL prints it back, and reads back the same number."""
    rows = _echo(pg.new("echof"), "double precision", LogicalType("float", bits=64), _floats())
    between = 0
    for v, sent, printed in rows:
        field = printed.split("\t")[1]
        if v == v:
            assert float(field.replace("Infinity", "inf")) == v, (v, field)
        if 2 ** 53 <= abs(v) < 2 ** 64:
            # integers past 2^53 that fit 64 bits: PostgreSQL's Ryu sometimes prints 17 digits
            # where 16 read back exactly (3.6622798412036816e+16, not 3.662279841203682e+16);
            # a table holding one is read back by value
            between += sent != printed
            continue
        assert sent == printed, (v, sent, printed)
    assert between < len(rows) // 20
    assert _float_text(1e15) == "1e+15" and _float_text(5.0) == "5" and _float_text(-0.0) == "-0"


def test_timestamps_times_and_chars_are_written_as_postgresql_prints_them(pg) -> None:
    url = pg.new("echot")
    stamps = ["2024-05-01T10:00:00", "2024-05-01T10:00:00.250000", "2024-05-01T10:00:00.000001",
              "2024-05-01T10:00:00.123456", "0001-01-01T00:00:00", "9999-12-31T23:59:59.999999",
              "2024-05-01T10:00:00.100000"]
    for v, sent, printed in _echo(url, "timestamp(6)", LogicalType("datetime", precision=6), stamps):
        assert sent == printed, v
    aware = [s + "+00:00" for s in stamps]
    for v, sent, printed in _echo(url, "timestamptz", LogicalType("datetime", timezone=True), aware):
        assert sent == printed, v
    times = ["00:00:00", "10:11:12", "10:11:12.500000", "23:59:59.999999", "10:11:12.010000"]
    for v, sent, printed in _echo(url, "time(6)", LogicalType("time", precision=6), times):
        assert sent == printed, v
    chars = ["", "a", "abcde", "ü", "a\tb", "\\x"]
    for v, sent, printed in _echo(url, "char(5)", LogicalType("char", length=5), chars):
        assert sent == printed, v


@pytest.mark.parametrize(("kind", "values"), [
    (LogicalType("datetime", precision=6), ["2024-05-01T10:00:00", "2024-05-01T10:00:00.250000", None,
                                            "2024-05-01 10:00:00", "2024-05-01T10:00:00+00:00", "x\ty",
                                            "2024-05-01T10:00:00.000000", "2024-05-01T10:00:00.000001",
                                            "2024-05-01T10:00:00.25+00:00", "2024-05-01T10:00:0\\.250000"]),
    (LogicalType("float", bits=64), [0.5, 5.0, -0.0, 1e15, 1e-7, 123456789012345.6, 1234567890123456.8,
                                     float("nan"), float("inf"), None, 3, 1e300]),
    (LogicalType("time", precision=6), ["10:11:12", "10:11:12.500000", None, "a\\b", "10:11:12+00:00"]),
    (LogicalType("char", length=4), ["ab", "abcd", "abcde", None, "a\tb", "a\\", "\u00fc" * 4]),
])
def test_inline_writers_write_what_their_functions_write(kind: LogicalType, values: list[Any]) -> None:
    w = copy_text_writer(kind)
    assert getattr(w, "inline", None)
    assert copy_lines([w])([(v,) for v in values]) == "".join(
        ("\\N" if v is None else w(v)) + "\n" for v in values)


def test_echo_hash_of_lines_sent_equals_the_hash_of_lines_printed() -> None:
    lines = [b"1\ta\n", b"2\t\\N\n", b"3\tb\\tc\n"]
    e = EchoHash()
    e.update(b"".join(lines[:2]))
    e.update(lines[2])
    printed = EchoHash()
    printed.update(b"".join(reversed(lines)))       # order does not matter
    assert printed.state() == e.state() == (3, sum(map(xxh3_64_intdigest, lines)) % (1 << 64), True, 64)
    assert len(e.hexdigest()) == 16
    other = EchoHash()
    other.update(b"1\ta\n2\t\\N\n3\tb\\tC\n")
    assert other.rows == 3 and other.total != e.total
    wide = EchoHash(128)                            # the line hash of pg-copy-text-v1 backups
    wide.update(b"".join(lines))
    assert wide.state() == (3, sum(map(xxh3_128_intdigest, lines)) % MOD2, True, 128)
    assert len(wide.hexdigest()) == 32
    with pytest.raises(ValueError, match="64 and 128 bits"):
        e.merge(wide)


def _source(tmp_path: Path) -> sa.URL:
    """A SQLite database of ordinary types, and one table holding a value that PostgreSQL prints
    otherwise than albackup writes it (a float past 2^53, see above)."""
    path = tmp_path / "src.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE plain (id INTEGER PRIMARY KEY, name VARCHAR(40), note TEXT, price NUMERIC(10, 2),
                            ratio DOUBLE PRECISION, born DATE, seen TIMESTAMP, ok BOOLEAN, code CHAR(6),
                            data BLOB, doc JSON);
        CREATE TABLE odd (id INTEGER PRIMARY KEY, r REAL);
    """)
    rnd = random.Random(7)
    con.executemany("INSERT INTO plain VALUES (?,?,?,?,?,?,?,?,?,?,?)", [
        (i, f"name {i}" if i % 7 else None, "line\nbreak\ttab \\ é" if i % 5 == 0 else f"note {i}",
         f"{rnd.randint(0, 99999) / 100:.2f}", rnd.uniform(-1e6, 1e6) if i % 9 else float(i),
         f"20{i % 30:02d}-0{1 + i % 9}-1{i % 10}", f"2024-01-0{1 + i % 9} 10:11:{i % 60:02d}" + (".5" if i % 3 else ""),
         i % 2, "ab" if i % 4 else None, bytes([i % 256, 0, 255]), json.dumps({"k": i, "v": [1, "x"]}))
        for i in range(1, 301)])
    con.executemany("INSERT INTO odd VALUES (?, ?)", [(1, 0.1), (2, 3.662279841203682e16)])
    con.commit()
    con.close()
    return sa.engine.make_url(f"sqlite:///{path}")


@pytest.mark.parametrize("jobs", [1, 2])
def test_ordinary_tables_are_read_back_by_text_others_by_value(pg, tmp_path: Path, jobs: int) -> None:
    dumped = api.dump(_cfg(_source(tmp_path)), tmp_path / "b")
    dst = pg.new("echor")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    how = {t["table"]: t["read_back"] for t in res.tables}
    assert how == {"plain": "text", "odd": "values"}
    e = sa.create_engine(dst, poolclass=NullPool)
    with e.connect() as c:
        assert c.exec_driver_sql("SELECT count(*), count(*) FILTER (WHERE code = 'ab'), sum(octet_length(code)) "
                                 "FROM plain").one() == (300, 225, 225 * 6)
        assert c.exec_driver_sql("SELECT r FROM odd ORDER BY id").scalars().all() == [0.1, 3.662279841203682e16]
    e.dispose()


def _tamper(url: sa.URL, body: str) -> None:
    """An event trigger that gives every table the restore creates a BEFORE INSERT row trigger."""
    e = sa.create_engine(url, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql(f"CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$")
        c.exec_driver_sql("""
            CREATE FUNCTION add_tamper() RETURNS event_trigger LANGUAGE plpgsql AS $$
            DECLARE r record;
            BEGIN
              FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' LOOP
                EXECUTE format('CREATE TRIGGER tamper BEFORE INSERT ON %%s FOR EACH ROW EXECUTE FUNCTION tamper()',
                               r.object_identity);
              END LOOP;
            END $$""")
        c.exec_driver_sql("CREATE EVENT TRIGGER add_tamper ON ddl_command_end EXECUTE FUNCTION add_tamper()")
    e.dispose()


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_value_changed_by_the_server_fails_the_restore_naming_the_column(pg, tmp_path: Path, jobs: int) -> None:
    dumped = api.dump(_cfg(_source(tmp_path)), tmp_path / "b")
    dst = pg.new("echox")
    _tamper(dst, "IF TG_TABLE_NAME = 'plain' AND NEW.id = 5 THEN NEW.note := NEW.note || '!'; END IF; RETURN NEW;")
    with pytest.raises(IntegrityError, match=r"table plain: values read back .* column\(s\) note "):
        api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))
    e = sa.create_engine(dst, poolclass=NullPool)
    assert not {"plain", "odd"} & set(sa.inspect(e).get_table_names())
    e.dispose()


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_row_dropped_by_the_server_fails_the_restore(pg, tmp_path: Path, jobs: int) -> None:
    dumped = api.dump(_cfg(_source(tmp_path)), tmp_path / "b")
    dst = pg.new("echod")
    _tamper(dst, "IF TG_TABLE_NAME = 'plain' AND NEW.id = 7 THEN RETURN NULL; END IF; RETURN NEW;")
    with pytest.raises(IntegrityError, match="table plain: target holds 299 rows after restore, expected 300"):
        api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=jobs))


def test_a_table_read_back_by_value_beside_the_loads_still_fails_on_a_changed_value(pg, tmp_path: Path,
                                                                                     caplog: Any) -> None:
    """-j2: a table that cannot be read back as text (a value stored in pieces) is read back by
    value as soon as it is built, while the other table still loads; a value the server changed
    still fails the restore, naming the column, and the tables are dropped. Untampered, the
    same restore passes with both tables read back during the load."""
    import logging

    from albackup.codec import LARGE_BYTES

    src = pg.new("echoearlysrc")
    e = sa.create_engine(src, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE big (id integer PRIMARY KEY, note text, payload bytea)")
        c.exec_driver_sql("CREATE TABLE other (id integer PRIMARY KEY, note text)")
        c.exec_driver_sql(f"INSERT INTO big VALUES (1, 'one', convert_to(repeat('a', {LARGE_BYTES + 10}), 'UTF8')), "
                          "(2, 'two', '\\x6162'), (3, NULL, NULL)")
        c.exec_driver_sql("INSERT INTO other SELECT g, 'n' || g FROM generate_series(1, 200) g")
    e.dispose()
    dumped = api.dump(_cfg(src), tmp_path / "b")
    assert api.open_backup(dumped.path).tables["big"]["chunks"][0].get("large_values")
    dst = pg.new("echoearly")
    with caplog.at_level(logging.DEBUG, logger="albackup"):
        res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    assert {t["table"]: t["read_back"] for t in res.tables} == {"big": "values", "other": "text"}
    assert any("tables read back as text and 1 by value" in r.getMessage() for r in caplog.records)

    dst = pg.new("echoearlyx")
    _tamper(dst, "IF TG_TABLE_NAME = 'big' AND NEW.id = 2 THEN NEW.note := NEW.note || '!'; END IF; RETURN NEW;")
    with pytest.raises(IntegrityError, match=r"table big: values read back .* column\(s\) note"):
        api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, jobs=2))
    e = sa.create_engine(dst, poolclass=NullPool)
    assert not {"big", "other"} & set(sa.inspect(e).get_table_names())
    e.dispose()
