"""Model + target engine → a restore plan: SQLAlchemy tables, type moves, names, losses.

The plan is computed before anything is touched, so ``restore --plan`` and the restore itself
show the same DDL and the same lossiness report.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable

from .engines.base import Adapter, adapter_class
from .errors import ConfigError, RestoreRefused
from .mapping import ColumnMove, _ident, move
from .model import Column, LogicalType, Schema, Table, partition_head
from .values import Converter


@dataclass
class ColumnPlan:
    source: Column
    target: LogicalType
    sa_type: Any
    move: ColumnMove
    writer: Converter
    loaded: bool = True            # False: a generated column, the target computes it


@dataclass
class TablePlan:
    table: Table
    name: str                      # the name on the target (shortened when over the engine's limit)
    schema: str | None
    columns: list[ColumnPlan]
    sa_table: sa.Table
    uniques: list[sa.UniqueConstraint] = field(default_factory=list)
    checks: list[sa.CheckConstraint] = field(default_factory=list)
    indexes: list[sa.Index] = field(default_factory=list)
    foreign_keys: list[sa.ForeignKeyConstraint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    identity: bool = False         # the load writes explicit values into an identity column
    deferred: list[AddConstraint] = field(default_factory=list)   # uniques and checks, after the load
    after_create: list[str] = field(default_factory=list)         # right after CREATE TABLE (partitions)
    partitioned: bool = False      # made again as a partitioned table (PostgreSQL, same engine)
    after_load: list[tuple[str, str]] = field(default_factory=list)  # (label, SQL) with the indexes
    last: list[tuple[str, str]] = field(default_factory=list)  # (label, SQL) after every index and key
    #: lossy columns (index, ColumnPlan) whose values the load checks, batch by batch, before they
    #: go in (restore.guard_losses: the losses were not counted beforehand)
    loss_guard: list[tuple[int, Any]] = field(default_factory=list)
    #: the statement that made the table in the source, run instead of one made from the model
    #: (same engine, ``Adapter.replays_sql``; the statements of its indexes are in ``after_load``)
    create_sql: str | None = None

    @property
    def target_table(self) -> Table:
        """The source table's model under its target names (for adapters acting on the target)."""
        from dataclasses import replace

        cols = [replace(c, name=sc.name) for c, sc in zip(self.table.columns, self.sa_table.columns)]
        return replace(self.table, name=self.name, schema=self.schema, columns=cols)

    @property
    def loaded_columns(self) -> list[ColumnPlan]:
        return [c for c in self.columns if c.loaded]


@dataclass
class Plan:
    same_engine: bool
    tables: list[TablePlan]
    metadata: sa.MetaData
    notes: list[str] = field(default_factory=list)

    def lossy_columns(self) -> list[tuple[TablePlan, ColumnPlan]]:
        return [(t, c) for t in self.tables for c in t.columns if c.move.losses]


def fit_name(name: str, limit: int, chars: bool = False) -> str:
    """A name within ``limit`` bytes (``chars``: characters); longer names keep a readable head
    and a hash tail."""
    size = len if chars else (lambda x: len(x.encode("utf-8")))
    if size(name) <= limit:
        return name
    tail = "_" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    head = name
    while size(head + tail) > limit:
        head = head[:-1]
    return head + tail


def target_name(name: str, adapter: Adapter) -> tuple[str, str | None]:
    """A source name as the target engine can hold it, and why it changed (None: it did not):
    the plan notes each change before anything is written."""
    held, why = adapter.held_name(name)
    fitted = fit_name(held, adapter.max_identifier, adapter.identifier_chars)
    if fitted != held:
        unit = "characters" if adapter.identifier_chars else "bytes"
        why = f"over {adapter.max_identifier} {unit}" + (f"; {why}" if why else "")
    return fitted, why


_KIND_WORDS = {"index": "index", "key": "key", "foreign_key": "foreign key", "check": "check constraint"}


