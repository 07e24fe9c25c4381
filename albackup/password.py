"""Encrypted database passwords in config files, and ``chg-password``.

A password is stored as the string ``albackup-enc:v1:<base64>`` (AES-256-GCM, random 96-bit
nonce, the plain text length-prefixed and padded to a multiple of 32 bytes so the token does not
tell the password's length). The mapping form ``{encrypted: "albackup-enc:v1:..."}`` is read too.

The key is never in the config. It is looked for, in this order:

1. an explicit ``key_path`` argument (a key file);
2. the environment variable ``ALBACKUP_CONFIG_KEY`` (32 bytes, base64 or urlsafe base64);
3. the key file ``$XDG_CONFIG_HOME/albackup/config.key`` (default ``~/.config/albackup/config.key``).

``encrypt_password`` (and so ``chg_password``) creates a missing key file: mode 0600, in a folder
created with mode 0700. Messages never contain a password or the key.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import re
import stat
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, SecretError

log = logging.getLogger(__name__)

PREFIX = "albackup-enc:v1:"
ENV_KEY = "ALBACKUP_CONFIG_KEY"
KEY_BYTES = 32
_NONCE = 12
_TAG = 16
_PAD = 32
_AAD = b"albackup config password v1"
_B64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_EDITED = "(was it edited by hand or encrypted with another key?)"
_TEST_ALL = ("databases", "scratch", "restore", "defaults")


# ---------------------------------------------------------------- the key

def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/albackup/config.key``, else ``~/.config/albackup/config.key``."""
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "albackup" / "config.key"


def key_location(key_path: Path | str | None = None) -> str:
    """Where the key is looked for, for messages (never the key itself)."""
    if key_path is not None:
        return f"the key file {Path(key_path).expanduser()}"
    return f"${ENV_KEY} or the key file {default_key_path()}"


def _load_key(key_path: Path | str | None, *, create: bool, what: str) -> tuple[bytes, str]:
    """(key, where it came from). Missing key: created when ``create``, else SecretError."""
    if key_path is not None:
        path = Path(key_path).expanduser()
    else:
        env = os.environ.get(ENV_KEY, "")
        if env.strip():
            return _parse_key(env, f"${ENV_KEY}"), f"${ENV_KEY}"
        path = default_key_path()
    if not path.exists() and not path.is_symlink():
        if not create:
            looked = (f"the key file {path} does not exist" if key_path is not None
                      else f"${ENV_KEY} is not set and the key file {path} does not exist")
            raise SecretError(f"no key to decrypt {what}: {looked}; chg-password creates the key file "
                              "when it sets a password (or copy the key file, or set "
                              f"${ENV_KEY}, from the machine where the password was set)")
        _create_key_file(path)
    return _read_key_file(path), str(path)


def _parse_key(text: str, origin: str) -> bytes:
    raw = text.strip()
    bad = SecretError(f"{origin} does not hold a valid key (expected {KEY_BYTES} random bytes in "
                      "base64, as written by chg-password)")
    if not _B64.fullmatch(raw):
        raise bad
    raw = raw.rstrip("=").replace("+", "-").replace("/", "_")
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise bad from None
    if len(key) != KEY_BYTES:
        raise bad
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise SecretError(f"the key file {path} is not a regular file")
            raw = f.read(4096)
    except SecretError:
        raise
    except OSError as exc:
        raise SecretError(f"cannot read the key file {path} ({exc.strerror or type(exc).__name__})") from None
    if os.name == "posix" and mode & 0o077:
        log.warning("the key file %s can be read by group or others (mode %03o); run: chmod 600 %s",
                    path, stat.S_IMODE(mode), path)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise SecretError(f"the key file {path} does not hold a valid key (expected {KEY_BYTES} random "
                          "bytes in base64, as written by chg-password)") from None
    return _parse_key(text, f"the key file {path}")


def _create_key_file(path: Path) -> None:
    """A new random key in ``path`` (0600; its folder, when created here, 0700). Never replaces a
    key file that appears meanwhile: the new file is linked into place, not renamed over."""
    folder = path.parent
    try:
        if not folder.is_dir():
            folder.mkdir(mode=0o700, parents=True)
            if os.name == "posix":
                folder.chmod(0o700)
        text = base64.urlsafe_b64encode(os.urandom(KEY_BYTES)) + b"\n"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".config.key.", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return  # created by another process meanwhile: use that one
            except OSError:  # no hard links on this file system
                try:
                    fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    return
                with os.fdopen(fd2, "wb") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise SecretError(f"cannot create the key file {path} ({why})") from None
    log.info("created the config key %s: keep a copy, without it the encrypted passwords cannot be "
             "decrypted (copy it, or set $%s, on every machine that uses these configs)", path, ENV_KEY)


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:  # pragma: no cover - cryptography is a dependency
        raise SecretError("encrypted passwords need the `cryptography` package") from None
    return AESGCM(key)


