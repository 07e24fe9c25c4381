"""PostgreSQL COPY text chunks: rows stored as the server prints them (docs/FORMAT.md §5.2).

A PostgreSQL dump reads a table whose every column is of a kind listed in ``TEXT_KINDS`` (and
that holds no large value) with ``COPY (SELECT …) TO STDOUT``: the server's own text, one line
per row, goes through an OS pipe into a helper thread that cuts it into frames of whole lines,
counts and hashes the lines and hands the frames to the chunk writer. No Python object is made
per value, and no Python code runs per row: psycopg2 hands each row to a C buffered writer.

Such a chunk is restored into PostgreSQL (same engine, nothing converted) by sending its frames
to ``COPY … FROM STDIN`` as they are; everywhere else (another engine, ``verify``'s checks,
conversions) ``decoder`` turns its lines into the same canonical values the cursor read path
gives, so the rest of albackup sees ordinary rows.

The chunk's ``content_hash`` is the line hash (``values.EchoHash``: XXH3-64 of each line with
its newline, summed modulo 2^64; XXH3-128 modulo 2^128 in backups with FEATURE_V1), the same hash
a restore takes of the table printed back, so a PostgreSQL restore compares the target with the
backup without reading a value into Python. A key range read in key order (``ORDER BY`` its
integer key, where the table is stored about in key order: no sort) is hashed whole instead
(``values.StreamHash``, feature ORDERED): a restore reads that range back in key order too.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any, Callable, Iterator

from .errors import ArchiveError
from .model import LogicalType
from .values import line_blocks

ENCODING = "pg-copy-text"
#: the feature of backups with COPY text chunks; v2: their line hashes have 64 bits (v1: 128)
FEATURE = "pg-copy-text-v2"
FEATURE_V1 = "pg-copy-text-v1"
#: the bits of the chunks' line hashes (values.EchoHash) by the feature a backup has
LINE_HASH_BITS = {FEATURE: 64, FEATURE_V1: 128}
#: the feature of backups with COPY text chunks whose lines are in key order (``"line_order":
#: "key"``): their content_hash is values.StreamHash of the whole text, not a sum of line hashes
ORDERED = "pg-copy-text-ordered-v1"

#: the session settings a COPY text chunk is printed in (and a restore reads back in)
SETTINGS = ("TIME ZONE 'UTC'", "DateStyle = 'ISO, MDY'", "IntervalStyle = 'postgres'",
            "extra_float_digits = 3", "bytea_output = 'hex'")

#: logical kinds whose COPY text decodes to the value psycopg2 and the reader would give
TEXT_KINDS = frozenset({"integer", "float", "decimal", "boolean", "string", "text", "char", "binary", "date",
                        "datetime", "time", "interval", "uuid", "json", "enum"})

#: frames hold whole lines, about this many bytes (a line longer than that is a frame of its own)
FRAME_BYTES = 2 << 20
#: a decoded frame is handed on in batches of at most this many rows (Python objects are large)
DECODE_ROWS = 2000


def text_kind(t: LogicalType) -> bool:
    return t.kind in TEXT_KINDS and not (t.kind == "time" and t.timezone)


_UNESC = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}
_ESCAPE = re.compile(r"\\(.)", re.S)


def _sub(m: re.Match[str]) -> str:
    try:
        return _UNESC[m.group(1)]
    except KeyError:
        raise ValueError(f"unexpected escape \\{m.group(1)} in COPY text") from None


def unescape(v: str) -> str:
    """A field of COPY's text output as the string it stands for (COPY TO escapes backslash,
    \\b \\f \\n \\r \\t \\v; it prints every other character as it is)."""
    return _ESCAPE.sub(_sub, v) if "\\" in v else v


def _bytea(v: str) -> bytes:
    if not v.startswith("\\\\x"):
        raise ValueError("bytea not in hex output format")
    return bytes.fromhex(v[3:])


def _bool(v: str) -> bool:
    if v == "t":
        return True
    if v == "f":
        return False
    raise ValueError(f"not a boolean: {v!r}")


# COPY text field → the value psycopg2 gives for the same column on the cursor path (with the
# text casters of engines/postgresql.py); ``{x}`` is the field, never '\N' here.
_FIELD = {
    "integer": "int({x})",
    "float": "float({x})",
    "boolean": "_bool({x})",
    "binary": "_bytea({x})",
    "char": "_unescape({x}).rstrip(' ')",      # char(n)::text drops the blank padding
}
_STRING = "({x} if '\\\\' not in {x} else _unescape({x}))"


def decoder(types: list[LogicalType], where: str,
            names: list[str] | None = None) -> Callable[[bytes], Iterator[list[Any]]]:
    """Frame bytes (whole lines) → batches of canonical rows (at most DECODE_ROWS each), as the
    PostgreSQL cursor read path gives them. A value that does not decode raises ArchiveError
    naming its column (``names``)."""
    from sqlalchemy.dialects.postgresql import psycopg2 as pg_dialect

    from .engines.postgresql import PostgreSQLAdapter

    for t in types:
        if not text_kind(t):
            raise ArchiveError(f"{where}: a COPY text chunk cannot hold a {t.describe()} column")
    n = len(types)
    parts = []
    for i, t in enumerate(types):
        x = f"f[{i}]"
        parts.append(f"(None if {x} == '\\\\N' else {_FIELD.get(t.kind, _STRING).format(x=x)})")
    src = ("def decode(lines):\n"
           "    out = []\n"
           "    for line in lines:\n"
           "        f = line.split('\\t')\n"
           f"        if len(f) != {n}:\n"
           "            raise ValueError(f'{len(f)} fields in a row, expected " + str(n) + "')\n"
           f"        out.append(({', '.join(parts)},))\n"
           "    return out\n")
    env: dict[str, Any] = {"_unescape": unescape, "_bytea": _bytea, "_bool": _bool}
    exec(compile(src, "<albackup COPY text decoder>", "exec"), env)  # noqa: S102 - only indices are formatted in
    decode = env["decode"]
    adapter = PostgreSQLAdapter(pg_dialect.dialect())
    convert = adapter.batch_reader(types)

    def culprit(data: bytes) -> str:
        """'column NAME: why' for the first value of ``data`` that does not decode ('' if none)."""
        for block in line_blocks(data):
            for line in block.decode("utf-8", "replace").split("\n")[:-1]:
                for i, (t, v) in enumerate(zip(types, line.split("\t"))):
                    if v == "\\N":
                        continue
                    try:
                        field = decode([("\\N\t" * i) + v + ("\t\\N" * (len(types) - i - 1))])[0][i]
                        adapter.reader(t)(field)
                    except Exception as exc:
                        name = names[i] if names else f"#{i + 1}"
                        return f"column {name}: cannot read a value as {t.describe()} ({type(exc).__name__}: {exc})"
        return ""

    def rows(data: bytes) -> Iterator[list[Any]]:
        if data and not data.endswith(b"\n"):
            raise ArchiveError(f"{where}: a frame of COPY text does not end with a whole line")
        try:
            for block in line_blocks(data):     # a frame of tiny lines is not split whole
                lines = block.decode("utf-8").split("\n")
                lines.pop()
                for i in range(0, len(lines), DECODE_ROWS):
                    out = decode(lines[i:i + DECODE_ROWS])
                    yield out if convert is None else convert(out)
        except Exception as exc:   # UnicodeDecodeError, ValueError from int()/float()/fromhex(), …
            why = culprit(data) or f"cannot decode COPY text ({type(exc).__name__}: {exc})"
            raise ArchiveError(f"{where}: {why}"[:500]) from None

    return rows


#: the text of the error a guarded COPY raises at the first row it cannot carry
GUARD = "albackup-guard"


class CopyTextRefused(Exception):
    """A guarded COPY met a row that COPY text cannot carry (a value over LARGE_BYTES, a date
    without a canonical form): its unit is read by value instead."""


class CopyOutPipe:
    """A file for psycopg2's ``copy_expert`` (COPY … TO STDOUT) whose ``write`` is C: an OS pipe
    behind a buffered writer. A helper thread reads the pipe and calls ``on_frame(data)`` with
    blocks of whole lines of about FRAME_BYTES (the pipe bounds what is in flight; ``on_frame``
    runs on the helper thread). ``close()`` ends the stream and waits for the last frame; an
    error of ``on_frame`` closes the pipe, so the COPY fails on its next write, and ``close()``
    raises that error."""

    def __init__(self, on_frame: Callable[[bytes], None], frame_bytes: int = FRAME_BYTES) -> None:
        self._on_frame = on_frame
        self._frame_bytes = frame_bytes
        r, w = os.pipe()
        try:
            import fcntl

            fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:
            pass    # the default pipe size works too, with more switches between the threads
        self._r = r
        self.file = os.fdopen(w, "wb", buffering=1 << 16)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="albackup-copy-out", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        held: list[bytes] = []
        size = 0
        try:
            while True:
                data = os.read(self._r, 1 << 20)
                if not data:
                    break
                held.append(data)
                size += len(data)
                if size >= self._frame_bytes:
                    cut = data.rfind(b"\n") + 1      # the frame ends at the last newline read
                    if not cut:
                        continue                      # a long line: read on to its end
                    held[-1] = data[:cut]
                    frame = b"".join(held)            # one copy of the frame (the pieces go next)
                    held = [data[cut:]] if cut < len(data) else []
                    size = len(data) - cut
                    del data
                    self._on_frame(frame)
                    del frame
            if held:
                self._on_frame(b"".join(held))
        except BaseException as exc:
            self.error = exc
        finally:
            os.close(self._r)

    def close(self) -> None:
        """End of the COPY: flush, close the pipe, wait for the helper; raise its error if any."""
        try:
            self.file.close()
        except OSError:
            pass       # the reader closed its end after an error: that error is raised below
        self._thread.join()
        if self.error is not None:
            raise self.error


def copy_out(cur: Any, sql: str, on_frame: Callable[[bytes], None], params: Any = None) -> None:
    """Run ``COPY … TO STDOUT`` on the psycopg2 cursor ``cur``, giving its output to ``on_frame``
    in blocks of whole lines (see CopyOutPipe). An error of ``on_frame`` is raised as it is.
    ``sql`` is formatted with ``params`` first (copy_expert does not format, and names quoted
    as SQLAlchemy quotes them have each '%' doubled)."""
    sql = cur.mogrify(sql, params or ())
    pipe = CopyOutPipe(on_frame)
    try:
        cur.copy_expert(sql, pipe.file, size=1 << 16)
    except BaseException:
        try:
            pipe.close()
        except BaseException as exc:
            raise exc from None        # on_frame's failure broke the pipe: that is the cause
        raise
    pipe.close()
