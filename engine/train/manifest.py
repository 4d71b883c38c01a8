"""Manifests: immutable, hashed snapshots of a training set, and their YOLO-pose export.

A manifest lists images with their split and the label source used (real: ground truth, or a
reviewer's correction; synthetic: the correction, else the conditioning pose). Synthetic images
come from a pool: ``accepted`` (by review), ``curated`` (the curation order), ``random`` (a seeded
sample of everything generated), ``unfiltered`` (the first N generated) or ``ids`` (exactly the listed
images, e.g. what a loop selected), optionally only from the
generation batches with a given ``label``. The leakage guard
refuses any synthetic image with a val/test (or deleted) image anywhere in its lineage, and
honeypots never enter, nor do images someone excluded (:func:`exclude`: train images only; val and
test are the measurement). The hash covers every (image content, split, label) entry, so the same
selection always gets the same manifest.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from engine import media
from engine.errors import RealcalError
from engine.workspace import Workspace
from store import batches as store_batches
from store import images as store_images
from store import training as store_training
from store.db import write_transaction

POOLS = ("none", "accepted", "curated", "random", "unfiltered", "ids")


def train_images(counts: dict) -> int:
    """Training images in a manifest (real + synthetic), from its stored counts."""
    return int(counts.get("train_real", 0)) + int(counts.get("train_synthetic", 0))


def _pick(ids: list[int], count: int | None, seed: int, shuffle: bool = True) -> list[int]:
    ids = sorted(ids) if shuffle else list(ids)
    if shuffle:
        ids = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return ids if count is None else ids[:count]


def seed_of(spec: dict) -> int:
    return int(spec.get("seed", 0))


def _labels(persons: list[dict], kind: str) -> tuple[str, list[dict]] | None:
    usable = [p for p in persons if not p["iscrowd"]]
    for source in (("corrected", "ground_truth") if kind == "real" else ("corrected", "conditioning")):
        chosen = [p for p in usable if p["source"] == source]
        if chosen:
            return source, chosen
    return None


def exclude(ws: Workspace, image_ids, reason: str | None = None, user: str | None = None) -> dict[str, int]:
    """Keep these images out of every manifest built from now on (manifests and runs made before keep
    what they had). Train images only, real or synthetic: val and test images are what every model is
    measured on, so excluding one would let a measurement be chosen; nothing is changed then."""
    from store import events as store_events

    ids = sorted({int(i) for i in image_ids})
    if not ids:
        raise RealcalError("no images given")
    with ws.connect() as db:
        splits = store_images.splits_of(db, ids)
        missing = [i for i in ids if i not in splits]
        if missing:
            raise RealcalError(f"no image {', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''}")
        held = [i for i in ids if splits[i] in ("val", "test")]
        if held:
            raise RealcalError(f"{len(held)} of these are val/test images (e.g. {held[:5]}): every model is measured "
                               f"on them, so they cannot be excluded (nothing was changed); to drop them, delete "
                               f"their import batch")
        with write_transaction(db):
            new = store_training.exclude_images(db, ids, reason, user)
            store_events.log(db, "images.exclude", {"count": len(ids), "new": new, "ids": ids[:1000],
                                                    "reason": reason, "user": user})
    return {"excluded": new, "already": len(ids) - new}


def include(ws: Workspace, image_ids, user: str | None = None) -> dict[str, int]:
    """Undo :func:`exclude` for these images."""
    from store import events as store_events

    ids = sorted({int(i) for i in image_ids})
    with ws.connect() as db, write_transaction(db):
        n = store_training.include_images(db, ids)
        store_events.log(db, "images.include", {"count": len(ids), "included": n, "ids": ids[:1000], "user": user})
    return {"included": n, "not_excluded": len(ids) - n}


def anchor_pool(ws: Workspace, count: int | None, seed: int) -> list[int]:
    """The real train images a seed draws (the same draw as ``build_manifest``'s real subset)."""
    with ws.connect() as db:
        real = store_images.list_images(db, kinds=["real"], splits=["train"])
        persons = store_images.persons_for_images(db, [im["id"] for im in real])
        excluded = store_training.excluded_image_ids(db)
    ids = [im["id"] for im in real if _labels(persons[im["id"]], "real") and im["id"] not in excluded]
    if count is not None and len(ids) < count:
        raise RealcalError(f"asked for {count} real train images, only {len(ids)} are labelled (and not excluded)")
    return _pick(ids, count, seed)


def build_manifest(ws: Workspace, spec: dict[str, Any]) -> dict[str, Any]:
    real_spec = dict(spec.get("real_train") or {})
    syn_spec = dict(spec.get("synthetic") or {"pool": "none"})
    pool = syn_spec.get("pool", "none")
    if pool not in POOLS:
        raise RealcalError(f"unknown synthetic pool {pool!r}; valid: {', '.join(POOLS)}")
    with ws.connect() as db:
        real = store_images.list_images(db, kinds=["real"])
        persons = store_images.persons_for_images(db, [im["id"] for im in real])
        real_labels = {im["id"]: lab for im in real if (lab := _labels(persons[im["id"]], "real")) is not None}
        labelled = {im["id"]: im for im in real if im["id"] in real_labels}
        excluded = store_training.excluded_image_ids(db)
        train_ids = [i for i, im in labelled.items() if im["split"] == "train" and i not in excluded]
        chosen_real = _pick(train_ids, real_spec.get("count"), int(real_spec.get("seed", 0)))
        if real_spec.get("count") and len(chosen_real) < real_spec["count"]:
            raise RealcalError(f"asked for {real_spec['count']} real train images, only {len(train_ids)} are labelled "
                               f"(and not excluded)")
        honeypots = store_training.honeypot_image_ids(db)
        syn_all = [im for im in store_images.list_images(db, kinds=["synthetic"])
                   if im["id"] not in honeypots and im["id"] not in excluded]
        syn_ids = [im["id"] for im in syn_all]
        within = syn_spec.get("within")
        if within and syn_ids:
            # synthetic images must derive only from this seed's anchor pool (the same draw as the
            # real subset, of which the real train images are a prefix)
            pool_ids = set(_pick(train_ids, within.get("count"), int(within.get("seed", seed_of(real_spec)))))
            if not set(chosen_real) <= pool_ids:
                raise RealcalError("the real train images must be part of the anchor pool (same seed, count <= pool)")
            src = store_training.lineage_sources(db, syn_ids)
            syn_ids = [i for i in syn_ids if src[i] and all(s["source_image_id"] in pool_ids for s in src[i])]
        if syn_spec.get("label") is not None:     # only images of the generation batches with this name
            labelled_ids = store_batches.image_ids_with_label(db, str(syn_spec["label"]))
            syn_ids = [i for i in syn_ids if i in labelled_ids]
        count = syn_spec.get("count")
        seed = int(syn_spec.get("seed", 0))
        if pool == "none":
            chosen_syn = []
        elif pool == "accepted":
            states = store_training.review_states(db)
            chosen_syn = _pick([i for i in syn_ids if states.get(i) == "accepted"], count, seed)
        elif pool == "curated":
            order = [i for i in store_training.latest_selection_ids(db) if i in set(syn_ids)]
            chosen_syn = order if count is None else order[:count]
        elif pool == "random":
            chosen_syn = _pick(syn_ids, count, seed)
        elif pool == "ids":       # exactly these images (e.g. what a loop's rounds selected), in this order
            wanted = [int(i) for i in syn_spec.get("ids") or []]
            eligible = set(syn_ids)
            missing = [i for i in wanted if i not in eligible]
            if missing:
                raise RealcalError(f"{len(missing)} of the {len(wanted)} synthetic images asked for are not eligible "
                                   f"(deleted, honeypots, excluded, or outside the anchor pool/label), "
                                   f"e.g. {missing[:5]}")
            chosen_syn = wanted if count is None else wanted[:count]
        else:
            chosen_syn = syn_ids if count is None else syn_ids[:count]
        if count and len(chosen_syn) < count:
            raise RealcalError(f"the {pool} pool has {len(chosen_syn)} synthetic images, "
                               f"fewer than the {count} asked for")
        sources = store_training.lineage_sources(db, chosen_syn)
        leaks = {i: [(s["source_image_id"], s["split"] or "deleted") for s in src
                     if s["kind"] != "real" or s["split"] != "train"]
                 for i, src in sources.items()}
        leaks = {i: v for i, v in leaks.items() if v}
        if leaks:
            first = next(iter(leaks.items()))
            raise RealcalError(f"leakage guard: {len(leaks)} synthetic images have a val/test (or deleted) image "
                               f"in their lineage, e.g. image {first[0]} from {first[1]}; refusing the manifest")
        syn_rows = store_images.images_with_ids(db, chosen_syn)
        syn_persons = store_images.persons_for_images(db, chosen_syn)
        items, digest_rows = [], []
        for im_id in chosen_real:
            im = labelled[im_id]
            source, ps = real_labels[im_id]
            items.append({"image_id": im_id, "split": "train", "label_source": source,
                          "person_ids": [p["id"] for p in ps]})
            digest_rows.append((im["sha256"], "train", source, [p["keypoints"] for p in ps]))
        for im in syn_rows:
            lab = _labels(syn_persons[im["id"]], "synthetic")
            if lab is None:
                continue
            source, ps = lab
            items.append({"image_id": im["id"], "split": "train", "label_source": source,
                          "person_ids": [p["id"] for p in ps]})
            digest_rows.append((im["sha256"], "train", source, [p["keypoints"] for p in ps]))
        for split in ("val", "test"):
            for im_id, im in sorted(labelled.items()):
                if im["split"] == split:
                    source, ps = real_labels[im_id]
                    items.append({"image_id": im_id, "split": split, "label_source": source,
                                  "person_ids": [p["id"] for p in ps]})
                    digest_rows.append((im["sha256"], split, source, [p["keypoints"] for p in ps]))
        if not any(it["split"] == "train" for it in items):
            raise RealcalError("the manifest has no training images")
        digest = hashlib.sha256(json.dumps(sorted(digest_rows), default=str).encode()).hexdigest()
        counts = {"train_real": len(chosen_real),
                  "train_synthetic": sum(1 for it in items if it["split"] == "train") - len(chosen_real),
                  "val": sum(1 for it in items if it["split"] == "val"),
                  "test": sum(1 for it in items if it["split"] == "test")}
        existing = store_training.manifest_by_hash(db, digest)
        if existing:
            return {"id": existing["id"], "hash": digest, "counts": existing["counts"], "new": False}
        with write_transaction(db):
            existing = store_training.manifest_by_hash(db, digest)     # made meanwhile by another process
            if existing:
                return {"id": existing["id"], "hash": digest, "counts": existing["counts"], "new": False}
            mid = store_training.insert_manifest(db, digest, spec, counts, items)
        return {"id": mid, "hash": digest, "counts": counts, "new": True}


def train_kinds(ws: Workspace, manifest_id: int) -> dict[str, list[int]]:
    """The manifest's train image ids by kind (``real``, ``synthetic``)."""
    with ws.connect() as db:
        m = store_training.manifest(db, manifest_id)
        if m is None:
            raise RealcalError(f"no manifest {manifest_id}")
        ids = [it["image_id"] for it in m["items"] if it["split"] == "train"]
        kinds = {im["id"]: im["kind"] for im in store_images.images_with_ids(db, ids)}
    out: dict[str, list[int]] = {"real": [], "synthetic": []}
    for i in ids:
        out.setdefault(kinds[i], []).append(i)
    return out


def export_yolo(ws: Workspace, manifest_id: int, out: Path,
                mask_regions: dict[int, list[list[float]]] | None = None, *,
                kinds: set[str] | None = None, repeats: dict[int, int] | None = None) -> Path:
    """Write the manifest as an Ultralytics YOLO-pose folder; returns its data.yaml.

    ``mask_regions`` (image id -> boxes x, y, w, h): regions filled with the image's mean colour
    in the exported copy (unannotated people in real train images). ``kinds``: only train images of
    these kinds (e.g. ``{"synthetic"}`` for a pre-training stage; val and test are always written).
    ``repeats`` (image id -> copies): train images written that many times (a weighted schedule's epoch;
    the copies are hard links where the file system allows)."""
    from engine.io import yolo_pose

    out = Path(out).resolve()
    with ws.connect() as db:
        m = store_training.manifest(db, manifest_id)
        if m is None:
            raise RealcalError(f"no manifest {manifest_id}")
        ids = [it["image_id"] for it in m["items"]]
        images = {im["id"]: im for im in store_images.images_with_ids(db, ids)}
        persons = store_images.persons_for_images(db, ids)
    if out.exists():
        shutil.rmtree(out)
    for it in m["items"]:
        im = images[it["image_id"]]
        if kinds is not None and it["split"] == "train" and im["kind"] not in kinds:
            continue
        wanted = set(it["person_ids"])
        lines = [line for p in persons[im["id"]] if p["id"] in wanted
                 for line, _ in [yolo_pose.label_line(p, im["width"], im["height"])] if line]
        stem = f"{im['id']:07d}"
        img_out = out / "images" / it["split"] / f"{stem}.{im['ext']}"
        img_out.parent.mkdir(parents=True, exist_ok=True)
        src = media.image_path(ws.root, im["sha256"], im["ext"])
        boxes = (mask_regions or {}).get(im["id"]) if it["split"] == "train" else None
        if boxes:
            import cv2

            img = cv2.imread(str(src), cv2.IMREAD_COLOR)
            if img is None:
                raise RealcalError(f"cannot read image {im['id']}")
            fill = tuple(int(v) for v in img.reshape(-1, 3).mean(axis=0))
            for x, y, w, h in boxes:
                cv2.rectangle(img, (int(x), int(y)), (int(np.ceil(x + w)), int(np.ceil(y + h))), fill, -1)
            img_out = img_out.with_suffix(".png")
            cv2.imwrite(str(img_out), img)
        else:
            shutil.copyfile(src, img_out)
        yolo_pose.write_labels(out, it["split"], stem, lines)
        copies = int((repeats or {}).get(im["id"], 1)) if it["split"] == "train" else 1
        for k in range(1, copies):
            twin = img_out.with_name(f"{stem}_r{k}{img_out.suffix}")
            try:
                os.link(img_out, twin)
            except OSError:
                shutil.copyfile(img_out, twin)
            yolo_pose.write_labels(out, it["split"], f"{stem}_r{k}", lines)
    splits = {it["split"] for it in m["items"]}
    if "val" not in splits:
        raise RealcalError("the manifest has no val images: model selection needs a labelled val split")
    return yolo_pose.write_data_yaml(out, splits)
