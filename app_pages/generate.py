"""Generate: queue generation jobs, see what each backend needs, watch results arrive."""
import json
from collections.abc import Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from engine import jobs, registry
from engine.errors import RealcalError
from engine.generate.controlnet import DEFAULT_BASE, DEFAULT_CONTROLNET, SCHEDULERS, cuda_visible, model_available
from engine.generate.job import earlier_batch, next_free_seed
from engine.worker import ensure_worker
from store import batches as store_batches
from store import images as store_images
from store import jobs as store_jobs
from store import synthetic as store_synthetic
from ui.common import overlay_thumbnail, persons_key, workspace

ws = workspace()
st.title("Generate")
st.caption("Synthetic people posed like the real *train* anchors. The conditioning pose is the "
           "label, so a generated image costs no annotation. Val and test images are never used.")

with ws.connect() as db:
    n_anchors = len(store_images.train_anchor_persons(db))
    n_machine_anchors = len(store_images.train_anchor_persons(db, ["predicted"]))
st.markdown(f"**Real anchors:** {n_anchors} labelled people on train images"
            + (f" (+{n_machine_anchors} machine-labelled, usable only if you allow them)"
               if n_machine_anchors else ""))

with ws.connect() as db:
    free_seed = next_free_seed(db)
generator = st.radio("Generator", registry.names("generator"), horizontal=True,
                     index=registry.names("generator").index("copy_paste"),
                     format_func=lambda n: {"copy_paste": "copy_paste (offline: the anchors' own poses)",
                                            "pose_warp": "pose_warp (offline: anchors re-posed)",
                                            "controlnet": "controlnet (SD1.5 + ControlNet-OpenPose, GPU)"}.get(n, n))
pose_source: dict = {}

with st.form("generate"):
    c: Sequence[DeltaGenerator] = st.columns(3)
    count = c[0].number_input("Images", 1, 100_000, 16)
    seed = c[1].number_input("Seed", 0, 2**31 - 1, free_seed,
                             help="Each image's seed derives from this one. The default is the first seed no "
                                  "generation batch has used: the same settings with a used seed make the "
                                  "same images again, which are not stored twice.")
    size = c[2].selectbox("Size", [256, 384, 512, 640, 768], index=2)
    allow_machine = st.checkbox("Also use machine-labelled (predicted) people as anchors",
                                help="Their pose labels are teacher predictions, recorded as such in lineage.")
    gp: dict = {"width": size, "height": size}
    if generator == "copy_paste":
        c = st.columns(3)
        people = c[0].slider("People per image", 1, 5, (1, 2))
        background = c[1].selectbox("Backgrounds", ["mixed", "real", "procedural"],
                                    help="real: person-free crops of train images checked with the "
                                         "teacher; procedural: textures; mixed: real when one is found")
        occluder_p = c[2].slider("Occluder probability", 0.0, 1.0, 0.3)
        gp.update(people=list(people), background=background, occluder_p=occluder_p)
    elif generator == "pose_warp":
        st.caption("Each image re-renders a real train anchor in a sampled pose (mirror, rotation, joint-angle "
                   "perturbation with bone lengths kept, interpolation between anchors) by moving its body parts; "
                   "the label is where the joints went.")
        c = st.columns(4)
        perturb_deg = c[0].slider("Joint-angle perturbation (deg)", 0, 90, 20)
        interpolate_p = c[1].slider("Interpolate with another anchor", 0.0, 1.0, 0.2)
        swap_p = c[2].slider("Another anchor's appearance", 0.0, 1.0, 0.0,
                             help="Person A's appearance in person B's pose")
        background = c[3].selectbox("Backgrounds", ["mixed", "real", "procedural"])
        c = st.columns(4)
        placement = c[0].selectbox("Placement", ["anchors", "pose"],
                                   help="anchors: size and position drawn from a real anchor's own")
        blend = c[1].selectbox("Blending", ["alpha", "poisson"], help="poisson: gradient-domain blending at the edge")
        colour_match = c[2].slider("Colour matching", 0.0, 1.0, 0.0)
        clothing = c[3].slider("Clothing hue jitter (deg)", 0, 90, 0)
        c = st.columns(3)
        match_blur = c[0].checkbox("Match background blur")
        match_noise = c[1].checkbox("Match background noise")
        occluder_p = c[2].slider("Occluder probability", 0.0, 1.0, 0.0, key="pw_occ")
        gp.update(swap_p=swap_p, placement=placement, background=background, blend=blend, colour_match=colour_match,
                  clothing_hue_deg=float(clothing), match_blur=match_blur, match_noise=match_noise,
                  occluder_p=occluder_p)
        pose_source = {"perturb_deg": float(perturb_deg), "interpolate_p": interpolate_p}
        st.session_state["pose_warp_preview"] = {"gp": dict(gp), "pose_source": dict(pose_source)}
    else:
        base = st.text_input("Base model (hub id or local folder)", DEFAULT_BASE)
        cn = st.text_input("ControlNet (hub id or local folder)", DEFAULT_CONTROLNET)
        c = st.columns(4)
        scheduler = c[0].selectbox("Scheduler", list(SCHEDULERS))
        steps = c[1].number_input("Steps", 1, 200, 20)
        guidance = c[2].number_input("Guidance", 0.0, 30.0, 7.5)
        cscale = c[3].number_input("Conditioning scale", 0.0, 2.0, 1.0)
        batch_size = st.number_input("Batch size", 1, 64, 4)
        negative = st.text_area("Negative prompt", "lowres, bad anatomy, extra limbs, missing limbs, "
                                "deformed hands, blurry, cropped, watermark, text, multiple people")
        gp.update(base=base, controlnet=cn, scheduler=scheduler, steps=int(steps),
                  guidance=float(guidance), conditioning_scale=float(cscale),
                  batch_size=int(batch_size), negative_prompt=negative)
        for ref, what in ((base, "Base model"), (cn, "ControlNet")):
            ok, why = model_available(ref)
            (st.success if ok else st.error)(f"{what}: {why}")
        if not cuda_visible():
            st.error("No CUDA GPU is visible on this machine: the controlnet generator will refuse to "
                     "run (a 20-step 512 px image takes minutes on a CPU). Use copy_paste here, or "
                     "run realcal on a GPU machine.")
    submitted = st.form_submit_button("Queue generation job", type="primary")

