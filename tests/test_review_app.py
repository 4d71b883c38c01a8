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


def test_annotator_reviews_with_buttons_and_undoes(rws):
    at = _page("app_pages/review.py", ANN)
    assert any(m.label == "Open slots" and m.value == "6" for m in at.metric)
    next(b for b in at.button if b.label == "Accept").click().run()
    assert not at.exception
    next(b for b in at.button if b.label == "Reject").click().run()
    assert _decisions(rws) == [("ann", "accept", []), ("ann", "reject", [])]
    next(b for b in at.button if b.label == "Undo").click().run()
    assert _decisions(rws) == [("ann", "accept", [])]
    next(b for b in at.button if b.label == "Skip").click().run()
    assert not at.exception


def test_grid_mode_decides_many(rws):
    at = _page("app_pages/review.py", ANN)
    at.radio[0].set_value("Grid").run()
    for cb in at.checkbox[:3]:
        cb.check()
    at.run()
    next(b for b in at.button if b.label == "Accept selected").click().run()
    assert not at.exception
    assert [d[1] for d in _decisions(rws)] == ["accept"] * 3


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
