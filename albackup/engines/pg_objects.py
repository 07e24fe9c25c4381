"""PostgreSQL: the objects besides tables and their order (pg_depend), and the catalogue a
restore compares with the source's.

Objects are named as nodes: ``kind:key``, where key is ``schema.name`` outside the current
schema (as Table.key) or a signature (``routine:billing.f(integer)``, ``operator:…``). A dump
records what each node needs (``Schema.depends``); a restore creates them in that order
(``creation_order``).
"""
from __future__ import annotations

import heapq
from typing import Any, Callable

from sqlalchemy.engine import Connection

from ..model import Routine, Schema

#: user objects only: oids below this are the system's
_FIRST_USER_OID = 16384


def _key(nsp: str, name: str) -> str:
    """SQL: the text key of ``name`` in schema ``nsp`` (the schema left out when it is current)."""
    return f"CASE WHEN {nsp} = current_schema() THEN {name}::text ELSE {nsp}::text || '.' || {name}::text END"


def _class_node(oid: str) -> str:
    """SQL: the node of the relation ``oid`` (an index: its table's; a composite type's: a type)."""
    return (f"(SELECT CASE WHEN c.relkind IN ('r', 'p', 'f') THEN 'table:' WHEN c.relkind IN ('v', 'm') THEN 'view:' "
            f"WHEN c.relkind = 'S' THEN 'sequence:' WHEN c.relkind = 'c' THEN 'type:' END || {_key('n.nspname', 'c.relname')} "
            f"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE c.oid = coalesce((SELECT x.indrelid FROM pg_index x WHERE x.indexrelid = {oid}), {oid}))")


def _type_node(oid: str) -> str:
    """SQL: the node of the type ``oid``: its own (enum, domain, range), its relation's (a row
    type), its element's (an array), its range's (a multirange)."""
    return (f"(SELECT CASE WHEN t.typrelid <> 0 THEN {_class_node('t.typrelid')} "
            f"WHEN t.typtype IN ('e', 'd', 'r') THEN 'type:' || {_key('n.nspname', 't.typname')} "
            f"WHEN t.typtype = 'm' THEN (SELECT 'type:' || {_key('rn.nspname', 'rt.typname')} FROM pg_range r "
            f"  JOIN pg_type rt ON rt.oid = r.rngtypid JOIN pg_namespace rn ON rn.oid = rt.typnamespace "
            f"  WHERE r.rngmultitypid = t.oid) "
            f"WHEN t.typelem <> 0 AND t.typcategory = 'A' THEN (SELECT CASE WHEN e.typrelid <> 0 THEN "
            f"  {_class_node('e.typrelid')} WHEN e.typtype IN ('e', 'd', 'r') THEN 'type:' || {_key('en.nspname', 'e.typname')} END "
            f"  FROM pg_type e JOIN pg_namespace en ON en.oid = e.typnamespace WHERE e.oid = t.typelem) END "
            f"FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = {oid})")


def _node(cls: str, oid: str) -> str:
    """SQL: the node an object of catalogue ``cls`` (a regclass) and ``oid`` belongs to, or NULL
    for what a backup does not carry: a column default belongs to its table, a view's rule to the
    view, a domain's constraint to the domain."""
    return f"""CASE {cls}
        WHEN 'pg_class'::regclass THEN {_class_node(oid)}
        WHEN 'pg_type'::regclass THEN {_type_node(oid)}
        WHEN 'pg_proc'::regclass THEN (SELECT 'routine:' || p.oid::regprocedure::text FROM pg_proc p
                                        WHERE p.oid = {oid} AND p.prokind IN ('f', 'p', 'a'))
        WHEN 'pg_operator'::regclass THEN 'operator:' || {oid}::regoperator::text
        WHEN 'pg_trigger'::regclass THEN (SELECT 'trigger:' || {_key('n.nspname', 'c.relname')} || '.' || t.tgname
                                          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                                          JOIN pg_namespace n ON n.oid = c.relnamespace
                                          WHERE t.oid = {oid} AND NOT t.tgisinternal)
        WHEN 'pg_attrdef'::regclass THEN (SELECT {_class_node('a.adrelid')} FROM pg_attrdef a WHERE a.oid = {oid})
        WHEN 'pg_rewrite'::regclass THEN (SELECT {_class_node('r.ev_class')} FROM pg_rewrite r WHERE r.oid = {oid})
        WHEN 'pg_constraint'::regclass THEN (SELECT {_type_node('k.contypid')} FROM pg_constraint k
                                             WHERE k.oid = {oid} AND k.contypid <> 0)
        END"""


