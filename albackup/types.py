"""SQLAlchemy type objects → logical types. No dialect names are tested here.

Dialect-specific *type classes* (PostgreSQL ARRAY, MySQL unsigned integers, …) are recognised by
class, so one function serves every engine; engine adapters may refine the result (SQLite's
INTEGER is 64-bit, for example).
"""
from __future__ import annotations

from sqlalchemy import types as sat
from sqlalchemy.dialects import mssql, mysql, postgresql

from .model import LogicalType


def _int_bits(t: sat.TypeEngine) -> int:
    if isinstance(t, (mysql.TINYINT, mssql.TINYINT)):
        return 8
    if isinstance(t, sat.SmallInteger):
        return 16
    if isinstance(t, mysql.MEDIUMINT):
        return 24
    if isinstance(t, sat.BigInteger):
        return 64
    return 32


def logical_from_sqlalchemy(t: sat.TypeEngine, original: str) -> LogicalType:
    """Map a reflected SQLAlchemy type to the logical vocabulary (``native`` when unknown)."""
    # Order matters: specific classes before their generic bases.
    if isinstance(t, postgresql.DOMAIN):
        # its values are the underlying type's (into PostgreSQL the domain itself is made again)
        return logical_from_sqlalchemy(t.data_type, str(t.data_type))
    if isinstance(t, postgresql.ARRAY):
        item = logical_from_sqlalchemy(t.item_type, str(t.item_type))
        return LogicalType("array", item=item)
    if isinstance(t, (postgresql.INTERVAL, sat.Interval)):
        return LogicalType("interval")
    if isinstance(t, (postgresql.UUID, sat.Uuid, mssql.UNIQUEIDENTIFIER)):
        return LogicalType("uuid")
    if isinstance(t, (postgresql.JSON, postgresql.JSONB, sat.JSON)):
        return LogicalType("json")
    if isinstance(t, mysql.SET):
        return LogicalType("native", native=original)
    if isinstance(t, sat.Enum):
        return LogicalType("enum", values=tuple(t.enums))
    if isinstance(t, mysql.BIT):
        if (t.length or 1) == 1:
            return LogicalType("boolean")
        return LogicalType("native", native=original)
    if isinstance(t, mysql.YEAR):
        return LogicalType("integer", bits=16)
    if isinstance(t, (mssql.MONEY, mssql.SMALLMONEY)):
        return LogicalType("decimal", precision=19, scale=4)
    if isinstance(t, sat.Boolean):
        return LogicalType("boolean")
    if isinstance(t, sat.Integer):
        bits = _int_bits(t)
        unsigned = bool(getattr(t, "unsigned", False))
        if bits in (8, 24):
            bits = 16 if bits == 8 and not unsigned else 32
            if unsigned and _int_bits(t) == 24:
                bits = 32
        return LogicalType("integer", bits=bits, unsigned=unsigned)
    if isinstance(t, sat.Float) and not getattr(t, "asdecimal", False) or isinstance(
        t, (sat.REAL, sat.DOUBLE, sat.DOUBLE_PRECISION, mysql.DOUBLE, mysql.FLOAT, postgresql.REAL)
    ):
        return LogicalType("float", bits=_float_bits(t))
    if isinstance(t, sat.Numeric):
        p = t.precision
        s = t.scale
        if p is not None and s is None:
            s = 0
        return LogicalType("decimal", precision=p, scale=s)
    if isinstance(t, sat.DateTime):
        return LogicalType(
            "datetime",
            timezone=bool(getattr(t, "timezone", False)) or isinstance(t, mssql.DATETIMEOFFSET),
            precision=_fsp(t),
        )
    if isinstance(t, sat.Date):
        return LogicalType("date")
    if isinstance(t, sat.Time):
        return LogicalType("time", timezone=bool(getattr(t, "timezone", False)), precision=_fsp(t))
    if isinstance(t, (sat.LargeBinary, sat._Binary)):
        length = getattr(t, "length", None)
        if isinstance(t, (sat.BINARY, mysql.BINARY)) and length:
            return LogicalType("binary", length=length, precision=1)  # precision=1: fixed width
        return LogicalType("binary", length=length)
    if isinstance(t, (sat.CHAR, sat.NCHAR)) and not isinstance(t, (sat.VARCHAR, sat.NVARCHAR)):
        return LogicalType("char", length=t.length or 1)
    if isinstance(t, sat.String):
        if isinstance(t, (sat.Text, sat.UnicodeText)) or t.length is None:
            return LogicalType("text")
        return LogicalType("string", length=t.length)
    return LogicalType("native", native=original)


def _float_bits(t: sat.TypeEngine) -> int:
    if isinstance(t, (sat.REAL, postgresql.REAL)):
        return 32
    if isinstance(t, mysql.FLOAT):
        return 32
    if isinstance(t, (sat.DOUBLE, sat.DOUBLE_PRECISION, mysql.DOUBLE)):
        return 64
    p = getattr(t, "precision", None)
    if isinstance(t, sat.Float) and p is not None and p <= 24:
        return 32
    return 64


def _fsp(t: sat.TypeEngine) -> int | None:
    for attr in ("precision", "fsp"):
        v = getattr(t, attr, None)
        if isinstance(v, int):
            return v
    return None
