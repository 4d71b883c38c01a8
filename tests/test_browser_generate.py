"""The Generate page in chromium: a used seed is never silently an empty batch."""
import re

import pytest

from engine import jobs
from engine.generate.job import resolve_params
from tests.test_browser import CHROMIUM, FLAGS, require_browser, serve
from tests.test_browser_nav import SIZES
from tests.test_generate_job import gen_ws  # noqa: F401 - the fixture


@pytest.fixture
def served_generated(gen_ws):  # noqa: F811
    """A workspace with one copy-paste batch made with seed 0 at the page's defaults."""
    params = resolve_params(gen_ws, {"generator": "copy_paste", "count": 16, "seed": 0,
                                     "generator_params": {"width": 512, "height": 512}})
    assert jobs.run_foreground(gen_ws, "generate", params)["status"] == "done"
    with serve(gen_ws) as url:
        yield url, gen_ws


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s['width']}x{s['height']}")
def test_the_seed_defaults_to_an_unused_one_and_a_used_seed_is_explained(served_generated, size):
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    url, ws = served_generated
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport=size)
            page.goto(f"{url}/generate")
            page.get_by_role("heading", name="Generate").wait_for(timeout=60_000)
            seed = page.get_by_role("spinbutton", name="Seed")
            expect(seed).to_have_value("1", timeout=30_000)          # seed 0 is taken
            seed.fill("0")
            seed.press("Tab")
            page.get_by_role("button", name="Queue generation job").click()
            refused = re.compile(r"Batch \d+ was made with these settings and seed 0.*seed 1 has not been used")
            expect(page.get_by_text(refused)).to_be_visible(timeout=30_000)
            assert page.get_by_text("Queued job").count() == 0
        finally:
            browser.close()
    with ws.connect() as db:
        from store import jobs as store_jobs

        assert [j["kind"] for j in store_jobs.list_jobs(db, limit=10)] == ["generate"]   # nothing queued
