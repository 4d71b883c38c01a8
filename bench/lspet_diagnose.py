"""Why does fine-tuning on LSPET cost joint placement (PCK@0.2)? Measured on **val** only.

Compares a fine-tuned run with the untouched pretrained model on the val split of its manifest,
person by person (the annotated-person protocol's choice of detection: the most confident one on
the labelled person):

* per-joint PCK@0.2 and the mean error vector (prediction minus label, in torso lengths): a
  systematic shift means the model learned a different joint convention, not noise;
* left/right swaps against the label (a limb pair whose swapped assignment is closer by > 0.1
  torso lengths for both joints);
* detection: recall (a detection on the person), its confidence, and box IoU with the label's box;
* batch-norm statistics: the fine-tuned weights with the pretrained running means/variances put
  back, and the pretrained weights with the fine-tuned statistics (batch 8 on 100 people moves
  them: does that alone cost PCK?);
* where the weights moved: relative change per part (backbone, neck, box/class/keypoint branches);
* the convention alone: the untouched model's val predictions shifted by the median per-joint offset
  (in torso lengths) it makes on the run's **train** anchors — what learning LSP's joint placement,
  and nothing else, would be worth.

    python bench/lspet_diagnose.py --workspace ~/.cache/realcal/benchmark/lspet-recipe [--run ID] [--out DIR]

Prints the tables and writes ``diagnosis.json`` (and ``diagnosis.md`` with ``--out``).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _paths import offline  # noqa: E402

offline()

LIMB_JOINTS = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
PAIRS = (("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"), ("left_wrist", "right_wrist"),
         ("left_hip", "right_hip"), ("left_knee", "right_knee"), ("left_ankle", "right_ankle"))


def per_person(gt: dict, dets: list[dict]) -> list[dict]:
    """For each labelled person: the chosen detection's keypoints (or None), its score and box IoU."""
    import numpy as np

    from engine import poses
    from engine.train import protocols

    top = protocols.top_detections(gt, dets)
    out = []
    for a in gt["annotations"]:
        if a.get("iscrowd") or not a.get("num_keypoints"):
            continue
        g = poses.as_keypoints(a["keypoints"])
        d = top.get(a["id"])
        iou = float(poses.box_iou_matrix(np.array([a["bbox"]]), np.array([protocols.det_box(d)]))[0, 0]) if d else None
        out.append({"gt": g, "pred": poses.as_keypoints(d["keypoints"]) if d else None,
                    "score": d["score"] if d else None, "iou": iou, "torso": poses.torso_diameter(g)})
    return out


def summarise(people: list[dict]) -> dict:
    import numpy as np

    from engine import poses

    res: dict = {"persons": len(people), "recall": float(np.mean([p["pred"] is not None for p in people]))}
    found = [p for p in people if p["pred"] is not None]
    res["mean score"] = float(np.mean([p["score"] for p in found])) if found else None
    res["mean box IoU"] = float(np.mean([p["iou"] for p in found])) if found else None
    joints = {}
    for name in LIMB_JOINTS:
        j = poses.KP[name]
        ok, ok1, err = [], [], []
        for p in people:
            if p["gt"][j, 2] <= 0 or not np.isfinite(p["torso"]):
                continue
            if p["pred"] is None:
                ok.append(0.0)
                ok1.append(0.0)
                continue
            e = (p["pred"][j, :2] - p["gt"][j, :2]) / p["torso"]
            ok.append(float(np.hypot(*e) <= 0.2))
            ok1.append(float(np.hypot(*e) <= 0.1))
            err.append(e)
        err = np.array(err) if err else np.zeros((0, 2))
        # medians: a few people found upside down would dominate a mean
        joints[name] = {"PCK@0.2": float(np.mean(ok)) if ok else None, "PCK@0.1": float(np.mean(ok1)) if ok1 else None,
                        "median dx": float(np.median(err[:, 0])) if len(err) else None,
                        "median dy": float(np.median(err[:, 1])) if len(err) else None,
                        "median error": float(np.median(np.hypot(err[:, 0], err[:, 1]))) if len(err) else None}
    res["joints"] = joints
    swaps, pairs_scored = 0, 0
    for p in found:
        if not np.isfinite(p["torso"]):
            continue
        for a, b in PAIRS:
            ia, ib = poses.KP[a], poses.KP[b]
            if p["gt"][ia, 2] <= 0 or p["gt"][ib, 2] <= 0:
                continue
            pairs_scored += 1
            d = lambda i, k, p=p: float(np.hypot(*(p["pred"][i, :2] - p["gt"][k, :2]))) / p["torso"]
            if d(ia, ib) + 0.1 < d(ia, ia) and d(ib, ia) + 0.1 < d(ib, ib):
                swaps += 1
    res["left/right swaps (share of limb pairs)"] = swaps / pairs_scored if pairs_scored else None
    pcks = [v["PCK@0.2"] for v in joints.values() if v["PCK@0.2"] is not None]
    res["PCK@0.2 (12 limb joints)"] = float(np.mean(pcks)) if pcks else None
    return res


