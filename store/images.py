"""Images and the persons annotated on them."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlite_utils

IMAGE_COLUMNS = ("batch_id", "kind", "split", "dataset", "file_name", "source_id", "sha256", "ext",
                 "width", "height", "bytes")
PERSON_COLUMNS = ("image_id", "batch_id", "source", "keypoints", "scores", "extra", "bbox_x",
                  "bbox_y", "bbox_w", "bbox_h", "area", "area_source", "num_keypoints", "iscrowd",
                  "score", "segmentation", "source_ann_id")
JSON_PERSON_COLUMNS = ("keypoints", "scores", "extra", "segmentation")


def insert_image(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    cols = [c for c in IMAGE_COLUMNS if c in row]
    db.execute(
        f"INSERT INTO images ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        [row[c] for c in cols],
    )
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def insert_persons(db: sqlite_utils.Database, rows: Iterable[dict[str, Any]]) -> int:
    encoded = []
    for row in rows:
        out = {c: row.get(c) for c in PERSON_COLUMNS}
        for c in JSON_PERSON_COLUMNS:
            if out[c] is not None and not isinstance(out[c], str):
                out[c] = json.dumps(out[c])
        encoded.append(out)
    if encoded:
        db.table("persons").insert_all(encoded, batch_size=500)
    return len(encoded)


def insert_person(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    """One person row; returns its id."""
    insert_persons(db, [row])
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def delete_person(db: sqlite_utils.Database, person_id: int) -> None:
    db.execute("DELETE FROM persons WHERE id = ?", [person_id])


def by_sha256(db: sqlite_utils.Database, shas: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    shas = list(shas)
    for start in range(0, len(shas), 500):
        chunk = shas[start:start + 500]
        sql = (f"SELECT id, sha256, batch_id, file_name FROM images "
               f"WHERE sha256 IN ({', '.join('?' for _ in chunk)})")
        for row in db.query(sql, chunk):
            found[row["sha256"]] = dict(row)
    return found


def referenced(db: sqlite_utils.Database, sha256: str) -> bool:
    return db.execute("SELECT 1 FROM images WHERE sha256 = ? LIMIT 1", [sha256]).fetchone() is not None


def _decode_person(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    for c in JSON_PERSON_COLUMNS:
        if row.get(c) is not None:
            row[c] = json.loads(row[c])
    return row


def image_conditions(kinds, splits, batch_id=None, alias: str = "") -> tuple[list[str], list[Any]]:
    """SQL conditions (and their parameters) on images' kind, split and batch; ``alias``: e.g. ``"i."``."""
    where: list[str] = []
    params: list[Any] = []
    if kinds:
        where.append(f"{alias}kind IN ({', '.join('?' for _ in kinds)})")
        params += list(kinds)
    if splits:
        where.append(f"{alias}split IN ({', '.join('?' for _ in splits)})")
        params += list(splits)
    if batch_id is not None:
        where.append(f"{alias}batch_id = ?")
        params.append(batch_id)
    return where, params


def _image_filters(kinds, splits, batch_id) -> tuple[str, list[Any]]:
    where, params = image_conditions(kinds, splits, batch_id)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def count_images(db: sqlite_utils.Database, *, kinds: Sequence[str] | None = None,
                 splits: Sequence[str] | None = None, batch_id: int | None = None) -> int:
    where, params = _image_filters(kinds, splits, batch_id)
    return db.execute(f"SELECT COUNT(*) FROM images{where}", params).fetchone()[0]