_DEPENDS_SQL = f"""
SELECT DISTINCT a, b FROM (
    SELECT {_node('d.classid', 'd.objid')} AS a, {_node('d.refclassid', 'd.refobjid')} AS b
      FROM pg_depend d
     WHERE d.objid >= {_FIRST_USER_OID} AND d.refobjid >= {_FIRST_USER_OID} AND d.deptype IN ('n', 'a', 'i')
) x WHERE a IS NOT NULL AND b IS NOT NULL AND a <> b
         -- a sequence's owner (OWNED BY) is set once both are made
         AND NOT (a LIKE 'sequence:%%' AND b LIKE 'table:%%') ORDER BY 1, 2"""


def read_depends(conn: Connection) -> dict[str, list[str]]:
    """What each node needs made before it, from pg_depend."""
    out: dict[str, list[str]] = {}
    for a, b in conn.exec_driver_sql(_DEPENDS_SQL):
        out.setdefault(a, []).append(b)
    return out


_NS_FILTER = "n.nspname = ANY(%(names)s)"


def read_schemas(conn: Connection, names: list[str], default: str) -> list[dict[str, Any]]:
    """The schemas read besides the current one, with their comments."""
    return [{"name": n, "comment": c} for n, c in conn.exec_driver_sql(
        f"SELECT n.nspname, obj_description(n.oid, 'pg_namespace') FROM pg_namespace n "
        f"WHERE {_NS_FILTER} AND n.nspname <> %(d)s ORDER BY 1", {"names": names, "d": default})]


_NOT_EXT = ("NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = '{cat}'::regclass AND x.objid = {oid} "
            "AND x.deptype = 'e')")

_TYPES_SQL = f"""
SELECT 'composite', t.typname, n.nspname,
       format('CREATE TYPE %%I.%%I AS (%%s)', n.nspname, t.typname,
              (SELECT string_agg(format('%%I %%s', a.attname, format_type(a.atttypid, a.atttypmod))
                                 || CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation
                                    THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END, ', '
                                 ORDER BY a.attnum)
                 FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
                WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_class c ON c.oid = t.typrelid
 WHERE t.typtype = 'c' AND c.relkind = 'c' AND {_NS_FILTER} AND {_NOT_EXT.format(cat='pg_type', oid='t.oid')}
UNION ALL
SELECT 'range', t.typname, n.nspname,
       format('CREATE TYPE %%I.%%I AS RANGE (subtype = %%s%%s%%s%%s%%s%%s)', n.nspname, t.typname,
              format_type(r.rngsubtype, NULL),
              CASE WHEN NOT o.opcdefault THEN format(', subtype_opclass = %%I.%%I', on_.nspname, o.opcname) ELSE '' END,
              CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> st.typcollation
                   THEN ', collation = ' || r.rngcollation::regcollation::text ELSE '' END,
              CASE WHEN r.rngcanonical <> 0 THEN ', canonical = ' || r.rngcanonical::regproc::text ELSE '' END,
              CASE WHEN r.rngsubdiff <> 0 THEN ', subtype_diff = ' || r.rngsubdiff::regproc::text ELSE '' END,
              {{multirange}})
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_range r ON r.rngtypid = t.oid
  JOIN pg_opclass o ON o.oid = r.rngsubopc JOIN pg_namespace on_ ON on_.oid = o.opcnamespace
  JOIN pg_type st ON st.oid = r.rngsubtype
 WHERE {_NS_FILTER} AND {_NOT_EXT.format(cat='pg_type', oid='t.oid')}
 ORDER BY 1, 3, 2"""


