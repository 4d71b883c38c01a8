"""Train: build manifests, queue training runs and experiments, download trained models."""
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import yaml
from streamlit.delta_generator import DeltaGenerator

from engine import jobs
from engine.errors import RealcalError
from engine.experiment import in_progress
from engine.train.manifest import POOLS
from engine.train.train import RECIPE
from engine.worker import ensure_worker
from store import images as store_images
from store import training as store_training
from ui.common import job_progress, workspace

ws = workspace()
st.title("Train")
st.caption("Ultralytics YOLO-pose on an immutable manifest (real anchors + a synthetic pool + the real "
           "val/test splits). Model selection uses **val**; **test** is scored once, at the end. "
           "Default recipe: the low-data fine-tuning one the LSPET benchmark chose on val (nothing frozen, "
           "AdamW lr0 5e-5, one optimizer step per batch of 8, no mosaic, no warmup, imgsz 320), not "
           "Ultralytics' defaults.")

with ws.connect() as db:
    counts = store_images.counts(db)
    manifests = store_training.list_manifests(db)
    runs = store_training.list_runs(db)
    experiments = store_training.list_experiments(db)
    exp_runs = {e["id"]: store_training.experiment_runs(db, e["id"]) for e in experiments}
    exp_running = {e["id"]: in_progress(db, e["id"]) for e in experiments}
    labelled = store_images.labelled_real_images_by_split(db)

c: Sequence[DeltaGenerator] = st.columns(4)
c[0].metric("Labelled real train", labelled.get("train", 0))
c[1].metric("Labelled real val", labelled.get("val", 0))
c[2].metric("Labelled real test", labelled.get("test", 0))
c[3].metric("Synthetic images", counts["images"]["by_kind"].get("synthetic", 0))
if not labelled.get("val") or not labelled.get("test"):
    st.warning("Training needs labelled real **val** (model selection) and **test** (the score) images. "
               "Import labelled data with a split, e.g. `realcal import lsp DIR --split test --ids-file ...`. "
               "Machine labels (pseudo-labels) are never used as val/test ground truth.")


def queue(kind: str, params: dict) -> None:
    job_id = jobs.submit(ws, kind, params)
    ensure_worker(ws)
    st.success(f"Queued job {job_id} ({kind}). Progress below and on the Jobs page.")


def yaml_job_form(kind: str, example_name: str, fallback: str, height: int, help_text: str) -> None:
    """A YAML editor (an example file to start from), a device and a button that checks the file and queues it."""
    example = Path(__file__).resolve().parents[1] / "experiments" / example_name
    text = st.text_area(f"{kind.capitalize()} (YAML)", example.read_text() if example.exists() else fallback,
                        height=height, help=help_text, key=f"{kind}_yaml")
    c = st.columns([1, 1, 2])
    device = c[0].selectbox("Device", ["auto", "cpu", "cuda"], key=f"{kind}_device")
    if c[1].button(f"Queue {kind}", type="primary"):
        try:
            if kind == "loop":
                from engine.loop import check, resolve

                cfg = resolve(yaml.safe_load(text))
                facts = check(ws, cfg)
                st.caption(f"{facts['anchors']} real anchors; failures mined on {facts['held_out_labelled']} "
                           f"labelled train images outside them and {facts['unlabelled']} unlabelled ones.")
            else:
                from engine.experiment import resolve as resolve_experiment

                cfg = resolve_experiment(yaml.safe_load(text))
            queue(kind, {"config": cfg, "device": device})
        except yaml.YAMLError as exc:
            st.error(f"That is not valid YAML: {exc}")
        except RealcalError as exc:
            st.error(str(exc))


job_progress(ws, ("train", "experiment", "export_model", "mine_failures", "loop"))

tab_exp, tab_loop, tab_train, tab_manifest, tab_models = st.tabs(
    ["Experiment", "Loop", "Single training run", "Manifests", "Trained models"])

with tab_exp:
    st.markdown("Arms x seeds trained at **matched optimizer steps**, the untouched pretrained model as the "
                "zero-shot arm, paired statistics against real-only. Results appear on the Results page.")
    yaml_job_form("experiment", "example_tiny.yaml", "", 300,
                  "name, seeds, step_matching, anchor_pool, recipe, arms (kind zero_shot, train or loop; real, "
                  "pool: none/accepted/curated/random/unfiltered, synthetic, schedule, reference, round), loop")
    if experiments:
        st.subheader("Experiments")
        st.dataframe(pd.DataFrame([{
            "id": e["id"], "name": e["name"], "arms": len(e["config"]["arms"]), "seeds": len(e["config"]["seeds"]),
            "runs done": f"{sum(r['status'] == 'done' for r in exp_runs[e['id']])} / "
                         f"{len(e['config']['arms']) * len(e['config']['seeds'])}",
            "running now": "; ".join(exp_running[e["id"]]),
            "steps": "matched" if e["config"].get("step_matching", True) else "equal epochs",
            "created": e["created_at"][:19]} for e in experiments]), hide_index=True, width="stretch")
        st.page_link("app_pages/results.py", label="Open the Results page", icon=":material/insights:")
    st.caption("Or from the command line: `realcal -w WS experiment run exp.yaml`, "
               "then `realcal -w WS report --out DIR`.")

