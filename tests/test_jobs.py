"""S3 and local destinations, the scheduled run, retention over a simulated year, list and prune.

S3 is a real server on loopback (moto in server mode; SeaweedFS where auth must be enforced).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from albackup import api, config, jobs
from albackup.destinations import Destination
from albackup.errors import AlbackupError
from albackup.repository import Repository
from albackup.restore import RestoreOptions
from albackup.retention import Policy
from albackup.storage import open_storage

from . import s3servers
from .s3servers import loopback_only  # noqa: F401  (autouse fixture)

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "albackup-jobs"
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3servers.S3Server]:
    yield from s3servers.running_moto(tmp_path_factory, BUCKET)


@pytest.fixture
def s3env(moto: s3servers.S3Server, monkeypatch: pytest.MonkeyPatch) -> s3servers.S3Server:
    """Ad-hoc s3:// URLs on the command line reach the server through boto3's standard settings."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3servers.REGION)
    return moto


def _shop(path: Path, big_rows: int = 0) -> Path:
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), note TEXT);
        CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);
    """)
    con.executemany("INSERT INTO customers VALUES (?, ?)", [(i, f"c{i} é") for i in range(50)])
    con.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, i % 50, f"n{i}") for i in range(200)])
    con.executemany("INSERT INTO blobs VALUES (?, ?)", [(i, os.urandom(64 * 1024)) for i in range(big_rows)])
    con.commit()
    con.close()
    return path


def _run_cfg(src: Path, dest: Destination, policy: Policy, **kw: object) -> config.RunConfig:
    db = replace(config.url_config(f"sqlite:///{src}", name="shop"), retention=policy, destinations=(dest,),
                 source="test")
    return config.RunConfig(scratch=None, databases=(db,), hostname="h1", **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ ad-hoc s3:// URLs
def test_dump_to_s3_restore_from_s3_into_another_engine(s3env: s3servers.S3Server, tmp_path: Path, pg) -> None:
    src = _shop(tmp_path / "shop.sqlite")
    url = f"s3://{BUCKET}/adhoc"
    p = subprocess.run([sys.executable, "-m", "albackup", "dump", "--url", f"sqlite:///{src}", "--backup-dir", url],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    location = p.stdout.strip().splitlines()[-1]
    assert location.startswith(f"{url}/shop@local--")
    keys = {o["Key"] for o in s3env.client().list_objects_v2(Bucket=BUCKET, Prefix="adhoc/")["Contents"]}
    bid = location.rsplit("/", 1)[1]
    assert f"adhoc/{bid}/manifest.json" in keys and any(k.endswith(".chunk") for k in keys)
    assert api.verify(location).rows == 250
    info = api.inspect_backup(location)
    assert {t["table"] for t in info["tables"]} == {"customers", "orders", "blobs"}
    dst = pg.new("s3dst")
    api.restore(location, config.url_config(dst.render_as_string(False), allow_restore=True),
                RestoreOptions(allow_restore=True))
    e = sa.create_engine(dst)
    with e.connect() as c:
        assert c.exec_driver_sql("SELECT count(*), max(name) FROM customers").one() == (50, "c9 é")
    e.dispose()


def test_partial_restore_downloads_only_the_chunks_it_needs(s3env: s3servers.S3Server, tmp_path: Path) -> None:
    src = _shop(tmp_path / "shop.sqlite")
    location = api.dump(config.url_config(f"sqlite:///{src}"), f"s3://{BUCKET}/partial").location
    with api.backup_at(location) as b:
        target = config.url_config(f"sqlite:///{tmp_path / 't.sqlite'}", allow_restore=True)
        res = api._restore(b, target, RestoreOptions(allow_restore=True, include=("customers",)), None)
        assert res.rows == 50
        fetched = sorted(p.name for p in (b.path / "data").iterdir())
        wanted = [c["file"].split("/")[1] for c in b.tables["customers"]["chunks"]]
        assert fetched == wanted


def test_multipart_upload_of_a_large_chunk(s3env: s3servers.S3Server, tmp_path: Path) -> None:
    moto = s3env
    src = _shop(tmp_path / "big.sqlite", big_rows=160)    # ~10 MiB of random bytes: > one 5 MiB part
    dest = Destination(f"s3://{BUCKET}/multi", moto.options(part_size=5 * 1024 * 1024))
    cfg = _run_cfg(src, replace(dest), Policy(daily=3))
    cfg = replace(cfg, databases=(replace(cfg.databases[0], compression="none"),))
    res = jobs.run(cfg, now=dt.datetime(2026, 5, 1, 3, tzinfo=UTC))
    assert res.ok, res.entries
    e = res.entries[0]
    url = jobs.stored_backup_url(cfg, cfg.databases[0], e.backup)
    with api.backup_at(url) as b:
        [chunk] = [c["file"] for c in b.tables["blobs"]["chunks"]]     # the table of big rows, one chunk
    head = moto.client().head_object(Bucket=BUCKET, Key=f"multi/h1/shop/{e.backup}/{chunk}")
    assert head["ETag"].strip('"').endswith("-2") or head["ContentLength"] > 5 * 1024 * 1024
    assert api.verify(jobs.stored_backup_url(cfg, cfg.databases[0], e.backup)).rows == 410


# ------------------------------------------------------------------ the scheduled run
def _dest(kind: str, tmp_path: Path, moto: s3servers.S3Server | None, prefix: str) -> Destination:
    if kind == "local":
        return Destination(str(tmp_path / "dest"))
    assert moto is not None
    return Destination(f"s3://{BUCKET}/{prefix}", moto.options())


@pytest.fixture(params=["local", "s3"])
def dest_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_run_dumps_only_when_due_moves_latest_and_lists(dest_kind: str, tmp_path: Path, request) -> None:
    moto = request.getfixturevalue("moto") if dest_kind == "s3" else None
    src = _shop(tmp_path / "shop.sqlite")
    dest = _dest(dest_kind, tmp_path, moto, f"run-{os.getpid()}-{tmp_path.name}")
    cfg = _run_cfg(src, dest, Policy(hourly=2, daily=2))
    t = dt.datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    r1 = jobs.run(cfg, now=t)
    assert r1.entries[0].status == "backed up" and set(r1.entries[0].due) == {"hourly", "daily"}
    r2 = jobs.run(cfg, now=t + dt.timedelta(minutes=20))
    assert r2.entries[0].status == "not due"
    r3 = jobs.run(cfg, now=t + dt.timedelta(hours=1))
    assert r3.entries[0].status == "backed up" and r3.entries[0].due == ["hourly"]
    repo = jobs.repositories(cfg, cfg.databases[0])[0]
    assert repo.latest() == r3.entries[0].backup
    listed = jobs.list_backups(cfg, now=t + dt.timedelta(hours=1))
    assert [b["id"] for b in listed[0].backups] == [r3.entries[0].backup, r1.entries[0].backup]
    assert listed[0].backups[0]["verified"] and "hourly 2026-03-01T11" in listed[0].backups[0]["sets"]
    assert "daily 2026-03-01" in listed[0].backups[1]["sets"] or "daily 2026-03-01" in listed[0].backups[0]["sets"]


def test_failed_upload_leaves_no_complete_backup_and_latest_unchanged(tmp_path: Path) -> None:
    """The S3 server dies in the middle of the upload: the run fails, and the other destination
    holds no complete-looking new backup, its latest unchanged, nothing pruned."""
    (tmp_path / "private").mkdir()
    server = s3servers.start_moto(tmp_path / "private")
    try:
        s3servers.create_bucket(server, BUCKET)
        src = _shop(tmp_path / "shop.sqlite", big_rows=20)
        local = Destination(str(tmp_path / "local"))
        s3 = Destination(f"s3://{BUCKET}/fail", server.options(max_attempts=1, connect_timeout=1.0, read_timeout=3.0))
        cfg = _run_cfg(src, local, Policy(hourly=1))
        cfg = replace(cfg, databases=(replace(cfg.databases[0], destinations=(local, s3)),))
        t = dt.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
        ok = jobs.run(cfg, now=t)
        assert ok.ok, ok.entries
        good = ok.entries[0].backup

        def stop_server(table: str, rows: int, size: int, secs: float) -> None:
            if table == "blobs":
                server.stop()

        bad = jobs.run(cfg, now=t + dt.timedelta(hours=1), progress=stop_server)
        assert bad.entries[0].status == "failed" and "StorageError" in (bad.entries[0].error or "")
        assert bad.entries[0].pruned == []
    finally:
        server.stop()
    repo = Repository(open_storage(local.url), "h1/shop")
    assert [(e.id, e.complete) for e in repo.entries()] == [(good, True)]   # nothing left of the failed one
    assert repo.latest() == good


def test_failed_upload_on_a_live_server(moto: s3servers.S3Server, tmp_path: Path) -> None:
    """The destination refuses the upload (a bucket that does not exist): nothing complete, latest kept."""
    src = _shop(tmp_path / "shop.sqlite")
    good_dest = Destination(f"s3://{BUCKET}/live-{tmp_path.name}", moto.options())
    cfg = _run_cfg(src, good_dest, Policy(hourly=5))
    t = dt.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    first = jobs.run(cfg, now=t).entries[0].backup
    broken = replace(cfg, databases=(replace(cfg.databases[0], destinations=(
        good_dest, Destination(f"s3://no-such-bucket-{os.getpid()}/x", moto.options(max_attempts=1)))),))
    res = jobs.run(broken, now=t + dt.timedelta(hours=1))
    assert res.entries[0].status == "failed"
    repo = Repository(open_storage(good_dest.url, good_dest.options), "h1/shop")
    entries = repo.entries()
    assert [e.id for e in entries if e.complete] == [first]
    assert repo.latest() == first


def test_wrong_credentials_are_refused_by_seaweedfs(tmp_path: Path) -> None:
    server = s3servers.start_seaweedfs(tmp_path / "weed")
    try:
        s3servers.create_bucket(server, BUCKET)
        src = _shop(tmp_path / "shop.sqlite")
        dest = Destination(f"s3://{BUCKET}/auth", server.options(secret_access_key="not-the-secret", max_attempts=1))
        res = jobs.run(_run_cfg(src, dest, Policy(daily=1)), now=dt.datetime(2026, 1, 1, tzinfo=UTC))
        assert res.entries[0].status == "failed"
        assert "not-the-secret" not in (res.entries[0].error or "") and server.secret_key not in res.entries[0].error
        good = Destination(f"s3://{BUCKET}/auth", server.options())
        res = jobs.run(_run_cfg(src, good, Policy(daily=1)), now=dt.datetime(2026, 1, 1, tzinfo=UTC))
        assert res.ok, res.entries
    finally:
        server.stop()


def test_a_year_of_hourly_runs(dest_kind: str, tmp_path: Path, request) -> None:
    """An injected clock runs the job every hour for a year; what is kept matches the policy.
    On S3 (moto answers in 10-15 ms a request here, and each daily dump with its upload
    checks, verification and pruning makes about 20: a year took four minutes) the clock runs
    every six hours for four months, and what is kept is the same policy's outcome then."""
    moto = request.getfixturevalue("moto") if dest_kind == "s3" else None
    step, ndays = (6, 120) if dest_kind == "s3" else (1, 365)
    src = _shop(tmp_path / "shop.sqlite")
    dest = _dest(dest_kind, tmp_path, moto, f"year-{os.getpid()}-{tmp_path.name}")
    policy = Policy(daily=7, weekly=4, monthly=12, yearly=2)
    cfg = _run_cfg(src, dest, policy)
    repo = jobs.repositories(cfg, cfg.databases[0])[0]
    start = dt.datetime(2026, 1, 1, 0, 17, tzinfo=UTC)
    dumps = 0
    for h in range(0, 24 * ndays, step):
        now = start + dt.timedelta(hours=h)
        res = jobs.run(cfg, now=now)
        assert res.ok, (now, res.entries)
        dumps += res.entries[0].status == "backed up"
    assert dumps == ndays        # one a day: only the daily (and coarser) periods are configured
    kept = repo.entries()
    days = sorted(e.time.date() for e in kept)
    assert all(e.complete and e.verified for e in kept)
    if ndays == 365:
        # 7 dailies (12-25..12-31), 4 ISO weeks (W53's newest is 12-31, then Sundays 12-27, 12-20,
        # 12-13), 12 months (12-31 and the month ends Jan..Nov), the year (12-31): each backup
        # counted once
        month_ends = [dt.date(2026, m + 1, 1) - dt.timedelta(days=1) for m in range(1, 12)]
        expected = sorted(set([dt.date(2026, 12, 25) + dt.timedelta(days=i) for i in range(7)]
                              + [dt.date(2026, 12, 20), dt.date(2026, 12, 13)] + month_ends))
        assert days == expected and len(days) == 20
    else:
        # to 04-30: 7 dailies (04-24..04-30), 4 ISO weeks (W18's newest is 04-30, then Sundays
        # 04-26, 04-19, 04-12), the months (04-30, 03-31, 02-28, 01-31), the year (04-30)
        expected = sorted(set([dt.date(2026, 4, 24) + dt.timedelta(days=i) for i in range(7)]
                              + [dt.date(2026, 4, 19), dt.date(2026, 4, 12), dt.date(2026, 3, 31),
                                 dt.date(2026, 2, 28), dt.date(2026, 1, 31)]))
        assert days == expected and len(days) == 12
    assert repo.latest() == kept[0].id


