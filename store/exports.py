"""What an export may write: images filtered by their review state and the synthetic pool.

Rules (held here, in one query, for every export format):

* honeypots never leave: an image queued as a honeypot, or from a ``honeypot`` batch;
* rejected images never leave: a review item whose state is ``rejected``;
* synthetic images leave only from the named pool: ``accepted`` (review item accepted),
  ``curated`` (in the latest curation run's selection) or ``all``; real images are not pooled.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlite_utils

from store.images import image_conditions

SYNTHETIC_POOLS = ("accepted", "curated", "all")

_BASE = ("FROM images i LEFT JOIN review_items r ON r.image_id = i.id "
         "LEFT JOIN batches b ON b.id = i.batch_id")
_HONEYPOT = "(COALESCE(r.honeypot, 0) = 1 OR COALESCE(b.kind, '') = 'honeypot')"
_REJECTED = "(COALESCE(r.state, '') = 'rejected')"
_LATEST_SELECTION = ("SELECT image_id FROM selections WHERE run_id = (SELECT id FROM curation_runs "
                     "WHERE funnel != '[]' ORDER BY id DESC LIMIT 1)")


def _pool_condition(pool: str) -> str:
    if pool == "accepted":
        return "COALESCE(r.state, '') = 'accepted'"
    if pool == "curated":
        return f"i.id IN ({_LATEST_SELECTION})"
    if pool == "all":
        return "1"
    raise ValueError(f"unknown synthetic pool {pool!r}; valid: {', '.join(SYNTHETIC_POOLS)}")


def _scope(kinds: Sequence[str] | None, splits: Sequence[str] | None) -> tuple[list[str], list[Any]]:
    return image_conditions(kinds, splits, alias="i.")


def _exportable(kinds, splits, pool: str) -> tuple[str, list[Any]]:
    where, params = _scope(kinds, splits)
    where += [f"NOT {_HONEYPOT}", f"NOT {_REJECTED}",
              f"(i.kind != 'synthetic' OR {_pool_condition(pool)})"]
    return " WHERE " + " AND ".join(where), params


def count_exportable(db: sqlite_utils.Database, *, kinds: Sequence[str] | None = None,
                     splits: Sequence[str] | None = None, synthetic: str = "accepted") -> int:
    where, params = _exportable(kinds, splits, synthetic)
    return db.execute(f"SELECT COUNT(*) {_BASE}{where}", params).fetchone()[0]


def iter_exportable(db: sqlite_utils.Database, *, kinds: Sequence[str] | None = None,
                    splits: Sequence[str] | None = None, synthetic: str = "accepted",
                    chunk: int = 500) -> Iterator[list[dict[str, Any]]]:
    """The images an export may write, in id order, ``chunk`` at a time (keyset paging, so rows
    added while exporting never shift a page)."""
    where, params = _exportable(kinds, splits, synthetic)
    last = 0
    while True:
        rows = [dict(r) for r in db.query(f"SELECT i.* {_BASE}{where} AND i.id > ? ORDER BY i.id LIMIT ?",
                                          params + [last, chunk])]
        if not rows:
            return
        yield rows
        last = rows[-1]["id"]


def left_out(db: sqlite_utils.Database, *, kinds: Sequence[str] | None = None,
             splits: Sequence[str] | None = None, synthetic: str = "accepted") -> dict[str, int]:
    """How many images in scope an export leaves out, by reason (each image counted once, under
    the first reason that applies: honeypot, rejected, not in the synthetic pool)."""
    where, params = _scope(kinds, splits)
    scope = (" WHERE " + " AND ".join(where)) if where else ""
    row = db.execute(
        f"SELECT SUM(CASE WHEN {_HONEYPOT} THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN NOT {_HONEYPOT} AND {_REJECTED} THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN NOT {_HONEYPOT} AND NOT {_REJECTED} AND i.kind = 'synthetic' "
        f"AND NOT ({_pool_condition(synthetic)}) THEN 1 ELSE 0 END) {_BASE}{scope}", params).fetchone()
    return {"honeypot": row[0] or 0, "rejected": row[1] or 0, "synthetic_not_in_pool": row[2] or 0}
