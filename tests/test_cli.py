"""The command line, end to end: every command and every refusal, with real files and databases.

Most tests drive ``albackup.cli.main`` in-process (catching SystemExit, output captured with
capsys); a few run ``python -m albackup`` as a real subprocess. Source databases are small SQLite
files built with the stdlib ``sqlite3`` module; two tests round-trip through PostgreSQL and MariaDB.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from albackup import __version__
from albackup.cli import main
from albackup.errors import AlbackupError, StorageError, all_error_classes

ROOT = Path(__file__).resolve().parent.parent
SECRET = "secretpw"
UNREACHABLE = f"postgresql://nobody:{SECRET}@127.0.0.1:1/x"

SOURCE_SQL = """
PRAGMA foreign_keys = ON;
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    email VARCHAR(100),
    balance NUMERIC(10, 2),
    CHECK (length(name) > 0)
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    note TEXT,
    data BLOB,
    qty INTEGER,
    price REAL,
    placed DATE
);
CREATE INDEX ix_orders_customer ON orders (customer_id);
"""
CUSTOMERS = [
    (1, "Ann", "ann@example.com", 12.5),
    (2, "Bjørn ✓ 😀", None, None),
    (3, "Zoe\u0301 — 日本語", None, -3.25),
    (4, "back\\slash 'quote' \"dq\"\ttab\nnewline", "", 0),
]
ORDERS = [
    (1, 1, "first", b"\x00\xff\x10\x00", 3, 1.5, "2020-01-02"),
    (2, 1, None, None, None, None, None),
    (3, 2, "naïve", b"", 0, -0.25, "1850-06-30"),
    (4, 3, "", b"\x00" * 64, -9223372036854775808, 1e10, "2150-12-31"),
    (5, 4, "max", bytes(range(256)), 9223372036854775807, 0.0, "0001-01-01"),
]


# ---------------------------------------------------------------- helpers

@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.strip().splitlines()

    @property
    def both(self) -> str:
        return self.out + self.err


def cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> Run:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    code = info.value.code
    return Run(0 if code is None else int(code), out, err)


def subproc(*argv: Any, cwd: Path) -> Run:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "albackup", *map(str, argv)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=120)
    return Run(p.returncode, p.stdout, p.stderr)


def make_source(path: Path) -> Path:
    c = sqlite3.connect(path)
    c.executescript(SOURCE_SQL)
    c.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", CUSTOMERS)
    c.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)", ORDERS)
    c.commit()
    c.close()
    return path


def rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    c = sqlite3.connect(path)
    try:
        return c.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
    finally:
        c.close()


def typed_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    """Rows with each value's SQLite storage class, so 1.0 and 1 or '' and NULL are told apart."""
    c = sqlite3.connect(path)
    try:
        cols = [r[1] for r in c.execute(f'PRAGMA table_info("{table}")')]
        sel = ", ".join(f'"{x}", typeof("{x}")' for x in cols)
        return c.execute(f'SELECT {sel} FROM "{table}" ORDER BY 1').fetchall()
    finally:
        c.close()


def tables_of(path: Path) -> set[str]:
    if not path.exists():
        return set()
    c = sqlite3.connect(path)
    try:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        c.close()


