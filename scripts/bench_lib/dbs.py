"""The two local servers, through their own command-line clients (psql, mariadb)."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _run(argv: list[str], sql: str | None = None) -> str:
    r = subprocess.run(argv, input=sql, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:1])} failed ({r.returncode}): {r.stderr.strip()[-2000:]}\n"
                           f"SQL: {(sql or '')[:500]}")
    return r.stdout


@dataclass
class Pg:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "root"
    maintenance_db: str = "postgres"

    def conn_args(self, db: str) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", self.user, "-d", db]

    def url(self, db: str) -> str:
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{db}"

    def psql(self, db: str, sql: str) -> str:
        return _run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", *self.conn_args(db)], sql)

    def scalar(self, db: str, sql: str) -> str:
        return self.psql(db, sql).strip()

    def recreate(self, db: str) -> None:
        self.drop(db)
        self.psql(self.maintenance_db, f'CREATE DATABASE "{db}"')

    def drop(self, db: str) -> None:
        self.psql(self.maintenance_db, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    def exists(self, db: str) -> bool:
        return self.scalar(self.maintenance_db, f"SELECT count(*) FROM pg_database WHERE datname = '{db}'") == "1"

    def checkpoint(self) -> None:
        self.psql(self.maintenance_db, "CHECKPOINT")

    def copy_in(self, db: str, table: str, path: Path) -> None:
        _run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *self.conn_args(db),
              "-c", f"\\copy {table} FROM '{path}'"])

    def size(self, db: str) -> int:
        return int(self.scalar(self.maintenance_db, f"SELECT pg_database_size('{db}')"))

    def counts(self, db: str, tables: list[str]) -> dict[str, int]:
        out = self.psql(db, "; ".join(f"SELECT count(*) FROM {t}" for t in tables))
        return dict(zip(tables, (int(x) for x in out.split())))

    def fingerprint(self, db: str) -> str:
        """Order-independent content fingerprint of the two tables (same engine only)."""
        return self.psql(db, "SELECT count(*), sum(hashtext(a::text)::bigint) FROM accounts a;"
                             "SELECT count(*), sum(hashtext(m::text)::bigint) FROM mixed m").strip()

    def version(self) -> str:
        return self.scalar(self.maintenance_db, "SELECT version()")

    def setting(self, name: str) -> str:
        return self.scalar(self.maintenance_db, f"SHOW {name}")


@dataclass
class My:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"

    def conn_args(self) -> list[str]:
        return ["-h", self.host, "-P", str(self.port), "-u", self.user]

    driver: str = ""   # "" = what albackup takes for a mysql:// URL (mysqlclient when installed)

    def url(self, db: str) -> str:
        import importlib.util

        driver = self.driver or ("mysqldb" if importlib.util.find_spec("MySQLdb") else "pymysql")
        return f"mysql+{driver}://{self.user}@{self.host}:{self.port}/{db}"

    def sql(self, sql: str, db: str | None = None) -> str:
        return _run(["mariadb", "--local-infile=1", "-N", "-B", *self.conn_args(), *([db] if db else [])], sql)

    def scalar(self, sql: str, db: str | None = None) -> str:
        return self.sql(sql, db).strip()

    def recreate(self, db: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` CHARACTER SET utf8mb4")

    def drop(self, db: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{db}`")

    def exists(self, db: str) -> bool:
        return self.scalar(f"SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{db}'") == "1"

    def size(self, db: str) -> int:
        tables = self.scalar(f"SELECT group_concat(concat('`', table_name, '`')) FROM information_schema.tables "
                             f"WHERE table_schema = '{db}'")
        if tables and tables != "NULL":
            self.sql(f"ANALYZE TABLE {tables}", db)     # refresh the statistics the sizes come from
        v = self.scalar(f"SELECT coalesce(sum(data_length + index_length), 0) FROM information_schema.tables "
                        f"WHERE table_schema = '{db}'")
        return int(v)

    def counts(self, db: str, tables: list[str]) -> dict[str, int]:
        out = self.sql("; ".join(f"SELECT count(*) FROM `{t}`" for t in tables), db)
        return dict(zip(tables, (int(x) for x in out.split())))

    def fingerprint(self, db: str) -> str:
        out = self.sql("CHECKSUM TABLE accounts, mixed EXTENDED", db)
        return " ".join(line.split("\t")[-1] for line in out.strip().splitlines())

    def version(self) -> str:
        return self.scalar("SELECT version()")

    def setting(self, name: str) -> str:
        return self.scalar(f"SELECT @@{name}")
