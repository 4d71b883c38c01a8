"""The append-only event log (updates and deletes are refused by triggers)."""
from __future__ import annotations

import json
from typing import Any

import sqlite_utils


def log(db: sqlite_utils.Database, kind: str, payload: dict[str, Any] | None = None,
        batch_id: int | None = None) -> int:
    db.execute(
        "INSERT INTO events (kind, batch_id, payload) VALUES (?, ?, ?)",
        [kind, batch_id, json.dumps(payload or {}, sort_keys=True, default=str)],
    )
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def recent(db: sqlite_utils.Database, limit: int = 100, kind: str | None = None) -> list[dict]:
    sql = "SELECT id, ts, kind, batch_id, payload FROM events"
    params: list[Any] = []
    if kind:
        sql += " WHERE kind = ?"
        params.append(kind)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    rows = [dict(r) for r in db.query(sql, params)]
    for row in rows:
        row["payload"] = json.loads(row["payload"])
    return rows
