"""Loops and their rounds (``engine.loop``)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlite_utils


def _loop(r: Any) -> dict[str, Any]:
    r = dict(r)
    r["config"] = json.loads(r["config"])
    return r


def by_name(db: sqlite_utils.Database, name: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM loops WHERE name = ?", [name]))
    return _loop(rows[0]) if rows else None


def all_loops(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return [_loop(r) for r in db.query("SELECT * FROM loops ORDER BY id")]


def create(db: sqlite_utils.Database, name: str, config: dict) -> int:
    db.execute("INSERT INTO loops (name, config) VALUES (?, ?)", [name, json.dumps(config, sort_keys=True)])
    return int(db.execute("SELECT last_insert_rowid()").fetchone()[0])


def set_status(db: sqlite_utils.Database, loop_id: int, status: str, reason: str | None = None) -> None:
    db.execute("UPDATE loops SET status = ?, stop_reason = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
               "WHERE id = ?", [status, reason, loop_id])


def rounds(db: sqlite_utils.Database, loop_id: int) -> list[dict[str, Any]]:
    out = []
    for r in db.query("SELECT * FROM loop_rounds WHERE loop_id = ? ORDER BY round", [loop_id]):
        r = dict(r)
        r["state"] = json.loads(r["state"])
        out.append(r)
    return out


def put_round(db: sqlite_utils.Database, loop_id: int, round_no: int, status: str, state: dict) -> None:
    db.execute("INSERT OR REPLACE INTO loop_rounds (loop_id, round, status, state, updated_at) "
               "VALUES (?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
               [loop_id, round_no, status, json.dumps(state, default=str)])


def review_seconds(db: sqlite_utils.Database, image_ids: Sequence[int]) -> dict[str, float]:
    """Human review spent on these images: decisions (not undone) and their active seconds."""
    ids = list(image_ids)
    if not ids:
        return {"decisions": 0, "seconds": 0.0}
    marks = ", ".join("?" for _ in ids)
    row = db.execute(f"SELECT COUNT(*), COALESCE(SUM(d.active_s), 0) FROM decisions d "
                     f"JOIN review_items i ON i.id = d.item_id WHERE d.undone = 0 AND i.image_id IN ({marks})",
                     ids).fetchone()
    return {"decisions": int(row[0]), "seconds": float(row[1])}
