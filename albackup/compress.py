"""Frame compression: zstd (default), gzip, lzma, none. Each frame compresses on its own."""
from __future__ import annotations

import gzip
import io
import lzma
import zlib

import zstandard

from .errors import ArchiveError, ConfigError

IDS = {"none": 0, "zstd": 1, "gzip": 2, "lzma": 3}
NAMES = {v: k for k, v in IDS.items()}
#: zstd level 2, not the library's 3: on database text (COPY lines, packed rows) it takes about 60 %
#: of level 3's CPU for output about 3 % larger (docs/BENCHMARK.md); the compression is the
#: biggest part of a dump's CPU
DEFAULT_LEVEL = {"zstd": 2, "gzip": 6, "lzma": 6, "none": 0}
#: frames up to this size are joined before they are compressed (a frame is about 16 MB)
JOIN_BYTES = 32 << 20


class Compressor:
    def __init__(self, name: str = "zstd", level: int | None = None) -> None:
        if name not in IDS:
            raise ConfigError(f"unknown compression {name!r}; expected one of {', '.join(IDS)}")
        self.name = name
        self.id = IDS[name]
        self.level = DEFAULT_LEVEL[name] if level is None else level
        self._zc = zstandard.ZstdCompressor(level=self.level) if name == "zstd" else None

    def compress_parts(self, parts: list[bytes]) -> bytes:
        """``compress(b"".join(parts))``; past JOIN_BYTES without making the joined copy (large
        rows). Below it the copy is made: one call per part (a packed row of a narrow table is
        a dozen bytes) cost three times the compression itself."""
        if self.name == "zstd":
            size = sum(map(len, parts))
            if size <= JOIN_BYTES:
                return self._zc.compress(parts[0] if len(parts) == 1 else b"".join(parts))
            c = self._zc.compressobj(size=size)
            out = [c.compress(p) for p in parts]
            out.append(c.flush())
            return b"".join(out)
        if self.name == "none":
            return b"".join(parts)
        return self.compress(b"".join(parts))

    def compress(self, data: bytes) -> bytes:
        if self.name == "zstd":
            return self._zc.compress(data)
        if self.name == "gzip":
            return gzip.compress(data, compresslevel=self.level, mtime=0)
        if self.name == "lzma":
            return lzma.compress(data, preset=self.level)
        return data


def decompress(comp_id: int, data: bytes, max_size: int, where: str) -> bytes:
    """Decompress one frame, refusing output larger than ``max_size`` (a bomb or damage): the
    output is never allocated beyond ``max_size``."""
    try:
        if comp_id == 0:
            return data
        if comp_id == 1:
            return _zstd(data, max_size)
        if comp_id == 2:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(data, max_size)
            if d.unconsumed_tail or not d.eof:
                raise ValueError("frame larger than its limit or truncated")
            return out
        if comp_id == 3:
            d2 = lzma.LZMADecompressor()
            out = d2.decompress(data, max_length=max_size)
            if not d2.eof:
                raise ValueError("frame larger than its limit or truncated")
            return out
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(f"{where}: cannot decompress ({exc})") from None
    raise ArchiveError(f"{where}: unknown compression id {comp_id}")


def _zstd(data: bytes, max_size: int) -> bytes:
    """One zstd frame. Its header's content size (written by every albackup) must be
    ``max_size``: then the output is allocated once at that size. Without it, the frame is read
    in pieces to at most one byte past the limit."""
    declared = zstandard.frame_content_size(data)
    if declared >= 0:
        if declared != max_size:
            raise ValueError(f"zstd frame says {declared} bytes, the frame header {max_size}")
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=max_size)
    parts: list[bytes] = []
    total = 0
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as r:
        while total <= max_size:
            piece = r.read(min(1 << 20, max_size + 1 - total))
            if not piece:
                break
            parts.append(piece)
            total += len(piece)
    if total > max_size:
        raise ValueError("frame larger than its header says")
    return b"".join(parts)
