"""Evaluation on the real test split: COCO OKS AP/AP50 (pycocotools), per-person OKS and PCK@0.2.

Choice for images with unannotated people (LSP-style data annotates one person): COCO AP counts
every detection, so an unannotated person the model finds is a false positive and lowers AP;
per-person OKS and PCK use the best-matching prediction for each annotated person and ignore the
rest. Both are reported; ignore regions for unannotated people are not yet marked.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from engine import media, poses


def evaluate(model, ws, images: list[dict], persons: dict[int, list[dict]], *, imgsz: int, device: str,
             conf: float = 0.001) -> tuple[dict[str, Any], list[dict]]:
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
    metrics: dict[str, Any] = {"images": len(images), "persons": len(rows), "detections": len(dets)}
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
