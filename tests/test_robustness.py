"""Bad input never gets through: fuzzed archives and configs, killed processes, leaked secrets."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import NullPool

from albackup import api, config
from albackup.errors import AlbackupError
from albackup.keys import NONE as NO_ENCRYPTION
from albackup.keys import EncryptionConfig
from albackup.secrets import SecretSource
from albackup.restore import RestoreOptions

ROOT = Path(__file__).resolve().parent.parent


def _small_backup(tmp: Path, enc: "EncryptionConfig | None" = None) -> Path:
    db = tmp / "s.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE a (id INTEGER PRIMARY KEY, t TEXT, b BLOB, r REAL);
        CREATE TABLE c (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id));
    """)
    con.executemany("INSERT INTO a VALUES (?, ?, ?, ?)", [(i, f"row {i} é", bytes([i % 256]) * 20, i / 3)
                                                          for i in range(300)])
    con.executemany("INSERT INTO c VALUES (?, ?)", [(i, i) for i in range(50)])
    con.commit()
    con.close()
    cfg = config.url_config(f"sqlite:///{db}")
    if enc is not None:
        cfg = replace(cfg, encryption=enc)
    return api.dump(cfg, tmp / "b").path


def _enc_config(tmp: Path) -> EncryptionConfig:
    pw = tmp / "pass"
    pw.write_text("fuzz passphrase\n")
    os.chmod(pw, 0o600)
    return EncryptionConfig(passphrase=SecretSource(file=str(pw)), scrypt_n=1024)


@pytest.fixture(scope="module", params=["plain", "encrypted"])
def pristine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EncryptionConfig]:
    tmp = tmp_path_factory.mktemp("fuzz")
    enc = _enc_config(tmp) if request.param == "encrypted" else NO_ENCRYPTION
    return _small_backup(tmp, enc if request.param == "encrypted" else None), enc


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_archives_give_albackup_errors_only(pristine: tuple[Path, EncryptionConfig],
                                                   tmp_path_factory: pytest.TempPathFactory,
                                                   data: st.DataObject) -> None:
    pristine, enc = pristine
    work = _copy(pristine, tmp_path_factory.mktemp("case") / pristine.name)
    files = sorted(p for p in work.rglob("*") if p.is_file())
    target = data.draw(st.sampled_from(files))
    raw = bytearray(target.read_bytes())
    op = data.draw(st.sampled_from(["flip", "truncate", "insert", "zero", "swap"]))
    if op == "flip" and raw:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        raw = raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))]
    elif op == "insert":
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    elif op == "zero" and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i:i + 8] = bytes(min(8, len(raw) - i))
    elif op == "swap" and len(files) > 2:
        other = data.draw(st.sampled_from([f for f in files if f != target]))
        raw = bytearray(other.read_bytes())
    target.write_bytes(bytes(raw))
    try:
        api.verify(work, enc)
    except AlbackupError as exc:
        assert exc.exit_code in (6, 7, 8, 11, 14), exc
        assert "\n" not in exc.message
    else:
        # a change the reader cannot see must not have changed any value
        assert bytes(raw) == (pristine / target.relative_to(work)).read_bytes() or target.name == "manifest.json"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300), base=st.sampled_from(sorted(p for p in (ROOT / "sample-configs").iterdir() if p.suffix in (".yaml", ".json"))))
