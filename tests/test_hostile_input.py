"""Hostile input: archives crafted to exhaust memory or confuse the reader, errors that must stay one
clean line, and the one secret masker.

The archive tests run ``python -m albackup verify`` and ``restore`` (into SQLite) in a child whose
address space is capped (RLIMIT_AS) and whose peak RSS (VmHWM, read in the child as it exits) must
stay under 200 MiB; each must fail with its documented exit code and one line naming the file.
A hostile writer can make every checksum match, so each case recomputes the chunk's SHA-256 and the
manifest's size for it: only the format's own limits stand in the way.
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import resource
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import msgpack
import pytest
import zstandard

from albackup.archive import (CHUNK_MAGIC, END_MARK, FLAG_TEXT, FRAME, HEADER, MANIFEST, MAX_FRAME, MAX_MANIFEST,
                              TRAILER)
from albackup.compress import IDS

ROOT = Path(__file__).resolve().parent.parent
AS_LIMIT = 1 << 30          # address space of the child: 1 GiB
RSS_LIMIT_MB = 200
SECONDS = 30                # each run must end well within this (2 shared cores)
PASS = "hostile passphrase"

# python -m albackup, reporting its peak RSS (VmHWM) on stderr as it exits
RUN = """
import atexit, runpy, sys
def _peak():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            sys.stderr.write('PEAK_KB=' + line.split()[1] + '\\n')
atexit.register(_peak)
sys.argv = ['albackup'] + sys.argv[1:]
runpy.run_module('albackup', run_name='__main__')
"""


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_capped(args: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str], int, float]:
    """exit code, stderr lines (less the peak line), peak RSS in MiB, seconds."""
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, timeout=120,
                       preexec_fn=_cap, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    took = time.monotonic() - t0
    lines = [x for x in p.stderr.splitlines() if not x.startswith("PEAK_KB=")]
    peak = [int(x.split("=")[1]) for x in p.stderr.splitlines() if x.startswith("PEAK_KB=")]
    assert peak, p.stderr[-2000:]
    return p.returncode, lines, peak[-1] // 1024, took


# ----------------------------------------------------------------------------- building archives
def _source(tmp: Path) -> Path:
    db = tmp / "src.sqlite"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE a (id INTEGER PRIMARY KEY, t TEXT, b BLOB, r REAL);")
    con.executemany("INSERT INTO a VALUES (?, ?, ?, ?)", [(i, f"row {i}", bytes([i % 256]) * 20, i / 3)
                                                          for i in range(200)])
    con.commit()
    con.close()
    return db


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A plain and an encrypted backup of one four-column table (chunk data/00001-00001.chunk)."""
    tmp = tmp_path_factory.mktemp("hostile")
    db = _source(tmp)
    out = {}
    for kind, extra in (("plain", []), ("encrypted", ["--passphrase-env", "HOSTILE_PASS"])):
        p = subprocess.run([sys.executable, "-m", "albackup", "dump", "-q", "--url", f"sqlite:///{db}",
                            "--backup-dir", str(tmp / kind), *extra], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "HOSTILE_PASS": PASS}, timeout=120)
        assert p.returncode == 0, p.stderr
        out[kind] = Path(p.stdout.strip().splitlines()[-1])
    return out


CHUNK = "data/00001-00001.chunk"


def _entry(m: dict[str, Any]) -> dict[str, Any]:
    return m["tables"]["a"]["chunks"][0]


def _write_chunk(backup: Path, blob: bytes, rows: int | None = None) -> None:
    """Replace the chunk file and make the manifest agree with it (size, SHA-256, rows)."""
    (backup / CHUNK).write_bytes(blob)
    m = json.loads((backup / MANIFEST).read_text())
    e = _entry(m)
    e["bytes"], e["sha256"] = len(blob), hashlib.sha256(blob).hexdigest()
    if rows is not None:
        e["rows"] = m["tables"]["a"]["rows"] = rows
    (backup / MANIFEST).write_text(json.dumps(m))