def weight_change(pre, ft) -> dict:
    """Relative L2 change of the weights per part of the network."""
    import numpy as np

    sp, sf = pre.state_dict(), ft.state_dict()
    n_layers = max(int(k.split(".")[1]) for k in sp if k.startswith("model.")) + 1
    parts: dict[str, list] = {}
    for k, w in sp.items():
        if not k.startswith("model.") or not w.is_floating_point() or "running" in k or "num_batches" in k:
            continue
        layer = int(k.split(".")[1])
        if layer == n_layers - 1:
            branch = k.split(".")[2]
            part = {"cv2": "head: box branch", "cv3": "head: class branch",
                    "cv4": "head: keypoint branch"}.get(branch, f"head: {branch}")
        else:
            part = "backbone (layers 0-9)" if layer <= 9 else "neck (layers 10-22)"
        parts.setdefault(part, []).append((float((sf[k].float() - w.float()).pow(2).sum()),
                                           float(w.float().pow(2).sum())))
    return {p: float(np.sqrt(sum(a for a, _ in v) / max(sum(b for _, b in v), 1e-12)))
            for p, v in sorted(parts.items())}


def swap_bn_stats(target, source):
    """A copy of ``target`` with ``source``'s batch-norm running statistics."""
    import torch

    out = copy.deepcopy(target)
    src = dict(source.named_modules())
    for name, m in out.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d) and name in src:
            m.running_mean.copy_(src[name].running_mean)
            m.running_var.copy_(src[name].running_var)
    return out


