"""Tests for albackup.notify against real servers on 127.0.0.1: an aiosmtpd SMTP server (STARTTLS
and SMTPS, AUTH required), a threaded http.server for Slack and webhook posts, and real files for
the flag file and the Prometheus textfile. Nothing is mocked.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import importlib.util
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from .conftest import require_component  # noqa: E402

require_component("aiosmtpd", "the SMTP test server aiosmtpd (pip install -r requirements-dev.txt)",
                  installed_by_scripts=True, module_level=True)
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

from albackup import notify as nt  # noqa: E402
from albackup.errors import ConfigError  # noqa: E402
from albackup.notify import Event, event_from_run, notifiers_from_mapping, notify  # noqa: E402

SMTP_USER = "backup@example.test"
SMTP_PW = "smtp-Pw-7d3f9a"
DB_PW = "db-Secret-42c8e1"
HOOK_TOKEN = "T0KEN-b7e2c41d"
AUTH_VALUE = "Bearer hdr-9a8b7c6d"
T0 = dt.datetime(2026, 11, 22, 3, 0, 0, tzinfo=dt.timezone.utc)
T1 = T0 + dt.timedelta(minutes=7, seconds=3)


# ------------------------------------------------------------------------------------ helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db(name: str, status: str = "backed up", *, error: str | None = None, rows: int = 1234,
       size: int = 5 * 1024 * 1024, seconds: float = 3.5) -> dict[str, Any]:
    ok = status == "backed up"
    return {"name": name, "status": status, "backup": f"{name}--20261122T030000Z" if ok else None,
            "rows": rows if ok else 0, "bytes": size if ok else 0, "seconds": seconds, "error": error,
            "destinations": ["s3://bucket/backups?X-Amz-Signature=sig123", "/srv/backups"]}


def failure_event() -> Event:
    err = (f"DumpError: cannot connect to postgresql://app:{DB_PW}@db1.internal:5432/shop "
           f"(password={DB_PW}); smtp password={SMTP_PW}")
    return Event("failure", "albackup on h1: 1 of 3 databases FAILED", "h1", T0, T1,
                 [db("shop", "failed", error=err, seconds=2.25), db("crm"), db("wiki", "not due")],
                 log_file="/var/log/albackup/run.log")


def success_event(t: dt.datetime = T1, **sizes: Any) -> Event:
    return Event("success", "albackup on h1: 2 of 2 databases backed up", "h1", T0, t,
                 [db("shop", **sizes), db("crm", rows=10, size=2048, seconds=1.0)])


def load(mapping: Any, base_dir: Path | None = None) -> list[nt.Notifier]:
    return notifiers_from_mapping(mapping, "notifications", base_dir or Path.cwd())


# ---------------------------------------------------------------------------------- TLS + SMTP

@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    crt = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                          critical=False)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .add_extension(ski, critical=False)
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
           .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "cert.pem", d / "key.pem"


class Sink:
    """aiosmtpd handler keeping every message: (mail_from, rcpt_tos, raw bytes)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"

    def authenticator(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
              and auth_data.password == SMTP_PW.encode())
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)


def _server_ctx(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*map(str, cert))
    return ctx


def _start(sink: Sink, cert: tuple[Path, Path], *, implicit: bool) -> Controller:
    for _ in range(5):
        kwargs: dict[str, Any] = dict(hostname="127.0.0.1", port=free_port(), authenticator=sink.authenticator,
                                      auth_required=True, auth_require_tls=True, server_hostname="localhost")
        if implicit:
            # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; here the whole connection is
            # TLS from the first byte (the client's SMTP_SSL handshake fails otherwise)
            kwargs.update(ssl_context=_server_ctx(cert), auth_require_tls=False)
        else:
            kwargs.update(tls_context=_server_ctx(cert), require_starttls=True)
        ctl = Controller(sink, **kwargs)
        try:
            ctl.start()
            return ctl
        except (OSError, RuntimeError):   # the port was taken in between: try another
            continue
    raise RuntimeError("could not start the SMTP server")


