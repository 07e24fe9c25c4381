"""Progress of a dump or a restore: a live display on a terminal, a log line per table otherwise.

Use cases accept either a plain callable ``(table, rows, bytes, seconds)`` called when a table is
done, or a :class:`Reporter` that also hears when a table starts (with the engine's row
estimate) and how far it got.

On a terminal everything written to stderr goes through one rich console (:func:`console`): the
log lines through :class:`ConsoleHandler`, the live bars through :class:`LiveReporter`, so lines
are printed above the bars and the bars are redrawn in place. With ``-j`` there is one bar per
worker (:meth:`Reporter.for_worker`).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable

from rich.console import Console
from rich.text import Text

log = logging.getLogger("albackup")
Done = Callable[[str, int, int, float], None]
_console: Console | None = None


def console() -> Console:
    """The one console of this process for stderr on a terminal (log lines and live bars)."""
    global _console
    if _console is None:
        _console = Console(stderr=True)
    return _console


class ConsoleHandler(logging.Handler):
    """Log records printed through :func:`console`: above a live display, never across it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            console().print(Text(self.format(record)), soft_wrap=True, highlight=False)
        except Exception:  # a log line must never end the program
            self.handleError(record)


class Reporter:
    """Silent by default; subclasses show something."""

    def table_started(self, table: str, estimate: int | None) -> None:
        pass

    def advanced(self, table: str, rows: int, size: int) -> None:
        pass

    def table_done(self, table: str, rows: int, size: int, seconds: float) -> None:
        pass

    def close(self) -> None:
        pass

    def for_worker(self, worker: int) -> "Reporter":
        """The events of worker ``worker`` (0-based) of a ``-j`` run."""
        return self


class _Callback(Reporter):
    def __init__(self, fn: Done) -> None:
        self.fn = fn

    def table_done(self, table: str, rows: int, size: int, seconds: float) -> None:
        self.fn(table, rows, size, seconds)


def as_reporter(progress: Reporter | Done | None) -> Reporter:
    if progress is None:
        return Reporter()
    if isinstance(progress, Reporter):
        return progress
    return _Callback(progress)


class LogReporter(Reporter):
    """Not a terminal: one log line per finished table."""

    def table_done(self, table: str, rows: int, size: int, seconds: float) -> None:
        extra = f", {size:,} bytes" if size else ""
        log.info("table %s: %s rows%s in %.2fs", table, f"{rows:,}", extra, seconds)


class LiveReporter(LogReporter):
    """A terminal: a live line per running table (per worker with ``-j``) with rows of the estimate,
    rows/s and ETA, redrawn in place; a log line per finished table printed above them."""

    def __init__(self, verb: str = "dump") -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeRemainingColumn)

        self._progress = Progress(TextColumn(f"{verb} [bold]{{task.description}}"), BarColumn(),
                                  MofNCompleteColumn(), TaskProgressColumn(),
                                  TextColumn("{task.fields[rate]} rows/s"), TimeRemainingColumn(),
                                  console=console(), transient=True, redirect_stderr=False, redirect_stdout=False)
        self._progress.start()
        self._tasks: dict[Any, Any] = {}
        self._t0: dict[Any, float] = {}
        self._totals: dict[Any, int | None] = {}
        self._workers: dict[int, _WorkerLine] = {}

    def for_worker(self, worker: int) -> Reporter:
        if worker not in self._workers:
            self._workers[worker] = _WorkerLine(self, worker)
        return self._workers[worker]

    def table_started(self, table: str, estimate: int | None) -> None:
        self._start(table, table, estimate)

    def advanced(self, table: str, rows: int, size: int) -> None:
        self._advance(table, rows)

    def table_done(self, table: str, rows: int, size: int, seconds: float) -> None:
        self._done(table)
        super().table_done(table, rows, size, seconds)

    def _start(self, key: Any, label: str, estimate: int | None) -> None:
        self._done(key)
        self._tasks[key] = self._progress.add_task(label, total=estimate or None, rate="-")
        self._t0[key] = time.monotonic()
        self._totals[key] = estimate or None

    def _advance(self, key: Any, rows: int) -> None:
        task = self._tasks.get(key)
        if task is None:
            return
        secs = max(time.monotonic() - self._t0[key], 1e-6)
        total = self._totals.get(key)
        if total is not None and rows > total:       # the estimate was low
            total = self._totals[key] = rows
        self._progress.update(task, completed=rows, total=total, rate=f"{rows / secs:,.0f}")

    def _done(self, key: Any) -> None:
        task = self._tasks.pop(key, None)
        self._totals.pop(key, None)
        if task is not None:
            self._progress.remove_task(task)

    def close(self) -> None:
        self._progress.stop()


class _WorkerLine(Reporter):
    """One worker's line of a :class:`LiveReporter`: the unit it is on, replaced by the next."""

    def __init__(self, live: LiveReporter, worker: int) -> None:
        self.live = live
        self.key = ("worker", worker)
        self.label = f"[{worker + 1}] "

    def table_started(self, table: str, estimate: int | None) -> None:
        self.live._start(self.key, self.label + table, estimate)

    def advanced(self, table: str, rows: int, size: int) -> None:
        self.live._advance(self.key, rows)

    def table_done(self, table: str, rows: int, size: int, seconds: float) -> None:
        self.live._done(self.key)
        LogReporter.table_done(self.live, table, rows, size, seconds)


def for_terminal(quiet: bool, verb: str = "dump") -> Reporter:
    if quiet:
        return Reporter()
    if sys.stderr.isatty():
        return LiveReporter(verb)
    return LogReporter()
