"""Review page rerun time after a decision, with 10,000 items queued (AppTest, server side).

    .venv/bin/python bench/review_rerun.py [N_ITEMS]

Builds a workspace of N small synthetic images with one conditioning person each, queues them
(``bench/app_scale.py``'s builder, with a curation run),
then accepts 20 items the way the review canvas's callback does (``ui.review_canvas.store_actions``)
and reruns the page through Streamlit's AppTest, printing the times (decision + rerun).
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402,F401


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    from app_scale import build
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ws = build(Path(tmp), n, double_every=20)
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
