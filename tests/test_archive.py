"""Tests for albackup.archive: chunk files, the backup writer, the manifest checks of Backup.

Everything here works on real files in tmp_path; nothing of albackup is mocked.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import lzma
import os
import re
import sqlite3
import stat
import struct
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
import zstandard

from albackup import api, config
from albackup.archive import (CHUNK_MAGIC, END_MARK, FRAME, HEADER, MANIFEST, MAX_FRAME, NAME_RE, TRAILER,
                              Backup, BackupWriter, ChunkWriter, backup_id, id_time, new_manifest,
                              read_chunk)
from albackup.codec import pack_rows
from albackup.compress import IDS, Compressor
from albackup.errors import ArchiveError, BackupNotFound, UnsupportedFormat
from albackup.model import LogicalType
from albackup.values import RowHash

UTC = dt.timezone.utc
TYPES = [LogicalType("integer", bits=64), LogicalType("text"), LogicalType("binary"),
         LogicalType("float", bits=64), LogicalType("decimal", precision=10, scale=2)]
COMPRESSIONS = ["zstd", "gzip", "lzma", "none"]


def sample_rows(start: int, n: int) -> list[list[Any]]:
    return [[i, f"row {i} ✓ 😀 \x00 \\", bytes([0, i % 256, 0]), i / 4, f"{i}.50"] if i % 3 else
            [i, None, None, None, None] for i in range(start, start + n)]


def write_chunk(path: Path, batches: list[list[list[Any]]], compression: str = "zstd",
                types: list[LogicalType] = TYPES) -> Any:
    w = ChunkWriter(path, "data/00001-00001.chunk", Compressor(compression), types)
    for b in batches:
        w.write_rows(b)
    return w.close()


def read_all(path: Path, ncols: int = len(TYPES), **kw: Any) -> list[list[Any]]:
    out: list[list[Any]] = []
    for batch in read_chunk(path, ncols, "test.chunk", **kw):
        out.extend(batch)
    return out


def frame_offsets(data: bytes) -> list[tuple[int, int, int]]:
    """(offset of frame header, stored length, raw length) of each frame of a chunk file."""
    pos = HEADER.size
    out = []
    while True:
        (stored_len,) = struct.unpack_from(">I", data, pos)
        if stored_len == END_MARK:
            return out
        _, raw_len, _ = FRAME.unpack_from(data, pos)
        out.append((pos, stored_len, raw_len))
        pos += FRAME.size + stored_len


def build_chunk(comp_id: int, frames: list[tuple[bytes, int, int | None]], nframes: int, nrows: int,
                tail: bytes = b"") -> bytes:
    """A chunk file from hand-made frames: (stored bytes, raw length, crc or None for the right one)."""
    out = HEADER.pack(CHUNK_MAGIC, comp_id, 0)
    for stored, raw_len, crc in frames:
        out += FRAME.pack(len(stored), raw_len, zlib.crc32(stored) if crc is None else crc) + stored
    return out + TRAILER.pack(END_MARK, nframes, nrows) + tail


# ---------------------------------------------------------------- chunk round trips

@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_chunk_round_trip_every_compression(tmp_path: Path, compression: str) -> None:
    batches = [sample_rows(0, 7), sample_rows(7, 1), sample_rows(8, 300)]
    path = tmp_path / "c.chunk"
    info = write_chunk(path, batches, compression)
    data = path.read_bytes()
    assert data[:8] == CHUNK_MAGIC
    assert data[8] == IDS[compression]
    assert data[9:12] == b"\0\0\0"
    assert info.rows == 308
    assert info.bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.file == "data/00001-00001.chunk"
    h = RowHash(TYPES)
    for b in batches:
        h.update(b)
    assert info.content_hash == h.hexdigest()
    # trailer: END_MARK, 3 frames, 308 rows
    assert TRAILER.unpack(data[-TRAILER.size:]) == (END_MARK, 3, 308)
    assert len(frame_offsets(data)) == 3
    got = list(read_chunk(path, len(TYPES), "w", expect_sha256=info.sha256, expect_rows=308))
    assert got == batches
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_frames_are_really_compressed_with_the_named_method(tmp_path: Path, compression: str) -> None:
    rows = [[i, "x" * 200, b"\0" * 100, 1.0, "1.00"] for i in range(50)]
    path = tmp_path / "c.chunk"
    write_chunk(path, [rows], compression)
    data = path.read_bytes()
    (off, stored_len, raw_len), = frame_offsets(data)
    stored = data[off + FRAME.size: off + FRAME.size + stored_len]
    raw = pack_rows(rows)
    assert raw_len == len(raw)
    expected = {"zstd": lambda b: zstandard.ZstdDecompressor().decompress(b), "gzip": gzip.decompress,
                "lzma": lzma.decompress, "none": lambda b: b}[compression](stored)
    assert expected == raw
    if compression != "none":
        assert stored_len < raw_len


def test_empty_chunk_has_no_frames(tmp_path: Path) -> None:
    path = tmp_path / "c.chunk"
    w = ChunkWriter(path, "data/00001-00001.chunk", Compressor("zstd"), TYPES)
    w.write_rows([])
    info = w.close()
    data = path.read_bytes()
    assert data == HEADER.pack(CHUNK_MAGIC, IDS["zstd"], 0) + TRAILER.pack(END_MARK, 0, 0)
    assert info.rows == 0 and info.bytes == len(data)
    assert read_all(path, expect_sha256=info.sha256, expect_rows=0) == []


def test_chunk_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "c.chunk"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        ChunkWriter(path, "data/00001-00001.chunk", Compressor("none"), TYPES)
    assert path.read_bytes() == b"keep"


# ---------------------------------------------------------------- damaged chunks

@pytest.fixture
def three_frames(tmp_path: Path) -> tuple[Path, bytes, Any]:
    path = tmp_path / "c.chunk"
    info = write_chunk(path, [sample_rows(0, 5), sample_rows(5, 6), sample_rows(11, 7)], "zstd")
    return path, path.read_bytes(), info


@pytest.mark.parametrize("frame_no", [1, 2, 3])
def test_flipped_byte_in_frame_names_the_frame(three_frames: tuple[Path, bytes, Any], frame_no: int) -> None:
    path, data, _ = three_frames
    off, stored_len, _ = frame_offsets(data)[frame_no - 1]
    b = bytearray(data)
    b[off + FRAME.size + stored_len // 2] ^= 0x40
    path.write_bytes(bytes(b))
    with pytest.raises(ArchiveError) as info:
        read_all(path)
    assert f"frame {frame_no} is corrupt" in info.value.message
    assert "test.chunk" in info.value.message
    assert info.value.exit_code == 7


def test_every_single_byte_flip_is_detected(three_frames: tuple[Path, bytes, Any]) -> None:
    path, data, info = three_frames
    for i in range(len(data)):
        b = bytearray(data)
        b[i] ^= 0x01
        path.write_bytes(bytes(b))
        with pytest.raises(ArchiveError):
            read_all(path, expect_sha256=info.sha256, expect_rows=info.rows)


def test_every_truncation_is_detected(three_frames: tuple[Path, bytes, Any]) -> None:
    path, data, _ = three_frames
    for n in range(len(data)):
        path.write_bytes(data[:n])
        with pytest.raises(ArchiveError) as exc:
            read_all(path)
        assert "truncated" in exc.value.message, (n, exc.value.message)


def test_truncated_in_second_frame_names_it(three_frames: tuple[Path, bytes, Any]) -> None:
    path, data, _ = three_frames
    off, stored_len, _ = frame_offsets(data)[1]
    path.write_bytes(data[:off + FRAME.size + stored_len - 1])
    with pytest.raises(ArchiveError, match=r"truncated \(frame 2 cut short\)"):
        read_all(path)


def test_bytes_after_the_trailer(three_frames: tuple[Path, bytes, Any]) -> None:
    path, data, _ = three_frames
    path.write_bytes(data + b"\0")
    with pytest.raises(ArchiveError, match="after the trailer"):
        read_all(path)


def test_swapped_trailer_counts(three_frames: tuple[Path, bytes, Any]) -> None:
    path, data, _ = three_frames
    _, nframes, nrows = TRAILER.unpack(data[-TRAILER.size:])
    assert (nframes, nrows) == (3, 18)
    path.write_bytes(data[:-TRAILER.size] + TRAILER.pack(END_MARK, nrows, nframes))
    with pytest.raises(ArchiveError, match="trailer says 18 frames/3 rows, found 3/18"):
        read_all(path)


def test_row_count_and_sha_checked_against_manifest(three_frames: tuple[Path, bytes, Any]) -> None:
    path, _, info = three_frames
    with pytest.raises(ArchiveError, match="holds 18 rows, the manifest says 19"):
        read_all(path, expect_sha256=info.sha256, expect_rows=19)
    with pytest.raises(ArchiveError, match="SHA-256"):
        read_all(path, expect_sha256="0" * 64, expect_rows=18)


def test_bad_magic_and_unknown_compression(tmp_path: Path) -> None:
    raw = pack_rows([[1]])
    p = tmp_path / "c.chunk"
    p.write_bytes(b"NOTCHUNK\x00\0\0\0" + TRAILER.pack(END_MARK, 0, 0))
    with pytest.raises(ArchiveError, match="bad magic"):
        read_all(p, 1)
    p.write_bytes(build_chunk(9, [(raw, len(raw), None)], 1, 1))
    with pytest.raises(ArchiveError, match="unknown compression id 9"):
        read_all(p, 1)


def test_missing_chunk_file(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="missing"):
        read_all(tmp_path / "nope.chunk")


def test_frame_with_good_crc_but_garbage_rows(tmp_path: Path) -> None:
    p = tmp_path / "c.chunk"
    p.write_bytes(build_chunk(0, [(b"\xc1\xc1\xc1", 3, None)], 1, 0))
    with pytest.raises(ArchiveError, match="frame 1: cannot decode rows"):
        read_all(p, 1)
    wrong_width = pack_rows([[1, 2]])
    p.write_bytes(build_chunk(0, [(wrong_width, len(wrong_width), None)], 1, 1))
    with pytest.raises(ArchiveError, match="a row has 2 values, expected 1"):
        read_all(p, 1)
    not_rows = pack_rows({"a": 1})  # type: ignore[arg-type]
    p.write_bytes(build_chunk(0, [(not_rows, len(not_rows), None)], 1, 1))
    with pytest.raises(ArchiveError, match="does not hold a list of rows"):
        read_all(p, 1)


def test_wrong_raw_length_is_detected(tmp_path: Path) -> None:
    raw = pack_rows([[1], [2]])
    for comp, stored in (("none", raw), ("zstd", Compressor("zstd").compress(raw)),
                         ("gzip", Compressor("gzip").compress(raw)), ("lzma", Compressor("lzma").compress(raw))):
        for claimed in (len(raw) - 1, len(raw) + 1):
            p = tmp_path / f"{comp}-{claimed}.chunk"
            p.write_bytes(build_chunk(IDS[comp], [(stored, claimed, None)], 1, 2))
            with pytest.raises(ArchiveError):
                read_all(p, 1)


def _peak_bytes_reading(path: Path) -> tuple[int, str]:
    tracemalloc.start()
    try:
        try:
            read_all(path, 1)
            outcome = "read without error"
        except ArchiveError as exc:
            outcome = exc.message
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("raw_len", [MAX_FRAME, MAX_FRAME + 1, 0xFFFFFFFE])
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_frame_claiming_impossible_raw_size_refused_without_allocating(
        tmp_path: Path, compression: str, raw_len: int) -> None:
    raw = pack_rows([[1]])
    stored = Compressor(compression).compress(raw)
    p = tmp_path / "c.chunk"
    p.write_bytes(build_chunk(IDS[compression], [(stored, raw_len, None)], 1, 1))
    peak, outcome = _peak_bytes_reading(p)
    assert "frame 1 claims an impossible size" in outcome
    assert peak < 16 << 20


def test_frame_claiming_huge_stored_size_in_tiny_file_refused_without_allocating(tmp_path: Path) -> None:
    """The stored length is checked against the bytes left in the file before reading."""
    raw = pack_rows([[1]])
    p = tmp_path / "c.chunk"
    p.write_bytes(HEADER.pack(CHUNK_MAGIC, IDS["none"], 0) + FRAME.pack(MAX_FRAME - 16, len(raw), zlib.crc32(raw))
                  + raw + TRAILER.pack(END_MARK, 1, 1))
    peak, outcome = _peak_bytes_reading(p)
    assert "truncated" in outcome or "impossible size" in outcome
    assert peak < 16 << 20, f"reading a {p.stat().st_size}-byte file allocated {peak:,} bytes"


def test_zstd_frame_without_content_size_claiming_huge_raw_size(tmp_path: Path) -> None:
    """zstd output is bounded by what was actually decompressed, not by the frame's claim."""
    raw = pack_rows([[1]])
    stored = zstandard.ZstdCompressor(write_content_size=False).compress(raw)
    p = tmp_path / "c.chunk"
    p.write_bytes(build_chunk(IDS["zstd"], [(stored, MAX_FRAME - 16, None)], 1, 1))
    peak, outcome = _peak_bytes_reading(p)
    assert "frame 1" in outcome
    assert peak < 16 << 20, f"a {len(stored)}-byte zstd frame made the reader allocate {peak:,} bytes"


