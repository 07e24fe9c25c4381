"""Compare two live databases (a source and its restored copy): schema and data."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .engines.base import Adapter
from .model import Schema, Table
from .reflect import reflect_schema
from .values import ContentHash


@dataclass
class Comparison:
    tables: int = 0
    rows: int = 0
    differences: list[str] = field(default_factory=list)


def _index_sig(t: Table) -> set[tuple[Any, ...]]:
    return {(tuple(i.columns), i.unique, tuple(i.expressions or ())) for i in t.indexes}


def compare_schema(a: Schema, b: Schema, exact_types: bool, ignore_extra: bool = False) -> list[str]:
    out: list[str] = []
    bt = {t.key: t for t in b.tables}
    for t in a.tables:
        u = bt.pop(t.key, None)
        if u is None:
            out.append(f"table {t.key}: missing in the copy")
            continue
        ac = [(c.name, c.type.describe(), c.nullable) + ((c.original_type,) if exact_types else ())
              for c in t.columns]
        bc = [(c.name, c.type.describe(), c.nullable) + ((c.original_type,) if exact_types else ())
              for c in u.columns]
        if ac != bc:
            diff = [f"{x} ≠ {y}" for x, y in zip(ac, bc) if x != y] or [f"{len(ac)} ≠ {len(bc)} columns"]
            out.append(f"table {t.key}: columns differ: {'; '.join(map(str, diff[:3]))}")
        if t.primary_key != u.primary_key:
            out.append(f"table {t.key}: primary key {t.primary_key} ≠ {u.primary_key}")
        fa = {(tuple(f.columns), f.ref_table, tuple(f.ref_columns)) for f in t.foreign_keys}
        fb = {(tuple(f.columns), f.ref_table, tuple(f.ref_columns)) for f in u.foreign_keys}
        if fa != fb:
            out.append(f"table {t.key}: foreign keys differ ({sorted(fa ^ fb)[:3]})")
        if {tuple(x.columns) for x in t.uniques} != {tuple(x.columns) for x in u.uniques}:
            out.append(f"table {t.key}: unique constraints differ")
        if _index_sig(t) != _index_sig(u):
            missing = _index_sig(t) - _index_sig(u)
            extra = _index_sig(u) - _index_sig(t)
            out.append(f"table {t.key}: indexes differ (missing {sorted(missing)}, extra {sorted(extra)})")
        if len(t.checks) != len(u.checks):
            out.append(f"table {t.key}: {len(t.checks)} check constraints ≠ {len(u.checks)}")
    if not ignore_extra:
        out.extend(f"table {k}: only in the copy" for k in bt)
    return out


def table_hash(conn: sa.Connection, adapter: Adapter, t: Table) -> ContentHash:
    readers = [adapter.reader(c.type) for c in t.columns]
    h = ContentHash([c.type for c in t.columns])
    for raw in adapter.stream(conn, t, 5000):
        h.update([[f(v) for f, v in zip(readers, r)] for r in raw])
    return h


def compare_databases(src: sa.Engine, src_adapter: Adapter, dst: sa.Engine, dst_adapter: Adapter,
                      schemas: list[str | None], include: tuple[str, ...] = (),
                      exclude: tuple[str, ...] = (), ignore_extra: bool = False) -> Comparison:
    """``ignore_extra``: tables only in the copy are not a difference (a shared scratch database)."""
    res = Comparison()
    with src.connect() as sc, dst.connect() as dc:
        src_adapter.begin_snapshot(sc)
        dst_adapter.begin_snapshot(dc)
        a = reflect_schema(sc, src_adapter, schemas, include, exclude, kinds=set())
        b = reflect_schema(dc, dst_adapter, schemas, include, exclude, kinds=set())
        res.differences += compare_schema(a, b, exact_types=src_adapter.name == dst_adapter.name,
                                          ignore_extra=ignore_extra)
        bt = {t.key: t for t in b.tables}
        for t in a.tables:
            u = bt.get(t.key)
            if u is None:
                continue
            ha = table_hash(sc, src_adapter, t)
            hb = table_hash(dc, dst_adapter, u)
            res.tables += 1
            res.rows += ha.rows
            if ha.rows != hb.rows:
                res.differences.append(f"table {t.key}: {ha.rows} rows ≠ {hb.rows} in the copy")
            elif ha.hexdigest() != hb.hexdigest():
                res.differences.append(f"table {t.key}: data differs (content hash)")
    return res
