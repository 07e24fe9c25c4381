"""Tests for albackup.config: loading, validation messages, password hygiene."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from albackup import config as cfg
from albackup.errors import ConfigError, SecretError
from .conftest import require_mysqlclient

SAMPLES = Path(__file__).resolve().parent.parent / "sample-configs"
SECRET = "s3cr3t-Pa55"


def write(tmp_path: Path, text: str, name: str = "db.yaml", mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def error_of(func, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        func(*args, **kwargs)
    assert info.value.exit_code == 3
    message = info.value.message
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- sample configs

@pytest.mark.parametrize("name, engine", [
    ("postgresql.yaml", "postgresql"), ("mysql.yaml", "mysql"), ("sqlite.yaml", "sqlite"),
    ("mssql.yaml", "mssql"), ("restore.yaml", "postgresql"), ("legacy.json", "mssql"),
    ("encrypted.yaml", "postgresql"),
])
def test_sample_database_configs_load(name: str, engine: str) -> None:
    db = cfg.database_config(SAMPLES / name)
    assert db.engine_name == engine
    assert db.name and db.source == str(SAMPLES / name)


def test_every_sample_is_covered() -> None:
    names = {p.name for p in SAMPLES.iterdir() if p.is_file()}
    assert names == {"postgresql.yaml", "mysql.yaml", "sqlite.yaml", "mssql.yaml",
                     "restore.yaml", "test_all.yaml", "legacy.json", "encrypted.yaml", "backups.yaml"}


def test_sample_details() -> None:
    pg = cfg.database_config(SAMPLES / "postgresql.yaml")
    assert pg.url.drivername == "postgresql+psycopg2"
    assert pg.schemas == ("public", "billing") and pg.exclude_tables == ("tmp_*", "*_old")
    assert pg.compression_level == 6 and pg.require_consistent and not pg.allow_restore
    my = cfg.database_config(SAMPLES / "mysql.yaml")
    assert my.url.drivername == f"mariadb+{cfg.mysql_dbapi()}" and my.routines is False
    assert cfg.database_config(SAMPLES / "restore.yaml").allow_restore is True
    lite = cfg.database_config(SAMPLES / "sqlite.yaml")
    assert lite.name == "inventory"
    assert lite.url.database == str(SAMPLES / "data" / "inventory.db")
    ms = cfg.database_config(SAMPLES / "mssql.yaml")
    assert ms.url.query["driver"] == "ODBC Driver 18 for SQL Server"
    enc = cfg.database_config(SAMPLES / "encrypted.yaml").encryption
    assert enc.writes_encrypted and enc.passphrase is not None and enc.passphrase.env == "ALBACKUP_PASSPHRASE"
    assert len(enc.recipients) == 1 and enc.recipients[0].startswith("albackup-public-key-1:")
    assert enc.identity is None and enc.scrypt_n == 2 ** 15


def test_sample_test_all() -> None:
    conf = cfg.test_all_config(SAMPLES / "test_all.yaml")
    assert conf.scratch is not None and conf.scratch.allow_restore
    assert [d.name for d in conf.databases] == ["shop", "crm", "inventory", "Payroll"]
    assert [d.engine_name for d in conf.databases] == ["postgresql", "mysql", "sqlite", "mssql"]
    shop, crm, _, payroll = conf.databases
    assert shop.extra == {"comment": "main web shop"} and crm.extra == {}
    assert payroll.skip and not shop.skip
    assert all(d.batch_rows == 2000 for d in conf.databases)  # from defaults
    assert crm.routines is False


# the secrets sample-configs/backups.yaml names; destination credentials and password_env are read at load
BACKUPS_ENV = {"ALBACKUP_S3_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE", "ALBACKUP_S3_SECRET_ACCESS_KEY": SECRET,
               "ALBACKUP_CRM_DB_PASSWORD": "crm-" + SECRET}


def test_sample_backups(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in BACKUPS_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ALBACKUP_SHOP_PASSPHRASE", raising=False)   # read only when a dump starts
    conf = cfg.test_all_config(SAMPLES / "backups.yaml")
    assert conf.hostname == "db1" and conf.workdir == "/var/lib/albackup/work"
    assert conf.log_dir == "/var/lib/albackup/logs"
    shop, crm, inventory = conf.databases
    assert [d.engine_name for d in conf.databases] == ["postgresql", "mysql", "sqlite"]
    assert inventory.name == "inventory"
    s3, local = shop.destinations
    assert s3.url == "s3://acme-db-backups/albackup" and local.url == "/srv/backups/albackup"
    o = s3.options
    assert (o.region, o.endpoint_url) == ("eu-central-1", "https://s3.backup.example.internal:9000")
    assert (o.access_key_id, o.secret_access_key) == ("AKIAEXAMPLEEXAMPLE", SECRET)
    assert SECRET not in repr(o)
    assert (o.server_side_encryption, o.storage_class, o.part_size, o.max_attempts) == ("AES256", "STANDARD",
                                                                                        64 * 2 ** 20, 5)
    assert crm.destinations == shop.destinations                    # the top-level list
    assert [d.url for d in inventory.destinations] == ["/srv/backups/albackup"]   # its own list
    assert shop.retention == inventory.retention and shop.retention.hourly == 24 and shop.retention.yearly == 3
    assert (crm.retention.daily, crm.retention.weekly, crm.retention.hourly) == (14, 8, 0)   # replaced whole
    assert shop.encryption.writes_encrypted and shop.encryption.passphrase.env == "ALBACKUP_SHOP_PASSPHRASE"
    assert not crm.encryption.writes_encrypted and crm.url.password == "crm-" + SECRET
    assert all(d.compression == "zstd" for d in conf.databases)     # from defaults
    assert all(d.max_age == dt.timedelta(hours=26) for d in conf.databases)


def test_sample_backups_needs_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in BACKUPS_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ALBACKUP_S3_SECRET_ACCESS_KEY")
    with pytest.raises(SecretError) as info:
        cfg.test_all_config(SAMPLES / "backups.yaml")
    assert info.value.exit_code == 15 and "ALBACKUP_S3_SECRET_ACCESS_KEY" in info.value.message


# ---------------------------------------------------------------- old flat JSON keys

def test_legacy_flat_json(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({
        "db_user": "sa", "db_password": SECRET, "db_server": "sql01", "db_port": 1433,
        "db_name": "Sales", "allow_restore": True, "enable_ri_check": False}), "old.json")
    db = cfg.database_config(path)
    assert db.name == "Sales" and db.allow_restore and not db.enable_ri_check
    assert db.url.drivername == "mssql+pyodbc"
    assert (db.url.host, db.url.port, db.url.username) == ("sql01", 1433, "sa")
    assert db.url.password == SECRET
    assert db.url.query == {"driver": "ODBC Driver 18 for SQL Server",
                            "TrustServerCertificate": "yes"}


@pytest.mark.parametrize("port, driver", [
    (1433, "mssql+pyodbc"), (5432, "postgresql+psycopg2"), (3306, "mysql+"),
    (1500, "mssql+pyodbc"), (None, "mssql+pyodbc"),
])
def test_driver_inferred_from_port(tmp_path: Path, port: int | None, driver: str) -> None:
    data = {"db_server": "h", "db_name": "d", "db_password": None}
    if port is not None:
        data["db_port"] = port
    path = write(tmp_path, json.dumps(data), "old.json")
    assert cfg.database_config(path).url.drivername == driver + (cfg.mysql_dbapi() if driver == "mysql+" else "")


def test_explicit_driver_with_flat_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "driver: mariadb\ndb_server: h\ndb_port: 3307\ndb_name: d\n")
    db = cfg.database_config(path)
    assert db.url.drivername == f"mariadb+{cfg.mysql_dbapi()}" and db.engine_name == "mysql"


# ---------------------------------------------------------------- url form

@pytest.mark.parametrize("given, drivername", [
    ("postgresql://u@h/d", "postgresql+psycopg2"),
    ("postgres://u@h/d", "postgresql+psycopg2"),
    ("mysql+pymysql://u@h/d", "mysql+pymysql"),
    ("mariadb+mysqldb://u@h/d", "mariadb+mysqldb"),
    ("postgresql+psycopg://u@h/d", "postgresql+psycopg"),
    ("mssql+pyodbc://u@h/d?driver=X", "mssql+pyodbc"),
])
def test_url_normalisation(tmp_path: Path, given: str, drivername: str) -> None:
    db = cfg.database_config(write(tmp_path, f"url: '{given}'\n"))
    assert db.url.drivername == drivername and db.name == "d"


@pytest.fixture(params=["mysqldb", "pymysql"])
def mysql_dbapi(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The MySQL driver albackup should pick: mysqlclient where it is installed; PyMySQL where
    it is not (an import of MySQLdb made to fail, as on a machine without it)."""
    if request.param == "pymysql":
        monkeypatch.setitem(sys.modules, "MySQLdb", None)
    else:
        require_mysqlclient()
    return str(request.param)


