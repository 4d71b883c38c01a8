"""Small datasets made on the fly for the import tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from engine import poses


def write_image(path: Path, size=(64, 48), seed=0, fmt="JPEG") -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, fmt)
    return path


def person_keypoints(seed=0, w=64, h=48) -> list[float]:
    rng = np.random.default_rng(seed)
    k = np.zeros((17, 3))
    k[:, 0] = rng.uniform(5, w - 5, 17)
    k[:, 1] = rng.uniform(5, h - 5, 17)
    k[:, 2] = 2
    k[0] = 0
    return [round(v, 2) for v in k.reshape(-1).tolist()]


def make_coco(root: Path, n=3, names=None, keypoints=None, file_names=None, seed=0) -> Path:
    """A COCO keypoints JSON with ``n`` images next to it, one person each."""
    root.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        fn = file_names[i] if file_names else f"img{i}.jpg"
        write_image(root / fn, seed=seed + i)
        images.append({"id": i + 1, "file_name": fn, "width": 64, "height": 48})
        kps = keypoints if keypoints is not None else person_keypoints(i)
        anns.append({"id": 100 + i, "image_id": i + 1, "category_id": 1, "keypoints": kps,
                     "num_keypoints": sum(1 for v in kps[2::3] if v > 0),
                     "bbox": [2, 2, 60, 44], "area": 1000.0, "iscrowd": 0,
                     "segmentation": [[2, 2, 62, 2, 62, 46, 2, 46]]})
    cat = poses.coco_category()
    if names is not None:
        cat["keypoints"] = names
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [cat]}))
    return path


def make_yolo(root: Path, n=2, lines=None, kpt_shape=(17, 3), extra_yaml="") -> Path:
    for i in range(n):
        split = "train" if i % 2 == 0 else "val"
        write_image(root / "images" / split / f"im{i}.jpg", seed=10 + i)
        lbl = root / "labels" / split / f"im{i}.txt"
        lbl.parent.mkdir(parents=True, exist_ok=True)
        if lines is not None:
            lbl.write_text(lines)
        else:
            k = np.asarray(person_keypoints(i)).reshape(17, 3)
            vals = [0.5, 0.5, 0.8, 0.8] + [v for x, y, vis in k for v in (x / 64, y / 48, vis)]
            lbl.write_text("0 " + " ".join(f"{v:.6f}" for v in vals) + "\n")
    (root / "data.yaml").write_text(
        f"path: .\ntrain: images/train\nval: images/val\nkpt_shape: [{kpt_shape[0]}, {kpt_shape[1]}]\n"
        f"flip_idx: {list(poses.FLIP_IDX)}\nnames:\n  0: person\n{extra_yaml}")
    return root / "data.yaml"


def queued_synthetic_workspace(ws, tmp_path: Path, n: int, overlap_every: int = 0):
    """Import ``n`` images as synthetic with one conditioning person each and queue them for
    review (every ``overlap_every``-th item gets two slots)."""
    from engine.io import parse
    from engine.io.common import run_import
    from store import images as store_images
    from store import review as store_review

    run_import(ws, parse("coco", make_coco(tmp_path / "queued", n=n)), split="train", kind="synthetic")
    with ws.connect() as db:
        db.execute("UPDATE persons SET source = 'conditioning'")
        db.conn.commit()
        with db.conn:
            store_review.add_items(db, [
                {"image_id": im["id"], "rank": i + 1,
                 "slots": 2 if overlap_every and i % overlap_every == 0 else 1}
                for i, im in enumerate(store_images.list_images(db))])
    return ws
