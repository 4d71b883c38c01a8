"""Data: browse images with skeleton overlays; filter by kind, split, batch, review state and curation score;
open one image with its labels, lineage, scores and review history; send a selection to review; delete a batch."""

import streamlit as st
from PIL import Image

from engine import media
from engine import review as engine_review
from engine.batches import delete_batch
from engine.errors import RealcalError
from store import batches as store_batches
from store import browse as store_browse
from store import curation as store_curation
from store import images as store_images
from store import training as store_training
from ui.common import MACHINE_NOTE, overlay_thumbnail, persons_key, skeleton_jpeg, workspace
from ui.gallery import gallery

PAGE_SIZE = 24
DETAIL_SIZE = 720


@st.cache_data(max_entries=64, show_spinner=False)
def detail_image(root: str, sha256: str, ext: str, key: tuple) -> bytes:
    """The image at up to DETAIL_SIZE px with its skeletons (solid labels, dashed machine labels)."""
    im = Image.open(media.image_path(root, sha256, ext)).convert("RGB")
    scale = min(1.0, DETAIL_SIZE / max(im.width, im.height))
    if scale < 1.0:
        im = im.resize((round(im.width * scale), round(im.height * scale)))
    return skeleton_jpeg(im, key, scale, line_width=3, quality=88)


def current_name() -> str:
    from ui.auth import USER_KEY

    user = st.session_state.get(USER_KEY)
    return str(user.get("name") or "admin") if isinstance(user, dict) else "admin"


@st.dialog("Image", width="large")
def show_image(image_id: int) -> None:
    with ws.connect() as db:
        rows = store_images.images_with_ids(db, [image_id])
        if not rows:
            st.error(f"Image #{image_id} is gone (its batch was deleted).")
            return
        im = rows[0]
        ps = store_images.persons_for_images(db, [image_id])[image_id]
        lineage = store_training.lineage_sources(db, [image_id])[image_id]
        run = store_curation.latest_run(db)
        scores = store_browse.curation_scores(db, run["id"], [image_id])[image_id] if run else []
        item = store_browse.review_summary(db, [image_id]).get(image_id)
        history = store_browse.review_history(db, image_id)
    st.markdown(f"**#{im['id']}** `{im['file_name']}` · {im['kind']} · {im['split']} · batch {im['batch_id']} · "
                f"{im['width']}x{im['height']}")
    left, right = st.columns([3, 2])
    try:
        left.image(detail_image(str(ws.root), im["sha256"], im["ext"], persons_key(ps)), width="stretch")
    except OSError as exc:
        left.warning(f"The image file cannot be read ({exc}); the thumbnail is shown.")
        left.image(overlay_thumbnail(str(ws.root), im["sha256"], im["width"], im["height"], persons_key(ps)))
    with right:
        st.markdown("**Labels**")
        st.table([{"person": p["id"], "source": p["source"], "joints": p["num_keypoints"],
                   "score": "—" if p["score"] is None else round(p["score"], 3)} for p in ps] or
                 [{"person": "—", "source": "no persons", "joints": "—", "score": "—"}])
        st.markdown("**Lineage**")
        if lineage:
            st.table([{"role": s_["role"], "source image": s_["source_image_id"], "kind": s_["kind"] or "—",
                       "split": s_["split"] or "—"} for s_ in lineage])
        else:
            st.caption("No source images (imported, not generated).")
        st.markdown(f"**Curation scores** (run {run['id']})" if run else "**Curation scores**")
        if scores:
            st.table([{"stage": c["stage"], "status": c["status"],
                       "value": "—" if c["value"] is None else round(c["value"], 4),
                       "reason": c["reason"] or "—"} for c in scores])
        else:
            st.caption("Not scored by the latest curation run.")
        st.markdown("**Review**")
        if item:
            st.caption(f"In the queue: {item['state']}, rank {item['rank']}, {item['decisions']} decision(s)"
                       + (" · honeypot" if item["honeypot"] else ""))
            if history:
                st.table([{"user": d["user"], "decision": d["decision"] + (" (undone)" if d["undone"] else ""),
                           "reasons": ", ".join(d["reasons"]) or "—", "seconds": round(d["active_s"], 1)}
                          for d in history])
        else:
            st.caption("Never sent to review.")

