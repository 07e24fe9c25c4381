"""Progress of a dump or a restore: a live display on a terminal, a log line per table otherwise.

Use cases accept either a plain callable ``(table, rows, bytes, seconds)`` called when a table is
done, or a :class:`Reporter` that also hears when a table starts (with the engine's row
estimate) and how far it got.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable

log = logging.getLogger("albackup")
Done = Callable[[str, int, int, float], None]


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
    """A terminal: a live line per running table with rows of the estimate, rows/s and ETA."""

    def __init__(self, verb: str = "dump") -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeRemainingColumn)

        self._progress = Progress(TextColumn(f"{verb} [bold]{{task.description}}"), BarColumn(),
                                  MofNCompleteColumn(), TaskProgressColumn(),
                                  TextColumn("{task.fields[rate]} rows/s"), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        self._tasks: dict[str, Any] = {}
        self._t0: dict[str, float] = {}
        self._totals: dict[str, int | None] = {}

    def table_started(self, table: str, estimate: int | None) -> None:
        self._tasks[table] = self._progress.add_task(table, total=estimate or None, rate="-")
        self._t0[table] = time.monotonic()
        self._totals[table] = estimate or None

    def advanced(self, table: str, rows: int, size: int) -> None:
        task = self._tasks.get(table)
        if task is None:
            return
        secs = max(time.monotonic() - self._t0[table], 1e-6)
        total = self._totals.get(table)
        if total is not None and rows > total:       # the estimate was low
            total = self._totals[table] = rows
        self._progress.update(task, completed=rows, total=total, rate=f"{rows / secs:,.0f}")

    def table_done(self, table: str, rows: int, size: int, seconds: float) -> None:
        task = self._tasks.pop(table, None)
        self._totals.pop(table, None)
        if task is not None:
            self._progress.remove_task(task)
        super().table_done(table, rows, size, seconds)

    def close(self) -> None:
        self._progress.stop()


def for_terminal(quiet: bool, verb: str = "dump") -> Reporter:
    if quiet:
        return Reporter()
    if sys.stderr.isatty():
        return LiveReporter(verb)
    return LogReporter()
