"""scripts/bench: albackup beside the native dump and restore tools, as paired ratios.

See docs/BENCHMARK.md. Run as ``scripts/bench --scale 20`` (quick) or ``scripts/bench --help``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import datagen
from .dbs import My, Pg
from .measure import Measurement, RunFailed, ServerCpu, launcher, run, tree_bytes

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "albk_bench_"
SRC = PREFIX + "src"
TABLES = ["accounts", "mixed"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------- machine
def _cmd_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not installed"


def machine_info(pg: Pg, my: My) -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    info = {
        "nproc": os.cpu_count(), "memory": mem, "cpu": cpu,
        "kernel": platform.release(), "python": platform.python_version(),
        "albackup": _cmd_version([sys.executable, "-m", "albackup", "--version"]),
        "albackup_mysql_driver": my.url("x").split("+", 1)[1].split(":", 1)[0],
        "postgresql": pg.version(),
        "pg_settings": {k: pg.setting(k) for k in ("shared_buffers", "max_wal_size", "wal_level", "autovacuum",
                                                   "synchronous_commit")},
        "mariadb": my.version(),
        "mariadb_settings": {k: my.setting(k) for k in ("innodb_buffer_pool_size", "innodb_flush_method",
                                                        "innodb_flush_log_at_trx_commit", "log_bin")},
        "pg_dump": _cmd_version(["pg_dump", "--version"]),
        "mariadb-dump": _cmd_version(["mariadb-dump", "--version"]),
        "zstd": _cmd_version(["zstd", "--version"]) if shutil.which("zstd") else "not installed",
        "measured_with": launcher(),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
    }
    try:
        info["albackup_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                                 capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "albackup"],
                               capture_output=True, text=True).stdout.split("\n")
        dirty = [ln[3:] for ln in dirty if ln.strip()]
        info["albackup_tree"] = "clean" if not dirty else "modified: " + ", ".join(dirty)
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------------- runs
@dataclass
class Cmd:
    stages: list[list[str]]
    stdin: Path | None = None
    stdout: Path | None = None


@dataclass
class Tool:
    """One contender in an operation: how to prepare (untimed), what to run, how to check (untimed)."""
    name: str
    command: Callable[[int], Cmd]                  # rep -> command
    prepare: Callable[[int], None] = lambda rep: None
    finish: Callable[[int, Measurement], None] = lambda rep, m: None   # sets output_bytes, checks
    server: ServerCpu | None = None
    albackup: bool = False
    runs: list[dict] = field(default_factory=list)
    error: str | None = None


@dataclass
class Operation:
    name: str
    tools: list[Tool]
    note: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pg = Pg(args.pg_host, args.pg_port, args.pg_user, args.pg_maintenance_db)
        self.my = My(args.mysql_host, args.mysql_port, args.mysql_user, args.mysql_driver)
        self.py = sys.executable
        self.work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="albk-bench-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.out = self.work / "out"
        self.logs = self.work / "logs"
        self.out.mkdir(exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.created_pg: set[str] = set()
        self.created_my: set[str] = set()
        self.pg_cpu = ServerCpu(["postgres"], mine=self.created_pg)
        self.my_cpu = ServerCpu(["mariadbd", "mysqld"])
        self.zstd = None if args.no_zstd else shutil.which("zstd")
        self.ops: list[Operation] = []
        self.notes: list[str] = []
        self.skipped: list[dict] = []
        self.artifacts: dict[str, Path] = {}
        self.dataset: datagen.Dataset | None = None
        self.setup: dict[str, float] = {}
        self.env = dict(os.environ)
        self.env.pop("PYTHONPATH", None)

    # ------------------------------------------------------------ helpers
    def compile_albackup(self) -> None:
        """Compile the albackup that the runs import to bytecode first, as ``pip install`` does:
        where PYTHONDONTWRITEBYTECODE is set, or the package was never imported, each run would
        otherwise compile every module again (about 0.1 s, once per command)."""
        where = subprocess.run([self.py, "-c", "import albackup; print(albackup.__path__[0])"],
                               capture_output=True, text=True, cwd=self.work, env=self.env)
        path = where.stdout.strip()
        done = path and subprocess.run([self.py, "-m", "compileall", "-q", path], capture_output=True,
                                       cwd=self.work, env=self.env).returncode == 0
        self.notes.append(f"albackup's modules were compiled to bytecode before the runs ({path})" if done
                          else f"albackup's modules could not be compiled to bytecode ({path or where.stderr.strip()[-200:]}): "
                               "each albackup run compiled them")

    def albackup(self, *args: str) -> list[str]:
        return [self.py, "-m", "albackup", *args]

    @functools.cached_property
    def zstd_level(self) -> str:
        """albackup's default zstd level (its dumps run with it), for the table's label."""
        out = subprocess.run([self.py, "-c", "from albackup.compress import DEFAULT_LEVEL; print(DEFAULT_LEVEL['zstd'])"],
                             capture_output=True, text=True, cwd=ROOT)
        return out.stdout.strip() or "?"

    def pg_db(self, name: str) -> str:
        db = PREFIX + name
        self.created_pg.add(db)
        return db

    def my_db(self, name: str) -> str:
        db = PREFIX + name
        self.created_my.add(db)
        return db

    def pg_fresh(self, db: str) -> None:
        self.pg.recreate(db)
        self.pg.checkpoint()

    def check_counts(self, counts: dict[str, int], what: str) -> None:
        ds = self.dataset
        want = {"accounts": ds.accounts_rows, "mixed": ds.mixed_rows}
        if counts != want:
            raise RunFailed(f"{what}: row counts {counts}, expected {want}")

    # ------------------------------------------------------------ setup
    def read_back_note(self, label: str, rep: int, m: Measurement) -> None:
        """A note naming the tables an albackup restore into PostgreSQL read back by value (its
        ``--json`` result): those cost the server and the client a full read more than text."""
        try:
            tables = json.loads(m.stdout)["tables"]
        except (ValueError, KeyError, TypeError):
            self.notes.append(f"{label} (run {rep + 1}): no JSON result to tell how tables were read back")
            return
        by_value = [t["table"] for t in tables if t.get("read_back") not in ("text", "count")]
        if by_value:
            self.notes.append(f"{label} (run {rep + 1}): read back by value: {', '.join(by_value)}")

    def generate_and_load(self) -> None:
        a = self.args
        t0 = time.perf_counter()
        log(f"generating the dataset (scale {a.scale} MB, seed {a.seed}) in {self.work / 'data'}")
        self.dataset = ds = datagen.generate(self.work / "data", a.scale, a.seed)
        self.setup["generate_s"] = time.perf_counter() - t0
        log(f"  {ds.accounts_rows:,} accounts + {ds.mixed_rows:,} mixed rows, "
            f"{sum(ds.file_bytes.values()) / 1e6:.0f} MB of TSV, {self.setup['generate_s']:.1f} s")

        if a.only != "mariadb":
            t0 = time.perf_counter()
            log(f"loading PostgreSQL {SRC} (COPY, then primary keys, VACUUM FREEZE ANALYZE)")
            self.pg.recreate(SRC)
            self.created_pg.add(SRC)
            self.pg.psql(SRC, datagen.PG_DDL)
            for t in TABLES:
                self.pg.copy_in(SRC, t, Path(ds.files[t]))
            self.pg.psql(SRC, datagen.PG_AFTER)
            self.pg.psql(SRC, "VACUUM (FREEZE, ANALYZE)")
            self.pg.checkpoint()
            self.check_counts(self.pg.counts(SRC, TABLES), "PostgreSQL source")
            self.setup["pg_load_s"] = time.perf_counter() - t0
            self.setup["pg_src_bytes"] = self.pg.size(SRC)
            log(f"  {self.setup['pg_load_s']:.1f} s, database {self.setup['pg_src_bytes'] / 1e6:.0f} MB")

        if a.only != "pg":
            t0 = time.perf_counter()
            log(f"loading MariaDB {SRC} (LOAD DATA LOCAL INFILE)")
            self.my.recreate(SRC)
            self.created_my.add(SRC)
            self.my.sql(datagen.MY_DDL, SRC)
            for t in TABLES:
                self.my.sql("SET unique_checks = 0; SET foreign_key_checks = 0; "
                            + datagen.MY_LOAD[t].format(path=ds.files[t]) + ";", SRC)
            self.check_counts(self.my.counts(SRC, TABLES), "MariaDB source")
            self.setup["mariadb_load_s"] = time.perf_counter() - t0
            self.setup["mariadb_src_bytes"] = self.my.size(SRC)
            log(f"  {self.setup['mariadb_load_s']:.1f} s, database ~{self.setup['mariadb_src_bytes'] / 1e6:.0f} MB")
        if not a.keep_files:
            shutil.rmtree(self.work / "data", ignore_errors=True)
        t0 = time.perf_counter()
        log("warming up: one full read of each source table on both servers")
        if a.only != "mariadb":
            self.pg.psql(SRC, "SELECT count(*), sum(length(a::text)) FROM accounts a; "
                              "SELECT count(*), sum(length(m::text)) FROM mixed m")
        if a.only != "pg":
            self.my.fingerprint(SRC)
        self.pg.checkpoint()
        self.setup["warmup_s"] = time.perf_counter() - t0

    # ------------------------------------------------------------ operations
    def albackup_dump_tool(self, key: str, url: str, server: ServerCpu) -> Tool:
        def command(rep: int) -> Cmd:
            d = self.out / f"{key}_albackup_{rep}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            return Cmd([self.albackup("dump", "-q", "-j", str(self.args.jobs), "--url", url, "--backup-dir", str(d))])

        def finish(rep: int, m: Measurement) -> None:
            path = Path(m.stdout.strip().splitlines()[-1])
            m.output_bytes = tree_bytes(path)
            if rep == 0:
                self.artifacts[f"{key}_albackup"] = path
            else:
                shutil.rmtree(path.parent, ignore_errors=True)
        return Tool(f"albackup dump -j{self.args.jobs} (zstd-{self.zstd_level})", command, finish=finish, server=server, albackup=True)

    def file_output_finish(self, key: str) -> Callable[[int, Measurement], None]:
        def finish(rep: int, m: Measurement) -> None:
            path = self.out / f"{key}_{rep}"
            m.output_bytes = path.stat().st_size
            if rep == 0:
                self.artifacts[key] = path
            else:
                path.unlink()
        return finish

    def build_ops(self) -> None:
        pg, my = self.pg, self.my
        src_pg = pg.conn_args(SRC)
        zstd = self.zstd

        if self.args.only == "mariadb":
            return self.build_mariadb_ops()
        # PostgreSQL dump
        tools = [self.albackup_dump_tool("pg", pg.url(SRC), self.pg_cpu),
                 Tool("pg_dump -Fc", lambda rep: Cmd([["pg_dump", "-Fc", *src_pg, "-f", str(self.out / f"pg_dump_fc_{rep}")]]),
                      finish=self.file_output_finish("pg_dump_fc"), server=self.pg_cpu)]
        if zstd:
            tools.append(Tool("pg_dump -Fc -Z0 | zstd -3",
                              lambda rep: Cmd([["pg_dump", "-Fc", "-Z0", *src_pg], [zstd, "-3", "-q", "-c"]],
                                              stdout=self.out / f"pg_dump_z0_zstd_{rep}"),
                              finish=self.file_output_finish("pg_dump_z0_zstd"), server=self.pg_cpu))
        else:
            self.skipped.append({"operation": "PG dump", "tool": "pg_dump -Fc -Z0 | zstd -3",
                                 "reason": "skipped: --no-zstd" if self.args.no_zstd
                                 else "zstd CLI not installed (apt-get install zstd)"})
        self.ops.append(Operation("PG dump", tools, "PostgreSQL albk_bench_src to a file/folder"))

        # PostgreSQL restore
        def pg_restore_tool(label: str, db_name: str, command: Callable[[str], list[str]], albk: bool) -> Tool:
            db = self.pg_db(db_name)

            def finish(rep: int, m: Measurement) -> None:
                m.output_bytes = pg.size(db)
                self.check_counts(pg.counts(db, TABLES), label)
                if albk:
                    self.read_back_note(label, rep, m)
                self.fingerprints.setdefault("pg", []).append((label, pg.fingerprint(db)))
                if not self.args.keep:
                    pg.drop(db)
            return Tool(label, lambda rep: Cmd([command(db)]), prepare=lambda rep: self.pg_fresh(db),
                        finish=finish, server=self.pg_cpu, albackup=albk)

        self.ops.append(Operation("PG restore", [
            pg_restore_tool(f"albackup restore -j{self.args.jobs}", "pg_albackup",
                            lambda db: self.albackup("restore", "-q", "--json", "-j", str(self.args.jobs), "--url", pg.url(db), "--allow-restore",
                                                     "--backup-dir", str(self.artifacts["pg_albackup"])), True),
            pg_restore_tool("pg_restore -j1", "pg_restore_j1",
                            lambda db: ["pg_restore", "-j1", *pg.conn_args(db), str(self.artifacts["pg_dump_fc"])], False),
            pg_restore_tool("pg_restore -j2", "pg_restore_j2",
                            lambda db: ["pg_restore", "-j2", *pg.conn_args(db), str(self.artifacts["pg_dump_fc"])], False),
        ], "into a fresh PostgreSQL database; output = its pg_database_size"))
        # what the read-back costs: the same restore, each table's rows only counted
        self.ops.append(Operation("PG restore, count", [
            pg_restore_tool(f"albackup restore -j{self.args.jobs} --read-back count", "pg_albackup_count",
                            lambda db: self.albackup("restore", "-q", "--json", "-j", str(self.args.jobs), "--read-back",
                                                     "count", "--url", pg.url(db), "--allow-restore",
                                                     "--backup-dir", str(self.artifacts["pg_albackup"])), True),
            pg_restore_tool("pg_restore -j2", "pg_restore_j2_count",
                            lambda db: ["pg_restore", "-j2", *pg.conn_args(db), str(self.artifacts["pg_dump_fc"])], False),
        ], "as PG restore, albackup with --read-back count (rows counted, not read back)"))

        if self.args.only == "pg":
            return
        self.build_mariadb_ops()

    def build_mariadb_ops(self) -> None:
        pg, my = self.pg, self.my
        zstd = self.zstd
        # MariaDB dump
        my_args = [*my.conn_args()]
        if zstd:
            mdump = Tool("mariadb-dump --single-transaction | zstd -3",
                         lambda rep: Cmd([["mariadb-dump", *my_args, "--single-transaction", SRC], [zstd, "-3", "-q", "-c"]],
                                         stdout=self.out / f"mariadb_dump_{rep}"),
                         finish=self.file_output_finish("mariadb_dump"), server=self.my_cpu)
        else:
            mdump = Tool("mariadb-dump --single-transaction",
                         lambda rep: Cmd([["mariadb-dump", *my_args, "--single-transaction", SRC]],
                                         stdout=self.out / f"mariadb_dump_{rep}"),
                         finish=self.file_output_finish("mariadb_dump"), server=self.my_cpu)
            self.notes.append("no zstd CLI (or --no-zstd): mariadb-dump output left uncompressed")
        tools = [self.albackup_dump_tool("my", my.url(SRC), self.my_cpu), mdump]
        if shutil.which("mydumper"):
            def mydumper_cmd(rep: int) -> Cmd:
                d = self.out / f"mydumper_{rep}"
                shutil.rmtree(d, ignore_errors=True)
                return Cmd([["mydumper", "-h", my.host, "-P", str(my.port), "-u", my.user, "-B", SRC,
                             "-o", str(d), "-c", "-t", str(os.cpu_count() or 2)]])

            def mydumper_finish(rep: int, m: Measurement) -> None:
                d = self.out / f"mydumper_{rep}"
                m.output_bytes = tree_bytes(d)
                if rep == 0:
                    self.artifacts["mydumper"] = d
                else:
                    shutil.rmtree(d, ignore_errors=True)
            tools.append(Tool("mydumper -c", mydumper_cmd, finish=mydumper_finish, server=self.my_cpu))
        else:
            self.skipped.append({"operation": "MariaDB dump", "tool": "mydumper", "reason": "not installed"})
        self.ops.append(Operation("MariaDB dump", tools, "MariaDB albk_bench_src to a file/folder"))

        # MariaDB restore
        def my_restore_tool(label: str, db_name: str, command: Callable[[str], Cmd], albk: bool,
                            needs: str) -> Tool:
            db = self.my_db(db_name)

            def finish(rep: int, m: Measurement) -> None:
                m.output_bytes = my.size(db)
                self.check_counts(my.counts(db, TABLES), label)
                self.fingerprints.setdefault("mariadb", []).append((label, my.fingerprint(db)))
                if not self.args.keep:
                    my.drop(db)
            return Tool(label, lambda rep: command(db), prepare=lambda rep: my.recreate(db), finish=finish,
                        server=self.my_cpu, albackup=albk)

        tools = [my_restore_tool(f"albackup restore -j{self.args.jobs}", "my_albackup",
                                 lambda db: Cmd([self.albackup("restore", "-q", "-j", str(self.args.jobs), "--url", my.url(db), "--allow-restore",
                                                               "--backup-dir", str(self.artifacts["my_albackup"]))]),
                                 True, "my_albackup")]
        if zstd:
            tools.append(my_restore_tool("zstd -dc | mariadb", "my_native",
                                         lambda db: Cmd([[zstd, "-dc", str(self.artifacts["mariadb_dump"])],
                                                         ["mariadb", *my_args, db]]), False, "mariadb_dump"))
        else:
            tools.append(my_restore_tool("mariadb < dump.sql", "my_native",
                                         lambda db: Cmd([["mariadb", *my_args, db]], stdin=self.artifacts["mariadb_dump"]),
                                         False, "mariadb_dump"))
        if shutil.which("myloader") and shutil.which("mydumper"):
            tools.append(my_restore_tool("myloader", "my_myloader",
                                         lambda db: Cmd([["myloader", "-h", my.host, "-P", str(my.port), "-u", my.user,
                                                          "-d", str(self.artifacts["mydumper"]), "-B", db,
                                                          "-t", str(os.cpu_count() or 2)]]), False, "mydumper"))
        else:
            self.skipped.append({"operation": "MariaDB restore", "tool": "myloader", "reason": "not installed"})
        self.ops.append(Operation("MariaDB restore", tools, "into a fresh MariaDB database; output = data+index length"))
        # what the read-back costs: the same restore, each table's rows only counted
        counted = [my_restore_tool(f"albackup restore -j{self.args.jobs} --read-back count", "my_albackup_count",
                                   lambda db: Cmd([self.albackup("restore", "-q", "-j", str(self.args.jobs), "--read-back",
                                                                 "count", "--url", my.url(db), "--allow-restore",
                                                                 "--backup-dir", str(self.artifacts["my_albackup"]))]),
                                   True, "my_albackup")]
        if shutil.which("myloader") and shutil.which("mydumper"):
            counted.append(my_restore_tool("myloader", "my_myloader_count",
                                           lambda db: Cmd([["myloader", "-h", my.host, "-P", str(my.port), "-u", my.user,
                                                            "-d", str(self.artifacts["mydumper"]), "-B", db,
                                                            "-t", str(os.cpu_count() or 2)]]), False, "mydumper"))
        elif zstd:
            counted.append(my_restore_tool("zstd -dc | mariadb", "my_native_count",
                                           lambda db: Cmd([[zstd, "-dc", str(self.artifacts["mariadb_dump"])],
                                                           ["mariadb", *my_args, db]]), False, "mariadb_dump"))
        self.ops.append(Operation("MariaDB restore, count", counted,
                                  "as MariaDB restore, albackup with --read-back count (rows counted, not read back)"))

        # MariaDB -> PostgreSQL
        db = self.pg_db("my2pg_albackup")

        def cross_finish(rep: int, m: Measurement, db: str = db) -> None:
            m.output_bytes = pg.size(db)
            self.check_counts(pg.counts(db, TABLES), "MariaDB→PostgreSQL")
            self.read_back_note("MariaDB→PG albackup restore", rep, m)
            if not self.args.keep:
                pg.drop(db)
        tools = [Tool(f"albackup restore -j{self.args.jobs}", lambda rep: Cmd([self.albackup(
            "restore", "-q", "--json", "-j", str(self.args.jobs), "--url", pg.url(db), "--allow-restore",
            "--backup-dir", str(self.artifacts["my_albackup"]))]),
            prepare=lambda rep: self.pg_fresh(db), finish=cross_finish, server=self.pg_cpu, albackup=True)]
        if shutil.which("pgloader"):
            db2 = self.pg_db("my2pg_pgloader")

            def pgl_finish(rep: int, m: Measurement) -> None:
                m.output_bytes = pg.size(db2)
                if not self.args.keep:
                    pg.drop(db2)
            with_ = (["--with", f"prefetch rows = {self.args.pgloader_prefetch}"]
                     if self.args.pgloader_prefetch else [])
            tools.append(Tool("pgloader", lambda rep: Cmd([["pgloader", *with_,
                                                             f"mysql://{my.user}@{my.host}:{my.port}/{SRC}",
                                                             f"postgresql://{pg.user}@{pg.host}:{pg.port}/{db2}"]]),
                              prepare=lambda rep: self.pg_fresh(db2), finish=pgl_finish, server=self.pg_cpu))
        else:
            self.skipped.append({"operation": "MariaDB→PG restore", "tool": "pgloader", "reason": "not installed"})
        self.ops.append(Operation("MariaDB→PG restore", tools,
                                  "albackup restore of a MariaDB backup already made, into a fresh PostgreSQL "
                                  "database (pgloader's figure includes reading MariaDB: see the end-to-end row)"))

        # MariaDB -> PostgreSQL end to end: the same work on both sides (read MariaDB, write PostgreSQL)
        db3 = self.pg_db("my2pg_e2e")

        def e2e_command(rep: int) -> Cmd:
            d = self.out / f"my2pg_e2e_{rep}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            dump = shlex.join(self.albackup("dump", "-q", "-j", str(self.args.jobs), "--url", my.url(SRC),
                                            "--backup-dir", str(d)))
            restore = shlex.join(self.albackup("restore", "-q", "-j", str(self.args.jobs), "--url", pg.url(db3),
                                               "--allow-restore", "--backup-dir"))
            return Cmd([["sh", "-c", f'set -e; b=$({dump} | tail -n 1); {restore} "$b"; rm -rf "$b"']])

        def e2e_finish(rep: int, m: Measurement) -> None:
            m.output_bytes = pg.size(db3)
            self.check_counts(pg.counts(db3, TABLES), "MariaDB→PostgreSQL end to end")
            if not self.args.keep:
                pg.drop(db3)
        e2e = [Tool(f"albackup dump -j{self.args.jobs}, then restore -j{self.args.jobs}", e2e_command,
                    prepare=lambda rep: self.pg_fresh(db3), finish=e2e_finish, server=self.pg_cpu, albackup=True)]
        if shutil.which("pgloader"):
            pgl = next(t for t in tools if t.name == "pgloader")
            e2e.append(dataclasses.replace(pgl, runs=[], error=None))   # the same command, its own runs
            self.ops.append(Operation("MariaDB→PG end to end", e2e,
                                      "from the MariaDB database to a fresh PostgreSQL database, both sides reading "
                                      "MariaDB and writing PostgreSQL (albackup: dump, then restore of that backup)"))

    # ------------------------------------------------------------ measuring
    def measure(self) -> None:
        self.fingerprints: dict[str, list] = {}
        for op in self.ops:
            for rep in range(self.args.repeat):
                for tool in op.tools:          # A, B1, B2, A, B1, B2, ...
                    if tool.error:
                        continue
                    label = f"{op.name} / {tool.name} (run {rep + 1}/{self.args.repeat})"
                    try:
                        tool.prepare(rep)
                        cmd = tool.command(rep)
                        log(f"{label} ...")
                        m = run(cmd.stages, stdin=cmd.stdin, stdout=cmd.stdout,
                                stderr=self.logs / f"{op.name}-{tool.name}-{rep}.log".replace(" ", "_").replace("/", "_"),
                                cwd=self.work, env=self.env, server=tool.server, quiet_wait=self.args.quiet_wait)
                        tool.finish(rep, m)
                    except (RunFailed, RuntimeError, KeyError, OSError) as exc:
                        tool.error = f"{type(exc).__name__}: {exc}"
                        log(f"  FAILED: {tool.error}")
                        continue
                    d = m.to_dict()
                    other = None
                    if m.machine_cpu_s is not None:
                        other = max(0.0, m.machine_cpu_s - m.cpu_s - (m.server_cpu_s or 0.0))
                        d["other_cpu_s"] = round(other, 3)
                        if other > 0.5 + 0.1 * m.wall_s:
                            self.notes.append(f"{label}: {other:.1f} s of CPU went to other processes during "
                                              f"this {m.wall_s:.1f} s run (a busy machine: treat it with care)")
                    tool.runs.append(d)
                    log(f"  {m.wall_s:.2f} s wall, {m.cpu_s:.2f} s CPU, "
                        f"{'-' if m.server_cpu_s is None else f'{m.server_cpu_s:.2f}'} s server CPU, "
                        f"{'-' if other is None else f'{other:.2f}'} s other CPU, "
                        f"{m.peak_rss_mb:.0f} MB RSS, {(m.output_bytes or 0) / 1e6:.1f} MB")
        for engine, fps in self.fingerprints.items():
            distinct = {fp for _, fp in fps}
            if len(distinct) > 1:
                self.notes.append(f"{engine}: the restored databases' content fingerprints differ: {fps}")
            else:
                self.notes.append(f"{engine}: every restore (albackup and native) gave the same content fingerprint")

    def profile(self) -> dict:
        """One albackup PostgreSQL dump, MariaDB dump and PostgreSQL restore under cProfile (those of
        the engines ``--only`` leaves)."""
        out = {}
        jobs = [("pg-dump", ["dump", "-q", "--url", self.pg.url(SRC), "--backup-dir", str(self.out / "prof_pg")],
                 lambda: (self.out / "prof_pg").mkdir(exist_ok=True)),
                ("mariadb-dump", ["dump", "-q", "--url", self.my.url(SRC), "--backup-dir", str(self.out / "prof_my")],
                 lambda: (self.out / "prof_my").mkdir(exist_ok=True))]
        only = self.args.only
        jobs = [j for j in jobs if not only or j[0].startswith("pg-" if only == "pg" else "mariadb-")]
        if "pg_albackup" in self.artifacts:
            db = self.pg_db("prof_restore")
            jobs.append(("pg-restore", ["restore", "-q", "--url", self.pg.url(db), "--allow-restore",
                                        "--backup-dir", str(self.artifacts["pg_albackup"])],
                         lambda: self.pg_fresh(db)))
        for name, args, prep in jobs:
            prep()
            prof = self.work / f"profile-{name}.prof"
            argv = [self.py, str(Path(__file__).with_name("profile_run.py")), str(prof), *args]
            log(f"profiling albackup {name} under cProfile -> {prof}")
            try:
                m = run([argv], stderr=self.logs / f"profile-{name}.log", cwd=self.work, env=self.env)
            except RunFailed as exc:
                log(f"  FAILED: {exc}")
                self.notes.append(f"profile of albackup {name} failed: {str(exc)[:500]}")
                continue
            out[name] = summarize_profile(prof, m.wall_s)
            print_profile(name, out[name])
        db = PREFIX + "prof_restore"
        if db in self.created_pg and not self.args.keep:
            self.pg.drop(db)
        return out

    # ------------------------------------------------------------ report
    def summary(self) -> list[dict]:
        rows_total = self.dataset.rows
        result = []
        for op in self.ops:
            base = next((t for t in op.tools if t.albackup), None)
            for tool in op.tools:
                r: dict = {"operation": op.name, "tool": tool.name, "albackup": tool.albackup,
                           "runs": tool.runs, "error": tool.error}
                if tool.runs:
                    med = lambda k: statistics.median(x[k] for x in tool.runs if x[k] is not None) \
                        if any(x[k] is not None for x in tool.runs) else None
                    r.update(wall_s=med("wall_s"), cpu_s=med("cpu_s"), server_cpu_s=med("server_cpu_s"),
                             peak_rss_mb=med("peak_rss_mb"), output_mb=(med("output_bytes") or 0) / 1e6)
                    r["rows_per_s"] = rows_total / r["wall_s"]
                if base is not None and tool is not base and base.runs and tool.runs:
                    pairs = [a["wall_s"] / b["wall_s"] for a, b in zip(base.runs, tool.runs)]
                    r["ratio"] = {"median": statistics.median(pairs), "min": min(pairs), "max": max(pairs),
                                  "pairs": [round(p, 3) for p in pairs]}
                result.append(r)
            for s in self.skipped:
                if s["operation"] == op.name:
                    result.append({"operation": s["operation"], "tool": s["tool"], "albackup": False, "runs": [],
                                   "error": None, "skipped": s["reason"]})
        return result

    def print_table(self, rows: list[dict]) -> None:
        head = ["operation", "tool", "wall s", "CPU s", "server CPU s", "peak RSS MB", "output MB", "rows/s",
                "albackup/native (wall)"]
        body = []
        for r in rows:
            if r.get("skipped"):
                body.append([r["operation"], r["tool"], r["skipped"], "", "", "", "", "", ""])
                continue
            if r.get("error") and not r.get("runs"):
                body.append([r["operation"], r["tool"], "FAILED", "", "", "", "", "", ""])
                continue
            ratio = ""
            if "ratio" in r:
                q = r["ratio"]
                ratio = f"{q['median']:.2f}" + (f" ({q['min']:.2f}–{q['max']:.2f})" if len(q["pairs"]) > 1 else "")
            elif r["albackup"]:
                ratio = "(A)"
            srv = "-" if r.get("server_cpu_s") is None else f"{r['server_cpu_s']:.2f}"
            body.append([r["operation"], r["tool"], f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}", srv,
                         f"{r['peak_rss_mb']:.0f}", f"{r['output_mb']:.1f}", f"{r['rows_per_s']:,.0f}", ratio])
        widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
        right = {2, 3, 4, 5, 6, 7}

        def fmt(cells: list[str]) -> str:
            return "| " + " | ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                                     for i, (c, w) in enumerate(zip(cells, widths))) + " |"
        print(fmt(head))
        print("|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|")
        for b in body:
            print(fmt(b))

    def cleanup(self) -> None:
        if self.args.keep:
            log(f"--keep: leaving the databases {sorted(self.created_pg)} (PostgreSQL) and "
                f"{sorted(self.created_my)} (MariaDB)")
        else:
            for db in sorted(self.created_pg):
                try:
                    self.pg.drop(db)
                except RuntimeError as exc:
                    log(f"could not drop PostgreSQL {db}: {exc}")
            for db in sorted(self.created_my):
                try:
                    self.my.drop(db)
                except RuntimeError as exc:
                    log(f"could not drop MariaDB {db}: {exc}")
        if self.args.keep_files or self.args.workdir:
            log(f"files kept in {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def _group(filename: str) -> str:
    """Where a function's own time goes: an albackup module, a library, or the interpreter."""
    f = filename.replace("\\", "/")
    if f.startswith("~") or f.startswith("<"):
        return "builtins / C code (other)"
    if "/albackup/" in f:
        return "albackup/" + f.split("/albackup/", 1)[1]
    if "site-packages/" in f:
        return f.split("site-packages/", 1)[1].split("/", 1)[0]
    return "python stdlib"


