"""Moving a value from one logical type to another, and what that loses. Engine-free.

An engine adapter decides *which* target logical type a column gets; this module decides how a
canonical value of the source type becomes a canonical value of the target type, whether that is
a mere change of representation (listed in the plan) or a loss (refused without --accept-lossy),
and which values it affects.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .model import LogicalType
from .values import UTC

Convert = Callable[[Any], Any]


@dataclass
class Loss:
    reason: str
    affects: Callable[[Any], bool]      # applied to non-NULL source values
    #: a fast test of a whole batch of non-NULL values: True when none is affected (optional)
    none_affected: Callable[[list[Any]], bool] | None = None
    #: the column's conversion without this loss's fix, used when no value of the backup is
    #: affected (optional; the fix is then skipped, value by value, for the whole restore)
    unfixed: Convert | None = None
    #: ``affects`` for a value stored in pieces (codec.LargeBase), read piece by piece (optional:
    #: without it the value is made whole and given to ``affects``)
    affects_large: Callable[[Any], bool] | None = None


@dataclass
class ColumnMove:
    target: LogicalType
    convert: Convert                    # source canonical → target canonical (not called for NULL)
    change: str | None = None           # a lossless change of representation, for the plan
    losses: list[Loss] = field(default_factory=list)


def _ident(v: Any) -> Any:
    return v


def decimal_digits(v: str) -> tuple[int, int]:
    """(integer digits, fraction digits) of a canonical decimal string."""
    s = v.lstrip("-")
    whole, _, frac = s.partition(".")
    whole = whole.lstrip("0")
    return len(whole), len(frac.rstrip("0"))


def _json_default(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    raise TypeError(type(v).__name__)


def to_json_text(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, default=_json_default)


INT_RANGE = {
    (16, False): (-(1 << 15), (1 << 15) - 1), (32, False): (-(1 << 31), (1 << 31) - 1),
    (64, False): (-(1 << 63), (1 << 63) - 1), (16, True): (0, (1 << 16) - 1),
    (32, True): (0, (1 << 32) - 1), (64, True): (0, (1 << 64) - 1),
}


_TEXTUAL = frozenset({"string", "text", "char", "native"})
#: kinds whose canonical form is already a string (or an int) that a text column holds as it is
_AS_TEXT = frozenset({"enum", "uuid", "interval", "json", "date", "time", "datetime", "decimal", "integer"})


def _as_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return str(v)


def move(src: LogicalType, dst: LogicalType) -> ColumnMove:
    """How canonical values of ``src`` become canonical values of ``dst``."""
    sk, dk = src.kind, dst.kind
    if src == dst:
        return ColumnMove(dst, _ident)
    m = ColumnMove(dst, _ident)
    if sk != dk:
        m.change = f"{src.describe()} → {dst.describe()}"

    if dk in _TEXTUAL and sk in _TEXTUAL | _AS_TEXT:
        m.convert = str if sk == "integer" else (_as_text if sk == "native" else _ident)
        if dk == "char" and sk != "char":
            m.losses.append(Loss("trailing spaces are not kept in CHAR", lambda v: str(v).endswith(" ")))
        if dst.length is not None and (src.length is None or src.length > dst.length or sk not in _TEXTUAL):
            n = dst.length
            m.change = f"{src.describe()} → {dst.describe()}"
            m.losses.append(Loss(f"strings longer than {n} characters (cut)", lambda v, n=n: len(_as_text(v)) > n))
            base = m.convert
            m.convert = lambda v, n=n, base=base: _as_text(base(v))[:n]
        return m
    if dk in ("text", "json") and sk == "array":
        m.convert = to_json_text
        return m
    if dk == "text" and sk == "binary":
        m.convert = lambda v: v.hex()
        return m
    if sk == "integer" and dk == "integer":
        lo, hi = INT_RANGE[(dst.bits or 64, dst.unsigned)]
        if (src.bits or 64, src.unsigned) != (dst.bits or 64, dst.unsigned):
            slo, shi = INT_RANGE[(src.bits or 64, src.unsigned)]
            if slo < lo or shi > hi:
                m.losses.append(Loss(f"integers outside {lo}..{hi}", lambda v, lo=lo, hi=hi: not lo <= v <= hi))
        return m
    if sk == "integer" and dk == "decimal":
        m.convert = lambda v: str(v) if dst.scale in (None, 0) else f"{v}.{'0' * dst.scale}"
        return m
    if sk == "decimal" and dk == "decimal":
        return _decimal_move(src, dst, m)
    if sk == "decimal" and dk == "float":
        m.convert = lambda v: float(decimal.Decimal(v))
        m.losses.append(Loss("decimal stored as float (more than 15 significant digits)",
                             lambda v: sum(decimal_digits(v)) > 15))
        return m
    if sk == "float" and dk == "float":
        if (src.bits or 64) > (dst.bits or 64):
            m.losses.append(Loss("float64 rounded to float32", lambda v: v == v and _f32(v) != v))
            m.convert = _f32
        return m
    if sk == "boolean" and dk == "integer":
        m.convert = int
        return m
    if sk == "datetime" and dk == "datetime":
        return _datetime_move(src, dst, m)
    if sk == "time" and dk == "time":
        if src.timezone and not dst.timezone:
            m.losses.append(Loss("time zone dropped", lambda v: True))
            m.convert = lambda v: v.split("+")[0].split("-")[0] if "+" in v or v.count("-") else v
        _frac_loss(src, dst, m)
        return m
    if sk == dk:
        return m
    m.convert = str
    m.losses.append(Loss(f"{src.describe()} cannot be held by {dst.describe()}", lambda v: True))
    return m


def _f32(v: float) -> float:
    import struct

    if math.isinf(v) or math.isnan(v):
        return v
    return struct.unpack("<f", struct.pack("<f", v))[0]


def _decimal_move(src: LogicalType, dst: LogicalType, m: ColumnMove) -> ColumnMove:
    if dst.precision is None:
        return m
    p, s = dst.precision, dst.scale or 0
    if src.precision is not None and src.precision - (src.scale or 0) <= p - s and (src.scale or 0) <= s:
        if (src.scale or 0) != s:
            from .values import decimal_text

            m.convert = lambda v: decimal_text(v, s)
        return m
    from .values import decimal_text

    m.losses.append(Loss(f"decimals that do not fit decimal({p},{s})",
                         lambda v: v in ("NaN", "Infinity", "-Infinity") or decimal_digits(v)[0] > p - s
                         or decimal_digits(v)[1] > s))
    m.convert = lambda v: decimal_text(v, s) if v not in ("NaN", "Infinity", "-Infinity") else None
    return m


def _frac_loss(src: LogicalType, dst: LogicalType, m: ColumnMove) -> None:
    sp = 6 if src.precision is None else src.precision
    dp = 6 if dst.precision is None else dst.precision
    if dp < min(sp, 6):
        def cut(v: str, dp: int = dp) -> str:
            head, dot, rest = v.partition(".")
            if not dot:
                return v
            digits = "".join(ch for ch in rest if ch.isdigit())
            tail = rest[len(digits):]
            keep = digits[:dp].rstrip("0")
            return head + ("." + keep.ljust(dp, "0").rstrip("0") if keep else "") + tail

        def affected(v: str, dp: int = dp) -> bool:
            _, dot, rest = v.partition(".")
            digits = "".join(ch for ch in rest if ch.isdigit())
            return bool(dot) and digits[dp:].strip("0") != ""

        base = m.convert
        m.convert = lambda v, base=base: cut(base(v))
        m.losses.append(Loss(f"fractional seconds cut to {dp} digits", affected))


def _datetime_move(src: LogicalType, dst: LogicalType, m: ColumnMove) -> ColumnMove:
    if src.timezone and not dst.timezone:
        m.losses.append(Loss("time zone dropped (stored as UTC)", lambda v: True))
        m.convert = lambda v: dt.datetime.fromisoformat(v).astimezone(UTC).replace(tzinfo=None).isoformat()
    elif dst.timezone and not src.timezone:
        m.change = f"{src.describe()} → {dst.describe()} (naive values read as UTC)"
        m.convert = lambda v: dt.datetime.fromisoformat(v).replace(tzinfo=UTC).isoformat()
    _frac_loss(src, dst, m)
    if not m.losses and m.change is None and src.precision != dst.precision:
        m.change = None
    return m


def nan_loss(m: ColumnMove, what: str) -> None:
    """The target cannot hold NaN (or ±Inf): those values become NULL."""
    base = m.convert

    def conv(v: Any) -> Any:
        v = base(v)
        return None if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) else v

    m.convert = conv
    m.losses.append(Loss(f"{what} stored as NULL", lambda v: isinstance(v, float) and (math.isnan(v) or math.isinf(v))))
