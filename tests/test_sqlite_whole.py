"""SQLite restores whole: every object made again as the source made it, with its data.

Two schemas: tests/corpus/sqlite_features (every SQLite feature a restore must keep: views,
triggers, partial and expression indexes, generated columns, WITHOUT ROWID, STRICT with ANY,
AUTOINCREMENT, collations, checks, foreign keys with actions, FTS5 and R*Tree virtual tables) and
a subset of the Chinook sample database (tests/corpus/chinook, see its SOURCE.md).
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from albackup import api, config
from albackup.ddl import build_plan, plan_sql
from albackup.engines.base import adapter_class
from albackup.model import Schema
from albackup.restore import RestoreOptions

CORPUS = Path(__file__).parent / "corpus"


def _cfg(url: sa.URL, **kw: object) -> config.DatabaseConfig:
    return config.url_config(url.render_as_string(hide_password=False), **kw)


def _build(path: Path, *names: str) -> sa.URL:
    """A SQLite file made by running the corpus files ``names`` (``dir/file.sql``) in order."""
    db = sqlite3.connect(path)
    try:
        for n in names:
            db.executescript((CORPUS / n).read_text(encoding="utf-8"))
        db.commit()
    finally:
        db.close()
    return sa.engine.make_url(f"sqlite:///{path}")


def _round_trip(src: sa.URL, dst: sa.URL, tmp: Path, **opts: object) -> tuple[Path, object]:
    dumped = api.dump(_cfg(src), tmp / "backups")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True), RestoreOptions(allow_restore=True, **opts))
    return dumped.path, res


def _q(path: Path, sql: str, *params: object) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def _master(path: Path, order: str = "type, name") -> list[tuple]:
    return _q(path, f"SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY {order}")


def _rows(path: Path, table: str) -> list[tuple]:
    """Every row of ``table`` with its rowid (where it has one) and each value's storage class."""
    cols = [r[1] for r in _q(path, "SELECT * FROM pragma_table_xinfo(?) WHERE hidden IN (0, 2, 3)", table)]
    rowid = [] if _q(path, "SELECT wr FROM pragma_table_list WHERE name = ?", table)[0][0] else ["rowid"]
    sel = ", ".join(rowid + [f'"{c}", typeof("{c}")' for c in cols])
    return sorted(_q(path, f'SELECT {sel} FROM "{table}"'), key=repr)


def _features(tmp: Path) -> tuple[Path, Path]:
    src = tmp / "features.sqlite"
    _build(src, "sqlite_features/schema.sql", "sqlite_features/data.sql")
    db = sqlite3.connect(src)
    db.executescript("PRAGMA user_version = 42; PRAGMA application_id = 1096966979;")
    db.close()
    return src, tmp / "copy.sqlite"


def _url(p: Path) -> sa.URL:
    return sa.engine.make_url(f"sqlite:///{p}")


def test_every_object_comes_back_as_the_source_made_it(tmp_path: Path) -> None:
    src, dst = _features(tmp_path)
    _round_trip(_url(src), _url(dst), tmp_path)
    assert _master(dst) == _master(src)                # .schema, as a set: every statement, word for word
    tables = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid"
    assert _q(dst, tables) == _q(src, tables)         # made in the source's order, as sqlite3 .dump does
    for (name,) in _q(src, "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' "
                           "AND name NOT LIKE 'sqlite_%'"):
        assert _rows(dst, name) == _rows(src, name), name
    assert _q(dst, "PRAGMA user_version") == [(42,)] and _q(dst, "PRAGMA application_id") == [(1096966979,)]
    assert _q(dst, "SELECT * FROM sqlite_sequence ORDER BY name") == \
        _q(src, "SELECT * FROM sqlite_sequence ORDER BY name") == [("audit", 4), ("author", 7)]
    # no trigger ran on the restored rows; after the restore they run, AUTOINCREMENT goes on at 5
    assert _q(dst, "SELECT count(*) FROM audit") == [(2,)]
    db = sqlite3.connect(dst, isolation_level=None)
    try:
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("INSERT INTO book (id, author_id, title) VALUES (30, 2, 'If on a winter''s night')")
        assert db.execute("SELECT seq, what FROM audit WHERE seq > 2").fetchall() == [(5, "book 30")]
        db.execute("INSERT INTO book_view (title, author) VALUES ('Cosmicomics', 'Italo')")
        assert db.execute("SELECT count(*) FROM book WHERE title = 'Cosmicomics'").fetchone() == (1,)
        db.execute("DELETE FROM author WHERE id = 1")          # ON DELETE CASCADE, kept
        assert db.execute("SELECT count(*) FROM book WHERE author_id = 1").fetchone() == (0,)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute("INSERT INTO author (name, born) VALUES ('x', 5)")
        assert db.execute("SELECT count(*) FROM author WHERE name = 'URSULA' OR code = 'IC   '").fetchone() == (1,)
    finally:
        db.close()