# ---------------------------------------------------------------- encrypt / decrypt

def is_encrypted(value: Any) -> bool:
    """True for an ``albackup-enc:v1:`` string or an ``{encrypted: ...}`` mapping."""
    return (isinstance(value, str) and value.startswith(PREFIX)) or (
        isinstance(value, dict) and "encrypted" in value)


def encrypt_password(plain: str, key_path: Path | None = None) -> str:
    """``albackup-enc:v1:<base64>`` for ``plain``; creates the key file on first use."""
    if not isinstance(plain, str):
        raise TypeError("encrypt_password takes a str")
    data = plain.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ConfigError("the password is too long (more than 65535 bytes)")
    key, _ = _load_key(key_path, create=True, what="the password")
    body = struct.pack(">H", len(data)) + data
    body += b"\0" * (-len(body) % _PAD)
    nonce = os.urandom(_NONCE)
    sealed = _aesgcm(key).encrypt(nonce, body, _AAD)
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")


def decrypt_password(token: str, key_path: Path | None = None, *, source: str | None = None,
                     keypath: str = "password") -> str:
    """The plain password of ``token``. ``source``/``keypath`` (the config file and key) name
    the value in messages. No key: SecretError; wrong key or damaged token: ConfigError."""
    what = f"the password in {source} at {keypath}" if source else "the password"
    if not isinstance(token, str) or not token.startswith(PREFIX):
        raise ConfigError(f"{what} is not an encrypted password (expected a string starting with "
                          f"{PREFIX}, as written by chg-password)")
    key, origin = _load_key(key_path, create=False, what=what)
    label = f"password in {source} at {keypath}" if source else "the password"
    fail = ConfigError(f"{label} cannot be decrypted {_EDITED}; key used: {origin}")
    text = "".join(token[len(PREFIX):].split())
    if not _B64.fullmatch(text or "!"):
        raise fail
    text = text.rstrip("=").replace("+", "-").replace("/", "_")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise fail from None
    if len(raw) < _NONCE + _TAG + 2:
        raise fail
    try:
        body = _aesgcm(key).decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
    except Exception:  # cryptography's InvalidTag: wrong key or altered token
        raise fail from None
    (size,) = struct.unpack(">H", body[:2])
    if size > len(body) - 2:
        raise fail
    try:
        return body[2:2 + size].decode("utf-8")
    except UnicodeDecodeError:
        raise fail from None


def decrypt_value(value: Any, key_path: Path | None = None, *, source: str | None = None,
                  keypath: str = "password") -> str:
    """Decrypt either stored form: the token string or ``{encrypted: token}``."""
    if isinstance(value, dict):
        where = f"{source}: {keypath}" if source else keypath
        extra = sorted(str(k) for k in value if k != "encrypted")
        if extra:
            raise ConfigError(f"{where}: an encrypted password is `{{encrypted: \"{PREFIX}...\"}}` "
                              f"only; unknown key {', '.join(extra)}")
        if not isinstance(value.get("encrypted"), str):
            raise ConfigError(f"{where}.encrypted: expected a string starting with {PREFIX}")
        return decrypt_password(value["encrypted"], key_path, source=source, keypath=f"{keypath}.encrypted")
    return decrypt_password(value, key_path, source=source, keypath=keypath)


# ---------------------------------------------------------------- chg-password

