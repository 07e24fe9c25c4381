"""The only module that imports msgpack. Fixed options, bounded unpacking, our own errors."""
from __future__ import annotations

import abc
import io
import struct
from typing import Any, Callable, Iterator

import msgpack

from .errors import ArchiveError


def pack_rows(rows: list[list[Any]]) -> bytes:
    """One msgpack array of row arrays. Binary stays binary, text stays text."""
    try:
        return msgpack.packb(rows, use_bin_type=True, strict_types=False, datetime=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ArchiveError(f"cannot encode a row: {exc}") from None


def unpack_rows(data: bytes, ncols: int, where: str) -> list[list[Any]]:
    """Decode one frame's rows, refusing anything that is not a list of ``ncols``-wide rows.

    msgpack's limits default to the input's own length, so a damaged length prefix cannot make
    it allocate more than the frame holds.
    """
    return unpack_frame(data, ncols, where, None)


def _check_rows(rows: Any, ncols: int, where: str) -> list[list[Any]]:
    if not isinstance(rows, list):
        raise ArchiveError(f"{where}: frame does not hold a list of rows")
    if rows and (set(map(type, rows)) != {list} or set(map(len, rows)) != {ncols}):
        for r in rows:
            if not isinstance(r, list) or len(r) != ncols:
                raise ArchiveError(f"{where}: a row has {len(r) if isinstance(r, list) else '?'} values, "
                                   f"expected {ncols}")
    return rows


def row_packer() -> Any:
    """``pack(row) -> bytes``: one row's canonical msgpack encoding (the same options as
    ``pack_rows``). A packer is not thread-safe: make one per thread."""
    return msgpack.Packer(use_bin_type=True, strict_types=False, datetime=False, autoreset=True).pack


def pack_each(pack: Any, rows: list[Any]) -> list[bytes]:
    """Every row packed on its own (the bytes the content hash is taken over)."""
    try:
        return list(map(pack, rows))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ArchiveError(f"cannot encode a row: {exc}") from None


def array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` elements: a frame is this plus the packed rows."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


# ---------------------------------------------------------------------------------------------
# Large values (feature "large-values-v1", docs/FORMAT.md §5.1). A value of more than
# LARGE_BYTES is not held in its row: the row carries a placeholder (msgpack ext type 1: kind and
# length) and the value's bytes follow the row's frame in frames of their own, a piece each.
# ---------------------------------------------------------------------------------------------

LARGE_EXT = 1
LARGE_HEAD = struct.Struct(">BQ")          # kind (0 bytes, 1 text as UTF-8), length in bytes
LARGE_BYTES = 8 << 20                      # values above this are stored in pieces
PIECE_BYTES = 1 << 20                      # and read from the source this many at a time


class LargeBase(abc.ABC):
    """A value too large to hold whole: ``kind`` 0 (bytes) or 1 (text), ``length`` in bytes."""

    kind: int
    length: int

    @abc.abstractmethod
    def pieces(self) -> Iterator[bytes]:
        """The value's bytes (text as UTF-8), a piece at a time; may be read more than once."""

    def msgpack_header(self) -> bytes:
        """What ``msgpack.packb(value)`` starts with: bin 32 or str 32 and the length."""
        return (b"\xc6" if self.kind == 0 else b"\xdb") + self.length.to_bytes(4, "big")

    def placeholder(self) -> msgpack.ExtType:
        return msgpack.ExtType(LARGE_EXT, LARGE_HEAD.pack(self.kind, self.length))

    def materialize(self) -> bytes | str:
        data = b"".join(self.pieces())
        return data if self.kind == 0 else data.decode("utf-8")


class LargeValue(LargeBase):
    """A large value read from a chunk file, spooled to a temporary file as it is read."""

    def __init__(self, kind: int, length: int) -> None:
        import tempfile

        self.kind = kind
        self.length = length
        self.filled = 0
        self._f = tempfile.TemporaryFile(prefix="albackup-value-")

    def append(self, piece: bytes) -> None:
        self._f.write(piece)
        self.filled += len(piece)

    def pieces(self) -> Iterator[bytes]:
        self._f.seek(0)
        while True:
            b = self._f.read(PIECE_BYTES)
            if not b:
                return
            yield b

    def close(self) -> None:
        self._f.close()


class LargeRows(list):  # type: ignore[type-arg]
    """A batch of rows holding LargeValue objects (the rest of albackup sees plain lists)."""


def has_large(row: Any) -> bool:
    return any(isinstance(v, LargeBase) for v in row)


def hash_row_streaming(row: Any, pack: Any, on_piece: Callable[[bytes], None] | None = None,
                       where: str = "") -> int:
    """XXH3-128 of the row's canonical encoding, large values fed piece by piece (each piece also
    handed to ``on_piece``, the chunk writer's way of storing it as it goes by)."""
    from xxhash import xxh3_128

    h = xxh3_128()
    h.update(array_header(len(row)))
    for v in row:
        if isinstance(v, LargeBase):
            h.update(v.msgpack_header())
            n = 0
            for p in v.pieces():
                if p:
                    h.update(p)
                    n += len(p)
                    if on_piece is not None:
                        on_piece(p)
            if n != v.length:
                raise ArchiveError(f"{where or 'a row'}: a large value read {n} bytes, {v.length} were announced")
        else:
            h.update(pack(v))
    return h.intdigest()  # type: ignore[no-any-return]


#: a frame's rows are handed on in batches of about this many raw bytes: what a frame of tiny
#: rows expands to as Python objects (up to some 40 times its bytes) stays bounded
BATCH_RAW = 1 << 20
#: the elements of one msgpack array or map (a row, an array value); msgpack itself refuses
#: arrays nested more than 1024 deep
MAX_ARRAY = 1 << 20


def unpack_frame(data: bytes, ncols: int, where: str, found: list[LargeValue] | None) -> list[list[Any]]:
    """All rows of one frame as one list (see ``iter_frame``)."""
    return [r for batch in iter_frame(data, ncols, where, found) for r in batch]


def iter_frame(data: bytes, ncols: int, where: str, found: list[LargeValue] | None,
               max_rows: int | None = None) -> Iterator[list[list[Any]]]:
    """The rows of one frame in batches of about BATCH_RAW bytes, turning large-value placeholders
    into (empty) LargeValue objects appended to ``found`` in the order they occur (None:
    placeholders are damage). Nothing is allocated by what a length prefix claims: the row count
    is checked against the frame's size and ``max_rows`` (what the manifest leaves), strings
    and arrays against msgpack's limits, placeholders against the one row that may hold them."""
    def hook(code: int, payload: bytes) -> Any:
        if code != LARGE_EXT or found is None or len(payload) != LARGE_HEAD.size:
            raise ValueError(f"unexpected msgpack extension type {code}")
        kind, length = LARGE_HEAD.unpack(payload)
        if kind not in (0, 1) or length >= 1 << 40 or len(found) >= ncols or nrows != 1:
            raise ValueError("bad large-value placeholder")
        lv = LargeValue(kind, length)
        found.append(lv)
        return lv

    size = len(data)
    if not data or not (0x90 <= data[0] <= 0x9f or data[0] in (0xdc, 0xdd, 0xc1)):   # 0xc1: never used
        raise ArchiveError(f"{where}: frame does not hold a list of rows")
    # read through a BytesIO (which shares ``data``): the unpacker's buffer holds about a row
    u = msgpack.Unpacker(io.BytesIO(data), read_size=min(max(size, 1), BATCH_RAW), raw=False, use_list=True,
                         strict_map_key=True, timestamp=0, ext_hook=hook,
                         max_buffer_size=max(size, BATCH_RAW), max_str_len=size, max_bin_len=size,
                         max_array_len=min(size, MAX_ARRAY), max_map_len=min(size, MAX_ARRAY),
                         max_ext_len=LARGE_HEAD.size)
    nrows = 0
    try:
        nrows = u.read_array_header()
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ArchiveError(f"{where}: cannot decode rows ({type(exc).__name__}: {exc})") from None
    if nrows > size // (1 + ncols) or (max_rows is not None and nrows > max_rows):
        raise ArchiveError(f"{where}: frame claims {nrows} rows, more than "
                           f"{'its size allows' if max_rows is None or nrows <= max_rows else 'the manifest says'}")
    yield from _batches(u, nrows, ncols, where, size)


def _batches(u: Any, nrows: int, ncols: int, where: str, size: int) -> Iterator[list[list[Any]]]:
    batch: list[Any] = []
    tell = u.tell
    mark = tell() + BATCH_RAW
    for _ in range(nrows):
        try:
            batch.append(u.unpack())
        except Exception as exc:
            raise ArchiveError(f"{where}: cannot decode rows ({type(exc).__name__}: {exc})") from None
        if tell() >= mark:
            yield _check_rows(batch, ncols, where)
            batch = []
            mark = tell() + BATCH_RAW
    if tell() != size:
        raise ArchiveError(f"{where}: cannot decode rows (ExtraData: {size - tell()} bytes after the rows)")
    if batch or not nrows:
        yield _check_rows(batch, ncols, where)
