"""Ultralytics YOLO-pose folders: import and export.

Layout: ``data.yaml`` (``path``, ``train``/``val``/``test`` as folders or image-list ``.txt``
files relative to ``path``, ``kpt_shape``, ``flip_idx``, ``names``), images under ``images/``,
one label file per image under ``labels/`` (Ultralytics' ``/images/`` -> ``/labels/`` rule), a
line per person: ``class cx cy w h`` then ``x y v`` per keypoint, all normalised to [0, 1].

Import keeps the split each image is listed under (unless ``--split`` says otherwise). A
relative ``path`` is taken relative to the yaml's folder. Only class 0 (the person) is imported.
Export writes an absolute ``path`` (Ultralytics resolves a relative one against the current
folder, not the yaml's), ``kpt_shape: [17, 3]``, COCO's ``flip_idx`` and ``kpt_names`` (so a
re-import maps the joints by name). Crowd regions are left out (YOLO labels have no ignore
regions) and keypoints outside the image are written as unlabelled (Ultralytics drops a whole
label file whose coordinates leave [0, 1]); the summary counts both.

This module is the one YOLO-pose writer: :func:`label_line`, :func:`write_labels` and
:func:`write_data_yaml` serve both the ``export`` format here and the training sets of
:func:`engine.train.manifest.export_yolo`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from engine import media, poses
from engine.errors import DatasetError
from engine.io import exportable, schemas
from engine.io.common import (
    IMAGE_EXTENSIONS,
    LABEL_SOURCES,
    SPLITS,
    ImageRecord,
    ParsedDataset,
    PersonRecord,
    list_image_files,
    safe_join,
)
from engine.registry import register
from engine.workspace import Workspace
from store import events as store_events


def _find_yaml(path: Path) -> Path:
    if path.is_file():
        return path
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (path / name).is_file():
            return path / name
    raise DatasetError(f"{path}: no data.yaml found; give the dataset's data.yaml or its folder")


def label_path_for(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` in the path becomes ``/labels/``, extension .txt."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        head, tail = s.rsplit(sa, 1)
        s = head + sb + tail
    return Path(s).with_suffix(".txt")


@register("import_format", "yolo-pose")
def parse(path: str | Path) -> ParsedDataset:
    yaml_path = _find_yaml(Path(path))
    try:
        cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise DatasetError(f"{yaml_path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {yaml_path}: {exc.strerror or exc}") from None
    if not isinstance(cfg, dict):
        raise DatasetError(f"{yaml_path}: expected a mapping with kpt_shape and train/val paths")
    kpt_shape = cfg.get("kpt_shape")
    if (not isinstance(kpt_shape, (list, tuple)) or len(kpt_shape) != 2
            or not all(isinstance(v, int) for v in kpt_shape) or kpt_shape[1] not in (2, 3)):
        raise DatasetError(f"{yaml_path}: kpt_shape must be [keypoints, 2 or 3], got {kpt_shape!r}")
    n_kpt, dims = kpt_shape
    kpt_names = cfg.get("kpt_names")
    if isinstance(kpt_names, dict):
        kpt_names = kpt_names.get(0, kpt_names.get("0"))
    if kpt_names:
        if not isinstance(kpt_names, list) or len(kpt_names) != n_kpt:
            raise DatasetError(f"{yaml_path}: kpt_names must list {n_kpt} names for class 0 "
                               f"(kpt_shape {list(kpt_shape)})")
        mapping = schemas.resolve(kpt_names, where=str(yaml_path))
    elif n_kpt != poses.NUM_KEYPOINTS:
        raise DatasetError(
            f"{yaml_path} declares kpt_shape {list(kpt_shape)} ({n_kpt} keypoints), but realcal "
            f"stores {poses.SCHEMA_NAME} (kpt_shape [17, 3]: {', '.join(poses.KEYPOINT_NAMES)}); "
            f"add kpt_names to the yaml so the joints can be mapped by name")
    else:
        flip = cfg.get("flip_idx")
        if flip is not None and not (isinstance(flip, list) and all(isinstance(i, int) for i in flip)):
            raise DatasetError(f"{yaml_path}: flip_idx must be a list of keypoint indices "
                               f"(COCO-17: {list(poses.FLIP_IDX)}), got {flip!r:.80}")
        if flip is not None and list(flip) != list(poses.FLIP_IDX):
            raise DatasetError(
                f"{yaml_path}: flip_idx {list(flip)} is not COCO-17's {list(poses.FLIP_IDX)}, so "
                f"its 17 keypoints are not in COCO order; add kpt_names to the yaml to map them")
        mapping = schemas.resolve(poses.KEYPOINT_NAMES)

    base = yaml_path.parent
    declared = cfg.get("path")
    if declared and not isinstance(declared, str):
        raise DatasetError(f"{yaml_path}: path must name the dataset folder (text), got {declared!r:.80}")
    root = Path(declared) if declared else base
    if not root.is_absolute():
        root = (base / root)
    try:
        root = root.resolve()
        is_dir = root.is_dir()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a null byte
        raise DatasetError(f"{yaml_path}: dataset path {declared!r:.80} cannot be used: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    if not is_dir:
        raise DatasetError(f"{yaml_path}: dataset path {root} is not a folder")

    records: list[ImageRecord] = []
    notes: list[str] = []
    other_classes = 0
    listed_splits = [s for s in SPLITS if cfg.get(s)]
    if not listed_splits:
        raise DatasetError(f"{yaml_path} lists none of train, val, test")
    for split in listed_splits:
        entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
        for entry in entries:
            for image in _split_images(root, str(entry), yaml_path):
                rel = image.relative_to(root).as_posix()
                persons, problem, others = _read_labels(label_path_for(image), dims, root,
                                                         mapping)
                other_classes += others
                records.append(ImageRecord(file_name=rel, path=image, persons=persons,
                                           source_id=image.stem, split=split, problem=problem))
    if other_classes:
        notes.append(f"{other_classes} label lines of classes other than 0 (person) ignored")
    notes.append(f"dataset root {root}")
    return ParsedDataset("yolo-pose", root.name, str(yaml_path.resolve()), records, [], notes,
                         schema=mapping.name)


def _split_images(root: Path, entry: str, yaml_path: Path) -> list[Path]:
    target = safe_join(root, entry, f"{yaml_path.name} split path") if not Path(entry).is_absolute() \
        else _inside(root, Path(entry), yaml_path)
    try:
        is_dir, is_list = target.is_dir(), target.is_file() and target.suffix == ".txt"
    except (OSError, ValueError):  # a name too long for the file system
        is_dir = is_list = False
    if is_dir:
        return list_image_files(target)
    if is_list:
        try:
            text = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{yaml_path}: cannot read the image list {target}: {exc}") from None
        images = []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            p = Path(line)
            img = _inside(root, p, yaml_path) if p.is_absolute() else safe_join(
                root, line[2:] if line.startswith("./") else line, "image list entry")
            if img.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(img)
        return images
    raise DatasetError(f"{yaml_path}: split path {entry!r} is neither a folder nor an image list "
                       f"under {root}")


def _inside(root: Path, p: Path, yaml_path: Path) -> Path:
    try:
        resolved = p.resolve()
    except (OSError, ValueError) as exc:  # a null byte, a link loop
        raise DatasetError(f"{yaml_path}: {str(p)!r:.80} is not a usable path: {exc}") from None
    if resolved != root and root not in resolved.parents:
        raise DatasetError(f"{yaml_path}: {p} escapes the dataset folder {root}")
    return resolved


def _read_labels(label: Path, dims: int, root: Path,
                 mapping: schemas.SchemaMapping) -> tuple[list[PersonRecord], str | None, int]:
    if not label.is_file():
        return [], None, 0   # an image without a label file is a background image
    _inside(root, label, label)
    n_src = len(mapping.source_names)
    expected = 5 + n_src * dims
    persons, others = [], 0
    try:
        text = label.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], f"unreadable label file {label.name}: {exc}", 0
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != expected:
            raise DatasetError(
                f"{label}:{lineno} has {len(parts)} values, but kpt_shape [{n_src}, {dims}] needs "
                f"{expected} (class, box, then {dims} values per keypoint)")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            return [], f"non-numeric value in {label.name}:{lineno}", 0
        if not all(math.isfinite(v) for v in values):
            return [], f"NaN or infinite value in {label.name}:{lineno}", 0
        if int(values[0]) != 0:
            others += 1
            continue
        cx, cy, w, h = values[1:5]
        src = np.asarray(values[5:], dtype=float).reshape(n_src, dims)
        if dims == 2:
            vis = np.where((src[:, 0] != 0) | (src[:, 1] != 0), 2.0, 0.0)
            src = np.concatenate([src, vis[:, None]], axis=1)
        else:
            src[:, 2] = np.where(src[:, 2] >= 1.5, 2.0, np.where(src[:, 2] >= 0.5, 1.0, 0.0))
        k = np.zeros((poses.NUM_KEYPOINTS, 3))
        for ci, si in enumerate(mapping.to_coco):
            if si is not None:
                k[ci] = src[si]
        extra = {name: src[si].tolist() for name, si in mapping.extras.items()} or None
        persons.append(PersonRecord(keypoints=k, bbox=(cx - w / 2, cy - h / 2, w, h),
                                    extra=extra, source_ann_id=f"{label.name}:{lineno}",
                                    normalized=True))
    return persons, None, others


# ----------------------------------------------------------------------------- export

MANIFEST_NAME = "realcal_export.json"


@register("export_format", "yolo-pose")
def export(ws: Workspace, out: str | Path, *, splits: Sequence[str] = SPLITS,
           sources: Sequence[str] = ("ground_truth", "corrected", "conditioning"),
           kinds: Sequence[str] | None = None,
           progress: Callable[[int, int], None] | None = None,
           synthetic: str = exportable.DEFAULT_POOL) -> dict[str, Any]:
    """Write an Ultralytics YOLO-pose folder under ``out`` and, beside its ``data.yaml``, a small
    manifest (``realcal_export.json``) recording the synthetic pool and what was left out.

    Honeypots and rejected images are never written; synthetic images only from the ``synthetic``
    pool (``accepted`` by review, ``curated`` or ``all``)."""
    unknown = set(sources) - set(LABEL_SOURCES)
    if unknown:
        raise DatasetError(f"unknown label source(s) {', '.join(sorted(unknown))}; "
                           f"choose from {', '.join(LABEL_SOURCES)}")
    exportable.check_pool(synthetic)
    out = Path(out).resolve()
    summary: dict[str, Any] = {"format": "yolo-pose", "out": str(out), "splits": {},
                               "crowd_regions_dropped": 0, "keypoints_outside_image": 0}
    with ws.connect() as db:
        summary["selection"] = exportable.record(db, kinds=kinds, splits=splits, sources=sources,
                                                 synthetic=synthetic)
        total = exportable.count(db, kinds=kinds, splits=splits, synthetic=synthetic)
        done = 0
        for split in splits:
            n_images = n_persons = 0
            names: set[str] = set()
            for im, persons in exportable.iter_images(db, kinds=kinds, splits=[split], sources=sources,
                                                      synthetic=synthetic):
                stem = Path(im["file_name"]).stem
                if stem in names:
                    stem = f"{stem}_{im['sha256'][:8]}"
                names.add(stem)
                img_out = out / "images" / split / f"{stem}.{im['ext']}"
                img_out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(media.image_path(ws.root, im["sha256"], im["ext"]),
                                img_out)
                lines = []
                for p in persons:
                    if p["iscrowd"]:
                        summary["crowd_regions_dropped"] += 1
                        continue
                    line, outside = label_line(p, im["width"], im["height"])
                    summary["keypoints_outside_image"] += outside
                    if line:
                        lines.append(line)
                write_labels(out, split, stem, lines)
                n_images += 1
                n_persons += len(lines)
                done += 1
                if progress:
                    progress(done, total)
            if n_images:
                summary["splits"][split] = {"images": n_images, "persons": n_persons}
        summary["data_yaml"] = str(write_data_yaml(out, summary["splits"]))
        manifest = out / MANIFEST_NAME
        manifest.write_text(json.dumps({"format": "yolo-pose", "workspace": str(ws.root),
                                        "splits": summary["splits"], **summary["selection"]}, indent=2))
        summary["manifest"] = str(manifest)
        store_events.log(db, "export", {**summary, "sources": list(sources)})
    return summary


def data_yaml(out: Path, splits: Iterable[str]) -> dict[str, Any]:
    """The ``data.yaml`` of a YOLO-pose folder at ``out`` (absolute) holding ``splits``.

    ``path`` is absolute (Ultralytics resolves a relative one against the current folder), each
    split is the folder ``images/{split}`` (in train, val, test order), then ``kpt_shape``,
    COCO's ``flip_idx``, the one class ``names`` and its ``kpt_names`` (read back by ``parse``)."""
    present = set(splits)
    unknown = present - set(SPLITS)
    if unknown:
        raise DatasetError(f"unknown split(s) {', '.join(sorted(unknown))}; valid: {', '.join(SPLITS)}")
    return {
        "path": str(out),
        **{s: f"images/{s}" for s in SPLITS if s in present},
        "kpt_shape": [poses.NUM_KEYPOINTS, 3],
        "flip_idx": list(poses.FLIP_IDX),
        "names": {0: "person"},
        "kpt_names": {0: list(poses.KEYPOINT_NAMES)},
    }


