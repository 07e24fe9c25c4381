"""Tests for albackup.runlog (a log file per run) and albackup.priority (--low-priority).

Real files, real loggers and a real subprocess; nothing is mocked.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from albackup import runlog
from albackup.runlog import log_name, log_time, start_run_log, stop_run_log

NOW = dt.datetime(2024, 3, 10, 2, 30, 5, tzinfo=dt.timezone.utc)
posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes and nice are POSIX")


@pytest.fixture
def root_logger():
    """Leave the root logger as it was found, whatever the test did."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    for path in list(runlog._attached):
        stop_run_log(path)
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def touch_log(d: Path, t: dt.datetime) -> Path:
    p = d / log_name(t)
    p.write_text("old run\n")
    return p


def test_names() -> None:
    assert log_name(NOW) == "albackup-20240310T023005Z.log"
    assert log_name(NOW.replace(tzinfo=None)) == "albackup-20240310T023005Z.log"   # naive: UTC
    cet = dt.timezone(dt.timedelta(hours=1))
    assert log_name(NOW.astimezone(cet)) == "albackup-20240310T023005Z.log"
    assert log_time("albackup-20240310T023005Z.log") == NOW
    for bad in ("albackup-20241310T023005Z.log", "albackup-latest.log", "albackup-20240310T023005Z.log.1",
                "other-20240310T023005Z.log"):
        assert log_time(bad) is None


@posix_only
def test_file_and_dir_modes_and_messages_go_in(tmp_path: Path, root_logger: logging.Logger) -> None:
    old_umask = os.umask(0o022)
    try:
        path = start_run_log(tmp_path / "logs" / "run", NOW)
    finally:
        os.umask(old_umask)
    assert path == tmp_path / "logs" / "run" / "albackup-20240310T023005Z.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    logging.getLogger("albackup.jobs").info("shop: backup %s is stored", "20240310T023005Z")
    logging.getLogger("albackup.dump").debug("debug detail %d", 42)
    stop_run_log(path)
    text = path.read_text()
    assert "INFO albackup.jobs: shop: backup 20240310T023005Z is stored" in text
    assert "DEBUG albackup.dump: debug detail 42" in text
    assert text.startswith("20") and "Z " in text.splitlines()[0]   # UTC timestamps on each line


def test_secrets_are_masked_in_the_file(tmp_path: Path, root_logger: logging.Logger) -> None:
    path = start_run_log(tmp_path, NOW)
    log = logging.getLogger("albackup.test")
    log.error("cannot connect to %s", "postgresql://u:hunter2pw@h/db")
    log.warning("literal mysql+pymysql://root:hunter2pw@127.0.0.1/x and odbc PWD=hunter2pw;UID=sa")
    try:
        raise RuntimeError("failed for postgresql://u:hunter2pw@h/db")
    except RuntimeError:
        log.exception("dump of %s failed", "shop")
    log.info("stack", stack_info=True, extra={"x": "postgresql://u:hunter2pw@h/db"})
    stop_run_log(path)
    text = path.read_text()
    assert "hunter2pw" not in text
    assert "cannot connect to postgresql://u:***@h/db" in text
    assert "mysql+pymysql://root:***@127.0.0.1/x" in text and "PWD=***" in text
    assert "RuntimeError: failed for postgresql://u:***@h/db" in text   # the traceback, masked


