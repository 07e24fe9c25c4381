"""Configuration files: YAML (JSON is YAML too, so the old tool's JSON configs load) into frozen
dataclasses. Every problem is a one-line ``ConfigError`` naming the file, the key path
(``databases[1].db_port``), the line when known, and what was expected. Passwords never appear in
messages, in ``repr()`` or in ``display_url()``.

A password is given by at most one of: ``password``/``db_password`` (plain text, or encrypted by
``chg-password`` as ``albackup-enc:v1:...`` or ``{encrypted: ...}``; see ``albackup.password``),
``password_env`` (an environment variable), ``password_file`` (a file, relative to the config's
folder; one trailing line break removed) or ``password_command`` (run without a shell, 30 s
timeout; its output). The plain password exists only in memory, in ``DatabaseConfig.url``.
"""
from __future__ import annotations

import dataclasses
from datetime import timedelta
import difflib
import logging
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .destinations import Destination, destinations_from
from .keys import NONE as NO_ENCRYPTION
from .keys import EncryptionConfig, encryption_from_mapping
from .retention import Policy, parse_duration
from .errors import ConfigError, SecretError
from .password import decrypt_value, is_encrypted
from .secrets import mask_secrets

log = logging.getLogger(__name__)

COMPRESSIONS = ("zstd", "gzip", "lzma", "none")
READ_BACKS = ("hash", "count")
MAX_LOCK_TIMEOUT = 31_536_000     # a year: MariaDB's lock_wait_timeout goes no higher
LEVELS = {"zstd": (1, 22), "gzip": (0, 9), "lzma": (0, 9)}
#: ``driver`` values and their SQLAlchemy driver names; "mysql" and "mariadb" take mysqlclient when
#: it is installed, else PyMySQL (``mysql_dbapi``); "mysql+pymysql" and the like name one
DRIVERS = {"postgresql": "postgresql+psycopg2", "mysql": "mysql", "mariadb": "mariadb",
           "sqlite": "sqlite", "mssql": "mssql+pyodbc",
           **{f"{d}+{api}": f"{d}+{api}" for d in ("mysql", "mariadb") for api in ("mysqldb", "pymysql")}}
URL_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg2", "postgres": "postgresql+psycopg2",
                       "mysql": "mysql", "mariadb": "mariadb"}
PORT_DRIVERS = {1433: "mssql", 5432: "postgresql", 3306: "mysql"}
DEFAULT_ODBC_DRIVER = "ODBC Driver 18 for SQL Server"
# new-style key -> the old tool's flat key for the same thing
ALIASES = {"host": "db_server", "port": "db_port", "user": "db_user", "password": "db_password",
           "database": "db_name"}
PASSWORD_KEYS = ("password", "db_password")
SOURCE_KEYS = ("password_env", "password_file", "password_command")  # other password sources
CONNECTION_KEYS = ("driver", "odbc_driver", *ALIASES, *ALIASES.values())
BOOL_KEYS = ("allow_restore", "enable_ri_check", "views", "triggers", "routines", "require_consistent",
             "skip")
LIST_KEYS = ("include_tables", "exclude_tables", "schemas", "exclude_schemas")
DATABASE_KEYS = frozenset({"url", "name", "compression", "compression_level", "batch_rows", "jobs", "chunk_rows",
                           "encryption", "read_back", "lock_timeout",
                           "retention", "destinations", "max_age",
                           *CONNECTION_KEYS, *SOURCE_KEYS, *BOOL_KEYS, *LIST_KEYS})
