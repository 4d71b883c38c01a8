"""Curation at 1,000, 5,000 and 10,000 synthetic images: wall time and the worker's peak memory.

    .venv/bin/python bench/curate_scale.py [--sizes 1000 5000 10000] [--keep DIR]

Each size gets a fresh workspace built by a separate process: 300 LSPET images as real train anchors
and N other LSPET images (the ones ../shared holds; beyond them mirrored and rescaled copies, each a new
image with its label transformed the same way) imported as synthetic images whose label is the
conditioning pose. Then a fresh process runs the ``curate`` job with every default (stages, teacher size,
runtime, flip TTA, selection) as the worker would, and reports its wall time, the images/s and its peak
RSS (the whole process: Python, models, images, embeddings). Prints one row per size, the funnel, and
the load average. Needs ../shared/data/lspet.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import engine  # noqa: E402,F401  (configures the offline environment)

LSPET = REPO.parent / "shared" / "data" / "lspet"
ANCHORS = 300


def build(root: Path, n: int) -> dict:
    import cv2

    from engine import poses
    from engine.io import lsp
    from engine.io.common import ImageRecord, ParsedDataset, PersonRecord, run_import
    from engine.workspace import Workspace

    parsed = lsp.parse(LSPET)
    recs = [r for r in parsed.records if r.path is not None and r.persons]
    anchors, pool = recs[:ANCHORS], recs[ANCHORS:]
    ws = Workspace.init(root / "ws")
    t0 = time.perf_counter()
    run_import(ws, ParsedDataset("lsp", "bench", "anchors", anchors), split="train", kind="real")
    synthetic = []
    variants = [(False, 1.0), (True, 1.0), (False, 0.8), (True, 0.8), (False, 0.65), (True, 0.65)]
    for i in range(n):
        rec = pool[i % len(pool)]
        mirror, scale = variants[i // len(pool)]
        k = np.asarray(rec.persons[0].keypoints, dtype=float).copy()
        if not mirror and scale == 1.0:
            synthetic.append(ImageRecord(rec.file_name, rec.path,
                                         [PersonRecord(keypoints=k, source="conditioning")]))
            continue
        img = cv2.imread(str(rec.path))
        if mirror:
            img = img[:, ::-1]
            k = poses.flip_keypoints(k, img.shape[1])
        if scale != 1.0:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            k[:, :2] *= scale
        k[k[:, 2] == 0, :2] = 0.0
        out = root / "src" / f"{i:06d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, 92])
        synthetic.append(ImageRecord(out.name, out, [PersonRecord(keypoints=k, source="conditioning")]))
    report = run_import(ws, ParsedDataset("images", "bench", "synthetic", synthetic), split="train",
                        kind="synthetic")
    return {"workspace": str(ws.root), "build_s": round(time.perf_counter() - t0, 1),
            "synthetic": report.images, "skipped": len(report.skipped)}


def curate(root: str) -> dict:
    from engine import env, jobs
    from engine.curate.run import resolve_params
    from engine.workspace import Workspace

    env.tune_malloc()                       # as the worker does
    ws = Workspace.open(Path(root))
    params = resolve_params(ws)
    t0 = time.perf_counter()
    final = jobs.run_foreground(ws, "curate", params, lambda *a, **k: None)
    seconds = time.perf_counter() - t0
    result = final.get("result") or {}
    return {"seconds": round(seconds, 1), "funnel": result.get("funnel"),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "teacher_imgsz": params["teacher_imgsz"], "backend": params["backend"]}


def child(args: list[str]) -> dict:
    from _paths import run_script

    return run_script(__file__, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--keep", help="build the workspaces under this folder and keep them")
    ap.add_argument("--build", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--curate", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        print(json.dumps(build(Path(args.build[0]), int(args.build[1]))))
        return
    if args.curate:
        print(json.dumps(curate(args.curate)))
        return
    if not LSPET.exists():
        raise SystemExit(f"{LSPET} is absent: this benchmark needs the LSPET images")
    print("synthetic images | build s | curate s | images/s | worker peak RSS MB | kept by the funnel")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
            root = Path(tmp) if not args.keep else Path(args.keep) / f"n{n}"
            built = child(["--build", str(root), str(n)])
            r = child(["--curate", built["workspace"]])
            kept = r["funnel"][-1]["passed"] if r["funnel"] else 0
            print(f"{n:>16} | {built['build_s']:>7} | {r['seconds']:>8} | {n / r['seconds']:>8.1f} | "
                  f"{r['peak_rss_mb']:>18} | {kept} (teacher {r['teacher_imgsz']} px, {r['backend']})", flush=True)
            print("    funnel: " + "; ".join(f"{f['stage']} {f['passed']}/{f['entered']}" for f in r["funnel"] or []),
                  flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