def test_fuzzed_configs_give_config_errors_only(text: str, base: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    orig = base.read_text()
    cut = len(text) % (len(orig) + 1)
    mutated = orig[:cut] + text + orig[cut + len(text) // 2:]
    p = tmp_path_factory.mktemp("cfg") / base.name
    p.write_text(mutated)
    os.chmod(p, 0o600)
    try:
        if "databases" in orig:
            config.test_all_config(p)
        else:
            config.database_config(p)
    except AlbackupError as exc:
        assert exc.exit_code in (3, 15), exc


# ------------------------------------------------------------------------ killed processes
def _run_bg(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "albackup", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _kill_after(proc: subprocess.Popen[str], marker: str, timeout: float = 120) -> str:
    """Read stderr until ``marker`` appears, then SIGKILL the process. Returns what it printed."""
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            return "".join(seen)
    proc.kill()
    raise AssertionError(f"never saw {marker!r} (exit {proc.poll()}): {''.join(seen)}")


def _big_source(url: sa.URL, rows: int) -> None:
    e = sa.create_engine(url, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE a_first (id INT PRIMARY KEY, v TEXT)")
        c.exec_driver_sql("INSERT INTO a_first VALUES (1, 'x')")
        c.exec_driver_sql("CREATE TABLE b_big (id INT PRIMARY KEY, v TEXT, w TEXT)")
        c.exec_driver_sql(
            "INSERT INTO b_big SELECT g, md5(g::text), repeat(md5(g::text), 4) FROM generate_series(1, %s) g" % rows)
    e.dispose()


def test_killed_dump_leaves_no_backup(pg, tmp_path: Path) -> None:
    src = pg.new("kill")
    _big_source(src, 400_000)
    proc = _run_bg(["dump", "--url", src.render_as_string(False), "--backup-dir", str(tmp_path / "b"),
                    "--compression", "lzma"])
    out = _kill_after(proc, "table a_first", timeout=180)
    published = [p for p in (tmp_path / "b").iterdir() if not p.name.startswith(".")]
    assert published == [], (proc.returncode, out)
    with pytest.raises(AlbackupError):
        for p in (tmp_path / "b").iterdir():
            api.verify(p)
        raise AlbackupError("nothing to verify")


def test_killed_restore_leaves_postgresql_target_clean(pg, tmp_path: Path) -> None:
    src = pg.new("ksrc")
    _big_source(src, 300_000)
    backup = api.dump(config.url_config(src.render_as_string(False)), tmp_path / "b").path
    dst = pg.new("kdst")
    proc = _run_bg(["restore", "--url", dst.render_as_string(False), "--allow-restore",
                    "--backup-dir", str(backup)])
    _kill_after(proc, "table a_first")
    # the server rolls back the dead session's one transaction: nothing is left half-restored
    deadline = time.monotonic() + 20
    while True:
        e = sa.create_engine(dst, poolclass=NullPool)
        names = sa.inspect(e).get_table_names()
        e.dispose()
        if not names or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert names == []
    res = api.restore(backup, config.url_config(dst.render_as_string(False), allow_restore=True),
                      RestoreOptions(allow_restore=True))
    assert res.rows == 300_001


# ------------------------------------------------------------------------------ secrets
def test_password_never_leaks(pg, tmp_path: Path) -> None:
    """Every output, log and file of a run is searched for the password used."""
    secret = "Zq9-very-secret-pw"
    src = pg.new("sec")
    e = sa.create_engine(src, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        c.exec_driver_sql("INSERT INTO t VALUES (1, 'a')")
    e.dispose()
    with_pw = src.set(password=secret).render_as_string(hide_password=False)
    dst = pg.new("secdst").set(password=secret).render_as_string(hide_password=False)
    cfg = tmp_path / "db.yaml"
    cfg.write_text(f"url: {with_pw}\n")
    os.chmod(cfg, 0o600)
    outputs = []
    runs = [
        ["--cfg", str(cfg), "--backup-dir", str(tmp_path / "b"), "dump", "--debug"],
        ["--cfg", str(cfg), "--backup-dir", str(tmp_path / "b"), "dump", "--json"],
        ["dump", "--url", src.set(password=secret, port=1).render_as_string(hide_password=False),
         "--backup-dir", str(tmp_path / "x"), "--debug"],
        ["compare", "--url", with_pw, "--target-url", dst, "-v"],
    ]
    for args in runs:
        p = subprocess.run([sys.executable, "-m", "albackup", *args], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
        outputs.append(p.stdout + p.stderr)
    backup = next((tmp_path / "b").iterdir())
    p = subprocess.run([sys.executable, "-m", "albackup", "restore", "--url", dst, "--allow-restore",
                        "--backup-dir", str(backup), "--debug", "--json"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    outputs.append(p.stdout + p.stderr)
    assert "cannot connect" in outputs[2]
    for out in outputs:
        assert secret not in out
    for f in tmp_path.rglob("*"):
        if f.is_file() and f != cfg:
            assert secret.encode() not in f.read_bytes(), f
    m = json.loads((backup / "manifest.json").read_text())
    assert "***" in m["source"]["url"] or "@" not in m["source"]["url"]


# ------------------------------------------------------------------ disk full, dropped links
def _fill_source(url: sa.URL, rows: int = 3000) -> None:
    e = sa.create_engine(url, poolclass=NullPool)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE a_first (id INT PRIMARY KEY, v TEXT)")
        c.exec_driver_sql("INSERT INTO a_first VALUES (1, 'x')")
        c.exec_driver_sql("CREATE TABLE b_next (id INT PRIMARY KEY, v TEXT)")
    md = sa.MetaData()
    t = sa.Table("b_next", md, autoload_with=e)
    with e.begin() as c:
        c.execute(t.insert(), [{"id": i, "v": os.urandom(200).hex()} for i in range(rows)])
    e.dispose()


def test_disk_full_while_dumping_leaves_no_half_backup(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                             capture_output=True).returncode == 0
    src = tmp_path / "big.sqlite"
    _fill_source(sa.engine.make_url(f"sqlite:///{src}"))
    try:
        if mounted:   # a real ENOSPC
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            p = subprocess.run([sys.executable, "-m", "albackup", "dump", "--url", f"sqlite:///{src}",
                                "--backup-dir", str(mnt / "b"), "--compression", "none"],
                               capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        else:         # no mount here: a file size limit gives the same failed write
            code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                    "resource.setrlimit(resource.RLIMIT_FSIZE, (200000, 200000)); "
                    "from albackup.cli import main; main(sys.argv[1:])")
            p = subprocess.run([sys.executable, "-c", code, "dump", "--url", f"sqlite:///{src}", "--backup-dir",
                                str(mnt / "b"), "--compression", "none"], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
        assert p.returncode == 9, p.stderr
        assert "Traceback" not in p.stderr and "cannot write the backup" in p.stderr
        assert list((mnt / "b").iterdir()) == []
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)


def _kill_other_sessions(url: sa.URL) -> None:
    e = sa.create_engine(url, poolclass=NullPool)
    with e.connect() as c:
        if e.dialect.name == "postgresql":
            c.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        else:
            ids = c.exec_driver_sql("SELECT id FROM information_schema.processlist "
                                    "WHERE db = DATABASE() AND id <> CONNECTION_ID()").scalars().all()
            for i in ids:
                c.exec_driver_sql(f"KILL {int(i)}")
    e.dispose()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_connection_dropped_mid_dump(kind: str, make_db, tmp_path: Path) -> None:
    src = make_db(kind, "drop")
    _fill_source(src)

    def cut(table: str, rows: int, size: int, secs: float) -> None:
        if table == "a_first":
            _kill_other_sessions(src)

    with pytest.raises(AlbackupError) as exc:
        api.dump(config.url_config(src.render_as_string(False)), tmp_path / "b", progress=cut)
    assert exc.value.exit_code == 9
    assert list((tmp_path / "b").iterdir()) == []


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_connection_dropped_mid_restore(kind: str, make_db, tmp_path: Path) -> None:
    src = make_db(kind, "rdrop")
    _fill_source(src)
    backup = api.dump(config.url_config(src.render_as_string(False)), tmp_path / "b").path
    dst = make_db(kind, "rdropdst")

    def cut(table: str, rows: int, size: int, secs: float) -> None:
        if table == "a_first":
            _kill_other_sessions(dst)

    with pytest.raises(AlbackupError) as exc:
        api.restore(backup, config.url_config(dst.render_as_string(False), allow_restore=True),
                    RestoreOptions(allow_restore=True), progress=cut)
    assert exc.value.exit_code == 10
    e = sa.create_engine(dst, poolclass=NullPool)
    assert sa.inspect(e).get_table_names() == []     # rolled back (PostgreSQL) or cleaned (MySQL)
    e.dispose()
