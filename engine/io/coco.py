"""COCO keypoints JSON: import and export.

Import: ``PATH`` is the annotation JSON. Images are looked up, in order, under ``image_root``
when given, next to the JSON, in ``images/`` next to it, and in ``../images/<split>/`` for a
``person_keypoints_<split>.json`` (the layout :func:`export` writes). Persons with
``num_keypoints == 0`` are kept as box-only persons, which keypoint metrics ignore as COCO does;
crowd regions (``iscrowd``) are kept as such. Masks (polygons or RLE) are stored as they are;
the OKS object scale is the segmentation area where a mask exists, else 0.53 x box area.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine import media, poses
from engine.errors import DatasetError
from engine.io import exportable, schemas
from engine.io.common import LABEL_SOURCES, SPLITS, ImageRecord, ParsedDataset, PersonRecord, safe_join
from engine.registry import register
from engine.workspace import Workspace
from store import events as store_events

SPLIT_IN_NAME = re.compile(r"person_keypoints_(train|val|test)\w*\.json$")


def _load_json(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DatasetError(f"{path} is a folder; give the COCO annotation JSON file") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                           f"column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 JSON: {exc}") from None
    except (OSError, RecursionError, ValueError) as exc:
        raise DatasetError(f"{path} cannot be read as JSON: {exc}") from None


def _is_id(value: Any) -> bool:
    """COCO ids are numbers (or, in some exports, text); anything else cannot key a record."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name cannot exist (too long, a null byte, ...)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _float(value: Any, *, null: float | None = None) -> float:
    """A JSON number (or numeric text) as a float; ``null`` stands for None where given. ValueError for
    anything else: lists, objects, booleans, non-numeric text, integers too large for a float."""
    if value is None and null is not None:
        return null
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r:.40} is not a number")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{str(value)[:20]}... is too large for a number") from None
    except ValueError:
        raise ValueError(f"{value!r:.40} is not a number") from None


def _image_roots(path: Path, image_root: Path | None) -> list[Path]:
    if image_root is not None:
        return [Path(image_root)]
    roots = [path.parent, path.parent / "images"]
    m = SPLIT_IN_NAME.search(path.name)
    if m:
        roots.append(path.parent.parent / "images" / m.group(1))
    return roots


def _segmentation_area(seg: Any, height: int | None, width: int | None) -> float | None:
    if not seg:
        return None
    try:
        from pycocotools import mask as mask_utils

        if isinstance(seg, list):
            if not height or not width:
                return None
            rles = mask_utils.frPyObjects(seg, height, width)
            return float(mask_utils.area(mask_utils.merge(rles)))
        if isinstance(seg, dict) and "counts" in seg and "size" in seg:
            rle = seg
            if isinstance(seg["counts"], list):
                rle = mask_utils.frPyObjects(seg, *seg["size"])
            return float(mask_utils.area(rle))
    except Exception:  # a broken mask: fall back to the box scale
        return None
    return None


