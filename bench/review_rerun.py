"""Review page rerun time after a decision, with 10,000 items queued (AppTest, server side).

    .venv/bin/python bench/review_rerun.py [N_ITEMS]

Builds a workspace of N small synthetic images with one conditioning person each, queues them,
then accepts 20 items the way the review canvas's callback does (``ui.review_canvas.store_actions``)
and reruns the page through Streamlit's AppTest, printing the times (decision + rerun).
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402,F401


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    from PIL import Image
    from streamlit.testing.v1 import AppTest

    from engine.io.common import ImageRecord, ParsedDataset, PersonRecord, run_import
    from engine.workspace import Workspace
    from store import images as store_images
    from store import review as store_review

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        records = []
        t0 = time.perf_counter()
        for i in range(n):
            p = tmp / "src" / f"{i:05d}.png"
            p.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (96, 96, 3), np.uint8)).save(p)
            k = np.zeros((17, 3))
            k[:, 0], k[:, 1], k[:, 2] = rng.uniform(10, 86, 17), rng.uniform(10, 86, 17), 2
            records.append(ImageRecord(p.name, p, [PersonRecord(keypoints=k, source="conditioning")]))
        ws = Workspace.init(tmp / "ws")
        run_import(ws, ParsedDataset("images", "bench", "bench", records), split="train", kind="synthetic")
        with ws.connect() as db:
            ids = [im["id"] for im in store_images.list_images(db)]
            with db.conn:
                store_review.add_items(db, [{"image_id": i, "rank": r + 1, "slots": 2 if r % 20 == 0 else 1}
                                            for r, i in enumerate(ids)])
        print(f"workspace with {n} queued items built in {time.perf_counter() - t0:.0f} s")
        os.environ["REALCAL_WORKSPACE"] = str(ws.root)
        page = str(Path(__file__).resolve().parents[1] / "app_pages" / "review.py")
        at = AppTest.from_file(page, default_timeout=120)
        at.session_state["realcal_user"] = {"name": "bench", "role": "annotator", "single_user": False}
        t = time.perf_counter()
        at.run()
        first = time.perf_counter() - t
        from engine import review
        from ui.review_canvas import store_actions

        times = []
        seen: dict = {"session": "bench", "ack": 0}
        for i in range(20):
            t = time.perf_counter()
            with ws.connect() as db:
                s = review.lease(db, "bench", n=1)[0]
                r = store_actions(db, "bench", [{"seq": i + 1, "action": "accept", "item_id": s["item_id"],
                                                 "slot": s["slot"]}], seen)
            assert r["msg"] is None, r
            at.run()
            times.append(time.perf_counter() - t)
            assert not at.exception, at.exception
        times_ms = sorted(1000 * x for x in times)
        print(f"first render: {1000 * first:.0f} ms")
        print(f"rerun after Accept ({n} items queued, 20 decisions): median {statistics.median(times_ms):.0f} ms, "
              f"p90 {times_ms[int(0.9 * len(times_ms)) - 1]:.0f} ms, max {times_ms[-1]:.0f} ms "
              f"(AppTest wall time: the decision and the script run, no browser)")


if __name__ == "__main__":
    main()
