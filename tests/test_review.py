"""Review queue: leases under concurrency, decisions, undo, fixes, idle capping, conflicts, stats."""
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from engine import review
from engine.cli import main
from engine.errors import RealcalError
from store import images as store_images
from store import review as store_review
from tests.helpers import queued_synthetic_workspace


@pytest.fixture
def queue_ws(ws, tmp_path):
    """40 synthetic images with one conditioning person each, queued; every 4th has two slots."""
    queued_synthetic_workspace(ws, tmp_path, n=40, overlap_every=4)
    return ws


def _reviewer(ws, name, decisions, errors, choose):
    with ws.connect() as db:
        while True:
            leased = review.lease(db, name, n=3)
            if not leased:
                return
            for s in leased:
                try:
                    d = choose(name, s)
                    review.decide(db, name, s["item_id"], s["slot"], d, shown_at=time.time() - 0.5,
                                  reasons=["anatomy"] if d == "reject" else [])
                    decisions.append((name, s["item_id"], s["slot"], d))
                except Exception as exc:  # noqa: BLE001 - collected and asserted on
                    errors.append(repr(exc))
                    return  # a failing reviewer stops, so the test fails instead of spinning


def test_eight_concurrent_reviewers(queue_ws):
    decisions, errors = [], []
    choose = lambda name, s: "accept" if (s["item_id"] + int(name[1:])) % 3 else "reject"  # noqa: E731
    threads = [threading.Thread(target=_reviewer, args=(queue_ws, f"r{i}", decisions, errors, choose))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    with queue_ws.connect() as db:
        slots = list(db.query("SELECT item_id, slot, decided_by FROM review_slots"))
        live = store_review.live_decisions(db)
        items = {r["id"]: r for r in db.query("SELECT * FROM review_items")}
    assert len(slots) == 50 and all(s["decided_by"] for s in slots)
    assert len(live) == len(decisions) == 50                       # no decision lost or doubled
    assert len({(d["item_id"], d["slot"]) for d in live}) == 50    # never two decisions on one slot
    for item_id, it in items.items():
        mine = [d for d in live if d["item_id"] == item_id]
        if it["slots"] == 2:
            assert len({d["user"] for d in mine}) == 2             # two different people
        states = {d["decision"] for d in mine}
        expected = "accepted" if states == {"accept"} else "rejected" if states == {"reject"} else "conflict"
        assert it["state"] == expected


def test_expired_lease_returns_to_the_queue(queue_ws):
    with queue_ws.connect() as db:
        t0 = time.time()
        a = review.lease(db, "alice", n=2, now=t0)
        b = review.lease(db, "bob", n=2, now=t0)
        assert {(s["item_id"], s["slot"]) for s in a}.isdisjoint({(s["item_id"], s["slot"]) for s in b})
        later = review.lease(db, "carol", n=60, now=t0 + review.LEASE_S + 1)
        got = {(s["item_id"], s["slot"]) for s in later}
        assert {(s["item_id"], s["slot"]) for s in a} <= got
        with pytest.raises(RealcalError, match="not leased to you"):
            review.decide(db, "alice", a[0]["item_id"], a[0]["slot"], "accept", shown_at=t0)


def test_undo_fix_idle_and_conflict(queue_ws):
    with queue_ws.connect() as db:
        s = review.lease(db, "ann", n=1)[0]
        item = store_review.item(db, s["item_id"])
        assert item["slots"] == 2                                  # rank 1 is an overlap item
        r = review.decide(db, "ann", s["item_id"], s["slot"], "accept", shown_at=time.time() - 500)
        assert r["idle"] and r["active_s"] == review.DEFAULT_IDLE_CAP_S
        undone = review.undo(db, "ann")
        assert undone["id"] == r["decision_id"]
        assert store_review.slot(db, s["item_id"], s["slot"])["lease_user"] == "ann"
        persons = store_images.persons_for_images(db, [item["image_id"]])[item["image_id"]]
        k = np.asarray(persons[0]["keypoints"]).reshape(17, 3)
        k[5, :2] += 7
        k[9] = 0                                                   # marked invisible
        r = review.decide(db, "ann", s["item_id"], s["slot"], "fix", shown_at=time.time() - 2, keypoints=k)
        corrected = [p for p in store_images.persons_for_images(db, [item["image_id"]])[item["image_id"]]
                     if p["source"] == "corrected"]
        assert len(corrected) == 1 and corrected[0]["id"] == r["corrected_person_id"]
        assert np.allclose(np.asarray(corrected[0]["keypoints"]).reshape(17, 3)[5, :2], k[5, :2])
        assert corrected[0]["num_keypoints"] == persons[0]["num_keypoints"] - 1
        other = next(x for x in review.lease(db, "ben", n=5) if x["item_id"] == s["item_id"])
        assert review.decide(db, "ben", other["item_id"], other["slot"], "reject",
                             shown_at=time.time(), reasons=["pose mismatch"])["state"] == "conflict"
        assert [c["id"] for c in store_review.conflicts(db)] == [s["item_id"]]
        review.resolve_conflict(db, "admin", s["item_id"], "accept")
        assert store_review.item(db, s["item_id"])["state"] == "accepted"
        with pytest.raises(RealcalError, match="settled"):
            review.undo(db, "ben")
        # an undo of a fix removes the corrected person
        s2 = review.lease(db, "cat", n=1)[0]
        it2 = store_review.item(db, s2["item_id"])
        review.decide(db, "cat", s2["item_id"], s2["slot"], "fix", shown_at=time.time(), keypoints=k)
        review.undo(db, "cat")
        assert not [p for p in store_images.persons_for_images(db, [it2["image_id"]])[it2["image_id"]]
                    if p["source"] == "corrected"]
        audit = [r["action"] for r in db.query("SELECT action FROM review_audit ORDER BY id")]
        assert audit.count("undo") == 2 and "resolve" in audit
        with pytest.raises(Exception, match="append-only"):
            db.execute("DELETE FROM review_audit")


def test_stats_and_kappa(queue_ws):
    assert review.cohen_kappa([("accept", "accept"), ("reject", "reject")]) == 1.0
    assert review.cohen_kappa([("accept", "reject"), ("reject", "accept")]) == pytest.approx(-1.0)
    with queue_ws.connect() as db:
        assert review.stats(db) == {"decisions": 0}
        for name in ("u1", "u2"):
            for s in review.lease(db, name, n=4):
                review.decide(db, name, s["item_id"], s["slot"], "accept", shown_at=time.time() - 3)
        st = review.stats(db)
        assert st["decisions"] == 8 and set(st["per_reviewer"]) == {"u1", "u2"}
        assert st["per_reviewer"]["u1"]["seconds_per_decision"] == pytest.approx(3, abs=0.5)


def test_user_commands(ws):
    run = lambda *a, **k: CliRunner().invoke(main, ["-w", str(ws.root), *a], **k)  # noqa: E731
    r = run("user", "add", "ann", "--role", "annotator", "--password-stdin", input="correct-horse\n")
    assert r.exit_code == 0, r.output
    assert run("user", "add", "ann", "--role", "admin", "--password-stdin", input="x" * 9 + "\n").exit_code == 1
    assert "at least 8" in run("user", "add", "bo", "--role", "admin", "--password-stdin", input="short\n").output
    assert "annotator" in run("user", "list").output
    with ws.connect() as db:
        assert review.authenticate(db, "ann", "correct-horse") == {"name": "ann", "role": "annotator"}
        assert review.authenticate(db, "ann", "wrong-password") is None
        stored = store_review.user(db, "ann")["password_hash"]
        assert stored.startswith("$2") and "correct-horse" not in stored
    assert run("user", "disable", "ann").exit_code == 0
    with ws.connect() as db:
        assert review.authenticate(db, "ann", "correct-horse") is None
    assert run("user", "passwd", "nobody", "--password-stdin", input="longenough\n").exit_code == 1
    assert run("review", "stats").output.strip() == "no review data yet"


def test_a_fix_that_changed_nothing_is_a_plain_accept(queue_ws):
    """A fix with the label's own keypoints (or within half a pixel of them) stores no
    ``corrected`` copy: it is an accept, and the result says why."""
    with queue_ws.connect() as db:
        s = review.lease(db, "ann", n=1)[0]
        image_id = store_review.item(db, s["item_id"])["image_id"]
        label = np.asarray(store_images.persons_for_images(db, [image_id])[image_id][0]["keypoints"]).reshape(17, 3)
        nudged = label.copy()
        nudged[5, :2] += 0.2                                      # a click on the joint itself
        r = review.decide(db, "ann", s["item_id"], s["slot"], "fix", shown_at=time.time(), keypoints=nudged)
        assert r["decision"] == "accept" and r["corrected_person_id"] is None
        assert "changed no joint" in r["note"]
        assert [p["source"] for p in store_images.persons_for_images(db, [image_id])[image_id]] == ["conditioning"]
        assert [d["decision"] for d in store_review.live_decisions(db)] == ["accept"]
        # a visibility change alone is a real fix
        s2 = next(x for x in review.lease(db, "ann", n=2) if x["item_id"] != s["item_id"])
        image2 = store_review.item(db, s2["item_id"])["image_id"]
        k2 = np.asarray(store_images.persons_for_images(db, [image2])[image2][0]["keypoints"]).reshape(17, 3)
        k2[9, 2] = 1
        r2 = review.decide(db, "ann", s2["item_id"], s2["slot"], "fix", shown_at=time.time(), keypoints=k2)
        assert r2["decision"] == "fix" and r2["corrected_person_id"] and "note" not in r2


def test_open_item_count_follows_leases_decisions_and_skips(queue_ws):
    with queue_ws.connect() as db:
        now = time.time()
        assert store_review.open_item_count(db, "ann", now) == 40
        s = review.lease(db, "ann", n=3, now=now)
        assert store_review.open_item_count(db, "ann", now) == 40   # leased to ann: still hers to do
        # the first item has two slots: its second one is free for ben
        assert store_review.open_item_count(db, "ben", now) == 38
        review.decide(db, "ann", s[0]["item_id"], s[0]["slot"], "accept", shown_at=now, now=now)
        review.skip(db, "ann", s[1]["item_id"], s[1]["slot"])
        assert store_review.open_item_count(db, "ann", now) == 38
