"""Tests for albackup.password (encrypted config passwords, chg-password) and the password
sources of albackup.config. Real files, real crypto; only the environment is patched."""
from __future__ import annotations

import base64
import json
import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from albackup import config as cfg
from albackup import password as pw
from albackup.errors import ConfigError, SecretError

SECRET = "s3cr3t-Pa55"
OTHER = "n3w-Pa55w0rd!"
ENV = "ALBACKUP_CONFIG_KEY"

COMMENTED = """\
# Production shop database.
#   password: set it with `albackup --cfg shop.yaml chg-password`

name: shop                  # backup name
driver: postgresql          # postgresql | mysql | ...
host: db.example.internal
port: 5432
user: backup
# the password, encrypted (never plain text)
password: null              # chg-password fills this in
database: shop

schemas: [public, billing]  # omitted: default schema
exclude_tables:
  - "tmp_*"     # scratch tables
  - '*_old'
compression: zstd
batch_rows: 5000            # rows per batch
"""

LEGACY = """\
{
  "db_user": "backup",
  "db_password": null,
  "db_server": "sql01.example.internal",
  "db_port": 1433,
  "db_name": "Payroll",
  "allow_restore": false,
  "enable_ri_check": true
}
"""


@pytest.fixture(autouse=True)
def isolated_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No real key is ever used: HOME and XDG_CONFIG_HOME point into tmp_path."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "albackup" / "config.key"


