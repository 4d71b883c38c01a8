"""Import and generation batches: create, list, delete with their images and persons."""
from __future__ import annotations

import json
from typing import Any

import sqlite_utils


def create(db: sqlite_utils.Database, *, kind: str, format: str | None, dataset: str | None,
           source: str | None, params: dict[str, Any], report: dict[str, Any] | None = None) -> int:
    db.execute(
        "INSERT INTO batches (kind, format, dataset, source, params, report) VALUES (?, ?, ?, ?, ?, ?)",
        [kind, format, dataset, source, json.dumps(params, sort_keys=True, default=str),
         json.dumps(report or {}, sort_keys=True, default=str)],
    )
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def set_report(db: sqlite_utils.Database, batch_id: int, report: dict[str, Any]) -> None:
    db.execute("UPDATE batches SET report = ? WHERE id = ?",
               [json.dumps(report, sort_keys=True, default=str), batch_id])


def set_label(db: sqlite_utils.Database, batch_id: int, label: str) -> None:
    """Name a batch (kept in its params as ``label``)."""
    db.execute("UPDATE batches SET params = json_set(params, '$.label', ?) WHERE id = ?", [label, batch_id])


def image_ids_with_label(db: sqlite_utils.Database, label: str) -> set[int]:
    """Ids of the images in batches named ``label``."""
    return {r[0] for r in db.execute(
        "SELECT i.id FROM images i JOIN batches b ON b.id = i.batch_id WHERE json_extract(b.params, '$.label') = ?",
        [label])}


def get(db: sqlite_utils.Database, batch_id: int) -> dict[str, Any] | None:
    rows = list_batches(db, batch_id=batch_id)
    return rows[0] if rows else None


def list_batches(db: sqlite_utils.Database, batch_id: int | None = None) -> list[dict[str, Any]]:
    sql = """
        SELECT b.id, b.kind, b.format, b.dataset, b.source, b.params, b.report, b.created_at,
               (SELECT COUNT(*) FROM images i WHERE i.batch_id = b.id) AS images,
               (SELECT COUNT(*) FROM persons p WHERE p.batch_id = b.id) AS persons
        FROM batches b
    """
    params: list[Any] = []
    if batch_id is not None:
        sql += " WHERE b.id = ?"
        params.append(batch_id)
    sql += " ORDER BY b.id"
    rows = [dict(r) for r in db.query(sql, params)]
    for row in rows:
        row["params"] = json.loads(row["params"])
        row["report"] = json.loads(row["report"])
    return rows


def delete(db: sqlite_utils.Database, batch_id: int) -> dict[str, Any]:
    """Delete a batch, its images (with every person on them) and the persons it added elsewhere.

    Returns the counts and the content addresses (sha256, ext) of images whose rows were
    removed; the caller removes the files once the transaction has committed. Run inside a
    write transaction.
    """
    removed = [dict(r) for r in db.query(
        "SELECT sha256, ext FROM images WHERE batch_id = ?", [batch_id])]
    persons_on_images = db.execute(
        "SELECT COUNT(*) FROM persons WHERE image_id IN (SELECT id FROM images WHERE batch_id = ?)",
        [batch_id]).fetchone()[0]
    persons_elsewhere = db.execute(
        "SELECT COUNT(*) FROM persons WHERE batch_id = ? AND image_id NOT IN "
        "(SELECT id FROM images WHERE batch_id = ?)", [batch_id, batch_id]).fetchone()[0]
    db.execute("DELETE FROM persons WHERE batch_id = ?", [batch_id])
    db.execute("DELETE FROM persons WHERE image_id IN (SELECT id FROM images WHERE batch_id = ?)",
               [batch_id])
    db.execute("DELETE FROM images WHERE batch_id = ?", [batch_id])
    db.execute("DELETE FROM batches WHERE id = ?", [batch_id])
    return {
        "images": len(removed),
        "persons": persons_on_images + persons_elsewhere,
        "files": removed,
    }