def test_old_logs_removed_recent_and_current_kept(tmp_path: Path, root_logger: logging.Logger) -> None:
    old = [touch_log(tmp_path, NOW - dt.timedelta(hours=h)) for h in (25, 24.01, 24 * 30)]
    recent = [touch_log(tmp_path, NOW - dt.timedelta(hours=h)) for h in (23.9, 1, 24)]
    future = touch_log(tmp_path, NOW + dt.timedelta(hours=2))
    others = [tmp_path / "albackup-notes.log", tmp_path / "app-20200101T000000Z.log",
              tmp_path / "albackup-20200101T000000Z.log.gz"]
    for p in others:
        p.write_text("not a run log")
    for p in old:   # the age is read from the name, not the modification time
        os.utime(p, (NOW.timestamp() + 3600, NOW.timestamp() + 3600))
    for p in recent:
        os.utime(p, (0, 0))
    path = start_run_log(tmp_path, NOW)
    stop_run_log(path)
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in recent + others + [future, path])

    # a current log with an old timestamp is still never removed; keep can be changed
    old_now = NOW - dt.timedelta(days=3)
    current = start_run_log(tmp_path, old_now, keep=dt.timedelta(hours=1))
    stop_run_log(current)
    assert current.exists()
    path2 = start_run_log(tmp_path, NOW, keep=dt.timedelta(minutes=30))
    stop_run_log(path2)
    assert path2 == path and path.exists() and not current.exists()
    assert sorted(p.name for p in tmp_path.glob("albackup-2*.log")) == [path.name, future.name]


def test_same_second_appends(tmp_path: Path, root_logger: logging.Logger) -> None:
    p1 = start_run_log(tmp_path, NOW)
    logging.getLogger("albackup.t").info("first run")
    stop_run_log(p1)
    p2 = start_run_log(tmp_path, NOW)
    logging.getLogger("albackup.t").info("second run")
    stop_run_log(p2)
    assert p1 == p2 and "first run" in p1.read_text() and "second run" in p1.read_text()


@posix_only
def test_refuses_a_symlink_in_place_of_the_log(tmp_path: Path, root_logger: logging.Logger) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / log_name(NOW)).symlink_to(target)
    with pytest.raises(OSError):
        start_run_log(tmp_path / "logs", NOW)
    assert target.read_text() == "keep me"


def test_stop_detaches_and_restores_levels(tmp_path: Path, root_logger: logging.Logger) -> None:
    console = logging.StreamHandler(sys.stderr)        # like the CLI's: no level of its own
    root_logger.addHandler(console)
    root_logger.setLevel(logging.INFO)
    path = start_run_log(tmp_path, NOW)
    assert root_logger.level == logging.DEBUG and console.level == logging.INFO   # console shows no debug
    handlers = [h for h in root_logger.handlers if getattr(h, "baseFilename", None) == str(path)]
    assert len(handlers) == 1 and handlers[0].level == logging.DEBUG
    stop_run_log(path)
    assert handlers[0] not in root_logger.handlers
    assert handlers[0].stream is None            # closed
    assert root_logger.level == logging.INFO and console.level == logging.NOTSET
    logging.getLogger("albackup.t").warning("after the run")
    assert "after the run" not in path.read_text()
    stop_run_log(path)                           # a second stop is harmless
    root_logger.removeHandler(console)


# --- priority ----------------------------------------------------------------------------------

@posix_only
def test_lower_priority_in_a_subprocess() -> None:
    code = ("import json, os; from albackup.priority import lower_priority, io_priority; "
            "before = os.nice(0); applied = lower_priority(); again = lower_priority(); "
            "print(json.dumps({'before': before, 'after': os.nice(0), 'applied': applied, "
            "'again': again, 'io': io_priority()}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert r["after"] >= 10 and r["after"] >= r["before"]
    assert len(r["applied"]) == 2 and r["applied"][0].startswith("CPU:")
    assert r["again"][0].startswith("CPU: niceness already")     # idempotent: not 20
    if sys.platform.startswith("linux") and r["applied"][1].startswith("I/O:") and r["io"] is not None:
        assert r["io"] in ([3, 0], [2, 7])
    assert os.nice(0) < 10 or r["before"] >= 10    # the test process itself is untouched


@posix_only
def test_apply_to_child_as_preexec_fn() -> None:
    from albackup.priority import apply_to_child
    done = subprocess.run([sys.executable, "-c", "import os; print(os.nice(0))"], capture_output=True,
                          text=True, timeout=60, preexec_fn=apply_to_child)
    assert done.returncode == 0 and int(done.stdout) >= 10
