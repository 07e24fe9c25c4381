"""The storage layer: one conformance suite run against a local folder, moto and SeaweedFS (both
real S3 servers on 127.0.0.1, started by tests/s3servers.py), then S3 failure cases: wrong
credentials, a checksum the server refuses, a missing bucket, a server that is gone.

No boto3 call is patched or mocked: the S3 tests talk HTTP to the servers.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from albackup.errors import ConfigError, StorageError
from albackup.secrets import mask_secrets
from albackup.storage import LocalStorage, ObjectInfo, Storage, StorageOptions, open_storage
from albackup.storage.base import GiB, MiB, S3_MAX_PARTS
from albackup.storage.s3 import S3Storage, part_size_for

from . import s3servers
from .s3servers import loopback_only  # noqa: F401  (autouse fixture)

BUCKET = "albackup-test"
PART = 5 * MiB                       # S3's smallest part: keeps the multipart tests small and fast
BIG = 12 * MiB + 12345               # three parts of 5 MiB, the last one short
BACKUP = "shop@db1--20261122T125807Z"


# ---------------------------------------------------------------- servers and backends

@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3servers.S3Server]:
    yield from s3servers.running_moto(tmp_path_factory, BUCKET)


@pytest.fixture(scope="module")
def seaweed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3servers.S3Server]:
    server = s3servers.start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        s3servers.create_bucket(server, BUCKET)
        yield server
    finally:
        server.stop()


@dataclass
class Backend:
    kind: str
    storage: Storage
    server: s3servers.S3Server | None = None
    prefix: str = ""

    def raw_key(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def pending_uploads(self) -> list[dict[str, Any]]:
        assert self.server is not None
        r = self.server.client().list_multipart_uploads(Bucket=BUCKET, Prefix=self.prefix + "/")
        return r.get("Uploads", []) or []


def s3_backend(kind: str, server: s3servers.S3Server, **opts: Any) -> Backend:
    prefix = f"t-{secrets.token_hex(6)}"
    options = server.options(part_size=PART, **opts)
    return Backend(kind, open_storage(f"s3://{BUCKET}/{prefix}", options), server, prefix)


@pytest.fixture(params=["local", "moto", "seaweedfs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        b = Backend("local", open_storage(str(tmp_path / "store")))
    else:
        server = request.getfixturevalue("moto_server" if request.param == "moto" else "seaweed_server")
        b = s3_backend(request.param, server)
    yield b
    b.storage.close()


def write_file(path: Path, size: int, seed: int = 0) -> str:
    """A file of random bytes; returns its SHA-256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(left, MiB))
            f.write(b)
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- conformance: every backend

def test_put_get_bytes_exists_stat(backend: Backend) -> None:
    st = backend.storage
    assert not st.exists("a/b.txt")
    info = st.put_bytes("a/b.txt", b"hello")
    assert isinstance(info, ObjectInfo) and info.key == "a/b.txt" and info.size == 5 and info.sha256 == sha(b"hello")
    assert st.exists("a/b.txt")
    assert not st.exists("a")            # a folder is not an object
    assert st.get_bytes("a/b.txt") == b"hello"
    st.put_bytes("a/b.txt", b"replaced, longer")
    assert st.get_bytes("a/b.txt") == b"replaced, longer"
    s = st.stat("a/b.txt")
    assert s.size == 16 and s.key == "a/b.txt" and s.last_modified is not None
    assert s.sha256 == sha(b"replaced, longer")
    st.put_bytes("empty", b"")
    assert st.get_bytes("empty") == b"" and st.stat("empty").size == 0


