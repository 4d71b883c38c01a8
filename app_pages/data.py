"""Data: browse images with skeleton overlays, filter, count, delete a batch."""
import streamlit as st

from engine.batches import delete_batch
from store import batches as store_batches
from store import images as store_images
from ui.common import MACHINE_NOTE, overlay_thumbnail, persons_key, workspace

PAGE_SIZE = 48
COLUMNS = 4

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

f = st.columns([1, 1, 2, 2])
kind = f[0].selectbox("Kind", ["all", "real", "synthetic"])
split = f[1].selectbox("Split", ["all", "train", "val", "test"])
batch_labels = {"all": None} | {f"{b['id']}: {b['kind']} {b['format'] or ''} {b['dataset'] or ''}".strip(): b["id"]
                                for b in batches}
batch_choice = f[2].selectbox("Batch", list(batch_labels))
sources = f[3].multiselect("Skeletons shown", ["ground_truth", "corrected", "conditioning", "predicted"],
                           default=["ground_truth", "corrected", "conditioning", "predicted"])

with ws.connect() as db:
    filters = dict(kinds=None if kind == "all" else [kind], splits=None if split == "all" else [split],
                   batch_id=batch_labels[batch_choice])
    n_match = store_images.count_images(db, **filters)
    pages = max(1, -(-n_match // PAGE_SIZE))
    page = st.number_input(f"Page (of {pages}; {n_match} images match)", 1, pages, 1)
    rows = store_images.list_images(db, **filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    persons = store_images.persons_for_images(db, [r["id"] for r in rows], sources or ["none"])

st.caption("Solid skeletons are labels (ground truth, corrected, conditioning); " + MACHINE_NOTE + ".")
cols = st.columns(COLUMNS)
for i, row in enumerate(rows):
    ps = persons[row["id"]]
    n_machine = sum(1 for p in ps if p["source"] == "predicted")
    n_label = len(ps) - n_machine
    caption = f"{row['file_name'].rsplit('/', 1)[-1]} · {row['split']} · {n_label} labelled"
    if n_machine:
        caption += f" · {n_machine} machine"
    cols[i % COLUMNS].image(
        overlay_thumbnail(str(ws.root), row["sha256"], row["width"], row["height"], persons_key(ps)),
        caption=caption, width="stretch")

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
