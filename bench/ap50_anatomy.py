"""Where an arm's AP50 comes from: finding the labelled person versus ranking its detections (val by default).

    .venv/bin/python bench/ap50_anatomy.py [--workspace DIR] [--experiment NAME] [--split val|test] [--out FILE]

OKS-AP50 under the annotated-person protocol falls for two different reasons: fewer labelled people get a
detection whose keypoints reach OKS 0.5 (placement), or more scored detections that do not (a second detection
on an already-found person, or a confident one with misplaced joints) rank above the good ones (ranking). Per arm
(means over the finished seeds), from each run's stored evaluation, with COCO's greedy matching by score:

- **found**: labelled people matched by a detection at OKS >= 0.5 (what recall AP50 can reach);
- **top good**: people whose most confident detection reaches OKS 0.5 (what PCK-like per-person scores read);
- **scored per person**: detections attributed to a labelled person (the ones AP counts);
- **false positives per person**, split into duplicates (OKS >= 0.5 with a person already matched) and misplaced
  (OKS < 0.5);
- **score AUC**: the chance that a true positive outranks a false positive (1 = every good detection first);
- the stored AP50 beside them.

Val is the default: this is a diagnosis, and val is where a recipe may be looked at; ``--split test`` reads the
held-out images for the record only.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _paths import bench_dir, offline, shown_path  # noqa: E402

offline()

from engine import poses  # noqa: E402
from engine.errors import RealcalError  # noqa: E402
from engine.train import protocols  # noqa: E402
from engine.workspace import Workspace  # noqa: E402
from store import training as store_training  # noqa: E402


def anatomy(coco: dict[str, Any]) -> dict[str, float]:
    """The figures above for one stored evaluation (``{"gt", "dets", "protocol"}``)."""
    gt, dets = coco["gt"], coco["dets"]
    people = {a["id"]: a for a in gt["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0}
    owner = protocols.attribute(gt, dets)
    scored = [(d, o) for d, o in zip(dets, owner) if o is not None] \
        if coco.get("protocol") == "annotated_person" else [(d, o) for d, o in zip(dets, owner)]
    by_image: dict[int, list[dict]] = {}
    for d, _ in scored:
        by_image.setdefault(d["image_id"], []).append(d)
    gts: dict[int, list[dict]] = {}
    for a in people.values():
        gts.setdefault(a["image_id"], []).append(a)
    tp_scores, fp_scores = [], []
    dup = misplaced = 0
    found: set[int] = set()
    for image_id, ps in gts.items():
        ds = sorted(by_image.get(image_id, []), key=lambda d: -d["score"])
        if not ds:
            continue
        o = np.nan_to_num(poses.oks_matrix(np.stack([poses.as_keypoints(p["keypoints"]) for p in ps]),
                                           np.stack([poses.as_keypoints(d["keypoints"]) for d in ds]),
                                           [p["area"] for p in ps]), nan=0.0)              # (P, D)
        matched: set[int] = set()
        for j, d in enumerate(ds):
            cand = [i for i in np.argsort(-o[:, j]) if o[i, j] >= 0.5 and i not in matched]
            if cand:
                matched.add(int(cand[0]))
                found.add(ps[int(cand[0])]["id"])
                tp_scores.append(d["score"])
            else:
                fp_scores.append(d["score"])
                dup += int((o[:, j] >= 0.5).any())
                misplaced += int(not (o[:, j] >= 0.5).any())
    top_good = sum(1 for pid, d in protocols.top_detections(gt, dets).items() if pid in people and np.nan_to_num(
        poses.oks(poses.as_keypoints(people[pid]["keypoints"]), poses.as_keypoints(d["keypoints"]),
                  people[pid]["area"])) >= 0.5)
    n = max(1, len(people))
    tp, fp = np.array(tp_scores), np.array(fp_scores)
    auc = float((tp[:, None] > fp[None, :]).mean() + 0.5 * (tp[:, None] == fp[None, :]).mean()) \
        if len(tp) and len(fp) else float("nan")
    return {"people": len(people), "found": len(found) / n, "top good": top_good / n,
            "scored per person": len(scored) / n, "false positives per person": len(fp) / n,
            "duplicates per person": dup / n, "misplaced per person": misplaced / n, "score AUC": auc}


def run(ws: Workspace, name: str, split: str) -> list[dict[str, Any]]:
    with ws.connect() as db:
        exp = store_training.experiment_by_name(db, name)
        if exp is None:
            raise RealcalError(f"no experiment named {name!r} in {ws.root}")
        runs = [r for r in store_training.experiment_runs(db, exp["id"]) if r["status"] == "done" and r.get("result")]
    order = [a["name"] for a in exp["config"]["arms"]]
    rows: dict[str, list[dict[str, float]]] = {}
    ap50: dict[str, list[float]] = {}
    for r in sorted(runs, key=lambda r: (order.index(r["arm"]) if r["arm"] in order else 99, r["seed"])):
        path = r["result"].get(f"{split}_eval")
        if not path or not Path(path).exists():
            continue
        with gzip.open(path, "rt") as f:
            rows.setdefault(r["arm"], []).append(anatomy(json.load(f)))
        ap50.setdefault(r["arm"], []).append(float((r["result"].get(split) or {}).get("AP50") or float("nan")))
    out = []
    for arm, xs in rows.items():
        row: dict[str, Any] = {"arm": arm, "seeds": len(xs), "AP50": float(np.nanmean(ap50[arm]))}
        for k in xs[0]:
            if k != "people":
                row[k] = float(np.nanmean([x[k] for x in xs]))
        out.append(row)
    return out


def markdown(rows: list[dict[str, Any]], name: str, split: str) -> str:
    keys = ["AP50", "found", "top good", "scored per person", "false positives per person", "duplicates per person",
            "misplaced per person", "score AUC"]
    md = [f"# AP50 anatomy: {name} ({split})", "", __doc__.split("\n\n", 2)[2].strip(), "",
          "| arm | seeds | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for r in rows:
        md.append(f"| {r['arm']} | {r['seeds']} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace")
    ap.add_argument("--experiment", default="lspet-loop-150")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--out", help="also write the table here (markdown)")
    args = ap.parse_args()
    root = Path(args.workspace) if args.workspace else bench_dir() / args.experiment
    if not (root / "realcal.db").exists():
        sys.exit(f"no workspace at {shown_path(root, ROOT)}")
    try:
        text = markdown(run(Workspace.open(root), args.experiment, args.split), args.experiment, args.split)
    except RealcalError as e:
        sys.exit(str(e))
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