@pytest.mark.parametrize("compression", ["gzip", "lzma", "zstd"])
def test_decompression_bomb_is_refused(tmp_path: Path, compression: str) -> None:
    """A frame that decompresses to far more than it claims is refused at the claimed size."""
    raw = pack_rows([["a" * (32 << 20)]])
    stored = Compressor(compression).compress(raw)
    assert len(stored) < 1 << 20
    p = tmp_path / "c.chunk"
    p.write_bytes(build_chunk(IDS[compression], [(stored, 1000, None)], 1, 1))
    peak, outcome = _peak_bytes_reading(p)
    assert "frame 1" in outcome
    assert peak < 16 << 20   # (lzma's own dictionary is 8 MiB at preset 6)


# ---------------------------------------------------------------- backup writer

def test_backup_id_format() -> None:
    when = dt.datetime(2026, 11, 22, 9, 30, 5, 123456, tzinfo=UTC)
    assert backup_id("shop", "db1", when, tag="0a1b2c") == "shop@db1--20261122T093005.123Z-0a1b2c"
    cet = dt.timezone(dt.timedelta(hours=2))
    bid = backup_id("shop", "db1", dt.datetime(2026, 1, 1, 1, 0, 0, tzinfo=cet))
    assert re.fullmatch(r"shop@db1--20251231T230000\.000Z-[0-9a-f]{6}", bid)
    assert len({backup_id("shop", "db1", when) for _ in range(200)}) == 200   # same millisecond, distinct
    m = NAME_RE.match("shop@db1--20261122T093005Z")     # the older form is still read
    assert m and m["name"] == "shop" and m["host"] == "db1" and m["ts"] == "20261122T093005"
    assert id_time("shop@db1--20261122T093005Z-2") == dt.datetime(2026, 11, 22, 9, 30, 5, tzinfo=UTC)
    assert id_time("shop@db1--20261122T093005.123Z-0a1b2c") == dt.datetime(2026, 11, 22, 9, 30, 5, 123000,
                                                                          tzinfo=UTC)
    assert id_time("shop@db1--20261122T093005.123Z-xyz") is None
    ids = [backup_id("s", "h", when + dt.timedelta(milliseconds=i)) for i in (5, 1, 999, 30)]
    assert sorted(ids) == sorted(ids, key=id_time)      # ids sort by time


