"""A deterministic sample shop database in SQLite, for the demo and for trying albackup out.

``build_sample(path)`` writes the same data every time (a fixed random seed, fixed dates):

=============  =====  ==================================================================
categories        24  a self-referencing tree (``parent_id`` → ``categories.id``)
customers        600  unique e-mail, unicode names (accents, CJK, emoji), NULL phones,
                      a boolean, a date of sign-up, a small BLOB avatar for some
products         240  NUMERIC(10,2) price, REAL weight, CHECK (price >= 0), unique SKU,
                      FK to categories
orders          1500  AUTOINCREMENT key, DATETIME ordered_at, NULL shipped_at until shipped,
                      CHECK on status, FK to customers
order_items    ~4500  composite unique (order_id, product_id), CHECK (quantity > 0),
                      NUMERIC(5,4) discount (NULL when none), FKs to orders and products
=============  =====  ==================================================================

plus indexes on the foreign keys and on ``orders.ordered_at``, and a view ``order_totals``.

Constraints are written as named table constraints (``CONSTRAINT uq_... UNIQUE (...)``,
``CONSTRAINT fk_... FOREIGN KEY ... ON DELETE CASCADE``): SQLAlchemy's SQLite reflection reads
those fully, while a column-level ``UNIQUE`` after a type such as ``VARCHAR(80)`` and the
``ON DELETE`` of a column-level ``REFERENCES`` are not seen by it.

Standard library only (``sqlite3``). ``python -m albackup.sample PATH`` runs it.
"""
from __future__ import annotations

import datetime as dt
import random
import re
import sqlite3
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

SEED = 20261122
BASE_DAY = dt.date(2025, 1, 1)

SCHEMA = """
CREATE TABLE categories (
    id        INTEGER PRIMARY KEY,
    parent_id INTEGER,
    name      VARCHAR(80) NOT NULL,
    slug      VARCHAR(80) NOT NULL,
    CONSTRAINT uq_categories_slug UNIQUE (slug),
    CONSTRAINT fk_categories_parent FOREIGN KEY (parent_id) REFERENCES categories (id) ON DELETE CASCADE
);
CREATE TABLE customers (
    id          INTEGER PRIMARY KEY,
    email       VARCHAR(200) NOT NULL,
    full_name   VARCHAR(120) NOT NULL,
    phone       VARCHAR(40),
    country     CHAR(2) NOT NULL,
    is_active   BOOLEAN NOT NULL DEFAULT 1,
    signed_up   DATE NOT NULL,
    notes       TEXT,
    avatar      BLOB,
    CONSTRAINT uq_customers_email UNIQUE (email)
);
CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    sku         VARCHAR(32) NOT NULL,
    category_id INTEGER NOT NULL,
    name        VARCHAR(200) NOT NULL,
    price       NUMERIC(10, 2) NOT NULL,
    weight_kg   REAL,
    in_stock    BOOLEAN NOT NULL DEFAULT 1,
    added_at    DATETIME NOT NULL,
    CONSTRAINT uq_products_sku UNIQUE (sku),
    CONSTRAINT ck_products_price CHECK (price >= 0),
    CONSTRAINT fk_products_category FOREIGN KEY (category_id) REFERENCES categories (id)
);
CREATE TABLE orders (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL,
    status      VARCHAR(16) NOT NULL DEFAULT 'new',
    ordered_at  DATETIME NOT NULL,
    shipped_at  DATETIME,
    comment     TEXT,
    CONSTRAINT ck_orders_status CHECK (status IN ('new', 'paid', 'shipped', 'cancelled')),
    CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
);
CREATE TABLE order_items (
    id          INTEGER PRIMARY KEY,
    order_id    INTEGER NOT NULL,
    product_id  INTEGER NOT NULL,
    quantity    INTEGER NOT NULL,
    unit_price  NUMERIC(10, 2) NOT NULL,
    discount    NUMERIC(5, 4),
    CONSTRAINT uq_order_items_order_product UNIQUE (order_id, product_id),
    CONSTRAINT ck_order_items_quantity CHECK (quantity > 0),
    CONSTRAINT fk_order_items_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
    CONSTRAINT fk_order_items_product FOREIGN KEY (product_id) REFERENCES products (id)
);
CREATE INDEX ix_products_category ON products (category_id);
CREATE INDEX ix_orders_customer ON orders (customer_id);
CREATE INDEX ix_orders_ordered_at ON orders (ordered_at);
CREATE INDEX ix_order_items_product ON order_items (product_id);
CREATE VIEW order_totals AS
    SELECT o.id AS order_id, o.customer_id, o.status,
           count(i.id) AS items,
           round(sum(i.quantity * i.unit_price * (1 - coalesce(i.discount, 0))), 2) AS total
      FROM orders o LEFT JOIN order_items i ON i.order_id = o.id
     GROUP BY o.id, o.customer_id, o.status;
"""