def main() -> None:
    import numpy as np
    from ultralytics import YOLO

    from engine import assets, poses
    from engine import config as rc_config
    from engine.train.evaluate import evaluate
    from engine.train.train import split_items
    from engine.workspace import Workspace
    from store import training as store_training

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--run", type=int, help="training run id (default: the newest finished run)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, help="also write diagnosis.md here")
    args = ap.parse_args()
    ws = Workspace.open(args.workspace)
    with ws.connect() as db:
        runs = [r for r in store_training.list_runs(db) if r["status"] == "done"]
        run = next((r for r in runs if r["id"] == args.run), None) if args.run else (runs[0] if runs else None)
        if run is None:
            sys.exit("no such finished training run")
        m = store_training.manifest(db, run["manifest_id"])
        val = split_items(db, m, "val")
    dev = rc_config.resolve_device(args.device)
    imgsz = int(run["config"]["imgsz"])
    pre = YOLO(str(assets.resolve("yolo11n-pose")), task="pose")
    ft = YOLO(run["weights"], task="pose")
    variants = {"zero-shot (pretrained)": pre, f"fine-tuned (run {run['id']})": ft}
    bn_ft = YOLO(run["weights"], task="pose")
    bn_ft.model = swap_bn_stats(ft.model, pre.model)
    variants["fine-tuned + pretrained BN statistics"] = bn_ft
    bn_pre = YOLO(str(assets.resolve("yolo11n-pose")), task="pose")
    bn_pre.model = swap_bn_stats(pre.model, ft.model)
    variants["pretrained + fine-tuned BN statistics"] = bn_pre
    report: dict = {"run": run["id"], "manifest": m["hash"][:12], "val images": len(val[0]), "variants": {}}
    for name, model in variants.items():
        metrics, _ = evaluate(model, ws, *val, imgsz=imgsz, device=dev, protocol="annotated_person")
        coco = metrics.pop("_coco")
        s = summarise(per_person(coco["gt"], coco["dets"]))
        s.update({"AP50": metrics["AP50"], "AP": metrics["AP"], "PCK@0.2": metrics["PCK@0.2"],
                  "mean OKS": metrics["mean OKS"]})
        report["variants"][name] = s
        print(f"{name:<40} AP50 {s['AP50']:.3f}  AP {s['AP']:.3f}  PCK@0.2 {s['PCK@0.2']:.3f}  "
              f"recall {s['recall']:.3f}  box IoU {s['mean box IoU'] or 0:.3f}  "
              f"L/R swaps {s['left/right swaps (share of limb pairs)'] or 0:.3f}", flush=True)
    report["weight change (relative L2)"] = weight_change(pre.model, ft.model)
    # the convention alone: median offsets of the untouched model on the train anchors, applied on val
    with ws.connect() as db:
        train = split_items(db, m, "train")
    tm, _ = evaluate(pre, ws, *train, imgsz=imgsz, device=dev, protocol="annotated_person")
    offsets = {}
    for name in LIMB_JOINTS:
        j = poses.KP[name]
        errs = [(p["pred"][j, :2] - p["gt"][j, :2]) / p["torso"]
                for p in per_person(tm["_coco"]["gt"], tm["_coco"]["dets"])
                if p["pred"] is not None and p["gt"][j, 2] > 0 and np.isfinite(p["torso"])]
        offsets[j] = np.median(np.array(errs), axis=0) if errs else np.zeros(2)
    vm, _ = evaluate(pre, ws, *val, imgsz=imgsz, device=dev, protocol="annotated_person")
    shifted = per_person(vm["_coco"]["gt"], vm["_coco"]["dets"])
    for p in shifted:
        if p["pred"] is not None and np.isfinite(p["torso"]):
            p["pred"] = p["pred"].copy()
            for j, o in offsets.items():
                p["pred"][j, :2] -= o * p["torso"]
    s = summarise(shifted)
    report["zero-shot shifted by its train-anchor median offsets"] = s
    print(f"{'zero-shot shifted by train median offsets':<40} "
          f"PCK@0.2 (12 limb joints) {s['PCK@0.2 (12 limb joints)']:.3f} "
          f"vs {report['variants'][list(report['variants'])[0]]['PCK@0.2 (12 limb joints)']:.3f} unshifted "
          f"(the gold label's torso is used to scale the shift: an upper bound on a learned offset)", flush=True)
    names = list(report["variants"])
    zs, tuned = report["variants"][names[0]], report["variants"][names[1]]
    lines = ["| joint | PCK@0.2 zero-shot / fine-tuned | PCK@0.1 zero-shot / fine-tuned | median error zero-shot / "
             "fine-tuned | median offset zero-shot (dx, dy) | median offset fine-tuned (dx, dy) |",
             "|---|---|---|---|---|---|"]
    for j in LIMB_JOINTS:
        a, b = zs["joints"][j], tuned["joints"][j]
        f = lambda v: "n/a" if v is None else f"{v:+.3f}"  # noqa: E731
        lines.append(f"| {j} | {a['PCK@0.2']:.3f} / {b['PCK@0.2']:.3f} | {a['PCK@0.1']:.3f} / {b['PCK@0.1']:.3f} | "
                     f"{a['median error']:.3f} / {b['median error']:.3f} | "
                     f"({f(a['median dx'])}, {f(a['median dy'])}) | "
                     f"({f(b['median dx'])}, {f(b['median dy'])}) |")
    print("\n".join(lines))
    print("weight change:", json.dumps(report["weight change (relative L2)"], indent=1))
    (ws.root / f"diagnosis-run{run['id']}.json").write_text(json.dumps(report, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        md = [f"# Diagnosis of run {run['id']} on val ({len(val[0])} images, annotated-person protocol)", "",
              "| variant | AP50 | AP | PCK@0.2 | recall | mean score | box IoU | L/R swaps |",
              "|---|---|---|---|---|---|---|---|"]
        for name, s in report["variants"].items():
            md.append(f"| {name} | {s['AP50']:.3f} | {s['AP']:.3f} | {s['PCK@0.2']:.3f} | {s['recall']:.3f} | "
                      f"{s['mean score']:.3f} | {s['mean box IoU']:.3f} | "
                      f"{s['left/right swaps (share of limb pairs)']:.3f} |")
        md += ["", "Per joint (errors in torso lengths, x right, y down):", ""] + lines
        sh = report["zero-shot shifted by its train-anchor median offsets"]
        md += ["", f"Zero-shot shifted by the median per-joint offsets it makes on the train anchors: "
               f"PCK@0.2 over the 12 limb joints {sh['PCK@0.2 (12 limb joints)']:.3f} (unshifted "
               f"{report['variants'][names[0]]['PCK@0.2 (12 limb joints)']:.3f}, fine-tuned "
               f"{report['variants'][names[1]]['PCK@0.2 (12 limb joints)']:.3f})."]
        md += ["", "Relative weight change per part: " + ", ".join(
            f"{k} {v:.4f}" for k, v in report["weight change (relative L2)"].items()), ""]
        (args.out / f"diagnosis-run{run['id']}.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