@pytest.fixture
def smtp(cert: tuple[Path, Path]) -> Iterator[tuple[Sink, int]]:
    """An SMTP server with STARTTLS required and AUTH LOGIN/PLAIN required after TLS."""
    sink = Sink()
    ctl = _start(sink, cert, implicit=False)
    yield sink, ctl.port
    ctl.stop()


@pytest.fixture
def smtps(cert: tuple[Path, Path]) -> Iterator[tuple[Sink, int]]:
    """An SMTPS (implicit TLS) server with AUTH required."""
    sink = Sink()
    ctl = _start(sink, cert, implicit=True)
    yield sink, ctl.port
    ctl.stop()


def email_config(port: int, **extra: Any) -> dict[str, Any]:
    return {"type": "email", "on": ["success", "failure", "warning", "stale"], "host": "127.0.0.1",
            "port": port, "security": "starttls", "username": SMTP_USER,
            "password": {"env": "ALB_TEST_SMTP_PW"}, "from": "albackup@h1.example.test",
            "to": ["everyone@example.test"], "success_to": ["log@example.test"],
            "failure_to": ["ops@example.test", "dba@example.test"], "timeout": 10, **extra}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALB_TEST_SMTP_PW", SMTP_PW)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def parse_mail(raw: bytes) -> Any:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_email_failure_goes_to_failure_to_without_secrets(smtp: tuple[Sink, int], cert: tuple[Path, Path]) -> None:
    sink, port = smtp
    [n] = load([email_config(port, ca_file=str(cert[0]))])
    assert notify([n], failure_event()) == []
    [(sender, rcpts, raw)] = sink.messages
    assert sender == "albackup@h1.example.test"
    assert rcpts == ["ops@example.test", "dba@example.test"]
    assert sink.logins, "the client logged in"
    msg = parse_mail(raw)
    body = msg.get_content()
    assert msg["Subject"] == "albackup on h1: 1 of 3 databases FAILED"
    assert msg["To"] == "ops@example.test, dba@example.test"
    assert "DumpError: cannot connect to postgresql://app:***@db1.internal:5432/shop" in body
    assert "shop" in body and "crm" in body and "wiki: not due" in body
    assert "shop: failed after 2.2 s" in body
    assert "crm: backed up as crm--20261122T030000Z, 1,234 rows, 5.0 MiB, 3.5 s" in body
    assert "/var/log/albackup/run.log" in body
    assert "took 7 min 03 s" in body
    for secret in (SMTP_PW, DB_PW, "sig123"):
        assert secret not in body
        assert secret.encode() not in raw


def test_email_success_goes_to_success_to(smtp: tuple[Sink, int], cert: tuple[Path, Path]) -> None:
    sink, port = smtp
    [n] = load([email_config(port, ca_file=str(cert[0]))])
    assert notify([n], success_event()) == []
    [(_, rcpts, raw)] = sink.messages
    assert rcpts == ["log@example.test"]
    body = parse_mail(raw).get_content()
    assert "shop: backed up as shop--20261122T030000Z" in body and "FAILED" not in body


def test_email_kinds_fall_back_to_to(smtp: tuple[Sink, int]) -> None:
    sink, port = smtp
    cfg = email_config(port, tls_verify=False)
    del cfg["success_to"]
    [n] = load([cfg])
    ev = success_event()
    assert notify([n], ev) == []
    assert notify([n], Event("stale", "albackup on h1: shop is stale", "h1", T0, T1, [db("shop", "not due")])) == []
    assert [m[1] for m in sink.messages] == [["everyone@example.test"], ["everyone@example.test"]]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_smtps(smtps: tuple[Sink, int]) -> None:
    sink, port = smtps
    [n] = load([email_config(port, security="ssl", tls_verify=False)])
    assert notify([n], failure_event()) == []
    [(_, rcpts, raw)] = sink.messages
    assert rcpts == ["ops@example.test", "dba@example.test"]
    assert sink.logins
    assert SMTP_PW.encode() not in raw and DB_PW.encode() not in raw


