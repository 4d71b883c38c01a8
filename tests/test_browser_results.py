"""Results, Curate and Data pages in a real browser at the two laptop sizes testers use (1280x800, 1440x900).

The experiment here is stored directly (runs, curves and comparisons as an experiment job stores them), so
the pages are checked without training anything."""
import colorsys

import pytest

from engine.io import parse
from engine.io.common import run_import
from store import training as store_training
from tests.helpers import make_coco
from tests.test_browser import CHROMIUM, FLAGS, require_browser, serve

VIEWPORTS = [(1280, 800), (1440, 900)]

# arm -> (real, synthetic, pool, test AP50, test PCK, per-seed steps): real-only takes 6 steps (2 epochs of 3),
# the mixed arms 8 (2 epochs of 4): matched within rounding to whole epochs, not exactly
ARMS = {
    "zero-shot": (0, None, "none", 0.30, 0.40, None),
    "real-only": (40, None, "none", 0.28, 0.42, 6),
    "mixed-random-20": (40, 20, "random", 0.26, 0.41, 8),
    "mixed-curated-20": (40, 20, "curated", 0.27, 0.43, 8),
    "weighted-random-20": (40, 20, "random", 0.25, 0.40, 8),
    "mixed-unfiltered-20": (40, 20, "unfiltered", 0.24, 0.41, 8),
}
SEEDS = (0, 1)


def _comparison(arm: str, metric: str, diff: float, ci: tuple, p: float) -> dict:
    from engine import stats

    return {"kind": "vs_baseline", "arm": arm, "baseline": "real-only", "metric": metric, "mean_diff": diff,
            "ci": list(ci), "p": p, "p_holm": p, "seeds": 2, "n": 20, "n_boot": 200, "method": "two-stage",
            "per_seed": [{"seed": s, "diff": diff} for s in SEEDS],
            "verdict": stats.verdict(arm, "real-only", metric, diff, ci, p)}


def build_experiment(ws, tmp_path):
    """A finished two-seed experiment with learning curves over two epochs, as the experiment job stores it."""
    run_import(ws, parse("coco", make_coco(tmp_path / "real", n=4)), split="train")
    cfg = {"name": "laptop", "step_matching": True, "seeds": list(SEEDS),
           "arms": [{"name": a, "kind": "zero_shot" if a == "zero-shot" else "train", "real": r, "synthetic": s,
                     "pool": pool} for a, (r, s, pool, *_) in ARMS.items()]}
    comparisons = []
    for arm, (_, _, _, ap50, pck, _) in ARMS.items():
        if arm == "real-only":
            continue
        d_ap, d_pck = ap50 - ARMS["real-only"][3], pck - ARMS["real-only"][4]
        comparisons += [_comparison(arm, "AP50", d_ap, (d_ap - 0.01, d_ap + 0.01), 0.01),
                        _comparison(arm, "PCK@0.2", d_pck, (d_pck - 0.005, d_pck + 0.005), 0.01),
                        _comparison(arm, "per-person OKS", d_pck / 2, (d_pck / 2 - 0.004, d_pck / 2 + 0.004), 0.01)]
    with ws.connect() as db:
        with db.conn:
            exp_id = store_training.create_experiment(db, "laptop", cfg)
            mid = store_training.insert_manifest(db, "0" * 64, {}, {}, [])
            for arm, (real, syn, _, ap50, pck, steps) in ARMS.items():
                for seed in SEEDS:
                    run_id = None
                    if steps:
                        run_id = store_training.create_run(db, None, mid, {})
                        curves = [{"epoch": float(e), "metrics/mAP50(P)": ap50 * e / 2} for e in (1, 2)]
                        store_training.finish_run(db, run_id, status="done", weights=None, curves=curves,
                                                  metrics={})
                    result = {"test": {"AP": ap50 / 2, "AP50": ap50 + 0.001 * seed, "PCK@0.2": pck,
                                       "mean OKS": pck, "protocol": "annotated_person", "images": 20,
                                       "persons": 20},
                              "val": {"AP50": ap50, "PCK@0.2": pck, "images": 10, "persons": 10},
                              "steps": steps, "epochs": 2 if steps else None, "seconds": 12.0,
                              "train_images": (real or 0) + (syn or 0), "manifest_hash": "0" * 64,
                              "code": {"commit": "abc123def456", "source_hash": "feedbeef", "dirty": False}}
                    store_training.put_experiment_run(db, exp_id, arm, seed, manifest_id=mid if steps else None,
                                                      training_run_id=run_id, status="done", result=result)
            store_training.set_experiment_ap50(db, exp_id, comparisons)
    return ws


