"""Tests for albackup.secrets: reading secrets from env, file, fd and command, and Secret.

Real environment variables, files, pipes and processes; nothing is mocked.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from albackup import secrets
from albackup.errors import ConfigError, SecretError
from albackup.secrets import Secret, SecretSource, from_mapping

VALUE = "s3cr3t-Value-9f2"


def chain(exc: BaseException) -> str:
    """The text of an exception and everything chained to it."""
    out = []
    e: BaseException | None = exc
    while e is not None:
        out.append(repr(e) + str(e) + repr(getattr(e, "output", None)) + repr(getattr(e, "stdout", None)))
        e = e.__cause__ or e.__context__
    return "\n".join(out)


# --- Secret ------------------------------------------------------------------------------------

def test_secret_hides_its_value() -> None:
    s = Secret(VALUE.encode())
    for shown in (repr(s), str(s), f"{s}", f"{s!r}", repr([s]), repr({"pw": s})):
        assert VALUE not in shown
        assert "Secret(***)" in shown
    assert s.reveal() == VALUE.encode()
    assert s == Secret(VALUE.encode()) and s != Secret(b"other") and s != VALUE.encode()
    with pytest.raises(TypeError):
        Secret(VALUE)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hash(s)


# --- env ---------------------------------------------------------------------------------------

def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALBACKUP_T_PW", VALUE + "\n")
    assert SecretSource(env="ALBACKUP_T_PW").read() == VALUE.encode()
    assert SecretSource(env="ALBACKUP_T_PW").secret().reveal() == VALUE.encode()


def test_missing_env_names_the_variable_not_any_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALBACKUP_T_MISSING", raising=False)
    monkeypatch.setenv("ALBACKUP_T_OTHER", VALUE)
    with pytest.raises(SecretError) as ei:
        from_mapping({"env": "ALBACKUP_T_MISSING"}, "databases.shop.password").read()
    msg = str(ei.value)
    assert "ALBACKUP_T_MISSING" in msg and "not set" in msg and "databases.shop.password" in msg
    assert VALUE not in chain(ei.value)


def test_empty_env_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALBACKUP_T_EMPTY", "\n")
    with pytest.raises(SecretError, match="environment variable ALBACKUP_T_EMPTY is empty"):
        SecretSource(env="ALBACKUP_T_EMPTY").read()


# --- file --------------------------------------------------------------------------------------

def test_file_private_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "pw"
    p.write_bytes(VALUE.encode() + b"\r\n")
    p.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert SecretSource(file=str(p)).read() == VALUE.encode()
    assert not caplog.records


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_file_readable_by_others_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int) -> None:
    p = tmp_path / "pw"
    p.write_bytes(VALUE.encode())
    p.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="albackup"):
        assert SecretSource(file=str(p)).read() == VALUE.encode()
    [rec] = caplog.records
    assert str(p) in rec.getMessage() and VALUE not in rec.getMessage()


def test_file_keeps_inner_newlines_strips_only_one(tmp_path: Path) -> None:
    p = tmp_path / "pw"
    p.write_bytes(b"line1\nline2\n\n")
    p.chmod(0o600)
    assert SecretSource(file=str(p)).read() == b"line1\nline2\n"


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SecretError, match=rf"file {missing}.*does not exist"):
        SecretSource(file=str(missing)).read()
    with pytest.raises(SecretError, match="directory"):
        SecretSource(file=str(tmp_path)).read()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(SecretError, match=rf"file {empty} is empty"):
        SecretSource(file=str(empty)).read()
    big = tmp_path / "big"
    big.write_bytes(b"x" * (secrets.MAX_SECRET + 1))
    with pytest.raises(SecretError, match="too large"):
        SecretSource(file=str(big)).read()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:
    p = tmp_path / "pw"
    p.write_bytes(VALUE.encode())
    p.chmod(0)
    with pytest.raises(SecretError, match=rf"file {p}: permission denied"):
        SecretSource(file=str(p)).read()


# --- fd ----------------------------------------------------------------------------------------

def test_fd_pipe_is_read_and_closed() -> None:
    r, w = os.pipe()
    os.write(w, VALUE.encode() + b"\n")
    os.close(w)
    assert SecretSource(fd=r).read() == VALUE.encode()
    with pytest.raises(OSError):
        os.fstat(r)


def test_bad_fd() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(SecretError, match=rf"file descriptor {r}"):
        SecretSource(fd=r).read()


# --- command -----------------------------------------------------------------------------------

def test_command_argv_and_string() -> None:
    assert SecretSource(command=("printf", "%s\\n", VALUE)).read() == VALUE.encode()
    assert from_mapping({"command": ["printf", "%s", "a b  c"]}, "k").read() == b"a b  c"
    assert SecretSource(command="printf '%s\\n' 'two words'").read() == b"two words"
    # no shell: metacharacters are plain arguments
    assert SecretSource(command=["printf", "%s", "$HOME;`id`|x"]).read() == b"$HOME;`id`|x"


def test_command_failure_does_not_leak_stdout() -> None:
    src = from_mapping({"command": [sys.executable, "-c", f"print({VALUE!r}); raise SystemExit(3)"]}, "db.password")
    with pytest.raises(SecretError) as ei:
        src.read()
    msg = str(ei.value)
    assert sys.executable in msg and "exit code 3" in msg and "db.password" in msg
    assert VALUE not in chain(ei.value)


def test_command_errors() -> None:
    with pytest.raises(SecretError, match="'albackup-no-such-command-x'.*not found"):
        SecretSource(command="albackup-no-such-command-x --flag").read()
    with pytest.raises(SecretError, match="is empty"):
        SecretSource(command=["printf", ""]).read()
    with pytest.raises(SecretError, match="killed by signal 9"):
        SecretSource(command=[sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"]).read()


def test_command_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    assert secrets.COMMAND_TIMEOUT == 30
    monkeypatch.setattr(secrets, "COMMAND_TIMEOUT", 0.3)
    with pytest.raises(SecretError, match="did not finish within 0.3 s") as ei:
        SecretSource(command=[sys.executable, "-c", f"print({VALUE!r}, flush=True); import time; time.sleep(20)"]).read()
    assert VALUE not in chain(ei.value)


# --- shape -------------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [{}, {"env": "A", "file": "b"}, {"fd": 3, "command": "x"}, {"env": None}])
def test_not_exactly_one_source(d: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"^databases\.a\.password: give exactly one of env, file, fd, command"):
        from_mapping(d, "databases.a.password")


def test_constructor_needs_exactly_one() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        SecretSource()
    with pytest.raises(ConfigError, match=r"exactly one of env, file, fd, command \(got env, fd\)"):
        SecretSource(env="A", fd=0)


@pytest.mark.parametrize("d,match", [
    ({"envv": "A"}, "unknown key envv"),
    ({"env": ""}, r"\.env: expected a non-empty string"),
    ({"file": 3}, r"\.file: expected a non-empty string"),
    ({"fd": "3"}, r"\.fd: expected a file descriptor"),
    ({"fd": True}, r"\.fd: expected a file descriptor"),
    ({"fd": -1}, r"\.fd: expected a file descriptor"),
    ({"command": 5}, r"\.command: expected a string or a list"),
    ({"command": ["a", 1]}, r"\.command: expected a string or a list"),
    ({"command": []}, r"\.command: is empty"),
    ({"command": "  "}, r"\.command: is empty"),
    ({"command": "unclosed 'quote"}, r"\.command: cannot be split"),
    ("PGPASSWORD", "expected a mapping"),
])
def test_from_mapping_shape_errors(d: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as ei:
        from_mapping(d, "x.pw")  # type: ignore[arg-type]
    assert str(ei.value).startswith("x.pw")


def test_source_repr_and_equality() -> None:
    a = from_mapping({"command": ["pass", "show", "db"]}, "one")
    assert a == SecretSource(command=("pass", "show", "db"), where="two")
    assert a.command == ("pass", "show", "db") and hash(a)
    assert a.describe() == "command 'pass'"
