"""SQLAlchemy Inspector → the neutral model."""
from __future__ import annotations

import fnmatch
import logging
import warnings
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .engines.base import Adapter
from .errors import UnreadObject
from .model import Check, Column, ForeignKey, Index, Schema, Table, Unique, neutral_key
from .types import logical_from_sqlalchemy

log = logging.getLogger(__name__)


def matches(key: str, name: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """Include/exclude globs match a table's bare name or its ``schema.name``."""
    include, exclude = list(include), list(exclude)
    hit = lambda pats: any(fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(name, p) for p in pats)  # noqa: E731
    return (not include or hit(include)) and not hit(exclude)


def resolve_schemas(conn: Connection, adapter: Adapter, include: Iterable[str | None] = (),
                    exclude: Iterable[str] = ()) -> tuple[list[str | None], list[str]]:
    """The schemas a dump reads (None: the connection's default one, first) and those of the
    database it leaves out. ``include``/``exclude`` are globs as pg_dump's -n/-N take them (None
    in ``include``: the default schema); no ``include``: every schema the adapter lists
    (``user_schemas``), or the default one where it lists none."""
    default = sa.inspect(conn).default_schema_name
    include, exclude = list(include), list(exclude)
    listing = adapter.user_schemas(conn)
    if listing is None:
        names = list(dict.fromkeys(None if p in (None, default) else p for p in include)) or [None]
        return [s for s in names if s is None or not _hit(s, exclude)], []
    picked = list(listing) if not include else [
        s for s in listing if any(s == default if p is None else _hit(s, [p]) for p in include)]
    if not picked:
        from .errors import DumpError

        raise DumpError(f"no schema matches {', '.join(p or str(default) for p in include)} "
                        f"(the database has {', '.join(listing) or 'none'})")
    picked = [s for s in picked if not _hit(s, exclude)]
    chosen = ([None] if default in picked else []) + sorted(s for s in picked if s != default)
    return chosen, sorted(s for s in listing if s not in picked)


def _hit(name: str, pats: list[str]) -> bool:
    """``name`` is one of ``pats`` or matches one as a glob (a name holding ``[`` or ``*`` names
    itself too)."""
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in pats)


def _type_spelling(t: sa.types.TypeEngine, dialect: sa.Dialect) -> str:
    try:
        return t.compile(dialect=dialect)
    except Exception:   # NullType and friends: keep the repr
        return str(t) if not isinstance(t, sa.types.NullType) else "NULL"


def reflect_schema(conn: Connection, adapter: Adapter, schemas: list[str | None],
                   include: Iterable[str] = (), exclude: Iterable[str] = (),
                   kinds: set[str] | None = None, exclude_schemas: Iterable[str] = ()) -> Schema:
    """The tables (and the objects besides, see Adapter.reflect_extras) of ``schemas`` (globs,
    see resolve_schemas) but ``exclude_schemas``."""
    insp = sa.inspect(conn)
    default = insp.default_schema_name
    out = Schema(engine=adapter.name)
    norm, _ = resolve_schemas(conn, adapter, schemas, exclude_schemas)
    merged: dict[str, list[str]] = {}
    for s in norm:
        children = adapter.partition_children(conn, s)
        hidden = adapter.hidden_tables(conn, s)
        for name in sorted(insp.get_table_names(schema=s)):
            if name in hidden:              # made again by the object it belongs to
                continue
            key = f"{s}.{name}" if s else name
            if name in children:            # its rows are read through the partitioned table
                merged.setdefault(children[name], []).append(key)
                continue
            if not matches(key, name, include, exclude):
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", sa.exc.SAWarning)
                # SQLite: the SQLite adapter's refine_table reads expression indexes itself
                warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
                adapter.prime_reflection(conn, insp, name, s)
                table = _reflect_table(conn, insp, adapter, name, s, default)
                unread = [str(w.message) for w in caught if issubclass(w.category, sa.exc.SAWarning)]
            for w in caught:   # not SQLAlchemy's: as they would have been without the recording
                if not issubclass(w.category, sa.exc.SAWarning):
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            _fail_on_unread(table, adapter.reflect_unread(conn, table, unread) if unread else [],
                            any(w.startswith("Did not recognize type") for w in unread))
            out.tables.append(table)
    for t in out.tables:
        t.partitions = sorted(merged.get(t.key, []))
    adapter.reflect_extras(conn, out, norm, kinds if kinds is not None else {"view", "trigger", "routine"})
    return out


def _fail_on_unread(table: Table, unread: list[str], unknown_types: bool) -> None:
    """What the reflection could not read fails the dump (and ``compare``), naming it: a column
    whose type SQLAlchemy did not know and the adapter did not read either, a column, key or
    index SQLAlchemy skipped."""
    for c in table.columns if unknown_types else ():
        if c.original_type == "NULL" and c.type.kind == "native":
            raise UnreadObject(f"table {table.key!r}, column {c.name!r}: its type could not be read")
    if unread:
        more = f" (and {len(unread) - 1} more)" if len(unread) > 1 else ""
        raise UnreadObject(f"table {table.key!r}: not read in full: {unread[0]!r}{more}; "
                           "exclude the table to dump the rest")