@register("import_format", "coco")
def parse(path: str | Path, image_root: str | Path | None = None) -> ParsedDataset:
    path = Path(path)
    data = _load_json(path)
    where = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{where} is not a COCO annotation file: expected an object with an "
                           f"'images' list (and 'annotations' and 'categories')")
    annotations = data.get("annotations", [])
    categories = data.get("categories", [])
    if not isinstance(annotations, list) or not isinstance(categories, list):
        raise DatasetError(f"{where}: 'annotations' and 'categories' must be lists")

    kp_cats = {}
    for cat in categories:
        if isinstance(cat, dict) and cat.get("keypoints"):
            if not _is_id(cat.get("id")):
                raise DatasetError(f"{where}: category {cat.get('name')!r:.60} has an id that is not a number: "
                                   f"{cat.get('id')!r:.60}")
            if not isinstance(cat["keypoints"], list):
                raise DatasetError(f"{where}: category {cat.get('name')!r} has a 'keypoints' entry "
                                   f"that is not a list of names")
            mapping = schemas.resolve(cat["keypoints"], where=f"{where} (category "
                                                              f"{cat.get('name')!r})")
            kp_cats[cat.get("id")] = (cat, mapping)
    if annotations and not kp_cats:
        raise DatasetError(f"{where} has no category with keypoints; realcal imports COCO person "
                           f"keypoints (categories[].keypoints). For unlabelled images use "
                           f"--format images")

    images: dict[Any, dict] = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"{where}: images[{i}] needs an 'id' and a 'file_name'")
        if not _is_id(im["id"]):
            raise DatasetError(f"{where}: images[{i}] has an id that is not a number: {im['id']!r:.60}")
        if im["id"] in images:
            raise DatasetError(f"{where}: image id {im['id']!r} appears twice")
        safe_join(path.parent, im["file_name"], "image file_name")  # refuse path tricks early
        images[im["id"]] = im

    roots = _image_roots(path, Path(image_root) if image_root else None)
    root = roots[0]
    for candidate in roots:
        if any(_is_file(candidate / im["file_name"]) for im in list(images.values())[:20]):
            root = candidate
            break

    persons: dict[Any, list[PersonRecord]] = {k: [] for k in images}
    problems: dict[Any, str] = {}
    skipped: list[tuple[str, str]] = []
    other_categories = 0
    for j, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise DatasetError(f"{where}: annotations[{j}] is not an object")
        if not _is_id(ann.get("category_id")) or ann["category_id"] not in kp_cats:
            other_categories += 1
            continue
        cat, mapping = kp_cats[ann["category_id"]]
        ann_id = str(ann["id"] if _is_id(ann.get("id")) else j)[:100]
        if not _is_id(ann.get("image_id")) or ann["image_id"] not in images:
            skipped.append((f"annotation {ann_id}", "annotation for an image id not in 'images'"))
            continue
        kps = ann.get("keypoints", [])
        n_src = len(mapping.source_names)
        if not isinstance(kps, list) or len(kps) != 3 * n_src:
            raise DatasetError(
                f"{where}: annotation {ann_id} has {len(kps) if isinstance(kps, list) else 'no'} "
                f"keypoint values, but its category {cat.get('name')!r} declares {n_src} keypoints "
                f"({3 * n_src} values: x, y, v each)")
        try:
            src = np.asarray([_float(v, null=math.nan) for v in kps], dtype=float).reshape(n_src, 3)
        except ValueError as exc:
            problems.setdefault(ann["image_id"], f"bad annotation {ann_id}: non-numeric keypoints ({exc})")
            continue
        k = np.zeros((poses.NUM_KEYPOINTS, 3))
        for ci, si in enumerate(mapping.to_coco):
            if si is not None:
                k[ci] = src[si]
        extra = {name: src[si].tolist() for name, si in mapping.extras.items()} or None
        bbox = ann.get("bbox")
        if bbox is not None:
            try:
                if not isinstance(bbox, list) or len(bbox) != 4:
                    raise ValueError
                bbox = tuple(_float(v) for v in bbox)
            except ValueError:
                problems.setdefault(ann["image_id"], f"bad annotation {ann_id}: bbox is not 4 numbers")
                continue
        seg = ann.get("segmentation") or None
        seg_area = None
        if seg is not None:
            area = ann.get("area")
            try:
                area = float(area) if isinstance(area, (int, float)) else 0.0
            except OverflowError:      # a 400-digit integer: no usable area, the mask's own is used
                area = 0.0
            if area > 0:
                seg_area = area
            else:
                im = images[ann["image_id"]]
                seg_area = _segmentation_area(seg, im.get("height"), im.get("width"))
        persons[ann["image_id"]].append(PersonRecord(
            keypoints=k, bbox=bbox, segmentation=seg, segmentation_area=seg_area,
            iscrowd=int(bool(ann.get("iscrowd", 0))), extra=extra, source_ann_id=ann_id))

    records = []
    for image_id, im in images.items():
        target = safe_join(root, im["file_name"], "image file_name")
        records.append(ImageRecord(
            file_name=im["file_name"], path=target if _is_file(target) else None,
            persons=persons[image_id], source_id=str(image_id),
            split=im.get("split") if im.get("split") in SPLITS else None,
            problem=problems.get(image_id)))
    notes = [f"images read from {root}"]
    if other_categories:
        notes.append(f"{other_categories} annotations of categories without keypoints ignored")
    mapping_names = sorted({m.name for _, m in kp_cats.values()})
    info = data.get("info")
    if not isinstance(info, dict):
        info = {}
    dataset = str(info.get("description") or path.stem)[:120]
    return ParsedDataset("coco", dataset, str(path.resolve()), records, skipped, notes,
                         schema=", ".join(mapping_names) or poses.SCHEMA_NAME)


