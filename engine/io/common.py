"""What every importer shares: parsed records, path safety, split assignment, the import itself.

A format module parses its source into a :class:`ParsedDataset` without touching the workspace;
problems with the whole file raise :class:`~engine.errors.DatasetError` there. :func:`run_import`
then checks each record (image present, decodable, not too large, finite coordinates), writes
the image files, and inserts every row in one transaction. Skipped records are counted and
named in the report; ``strict`` turns any skip into an abort. Whatever goes wrong (a bad record
under ``strict``, an exception, Ctrl-C, a full disk), the workspace is left exactly as it was: the
transaction rolls back and the files this import staged are removed unless another writer
references them. Files are claimed before they are written (``engine.integrity``), so concurrent
imports, and a batch deletion racing an import, never delete a file a committed row needs.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import integrity, media, poses
from engine.errors import ENVIRONMENT_ERRNOS, DatasetError, ImportAborted, WorkspaceError
from engine.workspace import Workspace
from store import batches as store_batches
from store import events as store_events
from store import images as store_images
from store.db import write_transaction

SPLITS = ("train", "val", "test")
SPLIT_CHOICES = SPLITS + ("auto", "source")
AUTO_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
LABEL_SOURCES = ("ground_truth", "conditioning", "predicted", "corrected")


@dataclass
class PersonRecord:
    keypoints: np.ndarray                         # (17, 3), COCO-17
    bbox: tuple[float, float, float, float] | None = None
    segmentation: Any = None
    segmentation_area: float | None = None
    iscrowd: int = 0
    extra: dict[str, list[float]] | None = None
    source_ann_id: str | None = None
    source: str = "ground_truth"
    scores: list[float] | None = None
    score: float | None = None
    normalized: bool = False                      # x, y (and bbox) as fractions of the image size


@dataclass
class ImageRecord:
    file_name: str                                # as the dataset names it
    path: Path | None                             # resolved file; None when it does not exist
    persons: list[PersonRecord] = field(default_factory=list)
    source_id: str | None = None
    split: str | None = None                      # split the source declares, if any
    problem: str | None = None                    # record-level problem found while parsing

    def keys(self) -> set[str]:
        name = self.file_name.replace("\\", "/")
        base = name.rsplit("/", 1)[-1]
        keys = {name, base, base.rsplit(".", 1)[0]}
        if self.source_id is not None:
            keys.add(str(self.source_id))
        return keys


@dataclass
class ParsedDataset:
    format: str
    dataset: str
    source: str
    records: list[ImageRecord]
    skipped: list[tuple[str, str]] = field(default_factory=list)   # found while parsing
    notes: list[str] = field(default_factory=list)
    schema: str = poses.SCHEMA_NAME


@dataclass
class ImportReport:
    batch_id: int | None
    format: str
    dataset: str
    images: int = 0
    persons: int = 0
    persons_without_keypoints: int = 0
    by_split: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ids_not_found: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema: str = poses.SCHEMA_NAME
    seconds: float = 0.0

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(reason.split(":")[0] for _, reason in self.skipped).most_common())

    def to_dict(self, max_names: int | None = None) -> dict[str, Any]:
        skipped = self.skipped if max_names is None else self.skipped[:max_names]
        return {
            "batch_id": self.batch_id, "format": self.format, "dataset": self.dataset,
            "schema": self.schema, "images": self.images, "persons": self.persons,
            "persons_without_keypoints": self.persons_without_keypoints,
            "by_split": self.by_split, "skipped_count": len(self.skipped),
            "skipped_by_reason": self.skipped_by_reason(),
            "skipped": [{"name": n, "reason": r} for n, r in skipped],
            "ids_not_found": self.ids_not_found, "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


# ----------------------------------------------------------------------------- path safety

def safe_join(root: Path, relative: str, what: str = "path") -> Path:
    """``root / relative``, refusing absolute paths and anything resolving outside ``root``."""
    rel = str(relative).replace("\\", "/")
    if not rel or rel.startswith("/") or (len(rel) > 1 and rel[1] == ":") or "\x00" in rel:
        raise DatasetError(f"{what} {relative!r} is absolute or empty; dataset paths must be "
                           f"relative to the dataset folder {root}")
    root_resolved = Path(root).resolve()
    target = (root_resolved / rel).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise DatasetError(f"{what} {relative!r} escapes the dataset folder {root_resolved}; "
                           f"refusing to read outside it")
    return target


def list_image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted), refusing links that leave it."""
    folder = Path(folder)
    root = folder.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                safe_join(root, str(p.relative_to(folder)), "image path")
                found.append(p)
    return found