class Prompter:
    """Stands in for click.prompt: returns the answers in order, records the questions."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def __call__(self, text: str, hide: bool) -> str:
        assert hide is True, "passwords are never echoed"
        self.asked.append(text)
        return self.answers.pop(0)


def write(folder: Path, text: str, name: str = "db.yaml", mode: int = 0o600) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def new_key_text() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def encrypted(path: Path, key: str) -> str:
    value = cfg.read_file(path)[key]
    assert isinstance(value, str) and value.startswith(pw.PREFIX)
    return value


# ---------------------------------------------------------------- encrypt / decrypt, the key

def test_round_trip_and_token_form(isolated_key: Path) -> None:
    token = pw.encrypt_password(SECRET)
    assert token.startswith("albackup-enc:v1:") and SECRET not in token
    assert pw.decrypt_password(token) == SECRET
    again = pw.encrypt_password(SECRET)
    assert again != token and pw.decrypt_password(again) == SECRET  # random nonce
    assert len(pw.encrypt_password("a")) == len(pw.encrypt_password("abcdefghijkl"))  # length hidden
    assert pw.decrypt_password(pw.encrypt_password("pässwörd €")) == "pässwörd €"
    assert json.loads(json.dumps({"p": token}))["p"] == token


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_key_file_created_0600_in_0700_folder(isolated_key: Path) -> None:
    assert not isolated_key.exists()
    pw.encrypt_password(SECRET)
    assert stat.S_IMODE(isolated_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(isolated_key.parent.stat().st_mode) == 0o700
    key = isolated_key.read_bytes()
    assert len(base64.urlsafe_b64decode(key.strip())) == 32
    pw.encrypt_password(OTHER)
    assert isolated_key.read_bytes() == key  # reused, never replaced
    assert [p.name for p in isolated_key.parent.iterdir()] == ["config.key"]  # no temp files left


def test_home_fallback_without_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    token = pw.encrypt_password(SECRET)
    assert (tmp_path / "home" / ".config" / "albackup" / "config.key").is_file()
    assert pw.default_key_path() == tmp_path / "home" / ".config" / "albackup" / "config.key"
    assert pw.decrypt_password(token) == SECRET


def test_env_key(isolated_key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = os.urandom(32)
    monkeypatch.setenv(ENV, base64.urlsafe_b64encode(key).decode())
    token = pw.encrypt_password(SECRET)
    assert not isolated_key.exists()  # the env key is used, no file is created
    monkeypatch.setenv(ENV, base64.b64encode(key).decode())  # standard base64 works too
    assert pw.decrypt_password(token) == SECRET
    monkeypatch.setenv(ENV, new_key_text())
    with pytest.raises(ConfigError) as info:
        pw.decrypt_password(token)
    assert "cannot be decrypted" in info.value.message and f"${ENV}" in info.value.message


def test_invalid_env_key_is_secret_error_without_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "not-a-key-" + SECRET)
    with pytest.raises(SecretError) as info:
        pw.encrypt_password("x")
    assert info.value.exit_code == 15 and ENV in info.value.message and SECRET not in info.value.message


def test_explicit_key_path_overrides(tmp_path: Path, isolated_key: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, new_key_text())
    own = tmp_path / "keys" / "mine.key"
    token = pw.encrypt_password(SECRET, own)
    assert own.is_file() and not isolated_key.exists()
    assert pw.decrypt_password(token, own) == SECRET
    with pytest.raises(ConfigError):
        pw.decrypt_password(token)  # the env key is another key


def test_missing_key_is_secret_error(isolated_key: Path, tmp_path: Path) -> None:
    token = pw.encrypt_password(SECRET, tmp_path / "elsewhere.key")
    with pytest.raises(SecretError) as info:
        pw.decrypt_password(token)
    message = info.value.message
    assert info.value.exit_code == 15
    assert str(isolated_key) in message and ENV in message and "chg-password" in message
    assert not isolated_key.exists()  # decrypting never creates a key


# ---------------------------------------------------------------- chg_password: YAML

def test_chg_password_yaml_changes_only_the_password(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED, mode=0o640)
    prompt = Prompter(SECRET, SECRET)
    assert pw.chg_password(path, prompt) == str(path.resolve())
    assert prompt.asked == ["New password", "Repeat the new password"]  # no old password yet

    before, after = COMMENTED.splitlines(keepends=True), path.read_text().splitlines(keepends=True)
    assert len(before) == len(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed == [9]
    token = encrypted(path, "password")
    assert after[9] == f'password: "{token}"              # chg-password fills this in\n'
    assert SECRET.encode() not in path.read_bytes()
    if os.name != "nt":
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # mode kept

    db = cfg.database_config(path)
    assert db.url.password == SECRET and db.name == "shop" and db.schemas == ("public", "billing")
    for text in (repr(db), str(db), db.display_url()):
        assert SECRET not in text and token not in text


def test_chg_password_again_asks_for_and_checks_the_old_one(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    pw.chg_password(path, Prompter(SECRET, SECRET))
    first = path.read_bytes()

    prompt = Prompter(SECRET, OTHER, OTHER)
    pw.chg_password(path, prompt)
    assert prompt.asked == ["Old password", "New password", "Repeat the new password"]
    assert cfg.database_config(path).url.password == OTHER
    assert path.read_bytes() != first
    assert [a == b for a, b in zip(first.splitlines(), path.read_bytes().splitlines())].count(False) == 1


def test_wrong_old_password_refused_file_unchanged(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    pw.chg_password(path, Prompter(SECRET, SECRET))
    before = path.read_bytes()
    prompt = Prompter("wrong-" + OTHER, OTHER, OTHER)
    with pytest.raises(ConfigError) as info:
        pw.chg_password(path, prompt)
    assert "old password is wrong" in info.value.message and "nothing changed" in info.value.message
    assert prompt.asked == ["Old password"]
    assert path.read_bytes() == before
    for secret in (SECRET, OTHER):
        assert secret not in info.value.message


@pytest.mark.parametrize("answers, expected", [
    ((SECRET, OTHER), "differ"),
    (("", ""), "empty"),
])
def test_bad_new_password_refused_file_unchanged(tmp_path: Path, isolated_key: Path,
                                                 answers: tuple[str, str], expected: str) -> None:
    path = write(tmp_path, COMMENTED)
    with pytest.raises(ConfigError) as info:
        pw.chg_password(path, Prompter(*answers))
    assert expected in info.value.message and SECRET not in info.value.message
    assert path.read_text() == COMMENTED
    assert not isolated_key.exists()  # refused before any key was made


def test_plain_password_is_replaced_by_encrypted(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED.replace("password: null   ", f"password: {SECRET}"))
    prompt = Prompter(SECRET, OTHER, OTHER)
    pw.chg_password(path, prompt)
    assert prompt.asked[0] == "Old password"
    assert SECRET not in path.read_text() and OTHER not in path.read_text()
    assert cfg.database_config(path).url.password == OTHER


def test_missing_password_key_is_inserted(tmp_path: Path) -> None:
    text = "# db\ndriver: postgresql   # pg\nhost: h\nuser: u          # login\ndatabase: d\n"
    path = write(tmp_path, text)
    pw.chg_password(path, Prompter(SECRET, SECRET))
    lines = path.read_text().splitlines(keepends=True)
    token = encrypted(path, "password")
    assert lines == text.splitlines(keepends=True)[:4] + [f'password: "{token}"\n', "database: d\n"]
    assert cfg.database_config(path).url.password == SECRET


def test_mapping_form_is_read_and_kept(tmp_path: Path) -> None:
    token = pw.encrypt_password(SECRET)
    text = f"driver: postgresql\nhost: h\ndatabase: d\npassword:\n  encrypted: {token}  # enc\n"
    path = write(tmp_path, text)
    assert cfg.database_config(path).url.password == SECRET
    pw.chg_password(path, Prompter(SECRET, OTHER, OTHER))
    assert cfg.read_file(path)["password"]["encrypted"].startswith(pw.PREFIX)
    assert path.read_text().endswith("  # enc\n") and cfg.database_config(path).url.password == OTHER


@pytest.mark.skipif(os.name == "nt", reason="symlinks")
def test_symlinked_config_is_written_through(tmp_path: Path) -> None:
    real = write(tmp_path, COMMENTED, name="real.yaml")
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    assert pw.chg_password(link, Prompter(SECRET, SECRET)) == str(real.resolve())
    assert link.is_symlink() and cfg.database_config(link).url.password == SECRET


# ---------------------------------------------------------------- chg_password: JSON

def test_chg_password_legacy_json(tmp_path: Path) -> None:
    path = write(tmp_path, LEGACY, name="dump.json")
    pw.chg_password(path, Prompter(SECRET, SECRET))
    data = json.loads(path.read_text())  # still valid JSON
    assert data["db_password"].startswith(pw.PREFIX)
    assert {k: v for k, v in data.items() if k != "db_password"} == {
        k: v for k, v in json.loads(LEGACY).items() if k != "db_password"}
    after = path.read_text().splitlines()
    assert [a == b for a, b in zip(LEGACY.splitlines(), after)].count(False) == 1
    db = cfg.database_config(path)
    assert db.url.password == SECRET and db.url.username == "backup" and db.name == "Payroll"

    prompt = Prompter(SECRET, OTHER, OTHER)
    pw.chg_password(path, prompt)
    assert prompt.asked[0] == "Old password"
    assert cfg.database_config(path).url.password == OTHER and SECRET not in path.read_text()


def test_json_without_password_key_gets_one(tmp_path: Path) -> None:
    text = ('{   "db_user":          "sa",\n    "db_server":        "h",\n'
            '    "db_port":          1433,\n    "db_name":          "d"\n}\n')
    path = write(tmp_path, text, name="old.json")
    pw.chg_password(path, Prompter(SECRET, SECRET))
    data = json.loads(path.read_text())
    assert list(data) == ["db_user", "db_password", "db_server", "db_port", "db_name"]
    lines = path.read_text().splitlines()
    assert lines[1].startswith('    "db_password":      "albackup-enc:v1:')  # aligned like the rest
    assert lines[:1] + lines[2:] == text.splitlines()
    assert cfg.database_config(path).url.password == SECRET


def test_json_config_with_token_loads(tmp_path: Path) -> None:
    token = pw.encrypt_password(SECRET)
    path = write(tmp_path, json.dumps({"db_server": "h", "db_name": "d", "db_password": token}), "x.json")
    assert cfg.database_config(path).url.password == SECRET


# ---------------------------------------------------------------- chg_password refusals

@pytest.mark.parametrize("text, expected", [
    ("databases:\n  - {driver: sqlite, database: a.db}\n", "test_all"),
    ("url: postgresql://u@h/d\n", "url"),
    ("driver: postgresql\ndatabase: d\npassword_env: PGPASS\n", "password_env"),
    ("driver: sqlite\ndatabase: a.db\n", "sqlite"),
    ("driver: postgresql\ndatabase: d\ndb_prot: 1\n", "db_prot"),
])
def test_chg_password_refusals(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        pw.chg_password(path, Prompter())
    assert str(path) in info.value.message and expected in info.value.message
    assert path.read_text() == text


def test_chg_password_with_lost_key(tmp_path: Path, isolated_key: Path) -> None:
    path = write(tmp_path, COMMENTED)
    pw.chg_password(path, Prompter(SECRET, SECRET))
    before = path.read_bytes()
    isolated_key.unlink()
    with pytest.raises(SecretError) as info:
        pw.chg_password(path, Prompter(SECRET, OTHER, OTHER))
    assert "null" in info.value.message and path.read_bytes() == before


# ---------------------------------------------------------------- loading encrypted configs

def test_hand_edited_token_is_config_error_naming_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    pw.chg_password(path, Prompter(SECRET, SECRET))
    token = encrypted(path, "password")
    body = token[len(pw.PREFIX):]
    edited = pw.PREFIX + body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    path.write_text(path.read_text().replace(token, edited))
    with pytest.raises(ConfigError) as info:
        cfg.database_config(path)
    message = info.value.message
    assert info.value.exit_code == 3
    assert f"password in {path} at password cannot be decrypted" in message
    assert "edited by hand or encrypted with another key" in message and SECRET not in message
    path.write_text(path.read_text().replace(edited, token[:-10]))  # truncated
    with pytest.raises(ConfigError):
        cfg.database_config(path)


def test_other_key_is_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = pw.encrypt_password(SECRET)
    path = write(tmp_path, f"databases:\n  - db_server: h\n    db_name: d\n    db_password: '{token}'\n")
    monkeypatch.setenv(ENV, new_key_text())
    with pytest.raises(ConfigError) as info:
        cfg.test_all_config(path)
    assert "at databases[0].db_password cannot be decrypted" in info.value.message


def test_missing_key_file_with_encrypted_password(tmp_path: Path, isolated_key: Path) -> None:
    path = write(tmp_path, COMMENTED)
    pw.chg_password(path, Prompter(SECRET, SECRET))
    isolated_key.unlink()
    with pytest.raises(SecretError) as info:
        cfg.database_config(path)
    message = info.value.message
    assert info.value.exit_code == 15 and str(path) in message and str(isolated_key) in message
    assert "chg-password" in message and SECRET not in message


def test_key_path_argument_of_loaders(tmp_path: Path, isolated_key: Path) -> None:
    own = tmp_path / "own.key"
    path = write(tmp_path, COMMENTED)
    pw.chg_password(path, Prompter(SECRET, SECRET), key_path=own)
    assert own.is_file() and not isolated_key.exists()
    assert cfg.database_config(path, key_path=own).url.password == SECRET
    with pytest.raises(SecretError):
        cfg.database_config(path)


def test_encrypted_in_test_all_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = pw.encrypt_password(SECRET)
    path = write(tmp_path, f"defaults:\n  password: {{encrypted: '{token}'}}\n"
                           "databases:\n  - {driver: postgresql, host: a, database: a}\n"
                           "  - {driver: postgresql, host: b, database: b, password_env: B_PW}\n",
                 "t.yaml")
    monkeypatch.setenv("B_PW", OTHER)
    a, b = cfg.test_all_config(path).databases
    assert a.url.password == SECRET and b.url.password == OTHER  # own source replaces defaults'
    assert SECRET not in repr(a) and OTHER not in repr(b)


def test_warnings_plain_vs_encrypted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, COMMENTED.replace("password: null   ", f"password: {SECRET}"))
    with caplog.at_level(logging.WARNING, logger="albackup.config"):
        cfg.database_config(path)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "chg-password" in messages[0] and SECRET not in messages[0]
    pw.chg_password(path, Prompter(SECRET, SECRET, SECRET))
    path.chmod(0o644)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="albackup.config"):
        cfg.database_config(path)
    assert not caplog.records  # an encrypted password is neither plain text nor exposed


def test_no_secret_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The password never shows in messages, repr, display_url or the file."""
    path = write(tmp_path, LEGACY, name="dump.json")
    pw.chg_password(path, Prompter(SECRET, SECRET))
    assert SECRET not in path.read_text()
    db = cfg.database_config(path)
    assert db.url.password == SECRET
    for text in (repr(db), str(db), db.display_url(), repr(db.url)):
        assert SECRET not in text
    messages = []
    for answers in ((OTHER, SECRET, SECRET), (SECRET, SECRET, OTHER), (SECRET, "", "")):
        with pytest.raises(ConfigError) as info:
            pw.chg_password(path, Prompter(*answers))
        messages.append(info.value.message)
    monkeypatch.setenv(ENV, new_key_text())
    with pytest.raises(ConfigError) as info:
        cfg.database_config(path)
    messages.append(info.value.message)
    for message in messages:
        assert SECRET not in message and OTHER not in message