def read_types(conn: Connection, names: list[str], default: str, version: tuple[int, ...]) -> list[dict[str, Any]]:
    """Composite and range types as CREATE TYPE statements."""
    multirange = ("(SELECT format(', multirange_type_name = %%I.%%I', mn.nspname, m.typname) FROM pg_type m "
                  "JOIN pg_namespace mn ON mn.oid = m.typnamespace WHERE m.oid = r.rngmultitypid)"
                  if version >= (14,) else "''")
    return [{"kind": k, "name": name, "schema": None if nsp == default else nsp, "sql": sql}
            for k, name, nsp, sql in conn.exec_driver_sql(_TYPES_SQL.replace("{multirange}", multirange),
                                                           {"names": names})]


_OPERATORS_SQL = f"""
SELECT o.oprname, n.nspname, o.oid::regoperator::text,
       format('CREATE OPERATOR %%I.%%s (FUNCTION = %%s%%s%%s%%s%%s%%s%%s%%s%%s)', n.nspname, o.oprname,
              o.oprcode::regproc::text,
              CASE WHEN o.oprleft <> 0 THEN ', LEFTARG = ' || format_type(o.oprleft, NULL) ELSE '' END,
              CASE WHEN o.oprright <> 0 THEN ', RIGHTARG = ' || format_type(o.oprright, NULL) ELSE '' END,
              (SELECT format(', COMMUTATOR = OPERATOR(%%I.%%s)', cn.nspname, c.oprname) FROM pg_operator c
                 JOIN pg_namespace cn ON cn.oid = c.oprnamespace WHERE c.oid = o.oprcom),
              (SELECT format(', NEGATOR = OPERATOR(%%I.%%s)', cn.nspname, c.oprname) FROM pg_operator c
                 JOIN pg_namespace cn ON cn.oid = c.oprnamespace WHERE c.oid = o.oprnegate),
              CASE WHEN o.oprrest <> 0 THEN ', RESTRICT = ' || o.oprrest::regproc::text ELSE '' END,
              CASE WHEN o.oprjoin <> 0 THEN ', JOIN = ' || o.oprjoin::regproc::text ELSE '' END,
              CASE WHEN o.oprcanhash THEN ', HASHES' ELSE '' END,
              CASE WHEN o.oprcanmerge THEN ', MERGES' ELSE '' END)
  FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
 WHERE {_NS_FILTER} AND o.oid >= {_FIRST_USER_OID} AND {_NOT_EXT.format(cat='pg_operator', oid='o.oid')}
 ORDER BY 2, 1, 3"""


def read_operators(conn: Connection, names: list[str], default: str) -> list[Routine]:
    """Custom operators (not an extension's) as CREATE OPERATOR statements."""
    return [Routine("operator", name, sql, None if nsp == default else nsp, ident=ident)
            for name, nsp, ident, sql in conn.exec_driver_sql(_OPERATORS_SQL, {"names": names})]