def chg_password(config_path: Path, prompt: Callable[[str, bool], str],
                 key_path: Path | None = None) -> str:
    """Set or change the encrypted database password of a one-database config file.

    ``prompt(text, hide)`` returns what the user typed. Asks for the old password when one is set
    (and checks it), then for the new one twice; rewrites only the password's text in the file
    (inserting the key when absent), atomically and keeping the file's mode. Returns the path
    written (symlinks resolved). Every refusal leaves the file unchanged.
    """
    from . import config as cfg  # config imports this module

    path = Path(config_path)
    real = path.resolve()
    original = cfg.read_config_bytes(path)
    bom = "\ufeff" if original.startswith(b"\xef\xbb\xbf") else ""
    text = cfg._decode(original, path)
    node, data, _lines = cfg._parse(text, path)
    name, value_node, key_node = _password_node(node, data, path)
    current = data.get(name)

    db = cfg._database({**data, name: None} if is_encrypted(current) else data,
                       cfg._Where(str(path), lines=_lines), False, path.parent)
    if db.engine_name == "sqlite":
        raise ConfigError(f"{path}: a sqlite database has no password")

    if current not in (None, ""):
        if is_encrypted(current):
            try:
                old = decrypt_value(current, key_path, source=str(path), keypath=name)
            except (ConfigError, SecretError) as exc:
                raise type(exc)(f"{exc.message}; nothing changed (if the key is lost, set `{name}: null` "
                                "in the file by hand and run chg-password again)") from None
        else:
            old = current
        typed = prompt("Old password", True) or ""
        if not hmac.compare_digest(typed.encode("utf-8"), old.encode("utf-8")):
            raise ConfigError(f"{path}: the old password is wrong; nothing changed")
    new = prompt("New password", True) or ""
    if not new:
        raise ConfigError(f"{path}: an empty password is not accepted; nothing changed")
    if (prompt("Repeat the new password", True) or "") != new:
        raise ConfigError(f"{path}: the two new passwords differ; nothing changed")

    token = encrypt_password(new, key_path)
    if value_node is not None:
        new_text, expected = _replace(text, value_node, token), token
        if isinstance(current, dict):
            expected = {"encrypted": token}
    else:
        new_text, expected = _insert(text, node, name, token), token
    _check_edit(new_text, data, name, expected, path)
    _write_atomic(real, original, (bom + new_text).encode("utf-8"))
    return str(real)


def _password_node(node: yaml.Node, data: dict, path: Path) -> tuple[str, yaml.Node | None, yaml.Node | None]:
    """(key name, its value node or None when absent, its key node) of the one database."""
    if any(k in data for k in _TEST_ALL):
        raise ConfigError(f"{path}: is a test_all config (`databases:`); chg-password sets the password "
                          "of a one-database config only; in a test_all config use password_env, "
                          "password_file or password_command")
    if "url" in data:
        raise ConfigError(f"{path}: gives the connection as `url`; chg-password needs the separate keys "
                          "(driver, host, port, user, password, database), or use password_env, "
                          "password_file or password_command with the url")
    for source in ("password_env", "password_file", "password_command"):
        if data.get(source) is not None:
            raise ConfigError(f"{path}: the password comes from `{source}`; change it there, or remove "
                              f"`{source}` to store an encrypted password with chg-password")
    if "password" in data and "db_password" in data:
        raise ConfigError(f"{path}: has both `password` and `db_password`; keep only one")
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    pairs = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    for name in ("password", "db_password"):
        if name in pairs:
            key_node, value_node = pairs[name]
            target = value_node
            if isinstance(value_node, yaml.MappingNode):
                inner = {k.value: v for k, v in value_node.value if isinstance(k, yaml.ScalarNode)}
                target = inner.get("encrypted")
                if not isinstance(target, yaml.ScalarNode) or set(inner) != {"encrypted"}:
                    raise ConfigError(f"{path}: {name}: expected a string or {{encrypted: ...}}; "
                                      "nothing changed")
            if not isinstance(target, yaml.ScalarNode):
                raise ConfigError(f"{path}: {name}: expected a string or null; nothing changed")
            return name, target, key_node
        if name in data:  # present in the data but not among the pairs: a `<<:` merge key
            raise ConfigError(f"{path}: `{name}` comes from a YAML merge key (<<); write `{name}: null` "
                              "in the file itself, then run chg-password again")
    legacy = any(k in data for k in ("db_user", "db_server", "db_name", "db_port"))
    modern = any(k in data for k in ("user", "host", "database", "port"))
    name = "db_password" if legacy and not modern else "password"
    return name, None, None


def _replace(text: str, value_node: yaml.ScalarNode, token: str) -> str:
    start, end = value_node.start_mark.index, value_node.end_mark.index
    if end <= start:  # `password:` with nothing after it: the mark is just after the colon
        return f'{text[:start]} "{token}"{text[start:]}'
    if text[start:start + 1] in ("&", "*", "!"):
        raise ConfigError("the password value uses a YAML anchor, alias or tag; write it as a plain "
                          "value (or null) first; nothing changed")
    replacement = f'"{token}"'
    if value_node.style in ("|", ">"):  # a block scalar's span ends with its line break(s)
        span = text[start:end]
        trailing = span[len(span.rstrip()):]
        cut = trailing.find("\n")
        replacement += trailing[cut:] if cut >= 0 else ""
    return text[:start] + replacement + text[end:]


