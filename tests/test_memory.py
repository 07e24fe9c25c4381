"""Bounded memory: a table several times larger than the bound, of 5 MB values, is dumped and
restored by processes whose peak RSS stays under 200 MB; the values come back unchanged.

Peak RSS is read from /proc/self/status (VmHWM) in the albackup process itself as it exits:
getrusage of a child would include the peak of the test process it was forked from."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

LIMIT_MB = 200
RUN = """
import atexit, sys
def _peak():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            sys.stderr.write('PEAK_KB=' + line.split()[1] + '\\n')
atexit.register(_peak)
from albackup.cli import main
sys.argv = ['albackup'] + sys.argv[1:]
main()
"""


def _run(args: list[str]) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    peak = [int(x.split("=")[1]) for x in p.stderr.splitlines() if x.startswith("PEAK_KB=")]
    assert peak, p.stderr[-2000:]
    return peak[-1] // 1024, p.stdout


def _digest(url: sa.URL) -> tuple[int, str]:
    e = sa.create_engine(url, poolclass=NullPool)
    with e.connect() as c:
        n, d = c.exec_driver_sql("SELECT count(*), md5(string_agg(md5(data), ',' ORDER BY id)) FROM blobs").one()
    e.dispose()
    return int(n), str(d)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_dump_and_restore_of_large_values_stay_under_the_memory_bound(make_db, tmp_path: Path) -> None:
    src = make_db("postgresql", "mem")
    e = sa.create_engine(src, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BYTEA, note TEXT)")
        # 60 values of 5 MB (300 MB in all), each different; plus a narrow tail of small rows
        c.exec_driver_sql("INSERT INTO blobs SELECT g, decode(repeat(md5(g::text), 327680), 'hex'), 'big' "
                          "FROM generate_series(1, 60) g")
        c.exec_driver_sql("INSERT INTO blobs SELECT g, decode(md5(g::text), 'hex'), repeat('n', 100) "
                          "FROM generate_series(61, 20060) g")
    e.dispose()
    want = _digest(src)
    url = src.render_as_string(hide_password=False)
    peak_dump, out = _run(["dump", "-q", "--url", url, "--backup-dir", str(tmp_path / "b")])
    backup = out.strip().splitlines()[-1]
    # values under 8 MB: the table is read as COPY text (10 MB lines of bytea hex), whole lines
    # in flight through the pipe, the frames and the compressor
    assert {c.get("encoding") for c in json.loads((Path(backup) / "manifest.json").read_text())
            ["tables"]["blobs"]["chunks"]} == {"pg-copy-text"}
    dst = make_db("postgresql", "memd")
    peak_restore, _ = _run(["restore", "-q", "--url", dst.render_as_string(hide_password=False),
                            "--allow-restore", "--backup-dir", backup])
    assert _digest(dst) == want
    assert peak_dump < LIMIT_MB, f"dump peaked at {peak_dump} MB"
    assert peak_restore < LIMIT_MB, f"restore peaked at {peak_restore} MB"


def _digest2(url: sa.URL) -> list[tuple[int, str, str, int]]:
    e = sa.create_engine(url, poolclass=NullPool)
    with e.connect() as c:
        if e.dialect.name == "postgresql":
            rows = [tuple(r) for r in c.exec_driver_sql(
                "SELECT id, md5(data), md5(doc), octet_length(data) FROM big ORDER BY id")]
        else:   # SQLite: no md5 in SQL
            import hashlib

            rows = [(i, hashlib.md5(d).hexdigest(), hashlib.md5(t.encode()).hexdigest(), len(d))
                    for i, d, t in c.exec_driver_sql("SELECT id, data, doc FROM big ORDER BY id")]
    e.dispose()
    return rows


def _dump_large(src: sa.URL, tmp_path: Path) -> tuple[int, str]:
    """Dump table ``big`` (two rows of two large values each): the peak RSS and the backup's
    path; the manifest records the large-values feature and the four values stored in pieces."""
    import json

    url = src.render_as_string(hide_password=False)
    peak, out = _run(["dump", "-q", "--url", url, "--backup-dir", str(tmp_path / "b")])
    backup = out.strip().splitlines()[-1]
    m = json.loads((Path(backup) / "manifest.json").read_text())
    assert "large-values-v1" in m["features"]
    assert sum(c.get("large_values", 0) for c in m["tables"]["big"]["chunks"]) == 4
    return peak, backup


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_50_mb_values_are_streamed_in_pieces(make_db, tmp_path: Path) -> None:
    """Rows holding 50 MB values (bytea and text): dumped, verified and restored (also with
    -j 2) by processes that stay under 200 MB, and read back unchanged; the backup records the
    large-values feature. Restored into SQLite (values made whole there), they are unchanged too."""
    src = make_db("postgresql", "big")
    e = sa.create_engine(src, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE big (id INTEGER PRIMARY KEY, data BYTEA, doc TEXT)")
        c.exec_driver_sql("ALTER TABLE big ALTER COLUMN data SET STORAGE EXTERNAL")
        c.exec_driver_sql("INSERT INTO big SELECT g, decode(repeat(md5(g::text), 3276800), 'hex'), "
                          "repeat('zoë\tline\\n' || g, 4000000) FROM generate_series(1, 2) g")
        c.exec_driver_sql("INSERT INTO big SELECT g, decode(md5(g::text), 'hex'), 'small' "
                          "FROM generate_series(3, 2000) g")
    e.dispose()
    want = _digest2(src)
    assert want[0][3] == 52428800
    peak_dump, backup = _dump_large(src, tmp_path)
    peak_verify, _ = _run(["verify", "--backup-dir", backup])
    for jobs in ("1", "2"):
        dst = make_db("postgresql", "bigd")
        peak_restore, _ = _run(["restore", "-q", "-j", jobs, "--url", dst.render_as_string(hide_password=False),
                                "--allow-restore", "--backup-dir", backup])
        assert _digest2(dst) == want
        assert peak_restore < LIMIT_MB, f"restore -j {jobs} peaked at {peak_restore} MB"
    assert peak_dump < LIMIT_MB, f"dump peaked at {peak_dump} MB"
    assert peak_verify < LIMIT_MB, f"verify peaked at {peak_verify} MB"

    lite = make_db("sqlite", "bigl")
    _run(["restore", "-q", "--url", lite.render_as_string(hide_password=False), "--allow-restore",
          "--backup-dir", backup])
    assert _digest2(lite) == want


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_mariadb_50_mb_values_are_dumped_in_pieces(make_db, tmp_path: Path) -> None:
    """MySQL/MariaDB: rows holding 50 MB values (LONGBLOB, LONGTEXT) are dumped by a process that
    stays under 200 MB (the values are read in pieces by the row's key), verified, and restored
    into PostgreSQL unchanged, also under 200 MB. Creating such values needs max_allowed_packet
    above them on the server; the test raises it and puts it back."""
    src = make_db("mysql", "bigm")
    e = sa.create_engine(src, poolclass=NullPool)
    with e.connect() as c:
        before = int(c.exec_driver_sql("SELECT @@GLOBAL.max_allowed_packet").scalar())
        c.exec_driver_sql(f"SET GLOBAL max_allowed_packet = {max(before, 128 << 20)}")
    e.dispose()
    try:
        e = sa.create_engine(src, poolclass=NullPool)      # new connections see the new limit
        with e.begin() as c:
            c.exec_driver_sql("CREATE TABLE big (id INT PRIMARY KEY, data LONGBLOB, doc LONGTEXT)")
            for i in (1, 2):
                c.exec_driver_sql(f"INSERT INTO big VALUES ({i}, UNHEX(REPEAT(MD5({i}), 3276800)), "
                                  f"REPEAT(CONCAT('zoë\\tline\\n', {i}), 4000000))")
            c.exec_driver_sql("INSERT INTO big SELECT seq, UNHEX(MD5(seq)), 'small' FROM seq_3_to_2000")
            want = [tuple(r) for r in c.exec_driver_sql(
                "SELECT id, MD5(data), MD5(doc), LENGTH(data) FROM big ORDER BY id")]
        e.dispose()
        assert want[0][3] == 52428800
        peak_dump, backup = _dump_large(src, tmp_path)
        _run(["verify", "--backup-dir", backup])
        dst = make_db("postgresql", "bigmp")
        peak_restore, _ = _run(["restore", "-q", "--url", dst.render_as_string(hide_password=False),
                                "--allow-restore", "--backup-dir", backup])
        assert _digest2(dst) == want
        assert peak_dump < LIMIT_MB, f"dump peaked at {peak_dump} MB"
        assert peak_restore < LIMIT_MB, f"restore peaked at {peak_restore} MB"
    finally:
        e = sa.create_engine(src, poolclass=NullPool)
        with e.connect() as c:
            c.exec_driver_sql(f"SET GLOBAL max_allowed_packet = {before}")
        e.dispose()
