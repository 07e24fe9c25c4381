"""Canonical values: property tests through the codec and chunk files, canonicalizer examples,
and the properties of the order-independent ContentHash."""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import struct
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from albackup.archive import ChunkWriter, read_chunk
from albackup.codec import pack_rows, unpack_rows
from albackup.compress import Compressor
from albackup.errors import ArchiveError
from albackup.model import KINDS, LogicalType
from albackup.values import ContentHash, RowHash, canonicalizer, combine_hashes, combine_v2

UTC = dt.timezone.utc
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- strategies of canonical values

NASTY_TEXT = ["", " ", "\x00", "a\x00b", "\\", "\\\\n\\t", "C:\\path\\", "😀", "👨‍👩‍👧‍👦", "e\u0301",
              "Zoë", "\u202eevil", "\ufeffbom", "日本語テキスト", "'; DROP TABLE x; --", "\r\n", "\t ",
              "NULL", "null", "\U0010ffff", "a" * 5000]
text = st.one_of(st.sampled_from(NASTY_TEXT), st.text())
INT_EDGES = [0, 1, -1, 2**31 - 1, -2**31, 2**63 - 1, -2**63, 2**64 - 1, 2**32]
integers = st.one_of(st.sampled_from(INT_EDGES), st.integers(-2**63, 2**64 - 1))
FLOAT_EDGES = [0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, -5e-324, 1.7976931348623157e308, 0.1, 1e-300]
floats = st.one_of(st.sampled_from(FLOAT_EDGES), st.floats())
floats32 = st.one_of(st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1.401298464324817e-45,
                                      3.4028234663852886e38]), st.floats(width=32))
binaries = st.one_of(st.sampled_from([b"", b"\0", b"\0" * 100, b"\xff\xfe\x00\x01", bytes(range(256))]),
                     st.binary())
DATE_EDGES = [dt.date(1, 1, 1), dt.date(999, 12, 31), dt.date(1899, 12, 31), dt.date(1900, 1, 1),
              dt.date(2100, 1, 1), dt.date(2400, 2, 29), dt.date(9999, 12, 31)]
dates = st.one_of(st.sampled_from(DATE_EDGES), st.dates())
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
naive_datetimes = st.one_of(st.sampled_from([dt.datetime(1, 1, 1), dt.datetime(1850, 6, 1, 12, 0, 0, 1),
                                             dt.datetime(2150, 12, 31, 23, 59, 59, 999999),
                                             dt.datetime(9999, 12, 31, 23, 59, 59, 999999)]),
                            st.datetimes())
aware_datetimes = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                               timezones=st.just(UTC))
MYSQL_TIMES = ["838:59:59", "-838:59:59", "-00:00:00.000001", "24:00:00", "100:00:00.5"]
times = st.one_of(st.times().map(lambda t: t.isoformat()),
                  st.times(timezones=offsets).map(lambda t: t.isoformat()),
                  st.sampled_from(MYSQL_TIMES))


@st.composite
def decimal_texts(draw: Any, max_digits: int = 38) -> tuple[int, str]:
    """(scale, canonical decimal text) with up to 38 significant digits."""
    scale = draw(st.integers(0, max_digits))
    n = draw(st.one_of(st.sampled_from([0, 1, 10**max_digits - 1, 10**(max_digits - 1)]),
                       st.integers(0, 10**max_digits - 1)))
    neg = draw(st.booleans()) and n != 0
    digits = str(n).rjust(scale + 1, "0")
    s = f"{digits[:-scale]}.{digits[-scale:]}" if scale else digits
    return scale, ("-" if neg else "") + s


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12)
json_texts = json_values.map(lambda v: json.dumps(v, ensure_ascii=False))