def test_put_file_download_and_stream(backend: Backend, tmp_path: Path) -> None:
    st = backend.storage
    src = tmp_path / "src.bin"
    digest = write_file(src, 300_000)
    info = st.put_file(f"{BACKUP}/data/00001-00001.chunk", src, sha256=digest)
    assert info.size == 300_000 and info.sha256 == digest
    assert st.stat(f"{BACKUP}/data/00001-00001.chunk").sha256 == digest
    # without an expected digest the layer computes and records it
    st.put_file("no-expectation.bin", src)
    assert st.stat("no-expectation.bin").sha256 == digest

    dest = tmp_path / "out" / "deeper" / "copy.bin"
    got = st.download(f"{BACKUP}/data/00001-00001.chunk", dest)
    assert got.size == 300_000 and got.sha256 == digest
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.bin"]   # no temporary file left
    # a second download replaces the file
    st.put_bytes("small", b"x")
    st.download("small", dest)
    assert dest.read_bytes() == b"x"

    with st.open_read(f"{BACKUP}/data/00001-00001.chunk") as f:
        head = f.read(10)
        rest = f.read()
    assert head + rest == src.read_bytes()


def test_list_and_list_dirs(backend: Backend) -> None:
    st = backend.storage
    keys = [
        f"{BACKUP}/manifest.json",
        f"{BACKUP}/data/00001-00001.chunk",
        f"{BACKUP}/data/00002-00001.chunk",
        "shop@db1--20261123T000000Z/manifest.json",
        "other@db2--20261123T000000Z-2/data/00001-00001.chunk",
        "top.txt",
    ]
    for i, k in enumerate(keys):
        st.put_bytes(k, b"x" * i)
    listed = st.list()
    assert [o.key for o in listed] == sorted(keys)
    assert {o.key: o.size for o in listed} == {k: i for i, k in enumerate(keys)}
    assert all(o.last_modified is not None for o in listed)
    assert [o.key for o in st.list("shop@")] == sorted(k for k in keys if k.startswith("shop@"))
    assert [o.key for o in st.list(f"{BACKUP}/data/")] == sorted(k for k in keys if "/data/" in k and BACKUP in k)
    assert [o.key for o in st.list(f"{BACKUP}/data/00002")] == [f"{BACKUP}/data/00002-00001.chunk"]
    assert st.list("nothing/here/") == [] and st.list("zzz") == []

    assert st.list_dirs() == sorted([BACKUP, "shop@db1--20261123T000000Z", "other@db2--20261123T000000Z-2"])
    assert st.list_dirs("") == st.list_dirs()
    assert st.list_dirs(BACKUP) == [f"{BACKUP}/data"]
    assert st.list_dirs(BACKUP + "/") == [f"{BACKUP}/data"]
    assert st.list_dirs(f"{BACKUP}/data") == []
    assert st.list_dirs("missing") == []


def test_delete_and_delete_prefix(backend: Backend) -> None:
    st = backend.storage
    for k in ("b1/data/1", "b1/data/2", "b1/manifest.json", "b10/manifest.json", "keep.txt"):
        st.put_bytes(k, k.encode())
    st.delete("keep.txt")
    assert not st.exists("keep.txt")
    st.delete("keep.txt")                 # deleting what is not there is fine
    st.delete("never/was")
    assert st.delete_prefix("b1/") == 3   # a folder prefix: b10 is not touched
    assert [o.key for o in st.list()] == ["b10/manifest.json"]
    assert st.list_dirs() == ["b10"]      # no empty folder left behind
    assert st.delete_prefix("b1/") == 0
    assert st.delete_prefix("b") == 1     # a plain string prefix
    assert st.list() == [] and st.list_dirs() == []
    with pytest.raises(StorageError, match="refusing to delete everything"):
        st.delete_prefix("")


