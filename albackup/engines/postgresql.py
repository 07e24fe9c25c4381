"""PostgreSQL: REPEATABLE READ READ ONLY snapshot, named (server-side) cursors, COPY for the load."""
from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import types as sat
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Connection

from ..errors import IntegrityError, RestoreError, UnreadObject
from ..mapping import ColumnMove, Loss, _ident
from ..model import Column, DomainType, EnumType, LogicalType, Routine, Schema, Sequence, Table
from ..codec import LARGE_BYTES, PIECE_BYTES, LargeBase, LargeRows, has_large
from ..values import ISO_DATE_INLINE, Converter, EchoHash, datetime_text, server_date_text, time_text, with_inline
from .. import pgtext
from . import pg_objects
from .base import (Adapter, Snapshot, Step, Verbatim, compile_lines, fetch_batches, prefetched, register,
                   split_by_bytes)

log = logging.getLogger(__name__)

_NEXTVAL = re.compile(r"^nextval\('(?P<seq>(?:[^']|'')+)'(?:::regclass)?\)$")


def _type_exists(conn: Connection, name: str, schema: str | None) -> bool:
    """A type (enum, domain) of that name in ``schema`` (None: the current schema)."""
    return conn.exec_driver_sql(
        "SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE t.typname = %(n)s AND n.nspname = coalesce(%(s)s, current_schema())",
        {"n": name, "s": schema}).first() is not None


def _select_column(q: str, t: LogicalType) -> str:
    """How a column is selected for the read by value: char(n) → text drops the blank padding
    on the server (the canonical form has none); an array of an enum type (which psycopg2 would
    hand over as the array's text) as text[], a list of the labels."""
    if t.kind == "char":
        return f"{q}::text"
    if t.kind == "array" and t.item is not None and t.item.kind == "enum":
        return f"{q}::text[]"
    return q


def _register_text_casters(cur: Any) -> None:
    """Values we keep as the server's exact text, which is already their canonical form: json and
    jsonb (no parsing), interval, numeric (no Decimal in between), uuid (lowercase with hyphens)
    and date (ISO; anything else, such as 'infinity', is refused by the date reader)."""
    import psycopg2
    import psycopg2.extensions as ext
    import psycopg2.extras as extras

    extras.register_default_json(cur, loads=lambda s: s)
    extras.register_default_jsonb(cur, loads=lambda s: s)
    for oid, array_oid, name in ((1186, 1187, "INTERVAL"), (1700, 1231, "NUMERIC"), (2950, 2951, "UUID"),
                                 (1082, 1182, "DATE"), (1114, 1115, "TIMESTAMP"), (1184, 1185, "TIMESTAMPTZ"),
                                 (1083, 1183, "TIME")):
        caster = ext.new_type((oid,), f"ALBACKUP_{name}", psycopg2.STRING)
        ext.register_type(caster, cur)
        ext.register_type(ext.new_array_type((array_oid,), f"ALBACKUP_{name}[]", caster), cur)




# The server's text of timestamps (DateStyle ISO, TimeZone UTC) → the canonical ISO form, by
# slicing where the shape is the common one; anything else (short fractions, BC, infinity)
# goes through the general parser, which refuses what has no canonical form.
def _timestamp_text(v: Any) -> Any:
    if type(v) is str and (len(v) == 19 or len(v) == 26):
        return v[:10] + "T" + v[11:]
    return datetime_text(v, False)


def _timestamptz_text(v: Any) -> Any:
    if type(v) is str:
        n = len(v)
        if n == 22 and v[19:] == "+00":
            return v[:10] + "T" + v[11:19] + "+00:00"
        if n == 29 and v[26:] == "+00":
            return v[:10] + "T" + v[11:26] + "+00:00"
    return datetime_text(v, True)


def _time_text(v: Any) -> Any:
    if type(v) is str and (len(v) == 8 or len(v) == 15):
        return v
    return time_text(v)


def _own_settings_sql(version: tuple[int, ...]) -> str:
    """The select list of a relation ``c``'s own settings, read by _own_settings: UNLOGGED, its
    (and its TOAST table's) storage parameters, its replica identity (d: the default) with the
    index it uses, and the columns stored, compressed or sampled otherwise than their type's
    default."""
    return ("c.relpersistence = 'u', coalesce(c.reloptions, '{}') || ARRAY(SELECT 'toast.' || o FROM pg_class t, "
            "unnest(t.reloptions) o WHERE t.oid = c.reltoastrelid)"
            ", CASE c.relreplident WHEN 'f' THEN 'full' WHEN 'n' THEN 'nothing' WHEN 'i' THEN (SELECT i.relname "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid AND x.indisreplident) "
            "END"
            ", ARRAY(SELECT json_build_array(a.attname, nullif(a.attstorage, t.typstorage)::text, "
            + ("nullif(a.attcompression, '')::text" if version >= (14,) else "NULL")
            + ", nullif(a.attstattarget, -1))::text FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
              "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND (a.attstorage <> t.typstorage "
            + ("OR a.attcompression <> '' " if version >= (14,) else "")
            + "OR a.attstattarget <> -1) ORDER BY a.attnum)")


def _own_settings(unlogged: bool, storage: list[str] | None, replica: str | None,
                  columns: list[str] | None) -> dict[str, Any]:
    """_own_settings_sql's columns as table options (only those set)."""
    out: dict[str, Any] = {}
    if unlogged:
        out["postgresql_unlogged"] = True
    if storage:
        out["postgresql_storage"] = list(storage)
    if replica:
        out["postgresql_replica_identity"] = replica if replica in ("full", "nothing") else {"index": replica}
    for name, how, value in (("postgresql_column_storage", 1, _STORAGE),
                             ("postgresql_column_compression", 2, {"p": "pglz", "l": "lz4"}),
                             ("postgresql_column_statistics", 3, None)):
        got = {c[0]: c[how] if value is None else value[c[how]]
               for c in map(json.loads, columns or ()) if c[how] is not None}
        if got:
            out[name] = got
    return out


