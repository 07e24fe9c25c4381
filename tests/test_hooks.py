"""Tests for albackup.hooks: configuration shapes and running real commands.

Real processes and files; nothing is mocked.
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

import pytest

from albackup import hooks as H
from albackup.errors import ConfigError, DumpError
from albackup.hooks import STAGES, Hook, hooks_from_mapping, merge_hooks, run_hooks

PY = sys.executable
pytestmark = pytest.mark.skipif(os.name != "posix", reason="hooks use process groups and /bin/sh")

DUMP_ENV = ("import json, os, sys; "
            "env = {k: v for k, v in os.environ.items() if k.startswith(('ALBACKUP_', 'MY_'))}; "
            "env['stdin'] = sys.stdin.read(); "
            "json.dump(env, open(sys.argv[1], 'w'))")


def cfg(value, stage: str = "after_dump") -> dict[str, tuple[Hook, ...]]:
    return hooks_from_mapping({stage: value}, "hooks")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie (not reaped where PID 1 does not reap) is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def wait_dead(pid: int, within: float = 3.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def reaper():
    """pids to kill at the end, in case a test fails with a process still running."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass


# --- configuration -----------------------------------------------------------------------------

def test_config_shapes() -> None:
    h = hooks_from_mapping({
        "before_run": ["/usr/local/bin/quiesce", "--all"],
        "before_dump": {"command": "pg_ctl status", "shell": True, "timeout": 60},
        "after_dump": [["/bin/a", "x"], {"command": ["/bin/b"], "env": {"MY_TAG": "nightly", "MY_N": 3}}],
        "after_upload": "notify --to 'ops team'",
        "after_run": [],
        "after_notify": None,
    }, "hooks")
    assert h["before_run"] == (Hook("before_run", ("/usr/local/bin/quiesce", "--all"), None, 300.0, {}),)
    assert h["before_dump"] == (Hook("before_dump", None, "pg_ctl status", 60.0, {}),)
    assert [x.argv for x in h["after_dump"]] == [("/bin/a", "x"), ("/bin/b",)]
    assert dict(h["after_dump"][1].env) == {"MY_TAG": "nightly", "MY_N": "3"}
    assert h["after_upload"][0].argv == ("notify", "--to", "ops team")
    assert h["after_run"] == () and h["after_notify"] == ()
    assert "after_retention" not in h
    assert hooks_from_mapping(None, "hooks") == {}
    assert set(STAGES) == {"before_run", "before_dump", "after_dump", "after_upload", "after_retention",
                           "after_run", "after_notify"}


@pytest.mark.parametrize("value, words", [
    ({"before_backup": ["x"]}, ["hooks", "unknown hook stage before_backup"]),
    (["x"], ["hooks", "expected a mapping"]),
    ({"after_dump": 5}, ["hooks.after_dump", "an integer"]),
    ({"after_dump": ["a", ["b"]]}, ["hooks.after_dump", "mixes"]),
    ({"after_dump": [["a"], {"shell": True}]}, ["hooks.after_dump[1]", "command: is missing"]),
    ({"after_dump": {"command": "x", "shel": True}}, ["hooks.after_dump", "unknown key shel"]),
    ({"after_dump": {"command": ["x"], "shell": True}}, ["hooks.after_dump.command", "string"]),
    ({"after_dump": {"command": "x", "shell": "yes"}}, ["hooks.after_dump.shell", "true or false"]),
    ({"after_dump": {"command": "x", "timeout": 0}}, ["hooks.after_dump.timeout", "greater than 0"]),
    ({"after_dump": {"command": "x", "timeout": True}}, ["hooks.after_dump.timeout"]),
    ({"after_dump": {"command": "x", "env": {"A-B": "1"}}}, ["hooks.after_dump.env", "'A-B'"]),
    ({"after_dump": {"command": "x", "env": {"A": [1]}}}, ["hooks.after_dump.env.A", "a list"]),
    ({"after_dump": {"command": "x", "env": ["A"]}}, ["hooks.after_dump.env", "mapping"]),
    ({"after_dump": "say 'unclosed"}, ["hooks.after_dump", "cannot be split"]),
    ({"after_dump": "   "}, ["hooks.after_dump", "empty"]),
    ({"after_dump": [[]]}, ["hooks.after_dump[0]", "empty"]),
    ({"after_dump": [["a", 1]]}, ["hooks.after_dump[0]", "list of strings"]),
])
def test_config_errors_name_the_key(value, words) -> None:
    with pytest.raises(ConfigError) as ei:
        hooks_from_mapping(value, "hooks")
    for w in words:
        assert w in str(ei.value)
    assert ei.value.exit_code == 3