def _ref_schema(s: str | None, default: str | None) -> str | None:
    return None if s in (None, default) else s


def _reflect_table(conn: Connection, insp: Any, adapter: Adapter, name: str, schema: str | None,
                   default: str | None) -> Table:
    t = Table(name=name, schema=schema)
    pk = insp.get_pk_constraint(name, schema=schema) or {}
    t.primary_key = list(pk.get("constrained_columns") or [])
    t.primary_key_name = pk.get("name")
    for info in insp.get_columns(name, schema=schema):
        original = _type_spelling(info["type"], adapter.dialect)
        col = Column(
            name=info["name"],
            type=logical_from_sqlalchemy(info["type"], original),
            original_type=original,
            nullable=bool(info.get("nullable", True)),
            default=None if info.get("default") is None else str(info["default"]),
            comment=info.get("comment"),
            computed=(info.get("computed") or {}).get("sqltext"),
        )
        if col.computed is not None:
            col.computed = str(col.computed)
            col.computed_stored = (info.get("computed") or {}).get("persisted")
        adapter.refine_column(col, info, t)
        t.columns.append(col)
    for fk in _foreign_keys(conn, insp, adapter, name, schema):
        opts = fk.get("options") or {}
        t.foreign_keys.append(ForeignKey(
            name=fk.get("name"), columns=list(fk["constrained_columns"]), ref_table=fk["referred_table"],
            ref_columns=list(fk["referred_columns"]), ref_schema=_ref_schema(fk.get("referred_schema"), default),
            on_delete=opts.get("ondelete"), on_update=opts.get("onupdate"),
            deferrable=opts.get("deferrable"), initially=opts.get("initially")))
    unique_names = set()
    uniques = insp.get_unique_constraints(name, schema=schema)
    indexes = insp.get_indexes(name, schema=schema)
    for u in uniques:
        t.uniques.append(Unique(u.get("name"), list(u["column_names"])))
        unique_names.add(u.get("name"))
    try:
        checks = insp.get_check_constraints(name, schema=schema)
    except NotImplementedError:
        checks = []
    for c in checks:
        t.checks.append(Check(c.get("name"), str(c["sqltext"])))
    pk_cols = t.primary_key
    for ix in indexes:
        if ix.get("duplicates_constraint") or ix.get("name") in unique_names and ix.get("unique"):
            continue
        cols = list(ix.get("column_names") or [])
        exprs = ix.get("expressions")
        options = _index_options(ix)
        if any(c is None for c in cols):
            t.indexes.append(Index(ix.get("name"), [], bool(ix.get("unique")), [str(e) for e in exprs or []],
                                   options))
            continue
        if ix.get("unique") and cols == pk_cols and not options and adapter.indexes_list_primary_key:
            continue
        t.indexes.append(Index(ix.get("name"), cols, bool(ix.get("unique")), None, options))
    try:
        t.comment = (insp.get_table_comment(name, schema=schema) or {}).get("text")
    except NotImplementedError:
        t.comment = None
    try:
        t.options = {neutral_key(k): v for k, v in (insp.get_table_options(name, schema=schema) or {}).items()
                     if isinstance(v, (str, int, float, bool))}
    except NotImplementedError:
        t.options = {}
    adapter.refine_table(t, conn)
    return t


def _foreign_keys(conn: Connection, insp: Any, adapter: Adapter, name: str, schema: str | None) -> list[dict[str, Any]]:
    """SQLAlchemy's reading of the table's foreign keys; where it fails (PostgreSQL: a name
    holding a line break), the adapter's own."""
    try:
        return insp.get_foreign_keys(name, schema=schema)
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        fks = adapter.foreign_keys(conn, name, schema)
        if fks is None:
            raise UnreadObject(f"table {adapter.qtable_value(name, schema)}: its foreign keys could not be read "
                               f"({type(exc).__name__}: {exc})") from exc
        return fks


def _index_options(ix: dict[str, Any]) -> dict[str, Any] | None:
    """What SQLAlchemy reflects of an index beyond its columns (its dialect's options, such as a
    partial index's WHERE, the access method, INCLUDE columns, operator classes, prefix lengths,
    FULLTEXT; and the columns' sort order), as JSON values; None when there is nothing."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)

    out = {neutral_key(k): plain(v) for k, v in (ix.get("dialect_options") or {}).items()
           if v not in (None, [], {}, "")}
    if ix.get("column_sorting"):
        out["column_sorting"] = plain(ix["column_sorting"])
    return out or None
