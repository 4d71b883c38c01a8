"""The one selection every export format writes: review state respected, the synthetic pool named.

Honeypots and rejected images never leave the workspace. Synthetic images leave only from the
pool the caller names (``accepted`` by review, the default; ``curated``: the latest curation
run's selection; ``all``), and the export records which pool and what it left out. A reviewer's
fix replaces the label it corrects: a ``corrected`` person is written instead of the person it
was made from, never beside it.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlite_utils

from engine.errors import DatasetError
from store import exports as store_exports
from store import images as store_images

SYNTHETIC_POOLS = store_exports.SYNTHETIC_POOLS
DEFAULT_POOL = "accepted"


def check_pool(pool: str) -> str:
    if pool not in SYNTHETIC_POOLS:
        raise DatasetError(f"unknown synthetic pool {pool!r}; choose from {', '.join(SYNTHETIC_POOLS)}")
    return pool


def drop_superseded(persons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The persons minus those a ``corrected`` person among them replaces."""
    replaced = set()
    for p in persons:
        ref = str(p.get("source_ann_id") or "")
        if p.get("source") == "corrected" and ref.startswith("corrects:"):
            try:
                replaced.add(int(ref.split(":", 1)[1]))
            except ValueError:
                continue
    return [p for p in persons if p.get("id") not in replaced]


def count(db: sqlite_utils.Database, *, kinds: Sequence[str] | None, splits: Sequence[str] | None,
          synthetic: str = DEFAULT_POOL) -> int:
    return store_exports.count_exportable(db, kinds=kinds, splits=splits, synthetic=check_pool(synthetic))


def iter_images(db: sqlite_utils.Database, *, kinds: Sequence[str] | None, splits: Sequence[str] | None,
                sources: Sequence[str] | None, synthetic: str = DEFAULT_POOL
                ) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Exportable images in id order with their persons from ``sources`` (superseded ones dropped)."""
    for rows in store_exports.iter_exportable(db, kinds=kinds, splits=splits, synthetic=check_pool(synthetic)):
        persons = store_images.persons_for_images(db, [im["id"] for im in rows], sources)
        for im in rows:
            yield im, drop_superseded(persons[im["id"]])


def record(db: sqlite_utils.Database, *, kinds: Sequence[str] | None, splits: Sequence[str] | None,
           sources: Sequence[str], synthetic: str = DEFAULT_POOL) -> dict[str, Any]:
    """What an export contains and leaves out, for its summary, its COCO ``info`` and its manifest."""
    return {"synthetic_pool": check_pool(synthetic), "kinds": list(kinds) if kinds else ["real", "synthetic"],
            "label_sources": list(sources),
            "left_out": store_exports.left_out(db, kinds=kinds, splits=splits, synthetic=synthetic),
            "rules": "honeypots and rejected images are never exported; synthetic images only from the "
                     "named pool; a reviewer's correction replaces the label it corrects"}