def write_data_yaml(out: Path, splits: Iterable[str]) -> Path:
    """Write :func:`data_yaml` to ``out/data.yaml`` (making ``out``); returns its path."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump(data_yaml(out, splits), sort_keys=False))
    return path


def write_labels(out: Path, split: str, stem: str, lines: Sequence[str]) -> Path:
    """Write one image's label file, ``out/labels/{split}/{stem}.txt``, a line per person (an
    empty file for an image without people); returns its path."""
    path = Path(out) / "labels" / split / f"{stem}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def label_line(p: dict, width: int, height: int) -> tuple[str | None, int]:
    """One person's label line (``0 cx cy w h`` then ``x y v`` per keypoint, normalised to the
    image) and how many labelled keypoints lay outside the image (written as unlabelled).

    The box is clipped to the image; a box with nothing inside the image gives ``(None, 0)``."""
    x, y, w, h = p["bbox_x"], p["bbox_y"], p["bbox_w"], p["bbox_h"]
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    if x1 <= x0 or y1 <= y0:
        return None, 0
    k = np.asarray(p["keypoints"], dtype=float).reshape(poses.NUM_KEYPOINTS, 3)
    outside = (k[:, 2] > 0) & ((k[:, 0] < 0) | (k[:, 0] > width) | (k[:, 1] < 0) | (k[:, 1] > height))
    k[outside] = 0.0
    k[k[:, 2] == 0, :2] = 0.0
    vals = [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height]
    for kx, ky, kv in k:
        vals += [kx / width, ky / height, kv]
    return "0 " + " ".join(f"{v:.6g}" for v in vals), int(outside.sum())
