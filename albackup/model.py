"""The engine-neutral schema model. Standard library only.

Everything here serialises to plain JSON-able dicts (``to_dict``/``from_dict``) for the manifest.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Logical type kinds. See docs/FORMAT.md for the value encoding of each.
KINDS = (
    "integer", "decimal", "float", "boolean", "string", "text", "char", "binary",
    "date", "time", "datetime", "interval", "uuid", "json", "enum", "array", "native",
)


@dataclass(frozen=True)
class LogicalType:
    kind: str
    bits: int | None = None          # integer 16/32/64, float 32/64
    unsigned: bool = False           # integer
    length: int | None = None        # string/char/binary (None: unbounded)
    precision: int | None = None     # decimal precision; datetime/time fractional digits
    scale: int | None = None         # decimal scale
    timezone: bool = False           # datetime/time: aware
    values: tuple[str, ...] | None = None   # enum labels
    item: "LogicalType | None" = None       # array element type
    native: str | None = None        # native: the engine's own type name

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown logical type kind {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "kind" or v in (None, False):
                continue
            if f.name == "item":
                v = v.to_dict()
            elif f.name == "values":
                v = list(v)
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LogicalType":
        kw = dict(d)
        if kw.get("item") is not None:
            kw["item"] = cls.from_dict(kw["item"])
        if kw.get("values") is not None:
            kw["values"] = tuple(kw["values"])
        return cls(**kw)

    def describe(self) -> str:
        k = self.kind
        if k == "integer":
            return f"{'u' if self.unsigned else ''}int{self.bits or 64}"
        if k == "float":
            return f"float{self.bits or 64}"
        if k == "decimal":
            return f"decimal({self.precision},{self.scale})" if self.precision else "decimal"
        if k in ("string", "char", "binary"):
            return f"{k}({self.length})" if self.length else k
        if k in ("datetime", "time"):
            tz = " tz" if self.timezone else ""
            p = f"({self.precision})" if self.precision is not None else ""
            return f"{k}{p}{tz}"
        if k == "enum":
            return f"enum({','.join(self.values or ())})"
        if k == "array":
            return f"array<{self.item.describe() if self.item else '?'}>"
        if k == "native":
            return f"native({self.native})"
        return k


@dataclass
class Column:
    name: str
    type: LogicalType
    original_type: str
    nullable: bool = True
    default: str | None = None
    autoincrement: bool = False
    identity: dict[str, Any] | None = None   # {"start":..,"increment":..,"always":..}
    sequence: str | None = None               # PostgreSQL: sequence this column's default draws from
    comment: str | None = None
    computed: str | None = None               # generated column expression (engine SQL)
    computed_stored: bool | None = None       # generated column: stored (True), virtual (False), unknown
    invisible: bool = False                   # MariaDB: INVISIBLE (left out of SELECT *)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v not in (None, False) or k == "nullable"}
        d["type"] = self.type.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Column":
        kw = dict(d)
        kw["type"] = LogicalType.from_dict(kw["type"])
        return cls(**kw)


@dataclass
class ForeignKey:
    name: str | None
    columns: list[str]
    ref_table: str
    ref_columns: list[str]
    ref_schema: str | None = None
    on_delete: str | None = None
    on_update: str | None = None
    deferrable: bool | None = None     # PostgreSQL (and SQLite): DEFERRABLE, INITIALLY DEFERRED/IMMEDIATE
    initially: str | None = None
    not_valid: bool = False            # PostgreSQL NOT VALID: rows from before it may be orphans


@dataclass
class Unique:
    name: str | None
    columns: list[str]


@dataclass
class Check:
    name: str | None
    sqltext: str
    not_valid: bool = False      # PostgreSQL NOT VALID: rows from before it may not satisfy it


def neutral_key(k: str) -> str:
    """A dialect option's name as the manifest keeps it: SQLAlchemy's MariaDB dialect (a
    ``mariadb://`` URL) names MySQL's options ``mariadb_…``; the manifest always ``mysql_…``,
    so a backup reads the same whichever URL took it (ddl._dialect_kw turns them back). Backups
    taken through a ``mariadb://`` URL before the manifest said ``mysql_…`` are read so too."""
    return "mysql_" + k[len("mariadb_"):] if k.startswith("mariadb_") else k


def _neutral(options: dict[str, Any] | None) -> dict[str, Any]:
    return {neutral_key(k): v for k, v in (options or {}).items()}


@dataclass
class Index:
    name: str | None
    columns: list[str]
    unique: bool = False
    expressions: list[str] | None = None   # expression index: engine SQL, same engine only
    # the engine's own index options as SQLAlchemy reflects them (``postgresql_where``,
    # ``postgresql_using``, ``postgresql_include``, ``postgresql_ops``, ``mysql_prefix``,
    # ``mysql_length``, ``sqlite_where``, …) and ``column_sorting`` ({column: ["desc", …]}: the
    # parts that are not plain ascending; SQLAlchemy reflects it for PostgreSQL, the MySQL and
    # SQLite adapters read it themselves)
    options: dict[str, Any] | None = None


@dataclass
class Table:
    name: str
    schema: str | None = None
    columns: list[Column] = field(default_factory=list)
    primary_key: list[str] = field(default_factory=list)
    primary_key_name: str | None = None
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    uniques: list[Unique] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    comment: str | None = None
    # PostgreSQL: the partitions (keys) whose rows this partitioned table holds; they are not
    # tables of their own in the backup
    partitions: list[str] = field(default_factory=list)
    # PostgreSQL: how it is partitioned (pg_get_partkeydef, e.g. "RANGE (at)") and its partitions,
    # parents first: {"name", "schema", "parent" (key), "bound" (FOR VALUES …), "partition_by"}
    partition_by: str | None = None
    partition_tree: list[dict[str, Any]] = field(default_factory=list)
    # MySQL/MariaDB: how it is partitioned, as the server prints it at the end of SHOW CREATE
    # TABLE (from "PARTITION BY" to the end, outside MySQL's version comment): restored as it is
    # into the same engine
    partition_clause: str | None = None
    # PostgreSQL: other tables inherit from it (INHERITS): it is read with ONLY, its own rows
    inherited: bool = False
    # the engine's table options as SQLAlchemy reflects them (MySQL: mysql_engine, mysql_default
    # charset, mysql_collate, …), restored into the same engine where the adapter keeps them
    options: dict[str, Any] = field(default_factory=dict)
    # the engine's own constraints SQLAlchemy has no model for (PostgreSQL EXCLUDE): name and
    # definition (engine SQL), restored only into the same engine, after the load
    native_constraints: list[dict[str, str]] = field(default_factory=list)
    # MySQL/MariaDB: the primary key's parts stored descending, as ``column_sorting`` has them
    # ({column: ["desc"]}); SQLAlchemy's reflection of the key does not say
    primary_key_sorting: dict[str, list[str]] = field(default_factory=dict)
    # SQLite: the statement that made the table (sqlite_master.sql), replayed as it is into the
    # same engine; None: made from the model
    create_sql: str | None = None
    # SQLite: {index name: the statement that made it}, in the order they were made, replayed
    # into the same engine (an index its table's definition makes, UNIQUE, has none)
    index_sql: dict[str, str] = field(default_factory=dict)
    # SQLite: a virtual table's module ("fts5", "rtree", …): made again by ``create_sql`` into
    # SQLite, an ordinary table of its columns elsewhere
    virtual: str | None = None

    @property
    def key(self) -> str:
        """The table's name in the archive: ``schema.name`` outside the default schema."""
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schema": self.schema,
            "columns": [c.to_dict() for c in self.columns],
            "primary_key": self.primary_key,
            "primary_key_name": self.primary_key_name,
            "foreign_keys": [asdict(f) for f in self.foreign_keys],
            "uniques": [asdict(u) for u in self.uniques],
            "checks": [asdict(c) for c in self.checks],
            "indexes": [asdict(i) for i in self.indexes],
            "comment": self.comment,
        } | ({"partitions": self.partitions} if self.partitions else {}) \
          | ({"partition_by": self.partition_by, "partition_tree": self.partition_tree} if self.partition_by else {}) \
          | ({"partition_clause": self.partition_clause} if self.partition_clause else {}) \
          | ({"native_constraints": self.native_constraints} if self.native_constraints else {}) \
          | ({"inherited": True} if self.inherited else {}) \
          | ({"options": self.options} if self.options else {}) \
          | ({"primary_key_sorting": self.primary_key_sorting} if self.primary_key_sorting else {}) \
          | ({"create_sql": self.create_sql} if self.create_sql else {}) \
          | ({"index_sql": self.index_sql} if self.index_sql else {}) \
          | ({"virtual": self.virtual} if self.virtual else {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Table":
        return cls(
            name=d["name"],
            schema=d.get("schema"),
            columns=[Column.from_dict(c) for c in d["columns"]],
            primary_key=list(d.get("primary_key") or []),
            primary_key_name=d.get("primary_key_name"),
            foreign_keys=[ForeignKey(**f) for f in d.get("foreign_keys") or []],
            uniques=[Unique(**u) for u in d.get("uniques") or []],
            checks=[Check(**c) for c in d.get("checks") or []],
            indexes=[Index(**{**i, "options": _neutral(i["options"]) if i.get("options") else i.get("options")})
                     for i in d.get("indexes") or []],
            comment=d.get("comment"),
            partitions=list(d.get("partitions") or []),
            partition_by=d.get("partition_by"),
            partition_tree=list(d.get("partition_tree") or []),
            partition_clause=d.get("partition_clause"),
            native_constraints=list(d.get("native_constraints") or []),
            inherited=bool(d.get("inherited")),
            options=_neutral(d.get("options")),
            primary_key_sorting=dict(d.get("primary_key_sorting") or {}),
            create_sql=d.get("create_sql"),
            index_sql=dict(d.get("index_sql") or {}),
            virtual=d.get("virtual"),
        )


def partition_head(clause: str) -> str:
    """The first line of a partition clause, for messages: ``PARTITION BY RANGE (year(`d`))``."""
    head = clause.strip().splitlines()[0].strip() if clause.strip() else ""
    return head if len(head) <= 100 else head[:99] + "…"


@dataclass
class Sequence:
    name: str
    schema: str | None = None
    start: int | None = None
    increment: int | None = None
    min_value: int | None = None
    max_value: int | None = None
    cycle: bool = False
    last_value: int | None = None
    is_called: bool = True
    data_type: str | None = None
    owned_by: str | None = None      # "table.column" whose drop drops the sequence
    cache: int | None = None         # MariaDB: values each connection takes ahead (CACHE n; 0: NOCACHE)


@dataclass
class DomainType:
    """PostgreSQL: CREATE DOMAIN name AS type [COLLATE] [DEFAULT] [NOT NULL] [CHECK …]."""
    name: str
    type: str                    # the underlying type as the server spells it
    schema: str | None = None
    nullable: bool = True
    default: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)    # {"name", "check"} (engine SQL)
    collation: str | None = None


@dataclass
class EnumType:
    name: str
    values: list[str]
    schema: str | None = None


@dataclass
class Routine:
    """A view, trigger, function, procedure or event (MySQL/MariaDB), kept as engine SQL for the
    same engine."""

    kind: str
    name: str
    sql: str
    schema: str | None = None
    table: str | None = None
    # MySQL/MariaDB: the SQL mode the body was made under, and the account it runs as
    # (``user``@``host`` as SHOW CREATE prints it; ``sql`` holds no DEFINER clause)
    sql_mode: str | None = None
    definer: str | None = None
    time_zone: str | None = None     # MySQL/MariaDB event: the time zone its schedule is read in
    # MySQL/MariaDB: the character set and collation of the connection that made it (its string
    # literals were read in them)
    client_charset: str | None = None
    collation: str | None = None
    #: PostgreSQL: the object's identity where its name is not enough (a function's signature,
    #: an operator's operand types), as the dependencies name it (Schema.depends)
    ident: str | None = None


def _without_unset(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``d`` without those of ``keys`` that are None (fields added later: a manifest without
    them reads as before)."""
    return {k: v for k, v in d.items() if not (k in keys and v is None)}


@dataclass
class Schema:
    engine: str
    tables: list[Table] = field(default_factory=list)
    sequences: list[Sequence] = field(default_factory=list)
    enums: list[EnumType] = field(default_factory=list)
    routines: list[Routine] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)     # PostgreSQL: CREATE EXTENSION names
    domains: list[DomainType] = field(default_factory=list)  # PostgreSQL
    # the database's own settings, restored into the same engine (SQLite: sqlite_user_version,
    # sqlite_application_id, where not 0)
    settings: dict[str, Any] = field(default_factory=dict)
    #: PostgreSQL: the schemas read besides the default one, {"name", "comment"}
    schemas: list[dict[str, Any]] = field(default_factory=list)
    #: PostgreSQL: composite and range types, {"kind", "name", "schema", "sql"} (engine SQL)
    types: list[dict[str, Any]] = field(default_factory=list)
    #: PostgreSQL: what each object needs made before it (from pg_depend), by node name
    #: (``table:billing.invoice``, ``type:billing.money_pair``, ``routine:f(integer)``, …)
    depends: dict[str, list[str]] = field(default_factory=dict)
    #: PostgreSQL: the source's catalogue of what the backup holds, [kind, name, table key or
    #: None, definition]: a restore reads the target's and compares
    catalogue: list[list[Any]] = field(default_factory=list)

    def table(self, key: str) -> Table:
        for t in self.tables:
            if t.key == key:
                return t
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "tables": [t.to_dict() for t in self.tables],
            "sequences": [_without_unset(asdict(s), ("cache",)) for s in self.sequences],
            "enums": [asdict(e) for e in self.enums],
            "routines": [_without_unset(asdict(r), ("sql_mode", "definer", "time_zone", "client_charset", "collation",
                                                    "ident")) for r in self.routines],
        } | ({"extensions": self.extensions} if self.extensions else {}) \
          | ({"domains": [asdict(x) for x in self.domains]} if self.domains else {}) \
          | ({"settings": self.settings} if self.settings else {}) \
          | {k: getattr(self, k) for k in ("schemas", "types", "depends", "catalogue") if getattr(self, k)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Schema":
        return cls(
            engine=d["engine"],
            tables=[Table.from_dict(t) for t in d.get("tables") or []],
            sequences=[Sequence(**s) for s in d.get("sequences") or []],
            enums=[EnumType(**e) for e in d.get("enums") or []],
            routines=[Routine(**{k: v for k, v in r.items() if v is not None}) for r in d.get("routines") or []],
            extensions=list(d.get("extensions") or []),
            domains=[DomainType(**x) for x in d.get("domains") or []],
            settings=dict(d.get("settings") or {}),
            schemas=list(d.get("schemas") or []),
            types=list(d.get("types") or []),
            depends=dict(d.get("depends") or {}),
            catalogue=list(d.get("catalogue") or []),
        )
