"""The app in a real browser: `realcal app` on a free loopback port, Debian's chromium."""
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

from tests.helpers import make_coco

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def _require_browser():
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


@pytest.fixture
def served(ws, tmp_path):
    run_import(ws, parse("coco", make_coco(tmp_path / "d", n=3, )), split="train")
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
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(20)


def test_data_page_in_chromium(served, tmp_path):
    _require_browser()
    from playwright.sync_api import sync_playwright

    shot = tmp_path / "data-page.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(served)
            page.get_by_role("heading", name="Data").wait_for(timeout=60_000)
            page.locator('[data-testid="stImage"] img').first.wait_for(timeout=60_000)
            assert page.locator('[data-testid="stImage"] img').count() == 3
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
    _require_browser()
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