# the full-text and R*Tree part of sqlite_features
_FTS = """
CREATE VIRTUAL TABLE book_fts USING fts5(title, body, tokenize = 'porter unicode61');
CREATE TABLE doc (id INTEGER PRIMARY KEY, title TEXT, body TEXT);
CREATE VIRTUAL TABLE doc_fts USING fts5(title, body, content = 'doc', content_rowid = 'id');
CREATE TRIGGER doc_ai AFTER INSERT ON doc BEGIN
    INSERT INTO doc_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE VIRTUAL TABLE place USING rtree(id, min_x, max_x, min_y, max_y);
CREATE VIRTUAL TABLE book_terms USING fts5vocab(book_fts, 'row');
CREATE VIRTUAL TABLE old_fts USING fts4(a, b);
INSERT INTO old_fts (docid, a, b) VALUES (7, 'x y', 'z'), (2, 'y', NULL);
INSERT INTO book_fts (rowid, title, body) VALUES
    (3, 'running dogs', 'The dogs were running through the fields'),
    (9, 'quiet cats', 'Cats sleep in the sun'),
    (40, 'numbers', 12345);
INSERT INTO doc (id, title, body) VALUES (1, 'alpha', 'first searchable document'), (5, 'beta', 'second document about trees');
INSERT INTO place VALUES (1, 0.0, 1.5, 0.0, 2.0), (8, -3.25, 4.0, 10.0, 11.0);
"""


def test_fts5_is_restored_as_a_virtual_table_that_matches(tmp_path: Path) -> None:
    """Regression: an FTS5 table came back as an ordinary table (its shadow tables too), and
    MATCH failed on the copy."""
    src, dst = tmp_path / "fts.sqlite", tmp_path / "fts-copy.sqlite"
    db = sqlite3.connect(src)
    db.executescript(_FTS)
    db.close()
    path, _ = _round_trip(_url(src), _url(dst), tmp_path)
    schema = api.open_backup(path).schema
    keys = {t.key for t in schema.tables}
    assert not {k for k in keys if k.startswith(("book_fts_", "doc_fts_", "place_"))}, keys   # no shadow table
    assert schema.table("book_fts").virtual == "fts5" and schema.table("place").virtual == "rtree"
    assert "book_terms" not in keys and [r.kind for r in schema.routines if r.name == "book_terms"] == ["view"]
    assert [c.name for c in schema.table("book_fts").columns] == ["rowid", "title", "body"]
    kinds = "SELECT name, type FROM pragma_table_list WHERE schema = 'main' ORDER BY name"
    assert _q(dst, kinds) == _q(src, kinds)
    assert dict(_q(dst, kinds))["book_fts"] == "virtual" and dict(_q(dst, kinds))["book_fts_content"] == "shadow"
    match = "SELECT rowid, title FROM book_fts WHERE book_fts MATCH ? ORDER BY rowid"
    assert _q(dst, match, "run") == _q(src, match, "run") == [(3, "running dogs")]    # porter stems kept
    assert _q(dst, match, "12345") == [(40, "numbers")]
    ext = "SELECT rowid, title FROM doc_fts WHERE doc_fts MATCH ?"
    assert _q(dst, ext, "trees") == _q(src, ext, "trees") == [(5, "beta")]          # external content
    assert _q(dst, "SELECT id FROM place WHERE max_x > 2 AND min_y >= 10") == [(8,)]  # R*Tree
    terms = "SELECT * FROM book_terms ORDER BY term"                                 # fts5vocab
    assert _q(dst, terms) == _q(src, terms) and ("dog", 1, 2) in _q(dst, terms)
    fts4 = "SELECT docid, a FROM old_fts WHERE old_fts MATCH 'y' ORDER BY docid"
    assert _q(dst, fts4) == _q(src, fts4) == [(2, "y"), (7, "x y")]
    assert _master(dst) == _master(src)
    db = sqlite3.connect(dst)
    try:
        for t in ("book_fts", "doc_fts"):
            db.execute(f"INSERT INTO {t} ({t}) VALUES ('integrity-check')")   # raises if the index is wrong
        db.execute("INSERT INTO doc (id, title, body) VALUES (9, 'gamma', 'oak trees')")   # the trigger feeds it
        assert db.execute(ext, ("oak",)).fetchall() == [(9, "gamma")]
    finally:
        db.close()