def test_writer_publishes_atomically(tmp_path: Path) -> None:
    parent = tmp_path / "backups"
    bid = backup_id("shop", "db1", dt.datetime(2026, 11, 22, 9, 30, tzinfo=UTC))
    w = BackupWriter(parent, bid, "gzip")
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    # while it is being written, the only entry is hidden and says incomplete
    assert [p.name for p in parent.iterdir()] == [f".{bid}.incomplete"]
    cw = w.chunk(1, 1, TYPES)
    cw.write_rows(sample_rows(0, 10))
    info = cw.close()
    assert info.file == "data/00001-00001.chunk"
    with pytest.raises(BackupNotFound):
        Backup(w.tmp)
    final = w.commit(new_manifest(name="shop"))
    assert final == parent / bid
    assert final.name == bid and bid.startswith("shop@db1--20261122T093000.000Z-")
    assert [p.name for p in parent.iterdir()] == [bid]
    assert stat.S_IMODE(final.stat().st_mode) == 0o700
    assert stat.S_IMODE((final / "data").stat().st_mode) == 0o700
    for f in [final / MANIFEST, final / info.file]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    m = json.loads((final / MANIFEST).read_text("utf-8"))
    assert m["format"] == "albackup" and m["format_version"] == 1 and m["features"] == ["content-hash-v2"]
    assert m["name"] == "shop"
    assert not (final / (MANIFEST + ".tmp")).exists()


