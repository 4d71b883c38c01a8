"""The app in a real browser: `realcal app` on a free loopback port, Debian's chromium."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from engine.io import parse
from engine.io.common import run_import
from tests.helpers import make_coco, queued_synthetic_workspace

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def require_browser():
    have = os.path.exists(CHROMIUM)
    try:
        import playwright  # noqa: F401
    except ImportError:
        have = False
    if not have:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have Debian's chromium and playwright (installed by .ci/run)")
        pytest.skip("no /usr/bin/chromium or playwright here (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(ws):
    """``realcal app`` on a free loopback port (no worker); yields its URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "-w", str(ws.root), "app", "--port", str(port), "--no-worker"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"the app did not start: {proc.stdout.read().decode()[-2000:]}")
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


@pytest.fixture
def served(ws, tmp_path):
    run_import(ws, parse("coco", make_coco(tmp_path / "d", n=3)), split="train")
    with serve(ws) as url:
        yield url


def test_data_page_in_chromium(served, tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    shot = tmp_path / "data-page.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(served)
            page.get_by_role("heading", name="Data").wait_for(timeout=60_000)
            page.locator(".tile img").nth(2).wait_for(timeout=60_000)
            assert page.locator(".tile img").count() == 3
            assert page.get_by_text("Persons (labels)").is_visible()
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    artifacts = os.environ.get("REALCAL_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(artifacts) / shot.name)


def test_a_deep_link_on_a_fresh_server_goes_through_app_py(served):
    """The first request of a new server is a deep link: it must still get app.py's navigation."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{served}/jobs")
            page.get_by_role("heading", name="Jobs").wait_for(timeout=60_000)
            assert page.get_by_text("Single-user mode (loopback only)").is_visible()
            assert page.get_by_text("Workspace:").is_visible()
        finally:
            browser.close()


@pytest.fixture
def served_review(ws, tmp_path):
    """A workspace with a review queue and an annotator account, served on a free port."""
    from engine import review

    queued_synthetic_workspace(ws, tmp_path, n=5)
    with ws.connect() as db:
        review.add_user(db, "ann", "annotator", "annotator-pass")
    with serve(ws) as url:
        yield url, ws

def test_annotator_logs_in_reviews_with_the_keyboard_and_logs_out(served_review, tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    from store import review as store_review

    url, ws = served_review

    def decisions():
        with ws.connect() as db:
            return [(d["user"], d["decision"]) for d in store_review.live_decisions(db)]

    def wait_for(n):
        deadline = time.time() + 30
        while time.time() < deadline:
            if len(decisions()) == n:
                return
            time.sleep(0.2)
        pytest.fail(f"expected {n} decisions, have {decisions()}")

    shot = tmp_path / "review-page.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1300})
            page = context.new_page()
            page.goto(url)
            page.get_by_role("link", name="Log in").click()            # the login page (an HTTP route)
            page.get_by_label("Username").fill("ANN")                   # names are case-insensitive
            page.get_by_label("Password", exact=True).fill("annotator-pass")
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("heading", name="Review").wait_for(timeout=60_000)
            session = [c for c in context.cookies() if c["name"].startswith("realcal_session_")]
            assert len(session) == 1 and session[0]["httpOnly"] and session[0]["sameSite"] == "Lax"
            assert session[0]["name"] not in page.evaluate("document.cookie")   # out of reach of scripts

            def settled(done: int) -> None:
                """The page shows ``done`` decisions by me and its Accept button is back."""
                from playwright.sync_api import expect

                metric = page.locator('[data-testid="stMetric"]', has_text="Done by you").first
                expect(metric.locator('[data-testid="stMetricValue"]')).to_have_text(str(done), timeout=30_000)
                page.get_by_role("button", name="Accept").wait_for(timeout=30_000)
                page.wait_for_timeout(300)

            settled(0)
            page.get_by_role("heading", name="Review").click()  # keyboard focus on the page
            for key, expected in (("a", 1), ("x", 2), ("a", 3), ("u", 2)):
                page.keyboard.press(key)
                wait_for(expected)
                settled(expected)
            page.reload()
            page.get_by_role("heading", name="Review").wait_for(timeout=60_000)
            assert page.get_by_text("Signed in as").is_visible()        # the cookie kept the login
            assert page.get_by_label("Username").count() == 0
            page.wait_for_timeout(800)
            page.screenshot(path=str(shot))
            page.get_by_role("button", name="Log out").click()
            page.get_by_text("Please log in").wait_for(timeout=30_000)
            copied = browser.new_context()                              # a copy of the cookie, made before
            copied.add_cookies(session)
            other = copied.new_page()
            other.goto(url)
            other.get_by_text("Please log in").wait_for(timeout=60_000)   # the logout revoked it
            assert other.get_by_text("Signed in as").count() == 0
        finally:
            browser.close()
    assert decisions() == [("ann", "accept"), ("ann", "reject")]
    artifacts = os.environ.get("REALCAL_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(artifacts) / shot.name)