def test_mysql_urls_and_drivers_take_mysqlclient_when_installed(tmp_path: Path, mysql_dbapi: str,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cfg, "_hinted", False)
    with caplog.at_level(logging.WARNING, logger="albackup.config"):
        assert cfg.mysql_dbapi() == mysql_dbapi
        assert cfg.mysql_dbapi() == mysql_dbapi
    hints = [r.getMessage() for r in caplog.records if "mysqlclient" in r.getMessage()]
    assert hints == ([cfg.SLOW_DRIVER_HINT] if mysql_dbapi == "pymysql" else []), hints
    for given, want in (("mysql://u@h/d", f"mysql+{mysql_dbapi}"), ("mariadb://u@h/d", f"mariadb+{mysql_dbapi}"),
                        ("mysql+pymysql://u@h/d", "mysql+pymysql"), ("mariadb+mysqldb://u@h/d", "mariadb+mysqldb")):
        assert cfg.database_config(write(tmp_path, f"url: '{given}'\n")).url.drivername == want, given
    for keys, want in (("driver: mysql", f"mysql+{mysql_dbapi}"), ("driver: mariadb", f"mariadb+{mysql_dbapi}"),
                       ("db_port: 3306", f"mysql+{mysql_dbapi}"), ("driver: mariadb+pymysql", "mariadb+pymysql"),
                       ("driver: mysql+mysqldb", "mysql+mysqldb")):
        path = write(tmp_path, f"{keys}\nhost: h\nuser: u\ndatabase: d\n")
        assert cfg.database_config(path).url.drivername == want, keys
    assert cfg.url_config("mysql://u@h/d").url.drivername == f"mysql+{mysql_dbapi}"
    with pytest.raises(ConfigError, match=r"driver.*expected one of .*mariadb\+pymysql, got a string 'mysql\+odbc'"):
        cfg.database_config(write(tmp_path, "driver: mysql+odbc\nhost: h\ndatabase: d\n"))


