"""Canonical value forms, one per logical type, and converters into them. Standard library only.

Every engine adapter reads rows into these forms, the archive stores them, and every adapter
writes them. docs/FORMAT.md lists them:

========== ===========================================================================
integer    int
decimal    str, plain notation, padded to the column's scale ("-12.50"; "NaN")
float      float (float32 columns hold the value rounded to float32)
boolean    bool
string,
text, enum str
char       str with trailing spaces removed (CHAR(n) padding is not data)
binary     bytes
date       str "YYYY-MM-DD"
time       str "HH:MM:SS[.ffffff]" (aware: "+HH:MM" appended)
datetime   str ISO 8601 "YYYY-MM-DDTHH:MM:SS[.ffffff]"; aware values in UTC with "+00:00"
interval   str, the source engine's interval text
uuid       str, lowercase with hyphens
json       str, the JSON text
array      list of the item type's canonical values (None for NULL items)
native     str (or bytes) as the engine gave it
========== ===========================================================================
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import struct
import uuid
from typing import Any, Callable, Iterator

from .model import LogicalType

Converter = Callable[[Any], Any]
_CTX = decimal.Context(prec=200)
UTC = dt.timezone.utc


def _identity(v: Any) -> Any:
    return v


def decimal_text(v: Any, scale: int | None) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        d = decimal.Decimal(repr(v))
    elif isinstance(v, decimal.Decimal):
        d = v
    else:
        d = decimal.Decimal(str(v).strip())
    if d.is_nan():
        return "NaN"
    if d.is_infinite():
        return "Infinity" if d > 0 else "-Infinity"
    if scale is not None:
        d = d.quantize(decimal.Decimal(1).scaleb(-scale), context=_CTX)
    s = format(d, "f")
    return s[1:] if s.startswith("-") and d.is_zero() else s


def _float32(v: Any) -> float:
    f = float(v)
    if math.isnan(f) or math.isinf(f):
        return f
    return struct.unpack("<f", struct.pack("<f", f))[0]


def time_text(v: Any) -> str:
    if isinstance(v, dt.timedelta):  # MySQL TIME: may exceed 24h or be negative
        neg = v < dt.timedelta(0)
        v = -v if neg else v
        total = v.days * 86400 + v.seconds
        h, rem = divmod(total, 3600)
        m, s = divmod(rem, 60)
        out = f"{'-' if neg else ''}{h:02d}:{m:02d}:{s:02d}"
        return out + (f".{v.microseconds:06d}" if v.microseconds else "")
    if isinstance(v, dt.time):
        return v.isoformat()
    s = str(v)
    try:
        return dt.time.fromisoformat(s).isoformat()
    except ValueError:
        return s


def date_text(v: Any) -> str:
    if isinstance(v, dt.datetime):
        return v.date().isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    s = str(v).strip()
    if len(s) > 10:     # a timestamp in a date column: its date, if the whole text is a timestamp
        return dt.datetime.fromisoformat(s).date().isoformat()
    return dt.date.fromisoformat(s).isoformat()


def server_date_text(v: Any) -> Any:
    """A date the server sent as ISO text, checked and kept by the C parser (anything else, such as
    'infinity', a BC date or a zero date, raises); a date object as ``date_text``."""
    if type(v) is str:
        return dt.date.fromisoformat(v).isoformat()
    return date_text(v)


def datetime_text(v: Any, aware: bool) -> str:
    if not isinstance(v, dt.datetime):
        if isinstance(v, dt.date):
            v = dt.datetime(v.year, v.month, v.day)
        else:
            v = dt.datetime.fromisoformat(str(v).strip())
    if v.tzinfo is not None:
        v = v.astimezone(UTC)
        if not aware:
            v = v.replace(tzinfo=None)
    elif aware:
        v = v.replace(tzinfo=UTC)   # a naive value in an aware column is read as UTC
    return v.isoformat()


def _bool(v: Any) -> bool:
    if isinstance(v, (bytes, bytearray)):
        return any(v)
    if isinstance(v, str):
        return v.strip().lower() in ("1", "t", "true", "y", "yes", "on")
    return bool(v)


def _text(v: Any) -> str:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8")
    return v if isinstance(v, str) else str(v)


def _json(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        v = v.decode("utf-8")
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def _native(v: Any) -> Any:
    if isinstance(v, (bytes, str, int, float, bool)):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    return str(v)


def canonicalizer(t: LogicalType) -> Converter:
    """A function turning a DBAPI value of logical type ``t`` into its canonical form.

    ``None`` passes through every converter unchanged.
    """
    k = t.kind
    if k == "integer":
        f: Converter = int
    elif k == "decimal":
        scale = t.scale if t.precision is not None else None
        f = lambda v: decimal_text(v, scale)  # noqa: E731
    elif k == "float":
        f = _float32 if t.bits == 32 else float
    elif k == "boolean":
        f = _bool
    elif k in ("string", "text", "enum", "interval"):
        f = _text
    elif k == "char":
        f = lambda v: _text(v).rstrip(" ")  # noqa: E731
    elif k == "binary":
        f = bytes
    elif k == "date":
        f = date_text
    elif k == "time":
        f = time_text
    elif k == "datetime":
        aware = t.timezone
        f = lambda v: datetime_text(v, aware)  # noqa: E731
    elif k == "uuid":
        f = lambda v: str(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)))  # noqa: E731
    elif k == "json":
        f = _json
    elif k == "array":
        item = canonicalizer(t.item) if t.item else _native

        def f(v: Any) -> Any:
            if isinstance(v, str):   # an array that came back as JSON text
                v = json.loads(v)
            return [None if x is None else item(x) for x in v]
    else:
        f = _native

    def convert(v: Any, _f: Converter = f) -> Any:
        return None if v is None else _f(v)

    if k in ("string", "text", "enum", "interval", "json"):    # a str is already canonical
        return with_inline(convert, "({x} if {x}.__class__ is str else {f}({x}))")
    return convert


# ---------------------------------------------------------------------------------------------
# The canonical content hash.
#
# Each value is normalised by its logical type (decimals by value, JSON by structure, floats by
# IEEE bits), encoded with a tag and a length, and each row hashed with SHA-256. A chunk's hash
# is the sum of its row hashes modulo 2**256: the same multiset of rows gives the same hash in any
# order, so a restored table can be rehashed without sorting. Row count is always compared too.
# ---------------------------------------------------------------------------------------------

_NAN = struct.pack(">d", float("nan"))


_PLAIN_DECIMAL = re.compile(r"(-?)(\d+)(?:\.(\d+))?").fullmatch


def _norm_decimal_str(v: Any) -> str:
    """A decimal's normal form: its value without exponent, leading or trailing zeros ("0" for
    any zero). Plain text such as "-012.340" is shaped as text, the rest through Decimal."""
    if v.__class__ is str and len(v) < 190 and (m := _PLAIN_DECIMAL(v)):   # well inside _CTX's 200 digits
        sign, whole, frac = m.groups()
        whole = whole.lstrip("0")
        frac = frac.rstrip("0") if frac else ""
        if not whole and not frac:
            return "0"
        return f"{sign}{whole or '0'}.{frac}" if frac else f"{sign}{whole}"
    d = decimal.Decimal(v)
    if not d.is_finite():
        return str(d)
    if d.is_zero():
        return "0"
    return format(d.normalize(_CTX), "f")


def _norm_decimal(v: str) -> bytes:
    return _norm_decimal_str(v).encode()


def _norm_json(v: Any) -> bytes:
    """JSON by structure (key order and spacing do not count); text that is not JSON as text."""
    try:
        obj = json.loads(v) if isinstance(v, (str, bytes)) else v
    except ValueError:
        return b"\x00" + (v.encode("utf-8") if isinstance(v, str) else bytes(v))
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _enc(v: Any) -> bytes:
    if v is None:
        return b"N"
    if v is True:
        return b"T"
    if v is False:
        return b"F"
    if isinstance(v, int):
        b = str(v).encode()
        return b"I" + len(b).to_bytes(4, "big") + b
    if isinstance(v, float):
        return b"R" + (_NAN if math.isnan(v) else struct.pack(">d", v))
    if isinstance(v, str):
        b = v.encode("utf-8")
        return b"S" + len(b).to_bytes(4, "big") + b
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        return b"X" + len(b).to_bytes(4, "big") + b
    if isinstance(v, (list, tuple)):
        parts = b"".join(_enc(x) for x in v)
        return b"L" + len(parts).to_bytes(4, "big") + parts
    raise TypeError(f"value of type {type(v).__name__} has no canonical encoding")


def hash_normalizer(t: LogicalType) -> Callable[[Any], bytes]:
    """Value (canonical form) → bytes fed to the row hash."""
    k = t.kind
    if k == "decimal":
        def f(v: Any) -> bytes:
            if v is None:
                return b"N"
            b = _norm_decimal(v)
            return b"D" + len(b).to_bytes(4, "big") + b
        return f
    if k == "json":
        def g(v: Any) -> bytes:
            if v is None:
                return b"N"
            b = _norm_json(v)
            return b"J" + len(b).to_bytes(4, "big") + b
        return g
    if k == "float":
        def h(v: Any) -> bytes:
            return _enc(None if v is None else float(v))
        return h
    return _enc


MOD = 1 << 256


class ContentHash:
    """Order-independent hash of a stream of rows for a fixed list of column types."""

    def __init__(self, types: list[LogicalType]) -> None:
        import hashlib

        self._sha = hashlib.sha256
        self._norm = [hash_normalizer(t) for t in types]
        self.total = 0
        self.rows = 0

    def update(self, rows: list[list[Any]]) -> None:
        sha = self._sha
        norm = self._norm
        total = self.total
        for row in rows:
            h = sha()
            for n, v in zip(norm, row):
                if n is _enc and isinstance(v, (bytes, bytearray, memoryview)) and len(v) > 65536:
                    h.update(b"X" + len(v).to_bytes(4, "big"))   # large values: fed without a copy
                    h.update(v)
                else:
                    h.update(n(v))
            total += int.from_bytes(h.digest(), "big")
        self.total = total % MOD
        self.rows += len(rows)

    def hexdigest(self) -> str:
        return f"{self.total:064x}"


def combine_hashes(hexes: list[str]) -> str:
    return f"{sum(int(h, 16) for h in hexes) % MOD:064x}"


class ColumnHashes:
    """One order-independent hash per column: finds *which* columns differ after a mismatch."""

    def __init__(self, types: list[LogicalType]) -> None:
        self._cols = [ContentHash([t]) for t in types]

    def update(self, rows: list[list[Any]]) -> None:
        for i, h in enumerate(self._cols):
            h.update([[r[i]] for r in rows])

    def digests(self) -> list[str]:
        return [h.hexdigest() for h in self._cols]


# ---------------------------------------------------------------------------------------------
# The content hash, version 2 (feature "content-hash-v2", docs/FORMAT.md §6).
#
# A row's hash is XXH3-128 of its canonical msgpack encoding (the very bytes a frame holds for
# it); a chunk's hash is the sum of its row hashes modulo 2**128. Everything per row runs in C,
# which makes it several times cheaper than version 1 while staying order-independent.
# In ``normalize`` mode (a restored table read back from another engine, ``compare``) decimal
# and JSON values are first replaced by their normal forms, as version 1 did.
# ---------------------------------------------------------------------------------------------

MOD2 = 1 << 128
HASH_V2 = "content-hash-v2"


def _norm_decimal_text(v: Any) -> Any:
    return None if v is None else _norm_decimal_str(v)


def _norm_json_text(v: Any) -> Any:
    return None if v is None else _norm_json(v).decode("utf-8", "surrogateescape")


def normalizing_kind(t: LogicalType) -> bool:
    """Values of this type are compared by value, not by spelling, across engines."""
    return t.kind in ("decimal", "json")


class RowHash:
    """Order-independent content hash (version 2) of rows with a fixed list of column types."""

    def __init__(self, types: list[LogicalType], normalize: bool = False) -> None:
        from xxhash import xxh3_128_intdigest

        from .codec import row_packer

        self._digest = xxh3_128_intdigest
        self._pack = row_packer()
        self._norm = [(i, _norm_decimal_text if t.kind == "decimal" else _norm_json_text)
                      for i, t in enumerate(types) if normalize and normalizing_kind(t)]
        self.total = 0
        self.rows = 0

    def update_packed(self, packed: list[bytes]) -> None:
        """Rows already packed with ``codec.row_packer`` (no normalisation applies)."""
        self.total = (self.total + sum(map(self._digest, packed))) % MOD2
        self.rows += len(packed)

    def add(self, row_hash: int) -> None:
        """One row hashed elsewhere (a row with large values, fed piece by piece)."""
        self.total = (self.total + row_hash) % MOD2
        self.rows += 1

    def update(self, rows: list[Any]) -> None:
        from .codec import has_large, hash_row_streaming, pack_each

        if self._norm:
            rows = [list(r) for r in rows]
            for i, f in self._norm:
                for r in rows:
                    v = r[i]
                    if v is not None and hasattr(v, "materialize"):   # a large value
                        v = v.materialize()
                    r[i] = f(v)
        try:
            packed = pack_each(self._pack, rows)
        except Exception:
            if not any(has_large(r) for r in rows):
                raise
            for r in rows:
                self.add(hash_row_streaming(r, self._pack))
            return
        self.update_packed(packed)

    def hexdigest(self) -> str:
        return f"{self.total:032x}"


LINE_BLOCK = 1 << 20


def line_blocks(data: bytes, size: int = LINE_BLOCK) -> Iterator[bytes]:
    """``data`` (lines of text) in pieces of about ``size`` bytes, each cut after a newline (the
    last piece: whatever is left), so that splitting a piece into lines takes memory in
    proportion to it, not to the whole."""
    if len(data) <= size:
        yield data
        return
    start = 0
    while start < len(data):
        cut = data.find(b"\n", start + size - 1)
        end = len(data) if cut < 0 else cut + 1
        yield data[start:end]
        start = end


class EchoHash:
    """Order-independent hash of the lines of text a bulk load sent (each with its newline): the
    sum of their XXH3-64 modulo 2^64 (``bits`` 64), or of their XXH3-128 modulo 2^128 (``bits``
    128: COPY text chunks of older backups, with pgtext.FEATURE_V1), and their
    number. Where the server prints a loaded table back in the same text format, the same hash
    of its lines equals this one exactly when it holds, row for row, what was sent; ``valid`` is
    False when part of a load was not sent as whole lines (values streamed in pieces), and then
    there is nothing to compare.

    64 bits: the hash guards against accident, not attack (docs/FORMAT.md §5.2), and per line
    XXH3-64 and its sum cost about 60 % of XXH3-128's (a Python int of 128 bits is made and
    added per line), which a dump and a restore's read-back each pay once per row."""

    def __init__(self, bits: int = 64) -> None:
        if bits not in (64, 128):
            raise ValueError(f"a line hash has 64 or 128 bits, not {bits}")
        self.bits = bits
        self.mod = 1 << bits
        self.total = 0
        self.rows = 0
        self.valid = True

    def update(self, data: bytes) -> None:
        """Lines as sent: ``data`` ends with a newline, and no field holds a raw newline or CR
        (the format escapes them; were one there, the hashes would just differ)."""
        from xxhash import xxh3_64_intdigest, xxh3_128_intdigest

        digest = xxh3_64_intdigest if self.bits == 64 else xxh3_128_intdigest
        for block in line_blocks(data):     # a frame of tiny lines is not split whole
            lines = block.splitlines(True)
            self.total = (self.total + sum(map(digest, lines))) % self.mod
            self.rows += len(lines)

    def add(self, rows: int, total: int) -> None:
        """Lines hashed elsewhere with the same width (a chunk's hash from the manifest, a part
        read back by another process)."""
        self.total = (self.total + total) % self.mod
        self.rows += rows

    def merge(self, other: "EchoHash") -> None:
        if other.bits != self.bits:
            raise ValueError(f"line hashes of {self.bits} and {other.bits} bits do not add up")
        self.add(other.rows, other.total)
        self.valid = self.valid and other.valid

    def state(self) -> tuple[int, int, bool, int]:
        return self.rows, self.total, self.valid, self.bits

    def hexdigest(self) -> str:
        return f"{self.total:0{self.bits // 4}x}"

    @classmethod
    def of(cls, state: tuple[int, int, bool, int]) -> "EchoHash":
        e = cls(state[3])
        e.rows, e.total, e.valid = state[:3]
        return e


