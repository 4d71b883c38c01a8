"""Review page latency in a real browser: keypress -> next item visible.

    .venv/bin/python bench/review_latency.py [N_DECISIONS] [--size 640x480] [--pause-ms 300]

Builds a workspace of queued synthetic images (one conditioning person each), serves the app
(`realcal app`, no worker), logs in as an annotator in Debian's chromium (Playwright), and decides
N items with the keyboard (A and X alternating, a short pause between keys as a reviewer would).
Prints, over the N decisions:

- keypress -> next item drawn: from the key event's timestamp to the first animation frame after
  the canvas drew the next item (measured in the page);
- keypress -> decision stored: from the key press to the decision row in the database (polled
  every 5 ms here), i.e. the browser -> Streamlit -> engine.review round trip;

and checks that the database holds exactly the decisions pressed, item for item.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._paths import cpu_name, offline  # noqa: E402

offline()

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
CANVAS = '[data-testid="review-canvas"]'


def build(root: Path, n: int, size: tuple[int, int]):
    """A workspace with ``n`` queued synthetic images of ``size`` and an annotator."""
    import numpy as np
    from PIL import Image

    from engine import review
    from engine.io.common import ImageRecord, ParsedDataset, PersonRecord, run_import
    from engine.workspace import Workspace
    from store import images as store_images
    from store import review as store_review

    ws = Workspace.init(root / "ws")
    rng = np.random.default_rng(0)
    w, h = size
    records = []
    for i in range(n):
        p = root / "src" / f"{i:04d}.jpg"
        p.parent.mkdir(exist_ok=True)
        base = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)
        Image.fromarray(base // 2 + rng.integers(0, 128, (h, w, 3), np.uint8)).save(p, quality=90)
        k = np.zeros((17, 3))
        k[:, 0] = rng.uniform(0.2 * w, 0.8 * w, 17)
        k[:, 1] = rng.uniform(0.1 * h, 0.9 * h, 17)
        k[:, 2] = 2
        records.append(ImageRecord(file_name=p.name, path=p,
                                   persons=[PersonRecord(keypoints=k, bbox=(0.2 * w, 0.1 * h, 0.6 * w, 0.8 * h))]))
    run_import(ws, ParsedDataset(format="images", dataset="bench", source=str(root / "src"), records=records),
               split="train", kind="synthetic")
    with ws.connect() as db:
        db.execute("UPDATE persons SET source = 'conditioning'")
        db.conn.commit()
        with db.conn:
            store_review.add_items(db, [{"image_id": im["id"], "rank": i + 1, "slots": 1}
                                        for i, im in enumerate(store_images.list_images(db))])
        review.add_user(db, "ann", "annotator", "annotator-pass")
    return ws


@contextlib.contextmanager
def serve(ws):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "engine", "-w", str(ws.root), "app", "--port", str(port),
                             "--no-worker"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise SystemExit("the app did not start")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def summary(name: str, xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return f"{name}: median {statistics.median(xs):.1f} ms, p90 {p90:.1f} ms, max {xs[-1]:.1f} ms (n={len(xs)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=30)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--pause-ms", type=int, default=300)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    from playwright.sync_api import sync_playwright

    from store import review as store_review

    with tempfile.TemporaryDirectory() as tmp:
        ws = build(Path(tmp), args.n + 10, size)   # more items than decisions: the queue never runs dry

        def rows():
            with ws.connect() as db:
                return [(f"{d['item_id']}/{d['slot']}", d["decision"]) for d in store_review.live_decisions(db)]

        pressed: list[tuple[str, str]] = []
        stored_ms: list[float] = []
        with serve(ws) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url)
            page.get_by_role("link", name="Log in").click()
            page.get_by_label("Username").fill("ann")
            page.get_by_label("Password", exact=True).fill("annotator-pass")
            page.get_by_role("button", name="Log in").click()
            page.locator(CANVAS).wait_for(timeout=60_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')]"
                ".some(h => h.shadowRoot && h.shadowRoot.querySelector('.rc[data-item]:not([data-item=\"\"])'))",
                timeout=60_000)
            page.wait_for_timeout(1000)
            for i in range(args.n):
                key, decision = ("a", "accept") if i % 2 == 0 else ("x", "reject")
                item = page.locator(CANVAS).get_attribute("data-item")
                pressed.append((item, decision))
                t0 = time.perf_counter()
                page.keyboard.press(key)
                while len(rows()) < i + 1:
                    if time.perf_counter() - t0 > 30:
                        raise SystemExit(f"decision {i + 1} was not stored within 30 s")
                    time.sleep(0.005)
                stored_ms.append((time.perf_counter() - t0) * 1000)
                page.wait_for_timeout(args.pause_ms)
            drawn_ms = page.evaluate("() => window.__reviewLatencies || []")
            browser.close()
        stored = rows()
    print(f"review latency, {args.n} decisions at 1440x900, images {size[0]}x{size[1]}, "
          f"{args.pause_ms} ms between keys; {cpu_name()}, {os.cpu_count()} CPUs")
    print(summary("keypress -> next item drawn", drawn_ms))
    print(summary("keypress -> decision stored", stored_ms))
    same = stored == pressed
    print(f"database matches the keys pressed, item for item: {'yes' if same else 'NO'}")
    if not same:
        print("pressed:", pressed, "\nstored: ", stored)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