def test_database_hooks_replace_the_top_level_stage_by_stage() -> None:
    top = hooks_from_mapping({"before_dump": ["/bin/top"], "after_dump": ["/bin/top-after"]}, "hooks")
    db = hooks_from_mapping({"before_dump": ["/bin/db"], "after_dump": []}, "databases.shop.hooks")
    merged = merge_hooks(top, db)
    assert merged["before_dump"][0].argv == ("/bin/db",)
    assert merged["after_dump"] == ()
    assert merge_hooks(top, None) == top
    assert run_hooks(merged, "after_dump") == [] and run_hooks({}, "after_run") == []
    with pytest.raises(ValueError):
        run_hooks(merged, "before_lunch")


# --- the environment ---------------------------------------------------------------------------

def test_hooks_see_their_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "env.json"
    monkeypatch.setenv("ALBACKUP_DATABASE", "stale-from-outside")
    monkeypatch.setenv("MY_INHERITED", "from-albackup")
    h = cfg({"command": [PY, "-c", DUMP_ENV, str(out)],
             "env": {"MY_TAG": "nightly", "ALBACKUP_STAGE": "cannot-override"}})
    assert run_hooks(h, "after_dump", database="shop", backup="/backups/h/shop/20240101T000000Z",
                     status="failed", error="DumpError: disk full") == []
    env = json.loads(out.read_text())
    assert env["ALBACKUP_STAGE"] == "after_dump"
    assert env["ALBACKUP_DATABASE"] == "shop"
    assert env["ALBACKUP_BACKUP"] == "/backups/h/shop/20240101T000000Z"
    assert env["ALBACKUP_STATUS"] == "failed"
    assert env["ALBACKUP_ERROR"] == "DumpError: disk full"
    assert env["ALBACKUP_HOST"] == (socket.gethostname().split(".")[0] or "localhost")
    assert env["MY_TAG"] == "nightly" and env["MY_INHERITED"] == "from-albackup"
    assert env["stdin"] == ""   # stdin is /dev/null

    run_hooks(h, "after_dump", status="backed up")      # RunEntry's status, as the hooks' word
    assert json.loads(out.read_text())["ALBACKUP_STATUS"] == "ok"

    run_hooks(cfg([PY, "-c", DUMP_ENV, str(out)], "before_run"), "before_run", extra={"ALBACKUP_HOST": "db1"})
    env = json.loads(out.read_text())
    assert env["ALBACKUP_STAGE"] == "before_run" and env["ALBACKUP_HOST"] == "db1"
    for name in ("ALBACKUP_DATABASE", "ALBACKUP_BACKUP", "ALBACKUP_STATUS", "ALBACKUP_ERROR"):
        assert env[name] == ""   # set, empty: nothing stale leaks in from albackup's own environment