def test_email_wrong_password_is_a_warning(smtp: tuple[Sink, int], monkeypatch: pytest.MonkeyPatch) -> None:
    sink, port = smtp
    monkeypatch.setenv("ALB_TEST_SMTP_PW", "wrong-Pw-123")
    [n] = load([email_config(port, tls_verify=False)])
    [w] = notify([n], failure_event())
    assert w.startswith(f"notification email (127.0.0.1:{port}) failed: SMTP authentication failed (535")
    assert "wrong-Pw-123" not in w
    assert sink.messages == []


def test_email_untrusted_certificate_is_a_warning(smtp: tuple[Sink, int]) -> None:
    sink, port = smtp
    [n] = load([email_config(port)])          # verification on, no ca_file: self-signed is refused
    [w] = notify([n], failure_event())
    assert f"email (127.0.0.1:{port})" in w and "certificate" in w and "ca_file" in w
    assert sink.messages == []


def test_email_connection_refused_and_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    [n] = load([email_config(port, tls_verify=False)])
    t = time.monotonic()
    [w] = notify([n], failure_event())
    assert time.monotonic() - t < 5
    assert w == f"notification email (127.0.0.1:{port}) failed: connection refused"
    monkeypatch.delenv("ALB_TEST_SMTP_PW")
    [n] = load([email_config(port, tls_verify=False)])
    [w] = notify([n], failure_event())
    assert "environment variable ALB_TEST_SMTP_PW is not set" in w


# ------------------------------------------------------------------------------------- HTTP

class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200


