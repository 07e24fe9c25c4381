"""Backup sets on disk: chunk files of framed rows and the manifest. See docs/FORMAT.md.

Writers hash while they write and publish atomically (temporary folder, manifest last, rename);
readers check every frame, every file's SHA-256 and every count against the manifest.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .codec import pack_rows, unpack_rows
from .compress import NAMES as COMPRESSION_NAMES
from .compress import Compressor, decompress
from .errors import ArchiveError, BackupNotFound, StorageError, UnsupportedFormat
from .model import LogicalType, Schema
from .values import ContentHash

FORMAT_NAME = "albackup"
FORMAT_VERSION = 1
KNOWN_FEATURES: frozenset[str] = frozenset()
MANIFEST = "manifest.json"
CHUNK_MAGIC = b"ALBKCHK1"
HEADER = struct.Struct(">8sB3x")          # magic, compression id, 3 reserved bytes
FRAME = struct.Struct(">III")             # stored length, raw length, crc32 of stored bytes
END_MARK = 0xFFFFFFFF
TRAILER = struct.Struct(">IIQ")           # END_MARK, frame count, row count
MAX_FRAME = 1 << 31                        # 2 GiB raw: refuse anything larger as damage
NAME_RE = re.compile(r"^(?P<name>.+)@(?P<host>.+)--(?P<ts>\d{8}T\d{6}Z)(?:-\d+)?$")


def backup_id(name: str, host: str, when: dt.datetime) -> str:
    return f"{name}@{host}--{when.astimezone(dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"


@dataclass
class ChunkInfo:
    file: str
    rows: int
    bytes: int
    sha256: str
    content_hash: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ChunkWriter:
    """Writes one chunk file: header, frames (one per batch of rows), trailer."""

    def __init__(self, path: Path, rel: str, compressor: Compressor, types: list[LogicalType]) -> None:
        self.path = path
        self.rel = rel
        self._comp = compressor
        self._sha = hashlib.sha256()
        self._hash = ContentHash(types)
        self._frames = 0
        self._bytes = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._f = os.fdopen(fd, "wb")
        self._write(HEADER.pack(CHUNK_MAGIC, compressor.id))

    def _write(self, b: bytes) -> None:
        self._f.write(b)
        self._sha.update(b)
        self._bytes += len(b)

    @property
    def rows(self) -> int:
        return self._hash.rows

    @property
    def bytes_written(self) -> int:
        return self._bytes

    def write_rows(self, rows: list[list[Any]]) -> None:
        if not rows:
            return
        raw = pack_rows(rows)
        if len(raw) >= MAX_FRAME:
            raise ArchiveError(f"{self.rel}: a batch of rows is over 2 GiB; lower the batch size")
        stored = self._comp.compress(raw)
        self._write(FRAME.pack(len(stored), len(raw), zlib.crc32(stored)))
        self._write(stored)
        self._hash.update(rows)
        self._frames += 1

    def close(self) -> ChunkInfo:
        self._write(TRAILER.pack(END_MARK, self._frames, self._hash.rows))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return ChunkInfo(self.rel, self._hash.rows, self._bytes, self._sha.hexdigest(), self._hash.hexdigest())

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()


def _read_exact(f: Any, n: int, where: str, what: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise ArchiveError(f"{where}: truncated ({what} cut short)")
    return b


def read_chunk(path: Path, ncols: int, where: str, expect_sha256: str | None = None,
               expect_rows: int | None = None) -> Iterator[list[list[Any]]]:
    """Yield the batches of rows of one chunk file, checking frames, trailer and file hash."""
    sha = hashlib.sha256()
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise ArchiveError(f"{where}: chunk file is missing") from None
    except OSError as exc:
        raise ArchiveError(f"{where}: cannot open ({exc.strerror})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        head = _read_exact(f, HEADER.size, where, "header")
        sha.update(head)
        magic, comp_id = HEADER.unpack(head)
        if magic != CHUNK_MAGIC:
            raise ArchiveError(f"{where}: not an albackup chunk file (bad magic)")
        if comp_id not in COMPRESSION_NAMES:
            raise ArchiveError(f"{where}: unknown compression id {comp_id}")
        frames = rows = 0
        while True:
            fh = _read_exact(f, 4, where, f"frame {frames + 1} header")
            sha.update(fh)
            (stored_len,) = struct.unpack(">I", fh)
            if stored_len == END_MARK:
                rest = _read_exact(f, TRAILER.size - 4, where, "trailer")
                sha.update(rest)
                _, nframes, nrows = TRAILER.unpack(fh + rest)
                if f.read(1):
                    raise ArchiveError(f"{where}: unexpected bytes after the trailer")
                if nframes != frames or nrows != rows:
                    raise ArchiveError(f"{where}: trailer says {nframes} frames/{nrows} rows, found {frames}/{rows}")
                break
            frames += 1
            rest = _read_exact(f, FRAME.size - 4, where, f"frame {frames} header")
            sha.update(rest)
            _, raw_len, crc = FRAME.unpack(fh + rest)
            if raw_len >= MAX_FRAME or stored_len >= MAX_FRAME:
                raise ArchiveError(f"{where}: frame {frames} claims an impossible size")
            if stored_len > size - f.tell():
                raise ArchiveError(f"{where}: truncated (frame {frames} cut short)")
            stored = _read_exact(f, stored_len, where, f"frame {frames}")
            sha.update(stored)
            if zlib.crc32(stored) != crc:
                raise ArchiveError(f"{where}: frame {frames} is corrupt (checksum mismatch)")
            raw = decompress(comp_id, stored, raw_len, f"{where} frame {frames}")
            if len(raw) != raw_len:
                raise ArchiveError(f"{where}: frame {frames} decompressed to the wrong size")
            batch = unpack_rows(raw, ncols, f"{where} frame {frames}")
            rows += len(batch)
            yield batch
    if expect_sha256 is not None and sha.hexdigest() != expect_sha256:
        raise ArchiveError(f"{where}: SHA-256 does not match the manifest")
    if expect_rows is not None and rows != expect_rows:
        raise ArchiveError(f"{where}: holds {rows} rows, the manifest says {expect_rows}")


class BackupWriter:
    """Creates a backup set in a hidden temporary folder and publishes it with one rename."""

    def __init__(self, parent: Path, bid: str, compression: str = "zstd", level: int | None = None) -> None:
        self.parent = Path(parent)
        self.id = bid
        self.compressor = Compressor(compression, level)
        try:
            self.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StorageError(f"{self.parent}: cannot create the backup directory ({exc.strerror})") from None
        final = self.parent / bid
        n = 1
        while final.exists() or (self.parent / f".{final.name}.incomplete").exists():
            n += 1
            final = self.parent / f"{bid}-{n}"
        self.final = final
        self.tmp = self.parent / f".{final.name}.incomplete"
        try:
            self.tmp.mkdir(mode=0o700)
            (self.tmp / "data").mkdir(mode=0o700)
        except OSError as exc:
            raise StorageError(f"{self.parent}: cannot write a backup here ({exc.strerror})") from None

    def chunk(self, table_no: int, chunk_no: int, types: list[LogicalType]) -> ChunkWriter:
        rel = f"data/{table_no:05d}-{chunk_no:05d}.chunk"
        return ChunkWriter(self.tmp / rel, rel, self.compressor, types)

    def commit(self, manifest: dict[str, Any]) -> Path:
        data = json.dumps(manifest, indent=1, ensure_ascii=False, sort_keys=False).encode("utf-8")
        tmpm = self.tmp / (MANIFEST + ".tmp")
        fd = os.open(tmpm, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmpm, self.tmp / MANIFEST)
        _fsync_dir(self.tmp)
        os.rename(self.tmp, self.final)
        _fsync_dir(self.parent)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _fsync_dir(p: Path) -> None:
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def new_manifest(**kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "features": [],
        "albackup_version": __version__,
        "created_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    m.update(kw)
    return m


class Backup:
    """A published backup set, opened for reading. The manifest is checked on open."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not self.path.is_dir():
            raise BackupNotFound(f"{self.path}: no such backup folder")
        if not mpath.is_file():
            raise BackupNotFound(f"{self.path}: no {MANIFEST}; an interrupted or partial backup is not a backup")
        try:
            raw = mpath.read_bytes()
            m = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArchiveError(f"{mpath}: manifest is damaged ({exc})") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
            raise ArchiveError(f"{mpath}: not an albackup manifest")
        ver = m.get("format_version")
        if ver != FORMAT_VERSION:
            raise UnsupportedFormat(
                f"{mpath}: format version {ver!r} is not supported (this albackup reads version {FORMAT_VERSION}); "
                "use a newer albackup")
        unknown = [f for f in m.get("features") or [] if f not in KNOWN_FEATURES]
        if unknown:
            raise UnsupportedFormat(f"{mpath}: requires unknown feature(s) {', '.join(map(str, unknown))}")
        try:
            self.schema = Schema.from_dict(m["schema"])
            self.tables: dict[str, dict[str, Any]] = m["tables"]
            for t in self.schema.tables:
                entry = self.tables[t.key]
                for c in entry["chunks"]:
                    if not isinstance(c["file"], str) or not re.fullmatch(r"data/\d{5}-\d{5}\.chunk", c["file"]):
                        raise ValueError(f"bad chunk file name {c['file']!r}")
                    int(c["rows"]), str(c["sha256"]), str(c["content_hash"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"{mpath}: manifest is incomplete or damaged ({type(exc).__name__}: {exc})") from None
        self.manifest = m

    @property
    def id(self) -> str:
        return self.path.name

    def rows(self, key: str) -> int:
        return int(self.tables[key]["rows"])

    def iter_batches(self, key: str) -> Iterator[list[list[Any]]]:
        """All rows of one table, batch by batch, checked against the manifest."""
        table = self.schema.table(key)
        ncols = len(table.columns)
        for c in self.tables[key]["chunks"]:
            where = f"{self.path.name}/{c['file']} (table {key})"
            yield from read_chunk(self.path / c["file"], ncols, where, c["sha256"], int(c["rows"]))
