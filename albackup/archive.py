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
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from . import __version__
from .codec import (LargeBase, LargeRows, LargeValue, array_header, hash_row_streaming, iter_frame, pack_each,
                    row_packer)
from .compress import NAMES as COMPRESSION_NAMES
from .compress import Compressor, decompress
from .fsutil import fsync_dir
from .errors import ArchiveError, BackupNotFound, RowTooLarge, StorageError, UnsupportedFormat
from .model import LogicalType, Schema
from .pgtext import ENCODING as TEXT_ENCODING
from .pgtext import FEATURE as TEXT_FEATURE
from .pgtext import LINE_HASH_BITS
from .pgtext import ORDERED as ORDERED_FEATURE
from .values import HASH_V2, EchoHash, RowHash, StreamHash

FORMAT_NAME = "albackup"
FORMAT_VERSION = 1
ENCRYPTION_FEATURE = "encryption-v1"
LARGE_FEATURE = "large-values-v1"
KNOWN_FEATURES: frozenset[str] = frozenset({ENCRYPTION_FEATURE, HASH_V2, LARGE_FEATURE, ORDERED_FEATURE,
                                            *LINE_HASH_BITS})
#: manifest keys kept in plain text when the rest of the manifest is sealed
PLAIN_KEYS = ("format", "format_version", "features", "albackup_version", "created_at", "encryption")
MANIFEST = "manifest.json"
CHUNK_MAGIC = b"ALBKCHK1"
HEADER = struct.Struct(">8sBB2x")         # magic, compression id, flags, 2 reserved bytes
FLAG_ENCRYPTED = 0x01
FLAG_TEXT = 0x02                          # frames hold PostgreSQL COPY text (pgtext.py), not msgpack
FRAME = struct.Struct(">III")             # stored length, raw length, crc32 of stored bytes
END_MARK = 0xFFFFFFFF
TRAILER = struct.Struct(">IIQ")           # END_MARK, frame count, row count
SEALED_TRAILER = struct.Struct(">IQ")     # inside the sealed last frame: frame count, row count
#: format limits (FORMAT.md §4.1): a frame's raw payload is below MAX_FRAME; its stored payload
#: (compressed, sealed) is at most MAX_STORED; a manifest file is at most MAX_MANIFEST bytes
MAX_FRAME = 32 << 20
MAX_STORED = MAX_FRAME + (MAX_FRAME >> 6) + (64 << 10)
MAX_MANIFEST = 256 << 20
SEALED_TRAILER_MAX = 64                   # the sealed trailer: nonce, SEALED_TRAILER, tag
#: ``name@host--20261122T093005.123Z-1a2b3c``: UTC time to the millisecond and a random tag, so that
#: two dumps of one database never share an id (older backups: ``--20261122T093005Z``, maybe ``-2``)
NAME_RE = re.compile(r"^(?P<name>[^@]+)@(?P<host>.+)--(?P<ts>\d{8}T\d{6})(?:\.(?P<ms>\d{3}))?Z"
                     r"(?:-(?P<tag>[0-9a-f]{6}))?(?:-\d+)?$")


def backup_id(name: str, host: str, when: dt.datetime, tag: str | None = None) -> str:
    """A new backup's id: sortable by time, unique even for dumps started in the same millisecond."""
    import secrets

    t = when.astimezone(dt.timezone.utc)
    tag = secrets.token_hex(3) if tag is None else tag
    return f"{name}@{host}--{t.strftime('%Y%m%dT%H%M%S')}.{t.microsecond // 1000:03d}Z-{tag}"


