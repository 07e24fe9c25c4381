"""One way to give albackup a secret (passphrase, key, password), as borg does.

A :class:`SecretSource` names exactly one place to read the secret from:

- ``env``: an environment variable;
- ``file``: a file (a warning is logged when group or others can access it);
- ``fd``: an open file descriptor, read to its end and then closed (so it can be read once);
- ``command``: a command run without a shell (an argv list, or a string split with ``shlex``),
  with a 30 s timeout; its standard output is the secret. Its stderr and stdin are the
  caller's, so it can prompt on the terminal.

One trailing line ending (``\\n`` or ``\\r\\n``) is removed from what is read. An empty secret is
an error. Errors name the variable, file, descriptor or command, never the secret or a command's
output: problems reading are ``SecretError`` (exit 15), a source that is not given exactly once
is ``ConfigError`` (exit 3).

:class:`Secret` wraps the bytes so that they do not end up in logs or tracebacks by accident.
"""
from __future__ import annotations

import hmac
import logging
import os
import shlex
import stat
import subprocess
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .errors import ConfigError, SecretError


# ------------------------------------------------------------------------------------- masking
MASK = "***"
#: ``scheme://user:PASSWORD@`` up to the last '@' of the same unbroken run of characters (a
#: password may hold an '@'), so a driver's ``'root'@'127.0.0.1'`` later on the line survives
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s]*@")
#: the value of a secret-looking ``key=value`` (URL query, ODBC ``PWD=…;``, ``sig=`` …), also
#: percent-encoded (``PWD%3D…%3B``); braces as ODBC quotes them
_SECRET_NAME = (r"(?:[\w.\-]*(?:passw(?:or)?d|pwd|secret|token|signature|credential|auth)\w*"
                r"|(?:[\w.\-]*(?:api|access|private)[-_]?)?key|sig)")
_KEY_VALUE = re.compile(rf"(?i)(\b{_SECRET_NAME}(?:=|%3D))(?:\{{[^}}]*\}}|(?:(?!%3B|%26)[^\s;&#,'\"])*)")
#: ``'password': 'value'`` and ``"token": "value"`` (dicts and JSON in messages)
_QUOTED = re.compile(rf"(?i)(['\"]{_SECRET_NAME}['\"]\s*:\s*['\"])[^'\"]*")
#: secrets shorter than this are masked only where their form says they are secrets
KNOWN_MIN = 3


def mask_secrets(text: Any, known: Iterable[Any] = ()) -> str:
    """``text`` with its secrets masked as ``***`` and everything else kept (a driver's message,
    its host, database and cause): the password of a URL (``user:***@host``), the values of
    secret-looking ``key=value`` pairs (``password=``, ``PWD=``, ``token=``, ``X-Amz-Signature=``,
    …) and quoted ``'password': '…'`` items, and each of the ``known`` secrets (of 3 characters
    or more) wherever it occurs. The one masker of albackup: logs, errors, notifications, hooks."""
    out = str(text)
    for secret in sorted({str(k) for k in known if k is not None and len(str(k)) >= KNOWN_MIN},
                         key=len, reverse=True):
        out = out.replace(secret, MASK)
    out = _URL_USERINFO.sub(rf"\1{MASK}@", out)
    out = _KEY_VALUE.sub(rf"\1{MASK}", out)
    return _QUOTED.sub(rf"\1{MASK}", out)

log = logging.getLogger(__name__)

KINDS = ("env", "file", "fd", "command")
COMMAND_TIMEOUT = 30.0
MAX_SECRET = 64 * 1024