#: COMMENT ON for what a comment may be on besides schemas, tables and their columns (which are
#: carried with them): its target (``FUNCTION billing.f(integer)``, ``CONSTRAINT c ON t``) and text
_COMMENTS_SQL = """
SELECT target, format('COMMENT ON %%s IS %%L', target, description) FROM (
    SELECT CASE i.type
             WHEN 'table constraint' THEN (SELECT format('CONSTRAINT %%I ON %%s', k.conname, k.conrelid::regclass)
                                           FROM pg_constraint k WHERE k.oid = d.objoid)
             WHEN 'domain constraint' THEN (SELECT format('CONSTRAINT %%I ON DOMAIN %%s', k.conname,
                                                          k.contypid::regtype) FROM pg_constraint k WHERE k.oid = d.objoid)
             WHEN 'trigger' THEN (SELECT format('TRIGGER %%I ON %%s', t.tgname, t.tgrelid::regclass)
                                  FROM pg_trigger t WHERE t.oid = d.objoid)
             WHEN 'view column' THEN 'COLUMN ' || i.identity
             WHEN 'materialized view column' THEN 'COLUMN ' || i.identity
             WHEN 'composite type column' THEN 'COLUMN ' || i.identity
             ELSE upper(i.type) || ' ' || i.identity END AS target, d.description
      FROM pg_description d, pg_identify_object(d.classoid, d.objoid, d.objsubid) i
     WHERE d.objoid >= 16384 AND i.type NOT IN ('table', 'table column', 'schema', 'foreign table',
                                                'foreign table column', 'extension')
       AND coalesce(i.schema, (SELECT n.nspname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                                 JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE d.classoid = 'pg_trigger'::regclass AND t.oid = d.objoid)) = ANY(%(names)s)
       AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = d.classoid AND x.objid = d.objoid
                       AND x.deptype = 'e')
) c WHERE target IS NOT NULL ORDER BY 1"""


def read_comments(conn: Connection, names: list[str]) -> list[Routine]:
    """The comments on objects other than schemas, tables and columns, as COMMENT ON statements
    (routines of kind ``comment``, made last)."""
    return [Routine("comment", target, sql) for target, sql in conn.exec_driver_sql(_COMMENTS_SQL, {"names": names})]


#: plain aggregates (not ordered-set or hypothetical, no moving-aggregate or serial functions:
#: those are not carried, and the schema check names them missing)
_AGGREGATES_SQL = f"""
SELECT p.proname, n.nspname, p.oid::regprocedure::text,
       format('CREATE AGGREGATE %%I.%%I (%%s) (SFUNC = %%s, STYPE = %%s%%s%%s%%s%%s%%s%%s)', n.nspname, p.proname,
              pg_get_function_identity_arguments(p.oid), a.aggtransfn::regproc, format_type(a.aggtranstype, NULL),
              CASE WHEN a.aggfinalfn <> 0 THEN ', FINALFUNC = ' || a.aggfinalfn::regproc::text ELSE '' END,
              CASE WHEN a.aggfinalextra THEN ', FINALFUNC_EXTRA' ELSE '' END,
              CASE WHEN a.aggcombinefn <> 0 THEN ', COMBINEFUNC = ' || a.aggcombinefn::regproc::text ELSE '' END,
              CASE WHEN a.agginitval IS NOT NULL THEN ', INITCOND = ' || quote_literal(a.agginitval) ELSE '' END,
              (SELECT format(', SORTOP = OPERATOR(%%I.%%s)', sn.nspname, so.oprname) FROM pg_operator so
                 JOIN pg_namespace sn ON sn.oid = so.oprnamespace WHERE so.oid = a.aggsortop),
              CASE p.proparallel WHEN 's' THEN ', PARALLEL = SAFE' WHEN 'r' THEN ', PARALLEL = RESTRICTED'
                   ELSE '' END)
  FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE {_NS_FILTER} AND a.aggkind = 'n' AND a.aggmtransfn = 0 AND a.aggserialfn = 0 AND a.aggdeserialfn = 0
   AND {_NOT_EXT.format(cat='pg_proc', oid='p.oid')}
 ORDER BY 2, 1, 3"""


def read_aggregates(conn: Connection, names: list[str], default: str) -> list[Routine]:
    """Plain aggregates as CREATE AGGREGATE statements (routines, ordered with the functions)."""
    return [Routine("routine", name, sql, None if nsp == default else nsp, ident=ident)
            for name, nsp, ident, sql in conn.exec_driver_sql(_AGGREGATES_SQL, {"names": names})]


_INDEX_STATS_SQL = f"""
SELECT n.nspname, c.relname, i.relname, a.attnum, a.attstattarget
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = i.oid
 WHERE {_NS_FILTER} AND a.attnum > 0 AND coalesce(a.attstattarget, -1) >= 0 ORDER BY 1, 2, 3, 4"""