@register
class PostgreSQLAdapter(Adapter):
    name = "postgresql"
    dialect_names = ("postgresql",)
    max_identifier = 63
    # indexes (a key's too) are relations, unique per schema with the tables; constraints are
    # named per table, a key's among them
    name_spaces = {"index": (("relation", "schema"),), "key": (("relation", "schema"), ("constraint", "table")),
                   "foreign_key": (("constraint", "table"),), "check": (("constraint", "table"),)}
    table_name_space = "relation"
    identity_columns = True
    primary_key_after_load = True
    deferrable_constraints = True
    routines_before_tables = True
    not_valid_constraints = True
    indexes_list_primary_key = False

    supports_parallel_dump = True
    supports_parallel_restore = True

    def _read_transaction(self, conn: Connection, snapshot: Any = None) -> None:
        """REPEATABLE READ, READ ONLY (on an exported snapshot when given), in UTC, with ISO
        dates, the interval style the canonical interval text is written in, floats printed
        exactly and bytea in hex (pgtext.SETTINGS: COPY text chunks are printed so), without JIT
        and without parallel query."""
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if snapshot is not None:
            conn.exec_driver_sql("SET TRANSACTION SNAPSHOT %(s)s", {"s": snapshot})
        _text_settings(conn)     # the canonical text of dates, intervals; exact floats
        version = conn.dialect.server_version_info or (0,)
        if version >= (11,):
            # A whole big table's COPY (SELECT …) costs more than jit_above_cost: compiling it
            # took longer than it saved (a 5 M-row table: 8–10 % slower with JIT).
            conn.exec_driver_sql("SET LOCAL jit = off")
        # The dump's -j decides how many processes read. The only statements the server would
        # run in parallel are the short passes over a unit (_large_columns), where starting and
        # joining two helper processes tripled their CPU time for a third less wall time.
        if version >= (9, 6):
            conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")

    def begin_snapshot(self, conn: Connection) -> Snapshot:
        self._read_transaction(conn)
        return Snapshot("postgresql-repeatable-read", True,
                        "one REPEATABLE READ, READ ONLY transaction for reflection and every table")

    def export_snapshot(self, conn: Connection) -> Any:
        return conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()

    def join_snapshot(self, conn: Connection, token: Any) -> Snapshot:
        self._read_transaction(conn, token)
        return Snapshot("postgresql-exported-snapshot", True,
                        "workers share one REPEATABLE READ snapshot (pg_export_snapshot / SET TRANSACTION SNAPSHOT)")

    def key_compare(self, key: list[str], op: str, values: tuple[Any, ...]) -> tuple[str, list[Any]]:
        if len(key) == 1:
            return f"{self.q(key[0])} {op} %s", [values[0]]
        cols = ", ".join(self.q(k) for k in key)
        return f"({cols}) {op} ({', '.join(['%s'] * len(key))})", list(values)

    def key_bounds(self, conn: Connection, table: Table, key: list[str],
                   n: int) -> list[tuple[Any, ...]] | None:
        """From the histogram of the key's values that ANALYZE keeps (``pg_stats``): a one-column
        integer key of a plain table, whose statistics are fresh (rows changed since the last
        ANALYZE under a tenth of the estimate) and fine enough (at least two of its buckets per
        range). Each bucket holds about the same number of rows, sparse keys or not; a bound is
        a key value that was in the table, never one computed from others."""
        stats = self._key_stats(conn, table, key)
        if stats is None or not stats[0]:
            return None
        text, rows, _ = stats
        try:
            hist = [int(v) for v in text.strip("{}").split(",")]
        except ValueError:
            return None
        buckets = len(hist) - 1
        if buckets < 2 or any(a >= b for a, b in zip(hist, hist[1:])):
            return None
        step = round(n * buckets / rows)
        if step < 2:
            return None
        picks = list(range(step, buckets, step))
        if picks and buckets - picks[-1] < step // 4:
            picks.pop()         # under a quarter of a range after the last bound: joins the last range
        return [(hist[i],) for i in picks] or None

    def _key_stats(self, conn: Connection, table: Table, key: list[str]) -> tuple[str | None, int, float | None] | None:
        """(histogram bounds as text, rows, correlation) of a plain table's one-column ``key``
        from pg_stats, or None: no statistics, or stale ones (more than a tenth of the rows
        changed since the last ANALYZE)."""
        if len(key) != 1:
            return None
        row = conn.exec_driver_sql(
            """SELECT s.histogram_bounds::text, c.reltuples::bigint, u.n_mod_since_analyze, s.correlation
                 FROM pg_class c
                 JOIN pg_namespace ns ON ns.oid = c.relnamespace
                 JOIN pg_stats s ON s.schemaname = ns.nspname AND s.tablename = c.relname
                                AND s.attname = %(col)s AND NOT s.inherited
                 JOIN pg_stat_all_tables u ON u.relid = c.oid
                WHERE c.oid = to_regclass(%(t)s) AND c.relkind = 'r'""",
            {"t": self.qtable_value(table.name, table.schema), "col": key[0]}).first()
        if row is None or row[1] is None or row[1] <= 0 or row[2] is None or row[2] > row[1] // 10:
            return None
        return row[0], int(row[1]), row[3]

    def key_in_order(self, conn: Connection, table: Table, key: list[str]) -> bool:
        """The key's correlation with the physical order (pg_stats, fresh) is 0.9 or more: an
        index scan in key order reads the table's blocks about in order, as a range's COPY
        does without ``ORDER BY`` (the planner takes the index scan for both)."""
        stats = self._key_stats(conn, table, key)
        return stats is not None and stats[2] is not None and stats[2] >= 0.9

    def keyless_ranges(self, conn: Connection, table: Table, estimate: int,
                       chunk_rows: int) -> list[tuple[str, tuple[Any, ...] | None, dict[str, Any]]]:
        """Ranges of physical blocks (TID range scans, PostgreSQL 14+): rows need no key."""
        if int(conn.exec_driver_sql("SHOW server_version_num").scalar()) < 140000:
            return []
        blocks = conn.exec_driver_sql(
            "SELECT pg_relation_size(%(t)s::regclass) / current_setting('block_size')::int",
            {"t": self.qtable_value(table.name, table.schema)}).scalar() or 0
        parts = max(1, -(-estimate // chunk_rows))
        per = max(1, -(-int(blocks) // parts))
        out = []
        start = 0
        while start < blocks:
            end = start + per
            last = end >= blocks
            where = f" WHERE ctid >= '({start},0)'::tid" + ("" if last else f" AND ctid < '({end},0)'::tid")
            out.append((where, None, {"ctid_blocks": [start, None if last else end]}))
            start = end
        return out

    def server_version(self, conn: Connection) -> str:
        return str(conn.exec_driver_sql("SHOW server_version").scalar())

    def refine_column(self, col: Column, info: dict[str, Any], table: Table) -> None:
        if info.get("identity"):
            ident = info["identity"]
            col.identity = {"always": bool(ident.get("always")), "start": ident.get("start"),
                            "increment": ident.get("increment")}
            col.autoincrement = True
        m = _NEXTVAL.match(col.default or "")
        if m:
            col.sequence = m.group("seq").replace("''", "'")
            col.autoincrement = True

    def foreign_keys(self, conn: Connection, name: str, schema: str | None) -> list[dict[str, Any]] | None:
        """From pg_constraint (SQLAlchemy reads pg_get_constraintdef with a pattern that a name
        holding a line break defeats)."""
        actions = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
        out = []
        for cname, cols, rschema, rtable, rcols, upd, dele, deferrable, deferred in conn.exec_driver_sql(
                """SELECT k.conname,
                          ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                                JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
                          rn.nspname, r.relname,
                          ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
                                JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i),
                          k.confupdtype, k.confdeltype, k.condeferrable, k.condeferred
                     FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN pg_class r ON r.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
                    WHERE k.contype = 'f' AND c.relname = %(t)s AND n.nspname = coalesce(%(s)s, current_schema())
                    ORDER BY k.conname""", {"t": name, "s": schema}):
            opts = {k: v for k, v in (("onupdate", actions.get(upd)), ("ondelete", actions.get(dele))) if v}
            if deferrable:
                opts.update(deferrable=True, initially="DEFERRED" if deferred else "IMMEDIATE")
            out.append({"name": cname, "constrained_columns": list(cols), "referred_schema": rschema,
                        "referred_table": rtable, "referred_columns": list(rcols), "options": opts})
        return out

    def reflect_extras(self, conn: Connection, schema: Schema, schemas: list[str | None],
                       kinds: set[str]) -> None:
        super().reflect_extras(conn, schema, schemas, kinds)
        if "view" in kinds:
            insp0 = sa.inspect(conn)
            for s in schemas:
                # a materialized view's indexes (a unique one is what REFRESH … CONCURRENTLY
                # needs), made right after it: their definitions after the view's name
                indexes: dict[str, list[str]] = {}
                for view, iname, unique, rest in conn.exec_driver_sql(
                        f"""SELECT c.relname, i.relname, x.indisunique, {_INDEX_REST}
                              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                              JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class i ON i.oid = x.indexrelid
                             WHERE c.relkind = 'm' AND n.nspname = coalesce(%(s)s, current_schema())
                             ORDER BY 1, 2""", {"s": s}):
                    if rest is None:
                        raise UnreadObject(f"materialized view {self.qtable_value(view, s)}: the definition of its "
                                           f"index {self.qtable_value(iname, None)} could not be read")
                    # plain SQL text (create_routines doubles its '%'): names quoted as values are
                    indexes.setdefault(view, []).append(f"CREATE {'UNIQUE ' if unique else ''}INDEX "
                                                        f"{self.qtable_value(iname, None)} ON "
                                                        f"{self.qtable_value(view, s)} {rest}")
                empty = set(conn.exec_driver_sql(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind = 'm' AND NOT c.relispopulated AND n.nspname = coalesce(%(s)s, current_schema())",
                    {"s": s}).scalars())
                for v in insp0.get_materialized_view_names(schema=s):
                    d = insp0.get_view_definition(v, schema=s).strip().rstrip(";")
                    # made (and filled, unless it was never refreshed) after the data, with the
                    # views, then its indexes
                    schema.routines.append(Routine("view", v, ";\n".join(
                        [f"CREATE MATERIALIZED VIEW {self.qtable_value(v, s)} AS {d}"
                         + (" WITH NO DATA" if v in empty else ""), *indexes.get(v, ())]), s))
        schema.extensions = list(conn.exec_driver_sql(
            "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname").scalars())
        insp = sa.inspect(conn)
        names = [s or insp.default_schema_name for s in schemas]
        default = insp.default_schema_name
        for e in insp.get_enums(schema="*"):
            if e["schema"] in names:
                schema.enums.append(EnumType(e["name"], list(e["labels"]),
                                             None if e["schema"] == default else e["schema"]))
        # the underlying type as the server prints it (SQLAlchemy's drops a numeric's precision)
        spelled = dict(((n, t), f) for n, t, f in conn.exec_driver_sql(
            "SELECT n.nspname, t.typname, format_type(t.typbasetype, t.typtypmod) FROM pg_type t "
            "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype = 'd' AND n.nspname = ANY(%(names)s)",
            {"names": names}))
        for d in insp.get_domains(schema="*"):
            if d["schema"] in names:
                schema.domains.append(DomainType(
                    d["name"], spelled.get((d["schema"], d["name"])) or str(d["type"]),
                    None if d["schema"] == default else d["schema"],
                    bool(d.get("nullable", True)), None if d.get("default") is None else str(d["default"]),
                    [{"name": c.get("name"), "check": str(c["check"])} for c in d.get("constraints") or []],
                    d.get("collation")))
        rows = conn.exec_driver_sql(
            """
            SELECT s.schemaname, s.sequencename, s.start_value, s.increment_by, s.min_value,
                   s.max_value, s.cycle, s.last_value, s.data_type::text,
                   (SELECT d.deptype FROM pg_depend d WHERE d.objid = c.oid
                      AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                      LIMIT 1) AS deptype,
                   (SELECT t.relname || '.' || a.attname FROM pg_depend d
                      JOIN pg_class t ON t.oid = d.refobjid
                      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
                     WHERE d.objid = c.oid AND d.deptype = 'a' LIMIT 1) AS owner
              FROM pg_sequences s
              JOIN pg_namespace n ON n.nspname = s.schemaname
              JOIN pg_class c ON c.relname = s.sequencename AND c.relnamespace = n.oid
             WHERE s.schemaname = ANY(%(names)s)
            """, {"names": names}).fetchall()
        for r in rows:
            if r.deptype == "i":   # an identity column's own sequence: handled with the column
                continue
            schema.sequences.append(Sequence(
                r.sequencename, None if r.schemaname == default else r.schemaname, r.start_value,
                r.increment_by, r.min_value, r.max_value, bool(r.cycle),
                r.last_value if r.last_value is not None else r.start_value, r.last_value is not None,
                r.data_type, r.owner))
        if "trigger" in kinds:
            for r in conn.exec_driver_sql(
                    """SELECT n.nspname, t.tgname, c.relname, pg_get_triggerdef(t.oid)
                         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE NOT t.tgisinternal AND n.nspname = ANY(%(names)s)""", {"names": names}):
                schema.routines.append(Routine("trigger", r[1], r[3], None if r[0] == default else r[0], r[2]))
        if "routine" in kinds:
            for r in conn.exec_driver_sql(
                    """SELECT n.nspname, p.proname, pg_get_functiondef(p.oid), p.oid::regprocedure::text
                         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = ANY(%(names)s) AND p.prokind IN ('f', 'p')
                          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid
                                          AND d.classid = 'pg_proc'::regclass AND d.deptype IN ('e', 'i'))
                        ORDER BY 1 DESC, 2 DESC, 4 DESC""", {"names": names}):
                schema.routines.insert(0, Routine("routine", r[1], r[2], None if r[0] == default else r[0],
                                                  ident=r[3]))
            schema.routines[:0] = pg_objects.read_aggregates(conn, names, default)
            schema.routines += pg_objects.read_operators(conn, names, default)
        if kinds >= pg_objects.ALL_KINDS:
            schema.routines += pg_objects.read_comments(conn, names)
        self._reflect_objects(conn, schema, names, default, kinds)

    def _reflect_objects(self, conn: Connection, schema: Schema, names: list[str], default: str,
                         kinds: set[str]) -> None:
        """The schemas, composite and range types, index statistics, what each object needs made
        before it, and the catalogue a restore compares with (pg_objects)."""
        version = conn.dialect.server_version_info or (0,)
        schema.schemas = pg_objects.read_schemas(conn, names, default)
        schema.types = pg_objects.read_types(conn, names, default, version)
        pg_objects.read_index_statistics(conn, names, schema, default)
        schema.depends = pg_objects.read_depends(conn)
        schema.catalogue = pg_objects.dumped_catalogue(pg_objects.read_catalogue(conn, names), schema, kinds)

    def user_schemas(self, conn: Connection) -> list[str] | None:
        """Every schema but pg_catalog, information_schema, pg_toast* and pg_temp* (as pg_dump),
        and those an extension made."""
        return list(conn.exec_driver_sql(
            f"SELECT n.nspname FROM pg_namespace n WHERE {_USER_NS} AND "
            f"{_NOT_EXT.format(cat='pg_namespace', oid='n.oid')} ORDER BY 1").scalars())

    def partition_children(self, conn: Connection, schema: str | None) -> dict[str, str]:
        """Every partition (at any depth) of a partitioned table in ``schema``: a SELECT of the
        partitioned table at the top reads their rows, so the backup holds them there once."""
        if (conn.dialect.server_version_info or (0,)) < (10,):
            return {}
        rows = conn.exec_driver_sql(
            """WITH RECURSIVE up AS (
                   SELECT c.oid AS child, i.inhparent AS parent FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN pg_inherits i ON i.inhrelid = c.oid
                    WHERE c.relispartition AND n.nspname = coalesce(%(s)s, current_schema())
                   UNION ALL
                   SELECT up.child, i.inhparent FROM up JOIN pg_class p ON p.oid = up.parent AND p.relispartition
                     JOIN pg_inherits i ON i.inhrelid = up.parent)
               SELECT c.relname, pn.nspname, p.relname FROM up
                 JOIN pg_class c ON c.oid = up.child
                 JOIN pg_class p ON p.oid = up.parent AND NOT p.relispartition
                 JOIN pg_namespace pn ON pn.oid = p.relnamespace""", {"s": schema}).all()
        default = conn.exec_driver_sql("SELECT current_schema()").scalar()
        return {child: (parent if pschema == default else f"{pschema}.{parent}") for child, pschema, parent in rows}

    def read_from(self, table: Table) -> str:
        return ("ONLY " if table.inherited else "") + self.qtable(table.name, table.schema)

    def refine_table(self, table: Table, conn: Connection) -> None:
        """Whether other tables inherit from it (its own rows are then read with ONLY, as the
        inheriting tables are backed up as tables of their own); its EXCLUDE constraints; a
        partitioned table's partition key and partitions (PostgreSQL 12 and later, whose
        pg_partition_tree lists them), parents first."""
        version = conn.dialect.server_version_info or (0,)
        partitions = version >= (10,)       # relispartition, pg_get_partkeydef
        # one query for all of it (it runs for every table of the dump)
        oid, inherited, not_valid, excl_names, excl_defs, partition_by, unlogged, storage, replica, columns = \
            conn.exec_driver_sql(
            "SELECT c.oid, EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid "
            "                      WHERE i.inhparent = c.oid" + (" AND NOT k.relispartition)" if partitions else ")")
            + ", ARRAY(SELECT conname::text FROM pg_constraint WHERE conrelid = c.oid AND contype IN ('c', 'f') "
            "          AND NOT convalidated)"
            ", ARRAY(SELECT conname::text FROM pg_constraint WHERE conrelid = c.oid AND contype = 'x' ORDER BY conname)"
            ", ARRAY(SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = c.oid AND contype = 'x' "
            "        ORDER BY conname)"
            + (", CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END" if partitions else ", NULL")
            + ", " + _own_settings_sql(version)
            + " FROM pg_class c WHERE c.oid = to_regclass(%(t)s)",
            {"t": self.qtable_value(table.name, table.schema)}).one()
        table.inherited = bool(inherited)
        table.options.update(_own_settings(unlogged, storage, replica, columns))
        unknown = [c for c in table.columns if c.type.kind == "native" and c.original_type == "NULL"]
        if unknown:     # a type SQLAlchemy does not know (pg_lsn, an extension's): as the server names it
            named = dict(conn.exec_driver_sql(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %(o)s "
                "AND attnum > 0 AND NOT attisdropped", {"o": oid}).all())
            for c in unknown:
                if named.get(c.name):
                    c.original_type = named[c.name]
                    c.type = LogicalType("native", native=c.original_type)
        for c in table.checks:
            c.not_valid = c.name in not_valid
        for f in table.foreign_keys:
            f.not_valid = f.name in not_valid
        table.native_constraints = [{"name": n, "sql": d} for n, d in zip(excl_names, excl_defs)]
        if partition_by is None or version < (12,):     # pg_partition_tree: 12 and later
            return
        table.partition_by = partition_by
        default = conn.exec_driver_sql("SELECT current_schema()").scalar()

        def key(schema: str, name: str) -> str:
            return name if schema == default else f"{schema}.{name}"

        for name, schema, pname, pschema, bound, sub, *settings, not_null in conn.exec_driver_sql(
                f"""SELECT c.relname, n.nspname, pc.relname, pn.nspname, pg_get_expr(c.relpartbound, c.oid),
                          CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, {_own_settings_sql(version)},
                          ARRAY(SELECT a.attname::text FROM pg_attribute a JOIN pg_attribute pa
                                    ON pa.attrelid = t.parentrelid AND pa.attname = a.attname
                                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                   AND a.attnotnull AND NOT pa.attnotnull ORDER BY a.attnum)
                     FROM pg_partition_tree(%(o)s) t
                     JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN pg_class pc ON pc.oid = t.parentrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                    WHERE t.level > 0 ORDER BY t.level, c.relname""", {"o": oid}):
            entry = {"name": name, "schema": None if schema == default else schema,
                     "parent": key(pschema, pname), "bound": bound, "partition_by": sub}
            # its own UNLOGGED, storage parameters (fillfactor, autovacuum settings, …), replica
            # identity and column settings, and the columns NOT NULL on it alone
            p_options = _own_settings(*settings)
            if not_null:
                p_options["postgresql_column_not_null"] = list(not_null)
            if p_options:
                entry["options"] = p_options
            table.partition_tree.append(entry)
        # What a partition has of its own (made on it alone, not through the partitioned table):
        # indexes not attached to one of the parent's and not a constraint's, as their definition
        # after the table (``USING btree (b) WHERE …``); and constraints it does not inherit.
        own: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for name, schema, kind, oname, unique, sql in conn.exec_driver_sql(
                f"""SELECT c.relname, n.nspname, 'indexes', i.relname, x.indisunique, {_INDEX_REST}
                     FROM pg_partition_tree(%(o)s) t
                     JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class i ON i.oid = x.indexrelid
                    WHERE t.level > 0
                      AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = x.indexrelid)
                      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid
                                                                      AND k.conrelid = c.oid)
                   UNION ALL
                   SELECT c.relname, n.nspname, 'constraints', k.conname, NULL, pg_get_constraintdef(k.oid)
                     FROM pg_partition_tree(%(o)s) t
                     JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN pg_constraint k ON k.conrelid = c.oid
                    WHERE t.level > 0 AND k.contype IN ('p', 'u', 'c', 'x') AND k.coninhcount = 0
                    ORDER BY 3, 4""", {"o": oid}):
            entry: dict[str, Any] = {"name": oname, "sql": sql}
            if kind == "indexes":
                entry["unique"] = bool(unique)
            own.setdefault(key(schema, name), {}).setdefault(kind, []).append(entry)
        for p in table.partition_tree:
            p.update(own.get(key(p["schema"] or default, p["name"]), {}))

    def table_options(self, table: Table) -> dict[str, Any]:
        return {"postgresql_partition_by": table.partition_by} if table.partition_by else {}

    #: UNLOGGED, storage parameters (``fillfactor=70``, ``toast.autovacuum_enabled=false``), the
    #: replica identity, and columns' STORAGE, COMPRESSION and STATISTICS where they are not
    #: their type's default
    kept_table_options = frozenset({"postgresql_unlogged", "postgresql_storage", "postgresql_replica_identity",
                                    "postgresql_column_storage", "postgresql_column_compression",
                                    "postgresql_column_statistics"})
    table_options_by_sql = kept_table_options

    def _partitions(self, table: Table, schema: str | None) -> list[tuple[dict[str, Any], Table, str]]:
        """Each partition of ``table`` (parents first), as a Table holding its own options, and its
        qualified name where the restore makes it: in ``schema`` unless it was in one of its own."""
        return [(p, Table(p["name"], p["schema"], options=p.get("options") or {}),
                 self.qtable(p["name"], p["schema"] if p["schema"] is not None else schema))
                for p in table.partition_tree]

    def table_last_sql(self, table: Table, name: str, schema: str | None) -> list[tuple[str, str]]:
        out = []
        # a partition's too: its index (its own, or the one its parent's made on it) is built by then
        for t, qualified in [(table, self.qtable(name, schema))] + [(pt, mine) for _, pt, mine
                                                                     in self._partitions(table, schema)]:
            ri = t.options.get("postgresql_replica_identity")
            if isinstance(ri, dict) and ri.get("index"):
                out.append((f"table {t.key}: replica identity using index {ri['index']}",
                            f"ALTER TABLE {qualified} REPLICA IDENTITY USING INDEX {self.q(ri['index'])}"))
        for index, columns in (table.options.get("postgresql_index_statistics") or {}).items():
            alter = ", ".join(f"ALTER COLUMN {int(n)} SET STATISTICS {int(v)}" for n, v in columns.items())
            out.append((f"table {table.key}: statistics of index {index}",
                        f"ALTER INDEX {self.qtable(index, schema)} {alter}"))
        return out

    def table_option_sql(self, table: Table, qualified: str) -> list[str]:
        out = []
        ri = table.options.get("postgresql_replica_identity")
        if ri in ("full", "nothing"):
            out.append(f"ALTER TABLE {qualified} REPLICA IDENTITY {ri.upper()}")
        alter = []
        for c, how in (table.options.get("postgresql_column_storage") or {}).items():
            if how in _STORAGE.values():
                alter.append(f"ALTER COLUMN {self.q(c)} SET STORAGE {how.upper()}")
        for c, how in (table.options.get("postgresql_column_compression") or {}).items():
            if how in ("pglz", "lz4"):
                alter.append(f"ALTER COLUMN {self.q(c)} SET COMPRESSION {how}")
        for c, n in (table.options.get("postgresql_column_statistics") or {}).items():
            alter.append(f"ALTER COLUMN {self.q(c)} SET STATISTICS {int(n)}")
        for c in table.options.get("postgresql_column_not_null") or ():     # a partition's own
            alter.append(f"ALTER COLUMN {self.q(c)} SET NOT NULL")
        if alter:
            out.append(f"ALTER TABLE {qualified} {', '.join(alter)}")
        if table.options.get("postgresql_unlogged"):
            out.append(f"ALTER TABLE {qualified} SET UNLOGGED")     # still empty: nothing rewritten
        params = []
        for p in table.options.get("postgresql_storage") or ():
            k, _, v = str(p).partition("=")
            if not re.fullmatch(r"(toast\.)?[a-z_][a-z0-9_]*", k):
                raise RestoreError(f"table {table.key}: storage parameter {p!r} is not one PostgreSQL names")
            params.append(f"{k} = " + self.literal_sql("'" + v.replace("'", "''") + "'"))
        if params:
            out.append(f"ALTER TABLE {qualified} SET ({', '.join(params)})")
        return out

    def partition_sql(self, table: Table, name: str, schema: str | None) -> list[str]:
        """``CREATE TABLE … PARTITION OF …`` for each partition, parents first, into ``schema``
        (where the table is restored) unless it was in a schema of its own."""
        where = {table.key: self.qtable(name, schema)}
        out = []
        for p, own, mine in self._partitions(table, schema):
            where[own.key] = mine
            out.append(f"CREATE TABLE {mine} PARTITION OF {where[p['parent']]} {self.literal_sql(p['bound'])}"
                       + (f" PARTITION BY {self.literal_sql(p['partition_by'])}" if p.get("partition_by") else ""))
            # its own options (as a table's), constraints and indexes, before the load (so the
            # partitioned table's indexes, built after it, name theirs around them as the source's did)
            out += self.table_option_sql(own, mine)
            out += [f"ALTER TABLE {mine} ADD CONSTRAINT {self.q(c['name'])} {self.literal_sql(c['sql'])}"
                    for c in p.get("constraints") or ()]
            out += [f"CREATE {'UNIQUE ' if ix.get('unique') else ''}INDEX {self.q(ix['name'])} ON {mine} "
                    f"{self.literal_sql(ix['sql'])}" for ix in p.get("indexes") or () if ix.get("sql")]
        return out

    def _partition_sum(self, conn: Connection, table: Table, per_relation: str) -> Any:
        """``per_relation`` (SQL over the oid ``r``) summed over the table, or over the leaf
        partitions of a partitioned table (which has no rows of its own)."""
        return conn.exec_driver_sql(
            f"""SELECT CASE WHEN c.relkind = 'p' THEN
                          (SELECT sum(x) FROM (SELECT (SELECT {per_relation} FROM (SELECT t.relid AS r) q) AS x
                                               FROM pg_partition_tree(c.oid) t WHERE t.isleaf) s)
                       ELSE (SELECT {per_relation} FROM (SELECT c.oid AS r) q) END
                  FROM pg_class c WHERE c.oid = to_regclass(%(t)s)""",
            {"t": self.qtable_value(table.name, table.schema)}).scalar()

    def estimate_rows(self, conn: Connection, table: Table) -> int | None:
        if (conn.dialect.server_version_info or (0,)) < (12,):       # no pg_partition_tree
            n = conn.exec_driver_sql("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%(t)s)",
                                     {"t": self.qtable_value(table.name, table.schema)}).scalar()
        else:
            n = self._partition_sum(conn, table, "(SELECT reltuples::bigint FROM pg_class WHERE oid = r)")
        return int(n) if n is not None and n >= 0 else None

    def estimate_bytes(self, conn: Connection, table: Table) -> int | None:
        if (conn.dialect.server_version_info or (0,)) < (12,):
            n = conn.exec_driver_sql("SELECT pg_table_size(to_regclass(%(t)s))",          # heap + TOAST
                                     {"t": self.qtable_value(table.name, table.schema)}).scalar()
        else:
            n = self._partition_sum(conn, table, "pg_table_size(r)")
        return int(n) if n is not None else None

    passthrough_kinds = frozenset({"integer", "boolean", "float", "string", "text", "enum", "interval", "json",
                                   "decimal", "uuid", "char", "binary"})
    # binary: psycopg2's memoryview packs as msgpack bin exactly as bytes would (no extra copy);
    # everything that reads through stream() packs or hashes rows, never keeps them

    def select_sql(self, table: Table) -> str:
        # char(n) → text drops the blank padding on the server (the canonical form has none)
        cols = ", ".join(_select_column(self.q(c.name), c.type) for c in table.columns)
        return f"SELECT {cols} FROM {self.read_from(table)}"

    def reader(self, t: LogicalType) -> Converter:
        if t.kind == "date":
            # the C parser refuses 'infinity', BC dates and years past 9999
            return with_inline(lambda v: None if v is None else server_date_text(v), ISO_DATE_INLINE)
        if t.kind == "datetime" and t.timezone:
            return lambda v: None if v is None else _timestamptz_text(v)
        if t.kind == "datetime":
            return with_inline(lambda v: None if v is None else _timestamp_text(v),
                               "({x}[:10] + 'T' + {x}[11:] if {x}.__class__ is str and "
                               "(len({x}) == 19 or len({x}) == 26) else {f}({x}))")
        if t.kind == "time" and not t.timezone:
            return lambda v: None if v is None else _time_text(v)
        return super().reader(t)

    #: large values (codec.LARGE_BYTES and more) are read and loaded piece by piece
    streams_large_values = True

    def _large_capable(self, table: Table) -> list[int]:
        out = []
        for i, c in enumerate(table.columns):
            k, n = c.type.kind, c.type.length
            if k in ("binary", "text") or (k == "string" and (n is None or n * 4 > LARGE_BYTES)):
                out.append(i)
        return out

    def _large_tests(self, table: Table, columns: list[int]) -> list[str]:
        """A condition per column of ``columns`` (indexes): its value is over LARGE_BYTES (the
        length PostgreSQL knows without reading the value)."""
        return [f"octet_length({self.q(table.columns[i].name)}) > {LARGE_BYTES}" for i in columns]

    def _large_columns(self, conn: Connection, table: Table, where: str, params: Any,
                       more: list[str] | None = None) -> list[int]:
        """The columns of ``table`` (within ``where``) that hold a value over LARGE_BYTES: one
        pass over the value lengths, which PostgreSQL knows without reading the values. Each of
        ``more`` (conditions on a row) found true in the same pass counts as one more (-1)."""
        cand = self._large_capable(table)
        tests = self._large_tests(table, cand) + list(more or ())
        if not tests:
            return []
        qt = self.read_from(table)
        any_test = " OR ".join(f"({t})" for t in tests)
        cur = self.dbapi(conn).cursor()
        try:
            # Nearly always nothing is found: a scan that stops at the first row that matches
            # answers that for about 3/4 of the cost of the pass per column, which then runs
            # only when something was found.
            self.execute_where(cur, f"SELECT 1 FROM {qt}",
                               f"{where} {'AND' if where else 'WHERE'} ({any_test}) LIMIT 1", params)
            if cur.fetchone() is None:
                return []
            checks = ", ".join(f"coalesce(bool_or({t}), false)" for t in tests)
            self.execute_where(cur, f"SELECT {checks} FROM {qt}", where, params)
            flags = cur.fetchone()
        finally:
            cur.close()
        return [i for i, f in zip(cand + [-1] * len(more or ()), flags or ()) if f]

    def stream(self, conn: Connection, table: Table, batch_rows: int, where: str = "",
               params: Any = None, large_values: bool = True) -> Iterator[list[Any]]:
        big = self._large_columns(conn, table, where, params) if large_values else []
        if big:
            yield from self._stream_large(conn, table, batch_rows, where, params, big)
            return
        cur = self.dbapi(conn).cursor(name=f"albackup_{abs(hash(table.key))}")
        cur.itersize = batch_rows
        _register_text_casters(cur)
        try:
            self.execute_where(cur, self.select_sql(table), where, params)
            sizes: list[int] = []
            yield from prefetched(fetch_batches(cur, batch_rows, sizes=sizes), sizes=sizes)
        finally:
            cur.close()

    def _date_checks(self, table: Table) -> list[str]:
        """A condition per date or timestamp column: a value without a canonical form (BC,
        infinite, past 9999; the cursor path refuses those, naming the column)."""
        checks = []
        for c in table.columns:
            q = self.q(c.name)
            if c.type.kind == "date":
                checks.append(f"{q} < '0001-01-01' OR {q} > '9999-12-31'")
            elif c.type.kind == "datetime":
                checks.append(f"{q} < '0001-01-01' OR {q} >= '10000-01-01'")
        return checks

    def copy_text_ok(self, conn: Connection, table: Table, where: str = "", params: Any = None,
                     scan: bool = True) -> bool:
        """Every column of a kind whose COPY text pgtext decodes, a UTF-8 connection, no value
        over LARGE_BYTES in this unit (COPY hands over whole rows; large ones are read in pieces)
        and no date or timestamp without a canonical form. One pass over the unit answers the
        last two (``scan``)."""
        if not table.columns or not all(pgtext.text_kind(c.type) for c in table.columns):
            return False
        if self.dbapi(conn).encoding != "UTF8":
            return False
        return not scan or not self._large_columns(conn, table, where, params, self._date_checks(table))

    def copy_text(self, conn: Connection, table: Table, where: str, params: Any,
                  on_frame: Any, guard: bool = False, order_by: list[str] | None = None) -> int:
        """With ``guard``, the pass of copy_text_ok is the COPY itself: a row it would have found
        makes the server raise an error naming GUARD (a cast that cannot succeed, reached only
        in that row's CASE branch) before the row is sent; the COPY runs inside a savepoint, so
        the snapshot's transaction goes on (pgtext.CopyTextRefused)."""
        cols = ", ".join(self.q(c.name) for c in table.columns)
        select = f"SELECT {cols} FROM {self.read_from(table)}"
        tests = (self._large_tests(table, self._large_capable(table)) + self._date_checks(table)) if guard else []
        if tests:
            # not a constant (pg_backend_pid is STABLE), so the planner does not fold the cast
            where += (f" {'AND' if where else 'WHERE'} (CASE WHEN {' OR '.join(f'({t})' for t in tests)} "
                      f"THEN ('{pgtext.GUARD} ' || pg_backend_pid()::text)::int = 0 ELSE true END)")
        if order_by:
            where += " ORDER BY " + ", ".join(self.q(k) for k in order_by)
        cur = self.dbapi(conn).cursor()
        try:
            if not tests:
                pgtext.copy_out(cur, f"COPY ({select}{where}) TO STDOUT", on_frame, params)
                return int(cur.rowcount)
            cur.execute("SAVEPOINT albackup_copy")
            try:
                pgtext.copy_out(cur, f"COPY ({select}{where}) TO STDOUT", on_frame, params)
            except conn.dialect.loaded_dbapi.Error as exc:
                if pgtext.GUARD not in str(exc):
                    raise
                cur.execute("ROLLBACK TO SAVEPOINT albackup_copy")
                raise pgtext.CopyTextRefused(table.key) from None
            rows = int(cur.rowcount)
            cur.execute("RELEASE SAVEPOINT albackup_copy")
            return rows
        finally:
            cur.close()

    def _stream_large(self, conn: Connection, table: Table, batch_rows: int, where: str, params: Any,
                      big: list[int]) -> Iterator[list[Any]]:
        """Rows in which each value over LARGE_BYTES of the ``big`` columns is left out and
        replaced by a _PgLarge that reads it in pieces (by ctid, in the same snapshot)."""
        qt = self.read_from(table)
        cols = []
        for i, c in enumerate(table.columns):
            q = self.q(c.name)
            if i in big:
                cols.append(f"CASE WHEN octet_length({q}) > {LARGE_BYTES} THEN NULL ELSE {q} END")
            else:
                cols.append(_select_column(q, c.type))
        cols += [f"octet_length({self.q(table.columns[i].name)})" for i in big] + ["ctid"]
        sql = f"SELECT {', '.join(cols)} FROM {qt}"
        n = len(table.columns)
        raw = self.dbapi(conn)
        cur = raw.cursor(name=f"albackup_large_{abs(hash(table.key))}")
        _register_text_casters(cur)
        try:
            self.execute_where(cur, sql, where, params)
            for batch in fetch_batches(cur, batch_rows):
                out = []
                for r in batch:
                    row = list(r[:n])
                    for j, i in enumerate(big):
                        length = r[n + j]
                        if length is not None and length > LARGE_BYTES:
                            kind = 0 if table.columns[i].type.kind == "binary" else 1
                            row[i] = _PgLarge(raw, qt, self.q(table.columns[i].name), r[-1], kind, int(length))
                    out.append(row)
                yield out
        finally:
            cur.close()

    # ------------------------------------------------------------------ restore
    def target_type(self, col: Column, key_chars: int | None) -> tuple[LogicalType, sat.TypeEngine]:
        t = col.type
        k = t.kind
        if k == "integer":
            bits, uns = t.bits or 64, t.unsigned
            if uns:
                bits = {16: 32, 32: 64, 64: 0}[bits]
            if bits == 0:
                return LogicalType("decimal", precision=20, scale=0), sa.NUMERIC(20, 0)
            typ = {16: sa.SMALLINT(), 32: sa.INTEGER(), 64: sa.BIGINT()}[bits]
            return LogicalType("integer", bits=bits), typ
        if k == "decimal":
            if t.precision and t.precision <= 1000:
                return t, sa.NUMERIC(t.precision, t.scale)
            return LogicalType("decimal"), sa.NUMERIC()
        if k == "float":
            return t, (pg.REAL() if t.bits == 32 else pg.DOUBLE_PRECISION())
        if k == "boolean":
            return t, sa.BOOLEAN()
        if k == "string":
            return t, sa.VARCHAR(t.length) if t.length and t.length <= 10485760 else sa.TEXT()
        if k == "char":
            return t, sa.CHAR(t.length)
        if k == "text":
            return t, sa.TEXT()
        if k == "binary":
            return LogicalType("binary"), pg.BYTEA()
        if k == "date":
            return t, sa.DATE()
        if k == "time":
            p = min(t.precision if t.precision is not None else 6, 6)
            return LogicalType("time", precision=p, timezone=t.timezone), pg.TIME(timezone=t.timezone, precision=p)
        if k == "datetime":
            p = min(t.precision if t.precision is not None else 6, 6)
            return (LogicalType("datetime", precision=p, timezone=t.timezone),
                    pg.TIMESTAMP(timezone=t.timezone, precision=p))
        if k == "interval":
            return t, pg.INTERVAL()
        if k == "uuid":
            return t, pg.UUID(as_uuid=False)
        if k == "json":
            # json keeps the text as the source held it; jsonb would rewrite it (key order,
            # duplicate keys, spacing, number spelling) and the read-back could not compare lines
            return t, pg.JSON()
        if k == "enum":
            return t, pg.ENUM(*(t.values or ()), name=self._enum_name(col), create_type=False)
        if k == "array":
            item_t, item_sa = self.target_type(Column(col.name, t.item or LogicalType("text"), ""), None)
            return LogicalType("array", item=item_t), pg.ARRAY(item_sa)
        return LogicalType("text"), sa.TEXT()

    def _enum_name(self, col: Column) -> str:
        return f"{col.name}_enum"[: self.max_identifier]

    def add_losses(self, move: ColumnMove, src: LogicalType) -> None:
        if move.target.kind in ("string", "text", "char", "json"):
            base = move.convert
            move.convert = (_strip_nul if base is _ident
                            else lambda v: base(v).replace("\x00", "") if isinstance(v, str) else base(v))
            move.losses.append(Loss("PostgreSQL text cannot hold NUL characters (removed)",
                                    lambda v: isinstance(v, str) and "\x00" in v, _no_nul, base,
                                    lambda v: v.kind == 1 and any(b"\x00" in p for p in v.pieces())))

    def writer(self, t: LogicalType) -> Converter:
        return copy_text_writer(t)

    def exact_type(self, col: Column) -> sat.TypeEngine:
        return Verbatim(col.original_type, sa.Integer if col.type.kind == "integer" else None)

    def server_default(self, col: Column, same_engine: bool) -> str | None:
        if not same_engine and col.autoincrement:
            return None
        if same_engine and col.identity:
            return None
        return super().server_default(col, same_engine)

    def prepare(self, conn: Connection, schema: Schema, tables: list[Table], same_engine: bool) -> None:
        """The schemas (with their comments) and extensions; the other objects are made in
        dependency order (ordered_steps). From another engine: the enum types its columns use."""
        comments = {s["name"]: s.get("comment") for s in schema.schemas} if same_engine else {}
        for s in sorted({t.schema for t in tables if t.schema} | set(comments)):
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {self.q(s)}")
            if comments.get(s):
                conn.exec_driver_sql(f"COMMENT ON SCHEMA {self.q(s)} IS "
                                     + self.literal_sql("'" + comments[s].replace("'", "''") + "'"))
        if same_engine:
            for name in schema.extensions:
                # the types, operator classes and functions the tables may use; where one cannot
                # be made (not installed on this server, no privilege), whatever needs it fails
                # on its own, naming itself
                try:
                    with conn.begin_nested():
                        conn.exec_driver_sql(f"CREATE EXTENSION IF NOT EXISTS {self.q(name)}")
                except sa.exc.DBAPIError as exc:
                    log.warning("extension %s could not be created: %s", name,
                                str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else exc)
            return
        for t in tables:
            for c in t.columns:
                if c.type.kind == "enum":
                    name = self._enum_name(c)
                    exists = conn.exec_driver_sql(
                        "SELECT 1 FROM pg_type WHERE typname = %(n)s", {"n": name}).first()
                    if not exists:
                        labels = ", ".join("'" + self.literal_sql(v.replace("'", "''")) + "'" for v in c.type.values or ())
                        conn.exec_driver_sql(f"CREATE TYPE {self.q(name)} AS ENUM ({labels})")

    orders_objects = True

    def ordered_steps(self, schema: Schema, plans: list[Any], routines: bool
                      ) -> tuple[list[Step], list[Step]]:
        """Every object of a same-engine restore in one dependency order (pg_objects), as the
        steps made before the load (types, sequences, routines, tables, views, operators) and
        those made after it (triggers, materialized views, and what needs them)."""
        keys = {tp.table.key for tp in plans}
        everything = len(plans) == len(schema.tables)
        needed = {c.sequence for tp in plans for c in tp.table.columns if c.sequence}
        steps: dict[str, Step] = {}

        def add(node: str, label: str, what: Any, exists: tuple[str, str | None] | None = None) -> None:
            steps.setdefault(node, Step(node, label, what, exists))

        for e in schema.enums:
            add(pg_objects.node_of("enum", e), f"type {e.name}", self._enum_sql(e), (e.name, e.schema))
        for d in schema.domains:
            add(pg_objects.node_of("domain", d), f"domain {d.name}", self._domain_sql(d), (d.name, d.schema))
        for t in schema.types:
            add(pg_objects.node_of("type", Routine("type", t["name"], "", t.get("schema"))), f"type {t['name']}",
                self.literal_sql(t["sql"]), (t["name"], t.get("schema")))
        for q in schema.sequences:
            if everything or q.name in needed or self.qtable(q.name, q.schema) in needed:
                add(pg_objects.node_of("sequence", q), f"sequence {q.name}", self._sequence_sql(q))
        wanted = [r for r in schema.routines if routines and (r.table is None or r.table in
                                                              {tp.table.name for tp in plans})]
        for r in wanted:
            if r.kind == "routine":
                add(pg_objects.node_of(r.kind, r), f"{r.kind} {r.name}", self.literal_sql(r.sql))
        for tp in plans:
            add(f"table:{tp.table.key}", f"table {tp.table.key}", tp)
        for kind in ("view", "operator", "trigger"):
            for r in wanted:
                if r.kind == kind:
                    add(pg_objects.node_of(r.kind, r), f"{r.kind} {r.name}", self.literal_sql(r.sql))
        early, late = self._in_order(steps, schema.depends, keys)
        # comments last, on whatever they are on (an index, a constraint, a trigger)
        return early, late + [Step(f"comment:{r.name}", f"comment on {r.name}", self.literal_sql(r.sql))
                              for r in wanted if r.kind == "comment"]

    def _in_order(self, steps: dict[str, Step], depends: dict[str, list[str]],
                  keys: set[str]) -> tuple[list[Step], list[Step]]:
        """``steps`` sorted by what they need; a cycle through a table's column defaults is
        broken as pg_dump breaks it: the table is made without the defaults that call a routine
        of the cycle, set once the routines are there. Any other cycle fails, naming it."""
        nodes = list(steps)
        order, cycles = pg_objects.creation_order(nodes, depends)
        deferred: list[Step] = []
        if cycles:
            left = set(cycles[0])
            cut = {n: [d for d in depends.get(n, ()) if not (n.startswith("table:") and d in left
                                                              and d.startswith("routine:"))] for n in depends}
            order, cycles = pg_objects.creation_order(nodes, cut)
            if cycles:
                raise RestoreError("objects that need each other cannot be made in any order: "
                                   + ", ".join(sorted(cycles[0])[:6]))
            for n in sorted(left):
                if n.startswith("table:") and any(d in left for d in depends.get(n, ())):
                    steps[n].defaults_later = True
                    deferred.append(Step(n + "#defaults", f"column defaults of {n[6:]}", steps[n].what))
        # a backup that does not say what needs what (older than the dependencies): views after
        # the load too, as they were then
        late = pg_objects.late_nodes(order, depends, lambda n: n.startswith("trigger:") or (
            n.startswith("view:") and isinstance(steps[n].what, str)
            and (not depends or steps[n].what.lstrip().upper().startswith("CREATE MATERIALIZED"))))
        early = [steps[n] for n in order if n not in late]
        return early + deferred, [steps[n] for n in order if n in late]

    def _enum_sql(self, e: EnumType) -> str:
        labels = ", ".join("'" + self.literal_sql(v.replace("'", "''")) + "'" for v in e.values)
        return f"CREATE TYPE {self.qtable(e.name, e.schema)} AS ENUM ({labels})"

    def _sequence_sql(self, s: Sequence) -> str:
        parts = [f"CREATE SEQUENCE IF NOT EXISTS {self.qtable(s.name, s.schema)}"]
        if s.data_type:
            parts.append(f"AS {s.data_type}")
        for kw, v in (("INCREMENT BY", s.increment), ("MINVALUE", s.min_value),
                      ("MAXVALUE", s.max_value), ("START WITH", s.start)):
            if v is not None:
                parts.append(f"{kw} {int(v)}")
        parts.append("CYCLE" if s.cycle else "NO CYCLE")
        return " ".join(parts)

    def type_exists(self, conn: Connection, name: str, schema: str | None) -> bool:
        return _type_exists(conn, name, schema)

    def defer_routine_checks(self, conn: Connection) -> None:
        conn.exec_driver_sql("SET LOCAL check_function_bodies = false")     # as pg_dump's output does

    def _domain_sql(self, d: DomainType) -> str:
        sql = [f"CREATE DOMAIN {self.qtable(d.name, d.schema)} AS {self.literal_sql(d.type)}"]
        if d.collation:
            sql.append(f"COLLATE {self.q(d.collation)}")
        if d.default is not None:
            sql.append(f"DEFAULT {self.literal_sql(d.default)}")
        if not d.nullable:
            sql.append("NOT NULL")
        for c in d.checks:
            sql.append((f"CONSTRAINT {self.q(c['name'])} " if c.get("name") else "")
                       + f"CHECK ({self.literal_sql(c['check'])})")
        return " ".join(sql)

    def check_catalogue(self, conn: Connection, schema: Schema, keys: set[str], routines: bool,
                        unchecked_keys: bool = False) -> list[str]:
        """The target's catalogue of what the restore made against the backup's (pg_objects):
        what is missing or differs, one line each (nothing for a backup without a catalogue)."""
        if not schema.catalogue:
            return []
        names = sorted({r[1] for r in schema.catalogue if r[0] == "schema"}
                       | {conn.exec_driver_sql("SELECT current_schema()").scalar()})
        want = pg_objects.wanted_catalogue(schema.catalogue, keys, routines, len(keys) == len(schema.tables))
        return pg_objects.compare_catalogue(want, pg_objects.read_catalogue(conn, names), unchecked_keys)

    def after_create(self, conn: Connection, tables: list[Table], same_engine: bool, schema: Schema) -> None:
        if not same_engine:
            return
        for s in schema.sequences:
            if not s.owned_by and s.last_value is not None:
                conn.exec_driver_sql("SELECT setval(%(s)s, %(v)s, %(c)s)",
                                     {"s": self.qtable_value(s.name, s.schema), "v": int(s.last_value), "c": s.is_called})
        keys = {t.name for t in tables}
        for s in schema.sequences:
            if s.owned_by and s.owned_by.split(".")[0] in keys:
                tname, cname = s.owned_by.split(".", 1)
                conn.exec_driver_sql(
                    f"ALTER SEQUENCE {self.qtable(s.name, s.schema)} OWNED BY "
                    f"{self.qtable(tname, s.schema)}.{self.q(cname)}")

    def load(self, conn: Connection, table: Table, columns: list[str], writers: list[Converter],
             batches: Iterator[list[list[Any]]], identity: bool, echo: EchoHash | None = None) -> int:
        counter = [0]
        text = copy_lines(writers)

        def lines() -> Iterator[bytes]:
            for batch in batches:
                counter[0] += len(batch)
                if isinstance(batch, LargeRows):
                    if echo is not None:
                        echo.valid = False     # lines sent in pieces: the read-back rehashes instead
                    for row in batch:
                        if has_large(row):
                            yield from _large_copy_line(row, writers)
                        else:
                            yield text([row]).encode("utf-8")
                    continue
                for part in split_by_bytes(batch, 2 << 20):   # large values: a few rows at a time
                    data = text(part).encode("utf-8")
                    if echo is not None:
                        echo.update(data)
                    yield data

        self._copy_in(conn, table, columns, lines())
        return counter[0]

    def _copy_in(self, conn: Connection, table: Table, columns: list[str], data: Iterator[bytes]) -> None:
        """``COPY table (columns) FROM STDIN`` fed from ``data``. An error raised while producing
        the data is raised as it is (psycopg2 would turn it into QueryCanceled)."""
        failure: list[BaseException] = []

        def guarded() -> Iterator[bytes]:
            try:
                yield from data
            except GeneratorExit:      # closed by the failing COPY: its error is the one to raise
                raise
            except BaseException as exc:
                failure.append(exc)
                raise

        cols = ", ".join(self.q(c) for c in columns)
        cur = self.dbapi(conn).cursor()
        try:
            # copy_expert does not format, and names quoted by q() have each '%' doubled
            cur.copy_expert(cur.mogrify(f"COPY {self.qtable(table.name, table.schema)} ({cols}) FROM STDIN", ()),
                            _IterFile(guarded()), size=1 << 16)
        except Exception:
            if failure:
                raise failure[0] from None
            raise
        finally:
            cur.close()

    echo_check = True

    #: a table's text read-back is cut into parts of about this much of its heap (-j restores)
    ECHO_PART_BYTES = 64 << 20

    def echo_parts(self, conn: Connection, table: Table) -> list[tuple[int, int | None] | None]:
        """Ranges of physical blocks (TID range scans, PostgreSQL 14+) of about ECHO_PART_BYTES,
        the whole table in all; before 14, one part (a filter on ctid would scan every block)."""
        if int(conn.exec_driver_sql("SHOW server_version_num").scalar()) < 140000 or table.partition_by:
            return [None]       # (a partitioned table has no blocks of its own: read whole)
        size, block = conn.exec_driver_sql(
            "SELECT pg_relation_size(%(t)s::regclass), current_setting('block_size')::int",
            {"t": self.qtable_value(table.name, table.schema)}).one()
        blocks = -(-int(size) // int(block))
        parts = max(1, min(64, -(-int(size) // self.ECHO_PART_BYTES)))
        if parts == 1:
            return [None]
        per = -(-blocks // parts)
        return [(start, start + per if start + per < blocks else None) for start in range(0, blocks, per)]

    def echo_read(self, conn: Connection, table: Table, columns: list[str],
                  blocks: Any = None, bits: int = 64) -> tuple[int, int]:
        """The loaded columns printed back by ``COPY … TO STDOUT`` (text format) in the output
        settings the load's writers spell values in, each line hashed as ``EchoHash`` hashes the
        lines sent: (rows, hash), of the whole table or of the physical ``blocks`` [start, end)
        (end None: to the end); the parts of echo_parts add up to the whole table. ``blocks``
        may also be a key range (restore.text_key_parts): read in key order when it is
        ``ordered``, and then hashed whole (values.StreamHash), as its chunk was."""
        from ..units import key_range_where
        from ..values import StreamHash

        _text_settings(conn)
        cols = ", ".join(self.q(c) for c in columns)
        got: EchoHash | StreamHash = EchoHash(bits)
        params: Any = None
        cur = self.dbapi(conn).cursor()
        try:
            if isinstance(blocks, dict):
                key = list(blocks["key"])
                where, params = key_range_where(self, key, None if blocks["after"] is None else tuple(blocks["after"]),
                                                None if blocks["upto"] is None else tuple(blocks["upto"]))
                order = ""
                if blocks["ordered"]:
                    got = StreamHash()
                    order = " ORDER BY " + ", ".join(self.q(k) for k in key)
                    # the table has no statistics yet: never a sort (the key's index gives the order)
                    conn.exec_driver_sql("SET LOCAL enable_sort = off")
                sql = f"COPY (SELECT {cols} FROM {self.qtable(table.name, table.schema)}{where}{order}) TO STDOUT"
            elif blocks is None and table.partition_by:    # COPY reads no partitioned table by name
                sql = f"COPY (SELECT {cols} FROM {self.qtable(table.name, table.schema)}) TO STDOUT"
            elif blocks is None:
                sql = f"COPY {self.qtable(table.name, table.schema)} ({cols}) TO STDOUT"
            else:
                start, end = int(blocks[0]), blocks[1]
                where = f"ctid >= '({start},0)'::tid" + ("" if end is None else f" AND ctid < '({int(end)},0)'::tid")
                sql = f"COPY (SELECT {cols} FROM {self.qtable(table.name, table.schema)} WHERE {where}) TO STDOUT"
            pgtext.copy_out(cur, sql, got.update, params)
        finally:
            cur.close()
        return got.rows, got.total

    loads_copy_text = True

    def load_text(self, conn: Connection, table: Table, columns: list[str], frames: Iterator[bytes]) -> None:
        """A COPY text chunk (pgtext.py) sent as stored, in the settings it was printed in."""
        _text_settings(conn)
        self._copy_in(conn, table, columns, frames)

    def add_foreign_key(self, conn: Connection, fk: sa.ForeignKeyConstraint, validate: bool) -> None:
        ddl = str(sa.schema.AddConstraint(fk).compile(dialect=self.dialect)) + " NOT VALID"
        conn.exec_driver_sql(ddl)
        if validate:
            table = fk.table
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(
                        f"ALTER TABLE {self.qtable(table.name, table.schema)} VALIDATE CONSTRAINT {self.q(fk.name)}"
                        )
            except sa.exc.DBAPIError as exc:
                raise IntegrityError(f"table {table.name}: foreign key {fk.name} does not hold "
                                     f"({str(exc.orig).splitlines()[0]})") from None

    def validate_foreign_keys(self, conn: Connection, table: Table, sa_table: sa.Table) -> list[str]:
        return []   # VALIDATE CONSTRAINT already checked every row

    def reset_identity(self, conn: Connection, table: Table, sa_table: sa.Table, same_engine: bool,
                       schema: Schema) -> None:
        qt = self.qtable(table.name, table.schema)
        seqs = {s.name: s for s in schema.sequences}
        for c in table.columns:
            if not c.autoincrement or c.type.kind != "integer":
                continue
            seq = conn.exec_driver_sql("SELECT pg_get_serial_sequence(%(t)s, %(c)s)",
                                       {"t": self.qtable_value(table.name, table.schema), "c": c.name}).scalar()
            if not seq:
                continue
            mx = conn.exec_driver_sql(f"SELECT max({self.q(c.name)}) FROM {qt}").scalar()
            rec = seqs.get(c.sequence or "") if same_engine else None
            last = rec.last_value if rec and rec.is_called else None
            target = max(x for x in (mx, last) if x is not None) if (mx is not None or last is not None) else None
            if target is None:
                conn.exec_driver_sql("SELECT setval(%(s)s, 1, false)", {"s": seq})
            else:
                conn.exec_driver_sql("SELECT setval(%(s)s, %(v)s, true)", {"s": seq, "v": int(target)})

    def existing_tables(self, conn: Connection, schema: str | None) -> set[str]:
        return set(sa.inspect(conn).get_table_names(schema=schema))

    def drop_table(self, conn: Connection, name: str, schema: str | None) -> None:
        # only a table this restore made (the cleanup of a failed one); --clean: drop_for_clean
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.qtable(name, schema)} CASCADE")

    def error_line(self, exc: BaseException) -> str | None:
        """A lost connection named as one: once the server ended the session (a terminated
        backend, a restart), psycopg2 reports what it tried next ("invalid socket", "connection
        already closed", "server closed the connection unexpectedly"), in no set order."""
        first = super().error_line(exc)
        if first is None:
            return None
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        lost = isinstance(orig, self.dialect.dbapi.InterfaceError) or any(
            m in first for m in ("invalid socket", "server closed the connection", "terminating connection",
                                 "connection already closed", "SSL connection has been closed"))
        return f"the connection to the server was lost ({first})" if lost and "connection to the server" \
            not in first else first

    def server_identity(self, conn: Connection) -> tuple[Any, ...] | None:
        """The cluster's system identifier (pg_control_system(), the same through every address
        and socket; a streaming replica shares its primary's) and the database's name. Where the
        function may not be called: the postmaster's start time and port."""
        db = conn.exec_driver_sql("SELECT current_database()").scalar()
        try:
            with conn.begin_nested():
                sysid = conn.exec_driver_sql("SELECT system_identifier::text FROM pg_control_system()").scalar()
            return ("postgresql", "system", sysid, db)
        except sa.exc.DBAPIError:
            started, port = conn.exec_driver_sql(
                "SELECT pg_postmaster_start_time()::text, current_setting('port')").one()
            return ("postgresql", "started", started, port, db)

    def set_lock_timeout(self, engine: sa.Engine, seconds: int) -> None:
        @sa.event.listens_for(engine, "connect")
        def _lock_timeout(dbapi_conn: Any, record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET lock_timeout = '{int(seconds)}s'")
            dbapi_conn.commit()

    def is_lock_timeout(self, exc: BaseException) -> bool:
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        return getattr(orig, "pgcode", None) == "55P03"      # lock_not_available

    def lock_holders(self, conn: Connection, name: str, schema: str | None) -> list[str]:
        rows = conn.exec_driver_sql(
            """SELECT DISTINCT l.pid, a.usename, a.application_name, a.state, l.mode
                 FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
                  AND l.relation = to_regclass(%(t)s) ORDER BY 1""",
            {"t": self.qtable_value(name, schema)}).fetchall()
        return [f"pid {pid} ({', '.join(str(x) for x in (user, app or None, state, mode) if x)})"
                for pid, user, app, state, mode in rows]

    def lock_for_clean(self, conn: Connection, name: str, schema: str | None) -> None:
        # held to the end of the restore's transaction: no session can read the old table
        # meanwhile, nor make a new view or foreign key depend on it
        conn.exec_driver_sql(f"LOCK TABLE {self.qtable(name, schema)} IN ACCESS EXCLUSIVE MODE")

    def existing_views(self, conn: Connection, views: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
        """The backup's views are made with CREATE VIEW: those already there are dropped first
        (as pg_restore --clean drops what the archive holds)."""
        if not views:
            return []
        found = set(conn.exec_driver_sql(
            "SELECT v FROM unnest(%(v)s::text[]) AS v WHERE (SELECT relkind FROM pg_class "
            "WHERE oid = to_regclass(v)) IN ('v', 'm')",
            {"v": [self.qtable_value(n, s) for n, s in views]}).scalars())
        return [(n, s) for n, s in views if self.qtable_value(n, s) in found]

    def clean_blockers(self, conn: Connection, tables: list[tuple[str, str | None]],
                       views: list[tuple[str, str | None]]) -> list[str]:
        names = [self.qtable_value(n, s) for n, s in [*tables, *views]]
        if not names:
            return []
        found: dict[str, list[str]] = {}
        for what, on in conn.exec_driver_sql(_BLOCKERS_SQL, {"names": names}):
            found.setdefault(what, []).append(on)
        return [f"{what} depends on {min(on, key=lambda o: (not o.startswith(('table ', 'view ')), o))}"
                for what, on in sorted(found.items())]

    drops_together = True

    def drop_for_clean(self, conn: Connection, tables: list[tuple[str, str | None]],
                       views: list[tuple[str, str | None]]) -> None:
        """Views first (plain and materialized apart, each kind in one statement, in turns while
        one kind waits for the other), then every table in one DROP TABLE: the server orders the
        drops of objects that depend on each other; nothing else is dropped (no CASCADE)."""
        kinds = dict(conn.exec_driver_sql(
            "SELECT v, (SELECT relkind FROM pg_class WHERE oid = to_regclass(v))::text "
            "FROM unnest(%(v)s::text[]) AS v", {"v": [self.qtable_value(n, s) for n, s in views]}).fetchall()) \
            if views else {}
        pending = {"VIEW": [self.qtable(n, s) for n, s in views if kinds.get(self.qtable_value(n, s)) == "v"],
                   "MATERIALIZED VIEW": [self.qtable(n, s) for n, s in views
                                         if kinds.get(self.qtable_value(n, s)) == "m"]}
        last: Exception | None = None
        while any(pending.values()):
            done = False
            for kind, names in pending.items():
                if names:
                    try:
                        with conn.begin_nested():
                            conn.exec_driver_sql(f"DROP {kind} {', '.join(names)}")
                        pending[kind], done = [], True
                    except sa.exc.DBAPIError as exc:
                        last = exc
            if not done:
                raise last if last is not None else RestoreError("views could not be dropped")
        if tables:
            conn.exec_driver_sql(f"DROP TABLE {', '.join(self.qtable(n, s) for n, s in tables)}")

    object_kinds = ("MATERIALIZED VIEW", "VIEW", "OPERATOR", "PROCEDURE", "AGGREGATE", "FUNCTION", "SEQUENCE",
                    "DOMAIN", "TYPE", "EXTENSION", "SCHEMA")
    drop_cascade = " CASCADE"       # what depends on an object the restore made was made by it too

    def made_names(self, schema: Schema, tables: list[Table], same_engine: bool) -> set[str]:
        names = super().made_names(schema, tables, same_engine) | {t["name"] for t in schema.types} \
            | {s["name"] for s in schema.schemas}
        return names if same_engine else names | {self._enum_name(c) for t in tables for c in t.columns
                                                  if c.type.kind == "enum"}

    def object_mark(self, conn: Connection) -> set[tuple[str, str, str]]:
        rows = conn.exec_driver_sql(_OBJECTS_SQL).fetchall()
        return {(str(k), str(n), self.literal_sql(str(i))) for k, n, i in rows}


_USER_NS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'"
_NOT_EXT = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{cat}'::regclass AND d.objid = {oid} " \
           "AND d.deptype = 'e')"
# The objects a restore may make besides tables, not those of an extension: routines, views,
# materialized views, sequences, enums, domains, ranges and composite types, operators, schemas,
# extensions.
_OBJECTS_SQL = f"""
SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
       p.proname, p.oid::regprocedure::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE {_USER_NS} AND {_NOT_EXT.format(cat='pg_proc', oid='p.oid')}
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'SEQUENCE' END,
       c.relname, c.oid::regclass::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm', 'S') AND {_USER_NS} AND {_NOT_EXT.format(cat='pg_class', oid='c.oid')}
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname, t.oid::regtype::text
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class
                                                              WHERE oid = t.typrelid) = 'c'))
   AND {_USER_NS} AND {_NOT_EXT.format(cat='pg_type', oid='t.oid')}
UNION ALL
SELECT 'OPERATOR', o.oprname, o.oid::regoperator::text
  FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
 WHERE {_USER_NS} AND {_NOT_EXT.format(cat='pg_operator', oid='o.oid')}
UNION ALL
SELECT 'SCHEMA', n.nspname, quote_ident(n.nspname) FROM pg_namespace n WHERE {_USER_NS}
UNION ALL
SELECT 'EXTENSION', e.extname, quote_ident(e.extname) FROM pg_extension e
"""


# What --clean would take away besides the relations it names: ``part`` is those relations and
# everything dropped with them (their constraints, indexes, triggers, rules, row types, owned
# sequences, partitions: auto and internal dependencies, followed down); a normal dependency
# on any of it from outside ``part`` (a view, another table's foreign key or default, a
# function over the row type, a child by INHERITS) is what DROP without CASCADE refuses. A
# view's rule is named as its view.
_BLOCKERS_SQL = """
WITH RECURSIVE part(classid, objid) AS (
    SELECT 'pg_class'::regclass::oid, to_regclass(n)::oid FROM unnest(%(names)s::text[]) AS n
     WHERE to_regclass(n) IS NOT NULL
  UNION
    SELECT d.classid, d.objid FROM pg_depend d JOIN part p ON d.refclassid = p.classid AND d.refobjid = p.objid
     WHERE d.deptype IN ('a', 'i', 'P', 'S')
)
SELECT DISTINCT
       CASE WHEN d.classid = 'pg_rewrite'::regclass
            THEN pg_describe_object('pg_class'::regclass, (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid), 0)
            ELSE pg_describe_object(d.classid, d.objid, 0) END,
       pg_describe_object(d.refclassid, d.refobjid, 0)
  FROM pg_depend d JOIN part p ON d.refclassid = p.classid AND d.refobjid = p.objid
 WHERE d.deptype = 'n'
   AND NOT EXISTS (SELECT 1 FROM part q WHERE q.classid = d.classid AND q.objid = d.objid)
"""


def _text_settings(conn: Connection) -> None:
    """The session settings COPY text is printed and read in (pgtext.SETTINGS), for this
    transaction."""
    for setting in pgtext.SETTINGS:
        conn.exec_driver_sql(f"SET LOCAL {setting}")


#: An index's definition after its table's name (``USING btree (b) WHERE …``): what
#: pg_get_indexdef prints after ``CREATE [UNIQUE] INDEX name ON [ONLY] schema.table``, or NULL
#: where it does not start so; over pg_index ``x``, its index ``i``, the table ``c`` in ``n``
#: (each '%' doubled: the queries it goes into take parameters).
_INDEX_REST = """(SELECT CASE WHEN left(d.def, length(d.p)) = d.p THEN substr(d.def, length(d.p) + 1)
                              WHEN left(d.def, length(d.po)) = d.po THEN substr(d.def, length(d.po) + 1) END
                    FROM (SELECT pg_get_indexdef(x.indexrelid) AS def,
                                 format('CREATE %%sINDEX %%I ON %%I.%%I ', u.k, i.relname, n.nspname, c.relname) AS p,
                                 format('CREATE %%sINDEX %%I ON ONLY %%I.%%I ', u.k, i.relname, n.nspname, c.relname)
                                 AS po
                            FROM (SELECT CASE WHEN x.indisunique THEN 'UNIQUE ' ELSE '' END AS k) u) d)"""

#: pg_attribute.attstorage → the STORAGE keyword
_STORAGE = {"p": "plain", "e": "external", "m": "main", "x": "extended"}


class _IterFile:
    """A read()-able file over an iterator of byte strings, for COPY FROM STDIN.

    Hands out slices of the current piece (never re-copies what is left of it), so a batch of
    large values costs one pass, not one copy per read."""

    def __init__(self, it: Iterator[bytes]) -> None:
        self._it = it
        self._buf = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        if not self._buf:
            for piece in self._it:
                if piece:
                    self._buf = memoryview(piece)
                    break
            else:
                return b""
        if size < 0 or size >= len(self._buf):
            out, self._buf = self._buf, memoryview(b"")
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return bytes(out)

    readline = read


_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_str(v: str) -> str:
    return v.translate(_ESC) if ("\\" in v or "\t" in v or "\n" in v or "\r" in v) else v


def _strip_nul(v: Any) -> Any:
    return v.replace("\x00", "") if v.__class__ is str else v


def _no_nul(values: list[Any]) -> bool:
    """True when no string among ``values`` holds a NUL character (one C-level scan)."""
    try:
        return "\x00" not in "".join(values)
    except TypeError:         # not all strings: the values are tested one by one
        return False


def _copy_text(v: Any) -> str:
    if type(v) is not str:
        v = str(v)
    return v.translate(_ESC) if ("\\" in v or "\t" in v or "\n" in v or "\r" in v) else v


# a string without the four characters COPY escapes goes in as it is, without a call
with_inline(_copy_text, "({x} if {x}.__class__ is str and _BS not in {x} and _TAB not in {x} "
                        "and _LF not in {x} and _CR not in {x} else {f}({x}))")


def _float_text(v: float) -> str:
    """A float as PostgreSQL prints a float8 (the shortest text that reads back exactly, as
    ``repr``, but ``5`` not ``5.0``, and exponent form from 1e15 on, not 1e16), so a loaded value
    reads back spelled as it went in."""
    r = repr(v)
    if "e" in r or "n" in r:    # exponent form, inf, nan
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return r
    if abs(v) >= 1e15:          # 1e15 <= |v| < 1e16: repr's fixed form, PostgreSQL's exponent form
        sign, digits = ("-", r[1:]) if r[0] == "-" else ("", r)
        mant = digits.replace(".", "").rstrip("0")
        return f"{sign}{mant[0]}{'.' + mant[1:] if len(mant) > 1 else ''}e+15"
    return r[:-2] if r[-2:] == ".0" else r


# the common case, a finite float whose repr is PostgreSQL's spelling, without a call
with_inline(_float_text, "(_r if {x}.__class__ is float and abs({x}) < 1e15 and (_r := repr({x}))[-2:] != '.0' "
                         "else {f}({x}))")


def _trim_fraction(s: str, start: int) -> str:
    """``s`` with the trailing zeros of the fraction that begins at ``start`` (a '.') removed, and
    the '.' too when nothing is left of it: PostgreSQL's spelling of times."""
    end = start + 1
    while end < len(s) and s[end].isdigit():
        end += 1
    frac = s[start + 1:end].rstrip("0")
    return s[:start] + ("." + frac if frac else "") + s[end:]


def _timestamp_copy_text(v: Any) -> str:
    """A canonical ISO timestamp (``2024-05-01T10:00:00.250000``, ``…+00:00``) spelled as
    PostgreSQL prints it with DateStyle ISO in UTC (``2024-05-01 10:00:00.25``, ``…+00``): the
    same value, which reads back spelled as it went in. Anything else goes in as it is."""
    if v.__class__ is str and len(v) >= 19 and v[10] == "T" and v.isprintable() and "\\" not in v:
        s = v[:10] + " " + v[11:]
        if len(s) > 19 and s[19] == ".":
            s = _trim_fraction(s, 19)
        if s.endswith("+00:00"):
            s = s[:-3]
        return s
    return _copy_text(v)


# the common shapes (no offset; no fraction, or six digits of it) without a call
with_inline(_timestamp_copy_text,
            "(({x}[:10] + ' ' + {x}[11:] if len({x}) == 19 else {x}[:10] + ' ' + {x}[11:].rstrip('0').rstrip('.'))"
            " if {x}.__class__ is str and (len({x}) == 19 or len({x}) == 26 and {x}[19] == '.') and {x}[10] == 'T'"
            " and {x}.isprintable() and _BS not in {x} else {f}({x}))")


def _time_copy_text(v: Any) -> str:
    """A time with a fraction spelled as PostgreSQL prints it (trailing zeros trimmed)."""
    if v.__class__ is str and len(v) > 8 and v[8] == "." and v.isprintable() and "\\" not in v:
        return _trim_fraction(v, 8)
    return _copy_text(v)


with_inline(_time_copy_text, "({x} if {x}.__class__ is str and len({x}) == 8 and {x}.isprintable() and _BS not in {x} else {f}({x}))")


def _char_copy_text(n: int) -> Converter:
    """char(n): the value blank-padded to n characters, as PostgreSQL stores and prints it (a
    shorter value, as MySQL/MariaDB return them, is the same char(n) value)."""
    def f(v: Any) -> str:
        s = v if v.__class__ is str else str(v)
        return _copy_text(s + " " * (n - len(s)) if len(s) < n else s)

    return with_inline(f, f"(({{x}} + ' ' * ({int(n)} - len({{x}})) if len({{x}}) < {int(n)} else {{x}}) "
                          "if {x}.__class__ is str and _BS not in {x} and _TAB not in {x} and _LF not in {x} "
                          "and _CR not in {x} else {f}({x}))")


def _array_item_text(t: LogicalType) -> Converter:
    k = t.kind
    if k == "boolean":
        return lambda v: "t" if v else "f"
    if k == "float":
        return _float_text
    if k == "binary":
        return lambda v: '"\\\\x' + v.hex() + '"'
    if k == "array":
        inner = _array_literal(t.item or LogicalType("text"))
        return inner
    if k in ("integer",):
        return str

    def quoted(v: Any) -> str:
        s = str(v)
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return quoted


def _array_literal(item: LogicalType) -> Converter:
    f = _array_item_text(item)
    return lambda v: "{" + ",".join("NULL" if x is None else f(x) for x in v) + "}"


def copy_text_writer(t: LogicalType) -> Converter:
    """Canonical value → one field of COPY's text format (without the NULL marker)."""
    k = t.kind
    if k == "boolean":
        return lambda v: "t" if v else "f"
    if k == "integer":
        return str
    if k == "datetime":
        return _timestamp_copy_text
    if k == "time":
        return _time_copy_text
    if k == "char" and t.length and not t.item:
        return _char_copy_text(t.length)
    if k in ("string", "text", "char", "enum", "json", "interval", "uuid", "date", "decimal"):
        return _copy_text
    if k == "float":
        return _float_text
    if k == "binary":
        return lambda v: "\\\\x" + v.hex()
    if k == "array":
        lit = _array_literal(t.item or LogicalType("text"))
        return lambda v: _copy_str(lit(v))
    return lambda v: _copy_str(v if isinstance(v, str) else str(v))


def copy_lines(writers: list[Converter]) -> Any:
    """rows → COPY text lines (``str`` writers, for integers, are formatted inline)."""
    return compile_lines(writers, "\\N", "COPY")


class _PgLarge(LargeBase):
    """A large value still in the database, read in pieces of PIECE_BYTES by the row's ctid in
    the dump's snapshot. The server detoasts the value once (a materialized CTE; text as its
    UTF-8 bytes) and hands out byte slices through a server-side cursor: slicing a compressed
    value directly would decompress it again for every piece."""

    _seq = 0

    def __init__(self, raw: Any, qtable: str, qcol: str, ctid: str, kind: int, length: int) -> None:
        self.raw, self.qtable, self.qcol, self.ctid = raw, qtable, qcol, ctid
        self.kind, self.length = kind, length

    def pieces(self) -> Iterator[bytes]:
        expr = f"{self.qcol} || ''::bytea" if self.kind == 0 else f"convert_to({self.qcol}, 'UTF8')"
        sql = (f"WITH v AS MATERIALIZED (SELECT {expr} AS b FROM {self.qtable} WHERE ctid = %s::tid) "
               f"SELECT substring(v.b FROM g FOR %s) FROM v, generate_series(1, %s, %s) AS g ORDER BY g")
        _PgLarge._seq += 1
        cur = self.raw.cursor(name=f"albackup_piece_{_PgLarge._seq}")
        try:
            cur.execute(sql, (self.ctid, PIECE_BYTES, max(self.length, 1), PIECE_BYTES))
            got = False
            while True:
                rows = cur.fetchmany(2)
                if not rows:
                    break
                for (v,) in rows:
                    got = True
                    if v:
                        yield bytes(v)
            if not got:
                raise RuntimeError(f"row {self.ctid} of {self.qtable} is gone from the snapshot")
        finally:
            cur.close()


_BESC = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\r", b"\\r"))


def _large_copy_line(row: Any, writers: list[Converter]) -> Iterator[bytes]:
    """One COPY text line holding large values, as pieces: bytea in hex, text escaped per piece
    (the escaped bytes are ASCII, so a piece may split a UTF-8 character without harm)."""
    for i, (w, v) in enumerate(zip(writers, row)):
        if i:
            yield b"\t"
        if v is None:
            yield b"\\N"
        elif isinstance(v, LargeBase):
            if v.kind == 0:
                yield b"\\\\x"
                for p in v.pieces():
                    yield p.hex().encode("ascii")
            else:
                for p in v.pieces():
                    for a, b in _BESC:
                        p = p.replace(a, b)
                    yield p
        else:
            yield w(v).encode("utf-8")
    yield b"\n"
