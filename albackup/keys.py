"""Where a backup's keys come from: the config's ``encryption`` section and the command line.

A passphrase is never written in the config or given on the command line: it comes from an
environment variable, a file, a file descriptor or a command (``secrets.SecretSource``).
Public keys (recipients) are not secret and may be written inline or read from a file.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError
from .secrets import SecretSource, from_mapping

ENCRYPTION_KEYS = frozenset({"passphrase", "recipients", "identity", "scrypt_n"})


@dataclass(frozen=True)
class EncryptionConfig:
    passphrase: SecretSource | None = None
    recipients: tuple[str, ...] = ()          # "albackup-public-key-1:…" texts
    identity: SecretSource | None = None      # where the private key text is read (restore, verify)
    scrypt_n: int = 2 ** 15

    @property
    def writes_encrypted(self) -> bool:
        return self.passphrase is not None or bool(self.recipients)

    @property
    def can_read(self) -> bool:
        return self.passphrase is not None or self.identity is not None

    @property
    def expects_encrypted(self) -> bool:
        """Any key configured: an unencrypted backup here would be a substitute."""
        return self.writes_encrypted or self.can_read

    def merged(self, other: "EncryptionConfig") -> "EncryptionConfig":
        """Command-line settings (``other``) over the config's."""
        return EncryptionConfig(other.passphrase or self.passphrase, self.recipients + other.recipients,
                                other.identity or self.identity, self.scrypt_n)


NONE = EncryptionConfig()


def _recipient(text: Any, keypath: str, base_dir: Path) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{keypath}: expected a public key text or @FILE")
    text = text.strip()
    if text.startswith("@"):
        p = Path(os.path.expanduser(text[1:]))
        p = p if p.is_absolute() else base_dir / p
        try:
            text = p.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{keypath}: cannot read public key file {p} ({exc.strerror})") from None
    from .crypto import load_public_key

    load_public_key(text, keypath)
    return text


def encryption_from_mapping(d: Any, keypath: str, base_dir: Path) -> EncryptionConfig:
    if d is None:
        return NONE
    if not isinstance(d, Mapping):
        raise ConfigError(f"{keypath}: expected a mapping with passphrase / recipients / identity")
    unknown = sorted(set(d) - ENCRYPTION_KEYS)
    if unknown:
        raise ConfigError(f"{keypath}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(ENCRYPTION_KEYS))}")
    pw = d.get("passphrase")
    if isinstance(pw, str):
        raise ConfigError(f"{keypath}.passphrase: a passphrase is never written in the config; give "
                          "{env: NAME}, {file: PATH}, {fd: N} or {command: CMD}")
    passphrase = None if pw is None else _sourced(pw, f"{keypath}.passphrase", base_dir)
    ident = d.get("identity")
    identity = None if ident is None else _sourced(ident, f"{keypath}.identity", base_dir)
    recips = d.get("recipients") or []
    if isinstance(recips, str):
        recips = [recips]
    if not isinstance(recips, list):
        raise ConfigError(f"{keypath}.recipients: expected a list of public keys")
    recipients = tuple(_recipient(r, f"{keypath}.recipients[{i}]", base_dir) for i, r in enumerate(recips))
    n = d.get("scrypt_n", 2 ** 15)
    if not isinstance(n, int) or isinstance(n, bool) or n < 2 ** 10 or n > 2 ** 18 or n & (n - 1):
        raise ConfigError(f"{keypath}.scrypt_n: expected a power of two from 1024 to 262144")
    return EncryptionConfig(passphrase, recipients, identity, n)


def _sourced(value: Any, keypath: str, base_dir: Path) -> SecretSource:
    src = from_mapping(value, keypath)
    if src.file and not Path(os.path.expanduser(src.file)).is_absolute():
        from dataclasses import replace

        src = replace(src, file=str(base_dir / src.file))
    return src


@dataclass
class CliKeys:
    """The key options of the command line, before they become an EncryptionConfig."""

    passphrase_env: str | None = None
    passphrase_file: str | None = None
    passphrase_fd: int | None = None
    passphrase_command: str | None = None
    recipients: tuple[str, ...] = ()
    key_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self) -> EncryptionConfig:
        given = {k: v for k, v in (("env", self.passphrase_env), ("file", self.passphrase_file),
                                   ("fd", self.passphrase_fd), ("command", self.passphrase_command))
                 if v is not None}
        passphrase = from_mapping(given, "--passphrase-*") if given else None
        identity = SecretSource(file=self.key_file, where="--key-file") if self.key_file else None
        recips = tuple(_recipient(r, "--recipient", Path.cwd()) for r in self.recipients)
        return EncryptionConfig(passphrase, recips, identity)


def keyring(enc: EncryptionConfig) -> Any:
    """A crypto.Keyring from the configured passphrase and private key (None: nothing given)."""
    if not enc.can_read:
        return None
    from .crypto import Keyring, load_private_key

    passphrases = [enc.passphrase.secret()] if enc.passphrase else []
    keys = [load_private_key(enc.identity.secret(), enc.identity.describe())] if enc.identity else []
    return Keyring(passphrases, keys)


def new_backup_encryption(enc: EncryptionConfig) -> Any:
    """archive.Encryption for a new backup, or None when the config does not encrypt."""
    if not enc.writes_encrypted:
        return None
    from .archive import Encryption
    from .crypto import load_public_key, new_encryption

    passphrases = [enc.passphrase.secret()] if enc.passphrase else []
    recipients = [load_public_key(r) for r in enc.recipients]
    data_key, header = new_encryption(passphrases, recipients, uuid.uuid4(), scrypt_n=enc.scrypt_n)
    return Encryption(data_key, header)
