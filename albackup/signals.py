"""SIGTERM (systemd, kill) and SIGINT (Ctrl-C) end a run like an error does: the first one raises
:class:`Terminated` in the main thread, the run removes what it wrote, notifies, and the process
exits 128 + the signal number (143, 130). Further signals while that clean-up runs are ignored
(SIGKILL still ends the process at once)."""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_previous: dict[int, Any] = {}


class Terminated(KeyboardInterrupt):
    """The run was stopped by a signal; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def stop_on_signals() -> None:
    """From now on (until :func:`restore_signals`, see ``cli.main``), the first
    SIGTERM/SIGINT/SIGHUP raises Terminated in the main thread; later ones are ignored."""
    if threading.current_thread() is not threading.main_thread():
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            log.warning("%s received while cleaning up: ignored", signal.Signals(signum).name)
            return
        fired.append(signum)
        raise Terminated(signum)

    for s in HANDLED:
        _previous.setdefault(s, signal.signal(s, handler))


def ignore_signals() -> None:
    """Once the command is done: a signal during the interpreter's exit changes nothing (the
    exit code stays the command's), instead of killing it or raising in the middle of its exit."""
    for s in list(_previous):
        signal.signal(s, signal.SIG_IGN)     # (a Python handler would be reset to the default at exit)


def restore_signals() -> None:
    """Put back the handlers stop_on_signals replaced (when albackup is called in-process)."""
    while _previous:
        s, h = _previous.popitem()
        signal.signal(s, h)