with tab_loop:
    st.markdown("Rounds of **train the student -> find where it fails (train data only) -> generate around those "
                "poses -> curate -> score with the student -> select -> train the next student**. Val decides "
                "when to stop; every round is stored and a stopped loop resumes where it was.")
    yaml_job_form("loop", "example_loop.yaml", "name: my-loop\n", 260,
                  "name, rounds, seed, real, recipe, schedule, add_per_round, mine, target, generate, fill, curate, "
                  "select, review, stop (engine/loop.py)")
    from engine.loop import figure as loop_figure
    from engine.loop import summary as loop_summary
    from store import loops as store_loops

    with ws.connect() as db:
        loop_names = [lp["name"] for lp in store_loops.all_loops(db)]
    if loop_names:
        chosen = st.selectbox("Loop", loop_names[::-1])
        ls = loop_summary(ws, chosen)
        st.markdown(f"**{ls['status']}**" + (f": {ls['stop_reason']}" if ls.get("stop_reason") else "")
                    + (f" · best on val: round {ls['best_round']} (training run {ls['best_training_run']})"
                       if ls["best_round"] is not None else ""))
        if any(r["status"] == "done" for r in ls["rounds"]):
            st.plotly_chart(loop_figure(ls), width="stretch")
        for r in ls["rounds"]:
            if r.get("short"):
                st.warning(r["short"])
        st.dataframe(pd.DataFrame(ls["rounds"]), hide_index=True, width="stretch")
    else:
        st.info("No loop has run yet.")
    st.caption("Or from the command line: `realcal -w WS loop run loop.yaml [--max-minutes M]`, "
               "`realcal -w WS loop status`.")

with tab_manifest:
    st.markdown("A manifest is an immutable, hashed snapshot: the same selection always gives the same "
                "manifest. The leakage guard refuses synthetic images with a val/test image in their "
                "lineage; honeypots never enter.")
    with st.form("manifest"):
        c = st.columns(3)
        real_all = c[0].checkbox("All labelled real train images", True)
        real_count = c[1].number_input("…or this many", 0, 1_000_000, 100)
        real_seed = c[2].number_input("Real seed", 0, 2**31 - 1, 0)
        c = st.columns(3)
        pool = c[0].selectbox("Synthetic pool", [p for p in POOLS if p != "ids"],
                              help="accepted = reviewed and accepted; curated = the "
                              "curation order; random = a seeded sample; unfiltered = the first N generated")
        syn_count = c[1].number_input("Synthetic images (0 = the whole pool)", 0, 1_000_000, 0)
        syn_seed = c[2].number_input("Synthetic seed", 0, 2**31 - 1, 0)
        built = st.form_submit_button("Build manifest")
    if built:
        from engine.train.manifest import build_manifest

        try:
            r = build_manifest(ws, {
                "real_train": {"count": None if real_all else int(real_count), "seed": int(real_seed)},
                "synthetic": {"pool": pool, "count": int(syn_count) or None, "seed": int(syn_seed)}})
            st.success(f"Manifest {r['id']} ({'new' if r['new'] else 'already existed'}, {r['hash'][:12]}): "
                       + ", ".join(f"{k} {v}" for k, v in r["counts"].items()))
            with ws.connect() as db:
                manifests = store_training.list_manifests(db)
        except RealcalError as exc:
            st.error(str(exc))
    if manifests:
        st.dataframe(pd.DataFrame([{"id": m["id"], "hash": m["hash"][:12], **m["counts"],
                                    "created": m["created_at"][:19]} for m in manifests]),
                     hide_index=True, width="stretch")
    else:
        st.info("No manifests yet.")