class StreamHash:
    """The hash of a COPY text chunk whose lines are in key order (pgtext.ORDERED): XXH3-64 of
    all its text, line after line, and the number of lines. One C call per frame instead of one
    per line; a restore reads the chunk's key range back in key order and takes the same hash."""

    def __init__(self) -> None:
        from xxhash import xxh3_64

        self._h = xxh3_64()
        self.rows = 0

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.rows += data.count(b"\n")

    @property
    def total(self) -> int:
        return int(self._h.intdigest())

    def hexdigest(self) -> str:
        return f"{self.total:016x}"


def combine_v2(hexes: list[str]) -> str:
    return f"{sum(int(h, 16) for h in hexes) % MOD2:032x}"


class ColumnRowHashes:
    """One version-2 hash per column: finds *which* columns differ after a mismatch."""

    def __init__(self, types: list[LogicalType], normalize: bool = True) -> None:
        self._cols = [RowHash([t], normalize) for t in types]

    def update(self, rows: list[Any]) -> None:
        for i, h in enumerate(self._cols):
            h.update([(r[i],) for r in rows])

    def digests(self) -> list[str]:
        return [h.hexdigest() for h in self._cols]


def hasher_for(features: list[str] | None, types: list[LogicalType]) -> Any:
    """The content hash a backup's manifest was written with."""
    return RowHash(types) if HASH_V2 in (features or []) else ContentHash(types)


