"""SIGTERM (systemd, kill) and SIGINT (Ctrl-C) end a run like an error does: the first one raises
:class:`Terminated` in the main thread, the run removes what it wrote, notifies, and the process
exits 128 + the signal number (143, 130). Further signals while that clean-up runs are ignored
(SIGKILL still ends the process at once)."""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any, Iterator

log = logging.getLogger(__name__)
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """The run was stopped by a signal; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGTERM/SIGINT/SIGHUP raises Terminated; later ones are ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            log.warning("%s received while cleaning up: ignored", signal.Signals(signum).name)
            return
        fired.append(signum)
        raise Terminated(signum)

    old = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
