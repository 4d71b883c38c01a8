"""Results: augmentation vs baseline with intervals, learning curves, cost, funnel."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from engine import review
from engine.experiment import BASELINE, comparisons_of, summarise
from engine.report import (
    MISSING_NOTE,
    PALETTE,
    display_rows,
    grouped_verdicts,
    learning_curves_figure,
    legend_below,
    loop_rounds,
    loop_rounds_figure,
    loop_shortfalls,
    steps_note,
    trained_on,
)
from store import curation as store_curation
from store import jobs as store_jobs
from store import training as store_training
from ui.common import workspace

ws = workspace()
st.title("Results")

with ws.connect() as db:
    experiments = store_training.list_experiments(db)
    exp = experiments[0] if experiments else None
    if len(experiments) > 1:
        chosen = st.selectbox("Experiment", [e["id"] for e in experiments],
                              format_func=lambda i: next(f"{e['name']} (#{e['id']}, {e['created_at'][:16]})"
                                                         for e in experiments if e["id"] == i))
        exp = next(e for e in experiments if e["id"] == chosen)
    runs = store_training.experiment_runs(db, exp["id"]) if exp else []
    running = [j for j in store_jobs.list_jobs(db, limit=100)
               if j["kind"] == "experiment" and j["status"] in ("queued", "running")]
    from engine.report import run_curves

    curves_by_run = run_curves(db, runs)
    cost = review.stats(db)
    curation = store_curation.latest_run(db)

for j in running:
    st.progress(min(1.0, j["progress"] / j["total"]) if j["total"] else 0.0,
                text=f"Experiment job {j['id']} is {j['status']}: {j['message'] or ''} (reload for new results)")
if not exp or not runs:
    if not running:
        st.info("No experiment yet. Run one from the Train page or with `realcal experiment run "
                "experiments/example_tiny.yaml` (it needs labelled real train, val and test images).")
    st.stop()

summary = summarise(runs, exp["config"], comparisons_of(ws, exp, runs))
st.subheader(f"Experiment: {exp['name']}")
expected = len(exp["config"]["arms"]) * len(exp["config"]["seeds"])
if len(runs) < expected:
    st.warning(f"{len(runs)} of {expected} arm x seed runs finished so far; statistics cover those only.")
if exp["name"] == "demo-tiny":
    st.warning("Demo experiment: 24 real images, 1 epoch, tiny image size. It shows the machinery "
               "(arms, seeds, matched steps, intervals, verdicts); its numbers are not a result.")
st.markdown("**Summary**")
st.info(summary["headline"])
sizes = summary.get("sizes") or {}
steps_text = steps_note(runs, bool(exp["config"].get("step_matching", True)))
from_ledger = sum(bool((r.get("result") or {}).get("ledger")) for r in runs)
st.markdown("\n".join([
    f"- **Date**: {exp['created_at'][:10]} (experiment created)",
    f"- **Code**: {'; '.join(summary.get('codes') or ['n/a'])}",
    f"- **Trained on**: {trained_on(runs) or 'n/a'}"
    + (f" ({from_ledger} run(s) taken from a ledger)" if from_ledger else ""),
    f"- **Protocol**: {summary.get('protocol')}",
    "- **Splits**: " + ", ".join(f"{k} {v}" for k, v in sizes.items() if v is not None),
    f"- **Steps**: {steps_text}",
    f"- Means over seeds; differences with {BASELINE}: two-stage bootstrap over seeds and test images, "
    f"Holm-adjusted."]))
for flag in summary["flags"]:
    st.error(flag)
MAIN_COLS = ["arm", "seeds", "AP50", "AP50 - real-only", "95% CI", "PCK@0.2", "PCK@0.2 - real-only", "PCK 95% CI",
             "mean OKS", "val AP50", "val PCK@0.2", "steps"]
st.table(display_rows(summary["table"], MAIN_COLS))
st.caption(MISSING_NOTE + ". AP, seconds and every other figure: in the expanders below.")

st.markdown("**Verdicts** (each arm against real-only on test, the metrics side by side: difference, 95% interval, "
            "direction)")
grouped = grouped_verdicts(summary["comparisons"])
if grouped:
    metric_cols = [m for m in ("AP50", "PCK@0.2", "per-person OKS") if any(m in g for g in grouped)]
    st.table(display_rows(grouped, ["arm", *metric_cols]))
    for g in grouped:
        st.markdown(f"- **{g['arm']}**: {g['reading']}")
else:
    st.caption("No comparison: the experiment has no arm besides the baseline.")
with st.expander("Every comparison in full, with each seed's own difference"):
    for c in summary["comparisons"]:
        per = ", ".join(f"s{d['seed']} {d['diff']:+.3f}" for d in c.get("per_seed") or [])
        st.markdown(f"- {c['verdict']} *({c.get('seeds')} seeds x {c['n']} test images; per seed: {per})*")
if summary.get("contrasts"):
    st.markdown("**Declared contrasts** (the pairs the experiment file lists: arm minus other arm, Holm-adjusted)\n"
                + "\n".join(f"- {c['verdict']}" for c in summary["contrasts"]))
for line in summary.get("contrasts_waiting") or []:
    st.info(f"Declared contrast {line}")
st.markdown("**Noise floor** (arms equal in expectation)")
if summary.get("noise_floor"):
    for c in summary["noise_floor"]:
        st.markdown(f"- {c['verdict']}")
else:
    st.caption("Not measured: the experiment has no A/A pair (an arm with `replica: 1`, or random and "
               "unfiltered at the same volume).")
if summary.get("gap_closed"):
    st.markdown("**Gap closed** (the share of the gap between real-only and the reference arm with more real "
                "images that each arm closes; 95% interval from the same two-stage resamples)")
    for c in summary["gap_closed"]:
        st.markdown(f"- {c['verdict']}")
rounds = loop_rounds(summary, exp["config"], runs)
if rounds:
    st.markdown("**Loop rounds** (round 0 = real-only, the loop's first student; each later round adds images "
                "generated around the student's mined failures and chosen with its signals)")
    st.table(display_rows(rounds))
    for line in loop_shortfalls(runs):
        st.warning(f"Not at matched volume: {line}")
    rounds_fig = loop_rounds_figure(summary, exp["config"], runs)
    if rounds_fig is not None:
        st.plotly_chart(rounds_fig, width="stretch")
if summary.get("per_seed"):
    with st.expander("Per seed (every arm x seed, test and val)"):
        st.table(display_rows(summary["per_seed"]))

if summary["ap50"]:
    ap = go.Figure()
    for i, c in enumerate(summary["ap50"]):
        ap.add_trace(go.Scatter(marker={"color": PALETTE[i % len(PALETTE)]}, x=[c["mean_diff"]], y=[c["arm"]],
                                mode="markers",
                                error_x={"type": "data", "symmetric": False, "array": [c["ci"][1] - c["mean_diff"]],
                                         "arrayminus": [c["mean_diff"] - c["ci"][0]]}, name=c["arm"]))
    ap.add_vline(x=0, line_dash="dash")
    ap.update_layout(title=f"Augmentation vs baseline: test AP50 minus {BASELINE} (95% CI)", showlegend=False,
                     height=320, xaxis_title="AP50 difference")
    st.plotly_chart(ap, width="stretch")
    arm_cfg0 = {a["name"]: a for a in exp["config"]["arms"]}
    by_volume: dict = {}
    for c in summary["ap50"]:
        a = arm_cfg0.get(c["arm"], {})
        if (a.get("kind") == "train" and (a.get("real") or 0) > 0
                and a.get("pool") in ("curated", "random", "unfiltered", "accepted")):
            by_volume.setdefault(a.get("synthetic"), []).append((a["pool"], c))
    panels = {v: cs for v, cs in by_volume.items() if len({p for p, _ in cs}) > 1}
    if panels:
        abl = go.Figure()
        for i, (vol, cs) in enumerate(sorted(panels.items(), key=lambda x: x[0] or 0)):
            abl.add_bar(marker_color=PALETTE[i % len(PALETTE)], x=[p for p, _ in cs],
                        y=[c["mean_diff"] for _, c in cs], name=f"{vol} synthetic",
                        error_y={"type": "data", "symmetric": False,
                                 "array": [c["ci"][1] - c["mean_diff"] for _, c in cs],
                                 "arrayminus": [c["mean_diff"] - c["ci"][0] for _, c in cs]})
        abl.update_layout(title="Curation ablation at matched synthetic volume: AP50 gain over real-only (95% CI)",
                          barmode="group", yaxis_title="AP50 difference")
        legend_below(abl, len(abl.data))
        st.plotly_chart(abl, width="stretch")
if summary.get("ablation"):
    st.markdown("**Curation ablation** (curated minus random / unfiltered at the same volume; two-stage "
                "bootstrap over seeds and test images):\n"
                + "\n".join(f"- {c['verdict']}" for c in summary["ablation"]))

fig = go.Figure()
for i, c in enumerate([c for c in summary["comparisons"] if c["metric"] == "per-person OKS"]):
    fig.add_trace(go.Scatter(marker={"color": PALETTE[i % len(PALETTE)]}, x=[c["mean_diff"]], y=[c["arm"]],
                             mode="markers",
                             error_x={"type": "data", "symmetric": False,
                                      "array": [c["ci"][1] - c["mean_diff"]],
                                      "arrayminus": [c["mean_diff"] - c["ci"][0]]}, name=c["arm"]))
fig.add_vline(x=0, line_dash="dash")
fig.update_layout(title=f"Change in per-person OKS vs {BASELINE} (95% CI)", showlegend=False, height=300)
st.plotly_chart(fig, width="stretch")

per_seed = go.Figure()
for i, arm in enumerate(t["arm"] for t in summary["table"]):
    vals = [r["result"]["test"].get("AP50") for r in runs if r["arm"] == arm]
    per_seed.add_bar(name=arm, marker_color=PALETTE[i % len(PALETTE)], x=[arm],
                     y=[float(np.mean([v for v in vals if v is not None] or [0]))],
                     error_y={"type": "data", "array": [float(np.std([v for v in vals if v is not None] or [0]))]})
per_seed.update_layout(title="Test AP50 per arm (mean, SD over seeds)", showlegend=False, height=300)
st.plotly_chart(per_seed, width="stretch")

curves = learning_curves_figure(curves_by_run)
if curves.data:
    st.plotly_chart(curves, width="stretch")

if summary.get("per_joint"):
    with st.expander("Test PCK@0.2 per joint (mean over seeds): where an arm gains or loses"):
        joints = summary["per_joint"]
        heat = go.Figure(go.Heatmap(z=[[row[a] for a in list(row)[1:]] for row in joints],
                                    x=list(joints[0])[1:], y=[row["joint"] for row in joints],
                                    colorscale="Viridis", zmin=0, zmax=1, colorbar={"title": "PCK@0.2"}))
        heat.update_layout(height=80 + 26 * len(joints), yaxis={"autorange": "reversed"})
        st.plotly_chart(heat, width="stretch")
        st.table(display_rows(joints))

with st.expander("Every run (per-seed test AP50 with its bootstrap interval)"):
    st.table(display_rows([{"arm": r["arm"], "seed": r["seed"], "train images": r["result"]["train_images"],
                            "steps": r["result"].get("steps"), "test AP50": r["result"]["test"].get("AP50"),
                            "AP50 95% CI": (lambda ci: f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")(
                                r["result"]["test"].get("AP50_ci")),
                            "test PCK@0.2": r["result"]["test"].get("PCK@0.2"),
                            "val AP50": r["result"]["val"].get("AP50"),
                            "seconds": r["result"]["seconds"]} for r in runs]))
    st.caption(MISSING_NOTE)

arm_cfg = {a["name"]: a for a in exp["config"]["arms"]}
vol = [(arm_cfg[t["arm"]].get("synthetic") or 0, t["AP50"], t["arm"]) for t in summary["table"]
       if t["arm"] in arm_cfg and arm_cfg[t["arm"]]["kind"] == "train" and (arm_cfg[t["arm"]].get("real") or 0) > 0
       and t["AP50"] is not None]
if len(vol) > 1:
    # one marker per arm, never joined: arms at the same volume differ in pool or schedule, not in a trend
    vfig = go.Figure()
    for i, (n_syn, ap50, arm) in enumerate(sorted(vol)):
        vfig.add_scatter(x=[n_syn], y=[ap50], mode="markers", name=arm,
                         marker={"size": 11, "color": PALETTE[i % len(PALETTE)]})
    vfig.update_layout(title="Test AP50 vs synthetic images added to the real anchors (one point per arm)",
                       xaxis_title="synthetic images", yaxis_title="AP50")
    legend_below(vfig, len(vfig.data), base_height=300)
    st.plotly_chart(vfig, width="stretch")

st.markdown("**Human cost**")
if cost.get("decisions"):
    hours = sum(u["active_s"] for u in cost["per_reviewer"].values()) / 3600
    st.write(f"{cost['decisions']} review decisions, {hours:.2f} reviewer-hours; "
             f"{cost['seconds_per_accepted_image']} s of reviewer time per accepted image.")
    base = next((t["AP50"] for t in summary["table"] if t["arm"] == BASELINE), None)
    gains = [(t["arm"], t["AP50"] - base) for t in summary["table"]
             if base is not None and t["AP50"] is not None and t["arm"] not in (BASELINE, "zero-shot")]
    if gains and hours > 0:
        st.dataframe([{"arm": a, "AP50 gain vs real-only": round(g, 4),
                       "AP50 points per reviewer-hour": round(100 * g / hours, 2)} for a, g in gains],
                     hide_index=True)
else:
    st.write("No review data.")
if curation:
    st.markdown("**Curation funnel** (latest run)")
    st.dataframe(curation["funnel"], hide_index=True)
st.markdown("**Pose coverage**: real train anchors vs accepted and rejected synthetic people")
from engine import poses as _poses  # noqa: E402
from store import images as _images  # noqa: E402

with ws.connect() as db:
    real = [p for p in _images.train_anchor_persons(db, ("ground_truth", "corrected"), 4)]
    states = store_training.review_states(db)
    syn_ids = [i for i, s_ in states.items() if s_ in ("accepted", "rejected")]
    syn_persons = _images.persons_for_images(db, syn_ids, ["conditioning", "corrected"])
groups = {"real anchors": [_poses.as_keypoints(p["keypoints"]) for p in real]}
for label in ("accepted", "rejected"):
    groups[f"{label} synthetic"] = [_poses.as_keypoints(p["keypoints"]) for i in syn_ids if states[i] == label
                                    for p in syn_persons[i]]
GROUP_COLOURS = {"real anchors": PALETTE[0], "accepted synthetic": PALETTE[2], "rejected synthetic": PALETTE[3]}
cov = go.Figure()
for name, ks in groups.items():
    vals = [o for o in (_poses.body_orientation(k) for k in ks) if o is not None]
    if vals:
        cov.add_histogram(x=vals, name=f"{name} (n={len(vals)})", opacity=0.6, histnorm="probability",
                          marker_color=GROUP_COLOURS[name],
                          xbins={"start": -180, "end": 180, "size": 15})
cov.update_layout(barmode="overlay", title="Body orientation (degrees from upright)", height=280)
st.plotly_chart(cov, width="stretch")
limbs = go.Figure()
for name, ks in groups.items():
    vals = [v for k in ks for v in _poses.limb_angles(k).values()]
    if vals:
        limbs.add_histogram(x=vals, name=name, opacity=0.6, histnorm="probability", marker_color=GROUP_COLOURS[name],
                            xbins={"start": -180, "end": 180, "size": 15})
limbs.update_layout(barmode="overlay", title="Limb directions, all limbs (degrees from straight down)", height=280)
st.plotly_chart(limbs, width="stretch")