def test_strict_any_column_keeps_each_values_storage_class(tmp_path: Path) -> None:
    """Regression: a STRICT table's ANY column holding a REAL and a BLOB failed the dump
    ("cannot read a value as decimal")."""
    src = _url(tmp_path / "any.sqlite")
    db = sqlite3.connect(tmp_path / "any.sqlite")
    db.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v ANY) STRICT")
    db.executemany("INSERT INTO a VALUES (?, ?)", [(1, 1.5), (2, b"\x00\x01"), (3, 7), (4, "7"), (5, None),
                                                   (6, 3.0), (7, "x" * 70000)])
    db.commit()
    db.close()
    dst = tmp_path / "any-copy.sqlite"
    path, _ = _round_trip(src, _url(dst), tmp_path)
    assert api.open_backup(path).schema.table("a").columns[1].type.kind == "native"
    typed = "SELECT id, typeof(v), v FROM a ORDER BY id"
    assert _q(dst, typed) == _q(tmp_path / "any.sqlite", typed)
    assert [r[1] for r in _q(dst, typed)] == ["real", "blob", "integer", "text", "null", "real", "text"]


def test_ddl_is_replayed_word_for_word(tmp_path: Path) -> None:
    """Regression: same-engine DDL was made again from the model, so .schema differed (spacing,
    quoting, comments, type names, the order of clauses)."""
    p = tmp_path / "ddl.sqlite"
    db = sqlite3.connect(p)
    db.executescript("""
        CREATE TABLE "Odd Name" ( -- a comment kept in sqlite_master
            [Id]   integer   primary key,
            `Val`  varchar ( 20 ) default 'x' not null,
            n      numeric(10, 2) check(n >= 0)
        );
        create index "Odd Name_val" on "Odd Name" ( Val collate nocase );
        INSERT INTO "Odd Name" VALUES (3, 'a', 1.5);
    """)
    db.close()
    dst = tmp_path / "ddl-copy.sqlite"
    _round_trip(_url(p), _url(dst), tmp_path)
    assert _master(dst, "rowid") == _master(p, "rowid")
    assert "-- a comment kept" in _master(dst)[1][3]