if submitted:
    from engine.generate.job import resolve_params

    try:
        params = resolve_params(ws, {
            "generator": generator, "count": int(count), "seed": int(seed), "generator_params": gp,
            "pose_source": pose_source,
            "anchor_sources": ["ground_truth", "corrected"] + (["predicted"] if allow_machine else [])})
        with ws.connect() as db:
            same = earlier_batch(db, params)
        if same is not None and int(count) <= int(same["params"].get("count", 0)):
            st.error(f"Batch {same['id']} was made with these settings and seed {int(seed)}: the job would make "
                     f"the same {int(count)} images again, and identical images are stored only once, so it "
                     f"would add nothing. Choose another seed (seed {free_seed} has not been used).")
        else:
            if same is not None:
                st.warning(f"Batch {same['id']} used these settings and seed {int(seed)}: its first "
                           f"{same['params'].get('count')} images come out again and are not stored twice; "
                           f"only the rest are new.")
            job_id = jobs.submit(ws, "generate", params)
            ensure_worker(ws)
            st.success(f"Queued job {job_id}. Progress below and on the Jobs page.")
    except RealcalError as exc:
        st.error(str(exc))


if generator == "pose_warp" and n_anchors and st.button(
        "Preview: plain beside these compositing settings",
        help="Two anchors, one sampled pose each, procedural backgrounds (no model runs here); "
             "the job uses real backgrounds"):
    from engine.generate.preview import pose_warp_side_by_side

    spec = st.session_state.get("pose_warp_preview") or {"gp": {}, "pose_source": {}}
    try:
        pairs = pose_warp_side_by_side(ws, spec["gp"], spec["pose_source"], seed=int(seed))
        for plain, chosen, caption in pairs:
            c = st.columns(2)
            c[0].image(plain, caption=f"plain — {caption}", width="stretch")
            c[1].image(chosen, caption="these settings", width="stretch")
    except RealcalError as exc:
        st.error(str(exc))


@st.fragment(run_every=2)
def live() -> None:
    with ws.connect() as db:
        running = [j for j in store_jobs.list_jobs(db, limit=10) if j["kind"] == "generate"]
        batches = [b for b in store_batches.list_batches(db) if b["kind"] == "generation"]
        if running and running[0]["status"] in ("queued", "running"):
            j = running[0]
            st.progress(min(1.0, j["progress"] / j["total"]) if j["total"] else 0.0,
                        text=f"job {j['id']}: {j['message'] or j['status']}")
        if not batches:
            st.info("No generated batches yet.")
            return
        latest = batches[-1]
        st.subheader(f"Latest batch {latest['id']}: {latest['images']} images ({latest['format']})")
        note = (latest.get("report") or {}).get("note")
        if note:
            (st.warning if not latest["images"] else st.caption)(note[0].upper() + note[1:] + ".")
        recent = store_synthetic.recent_images(db, latest["id"], limit=12)
        persons = store_images.persons_for_images(db, [r["id"] for r in recent])
        # recent_images() joins the lineage table: every image has one
        lineages = {r["id"]: lin for r in recent if (lin := store_synthetic.lineage_for(db, r["id"])) is not None}
    cols = st.columns(4)
    for i, row in enumerate(recent):
        cols[i % 4].image(overlay_thumbnail(str(ws.root), row["sha256"], row["width"], row["height"],
                                            persons_key(persons[row["id"]])),
                          caption=f"#{row['id']} seed {lineages[row['id']]['seed']}", width="stretch")
    if recent:
        with st.expander("Lineage of the newest image"):
            st.code(json.dumps(lineages[recent[0]["id"]], indent=2, default=str), language="json")


live()
st.caption("Not yet available: a few-step mode (LCM-LoRA / turbo) and SDXL + ControlNet.")
