"""The only module that imports msgpack. Fixed options, bounded unpacking, our own errors."""
from __future__ import annotations

from typing import Any

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
    try:
        rows = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, timestamp=0)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ArchiveError(f"{where}: cannot decode rows ({type(exc).__name__}: {exc})") from None
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