# ----------------------------------------------------------------------------- splits

def auto_split(sha256: str, seed: str | int = 0) -> str:
    """80/10/10 by a seeded hash of the image content: stable across re-imports and machines."""
    h = hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()
    u = int(h[:12], 16) / float(16 ** 12)
    if u < AUTO_SPLIT_FRACTIONS[0]:
        return "train"
    if u < AUTO_SPLIT_FRACTIONS[0] + AUTO_SPLIT_FRACTIONS[1]:
        return "val"
    return "test"


def read_ids_file(path: str | os.PathLike) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the ids file {path}: {exc}") from None
    ids = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(line)
    if not ids:
        raise DatasetError(f"the ids file {path} lists no ids")
    return ids


# ----------------------------------------------------------------------------- record checks

def _finite(values: Iterable[float]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _person_problem(p: PersonRecord) -> str | None:
    k = np.asarray(p.keypoints, dtype=float)
    if k.shape != (poses.NUM_KEYPOINTS, 3):
        return f"keypoints of shape {k.shape}, expected (17, 3)"
    if not np.isfinite(k[:, 2]).all() or not set(np.unique(k[:, 2])) <= {0.0, 1.0, 2.0}:
        return "visibility flags other than 0, 1, 2"
    labelled = k[:, 2] > 0
    if not np.isfinite(k[labelled, :2]).all():
        return "NaN or infinite keypoint coordinates"
    if p.bbox is not None and not _finite(p.bbox):
        return "NaN or infinite box"
    if p.bbox is not None and (p.bbox[2] < 0 or p.bbox[3] < 0):
        return "box with negative size"
    if p.segmentation_area is not None and not _finite([p.segmentation_area]):
        return "NaN or infinite area"
    for name, joint in (p.extra or {}).items():
        if joint[2] > 0 and not _finite(joint[:2]):
            return f"NaN or infinite coordinates for extra joint {name}"
    return None


def _person_row(p: PersonRecord, width: int, height: int) -> dict[str, Any]:
    k = np.asarray(p.keypoints, dtype=float).copy()
    bbox = p.bbox
    extra = {n: list(map(float, j)) for n, j in (p.extra or {}).items()}
    if p.normalized:
        k[:, 0] *= width
        k[:, 1] *= height
        if bbox is not None:
            bbox = (bbox[0] * width, bbox[1] * height, bbox[2] * width, bbox[3] * height)
        extra = {n: [j[0] * width, j[1] * height, j[2]] for n, j in extra.items()}
    k[k[:, 2] == 0, :2] = 0.0          # unlabelled joints carry no position
    if bbox is None:
        points = np.concatenate([k, np.asarray(list(extra.values()), dtype=float).reshape(-1, 3)])
        bbox = poses.bbox_from_points(points, pad=0.1, image_size=(width, height))
    if bbox is None:
        raise ValueError("a person with neither a box nor any labelled joint")
    area, area_source = poses.object_area(
        p.segmentation_area if p.segmentation is not None else None, bbox)
    return {
        "source": p.source,
        "keypoints": [round(float(v), 3) for v in k.reshape(-1)],
        "scores": p.scores,
        "extra": extra or None,
        "bbox_x": float(bbox[0]), "bbox_y": float(bbox[1]),
        "bbox_w": float(bbox[2]), "bbox_h": float(bbox[3]),
        "area": float(area), "area_source": area_source,
        "num_keypoints": poses.num_labelled(k),
        "iscrowd": int(p.iscrowd),
        "score": p.score,
        "segmentation": p.segmentation,
        "source_ann_id": p.source_ann_id,
    }


# ----------------------------------------------------------------------------- the import

def select_records(parsed: ParsedDataset, ids: Sequence[str] | None,
                   limit: int | None) -> tuple[list[ImageRecord], list[str]]:
    records = parsed.records
    not_found: list[str] = []
    if ids:
        wanted = {str(i).strip() for i in ids}
        matched: set[str] = set()
        chosen = []
        for rec in records:
            hit = rec.keys() & wanted
            if hit:
                chosen.append(rec)
                matched |= hit
        not_found = sorted(wanted - matched)
        records = chosen
    if limit is not None:
        if limit < 0:
            raise DatasetError("--limit must be zero or more")
        records = records[:limit]
    return records, not_found


def run_import(ws: Workspace, parsed: ParsedDataset, *, split: str = "source",
               split_seed: str | int = 0, ids: Sequence[str] | None = None,
               limit: int | None = None, strict: bool = False,
               max_pixels: int = media.DEFAULT_MAX_PIXELS, kind: str = "real",
               progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Import the parsed records into the workspace as one batch (see the module docstring)."""
    if split not in SPLIT_CHOICES:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
    started = time.perf_counter()
    report = ImportReport(None, parsed.format, parsed.dataset, notes=list(parsed.notes),
                          schema=parsed.schema)
    records, report.ids_not_found = select_records(parsed, ids, limit)
    if ids or limit is not None:
        chosen_names = {r.file_name for r in records}
        report.skipped = [(n, r) for n, r in parsed.skipped if n in chosen_names]
    else:
        report.skipped = list(parsed.skipped)
    if strict and report.ids_not_found:
        raise ImportAborted(f"--strict: {len(report.ids_not_found)} requested ids are not in the "
                            f"dataset (e.g. {', '.join(report.ids_not_found[:5])}); nothing imported")

    with ws.connect() as db, integrity.Claims(ws, db) as claims:
        existing_cache: dict[str, dict[str, Any]] = {}
        seen_here: dict[str, str] = {}
        staged: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for n, rec in enumerate(records, 1):
            problem = _stage_record(ws, db, claims, rec, split, split_seed, max_pixels, kind, parsed,
                                    existing_cache, seen_here, staged)
            if problem:
                report.skipped.append((rec.file_name, problem))
                if strict:
                    raise ImportAborted(f"--strict: {rec.file_name}: {problem}; nothing imported")
            if progress:
                progress(n, len(records))
        if strict and report.skipped:
            name, reason = report.skipped[0]
            raise ImportAborted(f"--strict: {len(report.skipped)} records would be skipped "
                                f"(first: {name}: {reason}); nothing imported")
        if not staged:
            report.seconds = time.perf_counter() - started
            return report  # nothing to import: no empty batch
        with write_transaction(db):
            # another writer may have committed some of these images since they were staged: they
            # are duplicates now, exactly as if this import had started after it
            staged = _drop_imported_meanwhile(db, staged, report)
            if strict and report.skipped:
                name, reason = report.skipped[0]
                raise ImportAborted(f"--strict: {len(report.skipped)} records would be skipped "
                                    f"(first: {name}: {reason}); nothing imported")
            for image_row, person_rows in staged:
                report.by_split[image_row["split"]] = report.by_split.get(image_row["split"], 0) + 1
                report.persons += len(person_rows)
                report.persons_without_keypoints += sum(1 for p in person_rows if p["num_keypoints"] == 0)
            report.images = len(staged)
            report.seconds = time.perf_counter() - started
            if staged:
                _insert_batch(db, parsed, staged, report, split=split, split_seed=split_seed, limit=limit,
                              ids=ids, strict=strict, max_pixels=max_pixels, kind=kind)
            claims.settle()
        claims.done()
        return report


def _drop_imported_meanwhile(db, staged, report: ImportReport) -> list:
    """The staged images not committed by another writer since; the others become skipped duplicates."""
    meanwhile = store_images.by_sha256(db, [image_row["sha256"] for image_row, _ in staged])
    if not meanwhile:
        return staged
    kept = []
    for image_row, person_rows in staged:
        prev = meanwhile.get(image_row["sha256"])
        if prev is None:
            kept.append((image_row, person_rows))
        else:
            report.skipped.append((image_row["file_name"], (
                f"duplicate: already in the workspace as image {prev['id']} ({prev['file_name']}, "
                f"batch {prev['batch_id']}), imported while this import ran")))
    return kept


def _insert_batch(db, parsed: ParsedDataset, staged, report: ImportReport, *, split, split_seed, limit, ids,
                  strict, max_pixels, kind) -> None:
    batch_id = store_batches.create(
        db, kind="import" if kind == "real" else "generation", format=parsed.format,
        dataset=parsed.dataset, source=parsed.source,
        params={"split": split, "split_seed": split_seed, "limit": limit,
                "ids": len(ids) if ids else None, "strict": strict,
                "max_pixels": max_pixels})
    for image_row, person_rows in staged:
        image_id = store_images.insert_image(db, {**image_row, "batch_id": batch_id})
        store_images.insert_persons(
            db, ({**p, "image_id": image_id, "batch_id": batch_id} for p in person_rows))
    report.batch_id = batch_id
    store_batches.set_report(db, batch_id, report.to_dict())
    store_events.log(db, "batch.import", {
        "format": parsed.format, "dataset": parsed.dataset, "source": parsed.source,
        "images": report.images, "persons": report.persons,
        "skipped": len(report.skipped)}, batch_id=batch_id)


def _stage_record(ws, db, claims: integrity.Claims, rec: ImageRecord, split, split_seed, max_pixels, kind,
                  parsed, existing_cache, seen_here, staged) -> str | None:
    if rec.problem:
        return rec.problem
    if rec.path is None or not rec.path.is_file():
        return "missing image: the file is not in the dataset folder"
    try:
        info, data = media.inspect_image(rec.path, max_pixels=max_pixels)
    except media.BadImage as exc:
        return f"bad image: {exc}"
    for p in rec.persons:
        problem = _person_problem(p)
        if problem:
            return f"bad annotation{f' {p.source_ann_id}' if p.source_ann_id else ''}: {problem}"
    if info.sha256 in seen_here:
        return f"duplicate: same image content as {seen_here[info.sha256]} in this import"
    if info.sha256 not in existing_cache:
        existing_cache.update(store_images.by_sha256(db, [info.sha256]))
    if info.sha256 in existing_cache:
        prev = existing_cache[info.sha256]
        return (f"duplicate: already in the workspace as image {prev['id']} "
                f"({prev['file_name']}, batch {prev['batch_id']})")
    try:
        person_rows = [_person_row(p, info.width, info.height) for p in rec.persons]
    except ValueError as exc:
        return f"bad annotation: {exc}"
    if split == "source":
        image_split = rec.split if rec.split in SPLITS else auto_split(info.sha256, split_seed)
    elif split == "auto":
        image_split = auto_split(info.sha256, split_seed)
    else:
        image_split = split
    claims.claim(info.sha256, info.ext)      # before looking for the files: nothing deletes them now
    try:
        media.store_image(ws.root, info, data)
    except OSError as exc:
        meaning = ENVIRONMENT_ERRNOS.get(exc.errno or 0, exc.strerror or str(exc))
        raise WorkspaceError(f"cannot write {exc.filename or 'an image file'} into the workspace: "
                             f"{meaning}; nothing imported") from None
    seen_here[info.sha256] = rec.file_name
    staged.append(({
        "kind": kind, "split": image_split, "dataset": parsed.dataset,
        "file_name": rec.file_name, "source_id": rec.source_id, "sha256": info.sha256,
        "ext": info.ext, "width": info.width, "height": info.height, "bytes": info.bytes,
    }, person_rows))
    return None