def read_index_statistics(conn: Connection, names: list[str], schema: Schema, default: str) -> None:
    """ALTER INDEX … ALTER COLUMN n SET STATISTICS: kept in the table's options
    (``postgresql_index_statistics``: {index: {column number: target}})."""
    tables = {t.key: t for t in schema.tables}
    for nsp, table, index, num, target in conn.exec_driver_sql(_INDEX_STATS_SQL, {"names": names}):
        t = tables.get(table if nsp == default else f"{nsp}.{table}")
        if t is not None:
            t.options.setdefault("postgresql_index_statistics", {}).setdefault(index, {})[str(num)] = int(target)


def node_of(kind: str, obj: Any) -> str:
    """The node name of a backup's object (see the module's docstring)."""
    if kind == "table":
        return f"table:{obj.key}"
    key = f"{obj.schema}.{obj.name}" if obj.schema else obj.name
    if kind in ("enum", "domain", "type"):
        return f"type:{key}"
    if kind == "sequence":
        return f"sequence:{key}"
    if obj.kind == "trigger":
        return f"trigger:{obj.schema + '.' if obj.schema else ''}{obj.table}.{obj.name}"
    if obj.kind in ("routine", "operator") and obj.ident:
        return f"{obj.kind}:{obj.ident}"
    return f"{obj.kind}:{key}"


def creation_order(nodes: list[str], depends: dict[str, list[str]]) -> tuple[list[str], list[list[str]]]:
    """``nodes`` in an order where each comes after what it needs among them (Kahn's sort; ties
    in the given order), and the cycles left over (each a list of the nodes in it, which the
    caller breaks)."""
    index = {n: i for i, n in enumerate(nodes)}
    needs = {n: {d for d in depends.get(n, ()) if d in index and d != n} for n in nodes}
    users: dict[str, list[str]] = {n: [] for n in nodes}
    for n, ds in needs.items():
        for d in ds:
            users[d].append(n)
    ready = [index[n] for n in nodes if not needs[n]]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        n = nodes[heapq.heappop(ready)]
        out.append(n)
        for u in users[n]:
            needs[u].discard(n)
            if not needs[u]:
                heapq.heappush(ready, index[u])
    left = [n for n in nodes if needs[n]]
    return out, ([left] if left else [])


def late_nodes(order: list[str], depends: dict[str, list[str]], first_late: Callable[[str], bool]) -> set[str]:
    """The nodes made after the load: those ``first_late`` names (triggers, materialized views)
    and every node that needs one of them."""
    late: set[str] = set()
    for n in order:
        if first_late(n) or any(d in late for d in depends.get(n, ())):
            late.add(n)
    return late



