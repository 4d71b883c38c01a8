"""Data page queries: filters on review state and curation scores, one query per page, and queueing a selection."""
import pytest

from engine import review
from engine.errors import RealcalError
from engine.io import parse
from engine.io.common import run_import
from store import browse
from store import curation as store_curation
from tests.helpers import make_coco, queued_synthetic_workspace


@pytest.fixture
def browse_ws(ws, tmp_path):
    queued_synthetic_workspace(ws, tmp_path, 3)                                            # #1-#3 queued
    run_import(ws, parse("coco", make_coco(tmp_path / "real", n=4, seed=5)), split="val")   # #4-#7
    with ws.connect() as db:
        with db.conn:
            db.execute("UPDATE review_items SET state = 'accepted' WHERE image_id = 2")
            run_id = store_curation.create_run(db, None, {})
            store_curation.put_results(db, run_id, "quality", [
                {"image_id": i, "status": "pass", "value": 10.0 * i} for i in (1, 2, 3)])
            store_curation.put_results(db, run_id, "clip", [
                {"image_id": i, "status": "unavailable", "value": None, "reason": "no weights"} for i in (1, 2, 3)])
    return ws, run_id


def test_filters_on_review_state_and_score_range(browse_ws):
    ws, run_id = browse_ws
    with ws.connect() as db:
        assert browse.count_filtered(db) == 7
        assert browse.count_filtered(db, review=["not queued"]) == 4
        assert browse.count_filtered(db, review=["accepted"]) == 1
        assert browse.count_filtered(db, review=["not queued", "open"]) == 6
        assert browse.ids_filtered(db, score=(run_id, "quality", 15, 30)) == [2, 3]
        assert browse.count_filtered(db, kinds=["real"], score=(run_id, "quality", 0, 100)) == 0
        page = browse.list_filtered(db, limit=2, offset=2, kinds=["real"])
        assert [r["id"] for r in page] == [6, 7]
        assert browse.score_stages(db, run_id) == {"quality": (10.0, 30.0)}
        summary = browse.review_summary(db, [1, 2, 4])
        assert set(summary) == {1, 2} and summary[2]["state"] == "accepted" and summary[1]["decisions"] == 0
        scores = browse.curation_scores(db, run_id, [1, 4])
        assert [c["stage"] for c in scores[1]] == ["quality", "clip"] and scores[4] == []
        assert browse.review_history(db, 1) == []
        with pytest.raises(ValueError, match="unknown review state"):
            browse.count_filtered(db, review=["maybe"])


def test_queue_images_appends_a_selection_after_the_queue(browse_ws):
    ws, _ = browse_ws
    with ws.connect() as db:
        with db.conn:
            db.execute("DELETE FROM review_slots WHERE item_id IN (SELECT id FROM review_items WHERE image_id >= 2)")
            db.execute("DELETE FROM review_items WHERE image_id >= 2")
        out = review.queue_images(db, [3, 5, 2, 1, 99], user="ada")
        assert out == {"added": 2, "already_queued": 1, "real": 1, "unknown": [99]}
        ranks = {r["image_id"]: r["rank"] for r in db.query("SELECT image_id, rank FROM review_items")}
        assert set(ranks) == {1, 2, 3} and ranks[2] > ranks[1] and ranks[3] == ranks[2] + 1
        assert db.execute("SELECT COUNT(*) FROM review_audit WHERE action = 'queue.add' AND user = 'ada'"
                          ).fetchone()[0] == 1
        with pytest.raises(RealcalError, match="nothing selected"):
            review.queue_images(db, [])