ENUM = LogicalType("enum", values=("small", "médium", "😀"))
KIND_CASES: dict[str, tuple[LogicalType, Any]] = {
    "integer": (LogicalType("integer", bits=64, unsigned=True), integers),
    "decimal": (LogicalType("decimal"), decimal_texts().map(lambda x: x[1])
                | st.sampled_from(["NaN", "Infinity", "-Infinity"])),
    "float": (LogicalType("float", bits=64), floats),
    "boolean": (LogicalType("boolean"), st.booleans()),
    "string": (LogicalType("string", length=10), text),
    "text": (LogicalType("text"), text),
    "char": (LogicalType("char", length=10), text.map(lambda s: s.rstrip(" "))),
    "binary": (LogicalType("binary"), binaries),
    "date": (LogicalType("date"), dates.map(dt.date.isoformat)),
    "time": (LogicalType("time"), times),
    "datetime": (LogicalType("datetime", timezone=True, precision=6), aware_datetimes.map(dt.datetime.isoformat)),
    "interval": (LogicalType("interval"), st.sampled_from(["1 day 02:03:04", "-P1Y2M", "00:00:00.000001"]) | text),
    "uuid": (LogicalType("uuid"), st.uuids().map(str)),
    "json": (LogicalType("json"), json_texts),
    "enum": (ENUM, st.sampled_from(ENUM.values)),
    "array": (LogicalType("array", item=LogicalType("integer", bits=64)),
              st.lists(st.none() | integers, max_size=8)),
    "native": (LogicalType("native", native="GEOMETRY"), text | binaries),
}


def test_every_kind_has_a_strategy() -> None:
    assert set(KIND_CASES) == set(KINDS)


