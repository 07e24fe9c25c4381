"""The benchmark's dataset: two tab-separated files, the same bytes for the same scale and seed.

``accounts`` is shaped like pgbench_accounts (aid int PK, bid int, abalance int, filler char(84),
left empty as pgbench does, so the server pads it); ``mixed`` is a wide table of mixed types with
about 10 % NULLs in every column but the key. Both files are in PostgreSQL's COPY text format,
which MariaDB's LOAD DATA reads too (``\\N`` is NULL, backslash escapes); the binary column is
written as ``\\\\x<hex>`` (bytea's hex input after COPY's unescaping; LOAD DATA strips the
``\\x`` and UNHEXes the rest).

At ``scale`` 1000 (MB) there are 5,000,000 accounts and 1,000,000 mixed rows; both scale linearly.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass, asdict
from pathlib import Path

ACCOUNTS_PER_GB = 5_000_000
MIXED_PER_GB = 1_000_000
NULL_RATE = 0.10

PG_DDL = """
DROP TABLE IF EXISTS accounts, mixed;
CREATE TABLE accounts (
    aid      integer NOT NULL,
    bid      integer,
    abalance integer,
    filler   char(84)
);
CREATE TABLE mixed (
    id       bigint NOT NULL,
    amount   numeric(12,2),
    score    double precision,
    name     varchar(100),
    body     text,
    created  timestamp(6),
    day      date,
    flag     boolean,
    payload  bytea,
    attrs    json
);
"""
PG_AFTER = """
ALTER TABLE accounts ADD PRIMARY KEY (aid);
ALTER TABLE mixed ADD PRIMARY KEY (id);
"""

MY_DDL = """
DROP TABLE IF EXISTS accounts, mixed;
CREATE TABLE accounts (
    aid      int NOT NULL PRIMARY KEY,
    bid      int,
    abalance int,
    filler   char(84)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE mixed (
    id       bigint NOT NULL PRIMARY KEY,
    amount   decimal(12,2),
    score    double,
    name     varchar(100),
    body     text,
    created  datetime(6),
    day      date,
    flag     boolean,
    payload  blob,
    attrs    json
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
"""
MY_LOAD = {
    "accounts": "LOAD DATA LOCAL INFILE '{path}' INTO TABLE accounts CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
                "(aid, bid, abalance, filler)",
    "mixed": "LOAD DATA LOCAL INFILE '{path}' INTO TABLE mixed CHARACTER SET utf8mb4 "
             "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
             "(id, amount, score, name, body, created, day, flag, @payload, attrs) "
             "SET payload = UNHEX(SUBSTRING(@payload, 3))",
}


@dataclass
class Dataset:
    scale: float
    seed: int
    accounts_rows: int
    mixed_rows: int
    files: dict[str, str]
    file_bytes: dict[str, int]
    sha256: dict[str, str]

    @property
    def rows(self) -> int:
        return self.accounts_rows + self.mixed_rows

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rows"] = self.rows
        return d


def sizes(scale: float) -> tuple[int, int]:
    return (max(1000, round(ACCOUNTS_PER_GB * scale / 1000)),
            max(200, round(MIXED_PER_GB * scale / 1000)))


def _vocabulary(rng: random.Random, n: int = 4000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    extra = ["é", "ü", "ß", "ø", "ñ", "日本", "Ω", "€"]
    words = []
    for i in range(n):
        w = "".join(rng.choice(letters) for _ in range(rng.randint(2, 10)))
        if i % 50 == 0:
            w += rng.choice(extra)
        words.append(w)
    return words


def _write_accounts(path: Path, n: int, rng: random.Random) -> None:
    rnd = rng.randint
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        buf = []
        for aid in range(1, n + 1):
            buf.append(f"{aid}\t{(aid - 1) // 100000 + 1}\t{rnd(-99999, 99999)}\t\n")
            if len(buf) >= 50000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))


def _write_mixed(path: Path, n: int, rng: random.Random) -> None:
    words = _vocabulary(rng)
    choices, rand, randint, randbytes = rng.choices, rng.random, rng.randint, rng.randbytes
    base = dt.datetime(2020, 1, 1)
    day0 = dt.date(2015, 1, 1)
    tags = words[:64]
    N = "\\N"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        buf = []
        for i in range(1, n + 1):
            if rand() < NULL_RATE:
                amount = N
            else:
                c = randint(-10 ** 11, 10 ** 11)
                amount = f"{'-' if c < 0 else ''}{abs(c) // 100}.{abs(c) % 100:02d}"
            score = N if rand() < NULL_RATE else repr(rand() * 2e6 - 1e6)
            name = N if rand() < NULL_RATE else " ".join(choices(words, k=randint(2, 5)))[:100]
            body = N if rand() < NULL_RATE else " ".join(choices(words, k=randint(15, 45)))
            if rand() < NULL_RATE:
                created = N
            else:
                ts = base + dt.timedelta(seconds=randint(0, 5 * 365 * 86400), microseconds=randint(0, 999999))
                created = ts.strftime("%Y-%m-%d %H:%M:%S.%f")
            day = N if rand() < NULL_RATE else (day0 + dt.timedelta(days=randint(0, 4000))).isoformat()
            flag = N if rand() < NULL_RATE else ("1" if rand() < 0.5 else "0")
            payload = N if rand() < NULL_RATE else "\\\\x" + randbytes(randint(80, 120)).hex()
            if rand() < NULL_RATE:
                attrs = N
            else:
                t = choices(tags, k=randint(0, 4))
                attrs = ('{"ref": %d, "kind": "%s", "tags": [%s], "ok": %s, "ratio": %s}'
                         % (randint(1, 10 ** 6), choices(tags)[0], ", ".join(f'"{x}"' for x in t),
                            "true" if rand() < 0.5 else "false", round(rand(), 4)))
            buf.append(f"{i}\t{amount}\t{score}\t{name}\t{body}\t{created}\t{day}\t{flag}\t{payload}\t{attrs}\n")
            if len(buf) >= 20000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def generate(folder: Path, scale: float, seed: int) -> Dataset:
    """Write accounts.tsv and mixed.tsv into ``folder``; each table has its own seeded stream."""
    folder.mkdir(parents=True, exist_ok=True)
    n_acc, n_mix = sizes(scale)
    files = {"accounts": folder / "accounts.tsv", "mixed": folder / "mixed.tsv"}
    _write_accounts(files["accounts"], n_acc, random.Random(f"{seed}/accounts"))
    _write_mixed(files["mixed"], n_mix, random.Random(f"{seed}/mixed"))
    return Dataset(scale, seed, n_acc, n_mix, {k: str(p) for k, p in files.items()},
                   {k: p.stat().st_size for k, p in files.items()},
                   {k: _sha256(p) for k, p in files.items()})
