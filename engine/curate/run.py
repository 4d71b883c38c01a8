"""The ``curate`` job: run the configured stages in order, record the funnel, score uncertainty,
and store the diversity-aware order (the review queue).

Each stage sees only the images that passed the stages before it (``unavailable`` does not drop
an image). Thresholds are calibrated on the *train* real anchors where the config asks for it.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from engine import registry
from engine.curate.base import StageContext
from engine.curate.select import DEFAULT_WEIGHTS, pose_vector, student_scores, uncertainty
from engine.errors import RealcalError
from engine.jobs import JobContext, job_kind
from engine.workspace import Workspace
from store import curation as store_curation
from store import events as store_events
from store import images as store_images
from store import synthetic as store_synthetic
from store.db import write_transaction

DEFAULT_STAGES: list[dict[str, Any]] = [
    {"name": "quality", "params": {}},
    {"name": "duplicates", "params": {}},
    {"name": "realism", "params": {}},
    {"name": "clip", "params": {}},
    {"name": "pose_consistency", "params": {}},
]
DEFAULTS: dict[str, Any] = {
    "batches": None,                       # generation batch ids; None = every synthetic image
    "embedder": {"name": "effnet-lite0", "params": {}},
    "stages": DEFAULT_STAGES,
    "selection": {"weights": DEFAULT_WEIGHTS, "flip_tta": True},
    "executor": None,                      # None/"local", or {name: ray, address, actors, ...}
    "calibrate_on": None,                  # real train image ids the thresholds learn from; None = all of them
}


def resolve_params(ws: Workspace, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from engine import config
    from engine.assets import resolve as resolve_asset

    unknown = set(overrides or {}) - set(DEFAULTS)
    if unknown:
        raise RealcalError(f"unknown curation option(s) {', '.join(sorted(unknown))}; valid: {', '.join(DEFAULTS)}")
    params = {**DEFAULTS, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    registry.config_of("embedder", params["embedder"]["name"], params["embedder"].get("params") or {})
    from engine.executors import ExecutorConfig

    params["executor"] = ExecutorConfig.from_dict(params.get("executor")).as_dict()
    selection = params.get("selection") or {}
    unknown_sel = set(selection) - {"weights", "flip_tta"}
    if unknown_sel:
        raise RealcalError(f"unknown selection option(s) {', '.join(sorted(unknown_sel))}; valid: weights, flip_tta")
    registry.config_of("selector", "greedy", selection.get("weights", DEFAULT_WEIGHTS))
    cal = params.get("calibrate_on")
    if cal is not None and (not isinstance(cal, list | tuple) or not cal
                            or not all(isinstance(i, int) and not isinstance(i, bool) for i in cal)):
        raise RealcalError("calibrate_on is a non-empty list of real train image ids (or absent: every one)")
    for s in params["stages"]:
        if not isinstance(s, dict) or "name" not in s:
            raise RealcalError("each curation stage is {name: ..., params: {...}}")
        registry.build("stage", s["name"], s.get("params") or {})   # checks names and parameters
    with ws.connect() as db:
        cfg = config.resolve(db)
    params["teacher_weights"] = str(resolve_asset(cfg["teacher.model"], explicit=cfg["teacher.path"] or None))
    params["device"] = cfg["device"]
    params["teacher_imgsz"] = int(cfg["teacher.imgsz"])
    params["backend"] = cfg["inference.backend"]
    return params


def embedder_params(params: dict[str, Any]) -> dict[str, Any]:
    """The embedder's parameters for a curation run: its own, plus the run's inference backend where the
    embedder takes one and was not given one (a run stored before the setting existed ran PyTorch)."""
    spec = params["embedder"]
    out = dict(spec.get("params") or {})
    if "backend" in registry.get("embedder", spec["name"]).Config.__dataclass_fields__ and "backend" not in out:
        out["backend"] = params.get("backend", "torch")
    return out


def _with_persons(db, images: list[dict]) -> list[dict]:
    persons = store_images.persons_for_images(db, [im["id"] for im in images])
    for im in images:
        im["persons"] = persons[im["id"]]
    return images


def load_items(db, batches: list[int] | None) -> list[dict]:
    images = store_images.list_images(db, kinds=["synthetic"])
    if batches:
        images = [im for im in images if im["batch_id"] in set(batches)]
    prompts = store_synthetic.prompts_by_image(db)
    for im in images:
        im["prompt"] = prompts.get(im["id"])
    return _with_persons(db, images)


@job_kind("curate", title="Curate synthetic images")
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from engine.curate.teacher import MappedTeacher, Teacher

    ws = ctx.ws
    with ws.connect() as db:
        real_all = store_images.list_images(db, kinds=["real"])
        real_train = [r for r in real_all if r["split"] == "train"]
        if params.get("calibrate_on") is not None:
            # e.g. a loop's own anchors: the images (and labels) of a larger reference arm stay unread
            wanted = {int(i) for i in params["calibrate_on"]}
            outside = wanted - {r["id"] for r in real_train}
            if outside:
                raise RealcalError(f"calibrate_on: {len(outside)} of the {len(wanted)} images are not real train "
                                   f"images (e.g. {sorted(outside)[:5]})")
            real_train = [r for r in real_train if r["id"] in wanted]
        real_train = _with_persons(db, real_train)
        items = load_items(db, params.get("batches"))
        if not items:
            raise RealcalError("nothing to curate: no synthetic images (generate some first)")
        emb_spec = params["embedder"]
        emb_params = embedder_params(params)
        embedder = registry.build("embedder", emb_spec["name"], emb_params)
        # runs stored before these options existed ran the teacher at 640 in PyTorch
        imgsz, backend = int(params.get("teacher_imgsz", 640)), params.get("backend", "torch")
        teacher: Teacher | MappedTeacher = Teacher(params["teacher_weights"], params["device"], imgsz, backend=backend)
        if (params.get("executor") or {}).get("name") == "ray":
            from engine import executors

            exe = executors.build(params["executor"])
            embedder.executor, embedder.spec = exe, {"name": emb_spec["name"], "params": emb_params}
            teacher = MappedTeacher(exe, params["teacher_weights"], params["device"], imgsz, backend=backend)
        sctx = StageContext(ws=ws, db=db, embedder=embedder, teacher=teacher, real_train=real_train, real_all=real_all)
        stages = [(s["name"], registry.build("stage", s["name"], s.get("params") or {})) for s in params["stages"]]
        total = len(stages) + 2
        with write_transaction(db):
            run_id = store_curation.create_run(db, ctx.job_id, params)
        ctx.progress(0, total, f"{len(items)} synthetic images; calibrating on {len(real_train)} real train images",
                     force=True)
        calibration, funnel = {}, []
        survivors = items
        t0 = time.perf_counter()
        for n, (name, stage) in enumerate(stages, 1):
            calibration[name] = stage.calibrate(sctx)
            rows = stage.run(sctx, survivors)
            with write_transaction(db):
                store_curation.put_results(db, run_id, name, rows)
            status = {r["image_id"]: r["status"] for r in rows}
            counts = {s: sum(1 for v in status.values() if v == s) for s in ("pass", "fail", "unavailable")}
            funnel.append({"stage": name, "entered": len(survivors), "passed": counts["pass"],
                           "failed": counts["fail"], "unavailable": counts["unavailable"]})
            survivors = [it for it in survivors if status.get(it["id"]) in ("pass", "unavailable")]
            ctx.progress(n, total, f"{name}: {counts['pass']} passed, {counts['fail']} failed"
                         + (f", unavailable ({counts['unavailable']})" if counts["unavailable"] else ""))
        set_metrics = {}
        realism = next((s for n_, s in stages if n_ == "realism"), None)
        if realism is not None:
            by_batch: dict[int, list[dict]] = {}
            for it in items:
                by_batch.setdefault(it["batch_id"], []).append(it)
            set_metrics = realism.set_metrics(sctx, by_batch)
        ctx.progress(len(stages) + 1, total, f"scoring uncertainty of {len(survivors)} survivors")
        order = score_and_select(sctx, run_id, survivors, params["selection"])
        with write_transaction(db):
            store_curation.finish_run(db, run_id, calibration=calibration, funnel=funnel,
                                      set_metrics=set_metrics)
            store_events.log(db, "curation.run", {"run_id": run_id, "funnel": funnel,
                                                  "selected": len(order)})
        return {"run_id": run_id, "funnel": funnel, "kept": len(survivors),
                "seconds": round(time.perf_counter() - t0, 2), "set_metrics": set_metrics}


def score_and_select(sctx: StageContext, run_id: int, survivors: list[dict], selection: dict) -> list[dict]:
    preds = sctx.cache.get("teacher_predictions", {})
    todo = [it for it in survivors if it["id"] not in preds]
    if todo:
        preds.update({it["id"]: p for it, p in zip(todo, sctx.predict(todo))})
    flipped = {}
    if selection.get("flip_tta", True) and survivors:
        flipped = {it["id"]: p for it, p in zip(survivors, sctx.predict(survivors, flip=True))}
    rows = []
    for it in survivors:
        u = uncertainty(it["persons"], preds[it["id"]], flipped.get(it["id"]), it["width"])
        rows.append({"image_id": it["id"], "status": "pass", "value": u["value"], "details": u})
    with write_transaction(sctx.db):
        store_curation.put_results(sctx.db, run_id, "uncertainty", rows)
    return select(sctx.ws, sctx.db, run_id, selection.get("weights", DEFAULT_WEIGHTS), embedder=sctx.embedder)


def select(ws: Workspace, db, run_id: int, weights: dict[str, float], budget: int | None = None,
           embedder=None) -> list[dict]:
    """Order the run's survivors (those with an uncertainty score) and store the order."""
    from engine.curate.embedders import cached_embeddings

    scored = store_curation.results(db, run_id, "uncertainty")
    if not scored:
        with write_transaction(db):
            store_curation.put_selection(db, run_id, [])
        return []
    images = {im["id"]: im for im in store_images.list_images(db, kinds=["synthetic"])}
    items = _with_persons(db, [images[r["image_id"]] for r in scored if r["image_id"] in images])
    if embedder is None:
        spec = store_curation.run_config(db, run_id)["embedder"]
        embedder = registry.build("embedder", spec["name"], spec.get("params") or {})
    emb = cached_embeddings(ws, db, embedder, items)
    by_image = {r["image_id"]: r["value"] for r in scored}
    u = np.array([by_image[it["id"]] for it in items])
    selector = registry.build("selector", "greedy", weights)
    student = None
    if selector.student > 0:
        scores = student_scores(db, run_id)
        student = np.array([scores.get(it["id"], np.nan) for it in items]) if scores else None
    order = selector.order(u, np.stack([emb[it["id"]] for it in items]),
                           np.stack([pose_vector(it["persons"]) for it in items]), budget, student=student)
    w_need = selector.uncertainty + selector.student
    rows = [{"image_id": items[i]["id"], "rank": rank + 1,
             "priority": round(w_need * un + selector.diversity * dv, 4),
             "components": {"uncertainty": round(float(u[i]), 4), "uncertainty_scaled": round(un, 4),
                            "diversity": round(dv, 4), "weights": weights,
                            **({"student": (None if not np.isfinite(student[i]) else round(float(student[i]), 4))}
                               if student is not None else {})}}
            for rank, (i, un, dv) in enumerate(order)]
    with write_transaction(db):
        store_curation.put_selection(db, run_id, rows)
    return rows
