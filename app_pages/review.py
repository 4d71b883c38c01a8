"""Review: the annotator's queue — one item large with overlays and hotkeys, or a grid; fixes by
clicking on the image; undo; review statistics; conflicts (admins).

Decisions go straight to the database from button callbacks; session state keeps only the UI
position (which item is shown, since when, a fix in progress), so a refresh loses nothing.
"""
import time
from collections.abc import Sequence

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from engine import media, poses, review
from engine.errors import RealcalError
from store import curation as store_curation
from store import images as store_images
from store import review as store_review
from store import synthetic as store_synthetic
from ui.auth import page_user
from ui.common import overlay_thumbnail, persons_key, workspace
from ui.review_view import render_item

ws = workspace(admin_only=False, check_user=False)
user = page_user(ws, admin_only=False)
ss = st.session_state
ss.setdefault("shown", {})
ss.setdefault("review_msg", None)
ss.setdefault("fix", None)

HOTKEYS = [("A", "accept"), ("X", "reject (with the selected reason tags)"), ("S", "skip"),
           ("F", "fix mode: click to move the selected joint"), ("I", "fix: mark the joint invisible"),
           ("Shift+A", "fix: accept the corrected label"), ("U", "undo your last decision")]


def _db_call(fn, *args, **kwargs):
    with ws.connect() as db:
        try:
            return fn(db, *args, **kwargs)
        except RealcalError as exc:
            ss.review_msg = str(exc)


def _key(s) -> str:
    return f"{s['item_id']}/{s['slot']}"


def on_decide(s, decision):
    reasons = ss.get("reasons", []) if decision == "reject" else []
    kpts = ss.fix["keypoints"] if decision == "fix" and ss.fix else None
    pid = ss.fix["person_id"] if decision == "fix" and ss.fix else None
    r = _db_call(review.decide, user["name"], s["item_id"], s["slot"], decision,
                 shown_at=ss.shown.get(_key(s), time.time()), reasons=reasons, keypoints=kpts, person_id=pid)
    if r:
        ss.review_msg = None
        ss.fix = None
        ss.last = f"{decision} #{s['image_id']}"


def on_skip(s):
    _db_call(review.skip, user["name"], s["item_id"], s["slot"])
    ss.fix = None


def on_undo():
    d = _db_call(review.undo, user["name"])
    ss.fix = None
    ss.last = f"undid {d['decision']} on item {d['item_id']}" if d else "nothing to undo"


def on_grid(slots, decision):
    picked = [s for s in slots if ss.get(f"pick-{_key(s)}")]
    if not picked:
        ss.review_msg = "Select some images first."
        return
    now = time.time()
    shown = min(ss.shown.get(_key(s), now) for s in picked)
    share = (now - shown) / len(picked)  # the grid's time, shared between its decisions
    for s in picked:
        _db_call(review.decide, user["name"], s["item_id"], s["slot"], decision, shown_at=now - share,
                 reasons=ss.get("grid_reasons", []) if decision == "reject" else [])
        ss.pop(f"pick-{_key(s)}", None)


st.title("Review")
views = ["Queue", "Stats"] + (["Conflicts"] if user["role"] == "admin" else [])
view = st.segmented_control("View", views, default="Queue", label_visibility="collapsed") or "Queue"

with ws.connect() as db:
    prog = store_review.progress(db, user["name"])
total_items = sum(v for k, v in prog.items() if k.startswith("items_"))
c = st.columns(4)
c[0].metric("Done by you", prog["done_by_me"])
c[1].metric("Open slots", prog["open_slots"])
c[2].metric("Accepted", prog.get("items_accepted", 0))
c[3].metric("Rejected / conflicts", f"{prog.get('items_rejected', 0)} / {prog.get('items_conflict', 0)}")
with st.sidebar.expander("Hotkeys", expanded=False):
    st.markdown("\n".join(f"- **{k}**: {v}" for k, v in HOTKEYS))
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
        st.dataframe([{"reviewer": k, **v} for k, v in stats["per_reviewer"].items()], hide_index=True)
        st.stop()
    st.metric("Seconds per accepted image", stats["seconds_per_accepted_image"])
    st.markdown(f"**Agreement** on {stats['overlap_pairs']} overlap items: Cohen's kappa = "
                f"{stats['cohen_kappa'] if stats['cohen_kappa'] is not None else 'n/a (no overlap pairs yet)'}")
    st.dataframe([{"reviewer": k, **v} for k, v in stats["per_reviewer"].items()], hide_index=True)
    st.dataframe([{"generator": k, "acceptance": v} for k, v in stats["acceptance_by_generator"].items()],
                 hide_index=True)
    st.dataframe([{"batch": k, "acceptance": v} for k, v in stats["acceptance_by_batch"].items()], hide_index=True)
    for axis, vals in stats["acceptance_by_prompt_axis"].items():
        st.caption(f"Acceptance by prompt {axis}")
        st.dataframe([{axis: k, "acceptance": v} for k, v in vals.items()], hide_index=True)
    if stats["reject_reasons"]:
        st.bar_chart(stats["reject_reasons"])
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

mode = st.radio("Mode", ["One at a time", "Grid"], horizontal=True, label_visibility="collapsed")
if mode == "Grid":
    with ws.connect() as db:
        slots = review.lease(db, user["name"], n=24)
        ims = {im["id"]: im for im in store_images.images_with_ids(db, [s["image_id"] for s in slots])}
        persons = store_images.persons_for_images(db, [s["image_id"] for s in slots])
    if not slots:
        st.success("The queue is empty. Thank you!")
        st.button("Undo last", on_click=on_undo, shortcut="U")
        st.stop()
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
    b[0].button("Accept selected", on_click=on_grid, args=(slots, "accept"), type="primary", shortcut="A")
    b[1].button("Reject selected", on_click=on_grid, args=(slots, "reject"), shortcut="X")
    b[2].button("Undo last", on_click=on_undo, shortcut="U")
    st.stop()