class _Names:
    """Index and constraint names, each unique where the engine needs it (``Adapter.name_spaces``):
    a name taken already there gets a number; a wanted name that changes is noted."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.used: set[tuple[str, str | None, str | None, str]] = set()

    def _keys(self, kinds: tuple[tuple[str, str], ...], schema: str | None, table: str,
              name: str) -> list[tuple[str, str | None, str | None, str]]:
        return [(space, schema, table if per == "table" else None, name.lower()) for space, per in kinds]

    def table(self, schema: str | None, name: str) -> None:
        """Reserve a table's name where the engine's index or constraint names share it."""
        if self.adapter.table_name_space:
            self.used.add((self.adapter.table_name_space, schema, None, name.lower()))

    def take(self, wanted: str | None, fallback: str, kind: str, schema: str | None, table: str,
             notes: list[str] | None = None) -> str:
        kinds = self.adapter.name_spaces[kind]
        (name, why), n = target_name(wanted or fallback, self.adapter), 1
        while any(k in self.used for k in self._keys(kinds, schema, table, name)):
            n += 1
            name, _ = target_name(f"{wanted or fallback}_{n}", self.adapter)
        self.used.update(self._keys(kinds, schema, table, name))
        if wanted and name != wanted and notes is not None:
            why = "the name is taken" if n > 1 else why
            notes.append(f"{_KIND_WORDS[kind]} {wanted!r} restored as {name!r} ({why} in {self.adapter.name})")
        return name


_PG_CAST = re.compile(r"::\s*(?:\"[^\"]+\"|[a-zA-Z_][\w ]*?)(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])?(?=[\s),]|$)")


def portable_check(sqltext: str, src_engine: str, adapter: Adapter, names: dict[str, str] | None = None) -> str:
    """Best-effort translation of a check expression to another engine's quoting (as plain SQL
    text: SQLAlchemy doubles a '%' in it when it compiles the DDL); ``names``: the columns the
    target holds under other names."""
    names = names or {}
    s = _PG_CAST.sub("", sqltext)
    quote = "`" if src_engine == "mysql" else '"'
    if src_engine == "mssql":
        s = re.sub(r"\[((?:[^\]]|\]\])+)\]",
                   lambda m: adapter.qtable_value(_renamed(m.group(1).replace("]]", "]"), names), None), s)
    else:
        s = re.sub(re.escape(quote) + r"((?:[^" + quote + r"]|" + quote * 2 + r")+)" + re.escape(quote),
                   lambda m: adapter.qtable_value(_renamed(m.group(1).replace(quote * 2, quote), names), None), s)
    return s


def _renamed(name: str, names: dict[str, str]) -> str:
    return names.get(name, name)


#: bytes a key part of each logical kind may take on the target (MySQL's largest: BIGINT 8,
#: DATETIME(6) 8, DECIMAL(65) 30, a UUID as CHAR(36) in utf8mb4 144); other kinds 32
_KEY_PART_BYTES = {"integer": 8, "boolean": 1, "float": 8, "date": 3, "time": 6, "datetime": 8, "enum": 2,
                   "uuid": 144}


def _key_chars(table: Table, adapter: Adapter) -> dict[str, int]:
    """Per column: the longest text it may hold when it is part of a key on this engine (the
    key's text columns share what its other columns leave of the engine's key length)."""
    if adapter.key_text_chars is None:
        return {}
    textish = {c.name for c in table.columns if c.type.kind in ("string", "text", "char", "native", "interval",
                                                               "binary")}
    kinds = {c.name: c.type.kind for c in table.columns}
    keys = [table.primary_key] + [u.columns for u in table.uniques] + [i.columns for i in table.indexes]
    keys += [fk.columns for fk in table.foreign_keys]
    out: dict[str, int] = {}
    for cols in keys:
        tcols = [c for c in cols if c in textish]
        if not tcols:
            continue
        fixed = sum(_KEY_PART_BYTES.get(kinds.get(c, ""), 32) for c in cols if c not in textish)
        share = max(32, (adapter.key_text_chars - -(-fixed // adapter.key_char_bytes)) // len(tcols))
        for c in tcols:
            out[c] = min(out.get(c, share), share)
    return out


def build_plan(schema: Schema, tables: list[Table], adapter: Adapter, *, skip_checks: bool = False) -> Plan:
    same = schema.engine == adapter.name
    md = sa.MetaData()
    names = _Names(adapter)
    plans: list[TablePlan] = []
    by_key: dict[str, TablePlan] = {}
    target = {t.key: table_target(t, adapter, same) for t in tables}
    notes = [] if same else _refuse_name_collisions(tables, target, adapter)
    # Foreign keys referring to other tables need their key columns' types first (MySQL keys).
    referenced: dict[str, set[str]] = {}
    for t in tables:
        for fk in t.foreign_keys:
            rk = f"{fk.ref_schema}.{fk.ref_table}" if fk.ref_schema else fk.ref_table
            referenced.setdefault(rk, set()).update(fk.ref_columns)
    for t in tables:
        names.table(*target[t.key][:2])
    for t in tables:
        plan = _table_plan(t, schema, adapter, same, md, names, target[t.key], skip_checks,
                           referenced.get(t.key, set()))
        plans.append(plan)
        by_key[t.key] = plan
    for plan in plans:
        _add_foreign_keys(plan, by_key, names, adapter)
        if same and adapter.replays_sql:
            _replay(plan, by_key, skip_checks)
    notes += [] if same else _collation_notes(schema.engine, tables, adapter)
    if schema.routines and not same:
        kinds = sorted({r.kind for r in schema.routines})
        notes.append(f"{len(schema.routines)} {'/'.join(kinds)}(s) are {schema.engine} SQL and are not "
                     f"restored into {adapter.name}")
    return Plan(same, plans, md, notes)


_COLLATE = re.compile(r'\bCOLLATE\s+(?:"((?:[^"]|"")+)"|`((?:[^`]|``)+)`|\[([^\]]+)\]|([\w.@-]+))', re.I)
_TEXT_KINDS = ("string", "text", "char")


def source_collation(t: Table, c: Column, engine: str) -> str | None:
    """The collation a text column of ``engine`` compares with, as its type names it (SQLAlchemy
    reads it into the type on every engine), else its MySQL table's; None: the engine's default."""
    m = _COLLATE.search(c.original_type or "")
    if m:
        return next(g for g in m.groups() if g is not None)
    return str(t.options["mysql_collate"]) if engine == "mysql" and t.options.get("mysql_collate") else None


def case_insensitive(collation: str | None, engine: str) -> bool | None:
    """Whether ``collation`` of ``engine`` ignores case (None: not known from its name)."""
    if collation is None:
        return None
    if engine == "mysql":
        return collation.lower().endswith("_ci")
    if engine == "mssql":
        return "_CI" in collation.upper()
    if engine == "sqlite":
        return collation.upper() == "NOCASE"
    return False if engine == "postgresql" and collation in ("C", "POSIX", "default", "ucs_basic") else None


def _collation_notes(engine: str, tables: list[Table], adapter: Adapter) -> list[str]:
    """Collations are each engine's own and are not carried across: one note when the move
    changes whether text compares case-insensitively (lookups, ordering and unique keys)."""
    try:
        src_default = adapter_class(engine).default_case_insensitive
    except ConfigError:
        return []
    flip = []     # (table, collation) of the text columns that compare case otherwise on the target
    for t in tables:
        for c in t.columns:
            if c.type.kind in _TEXT_KINDS:
                coll = source_collation(t, c, engine)
                ci = case_insensitive(coll, engine)
                if (src_default if ci is None else ci) != adapter.default_case_insensitive:
                    flip.append((t.key, coll or "the default"))
    out = []
    if flip:
        n_tables = len({k for k, _ in flip})
        names = sorted({x for _, x in flip})
        named = ", ".join(names[:4]) + (" …" if len(names) > 4 else "")
        if adapter.default_case_insensitive:
            out.append(f"text in {len(flip)} column(s) of {n_tables} table(s) compares case-sensitively in the "
                       f"{engine} source ({named}); {adapter.name} usually compares it case-insensitively (columns "
                       "take the target database's default collation): a unique key holding values that differ "
                       "only in case fails the restore, and lookups and ordering change")
        else:
            out.append(f"text in {len(flip)} column(s) of {n_tables} table(s) compares case-insensitively in the "
                       f"{engine} source ({named}); {adapter.name} compares it case-sensitively (columns take the "
                       "target database's default collation): lookups, ordering and unique keys that relied on "
                       "that behave differently")
    return out


def table_target(t: Table, adapter: Adapter, same: bool) -> tuple[str | None, str, str | None]:
    """(schema, name, why the name changed) of ``t`` in the target. Into another engine whose
    schemas are not a database's namespaces (MySQL/MariaDB, where a schema is a database;
    SQLite), a table of a schema other than the source's default is named ``schema_name`` in the
    target's database."""
    if same:
        return t.schema, t.name, None
    if t.schema and adapter.schemas_as_prefix:
        return (None, *target_name(f"{t.schema}_{t.name}", adapter))
    return ((t.schema if adapter.supports_schemas else None), *target_name(t.name, adapter))