_C_GROUPS = {  # C methods whose own time belongs to a library rather than to "builtins"
    "psycopg2": "psycopg2 (C)", "zstandard": "zstandard (C)", "msgpack": "msgpack (C)",
    "hashlib": "hashlib (C)", "_hashlib": "hashlib (C)", "compile": "imports / startup",
    "marshal": "imports / startup", "_imp": "imports / startup", "__build_class__": "imports / startup",
}


def summarize_profile(path: Path, wall: float) -> dict:
    import pstats

    st = pstats.Stats(str(path))
    total = st.total_tt
    rows, groups = [], {}
    for (fn, line, func), (cc, nc, tt, ct, callers) in st.stats.items():
        g = _group(fn)
        if g.startswith("builtins"):
            g = next((v for k, v in _C_GROUPS.items() if k in func), g)
        elif "importlib" in fn or fn.startswith("<frozen"):
            g = "imports / startup"
        groups[g] = groups.get(g, 0.0) + tt
        rows.append({"function": f"{Path(fn).name}:{line}({func})", "calls": nc,
                     "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3)})
    rows.sort(key=lambda r: -r["tottime_s"])
    return {"wall_s": round(wall, 2), "profiled_s": round(total, 2), "profile": str(path),
            "top_functions": rows[:20],
            "by_module": [{"where": k, "tottime_s": round(v, 3), "share": round(v / total, 3)}
                          for k, v in sorted(groups.items(), key=lambda kv: -kv[1])[:15]]}


def print_profile(name: str, p: dict) -> None:
    print(f"\n## cProfile: albackup {name} ({p['wall_s']:.1f} s wall under the profiler, "
          f"{p['profiled_s']:.1f} s profiled)")
    print("  own time by module:")
    for g in p["by_module"][:10]:
        print(f"    {g['tottime_s']:8.2f} s {100 * g['share']:5.1f} %  {g['where']}")
    print("  top functions by own time:")
    for r in p["top_functions"][:12]:
        print(f"    {r['tottime_s']:8.2f} s {100 * r['tottime_s'] / p['profiled_s']:5.1f} %  {r['calls']:>10}  {r['function']}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1000, help="dataset size in MB (default 1000 ≈ 1 GB: "
                   "5 M narrow + 1 M wide rows; 20 for a quick run)")
    p.add_argument("--seed", type=int, default=42, help="dataset seed (default 42)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each tool, alternating (default 1)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the albk_bench_* databases")
    p.add_argument("--keep-files", action="store_true", help="keep the work folder (dumps, logs)")
    p.add_argument("--workdir", help="work folder (default: a new temporary folder, removed at the end)")
    p.add_argument("--profile", action="store_true",
                   help="also run one albackup PostgreSQL dump, MariaDB dump and PostgreSQL restore "
                        "under cProfile and print the top costs (not part of the table)")
    p.add_argument("--no-zstd", action="store_true",
                   help="run the native tools without the zstd CLI, as if it were not installed")
    p.add_argument("--pgloader-prefetch", type=int, default=10000, metavar="ROWS",
                   help="pgloader's 'prefetch rows' (default 10000; pgloader's own default, 100000, "
                        "exhausts its 1 GB heap on the full-scale dataset; 0: pgloader's default)")
    p.add_argument("--only", choices=("pg", "mariadb"),
                   help="only the PostgreSQL operations (dump, restore), or only the MariaDB ones (dump, "
                        "restore, MariaDB→PostgreSQL); default: all")
    p.add_argument("--jobs", type=int, default=2, metavar="N",
                   help="albackup's -j for its dumps and restores (default 2, the machine's 2 cores)")
    p.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                   help="before each run, wait up to S seconds for the machine to be idle (default 30; "
                        "runs that shared the CPU with other processes are flagged in the notes anyway)")
    p.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    p.add_argument("--pg-user", default=os.environ.get("PGUSER", "root"))
    p.add_argument("--pg-maintenance-db", default="postgres")
    p.add_argument("--mysql-host", default="127.0.0.1")
    p.add_argument("--mysql-port", type=int, default=3306)
    p.add_argument("--mysql-user", default="root")
    p.add_argument("--no-install", action="store_true",
                   help="do not apt-get install the missing native tools (zstd, mydumper, pgloader)")
    p.add_argument("--mysql-driver", choices=("mysqldb", "pymysql"), default="",
                   help="albackup's MySQL driver (default: what a mysql:// URL takes, mysqlclient when installed)")
    a = p.parse_args(argv)
    if a.scale <= 0 or a.repeat < 1:
        p.error("--scale must be > 0 and --repeat >= 1")
    return a


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    missing = [t for t in ("psql", "pg_dump", "pg_restore", "mariadb", "mariadb-dump") if not shutil.which(t)]
    if missing:
        print(f"scripts/bench: missing client tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    b = Bench(args)
    started = time.perf_counter()
    try:
        info = machine_info(b.pg, b.my)
        print("## machine")
        for k, v in info.items():
            print(f"  {k}: {v}")
        sys.stdout.flush()
        b.compile_albackup()
        b.generate_and_load()
        b.build_ops()
        b.measure()
        prof = b.profile() if args.profile else None
        rows = b.summary()
        ds = b.dataset
        sources = "; ".join(x for x in (
            f"PostgreSQL source {b.setup['pg_src_bytes'] / 1e6:.0f} MB" if "pg_src_bytes" in b.setup else "",
            f"MariaDB source ~{b.setup['mariadb_src_bytes'] / 1e6:.0f} MB" if "mariadb_src_bytes" in b.setup else "")
            if x)
        print(f"\n## albackup beside the native tools: scale {args.scale:g} MB, seed {args.seed}, "
              f"{ds.accounts_rows:,} accounts + {ds.mixed_rows:,} mixed = {ds.rows:,} rows; "
              f"{sources}; median of {args.repeat} run(s)")
        b.print_table(rows)
        print("\n(A) = albackup; ratio = albackup wall time ÷ that tool's, paired run by run (median; "
              "min–max over the pairs); > 1 means albackup is slower.\nCPU s and peak RSS MB are the "
              "client processes' (a pipeline's stages summed); server CPU s is what the database server "
              "spent meanwhile. Restore output MB = size of the restored database.")
        for s in b.skipped:
            print(f"  {s['operation']}: {s['tool']}: {s['reason']}")
        for n in b.notes:
            print(f"  note: {n}")
        failed = [r for r in rows if r.get("error")]
        for r in failed:
            print(f"  FAILED {r['operation']} / {r['tool']}: {r['error'][:2000]}")
        total = time.perf_counter() - started
        loads = "".join(f", {what} load {b.setup[k]:.0f} s" for what, k in
                        (("PostgreSQL", "pg_load_s"), ("MariaDB", "mariadb_load_s")) if k in b.setup)
        print(f"\ntotal {total:.0f} s (setup: generate {b.setup['generate_s']:.0f} s{loads})")
        if args.json:
            doc = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   "params": {k: v for k, v in vars(args).items()}, "machine": info,
                   "dataset": ds.to_dict(), "setup": b.setup, "results": rows, "notes": b.notes,
                   "profile": prof, "total_s": round(total, 1)}
            Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
            log(f"results written to {args.json}")
        return 1 if failed else 0
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