def test_missing_objects(backend: Backend, tmp_path: Path) -> None:
    st = backend.storage
    for call in (lambda: st.get_bytes("nope/x"), lambda: st.stat("nope/x"), lambda: st.open_read("nope/x")):
        with pytest.raises(StorageError) as ei:
            call()
        assert ei.value.not_found and "nope/x" in str(ei.value)  # type: ignore[attr-defined]
        assert "\n" not in str(ei.value)
    dest = tmp_path / "d" / "x"
    with pytest.raises(StorageError):
        st.download("nope/x", dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with pytest.raises(StorageError, match="cannot read local file"):
        st.put_file("k", tmp_path / "does-not-exist")


def test_unicode_and_at_in_keys(backend: Backend, tmp_path: Path) -> None:
    st = backend.storage
    keys = [
        "données@hôte--20261122T125807Z/data/00001-00001.chunk",
        "ファイル/名前 with spaces+plus=eq&amp;%20.bin",
        "emoji 🐘@db/manifest.json",
        "a@b@c/d,e;f'g(h)[i]~!$",
    ]
    for k in keys:
        st.put_bytes(k, k.encode())
    assert [o.key for o in st.list()] == sorted(keys)
    for k in keys:
        assert st.exists(k) and st.get_bytes(k) == k.encode() and st.stat(k).sha256 == sha(k.encode())
    assert st.list_dirs() == sorted(k.split("/")[0] for k in keys)
    src = tmp_path / "f"
    digest = write_file(src, 1000)
    assert st.put_file("ü/@/ß.bin", src, sha256=digest).sha256 == digest
    assert st.list("ü/") == [st.list("ü/@/ß")[0]]
    assert st.delete_prefix("données@") == 1


def test_multipart_large_file(backend: Backend, tmp_path: Path) -> None:
    st = backend.storage
    src = tmp_path / "big.bin"
    digest = write_file(src, BIG, seed=1)
    info = st.put_file(f"{BACKUP}/data/00003-00001.chunk", src, sha256=digest)
    assert info.size == BIG and info.sha256 == digest
    s = st.stat(f"{BACKUP}/data/00003-00001.chunk")
    assert s.size == BIG and s.sha256 == digest
    if backend.server is not None:
        assert s.etag and s.etag.endswith("-3")          # it did go up in three parts
        assert backend.pending_uploads() == []
    dest = tmp_path / "back.bin"
    assert st.download(f"{BACKUP}/data/00003-00001.chunk", dest).sha256 == digest
    assert dest.stat().st_size == BIG
    # no expected digest: computed before the upload (it goes into the metadata) and checked
    assert st.put_file("again.bin", src).sha256 == digest
    assert st.stat("again.bin").sha256 == digest


def test_wrong_expected_sha256_stores_nothing(backend: Backend, tmp_path: Path) -> None:
    st = backend.storage
    wrong = "0" * 64
    small, big = tmp_path / "small", tmp_path / "big"
    write_file(small, 1000)
    write_file(big, BIG, seed=2)
    st.put_bytes("k-big", b"previous content")
    for path, key in ((small, "k-small"), (big, "k-big")):
        with pytest.raises(StorageError) as ei:
            st.put_file(key, path, sha256=wrong)
        assert ei.value.code == "ChecksumMismatch" and key in str(ei.value)  # type: ignore[attr-defined]
    assert not st.exists("k-small")
    assert st.get_bytes("k-big") == b"previous content"     # the old object is untouched
    if backend.server is not None:
        assert backend.pending_uploads() == []                # the multipart upload was aborted
    else:
        assert sorted(os.listdir(st.root)) == ["k-big"]        # type: ignore[attr-defined]
    with pytest.raises(StorageError, match="64 hex digits"):
        st.put_file("k", small, sha256="abc")


def test_damaged_object_detected_on_read(backend: Backend, tmp_path: Path) -> None:
    """The recorded SHA-256 is checked when an object is read to its end."""
    st = backend.storage
    st.put_bytes("obj", b"original content")
    if backend.server is None:
        path = st.root / "obj"  # type: ignore[attr-defined]
        with open(path, "r+b") as f:                       # same inode: the recorded sha256 stays
            f.write(b"tampered")
        if st.stat("obj").sha256 is None:
            pytest.skip("this file system keeps no extended attributes: no recorded SHA-256")
    else:
        backend.server.client().put_object(Bucket=BUCKET, Key=backend.raw_key("obj"), Body=b"tampered content",
                                           Metadata={"sha256": sha(b"original content")})
    with pytest.raises(StorageError, match="SHA-256 mismatch") as ei:
        st.get_bytes("obj")
    assert ei.value.code == "ChecksumMismatch"  # type: ignore[attr-defined]
    dest = tmp_path / "dl"
    with pytest.raises(StorageError, match="SHA-256 mismatch"):
        st.download("obj", dest)
    assert not dest.exists()


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../x", "a/../b", "a/./b", "dir/", "nul\x00", "tab\tkey"])
def test_invalid_keys(backend: Backend, key: str) -> None:
    with pytest.raises(StorageError, match="invalid storage key"):
        backend.storage.put_bytes(key, b"x")
    with pytest.raises(StorageError, match="invalid storage key"):
        backend.storage.exists(key)


# ---------------------------------------------------------------- local folder specifics

def test_local_permissions_and_temp_files(tmp_path: Path) -> None:
    st = open_storage(f"file://{tmp_path}/root")
    assert isinstance(st, LocalStorage)
    st.put_bytes("a/b/c", b"x")
    src = tmp_path / "src"
    src.write_bytes(b"y" * 10)
    os.chmod(src, 0o644)
    st.put_file("a/f", src)
    root = tmp_path / "root"
    for p in (root, root / "a", root / "a" / "b"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700
    for p in (root / "a" / "b" / "c", root / "a" / "f"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    (root / "a" / ".albk-tmp-0123456789abcdef").write_bytes(b"half written")
    (root / "z").mkdir()                                     # an empty folder holds no object
    assert [o.key for o in st.list()] == ["a/b/c", "a/f"]
    assert st.list_dirs() == ["a"] and st.list_dirs("a") == ["a/b"]


# ---------------------------------------------------------------- URLs and options

def test_open_storage_urls(tmp_path: Path) -> None:
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    assert isinstance(open_storage(tmp_path), LocalStorage)
    assert open_storage(f"file://{tmp_path}/x%20y").root == tmp_path / "x y"  # type: ignore[attr-defined]
    assert open_storage(f"file://localhost{tmp_path}").root == tmp_path  # type: ignore[attr-defined]
    s3 = open_storage("s3://my-bucket/some/prefix/")
    assert isinstance(s3, S3Storage) and s3.bucket == "my-bucket" and s3.prefix == "some/prefix"
    assert s3.url == "s3://my-bucket/some/prefix"
    root = open_storage("s3://my-bucket")
    assert isinstance(root, S3Storage) and root.prefix == ""
    for bad, msg in [
        ("", "empty"), ("ftp://host/x", "unsupported scheme"), ("file://otherhost/x", "local path"),
        ("s3://ab", "not a valid bucket"), ("s3://bucket:9000/x", "no port"),
        ("s3://bucket/x?region=eu", "no \\?query"), ("s3:bucket/x", "s3://bucket/prefix"),
        ("s3://bucket/a/../b", "invalid prefix"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            open_storage(bad)
    with pytest.raises(ConfigError) as ei:
        open_storage("s3://AKIAEXAMPLE:hunter2secret@bucket/x")
    assert "hunter2secret" not in str(ei.value) and "do not put credentials" in str(ei.value)


def test_urls_are_masked() -> None:
    assert mask_secrets("s3://AKIA:hunter2@bucket/p") == "s3://AKIA:***@bucket/p"
    assert mask_secrets("https://u:p%40ss@host:9000/x?X-Amz-Signature=abc&part=1&token=t") == \
        "https://u:***@host:9000/x?X-Amz-Signature=***&part=1&token=***"
    assert mask_secrets("/var/backups/a:b@c") == "/var/backups/a:b@c"
    assert mask_secrets("s3://bucket/prefix") == "s3://bucket/prefix"
    assert "pw" not in mask_secrets("http://u:pw@host:99999999/x")


def test_options_repr_and_validation() -> None:
    o = StorageOptions(access_key_id="AKIAEXAMPLE", secret_access_key="hunter2secret", session_token="tok3n",
                       endpoint_url="http://user:pw@127.0.0.1:9000", region="eu-west-1")
    text = repr(o) + str(o)
    for secret in ("hunter2secret", "tok3n", "AKIAEXAMPLE", ":pw@"):
        assert secret not in text
    assert "region='eu-west-1'" in text and "***" in text
    for kw, msg in [
        (dict(part_size=MiB), "part_size"), (dict(part_size=6 * GiB), "part_size"),
        (dict(multipart_threshold=10), "multipart_threshold"), (dict(max_attempts=0), "max_attempts"),
        (dict(server_side_encryption="rot13"), "server_side_encryption"),
        (dict(kms_key_id="k"), "kms_key_id"), (dict(access_key_id="a"), "go together"),
        (dict(addressing_style="sideways"), "addressing_style"), (dict(storage_class="cheap"), "storage_class"),
        (dict(endpoint_url="127.0.0.1:9000"), "endpoint_url"), (dict(connect_timeout=0), "connect_timeout"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            open_storage("s3://bucket/x", StorageOptions(**kw))  # type: ignore[arg-type]


def test_part_size_for_large_files() -> None:
    assert part_size_for(BIG, PART) == PART
    assert part_size_for(6 * GiB, 64 * MiB) == 64 * MiB                   # 96 parts
    for size in (700 * GiB, 5 * 1024 * GiB):                              # 64 MiB would need > 10,000 parts
        ps = part_size_for(size, 64 * MiB)
        assert ps % MiB == 0 and ps > 64 * MiB and -(-size // ps) <= S3_MAX_PARTS
    with pytest.raises(StorageError, match="5 TiB"):
        part_size_for(5 * 1024 * GiB + 1, 64 * MiB)


# ---------------------------------------------------------------- S3 specifics

def test_s3_client_settings(moto_server: s3servers.S3Server) -> None:
    st = open_storage(f"s3://{BUCKET}/x", moto_server.options(max_attempts=7))
    cfg = st.client.meta.config  # type: ignore[attr-defined]
    assert cfg.retries == {"mode": "standard", "total_max_attempts": 7}   # the first attempt included
    assert cfg.s3["addressing_style"] == "path"
    aws = open_storage("s3://some-bucket/x", StorageOptions(region="eu-west-1", access_key_id="a",
                                                              secret_access_key="b"))
    assert aws.client.meta.config.s3["addressing_style"] == "auto"  # type: ignore[attr-defined]


def test_s3_encryption_and_storage_class(moto_server: s3servers.S3Server, tmp_path: Path) -> None:
    b = s3_backend("moto", moto_server, server_side_encryption="AES256", storage_class="STANDARD_IA")
    src = tmp_path / "f"
    digest = write_file(src, 2000)
    b.storage.put_file("enc.bin", src, sha256=digest)
    big = tmp_path / "big"
    write_file(big, BIG)
    b.storage.put_file("enc-big.bin", big)
    client = moto_server.client()
    for key in ("enc.bin", "enc-big.bin"):
        h = client.head_object(Bucket=BUCKET, Key=b.raw_key(key))
        assert h["ServerSideEncryption"] == "AES256" and h["StorageClass"] == "STANDARD_IA"
    assert b.storage.get_bytes("enc.bin") == src.read_bytes()


@pytest.mark.parametrize("server_name", ["moto_server", "seaweed_server"])
def test_no_such_bucket(request: pytest.FixtureRequest, server_name: str, tmp_path: Path) -> None:
    server = request.getfixturevalue(server_name)
    st = open_storage("s3://no-such-bucket-here/p", server.options(max_attempts=1))
    src = tmp_path / "f"
    write_file(src, 100)
    for call in (lambda: st.put_bytes("k", b"x"), lambda: st.get_bytes("k"), lambda: st.list(),
                 lambda: st.exists("k"), lambda: st.put_file("k", src), lambda: st.stat("k")):
        with pytest.raises(StorageError) as ei:
            call()
        msg = str(ei.value)
        assert "NoSuchBucket" in msg and "no-such-bucket-here" in msg and "\n" not in msg, msg
        assert server.secret_key not in msg


def test_wrong_credentials_seaweedfs(seaweed_server: s3servers.S3Server, tmp_path: Path) -> None:
    src = tmp_path / "f"
    write_file(src, 100)
    wrong_secret = "Wr0ng-" + secrets.token_urlsafe(20)
    cases = [
        (dict(secret_access_key=wrong_secret), "SignatureDoesNotMatch"),
        (dict(access_key_id="AKIANOTKNOWN0000", secret_access_key=wrong_secret), "InvalidAccessKeyId"),
    ]
    for creds, code in cases:
        st = open_storage(f"s3://{BUCKET}/creds", seaweed_server.options(max_attempts=1, **creds))
        calls = {"put_file": lambda: st.put_file("k", src), "get_bytes": lambda: st.get_bytes("k"),
                 "list": lambda: st.list(), "exists": lambda: st.exists("k")}
        for name, call in calls.items():
            with pytest.raises(StorageError) as ei:
                call()
            msg = str(ei.value)
            assert code in msg and f"s3://{BUCKET}/creds" in msg, (name, msg)
            assert wrong_secret not in msg and seaweed_server.secret_key not in msg and "\n" not in msg
            assert ei.value.exit_code == 13
            assert wrong_secret not in repr(ei.value) and wrong_secret not in repr(st.options)


class CorruptingS3Storage(S3Storage):
    """Sends a wrong x-amz-checksum-sha256 with every body, as if the data had been damaged in
    transit: a server that checks checksums must refuse each request."""

    def _request_checksum(self, data: bytes) -> str:
        return super()._request_checksum(data + b"!")


def test_server_refuses_wrong_checksum_seaweedfs(seaweed_server: s3servers.S3Server, tmp_path: Path) -> None:
    prefix = f"t-{secrets.token_hex(6)}"
    st = CorruptingS3Storage(BUCKET, prefix, seaweed_server.options(part_size=PART, max_attempts=1))
    small, big = tmp_path / "small", tmp_path / "big"
    small_sha = write_file(small, 1000)
    big_sha = write_file(big, BIG, seed=3)
    for path, digest in ((small, small_sha), (big, big_sha)):
        with pytest.raises(StorageError) as ei:
            st.put_file(path.name, path, sha256=digest)
        msg = str(ei.value)
        assert ei.value.code == "BadDigest" and path.name in msg, msg  # type: ignore[attr-defined]
        assert not st.exists(path.name)
    assert "multipart upload aborted" in msg
    client = seaweed_server.client()
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix + "/").get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("KeyCount", 0) == 0
    with pytest.raises(StorageError, match="BadDigest"):
        st.put_bytes("bytes", b"data")
    assert st.list() == []
    # the same storage with honest checksums works
    ok = S3Storage(BUCKET, prefix, seaweed_server.options(part_size=PART))
    assert ok.put_file("big", big, sha256=big_sha).sha256 == big_sha


def test_server_gone_fails_fast(tmp_path: Path) -> None:
    server = s3servers.start_moto(tmp_path)
    try:
        s3servers.create_bucket(server, BUCKET)
        st = open_storage(f"s3://{BUCKET}/gone", server.options(part_size=PART, max_attempts=2,
                                                                 connect_timeout=1.0, read_timeout=3.0))
        st.put_bytes("before", b"fine")
        big = tmp_path / "big"
        write_file(big, BIG)
    finally:
        server.stop()
    assert not server.alive()
    for call in (lambda: st.put_file("big", big), lambda: st.put_bytes("after", b"x"),
                 lambda: st.get_bytes("before"), lambda: st.list()):
        t0 = time.monotonic()
        with pytest.raises(StorageError) as ei:
            call()
        assert time.monotonic() - t0 < 10
        msg = str(ei.value)
        assert "cannot connect" in msg and f"s3://{BUCKET}/gone" in msg and server.secret_key not in msg, msg


def test_transient_errors_are_retried(moto_server: s3servers.S3Server) -> None:
    proxy = s3servers.FlakyProxy(moto_server.port)
    try:
        st = open_storage(f"s3://{BUCKET}/flaky", moto_server.options(endpoint_url=proxy.endpoint, max_attempts=2))
        proxy.fail(1)
        st.put_bytes("k", b"value")                     # 503 SlowDown once, then retried
        assert proxy.failed == 1 and st.get_bytes("k") == b"value"
        proxy.fail(100)
        before = proxy.requests
        with pytest.raises(StorageError, match="SlowDown") as ei:
            st.get_bytes("k")
        assert proxy.requests - before == 2             # max_attempts counts the first attempt
        assert "s3://albackup-test/flaky/k" in str(ei.value)
    finally:
        proxy.close()