def _refuse_name_collisions(tables: list[Table], target: dict[str, tuple[str | None, str, str | None]],
                            adapter: Adapter) -> list[str]:
    """Two tables that would take one name in the target refuse the restore; the notes say how
    schemas are mapped."""
    seen: dict[tuple[str | None, str], str] = {}
    for t in tables:
        s, n, _ = target[t.key]
        other = seen.setdefault((s, n.lower()), t.key)
        if other != t.key:
            raise RestoreRefused(f"tables {other} and {t.key} would both be {n} in {adapter.name}; restore them "
                                 "apart with --tables/--exclude-tables")
    moved = sorted({t.schema for t in tables if t.schema and target[t.key][0] is None})
    return [f"schema {s}: its tables are named {s}_<table> ({adapter.name} keeps no schemas in a database)"
            for s in moved]


def _table_plan(t: Table, schema: Schema, adapter: Adapter, same: bool, md: sa.MetaData, names: _Names,
                target: tuple[str | None, str, str | None], skip_checks: bool, referenced: set[str]) -> TablePlan:
    tschema, name, why = target
    notes: list[str] = []
    if t.partitions and not (same and t.partition_by):
        notes.append(f"partitioned in the source ({len(t.partitions)} partitions: "
                     f"{', '.join(t.partitions[:5])}{' …' if len(t.partitions) > 5 else ''}): "
                     "restored as one table holding all their rows")
    own = [(p["name"], kind, x) for p in t.partition_tree for kind in ("constraints", "indexes")
           for x in p.get(kind) or ()]
    if own and not (same and t.partition_by):
        notes.append(f"the partitions' own indexes and constraints ({len(own)}: "
                     f"{', '.join(x[2]['name'] + ' on ' + x[0] for x in own[:5])}{' …' if len(own) > 5 else ''}) "
                     "are not kept")
    elif own:
        notes += [f"index {x['name']} on partition {pname}: its definition could not be read; not restored"
                  for pname, kind, x in own if kind == "indexes" and not x.get("sql")]
    if name != t.name:
        notes.append(f"table {t.name!r} renamed to {name!r} ({why} in {adapter.name})")
    if t.virtual and not same:
        fulltext = " (a FULLTEXT index over its text columns takes its place)" \
            if t.virtual.startswith("fts") and adapter.fulltext_index else ""
        notes.append(f"a {t.virtual} virtual table in the source: restored as an ordinary table of its columns "
                     f"({', '.join(c.name for c in t.columns)}); what the module does (full-text or spatial "
                     f"search) is not kept{fulltext}")
    try:
        notes += adapter_class(schema.engine).source_notes(t, same)
    except ConfigError:
        pass
    kc = _key_chars(t, adapter)
    if adapter.key_text_chars is not None:
        for c in referenced:
            if c in {x.name for x in t.columns if x.type.kind in ("string", "text", "char", "binary")}:
                kc[c] = min(kc.get(c, adapter.key_text_chars), adapter.key_text_chars)
    cols: list[ColumnPlan] = []
    sa_cols: list[sa.Column] = []
    identity = False
    taken = set() if same else {c.name.lower() for c in t.columns if target_name(c.name, adapter)[1] is None}
    for c in t.columns:
        cname = _column_name(c.name, adapter, same, taken, notes)
        if same:
            target, sa_type = c.type, adapter.exact_type(c)
            mv = ColumnMove(c.type, _ident)
        else:
            target, sa_type = adapter.target_type(c, kc.get(c.name))
            mv = move(c.type, target)
            adapter.add_losses(mv, c.type)
            if mv.change:
                notes.append(f"column {c.name!r}: {mv.change}")
        kw: dict[str, Any] = {"nullable": c.nullable and (same or c.name not in t.primary_key), "comment": c.comment, "quote": True,
                              "autoincrement": False}
        default = adapter.server_default(c, same)
        if c.default and default is None and not c.autoincrement and not c.computed:
            notes.append(f"column {c.name!r}: default {c.default} is engine-specific and was not kept")
        if default is not None and not c.computed:
            kw["server_default"] = sa.literal_column(default)
        args: list[Any] = []
        loaded = True
        if c.computed is not None:
            if same:
                args.append(sa.Computed(sa.literal_column(c.computed), persisted=c.computed_stored))
                loaded = False
            else:
                notes.append(f"column {c.name!r}: generated column restored as a plain column")
        auto = c.autoincrement and c.type.kind == "integer" and c.name in t.primary_key
        alt = adapter.generated_column(t, c, schema) if c.autoincrement and c.type.kind == "integer" and not same \
            else None
        if alt is not None:      # the target's AUTO_INCREMENT/identity cannot generate it: its own way
            auto = False
            if alt[0]:
                kw["server_default"] = sa.literal_column(alt[0])
            notes.append(f"column {c.name!r}: {alt[1]}")
        if auto and len(t.primary_key) > 1 and not adapter.composite_key_autoincrement:
            auto = False
            notes.append(f"column {c.name!r}: restored without generating its values ({adapter.name} "
                         "generates none in a primary key of several columns)")
        if not auto and same and c.identity and "always" in c.identity and c.type.kind == "integer":
            # an identity column outside the primary key (PostgreSQL): the same identity
            args.append(sa.Identity(always=bool(c.identity.get("always")), start=c.identity.get("start"),
                                    increment=c.identity.get("increment")))
            identity = True
        if auto:
            identity = True
            if same and c.identity and "always" in c.identity:
                args.append(sa.Identity(always=bool(c.identity.get("always")), start=c.identity.get("start"),
                                        increment=c.identity.get("increment")))
            elif same and c.sequence:
                pass   # the verbatim nextval() default and the recreated sequence do it
            elif adapter.identity_columns and target.kind == "integer":
                args.append(sa.Identity(always=False, start=1))
            else:
                kw["autoincrement"] = True
        if any(isinstance(a, sa.Identity) for a in args):
            kw["autoincrement"] = True
        sa_cols.append(sa.Column(cname, sa_type, *args, **kw))
        cols.append(ColumnPlan(c, target, sa_type, mv, adapter.writer(target), loaded))
    colmap = {c.name: sa_cols[i].name for i, c in enumerate(t.columns)}
    table_args: list[Any] = []
    if t.primary_key:
        pk_name = names.take(t.primary_key_name, f"pk_{name}", "key", tschema, name, notes) \
            if t.primary_key_name and adapter.named_primary_keys else None
        table_args.append(sa.PrimaryKeyConstraint(*[colmap[c] for c in t.primary_key], name=pk_name))
    kwargs: dict[str, Any] = {"comment": t.comment, "quote": True, "schema": _one_schema(tschema)}
    kwargs.update(adapter.table_options(t))
    if same:
        kwargs.update(_dialect_kw(adapter, {k: v for k, v in t.options.items() if k in adapter.kept_table_options
                                            and k not in adapter.table_options_by_sql}))
    notes += _partition_clause_notes(t, adapter, same, kwargs)
    sa_table = sa.Table(name, md, *sa_cols, *table_args, **kwargs)
    plan = TablePlan(t, name, tschema, cols, sa_table, notes=notes, identity=identity)
    if same:
        plan.after_create = adapter.table_option_sql(t, adapter.qtable(name, tschema))
        plan.last = adapter.table_last_sql(t, name, tschema)
    if same and t.partition_by:
        plan.after_create += adapter.partition_sql(t, name, tschema)
        plan.partitioned = True
    desc = [c for c in t.primary_key if "desc" in (t.primary_key_sorting.get(c) or ())]
    if desc and same and adapter.primary_key_sorting_in_create:
        sa_table.primary_key.info["desc"] = {colmap[c] for c in desc}
    elif desc:
        sql = adapter.sorted_primary_key_sql(name, tschema, [(colmap[c], c in desc) for c in t.primary_key]) \
            if same else None
        if sql:
            plan.after_create.append(sql)
        else:
            notes.append(f"primary key: the descending order of {', '.join(desc)} is not kept")
    for nc in t.native_constraints:
        if same:
            plan.after_load.append((f"table {t.key}: constraint {nc['name']}",
                                    f"ALTER TABLE {adapter.qtable(name, tschema)} ADD CONSTRAINT "
                                    f"{adapter.q(nc['name'])} {adapter.literal_sql(nc['sql'])}"))
        else:
            plan.notes.append(f"constraint {nc['name']} ({nc['sql']}) is engine-specific and was not kept")
    if t.inherited:
        plan.notes.append("other tables inherit from it in the source: it holds its own rows, and each of "
                          "them is restored as a table of its own")
    for u in t.uniques:
        plan.uniques.append(sa.UniqueConstraint(*[colmap[c] for c in u.columns],
                                                name=names.take(u.name, f"uq_{name}_{'_'.join(u.columns)}", "key",
                                                                tschema, name, notes)))
    pending_not_valid: list[tuple[str, str]] = []
    if not skip_checks:
        for i, chk in enumerate(t.checks):
            text = chk.sqltext if same else portable_check(chk.sqltext, schema.engine, adapter, colmap)
            if chk.not_valid:
                # NOT VALID in the source: rows from before it may break it
                if same and adapter.not_valid_constraints:
                    cname = names.take(chk.name, f"ck_{name}_{i + 1}", "check", tschema, name, notes)
                    pending_not_valid.append((f"table {t.key}: check {cname} (NOT VALID)",
                                              f"ALTER TABLE {adapter.qtable(name, tschema)} ADD CONSTRAINT "
                                              f"{adapter.q(cname)} CHECK ({adapter.literal_sql(text)}) NOT VALID"))
                else:
                    notes.append(f"check {chk.name or i + 1} was NOT VALID in the source (rows may not satisfy "
                                 "it) and was not kept")
                continue
            if not same and text != chk.sqltext:
                notes.append(f"check {chk.name or i + 1}: translated to {text}")
            cname = names.take(chk.name, f"ck_{name}_{i + 1}", "check", tschema, name, notes)
            plan.checks.append(sa.CheckConstraint(sa.literal_column(text), name=cname))
    elif t.checks:
        notes.append(f"{len(t.checks)} check constraint(s) skipped (--skip-checks)")
    plan.after_load = pending_not_valid + plan.after_load
    for ix in t.indexes:
        opts = dict(ix.options or {})
        if not same:
            why = _engine_specific_index(opts)
            if why:
                notes.append(f"index {ix.name} is engine-specific ({why}) and was not kept")
                continue
        iname = names.take(ix.name, f"ix_{name}_{'_'.join(ix.columns)}", "index", tschema, name, notes)
        if ix.expressions:
            if same:
                plan.indexes.append(sa.Index(iname, *_sorted_elements([sa.literal_column(e) for e in ix.expressions],
                                                                      ix.expressions, opts),
                                             unique=ix.unique, _table=sa_table,
                                             **_dialect_kw(adapter, _index_kwargs(opts))))
            else:
                notes.append(f"expression index {ix.name} is engine-specific and was not kept")
            continue
        cols = [sa_table.c[colmap[c]] for c in ix.columns]
        if same:
            kw = _index_kwargs(opts)
            if kw.get("mysql_length") and opts.get("column_sorting"):
                plan.indexes.append(sa.Index(iname, *_prefixed_elements(cols, ix.columns, opts), unique=ix.unique,
                                             _table=sa_table, **_dialect_kw(adapter, {k: v for k, v in kw.items()
                                                                                     if k != "mysql_length"})))
            else:
                plan.indexes.append(sa.Index(iname, *_sorted_elements(cols, ix.columns, opts), unique=ix.unique,
                                             **_dialect_kw(adapter, kw)))
            if opts.get("mysql_comment"):       # written by the MySQL adapter's CREATE INDEX
                plan.indexes[-1].info["comment"] = opts["mysql_comment"]
        else:
            nulls = [f"{n} {' '.join(x.upper().replace('_', ' ') for x in how if x.startswith('nulls_'))}"
                     for n, how in (opts.get("column_sorting") or {}).items()
                     if any(x.startswith("nulls_") for x in how)]
            if nulls:
                notes.append(f"index {ix.name}: {', '.join(nulls)} is not kept (the target orders NULLs its "
                             "own way)")
            for n, coll in (opts.get("column_collation") or {}).items():
                notes.append(f"index {ix.name or iname}: {n} COLLATE {coll} is not kept (collations are the "
                             "engine's own)")
            plan.indexes.append(sa.Index(iname, *_sorted_elements(cols, ix.columns, opts, portable=True),
                                         unique=ix.unique))
    if t.virtual and t.virtual.startswith("fts") and not same and adapter.fulltext_index:
        text = [sa_table.c[colmap[c.name]] for c in t.columns if c.name not in t.primary_key]
        plan.indexes.append(sa.Index(names.take(None, f"ft_{name}", "index", tschema, name), *text,
                                     **_dialect_kw(adapter, dict(adapter.fulltext_index))))
    for c in plan.uniques + plan.checks:
        sa_table.append_constraint(c)
    if not adapter.inline_constraints:
        # AddConstraint marks its constraint so that CREATE TABLE leaves it out: added after the load.
        plan.deferred = [AddConstraint(c) for c in plan.uniques + plan.checks]
        if adapter.primary_key_after_load and t.primary_key:
            plan.deferred.insert(0, AddConstraint(sa_table.primary_key))
    return plan


