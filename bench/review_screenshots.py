"""Screenshots of the Review page for docs/screenshots/ (1280x800 and 1440x900, normal and fix mode).

    .venv/bin/python bench/review_screenshots.py [OUT_DIR]

The item is matplotlib's sample photograph of Grace Hopper with a hand-placed label (face and
shoulders; the rest not labelled), queued as a synthetic image for an annotator.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._paths import offline  # noqa: E402
from bench.review_latency import CANVAS, CHROMIUM, FLAGS, serve  # noqa: E402

offline()

# x, y, visibility for COCO-17, in the photograph's pixels (512x600)
HOPPER = [(262, 262, 2), (305, 200, 2), (222, 200, 2), (362, 228, 2), (165, 235, 2), (430, 395, 2), (92, 400, 2)] + \
         [(0, 0, 0)] * 10


def main() -> None:
    import matplotlib

    from engine import review
    from engine.io.common import ImageRecord, ParsedDataset, PersonRecord, run_import
    from engine.workspace import Workspace
    from store import images as store_images
    from store import review as store_review

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        k = np.asarray(HOPPER, float)
        run_import(ws, ParsedDataset(format="images", dataset="demo", source=str(photo.parent), records=[
            ImageRecord(file_name=photo.name, path=photo,
                        persons=[PersonRecord(keypoints=k, bbox=(60, 20, 420, 580))])]),
            split="train", kind="synthetic")
        with ws.connect() as db:
            db.execute("UPDATE persons SET source = 'conditioning'")
            db.conn.commit()
            with db.conn:
                store_review.add_items(db, [{"image_id": im["id"], "rank": 1, "slots": 1}
                                            for im in store_images.list_images(db)])
            review.add_user(db, "ann", "annotator", "annotator-pass")
        with serve(ws) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            for w, h in ((1280, 800), (1440, 900)):
                page = browser.new_page(viewport={"width": w, "height": h})
                page.goto(url)
                page.get_by_role("link", name="Log in").click()
                page.get_by_label("Username").fill("ann")
                page.get_by_label("Password", exact=True).fill("annotator-pass")
                page.get_by_role("button", name="Log in").click()
                page.locator(CANVAS).wait_for(timeout=60_000)
                page.wait_for_timeout(1500)
                page.keyboard.press("2")
                page.screenshot(path=str(out / f"review-{w}x{h}.png"))
                page.keyboard.press("2")
                page.keyboard.press("f")
                page.wait_for_timeout(300)
                page.screenshot(path=str(out / f"review-{w}x{h}-fix.png"))
                page.close()
            browser.close()
    from PIL import Image

    for f in sorted(out.glob("review-1*.png")):
        with Image.open(f) as im:          # 256 colours: the committed files stay well under 300 KB
            small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(f, optimize=True)
        print(f, f.stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main()