def list_images(db: sqlite_utils.Database, *, kinds: Sequence[str] | None = None,
                splits: Sequence[str] | None = None, batch_id: int | None = None,
                limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    where, params = _image_filters(kinds, splits, batch_id)
    sql = f"SELECT * FROM images{where} ORDER BY id"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [limit, offset]
    return [dict(r) for r in db.query(sql, params)]


def persons_for_images(db: sqlite_utils.Database, image_ids: Sequence[int],
                       sources: Sequence[str] | None = None) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in image_ids}
    ids = list(image_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        sql = f"SELECT * FROM persons WHERE image_id IN ({', '.join('?' for _ in chunk)})"
        params: list[Any] = list(chunk)
        if sources:
            sql += f" AND source IN ({', '.join('?' for _ in sources)})"
            params += list(sources)
        sql += " ORDER BY id"
        for row in db.query(sql, params):
            out[row["image_id"]].append(_decode_person(row))
    return out


def iter_images_with_persons(db: sqlite_utils.Database, *, kinds: Sequence[str] | None = None,
                             splits: Sequence[str] | None = None,
                             sources: Sequence[str] | None = None,
                             chunk: int = 500) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Stream images in id order with their persons, ``chunk`` images per query."""
    offset = 0
    while True:
        images = list_images(db, kinds=kinds, splits=splits, limit=chunk, offset=offset)
        if not images:
            return
        persons = persons_for_images(db, [im["id"] for im in images], sources)
        for im in images:
            yield im, persons[im["id"]]
        offset += chunk


def counts(db: sqlite_utils.Database) -> dict[str, Any]:
    by_kind_split: dict[str, dict[str, int]] = {}
    for row in db.query("SELECT kind, split, COUNT(*) AS n FROM images GROUP BY kind, split"):
        by_kind_split.setdefault(row["kind"], {})[row["split"]] = row["n"]
    by_dataset = {row["dataset"] or "": row["n"] for row in db.query(
        "SELECT dataset, COUNT(*) AS n FROM images GROUP BY dataset ORDER BY dataset")}
    persons_by_source = {row["source"]: row["n"] for row in db.query(
        "SELECT source, COUNT(*) AS n FROM persons GROUP BY source ORDER BY source")}
    keypoint_persons = {row["source"]: row["n"] for row in db.query(
        "SELECT source, COUNT(*) AS n FROM persons WHERE num_keypoints > 0 AND iscrowd = 0 "
        "GROUP BY source ORDER BY source")}
    total = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    return {
        "images": {
            "total": total,
            "by_kind": {k: sum(v.values()) for k, v in sorted(by_kind_split.items())},
            "by_split": {s: sum(v.get(s, 0) for v in by_kind_split.values())
                         for s in ("train", "val", "test")},
            "by_kind_and_split": by_kind_split,
            "by_dataset": by_dataset,
        },
        "persons": {
            "total": sum(persons_by_source.values()),
            "by_source": persons_by_source,
            "with_keypoints_by_source": keypoint_persons,
        },
    }


def unlabelled_real_images(db: sqlite_utils.Database, label_sources: Sequence[str] = (
        "ground_truth", "corrected", "predicted")) -> list[dict[str, Any]]:
    """Real images with no person from any of ``label_sources`` (default: not yet labelled at all)."""
    sql = (f"SELECT * FROM images i WHERE i.kind = 'real' AND NOT EXISTS (SELECT 1 FROM persons p "
           f"WHERE p.image_id = i.id AND p.source IN ({', '.join('?' for _ in label_sources)})) "
           f"ORDER BY i.id")
    return [dict(r) for r in db.query(sql, list(label_sources))]



def count_real_persons(db: sqlite_utils.Database, *, split: str,
                       sources: Sequence[str] = ("ground_truth",)) -> int:
    """How many persons (crowd included) from ``sources`` lie on real images of ``split``."""
    return db.execute(
        f"SELECT COUNT(*) FROM images i JOIN persons p ON p.image_id = i.id WHERE i.kind = 'real' "
        f"AND i.split = ? AND p.source IN ({', '.join('?' for _ in sources)})",
        [split, *sources]).fetchone()[0]


def labelled_real_images_by_split(db: sqlite_utils.Database,
                                  sources: Sequence[str] = ("ground_truth", "corrected")) -> dict[str, int]:
    """How many real images have at least one non-crowd person from ``sources``, by split."""
    return {r[0]: r[1] for r in db.execute(
        f"SELECT i.split, COUNT(DISTINCT i.id) FROM images i JOIN persons p ON p.image_id = i.id "
        f"WHERE i.kind = 'real' AND p.source IN ({', '.join('?' for _ in sources)}) AND p.iscrowd = 0 "
        f"GROUP BY i.split", list(sources))}


def train_anchor_persons(db: sqlite_utils.Database, sources: Sequence[str] = ("ground_truth", "corrected"),
                         min_keypoints: int = 8) -> list[dict[str, Any]]:
    """Persons usable as real anchors: on *train* real images only (never val/test), not crowd."""
    sql = (f"SELECT p.*, i.sha256, i.ext, i.width, i.height, i.split, i.file_name FROM persons p "
           f"JOIN images i ON i.id = p.image_id WHERE i.kind = 'real' AND i.split = 'train' "
           f"AND p.iscrowd = 0 AND p.num_keypoints >= ? "
           f"AND p.source IN ({', '.join('?' for _ in sources)}) ORDER BY p.id")
    return [_decode_person(r) for r in db.query(sql, [min_keypoints, *sources])]


def train_background_images(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Real *train* images (background candidates), with all their persons' boxes."""
    images = [dict(r) for r in db.query(
        "SELECT * FROM images WHERE kind = 'real' AND split = 'train' ORDER BY id")]
    boxes: dict[int, list] = {im["id"]: [] for im in images}
    for row in db.query("SELECT p.image_id, p.bbox_x, p.bbox_y, p.bbox_w, p.bbox_h FROM persons p "
                        "JOIN images i ON i.id = p.image_id WHERE i.kind = 'real' AND i.split = 'train'"):
        boxes[row["image_id"]].append((row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"]))
    for im in images:
        im["person_boxes"] = boxes[im["id"]]
    return images


def splits_of(db: sqlite_utils.Database, image_ids: Sequence[int]) -> dict[int, str]:
    ids = list(image_ids)
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for row in db.query(f"SELECT id, split, kind FROM images WHERE id IN "
                            f"({', '.join('?' for _ in chunk)})", chunk):
            out[row["id"]] = row["split"] if row["kind"] == "real" else f"synthetic-{row['split']}"
    return out


def images_with_ids(db: sqlite_utils.Database, ids: Sequence[int]) -> list[dict[str, Any]]:
    ids = list(ids)
    out: list[dict[str, Any]] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        out += [dict(r) for r in db.query(
            f"SELECT * FROM images WHERE id IN ({', '.join('?' for _ in chunk)}) ORDER BY id", chunk)]
    return out


def batch_formats(db: sqlite_utils.Database, image_ids: Sequence[int]) -> set[str]:
    """The formats of the batches these images were imported or made in (``lsp``, ``coco``, ...)."""
    ids = list(image_ids)
    out: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        out |= {r["format"] for r in db.query(
            f"SELECT DISTINCT b.format FROM images i JOIN batches b ON b.id = i.batch_id WHERE i.id IN "
            f"({', '.join('?' for _ in chunk)})", chunk) if r["format"]}
    return out