# ---------------------------------------------------------------- password_env / _file / _command

BASE = "driver: postgresql\nhost: h\nuser: u\ndatabase: d\n"


def test_password_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_PW", SECRET)
    db = cfg.database_config(write(tmp_path, BASE + "password_env: SHOP_PW\n"))
    assert db.url.password == SECRET and SECRET not in repr(db)
    monkeypatch.delenv("SHOP_PW")
    with pytest.raises(SecretError) as info:
        cfg.database_config(tmp_path / "db.yaml")
    assert "SHOP_PW" in info.value.message and "password_env" in info.value.message


def test_password_file_relative_to_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    write(conf, SECRET + "\n", name="pw.txt")
    monkeypatch.chdir(tmp_path)
    db = cfg.database_config(write(conf, BASE + "password_file: pw.txt\n"))
    assert db.url.password == SECRET
    with pytest.raises(SecretError) as info:
        cfg.database_config(write(conf, BASE + "password_file: missing.txt\n", "m.yaml"))
    assert "missing.txt" in info.value.message and "password_file" in info.value.message


def test_password_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMD_PW", SECRET)
    script = "import os; print(os.environ['CMD_PW'])"
    argv = json.dumps([sys.executable, "-c", script])
    db = cfg.database_config(write(tmp_path, BASE + f"password_command: {argv}\n"))
    assert db.url.password == SECRET
    line = f"password_command: '{sys.executable} -c \"import sys; print(sys.argv[1])\" {SECRET}'\n"
    assert cfg.database_config(write(tmp_path, BASE + line, "s.yaml")).url.password == SECRET
    failing = f"password_command: '{sys.executable} -c \"raise SystemExit(3)\"'\n"
    with pytest.raises(SecretError) as info:
        cfg.database_config(write(tmp_path, BASE + failing, "f.yaml"))
    assert "exit code 3" in info.value.message and "password_command" in info.value.message