@pytest.fixture(scope="module")
def results_url(tmp_path_factory):
    require_browser()
    from engine.workspace import Workspace

    tmp = tmp_path_factory.mktemp("results")
    ws = build_experiment(Workspace.init(tmp / "ws"), tmp)
    with serve(ws) as url:
        yield url


def _open(p, url: str, size: tuple[int, int], path: str, heading: str):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(f"{url}/{path}")
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    return browser, page


def _idle(page) -> None:
    """Wait until the app has finished its rerun (Streamlit's status widget gone)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=30_000)


def _figure(page, title: str):
    """The plotly figure whose title contains ``title``, scrolled into view and drawn."""
    fig = page.locator(".js-plotly-plot", has=page.locator(".gtitle", has_text=title))
    fig.first.wait_for(timeout=60_000)
    fig.first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    return fig.first


LEGEND_JS = """el => {
  const bg = el.querySelector('.legend .bg');
  if (!bg) return {items: 0, inside: 0, total: el.data.length};
  const box = bg.getBoundingClientRect();
  const svg = el.querySelector('.main-svg').getBoundingClientRect();
  const items = [...el.querySelectorAll('.legend .traces')];
  const inside = items.filter(t => { const r = t.getBoundingClientRect();
    return r.top >= box.top - 1 && r.bottom <= box.bottom + 1 && r.left >= svg.left - 1 && r.right <= svg.right + 1
           && r.top >= svg.top - 1 && r.bottom <= svg.bottom + 1; }).length;
  return {items: items.length, inside, total: el.data.filter(d => d.showlegend !== false).length};
}"""


@pytest.mark.parametrize("size", VIEWPORTS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_results_page_says_what_is_true_and_shows_every_series(results_url, size):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _open(p, results_url, size, "results", "Results")
        try:
            page.get_by_text("Experiment: laptop").wait_for(timeout=60_000)
            body = page.locator('[data-testid="stMain"]')
            # the steps line states the figures and that they are matched within rounding (6 vs 8), not "matched"
            steps = page.get_by_text("Optimizer steps matched to real-only within rounding")
            steps.wait_for(timeout=30_000)
            assert "6 steps" in steps.inner_text() and "6-8" in steps.inner_text()
            assert "arms trained at matched" not in body.inner_text()
            # the summary comes first: its paragraph sits above the first table
            summary = page.get_by_text("Compared 6 arms").first
            table = page.locator('[data-testid="stTable"]').first
            assert summary.bounding_box()["y"] < table.bounding_box()["y"]
            # tables: no raw None, a dash explained by a legend, and no column cut off at the right
            tables = page.locator('[data-testid="stTable"]')
            assert tables.count() >= 2
            text = "\n".join(tables.all_inner_texts())
            assert "None" not in text and "—" in text and "real-only" in text
            assert page.get_by_text("— : not applicable").first.is_visible()
            for i in range(tables.count()):
                t = tables.nth(i)
                if not t.is_visible():
                    continue
                over = t.evaluate("e => { const s = e.querySelector('table') || e; "
                                  "return [s.scrollWidth, e.getBoundingClientRect().width]; }")
                assert over[0] <= over[1] + 2, f"table {i} is cut off at the right: {over}"
            # verdicts grouped per comparison, metrics side by side, disagreement said in words
            assert page.get_by_text("The metrics disagree").first.is_visible()
            # learning curves: whole epochs only, and every run in the legend visible (10 runs)
            fig = _figure(page, "Learning curves")
            ticks = [t for t in fig.evaluate("el => [...el.querySelectorAll('.xtick text')].map(t => t.textContent)")
                     if t.strip()]
            assert ticks and all(float(t) == int(float(t)) for t in ticks), ticks
            legend = fig.evaluate(LEGEND_JS)
            assert legend["total"] == 10 and legend["inside"] == legend["total"], legend
            # AP50 vs synthetic images: arms at the same volume are separate points, never joined by a line
            vol = _figure(page, "vs synthetic images")
            modes = vol.evaluate("el => el.data.map(d => [d.mode || '', d.x.length])")
            assert all(not ("lines" in m and n > 1) for m, n in modes), modes
            legend = vol.evaluate(LEGEND_JS)
            assert legend["inside"] == legend["total"] >= 4, legend
        finally:
            browser.close()


# ----------------------------------------------------------------------------- Curate


def _hue_gap(a: str, b: str) -> float:
    def hue(c):
        c = c.strip()
        if c.startswith("rgb"):
            r, g, bl = (int(float(x)) for x in c[c.index("(") + 1:c.index(")")].split(",")[:3])
        else:
            c = c.lstrip("#")
            r, g, bl = (int(c[i:i + 2], 16) for i in (0, 2, 4))
        return colorsys.rgb_to_hsv(r / 255, g / 255, bl / 255)[0] * 360

    d = abs(hue(a) - hue(b)) % 360
    return min(d, 360 - d)


@pytest.fixture(scope="module")
def curate_url(tmp_path_factory):
    require_browser()
    from engine.workspace import Workspace

    tmp = tmp_path_factory.mktemp("curate")
    ws = Workspace.init(tmp / "ws")
    _store_curation(ws, tmp)
    with serve(ws) as url:
        yield url


def _store_curation(ws, tmp):
    from store import curation as store_curation

    run_import(ws, parse("coco", make_coco(tmp / "real", n=4)), split="train")
    run_import(ws, parse("coco", make_coco(tmp / "syn", n=8, seed=3)), split="train", kind="synthetic")
    # as stored by runs before the reason was cut at a word boundary: the library's message cut mid-word
    reason = ("open_clip ViT-B-32 with pretrained='laion2b_s34b_b79k' is unavailable: Failed to download weights "
              "for tag 'laion2b_s34b_b79k'. Last error: An error happened while trying to l. Give a local checkpoint "
              "path as pretrained, or run where the weights can be downloaded")
    with ws.connect() as db:
        ids = [r["id"] for r in db.query("SELECT id FROM images WHERE kind = 'synthetic' ORDER BY id")]
        funnel = [{"stage": s, "entered": 8, "passed": 8 if s != "clip" else 0, "failed": 0,
                   "unavailable": 8 if s == "clip" else 0} for s in ("quality", "clip", "pose_consistency")]
        calibration = {
            "quality": {"sharpness": {"kind": "real_percentile", "percentile": 2.0, "calibration_images": 4,
                                      "threshold": 60.0, "direction": "higher is better",
                                      "real_values": [55.0, 70.0, 80.0, 90.0]}},
            "pose_consistency": {"oks": {"kind": "real_percentile", "percentile": 1.0, "calibration_images": 4,
                                         "threshold": 0.6, "direction": "higher is better",
                                         "real_values": [0.55, 0.7, 0.8, 0.9]}}}
        with db.conn:
            run_id = store_curation.create_run(db, None, {"stages": []})
            store_curation.put_results(db, run_id, "quality", [
                {"image_id": im, "status": "pass", "value": 50.0 + 10 * i} for i, im in enumerate(ids)])
            store_curation.put_results(db, run_id, "clip", [
                {"image_id": im, "status": "unavailable", "value": None, "reason": reason} for im in ids])
            store_curation.put_results(db, run_id, "pose_consistency", [
                {"image_id": im, "status": "pass" if i % 3 else "fail", "value": 0.5 + 0.05 * i}
                for i, im in enumerate(ids)])
            store_curation.finish_run(db, run_id, calibration=calibration, funnel=funnel, set_metrics={})
            store_curation.put_selection(db, run_id, [{"image_id": im, "rank": k + 1, "priority": 1.0 - k / 10,
                                                       "components": {}} for k, im in enumerate(ids)])
    return run_id


@pytest.mark.parametrize("size", VIEWPORTS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_curate_page_reads_well_and_says_when_thresholds_differ(curate_url, size):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _open(p, curate_url, size, "curate", "Curate")
        try:
            page.get_by_text("Thresholds").first.wait_for(timeout=60_000)
            # the unavailable-stage warning is whole: no word cut, the full reason readable
            warn = page.locator('[data-testid="stAlert"]', has_text="Unavailable")
            warn.first.wait_for(timeout=30_000)
            assert "trying to l." not in warn.first.inner_text() and "CLIP weights" in warn.first.inner_text()
            box = warn.first.evaluate("e => [e.scrollWidth, e.clientWidth, e.scrollHeight, e.clientHeight]")
            assert box[0] <= box[1] + 1 and box[2] <= box[3] + 1, box
            # ordinals
            page.get_by_text("Review queue order").wait_for(timeout=30_000)
            text = page.locator('[data-testid="stMain"]').inner_text()
            assert "2th" not in text and "1th" not in text
            assert "2nd percentile" in text and "1st percentile" in text
            # histograms: synthetic and real anchors in clearly different hues
            fig = _figure(page, "sharpness")
            colours = fig.evaluate("el => el._fullData.map(d => d.marker.color)")
            assert len(colours) == 2 and _hue_gap(*colours) >= 40, colours
            # the CLIP fields Settings points to are on this page
            assert page.get_by_role("textbox", name="CLIP weights (open_clip tag or local checkpoint)").count() == 1
            assert page.get_by_role("textbox", name="CLIP model (open_clip name)").count() == 1
            # moving a threshold away from the run's own: a note says the run shown used other thresholds
            assert page.get_by_text("differ from those of run").count() == 0
            slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
            slider.focus()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            page.get_by_text("differ from those of run").first.wait_for(timeout=30_000)
            # Settings names the same fields
            page.goto(f"{curate_url}/settings")
            page.get_by_role("heading", name="Settings").first.wait_for(timeout=60_000)
            page.get_by_text("CLIP weights are chosen on the Curate page").wait_for(timeout=30_000)
        finally:
            browser.close()


# ----------------------------------------------------------------------------- Data


@pytest.fixture
def data_url(tmp_path):
    """A fresh workspace per test: the test changes the review queue."""
    require_browser()
    from engine.workspace import Workspace
    from store import curation as store_curation
    from tests.helpers import queued_synthetic_workspace

    tmp = tmp_path
    ws = Workspace.init(tmp / "ws")
    queued_synthetic_workspace(ws, tmp, 3)          # 3 synthetic images (#1-#3); #1 and #2 stay queued
    run_import(ws, parse("coco", make_coco(tmp / "real", n=5, seed=5)), split="val")     # #4-#8, never queued
    with ws.connect() as db:
        with db.conn:
            db.execute("DELETE FROM review_slots WHERE item_id IN (SELECT id FROM review_items WHERE image_id = 3)")
            db.execute("DELETE FROM review_items WHERE image_id = 3")
        syn = [r["id"] for r in db.query("SELECT id FROM images WHERE kind = 'synthetic' ORDER BY id")]
        with db.conn:
            run_id = store_curation.create_run(db, None, {"stages": []})
            store_curation.put_results(db, run_id, "quality", [
                {"image_id": im, "status": "pass", "value": 40.0 + i} for i, im in enumerate(syn)])
            store_curation.finish_run(db, run_id, calibration={}, set_metrics={},
                                      funnel=[{"stage": "quality", "entered": 3, "passed": 3, "failed": 0,
                                               "unavailable": 0}])
    with serve(ws) as url:
        yield url


@pytest.mark.parametrize("size", VIEWPORTS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_data_page_opens_an_image_filters_and_sends_a_selection_to_review(data_url, size):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _open(p, data_url, size, "", "Data")
        try:
            tiles = page.locator(".tile img")
            page.get_by_text("8 images match").wait_for(timeout=60_000)
            tiles.nth(7).wait_for(timeout=60_000)
            assert tiles.count() == 8
            # large thumbnails by default: three per row, each at least 250 px wide
            assert tiles.first.bounding_box()["width"] >= 250
            # a click on a thumbnail opens it with labels, lineage, curation scores and review history
            page.locator('.tile img[alt="image #2"]').click()
            dialog = page.get_by_role("dialog")
            dialog.wait_for(timeout=30_000)
            dialog.get_by_text("In the queue: open").wait_for(timeout=30_000)
            dialog.get_by_text("quality", exact=True).first.wait_for(timeout=30_000)
            for part in ("Labels", "Lineage", "Curation scores (run 1)", "Review"):
                assert dialog.get_by_text(part, exact=True).first.is_visible(), part
            dialog.locator("img").first.wait_for(timeout=30_000)
            assert dialog.locator("img").first.bounding_box()["width"] >= 300
            page.keyboard.press("Escape")
            dialog.wait_for(state="hidden", timeout=30_000)
            _idle(page)
            # filter on review state: the five real images and #3 were never queued
            box = page.locator('[data-testid="stMultiSelect"]', has_text="Review state").locator("input")
            box.click()
            page.get_by_role("option", name="not queued").click()
            page.keyboard.press("Escape")
            _idle(page)
            page.get_by_text("6 images match").wait_for(timeout=30_000)
            # select one (its box) and send it to review
            page.locator('.tile input[aria-label="select image #3"]').click()
            page.get_by_text("Selection: 1 image").wait_for(timeout=30_000)
            _idle(page)
            page.locator('.tile input[aria-label="select image #4"]').click()
            page.get_by_text("Selection: 2 images").wait_for(timeout=30_000)
            page.get_by_role("button", name="Send 2 to review").click()
            page.get_by_text("Queued 1 for review; 0 were already in the queue; 1 real image(s) left out").wait_for(
                timeout=30_000)
        finally:
            browser.close()
