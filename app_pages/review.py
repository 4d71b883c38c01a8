"""Review: the annotator's queue — one item large on the review canvas (zoom, pan, joints dragged
to fix them, hotkeys anywhere on the page), or a grid; undo; review statistics; conflicts (admins).

Decisions go straight to the database from callbacks; session state keeps only the UI position
(which actions of the canvas are stored, grid ticks), so a refresh or a crash loses nothing.
"""
import datetime
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from engine import media, review
from engine.errors import RealcalError
from store import curation as store_curation
from store import images as store_images
from store import review as store_review
from store import synthetic as store_synthetic
from ui.auth import page_user
from ui.common import overlay_thumbnail, persons_key, workspace
from ui.hotkeys import hotkeys, pressed
from ui.review_canvas import image_src, pending_actions, review_canvas, store_actions

ws = workspace(admin_only=False, check_user=False)
user = page_user(ws, admin_only=False)
ss = st.session_state
ss.setdefault("shown", {})
ss.setdefault("review_msg", None)
ss.setdefault("canvas_seen", {})
ss.setdefault("canvas_result", {})

CANVAS = "review_canvas"
LOOKAHEAD = 5            # leased items sent to the canvas, so the next one shows at once
GRID_KEYS = {"a": "accept", "x": "reject", "u": "undo"}


def _db_call(fn, *args, **kwargs):
    with ws.connect() as db:
        try:
            return fn(db, *args, **kwargs)
        except RealcalError as exc:
            ss.review_msg = str(exc)


def _key(s) -> str:
    return f"{s['item_id']}/{s['slot']}"


def on_canvas_action():
    """The canvas sent actions: store each new one in order; errors are shown on the canvas."""
    with ws.connect() as db:
        ss.canvas_result = store_actions(db, user["name"], pending_actions(CANVAS, ss.canvas_seen), ss.canvas_seen)


def on_undo():
    d = _db_call(review.undo, user["name"])
    ss.last = f"undid {d['decision']} on item {d['item_id']}" if d else "nothing to undo"


def on_grid(slots, decision):
    picked = [s for s in slots if ss.get(f"pick-{_key(s)}")]
    if not picked:
        ss.review_msg = "Select some images first."
        return
    ss.review_msg = None
    now = time.time()
    shown = min(ss.shown.get(_key(s), now) for s in picked)
    share = (now - shown) / len(picked)  # the grid's time, shared between its decisions
    for s in picked:
        _db_call(review.decide, user["name"], s["item_id"], s["slot"], decision, shown_at=now - share,
                 reasons=ss.get("grid_reasons", []) if decision == "reject" else [])
        ss.pop(f"pick-{_key(s)}", None)


def on_grid_key(slots):
    action = GRID_KEYS.get(pressed("grid_hotkeys") or "")
    if action == "undo":
        on_undo()
    elif action:
        on_grid(slots, action)


def _items(db, slots: list[dict]) -> list[dict]:
    """The canvas's view of the leased slots: image, label and teacher skeletons, scores."""
    ids = [s["image_id"] for s in slots]
    ims = {im["id"]: im for im in store_images.images_with_ids(db, ids)}
    people = store_images.persons_for_images(db, ids, ["conditioning", "corrected"])
    run = store_curation.latest_run(db)
    scores = store_review.curation_scores(db, run["id"], ids) if run else {i: [] for i in ids}
    out = []
    for s in slots:
        im = ims[s["image_id"]]
        rows = scores[im["id"]]
        pc = next((r for r in rows if r["stage"] == "pose_consistency" and r["details"]), None)
        found = (pc["details"].get("people") or []) if pc else []
        agreement = {p.get("person_id"): p.get("joint_agreement") for p in found}
        lineage = store_synthetic.lineage_for(db, im["id"])
        out.append({
            "key": _key(s), "item_id": s["item_id"], "slot": s["slot"], "image_id": im["id"], "rank": s["rank"],
            "w": im["width"], "h": im["height"],
            "src": image_src(str(media.image_path(ws.root, im["sha256"], im["ext"]))),
            "labels": [{"person_id": p["id"], "agree": agreement.get(p["id"]),
                        "kpts": np.asarray(p["keypoints"], float).reshape(17, 3).round(2).tolist()}
                       for p in people[im["id"]] if not p["iscrowd"]],
            "teacher": [np.asarray(p["detected"], float).reshape(17, 3).round(2).tolist()
                        for p in found if p.get("detected")],
            "scores": [{"stage": r["stage"].replace("_", " "), "status": r["status"],
                        "score": None if r["value"] is None else round(r["value"], 3)} for r in rows],
            "lineage": f"{lineage['generator']} · seed {lineage['seed']}" if lineage else None,
            "prompt": (lineage or {}).get("prompt"),
        })
    return out


