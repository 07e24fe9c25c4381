"""What a person sees on a terminal: `dump` and `restore` run in a real terminal (tmux, 160
columns), the screen read back with `capture-pane` while they run and when they end.

The log lines go through the console that draws the live bars: a line is printed above the
bars, never across them; the bars are redrawn in place (one per running table, one per worker
with -j); when the command ends the bars are gone and every line on the screen is whole.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ROOT = Path(__file__).resolve().parents[1]
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) \S")
TIMESTAMP = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) ")
WIDTH = 160


def _build(url: sa.URL) -> None:
    e = sa.create_engine(url, poolclass=NullPool)
    with e.begin() as c:
        for t in ("alpha", "beta", "gamma"):
            c.exec_driver_sql(f"CREATE TABLE {t} (id bigint PRIMARY KEY, a text, b numeric(12,2), c timestamp)")
            c.exec_driver_sql(f"INSERT INTO {t} SELECT g, repeat(md5(g::text), 3), g * 1.5, "
                              f"timestamp '2020-01-01' + g * interval '1 second' FROM generate_series(1, 150000) g")
            c.exec_driver_sql(f"ANALYZE {t}")
    e.dispose()


class Screen:
    """A command in a detached tmux session of WIDTH columns; ``lines()`` is what is on screen."""

    def __init__(self, argv: list[str], tmp: Path) -> None:
        self.name = f"albk-{uuid.uuid4().hex[:8]}"
        env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               "TERM": "xterm-256color", "COLUMNS": str(WIDTH)}
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        cmd = f"cd {shlex.quote(str(tmp))} && env {exports} {shlex.join(argv)}; echo EXIT=$?; sleep 600"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(WIDTH), "-y", "60", cmd],
                       check=True)

    def lines(self) -> list[str]:
        out = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return out.stdout.splitlines()

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def _watch(argv: list[str], tmp: Path, timeout: float = 120) -> tuple[list[list[str]], list[str]]:
    """Screens sampled while the command runs, and the last screen."""
    screen = Screen(argv, tmp)
    samples: list[list[str]] = []
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            lines = screen.lines()
            if any(x.startswith("EXIT=") for x in lines):
                return samples, lines
            samples.append(lines)
            time.sleep(0.05)
        pytest.fail(f"{argv} did not end within {timeout} s; screen:\n" + "\n".join(screen.lines()))
    finally:
        screen.close()


def _check(samples: list[list[str]], final: list[str], verb: str, jobs: int) -> None:
    shown = "\n".join(final)
    assert "EXIT=0" in final, shown
    body = [x for x in final[:final.index("EXIT=0")] if x.strip()]
    # every line on the final screen is whole: a log line with one time stamp, or the result
    for line in body:
        assert len(TIMESTAMP.findall(line)) <= 1, f"two lines written into one:\n{shown}"
        assert "rows/s" not in line, f"a bar was left on the screen:\n{shown}"
    assert any(LOG_LINE.match(x) and "alpha" in x for x in body), shown
    # while it ran: bars redrawn in place, at most one per worker, never mixed with a log line
    bars_seen = 0
    for lines in samples:
        bars = [x for x in lines if x.startswith(f"{verb} ") and "rows/s" in x]
        bars_seen = max(bars_seen, len(bars))
        assert len(bars) <= max(jobs, 1), "\n".join(lines)
        for x in lines:
            assert len(TIMESTAMP.findall(x)) <= 1, "\n".join(lines)
            if "rows/s" in x:
                assert not TIMESTAMP.search(x), "\n".join(lines)
    assert bars_seen >= 1, "no live bar was ever on the screen"
    if jobs > 1:
        assert any(re.match(rf"{verb} \[\d\] ", x) for lines in samples for x in lines), \
            "no worker's bar was seen"


@pytest.mark.parametrize("jobs", [1, 2])
def test_dump_and_restore_on_a_terminal(jobs: int, make_db, tmp_path: Path) -> None:
    src = make_db("postgresql", "term")
    _build(src)
    dst = make_db("postgresql", "termdst")
    py = [sys.executable, "-m", "albackup"]
    out = tmp_path / "backups"
    samples, final = _watch([*py, "dump", "--url", src.render_as_string(hide_password=False),
                             "--backup-dir", str(out), "-j", str(jobs)], tmp_path)
    _check(samples, final, "dump", jobs)
    [backup] = list(out.iterdir())
    samples, final = _watch([*py, "restore", "--url", dst.render_as_string(hide_password=False), "--allow-restore",
                             "--backup-dir", str(backup), "-j", str(jobs)], tmp_path)
    _check(samples, final, "restore", jobs)
