-- Every SQLite schema feature a restore into SQLite must give back as it was made.
-- Written for albackup's tests (tests/test_sqlite_whole.py); no outside source.
PRAGMA foreign_keys = ON;

CREATE TABLE author (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL COLLATE NOCASE,
    code TEXT COLLATE RTRIM UNIQUE,
    born INTEGER CHECK (born IS NULL OR born > 1000),
    CONSTRAINT author_name_len CHECK (length(name) > 0)
);

CREATE TABLE book (
    id INTEGER PRIMARY KEY,
    author_id INTEGER NOT NULL REFERENCES author (id) ON DELETE CASCADE ON UPDATE CASCADE,
    title TEXT NOT NULL,
    price REAL DEFAULT 9.5,
    pages INTEGER,
    title_upper TEXT GENERATED ALWAYS AS (upper(title)) VIRTUAL,
    price_cents INTEGER GENERATED ALWAYS AS (CAST(round(price * 100) AS INTEGER)) STORED,
    FOREIGN KEY (pages) REFERENCES page_limit (n) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE page_limit (n INTEGER PRIMARY KEY);

-- rowid of a table without INTEGER PRIMARY KEY is not kept (as sqlite3 .dump without
-- --preserve-rowids); this one has a key of its own
CREATE TABLE tag (
    book_id INTEGER NOT NULL REFERENCES book (id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    PRIMARY KEY (book_id, label DESC)
) WITHOUT ROWID;

CREATE TABLE anything (
    id INTEGER PRIMARY KEY,
    v ANY,
    n INTEGER NOT NULL DEFAULT 0,
    t TEXT
) STRICT;

CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    what TEXT NOT NULL,
    at TEXT DEFAULT (datetime('now'))
);

CREATE INDEX book_title ON book (title COLLATE NOCASE DESC);
CREATE INDEX book_cheap ON book (price) WHERE price < 10;
CREATE UNIQUE INDEX book_lower_title ON book (lower(title), author_id);
CREATE INDEX anything_len ON anything (length(t)) WHERE t IS NOT NULL;

CREATE VIEW book_view AS
    SELECT b.id, b.title, a.name AS author FROM book b JOIN author a ON a.id = b.author_id;

CREATE VIEW cheap_books AS SELECT * FROM book_view WHERE id IN (SELECT id FROM book WHERE price < 10);

CREATE TRIGGER book_added AFTER INSERT ON book
BEGIN
    INSERT INTO audit (what) VALUES ('book ' || NEW.id);
END;

CREATE TRIGGER book_view_insert INSTEAD OF INSERT ON book_view
BEGIN
    INSERT INTO book (author_id, title) SELECT id, NEW.title FROM author WHERE name = NEW.author;
END;

CREATE VIRTUAL TABLE book_fts USING fts5(title, body, tokenize = 'porter unicode61');

CREATE TABLE doc (id INTEGER PRIMARY KEY, title TEXT, body TEXT);
CREATE VIRTUAL TABLE doc_fts USING fts5(title, body, content = 'doc', content_rowid = 'id');
CREATE TRIGGER doc_ai AFTER INSERT ON doc BEGIN
    INSERT INTO doc_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER doc_ad AFTER DELETE ON doc BEGIN
    INSERT INTO doc_fts (doc_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
END;

CREATE VIRTUAL TABLE place USING rtree(id, min_x, max_x, min_y, max_y);