CATEGORY_TREE = {
    "Books": ["Fiction", "Science", "Cookbooks", "Comics"],
    "Electronics": ["Phones", "Laptops", "Audio", "Cameras"],
    "Home & Garden": ["Kitchen", "Furniture", "Garden tools"],
    "Toys": ["Board games", "Puzzles", "Outdoor"],
    "Café": ["Coffee ☕", "Tea 🍵", "Cups & mugs"],
}
SUBCATEGORIES = {"Phones": ["Android", "Feature phones"]}

FIRST = ["Anna", "Björn", "Chloé", "Dmitri", "Eleni", "François", "Gülay", "Hiroshi", "Inés", "João",
         "Kateřina", "Łukasz", "Mária", "Nguyễn", "Oğuz", "Priya", "Quentin", "Renée", "Søren", "Zoë",
         "李", "王", "山田", "Σοφία", "Владимир", "محمد", "Ada", "Grace", "Linus", "Margaret"]
LAST = ["Müller", "García", "Smith", "Øberg", "Dubois", "Kowalski", "Nakamura", "Rossi", "Novák",
        "O'Brien", "van der Berg", "Ångström", "Papadopoulos", "Ivanova", "明", "芳", "太郎", "Lovelace",
        "Hopper", "Torvalds", "Hamilton", "Türk", "Šimek", "Đorđević"]
EMOJI = ["🎉", "📦", "🚚", "❤️", "👍", "🙂", "🔥", "🌍", "🐍", "☕"]
COUNTRIES = ["DE", "FR", "GB", "US", "JP", "CN", "GR", "PL", "CZ", "VN", "TR", "IN", "SE", "NO", "BR"]
ADJECTIVES = ["Classic", "Deluxe", "Mini", "Pro", "Eco", "Vintage", "Smart", "Ultra", "Handmade", "Cosy"]
NOUNS = ["Notebook", "Speaker", "Mug", "Puzzle", "Lamp", "Novel", "Kettle", "Chair", "Camera", "Headset",
         "Teapot", "Rake", "Board game", "Phone case", "Grinder"]


def _money(cents: int) -> float:
    """A price as SQLite stores a NUMERIC(10,2) literal: a REAL with two decimals."""
    return float(Decimal(cents).scaleb(-2).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _categories() -> list[tuple[int, int | None, str, str]]:
    rows: list[tuple[int, int | None, str, str]] = []

    def add(parent: int | None, name: str) -> int:
        cid = len(rows) + 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        rows.append((cid, parent, name, f"{slug}-{cid}"))
        return cid

    for top, children in CATEGORY_TREE.items():
        top_id = add(None, top)
        for child in children:
            child_id = add(top_id, child)
            for grandchild in SUBCATEGORIES.get(child, []):
                add(child_id, grandchild)
    while len(rows) < 24:                       # a few more leaves under "Books"
        add(1, f"Books vol. {len(rows)}")
    return rows


def _customers(rnd: random.Random, n: int) -> list[tuple]:
    rows = []
    for i in range(1, n + 1):
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        name = f"{first} {last}" + (f" {rnd.choice(EMOJI)}" if i % 17 == 0 else "")
        email = f"customer{i:04d}@example.{'com' if i % 3 else 'org'}"
        phone = None if i % 4 == 0 else f"+{rnd.randint(1, 99)} {rnd.randint(100, 999)} {rnd.randint(1000000, 9999999)}"
        signed_up = (BASE_DAY - dt.timedelta(days=rnd.randint(0, 1500))).isoformat()
        notes = None if i % 5 else rnd.choice(["VIP", "prefers e-mail", "Grüße aus Köln", "メモ", "pays late 🐢",
                                             "line one\nline two", "tab\there", "quote ' and \" both"])
        avatar = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(16, 64))) if i % 10 == 0 else None
        rows.append((i, email, name, phone, rnd.choice(COUNTRIES), i % 11 != 0, signed_up, notes, avatar))
    return rows


