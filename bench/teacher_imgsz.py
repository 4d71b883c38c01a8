"""Does curation decide the same with the teacher at 320 px as at 640 px? (and how much faster is it)

    .venv/bin/python bench/teacher_imgsz.py [WORKSPACE] [--sample 1000] [--sizes 640 320]

Reads a workspace with synthetic images (default: the LSPET benchmark's), never writes to it. For each
teacher size: pose consistency calibrated on the train anchors as curation does (10th percentile), run on
a random sample of the synthetic images, then the uncertainty score (with flip TTA) of the survivors.
Prints the threshold, the pass rate, the agreement of pass/fail decisions with the first size (raw and
Cohen's kappa), how well the teacher finds the annotated pose on the real anchors at each size (its
OKS against the ground truth: the better checker is the one closer to the truth), the rank
correlation of the OKS scores and of the uncertainty of images that pass at both sizes, the overlap
of the 200 most uncertain, and the images/s.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402,F401  (configures the offline environment)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    po = float(np.mean(a == b))
    pe = float(np.mean(a) * np.mean(b) + (1 - np.mean(a)) * (1 - np.mean(b)))
    return (po - pe) / (1 - pe) if pe < 1 else 1.0


def main() -> None:
    from engine import assets, env
    from engine.curate.base import StageContext
    from engine.curate.pose_consistency import PoseConsistencyStage
    from engine.curate.run import _with_persons, load_items
    from engine.curate.select import uncertainty
    from engine.curate.teacher import Teacher
    from engine.workspace import Workspace
    from store import images as store_images

    ap = argparse.ArgumentParser()
    ap.add_argument("workspace", nargs="?", default=str(env.cache_dir() / "benchmark" / "lspet-lowdata-300"))
    ap.add_argument("--sample", type=int, default=1000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[640, 320])
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args()
    env.tune_malloc()
    ws = Workspace.open(Path(args.workspace))
    with ws.connect() as db:
        items = load_items(db, None)
        real_train = _with_persons(db, [r for r in store_images.list_images(db, kinds=["real"])
                                        if r["split"] == "train"])
    rng = np.random.default_rng(0)
    items = [items[i] for i in sorted(rng.choice(len(items), min(args.sample, len(items)), replace=False))]
    print(f"load average {os.getloadavg()[0]:.2f}; {len(items)} synthetic images sampled, "
          f"{len(real_train)} train anchors; {ws.root}")
    weights = str(assets.resolve("yolo11n-pose"))
    results = {}
    for size in args.sizes:
        teacher = Teacher(weights, "cpu", size, backend=args.backend)
        teacher.setup()
        ctx = StageContext(ws=ws, db=None, teacher=teacher, real_train=real_train)
        stage = PoseConsistencyStage(PoseConsistencyStage.Config())
        t0 = time.perf_counter()
        stage.calibrate(ctx)
        rows = stage.run(ctx, items)
        passed = [it for it, r in zip(items, rows) if r["status"] == "pass"]
        flipped = ctx.predict(passed, flip=True)
        preds = ctx.cache["teacher_predictions"]
        u = {it["id"]: uncertainty(it["persons"], preds[it["id"]], f, it["width"])["value"]
             for it, f in zip(passed, flipped)}
        seconds = time.perf_counter() - t0
        n_images = len(real_train) + len(items) + len(passed)
        results[size] = {"cutoff": stage.cutoff, "pass": np.array([r["status"] == "pass" for r in rows]),
                         "oks": np.array([r["value"] if r["value"] is not None else 0.0 for r in rows]), "u": u}
        q = stage.calibration["oks"]["real_quantiles"]
        print(f"teacher {size} px ({teacher.runtime}): on the train anchors its OKS against the ground truth has "
              f"median {q[50]:.3f} (quartiles {q[25]:.3f}-{q[75]:.3f}); threshold OKS {stage.cutoff:.3f}, "
              f"{len(passed)}/{len(items)} pass ({100 * len(passed) / len(items):.1f}%), "
              f"{seconds:.0f} s for {n_images} teacher passes = {n_images / seconds:.1f} images/s", flush=True)
    first = args.sizes[0]
    for size in args.sizes[1:]:
        a, b = results[first], results[size]
        both = sorted(set(a["u"]) & set(b["u"]))
        ua, ub = np.array([a["u"][i] for i in both]), np.array([b["u"][i] for i in both])
        top = 200
        top_a = set(np.array(both)[np.argsort(-ua)[:top]])
        top_b = set(np.array(both)[np.argsort(-ub)[:top]])
        print(f"{size} vs {first}: pass/fail agree on {100 * np.mean(a['pass'] == b['pass']):.1f}% "
              f"(kappa {kappa(a['pass'], b['pass']):.3f}; pass at {first} only: {int(np.sum(a['pass'] & ~b['pass']))}, "
              f"at {size} only: {int(np.sum(~a['pass'] & b['pass']))}); OKS rank correlation "
              f"{spearman(a['oks'], b['oks']):.3f}; uncertainty rank correlation on the {len(both)} passing both "
              f"{spearman(ua, ub):.3f}; top-{top} most uncertain overlap {len(top_a & top_b)}/{top}")


if __name__ == "__main__":
    main()