def _when(ts: float | None) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""


REVIEWER_COLUMNS = {"decisions": "Decisions", "accepted": "Accepted", "active_s": "Active time (s)",
                    "idle": "Idle (capped)", "seconds_per_decision": "Seconds per decision",
                    "seconds_per_accepted": "Seconds per accepted",
                    "decisions_per_active_hour": "Decisions per active hour",
                    "honeypots": "Honeypots", "honeypots_caught": "Honeypots caught",
                    "honeypot_accuracy": "Honeypot accuracy", "first": "First decision", "last": "Last decision"}


def reviewer_rows(per_reviewer: dict[str, dict]) -> list[dict]:
    """Per-reviewer figures with readable headers and dates (first/last are Unix times)."""
    rows = []
    for name, v in per_reviewer.items():
        row: dict[str, Any] = {"Reviewer": name}
        for k, label in REVIEWER_COLUMNS.items():
            if k in v:
                row[label] = _when(v[k]) if k in ("first", "last") else (round(v[k], 1) if k == "active_s" else v[k])
        rows.append(row)
    return rows


def agreement_line(stats: dict) -> str:
    if not stats.get("overlap_pairs"):
        return "**Agreement**: n/a (no item has been reviewed by two people yet)."
    kappa = stats["cohen_kappa"]
    return (f"**Agreement** on {stats['overlap_pairs']} overlap items: {stats['raw_agreement']:.0%} raw agreement, "
            f"Cohen's kappa {kappa:.2f}" + (" (kappa is 0 or below when agreement is no better than chance, "
                                             "e.g. when nearly every item gets the same decision)"
                                             if kappa is not None and kappa <= 0 else ""))


st.title("Review")
views = ["Queue", "Stats"] + (["Conflicts"] if user["role"] == "admin" else [])
top: Sequence[DeltaGenerator] = st.columns([1, 1])
with top[0]:
    view = st.segmented_control("View", views, default="Queue", label_visibility="collapsed") or "Queue"

with ws.connect() as db:
    prog = store_review.progress(db, user["name"])
total_items = sum(v for k, v in prog.items() if k.startswith("items_"))
with st.sidebar:
    m: Sequence[DeltaGenerator] = st.columns(2)
    m[0].metric("Done by you", prog["done_by_me"])
    m[1].metric("Open slots", prog["open_slots"])
    m[0].metric("Accepted", prog.get("items_accepted", 0))
    m[1].metric("Rejected / conflicts", f"{prog.get('items_rejected', 0)} / {prog.get('items_conflict', 0)}")
if ss.review_msg:
    st.warning(ss.review_msg)

if view == "Stats":
    with ws.connect() as db:
        stats = review.stats_for(db, user)     # annotators: their own figures only
    if not stats["decisions"]:
        st.info("No review data yet.")
        st.stop()
    if stats["scope"] == "own":
        st.caption("Your own review figures (reviewer statistics are for admins).")
        st.table(reviewer_rows(stats["per_reviewer"]), hide_index=True)
        st.stop()
    spa = stats["seconds_per_accepted_image"]
    st.metric("Seconds per accepted image", "n/a" if spa is None else spa)
    st.markdown(agreement_line(stats))
    st.table(reviewer_rows(stats["per_reviewer"]), hide_index=True)
    st.table([{"Generator": k, "Acceptance": f"{v:.0%}"} for k, v in stats["acceptance_by_generator"].items()],
                 hide_index=True)
    st.table([{"Batch": k, "Acceptance": f"{v:.0%}"} for k, v in stats["acceptance_by_batch"].items()],
                 hide_index=True)
    for axis, vals in stats["acceptance_by_prompt_axis"].items():
        st.caption(f"Acceptance by prompt {axis.replace('_', ' ')}")
        st.table([{axis.replace("_", " ").capitalize(): k, "Acceptance": f"{v:.0%}"} for k, v in vals.items()],
                     hide_index=True)
    if stats["reject_reasons"]:
        st.caption("Reject reasons")
        st.bar_chart(stats["reject_reasons"], x_label="Reason", y_label="Rejections")
    st.stop()