def _products(rnd: random.Random, n: int, leaf_categories: list[int]) -> list[tuple]:
    rows = []
    for i in range(1, n + 1):
        name = f"{rnd.choice(ADJECTIVES)} {rnd.choice(NOUNS)} #{i}"
        if i % 23 == 0:
            name += f" {rnd.choice(EMOJI)}"
        price = _money(rnd.randint(0, 250_000)) if i % 50 else 0.0
        weight = None if i % 9 == 0 else round(rnd.uniform(0.05, 25.0), 3)
        added = dt.datetime.combine(BASE_DAY, dt.time()) - dt.timedelta(minutes=rnd.randint(0, 900_000))
        rows.append((i, f"SKU-{i:05d}", rnd.choice(leaf_categories), name, price, weight, i % 13 != 0,
                     added.strftime("%Y-%m-%d %H:%M:%S")))
    return rows


def _orders(rnd: random.Random, n: int, customers: int, products: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    orders, items = [], []
    item_id = 0
    for i in range(1, n + 1):
        ordered = dt.datetime.combine(BASE_DAY, dt.time()) + dt.timedelta(seconds=rnd.randint(0, 300 * 86400))
        status = rnd.choices(["new", "paid", "shipped", "cancelled"], weights=[2, 3, 8, 1])[0]
        shipped = (ordered + dt.timedelta(hours=rnd.randint(2, 120))).strftime("%Y-%m-%d %H:%M:%S") \
            if status == "shipped" else None
        comment = None if i % 7 else rnd.choice(["leave at the door", "Geschenk 🎁", "call first", "急ぎ", ""])
        orders.append((i, rnd.randint(1, customers), status, ordered.strftime("%Y-%m-%d %H:%M:%S"), shipped, comment))
        for p in rnd.sample(products, rnd.randint(1, 5)):
            item_id += 1
            discount = None if rnd.random() < 0.7 else float(Decimal(rnd.choice([500, 1000, 1250, 2500])).scaleb(-4))
            items.append((item_id, i, p[0], rnd.randint(1, 6), p[4], discount))
    return orders, items


def build_sample(path: Path) -> None:
    """Write the sample shop database to ``path`` (a new file; an existing one is refused)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; remove it or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(SEED)
    cats = _categories()
    parents = {c[1] for c in cats if c[1] is not None}
    leaves = [c[0] for c in cats if c[0] not in parents]
    customers = _customers(rnd, 600)
    products = _products(rnd, 240, leaves)
    orders, items = _orders(rnd, 1500, len(customers), products)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        with conn:
            conn.executescript(SCHEMA)
            conn.executemany("INSERT INTO categories VALUES (?, ?, ?, ?)", cats)
            conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", customers)
            conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?)", products)
            conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", orders)
            conn.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?, ?)", items)
        bad = conn.execute("PRAGMA foreign_key_check").fetchall()
        if bad:
            raise RuntimeError(f"sample data breaks its own foreign keys: {bad[:3]}")
    finally:
        conn.close()
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m albackup.sample PATH\n\nWrite the deterministic sample shop database "
              "(SQLite) to PATH, a file that must not exist yet.", file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    try:
        build_sample(Path(args[0]))
    except FileExistsError as exc:
        print(f"albackup.sample: error: {exc}", file=sys.stderr)
        return 2
    conn = sqlite3.connect(args[0])
    try:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("categories", "customers", "products", "orders", "order_items")}
    finally:
        conn.close()
    print(f"{args[0]}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