def combine_for(features: list[str] | None, hexes: list[str]) -> str:
    return combine_v2(hexes) if HASH_V2 in (features or []) else combine_hashes(hexes)


#: names the inline expressions of converters and bulk-load writers may use (an f-string
#: expression of Python 3.11 can hold no backslash: the characters are names too)
#: Inline readers (see ``with_inline``) of a date or a naive datetime the server sent as ISO
#: text: the C parser checks the value (refusing zero dates and invalid ones), and text already
#: in the canonical form is kept rather than printed back from the parsed object (which cost
#: more than the parse): 'YYYY-MM-DD', and 'YYYY-MM-DD HH:MM:SS' with no or six fraction digits
#: (a zero fraction dropped). ``x[4:8:3]`` and ``x[4:17:3]`` are the separators; anything else
#: (another spelling, an offset, 1–5 fraction digits) takes the reader's function.
ISO_DATE_INLINE = "({x} if {x}.__class__ is str and len({x}) == 10 and {x}[4:8:3] == '--' and _date({x}) else {f}({x}))"
ISO_DATETIME_INLINE = (
    "({x}[:10] + 'T' + ({x}[11:19] if {x}[19:] == '.000000' else {x}[11:]) "
    "if {x}.__class__ is str and {x}[4:17:3] == '-- ::' and (len({x}) == 19 or (len({x}) == 26 and "
    "{x}[19] == '.' and {x}[20:].isdigit())) and _datetime({x}) else {f}({x}))")