def _replay(plan: TablePlan, by_key: dict[str, TablePlan], skip_checks: bool) -> None:
    """Same engine (SQLite): the indexes made by the statements that made them in the source,
    after the load, and the table by its own. Not the table where that statement would make
    more than the plan says: checks to skip, or a foreign key to (or an FTS table's text in) a
    table this restore does not make (the model's table is made instead, without them)."""
    t = plan.table
    if t.index_sql:
        plan.after_load = [(f"table {t.key}: index {name}", sql) for name, sql in t.index_sql.items()] \
            + plan.after_load
        # same engine: the plan holds one index for each of the source's, in its order
        plan.indexes = [ix for ix, src in zip(plan.indexes, t.indexes) if src.name not in t.index_sql]
    if not t.create_sql or (skip_checks and t.checks):
        return
    needs = [f"{fk.ref_schema}.{fk.ref_table}" if fk.ref_schema else fk.ref_table for fk in t.foreign_keys]
    content = t.options.get("sqlite_content")     # an FTS table reads its text from that table
    if any(k not in by_key for k in needs) or (content and content not in by_key):
        if content and content not in by_key:
            plan.notes.append(f"a {t.virtual} table reading its text from {content}, which is not restored: "
                              "made as an ordinary table of its columns")
        return
    plan.create_sql = t.create_sql
    plan.indexes = []