def id_time(bid: str) -> dt.datetime | None:
    """The UTC time in a backup id (new or old form), or None when it is not a backup id."""
    m = NAME_RE.match(bid)
    if not m:
        return None
    try:
        t = dt.datetime.strptime(m.group("ts"), "%Y%m%dT%H%M%S")
    except ValueError:
        return None
    return t.replace(microsecond=int(m.group("ms") or 0) * 1000, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Encryption:
    """The data key of one backup and the plaintext header that describes its key slots."""

    data_key: bytes
    header: dict[str, Any]

    @property
    def uuid(self) -> bytes:
        import uuid

        return uuid.UUID(self.header["backup_uuid"]).bytes

    def sealer(self, file_name: str) -> Any:
        from .crypto import FrameSealer

        return FrameSealer(self.data_key, self.uuid, file_name)

    def opener(self, file_name: str) -> Any:
        from .crypto import FrameOpener

        return FrameOpener(self.data_key, self.uuid, file_name)


@dataclass
class ChunkInfo:
    file: str
    rows: int
    bytes: int
    sha256: str
    content_hash: str
    large_values: int = 0
    encoding: str | None = None       # pgtext.ENCODING, or None: msgpack rows
    line_order: str | None = None     # "key": COPY text in key order, hashed whole (pgtext.ORDERED)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for k in ("large_values", "encoding", "line_order"):
            if not d[k]:
                del d[k]
        return d


class ChunkWriter:
    """Writes one chunk file: header, frames (one per batch of rows), trailer.

    Rows arrive packed one by one (``write_packed``): the frame is their concatenation behind an
    array header, and the content hash is taken over the same bytes. With ``text`` the frames are
    blocks of PostgreSQL COPY text lines instead (``write_text``), hashed line by line (with ``ordered``,
    lines in key order: their whole text in one hash, values.StreamHash). Compression (and sealing)
    of a frame runs on a helper thread while the caller fetches and packs the next batch; frames
    are written in order, at most ``DEPTH`` of them in flight.
    """

    DEPTH = 2
    AHEAD = 32 << 20

    def _pending_raw(self) -> int:
        return sum(n for _, n in self._pending)

    def __init__(self, path: Path, rel: str, compressor: Compressor, types: list[LogicalType],
                 encryption: Encryption | None = None, text: bool = False, ordered: bool = False) -> None:
        self.path = path
        self.rel = rel
        self._comp = compressor
        self._seal = encryption.sealer(rel) if encryption else None
        self._sha = hashlib.sha256()
        self.text = text
        self.ordered = text and ordered
        self._hash: RowHash | EchoHash | StreamHash = (
            (StreamHash() if ordered else EchoHash(LINE_HASH_BITS[TEXT_FEATURE])) if text else RowHash(types))
        self._pack = row_packer()
        self._frames = 0
        self._bytes = 0
        self.large_values = 0
        self._pending: deque[Any] = deque()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="albackup-compress")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._f = os.fdopen(fd, "wb")
        self._write(HEADER.pack(CHUNK_MAGIC, compressor.id,
                                (FLAG_ENCRYPTED if encryption else 0) | (FLAG_TEXT if text else 0)))

    def _write(self, b: bytes) -> None:
        self._f.write(b)
        self._sha.update(b)
        self._bytes += len(b)

    @property
    def rows(self) -> int:
        return self._hash.rows

    @property
    def bytes_written(self) -> int:
        """Bytes stored so far, counting frames still being compressed at their raw size."""
        return self._bytes + self._pending_raw()

    @property
    def content_hash(self) -> str:
        return self._hash.hexdigest()

    def _store(self, index: int, parts: list[bytes], raw_len: int) -> None:
        """Compress, seal, checksum and write one frame. This runs on the helper thread, one frame
        after another in order, so the file and its SHA-256 grow as if written by the caller."""
        stored = self._comp.compress_parts(parts)
        del parts
        if self._seal is not None:
            stored = self._seal.seal(index, False, stored)
        self._write(FRAME.pack(len(stored), raw_len, zlib.crc32(stored)))
        self._write(stored)

    def write_text(self, data: bytes) -> None:
        """One frame of COPY text: whole lines, one per row (a text chunk only)."""
        if not data:
            return
        self._hash.update(data)     # type: ignore[arg-type]  (lines counted and hashed)
        self._frame([data])

    def write_rows(self, rows: list[Any]) -> None:
        if rows:
            self.write_packed(pack_each(self._pack, rows))

    def write_packed(self, packed: list[bytes]) -> None:
        """One frame of rows, each already packed with ``codec.row_packer``. The frame is the
        array header and the rows (joined on the helper thread, see Compressor.compress_parts)."""
        if not packed:
            return
        self._hash.update_packed(packed)
        self._frame([array_header(len(packed)), *packed])

    def write_large_row(self, row: Any) -> None:
        """A row holding large values (codec.LargeBase): a frame of the row with placeholders,
        then each large value, in column order, as frames of one piece each. The row's content
        hash is taken over its full canonical encoding as the pieces go by."""
        placed = [v.placeholder() if isinstance(v, LargeBase) else v for v in row]
        self._frame([array_header(1), *pack_each(self._pack, [placed])])
        self._hash.add(hash_row_streaming(row, self._pack, lambda piece: self._frame([piece]), self.rel))
        self.large_values += sum(isinstance(v, LargeBase) for v in row)

    def _frame(self, parts: list[bytes]) -> None:
        raw_len = sum(map(len, parts))
        if raw_len >= MAX_FRAME:
            raise RowTooLarge(f"{self.rel}: a row of {raw_len:,} bytes (its values of up to 8 MiB each, or its "
                               f"COPY text line) is over the format's limit of {MAX_FRAME >> 20} MiB for a frame")
        index = self._frames
        self._frames += 1
        self._pending.append((self._pool.submit(self._store, index, parts, raw_len), raw_len))
        del parts
        # at most DEPTH frames in flight, and at most one once they get big (50 MB values)
        while len(self._pending) > self.DEPTH or (len(self._pending) > 1 and self._pending_raw() > self.AHEAD):
            self._drain_one()

    def _drain_one(self) -> None:
        fut, _ = self._pending[0]
        fut.result()
        self._pending.popleft()

    def close(self) -> ChunkInfo:
        while self._pending:
            self._drain_one()
        self._pool.shutdown()
        self._write(TRAILER.pack(END_MARK, self._frames, self._hash.rows))
        if self._seal is not None:   # the authenticated end: no frame can be cut off unseen
            sealed = self._seal.seal(self._frames, True, SEALED_TRAILER.pack(self._frames, self._hash.rows))
            self._write(struct.pack(">I", len(sealed)) + sealed)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return ChunkInfo(self.rel, self._hash.rows, self._bytes, self._sha.hexdigest(), self._hash.hexdigest(),
                         self.large_values, TEXT_ENCODING if self.text else None, "key" if self.ordered else None)

    def abort(self) -> None:
        for fut, _ in self._pending:
            fut.cancel()
        self._pending.clear()
        self._pool.shutdown()
        if not self._f.closed:
            self._f.close()
        try:
            os.unlink(self.path)        # no chunk file: the unit may write it again
        except OSError:
            pass