INLINE_NAMES: dict[str, Any] = {"_date": dt.date.fromisoformat, "_datetime": dt.datetime.fromisoformat,
                                "_BS": "\\", "_TAB": "\t", "_LF": "\n", "_CR": "\r", "_NUL": "\x00"}


def with_inline(f: Converter, template: str) -> Converter:
    """``f`` with an expression that ``batch_converter`` writes into its comprehension instead of
    calling ``f`` for each value: ``{x}`` is the value, ``{f}`` calls ``f`` (for the cases the
    expression leaves to it, NULL included). It must give what ``f`` gives, for every value."""
    f.inline = template  # type: ignore[attr-defined]
    return f


def batch_converter(funcs: list[Converter | None], skip_none: bool = False) -> Callable[[list[Any]], list[Any]] | None:
    """One function converting a whole batch of rows, column by column, compiled for the table.

    ``funcs[i] is None`` leaves column ``i`` as it is; with every entry None there is nothing to
    do and None is returned (the rows are used as they came). With ``skip_none`` NULLs are not
    passed to the functions. Rows come out as tuples.
    """
    if all(f is None for f in funcs):
        return None
    parts = []
    for i, f in enumerate(funcs):
        fast = getattr(f, "inline", None)
        if f is None:
            parts.append(f"r[{i}]")
        elif fast is not None:        # the common case in the comprehension itself, f{i} for the rest
            parts.append(fast.format(x=f"r[{i}]", f=f"f{i}"))
        elif skip_none:
            parts.append(f"(None if r[{i}] is None else f{i}(r[{i}]))")
        else:
            parts.append(f"f{i}(r[{i}])")
    src = f"def convert(rows):\n    return [({', '.join(parts)},) for r in rows]\n"
    env: dict[str, Any] = {f"f{i}": f for i, f in enumerate(funcs) if f is not None}
    env.update(INLINE_NAMES)
    exec(compile(src, "<albackup batch converter>", "exec"), env)  # noqa: S102 - only indices are formatted in
    return env["convert"]  # type: ignore[no-any-return]