if view == "Conflicts":
    with ws.connect() as db:
        items = store_review.conflicts(db)
        decisions = {it["id"]: store_review.live_decisions(db, item_id=it["id"]) for it in items}
        ims = {im["id"]: im for im in store_images.images_with_ids(db, [it["image_id"] for it in items])}
        persons = store_images.persons_for_images(db, [it["image_id"] for it in items])
    if not items:
        st.info("No conflicts.")
    for it in items:
        im = ims[it["image_id"]]
        cols: Sequence[DeltaGenerator] = st.columns([1, 3])
        cols[0].image(overlay_thumbnail(str(ws.root), im["sha256"], im["width"], im["height"],
                                        persons_key(persons[im["id"]])), width="stretch")
        cols[1].markdown("  \n".join(f"**{d['user']}**: {d['decision']} {', '.join(d['reasons'])}"
                                     for d in decisions[it["id"]]))
        b: Sequence[DeltaGenerator] = cols[1].columns(2)
        b[0].button("Accept", key=f"ca-{it['id']}", on_click=_db_call,
                    args=(review.resolve_conflict, user["name"], it["id"], "accept"))
        b[1].button("Reject", key=f"cr-{it['id']}", on_click=_db_call,
                    args=(review.resolve_conflict, user["name"], it["id"], "reject"))
    st.stop()

with top[1]:
    mode = st.radio("Mode", ["One at a time", "Grid"], horizontal=True, label_visibility="collapsed")
if mode == "Grid":
    with ws.connect() as db:
        slots = review.lease(db, user["name"], n=24)
        ims = {im["id"]: im for im in store_images.images_with_ids(db, [s["image_id"] for s in slots])}
        persons = store_images.persons_for_images(db, [s["image_id"] for s in slots])
    hotkeys("grid_hotkeys", list(GRID_KEYS), on_press=lambda: on_grid_key(slots))
    if not slots:
        st.success("The queue is empty. Thank you!")
        st.button("Undo last", on_click=on_undo)
        st.stop()
    st.caption("Tick images, then **A** accepts and **X** rejects the ticked ones (with the reasons chosen below); "
               "**U** undoes your last decision. The keys work wherever focus is, except in a text field.")
    cols = st.columns(6)
    for i, s in enumerate(slots):
        ss.shown.setdefault(_key(s), time.time())
        im = ims[s["image_id"]]
        with cols[i % 6]:
            st.image(overlay_thumbnail(str(ws.root), im["sha256"], im["width"], im["height"],
                                       persons_key(persons[im["id"]])), width="stretch")
            st.checkbox(f"#{im['id']}", key=f"pick-{_key(s)}")
    st.multiselect("Reject reasons", review.REASON_TAGS, key="grid_reasons")
    b = st.columns(3)
    b[0].button("Accept selected", on_click=on_grid, args=(slots, "accept"), type="primary")
    b[1].button("Reject selected", on_click=on_grid, args=(slots, "reject"))
    b[2].button("Undo last", on_click=on_undo)
    if ss.get("last"):
        st.caption(f"Last: {ss.last}")
    st.stop()

now = time.time()
with ws.connect() as db:
    slots = review.lease(db, user["name"], n=LOOKAHEAD, now=now)
    items = _items(db, slots)
    open_n = store_review.open_item_count(db, user["name"], now)
    can_build = user["role"] == "admin" and store_curation.latest_run(db) is not None
if not slots:
    st.success("The queue is empty. Thank you!" if total_items else
               "Nothing to review yet: an admin queues curated images with `realcal review build`.")
    if can_build:
        def _build():
            r = _db_call(lambda db_: review.build_queue(ws, db_, overlap=review.DEFAULT_OVERLAP))
            ss.last = f"queued {r['added']} items" if r else None

        st.button("Queue the latest curation order", on_click=_build)
review_canvas({"items": items, "reasons": list(review.REASON_TAGS), "done": prog["done_by_me"], "open": open_n,
               "ack": ss.canvas_seen.get("ack", 0), "ack_session": ss.canvas_seen.get("session"),
               **ss.canvas_result}, key=CANVAS, on_action=on_canvas_action)