def test_url_config() -> None:
    db = cfg.url_config(f"postgresql://u:{SECRET}@h:5433/shop", allow_restore=True,
                        batch_rows=10, compression=None)
    assert db.source == "--url" and db.name == "shop" and db.allow_restore
    assert db.batch_rows == 10 and db.compression == "zstd"
    assert db.url.password == SECRET and SECRET not in db.display_url()
    assert cfg.url_config("sqlite:///x.db", name="other").name == "other"
    assert cfg.url_config("sqlite:///x.db").name == "x"
    assert cfg.url_config("mssql+pyodbc:///?odbc_connect=DSN%3Dprod").name == "mssql"


def test_url_config_bad_url_masks_password() -> None:
    message = error_of(cfg.url_config, f"postgresql://u:{SECRET}@h:notaport/db")
    assert message.startswith("--url: ") and "postgresql://u:***@" in message
    assert SECRET not in message
    message = error_of(cfg.url_config, f"nonsense {SECRET}")
    assert "--url" in message


def test_url_mixed_with_connection_keys(tmp_path: Path) -> None:
    message = error_of(cfg.database_config, write(tmp_path, "url: postgresql://h/d\nhost: x\n"))
    assert "host" in message and "url" in message


def test_neither_url_nor_driver(tmp_path: Path) -> None:
    message = error_of(cfg.database_config, write(tmp_path, "name: x\nhost: h\n"))
    assert "needs `url` or `driver`" in message


# ---------------------------------------------------------------- sqlite paths

