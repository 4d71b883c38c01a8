"""Evaluation on the real test split: COCO OKS AP/AP50 (pycocotools), per-person OKS and PCK@0.2.

Choice for images with unannotated people (LSP-style data annotates one person): people the
pretrained teacher finds (confidence >= 0.5) whose box overlaps no annotated person (IoU < 0.3)
are added to the ground truth as **ignore (crowd) regions**, so COCO AP does not count a model
that finds them as wrong; their number is reported. In training (``mask_unannotated``, on by
default) the same regions are filled with the image's mean colour in the exported real train
images, so the model is never taught that a visible person is background. Per-person OKS and PCK use the
best-matching prediction for each annotated person and ignore every other detection.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from engine import media, poses


def _iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax1, bx1) - max(a[0], b[0])), max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def unannotated_regions(ws, images: list[dict], persons: dict[int, list[dict]], *, device: str,
                        conf: float = 0.5, iou_max: float = 0.3) -> dict[int, list[list[float]]]:
    """Boxes of people the pretrained teacher finds that no annotation covers, per image.

    The teacher's boxes are cached per image content under the workspace's ``cache/`` folder.
    """
    import json
    import os

    from engine import assets
    from engine.curate.teacher import Teacher

    cache = ws.root / "cache" / f"unannotated-c{conf:g}-iou{iou_max:g}.json"   # by image content
    known: dict[str, list] = json.loads(cache.read_text()) if cache.exists() else {}
    todo = [im for im in images if im["sha256"] not in known]
    if todo:
        import cv2

        teacher = Teacher(str(assets.resolve("yolo11n-pose")), device, conf=conf)
        for start in range(0, len(todo), 16):
            chunk = todo[start:start + 16]
            rgb = [cv2.cvtColor(cv2.imread(str(ws.path(media.image_relpath(im["sha256"], im["ext"])))), cv2.COLOR_BGR2RGB)
                   for im in chunk]
            for im, pred in zip(chunk, teacher(rgb)):
                known[im["sha256"]] = [[float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
                                       for x0, y0, x1, y1 in pred["boxes"]]
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)
    out: dict[int, list[list[float]]] = {}
    for im in images:
        annotated = [(p["bbox_x"], p["bbox_y"], p["bbox_w"], p["bbox_h"]) for p in persons[im["id"]]]
        out[im["id"]] = [b for b in known[im["sha256"]] if all(_iou(b, a) < iou_max for a in annotated)]
    return out


def add_ignore_regions(gt: dict, regions: dict[int, list[list[float]]]) -> int:
    """Append crowd (ignore) annotations; returns how many were added."""
    n = 0
    for image_id, boxes in regions.items():
        for b in boxes:
            n += 1
            gt["annotations"].append({"id": 10 ** 9 + n, "image_id": image_id, "category_id": 1,
                                      "keypoints": [0] * 51, "num_keypoints": 0, "bbox": b,
                                      "area": poses.bbox_area_scale(b), "iscrowd": 1})
    return n


def evaluate(model, ws, images: list[dict], persons: dict[int, list[dict]], *, imgsz: int, device: str,
             conf: float = 0.001, ignore_regions: dict[int, list[list[float]]] | None = None
             ) -> tuple[dict[str, Any], list[dict]]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [], "annotations": [], "categories": [poses.coco_category()]}
    dets, rows = [], []
    for im in images:
        gt["images"].append({"id": im["id"], "width": im["width"], "height": im["height"]})
        for p in persons[im["id"]]:
            gt["annotations"].append({"id": p["id"], "image_id": im["id"], "category_id": 1,
                                      "keypoints": p["keypoints"], "num_keypoints": p["num_keypoints"],
                                      "bbox": [p["bbox_x"], p["bbox_y"], p["bbox_w"], p["bbox_h"]],
                                      "area": p["area"], "iscrowd": p["iscrowd"]})
    for start in range(0, len(images), 16):
        chunk = images[start:start + 16]
        paths = [str(ws.path(media.image_relpath(im["sha256"], im["ext"]))) for im in chunk]
        for im, r in zip(chunk, model.predict(paths, imgsz=imgsz, conf=conf, device=device, verbose=False)):
            kps = r.keypoints.data.cpu().numpy() if r.keypoints is not None and len(r.boxes) else np.zeros((0, 17, 3))
            scores = r.boxes.conf.cpu().numpy() if r.boxes is not None else np.zeros(0)
            for k, s in zip(kps, scores):
                dets.append({"image_id": im["id"], "category_id": 1, "score": float(s),
                             "keypoints": [float(v) for v in k.reshape(-1)]})
            for p in persons[im["id"]]:
                if p["num_keypoints"] == 0 or p["iscrowd"]:
                    continue
                g = poses.as_keypoints(p["keypoints"])
                if len(kps):
                    o = poses.oks_matrix(g[None], kps, [p["area"]])[0]
                    best = int(np.nanargmax(o))
                    oks, pred = float(o[best]), kps[best]
                else:
                    oks, pred = 0.0, None
                per_joint = poses.pck_per_joint(g, pred, 0.2)
                rows.append({"image_id": im["id"], "person_id": p["id"], "oks": oks,
                             "pck": float(np.nanmean(per_joint)) if np.isfinite(per_joint).any() else None,
                             "pck_joints": [None if np.isnan(v) else int(v) for v in per_joint]})
    n_ignore = add_ignore_regions(gt, ignore_regions or {})
    metrics: dict[str, Any] = {"images": len(images), "persons": len(rows), "detections": len(dets),
                               "ignore_regions": n_ignore}
    metrics["_coco"] = {"gt": gt, "dets": dets}  # kept for bootstrap intervals; dropped before storing
    if dets and gt["annotations"]:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = gt
            coco.createIndex()
            ev = COCOeval(coco, coco.loadRes(dets), "keypoints")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        metrics.update({"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2])})
    else:
        metrics.update({"AP": 0.0, "AP50": 0.0, "AP75": 0.0})
    pcks = [r["pck"] for r in rows if r["pck"] is not None]
    metrics["PCK@0.2"] = float(np.mean(pcks)) if pcks else None
    joints = np.array([[np.nan if v is None else v for v in r["pck_joints"]] for r in rows]) if rows else np.zeros((0, 17))
    metrics["PCK@0.2 per joint"] = {name: (None if not np.isfinite(joints[:, j]).any() else round(float(np.nanmean(joints[:, j])), 4))
                                    for j, name in enumerate(poses.KEYPOINT_NAMES)} if len(rows) else {}
    metrics["mean OKS"] = float(np.mean([r["oks"] for r in rows])) if rows else None
    return metrics, rows
