"""Encrypted backups end to end: keys from env/file, tamper detection, public-key-only hosts."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from albackup import api, config
from albackup.archive import FRAME, HEADER
from albackup.cli import main
from albackup.errors import ArchiveError, ConfigError, CryptoError
from albackup.restore import RestoreOptions

PASS = "correct horse battery staple"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    db = tmp_path / "src.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE secret_customers (id INTEGER PRIMARY KEY, name TEXT, card TEXT);
        CREATE TABLE secret_orders (id INTEGER PRIMARY KEY, amount INTEGER, note TEXT);
    """)
    con.executemany("INSERT INTO secret_customers VALUES (?, ?, ?)",
                    [(i, f"customer-{i}", f"4111-1111-{i:04d}") for i in range(200)])
    con.executemany("INSERT INTO secret_orders VALUES (?, ?, ?)", [(i, i * 3, f"note {i}") for i in range(200)])
    con.commit()
    con.close()
    return db


def _cfg(tmp_path: Path, db: Path, enc: str, **extra: str) -> Path:
    p = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*')))}.yaml"
    lines = [f"driver: sqlite", f"database: {db}", "batch_rows: 40", "encryption:", *[f"  {x}" for x in enc.splitlines()]]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    p.write_text("\n".join(lines) + "\n")
    os.chmod(p, 0o600)
    return p


@pytest.fixture
def env_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALBK_TEST_PASS", PASS)


def _dump(cfgpath: Path, tmp_path: Path, name: str = "b") -> Path:
    return api.dump(config.database_config(cfgpath), tmp_path / name).path


