"""Evaluation on labelled real images: COCO OKS AP/AP50/AP75 (pycocotools), per-person OKS and PCK@0.2.

How detections are scored is an *evaluation protocol* (``engine.train.protocols``): ``coco`` for
fully-labelled data, ``annotated_person`` for data that labels one person per image (LSP/LSPET).
No model decides what is ignored: the rule reads only the labels and the detections being scored,
so the untouched pretrained model and every fine-tuned arm are treated alike.

``unannotated_regions`` (people the pretrained teacher finds that nobody labelled) is used for
*training* only: with ``mask_unannotated`` those regions are filled with the image's mean colour
in the exported real train images, so the model is never taught that a visible person is
background. It plays no part in any score.
"""
from __future__ import annotations

from typing import Any

from engine import media, poses
from engine.errors import RealcalError


def unannotated_regions(ws, images: list[dict], persons: dict[int, list[dict]], *, device: str,
                        conf: float = 0.5, iou_max: float = 0.3) -> dict[int, list[list[float]]]:
    """Boxes of people the pretrained teacher finds that no annotation covers, per image.

    The teacher's boxes are cached per image content under the workspace's ``cache/`` folder. Every image is
    letterboxed square (``Teacher(square=True)``): otherwise an image predicted alone, or in a batch of one
    shape, is padded differently than among others, and its boxes, so the masks a run trains with, would depend
    on which images the workspace happened to have cached before (the same (arm, seed) in two workspaces could
    differ). For images of mixed shapes the boxes are the ones batched prediction always gave.
    """
    import json
    import os

    from engine import assets
    from engine.curate.teacher import Teacher

    # by image content ("sq": square letterbox; the cache before it could hold a history-dependent entry)
    cache = ws.root / "cache" / f"unannotated-sq-c{conf:g}-iou{iou_max:g}.json"
    known: dict[str, list] = json.loads(cache.read_text()) if cache.exists() else {}
    todo = [im for im in images if im["sha256"] not in known]
    if todo:
        import cv2

        # PyTorch whatever inference.backend says: what a run trains on must not depend on the inference runtime
        teacher = Teacher(str(assets.resolve("yolo11n-pose")), device, conf=conf, backend="torch", square=True)
        for start in range(0, len(todo), 16):
            chunk = todo[start:start + 16]
            rgb = []
            for im in chunk:
                bgr = cv2.imread(str(media.image_path(ws.root, im["sha256"], im["ext"])))
                if bgr is None:
                    raise RealcalError(f"cannot read image {im['id']}")
                rgb.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
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
        out[im["id"]] = [b for b in known[im["sha256"]] if bool((poses.box_iou_matrix([b], annotated) < iou_max).all())]
    return out


def evaluate(model, ws, images: list[dict], persons: dict[int, list[dict]], *, imgsz: int, device: str,
             protocol: str, conf: float = 0.001) -> tuple[dict[str, Any], list[dict]]:
    """Run ``model`` on the images and score it under ``protocol`` (``coco``, ``annotated_person`` or
    ``auto``: by the images' import format). Returns the metrics (with ``_coco``: the ground truth
    and every detection, kept for paired intervals and re-scoring; dropped before storing) and the
    per-person rows."""
    from engine.train import protocols

    gt = {"images": [], "annotations": [], "categories": [poses.coco_category()]}
    dets = []
    for im in images:
        gt["images"].append({"id": im["id"], "width": im["width"], "height": im["height"]})
        for p in persons[im["id"]]:
            gt["annotations"].append({"id": p["id"], "image_id": im["id"], "category_id": 1,
                                      "keypoints": p["keypoints"], "num_keypoints": p["num_keypoints"],
                                      "bbox": [p["bbox_x"], p["bbox_y"], p["bbox_w"], p["bbox_h"]],
                                      "area": p["area"], "iscrowd": p["iscrowd"]})
    for start in range(0, len(images), 16):
        chunk = images[start:start + 16]
        paths = [str(media.image_path(ws.root, im["sha256"], im["ext"])) for im in chunk]
        for im, r in zip(chunk, model.predict(paths, imgsz=imgsz, conf=conf, device=device, verbose=False)):
            n = len(r.boxes) if r.boxes is not None else 0
            if r.keypoints is None or not n:
                continue
            kps = r.keypoints.data.cpu().numpy()
            scores = r.boxes.conf.cpu().numpy()
            boxes = r.boxes.xyxy.cpu().numpy()
            for k, s, b in zip(kps, scores, boxes):
                dets.append({"image_id": im["id"], "category_id": 1, "score": float(s),
                             "keypoints": [float(v) for v in k.reshape(-1)],
                             "box": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    if protocol == "auto":
        protocol = protocols.for_formats(ws_formats(ws, [im["id"] for im in images]))
    metrics, rows = protocols.score(gt, dets, protocol)
    metrics["_coco"] = {"gt": gt, "dets": dets, "protocol": protocol}
    return metrics, rows


def ws_formats(ws, image_ids: list[int]) -> set[str]:
    """The import formats (batch formats) of these images."""
    from store import images as store_images

    with ws.connect() as db:
        return store_images.batch_formats(db, image_ids)
