"""Lineage rows for synthetic images."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlite_utils


def insert_lineage(db: sqlite_utils.Database, *, image_id: int, batch_id: int, generator: str,
                   seed: int | None, prompt: str | None, details: dict[str, Any],
                   seconds: float | None, sources: dict[str, Sequence[int]]) -> None:
    db.execute(
        "INSERT INTO lineage (image_id, batch_id, generator, seed, prompt, details, seconds) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [image_id, batch_id, generator, seed, prompt, json.dumps(details, default=str), seconds])
    rows = {(image_id, int(src), role) for role, ids in sources.items() for src in ids}
    for row in sorted(rows):
        db.execute("INSERT INTO lineage_sources (image_id, source_image_id, role) VALUES (?, ?, ?)",
                   list(row))


def prompts_by_image(db: sqlite_utils.Database) -> dict[int, str | None]:
    """The generation prompt of every image that has a lineage row, by image id (None: no prompt)."""
    return {r["image_id"]: r["prompt"] for r in db.query("SELECT image_id, prompt FROM lineage")}


def lineage_for(db: sqlite_utils.Database, image_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM lineage WHERE image_id = ?", [image_id]))
    if not rows:
        return None
    out = dict(rows[0])
    out["details"] = json.loads(out["details"])
    out["sources"] = [dict(r) for r in db.query(
        "SELECT source_image_id, role FROM lineage_sources WHERE image_id = ? ORDER BY role, "
        "source_image_id", [image_id])]
    return out


def source_splits(db: sqlite_utils.Database, batch_id: int) -> dict[str, int]:
    """How many lineage sources of a batch's images lie in each split (the leakage check)."""
    return {row["split"] or "missing": row["n"] for row in db.query(
        "SELECT i.split AS split, COUNT(*) AS n FROM lineage_sources s JOIN lineage l "
        "ON l.image_id = s.image_id LEFT JOIN images i ON i.id = s.source_image_id "
        "WHERE l.batch_id = ? GROUP BY i.split", [batch_id])}


def recent_images(db: sqlite_utils.Database, batch_id: int, limit: int = 12) -> list[dict[str, Any]]:
    return [dict(r) for r in db.query(
        "SELECT i.* FROM images i JOIN lineage l ON l.image_id = i.id WHERE l.batch_id = ? "
        "ORDER BY i.id DESC LIMIT ?", [batch_id, limit])]
