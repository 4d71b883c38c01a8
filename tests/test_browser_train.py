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


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s['width']}x{s['height']}")
def test_the_page_follows_its_job_and_shows_the_result_when_it_ends(served_manifest, size):
    """A job's progress is live, and its end reruns the page (no reload needed)."""
    require_browser()
    import os

    from playwright.sync_api import expect, sync_playwright

    from engine import jobs
    from store import jobs as store_jobs

    url, ws = served_manifest
    job_id = jobs.submit(ws, "train", {"manifest_id": 1})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport=size)
            page.goto(f"{url}/train")
            page.get_by_role("heading", name="Train").wait_for(timeout=60_000)
            expect(page.get_by_text(f"job {job_id} (train): queued")).to_be_visible(timeout=30_000)
            with ws.connect() as db:                  # a worker takes it, reports progress, finishes it
                job = store_jobs.claim(db, "test:1", os.getpid())
                store_jobs.update_progress(db, job_id, 3, 10, "epoch 3/10", claim=job["claim"])
            expect(page.get_by_text(f"job {job_id} (train): epoch 3/10")).to_be_visible(timeout=30_000)
            with ws.connect() as db:
                store_jobs.finish(db, job_id, "done", result={}, claim=job["claim"])
            expect(page.get_by_text(f"Job {job_id} (train) done.")).to_be_visible(timeout=30_000)
            expect(page.get_by_text(f"job {job_id} (train)")).to_have_count(0)
        finally:
            browser.close()