def schema_sql(path: Path) -> str:
    c = sqlite3.connect(path)
    try:
        return "\n".join(r[0] for r in c.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
    finally:
        c.close()


def url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_source(tmp_path / "shop.sqlite")


@pytest.fixture
def backup(capsys: pytest.CaptureFixture[str], src: Path, tmp_path: Path) -> Path:
    r = cli(capsys, "dump", "--url", url(src), "--backup-dir", tmp_path / "backups")
    assert r.code == 0, r.err
    return Path(r.lines[-1])


def write_cfg(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def chunk_files(b: Path) -> list[Path]:
    return sorted((b / "data").glob("*.chunk"))


def one_error_line(r: Run) -> str:
    lines = [x for x in r.err.splitlines() if x.strip()]
    assert len(lines) == 1, r.err
    assert lines[0].startswith("albackup: error: "), r.err
    assert "Traceback" not in r.err
    return lines[0]


# ---------------------------------------------------------------- dump

def check_published(path: Path, parent: Path) -> None:
    assert path.parent == parent.resolve() or path.parent == parent
    assert path.is_dir() and (path / "manifest.json").is_file()
    assert path.name.startswith("shop@local--")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for p in path.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
    assert [p.name for p in parent.iterdir()] == [path.name]     # nothing else, nothing hidden


@pytest.mark.parametrize("shape", ["options-first", "command-first"])
def test_dump_with_config_file_both_call_shapes(capsys: pytest.CaptureFixture[str], src: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    cfg = write_cfg(tmp_path / "dump.yaml", "driver: sqlite\ndatabase: shop.sqlite   # relative to this file\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "backups"
    if shape == "options-first":
        r = cli(capsys, "--cfg", cfg, "--backup-dir", out, "dump")
    else:
        r = cli(capsys, "dump", "--cfg", cfg, "--backup-dir", out)
    assert r.code == 0, r.err
    path = Path(r.lines[-1])
    check_published(path, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    m = json.loads((path / "manifest.json").read_text("utf-8"))
    assert m["totals"] == {"tables": 2, "rows": 9, "bytes": m["totals"]["bytes"]}
    assert m["compression"] == "zstd"
    assert "table customers: 4 rows" in r.err and "table orders: 5 rows" in r.err


def test_dump_with_url(capsys: pytest.CaptureFixture[str], src: Path, tmp_path: Path) -> None:
    out = tmp_path / "backups"
    r = cli(capsys, "dump", "--url", url(src), "--backup-dir", out, "--compression", "lzma")
    assert r.code == 0, r.err
    path = Path(r.lines[-1])
    check_published(path, out)
    assert json.loads((path / "manifest.json").read_text())["compression"] == "lzma"
    assert all(f.read_bytes()[8] == 3 for f in chunk_files(path))   # lzma id in every chunk header


def test_dump_json(capsys: pytest.CaptureFixture[str], src: Path, tmp_path: Path) -> None:
    r = cli(capsys, "--json", "dump", "--url", url(src), "--backup-dir", tmp_path / "b")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert Path(data["backup"]).is_dir() and (Path(data["backup"]) / "manifest.json").is_file()
    assert data["tables"] == 2 and data["rows"] == 9 and data["bytes"] > 0
    assert data["consistency"]["consistent"] is True


def test_options_after_the_command_win(capsys: pytest.CaptureFixture[str], src: Path, tmp_path: Path) -> None:
    r = cli(capsys, "--backup-dir", tmp_path / "first", "dump", "--url", url(src), "--backup-dir",
            tmp_path / "second")
    assert r.code == 0, r.err
    assert Path(r.lines[-1]).parent == tmp_path / "second"
    assert not (tmp_path / "first").exists()


def test_dump_table_selection_and_quiet(capsys: pytest.CaptureFixture[str], src: Path, tmp_path: Path) -> None:
    r = cli(capsys, "-q", "dump", "--url", url(src), "--backup-dir", tmp_path / "b", "--exclude-tables", "ord*")
    assert r.code == 0 and r.err == ""
    m = json.loads((Path(r.lines[-1]) / "manifest.json").read_text())
    assert list(m["tables"]) == ["customers"]
    r = cli(capsys, "dump", "--url", url(src), "--backup-dir", tmp_path / "c", "--tables", "orders,customers")
    assert r.code == 0
    assert sorted(json.loads((Path(r.lines[-1]) / "manifest.json").read_text())["tables"]) == ["customers", "orders"]


def test_default_config_in_working_folder(capsys: pytest.CaptureFixture[str], src: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    write_cfg(tmp_path / "albackup.yaml", "driver: sqlite\ndatabase: shop.sqlite\n")
    monkeypatch.chdir(tmp_path)
    r = cli(capsys, "dump", "--backup-dir", "bk")
    assert r.code == 0, r.err
    assert Path(r.lines[-1]).parent == Path("bk") and (tmp_path / "bk").is_dir()


def test_dump_of_unreadable_value_fails_and_leaves_no_backup(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    db = tmp_path / "bad.sqlite"
    c = sqlite3.connect(db)
    c.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, d DATE); INSERT INTO t VALUES (1, 'not a date');")
    c.commit()
    c.close()
    r = cli(capsys, "dump", "--url", url(db), "--backup-dir", tmp_path / "b")
    assert r.code == 9
    line = one_error_line(r)
    assert "table t, column d" in line
    assert list((tmp_path / "b").iterdir()) == []


def test_dump_subprocess(src: Path, tmp_path: Path) -> None:
    r = subproc("--backup-dir", tmp_path / "b", "dump", "--url", url(src), cwd=tmp_path)
    assert r.code == 0, r.err
    path = Path(r.lines[-1])
    check_published(path, tmp_path / "b")
    v = subproc("verify", "--backup-dir", path, cwd=tmp_path)
    assert v.code == 0 and v.out.startswith("OK ")
    assert subproc("--version", cwd=tmp_path).out.strip() == f"albackup, version {__version__}"


def test_unwritable_backup_dir_is_a_storage_error(capsys: pytest.CaptureFixture[str], src: Path,
                                                  tmp_path: Path) -> None:
    """Not ArchiveError (7, 'the backup is damaged'): the backups folder cannot be written."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    for where in (blocker, blocker / "sub"):
        r = cli(capsys, "dump", "--url", url(src), "--backup-dir", where)
        assert str(where) in one_error_line(r)
        assert r.code == StorageError.exit_code, r.err
    assert blocker.read_text() == "x"


def test_views_and_triggers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "shop.sqlite"
    c = sqlite3.connect(db)
    c.executescript("""
        CREATE TABLE a (id INTEGER PRIMARY KEY, n TEXT);
        CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, msg TEXT);
        CREATE VIEW v_a AS SELECT n FROM a WHERE id > 1;
        CREATE TRIGGER tr_a AFTER INSERT ON a BEGIN INSERT INTO log (msg) VALUES (new.n); END;
        INSERT INTO a VALUES (1, 'x'), (2, 'y');
    """)
    c.commit()
    c.close()
    r = cli(capsys, "dump", "--url", url(db), "--backup-dir", tmp_path / "b")
    assert r.code == 0, r.err
    full = r.lines[-1]
    r = cli(capsys, "inspect", "--backup-dir", full)
    assert "view v_a" in r.lines and "trigger tr_a" in r.lines
    target = tmp_path / "t.sqlite"
    assert cli(capsys, "restore", "--allow-restore", "--url", url(target), "--backup-dir", full).code == 0
    c = sqlite3.connect(target)
    assert c.execute("SELECT * FROM v_a").fetchall() == [("y",)]
    assert c.execute("SELECT * FROM log ORDER BY id").fetchall() == [(1, "x"), (2, "y")]   # not fired by the load
    c.execute("INSERT INTO a VALUES (3, 'z')")
    assert c.execute("SELECT * FROM log ORDER BY id").fetchall() == [(1, "x"), (2, "y"), (3, "z")]
    c.close()
    # a subset restore leaves routines out; --no-routines too
    for extra, name in ((["--tables", "a,log"], "sub.sqlite"), (["--no-routines"], "nor.sqlite")):
        r = cli(capsys, "restore", "--allow-restore", "--url", url(tmp_path / name), "--backup-dir", full, *extra)
        assert r.code == 0, r.err
        assert tables_of(tmp_path / name) >= {"a", "log"}
        assert "v_a" not in schema_sql(tmp_path / name) and "tr_a" not in schema_sql(tmp_path / name)
    r = cli(capsys, "dump", "--url", url(db), "--backup-dir", tmp_path / "b2", "--no-views", "--no-triggers")
    info = json.loads(cli(capsys, "inspect", "--json", "--backup-dir", r.lines[-1]).out)
    assert info["routines"] == []
    assert {x["kind"] for x in info["skipped"]} == {"view", "trigger"}


# ---------------------------------------------------------------- verify, inspect

def test_verify_ok(capsys: pytest.CaptureFixture[str], backup: Path) -> None:
    r = cli(capsys, "verify", "--backup-dir", backup)
    assert r.code == 0, r.err
    assert r.out.strip() == f"OK {backup}: 2 tables, 9 rows verified"
    r = cli(capsys, "--json", "verify", "--backup-dir", backup)
    data = json.loads(r.out)
    assert data["ok"] is True and data["rows"] == 9
    assert {t["table"]: t["rows"] for t in data["tables"]} == {"customers": 4, "orders": 5}


def test_inspect_text(capsys: pytest.CaptureFixture[str], backup: Path) -> None:
    r = cli(capsys, "inspect", "--backup-dir", backup)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == f"backup      {backup.name}"
    assert any(x.startswith("source      sqlite ") for x in lines)
    assert "read by     sqlite+pysqlite" in lines
    assert "consistency sqlite-read-transaction (consistent)" in lines
    assert "compression zstd" in lines
    assert any(x.startswith("customers: 4 rows, ") and x.endswith("1 chunk(s)") for x in lines)
    assert any(x.startswith("orders: 5 rows, ") for x in lines)

    def col(name: str) -> list[str]:
        return [x.split() for x in lines if x.startswith("    ") and x.split()[0] == name][0]
    assert col("balance") == ["balance", "decimal(10,2)", "NUMERIC(10,", "2)"]
    assert col("name") == ["name", "text", "TEXT", "NOT", "NULL"]
    assert col("email") == ["email", "string(100)", "VARCHAR(100)"]
    assert col("data") == ["data", "binary", "BLOB"]
    assert col("placed") == ["placed", "date", "DATE"]
    assert col("customer_id") == ["customer_id", "int64", "INTEGER", "NOT", "NULL"]


def test_inspect_json(capsys: pytest.CaptureFixture[str], backup: Path) -> None:
    r = cli(capsys, "inspect", "--json", "--backup-dir", backup)
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["id"] == backup.name and info["format_version"] == 1
    assert info["source"]["engine"] == "sqlite" and info["source"]["driver"] == "pysqlite"
    t = {x["table"]: x for x in info["tables"]}
    assert set(t) == {"customers", "orders"}
    assert t["customers"]["rows"] == 4 and t["orders"]["rows"] == 5
    assert t["orders"]["foreign_keys"] == 1 and t["orders"]["indexes"] == 1
    assert t["customers"]["primary_key"] == ["id"]
    cols = {c["name"]: c for c in t["customers"]["columns"]}
    assert cols["balance"] == {"name": "balance", "type": "decimal(10,2)", "original_type": "NUMERIC(10, 2)",
                               "nullable": True}
    assert cols["name"]["nullable"] is False and cols["name"]["type"] == "text"
    assert [c["name"] for c in t["orders"]["columns"]] == ["id", "customer_id", "note", "data", "qty", "price",
                                                           "placed"]
    assert sum(x["bytes"] for x in info["tables"]) == sum(f.stat().st_size for f in chunk_files(backup))


# ---------------------------------------------------------------- restore

def test_restore_refused_without_allow_restore(capsys: pytest.CaptureFixture[str], backup: Path,
                                               tmp_path: Path) -> None:
    target = tmp_path / "target.sqlite"
    r = cli(capsys, "restore", "--url", url(target), "--backup-dir", backup)
    assert r.code == 5
    assert "allow_restore" in one_error_line(r)
    assert not target.exists()
    # a config file without allow_restore: refused the same way
    cfg = write_cfg(tmp_path / "t.yaml", "driver: sqlite\ndatabase: target.sqlite\n")
    r = cli(capsys, "--cfg", cfg, "restore", "--backup-dir", backup)
    assert r.code == 5 and "allow_restore" in r.err
    assert not target.exists()
    # an existing target is left byte for byte as it was
    other = make_source(tmp_path / "other.sqlite")
    before = other.read_bytes()
    r = cli(capsys, "restore", "--url", url(other), "--backup-dir", backup)
    assert r.code == 5 and other.read_bytes() == before


def test_restore_with_allow_restore_gives_back_the_same_values(capsys: pytest.CaptureFixture[str], src: Path,
                                                               backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.sqlite"
    r = cli(capsys, "restore", "--url", url(target), "--allow-restore", "--backup-dir", backup)
    assert r.code == 0, r.err
    assert r.lines[-1].startswith("restored 2 tables, 9 rows into sqlite:///")
    for t in ("customers", "orders"):
        assert rows(target, t) == rows(src, t)
    assert typed_rows(target, "orders") == typed_rows(src, "orders")
    sql = schema_sql(target)
    assert "UNIQUE" in sql and "CHECK (length(name) > 0)" in sql
    assert sql == schema_sql(src)       # the statements that made them, as they were written
    assert "REFERENCES customers(id)" in sql and "CREATE INDEX ix_orders_customer" in sql
    # the constraints are live in the copy
    c = sqlite3.connect(target)
    c.execute("PRAGMA foreign_keys = ON")
    for bad in ("INSERT INTO customers VALUES (9, 'Ann', NULL, NULL)",      # unique
                "INSERT INTO customers VALUES (9, '', NULL, NULL)",          # check
                "INSERT INTO orders (id, customer_id) VALUES (9, 999)"):     # foreign key
        with pytest.raises(sqlite3.IntegrityError):
            c.execute(bad)
    c.close()
    cmp = cli(capsys, "compare", "--url", url(src), "--target-url", url(target))
    assert cmp.code == 0, cmp.out + cmp.err


def test_restore_with_config_allow_restore(capsys: pytest.CaptureFixture[str], src: Path, backup: Path,
                                           tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path / "restore.yaml", "driver: sqlite\ndatabase: fromcfg.sqlite\nallow_restore: true\n")
    r = cli(capsys, "--cfg", cfg, "restore", "--backup-dir", backup)
    assert r.code == 0, r.err
    assert rows(tmp_path / "fromcfg.sqlite", "customers") == rows(src, "customers")


def test_restore_json(capsys: pytest.CaptureFixture[str], backup: Path, tmp_path: Path) -> None:
    r = cli(capsys, "restore", "--json", "--allow-restore", "--url", url(tmp_path / "j.sqlite"),
            "--backup-dir", backup)
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["rows"] == 9 and data["planned_only"] is False and data["losses"] == []
    assert {t["table"]: t["rows"] for t in data["tables"]} == {"customers": 4, "orders": 5}
    assert {t["read_back"] for t in data["tables"]} == {"values"}


def test_restore_read_back_count(capsys: pytest.CaptureFixture[str], src: Path, backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "counted.sqlite"
    r = cli(capsys, "restore", "--json", "--read-back", "count", "--allow-restore", "--url", url(target),
            "--backup-dir", backup)
    assert r.code == 0, r.err
    assert {t["table"]: t["read_back"] for t in json.loads(r.out)["tables"]} == {"customers": "count", "orders": "count"}
    assert rows(target, "orders") == rows(src, "orders")
    r = cli(capsys, "restore", "--read-back", "rows", "--allow-restore", "--url", url(tmp_path / "x.sqlite"),
            "--backup-dir", backup)
    assert r.code == 2 and "'rows' is not one of 'hash', 'count'" in r.err
    # the target's config may ask for it too; the command line wins
    cfg = write_cfg(tmp_path / "counted.yaml", "driver: sqlite\ndatabase: c2.sqlite\nallow_restore: true\n"
                                               "read_back: count\n")
    r = cli(capsys, "--cfg", cfg, "restore", "--json", "--backup-dir", backup)
    assert r.code == 0, r.err
    assert {t["read_back"] for t in json.loads(r.out)["tables"]} == {"count"}
    r = cli(capsys, "--cfg", cfg, "restore", "--json", "--read-back", "hash", "--clean", "--backup-dir", backup)
    assert r.code == 0, r.err
    assert {t["read_back"] for t in json.loads(r.out)["tables"]} == {"values"}


def test_restore_into_non_empty_target_needs_clean(capsys: pytest.CaptureFixture[str], src: Path, backup: Path,
                                                   tmp_path: Path) -> None:
    target = tmp_path / "busy.sqlite"
    c = sqlite3.connect(target)
    c.executescript("CREATE TABLE customers (x TEXT); INSERT INTO customers VALUES ('keep me');"
                    "CREATE TABLE unrelated (y); INSERT INTO unrelated VALUES (42);")
    c.commit()
    c.close()
    r = cli(capsys, "restore", "--url", url(target), "--allow-restore", "--backup-dir", backup)
    assert r.code == 5
    line = one_error_line(r)
    assert "--clean" in line and "customers" in line
    assert rows(target, "customers") == [("keep me",)]
    assert tables_of(target) == {"customers", "unrelated"}
    r = cli(capsys, "restore", "--url", url(target), "--allow-restore", "--clean", "--backup-dir", backup)
    assert r.code == 0, r.err
    assert rows(target, "customers") == rows(src, "customers")
    assert rows(target, "orders") == rows(src, "orders")
    assert rows(target, "unrelated") == [(42,)]       # --clean drops only what it replaces


def _two_table_backup(capsys: pytest.CaptureFixture[str], tmp_path: Path, src_url: sa.URL) -> Path:
    """A same-engine backup of customers and orders whose orders chunk is damaged in its middle."""
    e = sa.create_engine(src_url, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY, n INTEGER)")
        c.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers (id))")
        c.exec_driver_sql("INSERT INTO customers VALUES (1, 10), (2, 20)")
        c.exec_driver_sql("INSERT INTO orders VALUES (1, 1), (2, 2)")
    e.dispose()
    r = cli(capsys, "dump", "--url", src_url.render_as_string(hide_password=False), "--backup-dir", tmp_path / "b")
    assert r.code == 0, r.err
    backup = Path(r.lines[-1])
    orders_chunk = chunk_files(backup)[1]            # customers load first, then orders fails
    data = bytearray(orders_chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    orders_chunk.write_bytes(bytes(data))
    return backup


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_failed_clean_restore_keeps_the_original_tables(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        make_db: Any, engine: str) -> None:
    """README: a restore runs in one transaction and rolls back on failure; only MySQL/MariaDB (DDL not
    transactional) may lose the tables --clean dropped."""
    backup = _two_table_backup(capsys, tmp_path, make_db(engine, "csrc"))
    target_url = make_db(engine, "ctgt")
    e = sa.create_engine(target_url, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE customers (x VARCHAR(20))")
        c.exec_driver_sql("INSERT INTO customers VALUES ('keep me')")
    r = cli(capsys, "restore", "--clean", "--allow-restore", "--url",
            target_url.render_as_string(hide_password=False), "--backup-dir", backup)
    assert r.code != 0
    assert "orders" in r.err and "table customers: 2 rows" in r.err     # it failed in the middle of the load
    tables = set(sa.inspect(e).get_table_names())
    try:
        assert "orders" not in tables
        assert "customers" in tables, "the failed restore lost the target's own customers table"
        with e.connect() as c:
            assert c.exec_driver_sql("SELECT x FROM customers").fetchall() == [("keep me",)]
    finally:
        e.dispose()


@pytest.mark.parametrize("engine", [
    "sqlite",
    "postgresql",
    "mysql",
])
def test_damaged_chunk_found_during_load_is_an_archive_error(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                             make_db: Any, engine: str) -> None:
    backup = _two_table_backup(capsys, tmp_path, make_db(engine, "dsrc"))
    target_url = make_db(engine, "dtgt")
    r = cli(capsys, "restore", "--allow-restore", "--url", target_url.render_as_string(hide_password=False),
            "--backup-dir", backup)
    assert "table customers: 2 rows" in r.err         # the damage was found during the load
    assert r.code == 7, r.err
    assert "internal error" not in r.err and "00002-00001.chunk (table orders)" in r.err
    e = sa.create_engine(target_url, poolclass=NullPool)
    try:
        assert sa.inspect(e).get_table_names() == []
    finally:
        e.dispose()


@pytest.mark.parametrize("option, value, expected", [
    ("--tables", "customers", {"customers"}),
    ("--tables", "orders,customers", {"customers", "orders"}),
    ("--tables", "cust*", {"customers"}),
    ("--exclude-tables", "orders", {"customers"}),
    ("--exclude-tables", "*s", set()),
])
def test_restore_subsets(capsys: pytest.CaptureFixture[str], src: Path, backup: Path, tmp_path: Path,
                         option: str, value: str, expected: set[str]) -> None:
    target = tmp_path / "subset.sqlite"
    r = cli(capsys, "restore", "--url", url(target), "--allow-restore", "--backup-dir", backup, option, value)
    if not expected:
        assert r.code == 5 and "no table of the backup matches" in r.err
        assert tables_of(target) == set()
        return
    assert r.code == 0, r.err
    assert tables_of(target) == expected
    for t in expected:
        assert rows(target, t) == rows(src, t)


def test_restore_plan_prints_ddl_and_changes_nothing(capsys: pytest.CaptureFixture[str], backup: Path,
                                                      tmp_path: Path) -> None:
    target = tmp_path / "plan.sqlite"
    sqlite3.connect(target).close()
    before = target.read_bytes()
    r = cli(capsys, "restore", "--plan", "--url", url(target), "--backup-dir", backup)   # no --allow-restore
    assert r.code == 0, r.err
    assert r.out.startswith("-- DDL")
    assert "CREATE TABLE customers (" in r.out and "CREATE TABLE orders (" in r.out   # as the source made them
    assert "CREATE INDEX ix_orders_customer" in r.out
    assert "-- lossiness report" in r.out and "(no loss)" in r.out
    assert target.read_bytes() == before and tables_of(target) == set()
    r = cli(capsys, "restore", "--plan", "--json", "--url", url(target), "--backup-dir", backup)
    data = json.loads(r.out)
    assert data["planned_only"] is True
    assert any(s.startswith("CREATE TABLE orders (") for s in data["ddl"])
    assert {t["table"]: (t["rows"], t["exists"]) for t in data["tables"]} == {"customers": (4, False),
                                                                              "orders": (5, False)}
    assert target.read_bytes() == before


def test_restore_plan_creates_no_file(capsys: pytest.CaptureFixture[str], backup: Path, tmp_path: Path) -> None:
    """--plan changes nothing: not even an empty SQLite file at the target path."""
    target = tmp_path / "never.sqlite"
    r = cli(capsys, "restore", "--plan", "--url", url(target), "--backup-dir", backup)
    assert r.code == 0, r.err
    assert not target.exists()


def test_allow_restore_with_cfg_is_a_usage_error(capsys: pytest.CaptureFixture[str], backup: Path,
                                                 tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path / "t.yaml", "driver: sqlite\ndatabase: t.sqlite\n")
    r = cli(capsys, "--cfg", cfg, "restore", "--allow-restore", "--backup-dir", backup)
    assert r.code == 2
    assert "--allow-restore goes with --url" in one_error_line(r)
    assert not (tmp_path / "t.sqlite").exists()


@pytest.mark.parametrize("argv, message", [
    (["restore", "--url", "sqlite:///x.sqlite", "--allow-restore"], "restore needs --backup-dir"),
    (["verify"], "verify needs --backup-dir"),
    (["inspect"], "inspect needs --backup-dir"),
    (["--cfg", "a.yaml", "--url", "sqlite:///x.sqlite", "dump"], "either --cfg or --url"),
    (["dump"], "no configuration"),
    (["test_all"], "test_all needs --cfg"),
    (["dump", "--bogus"], "No such option"),
    (["frobnicate"], "No such command"),
    (["dump", "--compression", "brotli"], "Invalid value"),
    (["compare", "--url", "sqlite:///x.sqlite"], "--target-url"),
])
def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      argv: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli(capsys, *argv)
    assert r.code == 2, r.err
    assert message in r.err
    assert "Traceback" not in r.err and r.out == ""


# ---------------------------------------------------------------- damaged backups

def set_manifest(b: Path, **changes: Any) -> None:
    mp = b / "manifest.json"
    m = json.loads(mp.read_text("utf-8"))
    m.update(changes)
    mp.write_text(json.dumps(m), "utf-8")


@pytest.mark.parametrize("command", ["verify", "inspect", "restore"])
def test_unknown_format_version(capsys: pytest.CaptureFixture[str], backup: Path, tmp_path: Path,
                                command: str) -> None:
    set_manifest(backup, format_version=99)
    extra = ["--url", url(tmp_path / "t.sqlite"), "--allow-restore"] if command == "restore" else []
    r = cli(capsys, command, "--backup-dir", backup, *extra)
    assert r.code == 8
    line = one_error_line(r)
    assert str(backup / "manifest.json") in line and "format version 99" in line
    assert r.out == ""
    assert not (tmp_path / "t.sqlite").exists()


def test_unknown_feature(capsys: pytest.CaptureFixture[str], backup: Path) -> None:
    set_manifest(backup, features=["encrypted-rows"])
    r = cli(capsys, "verify", "--backup-dir", backup)
    assert r.code == 8 and "encrypted-rows" in one_error_line(r)


@pytest.mark.parametrize("command", ["verify", "inspect", "restore"])
def test_missing_manifest_or_folder(capsys: pytest.CaptureFixture[str], backup: Path, tmp_path: Path,
                                    command: str) -> None:
    extra = ["--url", url(tmp_path / "t.sqlite"), "--allow-restore"] if command == "restore" else []
    (backup / "manifest.json").unlink()
    r = cli(capsys, command, "--backup-dir", backup, *extra)
    assert r.code == 6
    assert "manifest.json" in one_error_line(r)
    r = cli(capsys, command, "--backup-dir", tmp_path / "no-such-backup", *extra)
    assert r.code == 6 and "no such backup folder" in one_error_line(r)
    assert not (tmp_path / "t.sqlite").exists()


def test_corrupt_chunk_byte(capsys: pytest.CaptureFixture[str], backup: Path, tmp_path: Path) -> None:
    chunk = chunk_files(backup)[0]
    b = bytearray(chunk.read_bytes())
    b[len(b) // 2] ^= 0xFF
    chunk.write_bytes(bytes(b))
    r = cli(capsys, "verify", "--backup-dir", backup)
    assert r.code == 7
    line = one_error_line(r)
    assert f"data/{chunk.name}" in line and "table customers" in line
    assert r.out == ""
    target = tmp_path / "t.sqlite"
    r = cli(capsys, "restore", "--url", url(target), "--allow-restore", "--backup-dir", backup)
    assert r.code == 7 and chunk.name in r.err
    assert tables_of(target) == set()        # what the failed restore created was removed


def test_truncated_chunk(capsys: pytest.CaptureFixture[str], backup: Path, tmp_path: Path) -> None:
    chunk = chunk_files(backup)[1]
    chunk.write_bytes(chunk.read_bytes()[:-20])
    r = cli(capsys, "verify", "--backup-dir", backup)
    assert r.code == 7
    line = one_error_line(r)
    assert f"data/{chunk.name}" in line and "truncated" in line
    target = tmp_path / "t.sqlite"
    r = cli(capsys, "restore", "--url", url(target), "--allow-restore", "--backup-dir", backup)
    assert r.code == 7
    assert tables_of(target) == set()


def test_missing_chunk_file(capsys: pytest.CaptureFixture[str], backup: Path) -> None:
    chunk = chunk_files(backup)[0]
    chunk.unlink()
    r = cli(capsys, "verify", "--backup-dir", backup)
    assert r.code == 7 and chunk.name in one_error_line(r) and "missing" in r.err


def test_manifest_content_hash_mismatch(capsys: pytest.CaptureFixture[str], backup: Path) -> None:
    mp = backup / "manifest.json"
    m = json.loads(mp.read_text())
    m["tables"]["orders"]["chunks"][0]["content_hash"] = "0" * 64
    mp.write_text(json.dumps(m))
    r = cli(capsys, "verify", "--backup-dir", backup)
    assert r.code == 11
    assert "content hash" in one_error_line(r) and "orders" in r.err


def test_damaged_backup_subprocess(backup: Path, tmp_path: Path) -> None:
    set_manifest(backup, format_version=99)
    r = subproc("verify", "--backup-dir", backup, cwd=tmp_path)
    assert r.code == 8 and "manifest.json" in r.err and "Traceback" not in r.err


# ---------------------------------------------------------------- configuration and connection errors

@pytest.mark.parametrize("text, expected", [
    ("driver: sqlite\ndatabase: shop.sqlite\ncompresion: zstd\n", ["line 3", "compresion", "unknown key",
                                                                   "did you mean `compression`"]),
    ("driver: sqlite\ndatabase: [shop.sqlite\n", ["not valid YAML/JSON"]),
    ("driver: sqlite\n  database: x\n", ["line 2", "not valid YAML/JSON"]),
    ("- just\n- a list\n", ["expected a mapping"]),
    ("driver: sqlite\ndatabase: shop.sqlite\nbatch_rows: many\n", ["batch_rows", "positive integer"]),
    ("driver: oracle\ndatabase: x\n", ["driver", "expected one of"]),
])
def test_bad_config(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: list[str]) -> None:
    cfg = write_cfg(tmp_path / "broken.yaml", text)
    r = cli(capsys, "--cfg", cfg, "--backup-dir", tmp_path / "b", "dump")
    assert r.code == 3
    line = one_error_line(r)
    assert str(cfg) in line
    for e in expected:
        assert e in line
    assert not (tmp_path / "b").exists()


def test_bad_test_all_config_names_the_key_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path / "ta.yaml", "databases:\n  - driver: sqlite\n    database: a.sqlite\n"
                                          "  - driver: sqlite\n    database: b.sqlite\n    batch_rows: -1\n")
    r = cli(capsys, "--cfg", cfg, "test_all")
    assert r.code == 3
    line = one_error_line(r)
    assert str(cfg) in line and "databases[1].batch_rows" in line and "line 6" in line


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    r = cli(capsys, "--cfg", tmp_path / "nope.yaml", "dump")
    assert r.code == 3 and "no such config file" in one_error_line(r)


@pytest.mark.parametrize("flags", [[], ["--debug"], ["-v", "-v"], ["--json"]])
def test_unreachable_database_hides_the_password(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 flags: list[str]) -> None:
    r = cli(capsys, *flags, "dump", "--url", UNREACHABLE, "--backup-dir", tmp_path / "b")
    assert r.code == 4
    assert SECRET not in r.both
    assert "nobody:***@127.0.0.1:1/x" in r.err
    assert not (tmp_path / "b").exists()


def test_unreachable_restore_and_compare_targets_hide_the_password(capsys: pytest.CaptureFixture[str],
                                                                   src: Path, backup: Path) -> None:
    r = cli(capsys, "restore", "--url", UNREACHABLE, "--allow-restore", "--backup-dir", backup)
    assert r.code == 4 and SECRET not in r.both
    r = cli(capsys, "restore", "--url", UNREACHABLE, "--plan", "--backup-dir", backup)
    assert r.code == 4 and SECRET not in r.both
    r = cli(capsys, "compare", "--url", url(src), "--target-url", UNREACHABLE)
    assert r.code == 4 and SECRET not in r.both
    r = cli(capsys, "compare", "--url", UNREACHABLE, "--target-url", url(src))
    assert r.code == 4 and SECRET not in r.both


def test_unreachable_database_subprocess(tmp_path: Path) -> None:
    r = subproc("dump", "--url", UNREACHABLE, "--backup-dir", tmp_path / "b", cwd=tmp_path)
    assert r.code == 4 and SECRET not in r.both and "Traceback" not in r.err


def test_missing_sqlite_source(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.sqlite"
    r = cli(capsys, "dump", "--url", url(missing), "--backup-dir", tmp_path / "b")
    assert r.code == 4
    assert str(missing) in one_error_line(r) and "does not exist" in r.err
    assert not missing.exists() and not (tmp_path / "b").exists()
    cfg = write_cfg(tmp_path / "c.yaml", "driver: sqlite\ndatabase: nope.sqlite\n")
    r = cli(capsys, "--cfg", cfg, "dump", "--backup-dir", tmp_path / "b")
    assert r.code == 4 and not missing.exists()


# ---------------------------------------------------------------- test_all

@pytest.mark.parametrize("spelling", ["test_all", "test-all"])
def test_test_all_ok_and_skipped(capsys: pytest.CaptureFixture[str], src: Path, tmp_path: Path,
                                 spelling: str) -> None:
    make_source(tmp_path / "second.sqlite")
    cfg = write_cfg(tmp_path / "ta.yaml", """
databases:
  - name: shop
    driver: sqlite
    database: shop.sqlite
  - name: second
    driver: sqlite
    database: second.sqlite
    skip: true
    comment: free-form, kept but not validated
""")
    before = src.read_bytes()
    r = cli(capsys, "--cfg", cfg, spelling)
    assert r.code == 0, r.out + r.err
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["database", "status", "tables"]
    shop = next(x.split() for x in lines if x.startswith("shop "))
    second = next(x.split() for x in lines if x.startswith("second "))
    assert shop[:5] == ["shop", "ok", "2", "9", "0"]
    assert second[:2] == ["second", "skipped"]
    assert src.read_bytes() == before
    r = cli(capsys, spelling, "--cfg", cfg, "--json")
    assert r.code == 0
    data = json.loads(r.out)
    assert data["ok"] is True
    assert [(d["name"], d["status"]) for d in data["databases"]] == [("shop", "ok"), ("second", "skipped")]


def test_test_all_with_no_tables_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    c = sqlite3.connect(empty)
    c.execute("CREATE TABLE t (x)")
    c.execute("DROP TABLE t")
    c.commit()
    c.close()
    cfg = write_cfg(tmp_path / "ta.yaml", "databases:\n  - driver: sqlite\n    database: empty.sqlite\n")
    r = cli(capsys, "--cfg", cfg, "test_all")
    assert r.code == 12
    assert "empty" in one_error_line(r)
    assert "ok" not in next(x for x in r.out.splitlines() if x.startswith("empty ")).split()


def test_test_all_only_skipped_fails(capsys: pytest.CaptureFixture[str], src: Path, tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path / "ta.yaml", "databases:\n  - driver: sqlite\n    database: shop.sqlite\n"
                                          "    skip: true\n")
    r = cli(capsys, "--cfg", cfg, "test_all")
    assert r.code == 12


def test_test_all_unreachable_entry_hides_password(capsys: pytest.CaptureFixture[str], src: Path,
                                                   tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path / "ta.yaml", f"databases:\n  - driver: sqlite\n    database: shop.sqlite\n"
                                          f"  - name: far\n    url: {UNREACHABLE}\n")
    r = cli(capsys, "--cfg", cfg, "test_all")
    assert r.code == 12
    assert SECRET not in r.both
    far = next(x.split() for x in r.out.splitlines() if x.startswith("far "))
    assert far[1] == "error"
    assert "DatabaseUnavailable" in r.out


# ---------------------------------------------------------------- compare

def test_compare_identical_and_planted_difference(capsys: pytest.CaptureFixture[str], src: Path,
                                                  tmp_path: Path) -> None:
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(src.read_bytes())
    r = cli(capsys, "compare", "--url", url(src), "--target-url", url(copy))
    assert r.code == 0, r.out + r.err
    assert r.lines[0] == "compared 2 tables, 9 rows: 0 difference(s)"
    c = sqlite3.connect(copy)
    c.execute("UPDATE orders SET qty = 4 WHERE id = 1")
    c.commit()
    c.close()
    r = cli(capsys, "compare", "--url", url(src), "--target-url", url(copy))
    assert r.code == 12
    assert "1 difference(s)" in r.out
    assert "table orders" in r.out and "customers" not in r.out.split("\n", 1)[1]
    r = cli(capsys, "compare", "--json", "--url", url(src), "--target-url", url(copy))
    data = json.loads(r.out)
    assert r.code == 12 and data["ok"] is False and len(data["differences"]) == 1
    assert data["differences"][0].startswith("table orders")


def test_compare_missing_table_and_extra_row(capsys: pytest.CaptureFixture[str], src: Path,
                                             tmp_path: Path) -> None:
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(src.read_bytes())
    c = sqlite3.connect(copy)
    c.execute("INSERT INTO customers VALUES (5, 'Extra', NULL, NULL)")
    c.commit()
    c.close()
    r = cli(capsys, "compare", "--url", url(src), "--target-url", url(copy))
    assert r.code == 12 and "table customers: 4 rows ≠ 5" in r.out
    c = sqlite3.connect(copy)
    c.execute("DROP TABLE orders")
    c.commit()
    c.close()
    r = cli(capsys, "compare", "--url", url(src), "--target-url", url(copy))
    assert r.code == 12 and "table orders: missing in the copy" in r.out


def test_compare_empty_databases_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    for p in (a, b):
        sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.execute("DROP TABLE t").connection.close()
    r = cli(capsys, "compare", "--url", url(a), "--target-url", url(b))
    assert r.code == 12 and "no table compared" in r.err


# ---------------------------------------------------------------- exit codes

def test_exit_codes_table(capsys: pytest.CaptureFixture[str]) -> None:
    r = cli(capsys, "exit-codes")
    assert r.code == 0
    classes = all_error_classes()
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes))
    assert all(issubclass(c, AlbackupError) for c in classes)
    assert {0, 130, 143}.isdisjoint(codes)
    for c in classes:
        assert f"| {c.exit_code} | `{c.__name__}` |" in r.out
    assert "| 0 | — | success |" in r.out and "| 130 |" in r.out and "| 143 |" in r.out
    assert {c.__name__: c.exit_code for c in classes} == {
        "AlbackupError": 1, "UsageError": 2, "ConfigError": 3, "DatabaseUnavailable": 4, "RestoreRefused": 5,
        "BackupNotFound": 6, "ArchiveError": 7, "UnsupportedFormat": 8, "DumpError": 9, "RestoreError": 10,
        "IntegrityError": 11, "CompareFailed": 12, "StorageError": 13, "CryptoError": 14,
        "SecretError": 15, "BackupTooOld": 16, "Locked": 17}


def test_exit_codes_subprocess(tmp_path: Path) -> None:
    r = subproc("exit-codes", cwd=tmp_path)
    assert r.code == 0 and "| 7 | `ArchiveError` |" in r.out


# ---------------------------------------------------------------- SQLite floats

def test_sqlite_real_keeps_double_precision(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """SQLite's REAL is an 8-byte double: not float32 (0.1 must not come back as 0.10000000149011612)."""
    db = tmp_path / "floats.sqlite"
    c = sqlite3.connect(db)
    c.executescript("CREATE TABLE m (id INTEGER PRIMARY KEY, x REAL); INSERT INTO m VALUES (1, 0.1), (2, 1e-300);")
    c.commit()
    c.close()
    r = cli(capsys, "dump", "--url", url(db), "--backup-dir", tmp_path / "b")
    assert r.code == 0, r.err
    target = tmp_path / "t.sqlite"
    r = cli(capsys, "restore", "--allow-restore", "--url", url(target), "--backup-dir", r.lines[-1])
    assert r.code == 0, r.err
    assert rows(target, "m") == [(1, 0.1), (2, 1e-300)]


def test_sqlite_real_beyond_float32_range_dumps(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A REAL value beyond float32 range must not make the dump fail."""
    db = tmp_path / "floats.sqlite"
    c = sqlite3.connect(db)
    c.executescript("CREATE TABLE m (id INTEGER PRIMARY KEY, x REAL); INSERT INTO m VALUES (1, 1e300);")
    c.commit()
    c.close()
    r = cli(capsys, "dump", "--url", url(db), "--backup-dir", tmp_path / "b")
    assert r.code == 0, r.err
    r = cli(capsys, "inspect", "--json", "--backup-dir", r.lines[-1])
    assert json.loads(r.out)["tables"][0]["columns"][1]["type"] == "float64"


def test_sqlite_double_and_float_columns_keep_precision(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "floats.sqlite"
    c = sqlite3.connect(db)
    c.executescript("CREATE TABLE m (id INTEGER PRIMARY KEY, d DOUBLE, f FLOAT);"
                    "INSERT INTO m VALUES (1, 0.1, 0.1), (2, 1e300, -1e-300), (3, -0.0, 5e-324);")
    c.commit()
    c.close()
    r = cli(capsys, "dump", "--url", url(db), "--backup-dir", tmp_path / "b")
    assert r.code == 0, r.err
    target = tmp_path / "t.sqlite"
    r = cli(capsys, "restore", "--allow-restore", "--url", url(target), "--backup-dir", r.lines[-1])
    assert r.code == 0, r.err
    assert rows(target, "m") == rows(db, "m")


# ---------------------------------------------------------------- SQLite values that do not fit the declared type

def test_sqlite_json_column_with_invalid_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    c = sqlite3.connect(db)
    c.executescript("""CREATE TABLE t (id INTEGER PRIMARY KEY, doc JSON);
                       INSERT INTO t VALUES (1, '{"a": 1}'), (2, 'not json');""")
    c.commit()
    c.close()
    r = cli(capsys, "dump", "--url", url(db), "--backup-dir", tmp_path / "b")
    assert "internal error" not in r.err
    if r.code == 9:
        assert "table t, column doc" in one_error_line(r)
        assert list((tmp_path / "b").iterdir()) == []
        return
    assert r.code == 0, r.err
    target = tmp_path / "t.sqlite"
    r = cli(capsys, "restore", "--allow-restore", "--url", url(target), "--backup-dir", r.lines[-1])
    assert r.code == 0, r.err
    assert rows(target, "t") == rows(db, "t")


@pytest.mark.parametrize("decl, value", [("INTEGER", 2.5), ("BOOLEAN", "maybe"), ("DATE", "2020-01-01 10:00:00")])
def test_sqlite_value_not_matching_declared_type_is_not_silently_changed(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, decl: str, value: Any) -> None:
    db = tmp_path / "m.sqlite"
    c = sqlite3.connect(db)
    c.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, v {decl})")
    c.execute("INSERT INTO t VALUES (1, ?)", (value,))
    c.commit()
    assert c.execute("SELECT v FROM t").fetchone()[0] == value     # SQLite kept it as given
    c.close()
    r = cli(capsys, "dump", "--url", url(db), "--backup-dir", tmp_path / "b")
    if r.code == 9:
        assert "column v" in one_error_line(r)
        return
    assert r.code == 0, r.err
    target = tmp_path / "t.sqlite"
    r = cli(capsys, "restore", "--allow-restore", "--url", url(target), "--backup-dir", r.lines[-1])
    assert r.code == 0, r.err
    assert rows(target, "t") == [(1, value)]


# ---------------------------------------------------------------- servers

def _engine(u: sa.URL) -> sa.Engine:
    return sa.create_engine(u, poolclass=NullPool)


def _read_items(u: sa.URL) -> list[dict[str, Any]]:
    e = _engine(u)
    try:
        t = sa.Table("items", sa.MetaData(), autoload_with=e)
        with e.connect() as c:
            out = [dict(r._mapping) for r in c.execute(sa.select(t).order_by(t.c.id))]
    finally:
        e.dispose()
    for row in out:
        if row["flag"] is not None:
            row["flag"] = bool(row["flag"])
    return out


def _server_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path, src_url: sa.URL, dst_url: sa.URL,
                       aware: bool) -> None:
    md = sa.MetaData()
    items = sa.Table(
        "items", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(50), nullable=False, unique=True),
        sa.Column("price", sa.Numeric(12, 3)),
        sa.Column("ratio", sa.Double()),
        sa.Column("at", sa.DateTime(timezone=aware)),
        sa.Column("born", sa.Date),
        sa.Column("flag", sa.Boolean),
        sa.Column("raw", sa.LargeBinary),
        sa.Column("note", sa.Text),
        sa.Column("big", sa.BigInteger),
    )
    tz = dt.timezone.utc if aware else None
    data = [
        dict(id=1, name="Ann", price=decimal.Decimal("12.500"), ratio=0.1,
             at=dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=tz), born=dt.date(1850, 1, 2), flag=True,
             raw=b"\x00\x01\xff", note="naïve ✓ 😀 \\ 'q'", big=-9223372036854775808),
        dict(id=2, name="Bjørn", price=None, ratio=None, at=None, born=None, flag=None, raw=None, note=None,
             big=None),
        dict(id=3, name="", price=decimal.Decimal("-0.001"), ratio=-1e300, at=dt.datetime(2150, 1, 1, tzinfo=tz),
             born=dt.date(2999, 12, 31), flag=False, raw=b"", note="", big=9223372036854775807),
    ]
    e = _engine(src_url)
    md.create_all(e)
    with e.begin() as c:
        c.execute(items.insert(), data)
    e.dispose()
    s = src_url.render_as_string(hide_password=False)
    d = dst_url.render_as_string(hide_password=False)
    r = cli(capsys, "dump", "--url", s, "--backup-dir", tmp_path / "b")
    assert r.code == 0, r.err
    path = r.lines[-1]
    assert cli(capsys, "verify", "--backup-dir", path).code == 0
    r = cli(capsys, "restore", "--url", d, "--backup-dir", path)
    assert r.code == 5
    r = cli(capsys, "restore", "--url", d, "--allow-restore", "--backup-dir", path)
    assert r.code == 0, r.err
    got, want = _read_items(dst_url), _read_items(src_url)
    assert got == want
    # and the source really held the awkward values (the server did not change them on insert)
    assert [r["name"] for r in want] == ["Ann", "Bjørn", ""]
    assert float(want[0]["ratio"]) == 0.1 and float(want[2]["ratio"]) == -1e300
    assert want[0]["raw"] == b"\x00\x01\xff" and want[2]["raw"] == b""
    assert want[0]["big"] == -2**63 and want[2]["big"] == 2**63 - 1
    assert want[0]["note"] == "naïve ✓ 😀 \\ 'q'" and want[2]["note"] == ""
    assert want[1] == {k: (2 if k == "id" else "Bjørn" if k == "name" else None) for k in want[1]}
    if aware:
        assert want[0]["at"] == data[0]["at"]
    r = cli(capsys, "compare", "--url", s, "--target-url", d)
    assert r.code == 0, r.out + r.err


def test_postgresql_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path, pg: Any) -> None:
    _server_round_trip(capsys, tmp_path, pg.new("clisrc"), pg.new("clidst"), aware=True)


def test_mariadb_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path, my: Any) -> None:
    _server_round_trip(capsys, tmp_path, my.new("clisrc"), my.new("clidst"), aware=False)


def test_lossy_cross_engine_restore_needs_accept_lossy(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       pg: Any) -> None:
    src_url = pg.new("lossy")
    e = _engine(src_url)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE money (id integer PRIMARY KEY, amount numeric(38, 10))")
        c.exec_driver_sql("INSERT INTO money VALUES (1, 12345678901234567890.1234567890), (2, 1.5), (3, NULL)")
    e.dispose()
    r = cli(capsys, "dump", "--url", src_url.render_as_string(hide_password=False), "--backup-dir", tmp_path / "b")
    assert r.code == 0, r.err
    path = r.lines[-1]
    target = tmp_path / "lossy.sqlite"
    r = cli(capsys, "restore", "--allow-restore", "--url", url(target), "--backup-dir", path)
    assert r.code == 5
    line = one_error_line(r)
    # nothing to replace: the loss is found by the load's own check, which drops what it made
    assert "--accept-lossy" in line and "money.amount" in line and "(15 significant digits)" in line
    assert "dropped" in line
    assert tables_of(target) == set()
    # a table to replace (--clean): the losses are counted before the target is touched
    with sqlite3.connect(target) as c:
        c.execute("CREATE TABLE money (kept text)")
        c.execute("INSERT INTO money VALUES ('untouched')")
    c.close()
    r = cli(capsys, "restore", "--allow-restore", "--clean", "--url", url(target), "--backup-dir", path)
    assert r.code == 5
    line = one_error_line(r)
    assert "--accept-lossy" in line and "money.amount" in line and "(1 rows)" in line
    assert rows(target, "money") == [("untouched",)]
    with sqlite3.connect(target) as c:
        c.execute("DROP TABLE money")
    c.close()
    r = cli(capsys, "restore", "--plan", "--url", url(target), "--backup-dir", path)
    assert r.code == 0
    report = r.out.split("-- lossiness report", 1)[1]
    assert "money.amount: decimal(38,10)" in report and "(1 rows)" in report
    r = cli(capsys, "restore", "--allow-restore", "--accept-lossy", "--url", url(target), "--backup-dir", path)
    assert r.code == 0, r.err
    assert "lossy: money.amount" in r.err
    got = rows(target, "money")
    assert got[1:] == [(2, 1.5), (3, None)]
    assert got[0][1] == pytest.approx(12345678901234567890.1234567890)