def test_chinook_restores_with_the_same_schema_rows_and_sequences(tmp_path: Path) -> None:
    src = tmp_path / "chinook.sqlite"
    _build(src, "chinook/schema.sql", "chinook/data.sql")
    db = sqlite3.connect(src)
    db.execute("DELETE FROM InvoiceLine WHERE InvoiceLineId = (SELECT max(InvoiceLineId) FROM InvoiceLine)")
    db.commit()
    db.close()
    dst = tmp_path / "chinook-copy.sqlite"
    _round_trip(_url(src), _url(dst), tmp_path)
    assert _master(dst, "rowid") == _master(src, "rowid")       # what sqlite3 .schema prints, in its order
    if shutil.which("sqlite3"):      # and the sqlite3 shell itself, where it is installed
        shown = [subprocess.run(["sqlite3", str(p), ".schema"], capture_output=True, text=True, check=True).stdout
                 for p in (src, dst)]
        assert shown[0] == shown[1] and "CREATE TABLE sqlite_sequence(name,seq);" in shown[1]
    for (name,) in _q(src, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        assert _rows(dst, name) == _rows(src, name), name
    seq = "SELECT name, seq FROM sqlite_sequence ORDER BY name"
    assert _q(dst, seq) == _q(src, seq) and ("InvoiceLine", 2128) in _q(dst, seq)
    assert _q(dst, "SELECT max(InvoiceLineId) FROM InvoiceLine") == [(2127,)]


def test_a_partial_restore_makes_a_table_whose_parent_stays_behind_from_the_model(tmp_path: Path) -> None:
    """--tables without a table another refers to: the statement that made it would keep a foreign
    key to a table that is not there; the model's table is made instead, and the plan says so."""
    src, dst = _features(tmp_path)
    _, res = _round_trip(_url(src), _url(dst), tmp_path, include=("book", "page_limit"))
    assert any("refers to author, which is not restored" in c for c in res.changes)
    made = dict(_q(dst, "SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index')"))
    assert "REFERENCES" in made["book"] and 'REFERENCES "author"' not in made["book"] and made["page_limit"] == "CREATE TABLE page_limit (n INTEGER PRIMARY KEY)"
    assert made["book_cheap"] == "CREATE INDEX book_cheap ON book (price) WHERE price < 10"
    assert _q(dst, "SELECT id, title_upper, price_cents FROM book ORDER BY id")[0] == (10, "THE DISPOSSESSED", 825)
    # an external-content FTS table without its content table: an ordinary table of its rows
    dst2 = tmp_path / "copy2.sqlite"
    _, res = _round_trip(_url(src), _url(dst2), tmp_path, include=("doc_fts", "book_fts"))
    assert "doc_fts: a fts5 table reading its text from doc, which is not restored: made as an ordinary table " \
           "of its columns" in res.changes
    assert _q(dst2, "SELECT name, type FROM pragma_table_list WHERE name IN ('doc_fts', 'book_fts') ORDER BY 1") \
        == [("book_fts", "virtual"), ("doc_fts", "table")]
    assert _q(dst2, "SELECT rowid, title FROM doc_fts ORDER BY 1") == [(1, "alpha"), (5, "beta")]


def test_a_backup_without_the_statements_is_restored_from_the_model(tmp_path: Path) -> None:
    """Archives from before Table.create_sql and Table.index_sql: the tables and indexes are made
    from the model, as they were, with the same rows."""
    src = tmp_path / "chinook.sqlite"
    _build(src, "chinook/schema.sql", "chinook/data.sql")
    path = api.dump(_cfg(_url(src)), tmp_path / "b").path
    manifest = json.loads((path / "manifest.json").read_text())
    for t in manifest["schema"]["tables"]:
        assert t.pop("create_sql").startswith("CREATE TABLE [")
        t.pop("index_sql", None)
    (path / "manifest.json").write_text(json.dumps(manifest))
    old = api.open_backup(path).schema
    adapter = adapter_class("sqlite")(sa.create_engine("sqlite://").dialect)
    assert plan_sql(build_plan(old, [old.table("Album")], adapter), adapter)[0].startswith('CREATE TABLE "Album" (')
    dst = tmp_path / "old-copy.sqlite"
    api.restore(path, _cfg(_url(dst), allow_restore=True), RestoreOptions(allow_restore=True))
    made = dict(_q(dst, "SELECT name, sql FROM sqlite_master"))
    assert made["Album"].startswith('CREATE TABLE "Album" (\n\t"AlbumId" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, ')
    assert made["IFK_AlbumArtistId"] == 'CREATE INDEX "IFK_AlbumArtistId" ON "Album" ("ArtistId")'
    for (name,) in _q(src, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        assert _rows(dst, name) == _rows(src, name), name


def test_what_a_dump_cannot_read_of_a_virtual_table_is_named(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A contentless FTS5 table keeps no text to read back; a virtual table of a module albackup
    does not know is made again with the views, its rows not dumped: the dump says both."""
    p = tmp_path / "cl.sqlite"
    db = sqlite3.connect(p)
    db.executescript("CREATE VIRTUAL TABLE cl USING fts5(a, content=''); INSERT INTO cl (rowid, a) VALUES (1, 'x');"
                     "PRAGMA writable_schema = ON;"
                     "INSERT INTO sqlite_master VALUES ('table', 'u', 'u', 0, 'CREATE VIRTUAL TABLE u USING nosuchmod(a)');")
    db.close()
    schema = api.open_backup(api.dump(_cfg(_url(p)), tmp_path / "b").path).schema
    assert "table cl: a contentless fts5 table (content=''): its text is not stored" in caplog.text
    assert "table u: a virtual table of module nosuchmod, which albackup does not know" in caplog.text
    assert [t.key for t in schema.tables] == ["cl"] and [(r.kind, r.name) for r in schema.routines] == [("view", "u")]


@pytest.mark.parametrize("dst_kind", ["postgresql", "mysql"])
def test_across_engines_a_virtual_table_is_an_ordinary_table_and_shadow_tables_stay_behind(
        dst_kind: str, make_db, tmp_path: Path) -> None:
    src, _ = _features(tmp_path)
    dumped = api.dump(_cfg(_url(src)), tmp_path / "b")
    dst = make_db(dst_kind, "whole")
    res = api.restore(dumped.path, _cfg(dst, allow_restore=True),
                      RestoreOptions(allow_restore=True, accept_lossy=True))
    note = ("book_fts: a fts5 virtual table in the source: restored as an ordinary table of its columns (rowid, "
            "title, body); what the module does (full-text or spatial search) is not kept")
    fulltext = " (a FULLTEXT index over its text columns takes its place)" if dst_kind == "mysql" else ""
    assert note + fulltext in res.changes, res.changes
    e = sa.create_engine(dst, poolclass=NullPool)
    try:
        names = set(sa.inspect(e).get_table_names())
        assert {"book_fts", "doc_fts", "place", "anything", "author"} <= names
        assert not {n for n in names if n.startswith(("book_fts_", "doc_fts_", "place_"))}
        with e.connect() as c:
            rows = c.execute(sa.text("SELECT rowid, title, body FROM book_fts ORDER BY rowid")).all()
            assert [tuple(r) for r in rows] == [(3, "running dogs", "The dogs were running through the fields"),
                                                (9, "quiet cats", "Cats sleep in the sun"), (40, "numbers", "12345")]
            got = dict(c.execute(sa.text("SELECT id, v FROM anything")).all())
            assert got[1] == "42" and got[2] == "3.25" and got[4] == "00ff10" and got[5] is None
            if dst_kind == "mysql":     # a FULLTEXT index in its place
                found = c.execute(sa.text("SELECT rowid FROM book_fts WHERE MATCH (title, body) AGAINST ('dogs')"))
                assert [r[0] for r in found] == [3]
    finally:
        e.dispose()


@pytest.mark.parametrize("dst_kind", ["postgresql", "mysql"])
def test_chinook_restores_into_another_engine(dst_kind: str, make_db, tmp_path: Path) -> None:
    src = tmp_path / "chinook.sqlite"
    _build(src, "chinook/schema.sql", "chinook/data.sql")
    dst = make_db(dst_kind, "chinook")
    _round_trip(_url(src), dst, tmp_path)
    e = sa.create_engine(dst, poolclass=NullPool)
    q = (lambda n: f'"{n}"') if dst_kind == "postgresql" else (lambda n: f"`{n}`")
    try:
        assert len(sa.inspect(e).get_foreign_keys("Track")) == 3
        with e.connect() as c:
            assert c.execute(sa.text(f"SELECT count(*) FROM {q('InvoiceLine')}")).scalar() == 190
            assert str(c.execute(sa.text(f"SELECT sum({q('Total')}) FROM {q('Invoice')}")).scalar()) == \
                str(_q(src, "SELECT printf('%.2f', sum(Total)) FROM Invoice")[0][0])
    finally:
        e.dispose()
