"""Hooks: commands the user configures, run at the stages of a scheduled ``run``.

Configuration: the run config's top-level ``hooks:`` mapping (hooks apply to every database;
per-database hooks are not read yet, :func:`merge_hooks` is there for them)::

    hooks:
      before_run:  ["/usr/local/bin/quiesce", "--all"]       # an argv list, run without a shell
      before_dump: {command: "pg_ctl status", shell: true, timeout: 60}
      after_dump:
        - ["/usr/local/bin/notify", "--dumped"]               # several commands: a list of them
        - {command: "logger albackup done", env: {TAG: nightly}}

Stages, in the order a run reaches them: ``before_run`` (status ``starting``); per database
``before_dump`` (only when a backup is due; status ``due``), ``after_upload`` (the stored backup's
URL), ``after_retention`` (``ALBACKUP_PRUNED``: the backup ids pruned, space separated) and
``after_dump`` (last for each database, whatever happened: ``ok``, ``not due``, ``failed`` or
``skipped``); then ``after_run`` and, after the notifications went out, ``after_notify``.

A stage's value is one command or a list of commands, run in order. A command is

- a list of strings: the argv, run without a shell (``;``, ``$`` or ``*`` are passed literally);
- a string: split into words with ``shlex`` and run without a shell;
- a mapping ``{command: list | string, shell: false, timeout: 300, env: {NAME: value}}``; with
  ``shell: true`` the command (a string) is run by ``/bin/sh -c``; ``timeout`` is in seconds;
  ``env`` adds environment variables.

Each command gets albackup's environment plus ``env`` plus these variables (always set; empty
when they do not apply to the stage):

=====================  ======================================================================
``ALBACKUP_STAGE``     the stage: ``before_run``, ``before_dump``, ``after_dump``, ...
``ALBACKUP_DATABASE``  the database's name (the stages run per database), else empty
``ALBACKUP_BACKUP``    the backup: its path or URL (passwords masked), else empty
``ALBACKUP_STATUS``    ``starting``, ``due``, ``ok``, ``failed``, ``skipped`` or ``not due``
``ALBACKUP_ERROR``     the error, on one line, passwords in URLs masked; empty when none
``ALBACKUP_HOST``      the host name backups are filed under
=====================  ======================================================================

Standard input is ``/dev/null``; standard output and error are captured (the last lines are
logged at debug level). Each command runs in its own process group (session): when it outlives
its ``timeout`` the whole group is sent SIGTERM, then SIGKILL two seconds later, so commands it
started die with it. After the command exits, albackup waits at most two seconds more for
programs it left running in the background to close its output.

A failing ``before_*`` hook (non-zero exit, killed, timed out, command not found) stops what it
precedes: :func:`run_hooks` raises :class:`~albackup.errors.DumpError` (exit code 9) naming the
hook, e.g. ``hook before_dump (quiesce) failed: exit 3: database busy``, and the later hooks of
the stage are not run. A failing ``after_*`` hook never stops anything: every hook of the stage
runs and the failures are returned as warning strings in the same form.
"""
from __future__ import annotations

import logging
import os
import re
import selectors
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .secrets import mask_secrets
from .errors import ConfigError, DumpError

log = logging.getLogger(__name__)

STAGES = ("before_run", "before_dump", "after_dump", "after_upload", "after_retention", "after_run",
          "after_notify")