def _one_schema(schema: str | None) -> str | None:
    """A schema name SQLAlchemy does not split at a '.' (SQL Server reads ``a.b`` as database
    and schema)."""
    return sa.sql.quoted_name(schema, quote=True) if schema and "." in schema else schema


def _column_name(name: str, adapter: Adapter, same: bool, taken: set[str], notes: list[str]) -> str:
    """A column's name on the target: a name the target holds as it is was reserved in ``taken``;
    a changed one that meets another gets a number (each change noted)."""
    cname, why = (name, None) if same else target_name(name, adapter)
    if why is None:
        return cname
    n = 1
    while cname.lower() in taken:
        n += 1
        cname = target_name(f"{name.rstrip(' ')}_{n}", adapter)[0]
    if n > 1:
        why += f"; {target_name(name, adapter)[0]!r} is taken"
    taken.add(cname.lower())
    notes.append(f"column {name!r} renamed to {cname!r} ({why} in {adapter.name})")
    return cname


def _partition_clause_notes(t: Table, adapter: Adapter, same: bool, kwargs: dict[str, Any]) -> list[str]:
    """A MySQL/MariaDB table's partitioning (Table.partition_clause): into the same engine made
    again with the table (its options added to ``kwargs``), elsewhere one table and a note."""
    # a backup from before partition_clause holds only SQLAlchemy's reading of it, in the options
    old = t.options.get("mysql_partition_by") or t.options.get("mariadb_partition_by")
    if not t.partition_clause and not old:
        return []
    head = partition_head(t.partition_clause) if t.partition_clause else f"PARTITION BY {str(old).strip()}"
    if not same:
        return [f"partitioned in the source ({head}): restored as one table holding all the rows of its "
                "partitions"]
    if not t.partition_clause:
        return [f"partitioned in the source ({head}): restored as one table, without partitions (the backup "
                "does not hold its partitions' definitions)"]
    options, why = adapter.partition_clause_options(t.partition_clause)
    kwargs.update(options)
    return [f"partitioned in the source ({head}): restored as one table, without partitions ({why})"] if why else []