def chunk(comp: str, frames: list[tuple[bytes, int]], nframes: int | None = None, rows: int = 1) -> bytes:
    """A chunk file of (stored payload, claimed raw length) frames."""
    out = [HEADER.pack(CHUNK_MAGIC, IDS[comp], 0)]
    for stored, raw_len in frames:
        out.append(FRAME.pack(len(stored), raw_len, zlib.crc32(stored)) + stored)
    out.append(TRAILER.pack(END_MARK, len(frames) if nframes is None else nframes, rows))
    return b"".join(out)


def _zeros_zstd(n: int, content_size: bool = True) -> bytes:
    c = zstandard.ZstdCompressor(level=3, write_content_size=content_size).compressobj(size=n if content_size else -1)
    piece = bytes(1 << 20)
    return b"".join([*(c.compress(piece) for _ in range(n >> 20)), c.flush()])


def _gzip_zeros(n: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    piece = bytes(1 << 20)
    return b"".join([*(c.compress(piece) for _ in range(n >> 20)), c.flush()])


def _lzma_zeros(n: int) -> bytes:
    c = lzma.LZMACompressor(preset=0)
    piece = bytes(1 << 20)
    return b"".join([*(c.compress(piece) for _ in range(n >> 20)), c.flush()])


def _rows(rows: list[Any]) -> bytes:
    return msgpack.packb(rows, use_bin_type=True)


BIG = 400 << 20


def case_frame_claims_400mb(b: Path) -> None:
    """The reported case: a 35 KB chunk whose frame (and zstd header) say 400 MB."""
    stored = _zeros_zstd(BIG)
    assert len(stored) < 64 << 10
    _write_chunk(b, chunk("zstd", [(stored, BIG)]))


def case_zstd_header_disagrees(b: Path) -> None:
    """The frame says 1000 bytes, the zstd frame inside says 400 MB."""
    _write_chunk(b, chunk("zstd", [(_zeros_zstd(BIG), 1000)]))


def case_zstd_bomb_without_content_size(b: Path) -> None:
    """No content size in the zstd header: the stream decompresses far past the frame's limit."""
    _write_chunk(b, chunk("zstd", [(_zeros_zstd(BIG, content_size=False), MAX_FRAME - 1)]))


def case_gzip_bomb(b: Path) -> None:
    _write_chunk(b, chunk("gzip", [(_gzip_zeros(256 << 20), MAX_FRAME - 1)]))


def case_lzma_bomb(b: Path) -> None:
    _write_chunk(b, chunk("lzma", [(_lzma_zeros(256 << 20), MAX_FRAME - 1)]))


def case_stored_over_limit(b: Path) -> None:
    """A stored length over the format's limit (the file really is that long)."""
    _write_chunk(b, chunk("none", [(bytes(MAX_FRAME + (2 << 20)), 10)]))


def case_msgpack_huge_row_count(b: Path) -> None:
    _write_chunk(b, chunk("none", [(b"\xdd\xff\xff\xff\xff" + b"\x94\xc0\xc0\xc0\xc0" * 4, 25)]), rows=1)


def case_msgpack_huge_str(b: Path) -> None:
    raw = b"\x91\x94\x01\xdb\xff\xff\xff\xf0abc\xc0\xc0"
    _write_chunk(b, chunk("none", [(raw, len(raw))]))


def case_msgpack_huge_array_value(b: Path) -> None:
    raw = b"\x91\x94\x01\xdd\x7f\xff\xff\xff" + b"\x00" * 100 + b"\xc0\xc0"
    _write_chunk(b, chunk("none", [(raw, len(raw))]))


def case_msgpack_deep_nesting(b: Path) -> None:
    raw = b"\x91\x94\x01" + b"\x91" * 200_000 + b"\xc0\xc0\xc0"
    _write_chunk(b, chunk("none", [(raw, len(raw))]))


def case_msgpack_placeholder_flood(b: Path) -> None:
    """A row of placeholders of large values (each would open a temporary file)."""
    ph = b"\xc7\x09\x01" + struct.pack(">BQ", 0, 10)
    raw = b"\xdc\x00\x10" + (b"\x94" + ph * 4) * 16
    _write_chunk(b, chunk("none", [(raw, len(raw))]), rows=16)


def case_tiny_rows(b: Path) -> None:
    """About 6 million rows of NULLs in one 30 MiB frame: as Python lists they would be ~50 times
    the frame; they are decoded a MiB at a time (the content hash then differs: exit 11)."""
    n = (30 << 20) // 5
    raw = b"\xdd" + n.to_bytes(4, "big") + b"\x94\xc0\xc0\xc0\xc0" * n
    _write_chunk(b, chunk("zstd", [(zstandard.ZstdCompressor(level=1).compress(raw), len(raw))], rows=n), rows=n)


def _text_chunk(b: Path, line: bytes) -> None:
    """The table's chunk as COPY text (§5.2): one 30 MiB frame of ``line`` over and over."""
    n = (30 << 20) // len(line)
    raw = line * n
    stored = zstandard.ZstdCompressor(level=1).compress(raw)
    blob = (HEADER.pack(CHUNK_MAGIC, IDS["zstd"], FLAG_TEXT) + FRAME.pack(len(stored), len(raw), zlib.crc32(stored))
            + stored + TRAILER.pack(END_MARK, 1, n))
    _write_chunk(b, blob, rows=n)
    _manifest(b, lambda m: (_entry(m).update(encoding="pg-copy-text"),
                            m.update(features=sorted({*m["features"], "pg-copy-text-v2"}))))


def case_text_tiny_lines(b: Path) -> None:
    """2.6 million lines of NULLs in one frame: split whole, as Python objects, they would be
    several times the frame (the content hash then differs: exit 11)."""
    _text_chunk(b, b"\\N\t\\N\t\\N\t\\N\n")


def case_text_empty_lines(b: Path) -> None:
    """31 million empty lines: damage, and the search for the culprit must not split them whole."""
    _text_chunk(b, b"\n")


def case_truncated_chunk(b: Path) -> None:
    blob = (b / CHUNK).read_bytes()
    _write_chunk(b, blob[: len(blob) // 2])


def _manifest(b: Path, change: Callable[[dict[str, Any]], None]) -> None:
    m = json.loads((b / MANIFEST).read_text())
    change(m)
    (b / MANIFEST).write_text(json.dumps(m))


def case_manifest_bytes_1e18(b: Path) -> None:
    _manifest(b, lambda m: _entry(m).update(bytes=10 ** 18))


def case_manifest_bytes_negative(b: Path) -> None:
    _manifest(b, lambda m: _entry(m).update(bytes=-1))


def case_manifest_bytes_not_the_file(b: Path) -> None:
    _manifest(b, lambda m: _entry(m).update(bytes=_entry(m)["bytes"] + 1))


def case_manifest_bytes_string(b: Path) -> None:
    _manifest(b, lambda m: _entry(m).update(bytes=str(_entry(m)["bytes"])))


def case_manifest_rows_negative(b: Path) -> None:
    _manifest(b, lambda m: _entry(m).update(rows=-5))


def case_manifest_tables_wrong_type(b: Path) -> None:
    _manifest(b, lambda m: m.update(tables=["a"]))


def case_manifest_schema_wrong_type(b: Path) -> None:
    _manifest(b, lambda m: m.update(schema="a"))


def case_manifest_not_json(b: Path) -> None:
    (b / MANIFEST).write_bytes(b"\x00\xffnot json at all")


def case_manifest_deeply_nested(b: Path) -> None:
    (b / MANIFEST).write_text('{"format": "albackup", "x": ' + "[" * 200_000 + "]" * 200_000 + "}")


def case_manifest_huge(b: Path) -> None:
    with open(b / MANIFEST, "r+b") as f:        # sparse: no disk used
        f.truncate(MAX_MANIFEST + 1)


CASES: dict[str, tuple[Callable[[Path], None], int, str]] = {
    # name: (make it, exit code, what the one line says)
    "frame_claims_400mb": (case_frame_claims_400mb, 7, "frame 1 claims an impossible size"),
    "zstd_header_disagrees": (case_zstd_header_disagrees, 7, "cannot decompress"),
    "zstd_bomb_without_content_size": (case_zstd_bomb_without_content_size, 7, "cannot decompress"),
    "gzip_bomb": (case_gzip_bomb, 7, "cannot decompress"),
    "lzma_bomb": (case_lzma_bomb, 7, "cannot decompress"),
    "stored_over_limit": (case_stored_over_limit, 7, "frame 1 claims an impossible size"),
    "msgpack_huge_row_count": (case_msgpack_huge_row_count, 7, "frame claims 4294967295 rows"),
    "msgpack_huge_str": (case_msgpack_huge_str, 7, "cannot decode rows"),
    "msgpack_huge_array_value": (case_msgpack_huge_array_value, 7, "cannot decode rows"),
    "msgpack_deep_nesting": (case_msgpack_deep_nesting, 7, "cannot decode rows"),
    "msgpack_placeholder_flood": (case_msgpack_placeholder_flood, 7, "cannot decode rows"),
    "tiny_rows": (case_tiny_rows, 11, "content hash does not match"),
    "truncated_chunk": (case_truncated_chunk, 7, "truncated"),
    "text_tiny_lines": (case_text_tiny_lines, 11, "content hash does not match"),
    "text_empty_lines": (case_text_empty_lines, 7, "column #1: cannot read a value as int64"),
    "manifest_bytes_1e18": (case_manifest_bytes_1e18, 7, "bytes is 1000000000000000000"),
    "manifest_bytes_negative": (case_manifest_bytes_negative, 7, "bytes is -1"),
    "manifest_bytes_not_the_file": (case_manifest_bytes_not_the_file, 7, "the manifest says"),
    "manifest_bytes_string": (case_manifest_bytes_string, 7, "not an integer"),
    "manifest_rows_negative": (case_manifest_rows_negative, 7, "rows is -5"),
    "manifest_tables_wrong_type": (case_manifest_tables_wrong_type, 7, "manifest is incomplete or damaged"),
    "manifest_schema_wrong_type": (case_manifest_schema_wrong_type, 7, "manifest is incomplete or damaged"),
    "manifest_not_json": (case_manifest_not_json, 7, "manifest is damaged"),
    "manifest_deeply_nested": (case_manifest_deeply_nested, 7, "manifest is damaged"),
    "manifest_huge": (case_manifest_huge, 7, "over the format's limit"),
}
# the file each message must name
NAMES = {k: (MANIFEST if k.startswith("manifest_") else CHUNK) for k in CASES}
NAMES["manifest_bytes_not_the_file"] = CHUNK


def _hostile(pristine: Path, tmp: Path, name: str) -> Path:
    b = tmp / pristine.name
    shutil.copytree(pristine, b)
    CASES[name][0](b)
    return b


def _assert_one_clean_line(code: int, lines: list[str], want_code: int, want: str, name: str) -> None:
    assert code == want_code, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("albackup: error: "), lines
    assert want in lines[0] and name in lines[0], lines
    assert "Traceback" not in lines[0] and "internal error" not in lines[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_archive_fails_verify_in_one_line_within_bounds(pristine: dict[str, Path], tmp_path: Path,
                                                                 name: str) -> None:
    b = _hostile(pristine["plain"], tmp_path, name)
    code, lines, peak, took = run_capped(["verify", "--backup-dir", str(b)])
    _assert_one_clean_line(code, lines, CASES[name][1], CASES[name][2], NAMES[name])
    assert peak < RSS_LIMIT_MB, f"verify peaked at {peak} MiB"
    assert took < SECONDS, f"verify took {took:.1f}s"


RESTORE_CASES = ["frame_claims_400mb", "zstd_header_disagrees", "zstd_bomb_without_content_size", "gzip_bomb",
                 "msgpack_huge_row_count", "msgpack_huge_str", "msgpack_deep_nesting", "truncated_chunk",
                 "manifest_bytes_1e18", "manifest_bytes_not_the_file", "manifest_not_json",
                 "manifest_tables_wrong_type", "manifest_huge"]


@pytest.mark.parametrize("name", RESTORE_CASES)
def test_hostile_archive_fails_restore_in_one_line_within_bounds(pristine: dict[str, Path], tmp_path: Path,
                                                                  name: str) -> None:
    b = _hostile(pristine["plain"], tmp_path, name)
    target = tmp_path / "target.sqlite"
    code, lines, peak, took = run_capped(["restore", "--url", f"sqlite:///{target}", "--allow-restore",
                                          "--backup-dir", str(b)])
    assert code == 7, lines
    assert len(lines) == 1 and lines[0].startswith("albackup: error: "), lines
    assert CASES[name][2] in lines[0] and NAMES[name] in lines[0], lines
    assert peak < RSS_LIMIT_MB, f"restore peaked at {peak} MiB"
    assert took < SECONDS, f"restore took {took:.1f}s"
    if target.exists():     # nothing half-restored is left behind
        con = sqlite3.connect(target)
        assert con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []
        con.close()


def _enc_frame_header(b: Path, raw_len: int | None = None, stored_len: int | None = None) -> None:
    """Change the first frame's header of an encrypted chunk (its payload cannot be forged
    without the key, nor the sealed manifest's SHA-256 of it; the header is read first)."""
    blob = bytearray((b / CHUNK).read_bytes())
    s, r, crc = FRAME.unpack_from(blob, HEADER.size)
    FRAME.pack_into(blob, HEADER.size, s if stored_len is None else stored_len, r if raw_len is None else raw_len,
                    crc)
    (b / CHUNK).write_bytes(bytes(blob))


@pytest.mark.parametrize("change", ["raw_len", "stored_len"])
def test_encrypted_chunk_claiming_impossible_sizes_is_refused_before_it_is_opened(
        pristine: dict[str, Path], tmp_path: Path, change: str) -> None:
    b = tmp_path / pristine["encrypted"].name
    shutil.copytree(pristine["encrypted"], b)
    _enc_frame_header(b, **{change: BIG})
    code, lines, peak, took = run_capped(["verify", "--backup-dir", str(b), "--passphrase-env", "HOSTILE_PASS"],
                                         env={"HOSTILE_PASS": PASS})
    _assert_one_clean_line(code, lines, 7, "frame 1 claims an impossible size", CHUNK)
    assert peak < RSS_LIMIT_MB and took < SECONDS


def test_pristine_backups_still_verify_and_restore(pristine: dict[str, Path], tmp_path: Path) -> None:
    """The limits refuse nothing a writer makes."""
    code, lines, peak, _ = run_capped(["verify", "--backup-dir", str(pristine["plain"])])
    assert code == 0 and peak < RSS_LIMIT_MB, lines
    code, lines, _, _ = run_capped(["verify", "--backup-dir", str(pristine["encrypted"]),
                                    "--passphrase-env", "HOSTILE_PASS"], env={"HOSTILE_PASS": PASS})
    assert code == 0, lines
    target = tmp_path / "t.sqlite"
    code, lines, _, _ = run_capped(["restore", "--url", f"sqlite:///{target}", "--allow-restore",
                                    "--backup-dir", str(pristine["plain"])])
    assert code == 0, lines
    con = sqlite3.connect(target)
    assert con.execute("SELECT count(*), sum(length(b)) FROM a").fetchone() == (200, 4000)
    con.close()


# ------------------------------------------------------------------ one masker, real driver errors
def _driver_error(url: str) -> str:
    """The driver's own message for a connection to ``url`` (a real server refusing it)."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    e = sa.create_engine(url, poolclass=NullPool)
    try:
        with e.connect():
            pass
    except sa.exc.DBAPIError as exc:
        return str(exc.orig)
    finally:
        e.dispose()
    raise AssertionError(f"{url} accepted the connection")


SECRET = "Wr0ng-pw-4471"


def test_masker_keeps_a_mariadb_refusal_whole(my) -> None:
    from albackup.secrets import mask_secrets

    base = my.base.set(password=SECRET)
    msg = _driver_error(base.render_as_string(hide_password=False))
    assert "Access denied for user 'root'@'127.0.0.1' (using password: YES)" in msg     # the server's words
    line = f"{base.render_as_string(hide_password=False)}: cannot connect: {msg}"
    assert mask_secrets(line, [SECRET]) == (
        f"mysql+pymysql://root:***@127.0.0.1:3306/{base.database}: cannot connect: {msg}")
    assert mask_secrets(msg) == msg


def test_masker_keeps_postgresql_refusals_whole(pg) -> None:
    """The local server trusts every login, so a wrong password is not refused: an unknown role
    and an unknown database are (host, port, role and database named in the message)."""
    from albackup.secrets import mask_secrets

    role = pg.base.set(username="albk_no_such_role", password=SECRET)
    db = pg.base.set(password=SECRET, database="albk_no_such_db")
    for url, words in ((role, 'role "albk_no_such_role" does not exist'),
                       (db, 'database "albk_no_such_db" does not exist')):
        msg = _driver_error(url.render_as_string(hide_password=False))
        assert words in msg and "127.0.0.1" in msg and "5432" in msg
        assert mask_secrets(msg, [SECRET]) == msg
        shown = mask_secrets(f"{url.render_as_string(hide_password=False)}: cannot connect: {msg}", [SECRET])
        assert shown == f"postgresql+psycopg2://{url.username}:***@127.0.0.1:5432/{url.database}: cannot connect: {msg}"


@pytest.mark.parametrize("text, masked", [
    ("s3://AKIA:hunter2@bucket/p", "s3://AKIA:***@bucket/p"),
    ("postgresql://u:p@ss@h/db?sslmode=require&password=abc&x=1", "postgresql://u:***@h/db?sslmode=require&password=***&x=1"),
    ("https://h/x?X-Amz-Signature=abc&part=1&token=t&key=k", "https://h/x?X-Amz-Signature=***&part=1&token=***&key=***"),
    ("mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BX%7D%3BUID%3Dsa%3BPWD%3Dsecret%3B",
     "mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BX%7D%3BUID%3Dsa%3BPWD%3D***%3B"),
    ("DRIVER={x};PWD={a;b c};UID=sa", "DRIVER={x};PWD=***;UID=sa"),
    ("{'password': 'hunter2', 'user': 'x'}", "{'password': '***', 'user': 'x'}"),
    ("/var/backups/a:b@c", "/var/backups/a:b@c"),
    ('password authentication failed for user "bob"', 'password authentication failed for user "bob"'),
])
def test_masker_forms(text: str, masked: str) -> None:
    from albackup.secrets import mask_secrets

    assert mask_secrets(text) == masked


def test_masker_known_secrets_and_short_ones() -> None:
    from albackup.secrets import mask_secrets

    assert mask_secrets("it said hunter2 twice: hunter2", ["hunter2"]) == "it said *** twice: ***"
    # a two-letter password is masked where it is a password, not in every word that holds it
    assert mask_secrets("mysql://root:ab@h/db: table tab", ["ab"]) == "mysql://root:***@h/db: table tab"


def test_run_log_and_webhook_keep_a_mariadb_refusal_whole(my, tmp_path: Path) -> None:
    """The reported case: a scheduled run's failure in its log and its webhook payload."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    url = my.base.set(password=SECRET).render_as_string(hide_password=False)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({
        "log_dir": str(tmp_path / "logs"), "workdir": str(tmp_path / "work"),
        "destinations": [str(tmp_path / "dest")], "retention": {"daily": 1},
        "notifications": [{"type": "webhook", "url": f"http://127.0.0.1:{srv.server_address[1]}/hook"}],
        "databases": [{"name": "shop", "url": url}]}))
    os.chmod(cfg, 0o600)
    try:
        p = subprocess.run([sys.executable, "-m", "albackup", "run", "--cfg", str(cfg)], capture_output=True,
                           text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    finally:
        srv.shutdown()
        srv.server_close()
    refusal = "Access denied for user 'root'@'127.0.0.1' (using password: YES)"
    [body] = bodies
    [shop] = json.loads(body)["databases"]
    assert refusal in shop["error"] and "root:***@127.0.0.1:3306" in shop["error"], shop["error"]
    log_text = "".join(f.read_text() for f in (tmp_path / "logs").iterdir())
    assert refusal in log_text, log_text
    for out in (body.decode(), log_text, p.stdout, p.stderr):
        assert SECRET not in out


# ----------------------------------------------------------------- killed backends: one clean line
FRAGMENTS = ("Traceback", "(Background on this error", "[SQL:", "The above exception", "CONTEXT:", "SystemError")


def _restore_and_kill(src_url: Any, dst_url: Any, tmp: Path, kill: Callable[[Any], int]) -> tuple[int, list[str]]:
    """Dump ``src_url``, restore it into ``dst_url`` with ``-q``, and end the restore's database
    session from another connection once it is loading (``kill(admin connection)`` returns how
    many sessions it ended)."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "albackup", "dump", "-q", "--url",
                        src_url.render_as_string(hide_password=False), "--backup-dir", str(tmp / "b")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    backup = p.stdout.strip().splitlines()[-1]
    proc = subprocess.Popen([sys.executable, "-m", "albackup", "restore", "-q", "--url",
                             dst_url.render_as_string(hide_password=False), "--allow-restore", "--backup-dir", backup],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    admin = sa.create_engine(dst_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    killed = 0
    deadline = time.monotonic() + 120
    try:
        while not killed and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            with admin.connect() as c:
                killed = kill(c)
    finally:
        admin.dispose()
    _, err = proc.communicate(timeout=120)
    assert killed, f"the restore ended before it could be killed: {err}"
    return proc.returncode, err.splitlines()


def _big_table(url: Any, mysql: bool) -> None:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    e = sa.create_engine(url, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE big (id INT PRIMARY KEY, v TEXT)")
        if mysql:
            c.exec_driver_sql("SET SESSION max_recursive_iterations = 1000000")
            c.exec_driver_sql("INSERT INTO big WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s "
                              "WHERE g < 400000) SELECT g, repeat(md5(g), 4) FROM s")
        else:
            c.exec_driver_sql("INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 400000) g")
    e.dispose()


def _assert_killed_line(code: int, lines: list[str], causes: tuple[str, ...]) -> None:
    assert code == 10, lines
    assert len(lines) == 1, lines
    # rolled back (PostgreSQL), or what the restore had made dropped (MariaDB: DDL is not transactional)
    assert lines[0].startswith("albackup: error: restore into ") and (
        "failed and was rolled back" in lines[0] or "failed; the target is as it was" in lines[0]), lines
    assert any(c in lines[0] for c in causes), lines
    assert not any(f in lines[0] for f in FRAGMENTS), lines


def test_postgresql_restore_whose_backend_is_terminated_fails_in_one_line(pg, tmp_path: Path) -> None:
    src, dst = pg.new("hsrc"), pg.new("hdst")
    _big_table(src, mysql=False)

    def kill(c: Any) -> int:
        pids = c.exec_driver_sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND pid <> pg_backend_pid() AND state = 'active'").scalars().all()
        for pid in pids:
            c.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,))
        return len(pids)

    code, lines = _restore_and_kill(src, dst, tmp_path, kill)
    # psycopg2 reports the server's "terminating connection due to administrator command" itself
    # when it strikes inside a COPY (albackup logs it as a warning, hidden by -q) and then fails
    # with one of these
    _assert_killed_line(code, lines, ("terminating connection due to administrator command", "invalid socket",
                                      "connection already closed", "server closed the connection unexpectedly"))


def test_mariadb_restore_whose_connection_is_killed_fails_in_one_line(my, tmp_path: Path) -> None:
    src, dst = my.new("hsrc"), my.new("hdst")
    _big_table(src, mysql=True)

    def kill(c: Any) -> int:
        ids = c.exec_driver_sql("SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
                                "AND id <> CONNECTION_ID() AND command = 'Query'").scalars().all()
        for i in ids:
            c.exec_driver_sql(f"KILL {int(i)}")
        return len(ids)

    code, lines = _restore_and_kill(src, dst, tmp_path, kill)
    _assert_killed_line(code, lines, ("connection to the server was lost", "Lost connection", "Connection was killed",
                                      "server has gone away", "Query execution was interrupted"))


# ------------------------------------------------------------------- the writer keeps to the limits
def test_writer_stays_within_the_frame_limit(tmp_path: Path) -> None:
    """What the readers refuse, the writer never makes: wide rows go on frames of their own, a
    row near the limit is written and read back, one past it is refused with its size."""
    from albackup.archive import ChunkWriter, read_chunk
    from albackup.codec import pack_each, row_packer
    from albackup.compress import Compressor
    from albackup.dump import _frames
    from albackup.errors import RowTooLarge
    from albackup.model import LogicalType

    packed = [b"a" * (10 << 20), b"b" * (30 << 20), b"c" * 100, b"d" * (20 << 20), b"e" * (20 << 20)]
    frames = list(_frames(packed, sum(map(len, packed))))
    assert [[len(p) for p in f] for f in frames] == [[10 << 20], [30 << 20], [100, 20 << 20], [20 << 20]]
    assert all(sum(map(len, f)) < MAX_FRAME for f in frames)
    types = [LogicalType("text")]
    w = ChunkWriter(tmp_path / "ok.chunk", "data/00001-00001.chunk", Compressor("zstd"), types)
    near = "x" * (MAX_FRAME - 64)
    w.write_packed(pack_each(row_packer(), [[near]]))
    info = w.close()
    [[row]] = [b for b in read_chunk(tmp_path / "ok.chunk", 1, "t", info.sha256, 1, expect_bytes=info.bytes)]
    assert row == [near]
    w = ChunkWriter(tmp_path / "big.chunk", "data/00001-00002.chunk", Compressor("zstd"), types)
    with pytest.raises(RowTooLarge, match=r"a row of 33,554,4\d\d bytes .* is over the format's limit of 32 MiB"):
        w.write_packed(pack_each(row_packer(), [["x" * MAX_FRAME]]))
    w.abort()


def test_a_row_over_the_frame_limit_fails_the_dump_naming_its_table(make_db, tmp_path: Path) -> None:
    """A JSON document of 40 MB (not text or binary, so not stored in pieces) cannot be held in
    one frame: the dump fails with exit 9, naming the table, and leaves no backup."""
    import subprocess
    import sys

    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    src = make_db("postgresql", "bigrow")
    e = sa.create_engine(src, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE docs (id int PRIMARY KEY, doc jsonb)")
        c.exec_driver_sql("INSERT INTO docs VALUES (1, '{}'), (2, (SELECT jsonb_agg(md5(g::text)) "
                          "FROM generate_series(1, 1100000) g))")
    e.dispose()
    out = tmp_path / "b"
    p = subprocess.run([sys.executable, "-m", "albackup", "dump", "--url", src.render_as_string(hide_password=False),
                        "--backup-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 9, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "table docs: data/" in lines[0] and "over the format's limit of 32 MiB" in lines[0], \
        p.stderr
    assert not out.exists() or not [x for x in out.iterdir() if not x.name.startswith(".")]