STATUSES = ("ok", "failed", "skipped", "not due")
_STATUS_ALIASES = {"backed up": "ok"}   # jobs.RunEntry's word for a database that was dumped
DEFAULT_TIMEOUT = 300.0
KILL_GRACE = 2.0          # SIGTERM → SIGKILL, for the process group of a hook that timed out
OUTPUT_GRACE = 2.0        # after the hook exits, wait this long for background programs' output
KEEP_OUTPUT = 64 * 1024   # bytes of each of stdout/stderr kept (the tail)
DEBUG_LINES = 20          # lines of output logged at debug level
MESSAGE_LINES = 3         # lines of output in a failure message
MAX_ERROR = 4000          # characters of ALBACKUP_ERROR
_KEYS = ("command", "shell", "timeout", "env")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Hook:
    """One command: ``argv`` (run without a shell) or ``shell_cmd`` (run by ``/bin/sh -c``)."""

    stage: str
    argv: tuple[str, ...] | None
    shell_cmd: str | None
    timeout: float = DEFAULT_TIMEOUT
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown hook stage {self.stage!r}")
        if (self.argv is None) == (self.shell_cmd is None):
            raise ValueError("a Hook has exactly one of argv and shell_cmd")
        if self.argv is not None:
            object.__setattr__(self, "argv", tuple(self.argv))
        if not isinstance(self.env, MappingProxyType):
            object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    @property
    def name(self) -> str:
        """How messages name the hook: the program, or the (masked, shortened) shell command."""
        if self.argv is not None:
            return self.argv[0]
        text = " ".join(mask_secrets(self.shell_cmd).split())  # type: ignore[arg-type]
        return text if len(text) <= 60 else text[:57] + "..."

    def command(self) -> list[str]:
        return list(self.argv) if self.argv is not None else ["/bin/sh", "-c", self.shell_cmd or ""]


# ---------------------------------------------------------------- configuration

def hooks_from_mapping(d: Any, keypath: str) -> dict[str, tuple[Hook, ...]]:
    """The hooks of a ``hooks:`` mapping, by stage; shape errors are ConfigError naming the key.

    Only the stages that are configured are in the result; a stage given as an empty list (or
    null) maps to ``()``, so that a database's ``after_dump: []`` switches off the top-level one.
    """
    if d is None:
        return {}
    if not isinstance(d, Mapping):
        raise ConfigError(f"{keypath}: expected a mapping of stages ({', '.join(STAGES)}), got {_kind(d)}")
    unknown = sorted(str(k) for k in d if k not in STAGES)
    if unknown:
        raise ConfigError(f"{keypath}: unknown hook stage {', '.join(unknown)} (stages: {', '.join(STAGES)})")
    out: dict[str, tuple[Hook, ...]] = {}
    for stage in STAGES:
        if stage in d:
            out[stage] = _stage(stage, d[stage], f"{keypath}.{stage}")
    return out


def merge_hooks(base: Mapping[str, tuple[Hook, ...]],
                override: Mapping[str, tuple[Hook, ...]] | None) -> dict[str, tuple[Hook, ...]]:
    """A database's hooks over the top-level ones: a stage the database configures replaces it."""
    return {**base, **(override or {})}