def test_password_source_with_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_PW", SECRET)
    db = cfg.database_config(write(tmp_path, "url: postgresql://u@h/d\npassword_env: SHOP_PW\n"))
    assert db.url.password == SECRET and SECRET not in db.display_url()
    path = write(tmp_path, "url: postgresql://u:x@h/d\npassword_env: SHOP_PW\n", "x.yaml")
    with pytest.raises(ConfigError) as info:
        cfg.database_config(path)
    assert "password_env" in info.value.message and "url" in info.value.message


@pytest.mark.parametrize("extra, named", [
    ("password: x\npassword_env: A\n", "password_env"),
    ("password_env: A\npassword_file: f\n", "password_file"),
    ("db_password: x\npassword_command: echo\n", "password_command"),
    ("password_file: f\npassword_command: echo\n", "password_command"),
])
def test_two_password_sources_refused(tmp_path: Path, extra: str, named: str) -> None:
    path = write(tmp_path, BASE + extra)
    with pytest.raises(ConfigError) as info:
        cfg.database_config(path)
    message = info.value.message
    assert info.value.exit_code == 3 and f"{path}, line " in message
    assert f": {named}: conflicts with" in message and "exactly one password source" in message


def test_two_sources_in_test_all_name_the_entry(tmp_path: Path) -> None:
    path = write(tmp_path, "databases:\n  - driver: postgresql\n    database: d\n"
                           "    password_env: A\n    password_file: f\n")
    with pytest.raises(ConfigError) as info:
        cfg.test_all_config(path)
    assert "databases[0].password_file" in info.value.message


@pytest.mark.parametrize("extra, expected", [
    ("password_env: 'not a name'\n", "environment variable name"),
    ("password_file: 12\n", "file path"),
    ("password_command: ''\n", "command line"),
    ("password_command: \"'unbalanced\"\n", "cannot be split"),
])
def test_password_source_shapes(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.database_config(write(tmp_path, BASE + extra))
    assert expected in info.value.message


def test_sqlite_refuses_password_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "driver: sqlite\ndatabase: a.db\npassword_env: X\n")
    with pytest.raises(ConfigError) as info:
        cfg.database_config(path)
    assert "password_env" in info.value.message and "sqlite" in info.value.message