#: The catalogue a restore compares: [kind, name, table key or NULL, definition] of everything in
#: the schemas ``names`` that is not an extension's. Definitions are the server's own printing
#: (pg_get_indexdef, pg_get_constraintdef, pg_get_viewdef, pg_get_functiondef, …).
_CATALOGUE_SQL = f"""
SELECT 'schema', n.nspname::text, NULL, coalesce(obj_description(n.oid, 'pg_namespace'), '')
  FROM pg_namespace n WHERE {_NS_FILTER} AND n.nspname <> current_schema()
UNION ALL
SELECT 'type', {_key('n.nspname', 't.typname')}, NULL,
       CASE t.typtype
         WHEN 'e' THEN 'enum (' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                    FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'
         WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod)
                       || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                       || coalesce(' DEFAULT ' || t.typdefault, '')
                       || coalesce((SELECT ' ' || string_agg(k.conname || ' ' || pg_get_constraintdef(k.oid), ' '
                                                              ORDER BY k.conname)
                                    FROM pg_constraint k WHERE k.contypid = t.oid), '')
         WHEN 'r' THEN 'range of ' || (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid)
         ELSE 'composite (' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                                                  ORDER BY a.attnum)
                                FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0
                                 AND NOT a.attisdropped) || ')'
       END
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE {_NS_FILTER} AND (t.typtype IN ('e', 'd', 'r')
                         OR t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
   AND {_NOT_EXT.format(cat='pg_type', oid='t.oid')}
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
       ELSE 'table' END, {_key('n.nspname', 'c.relname')},
       CASE WHEN c.relkind IN ('r', 'p', 'f') THEN {_key('n.nspname', 'c.relname')} END,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid)
            WHEN c.relkind = 'S' THEN (SELECT format('%%s start %%s increment %%s min %%s max %%s cycle %%s',
                                                     format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
                                                     s.seqmin, s.seqmax, s.seqcycle)
                                         FROM pg_sequence s WHERE s.seqrelid = c.oid)
            ELSE c.relkind::text || ' ' || c.relpersistence::text || coalesce(' ' || obj_description(c.oid, 'pg_class'), '') END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_NS_FILTER} AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND NOT c.relispartition
   AND {_NOT_EXT.format(cat='pg_class', oid='c.oid')}
UNION ALL
SELECT 'sequence position', {_key('q.schemaname', 'q.sequencename')}, NULL, q.last_value::text
  FROM pg_sequences q JOIN pg_namespace n ON n.nspname = q.schemaname
  JOIN pg_class c ON c.relname = q.sequencename AND c.relnamespace = n.oid
 WHERE {_NS_FILTER} AND {_NOT_EXT.format(cat='pg_class', oid='c.oid')}
UNION ALL
SELECT 'column', {_key('n.nspname', 'c.relname')} || '.' || a.attname, {_key('n.nspname', 'c.relname')},
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE a.attidentity WHEN 'a' THEN ' ALWAYS AS IDENTITY' WHEN 'd' THEN ' BY DEFAULT AS IDENTITY' ELSE '' END
       || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END
       || coalesce(' COMMENT ' || col_description(c.oid, a.attnum), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE {_NS_FILTER} AND c.relkind IN ('r', 'p', 'f') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', {_key('n.nspname', 'i.relname')}, CASE WHEN c.relkind <> 'm' THEN {_key('n.nspname', 'c.relname')} END,
       pg_get_indexdef(i.oid)
       || coalesce((SELECT ' statistics ' || string_agg(a.attnum || '=' || a.attstattarget, ',' ORDER BY a.attnum)
                      FROM pg_attribute a WHERE a.attrelid = i.oid AND coalesce(a.attstattarget, -1) >= 0), '')
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_NS_FILTER} AND c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition
UNION ALL
SELECT 'constraint', {_key('n.nspname', 'c.relname')} || '.' || k.conname, {_key('n.nspname', 'c.relname')},
       pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_NS_FILTER} AND NOT c.relispartition AND k.coninhcount = 0
UNION ALL
SELECT 'routine', p.oid::regprocedure::text, NULL,
       CASE WHEN p.prokind = 'a' THEN (SELECT concat_ws(' ', 'aggregate', a.aggkind, a.aggtransfn, a.aggfinalfn,
                                                       a.aggcombinefn, a.aggsortop::regoperator,
                                                       format_type(a.aggtranstype, NULL), a.agginitval)
                                       FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
            ELSE pg_get_functiondef(p.oid) END
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE {_NS_FILTER} AND p.prokind IN ('f', 'p', 'a')
   AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = 'pg_proc'::regclass AND x.objid = p.oid
                   AND x.deptype IN ('e', 'i'))
UNION ALL
SELECT 'trigger', {_key('n.nspname', 'c.relname')} || '.' || t.tgname, {_key('n.nspname', 'c.relname')},
       pg_get_triggerdef(t.oid) || CASE WHEN t.tgenabled <> 'O' THEN ' ENABLED ' || t.tgenabled::text ELSE '' END
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_NS_FILTER} AND NOT t.tgisinternal AND NOT c.relispartition
UNION ALL
SELECT 'comment', target, NULL, description FROM ({_COMMENTS_SQL.replace("format('COMMENT ON %%s IS %%L', target, description)", "description")}) c
UNION ALL
SELECT 'operator', o.oid::regoperator::text, NULL,
       concat_ws(' ', o.oprcode::regproc::text, o.oprcom::regoperator::text, o.oprnegate::regoperator::text,
                 o.oprrest::regproc::text, o.oprjoin::regproc::text, o.oprcanhash, o.oprcanmerge)
  FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
 WHERE {_NS_FILTER} AND o.oid >= {_FIRST_USER_OID} AND {_NOT_EXT.format(cat='pg_operator', oid='o.oid')}
"""