def test_second_backup_in_the_same_second_gets_a_suffix(tmp_path: Path) -> None:
    bid = backup_id("shop", "db1", dt.datetime(2026, 11, 22, 9, 30, tzinfo=UTC))
    a = BackupWriter(tmp_path, bid)
    b = BackupWriter(tmp_path, bid)       # while a is still incomplete
    pa, pb = a.commit(new_manifest()), b.commit(new_manifest())
    c = BackupWriter(tmp_path, bid)
    pc = c.commit(new_manifest())
    assert [pa.name, pb.name, pc.name] == [bid, f"{bid}-2", f"{bid}-3"]
    for p in (pa, pb, pc):
        assert NAME_RE.match(p.name)


@pytest.mark.parametrize("stage", ["empty", "chunk-open", "chunk-closed"])
def test_aborted_writer_leaves_nothing(tmp_path: Path, stage: str) -> None:
    parent = tmp_path / "backups"
    w = BackupWriter(parent, "shop@db1--20261122T093000Z")
    if stage != "empty":
        cw = w.chunk(1, 1, TYPES)
        cw.write_rows(sample_rows(0, 3))
        if stage == "chunk-closed":
            cw.close()
        else:
            cw.abort()
    w.abort()
    assert list(parent.iterdir()) == []


def _sqlite_source(tmp_path: Path, bad_date: bool = False) -> Path:
    src = tmp_path / "src.sqlite"
    c = sqlite3.connect(src)
    c.executescript("""
        CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT, d DATE);
        CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id), blob BLOB);
        INSERT INTO a VALUES (1, 'x', '2020-01-02'), (2, NULL, NULL);
        INSERT INTO b VALUES (1, 1, X'0001'), (2, NULL, NULL);
    """)
    if bad_date:
        c.execute("INSERT INTO a VALUES (3, 'bad', 'not a date')")
    c.commit()
    c.close()
    return src


