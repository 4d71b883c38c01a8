"""The Train page in chromium: the benchmark's recipe by default, the step plan before anything is queued."""
import pytest

from tests.test_browser import CHROMIUM, FLAGS, require_browser, serve
from tests.test_browser_nav import SIZES
from tests.test_generate_job import gen_ws  # noqa: F401 - the fixture


@pytest.fixture
def served_manifest(gen_ws):  # noqa: F811
    from engine.train.manifest import build_manifest

    build_manifest(gen_ws, {"real_train": {"count": None, "seed": 0}, "synthetic": {"pool": "none"}})
    with serve(gen_ws) as url:
        yield url, gen_ws


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s['width']}x{s['height']}")
def test_single_run_defaults_and_the_step_plan_before_queueing(served_manifest, size):
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    url, ws = served_manifest
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport=size)
            page.goto(f"{url}/train")
            page.get_by_role("heading", name="Train").wait_for(timeout=60_000)
            page.get_by_role("tab", name="Single training run").click()
            expect(page.get_by_role("textbox", name="Freeze")).to_have_value("0", timeout=30_000)
            expect(page.get_by_role("spinbutton", name="Nominal batch (nbs)")).to_have_value("8")
            expect(page.get_by_role("spinbutton", name="lr0", exact=True)).to_have_value("0.00005")
            expect(page.get_by_text("Step plan: 4 train images, 10 epochs at batch 8")).to_be_visible()
            epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
            epochs.fill("1")
            epochs.press("Tab")
            expect(page.get_by_text("Step plan: 4 train images, 1 epochs at batch 8")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("only 1 optimizer steps")).to_be_visible()      # the warning, before queueing
        finally:
            browser.close()
    with ws.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'train'").fetchone()[0] == 0