def read_catalogue(conn: Connection, names: list[str]) -> list[list[Any]]:
    """The catalogue of the schemas ``names`` (see _CATALOGUE_SQL), sorted."""
    return sorted([list(r) for r in conn.exec_driver_sql(_CATALOGUE_SQL, {"names": names})],
                  key=lambda r: (r[0], r[1]))


#: the kinds of objects a full dump records
ALL_KINDS = frozenset({"view", "trigger", "routine"})

#: the catalogue's kinds a dump records only with the kinds of objects it was asked for
_KIND_OF = {"view": "view", "materialized view": "view", "trigger": "trigger", "routine": "routine",
            "operator": "routine", "comment": "routine"}


def dumped_catalogue(rows: list[list[Any]], schema: Schema, kinds: set[str]) -> list[list[Any]]:
    """What of the source's catalogue the backup holds: the tables read (--tables), and views,
    triggers, routines and operators when they were recorded (comments when all of them were)."""
    keys = {t.key for t in schema.tables}
    return [r for r in rows if (r[2] is None or r[2] in keys) and (r[0] != "comment" or kinds >= ALL_KINDS)
            and _KIND_OF.get(r[0], r[0]) in kinds | {
        "schema", "type", "table", "column", "index", "constraint", "sequence"}]


def wanted_catalogue(rows: list[list[Any]], keys: set[str], routines: bool, everything: bool) -> list[list[Any]]:
    """What of the backup's catalogue a restore of the tables ``keys`` makes: their columns,
    indexes, constraints and triggers; the types and schemas; the sequences when every table is
    restored; views, routines and operators when they are (``routines``)."""
    out = []
    for r in rows:
        kind, table = r[0], r[2]
        if table is not None:
            if table in keys and (kind != "trigger" or routines):
                out.append(r)
        elif kind in _KIND_OF:
            if routines:
                out.append(r)
        elif not kind.startswith("sequence") or everything:
            out.append(r)
    return out


def compare_catalogue(want: list[list[Any]], got: list[list[Any]], unchecked_keys: bool = False) -> list[str]:
    """What of ``want`` the target's catalogue ``got`` lacks or holds otherwise, one line each.
    ``unchecked_keys``: foreign keys were left NOT VALID on purpose (the restore's
    enable_ri_check off), which is not a difference."""
    def plain(kind: str, d: Any) -> Any:
        return d[:-len(" NOT VALID")] if unchecked_keys and kind == "constraint" and str(d).endswith(" NOT VALID") \
            and str(d).startswith("FOREIGN KEY") else d

    have = {(r[0], r[1]): plain(r[0], r[3]) for r in got}
    out = []
    for kind, name, _table, definition in ([k, n, t, plain(k, d)] for k, n, t, d in want):
        if (kind, name) not in have:
            out.append(f"{kind} {name} is missing")
        elif kind == "sequence position":
            # at or past the source's: a column's sequence is moved past the rows loaded
            if _position(have[(kind, name)]) < _position(definition):
                out.append(f"sequence {name} stands at {have[(kind, name)]}, before the backup's {definition}")
        elif have[(kind, name)] != definition:
            out.append(f"{kind} {name} differs: {_short(have[(kind, name)])} instead of {_short(definition)}")
    return out


def _position(v: Any) -> float:
    return float("-inf") if v is None else int(v)


def _short(text: Any) -> str:
    t = " ".join(str(text).split())
    return repr(t if len(t) <= 100 else t[:99] + "…")