def _engine_specific_index(opts: dict[str, Any]) -> str | None:
    """Why an index cannot be made on another engine (None: it can, as a plain index): a
    partial index (made whole it would refuse rows, or allow others, that its WHERE does not),
    another access method than a B-tree, a FULLTEXT or SPATIAL index."""
    for k, v in opts.items():
        if k.endswith("_where"):
            return f"partial: WHERE {v}"
    using = str(opts.get("postgresql_using") or opts.get("mysql_using") or "btree").lower()
    if using != "btree":
        return f"USING {using}"
    if opts.get("mysql_prefix"):
        return str(opts["mysql_prefix"])
    return None


def _dialect_kw(adapter: Adapter, kw: dict[str, Any]) -> dict[str, Any]:
    """Options as the manifest names them (``mysql_…``, whichever of SQLAlchemy's MySQL and
    MariaDB dialects read them) as the target's dialect takes them: a ``mariadb://`` engine
    reads only ``mariadb_…`` (and would drop the rest without a word)."""
    if adapter.dialect.name != "mariadb":
        return kw
    return {("mariadb_" + k[len("mysql_"):] if k.startswith("mysql_") else k): v for k, v in kw.items()}


def _index_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    """The reflected dialect options of an index, as sa.Index takes them (same engine): a WHERE
    as SQL text; a tablespace left out (the target may have none of that name)."""
    out: dict[str, Any] = {}
    for k, v in opts.items():
        if k in ("column_sorting", "column_collation", "mysql_comment") or k.endswith("_tablespace"):
            continue
        out[k] = sa.literal_column(v) if k.endswith("_where") else v
    return out