def test_prune_dry_run_and_cli(tmp_path: Path) -> None:
    src = _shop(tmp_path / "shop.sqlite")
    dest_dir = tmp_path / "dest"
    cfgfile = tmp_path / "backups.yaml"
    cfgfile.write_text(f"""hostname: h1
destinations:
  - {dest_dir}
retention: {{daily: 2}}
databases:
  - name: shop
    driver: sqlite
    database: {src}
""")
    cfg = config.test_all_config(cfgfile)
    for day in range(4):
        assert jobs.run(cfg, now=dt.datetime(2026, 2, 1 + day, 1, tzinfo=UTC)).ok
    # a new policy keeps fewer: the dry run says so and removes nothing
    cfg1 = replace(cfg, databases=(replace(cfg.databases[0], retention=Policy(daily=1)),))
    report = jobs.prune(cfg1, now=dt.datetime(2026, 2, 4, 2, tzinfo=UTC), dry_run=True)
    assert [r["keep"] for r in report] == [True, False]
    assert report[0]["reasons"][:1] == ["newest"]
    assert len(list((dest_dir / "h1" / "shop").iterdir())) == 3     # 2 backups + latest
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "albackup", "--cfg", str(cfgfile), "list"], capture_output=True,
                       text=True, env=env, cwd=ROOT)
    assert p.returncode == 0 and "shop @" in p.stdout and "verified" in p.stdout, p.stderr
    p = subprocess.run([sys.executable, "-m", "albackup", "--cfg", str(cfgfile), "prune", "--dry-run"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.count("keep") == 2, p.stdout
    p = subprocess.run([sys.executable, "-m", "albackup", "--cfg", str(cfgfile), "run"], capture_output=True,
                       text=True, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "shop" in p.stdout


def test_run_refuses_a_database_without_policy(tmp_path: Path) -> None:
    src = _shop(tmp_path / "shop.sqlite")
    db = replace(config.url_config(f"sqlite:///{src}", name="shop"), destinations=(Destination(str(tmp_path / "d")),))
    res = jobs.run(config.RunConfig(scratch=None, databases=(db,), hostname="h"))
    assert res.entries[0].status == "failed" and "retention" in (res.entries[0].error or "")
    with pytest.raises(AlbackupError, match="empty retention policy"):
        Policy.from_mapping({})


def test_check_fires_on_a_stale_backup(tmp_path: Path) -> None:
    src = _shop(tmp_path / "shop.sqlite")
    cfg = _run_cfg(src, Destination(str(tmp_path / "dest")), Policy(daily=3))
    cfg = replace(cfg, databases=(replace(cfg.databases[0], max_age=dt.timedelta(hours=26)),))
    t = dt.datetime(2026, 6, 1, 2, tzinfo=UTC)
    assert [f.stale for f in jobs.check(cfg, now=t)] == [True]          # nothing backed up yet
    assert jobs.run(cfg, now=t).ok
    assert [f.stale for f in jobs.check(cfg, now=t + dt.timedelta(hours=25))] == [False]
    stale = jobs.check(cfg, now=t + dt.timedelta(hours=27))
    assert stale[0].stale and stale[0].newest is not None and stale[0].age_seconds == 27 * 3600
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text(f"hostname: h1\ndestinations: [{tmp_path / 'dest'}]\nretention: {{daily: 3}}\n"
                       f"max_age: 1h\ndatabases:\n  - name: shop\n    driver: sqlite\n    database: {src}\n")
    p = subprocess.run([sys.executable, "-m", "albackup", "--cfg", str(cfgfile), "check"], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert p.returncode == 16 and "STALE shop" in p.stdout, (p.stdout, p.stderr)


def test_test_all_goes_through_s3(moto: s3servers.S3Server, tmp_path: Path) -> None:
    """With a destination, test_all dumps up to S3, restores from there, compares, and cleans up."""
    src = _shop(tmp_path / "shop.sqlite")
    dest = Destination(f"s3://{BUCKET}/ta-{tmp_path.name}", moto.options())
    db = replace(config.url_config(f"sqlite:///{src}", name="shop"), destinations=(dest,))
    res = api.test_all(config.TestAllConfig(scratch=None, databases=(db,)), workdir=tmp_path)
    assert res.ok, res.entries
    assert res.entries[0].backup.startswith(f"s3://{BUCKET}/ta-{tmp_path.name}/test_all/shop/shop@local--")
    left = moto.client().list_objects_v2(Bucket=BUCKET, Prefix=f"ta-{tmp_path.name}/").get("KeyCount")
    assert left == 0


def test_cli_reads_a_stored_backup_with_the_configs_destination_options(moto: s3servers.S3Server,
                                                                        tmp_path: Path) -> None:
    """No AWS_* variables: verify and inspect find the endpoint and keys in the config's destination."""
    src = _shop(tmp_path / "shop.sqlite")
    cfgfile = tmp_path / "b.yaml"
    cfgfile.write_text(f"""hostname: h1
destinations:
  - url: s3://{BUCKET}/cfgopts
    endpoint_url: {moto.endpoint}
    region: {s3servers.REGION}
    access_key_id: {{env: T_AK}}
    secret_access_key: {{env: T_SK}}
retention: {{daily: 1}}
databases:
  - name: shop
    driver: sqlite
    database: {src}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PYTHONPATH=str(ROOT), T_AK=moto.access_key, T_SK=moto.secret_key, AWS_EC2_METADATA_DISABLED="true")
    p = subprocess.run([sys.executable, "-m", "albackup", "--cfg", str(cfgfile), "run", "--json"], capture_output=True,
                       text=True, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    bid = json.loads(p.stdout)["databases"][0]["backup"]
    url = f"s3://{BUCKET}/cfgopts/h1/shop/{bid}"
    for cmd in (["verify"], ["inspect", "--json"]):
        p = subprocess.run([sys.executable, "-m", "albackup", "--cfg", str(cfgfile), *cmd, "--backup-dir", url],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        assert p.returncode == 0, p.stderr


def test_parallel_dump_and_restore_through_s3(s3env: s3servers.S3Server, pg, tmp_path: Path) -> None:
    """-j 2 with a table cut into key ranges, straight to an s3:// URL and back: the chunk files
    are fetched before the workers start and every value comes back."""
    src = pg.new("s3jsrc")
    e = sa.create_engine(src)
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        c.exec_driver_sql("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5000) g")
        c.exec_driver_sql("ANALYZE t")
    e.dispose()
    cfg = config.url_config(src.render_as_string(False), jobs=2, chunk_rows=1000)
    location = api.dump(cfg, f"s3://{BUCKET}/parallel").location
    with api.backup_at(location) as b:
        assert len(b.tables["t"]["chunks"]) == 5
    dst = pg.new("s3jdst")
    res = api.restore(location, config.url_config(dst.render_as_string(False), allow_restore=True),
                      RestoreOptions(allow_restore=True, jobs=2))
    assert res.rows == 5000
    e = sa.create_engine(dst)
    with e.connect() as c:
        assert c.exec_driver_sql("SELECT count(*), sum(id), max(v) FROM t").one() == (5000, 12502500, "v999")
    e.dispose()
