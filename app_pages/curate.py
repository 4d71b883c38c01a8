"""Curate: the funnel, per-score histograms against the real anchors, thresholds, re-run."""
import plotly.graph_objects as go
import streamlit as st

from engine import jobs
from engine.curate.clip_align import ClipStage
from engine.errors import RealcalError
from engine.report import PALETTE
from engine.worker import ensure_worker
from store import curation as store_curation
from store import images as store_images
from ui.common import job_progress, overlay_thumbnail, persons_key, workspace

SLIDERS = {  # stage -> (label, higher is better, parameter name for a fixed threshold)
    "quality": ("sharpness (Laplacian variance)", True, "sharpness"),
    "realism": ("kNN distance to real anchors", False, "threshold"),
    "pose_consistency": ("worst-person OKS vs the label", True, "threshold"),
}



def ordinal(x: float) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 2.5th."""
    if float(x) != int(x):
        return f"{x:g}th"
    n = int(x)
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def stages_config(clip_model: str, clip_weights: str, thresholds: dict | None = None) -> list[dict]:
    """The default stages with the CLIP weights chosen here and, optionally, edited thresholds."""
    from engine.curate.run import DEFAULT_STAGES

    out = []
    for s in DEFAULT_STAGES:
        params = dict(s["params"])
        if s["name"] == "clip":
            params.update(model=clip_model.strip() or ClipStage.Config.model,
                          pretrained=clip_weights.strip() or ClipStage.Config.pretrained)
        if thresholds and s["name"] in thresholds:
            params[SLIDERS[s["name"]][2]] = float(thresholds[s["name"]])
        out.append({"name": s["name"], "params": params})
    return out


ws = workspace()
st.title("Curate")
st.caption("Synthetic images pass through filter stages calibrated on the real *train* anchors; "
           "survivors are ranked by model uncertainty and diversity into the review queue.")

with ws.connect() as db:
    run = store_curation.latest_run(db)
    n_synthetic = store_images.counts(db)["images"]["by_kind"].get("synthetic", 0)
    if run:
        all_rows = store_curation.results(db, run["id"])
        order = store_curation.selection(db, run["id"])
        images = {im["id"]: im for im in store_images.list_images(db, kinds=["synthetic"])}

clip_cal = (run["calibration"].get("clip") or {}) if run else {}
st.markdown("**CLIP weights** (the clip stage: prompt alignment and person presence; without weights it is "
            "reported unavailable, never passed)")
cc = st.columns(2)
clip_model = cc[0].text_input("CLIP model (open_clip name)", clip_cal.get("model") or ClipStage.Config.model,
                              help="An open_clip architecture name, e.g. ViT-B-32.")
clip_weights = cc[1].text_input("CLIP weights (open_clip tag or local checkpoint)",
                                clip_cal.get("pretrained") or ClipStage.Config.pretrained,
                                help="A pretrained tag (downloads where the hub is reachable) or the path of a "
                                     "local open_clip checkpoint file.")

if st.button("Run curation (default stages)", type="primary", disabled=n_synthetic == 0,
             help="Queues a job: quality, duplicates, realism, CLIP (if weights exist), pose consistency."):
    from engine.curate.run import resolve_params

    try:
        job_id = jobs.submit(ws, "curate", resolve_params(ws, {"stages": stages_config(clip_model, clip_weights)}))
        ensure_worker(ws)
        st.success(f"Queued curation job {job_id} (see Jobs).")
    except RealcalError as exc:
        st.error(str(exc))

if st.session_state.get("curate_msg"):
    st.success(st.session_state.pop("curate_msg"))
job_progress(ws, ("curate", "student_signals"))     # live; the page shows the new run when the job ends

if not run:
    st.info("No curation run yet." + ("" if n_synthetic else " Generate synthetic images first."))
    st.stop()

by_stage: dict[str, list[dict]] = {}
for r in all_rows:
    by_stage.setdefault(r["stage"], []).append(r)
stages = [f["stage"] for f in run["funnel"]]

st.subheader(f"Run {run['id']} ({run['created_at'][:19]})")
fig = go.Figure(go.Funnel(
    y=["generated"] + [f"after {f['stage']}" for f in run["funnel"]],
    x=[run["funnel"][0]["entered"] if run["funnel"] else 0]
      + [f["passed"] + f["unavailable"] for f in run["funnel"]],
    textinfo="value+percent initial"))
fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10))
st.plotly_chart(fig, width="stretch")
st.dataframe(run["funnel"], hide_index=True, width="stretch")
unavailable = [f["stage"] for f in run["funnel"] if f["unavailable"]]
if unavailable:
    lines = [f"Unavailable in run {run['id']} (not passed, not failed): {', '.join(unavailable)}."]
    if "clip" in unavailable:
        lines.append(f"The CLIP weights could not be loaded (model {clip_cal.get('model', '?')}, weights "
                     f"{clip_cal.get('pretrained', '?')}). Set **CLIP model** and **CLIP weights** above (a local "
                     f"open_clip checkpoint works offline) and run curation again.")
    st.warning("  \n".join(lines))
    with st.expander("The stages' own messages"):
        for stage in unavailable:
            reason = next((r["reason"] for r in by_stage.get(stage, []) if r["reason"]), "") or "no message"
            st.text(f"{stage}: {reason}")
if run["set_metrics"]:
    st.markdown("**Set-level realism per batch** (lower is closer to the real anchors; named after "
                "the embedder)")
    st.dataframe([{"batch": b, **m} for b, m in run["set_metrics"].items()], hide_index=True)

st.subheader("Thresholds")
st.caption("Move a threshold to preview the funnel (main scores only; other criteria as stored). "
           "Re-run to apply.")
new_thresholds = {}
run_thresholds: dict[str, float] = {}
for stage in [s for s in stages if s in SLIDERS]:
    label, higher, param = SLIDERS[stage]
    rows = [r for r in by_stage.get(stage, []) if r["value"] is not None]
    if not rows:
        continue
    cal = run["calibration"].get(stage, {})
    rec = next((v for v in cal.values() if isinstance(v, dict) and "threshold" in v), {})
    values = [r["value"] for r in rows]
    real = rec.get("real_values") or []
    lo, hi = min(values + real), max(values + real)
    current = rec.get("threshold")
    thr = st.slider(f"{stage}: {label}", float(lo), float(hi) if hi > lo else float(lo) + 1.0,
                    float(current) if current is not None else float(lo), key=f"thr-{stage}")
    new_thresholds[stage] = thr
    if current is not None:
        run_thresholds[stage] = float(current)
    hist = go.Figure()
    hist.add_histogram(x=values, name="synthetic", opacity=0.65, histnorm="probability",
                       marker_color=PALETTE[0])
    if real:
        hist.add_histogram(x=real, name=f"real anchors (n={len(real)})", opacity=0.65,
                           histnorm="probability", marker_color=PALETTE[1])
    hist.add_vline(x=thr, line_dash="dash", annotation_text="threshold")
    hist.update_layout(barmode="overlay", height=260, margin=dict(l=10, r=10, t=40, b=10),
                       title=f"{stage}: {label}, synthetic vs real anchors")
    st.plotly_chart(hist, width="stretch")
    if rec.get("kind") == "real_percentile":
        st.caption(f"Calibrated: {ordinal(rec['percentile'])} percentile of {rec['calibration_images']} "
                   f"real train anchors = {rec['threshold']:.4g} ({rec['direction']}).")
    near = sorted(rows, key=lambda r: abs(r["value"] - thr))[:6]
    cols = st.columns(6)
    for c, r in zip(cols, near):
        im = images.get(r["image_id"])
        if im is None:
            continue
        with ws.connect() as db:
            ps = store_images.persons_for_images(db, [im["id"]])[im["id"]]
        ok = r["value"] >= thr if higher else r["value"] <= thr
        c.image(overlay_thumbnail(str(ws.root), im["sha256"], im["width"], im["height"], persons_key(ps)),
                caption=f"#{im['id']} {r['value']:.3g} {'pass' if ok else 'fail'}", width="stretch")

changed = {s: (v, run_thresholds[s]) for s, v in new_thresholds.items()
           if s in run_thresholds and abs(v - run_thresholds[s]) > 1e-9 * max(1.0, abs(run_thresholds[s]))}
if changed:
    st.warning(f"The thresholds being edited differ from those of run {run['id']} shown above: "
               + "; ".join(f"{s} {new:.4g} here, {old:.4g} in the run" for s, (new, old) in changed.items())
               + f". The funnel, the histograms' counts and the review queue are run {run['id']}'s; the preview "
               "below uses the edited values. Re-run curation to apply them.")
# live funnel preview
survivors = {r["image_id"] for r in by_stage.get(stages[0], [])} if stages else set()
preview = []
for stage in stages:
    stage_rows = {r["image_id"]: r for r in by_stage.get(stage, [])}
    entered = [i for i in survivors if i in stage_rows]
    passed = []
    for i in entered:
        r = stage_rows[i]
        if stage in new_thresholds and r["value"] is not None:
            higher = SLIDERS[stage][1]
            ok = r["value"] >= new_thresholds[stage] if higher else r["value"] <= new_thresholds[stage]
            other = stage == "quality" and r["reason"] and "blurry" not in r["reason"]
            ok = ok and not other
        else:
            ok = r["status"] in ("pass", "unavailable")
        if ok:
            passed.append(i)
    preview.append({"stage": stage, "entered": len(entered), "would pass": len(passed)})
    survivors = set(passed)
st.dataframe(preview, hide_index=True)
if st.button("Re-run curation with these thresholds"):
    from engine.curate.run import resolve_params

    stages_cfg = stages_config(clip_model, clip_weights, new_thresholds)
    try:
        job_id = jobs.submit(ws, "curate", resolve_params(ws, {"stages": stages_cfg}))
        ensure_worker(ws)
        st.session_state["curate_msg"] = f"Queued curation job {job_id}."
        st.rerun()                  # from the top, so its progress shows
    except RealcalError as exc:
        st.error(str(exc))

st.subheader("Student signals")
student_rows = {name: by_stage.get(name, []) for name in ("student_hardness", "student_disagreement", "student_flip")}
if any(student_rows.values()):
    st.caption("What a trained student says about the survivors (higher = it needs the image more): hardness "
               "(1 - OKS against the label, only where pose consistency confirmed the label), disagreement with "
               "the teacher, and flip instability. The selection weighs them with its `student` weight.")
    st.dataframe([{"signal": name, "scored": sum(1 for r in rows if r["status"] == "pass"),
                   "unavailable": sum(1 for r in rows if r["status"] == "unavailable"),
                   "mean": (round(sum(r["value"] for r in rows if r["status"] == "pass")
                                  / max(1, sum(1 for r in rows if r["status"] == "pass")), 3))}
                  for name, rows in student_rows.items()], hide_index=True, width="stretch")
    st.caption("Weigh them in the review order: `realcal select --budget N --student-weight 0.5` (the queue "
               "below then shows each image's student score).")
else:
    st.caption("No student has scored this run. After a training run finishes: "
               "`realcal student-signals --training-run ID` (the student's hardness, disagreement with the "
               "teacher and flip instability per survivor), then weigh them in the review order.")

st.subheader(f"Review queue order ({len(order)} survivors)")
st.dataframe([{"rank": r["rank"], "image": r["image_id"], "priority": r["priority"],
               **{k: v for k, v in r["components"].items() if k != "weights"}} for r in order[:200]],
             hide_index=True, width="stretch")
