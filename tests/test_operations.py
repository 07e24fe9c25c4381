"""The scheduled run with notifications, hooks and a run log, end to end (real HTTP server, real files)."""
from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from albackup import config, jobs

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc
DB_PASSWORD = "pw-that-must-not-leak-9"


class _Catcher(http.server.BaseHTTPRequestHandler):
    posts: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).posts.append({"path": self.path, "body": body.decode()})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    _Catcher.posts = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Catcher)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", _Catcher.posts
    srv.shutdown()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _db(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');")
    con.commit()
    con.close()
    return path


def _write_cfg(tmp: Path, body: str) -> Path:
    p = tmp / "backups.yaml"
    p.write_text(body)
    os.chmod(p, 0o600)
    return p


def test_successful_run_touches_flag_writes_metrics_runs_hooks(tmp_path: Path, webhook) -> None:
    url, posts = webhook
    src = _db(tmp_path / "shop.sqlite")
    envfile = tmp_path / "hook-env.txt"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\nenv | grep ^ALBACKUP_ | sort >> {envfile}\necho --- >> {envfile}\n")
    hook.chmod(0o700)
    cfg = config.test_all_config(_write_cfg(tmp_path, f"""
hostname: h1
log_dir: {tmp_path / 'logs'}
destinations: [{tmp_path / 'dest'}]
retention: {{daily: 3}}
notifications:
  - {{type: flag_file, path: {tmp_path / 'flag'}}}
  - {{type: prometheus, path: {tmp_path / 'albackup.prom'}}}
  - {{type: webhook, url: "{url}", on: [success, failure]}}
  - {{type: slack, url: {{env: NO_SUCH_WEBHOOK_VAR}}, on: [success]}}
hooks:
  after_dump: ["{hook}"]
  after_upload: ["{hook}"]
databases:
  - name: shop
    driver: sqlite
    database: {src}
"""))
    res = jobs.run(cfg, now=dt.datetime(2026, 4, 1, 1, tzinfo=UTC))
    assert res.ok and res.entries[0].status == "backed up"
    assert (tmp_path / "flag").exists()
    prom = (tmp_path / "albackup.prom").read_text()
    assert 'albackup_last_run_success{database="shop"} 1' in prom
    assert 'albackup_last_backup_rows{database="shop"} 2' in prom
    assert len(posts) == 1 and json.loads(posts[0]["body"])["kind"] == "success"
    # the broken slack notifier is a warning, the run is still a success
    assert any("slack" in w for w in res.warnings) and res.ok
    env = envfile.read_text()
    assert "ALBACKUP_STAGE=after_dump" in env and "ALBACKUP_STAGE=after_upload" in env
    assert "ALBACKUP_DATABASE=shop" in env and "ALBACKUP_HOST=h1" in env and "ALBACKUP_STATUS=ok" in env
    assert f"ALBACKUP_BACKUP={tmp_path / 'dest'}/h1/shop/shop@local--20260401T010000.000Z-" in env


def test_failing_run_notifies_with_the_error_and_no_password(tmp_path: Path, webhook) -> None:
    url, posts = webhook
    cfg = config.test_all_config(_write_cfg(tmp_path, f"""
hostname: h1
destinations: [{tmp_path / 'dest'}]
retention: {{daily: 3}}
notifications:
  - {{type: webhook, url: "{url}"}}
  - {{type: flag_file, path: {tmp_path / 'flag'}}}
databases:
  - name: pg
    url: postgresql://someone:{DB_PASSWORD}@127.0.0.1:{_closed_port()}/x
"""))
    res = jobs.run(cfg, now=dt.datetime(2026, 4, 1, 1, tzinfo=UTC))
    assert not res.ok
    assert len(posts) == 1
    body = json.loads(posts[0]["body"])
    assert body["kind"] == "failure" and "cannot connect" in json.dumps(body)
    assert DB_PASSWORD not in posts[0]["body"]
    assert not (tmp_path / "flag").exists()


def test_failing_pre_hook_stops_the_dump(tmp_path: Path) -> None:
    src = _db(tmp_path / "shop.sqlite")
    cfg = config.test_all_config(_write_cfg(tmp_path, f"""
hostname: h1
destinations: [{tmp_path / 'dest'}]
retention: {{daily: 3}}
hooks:
  before_dump: {{command: "echo not today >&2; exit 3", shell: true}}
databases:
  - name: shop
    driver: sqlite
    database: {src}
"""))
    res = jobs.run(cfg, now=dt.datetime(2026, 4, 1, 1, tzinfo=UTC))
    assert res.entries[0].status == "failed"
    assert "before_dump" in res.entries[0].error and "not today" in res.entries[0].error
    assert not (tmp_path / "dest").exists() or not list((tmp_path / "dest").rglob("manifest.json"))


def test_cli_run_with_a_broken_notifier_keeps_its_exit_code_and_writes_a_log(tmp_path: Path) -> None:
    src = _db(tmp_path / "shop.sqlite")
    cfgfile = _write_cfg(tmp_path, f"""
hostname: h1
log_dir: {tmp_path / 'logs'}
destinations: [{tmp_path / 'dest'}]
retention: {{daily: 3}}
notifications:
  - {{type: webhook, url: "http://127.0.0.1:{_closed_port()}/x", on: [success, failure]}}
databases:
  - name: shop
    driver: sqlite
    database: {src}
""")
    p = subprocess.run([sys.executable, "-m", "albackup", "--cfg", str(cfgfile), "run", "--low-priority"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "webhook" in p.stderr and "failed" in p.stderr      # the warning is shown
    logs = list((tmp_path / "logs").glob("albackup-*.log"))
    assert len(logs) == 1 and oct(logs[0].stat().st_mode & 0o777) == "0o600"
    assert "shop" in logs[0].read_text()


def test_live_progress_survives_several_tables(tmp_path: Path) -> None:
    """The terminal display: a second table after the first one's line was removed (was an IndexError)."""
    from albackup.progress import LiveReporter

    rep = LiveReporter("dump")
    try:
        for t, n in (("a", 10), ("b", 5), ("c", None)):
            rep.table_started(t, n)
            rep.advanced(t, 3, 100)
            rep.advanced(t, 12, 200)      # past a low estimate
            rep.table_done(t, 12, 200, 0.1)
    finally:
        rep.close()
    script = subprocess.run(["script", "-qc", f"{sys.executable} -m albackup dump --url sqlite:///{_db(tmp_path / 's.sqlite')} "
                             f"--backup-dir {tmp_path / 'b'}", "/dev/null"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=60)
    assert script.returncode == 0 and "internal error" not in script.stdout, script.stdout
