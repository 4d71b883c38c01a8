"""Pipelines and their step states."""
from __future__ import annotations

import json

import sqlite_utils


def save(db: sqlite_utils.Database, name: str, digest: str, resolved: dict) -> int:
    row = db.execute("SELECT id FROM pipelines WHERE hash = ?", [digest]).fetchone()
    if row:
        return row[0]
    db.execute("INSERT INTO pipelines (name, hash, resolved) VALUES (?, ?, ?)",
               [name, digest, json.dumps(resolved, default=str)])
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def by_hash(db: sqlite_utils.Database, digest: str) -> dict | None:
    rows = list(db.query("SELECT * FROM pipelines WHERE hash = ?", [digest]))
    if not rows:
        return None
    r = dict(rows[0])
    r["resolved"] = json.loads(r["resolved"])
    return r


def steps(db: sqlite_utils.Database, name: str) -> dict[str, dict]:
    out = {}
    for r in db.query("SELECT * FROM pipeline_steps WHERE pipeline = ?", [name]):
        r = dict(r)
        r["result"] = json.loads(r["result"]) if r["result"] else None
        out[r["step"]] = r
    return out


def put_step(db: sqlite_utils.Database, name: str, step: str, key: str, status: str, result) -> None:
    db.execute("INSERT OR REPLACE INTO pipeline_steps (pipeline, step, key, status, result, updated_at) "
               "VALUES (?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
               [name, step, key, status, json.dumps(result, default=str)])