with ws.connect() as db:
    slots = review.lease(db, user["name"], n=5)
    if not slots:
        st.success("The queue is empty. Thank you!" if total_items else
                   "Nothing to review yet: an admin queues curated images with `realcal review build`.")
        if user["role"] == "admin" and store_curation.latest_run(db) is not None:
            def _build():
                r = _db_call(lambda db_: review.build_queue(ws, db_, overlap=review.DEFAULT_OVERLAP))
                ss.last = f"queued {r['added']} items" if r else None

            st.button("Queue the latest curation order", on_click=_build)
        st.button("Undo last", on_click=on_undo, shortcut="U")
        st.stop()
    s = slots[0]
    im = store_images.images_with_ids(db, [s["image_id"]])[0]
    people = store_images.persons_for_images(db, [im["id"]])[im["id"]]
    lineage = store_synthetic.lineage_for(db, im["id"])
    run = store_curation.latest_run(db)
    scores = [r for r in store_curation.results(db, run["id"]) if r["image_id"] == im["id"]] if run else []
ss.shown.setdefault(_key(s), time.time())

cond = [p for p in people if p["source"] in ("conditioning", "corrected")]
pc = next((r for r in scores if r["stage"] == "pose_consistency"), None)
detected = [np.asarray(p["detected"], float) for p in (pc["details"]["people"] if pc else []) if p["detected"]]
agreement = {p["person_id"]: p["joint_agreement"] for p in (pc["details"]["people"] if pc else [])}

t = st.columns([1, 1, 2])
show_cond = t[0].toggle("Label skeleton", value=True)
show_det = t[1].toggle("Teacher skeleton", value=bool(detected))
fixing = ss.fix is not None and ss.fix.get("key") == _key(s)
joint = None
if fixing:
    joint = t[2].selectbox("Joint to move (click the image)", range(17), format_func=lambda j: poses.KEYPOINT_NAMES[j],
                           key="fix_joint")
kpts = [np.asarray(ss.fix["keypoints"], float)] if fixing else [poses.as_keypoints(p["keypoints"]) for p in cond]
colours = None if fixing else [agreement.get(p["id"]) for p in cond]
img, scale = render_item(str(media.image_path(ws.root, im["sha256"], im["ext"])),
                         tuple(tuple(map(tuple, k.round(2))) for k in kpts) if show_cond else (),
                         tuple(tuple(map(tuple, d.round(2))) for d in detected) if show_det else (),
                         tuple(tuple(c) if c else None for c in colours) if colours else None, joint)
main_col, side = st.columns([3, 1])
with main_col:
    if fixing:
        from streamlit_image_coordinates import streamlit_image_coordinates

        click = streamlit_image_coordinates(img, key=f"click-{_key(s)}-{ss.fix['n']}")
        if click and (click["x"], click["y"]) != ss.fix.get("last_click"):
            k = np.asarray(ss.fix["keypoints"], float)
            k[joint] = (click["x"] / scale, click["y"] / scale, 2)
            ss.fix.update(keypoints=k.tolist(), last_click=(click["x"], click["y"]), n=ss.fix["n"] + 1)
            st.rerun()
    else:
        st.image(img)
with side:
    st.markdown(f"**Image #{im['id']}** · rank {s['rank']}" + (" · slot 2" if s["slot"] else ""))
    if lineage:
        st.caption(f"{lineage['generator']} · seed {lineage['seed']}")
        if lineage.get("prompt"):
            st.caption(lineage["prompt"])
    if scores:
        st.dataframe([{"stage": r["stage"], "status": r["status"],
                       "score": None if r["value"] is None else round(r["value"], 3)} for r in scores],
                     hide_index=True)
    st.caption("Joint colours: green = teacher agrees, amber = partly, red = disagrees.")

b = st.columns(6)
b[0].button("Accept", type="primary", on_click=on_decide, args=(s, "accept"), shortcut="A", disabled=fixing)
b[1].button("Reject", on_click=on_decide, args=(s, "reject"), shortcut="X", disabled=fixing)
b[2].button("Skip", on_click=on_skip, args=(s,), shortcut="S")
if not fixing:
    b[3].button("Fix", shortcut="F", on_click=lambda: ss.update(fix={
        "key": _key(s), "person_id": cond[0]["id"] if cond else None, "n": 0,
        "keypoints": (poses.as_keypoints(cond[0]["keypoints"]).tolist() if cond else np.zeros((17, 3)).tolist())}),
        disabled=not cond)
else:
    def _invisible():
        k = np.asarray(ss.fix["keypoints"], float)
        k[ss.get("fix_joint", 0)] = 0
        ss.fix.update(keypoints=k.tolist(), n=ss.fix["n"] + 1)

    b[3].button("Mark invisible", on_click=_invisible, shortcut="I")
    b[4].button("Accept corrected", type="primary", on_click=on_decide, args=(s, "fix"), shortcut="Shift+A")
b[5].button("Undo", on_click=on_undo, shortcut="U")
st.pills("Reject reasons", review.REASON_TAGS, selection_mode="multi", key="reasons")
if ss.get("last"):
    st.caption(f"Last: {ss.last}")