def test_error_is_one_line_with_passwords_masked(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    error = ("DatabaseUnavailable: cannot connect to postgresql://u:secret@h/db\n"
             "  (psycopg2.OperationalError) timeout; dsn password=secret sslmode=require")
    run_hooks(cfg([PY, "-c", DUMP_ENV, str(out)]), "after_dump", database="shop", status="failed",
              error=error, backup="s3://key:secret@bucket/h/shop/x")
    env = json.loads(out.read_text())
    assert "secret" not in env["ALBACKUP_ERROR"] and "secret" not in env["ALBACKUP_BACKUP"]
    assert "postgresql://u:***@h/db" in env["ALBACKUP_ERROR"]
    assert "\n" not in env["ALBACKUP_ERROR"] and "timeout;" in env["ALBACKUP_ERROR"]


# --- how commands run --------------------------------------------------------------------------

def test_argv_runs_without_a_shell(tmp_path: Path) -> None:
    out, pwned = tmp_path / "arg", tmp_path / "pwned"
    literal = f"a; touch {pwned} $HOME `id` *"
    write_arg = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
    assert run_hooks(cfg([PY, "-c", write_arg, str(out), literal]), "after_dump") == []
    assert out.read_text() == literal and not pwned.exists()
    # a string without shell: true is split into words, still without a shell
    run_hooks(cfg(shlex.join([PY, "-c", write_arg, str(out), literal])), "after_dump")
    assert out.read_text() == literal and not pwned.exists()


def test_shell_true_runs_through_sh(tmp_path: Path) -> None:
    out = tmp_path / "out"
    h = cfg({"command": f'echo "$ALBACKUP_STAGE:$ALBACKUP_DATABASE" > {out}; echo two | tr a-z A-Z >> {out}',
             "shell": True})
    assert run_hooks(h, "after_dump", database="shop") == []
    assert out.read_text() == "after_dump:shop\nTWO\n"


def test_failing_before_hook_raises_dumperror_naming_hook_exit_and_stderr(tmp_path: Path) -> None:
    later = tmp_path / "later"
    h = hooks_from_mapping({"before_dump": [
        [PY, "-c", "import sys; print('on stdout'); sys.stderr.write('first\\ndatabase busy\\n'); sys.exit(3)"],
        ["touch", str(later)],
    ]}, "hooks")
    with pytest.raises(DumpError) as ei:
        run_hooks(h, "before_dump", database="shop")
    msg = str(ei.value)
    assert msg.startswith(f"hook before_dump ({PY}) failed: exit 3: ")
    assert msg.endswith("database busy") and "first" in msg and "on stdout" not in msg
    assert ei.value.exit_code == 9
    assert not later.exists()    # the stage stops at the first failure


def test_failing_after_hook_returns_a_warning_and_the_rest_run(tmp_path: Path) -> None:
    later = tmp_path / "later"
    h = hooks_from_mapping({"after_run": [
        {"command": "echo only-stdout; exit 4", "shell": True},
        ["/nonexistent/albackup-notify", "--x"],
        ["touch", str(later)],
    ]}, "hooks")
    warnings = run_hooks(h, "after_run", status="ok")
    assert warnings == ["hook after_run (echo only-stdout; exit 4) failed: exit 4: only-stdout",
                        "hook after_run (/nonexistent/albackup-notify) failed: command not found"]
    assert later.exists()


def test_command_not_found_is_clear() -> None:
    with pytest.raises(DumpError) as ei:
        run_hooks(cfg(["/nonexistent/quiesce", "--all"], "before_run"), "before_run")
    assert str(ei.value) == "hook before_run (/nonexistent/quiesce) failed: command not found"
    with pytest.raises(DumpError) as ei:
        run_hooks(cfg("albackup-no-such-command-x9 --now", "before_run"), "before_run")
    assert "(albackup-no-such-command-x9) failed: command not found" in str(ei.value)
    with pytest.raises(DumpError) as ei:
        run_hooks(cfg({"command": "albackup-no-such-command-x9", "shell": True}, "before_dump"), "before_dump")
    assert "exit 127 (command not found)" in str(ei.value)


def test_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    warnings = run_hooks(cfg([str(script)]), "after_dump")
    assert len(warnings) == 1 and "permission denied" in warnings[0]


def test_timeout_kills_the_hook_and_its_children(tmp_path: Path, reaper: list[int]) -> None:
    pidfile = tmp_path / "pid"
    h = cfg({"command": f"sleep 60 & echo $! > {pidfile}; wait", "shell": True, "timeout": 1}, "before_dump")
    t0 = time.monotonic()
    with pytest.raises(DumpError) as ei:
        run_hooks(h, "before_dump", database="shop")
    elapsed = time.monotonic() - t0
    child = int(pidfile.read_text())
    reaper.append(child)
    assert "timed out after 1 s" in str(ei.value) and "before_dump" in str(ei.value)
    assert elapsed < 1 + 1.5, elapsed      # SIGTERM did it: no need for the SIGKILL grace
    assert wait_dead(child), "the hook's child `sleep 60` survived the timeout"


def test_timeout_kills_a_hook_that_ignores_sigterm(tmp_path: Path, reaper: list[int]) -> None:
    pidfile = tmp_path / "pid"
    h = cfg({"command": f"trap '' TERM; sleep 60 & echo $! > {pidfile}; wait; wait; wait",
             "shell": True, "timeout": 0.5})
    t0 = time.monotonic()
    warnings = run_hooks(h, "after_dump")
    elapsed = time.monotonic() - t0
    child = int(pidfile.read_text())
    reaper.append(child)
    assert len(warnings) == 1 and "timed out after 0.5 s" in warnings[0]
    assert elapsed < 0.5 + H.KILL_GRACE + 1.5, elapsed
    assert wait_dead(child)


def test_hook_leaving_a_background_program_does_not_hang_the_run(tmp_path: Path, reaper: list[int]) -> None:
    pidfile = tmp_path / "pid"
    h = cfg({"command": f"sleep 60 & echo $! > {pidfile}; echo started", "shell": True, "timeout": 30})
    t0 = time.monotonic()
    assert run_hooks(h, "after_dump") == []
    reaper.append(int(pidfile.read_text()))
    assert time.monotonic() - t0 < H.OUTPUT_GRACE + 1.5


def test_closed_output_but_still_running_times_out(tmp_path: Path) -> None:
    h = cfg({"command": "exec >/dev/null 2>&1; sleep 60", "shell": True, "timeout": 0.5})
    t0 = time.monotonic()
    warnings = run_hooks(h, "after_dump")
    assert len(warnings) == 1 and "timed out" in warnings[0]
    assert time.monotonic() - t0 < 0.5 + 1.5


def test_killed_by_a_signal() -> None:
    warnings = run_hooks(cfg({"command": "kill -9 $$", "shell": True}), "after_dump")
    assert warnings == ["hook after_dump (kill -9 $$) failed: killed by signal SIGKILL (9)"]


def test_lots_of_output_keeps_the_tail() -> None:
    script = "import sys; sys.stdout.write('x' * 100 + '\\n') ; [print('line', i) for i in range(200000)]; " \
             "sys.stderr.write('the last words\\n'); sys.exit(1)"
    t0 = time.monotonic()
    warnings = run_hooks(cfg([PY, "-c", script]), "after_dump")
    assert warnings == [f"hook after_dump ({PY}) failed: exit 1: the last words"]
    assert time.monotonic() - t0 < 10


def test_failure_output_is_masked_and_shell_command_names_are_masked() -> None:
    h = cfg({"command": "echo 'cannot reach postgresql://u:secret@h/db' >&2; false # mysql://a:secret@b/c",
             "shell": True})
    (warning,) = run_hooks(h, "after_dump")
    assert "secret" not in warning and "postgresql://u:***@h/db" in warning


def test_long_shell_command_is_masked_before_it_is_shortened() -> None:
    h = cfg({"command": "curl -fsS https://user:" + "p" * 50 + "@example.invalid/ping; exit 2", "shell": True})
    (warning,) = run_hooks(h, "after_dump")
    assert warning.startswith("hook after_dump (curl -fsS https://user:***@example.invalid/ping; exit 2) failed")
    assert "ppp" not in warning


def test_hook_that_exited_is_not_reported_as_timed_out(tmp_path: Path, reaper: list[int]) -> None:
    pidfile = tmp_path / "pid"    # exits at once; its background program outlives the 1 s timeout
    h = cfg({"command": f"sleep 60 & echo $! > {pidfile}", "shell": True, "timeout": 1}, "before_dump")
    t0 = time.monotonic()
    assert run_hooks(h, "before_dump") == []
    reaper.append(int(pidfile.read_text()))
    assert time.monotonic() - t0 < 1 + 1.5
