"""The Review page in a real browser at the two window sizes reviewers use (1280x800, 1440x900):
reasons per item, hotkeys wherever focus is, grid hotkeys after a tick, fixes by dragging (and a fix
that changed nothing), everything in view, readable statistics."""
import json
import re
import time

import numpy as np
import pytest

from tests.helpers import queued_synthetic_workspace
from tests.test_browser import CHROMIUM, FLAGS, require_browser, serve

VIEWPORTS = [pytest.param((1280, 800), id="1280x800"), pytest.param((1440, 900), id="1440x900")]
CANVAS = '[data-testid="review-canvas"]'


@pytest.fixture
def queued(ws, tmp_path):
    """Six queued synthetic images, an annotator and an admin."""
    from engine import review

    queued_synthetic_workspace(ws, tmp_path, n=6)
    with ws.connect() as db:
        review.add_user(db, "ann", "annotator", "annotator-pass")
        review.add_user(db, "boss", "admin", "admin-password")
    return ws


def decisions(ws):
    from store import review as store_review

    with ws.connect() as db:
        return store_review.live_decisions(db)


def wait_for(ws, n, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = decisions(ws)
        if len(got) >= n:
            return got
        time.sleep(0.1)
    pytest.fail(f"expected {n} decisions, have {[(d['item_id'], d['decision']) for d in decisions(ws)]}")


class Browser:
    def __init__(self, p, viewport):
        self.browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        self.page = self.browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})

    def login(self, url, name="ann", password="annotator-pass"):
        page = self.page
        page.goto(url)
        page.get_by_role("link", name="Log in").click()
        page.get_by_label("Username").fill(name)
        page.get_by_label("Password", exact=True).fill(password)
        page.get_by_role("button", name="Log in").click()
        if name != "ann":
            page.get_by_text("Signed in as").wait_for(timeout=60_000)
            page.goto(f"{url}/review")
        page.get_by_role("heading", name="Review").wait_for(timeout=60_000)
        return page


def shown_item(page) -> str:
    return page.locator(CANVAS).get_attribute("data-item") or ""


def wait_item(page, not_this: str = "", timeout=30_000) -> str:
    page.wait_for_function(
        "([sel, old]) => { const el = document.querySelector('.stBidiComponent') && "
        "[...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')].map(h => h.shadowRoot && "
        "h.shadowRoot.querySelector(sel)).find(Boolean); return el && el.dataset.item && el.dataset.item !== old; }",
        arg=[CANVAS, not_this], timeout=timeout)
    return shown_item(page)