def _stage(stage: str, value: Any, where: str) -> tuple[Hook, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or isinstance(value, Mapping):
        return (_hook(stage, value, where),)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a command (a list of strings, a string or a mapping with "
                          f"command:) or a list of commands, got {_kind(value)}")
    if not value:
        return ()
    if all(isinstance(w, str) for w in value):      # one argv
        return (_hook(stage, value, where),)
    if any(isinstance(w, str) for w in value):
        raise ConfigError(f"{where}: mixes strings and commands; give one argv (a list of strings) "
                          "or a list of commands (each a list of strings or a mapping)")
    return tuple(_hook(stage, item, f"{where}[{i}]") for i, item in enumerate(value))


def _hook(stage: str, value: Any, where: str) -> Hook:
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in _KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {', '.join(unknown)} (keys: {', '.join(_KEYS)})")
        if value.get("command") is None:
            raise ConfigError(f"{where}: command: is missing")
        command, shell = value["command"], value.get("shell", False)
        timeout, env = value.get("timeout", DEFAULT_TIMEOUT), value.get("env") or {}
        if not isinstance(shell, bool):
            raise ConfigError(f"{where}.shell: expected true or false, got {_kind(shell)}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < 1e9:
            raise ConfigError(f"{where}.timeout: expected a number of seconds greater than 0")
        return Hook(stage, *_command(command, shell, f"{where}.command"), float(timeout),
                    _env(env, f"{where}.env"))
    return Hook(stage, *_command(value, False, where), DEFAULT_TIMEOUT, {})


def _command(value: Any, shell: bool, where: str) -> tuple[tuple[str, ...] | None, str | None]:
    if shell:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: with shell: true the command is a string for /bin/sh, got {_kind(value)}")
        if not value.strip():
            raise ConfigError(f"{where}: is empty")
        if "\x00" in value:
            raise ConfigError(f"{where}: contains a NUL character")
        return None, value
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: cannot be split into words ({exc})") from None
    elif isinstance(value, (list, tuple)) and all(isinstance(w, str) for w in value):
        argv = list(value)
    else:
        raise ConfigError(f"{where}: expected a list of strings or a string, got {_kind(value)}")
    if not argv or not argv[0]:
        raise ConfigError(f"{where}: is empty")
    if any("\x00" in w for w in argv):
        raise ConfigError(f"{where}: contains a NUL character")
    return tuple(argv), None


def _env(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of NAME: value, got {_kind(value)}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _ENV_NAME.match(k):
            raise ConfigError(f"{where}: {k!r} is not an environment variable name")
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ConfigError(f"{where}.{k}: expected a string or a number, got {_kind(v)}")
        if "\x00" in str(v):
            raise ConfigError(f"{where}.{k}: contains a NUL character")
        out[k] = str(v)
    return out


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            tuple: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


# ---------------------------------------------------------------- running

def run_hooks(hooks: Mapping[str, tuple[Hook, ...]], stage: str, *, database: str | None = None,
              backup: str | None = None, status: str | None = None, error: str | None = None,
              extra: Mapping[str, str] | None = None) -> list[str]:
    """Run the stage's hooks in order; see the module docstring.

    ``before_*``: the first failure raises DumpError (the later hooks are not run); returns [].
    ``after_*``: every hook runs; the failures are returned as warning strings, never raised.
    ``extra`` adds environment variables (applied last: ``ALBACKUP_HOST`` may be given here).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown hook stage {stage!r}")
    todo = hooks.get(stage) or ()
    if not todo:
        return []
    variables = {
        "ALBACKUP_STAGE": stage,
        "ALBACKUP_DATABASE": _clean(database or ""),
        "ALBACKUP_BACKUP": _clean(mask_secrets(backup or "")),
        "ALBACKUP_STATUS": _clean(_STATUS_ALIASES.get(status or "", status or "")),
        "ALBACKUP_ERROR": one_line(error or ""),
        "ALBACKUP_HOST": _clean(socket.gethostname().split(".")[0] or "localhost"),
    }
    variables.update({str(k): _clean(str(v)) for k, v in (extra or {}).items()})
    warnings: list[str] = []
    for hook in todo:
        try:
            why = _run(hook, variables)
        except Exception as exc:  # noqa: BLE001 - an after_* hook must never stop the run
            why = f"could not be run: {type(exc).__name__}: {mask_secrets(str(exc))}"
        if why is None:
            continue
        message = f"hook {stage} ({hook.name}) failed: {why}"
        if stage.startswith("before_"):
            raise DumpError(message)
        log.debug("%s", message)
        warnings.append(message)
    return warnings


def one_line(text: str) -> str:
    """``text`` on one line, passwords masked, at most MAX_ERROR characters (for ALBACKUP_ERROR)."""
    text = " ".join(mask_secrets(text.replace("\x00", "")).split())   # masked line by line, then joined
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 3] + "..."


def _clean(text: str) -> str:
    return text.replace("\x00", "")


def _run(hook: Hook, variables: Mapping[str, str]) -> str | None:
    """None when the hook succeeded, else why it failed (one line)."""
    env = {**os.environ, **hook.env, **variables}
    argv = hook.command()
    log.debug("hook %s: running %s", hook.stage, mask_secrets(shlex.join(argv)))
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
    except FileNotFoundError:
        return "command not found" if hook.argv is not None else "/bin/sh not found"
    except PermissionError:
        return "permission denied (is it executable?)"
    except OSError as exc:
        return f"cannot start it: {exc.strerror or type(exc).__name__}"
    try:
        out, err, timed_out = _collect(proc, started + hook.timeout)
        if timed_out:
            _kill_group(proc)
        code = proc.wait()
    except BaseException:   # Ctrl-C or a bug: do not leave the hook running
        _kill_group(proc, grace=0.0)
        proc.wait()
        raise
    finally:
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    seconds = time.monotonic() - started
    out_lines, err_lines = _lines(out), _lines(err)
    for label, lines in (("stdout", out_lines), ("stderr", err_lines)):
        if lines:
            log.debug("hook %s (%s) %s, last lines:\n%s", hook.stage, hook.name, label,
                      "\n".join(mask_secrets(x) for x in lines[-DEBUG_LINES:]))
    if timed_out:
        why = f"timed out after {hook.timeout:g} s (killed)"
    elif code == 0:
        log.debug("hook %s (%s): ok in %.2f s", hook.stage, hook.name, seconds)
        return None
    elif code < 0:
        why = f"killed by signal {_signame(-code)}"
    else:
        why = f"exit {code}"
        if hook.shell_cmd is not None and code == 127:
            why += " (command not found)"
        elif hook.shell_cmd is not None and code == 126:
            why += " (command not executable)"
    tail = err_lines[-MESSAGE_LINES:] or out_lines[-MESSAGE_LINES:]
    if tail:
        why += ": " + " | ".join(mask_secrets(x if len(x) <= 200 else x[:197] + "...") for x in tail)
    return why


def _collect(proc: subprocess.Popen, deadline: float) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr (keeping their tails) until both close or the hook has exited for
    OUTPUT_GRACE seconds; (stdout, stderr, timed out). The hook is not reaped here unless it exited."""
    bufs: dict[int, bytearray] = {}
    sel = selectors.DefaultSelector()
    for f in (proc.stdout, proc.stderr):
        assert f is not None
        bufs[f.fileno()] = bytearray()
        sel.register(f.fileno(), selectors.EVENT_READ)
    exited_at: float | None = None
    timed_out = False
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = proc.poll() is None   # exited: what it left behind is not waited for
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now >= exited_at + OUTPUT_GRACE:
                break        # something it started in the background still holds the pipes
            for key, _ in sel.select(min(deadline - now, 0.1)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = bufs[key.fd]
                buf += chunk
                if len(buf) > 2 * KEEP_OUTPUT:
                    del buf[:-KEEP_OUTPUT]
    finally:
        sel.close()
    if not timed_out and exited_at is None:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:   # closed its output, but still running
            timed_out = True
    out = bytes(bufs[proc.stdout.fileno()][-KEEP_OUTPUT:])   # type: ignore[union-attr]
    err = bytes(bufs[proc.stderr.fileno()][-KEEP_OUTPUT:])   # type: ignore[union-attr]
    return out, err, timed_out


def _kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE) -> None:
    """SIGTERM to the hook's process group, SIGKILL after ``grace`` seconds.

    The group id is the hook's pid (start_new_session); it cannot be reused while the hook is
    unreaped or any process of the group lives, so the leader is checked without being reaped."""
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
    if grace > 0:
        end = time.monotonic() + grace
        while time.monotonic() < end and not _gone(proc):
            time.sleep(0.02)
        _signal_group(pgid, signal.SIGKILL)


def _gone(proc: subprocess.Popen) -> bool:
    """Whether the hook has exited, without reaping it (so its pid stays reserved)."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (AttributeError, ChildProcessError):
        return False
    return info is not None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _lines(raw: bytes) -> list[str]:
    return [x.rstrip() for x in raw.decode("utf-8", "replace").splitlines() if x.strip()]


def _signame(n: int) -> str:
    try:
        return f"{signal.Signals(n).name} ({n})"
    except ValueError:
        return str(n)


__all__ = ["STAGES", "Hook", "hooks_from_mapping", "merge_hooks", "run_hooks", "one_line"]