# ----------------------------------------------------------------------------- export

@register("export_format", "coco")
def export(ws: Workspace, out: str | Path, *, splits: Sequence[str] = SPLITS,
           sources: Sequence[str] = ("ground_truth", "corrected", "conditioning"),
           kinds: Sequence[str] | None = None,
           progress: Callable[[int, int], None] | None = None,
           synthetic: str = exportable.DEFAULT_POOL) -> dict[str, Any]:
    """Write ``annotations/person_keypoints_<split>.json`` and ``images/<split>/`` under ``out``.

    Persons are exported from the given label ``sources`` (machine ``predicted`` labels only when
    asked for). Each image entry carries its realcal ``split`` (an extra field COCO tools ignore).
    Honeypots and rejected images are never written; synthetic images only from the ``synthetic``
    pool (``accepted`` by review, ``curated`` or ``all``). Each file's ``info.realcal`` block
    records the pool and what was left out.
    """
    unknown = set(sources) - set(LABEL_SOURCES)
    if unknown:
        raise DatasetError(f"unknown label source(s) {', '.join(sorted(unknown))}; "
                           f"choose from {', '.join(LABEL_SOURCES)}")
    exportable.check_pool(synthetic)
    out = Path(out)
    summary: dict[str, Any] = {"format": "coco", "out": str(out.resolve()), "splits": {}}
    with ws.connect() as db:
        summary["selection"] = exportable.record(db, kinds=kinds, splits=splits, sources=sources,
                                                 synthetic=synthetic)
        total = exportable.count(db, kinds=kinds, splits=splits, synthetic=synthetic)
        done = 0
        for split in splits:
            images_out, anns_out = [], []
            names: set[str] = set()
            ann_id = 0
            for im, persons in exportable.iter_images(db, kinds=kinds, splits=[split], sources=sources,
                                                      synthetic=synthetic):
                name = _unique_name(im, names)
                target = out / "images" / split / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(media.image_path(ws.root, im["sha256"], im["ext"]),
                                target)
                images_out.append({"id": im["id"], "file_name": name, "width": im["width"],
                                   "height": im["height"], "split": split,
                                   "realcal_sha256": im["sha256"], "realcal_kind": im["kind"]})
                for p in persons:
                    ann_id += 1
                    anns_out.append(_annotation(p, im["id"], ann_id))
                done += 1
                if progress:
                    progress(done, total)
            if not images_out:
                continue
            ann_path = out / "annotations" / f"person_keypoints_{split}.json"
            ann_path.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "info": {"description": f"realcal export of {ws.root.name} ({split})",
                         "realcal": summary["selection"]},
                "licenses": [], "categories": [poses.coco_category()],
                "images": images_out, "annotations": anns_out,
            }
            ann_path.write_text(json.dumps(payload))
            summary["splits"][split] = {"images": len(images_out), "persons": len(anns_out),
                                        "annotations": str(ann_path)}
        store_events.log(db, "export", {**summary, "sources": list(sources)})
    return summary


def _unique_name(im: dict, taken: set[str]) -> str:
    name = Path(im["file_name"]).name
    stem = Path(name).stem
    name = f"{stem}.{im['ext']}"
    if name in taken:
        name = f"{stem}_{im['sha256'][:8]}.{im['ext']}"
    taken.add(name)
    return name


def _annotation(p: dict, image_id: int, ann_id: int) -> dict[str, Any]:
    ann = {
        "id": ann_id, "image_id": image_id, "category_id": 1,
        "keypoints": [round(v, 2) if i % 3 != 2 else int(v) for i, v in enumerate(p["keypoints"])],
        "num_keypoints": p["num_keypoints"],
        "bbox": [round(p["bbox_x"], 2), round(p["bbox_y"], 2), round(p["bbox_w"], 2),
                 round(p["bbox_h"], 2)],
        "area": round(p["area"], 4), "iscrowd": p["iscrowd"],
        "segmentation": p["segmentation"] if p["segmentation"] is not None else [],
        "realcal_source": p["source"],
    }
    if p.get("extra"):
        ann["realcal_extra_joints"] = p["extra"]
    if p.get("scores") is not None:
        ann["score"] = p.get("score")
        ann["keypoint_scores"] = p["scores"]
    return ann
