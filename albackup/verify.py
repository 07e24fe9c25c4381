"""Verify a backup with no database: manifest, every file's SHA-256, every frame, counts, hashes."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .archive import Backup, read_chunk
from .errors import IntegrityError
from .pgtext import decoder
from .values import EchoHash, StreamHash, combine_for, hasher_for


@dataclass
class VerifyResult:
    path: Path
    tables: list[dict[str, Any]] = field(default_factory=list)
    location: str = ""

    @property
    def rows(self) -> int:
        return sum(t["rows"] for t in self.tables)


def verify_backup(path: Path | str | Backup, keyring: Any = None, require_encryption: bool = False) -> VerifyResult:
    b = path if isinstance(path, Backup) else Backup(path, keyring, require_encryption)
    res = VerifyResult(b.path)
    for t in b.schema.tables:
        entry = b.tables[t.key]
        types = [c.type for c in t.columns]
        hashes = []
        rows = 0
        for i, c in enumerate(entry["chunks"]):
            where = f"{b.id}/{c['file']} (table {t.key})"
            if b.is_text(t.key, i):
                # COPY text: its hash is the lines' (or, in key order, the whole text's); each
                # frame is also decoded, as a restore into another engine would
                h = StreamHash() if b.is_ordered(t.key, i) else EchoHash(b.line_hash_bits)
                decode = decoder(types, where)
                for data, _lines in read_chunk(b.chunk_path(c["file"]), len(types), where, c["sha256"],
                                               int(c["rows"]), b.encryption, c["file"], raw_text=True,
                                               expect_bytes=c["bytes"]):
                    h.update(data)
                    for _ in decode(data):
                        pass
            else:
                h = hasher_for(b.features, types)
                for batch in read_chunk(b.chunk_path(c["file"]), len(types), where, c["sha256"], int(c["rows"]),
                                        b.encryption, c["file"], lazy_large=True, expect_bytes=c["bytes"]):
                    h.update(batch)
            if h.hexdigest() != c["content_hash"]:
                raise IntegrityError(f"{where}: content hash does not match the manifest")
            hashes.append(h.hexdigest())
            rows += h.rows
        if rows != int(entry["rows"]):
            raise IntegrityError(f"table {t.key}: {rows} rows in its chunks, the manifest says {entry['rows']}")
        if combine_for(b.features, hashes) != entry["content_hash"]:
            raise IntegrityError(f"table {t.key}: content hash does not match the manifest")
        res.tables.append({"table": t.key, "rows": rows, "chunks": len(hashes),
                           "bytes": sum(int(c["bytes"]) for c in entry["chunks"])})
    return res