def same(a: Any, b: Any) -> bool:
    """Exact equality, types included: NaN equals NaN, -0.0 differs from 0.0, 1 differs from 1.0/True."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("kind", KINDS)
@FAST
@given(data=st.data())
def test_codec_round_trip_every_kind(kind: str, data: st.DataObject) -> None:
    _, strategy = KIND_CASES[kind]
    values = data.draw(st.lists(st.none() | strategy, min_size=1, max_size=20))
    rows = [[v, None, v] for v in values]
    back = unpack_rows(pack_rows(rows), 3, "test")
    assert same(back, rows)


@pytest.mark.parametrize("kind", KINDS)
@FAST
@given(data=st.data())
def test_canonical_values_are_fixed_points_of_the_canonicalizer(kind: str, data: st.DataObject) -> None:
    """A value already in canonical form comes back unchanged (restore rehashes values read back)."""
    t, strategy = KIND_CASES[kind]
    v = data.draw(strategy)
    assert same(canonicalizer(t)(v), v)


@FAST
@given(case=decimal_texts())
def test_decimal_with_scale_is_a_fixed_point(case: tuple[int, str]) -> None:
    scale, v = case
    assert canonicalizer(LogicalType("decimal", precision=38, scale=scale))(v) == v


@FAST
@given(v=floats32)
def test_float32_values_are_fixed_points(v: float) -> None:
    assert same(canonicalizer(LogicalType("float", bits=32))(v), v)


@FAST
@given(v=st.one_of(naive_datetimes))
def test_naive_datetime_is_a_fixed_point_in_naive_column(v: dt.datetime) -> None:
    s = v.isoformat()
    assert canonicalizer(LogicalType("datetime"))(s) == s
    assert canonicalizer(LogicalType("datetime"))(v) == s


ALL_TYPES = [KIND_CASES[k][0] for k in KINDS]


@st.composite
def mixed_rows(draw: Any, max_rows: int = 8) -> list[list[Any]]:
    n = draw(st.integers(0, max_rows))
    return [[draw(st.none() | KIND_CASES[k][1]) for k in KINDS] for _ in range(n)]


@pytest.mark.parametrize("compression", ["zstd", "gzip", "lzma", "none"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(mixed_rows(), max_size=3))
def test_chunk_round_trip_every_kind(compression: str, batches: list[list[list[Any]]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.chunk"
        w = ChunkWriter(path, "data/00001-00001.chunk", Compressor(compression), ALL_TYPES)
        for b in batches:
            w.write_rows(b)
        info = w.close()
        nonempty = [b for b in batches if b]
        got = list(read_chunk(path, len(ALL_TYPES), "t", info.sha256, info.rows))
    assert same(got, nonempty)
    assert info.rows == sum(map(len, batches))
    h = RowHash(ALL_TYPES)
    for b in got:
        h.update(b)
    assert h.hexdigest() == info.content_hash and h.rows == info.rows


def test_integer_edges_through_codec() -> None:
    rows = [[2**64 - 1], [-2**63], [2**63], [0]]
    assert unpack_rows(pack_rows(rows), 1, "t") == rows
    for too_big in (2**64, -2**63 - 1):
        with pytest.raises(ArchiveError, match="cannot encode a row"):
            pack_rows([[too_big]])


def test_codec_refuses_non_canonical_python_objects() -> None:
    for v in (dt.date(2020, 1, 1), decimal.Decimal("1.5"), uuid.uuid4(), object()):
        with pytest.raises(ArchiveError):
            pack_rows([[v]])


# ---------------------------------------------------------------- canonicalizer examples

def conv(kind: str, **kw: Any) -> Any:
    return canonicalizer(LogicalType(kind, **kw))


def test_none_passes_through_every_converter() -> None:
    for t in ALL_TYPES + [LogicalType("decimal", precision=5, scale=2), LogicalType("float", bits=32)]:
        assert canonicalizer(t)(None) is None


@pytest.mark.parametrize("value, precision, scale, expected", [
    (decimal.Decimal("12.5"), 10, 2, "12.50"),
    (decimal.Decimal("12"), 10, 2, "12.00"),
    (7, 10, 3, "7.000"),
    ("  -3.1 ", 10, 2, "-3.10"),
    (0.1, 10, 2, "0.10"),
    (decimal.Decimal("1E+3"), 10, 0, "1000"),
    (decimal.Decimal("1E+3"), None, None, "1000"),
    (decimal.Decimal("1.50"), None, None, "1.50"),
    (decimal.Decimal("1E-7"), None, None, "0.0000001"),
    (decimal.Decimal("12345678901234567890123456789012345678"), 38, 0, "12345678901234567890123456789012345678"),
    (decimal.Decimal("-0.12345678901234567890123456789012345678"), 38, 38,
     "-0.12345678901234567890123456789012345678"),
    (decimal.Decimal("NaN"), 10, 2, "NaN"),
    (float("nan"), 10, 2, "NaN"),
    (float("inf"), None, None, "Infinity"),
    (decimal.Decimal("-Infinity"), 10, 2, "-Infinity"),
    (decimal.Decimal("0.000"), 10, 2, "0.00"),
])
def test_decimal_quantised_to_scale(value: Any, precision: int | None, scale: int | None, expected: str) -> None:
    assert conv("decimal", precision=precision, scale=scale)(value) == expected


@pytest.mark.parametrize("value, precision, scale, expected", [
    (decimal.Decimal("-0.001"), 10, 2, "0.00"),
    (-0.0, 10, 2, "0.00"),
    (decimal.Decimal("-0"), None, None, "0"),
    (decimal.Decimal("-0.00"), None, None, "0.00"),
    ("-0", 10, 0, "0"),
])
def test_decimal_negative_zero(value: Any, precision: int | None, scale: int | None, expected: str) -> None:
    """A negative zero is plain zero: not '-0.00', and not '00.00'."""
    assert conv("decimal", precision=precision, scale=scale)(value) == expected


def test_float32_rounding() -> None:
    f32 = conv("float", bits=32)
    assert f32(0.1) == 0.10000000149011612
    assert f32(decimal.Decimal("0.1")) == 0.10000000149011612
    assert f32(16777217) == 16777216.0
    assert f32(1.5) == 1.5
    assert math.isnan(f32(float("nan"))) and f32(float("inf")) == math.inf and f32(-math.inf) == -math.inf
    assert math.copysign(1, f32(-0.0)) == -1
    f64 = conv("float", bits=64)
    assert f64(0.1) == 0.1 and f64(decimal.Decimal("0.1")) == 0.1 and type(f64(3)) is float


def test_time_from_timedelta_over_24h_and_negative() -> None:
    t = conv("time")
    assert t(dt.timedelta(hours=838, minutes=59, seconds=59)) == "838:59:59"
    assert t(dt.timedelta(days=1, hours=1)) == "25:00:00"
    assert t(-dt.timedelta(hours=838, minutes=59, seconds=59)) == "-838:59:59"
    assert t(-dt.timedelta(hours=1, minutes=2, seconds=3, microseconds=500)) == "-01:02:03.000500"
    assert t(dt.timedelta(microseconds=-1)) == "-00:00:00.000001"
    assert t(dt.timedelta(0)) == "00:00:00"
    assert t(dt.timedelta(seconds=1, microseconds=250000)) == "00:00:01.250000"
    assert t(dt.time(13, 14, 15, 16)) == "13:14:15.000016"
    assert t(dt.time(1, 2, 3, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))) == "01:02:03+05:30"
    assert t("13:14") == "13:14:00"


def test_datetime_forms() -> None:
    aware, naive = conv("datetime", timezone=True), conv("datetime")
    plus2 = dt.timezone(dt.timedelta(hours=2))
    v = dt.datetime(2024, 1, 1, 1, 30, 0, 123456, tzinfo=plus2)
    assert aware(v) == "2023-12-31T23:30:00.123456+00:00"
    assert naive(v) == "2023-12-31T23:30:00.123456"            # converted to UTC, then naive
    assert aware(dt.datetime(2024, 1, 1, 12)) == "2024-01-01T12:00:00+00:00"  # naive read as UTC
    assert naive(dt.datetime(1850, 1, 1, 0, 0, 0, 1)) == "1850-01-01T00:00:00.000001"
    assert aware("2024-06-01 10:00:00-07:00") == "2024-06-01T17:00:00+00:00"
    assert aware("2024-06-01T10:00:00Z") == "2024-06-01T10:00:00+00:00"
    assert naive(dt.date(2200, 2, 3)) == "2200-02-03T00:00:00"
    assert aware(dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == "9999-12-31T23:59:59.999999+00:00"


def test_date_forms() -> None:
    d = conv("date")
    assert d(dt.date(1, 1, 1)) == "0001-01-01"
    assert d(dt.date(1899, 12, 31)) == "1899-12-31"
    assert d(dt.datetime(2101, 5, 6, 7, 8, 9)) == "2101-05-06"
    assert d("2024-02-29 00:00:00") == "2024-02-29"


def test_uuid_forms() -> None:
    u = conv("uuid")
    want = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert u("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11") == want
    assert u("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}") == want
    assert u("a0eebc999c0b4ef8bb6d6bb9bd380a11") == want
    assert u(uuid.UUID(want)) == want


def test_other_forms() -> None:
    assert conv("char", length=10)("ab   ") == "ab"
    assert conv("char", length=10)("  ab") == "  ab"
    assert conv("string", length=10)("ab   ") == "ab   "
    assert conv("text")(b"caf\xc3\xa9") == "café"
    assert conv("binary")(memoryview(b"\0\1")) == b"\0\1" and type(conv("binary")(bytearray(b"x"))) is bytes
    b = conv("boolean")
    assert [b(x) for x in (1, 0, "t", "f", "TRUE", "no", b"\x01", b"\x00", True)] == \
        [True, False, True, False, True, False, True, False, True]
    assert conv("json")({"b": 1, "a": "é"}) == '{"b": 1, "a": "é"}'
    assert conv("json")(b'{"a": 1}') == '{"a": 1}'
    arr = canonicalizer(LogicalType("array", item=LogicalType("decimal", precision=5, scale=1)))
    assert arr([decimal.Decimal("1"), None, 2.25]) == ["1.0", None, "2.2"]
    assert arr("[1, null]") == ["1.0", None]
    assert conv("integer", bits=64)(decimal.Decimal("5")) == 5 and type(conv("integer")(True)) is int
    assert conv("native")(bytearray(b"x")) == b"x"
    assert conv("native")(decimal.Decimal("1.5")) == "1.5"


# ---------------------------------------------------------------- ContentHash (v1) and RowHash (v2)

HASHES = {"v1": (ContentHash, combine_hashes), "v2": (RowHash, combine_v2)}


def digest(types: list[LogicalType], rows: list[list[Any]], version: str = "v1", **kw: Any) -> str:
    h = HASHES[version][0](types, **kw)
    h.update(rows)
    return h.hexdigest()


T_TEXT, T_INT = LogicalType("text"), LogicalType("integer", bits=64)
T_DEC, T_FLOAT, T_JSON = LogicalType("decimal", precision=10, scale=2), LogicalType("float", bits=64), \
    LogicalType("json")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=mixed_rows(12), seed=st.randoms(use_true_random=False))
@pytest.mark.parametrize("version", sorted(HASHES))
def test_content_hash_is_order_independent(rows: list[list[Any]], seed: Any, version: str) -> None:
    shuffled = list(rows)
    seed.shuffle(shuffled)
    cls = HASHES[version][0]
    a, b = cls(ALL_TYPES), cls(ALL_TYPES)
    a.update(rows)
    half = len(shuffled) // 2
    b.update(shuffled[:half])
    b.update(shuffled[half:])
    assert a.hexdigest() == b.hexdigest() and a.rows == b.rows == len(rows)


@FAST
@given(rows=st.lists(st.lists(st.none() | text, min_size=2, max_size=2), min_size=1, max_size=10),
       split=st.integers(0, 10))
@pytest.mark.parametrize("version", sorted(HASHES))
def test_chunk_hashes_combine_to_the_table_hash(rows: list[list[Any]], split: int, version: str) -> None:
    types = [T_TEXT, T_TEXT]
    whole = digest(types, rows, version)
    combine = HASHES[version][1]
    assert combine([digest(types, rows[:split], version), digest(types, rows[split:], version)]) == whole


@FAST
@given(row=st.lists(st.none() | text, min_size=2, max_size=2))
@pytest.mark.parametrize("version", sorted(HASHES))
def test_content_hash_counts_duplicates(row: list[Any], version: str) -> None:
    types = [T_TEXT, T_TEXT]
    assert digest(types, [row], version) != digest(types, [row, row], version)
    assert digest(types, []) == "0" * 64 and digest(types, [], "v2") == "0" * 32


def test_v2_row_hash_is_xxh3_128_of_the_msgpack_row_summed() -> None:
    import msgpack
    import xxhash

    rows = [[1, "a", None, b"\x00", 1.5, True, [1, None]], [2**64 - 1, "é", "x", b"", -0.0, False, []]]
    want = sum(xxhash.xxh3_128_intdigest(msgpack.packb(r, use_bin_type=True)) for r in rows) % (1 << 128)
    assert digest([T_TEXT] * 7, rows, "v2") == f"{want:032x}"


def test_v2_null_empty_string_zero_and_types_differ() -> None:
    for a, b in ((None, ""), ("", b""), (0, 0.0), (0, False), (None, 0), ("1", 1), ([], None), (0.0, -0.0)):
        assert digest([T_TEXT], [[a]], "v2") != digest([T_TEXT], [[b]], "v2"), (a, b)
    assert digest([T_TEXT, T_TEXT], [["ab", "c"]], "v2") != digest([T_TEXT, T_TEXT], [["a", "bc"]], "v2")


def test_v2_normalize_mode_compares_decimals_and_json_by_value() -> None:
    assert digest([T_DEC], [["1.5"]], "v2") != digest([T_DEC], [["1.50"]], "v2")     # exact: as stored
    assert digest([T_DEC], [["1.5"]], "v2", normalize=True) == digest([T_DEC], [["1.50"]], "v2", normalize=True)
    assert digest([T_DEC], [["1.5"]], "v2", normalize=True) != digest([T_DEC], [["1.51"]], "v2", normalize=True)
    a, b = '{"a": 1, "b": [1, 2]}', '{"b":[1,2],"a":1}'
    assert digest([T_JSON], [[a]], "v2") != digest([T_JSON], [[b]], "v2")
    assert digest([T_JSON], [[a]], "v2", normalize=True) == digest([T_JSON], [[b]], "v2", normalize=True)
    assert digest([T_JSON], [["[1,2]"]], "v2", normalize=True) != digest([T_JSON], [["[2,1]"]], "v2", normalize=True)
    # other kinds are never normalised
    assert digest([T_TEXT], [["1.5"]], "v2", normalize=True) != digest([T_TEXT], [["1.50"]], "v2", normalize=True)


def test_null_empty_string_and_zero_differ() -> None:
    for types in ([T_TEXT], [LogicalType("char", length=1)], [LogicalType("native")]):
        assert digest(types, [[None]]) != digest(types, [[""]])
    assert digest([T_TEXT], [[None]]) != digest([T_TEXT], [[""]]) != digest([T_TEXT], [["0"]])
    assert digest([T_INT], [[None]]) != digest([T_INT], [[0]])
    assert digest([T_DEC], [[None]]) != digest([T_DEC], [["0.00"]])
    assert digest([T_FLOAT], [[None]]) != digest([T_FLOAT], [[0.0]])
    assert digest([LogicalType("binary")], [[None]]) != digest([LogicalType("binary")], [[b""]])
    assert digest([LogicalType("boolean")], [[None]]) != digest([LogicalType("boolean")], [[False]])
    assert digest([T_JSON], [[None]]) != digest([T_JSON], [["null"]])
    assert digest([T_TEXT], [[""]]) != digest([LogicalType("binary")], [[b""]])
    # column boundaries are not ambiguous
    assert digest([T_TEXT, T_TEXT], [["ab", "c"]]) != digest([T_TEXT, T_TEXT], [["a", "bc"]])
    assert digest([T_TEXT, T_TEXT], [[None, ""]]) != digest([T_TEXT, T_TEXT], [["", None]])


def test_decimal_float_and_text_differ_only_where_types_differ() -> None:
    assert digest([T_DEC], [["1.5"]]) != digest([T_FLOAT], [[1.5]])
    assert digest([T_DEC], [["1.5"]]) != digest([T_TEXT], [["1.5"]])
    assert digest([T_INT], [[1]]) != digest([T_FLOAT], [[1.0]])
    # within one type the value is what counts, not its spelling
    assert digest([T_FLOAT], [["1.5"]]) == digest([T_FLOAT], [[1.5]])
    assert digest([T_FLOAT], [[1]]) == digest([T_FLOAT], [[1.0]])
    assert digest([T_DEC], [["1.5"]]) == digest([T_DEC], [["1.50"]])
    # but text is text
    assert digest([T_TEXT], [["1.5"]]) != digest([T_TEXT], [["1.50"]])


@pytest.mark.parametrize("a, b", [("1.50", "1.5"), ("1.5", "1.500000"), ("0", "0.00"), ("-0.00", "0"),
                                  ("10", "1E+1"), ("100.0", "100"), ("NaN", "NaN"),
                                  ("-12345678901234567890.123", "-12345678901234567890.1230")])
def test_decimal_hash_by_value(a: str, b: str) -> None:
    assert digest([T_DEC], [[a]]) == digest([T_DEC], [[b]])


@pytest.mark.parametrize("a, b", [("1.5", "1.51"), ("1", "-1"), ("100", "10"), ("0.1", "0.01"),
                                  ("Infinity", "-Infinity"), ("NaN", "0")])
def test_decimal_hash_distinguishes_values(a: str, b: str) -> None:
    assert digest([T_DEC], [[a]]) != digest([T_DEC], [[b]])


def test_float_hash_by_ieee_bits() -> None:
    assert digest([T_FLOAT], [[0.0]]) != digest([T_FLOAT], [[-0.0]])
    assert digest([T_FLOAT], [[math.nan]]) == digest([T_FLOAT], [[-math.nan]])
    assert digest([T_FLOAT], [[math.inf]]) != digest([T_FLOAT], [[-math.inf]])
    assert digest([T_FLOAT], [[0.1]]) != digest([T_FLOAT], [[0.10000000149011612]])


def test_json_hash_by_structure() -> None:
    assert digest([T_JSON], [['{"a": 1, "b": [1, 2, {"y": null, "x": "é"}]}']]) == \
        digest([T_JSON], [['{"b":[1,2,{"x":"\\u00e9","y":null}],"a":1}']])
    assert digest([T_JSON], [["[1, 2]"]]) != digest([T_JSON], [["[2, 1]"]])
    assert digest([T_JSON], [['{"a": 1}']]) != digest([T_JSON], [['{"a": "1"}']])
    assert digest([T_JSON], [['"x"']]) != digest([T_TEXT], [['"x"']])


@FAST
@given(v=json_values, seed=st.randoms(use_true_random=False))
def test_json_key_order_never_matters(v: Any, seed: Any) -> None:
    def shuffled(x: Any) -> Any:
        if isinstance(x, dict):
            items = list(x.items())
            seed.shuffle(items)
            return {k: shuffled(val) for k, val in items}
        if isinstance(x, list):
            return [shuffled(i) for i in x]
        return x
    a = json.dumps(v, ensure_ascii=False)
    b = json.dumps(shuffled(v), ensure_ascii=True, indent=1)
    assert digest([T_JSON], [[a]]) == digest([T_JSON], [[b]])


@FAST
@given(a=text, b=text)
def test_distinct_texts_hash_differently(a: str, b: str) -> None:
    assume(a != b)
    assert digest([T_TEXT], [[a]]) != digest([T_TEXT], [[b]])


def test_hash_refuses_values_without_canonical_encoding() -> None:
    with pytest.raises(TypeError):
        digest([T_TEXT], [[dt.date(2020, 1, 1)]])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=mixed_rows())
@example(rows=[])
def test_hash_survives_the_codec(rows: list[list[Any]]) -> None:
    back = unpack_rows(pack_rows(rows), len(ALL_TYPES), "t") if rows else []
    assert digest(ALL_TYPES, back) == digest(ALL_TYPES, rows)


def _decimal_reference(v: str) -> str:
    """The normal form as Decimal computes it (the slow path, kept as the reference)."""
    d = decimal.Decimal(v)
    if not d.is_finite():
        return str(d)
    return "0" if d.is_zero() else format(d.normalize(decimal.Context(prec=200)), "f")


@given(sign=st.sampled_from(["", "-"]), whole=st.text("0123456789", min_size=1, max_size=40),
       frac=st.none() | st.text("0123456789", min_size=1, max_size=40))
@example(sign="-", whole="000", frac="000")
@example(sign="", whole="100", frac=None)
@example(sign="-", whole="0", frac="00100")
@FAST
def test_plain_decimal_text_normalises_as_decimal_does(sign: str, whole: str, frac: str | None) -> None:
    from albackup.values import _norm_decimal_str

    v = f"{sign}{whole}" + (f".{frac}" if frac is not None else "")
    assert _norm_decimal_str(v) == _decimal_reference(v)


@pytest.mark.parametrize("v", ["1E+3", "-.5", "5.", "+7", "NaN", "-Infinity", "1" * 195 + ".5", " 1"])
def test_other_decimal_spellings_take_the_decimal_path(v: str) -> None:
    from albackup.values import _norm_decimal_str

    assert _norm_decimal_str(v) == _decimal_reference(v)


_TEMPORAL_INPUTS = [None, "2021-03-04", "0044-03-15", "0044-03-15 BC", "infinity", "-infinity", "0000-00-00",
                    "2021-02-30", "10000-01-01", "2021-03-04 10:11:12", "2021-03-04 10:11:12.5",
                    "2021-03-04 10:11:12.123456", "2021-03-04 10:11:12.000000", "0044-03-15 10:11:12 BC",
                    "0000-00-00 00:00:00", "10000-01-01 00:00:00", "2021-03-04T10:11:12",
                    dt.date(2021, 3, 4), dt.datetime(2021, 3, 4, 10, 11, 12, 5),
                    # spellings the C parser takes that are not the canonical text (none of them
                    # comes from a server): each must take the function
                    "2021-W01-1", "20210304", "2021-03-04 10:11+01", "2021-03-04 10:11:12.123+01",
                    "20210304T101112.123", "2021-03-04 101112.5", "2021-03-04 10:11:12.500",
                    "2021-03-04 10:11:12.٣٣٣٣٣٣", "2021-02-31 10:11:12.000000", "2021-02-31",
                    "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999", "2021-03-04 10:11:12.000001"]


def _outcome(f: Any, v: Any) -> Any:
    try:
        return ("ok", f(v))
    except Exception as exc:  # the same refusal, value by value or in the comprehension
        return ("error", type(exc).__name__)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
@pytest.mark.parametrize("kind", ["date", "datetime"])
def test_inline_readers_give_what_their_function_gives(engine: str, kind: str) -> None:
    """A reader's inline expression (written into the compiled batch converter) must agree with
    the reader called value by value, refusals included."""
    from albackup.engines import postgresql as pg_mod  # noqa: F401 - registers the adapter
    from albackup.engines.mysql import MySQLAdapter
    from albackup.engines.postgresql import PostgreSQLAdapter
    from albackup.values import batch_converter

    adapter = (PostgreSQLAdapter if engine == "postgresql" else MySQLAdapter).__new__(
        PostgreSQLAdapter if engine == "postgresql" else MySQLAdapter)
    reader = adapter.reader(LogicalType(kind))
    assert getattr(reader, "inline", None), "this reader has an inline expression"
    conv = batch_converter([reader])
    assert conv is not None
    for v in _TEMPORAL_INPUTS:
        assert _outcome(lambda x: conv([(x,)])[0][0], v) == _outcome(reader, v), v


@pytest.mark.parametrize("kind", ["string", "text", "enum", "interval", "json"])
def test_text_readers_inline_keep_str_and_convert_the_rest(kind: str) -> None:
    """The canonical reader of a text-like kind keeps a str as it is in the batch converter and
    gives every other value (bytes, a dict for JSON, a number, NULL) to its function."""
    from albackup.values import batch_converter, canonicalizer

    reader = canonicalizer(LogicalType(kind))
    assert getattr(reader, "inline", None)
    conv = batch_converter([reader])
    assert conv is not None
    for v in [None, "", "text ü", "{\"a\": 1}", b"bytes \xc3\xbc", bytearray(b"x"), 12, {"a": [1, None]}]:
        assert _outcome(lambda x: conv([(x,)])[0][0], v) == _outcome(reader, v), v
    assert conv([("abc",)])[0][0] == "abc"
    assert conv([(b"abc",)])[0][0] == "abc"


@given(values=st.lists(st.none() | st.text() | st.integers() | st.decimals(allow_nan=False) | st.just("a\\b\tc\nd\re"),
                       min_size=1, max_size=20))
@FAST
def test_copy_text_inline_writer_writes_what_the_function_writes(values: list[Any]) -> None:
    from albackup.engines.postgresql import _copy_text, copy_lines, copy_text_writer

    w = copy_text_writer(LogicalType("text"))
    assert getattr(w, "inline", None)
    lines = copy_lines([w, str])([(v, i) for i, v in enumerate(values)])
    assert lines == "".join(("\\N" if v is None else _copy_text(v)) + "\t" + str(i) + "\n"
                            for i, v in enumerate(values))


@given(values=st.lists(st.none() | st.text() | st.integers() | st.booleans() | st.floats(allow_nan=False)
                       | st.just("a\\b\tc\nd\re\x00f"), min_size=1, max_size=20))
@FAST
def test_load_data_inline_encoders_write_what_the_functions_write(values: list[Any]) -> None:
    from albackup.engines.mysql import _NULL, _compile_lines, _int_text, _str_text

    for enc in (_int_text, _str_text):
        assert getattr(enc, "inline", None)
        lines = _compile_lines([enc, str])([(v, i) for i, v in enumerate(values)])
        assert lines == "".join((_NULL if v is None else enc(v)) + "\t" + str(i) + "\n"
                                for i, v in enumerate(values))


def test_a_nul_inside_a_large_text_value_is_found_piece_by_piece() -> None:
    """The NUL loss of PostgreSQL text is counted on values stored in pieces without making them
    whole: the NUL may sit anywhere, also right at a piece's edge."""
    from albackup.codec import LargeValue
    from albackup.engines.postgresql import PostgreSQLAdapter
    from albackup.mapping import ColumnMove, _ident
    from albackup.restore import _affects

    move = ColumnMove(LogicalType("text"), _ident)
    PostgreSQLAdapter.__new__(PostgreSQLAdapter).add_losses(move, LogicalType("text"))
    (loss,) = move.losses
    assert loss.affects_large is not None

    def large(pieces: list[bytes], kind: int = 1) -> LargeValue:
        v = LargeValue(kind, sum(map(len, pieces)))
        for p in pieces:
            v.append(p)
        return v

    assert _affects(loss, large([b"a" * 10, b"b\x00c"]))
    assert _affects(loss, large([b"\x00" + b"a" * 5]))
    assert not _affects(loss, large([b"a" * 10, b"zo\xc3\xab"]))
    assert not _affects(loss, large([b"\x00\x00"], kind=0))      # bytes: no text, no loss
    assert _affects(loss, "x\x00") and not _affects(loss, "x")


def test_gc_paused_holds_the_collector_off_and_collects_at_the_end() -> None:
    import gc
    import weakref

    from albackup.gcpause import gc_paused

    class Node:
        pass

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        a, b = Node(), Node()
        a.other, b.other = b, a          # a cycle: only the collector frees it
        gone = weakref.ref(a)
        del a, b
        with gc_paused():                # nested: left off
            assert not gc.isenabled()
        assert not gc.isenabled()
        assert gone() is not None
    assert gc.isenabled()
    assert gone() is None                # collected when the block ended
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()        # a collector the caller turned off stays off
    finally:
        gc.enable()
