"""One exception tree. Each class carries its exit code; the codes are a contract.

The exit-code table of the README and docs/usage.md is generated from ``exit_code_table()``; a test checks the
codes are unique and that both show them.
"""
from __future__ import annotations


class AlbackupError(Exception):
    """Unexpected internal error (a bug: please report it with --debug output)."""

    exit_code = 1

    def __init__(self, message: str = "") -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class UsageError(AlbackupError):
    """Wrong command-line usage (unknown option, missing argument)."""

    exit_code = 2


class ConfigError(AlbackupError):
    """The configuration file is missing, not YAML/JSON, or has unknown keys or wrong types."""

    exit_code = 3


class DatabaseUnavailable(AlbackupError):
    """A database could not be reached, refused the login, or the URL/driver is wrong."""

    exit_code = 4


class RestoreRefused(AlbackupError):
    """Restore refused: allow_restore not set, the target is the source (test_all), a table to restore already exists (see --clean), --clean would drop an object outside the backup, or lossy without --accept-lossy."""

    exit_code = 5


class TargetIsSource(RestoreRefused):
    """The restore's target is the database being backed up or tested (the same server and
    database, however its URL is spelt): nothing was written."""


class BackupNotFound(AlbackupError):
    """The backup folder or its manifest does not exist (an incomplete backup has no manifest)."""

    exit_code = 6


class ArchiveError(AlbackupError):
    """The backup is damaged or unreadable: bad manifest, checksum mismatch, truncated or corrupt chunk."""

    exit_code = 7


class UnsupportedFormat(AlbackupError):
    """The backup was written in a format version or with a feature this albackup does not know."""

    exit_code = 8


class DumpError(AlbackupError):
    """The dump failed; no backup was left behind."""

    exit_code = 9


class UnreadObject(DumpError):
    """A table, column, index, constraint or view could not be read in full: the dump names it and
    fails (exclude it to dump the rest)."""


class RowTooLarge(DumpError):
    """A row is over the format's frame limit (a single value of more than 32 MiB that is not text
    or binary, such as a large JSON document): the dump names the table and fails."""


class RestoreError(AlbackupError):
    """The restore failed; what it had created in the target was removed."""

    exit_code = 10


class LoadConflict(RestoreError):
    """A load lost a lock conflict with another loading connection (a deadlock, a lock wait
    timeout): nothing of it was kept, and it can be run again."""


class LockTimeout(RestoreError):
    """The restore waited longer than lock_timeout for a lock another session holds."""


class IntegrityError(AlbackupError):
    """Data does not match: row counts, content hashes or referential integrity differ."""

    exit_code = 11


class CompareFailed(AlbackupError):
    """test_all or compare found differences between a database and its copy, or compared nothing."""

    exit_code = 12


class StorageError(AlbackupError):
    """A storage location could not be read or written."""

    exit_code = 13


class CryptoError(AlbackupError):
    """An encrypted backup could not be opened: wrong passphrase or key, or no key given."""

    exit_code = 14


class SecretError(AlbackupError):
    """A passphrase, key or password could not be read from its source (env, file, fd, command)."""

    exit_code = 15


class BackupTooOld(AlbackupError):
    """check: a database's newest complete backup is older than its max_age or missing, or a destination is unreadable, `latest` names no complete backup, or a backup is dated in the future."""

    exit_code = 16


class Locked(AlbackupError):
    """Another albackup run holds the lock of this config or of a destination (the message names it)."""

    exit_code = 17


def all_error_classes() -> list[type[AlbackupError]]:
    out: list[type[AlbackupError]] = []

    def walk(cls: type[AlbackupError]) -> None:
        if "exit_code" in vars(cls):    # a refinement without its own code exits with its parent's
            out.append(cls)
        for sub in cls.__subclasses__():
            walk(sub)

    walk(AlbackupError)
    return sorted(out, key=lambda c: c.exit_code)


def exit_code_table() -> str:
    """Markdown table of exit codes, generated from the classes (kept in the README and docs/usage.md)."""
    lines = ["| exit code | error | meaning |", "|---|---|---|", "| 0 | — | success |"]
    for cls in all_error_classes():
        doc = " ".join((cls.__doc__ or "").split())
        lines.append(f"| {cls.exit_code} | `{cls.__name__}` | {doc} |")
    lines.append("| 130 | — | interrupted (Ctrl-C, SIGINT): what the run had written was removed |")
    lines.append("| 143 | — | stopped by SIGTERM (e.g. systemd): what the run had written was removed |")
    return "\n".join(lines)