ws = workspace()
st.title("Data")

with ws.connect() as db:
    counts = store_images.counts(db)
    batches = store_batches.list_batches(db)

im, pe = counts["images"], counts["persons"]
c = st.columns(5)
c[0].metric("Images", im["total"])
c[1].metric("Real", im["by_kind"].get("real", 0))
c[2].metric("Synthetic", im["by_kind"].get("synthetic", 0))
c[3].metric("Persons (labels)", sum(n for s, n in pe["by_source"].items() if s != "predicted"))
c[4].metric("Persons (machine)", pe["by_source"].get("predicted", 0))

if im["total"] == 0:
    st.info("No images yet. Import some with `realcal -w WS import --format coco|yolo-pose|lsp|images PATH`.")
    st.stop()

SIZES = {"large (3 per row)": 3, "medium (4 per row)": 4, "small (6 per row)": 6}

with ws.connect() as db:
    curation_run = store_curation.latest_run(db)
    stage_ranges = store_browse.score_stages(db, curation_run["id"]) if curation_run else {}

f = st.columns([1, 1, 2, 2])
kind = f[0].selectbox("Kind", ["all", "real", "synthetic"])
split = f[1].selectbox("Split", ["all", "train", "val", "test"])
batch_labels = {"all": None} | {f"{b['id']}: {b['kind']} {b['format'] or ''} {b['dataset'] or ''}".strip(): b["id"]
                                for b in batches}
batch_choice = f[2].selectbox("Batch", list(batch_labels))
review = f[3].multiselect("Review state", list(store_browse.REVIEW_FILTERS), default=[],
                          help="Empty: any. 'not queued': never sent to review.")
g = st.columns([1, 2, 2, 1, 1])
stage = g[0].selectbox("Curation score", ["any"] + list(stage_ranges),
                       help=f"A stage of curation run {curation_run['id']} (the latest)" if curation_run
                       else "No curation run yet")
score = None
if stage != "any" and curation_run is not None:
    lo, hi = (float(x) for x in stage_ranges[stage])
    rng = g[1].slider(f"{stage} between", lo, hi if hi > lo else lo + 1.0, (lo, hi if hi > lo else lo + 1.0))
    score = (curation_run["id"], stage, rng[0], rng[1])
sources = g[2].multiselect("Skeletons shown", ["ground_truth", "corrected", "conditioning", "predicted"],
                           default=["ground_truth", "corrected", "conditioning", "predicted"])
cols_n = SIZES[g[3].selectbox("Thumbnails", list(SIZES))]
training = g[4].selectbox("Training", ["any", "excluded", "not excluded"],
                          help="Excluded images are kept out of every manifest built from now on.")

filters = dict(kinds=None if kind == "all" else [kind], splits=None if split == "all" else [split],
               batch_id=batch_labels[batch_choice], review=review or None, score=score,
               excluded={"any": None, "excluded": True, "not excluded": False}[training])
