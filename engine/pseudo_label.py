"""Pseudo-labelling: the teacher (yolo11n-pose by default) labels unlabelled real images.

Its keypoints are stored as ``predicted`` persons with per-joint confidences (``scores``) and the
detection confidence (``score``): machine labels, shown as such everywhere and never exported
or trained on unless asked for. A joint is marked labelled (v=2) when its confidence reaches
``pseudo_label.keypoint_conf``, else v=0 with its position kept. The run is one batch (listable
and deletable) and resumable: a restarted job continues with the images still unlabelled.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine import assets, config, media, poses
from engine.curate.teacher import load_teacher
from engine.jobs import JobContext, job_kind
from engine.workspace import Workspace
from store import batches as store_batches
from store import events as store_events
from store import images as store_images
from store.db import write_transaction


def resolve_params(ws: Workspace, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    with ws.connect() as db:
        cfg = config.resolve(db, overrides)
    keys = ("teacher.model", "teacher.path", "device", "pseudo_label.conf",
            "pseudo_label.keypoint_conf", "pseudo_label.imgsz", "pseudo_label.batch_size")
    params = {k: cfg[k] for k in keys}
    params["weights"] = str(assets.resolve(cfg["teacher.model"], explicit=cfg["teacher.path"] or None))
    return params


def predict_persons(model, paths: list[str], *, imgsz: int, conf: float, device: str,
                    keypoint_conf: float) -> list[list[dict[str, Any]]]:
    """Person rows (without image/batch ids) for each image path."""
    results = model.predict(paths, imgsz=imgsz, conf=conf, device=device, verbose=False)
    out = []
    for r in results:
        rows = []
        if r.keypoints is not None and r.boxes is not None and len(r.boxes):
            kps = r.keypoints.data.cpu().numpy()                 # (N, 17, 3): x, y, confidence
            boxes = r.boxes.xyxy.cpu().numpy()
            scores = r.boxes.conf.cpu().numpy()
            for k, box, score in zip(kps, boxes, scores):
                k = np.asarray(k, dtype=float)
                vis = np.where(k[:, 2] >= keypoint_conf, 2.0, 0.0)
                x0, y0, x1, y1 = (float(v) for v in box)
                bbox = (x0, y0, x1 - x0, y1 - y0)
                rows.append({
                    "source": "predicted",
                    "keypoints": [round(float(v), 2) for v in np.column_stack([k[:, :2], vis]).reshape(-1)],
                    "scores": [round(float(c), 4) for c in k[:, 2]],
                    "bbox_x": bbox[0], "bbox_y": bbox[1], "bbox_w": bbox[2], "bbox_h": bbox[3],
                    "area": poses.bbox_area_scale(bbox), "area_source": "bbox",
                    "num_keypoints": int((vis > 0).sum()), "iscrowd": 0, "score": float(score),
                })
        out.append(rows)
    return out


@job_kind("pseudo_label", title="Pseudo-label unlabelled real images", resumable=True)
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    ws = ctx.ws
    with ws.connect() as db:
        # images are labelled in id order; each chunk's persons commit with the checkpoint that counts
        # them, so a resumed job continues after the last committed image with exact totals
        tally: dict[str, Any] = {"done": 0, "persons": 0, "last_id": 0}
        batch_id = ctx.state.get("batch_id")
        if batch_id is None or store_batches.get(db, batch_id) is None:
            with write_transaction(db):
                ctx.hold(db)
                batch_id = store_batches.create(
                    db, kind="pseudo_label", format="predicted", dataset=None,
                    source=params["weights"], params={**params, "job_id": ctx.job_id})
                ctx.checkpoint(db, 0, None, "loading the teacher", {"batch_id": batch_id, **tally})
        else:
            tally.update({k: ctx.state[k] for k in tally if k in ctx.state})
        images = [im for im in store_images.unlabelled_real_images(db) if im["id"] > int(tally["last_id"])]
        if params.get("image_ids"):
            wanted = set(params["image_ids"])
            images = [im for im in images if im["id"] in wanted]
        done_before, n_persons = int(tally["done"]), int(tally["persons"])
        total = done_before + len(images)
        ctx.progress(done_before, total, f"{len(images)} images to label; loading the teacher",
                     force=True)
        model = load_teacher(params["weights"])
        device = config.resolve_device(params["device"])
        step = max(1, int(params["pseudo_label.batch_size"]))
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            paths = [str(media.image_path(ws.root, im["sha256"], im["ext"])) for im in chunk]
            per_image = predict_persons(
                model, paths, imgsz=int(params["pseudo_label.imgsz"]),
                conf=float(params["pseudo_label.conf"]), device=device,
                keypoint_conf=float(params["pseudo_label.keypoint_conf"]))
            done = done_before + start + len(chunk)
            with write_transaction(db):
                ctx.hold(db)        # from here to the commit no other process can take the job
                for im, rows in zip(chunk, per_image):
                    store_images.insert_persons(
                        db, ({**r, "image_id": im["id"], "batch_id": batch_id} for r in rows))
                    n_persons += len(rows)
                ctx.checkpoint(db, done, total, f"labelled {done}/{total} images, {n_persons} persons found",
                               {"batch_id": batch_id, "done": done, "persons": n_persons,
                                "last_id": chunk[-1]["id"]})
            ctx.progress(done, total, f"labelled {done}/{total} images, {n_persons} persons found")
        report = {"images": total, "persons": n_persons, "weights": params["weights"],
                  "device": device}
        with write_transaction(db):
            ctx.hold(db)
            store_batches.set_report(db, batch_id, report)
            store_events.log(db, "batch.pseudo_label", report, batch_id=batch_id)
        return {"batch_id": batch_id, **report}