with tab_train:
    if not manifests:
        st.info("Build a manifest first (Manifests tab).")
    else:
        # Plain widgets, not a form: the step plan below follows every change before anything is queued.
        mid = st.selectbox("Manifest", [m["id"] for m in manifests], key="train_manifest",
                           format_func=lambda i: next(
                               f"{m['id']}: " + ", ".join(f"{k} {v}" for k, v in m["counts"].items())
                               for m in manifests if m["id"] == i))
        c = st.columns(4)
        epochs = c[0].number_input("Epochs", 1, 10_000, int(RECIPE["epochs"]), key="train_epochs")
        imgsz = c[1].number_input("Image size", 32, 2048, int(RECIPE["imgsz"]), step=32, key="train_imgsz")
        batch = c[2].number_input("Batch", 1, 1024, int(RECIPE["batch"]), key="train_batch")
        seed = c[3].number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
        c = st.columns(4)
        lr0 = c[0].number_input("lr0", 0.0, 1.0, float(RECIPE["lr0"]), format="%.5f", key="train_lr0")
        optimizer = c[1].selectbox("Optimizer", ["AdamW", "SGD", "Adam", "auto"], key="train_optimizer")
        freeze = c[2].text_input("Freeze", str(RECIPE["freeze"]), key="train_freeze",
                                 help="First N layers (10; 0 = nothing frozen), a comma list of layers (0,1,23.cv2), "
                                      "or keypoint-branch: train only the pose head's keypoint branch")
        mosaic = c[3].number_input("Mosaic", 0.0, 1.0, float(RECIPE["mosaic"]), key="train_mosaic")
        c = st.columns([1, 2, 1, 1])
        nbs = c[0].number_input("Nominal batch (nbs)", 1, 4096, int(RECIPE["nbs"]), key="train_nbs",
                                help="One optimizer step every round(nbs / batch) batches; set it to the batch "
                                     "size for a step per batch (Ultralytics' default is 64)")
        model = c[1].text_input("Model", RECIPE["model"], key="train_model",
                                help="yolo11n-pose (pretrained), a .pt path, or a model .yaml to train from scratch")
        device = c[2].selectbox("Device", ["auto", "cpu", "cuda"], key="train_device")
        protocol = c[3].selectbox("Evaluation protocol", ["auto", "annotated_person", "coco"], key="train_protocol",
                                  help="annotated_person: for data that labels one person per image (LSP/LSPET); "
                                       "detections of unlabelled people neither count nor cost. coco: every "
                                       "detection counts. auto: annotated_person for LSP imports, else coco.")
        c = st.columns(4)
        schedule = c[0].selectbox("Schedule", ["union", "weighted", "synthetic_first"], key="train_schedule",
                                  help="union: real and synthetic shuffled together; weighted: a set synthetic "
                                       "share of every epoch; synthetic_first: pre-train on the synthetic "
                                       "images, then fine-tune on the real ones (Epochs = the real stage)")
        fraction = c[1].number_input("Synthetic share (weighted)", 0.01, 0.99, 0.3, key="train_fraction",
                                     disabled=schedule != "weighted")
        pre_epochs = c[2].number_input("Pre-training epochs (synthetic_first)", 1, 10_000, 10, key="train_pre_epochs",
                                       disabled=schedule != "synthetic_first")
        pre_lr0 = c[3].number_input("Pre-training lr0 (0 = lr0)", 0.0, 1.0, 0.0, format="%.5f", key="train_pre_lr0",
                                    disabled=schedule != "synthetic_first")
        c = st.columns(4)
        checkpoint = c[0].selectbox("Keep the checkpoint", ["last", "best"],
                                    index=["last", "best"].index(str(RECIPE.get("checkpoint", "last"))),
                                    key="train_checkpoint",
                                    help="last: the final epoch's weights (val is read once, at the end); best: the "
                                         "epoch that scored best on val (val then also chooses the model)")
        val_period = c[1].number_input("Validate every (epochs)", 1, 10_000, int(RECIPE.get("val_period", 1)),
                                       key="train_val_period", disabled=checkpoint != "best",
                                       help="With best: validate every k epochs and the last; best is among those")
        threads = c[2].number_input("CPU threads", -1, 1024, int(RECIPE.get("threads", -1)), key="train_threads",
                                    help="-1: Ultralytics' choice (cores - 1); 0: every core, fastest on a machine "
                                         "the run has to itself but much slower beside another busy process; n: n")
        from engine.train.train import manifest_step_plan, parse_freeze, resolve_params

        params = None
        try:
            params = resolve_params(ws, int(mid), {
                "epochs": int(epochs), "imgsz": int(imgsz), "batch": int(batch), "seed": int(seed),
                "lr0": float(lr0), "nbs": int(nbs), "optimizer": optimizer, "freeze": parse_freeze(freeze),
                "mosaic": float(mosaic), "checkpoint": checkpoint, "val_period": int(val_period),
                "threads": int(threads),
                "model": model.strip(), "device": device, "protocol": protocol,
                "schedule": {"union": None,
                             "weighted": {"kind": "weighted", "synthetic_fraction": float(fraction)},
                             "synthetic_first": {"kind": "synthetic_first", "pretrain_epochs": int(pre_epochs),
                                                 "pretrain_lr0": float(pre_lr0)}}[schedule]})
            plan = manifest_step_plan(next(m["counts"] for m in manifests if m["id"] == mid), params)
            st.caption(f"Step plan: {plan['text']}")
            if plan["warning"]:
                st.warning(plan["warning"])
        except RealcalError as exc:
            st.error(str(exc))
        if st.button("Queue training", type="primary", disabled=params is None, key="train_queue") and params:
            queue("train", params)