with ws.connect() as db:
    n_match = store_browse.count_filtered(db, **filters)
    pages = max(1, -(-n_match // PAGE_SIZE))
    page = st.number_input(f"Page (of {pages}; {n_match} images match)", 1, pages, 1)
    rows = store_browse.list_filtered(db, **filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    ids = [r["id"] for r in rows]
    persons = store_images.persons_for_images(db, ids, sources or ["none"])
    queued = store_browse.review_summary(db, ids)
    excluded_here = store_browse.excluded_among(db, ids)

selected: set[int] = st.session_state.setdefault("data_selection", set())
if st.session_state.get("data_msg"):
    st.success(st.session_state.pop("data_msg"))


def _done(message: str) -> None:
    """An action on the selection finished: say so on the next run, which shows the new state."""
    st.session_state["data_msg"] = message
    selected.clear()
    st.rerun()


st.caption("Click a thumbnail to open it (labels, lineage, curation scores, review history); tick its box to "
           "select it. Solid skeletons are labels (ground truth, corrected, conditioning); " + MACHINE_NOTE + ".")
items = []
for row in rows:
    ps = persons[row["id"]]
    n_machine = sum(1 for p in ps if p["source"] == "predicted")
    caption = f"#{row['id']} {row['file_name'].rsplit('/', 1)[-1]} · {row['kind']} · {row['split']} · " \
              f"{len(ps) - n_machine} labelled"
    if n_machine:
        caption += f" · {n_machine} machine"
    if row["id"] in queued:
        caption += f" · review: {queued[row['id']]['state']}"
    if row["id"] in excluded_here:
        caption += " · excluded"
    items.append({"id": row["id"], "alt": f"image #{row['id']}", "caption": caption, "selected": row["id"] in selected,
                  "jpeg": overlay_thumbnail(str(ws.root), row["sha256"], row["width"], row["height"],
                                            persons_key(ps))})
result = gallery(items, cols_n, key=f"gallery-{page}-{cols_n}")
if result.toggled is not None:
    selected.symmetric_difference_update({int(result.toggled)})
if result.opened is not None:
    show_image(int(result.opened))

st.markdown(f"**Selection**: {len(selected)} image{'s' if len(selected) != 1 else ''}")
a = st.columns(4)
if a[0].button("Select this page"):
    selected.update(ids)
    st.rerun()
if a[1].button(f"Select all {n_match} that match"):
    with ws.connect() as db:
        selected.update(store_browse.ids_filtered(db, **filters))
    st.rerun()
if a[2].button("Clear selection", disabled=not selected):
    selected.clear()
    st.rerun()
if a[3].button(f"Send {len(selected)} to review", type="primary", disabled=not selected,
               help="Queue the selected synthetic images for review, after everything already queued."):
    with ws.connect() as db:
        out = engine_review.queue_images(db, sorted(selected), user=current_name())
    _done(f"Queued {out['added']} for review; {out['already_queued']} were already in the queue"
          + (f"; {out['real']} real image(s) left out (review judges synthetic images)." if out["real"] else "."))
b = st.columns(4)
if b[0].button(f"Exclude {len(selected)} from training", disabled=not selected,
               help="Keep the selected train images (real or synthetic) out of every manifest built from now on. "
                    "Val and test images cannot be excluded: every model is measured on them."):
    from engine.train.manifest import exclude

    try:
        out = exclude(ws, sorted(selected), user=current_name())
        _done(f"Excluded {out['excluded']} image(s) from training"
              + (f"; {out['already']} were already excluded." if out["already"] else ".")
              + " Undo: select them (filter Training: excluded) and include them again.")
    except RealcalError as exc:
        st.error(str(exc))
if b[1].button(f"Include {len(selected)} again", disabled=not selected,
               help="Undo an exclusion: these images may enter manifests again."):
    from engine.train.manifest import include

    out = include(ws, sorted(selected), user=current_name())
    _done(f"Included {out['included']} image(s) again"
          + (f"; {out['not_excluded']} were not excluded." if out["not_excluded"] else "."))

st.subheader("Batches")
st.dataframe(
    [{"id": b["id"], "kind": b["kind"], "format": b["format"], "dataset": b["dataset"],
      "images": b["images"], "persons": b["persons"],
      "skipped": b["report"].get("skipped_count", 0), "created": b["created_at"][:19]} for b in batches],
    hide_index=True, width="stretch")
with st.expander("Delete a batch"):
    target = st.selectbox("Batch to delete", [k for k in batch_labels if k != "all"])
    confirm = st.checkbox("I understand its images, their persons and unreferenced files are removed")
    if st.button("Delete batch", type="primary", disabled=not confirm):
        result = delete_batch(ws, batch_labels[target])
        st.success(f"Deleted batch {result['batch_id']}: {result['images']} images, "
                   f"{result['persons']} persons")
        st.rerun()
