"""Evaluation protocols: the rule that turns one model's detections on labelled images into scores.

A protocol depends only on the labels and on the detections being scored, never on another model,
so every arm of an experiment (the untouched pretrained model included) is scored by the same rule.

* ``coco`` — for fully-labelled data (COCO, OCHuman, a team's own exhaustively labelled images):
  every detection counts; an unmatched one is a false positive. The dataset's own crowd
  annotations are ignore regions, as in pycocotools. Nothing else is ignored.
* ``annotated_person`` — for data that labels one (or some) of the people in each image, such as
  LSP/LSPET: a detection is *attributed* to an annotated person when its box overlaps that
  person's box (IoU >= 0.5) or its keypoints could match them (OKS >= 0.5, the lowest threshold
  at which COCO's AP counts a match). OKS-AP is computed over attributed detections only:
  detections of people nobody labelled, and hallucinations away from the labelled person, are
  neither rewarded nor punished; a duplicate or a poor detection *on* the labelled person is a
  false positive, as in COCO.

Per-person figures (the same under both protocols): each labelled person is represented by the
highest-scoring detection attributed to them (none: a miss), and scored by OKS and by PCK@0.2
(torso-normalised, LSP's standard measure). The best-*matching* detection is never chosen by
looking at the label: a model that sprays many low-confidence guesses gains nothing from them.

``auto`` picks ``annotated_person`` for images imported from LSP/LSPET (which label one person per
image) and ``coco`` for everything else; the report names the protocol that scored each split.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np

from engine import poses
from engine.errors import RealcalError

PROTOCOLS = {
    "coco": "COCO OKS-AP over all detections (fully-labelled data); per-person OKS and PCK@0.2",
    "annotated_person": "OKS-AP over detections attributed to a labelled person (IoU >= 0.5 or OKS >= 0.5); "
                        "detections elsewhere neither rewarded nor punished; per-person OKS and PCK@0.2",
}
CHOICES = (*PROTOCOLS, "auto")
ATTRIBUTION_IOU = 0.5
ATTRIBUTION_OKS = 0.5
# import formats whose datasets label a subset of the people in an image
PARTIAL_FORMATS = {"lsp": "annotated_person"}


def check(name: Any) -> str:
    if name not in CHOICES:
        raise RealcalError(f"unknown evaluation protocol {name!r}; valid: {', '.join(CHOICES)}")
    return str(name)


def for_formats(formats: Iterable[str | None], requested: str = "auto") -> str:
    """The protocol for images imported in these formats: ``requested`` unless it is ``auto``."""
    check(requested)
    if requested != "auto":
        return requested
    return "annotated_person" if any(f in PARTIAL_FORMATS for f in formats) else "coco"


def det_box(det: dict) -> list[float]:
    """The detector's box (x, y, w, h); detections stored before boxes were kept use their keypoints' extent."""
    if det.get("box") is not None:
        return [float(v) for v in det["box"]]
    k = poses.as_keypoints(det["keypoints"])
    x0, y0 = k[:, 0].min(), k[:, 1].min()
    return [float(x0), float(y0), float(k[:, 0].max() - x0), float(k[:, 1].max() - y0)]


def _labelled(gt: dict) -> dict[int, list[dict]]:
    """Per image, the persons that are scored (not crowd, at least one labelled joint)."""
    out: dict[int, list[dict]] = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0:
            out.setdefault(a["image_id"], []).append(a)
    return out


def attribute(gt: dict, dets: list[dict]) -> list[int | None]:
    """For every detection, the id of the labelled person it is attributed to (None: nobody)."""
    persons = _labelled(gt)
    by_image: dict[int, list[int]] = {}
    for i, d in enumerate(dets):
        by_image.setdefault(d["image_id"], []).append(i)
    out: list[int | None] = [None] * len(dets)
    for image_id, idx in by_image.items():
        ps = persons.get(image_id) or []
        if not ps:
            continue
        kps = np.stack([poses.as_keypoints(dets[i]["keypoints"]) for i in idx])
        oks = poses.oks_matrix(np.stack([poses.as_keypoints(p["keypoints"]) for p in ps]), kps,
                               [p["area"] for p in ps])                              # (P, D)
        oks = np.nan_to_num(oks, nan=0.0)
        iou = poses.box_iou_matrix(np.array([p["bbox"] for p in ps]), np.array([det_box(dets[i]) for i in idx]))
        ok = (iou >= ATTRIBUTION_IOU) | (oks >= ATTRIBUTION_OKS)
        for j, i in enumerate(idx):
            if ok[:, j].any():
                cand = np.flatnonzero(ok[:, j])
                best = cand[np.lexsort((-iou[cand, j], -oks[cand, j]))[0]]
                out[i] = ps[best]["id"]
    return out


def scored_detections(gt: dict, dets: list[dict], protocol: str) -> list[dict]:
    """The detections the protocol's OKS-AP counts."""
    check(protocol)
    if protocol == "annotated_person":
        owner = attribute(gt, dets)
        return [d for d, o in zip(dets, owner) if o is not None]
    return list(dets)


