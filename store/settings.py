"""Workspace settings: a JSON value per key."""
from __future__ import annotations

import json
from typing import Any

import sqlite_utils


def get(db: sqlite_utils.Database, key: str, default: Any = None) -> Any:
    row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return default if row is None else json.loads(row[0])


def set_value(db: sqlite_utils.Database, key: str, value: Any) -> None:
    db.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, json.dumps(value, sort_keys=True)],
    )