with tab_models:
    done = [r for r in runs if r["status"] == "done"]
    if not runs:
        st.info("No training runs yet.")
    else:
        st.dataframe(pd.DataFrame([{
            "run": r["id"], "status": r["status"], "manifest": r["manifest_id"],
            "epochs": (r["config"] or {}).get("epochs"), "seed": (r["config"] or {}).get("seed"),
            "test AP": (r["metrics"] or {}).get("AP"), "test AP50": (r["metrics"] or {}).get("AP50"),
            "test PCK@0.2": (r["metrics"] or {}).get("PCK@0.2"),
            "val AP50": ((r["metrics"] or {}).get("val") or {}).get("AP50"),
            "protocol": (r["metrics"] or {}).get("protocol") or ((r["metrics"] or {}).get("val") or {}).get("protocol"),
            "code": ((r["config"] or {}).get("code") or {}).get("commit"),
            "created": r["created_at"][:19]} for r in runs]), hide_index=True, width="stretch")
    if done:
        rid = st.selectbox("Run", [r["id"] for r in done])
        r = next(x for x in done if x["id"] == rid)
        curves = pd.DataFrame(r["curves"] or [])
        if not curves.empty and "epoch" in curves:
            fig = go.Figure()
            for col in [c for c in curves.columns if c.startswith(("train/", "val/"))]:
                fig.add_scatter(x=curves["epoch"], y=curves[col], name=col, mode="lines+markers")
            for col in [c for c in curves.columns if c.startswith("metrics/") and "(P)" in c]:
                fig.add_scatter(x=curves["epoch"], y=curves[col], name=col, mode="lines", yaxis="y2")
            fig.update_layout(title=f"Run {rid}: losses and val pose metrics per epoch", height=360,
                              yaxis2={"overlaying": "y", "side": "right", "title": "val metric"})
            st.plotly_chart(fig, width="stretch")
        weights = Path(r["weights"]) if r.get("weights") else None
        c = st.columns(2)
        if weights and weights.exists():
            c[0].download_button("Download .pt", weights.read_bytes, file_name=f"realcal-run{rid}.pt",
                                 mime="application/octet-stream")
            onnx = weights.with_suffix(".onnx")
            if onnx.exists():
                c[1].download_button("Download ONNX", onnx.read_bytes, file_name=f"realcal-run{rid}.onnx",
                                     mime="application/octet-stream")
            elif c[1].button("Export ONNX (job)"):
                queue("export_model", {"run_id": rid, "format": "onnx"})
        else:
            st.warning(f"The weights of run {rid} are no longer on disk.")
        # where this run (as a student) fails, on train data only (`realcal mine-failures`)
        st.markdown("**Where this student fails** (train data only: labelled train people it did not train on, "
                    "unlabelled train images against the teacher)")
        failures = ws.root / "failures" / f"train{rid:05d}.json"
        if failures.exists():
            import json

            mined = json.loads(failures.read_text())
            groups = mined["clusters"]
            fig = go.Figure(go.Bar(x=[f"group {g['cluster']}" for g in groups], y=[g["mean_error"] for g in groups],
                                   text=[f"{g['people']} people, anchors {g['anchor_coverage']:.0%}" for g in groups],
                                   textposition="auto"))
            fig.update_layout(title=f"Run {rid}: the student's error (1 - OKS) by pose group, {mined['people']} people",
                              height=320, yaxis={"title": "mean error", "range": [0, 1]})
            st.plotly_chart(fig, width="stretch")
            st.dataframe(pd.DataFrame([{"group": g["cluster"], "person": w["person_id"], "image": w["image_id"],
                                        "error": w["error"], "against": w["against"]}
                                       for g in groups[:3] for w in g["worst"][:5]]), hide_index=True, width="stretch")
            worst = next((g for g in groups if g["target_person_ids"]), None)
            if worst:
                st.code(f"pose_source: {{targets: {worst['target_person_ids'][:20]}, target_p: 0.7, "
                        f"target_label: \"training run {rid}, pose group {worst['cluster']}\"}}", language="yaml")
                st.caption("Generate around the worst group with this in a generation config.")
        elif st.button("Find where it fails (job)"):
            from engine.curate.failures import resolve_params as mine_params

            try:
                queue("mine_failures", mine_params(ws, {"training_run_id": rid}))
            except RealcalError as exc:
                st.error(str(exc))
