"""``--low-priority``: make albackup yield the CPU and the disks to everything else.

:func:`lower_priority` raises the process's niceness to at least 10 (``os.nice``) and puts it in
the *idle* I/O scheduling class (``ionice -c3``): it calls the ``ioprio_set`` system call through
ctypes, falls back to the best-effort class at its lowest level (``ionice -c2 -n7``) when the
idle class is refused, and to running ``ionice -c3 -p <pid>`` when the system call is not
available. It never raises: it returns what it applied and what it could not, as strings.

Notes:

- On Linux both settings belong to the calling *thread*; threads and processes started
  afterwards inherit them. So call it early, before worker threads or connection pools start.
- I/O classes only matter to I/O schedulers that honour them (BFQ fully, mq-deadline partly;
  ``none``, common on NVMe, ignores them). Idle-class I/O waits while other I/O is going on;
  on a disk that is never quiet the backup will be slow, which is what was asked for.
- Subprocesses (a secret's ``command``, hooks) inherit the lowered priorities. To lower only a
  child, pass :func:`apply_to_child` as ``preexec_fn`` to :class:`subprocess.Popen` (it uses no
  locks, logging or subprocesses, but ``preexec_fn`` is still unsafe in a process with threads;
  prefixing the command with ``nice -n 10 ionice -c3`` is the thread-safe alternative).
  albackup compresses in-process, so it does not need this itself.

The CLI should call :func:`lower_priority` for ``--low-priority`` right after parsing the command
line and log the strings it returns.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform
import shutil
import subprocess
import sys

log = logging.getLogger(__name__)

NICENESS = 10
IOPRIO_CLASS_SHIFT = 13
IOPRIO_CLASS_BE = 2
IOPRIO_CLASS_IDLE = 3
IOPRIO_WHO_PROCESS = 1
_CLASS_NAMES = {0: "none", 1: "realtime", 2: "best-effort", 3: "idle"}

# ioprio_set syscall numbers (ioprio_get is the next one on all of these)
_SYSCALLS_64 = {"x86_64": 251, "amd64": 251, "aarch64": 30, "arm64": 30, "riscv64": 30,
                "loongarch64": 30, "ppc64": 273, "ppc64le": 273, "s390x": 282}
_SYSCALLS_32 = {"x86_64": 289, "amd64": 289, "i386": 289, "i486": 289, "i586": 289, "i686": 289,
                "aarch64": 314, "arm64": 314, "armv6l": 314, "armv7l": 314, "armv8l": 314,
                "ppc": 273, "ppc64": 273, "s390": 282, "s390x": 282}


def _ioprio_syscall() -> tuple[object, int] | None:
    """(libc's syscall function, ioprio_set's number) on Linux for a known architecture."""
    if not sys.platform.startswith("linux"):
        return None
    table = _SYSCALLS_64 if ctypes.sizeof(ctypes.c_void_p) == 8 else _SYSCALLS_32
    nr = table.get(platform.machine().lower())
    if nr is None:
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_long
    return fn, nr


_SYSCALL = _ioprio_syscall()   # resolved now, so that apply_to_child need not load anything


def _set_ioprio(cls: int, level: int) -> int:
    """0, or the errno of ioprio_set for the calling thread; -1 when there is no syscall."""
    if _SYSCALL is None:
        return -1
    fn, nr = _SYSCALL
    ctypes.set_errno(0)
    rc = fn(ctypes.c_long(nr), ctypes.c_int(IOPRIO_WHO_PROCESS), ctypes.c_int(0),   # type: ignore[operator]
            ctypes.c_int((cls << IOPRIO_CLASS_SHIFT) | level))
    return 0 if rc == 0 else (ctypes.get_errno() or -1)


def io_priority() -> tuple[int, int] | None:
    """(class, level) of the calling thread's I/O priority, or None when it cannot be read."""
    if _SYSCALL is None:
        return None
    fn, nr = _SYSCALL
    rc = fn(ctypes.c_long(nr + 1), ctypes.c_int(IOPRIO_WHO_PROCESS), ctypes.c_int(0))  # type: ignore[operator]
    if rc < 0:
        return None
    return rc >> IOPRIO_CLASS_SHIFT, rc & ((1 << IOPRIO_CLASS_SHIFT) - 1)


def lower_priority() -> list[str]:
    """Niceness ≥ 10 and the idle I/O class; what was applied and warnings, never raises."""
    done: list[str] = []
    done.append(_lower_cpu())
    done.append(_lower_io())
    for line in done:
        log.debug("low priority: %s", line)
    return done


def _lower_cpu() -> str:
    try:
        before = os.nice(0)
        if before >= NICENESS:
            return f"CPU: niceness already {before}"
        after = os.nice(NICENESS - before)
        return f"CPU: niceness {before} -> {after}"
    except (OSError, AttributeError) as exc:
        return f"warning: CPU priority not lowered: {getattr(exc, 'strerror', None) or exc}"


def _lower_io() -> str:
    if _SYSCALL is not None:
        err = _set_ioprio(IOPRIO_CLASS_IDLE, 0)
        if err == 0:
            return "I/O: idle class (ioprio_set)"
        err_be = _set_ioprio(IOPRIO_CLASS_BE, 7)
        if err_be == 0:
            return f"I/O: best-effort class, level 7 (ioprio_set; idle refused: {_errname(err)})"
        why = f"ioprio_set failed: {_errname(err_be)}"
    elif sys.platform.startswith("linux"):
        why = f"ioprio_set not known for {platform.machine() or 'this machine'}"
    else:
        why = f"not supported on {sys.platform}"
    ionice = shutil.which("ionice")
    if ionice is None:
        return f"warning: I/O priority not lowered ({why}; no ionice)"
    try:
        done = subprocess.run([ionice, "-c3", "-p", str(os.getpid())], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"warning: I/O priority not lowered ({why}; ionice: {type(exc).__name__})"
    if done.returncode != 0:
        err_line = (done.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
        return f"warning: I/O priority not lowered ({why}; ionice: exit {done.returncode} {err_line})".rstrip()
    return "I/O: idle class (ionice -c3)"


def _errname(err: int) -> str:
    if err <= 0:
        return "unknown error"
    return os.strerror(err)


def apply_to_child() -> None:
    """For ``preexec_fn``: niceness ≥ 10 and the idle (else best-effort 7) I/O class, in the
    child only; silent, errors ignored. No locks, logging or subprocesses are used."""
    try:
        current = os.nice(0)
        if current < NICENESS:
            os.nice(NICENESS - current)
    except Exception:  # noqa: BLE001 - must not fail the child's start
        pass
    try:
        if _set_ioprio(IOPRIO_CLASS_IDLE, 0) != 0:
            _set_ioprio(IOPRIO_CLASS_BE, 7)
    except Exception:  # noqa: BLE001
        pass


__all__ = ["lower_priority", "apply_to_child", "io_priority"]
