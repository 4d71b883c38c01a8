"""The Curate page in chromium follows its job: progress while it runs, the new run when it ends."""
import os

import pytest

from engine import jobs
from tests.test_browser import CHROMIUM, FLAGS, require_browser, serve
from tests.test_browser_nav import SIZES
from tests.test_curate import cur_ws  # noqa: F401 - the fixture


@pytest.fixture
def served_uncurated(cur_ws):  # noqa: F811
    from engine.generate.job import resolve_params as gen_params

    g = jobs.run_foreground(cur_ws, "generate", gen_params(cur_ws, {
        "count": 4, "generator_params": {"width": 128, "height": 128, "background": "procedural"}}))
    assert g["status"] == "done", g["error"]
    with serve(cur_ws) as url:
        yield url, cur_ws


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s['width']}x{s['height']}")
def test_the_curate_page_shows_the_new_run_when_its_job_ends(served_uncurated, size):
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    from engine.curate.run import resolve_params as curate_params
    from store import jobs as store_jobs

    url, ws = served_uncurated
    job_id = jobs.submit(ws, "curate", curate_params(ws, {"stages": [
        {"name": "quality", "params": {"sharpness": 1.0}},
        {"name": "pose_consistency", "params": {"threshold": 0.0}}]}))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport=size)
            page.goto(f"{url}/curate")
            page.get_by_role("heading", name="Curate").wait_for(timeout=60_000)
            expect(page.get_by_text("No curation run yet.")).to_be_visible(timeout=30_000)
            expect(page.get_by_text(f"job {job_id} (curate): queued")).to_be_visible(timeout=30_000)
            with ws.connect() as db:                                 # a worker takes the job and runs it
                job = store_jobs.claim(db, "test:1", os.getpid())
            assert jobs.run_job(ws, job)["status"] == "done"
            expect(page.get_by_role("heading", name="Run 1 (")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("No curation run yet.")).to_have_count(0)
            expect(page.get_by_text(f"job {job_id} (curate)")).to_have_count(0)
        finally:
            browser.close()