def test_sqlite_relative_path_resolved_against_config_folder(tmp_path: Path,
                                                            monkeypatch) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    monkeypatch.chdir(tmp_path)
    db = cfg.database_config(write(sub, "driver: sqlite\ndatabase: data/app.sqlite3\n"))
    assert db.url.database == str(sub / "data" / "app.sqlite3")
    assert db.name == "app"
    db = cfg.database_config(write(sub, "url: sqlite:///rel.db\n", "u.yaml"))
    assert db.url.database == str(sub / "rel.db")
    absolute = tmp_path / "abs.db"
    db = cfg.database_config(write(sub, f"driver: sqlite\ndatabase: {absolute}\n", "a.yaml"))
    assert db.url.database == str(absolute)


def test_sqlite_rejects_host(tmp_path: Path) -> None:
    message = error_of(cfg.database_config,
                       write(tmp_path, "driver: sqlite\ndatabase: x.db\nhost: h\n"))
    assert "host" in message and "sqlite" in message


# ---------------------------------------------------------------- error messages

def test_unknown_key_names_file_keypath_line_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "driver: postgresql\ndatabase: d\ndb_prot: 5432\n")
    message = error_of(cfg.database_config, path)
    assert str(path) in message and "line 3" in message
    assert "db_prot" in message and "`db_port`" in message


def test_unknown_key_in_test_all_scratch(tmp_path: Path) -> None:
    path = write(tmp_path, "scratch:\n  driver: sqlite\n  database: s.db\n"
                           "  allow_restore: true\n  batch_row: 5\n"
                           "databases:\n  - {driver: sqlite, database: a.db}\n")
    message = error_of(cfg.test_all_config, path)
    assert "scratch.batch_row" in message and "`batch_rows`" in message
    assert "line 5" in message


@pytest.mark.parametrize("body, keypath, expected", [
    ("db_port: abc", "db_port", "integer port 1..65535"),
    ("db_port: 70000", "db_port", "integer port 1..65535"),
    ("allow_restore: 'yes'", "allow_restore", "true or false"),
    ("batch_rows: 0", "batch_rows", "positive integer"),
    ("jobs: 0", "jobs", "an integer 1..64"),
    ("jobs: many", "jobs", "an integer 1..64"),
    ("chunk_rows: -5", "chunk_rows", "non-negative integer (0: never cut tables)"),
    ("schemas: {a: 1}", "schemas", "list of strings"),
    ("compression: bzip2", "compression", "zstd, gzip, lzma, none"),
    ("read_back: rows", "read_back", "expected one of hash, count, got a string 'rows'"),
    ("compression_level: 30", "compression_level", "1..22"),
    ("db_name: 2024", "db_name", "string (quote it)"),
])
def test_wrong_type_names_keypath(tmp_path: Path, body: str, keypath: str,
                                  expected: str) -> None:
    path = write(tmp_path, f"name: x\ndb_server: h\n{body}\n")
    message = error_of(cfg.database_config, path)
    assert f"{path}, line " in message and f": {keypath}: " in message
    assert expected in message


def test_wrong_type_in_databases_list_names_index(tmp_path: Path) -> None:
    path = write(tmp_path, "databases:\n  - {driver: sqlite, database: a.db}\n"
                           "  - db_server: h\n    db_name: d\n    db_port: '1433'\n")
    message = error_of(cfg.test_all_config, path)
    assert "databases[1].db_port" in message and "line 5" in message


def test_defaults_error_points_at_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  batch_rows: -1\n"
                           "databases:\n  - {driver: sqlite, database: a.db}\n")
    message = error_of(cfg.test_all_config, path)
    assert "defaults.batch_rows" in message and "line 2" in message


def test_single_string_accepted_as_list(tmp_path: Path) -> None:
    db = cfg.database_config(write(tmp_path, "driver: sqlite\ndatabase: a.db\n"
                                             "schemas: main\ninclude_tables: 'a*'\n"))
    assert db.schemas == ("main",) and db.include_tables == ("a*",)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"driver: postgresql\npassword: {SECRET}\nhost: [unclosed\n")
    message = error_of(cfg.database_config, path)
    assert str(path) in message and "line 4" in message and "not valid YAML" in message
    assert SECRET not in message


def test_yaml_error_on_password_line_hides_password(tmp_path: Path) -> None:
    path = write(tmp_path, f'driver: mssql\npassword: "{SECRET}\\q"\n')
    message = error_of(cfg.database_config, path)
    assert "line 2" in message and SECRET not in message