def test_failed_dump_leaves_no_backup_folder(tmp_path: Path) -> None:
    src = _sqlite_source(tmp_path, bad_date=True)
    out = tmp_path / "backups"
    from albackup.errors import DumpError
    with pytest.raises(DumpError, match="column d"):
        api.dump(config.url_config(f"sqlite:///{src}"), out)
    assert list(out.iterdir()) == []


def test_dump_publishes_name_at_host_timestamp(tmp_path: Path) -> None:
    src = _sqlite_source(tmp_path)
    when = dt.datetime(2026, 11, 22, 9, 30, 1, tzinfo=UTC)
    res = api.dump(config.url_config(f"sqlite:///{src}"), tmp_path / "backups", now=when)
    assert re.fullmatch(r"src@local--20261122T093001\.000Z-[0-9a-f]{6}", res.path.name)
    assert [p.name for p in (tmp_path / "backups").iterdir()] == [res.path.name]
    b = Backup(res.path)
    assert b.id == res.path.name
    assert [r for batch in b.iter_batches("a") for r in batch] == [[1, "x", "2020-01-02"], [2, None, None]]
    assert [r for batch in b.iter_batches("b") for r in batch] == [[1, 1, b"\0\x01"], [2, None, None]]


# ---------------------------------------------------------------- manifest checks

@pytest.fixture
def published(tmp_path: Path) -> Path:
    src = _sqlite_source(tmp_path)
    return api.dump(config.url_config(f"sqlite:///{src}"), tmp_path / "backups").path