def _sorted_elements(elements: list[Any], names: list[str], opts: dict[str, Any],
                     portable: bool = False) -> list[Any]:
    """Each index element with its reflected sort order (DESC, NULLS FIRST/LAST); ``portable``
    (another engine): DESC only, which every target takes."""
    sorting = opts.get("column_sorting") or {}
    collation = {} if portable else opts.get("column_collation") or {}
    kept = ("desc",) if portable else ("desc", "asc", "nulls_first", "nulls_last")
    out = []
    for el, n in zip(elements, names):
        if n in collation:               # SQLite: the index's own COLLATE (same engine)
            el = sa.collate(el, collation[n])
        for how in sorting.get(n) or ():
            if how in kept:
                el = getattr(el, how)()
        out.append(el)
    return out


def _prefixed_elements(cols: list[sa.Column], names: list[str], opts: dict[str, Any]) -> list[Any]:
    """MySQL: the parts of an index with prefix lengths and a DESC part as SQL text (the quoted
    name, the length, DESC: ``b(10) DESC``), as SQLAlchemy's ``mysql_length`` takes only plain
    columns."""
    length = opts.get("mysql_length") or {}
    sorting = opts.get("column_sorting") or {}
    return [sa.literal_column("`" + c.name.replace("`", "``") + "`" + (f"({int(length[n])})" if n in length else "")
                              + (" DESC" if "desc" in (sorting.get(n) or ()) else ""))
            for c, n in zip(cols, names)]