class Secret:
    """Bytes that are not shown by repr/str; use :meth:`reveal` where the value is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError("Secret wraps bytes")
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class SecretSource:
    """Exactly one of ``env``, ``file``, ``fd``, ``command``; ``where`` labels error messages."""

    env: str | None = None
    file: str | None = None
    fd: int | None = None
    command: str | tuple[str, ...] | None = None
    where: str = field(default="secret", compare=False)

    def __post_init__(self) -> None:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            got = f" (got {', '.join(given)})" if given else ""
            raise ConfigError(f"{self.where}: give exactly one of env, file, fd, command{got}")
        if isinstance(self.command, list):
            object.__setattr__(self, "command", tuple(self.command))
        if self.command is not None and not self.argv():
            raise ConfigError(f"{self.where}.command: is empty")

    def argv(self) -> list[str]:
        if self.command is None:
            return []
        if isinstance(self.command, str):
            try:
                return shlex.split(self.command)
            except ValueError as exc:
                raise ConfigError(f"{self.where}.command: cannot be split into words ({exc})") from None
        return list(self.command)

    def describe(self) -> str:
        if self.env is not None:
            return f"environment variable {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        if self.fd is not None:
            return f"file descriptor {self.fd}"
        return f"command {self.argv()[0]!r}"

    def read(self) -> bytes:
        """The secret's bytes, one trailing line ending removed; SecretError if unreadable or empty."""
        if self.env is not None:
            raw = self._read_env(self.env)
        elif self.file is not None:
            raw = self._read_file(self.file)
        elif self.fd is not None:
            raw = self._read_fd(self.fd)
        else:
            raw = self._run(self.argv())
        if raw.endswith(b"\r\n"):
            raw = raw[:-2]
        elif raw.endswith(b"\n"):
            raw = raw[:-1]
        if not raw:
            raise SecretError(f"{self.where}: the secret from {self.describe()} is empty")
        return raw

    def secret(self) -> Secret:
        return Secret(self.read())

    def _fail(self, why: str) -> SecretError:
        return SecretError(f"{self.where}: cannot read the secret from {self.describe()}: {why}")

    def _read_env(self, name: str) -> bytes:
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"{self.where}: environment variable {name} is not set")
        return os.fsencode(value)

    def _read_file(self, name: str) -> bytes:
        path = os.path.expanduser(name)
        try:
            with open(path, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                if not stat.S_ISREG(mode) and not stat.S_ISFIFO(mode) and not stat.S_ISCHR(mode):
                    raise self._fail("not a regular file")
                if os.name == "posix" and stat.S_ISREG(mode) and mode & 0o077:
                    log.warning("%s: holds a secret but can be accessed by group or others (mode %03o); "
                                "chmod 600 it", name, stat.S_IMODE(mode))
                return self._limited(f.read(MAX_SECRET + 1))
        except FileNotFoundError:
            raise self._fail("it does not exist") from None
        except PermissionError:
            raise self._fail("permission denied") from None
        except IsADirectoryError:
            raise self._fail("it is a directory") from None
        except OSError as exc:
            raise self._fail(exc.strerror or type(exc).__name__) from None

    def _read_fd(self, fd: int) -> bytes:
        try:
            with os.fdopen(fd, "rb", closefd=True) as f:
                return self._limited(f.read(MAX_SECRET + 1))
        except OSError as exc:
            raise self._fail(exc.strerror or type(exc).__name__) from None

    def _run(self, argv: list[str]) -> bytes:
        why = ""
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, timeout=COMMAND_TIMEOUT, check=False)
        except FileNotFoundError:
            why = "command not found"
        except PermissionError:
            why = "command is not executable"
        except subprocess.TimeoutExpired:
            why = f"command did not finish within {COMMAND_TIMEOUT:g} s"
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        if why:  # raised here, outside the handler, so no exception holding the output is chained
            raise self._fail(why)
        if done.returncode < 0:
            raise self._fail(f"command was killed by signal {-done.returncode}")
        if done.returncode != 0:
            raise self._fail(f"command failed with exit code {done.returncode}")
        return self._limited(done.stdout)

    def _limited(self, raw: bytes) -> bytes:
        if len(raw) > MAX_SECRET:
            raise self._fail(f"more than {MAX_SECRET // 1024} KiB, too large for a secret")
        return raw


def from_mapping(d: Mapping[str, Any], keypath: str) -> SecretSource:
    """A SecretSource from a config mapping such as ``{"env": "PGPASS"}``; shape errors are ConfigError."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{keypath}: expected a mapping with exactly one of env, file, fd, command")
    unknown = sorted(str(k) for k in d if k not in KINDS)
    if unknown:
        raise ConfigError(f"{keypath}: unknown key {', '.join(unknown)} (give exactly one of env, file, fd, command)")
    given = {k: d[k] for k in KINDS if d.get(k) is not None}
    if len(given) != 1:
        got = f" (got {', '.join(given)})" if given else ""
        raise ConfigError(f"{keypath}: give exactly one of env, file, fd, command{got}")
    (kind, value), = given.items()
    where = f"{keypath}.{kind}"
    if kind in ("env", "file") and not (isinstance(value, str) and value):
        raise ConfigError(f"{where}: expected a non-empty string")
    if kind == "fd" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(f"{where}: expected a file descriptor number (an integer >= 0)")
    if kind == "command":
        ok_list = isinstance(value, (list, tuple)) and all(isinstance(w, str) for w in value)
        if not (isinstance(value, str) or ok_list):
            raise ConfigError(f"{where}: expected a string or a list of strings")
        if not isinstance(value, str):
            value = tuple(value)
    return SecretSource(**{kind: value}, where=keypath)
