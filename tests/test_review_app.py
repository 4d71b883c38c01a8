"""The Review page through AppTest: decisions from buttons, undo, grid, roles."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine import review
from store import review as store_review
from tests.helpers import queued_synthetic_workspace

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def rws(ws, tmp_path, monkeypatch):
    queued_synthetic_workspace(ws, tmp_path, n=6)
    with ws.connect() as db:
        review.add_user(db, "ann", "annotator", "annotator-pass")
        review.add_user(db, "boss", "admin", "admin-password")
    monkeypatch.setenv("REALCAL_WORKSPACE", str(ws.root))
    import engine.worker

    monkeypatch.setattr(engine.worker, "ensure_worker", lambda ws: None)
    return ws


def _page(path, user):
    at = AppTest.from_file(str(REPO / path), default_timeout=60)
    at.session_state["realcal_user"] = user
    at.run()
    assert not at.exception, at.exception
    return at


ANN = {"name": "ann", "role": "annotator", "single_user": False}


def _decisions(ws):
    with ws.connect() as db:
        return [(d["user"], d["decision"], d["reasons"]) for d in store_review.live_decisions(db)]


def _metric(at, label):
    return next(m.value for m in at.sidebar.metric if m.label == label)


def test_annotator_reviews_through_the_canvas_actions_and_undoes(rws):
    """The canvas (a browser component, not rendered by AppTest) sends actions; they are stored
    through engine.review exactly as the page's callback stores them, once each, in order."""
    from ui.review_canvas import store_actions

    at = _page("app_pages/review.py", ANN)
    assert _metric(at, "Open slots") == "6" and _metric(at, "Done by you") == "0"
    with rws.connect() as db:
        slots = review.lease(db, "ann", n=5)
    a = [{"seq": 1, "action": "accept", "item_id": slots[0]["item_id"], "slot": 0, "elapsed_ms": 1500},
         {"seq": 2, "action": "reject", "item_id": slots[1]["item_id"], "slot": 0, "reasons": ["artefact"]},
         {"seq": 3, "action": "undo"},
         {"seq": 4, "action": "skip", "item_id": slots[2]["item_id"], "slot": 0},
         {"seq": 5, "action": "accept", "item_id": 999, "slot": 0}]
    seen = {"session": "s", "ack": 0}
    with rws.connect() as db:
        r = store_actions(db, "ann", a, seen)
        assert store_actions(db, "ann", [], seen) == {"msg": None, "note": None}
    assert seen["ack"] == 5 and "no review slot 999/0" in r["msg"] and "Undid reject" in r["note"]
    assert _decisions(rws) == [("ann", "accept", [])]
    with rws.connect() as db:
        first = store_review.live_decisions(db)[0]
    assert first["active_s"] == pytest.approx(1.5, abs=0.5)             # timed in the browser
    at.run()
    assert not at.exception
    assert _metric(at, "Done by you") == "1" and _metric(at, "Open slots") == "5"


def test_canvas_actions_are_stored_once_and_a_new_browser_session_starts_afresh(monkeypatch):
    from ui import review_canvas

    state = {"c": {"action": {"session": "a", "actions": [{"seq": 1}, {"seq": 2}, {"seq": 3}]}}}
    monkeypatch.setattr(review_canvas.st, "session_state", state)
    seen: dict = {}
    assert [x["seq"] for x in review_canvas.pending_actions("c", seen)] == [1, 2, 3]
    seen["ack"] = 2                                      # a resent trigger repeats 3 only
    assert [x["seq"] for x in review_canvas.pending_actions("c", seen)] == [3]
    state["c"] = {"action": {"session": "b", "actions": [{"seq": 1}]}}
    assert [x["seq"] for x in review_canvas.pending_actions("c", seen)] == [1] and seen["ack"] == 0
    state["c"] = {"action": None}
    assert review_canvas.pending_actions("c", seen) == []


def test_small_images_reach_the_browser_unscaled(tmp_path):
    """The browser scales small images smoothly; the server never enlarges them (blocky pixels)."""
    import base64
    import io

    from PIL import Image

    from tests.helpers import write_image
    from ui.review_canvas import MAX_SIDE, image_src

    small = write_image(tmp_path / "s.jpg", size=(64, 48))
    src = image_src(str(small))
    assert src.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(src.split(",", 1)[1]) == small.read_bytes()
    big = write_image(tmp_path / "b.png", size=(MAX_SIDE * 2, 100), fmt="PNG")
    with Image.open(io.BytesIO(base64.b64decode(image_src(str(big)).split(",", 1)[1]))) as im:
        assert im.size == (MAX_SIDE, 50)


def test_grid_mode_decides_many(rws):
    at = _page("app_pages/review.py", ANN)
    at.radio[0].set_value("Grid").run()
    for cb in at.checkbox[:3]:
        cb.check()
    at.run()
    next(b for b in at.button if b.label == "Accept selected").click().run()
    assert not at.exception
    assert [d[1] for d in _decisions(rws)] == ["accept"] * 3
    assert not any(b.label == "Accept" for b in at.button)   # the conflicts' buttons are not here


def test_annotator_cannot_open_admin_pages(rws):
    for page in ("data", "jobs", "settings", "generate", "curate", "train", "results"):
        at = _page(f"app_pages/{page}.py", ANN)
        assert any("for admins" in e.value for e in at.error), page
    at = _page("app_pages/review.py", ANN)
    assert "Conflicts" not in str(at.get("button_group"))


def test_pages_refuse_without_login_when_users_exist(rws):
    at = AppTest.from_file(str(REPO / "app_pages/review.py"), default_timeout=60)
    at.run()
    assert any("log in" in e.value for e in at.error)


def test_stats_view_says_no_data_then_shows_figures(rws):
    at = _page("app_pages/review.py", {"name": "boss", "role": "admin", "single_user": False})
    at.segmented_control[0].set_value("Stats").run()
    assert any("No review data yet" in i.value for i in at.info)


def test_stats_show_dates_headers_and_raw_agreement(rws):
    import time

    with rws.connect() as db:
        db.execute("UPDATE review_items SET slots = 2")
        for it in db.query("SELECT id FROM review_items"):
            db.execute("INSERT OR IGNORE INTO review_slots (item_id, slot) VALUES (?, 1)", [it["id"]])
        db.conn.commit()
        for name in ("u1", "u2"):
            for i, s in enumerate(review.lease(db, name, n=5)):
                d = "reject" if name == "u2" and i >= 3 else "accept"
                review.decide(db, name, s["item_id"], s["slot"], d, shown_at=time.time() - 2)
        st = review.stats(db)
    assert st["raw_agreement"] == 0.6 and st["cohen_kappa"] == pytest.approx(0.0)
    at = _page("app_pages/review.py", {"name": "boss", "role": "admin", "single_user": False})
    at.segmented_control[0].set_value("Stats").run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "60% raw agreement" in text and "Cohen's kappa 0.00" in text
    table = at.table[0].value
    assert {"Reviewer", "Decisions", "Seconds per decision", "First decision", "Last decision"} <= set(table.columns)
    assert all(len(v) == 16 and v[4] == "-" for v in table["First decision"])      # 2026-01-31 12:00