def _add_foreign_keys(plan: TablePlan, by_key: dict[str, TablePlan], names: _Names, adapter: Adapter) -> None:
    t = plan.table
    for fk in t.foreign_keys:
        rk = f"{fk.ref_schema}.{fk.ref_table}" if fk.ref_schema else fk.ref_table
        ref = by_key.get(rk)
        if ref is None:
            plan.notes.append(f"foreign key {fk.name or fk.columns} refers to {rk}, which is not restored: skipped")
            continue
        refcols = [ref.sa_table.c[_colname(ref, c)] for c in fk.ref_columns]
        cons = sa.ForeignKeyConstraint(
            [_colname(plan, c) for c in fk.columns], refcols,
            name=names.take(fk.name, f"fk_{plan.name}_{'_'.join(fk.columns)}", "foreign_key", plan.schema, plan.name,
                            plan.notes),
            ondelete=fk.on_delete, onupdate=fk.on_update,
            **({"deferrable": fk.deferrable, "initially": fk.initially} if adapter.deferrable_constraints else {}))
        cons.info["not_valid"] = fk.not_valid     # added without checking the rows, as it was
        if (fk.deferrable or fk.initially) and not adapter.deferrable_constraints:
            plan.notes.append(f"foreign key {fk.name or fk.columns}: DEFERRABLE is not kept (the target checks "
                              "each statement)")
        plan.sa_table.append_constraint(cons)
        plan.foreign_keys.append(cons)


def _colname(plan: TablePlan, source_name: str) -> str:
    for i, c in enumerate(plan.table.columns):
        if c.name == source_name:
            return plan.sa_table.columns.values()[i].name
    raise KeyError(source_name)


def constraint_label(c: sa.Constraint) -> str:
    """A constraint added after the load, for messages: "unique constraint uq_t_code"."""
    kind = ("primary key" if isinstance(c, sa.PrimaryKeyConstraint)
            else "unique constraint" if isinstance(c, sa.UniqueConstraint) else "check constraint")
    return f"{kind} {c.name}" if c.name else kind


def create_table_sql(plan: TablePlan, adapter: Adapter) -> str:
    if plan.create_sql:
        return plan.create_sql
    inline = plan.foreign_keys if adapter.inline_constraints else []
    return str(CreateTable(plan.sa_table, include_foreign_key_constraints=inline).compile(dialect=adapter.dialect))


def plan_sql(plan: Plan, adapter: Adapter) -> list[str]:
    """Every DDL statement the restore will run, in order (for ``restore --plan``)."""
    d = adapter.dialect
    out = [x for t in plan.tables for x in [create_table_sql(t, adapter).strip() + ";",
                                            *(a + ";" for a in t.after_create)]]
    if not adapter.inline_constraints:
        for t in plan.tables:
            for c in t.deferred:
                out.append(str(c.compile(dialect=d)).strip() + ";")
    for t in plan.tables:
        for ix in t.indexes:
            out.append(str(CreateIndex(ix).compile(dialect=d)).strip() + ";")
        out += [sql + ";" for _, sql in t.after_load]
    if not adapter.inline_constraints:
        for t in plan.tables:
            for fk in t.foreign_keys:
                out.append(str(sa.schema.AddConstraint(fk).compile(dialect=d)).strip() + ";")
    out += [sql + ";" for t in plan.tables for _, sql in t.last]
    return out