def _rows(db: Path, table: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    finally:
        con.close()


def test_passphrase_backup_round_trip_and_nothing_readable_on_disk(source: Path, tmp_path: Path, env_pass: None) -> None:
    cfg = _cfg(tmp_path, source, "passphrase: {env: ALBK_TEST_PASS}\nscrypt_n: 1024")
    backup = _dump(cfg, tmp_path)
    for f in backup.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert b"secret_customers" not in data and b"4111-1111" not in data and b"customer-1" not in data, f
    db = config.database_config(cfg)
    assert api.verify(backup, db.encryption).rows == 400
    target = tmp_path / "t.sqlite"
    api.restore(backup, replace(db, url=sa.engine.make_url(f"sqlite:///{target}"), allow_restore=True),
                RestoreOptions(allow_restore=True))
    assert _rows(target, "secret_customers") == _rows(source, "secret_customers")


def test_wrong_or_missing_passphrase_is_not_corruption(source: Path, tmp_path: Path, env_pass: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path, source, "passphrase: {env: ALBK_TEST_PASS}\nscrypt_n: 1024")
    backup = _dump(cfg, tmp_path)
    with pytest.raises(CryptoError, match="is encrypted"):
        api.verify(backup)
    monkeypatch.setenv("ALBK_TEST_PASS", "not it")
    with pytest.raises(CryptoError, match="wrong passphrase or key"):
        api.verify(backup, config.database_config(cfg).encryption)
    with pytest.raises(SystemExit) as ex:
        main(["verify", "--backup-dir", str(backup), "--passphrase-env", "ALBK_TEST_PASS"])
    assert ex.value.code == 14


def test_public_key_only_host(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["keygen", "--out", str(tmp_path / "restore.key")])
    pub = capsys.readouterr().out.strip()
    assert pub.startswith("albackup-public-key-1:")
    assert oct((tmp_path / "restore.key").stat().st_mode & 0o777) == "0o600"
    (tmp_path / "backup.pub").write_text(pub + "\n")
    cfg = _cfg(tmp_path, source, "recipients: ['@backup.pub']")
    backup = _dump(cfg, tmp_path)
    with pytest.raises(CryptoError):       # the backup host's own config cannot read its backups
        api.verify(backup, config.database_config(cfg).encryption)
    with pytest.raises(SystemExit) as ex:
        main(["verify", "--backup-dir", str(backup), "--key-file", str(tmp_path / "restore.key")])
    assert ex.value.code == 0
    capsys.readouterr()
    # inspect without a key shows only the plaintext header
    with pytest.raises(SystemExit):
        main(["inspect", "--backup-dir", str(backup), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["encrypted"] is True and "tables" not in info and info["key_slots"][0]["type"] == "x25519"


def test_passphrase_in_config_is_refused(source: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, source, "passphrase: hunter2")
    with pytest.raises(ConfigError, match="never written in the config"):
        config.database_config(cfg)


def _frames(path: Path) -> list[tuple[int, int]]:
    """(offset, total length) of each frame of a chunk file."""
    data = path.read_bytes()
    pos, out = HEADER.size, []
    while True:
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        if n == 0xFFFFFFFF:
            return out
        out.append((pos, FRAME.size + n))
        pos += FRAME.size + n


@pytest.fixture
def enc_backup(source: Path, tmp_path: Path, env_pass: None) -> tuple[Path, config.DatabaseConfig, Path]:
    cfg = _cfg(tmp_path, source, "passphrase: {env: ALBK_TEST_PASS}\nscrypt_n: 1024")
    return _dump(cfg, tmp_path), config.database_config(cfg), cfg


def _chunks(backup: Path) -> list[Path]:
    return sorted((backup / "data").iterdir())


def test_tampered_frame_is_named(enc_backup: tuple[Path, config.DatabaseConfig, Path]) -> None:
    backup, db, _ = enc_backup
    chunk = _chunks(backup)[0]
    frames = _frames(chunk)
    assert len(frames) >= 3
    data = bytearray(chunk.read_bytes())
    off, ln = frames[1]
    data[off + FRAME.size + 20] ^= 0x40
    # keep the CRC right so only the AEAD can tell
    import zlib

    stored = bytes(data[off + FRAME.size: off + ln])
    n, raw, _ = FRAME.unpack(bytes(data[off:off + FRAME.size]))
    data[off:off + FRAME.size] = FRAME.pack(n, raw, zlib.crc32(stored))
    chunk.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=r"00001-00001\.chunk.*frame"):
        api.verify(backup, db.encryption)


def test_reordered_frames_are_detected(enc_backup: tuple[Path, config.DatabaseConfig, Path]) -> None:
    backup, db, _ = enc_backup
    chunk = _chunks(backup)[0]
    frames = _frames(chunk)
    data = chunk.read_bytes()
    (a, la), (b, lb) = frames[0], frames[1]
    swapped = data[:a] + data[b:b + lb] + data[a:a + la] + data[b + lb:]
    chunk.write_bytes(swapped)
    with pytest.raises(ArchiveError):
        list(api.open_backup(backup, db.encryption).iter_batches("secret_customers"))


def test_dropped_last_frame_is_detected_even_with_fixed_counts(enc_backup: tuple[Path, config.DatabaseConfig, Path]) -> None:
    backup, db, _ = enc_backup
    chunk = _chunks(backup)[0]
    frames = _frames(chunk)
    data = chunk.read_bytes()
    off, ln = frames[-1]
    trailer_at = off + ln
    # cut the last frame out and rewrite the plaintext trailer's counts to match
    rest = bytearray(data[:off] + data[trailer_at:])
    t = off
    struct.pack_into(">IIQ", rest, t, 0xFFFFFFFF, len(frames) - 1, 160)
    chunk.write_bytes(bytes(rest))
    with pytest.raises(ArchiveError):
        list(api.open_backup(backup, db.encryption).iter_batches("secret_customers"))


def test_swapped_chunk_files_are_detected(enc_backup: tuple[Path, config.DatabaseConfig, Path]) -> None:
    backup, db, _ = enc_backup
    a, b = _chunks(backup)
    da, dbb = a.read_bytes(), b.read_bytes()
    a.write_bytes(dbb)
    b.write_bytes(da)
    with pytest.raises(ArchiveError):
        api.verify(backup, db.encryption)


def test_chunk_from_another_backup_is_detected(enc_backup: tuple[Path, config.DatabaseConfig, Path],
                                               tmp_path: Path) -> None:
    backup, db, cfg = enc_backup
    other = _dump(cfg, tmp_path, "other")     # same passphrase, same data, another backup
    shutil.copy(_chunks(other)[0], _chunks(backup)[0])
    with pytest.raises(ArchiveError):
        api.verify(backup, db.encryption)


def test_manifest_header_or_seal_tampering_is_detected(enc_backup: tuple[Path, config.DatabaseConfig, Path],
                                                       tmp_path: Path) -> None:
    backup, db, cfg = enc_backup
    mpath = backup / "manifest.json"
    orig = json.loads(mpath.read_text())
    m = dict(orig, created_at="2000-01-01T00:00:00Z")
    mpath.write_text(json.dumps(m))
    with pytest.raises(ArchiveError, match="authentication"):
        api.verify(backup, db.encryption)
    other = _dump(cfg, tmp_path, "other")
    om = json.loads((other / "manifest.json").read_text())
    mpath.write_text(json.dumps(dict(orig, sealed=om["sealed"])))
    with pytest.raises(ArchiveError):
        api.verify(backup, db.encryption)


def test_unencrypted_replacement_is_refused_when_encryption_is_configured(
        enc_backup: tuple[Path, config.DatabaseConfig, Path], source: Path, tmp_path: Path) -> None:
    backup, db, _ = enc_backup
    plain = api.dump(config.url_config(f"sqlite:///{source}"), tmp_path / "plain").path
    shutil.rmtree(backup)
    shutil.copytree(plain, backup)
    with pytest.raises(ArchiveError, match="not encrypted"):
        api.verify(backup, db.encryption)


def test_test_all_with_an_encrypted_config(source: Path, tmp_path: Path, env_pass: None) -> None:
    p = tmp_path / "ta.yaml"
    p.write_text(f"""databases:
  - name: enc
    driver: sqlite
    database: {source}
    encryption:
      passphrase: {{env: ALBK_TEST_PASS}}
      scrypt_n: 1024
""")
    res = api.test_all(config.test_all_config(p), workdir=tmp_path)
    assert res.ok, res.entries


def test_passphrase_never_leaks(source: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "ALBK_TEST_PASS": PASS}
    outs = []
    for args in (["dump", "--url", f"sqlite:///{source}", "--backup-dir", str(tmp_path / "b"),
                  "--passphrase-env", "ALBK_TEST_PASS", "--debug"],):
        p = subprocess.run([sys.executable, "-m", "albackup", *args], capture_output=True, text=True, env=env, cwd=root)
        assert p.returncode == 0, p.stderr
        outs.append(p.stdout + p.stderr)
    backup = Path(outs[0].strip().splitlines()[-1]) if Path(outs[0].strip().splitlines()[-1]).exists() else \
        next((tmp_path / "b").iterdir())
    for args in (["verify", "--backup-dir", str(backup), "--passphrase-env", "ALBK_TEST_PASS", "--json", "--debug"],
                 ["inspect", "--backup-dir", str(backup), "--passphrase-env", "ALBK_TEST_PASS", "--json"],
                 ["restore", "--url", f"sqlite:///{tmp_path / 'r.sqlite'}", "--allow-restore", "--backup-dir",
                  str(backup), "--passphrase-env", "ALBK_TEST_PASS", "--debug"]):
        p = subprocess.run([sys.executable, "-m", "albackup", *args], capture_output=True, text=True, env=env, cwd=root)
        assert p.returncode == 0, p.stderr
        outs.append(p.stdout + p.stderr)
    env["ALBK_TEST_PASS"] = PASS + " but wrong"
    p = subprocess.run([sys.executable, "-m", "albackup", "verify", "--backup-dir", str(backup), "--passphrase-env",
                        "ALBK_TEST_PASS", "--debug"], capture_output=True, text=True, env=env, cwd=root)
    assert p.returncode == 14
    outs.append(p.stdout + p.stderr)
    for out in outs:
        assert PASS not in out
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert PASS.encode() not in f.read_bytes(), f