@pytest.fixture
def http() -> Iterator[tuple[Recorder, str]]:
    """A threaded HTTP server on 127.0.0.1 recording POSTs; ``rec.status`` is what it answers."""
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            rec.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
            text = b"ok" if rec.status < 400 else b"server exploded"
            self.send_response(rec.status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield rec, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    th.join(5)


def test_slack_posts_text(http: tuple[Recorder, str], monkeypatch: pytest.MonkeyPatch) -> None:
    rec, base = http
    monkeypatch.setenv("ALB_TEST_SLACK", f"{base}/services/T000/B000/{HOOK_TOKEN}")
    [n] = load([{"type": "slack", "url": {"env": "ALB_TEST_SLACK"}}])
    assert notify([n], failure_event()) == []
    assert notify([n], success_event()) == []          # not in the default `on`
    [req] = rec.requests
    assert req["path"] == f"/services/T000/B000/{HOOK_TOKEN}"
    assert req["headers"]["Content-Type"].startswith("application/json")
    payload = json.loads(req["body"])
    assert set(payload) == {"text"}
    text = payload["text"]
    assert "albackup on h1: 1 of 3 databases FAILED" in text
    assert "`shop` FAILED" in text and "DumpError" in text and "`crm` backed up" in text
    assert DB_PW not in text and SMTP_PW not in text and HOOK_TOKEN not in text


def test_webhook_posts_the_event(http: tuple[Recorder, str], tmp_path: Path) -> None:
    rec, base = http
    (tmp_path / "auth.txt").write_text(AUTH_VALUE + "\n")
    os.chmod(tmp_path / "auth.txt", 0o600)
    [n] = load([{"type": "webhook", "url": f"{base}/hook", "on": ["failure", "success"],
                 "headers": {"Authorization": {"file": "auth.txt"}, "X-Origin": "albackup"}}], tmp_path)
    ev = failure_event()
    assert notify([n], ev) == []
    [req] = rec.requests
    assert req["path"] == "/hook"
    assert req["headers"]["Authorization"] == AUTH_VALUE
    assert req["headers"]["X-Origin"] == "albackup"
    body = json.loads(req["body"])
    assert body["kind"] == "failure" and body["host"] == "h1"
    assert body["title"] == ev.title
    assert body["started"] == "2026-11-22T03:00:00+00:00" and body["finished"] == "2026-11-22T03:07:03+00:00"
    assert body["duration_seconds"] == 423.0
    assert body["log_file"] == "/var/log/albackup/run.log"
    assert [d["name"] for d in body["databases"]] == ["shop", "crm", "wiki"]
    shop = body["databases"][0]
    assert shop["status"] == "failed" and shop["error"].startswith("DumpError: cannot connect to postgresql://app:***@")
    assert body["databases"][1] == {**db("crm"), "destinations": ["s3://bucket/backups?X-Amz-Signature=***",
                                                                    "/srv/backups"]}
    raw = req["body"].decode()
    assert DB_PW not in raw and SMTP_PW not in raw and AUTH_VALUE not in raw and "sig123" not in raw


def test_http_500_is_a_warning(http: tuple[Recorder, str], monkeypatch: pytest.MonkeyPatch) -> None:
    rec, base = http
    rec.status = 500
    port = base.rsplit(":", 1)[1]
    monkeypatch.setenv("ALB_TEST_SLACK", f"{base}/services/{HOOK_TOKEN}")
    ns = load([{"type": "webhook", "url": f"{base}/hook"}, {"type": "slack", "url": {"env": "ALB_TEST_SLACK"}}])
    ws = notify(ns, failure_event())
    assert len(rec.requests) == 2
    assert ws == [f"notification webhook (127.0.0.1:{port}) failed: HTTP 500 Internal Server Error: server exploded",
                  f"notification slack (127.0.0.1:{port}) failed: HTTP 500 Internal Server Error: server exploded"]
    assert all(HOOK_TOKEN not in w for w in ws)


def test_redirects_are_not_followed(http: tuple[Recorder, str]) -> None:
    rec, base = http
    rec.status = 307
    [w] = notify(load([{"type": "webhook", "url": f"{base}/hook"}]), failure_event())
    assert "HTTP 307" in w and "redirects are not followed" in w


def test_connection_refused_is_a_quick_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()    # nothing listens there any more
    monkeypatch.setenv("ALB_TEST_SLACK", f"http://127.0.0.1:{port}/services/{HOOK_TOKEN}")
    ns = load([{"type": "webhook", "url": f"http://127.0.0.1:{port}/hook", "timeout": 20},
               {"type": "slack", "url": {"env": "ALB_TEST_SLACK"}}])
    t = time.monotonic()
    ws = notify(ns, failure_event())
    assert time.monotonic() - t < 5
    assert ws == [f"notification webhook (127.0.0.1:{port}) failed: connection refused",
                  f"notification slack (127.0.0.1:{port}) failed: connection refused"]


def test_a_broken_notifier_does_not_stop_a_good_one(http: tuple[Recorder, str], tmp_path: Path) -> None:
    rec, base = http
    dead = free_port()
    ns = load([{"type": "webhook", "url": f"http://127.0.0.1:{dead}/hook"},
               {"type": "prometheus", "path": str(tmp_path / "missing-dir" / "albackup.prom")},
               {"type": "webhook", "url": f"{base}/good"}])
    ws = notify(ns, failure_event())
    assert [r["path"] for r in rec.requests] == ["/good"]
    assert len(ws) == 2
    assert ws[0] == f"notification webhook (127.0.0.1:{dead}) failed: connection refused"
    assert ws[1].startswith(f"notification prometheus ({tmp_path / 'missing-dir' / 'albackup.prom'}) failed: "
                            "No such file or directory")


def test_notify_never_raises_even_for_a_buggy_notifier() -> None:
    class Buggy(nt.Notifier):
        type = "buggy"

        def send(self, event: Event) -> None:
            raise ZeroDivisionError("boom")

    assert notify([Buggy(frozenset({"failure"}))], failure_event()) == [
        "notification buggy failed: ZeroDivisionError: boom"]


# ------------------------------------------------------------------------------------- files

def test_flag_file_is_touched_on_success_only(tmp_path: Path) -> None:
    flag = tmp_path / "last-success"
    [n] = load([{"type": "flag_file", "path": "last-success"}], tmp_path)
    assert notify([n], failure_event()) == []
    assert not flag.exists()
    assert notify([n], success_event()) == []
    assert flag.is_file() and flag.read_bytes() == b""
    os.utime(flag, (1_000_000, 1_000_000))
    for kind in ("failure", "warning", "stale"):
        assert notify([n], Event(kind, "x", "h1", T0, T1, [])) == []
    assert flag.stat().st_mtime == 1_000_000
    assert notify([n], success_event()) == []
    assert abs(flag.stat().st_mtime - time.time()) < 60


def test_flag_file_unwritable_is_a_warning(tmp_path: Path) -> None:
    [n] = load([{"type": "flag_file", "path": str(tmp_path / "no" / "flag")}])
    [w] = notify([n], success_event())
    assert w.startswith(f"notification flag_file ({tmp_path / 'no' / 'flag'}) failed: No such file or directory")


_SAMPLE = re.compile(r'^(albackup_[a-z_]+)\{database="((?:[^"\\]|\\.)*)"\} (\S+)$')


def parse_prom(text: str) -> dict[str, dict[str, float]]:
    """Every line is a HELP, a TYPE or a sample of a declared gauge."""
    out: dict[str, dict[str, float]] = {}
    declared: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind == "gauge"
            declared.add(name)
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        assert m.group(1) in declared
        out.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
    return out


def test_prometheus_file(tmp_path: Path) -> None:
    path = tmp_path / "albackup.prom"
    [n] = load([{"type": "prometheus", "path": "albackup.prom"}], tmp_path)
    assert notify([n], success_event()) == []
    m = parse_prom(path.read_text())
    t1 = T1.timestamp()
    assert m["albackup_last_success_timestamp_seconds"] == {"shop": t1, "crm": t1}
    assert m["albackup_last_run_timestamp_seconds"] == {"shop": t1, "crm": t1}
    assert m["albackup_last_run_success"] == {"shop": 1, "crm": 1}
    assert m["albackup_last_duration_seconds"] == {"shop": 3.5, "crm": 1.0}
    assert m["albackup_last_backup_bytes"] == {"shop": 5 * 1024 * 1024, "crm": 2048}
    assert m["albackup_last_backup_rows"] == {"shop": 1234, "crm": 10}
    assert (path.stat().st_mode & 0o777) == 0o644

    # the next run: shop fails, crm is backed up, wiki is new and not due
    (tmp_path / "before.prom.link").hardlink_to(path)
    before = path.read_text()
    inode = path.stat().st_ino
    t2 = T1 + dt.timedelta(days=1)
    ev = Event("failure", "albackup on h1: 1 of 3 databases FAILED", "h1", T1, t2,
               [db("shop", "failed", error="boom", seconds=9.0), db("crm", rows=11, size=4096, seconds=2.0),
                db("wiki", "not due")])
    assert notify([n], ev) == []
    m = parse_prom(path.read_text())
    assert m["albackup_last_success_timestamp_seconds"] == {"shop": t1, "crm": t2.timestamp()}
    assert m["albackup_last_run_timestamp_seconds"] == {"shop": t2.timestamp(), "crm": t2.timestamp(),
                                                        "wiki": t2.timestamp()}
    assert m["albackup_last_run_success"] == {"shop": 0, "crm": 1, "wiki": 1}
    assert m["albackup_last_duration_seconds"] == {"shop": 9.0, "crm": 2.0}
    assert m["albackup_last_backup_bytes"] == {"shop": 5 * 1024 * 1024, "crm": 4096}
    assert m["albackup_last_backup_rows"] == {"shop": 1234, "crm": 11}
    # written atomically: a new file renamed over the old one (the old inode still has the old text)
    assert path.stat().st_ino != inode
    assert (tmp_path / "before.prom.link").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["albackup.prom", "before.prom.link"]


def test_prometheus_label_escaping_and_stale_refused(tmp_path: Path) -> None:
    [n] = load([{"type": "prometheus", "path": str(tmp_path / "a.prom")}])
    weird = 'we"ird\\name'
    assert notify([n], Event("success", "t", "h1", T0, T1, [db(weird)])) == []
    assert notify([n], Event("success", "t", "h1", T0, T1, [db("other")])) == []
    m = parse_prom((tmp_path / "a.prom").read_text())
    assert set(m["albackup_last_run_success"]) == {r'we\"ird\\name', "other"}   # kept, escaped
    with pytest.raises(ConfigError, match="stale"):
        load([{"type": "prometheus", "path": "a.prom", "on": ["stale"]}], tmp_path)


# ---------------------------------------------------------------------------------- apprise

def test_apprise_without_the_package_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("apprise") is not None:
        pytest.skip("apprise is installed here")
    monkeypatch.setenv("ALB_TEST_APPRISE", f"json://127.0.0.1:1/{HOOK_TOKEN}")
    [n] = load([{"type": "apprise", "urls": [{"env": "ALB_TEST_APPRISE"}]}])
    [w] = notify([n], failure_event())
    assert w == "notification apprise (1 URL) failed: the apprise package is not installed (pip install apprise)"


# ----------------------------------------------------------------------------------- config

def test_config_from_yaml(tmp_path: Path) -> None:
    text = """
notifications:
  - type: email
    on: [failure, success]          # PyYAML reads the key `on` as true: it is handled
    host: smtp.example.com
    username: u@example.com
    password: {env: SMTP_PASSWORD}
    from: albackup@example.com
    to: ops@example.com
  - type: slack
    url: {file: slack-url.txt}
  - type: flag_file
    path: flags/last-success
  - type: prometheus
    path: /var/lib/node_exporter/textfile/albackup.prom
"""
    email_n, slack_n, flag_n, prom_n = load(yaml.safe_load(text)["notifications"], tmp_path)
    assert isinstance(email_n, nt.EmailNotifier) and email_n.on == {"failure", "success"}
    assert (email_n.port, email_n.security, email_n.tls_verify) == (587, "starttls", True)
    assert email_n.recipients_for("failure") == ("ops@example.com",)
    assert slack_n.on == {"failure", "warning", "stale"}
    assert slack_n.target() == f"URL from file {tmp_path / 'slack-url.txt'}"
    assert flag_n.on == {"success"} and flag_n.path == tmp_path / "flags" / "last-success"
    assert prom_n.on == {"success", "failure", "warning"}
    assert load(None) == []


@pytest.mark.parametrize("entry, message", [
    ({"type": "email", "host": "h", "username": "u", "password": "plain", "from": "a@b.c", "to": "o@b.c"},
     "never written in the config"),
    ({"type": "email", "host": "h", "from": "a@b.c"}, "no recipients"),
    ({"type": "email", "host": "h", "from": "a@b.c", "to": "o@b.c", "security": "none", "username": "u",
      "password": {"env": "X"}}, "unencrypted"),
    ({"type": "email", "host": "h", "from": "a@b.c", "to": "o@b.c", "security": "tls"}, "security"),
    ({"type": "email", "host": "h", "from": "a@b.c", "to": "o@b.c", "pasword": {"env": "X"}}, "did you mean password"),
    ({"type": "slack", "url": "https://hooks.slack.com/services/T/B/x"}, "it is a token"),
    ({"type": "webhook", "url": "https://user:pw@h.example.com/x"}, "credentials"),
    ({"type": "webhook", "url": "https://h.example.com/x?token=abc"}, "token"),
    ({"type": "webhook", "url": "ftp://h.example.com/x"}, "http"),
    ({"type": "webhook", "url": "https://h.example.com/x", "headers": {"Authorization": "Bearer x"}},
     "looks like a secret"),
    ({"type": "flag_file", "path": "f", "on": ["failure"]}, "hide it"),
    ({"type": "prometheus", "path": "metrics.txt"}, r"\.prom"),
    ({"type": "pager"}, "expected one of"),
    ({"type": "slack", "url": {"env": "S"}, "on": []}, "non-empty list"),
    ({"type": "slack", "url": {"env": "S"}, "on": ["sucess"]}, "not allowed"),
    ({"type": "apprise", "urls": ["tgram://bottoken/chat"]}, "never written"),
])
def test_config_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load([entry])
    assert info.value.message.startswith("notifications[0]")
    for secret in ("plain", "pw@", "bottoken", "Bearer x"):
        assert secret not in info.value.message


def test_config_not_a_list() -> None:
    with pytest.raises(ConfigError, match="expected a list"):
        load({"type": "slack"})


def test_secrets_stay_out_of_repr(smtp: tuple[Sink, int]) -> None:
    _, port = smtp
    [n] = load([email_config(port, tls_verify=False)])
    assert notify([n], failure_event()) == []
    assert SMTP_PW not in repr(n) and SMTP_PW not in repr(vars(n))


def test_event_from_run() -> None:
    from albackup.jobs import RunEntry, RunResult

    res = RunResult([RunEntry("shop", status="failed", error="DumpError: x", seconds=1.0),
                     RunEntry("crm", status="backed up", backup="b1", rows=3, bytes=10), RunEntry("wiki")])
    ev = event_from_run(res, host="h1", started=T0, finished=T1, log_file="/l")
    assert ev.kind == "failure" and ev.title == "albackup on h1: 1 of 3 databases FAILED"
    assert ev.databases[0]["error"] == "DumpError: x" and "exc" not in ev.databases[0]
    ok = event_from_run(RunResult(res.entries[1:]), host="h1", started=T0, finished=T1)
    assert ok.kind == "success" and ok.title == "albackup on h1: 1 of 2 databases backed up (1 backed up, 1 not due)"
    warn = event_from_run(RunResult(res.entries[1:]), host="h1", started=T0, finished=T1,
                          warnings=["prune failed on /srv"])
    assert warn.kind == "warning" and warn.warnings == ["prune failed on /srv"]
    json.dumps(nt.event_to_dict(ev))


def test_a_failing_scheduled_run_mails_the_failure_without_passwords(smtp: tuple[Sink, int], cert: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    """End to end: jobs.run fails on an unreachable database; the STARTTLS+login server gets the mail."""
    import socket
    from dataclasses import replace

    from albackup import config, jobs
    from albackup.destinations import Destination
    from albackup.retention import Policy

    sink, port = smtp
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    db_pw = "db-pw-planted-7731"
    db = replace(config.url_config(f"postgresql://u:{db_pw}@127.0.0.1:{closed}/shop", name="shop"),
                 retention=Policy(daily=1), destinations=(Destination(str(tmp_path / "dest")),))
    notifiers = load([email_config(port, ca_file=str(cert[0]))], tmp_path)
    cfg = config.RunConfig(scratch=None, databases=(db,), hostname="h1", notifications=tuple(notifiers))
    res = jobs.run(cfg, now=dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc))
    assert not res.ok and res.warnings == []
    assert len(sink.messages) == 1
    _, rcpts, raw = sink.messages[0]
    assert sorted(rcpts) == ["dba@example.test", "ops@example.test"]
    text = parse_mail(raw).get_body(preferencelist=("plain",)).get_content()
    assert "shop" in text and "cannot connect" in text
    assert db_pw not in raw.decode(errors="replace") and SMTP_PW not in raw.decode(errors="replace")
