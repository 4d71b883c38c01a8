"""The app with a large workspace: the server time of the Data and Review pages and the memory of the
process serving them, at 1,000, 5,000 and 10,000 images.

    .venv/bin/python bench/app_scale.py [--sizes 1000 5000 10000] [--runs 5]

For each size a fresh process builds a workspace (small synthetic images, one conditioning person each,
all queued for review, a curation run with two stages' scores for every image), then runs each page
through Streamlit's AppTest (the page script as the server runs it, no browser): the first render and
the median of ``--runs`` reruns, and the process's peak RSS (Python, Streamlit, the page and its data).
Prints one row per size and the load average.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import engine  # noqa: E402,F401  (configures the offline environment)


def build(root: Path, n: int, double_every: int = 0, queue: bool = True):
    """A workspace of ``n`` small synthetic images (one conditioning person each), all queued for review
    (every ``double_every``-th item with two slots; none with ``queue=False``), and a finished curation run
    with two stages' scores and a selection order for each."""
    from PIL import Image

    from engine.io.common import ImageRecord, ParsedDataset, PersonRecord, run_import
    from engine.workspace import Workspace
    from store import images as store_images
    from store import review as store_review

    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        p = root / "src" / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), np.uint8)).save(p)
        k = np.zeros((17, 3))
        k[:, 0], k[:, 1], k[:, 2] = rng.uniform(10, 86, 17), rng.uniform(10, 86, 17), 2
        records.append(ImageRecord(p.name, p, [PersonRecord(keypoints=k, source="conditioning")]))
    ws = Workspace.init(root / "ws")
    run_import(ws, ParsedDataset("images", "bench", "bench", records), split="train", kind="synthetic")
    from store import curation as store_curation

    with ws.connect() as db:
        ids = [im["id"] for im in store_images.list_images(db)]
        if queue:
            with db.conn:
                store_review.add_items(db, [{"image_id": i, "rank": r + 1,
                                             "slots": 2 if double_every and r % double_every == 0 else 1}
                                            for r, i in enumerate(ids)])
        with db.conn:         # a curation run with two stages' scores for every image, as a real one leaves
            run_id = store_curation.create_run(db, None, {"stages": [{"name": "quality"}, {"name": "realism"}]})
            for stage in ("quality", "realism"):
                store_curation.put_results(db, run_id, stage, [
                    {"image_id": i, "status": "pass", "value": float(v), "details": {"bench": True}}
                    for i, v in zip(ids, rng.uniform(0, 1, len(ids)))])
            store_curation.put_selection(db, run_id, [{"image_id": i, "rank": r + 1, "priority": 1.0 - r / n,
                                                       "components": {}} for r, i in enumerate(ids)])
            store_curation.finish_run(db, run_id, calibration={}, set_metrics={}, funnel=[
                {"stage": s, "entered": n, "passed": n, "failed": 0, "unavailable": 0} for s in ("quality", "realism")])
    return ws


def page_times(page: str, runs: int, user: dict | None = None) -> tuple[float, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app_pages" / page), default_timeout=300)
    if user:
        at.session_state["realcal_user"] = user
    t = time.perf_counter()
    at.run()
    first = time.perf_counter() - t
    assert not at.exception, at.exception
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
    return 1000 * first, 1000 * statistics.median(times)


def one(n: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ws = build(Path(tmp), n)
        built = time.perf_counter() - t0
        os.environ["REALCAL_WORKSPACE"] = str(ws.root)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        data = page_times("data.py", runs)
        review = page_times("review.py", runs, {"name": "bench", "role": "annotator", "single_user": False})
        return {"images": n, "build_s": round(built, 1), "data_first_ms": round(data[0]),
                "data_rerun_ms": round(data[1]),
                "review_first_ms": round(review[0]), "review_rerun_ms": round(review[1]),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "rss_before_pages_mb": round(rss_before)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.runs)))
        return
    print("images | build s | Data first / rerun ms | Review first / rerun ms | peak RSS MB (before pages)")
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--runs", str(args.runs)],
                             capture_output=True, text=True)
        if out.returncode:
            print(f"{n}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['images']:>6} | {r['build_s']:>7} | {r['data_first_ms']:>6} / {r['data_rerun_ms']:<6} | "
              f"{r['review_first_ms']:>6} / {r['review_rerun_ms']:<6} | "
              f"{r['peak_rss_mb']} ({r['rss_before_pages_mb']})",
              flush=True)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