def _insert(text: str, node: yaml.MappingNode, name: str, token: str) -> str:
    """Add ``name: "token"`` to the top-level mapping, next to the user (else the last) entry."""
    pairs = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]
    keys = [k.value for k, _ in pairs]
    ref = next((keys.index(k) for k in ("user", "db_user") if k in keys), len(pairs) - 1)
    if node.flow_style:
        return _insert_flow(text, node, pairs, ref, name, token)
    return _insert_block(text, pairs, ref, name, token)


def _key_text(text: str, key_node: yaml.Node | None, name: str) -> str:
    quote = text[key_node.start_mark.index] if key_node is not None else ""
    return f"{quote}{name}{quote}" if quote in ('"', "'") else name


def _gap(text: str, key_node: yaml.Node, value_node: yaml.Node, key_text: str) -> str:
    """``key:`` padded like the reference entry, so aligned values stay aligned."""
    head = text[key_node.start_mark.index:value_node.start_mark.index]
    width = len(head) if "\n" not in head and "#" not in head else 0
    return f"{key_text}:".ljust(max(width, len(key_text) + 2))


def _insert_flow(text: str, node: yaml.MappingNode, pairs: list, ref: int, name: str, token: str) -> str:
    if not pairs:
        at = node.start_mark.index + 1
        return f'{text[:at]}"{name}": "{token}"{text[at:]}'
    key_node, value_node = pairs[ref]
    if len(pairs) >= 2:
        i = ref if ref < len(pairs) - 1 else ref - 1
        sep = text[pairs[i][1].end_mark.index:pairs[i + 1][0].start_mark.index]
        if "#" in sep or sep.count(",") != 1:
            sep = ", "
    else:
        sep = ", "
    entry = _gap(text, key_node, value_node, _key_text(text, key_node, name)) + f'"{token}"'
    at = value_node.end_mark.index
    return text[:at] + sep + entry + text[at:]


def _insert_block(text: str, pairs: list, ref: int, name: str, token: str) -> str:
    newline = "\r\n" if "\r\n" in text else "\n"

    def one_line(i: int) -> bool:
        k, v = pairs[i]
        return (isinstance(v, yaml.ScalarNode) and v.style not in ("|", ">")
                and v.end_mark.line == k.start_mark.line)

    order = [ref] + [i for i in range(len(pairs) - 1, -1, -1) if i != ref]
    chosen = next((i for i in order if one_line(i)), None)
    if chosen is None:  # no simple entry to stand next to: append at the end
        key_node = pairs[0][0] if pairs else None
        line = " " * (key_node.start_mark.column if key_node else 0)
        line += f'{_key_text(text, key_node, name)}: "{token}"'
        lead = "" if not text or text.endswith("\n") else newline
        return text + lead + line + newline
    key_node, value_node = pairs[chosen]
    line = " " * key_node.start_mark.column
    line += _gap(text, key_node, value_node, _key_text(text, key_node, name)) + f'"{token}"'
    eol = text.find("\n", value_node.end_mark.index)
    if eol < 0:
        return text + newline + line + newline
    return text[:eol + 1] + line + newline + text[eol + 1:]


def _check_edit(new_text: str, data: dict, name: str, expected: Any, path: Path) -> None:
    """The edited text must parse to the same settings with only the password changed."""
    try:
        new_data = yaml.safe_load(new_text)
    except yaml.YAMLError:
        new_data = None
    if new_data != {**data, name: expected}:
        raise ConfigError(f"{path}: cannot edit the password in place safely; write `{name}: null` in "
                          "the file by hand and run chg-password again; nothing changed")


def _write_atomic(path: Path, original: bytes, content: bytes) -> None:
    """Replace ``path`` by ``content`` through a temporary file in its folder, keeping its mode."""
    try:
        st = path.stat()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the config file ({exc.strerror}); nothing changed") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        if hasattr(os, "chown") and os.name == "posix":
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass  # not root: the file keeps our ownership, as any editor would do
        if path.read_bytes() != original:
            raise ConfigError(f"{path}: the file changed while chg-password ran; nothing changed, "
                              "run it again")
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ConfigError(f"{path}: cannot write the config file ({exc.strerror}); "
                              "nothing changed") from None
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