@pytest.mark.parametrize("tagged", ["!!int", "!!float", "!!timestamp", "!!bool", "!!binary"])
def test_bad_yaml_tag_is_config_error_without_value(tmp_path: Path, tagged: str) -> None:
    path = write(tmp_path, f"driver: postgresql\ndatabase: d\npassword: {tagged} {SECRET}\n")
    message = error_of(cfg.database_config, path)
    assert str(path) in message and SECRET not in message


def test_duplicate_key_refused(tmp_path: Path) -> None:
    message = error_of(cfg.database_config,
                       write(tmp_path, "driver: sqlite\ndatabase: a.db\ndatabase: b.db\n"))
    assert "duplicate key" in message and "line 3" in message and "line 2" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    message = error_of(cfg.database_config, path)
    assert str(path) in message and "no such" in message


def test_folder_instead_of_file(tmp_path: Path) -> None:
    assert str(tmp_path) in error_of(cfg.read_file, tmp_path)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    message = error_of(cfg.database_config, path)
    assert str(path) in message and "empty" in message


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "a list"), ("42\n", "an integer")])
def test_top_level_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    message = error_of(cfg.read_file, path)
    assert str(path) in message and kind in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"driver: \xff\xfe\n")
    assert "UTF-8" in error_of(cfg.read_file, path)


def test_encrypted_password_that_is_not_a_token(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ALBACKUP_CONFIG_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = write(tmp_path, "driver: postgresql\ndatabase: d\npassword: {encrypted: abc}\n")
    message = error_of(cfg.database_config, path)
    assert str(path) in message and "password.encrypted" in message
    assert "albackup-enc:v1:" in message and "chg-password" in message
    assert not (tmp_path / "xdg").exists()  # loading never creates a key


def test_password_must_be_string(tmp_path: Path) -> None:
    message = error_of(cfg.database_config,
                       write(tmp_path, "driver: postgresql\ndatabase: d\npassword: 123456\n"))
    assert "password" in message and "quote it" in message and "123456" not in message


# ---------------------------------------------------------------- password hygiene

def test_password_never_in_repr_or_display(tmp_path: Path) -> None:
    path = write(tmp_path, f"driver: postgresql\nhost: h\nuser: u\npassword: {SECRET}\n"
                           "database: d\n")
    db = cfg.database_config(path)
    assert db.url.password == SECRET
    for text in (repr(db), str(db), db.display_url(), repr(db.url)):
        assert SECRET not in text
    assert db.display_url() == "postgresql+psycopg2://u:***@h/d"


def test_password_in_odbc_connect_query_is_masked() -> None:
    db = cfg.url_config(f"mssql+pyodbc:///?odbc_connect=DRIVER%3DX%3BPWD%3D{SECRET}%3B",
                        name="x")
    assert SECRET not in db.display_url() and SECRET not in repr(db)


def test_password_like_extra_keys_masked_in_repr(tmp_path: Path) -> None:
    path = write(tmp_path, f"databases:\n  - driver: sqlite\n    database: a.db\n"
                           f"    db_pasword: {SECRET}\n")
    db = cfg.test_all_config(path).databases[0]
    assert db.extra["db_pasword"] == SECRET and SECRET not in repr(db)


@pytest.mark.parametrize("body", [
    "db_port: abc", "db_port: [1]", "allow_restore: 'yes'", "bogus_key: 1", "driver: oracle",
    "url: postgresql://h/d", "compression_level: 99", "batch_rows: x", "schemas: [1]",
])
def test_password_never_in_error_messages(tmp_path: Path, body: str) -> None:
    path = write(tmp_path, f"db_server: h\ndb_name: d\ndb_password: {SECRET}\n{body}\n")
    assert SECRET not in error_of(cfg.database_config, path)


@pytest.mark.parametrize("url", [
    f"postgresql://u:{SECRET}@h:x/d", f"postgresql://u:{SECRET}@@h/d",
    f"postgresql://u:p@{SECRET}@h/d", f"postgresql://u:{SECRET}@h/d?password={SECRET}",
])
def test_password_never_in_url_error(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f"url: '{url}'\nbatch_rows: 0\n")
    assert SECRET not in error_of(cfg.database_config, path)


# ---------------------------------------------------------------- test_all

def test_test_all_extra_keys_and_restore_alias(tmp_path: Path) -> None:
    path = write(tmp_path, "restore:\n  driver: sqlite\n  database: scratch.db\n"
                           "  allow_restore: true\n"
                           "databases:\n  - name: one\n    driver: sqlite\n"
                           "    database: one.db\n    comment: hello\n    owner: ops\n")
    conf = cfg.test_all_config(path)
    assert conf.scratch is not None and conf.scratch.name == "scratch"
    assert dict(conf.databases[0].extra) == {"comment": "hello", "owner": "ops"}
    assert conf.source == str(path)


def test_test_all_without_scratch(tmp_path: Path) -> None:
    conf = cfg.test_all_config(write(tmp_path, "databases:\n  - {driver: sqlite, database: a.db}\n"))
    assert conf.scratch is None and len(conf.databases) == 1


def test_scratch_without_allow_restore_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "scratch:\n  driver: sqlite\n  database: s.db\n"
                           "databases:\n  - {driver: sqlite, database: a.db}\n")
    message = error_of(cfg.test_all_config, path)
    assert "scratch.allow_restore" in message and "allow_restore: true" in message