def edit_manifest(path: Path, change: Any) -> None:
    mp = path / MANIFEST
    m = json.loads(mp.read_text("utf-8"))
    change(m)
    mp.write_text(json.dumps(m), "utf-8")


def test_published_backup_opens(published: Path) -> None:
    b = Backup(published)
    assert [t.key for t in b.schema.tables] == ["a", "b"]
    assert b.rows("a") == 2 and b.rows("b") == 2


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "data/../../../etc/passwd",
                                  "data/00001-00001.chunk/../../x", "data\\00001-00001.chunk",
                                  "data/00001-00001.chunk\n", "DATA/00001-00001.chunk", 7, None])
def test_manifest_chunk_file_outside_data_is_refused(published: Path, name: Any) -> None:
    def change(m: dict) -> None:
        m["tables"]["a"]["chunks"][0]["file"] = name
    edit_manifest(published, change)
    with pytest.raises(ArchiveError, match="manifest is incomplete or damaged") as info:
        Backup(published)
    assert info.value.exit_code == 7


def test_unknown_feature_is_unsupported(published: Path) -> None:
    edit_manifest(published, lambda m: m.__setitem__("features", ["row-encryption"]))
    with pytest.raises(UnsupportedFormat, match="row-encryption") as info:
        Backup(published)
    assert info.value.exit_code == 8
    assert str(published / MANIFEST) in info.value.message


@pytest.mark.parametrize("version", [2, 99, 0, "1", None])
def test_unknown_format_version_is_unsupported(published: Path, version: Any) -> None:
    edit_manifest(published, lambda m: m.__setitem__("format_version", version))
    with pytest.raises(UnsupportedFormat, match="format version"):
        Backup(published)


def test_damaged_manifest(published: Path) -> None:
    (published / MANIFEST).write_bytes(b'{"format": "albackup", ')
    with pytest.raises(ArchiveError, match="manifest is damaged"):
        Backup(published)
    (published / MANIFEST).write_bytes(b"\xff\xfe")
    with pytest.raises(ArchiveError, match="manifest is damaged"):
        Backup(published)
    (published / MANIFEST).write_text('{"format": "something-else"}')
    with pytest.raises(ArchiveError, match="not an albackup manifest"):
        Backup(published)
    (published / MANIFEST).write_text('[1, 2]')
    with pytest.raises(ArchiveError, match="not an albackup manifest"):
        Backup(published)


@pytest.mark.parametrize("change", [
    lambda m: m.pop("schema"),
    lambda m: m.pop("tables"),
    lambda m: m["tables"].pop("a"),
    lambda m: m["tables"]["a"]["chunks"][0].pop("sha256"),
    lambda m: m["tables"]["a"]["chunks"][0].__setitem__("rows", "many"),
    lambda m: m["schema"]["tables"][0]["columns"][0]["type"].__setitem__("kind", "quaternion"),
])
def test_incomplete_manifest(published: Path, change: Any) -> None:
    edit_manifest(published, change)
    with pytest.raises(ArchiveError, match="manifest is incomplete or damaged"):
        Backup(published)


def test_missing_folder_or_manifest(tmp_path: Path, published: Path) -> None:
    with pytest.raises(BackupNotFound, match="no such backup folder"):
        Backup(tmp_path / "nope")
    (published / MANIFEST).unlink()
    with pytest.raises(BackupNotFound, match="no manifest.json") as info:
        Backup(published)
    assert info.value.exit_code == 6


def test_iter_batches_checks_chunk_against_manifest(published: Path) -> None:
    chunk = published / json.loads((published / MANIFEST).read_text())["tables"]["b"]["chunks"][0]["file"]
    data = bytearray(chunk.read_bytes())
    data[10] ^= 1   # a reserved header byte: only the SHA-256 can see this
    os.chmod(chunk, 0o600)
    chunk.write_bytes(bytes(data))
    b = Backup(published)
    with pytest.raises(ArchiveError, match=r"00002-00001\.chunk \(table b\): SHA-256 does not match"):
        list(b.iter_batches("b"))


# ---------------------------------------------------------------- large values (large-values-v1)