def _large_batch(batch: list[Any], found: list[LargeValue], frames: Iterator[bytes], where: str,
                 counts: list[int], lazy: bool) -> list[Any]:
    """The row of a frame holding large-value placeholders, its values read from the frames that
    follow (streamed to temporary files; made whole unless ``lazy``)."""
    for lv in found:          # the values' pieces follow, in order
        while lv.filled < lv.length:
            piece = next(frames, None)
            if piece is None:
                raise ArchiveError(f"{where}: a large value is cut short")
            if lv.filled + len(piece) > lv.length:
                raise ArchiveError(f"{where}: frame {counts[0]}: a large value is longer than announced")
            lv.append(piece)
    if lazy:
        return LargeRows(batch)
    out = [[v.materialize() if isinstance(v, LargeValue) else v for v in r] for r in batch]
    for lv in found:
        lv.close()
    return out


def _read_exact(f: Any, n: int, where: str, what: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise ArchiveError(f"{where}: truncated ({what} cut short)")
    return b


def read_chunk(path: Path, ncols: int, where: str, expect_sha256: str | None = None,
               expect_rows: int | None = None, encryption: Encryption | None = None,
               rel: str | None = None, lazy_large: bool = False,
               text: Callable[[bytes], Iterator[list[Any]]] | None = None,
               raw_text: bool = False, expect_bytes: int | None = None) -> Iterator[Any]:
    """Yield the batches of rows of one chunk file, checking frames, trailer and file hash.

    A COPY text chunk (FORMAT.md §5.2) needs ``text``, the decoder of its frames into rows
    (pgtext.decoder); with ``raw_text`` its frames are yielded as they are (bytes of whole lines),
    each as ``(frame, lines)`` (counting them is a pass over the frame: done once, here).

    With ``encryption`` every frame is authenticated with the file's name (``rel``) and its
    index, and the sealed trailer proves the file ends where its writer ended it.

    Large values (FORMAT.md §5.1) are read from the frames that follow their row's frame into
    temporary files; with ``lazy_large`` such a batch is a ``codec.LargeRows`` holding
    ``codec.LargeValue`` objects (to be streamed), otherwise the values are made whole.

    Every size is checked before anything is allocated for it: the file's against
    ``expect_bytes``, a frame's against the format's limits and the bytes left in the file,
    its rows against the frame's size and the rows the manifest leaves (``expect_rows``).
    A frame's rows come in batches of about a MiB of its raw bytes (codec.iter_frame).
    """
    opener = encryption.opener(rel or path.name) if encryption else None
    sha = hashlib.sha256()
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise ArchiveError(f"{where}: chunk file is missing") from None
    except OSError as exc:
        raise ArchiveError(f"{where}: cannot open ({exc.strerror})") from None
    counts = [0, 0]      # frames, rows

    def frames() -> Iterator[bytes]:
        """Every frame's raw payload, checked; returns at the trailer (checked too)."""
        size = os.fstat(f.fileno()).st_size
        if expect_bytes is not None and size != expect_bytes:
            raise ArchiveError(f"{where}: {'truncated (' if size < expect_bytes else '('}file is {size} bytes, "
                               f"the manifest says {expect_bytes})")
        head = _read_exact(f, HEADER.size, where, "header")
        sha.update(head)
        magic, comp_id, flags = HEADER.unpack(head)
        if magic != CHUNK_MAGIC:
            raise ArchiveError(f"{where}: not an albackup chunk file (bad magic)")
        is_text = text is not None or raw_text
        if bool(flags & FLAG_TEXT) != is_text:
            raise ArchiveError(f"{where}: chunk holds {'COPY text' if flags & FLAG_TEXT else 'msgpack rows'}, "
                               f"the manifest says {'COPY text' if is_text else 'msgpack rows'}")
        if bool(flags & FLAG_ENCRYPTED) != (opener is not None):
            raise ArchiveError(f"{where}: chunk is {'' if flags & FLAG_ENCRYPTED else 'not '}encrypted, "
                               f"the manifest says it {'is' if opener else 'is not'}")
        if comp_id not in COMPRESSION_NAMES:
            raise ArchiveError(f"{where}: unknown compression id {comp_id}")
        while True:
            frames_ = counts[0]
            fh = _read_exact(f, 4, where, f"frame {frames_ + 1} header")
            sha.update(fh)
            (stored_len,) = struct.unpack(">I", fh)
            if stored_len == END_MARK:
                rest = _read_exact(f, TRAILER.size - 4, where, "trailer")
                sha.update(rest)
                _, nframes, nrows = TRAILER.unpack(fh + rest)
                if opener is not None:
                    ln = _read_exact(f, 4, where, "sealed trailer")
                    sha.update(ln)
                    (slen,) = struct.unpack(">I", ln)
                    if slen > SEALED_TRAILER_MAX:
                        raise ArchiveError(f"{where}: sealed trailer claims an impossible size")
                    if slen > size - f.tell():
                        raise ArchiveError(f"{where}: truncated (sealed trailer cut short)")
                    blob = _read_exact(f, slen, where, "sealed trailer")
                    sha.update(blob)
                    if SEALED_TRAILER.unpack(opener.open(frames_, True, blob)) != (nframes, nrows):
                        raise ArchiveError(f"{where}: trailer does not match its sealed copy")
                if f.read(1):
                    raise ArchiveError(f"{where}: unexpected bytes after the trailer")
                if nframes != frames_ or nrows != counts[1]:
                    raise ArchiveError(f"{where}: trailer says {nframes} frames/{nrows} rows, "
                                       f"found {frames_}/{counts[1]}")
                return
            counts[0] = frames = frames_ + 1
            rest = _read_exact(f, FRAME.size - 4, where, f"frame {frames} header")
            sha.update(rest)
            _, raw_len, crc = FRAME.unpack(fh + rest)
            if raw_len >= MAX_FRAME or stored_len > MAX_STORED or (
                    comp_id == 0 and opener is None and stored_len != raw_len):
                raise ArchiveError(f"{where}: frame {frames} claims an impossible size "
                                   f"({stored_len} bytes stored, {raw_len} raw; limit {MAX_FRAME - 1} raw)")
            if stored_len > size - f.tell():
                raise ArchiveError(f"{where}: truncated (frame {frames} cut short)")
            stored = _read_exact(f, stored_len, where, f"frame {frames}")
            sha.update(stored)
            if zlib.crc32(stored) != crc:
                raise ArchiveError(f"{where}: frame {frames} is corrupt (checksum mismatch)")
            if opener is not None:
                try:
                    stored = opener.open(frames - 1, False, stored)
                except ArchiveError:
                    raise ArchiveError(f"{where}: frame {frames} fails authentication (damaged, tampered, "
                                       "reordered or taken from another file or backup)") from None
            raw = decompress(comp_id, stored, raw_len, f"{where} frame {frames}")
            del stored
            if len(raw) != raw_len:
                raise ArchiveError(f"{where}: frame {frames} decompressed to the wrong size")
            yield raw

    with f:
        it = frames()
        for raw in it:
            if raw_text:
                n = raw.count(b"\n")
                counts[1] += n
                yield raw, n
                continue
            if text is not None:
                for batch in text(raw):
                    counts[1] += len(batch)
                    yield batch
                del raw
                continue
            found: list[LargeValue] = []
            left = None if expect_rows is None else expect_rows - counts[1]
            for batch in iter_frame(raw, ncols, f"{where} frame {counts[0]}", found, left):
                counts[1] += len(batch)
                if not found:
                    yield batch
                    continue
                yield _large_batch(batch, found, it, where, counts, lazy_large)
            del raw
    if expect_sha256 is not None and sha.hexdigest() != expect_sha256:
        raise ArchiveError(f"{where}: SHA-256 does not match the manifest")
    if expect_rows is not None and counts[1] != expect_rows:
        raise ArchiveError(f"{where}: holds {counts[1]} rows, the manifest says {expect_rows}")


class BackupWriter:
    """Creates a backup set in a hidden temporary folder and publishes it with one rename."""

    def __init__(self, parent: Path, bid: str, compression: str = "zstd", level: int | None = None,
                 encryption: Encryption | None = None) -> None:
        self.parent = Path(parent)
        self.id = bid
        self.encryption = encryption
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

    def chunk(self, table_no: int, chunk_no: int, types: list[LogicalType], text: bool = False,
              ordered: bool = False) -> ChunkWriter:
        rel = f"data/{table_no:05d}-{chunk_no:05d}.chunk"
        return ChunkWriter(self.tmp / rel, rel, self.compressor, types, self.encryption, text, ordered)

    def commit(self, manifest: dict[str, Any]) -> Path:
        if self.encryption is not None:
            manifest = seal_manifest(manifest, self.encryption)
        data = json.dumps(manifest, indent=1, ensure_ascii=False, sort_keys=False).encode("utf-8")
        tmpm = self.tmp / (MANIFEST + ".tmp")
        fd = os.open(tmpm, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmpm, self.tmp / MANIFEST)
        fsync_dir(self.tmp)
        os.rename(self.tmp, self.final)
        fsync_dir(self.parent)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def seal_manifest(manifest: dict[str, Any], enc: Encryption) -> dict[str, Any]:
    """Keep PLAIN_KEYS readable; seal the rest (names, schema, hashes) with the data key."""
    from .crypto import seal_json

    plain = {k: manifest[k] for k in PLAIN_KEYS if k in manifest and k != "encryption"}
    plain["features"] = sorted(set(plain.get("features") or []) | {ENCRYPTION_FEATURE})
    plain["encryption"] = enc.header
    rest = {k: v for k, v in manifest.items() if k not in PLAIN_KEYS}
    return {**plain, "sealed": seal_json(enc.data_key, enc.uuid, rest, plain)}


def new_manifest(**kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "features": [HASH_V2],
        "albackup_version": __version__,
        "created_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    m.update(kw)
    return m


def read_manifest(path: Path | str) -> dict[str, Any]:
    """The manifest as stored (for an encrypted backup: only its plaintext header and the seal)."""
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir():
        raise BackupNotFound(f"{path}: no such backup folder")
    if not mpath.is_file():
        raise BackupNotFound(f"{path}: no {MANIFEST}; an interrupted or partial backup is not a backup")
    try:
        size = mpath.stat().st_size
        if size > MAX_MANIFEST:
            raise ArchiveError(f"{mpath}: manifest is damaged ({size} bytes, over the format's limit of "
                               f"{MAX_MANIFEST >> 20} MiB)")
        with open(mpath, "rb") as f:
            m = json.loads(f.read(MAX_MANIFEST + 1).decode("utf-8"))
    except OSError as exc:
        raise ArchiveError(f"{mpath}: cannot read the manifest ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"{mpath}: manifest is damaged ({exc})") from None
    except RecursionError:
        raise ArchiveError(f"{mpath}: manifest is damaged (nested too deep)") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        raise ArchiveError(f"{mpath}: not an albackup manifest")
    ver = m.get("format_version")
    if ver != FORMAT_VERSION:
        raise UnsupportedFormat(
            f"{mpath}: format version {ver!r} is not supported (this albackup reads version {FORMAT_VERSION}); "
            "use a newer albackup")
    feats = m.get("features") or []
    if not isinstance(feats, list):
        raise ArchiveError(f"{mpath}: manifest is damaged (features is not a list)")
    unknown = [f for f in feats if f not in KNOWN_FEATURES]
    if unknown:
        raise UnsupportedFormat(f"{mpath}: requires unknown feature(s) {', '.join(map(str, unknown))}")
    return m


#: a chunk file holds at most 2^32 - 1 frames of at most MAX_STORED bytes
MAX_CHUNK = HEADER.size + (FRAME.size + MAX_STORED) * 0xFFFFFFFE + TRAILER.size + 4 + SEALED_TRAILER_MAX
MAX_ROWS = (1 << 63) - 1


def _count(d: dict[str, Any], key: str, what: str, limit: int = MAX_ROWS) -> int:
    """``d[key]``, an integer from 0 to ``limit``; ValueError naming ``what`` otherwise."""
    v = d[key]
    if type(v) is not int or not 0 <= v <= limit:
        raise ValueError(f"{what}: {key} is {v!r}, not an integer from 0 to {limit}")
    return v


def _check_chunk(c: dict[str, Any]) -> None:
    """A chunk entry of the manifest: its file name, counts and hashes of the right form."""
    if not isinstance(c["file"], str) or not re.fullmatch(r"data/\d{5}-\d{5}\.chunk", c["file"]):
        raise ValueError(f"bad chunk file name {c['file']!r}")
    what = f"chunk {c['file']}"
    _count(c, "rows", what)
    if _count(c, "bytes", what, MAX_CHUNK) < HEADER.size + TRAILER.size:
        raise ValueError(f"{what}: bytes is {c['bytes']}, less than an empty chunk file")
    if not isinstance(c["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", c["sha256"]):
        raise ValueError(f"{what}: sha256 is not 64 hex digits")
    if not isinstance(c["content_hash"], str):
        raise ValueError(f"{what}: content_hash is not a string")


class Backup:
    """A published backup set, opened for reading. The manifest is checked on open.

    An encrypted backup needs a ``keyring`` (passphrases and/or private keys) to open.
    """

    def __init__(self, path: Path | str, keyring: Any = None, require_encryption: bool = False,
                 fetch: Callable[[str], Path] | None = None) -> None:
        """``fetch(rel)``: makes a chunk file available locally on first use (remote backups)."""
        self.path = Path(path)
        self._fetch = fetch
        mpath = self.path / MANIFEST
        m = read_manifest(self.path)
        self.encryption: Encryption | None = None
        if ENCRYPTION_FEATURE in (m.get("features") or []) or "encryption" in m:
            m = self._unseal(m, keyring, mpath)
        elif require_encryption:
            raise ArchiveError(f"{mpath}: this backup is not encrypted, but encryption is configured "
                               "(a replaced or forged backup?)")
        try:
            self.schema = Schema.from_dict(m["schema"])
            self.tables: dict[str, dict[str, Any]] = m["tables"]
            for t in self.schema.tables:
                entry = self.tables[t.key]
                _count(entry, "rows", f"table {t.key}")
                if not isinstance(entry["chunks"], list) or not isinstance(entry["content_hash"], str):
                    raise ValueError(f"table {t.key}: chunks is not a list or content_hash not a string")
                for c in entry["chunks"]:
                    _check_chunk(c)
                    if c.get("encoding") not in (None, TEXT_ENCODING):
                        raise ValueError(f"unknown chunk encoding {c.get('encoding')!r}")
                    if c.get("encoding") and not set(LINE_HASH_BITS) & set(m.get("features") or []):
                        raise ValueError(f"chunk {c['file']} is COPY text, the features do not say so")
                    if c.get("line_order") not in (None, "key") or (c.get("line_order") and (
                            c.get("encoding") != TEXT_ENCODING or ORDERED_FEATURE not in (m.get("features") or [])
                            or not (c.get("range") or {}).get("key"))):
                        raise ValueError(f"chunk {c['file']}: line_order {c.get('line_order')!r} does not fit it")
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
            raise ArchiveError(f"{mpath}: manifest is incomplete or damaged ({type(exc).__name__}: {exc})") from None
        self.manifest = m
        self.features: list[str] = list(m.get("features") or [])

    def _unseal(self, m: dict[str, Any], keyring: Any, mpath: Path) -> dict[str, Any]:
        from .crypto import open_json
        from .errors import CryptoError

        header = m.get("encryption")
        if not isinstance(header, dict) or not isinstance(m.get("sealed"), str):
            raise ArchiveError(f"{mpath}: encrypted manifest is damaged (no key slots or sealed part)")
        if keyring is None:
            raise CryptoError(f"{self.path.name} is encrypted: give its passphrase (--passphrase-env/-file/-fd/"
                              "-command) or private key (--key-file)")
        try:
            import uuid

            buuid = uuid.UUID(str(header["backup_uuid"])).bytes
            slots = header["slots"]
        except (KeyError, ValueError, TypeError):
            raise ArchiveError(f"{mpath}: encryption header is damaged") from None
        data_key = keyring.open_slots(slots, buuid)
        self.encryption = Encryption(data_key, header)
        plain = {k: v for k, v in m.items() if k != "sealed"}
        rest = open_json(data_key, buuid, m["sealed"], plain)
        if not isinstance(rest, dict) or any(k in rest for k in PLAIN_KEYS):
            raise ArchiveError(f"{mpath}: sealed manifest is damaged")
        return {**plain, **rest}

    @property
    def id(self) -> str:
        return self.path.name

    def rows(self, key: str) -> int:
        return int(self.tables[key]["rows"])

    def is_text(self, key: str, index: int) -> bool:
        """Whether a chunk holds PostgreSQL COPY text (pgtext.py) rather than msgpack rows."""
        return self.tables[key]["chunks"][index].get("encoding") == TEXT_ENCODING

    def is_ordered(self, key: str, index: int) -> bool:
        """Whether a COPY text chunk's lines are in key order, hashed whole (pgtext.ORDERED)."""
        return self.tables[key]["chunks"][index].get("line_order") == "key"

    @property
    def line_hash_bits(self) -> int:
        """The width of this backup's line hashes (values.EchoHash): its COPY text chunks' (128
        in backups with pgtext.FEATURE_V1), and those a restore of it takes of the lines it sends
        and reads back (64 where no chunk holds any)."""
        return max([LINE_HASH_BITS[f] for f in self.features if f in LINE_HASH_BITS] or [64])

    def text_hashed(self, key: str) -> bool:
        """Whether any chunk of the table is COPY text: then the table's content hash is not a
        hash of its values (a text chunk's is the hash of its lines)."""
        return any(self.is_text(key, i) for i in range(len(self.tables[key]["chunks"])))

    def iter_chunk(self, key: str, index: int, lazy_large: bool = False) -> Iterator[list[list[Any]]]:
        """The rows of one chunk file of a table (0-based), checked against the manifest."""
        table = self.schema.table(key)
        c = self.tables[key]["chunks"][index]
        where = f"{self.path.name}/{c['file']} (table {key})"
        text = None
        if self.is_text(key, index):
            from .pgtext import decoder

            text = decoder([col.type for col in table.columns], where)
        yield from read_chunk(self.chunk_path(c["file"]), len(table.columns), where, c["sha256"], int(c["rows"]),
                              self.encryption, c["file"], lazy_large, text, expect_bytes=c["bytes"])

    def iter_text(self, key: str, index: int) -> Iterator[tuple[bytes, int]]:
        """The frames of a COPY text chunk as stored (whole lines), checked against the manifest,
        each with the number of its lines."""
        table = self.schema.table(key)
        c = self.tables[key]["chunks"][index]
        where = f"{self.path.name}/{c['file']} (table {key})"
        yield from read_chunk(self.chunk_path(c["file"]), len(table.columns), where, c["sha256"], int(c["rows"]),
                              self.encryption, c["file"], raw_text=True, expect_bytes=c["bytes"])

    def iter_batches(self, key: str, lazy_large: bool = False) -> Iterator[list[list[Any]]]:
        """All rows of one table, batch by batch, checked against the manifest."""
        for i in range(len(self.tables[key]["chunks"])):
            yield from self.iter_chunk(key, i, lazy_large)

    def chunk_path(self, rel: str) -> Path:
        return self._fetch(rel) if self._fetch is not None else self.path / rel