def scored_in(coco: dict) -> list[dict]:
    """The detections of a stored evaluation (``{"gt", "dets", "protocol"}``) that its protocol scores."""
    return scored_detections(coco["gt"], coco["dets"], coco.get("protocol") or "coco")


def top_detections(gt: dict, dets: list[dict]) -> dict[int, dict]:
    """Per labelled person id, the highest-scoring detection attributed to them (the person's prediction)."""
    top: dict[int, dict] = {}
    for d, o in zip(dets, attribute(gt, dets)):
        if o is not None and (o not in top or d["score"] > top[o]["score"]):
            top[o] = d
    return top


def person_rows(gt: dict, dets: list[dict]) -> list[dict]:
    """One row per labelled person: OKS and PCK@0.2 of the highest-scoring detection attributed to them."""
    top = top_detections(gt, dets)
    rows = []
    for image_id, ps in _labelled(gt).items():
        for p in ps:
            g = poses.as_keypoints(p["keypoints"])
            d = top.get(p["id"])
            pred = poses.as_keypoints(d["keypoints"]) if d else None
            oks = (float(np.nan_to_num(poses.oks_matrix(g[None], pred[None], [p["area"]])[0, 0]))
                   if pred is not None else 0.0)
            per_joint = poses.pck_per_joint(g, pred, 0.2)
            rows.append({"image_id": image_id, "person_id": p["id"], "oks": oks,
                         "score": float(d["score"]) if d else None,
                         "pck": float(np.nanmean(per_joint)) if np.isfinite(per_joint).any() else None,
                         "pck_joints": [None if np.isnan(v) else int(v) for v in per_joint]})
    return rows


def score(gt: dict, dets: list[dict], protocol: str) -> tuple[dict[str, Any], list[dict]]:
    """Metrics of one model on one split under ``protocol``, and the per-person rows."""
    from engine.stats import ap_from_eval, coco_eval

    check(protocol)
    if protocol == "auto":
        raise RealcalError("resolve the 'auto' protocol for the split first (protocols.for_formats)")
    kept = scored_detections(gt, dets, protocol)
    rows = person_rows(gt, dets)
    metrics: dict[str, Any] = {"protocol": protocol, "images": len(gt["images"]), "persons": len(rows),
                               "detections": len(dets), "scored_detections": len(kept)}
    if kept and any(not a.get("iscrowd") for a in gt["annotations"]):
        ev = coco_eval(gt, kept)
        ap, ap50, ap75 = ap_from_eval(ev)
        metrics.update({"AP": ap, "AP50": ap50, "AP75": ap75})
    else:
        metrics.update({"AP": 0.0, "AP50": 0.0, "AP75": 0.0})
    pcks = [r["pck"] for r in rows if r["pck"] is not None]
    metrics["PCK@0.2"] = float(np.mean(pcks)) if pcks else None
    joints = (np.array([[np.nan if v is None else v for v in r["pck_joints"]] for r in rows]) if rows
              else np.zeros((0, poses.NUM_KEYPOINTS)))
    metrics["PCK@0.2 per joint"] = ({name: (None if not np.isfinite(joints[:, j]).any()
                                            else round(float(np.nanmean(joints[:, j])), 4))
                                     for j, name in enumerate(poses.KEYPOINT_NAMES)} if rows else {})
    metrics["mean OKS"] = float(np.mean([r["oks"] for r in rows])) if rows else None
    metrics["recall (a detection on the person)"] = (float(np.mean([r["score"] is not None for r in rows]))
                                                     if rows else None)
    return metrics, rows


def with_ignore_regions(gt: dict, regions: dict[int, list[list[float]]]) -> dict:
    """A copy of ``gt`` with extra crowd (ignore) boxes: the *old* rule, kept only to re-score stored
    detections for comparison (``bench/protocol_compare.py``); no protocol uses it."""
    gt = copy.deepcopy(gt)
    n = 0
    for image_id, boxes in regions.items():
        for b in boxes:
            n += 1
            gt["annotations"].append({"id": 10 ** 9 + n, "image_id": image_id, "category_id": 1,
                                      "keypoints": [0] * 51, "num_keypoints": 0, "bbox": b,
                                      "area": poses.bbox_area_scale(b), "iscrowd": 1})
    return gt