TEST_ALL_KEYS = frozenset({"restore", "scratch", "databases", "defaults", "destinations", "retention", "max_age",
                           "notifications", "hooks", "log_dir",
                           "hostname", "workdir"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_KEY = re.compile(r"pa?s+w|pwd|secret|token|credential", re.I)
_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
          dict: "a mapping", type(None): "null"}


#: said once per process when a MySQL/MariaDB URL falls back to PyMySQL
SLOW_DRIVER_HINT = ("MySQL/MariaDB is read with PyMySQL: mysqlclient is not installed here; for 2-3 times the "
                    "speed: pip install mysqlclient-static (Linux x86_64, macOS arm64) or mysqlclient "
                    "(needs libmariadb-dev and pkg-config)")
_hinted = False


def mysql_dbapi() -> str:
    """The MySQL/MariaDB driver of a URL or ``driver`` that names none: mysqlclient ("mysqldb",
    the C driver, which requirements.txt installs as the mysqlclient-static wheel where there is one)
    when it can be imported, else PyMySQL, with a line saying how to get the fast one.
    The backup is the same either way."""
    global _hinted
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        if not _hinted:
            _hinted = True
            log.warning(SLOW_DRIVER_HINT)
        return "pymysql"
    return "mysqldb"


def _with_dbapi(drivername: str) -> str:
    return f"{drivername}+{mysql_dbapi()}" if drivername in ("mysql", "mariadb") else drivername


@dataclass(frozen=True)
class DatabaseConfig:
    name: str
    url: URL
    allow_restore: bool = False
    enable_ri_check: bool = True
    include_tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    schemas: tuple[str, ...] = ()                    # globs; none: every schema the engine keeps tables in
    exclude_schemas: tuple[str, ...] = ()            # globs of schemas left out
    compression: str = "zstd"
    compression_level: int | None = None
    batch_rows: int = 5000
    jobs: int = 1                                    # worker processes for dump and restore (-j)
    chunk_rows: int = 1_000_000                      # tables above this many rows are cut into key ranges
    read_back: str = "hash"                          # restore: how each table is checked (--read-back)
    lock_timeout: int = 60                           # restore: seconds a statement waits for a lock
    views: bool = True
    triggers: bool = True
    routines: bool = True
    require_consistent: bool = False
    skip: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    source: str = ""
    encryption: EncryptionConfig = NO_ENCRYPTION
    retention: Policy | None = None                  # scheduled run: this database's policy
    destinations: tuple[Destination, ...] = ()       # scheduled run: where its backups go
    max_age: timedelta | None = None                 # check: the newest backup may be this old

    def display_url(self) -> str:
        return mask_secrets(self.url.render_as_string(hide_password=True))

    @property
    def engine_name(self) -> str:
        backend = self.url.get_backend_name()
        return "mysql" if backend == "mariadb" else backend

    def __repr__(self) -> str:  # @dataclass keeps this one: masks the URL and password-like extras
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown.update(url=self.display_url(), extra=_redact(self.extra))
        return f"DatabaseConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


@dataclass(frozen=True)
class TestAllConfig:
    __test__ = False  # not a pytest test class

    scratch: DatabaseConfig | None
    databases: tuple[DatabaseConfig, ...]
    source: str = ""
    hostname: str | None = None        # scheduled run: the name this machine files backups under
    workdir: str | None = None         # scheduled run: local staging folder
    notifications: tuple[Any, ...] = ()   # notify.Notifier objects (run, check)
    hooks: Mapping[str, Any] = field(default_factory=dict)   # hooks.Hook per stage (run)
    log_dir: str | None = None         # scheduled run: a log file per run here, the last 24 h kept


#: the same file drives test_all, run, list, prune and check
RunConfig = TestAllConfig


@dataclass(frozen=True)
class _Where:
    """Where a mapping sits, for messages: source file, key-path prefix, line numbers."""

    source: str
    prefix: str = ""
    lines: Mapping[str, int] = field(default_factory=dict)
    renamed: Mapping[str, str] = field(default_factory=dict)  # key -> path shown (from `defaults`)
    key_path: Path | None = None  # the key file for encrypted passwords (None: the default lookup)

    def path(self, key: str | None = None) -> str:
        return self.prefix if key is None else self.renamed.get(key) or _join(self.prefix, key)

    def sub(self, prefix: str, renamed: Mapping[str, str] | None = None) -> _Where:
        return _Where(self.source, prefix, self.lines, renamed or {}, self.key_path)

    def label(self, key: str | None) -> str:
        """``file, line N: key.path`` for messages."""
        path = self.path(key)
        line = self.lines.get(path) or self.lines.get(self.prefix)
        where = f"{self.source}, line {line}" if line else self.source
        if not path or (self.source == "--url" and path == "url"):
            return where
        return f"{where}: {path}"

    def error(self, key: str | None, message: str, cls: type[ConfigError] | type[SecretError] = ConfigError
              ) -> ConfigError | SecretError:
        return cls(f"{self.label(key)}: {message}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _redact(extra: Mapping[str, Any]) -> dict[str, Any]:
    return {k: "***" if _SECRET_KEY.search(str(k)) and v is not None else v for k, v in extra.items()}


# ---------------------------------------------------------------- files

def read_file(path: str | Path) -> dict:
    """Read a YAML/JSON config file into a mapping; every problem is a ConfigError."""
    return _load(Path(path))[0]


def _load(path: Path) -> tuple[dict, dict[str, int]]:
    _node, data, lines = _parse(_read_text(path), path)
    _warn_if_exposed(path, data)
    return data, lines


def _parse(text: str, path: Path) -> tuple[yaml.Node, dict, dict[str, int]]:
    """(node tree, settings mapping, line of each key path) of a config file's text."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:  # not str(exc): its snippet of the line could show a password
        mark = exc.problem_mark or exc.context_mark
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{at}: not valid YAML/JSON: {exc.problem or exc.context}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML/JSON") from None
    except Exception:  # e.g. `!!int abc`: the constructor's own error would quote the value
        raise ConfigError(f"{path}: not valid YAML/JSON: a value cannot be built "
                          "(a bad !!type tag, or nested too deeply)") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty (expected a mapping of settings)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {_kind(data)}")
    lines: dict[str, int] = {}
    _line_map(node, "", lines, path)
    return node, data, lines


def _read_text(path: Path) -> str:
    return _decode(read_config_bytes(path), path)


def read_config_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, expected a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None


def _line_map(node: yaml.Node | None, prefix: str, lines: dict[str, int], path: Path,
              depth: int = 4) -> None:
    """Record the line of each key path (4 levels suffice, and aliases cannot make it loop or
    explode); refuse duplicate keys, which YAML would silently resolve to the last one."""
    if depth == 0:
        return
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key_path, line = _join(prefix, key_node.value), key_node.start_mark.line + 1
            if key_path in lines:
                raise ConfigError(f"{path}, line {line}: {key_path}: duplicate key "
                                  f"(first at line {lines[key_path]})")
            lines[key_path] = line
            _line_map(value_node, key_path, lines, path, depth - 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[f"{prefix}[{i}]"] = item.start_mark.line + 1
            _line_map(item, f"{prefix}[{i}]", lines, path, depth - 1)


def _warn_if_exposed(path: Path, data: dict) -> None:
    """One warning for a file holding a plain-text password: group/others can read it (chmod 600),
    and/or the password is not encrypted (chg-password). Never shows the password."""
    plain = _plain_passwords(data)
    if not plain and not _has_password(data):
        return
    advice = ""
    if plain and any(k in data for k in ("databases", "scratch", "restore", "defaults")):
        advice = "give it with password_env, password_file or password_command instead"
    elif plain:
        advice = f"encrypt it with: albackup --cfg {path} chg-password"
    mode = 0
    if os.name != "nt":
        try:
            mode = path.stat().st_mode
        except OSError:
            pass
    if mode & 0o077:
        log.warning("%s contains a password but is readable by group/others (mode %03o); "
                    "run: chmod 600 %s%s", path, mode & 0o777, path,
                    f"; the password ({', '.join(plain)}) is plain text: {advice}" if plain else "")
    elif plain:
        log.warning("%s holds a plain-text password (%s); %s", path, ", ".join(plain), advice)


def _plain_passwords(value: Any, prefix: str = "", depth: int = 4) -> list[str]:
    """Key paths of password/db_password keys holding a plain (not encrypted) password."""
    if depth == 0:
        return []
    if isinstance(value, list):
        return [p for i, item in enumerate(value)
                for p in _plain_passwords(item, f"{prefix}[{i}]", depth - 1)]
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    for key, item in value.items():
        if key in PASSWORD_KEYS and isinstance(item, str) and item != "" and not is_encrypted(item):
            out.append(_join(prefix, str(key)))
        elif isinstance(item, (dict, list)):
            out.extend(_plain_passwords(item, _join(prefix, str(key)), depth - 1))
    return out


def _has_password(value: Any, depth: int = 4) -> bool:
    """A plain-text password anywhere: a password key or the password part of a URL."""
    if depth == 0:
        return False
    if isinstance(value, list):
        return any(_has_password(item, depth - 1) for item in value)
    if not isinstance(value, dict):
        return False
    return any((key in PASSWORD_KEYS and isinstance(item, str) and item != "" and not is_encrypted(item))
               or (key == "url" and isinstance(item, str) and mask_secrets(item) != item)
               or _has_password(item, depth - 1) for key, item in value.items())


# ---------------------------------------------------------------- public loaders

def database_config(path: str | Path, *, key_path: str | Path | None = None) -> DatabaseConfig:
    """Load a config file describing one database. ``key_path``: the key file for encrypted
    passwords (default: $ALBACKUP_CONFIG_KEY, else ~/.config/albackup/config.key)."""
    path = Path(path)
    data, lines = _load(path)
    return _database(data, _Where(str(path), lines=lines, key_path=_opt_path(key_path)),
                     allow_extra=False, base_dir=path.parent)


def test_all_config(path: str | Path, *, key_path: str | Path | None = None) -> TestAllConfig:
    """Load a test_all config: optional scratch target, `defaults`, list of `databases`."""
    path = Path(path)
    data, lines = _load(path)
    where = _Where(str(path), lines=lines, key_path=_opt_path(key_path))
    _check_keys(data, TEST_ALL_KEYS, where, allow_extra=False)
    scratch = _scratch(data, where, path.parent)
    defaults = dict(_defaults(data, where))
    for key in ("destinations", "retention", "max_age"):   # top-level: defaults a database may override
        if key in data and key not in defaults:
            defaults[key] = data[key]
    databases = _databases(data, defaults, where, path.parent)
    for i, db in enumerate(databases):
        if scratch is not None and url_identity(db.url) == url_identity(scratch.url):
            raise where.error(f"databases[{i}]", "is the same database as the scratch target; "
                                                 "test_all would overwrite it")
    for key in ("hostname", "workdir", "log_dir"):
        if data.get(key) is not None:
            _str(data[key], key, where)
    from .notify import notifiers_from_mapping

    notifiers = notifiers_from_mapping(data.get("notifications"), f"{path}: notifications", path.parent)
    hooks = {}
    if data.get("hooks") is not None:
        from .hooks import hooks_from_mapping

        hooks = hooks_from_mapping(data["hooks"], f"{path}: hooks")
    return TestAllConfig(scratch=scratch, databases=databases, source=str(path),
                         hostname=data.get("hostname"), workdir=data.get("workdir"),
                         notifications=tuple(notifiers), hooks=hooks, log_dir=data.get("log_dir"))


test_all_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def database_from_mapping(data: Mapping, source: str, keypath: str = "", allow_extra: bool = False,
                          *, base_dir: str | Path | None = None,
                          key_path: str | Path | None = None) -> DatabaseConfig:
    """Validate one database mapping. Relative sqlite paths (and password_file) resolve against
    ``base_dir`` (default: the folder of ``source`` when that is a file, else the working folder)."""
    if base_dir is None:
        base_dir = Path(source).parent if source and Path(source).is_file() else Path.cwd()
    return _database(data, _Where(source, keypath, key_path=_opt_path(key_path)), allow_extra,
                     Path(base_dir))


def _opt_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def url_config(url: str, *, allow_restore: bool = False, name: str | None = None,
               **options: Any) -> DatabaseConfig:
    """A database given with --url; ``options`` are database keys (a None value means unset).
    The name defaults to the URL's database (sqlite: file stem), else its backend name."""
    data: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    data.update(url=url, allow_restore=allow_restore)
    if name is not None:
        data["name"] = name
    try:
        fallback = make_url(url).get_backend_name()
    except Exception:  # the real parse below reports it
        fallback = None
    return _database(data, _Where("--url"), False, Path.cwd(), default_name=fallback)


# ---------------------------------------------------------------- test_all parts

def _scratch(data: dict, where: _Where, base_dir: Path) -> DatabaseConfig | None:
    if "restore" in data and "scratch" in data:
        raise where.error("scratch", "give either `scratch` or `restore` (its old name), not both")
    key = "scratch" if "scratch" in data else "restore"
    if data.get(key) is None:
        return None
    db = _database(data[key], where.sub(key), False, base_dir, default_name="scratch")
    if not db.allow_restore:
        raise where.sub(key).error("allow_restore", "the scratch database must have "
                                                    "`allow_restore: true` (test_all restores into it)")
    return db


def _defaults(data: dict, where: _Where) -> dict:
    defaults = data.get("defaults")
    if defaults is not None and not isinstance(defaults, dict):
        raise where.error("defaults", f"expected a mapping of database keys, got {_kind(defaults)}")
    if defaults and "name" in defaults:
        raise where.sub("defaults").error("name", "each database needs its own name; not a default")
    return defaults or {}


def _databases(data: dict, defaults: dict, where: _Where, base_dir: Path) -> tuple[DatabaseConfig, ...]:
    entries = data.get("databases")
    if not isinstance(entries, list) or not entries:
        got = "nothing" if entries is None else _kind(entries)
        raise where.error("databases", f"expected a non-empty list of databases, got {got}")
    out: list[DatabaseConfig] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(entries):
        inherited = defaults
        if isinstance(entry, dict) and any(k in entry for k in (*PASSWORD_KEYS, *SOURCE_KEYS)):
            # an entry's own password source replaces the defaults' one, whichever key it uses
            inherited = {k: v for k, v in defaults.items() if k not in (*PASSWORD_KEYS, *SOURCE_KEYS)}
        sub = where.sub(f"databases[{i}]", {k: f"defaults.{k}" for k in inherited if k not in entry}
                        if isinstance(entry, dict) else None)
        db = _database({**inherited, **entry} if isinstance(entry, dict) else entry, sub, True, base_dir)
        if db.name in seen:
            raise sub.error("name", f"duplicate name {db.name!r} (also {seen[db.name]})")
        seen[db.name] = sub.prefix
        out.append(db)
    return tuple(out)


_LOOPBACK = frozenset({"", "localhost", "127.0.0.1", "::1", "[::1]"})
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}


def url_identity(url: URL) -> tuple:
    """The database a URL names, as far as its text tells (the loopback names alike, the default
    port filled in, a SQLite path resolved); test_all also asks the servers (api.same_database)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = url.database or ""
        return backend, os.path.realpath(path) if path and path != ":memory:" else object()
    host = (url.host or "").lower()
    return ("mysql" if backend == "mariadb" else backend, "localhost" if host in _LOOPBACK else host,
            url.port or _DEFAULT_PORTS.get(backend), url.database)


# ---------------------------------------------------------------- one database

def _database(data: Any, where: _Where, allow_extra: bool, base_dir: Path,
              default_name: str | None = None) -> DatabaseConfig:
    if not isinstance(data, dict):
        raise where.error(None, f"expected a mapping of database keys, got {_kind(data)}")
    extra = _check_keys(data, DATABASE_KEYS, where, allow_extra)
    url = _connection_url(data, where, base_dir)
    enc = encryption_from_mapping(data.get("encryption"), f"{where.source}: {where.path('encryption')}", base_dir)
    retention = None
    if data.get("retention") is not None:
        retention = Policy.from_mapping(data["retention"], f"{where.source}: {where.path('retention')}")
    dests = destinations_from(data.get("destinations"), f"{where.source}: {where.path('destinations')}")
    max_age = None
    if data.get("max_age") is not None:
        max_age = parse_duration(data["max_age"], f"{where.source}: {where.path('max_age')}")
    return DatabaseConfig(name=_name(data, url, where, default_name), url=url,
                          extra=MappingProxyType(extra), source=where.source, encryption=enc,
                          retention=retention, destinations=dests, max_age=max_age,
                          **_options(data, where))


def _check_keys(data: dict, known: frozenset[str], where: _Where, allow_extra: bool) -> dict:
    """Refuse unknown keys, suggesting close matches; with allow_extra, return them instead."""
    extra: dict[str, Any] = {}
    for key in data:
        if not isinstance(key, str):
            raise where.error(None, f"keys must be strings, got {_kind(key)} {key!r}")
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
        if allow_extra:
            extra[key] = data[key]
            if difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.8):
                log.warning("%s", where.error(key, f"free-form key kept in `extra`; did you mean "
                                                   f"`{close[0]}`?"))
            continue
        hint = ("did you mean " + " or ".join(f"`{c}`" for c in close) + "?" if close
                else "see sample-configs/ for the accepted keys")
        raise where.error(key, f"unknown key; {hint}")
    return extra


def _connection_url(data: dict, where: _Where, base_dir: Path) -> URL:
    if "url" in data:
        mixed = [k for k in CONNECTION_KEYS if k in data]
        if mixed:
            raise where.error(mixed[0], "cannot be combined with `url`; give either `url` or "
                                        "`driver` with host/port/user/password/database")
        url = _parse_url(data["url"], where, base_dir)
        given = _password_keys(data)
        if given:
            if url.get_backend_name() == "sqlite":
                raise where.error(given[0], "sqlite takes no password")
            if url.password is not None:
                raise where.error(given[0], "conflicts with the password in `url`; give exactly one "
                                            "password source")
            url = url.set(password=_password_from(data, where, base_dir))
        return url
    if "driver" not in data and not any(k in data for k in ALIASES.values()):
        raise where.error(None, "needs `url` or `driver` (with host, port, user, password, database), "
                                "or the old tool's db_server/db_port/db_name keys")
    parts = _connection_parts(data, where)
    driver = data.get("driver", PORT_DRIVERS.get(parts["port"], "mssql"))
    if not isinstance(driver, str) or driver not in DRIVERS:
        raise where.error("driver", f"expected one of {', '.join(DRIVERS)}, got {_show(driver)}")
    given = _password_keys(data)
    if driver == "sqlite" and given:
        raise where.error(given[0], "sqlite takes only `database` (the file path)")
    parts["password"] = _password_from(data, where, base_dir)
    return _build_url(driver, parts, data, where, base_dir)


def _connection_parts(data: dict, where: _Where) -> dict[str, Any]:
    """host/port/user/database from the new keys or the old tool's (not both); the password is
    read by _password_from, after the rest of the connection is known to be valid."""
    parts: dict[str, Any] = {}
    for new, old in ALIASES.items():
        if new in data and old in data:
            raise where.error(new, f"conflicts with `{old}`; give only one of them")
        key = new if new in data else old
        value = data.get(key)
        if new == "password":
            continue
        if value is None:
            parts[new] = None
        elif new == "port":
            parts[new] = _int(value, key, where, 1, 65535, "an integer port 1..65535")
        else:
            parts[new] = _str(value, key, where)
    return parts


def _build_url(driver: str, parts: dict[str, Any], data: dict, where: _Where, base_dir: Path) -> URL:
    odbc = data.get("odbc_driver")
    if odbc is not None and driver != "mssql":
        raise where.error("odbc_driver", "only applies to `driver: mssql`")
    if driver == "sqlite":
        for new in ("host", "port", "user"):
            if parts[new] is not None:
                raise where.error(_used(data, new), "sqlite takes only `database` (the file path)")
        if not parts["database"]:
            raise where.error(_used(data, "database"), "sqlite needs `database` (the file path)")
        return URL.create("sqlite", database=_sqlite_path(parts["database"], base_dir))
    query = {}
    if driver == "mssql":
        odbc = DEFAULT_ODBC_DRIVER if odbc is None else _str(odbc, "odbc_driver", where)
        query = {"driver": odbc, "TrustServerCertificate": "yes"}
    return URL.create(_with_dbapi(DRIVERS[driver]), username=parts["user"], password=parts["password"],
                      host=parts["host"], port=parts["port"], database=parts["database"], query=query)


def _used(data: dict, new: str) -> str:
    """The key actually written for a connection part: the new-style one or the old tool's."""
    return ALIASES[new] if ALIASES[new] in data else new


def _parse_url(value: Any, where: _Where, base_dir: Path) -> URL:
    if not isinstance(value, str) or not value.strip():
        raise where.error("url", "expected a URL string such as postgresql://user@host:5432/dbname")
    try:
        url = make_url(value.strip())
    except (ArgumentError, ValueError, TypeError):
        raise where.error("url", f"cannot parse URL {mask_secrets(value)!r}; expected "
                                 "dialect[+driver]://user:password@host:port/dbname") from None
    if url.host and "@" in url.host:
        raise where.error("url", f"URL {mask_secrets(value)!r} has '@' in its host; "
                                 "write an '@' in the password as %40")
    if "+" not in url.drivername and url.drivername in URL_DEFAULT_DRIVERS:
        url = url.set(drivername=_with_dbapi(URL_DEFAULT_DRIVERS[url.drivername]))
    if url.get_backend_name() == "sqlite" and url.database and "uri" not in url.query:
        url = url.set(database=_sqlite_path(url.database, base_dir))
    return url


def _sqlite_path(database: str, base_dir: Path) -> str:
    if database == ":memory:" or database.startswith("file:"):
        return database
    path = Path(database).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def _name(data: dict, url: URL, where: _Where, default_name: str | None) -> str:
    if "name" in data:
        name = _str(data["name"], "name", where)
    else:
        name = _derived_name(url) or default_name or ""
        if not name:
            raise where.error(None, "needs a `name` (or `database`/`db_name` to derive it from)")
    if name in (".", "..") or "/" in name or "\\" in name or not name.isprintable():
        raise where.error("name", f"backup name {name!r} must not be '.', '..' or contain '/', '\\' "
                                  "or control characters; set `name`")
    return name


def _derived_name(url: URL) -> str | None:
    if url.get_backend_name() != "sqlite":
        return url.database or None
    return Path(url.database).stem if url.database and url.database != ":memory:" else None


def _options(data: dict, where: _Where) -> dict[str, Any]:
    out: dict[str, Any] = {k: _bool(data[k], k, where) for k in BOOL_KEYS if k in data}
    out.update({k: _str_list(data[k], k, where) for k in LIST_KEYS if k in data})
    compression = out["compression"] = data.get("compression", "zstd")
    if compression not in COMPRESSIONS:
        raise where.error("compression", f"expected one of {', '.join(COMPRESSIONS)}, "
                                         f"got {_show(compression)}")
    if data.get("compression_level") is not None:
        if compression == "none":
            raise where.error("compression_level", "has no effect with `compression: none`")
        lo, hi = LEVELS[compression]
        out["compression_level"] = _int(data["compression_level"], "compression_level", where, lo, hi,
                                        f"an integer {lo}..{hi} for {compression}")
    if "batch_rows" in data:
        out["batch_rows"] = _int(data["batch_rows"], "batch_rows", where, 1, None, "a positive integer")
    if "jobs" in data:
        out["jobs"] = _int(data["jobs"], "jobs", where, 1, 64, "an integer 1..64")
    if "chunk_rows" in data:
        out["chunk_rows"] = _int(data["chunk_rows"], "chunk_rows", where, 0, None,
                                 "a non-negative integer (0: never cut tables)")
    if "read_back" in data:
        if data["read_back"] not in READ_BACKS:
            raise where.error("read_back", f"expected one of {', '.join(READ_BACKS)}, got {_show(data['read_back'])}")
        out["read_back"] = data["read_back"]
    if "lock_timeout" in data:
        out["lock_timeout"] = _int(data["lock_timeout"], "lock_timeout", where, 1, MAX_LOCK_TIMEOUT,
                                   f"a whole number of seconds 1..{MAX_LOCK_TIMEOUT}")
    return out


# ---------------------------------------------------------------- scalar checks

def _bool(value: Any, key: str, where: _Where) -> bool:
    if not isinstance(value, bool):
        raise where.error(key, f"expected true or false, got {_show(value)}")
    return value


def _int(value: Any, key: str, where: _Where, lo: int, hi: int | None, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise where.error(key, f"expected {what}, got {_show(value)}")
    return value


def _str(value: Any, key: str, where: _Where) -> str:
    if not isinstance(value, str) or not value:
        raise where.error(key, f"expected a non-empty string{_quote_hint(value)}, got {_show(value)}")
    return value


def _password_keys(data: dict) -> list[str]:
    """The password sources given (non-null), in a fixed order."""
    return [k for k in (*PASSWORD_KEYS, *SOURCE_KEYS) if data.get(k) is not None]


def _password_from(data: dict, where: _Where, base_dir: Path) -> str | None:
    """The plain password from at most one source; several sources are a ConfigError."""
    given = _password_keys(data)
    if len(given) > 1:
        raise where.error(given[1], f"conflicts with `{given[0]}`; give exactly one password source "
                                    "(password, password_env, password_file or password_command)")
    if not given:
        key = "password" if "password" in data else "db_password"
        return _password(data.get(key), key, where)
    key = given[0]
    if key in PASSWORD_KEYS:
        return _password(data[key], key, where)
    return _password_source(key, data[key], where, base_dir)


def _password(value: Any, key: str, where: _Where) -> str | None:
    """A password is a string, null, or encrypted (decrypted here); its value never goes into a
    message."""
    if is_encrypted(value):
        return decrypt_value(value, where.key_path, source=where.source, keypath=where.path(key)) or None
    if value is not None and not isinstance(value, str):
        raise where.error(key, f"expected a string or null{_quote_hint(value)}, got {_kind(value)}")
    return value or None


def _password_source(key: str, value: Any, where: _Where, base_dir: Path) -> str:
    """Read password_env / password_file / password_command (SecretError when unreadable)."""
    from .secrets import SecretSource  # only when used

    if key == "password_env":
        if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
            raise where.error(key, f"expected an environment variable name, got {_show(value)}")
        source = SecretSource(env=value, where=where.label(key))
    elif key == "password_file":
        if not isinstance(value, str) or not value:
            raise where.error(key, f"expected a file path{_quote_hint(value)}, got {_show(value)}")
        path = Path(value).expanduser()
        source = SecretSource(file=str(path if path.is_absolute() else base_dir / path),
                              where=where.label(key))
    else:
        words = [value] if isinstance(value, str) else value
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
            raise where.error(key, "expected a command line (a string, or a list of strings), "
                                   f"got {_kind(value)}")
        try:
            argv = shlex.split(value) if isinstance(value, str) else list(value)
        except ValueError:
            raise where.error(key, "cannot be split into words (unbalanced quotes?)") from None
        if not argv:
            raise where.error(key, "is empty")
        source = SecretSource(command=tuple(argv), where=where.label(key))
    raw = source.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise where.error(key, "the password read is not UTF-8 text", SecretError) from None


def _str_list(value: Any, key: str, where: _Where) -> tuple[str, ...]:
    items = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise where.error(key, f"expected a list of strings, got {_show(value)}")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise where.error(key, f"expected a list of non-empty strings, item {i} is {_show(item)}")
    return tuple(items)


def _quote_hint(value: Any) -> str:
    return " (quote it)" if isinstance(value, (int, float, bool)) else ""


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """Describe a non-secret value for a message: its kind, plus a short repr for scalars."""
    if isinstance(value, bool):
        return f"a boolean {str(value).lower()}"
    if isinstance(value, (str, int, float)):
        text = repr(value)
        return f"{_kind(value)} {text if len(text) <= 40 else text[:40] + '…'}"
    return _kind(value)
