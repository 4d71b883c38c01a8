"""Keeping one's place in the browser: deep links, reloads and new tabs land on the page asked for,
at the two laptop sizes annotators and researchers use."""
import pytest

from engine.io import parse
from engine.io.common import run_import
from tests.helpers import make_coco
from tests.test_browser import CHROMIUM, FLAGS, require_browser, serve

SIZES = [{"width": 1280, "height": 800}, {"width": 1440, "height": 900}]


def _idle(page) -> None:
    """Wait until the app has finished its rerun (Streamlit's status widget gone)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=30_000)


@pytest.fixture
def served_accounts(ws, tmp_path):
    """A workspace with an admin account (accounts mode), served on a free port."""
    from engine import review

    run_import(ws, parse("coco", make_coco(tmp_path / "d", n=2)), split="train")
    with ws.connect() as db:
        review.add_user(db, "boss", "admin", "admin-pass-1")
    with serve(ws) as url:
        yield url


def _log_in(page, url: str, path: str = "") -> None:
    page.goto(f"{url}{path}")
    page.get_by_role("link", name="Log in").click()
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password", exact=True).fill("admin-pass-1")
    page.get_by_role("button", name="Log in").click()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s['width']}x{s['height']}")
def test_a_signed_in_admin_keeps_the_page_on_reload_and_in_new_tabs(served_accounts, size):
    require_browser()
    from playwright.sync_api import sync_playwright

    url = served_accounts
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = browser.new_context(viewport=size)
            page = context.new_page()
            _log_in(page, url, "/results")            # a deep link before logging in comes back after it
            page.get_by_role("heading", name="Results").wait_for(timeout=60_000)
            assert page.url.rstrip("/").endswith("/results")
            for path, heading in (("/review", "Review"), ("/jobs", "Jobs"), ("/results", "Results")):
                page.goto(f"{url}{path}")
                page.get_by_role("heading", name=heading).wait_for(timeout=60_000)
                page.reload()
                page.get_by_role("heading", name=heading).wait_for(timeout=60_000)
                assert page.get_by_role("heading", name="Data").count() == 0
                tab = context.new_page()                # a new tab with the same cookie
                tab.goto(f"{url}{path}")
                tab.get_by_role("heading", name=heading).wait_for(timeout=60_000)
                assert tab.get_by_role("heading", name="Data").count() == 0
                tab.close()
        finally:
            browser.close()


@pytest.fixture
def served_single(ws, tmp_path):
    run_import(ws, parse("coco", make_coco(tmp_path / "d", n=2)), split="train")
    with serve(ws) as url:
        yield url, ws


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s['width']}x{s['height']}")
def test_a_finished_job_reads_complete_on_the_jobs_page(served_single, size):
    """A curation job whose last progress step was 5 of 7 used to show 71 % after it finished."""
    require_browser()
    import os

    from playwright.sync_api import expect, sync_playwright

    from engine import jobs
    from store import jobs as store_jobs

    url, ws = served_single
    job_id = jobs.submit(ws, "curate", {})
    with ws.connect() as db:
        job = store_jobs.claim(db, "test:1", os.getpid())
        store_jobs.update_progress(db, job_id, 5, 7, "stage 5 of 7", claim=job["claim"])
        store_jobs.finish(db, job_id, "done", result={}, claim=job["claim"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport=size)
            page.goto(f"{url}/jobs")
            page.get_by_role("heading", name="Jobs").wait_for(timeout=60_000)
            bar = page.get_by_role("progressbar").first
            expect(bar).to_have_attribute("aria-valuenow", "100", timeout=30_000)
        finally:
            browser.close()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s['width']}x{s['height']}")
def test_a_selection_is_excluded_from_training_and_included_again(served_single, size):
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    from store import training as store_training

    url, ws = served_single
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport=size)
            page.goto(url)
            page.get_by_role("heading", name="Data").wait_for(timeout=60_000)
            page.locator('.tile input[aria-label="select image #1"]').wait_for(timeout=60_000)
            _idle(page)
            page.locator('.tile input[aria-label="select image #1"]').click()
            page.get_by_text("Selection: 1 image").wait_for(timeout=30_000)
            _idle(page)
            page.get_by_role("button", name="Exclude 1 from training").click()
            expect(page.get_by_text("Excluded 1 image(s) from training")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("· excluded")).to_have_count(1)
            with ws.connect() as db:
                assert store_training.excluded_image_ids(db) == {1}
            _idle(page)
            page.locator('.tile input[aria-label="select image #1"]').click()
            page.get_by_text("Selection: 1 image").wait_for(timeout=30_000)
            _idle(page)
            page.get_by_role("button", name="Include 1 again").click()
            expect(page.get_by_text("Included 1 image(s) again")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("· excluded")).to_have_count(0)
        finally:
            browser.close()
    with ws.connect() as db:
        assert store_training.excluded_image_ids(db) == set()
