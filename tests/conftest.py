"""Shared fixtures: live servers chosen by URL, scratch databases created and dropped per test.

Server tests read ALBACKUP_TEST_PG_URL and ALBACKUP_TEST_MYSQL_URL (defaults: the local servers).
An unreachable server skips its tests with the reason shown, except under CI=true, where it fails.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import secrets
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

PG_URL = os.environ.get("ALBACKUP_TEST_PG_URL", "postgresql+psycopg2://root@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("ALBACKUP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() == "true"

_reachable: dict[str, str | None] = {}


def _probe(url: str) -> str | None:
    """None when the server answers, else the reason."""
    if url not in _reachable:
        try:
            e = sa.create_engine(url, poolclass=NullPool, connect_args=_timeout(url))
            with e.connect():
                pass
            e.dispose()
            _reachable[url] = None
        except Exception as exc:  # any failure to reach the server is the reason to skip
            _reachable[url] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return _reachable[url]


def _timeout(url: str) -> dict[str, int]:
    return {"connect_timeout": 5}


def require_server(url: str, label: str) -> None:
    reason = _probe(url)
    if reason is None:
        return
    msg = f"{label} server at {sa.engine.make_url(url).render_as_string(hide_password=True)} unreachable: {reason}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: server tests are required)")
    pytest.skip(msg)


#: where requirements.txt installs mysqlclient-static (a wheel of mysqlclient with its C library
#: inside); elsewhere mysqlclient is optional and PyMySQL reads MySQL/MariaDB
MYSQLCLIENT_WHEEL = (sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")) or \
    (sys.platform == "darwin" and platform.machine() == "arm64")


def require_component(module: str, what: str, *, installed_by_scripts: bool, module_level: bool = False) -> None:
    """Skip the test, with the reason, when the optional ``module`` cannot be imported.

    Under CI=true a component that scripts/test installs is required: its absence fails the test,
    so that a setup step that leaves it out cannot pass unseen.
    """
    if importlib.util.find_spec(module) is not None:
        return
    reason = f"{what} is not installed (no module {module})"
    if IN_CI and installed_by_scripts:
        pytest.fail(reason + " (CI=true: scripts/test installs it, so it is required)")
    pytest.skip(reason, allow_module_level=module_level)


def require_mysqlclient() -> None:
    require_component("MySQLdb", "mysqlclient (pip install mysqlclient-static, or mysqlclient)",
                      installed_by_scripts=MYSQLCLIENT_WHEEL)


class ServerDB:
    """Create uniquely named databases on one server and drop them afterwards."""

    def __init__(self, base_url: str, kind: str) -> None:
        self.base = sa.engine.make_url(base_url)
        self.kind = kind
        self.made: list[str] = []

    def q(self, name: str) -> str:
        return f'"{name}"' if self.kind == "postgresql" else f"`{name}`"

    def new(self, prefix: str = "t") -> sa.URL:
        name = f"albk_{prefix}_{secrets.token_hex(4)}"
        e = sa.create_engine(self.base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with e.connect() as c:
            c.exec_driver_sql(f"CREATE DATABASE {self.q(name)}")
        e.dispose()
        self.made.append(name)
        return self.base.set(database=name)

    def drop_all(self) -> None:
        e = sa.create_engine(self.base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with e.connect() as c:
            for name in self.made:
                if self.kind == "postgresql":
                    c.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.q(name)} WITH (FORCE)")
                else:
                    c.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.q(name)}")
        e.dispose()


@pytest.fixture
def pg() -> Iterator[ServerDB]:
    require_server(PG_URL, "PostgreSQL")
    s = ServerDB(PG_URL, "postgresql")
    yield s
    s.drop_all()


@pytest.fixture
def my() -> Iterator[ServerDB]:
    require_server(MYSQL_URL, "MySQL/MariaDB")
    s = ServerDB(MYSQL_URL, "mysql")
    yield s
    s.drop_all()


class SQLiteDB:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.n = 0

    def new(self, prefix: str = "t") -> sa.URL:
        self.n += 1
        return sa.engine.make_url(f"sqlite:///{self.tmp / f'{prefix}{self.n}.sqlite'}")


@pytest.fixture
def lite(tmp_path: Path) -> SQLiteDB:
    return SQLiteDB(tmp_path)


@pytest.fixture
def make_db(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str, str], sa.URL]:
    """make_db(engine, prefix) → URL of a new empty database on that engine."""
    servers: dict[str, object] = {}

    def make(kind: str, prefix: str = "t") -> sa.URL:
        if kind not in servers:
            servers[kind] = request.getfixturevalue({"sqlite": "lite", "postgresql": "pg", "mysql": "my"}[kind])
        return servers[kind].new(prefix)  # type: ignore[attr-defined]

    return make


def query_rows(url: sa.URL, sql: str) -> list[tuple]:
    """The rows of ``sql`` on the database at ``url``, as tuples."""
    e = sa.create_engine(url, poolclass=NullPool)
    try:
        with e.connect() as c:
            return [tuple(r) for r in c.exec_driver_sql(sql)]
    finally:
        e.dispose()


def engine_for(url: sa.URL) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool)


@pytest.fixture(autouse=True)
def _no_cli_log_handler_left() -> Iterator[None]:
    """A command run in-process installs a log handler on the stream pytest captured for that test;
    removed afterwards, so that a later test's log record is not written to a closed stream."""
    import logging

    root = logging.getLogger()
    level = root.level
    yield
    for h in list(root.handlers):
        if getattr(h, "_albackup", False):
            root.removeHandler(h)
    root.setLevel(level)