def _large(kind: int, data: bytes, short: int = 0) -> object:
    from albackup.codec import LargeBase

    class Src(LargeBase):
        def __init__(self) -> None:
            self.kind, self.length = kind, len(data)

        def pieces(self):  # type: ignore[no-untyped-def]
            end = len(data) - short
            for i in range(0, end, 1 << 20):
                yield data[i:min(i + (1 << 20), end)]
    return Src()


def test_large_values_are_written_in_pieces_and_read_back(tmp_path: Path) -> None:
    from albackup.codec import LargeRows, LargeValue
    from albackup.model import LogicalType

    types = [LogicalType("integer"), LogicalType("binary"), LogicalType("text")]
    blob = bytes(range(256)) * 40000 + b"end"               # ~10 MB
    text = ("zoë\t" * 3_000_000)                              # ~15 MB of UTF-8
    w = ChunkWriter(tmp_path / "c.chunk", "data/00001-00001.chunk", Compressor("zstd"), types)
    w.write_rows([[1, b"small", "a"]])
    w.write_large_row([2, _large(0, blob), _large(1, text.encode())])
    w.write_rows([[3, None, "c"]])
    info = w.close()
    assert info.large_values == 2 and info.rows == 3
    rows = [r for b in read_chunk(tmp_path / "c.chunk", 3, "t", info.sha256, 3) for r in b]
    assert rows == [[1, b"small", "a"], [2, blob, text], [3, None, "c"]]
    h = RowHash(types)
    h.update(rows)                                   # the hash of the whole values
    assert h.hexdigest() == info.content_hash
    lazy = list(read_chunk(tmp_path / "c.chunk", 3, "t", info.sha256, 3, lazy_large=True))
    assert [type(b) for b in lazy] == [list, LargeRows, list]
    lv = lazy[1][0][1]
    assert isinstance(lv, LargeValue) and lv.length == len(blob) and b"".join(lv.pieces()) == blob
    h2 = RowHash(types)
    for b in lazy:
        h2.update(b)                                 # streamed, never made whole
    assert h2.hexdigest() == info.content_hash


def test_large_value_shorter_than_announced_is_refused(tmp_path: Path) -> None:
    from albackup.model import LogicalType

    types = [LogicalType("integer"), LogicalType("binary")]
    w = ChunkWriter(tmp_path / "c.chunk", "data/00001-00001.chunk", Compressor("zstd"), types)
    with pytest.raises(ArchiveError, match="announced"):
        w.write_large_row([1, _large(0, b"x" * (9 << 20), short=5)])
    w.abort()


def test_large_value_cut_short_in_the_file_is_damage(tmp_path: Path) -> None:
    """A chunk whose last piece frame is missing (the trailer rewritten to match) is refused."""
    from albackup.model import LogicalType

    types = [LogicalType("integer"), LogicalType("binary")]
    w = ChunkWriter(tmp_path / "c.chunk", "data/00001-00001.chunk", Compressor("none"), types)
    w.write_large_row([1, _large(0, b"y" * (9 << 20) + b"z")])
    w.close()
    data = (tmp_path / "c.chunk").read_bytes()
    # drop the last piece frame (1 byte "z": 12-byte header + 1 byte) and fix the trailer's count
    body, trailer = data[:-16], data[-16:]
    body = body[:-13]
    frames = int.from_bytes(trailer[4:8], "big") - 1
    (tmp_path / "c.chunk").write_bytes(body + trailer[:4] + frames.to_bytes(4, "big") + trailer[8:])
    with pytest.raises(ArchiveError, match="cut short"):
        list(read_chunk(tmp_path / "c.chunk", 2, "t"))


def test_compress_parts_joins_small_frames_and_streams_big_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from albackup import compress
    from albackup.compress import decompress

    parts = [bytes([i % 251]) * (i * 37 % 1000) for i in range(3000)]
    whole = b"".join(parts)
    c = Compressor()
    joined = c.compress_parts(parts)
    assert joined == c.compress(whole)          # below JOIN_BYTES: one call over the joined frame
    monkeypatch.setattr(compress, "JOIN_BYTES", 1000)
    streamed = c.compress_parts(parts)
    assert streamed != joined                   # past it: fed part by part, never joined
    for blob in (joined, streamed):
        assert decompress(IDS["zstd"], blob, len(whole), "t") == whole