def test_scratch_same_as_source_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "scratch: {driver: sqlite, database: a.db, allow_restore: true}\n"
                           "databases:\n  - {driver: sqlite, database: a.db}\n")
    assert "databases[0]" in error_of(cfg.test_all_config, path)


@pytest.mark.parametrize("text, expected", [
    ("databases: []\n", "non-empty list"),
    ("scratch: {driver: sqlite, database: s.db, allow_restore: true}\n", "non-empty list"),
    ("databases:\n  - {driver: postgresql, host: h}\n", "databases[0]: needs a `name`"),
    ("databases:\n  - {driver: sqlite, database: a.db}\n  - {driver: sqlite, database: a.db}\n",
     "duplicate name"),
    ("databases:\n  - {driver: sqlite, database: a.db}\ndatabse: x\n", "`databases`"),
    ("databases:\n  - just a string\n", "databases[0]: expected a mapping"),
    ("defaults: {name: x}\ndatabases:\n  - {driver: sqlite, database: a.db}\n",
     "defaults.name"),
])
def test_test_all_errors(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(cfg.test_all_config, write(tmp_path, text))
    assert expected in message


def test_database_from_mapping_keypath_and_extra(tmp_path: Path) -> None:
    db = cfg.database_from_mapping({"name": "n", "url": "sqlite:///a.db", "note": 1},
                                   "cli", "x", allow_extra=True, base_dir=tmp_path)
    assert db.extra == {"note": 1} and db.url.database == str(tmp_path / "a.db")
    message = error_of(cfg.database_from_mapping, {"url": "sqlite:///a.db", "note": 1},
                       "somewhere", "items[2]")
    assert message.startswith("somewhere: items[2].note: unknown key")


def test_config_is_frozen_and_hashable() -> None:
    db = cfg.url_config("postgresql://u@h/d")
    with pytest.raises(AttributeError):
        db.name = "x"  # type: ignore[misc]
    assert hash(db) == hash(cfg.url_config("postgresql://u@h/d"))


# ---------------------------------------------------------------- file permissions

@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_group_readable_password_file_warns(tmp_path: Path, caplog) -> None:
    text = f"driver: postgresql\ndatabase: d\npassword: {SECRET}\n"
    path = write(tmp_path, text, mode=0o640)
    with caplog.at_level(logging.WARNING, logger="albackup.config"):
        cfg.database_config(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "chmod 600" in warnings[0]
    assert "chg-password" in warnings[0] and SECRET not in warnings[0]
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="albackup.config"):
        cfg.database_config(path)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "plain-text password" in warnings[0] and "chmod" not in warnings[0]
    assert "chg-password" in warnings[0] and SECRET not in warnings[0]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_no_warning_without_password(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, "driver: postgresql\ndatabase: d\npassword: null\n", mode=0o644)
    with caplog.at_level(logging.WARNING, logger="albackup.config"):
        cfg.database_config(path)
    assert not caplog.records


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_password_in_url_warns(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, f"url: postgresql://u:{SECRET}@h/d\n", mode=0o604)
    with caplog.at_level(logging.WARNING, logger="albackup.config"):
        cfg.database_config(path)
    assert len(caplog.records) == 1 and SECRET not in caplog.records[0].getMessage()
