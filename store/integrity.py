"""File claims and the checks behind ``realcal fsck``: what references the image store, and the
database's own consistency checks."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlite_utils


def add_claim(db: sqlite_utils.Database, sha256: str, ext: str, owner: str) -> None:
    """Record that ``owner`` is about to write (or rely on) the files of ``sha256``."""
    db.execute("INSERT OR IGNORE INTO file_claims (sha256, ext, owner) VALUES (?, ?, ?)", [sha256, ext, owner])


def drop_claims(db: sqlite_utils.Database, owners: Iterable[str]) -> int:
    """Remove every claim of ``owners``; returns how many."""
    n = 0
    for owner in owners:
        n += db.execute("DELETE FROM file_claims WHERE owner = ?", [owner]).rowcount
    return n


def claims(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every claim: sha256, ext, owner, created_at."""
    return [dict(r) for r in db.query(
        "SELECT sha256, ext, owner, created_at FROM file_claims ORDER BY owner, sha256")]


def in_use(db: sqlite_utils.Database, shas: Sequence[str]) -> set[str]:
    """The content addresses among ``shas`` that an image row or a claim references."""
    shas = list(dict.fromkeys(shas))
    used: set[str] = set()
    for start in range(0, len(shas), 500):
        chunk = shas[start:start + 500]
        marks = ", ".join("?" for _ in chunk)
        used |= {r[0] for r in db.execute(
            f"SELECT sha256 FROM images WHERE sha256 IN ({marks}) "
            f"UNION SELECT sha256 FROM file_claims WHERE sha256 IN ({marks})", chunk + chunk)}
    return used


def image_addresses(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every image row's id, batch, file name and content address (sha256, ext)."""
    return [dict(r) for r in db.query(
        "SELECT id, batch_id, file_name, sha256, ext FROM images ORDER BY id")]


def integrity_check(db: sqlite_utils.Database, max_errors: int = 100) -> list[str]:
    """SQLite's ``PRAGMA integrity_check``: ``["ok"]`` or the problems it found."""
    return [r[0] for r in db.execute(f"PRAGMA integrity_check({int(max_errors)})")]


def foreign_key_violations(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Rows whose foreign key points at a row that does not exist (``PRAGMA foreign_key_check``)."""
    return [{"table": r[0], "rowid": r[1], "parent": r[2]} for r in db.execute("PRAGMA foreign_key_check")]