def view(page) -> dict:
    return json.loads(page.locator(CANVAS).get_attribute("data-view"))


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_reject_reasons_belong_to_one_item(queued, viewport):
    """A reason chosen for one item is not stored with the next item's reject."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with serve(queued) as url, sync_playwright() as p:
        b = Browser(p, viewport)
        try:
            page = b.login(url)
            page.get_by_role("button", name="pose mismatch").click()
            page.keyboard.press("x")
            wait_for(queued, 1)
            page.wait_for_timeout(1500)                 # the page has settled on the next item
            page.keyboard.press("x")                   # no reason chosen for this one
            wait_for(queued, 2)
        finally:
            b.browser.close()
    assert [d["reasons"] for d in decisions(queued)] == [["pose mismatch"], []]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_hotkeys_work_wherever_focus_is(queued, viewport):
    """A, X and Esc work after tabbing anywhere or clicking a button; reasons have number keys that
    are shown on them; only a text field keeps the letters."""
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    with serve(queued) as url, sync_playwright() as p:
        b = Browser(p, viewport)
        try:
            page = b.login(url)
            wait_item(page)
            for n, tabs in enumerate((3, 9), start=1):
                before = shown_item(page)
                for _ in range(tabs):
                    page.keyboard.press("Tab")
                page.keyboard.press("a")
                wait_for(queued, n)
                wait_item(page, before)
            # a reason by its number key, announced on the button (its name has the number)
            reason = page.get_by_role("button", name="3 artefact")
            expect(reason).to_have_attribute("aria-pressed", "false")
            page.keyboard.press("3")
            expect(reason).to_have_attribute("aria-pressed", "true")
            reason.focus()                              # focus on the reason button itself
            before = shown_item(page)
            page.keyboard.press("x")
            wait_for(queued, 3)
            wait_item(page, before)
            # Esc cancels a fix wherever focus is
            page.keyboard.press("f")
            expect(page.locator(CANVAS)).to_have_attribute("data-fixing", "1")
            page.get_by_role("button", name="Undo move").focus()
            page.keyboard.press("Tab")
            page.keyboard.press("Escape")
            expect(page.locator(CANVAS)).to_have_attribute("data-fixing", "")
            # typing in a text field is left alone: nothing is decided
            page.get_by_role("radio", name="Grid").focus()
            assert len(decisions(queued)) == 3
        finally:
            b.browser.close()
    got = decisions(queued)
    assert [d["decision"] for d in got] == ["accept", "accept", "reject"]
    assert got[2]["reasons"] == ["artefact"]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_grid_hotkeys_right_after_ticking_a_checkbox(queued, viewport):
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    with serve(queued) as url, sync_playwright() as p:
        b = Browser(p, viewport)
        try:
            page = b.login(url)
            page.get_by_text("Grid", exact=True).click()
            page.get_by_text("#1", exact=True).wait_for(timeout=30_000)
            page.get_by_text("#1", exact=True).click()
            page.wait_for_timeout(800)
            page.get_by_text("#2", exact=True).click()   # focus stays on this checkbox
            page.wait_for_timeout(800)
            page.keyboard.press("a")
            wait_for(queued, 2)
            expect(page.get_by_text("#1", exact=True)).to_have_count(0, timeout=30_000)   # the rerun is done
            expect(page.get_by_text("#3", exact=True)).to_have_count(1, timeout=30_000)
            page.get_by_text("#3", exact=True).click()
            page.wait_for_timeout(800)
            page.keyboard.press("x")
            wait_for(queued, 3)
        finally:
            b.browser.close()
    assert sorted((d["item_id"], d["decision"]) for d in decisions(queued)) == [
        (1, "accept"), (2, "accept"), (3, "reject")]


def _label(ws, item_id):
    from store import images as store_images
    from store import review as store_review

    with ws.connect() as db:
        image_id = store_review.item(db, item_id)["image_id"]
        return [p for p in store_images.persons_for_images(db, [image_id])[image_id]]


def _joint_xy(page, kpts, j):
    """The page coordinates of joint ``j`` as the canvas draws it."""
    v = view(page)
    box = page.locator(CANVAS).locator("canvas").bounding_box()
    return box["x"] + v["ox"] + kpts[j][0] * v["s"], box["y"] + v["oy"] + kpts[j][1] * v["s"]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_fix_by_dragging_joints_and_a_fix_that_changed_nothing(queued, viewport):
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    with serve(queued) as url, sync_playwright() as p:
        b = Browser(p, viewport)
        try:
            page = b.login(url)
            first = wait_item(page)
            # a fix that moves nothing is an accept, and the page says so
            page.keyboard.press("f")
            page.keyboard.press("Shift+A")
            wait_for(queued, 1)
            expect(page.get_by_text("changed no joint")).to_be_visible(timeout=30_000)
            second = wait_item(page, first)
            item_id = int(second.split("/")[0])
            k = np.asarray(_label(queued, item_id)[0]["keypoints"]).reshape(17, 3)
            # drag the left shoulder, then a wrist; Ctrl+Z takes the wrist move back
            x, y = _joint_xy(page, k, 5)
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 30, y + 20, steps=5)
            page.mouse.up()
            expect(page.locator(CANVAS)).to_have_attribute("data-fixing", "1")
            s = view(page)["s"]
            x, y = _joint_xy(page, k, 10)
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x - 25, y, steps=5)
            page.mouse.up()
            page.keyboard.press("Control+z")
            # click-select the right hip and cycle its visibility: visible -> occluded
            x, y = _joint_xy(page, k, 12)
            page.mouse.click(x, y)
            page.keyboard.press("v")
            page.keyboard.press("Shift+A")
            wait_for(queued, 2)
        finally:
            b.browser.close()
    got = decisions(queued)
    assert [d["decision"] for d in got] == ["accept", "fix"]
    assert got[0]["corrected_person_id"] is None
    fixed = next(p for p in _label(queued, item_id) if p["source"] == "corrected")
    kf = np.asarray(fixed["keypoints"]).reshape(17, 3)
    assert kf[5, :2] == pytest.approx(k[5, :2] + np.array([30, 20]) / s, abs=1.0)
    assert kf[10] == pytest.approx(k[10], abs=0.01)           # undone
    assert kf[12, 2] == 1 and kf[12, :2] == pytest.approx(k[12, :2], abs=0.01)
    assert (kf[[0, 1, 2, 3, 4, 6, 7, 8, 9, 11, 13, 14, 15, 16]] ==
            pytest.approx(k[[0, 1, 2, 3, 4, 6, 7, 8, 9, 11, 13, 14, 15, 16]], abs=0.01))


def _in_view(page, locator, viewport):
    box = locator.bounding_box()
    assert box is not None, locator
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport[1] + 0.5, (locator, box)
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport[0] + 0.5, (locator, box)
    return box


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_image_and_actions_in_view_zoom_pan_and_position(queued, viewport):
    """The whole image, the decision buttons, the reasons and the scores fit the window (also while
    fixing); zoom and pan work;
    the page says which item of how many this is."""
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    with serve(queued) as url, sync_playwright() as p:
        b = Browser(p, viewport)
        try:
            page = b.login(url)
            page.get_by_role("button", name="Accept").wait_for(timeout=30_000)
            page.wait_for_timeout(1000)
            _in_view(page, page.get_by_role("button", name="Accept"), viewport)
            _in_view(page, page.get_by_role("button", name="Reject"), viewport)
            _in_view(page, page.get_by_role("button", name="other"), viewport)
            stage = _in_view(page, page.locator(CANVAS).locator("canvas"), viewport)
            expect(page.get_by_text("Item 1 of 6")).to_be_visible()
            for fixing in (False, True):
                if fixing:
                    page.keyboard.press("f")
                    expect(page.locator(CANVAS)).to_have_attribute("data-fixing", "1")
                    _in_view(page, page.get_by_role("button", name="Accept corrected"), viewport)
                    _in_view(page, page.get_by_role("button", name="Cancel fix"), viewport)
                    _in_view(page, page.get_by_role("button", name="other"), viewport)
                v = view(page)
                # the whole image is drawn inside the canvas, as large as the canvas allows
                assert v["ox"] >= -0.5 and v["oy"] >= -0.5
                assert v["ox"] + v["w"] * v["s"] <= v["cw"] + 0.5 and v["oy"] + v["h"] * v["s"] <= v["ch"] + 0.5
                assert min(v["cw"] / v["w"], v["ch"] / v["h"]) == pytest.approx(v["s"], rel=1e-3)
                assert stage["height"] >= 0.55 * viewport[1]
            page.keyboard.press("Escape")
            s0 = view(page)["s"]
            page.keyboard.press("+")
            assert view(page)["s"] == pytest.approx(s0 * 1.25, rel=1e-3)
            box = page.locator(CANVAS).locator("canvas").bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(cx, cy)
            page.mouse.wheel(0, -200)
            page.wait_for_timeout(100)
            assert view(page)["s"] > s0 * 1.25 * 1.2
            v0 = view(page)
            page.mouse.move(box["x"] + 5, box["y"] + 5)            # the background, away from joints
            page.mouse.down()
            page.mouse.move(box["x"] + 65, box["y"] + 45, steps=4)
            page.mouse.up()
            v1 = view(page)
            assert (v1["ox"] - v0["ox"], v1["oy"] - v0["oy"]) == pytest.approx((60, 40), abs=1)
            page.keyboard.press("0")
            assert view(page)["s"] == pytest.approx(s0, rel=1e-3)
            before = shown_item(page)
            page.keyboard.press("a")
            wait_item(page, before)
            expect(page.get_by_text("Item 2 of 6")).to_be_visible()
        finally:
            b.browser.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_stats_are_readable(ws, tmp_path, viewport):
    """Dates instead of Unix times, human headers, and the raw agreement beside kappa."""
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    from engine import review

    queued_synthetic_workspace(ws, tmp_path, n=5, overlap_every=1)      # every item has two slots
    with ws.connect() as db:
        review.add_user(db, "boss", "admin", "admin-password")
        for name in ("u1", "u2"):
            for i, s in enumerate(review.lease(db, name, n=5)):
                d = "reject" if name == "u2" and i >= 3 else "accept"
                review.decide(db, name, s["item_id"], s["slot"], d, shown_at=time.time() - 2)
    with serve(ws) as url, sync_playwright() as p:
        b = Browser(p, viewport)
        try:
            page = b.login(url, "boss", "admin-password")
            page.get_by_text("Stats", exact=True).click()
            expect(page.get_by_text("60% raw agreement")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Cohen's kappa 0.00", exact=False)).to_be_visible()
            expect(page.get_by_role("columnheader", name="Seconds per decision")).to_be_visible()
            expect(page.get_by_role("columnheader", name="First decision")).to_be_visible()
            body = page.locator('[data-testid="stMain"]').inner_text()
        finally:
            b.browser.close()
    assert not re.search(r"\b1[6-9]\d{8}(\.\d+)?\b", body), "a Unix time is shown"
    assert "seconds_per_decision" not in body and "decisions_per_active_hour" not in body
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", body)
