"""Browsing images on the Data page: filters on review state and curation scores, and everything one image
carries (review history, scores). Every function works on a page of ids at once: no per-image queries."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from store.images import image_conditions

REVIEW_FILTERS = ("not queued", "open", "accepted", "rejected", "conflict")


def _where(kinds=None, splits=None, batch_id=None, review: Sequence[str] | None = None,
           score: tuple[int, str, float, float] | None = None, excluded: bool | None = None) -> tuple[str, list[Any]]:
    where, params = image_conditions(kinds, splits, batch_id, alias="i.")
    if excluded is not None:
        where.append(f"{'' if excluded else 'NOT '}EXISTS (SELECT 1 FROM excluded_images x WHERE x.image_id = i.id)")
    if review:
        unknown = set(review) - set(REVIEW_FILTERS)
        if unknown:
            raise ValueError(f"unknown review state(s) {sorted(unknown)}; known: {', '.join(REVIEW_FILTERS)}")
        states = [s for s in review if s != "not queued"]
        parts = []
        if "not queued" in review:
            parts.append("NOT EXISTS (SELECT 1 FROM review_items r WHERE r.image_id = i.id)")
        if states:
            parts.append(f"EXISTS (SELECT 1 FROM review_items r WHERE r.image_id = i.id AND r.state IN "
                         f"({', '.join('?' for _ in states)}))")
            params += states
        where.append("(" + " OR ".join(parts) + ")")
    if score is not None:
        run_id, stage, lo, hi = score
        where.append("EXISTS (SELECT 1 FROM curation_results c WHERE c.image_id = i.id AND c.run_id = ? "
                     "AND c.stage = ? AND c.value BETWEEN ? AND ?)")
        params += [run_id, stage, float(lo), float(hi)]
    return (" WHERE " + " AND ".join(where)) if where else "", params


def count_filtered(db: sqlite_utils.Database, **filters: Any) -> int:
    """How many images match (filters: kinds, splits, batch_id, review, score=(run, stage, lo, hi), excluded)."""
    where, params = _where(**filters)
    return db.execute(f"SELECT COUNT(*) FROM images i{where}", params).fetchone()[0]


def list_filtered(db: sqlite_utils.Database, *, limit: int, offset: int = 0, **filters: Any) -> list[dict]:
    """One page of the matching images, in id order."""
    where, params = _where(**filters)
    return [dict(r) for r in db.query(f"SELECT i.* FROM images i{where} ORDER BY i.id LIMIT ? OFFSET ?",
                                      [*params, int(limit), int(offset)])]


def ids_filtered(db: sqlite_utils.Database, limit: int = 100_000, **filters: Any) -> list[int]:
    """The ids of every matching image (for "select all that match"), at most ``limit``."""
    where, params = _where(**filters)
    return [r[0] for r in db.execute(f"SELECT i.id FROM images i{where} ORDER BY i.id LIMIT ?", [*params, limit])]


def excluded_among(db: sqlite_utils.Database, image_ids: Sequence[int]) -> set[int]:
    """Which of these images are excluded from training."""
    out: set[int] = set()
    for part in _chunks(image_ids):
        out |= {r[0] for r in db.execute(f"SELECT image_id FROM excluded_images WHERE image_id IN "
                                         f"({', '.join('?' for _ in part)})", part)}
    return out


def _chunks(ids: Sequence[int], n: int = 500):
    ids = list(ids)
    for start in range(0, len(ids), n):
        yield ids[start:start + n]


def review_summary(db: sqlite_utils.Database, image_ids: Sequence[int]) -> dict[int, dict]:
    """Per image in the review queue: its item's state and rank and how many live decisions it has."""
    out: dict[int, dict] = {}
    for chunk in _chunks(image_ids):
        for r in db.query(
                f"SELECT r.image_id, r.id AS item_id, r.state, r.rank, r.honeypot, "
                f"(SELECT COUNT(*) FROM decisions d WHERE d.item_id = r.id AND d.undone = 0) AS decisions "
                f"FROM review_items r WHERE r.image_id IN ({', '.join('?' for _ in chunk)})", chunk):
            out[r["image_id"]] = dict(r)
    return out


def review_history(db: sqlite_utils.Database, image_id: int) -> list[dict]:
    """Every decision on one image (undone ones included, marked), oldest first."""
    rows = []
    for r in db.query("SELECT d.* FROM decisions d JOIN review_items r ON r.id = d.item_id WHERE r.image_id = ? "
                      "ORDER BY d.id", [image_id]):
        r = dict(r)
        r["reasons"] = json.loads(r["reasons"] or "[]")
        rows.append(r)
    return rows


def curation_scores(db: sqlite_utils.Database, run_id: int, image_ids: Sequence[int]) -> dict[int, list[dict]]:
    """Per image, its stage results in one curation run (stage, status, value, reason)."""
    out: dict[int, list[dict]] = {i: [] for i in image_ids}
    for chunk in _chunks(image_ids):
        for r in db.query(
                f"SELECT image_id, stage, status, value, reason FROM curation_results WHERE run_id = ? AND "
                f"image_id IN ({', '.join('?' for _ in chunk)}) ORDER BY rowid", [run_id, *chunk]):
            out[r["image_id"]].append(dict(r))
    return out


def score_stages(db: sqlite_utils.Database, run_id: int) -> dict[str, tuple[float, float]]:
    """The stages of a run that have numeric values, with their range."""
    return {r[0]: (r[1], r[2]) for r in db.execute(
        "SELECT stage, MIN(value), MAX(value) FROM curation_results WHERE run_id = ? AND value IS NOT NULL "
        "GROUP BY stage ORDER BY stage", [run_id])}
