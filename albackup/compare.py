"""Compare two live databases (a source and its restored copy): schema and data."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import sqlalchemy as sa

from .engines.base import Adapter
from .errors import CompareFailed, UnreadObject
from .model import Schema, Table, partition_head
from .reflect import reflect_schema
from .values import ColumnRowHashes, RowHash


@dataclass
class Comparison:
    tables: int = 0
    rows: int = 0
    differences: list[str] = field(default_factory=list)


def _index_sig(t: Table, options: bool = False) -> set[tuple[Any, ...]]:
    """Each index as (columns, unique, expressions), and with ``options`` (same engine) its
    reflected options too (a partial index's WHERE, the access method, sort order, …)."""
    def opts(i: Any) -> str:
        return json.dumps({k: v for k, v in (i.options or {}).items() if not k.endswith("_tablespace")},
                          sort_keys=True) if options else ""

    return {(tuple(i.columns), i.unique, tuple(i.expressions or ())) + ((opts(i),) if options else ())
            for i in t.indexes}


def _names(t: Table) -> set[tuple[str, str]]:
    """The names a table's foreign keys, unique constraints, checks and indexes carry."""
    return ({("foreign key", f.name) for f in t.foreign_keys if f.name}
            | {("unique", u.name) for u in t.uniques if u.name}
            | {("check", c.name) for c in t.checks if c.name}
            | {("index", i.name) for i in t.indexes if i.name})


def _squeezed(clause: str | None) -> str | None:
    """A MySQL/MariaDB partition clause with its white space made single spaces (the servers
    break its lines)."""
    return " ".join(clause.split()) if clause else None


def _action(a: str | None) -> str:
    return (a or "NO ACTION").upper().replace("RESTRICT", "NO ACTION")


def compare_schema(a: Schema, b: Schema, exact_types: bool, ignore_extra: bool = False,
                   kept_options: Iterable[str] = ()) -> list[str]:
    out: list[str] = []
    bt = {t.key: t for t in b.tables}
    for t in a.tables:
        u = bt.pop(t.key, None)
        if u is None:
            out.append(f"table {t.key}: missing in the copy")
            continue
        # Across engines the types differ by design (the restore plan lists them): names and nullability.
        def cols(x: Table) -> list[tuple[Any, ...]]:
            return [(c.name, c.nullable and (exact_types or c.name not in x.primary_key))
                    + ((c.type.describe(), c.original_type) if exact_types else ()) for c in x.columns]

        ac, bc = cols(t), cols(u)
        an, bn = [c.name for c in t.columns], [c.name for c in u.columns]
        if set(an) != set(bn):
            gone, more = [n for n in an if n not in bn], [n for n in bn if n not in an]
            out.append(f"table {t.key}: columns differ: "
                       + "; ".join([f"column {n!r} missing in the copy" for n in gone]
                                   + [f"column {n!r} only in the copy" for n in more]))
        elif ac != bc:
            diff = [f"{x} ≠ {y}" for x, y in zip(ac, bc) if x != y] or [f"{len(ac)} ≠ {len(bc)} columns"]
            out.append(f"table {t.key}: columns differ: {'; '.join(map(str, diff[:3]))}")
        if t.primary_key != u.primary_key:
            out.append(f"table {t.key}: primary key {t.primary_key} ≠ {u.primary_key}")
        elif exact_types and t.primary_key_sorting != u.primary_key_sorting:
            out.append(f"table {t.key}: primary key order differs (descending: {sorted(t.primary_key_sorting)} ≠ "
                       f"{sorted(u.primary_key_sorting)})")
        def fks(x: Table) -> set[tuple[Any, ...]]:
            return {(tuple(f.columns), f.ref_table, tuple(f.ref_columns), _action(f.on_delete), _action(f.on_update))
                    + ((bool(f.deferrable), (f.initially or "IMMEDIATE").upper()) if exact_types else ())
                    for f in x.foreign_keys}

        fa, fb = fks(t), fks(u)
        if exact_types:
            def parts(x: Table) -> tuple[Any, ...]:
                return x.partition_by, sorted((p["name"], p["bound"], p.get("partition_by"))
                                              for p in x.partition_tree)

            def own(x: Table) -> list[tuple[Any, ...]]:
                return sorted([(p["name"], kind, o["name"], o["sql"], bool(o.get("unique")))
                               for p in x.partition_tree for kind in ("constraints", "indexes")
                               for o in p.get(kind) or ()]
                              + [(p["name"], "options", json.dumps(p["options"], sort_keys=True), "", False)
                                 for p in x.partition_tree if p.get("options")])

            kept = sorted(kept_options)       # the table options a restore makes again
            if {k: t.options.get(k) for k in kept} != {k: u.options.get(k) for k in kept}:
                what = [f"{k}={t.options.get(k)}" for k in kept if t.options.get(k) != u.options.get(k)]
                out.append(f"table {t.key}: table options differ ({', '.join(what)})")
            if sorted(x["sql"] for x in t.native_constraints) != sorted(x["sql"] for x in u.native_constraints):
                out.append(f"table {t.key}: EXCLUDE constraints differ")
            if parts(t) != parts(u):
                out.append(f"table {t.key}: partitioning differs ({t.partition_by or 'none'} with "
                           f"{len(t.partition_tree)} partitions ≠ {u.partition_by or 'none'} with "
                           f"{len(u.partition_tree)})")
            if parts(t) == parts(u) and own(t) != own(u):
                diff = sorted(set(own(t)) ^ set(own(u)))
                out.append(f"table {t.key}: the partitions' own indexes, constraints and options differ "
                           f"({', '.join(f'{d[2]} on {d[0]}' for d in diff[:3])})")
            if _squeezed(t.partition_clause) != _squeezed(u.partition_clause):
                ha, hb = (partition_head(x.partition_clause) if x.partition_clause else "none" for x in (t, u))
                out.append(f"table {t.key}: partitioning differs ({ha} ≠ {hb})" if ha != hb else
                           f"table {t.key}: partitioning differs ({ha}, with other partitions)")
        if fa != fb:
            out.append(f"table {t.key}: foreign keys differ ({sorted(fa ^ fb)[:3]})")
        ua, ub = {tuple(x.columns) for x in t.uniques}, {tuple(x.columns) for x in u.uniques}
        ia, ib = _index_sig(t, exact_types), _index_sig(u, exact_types)
        if not exact_types:
            # A unique index over plain columns and a unique constraint are one thing to an engine
            # that has no separate constraint (MySQL reflects each unique index as both): across
            # engines, either form counts as the constraint.
            def plain(sig: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
                return {x for x in sig if x[1] and not x[2]}

            ua |= {x[0] for x in plain(ia)}
            ub |= {x[0] for x in plain(ib)}
            ia, ib = ia - plain(ia), ib - plain(ib)
        if ua != ub:
            out.append(f"table {t.key}: unique constraints differ")
        missing = ia - ib
        extra = ib - ia
        if not exact_types:   # engines that index foreign keys by themselves (MySQL) add these
            extra = {x for x in extra if not (not x[1] and list(x[0]) in [f.columns for f in u.foreign_keys])}
        if missing or extra:
            out.append(f"table {t.key}: indexes differ (missing {sorted(missing)}, extra {sorted(extra)})")
        if len(t.checks) != len(u.checks):
            out.append(f"table {t.key}: {len(t.checks)} check constraints ≠ {len(u.checks)}")
        lost = sorted(_names(t) - _names(u)) if exact_types else []
        if lost:    # into the same engine a name is kept (an unnamed constraint may get one)
            out.append(f"table {t.key}: names not in the copy: {', '.join(f'{k} {n}' for k, n in lost[:3])}"
                       + (f" (and {len(lost) - 3} more)" if len(lost) > 3 else ""))
    if not ignore_extra:
        out.extend(f"table {k}: only in the copy" for k in bt)
    return out


def table_hash(conn: sa.Connection, adapter: Adapter, t: Table) -> RowHash:
    from .restore import read_hash

    return read_hash(conn, adapter, t, normalize=True)


def column_hashes(conn: sa.Connection, adapter: Adapter, t: Table, idx: list[int]) -> tuple[int, list[str]]:
    readers = [adapter.reader(t.columns[i].type) for i in idx]
    h = ColumnRowHashes([t.columns[i].type for i in idx])
    n = 0
    for raw in adapter.stream(conn, t, 5000):
        h.update([[f(r[i]) for f, i in zip(readers, idx)] for r in raw])
        n += len(raw)
    return n, h.digests()


def _reflect(conn: sa.Connection, adapter: Adapter, schemas: list[str | None], include: tuple[str, ...],
             exclude: tuple[str, ...], side: str) -> Schema:
    """A side's schema; what could not be read in it makes the comparison fail, naming it."""
    try:
        return reflect_schema(conn, adapter, schemas, include, exclude, kinds=set())
    except UnreadObject as exc:
        raise CompareFailed(f"cannot compare {side}: {exc.message}") from exc


def compare_databases(src: sa.Engine, src_adapter: Adapter, dst: sa.Engine, dst_adapter: Adapter,
                      schemas: list[str | None], include: tuple[str, ...] = (),
                      exclude: tuple[str, ...] = (), ignore_extra: bool = False) -> Comparison:
    """``ignore_extra``: tables only in the copy are not a difference (a shared scratch database).
    No ``schemas``: every schema a dump takes (reflect.resolve_schemas) on one engine; the
    default one across engines (where other schemas' tables are named otherwise)."""
    if not schemas and src_adapter.name != dst_adapter.name:
        schemas = [None]
    res = Comparison()
    with src.connect() as sc, dst.connect() as dc:
        src_adapter.begin_snapshot(sc)
        dst_adapter.begin_snapshot(dc)
        a = _reflect(sc, src_adapter, schemas, include, exclude, "the database")
        b = _reflect(dc, dst_adapter, schemas, include, exclude, "the copy")
        res.differences += compare_schema(a, b, exact_types=src_adapter.name == dst_adapter.name,
                                          kept_options=src_adapter.kept_table_options,
                                          ignore_extra=ignore_extra)
        bt = {t.key: t for t in b.tables}
        for t in a.tables:
            u = bt.get(t.key)
            if u is None:
                continue
            res.tables += 1
            if src_adapter.name == dst_adapter.name:
                ha, hb = table_hash(sc, src_adapter, t), table_hash(dc, dst_adapter, u)
                res.rows += ha.rows
                if ha.rows != hb.rows:
                    res.differences.append(f"table {t.key}: {ha.rows} rows ≠ {hb.rows} in the copy")
                elif ha.hexdigest() != hb.hexdigest():
                    res.differences.append(f"table {t.key}: data differs (content hash)")
                continue
            # Across engines: compare the columns whose logical type is the same on both sides.
            same = [(i, j) for i, c in enumerate(t.columns) for j, d in enumerate(u.columns)
                    if c.name == d.name and c.type == d.type]
            na, ca = column_hashes(sc, src_adapter, t, [i for i, _ in same])
            nb, cb = column_hashes(dc, dst_adapter, u, [j for _, j in same])
            res.rows += na
            if na != nb:
                res.differences.append(f"table {t.key}: {na} rows ≠ {nb} in the copy")
                continue
            bad = [t.columns[i].name for (i, _), x, y in zip(same, ca, cb) if x != y]
            if bad:
                res.differences.append(f"table {t.key}: data differs in column(s) {', '.join(bad)}")
    return res
