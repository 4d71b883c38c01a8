"""The same stored detections scored three ways: what the evaluation protocol does to each arm.

For every finished run of an experiment (its test detections are kept in ``test_eval.json.gz``):

* **old rule** (before protocols): COCO OKS-AP with the *teacher's* confident detections of
  unlabelled people added as ignore regions — the teacher is the zero-shot arm's own model — and
  per-person PCK@0.2 from the best-OKS detection among all of them;
* **coco**: plain pycocotools OKS-AP, every detection counts;
* **annotated_person**: the protocol for one-person-per-image data (``engine.train.protocols``).

    python bench/protocol_compare.py --workspace ~/.cache/realcal/benchmark/lspet-lowdata-quick [--experiment NAME]

Prints a table (means over seeds) and writes it as JSON beside the workspace's database.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _paths import offline  # noqa: E402

offline()


def old_pck(gt: dict, dets: list[dict]) -> float:
    """Per-person PCK@0.2 the old way: the best-OKS detection among all of the image's detections."""
    import numpy as np

    from engine import poses

    by_img: dict[int, list] = {}
    for d in dets:
        by_img.setdefault(d["image_id"], []).append(poses.as_keypoints(d["keypoints"]))
    vals = []
    for a in gt["annotations"]:
        if a.get("iscrowd") or not a.get("num_keypoints"):
            continue
        g = poses.as_keypoints(a["keypoints"])
        kps = by_img.get(a["image_id"])
        pred = None
        if kps:
            o = poses.oks_matrix(g[None], np.stack(kps), [a["area"]])[0]
            pred = kps[int(np.nanargmax(o))]
        pj = poses.pck_per_joint(g, pred, 0.2)
        if np.isfinite(pj).any():
            vals.append(float(np.nanmean(pj)))
    return float(np.mean(vals)) if vals else float("nan")


def main() -> None:
    import numpy as np

    from engine import media, stats
    from engine.train import protocols
    from engine.train.evaluate import unannotated_regions
    from engine.train.train import load_coco
    from engine.workspace import Workspace
    from store import images as store_images
    from store import training as store_training

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--experiment", help="default: the latest")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    ws = Workspace.open(args.workspace)
    with ws.connect() as db:
        exp = (store_training.experiment_by_name(db, args.experiment) if args.experiment
               else store_training.latest_experiment(db))
        if exp is None:
            sys.exit("no such experiment")
        runs = [r for r in store_training.experiment_runs(db, exp["id"]) if r["status"] == "done"]
    out: dict[str, dict[str, list[float]]] = {}
    regions = None
    for r in runs:
        coco = load_coco(r["result"].get("test_eval"))
        if not coco:
            continue
        gt, dets = coco["gt"], coco["dets"]
        gt = {**gt, "annotations": [a for a in gt["annotations"] if a["id"] < 10 ** 9]}  # drop stored ignore boxes
        if regions is None:
            ids = [im["id"] for im in gt["images"]]
            with ws.connect() as db:
                images = store_images.images_with_ids(db, ids)
                persons = store_images.persons_for_images(db, ids)
            wanted = {a["id"] for a in gt["annotations"]}
            persons = {k: [p for p in v if p["id"] in wanted] for k, v in persons.items()}
            regions = unannotated_regions(ws, images, persons, device=args.device)
            _ = media  # the teacher reads the stored images
        old = stats.ap_from_eval(stats.coco_eval(protocols.with_ignore_regions(gt, regions), dets))
        plain = stats.ap_from_eval(stats.coco_eval(gt, dets))
        new, _ = protocols.score(gt, dets, "annotated_person")
        row = out.setdefault(r["arm"], {})
        for k, v in (("old AP50", old[1]), ("old PCK (best of all)", old_pck(gt, dets)), ("coco AP50", plain[1]),
                     ("annotated_person AP50", new["AP50"]), ("annotated_person PCK@0.2", new["PCK@0.2"]),
                     ("old AP", old[0]), ("annotated_person AP", new["AP"])):
            row.setdefault(k, []).append(v)
    table = [{"arm": arm, "seeds": len(v["old AP50"]), **{k: round(float(np.mean(x)), 4) for k, x in v.items()}}
             for arm, v in out.items()]
    keys = list(table[0]) if table else []
    print(" | ".join(keys))
    for t in table:
        print(" | ".join(str(t[k]) for k in keys))
    (ws.root / f"protocol_compare-{exp['name']}.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
