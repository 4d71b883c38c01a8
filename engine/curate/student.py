"""Student signals: what the model being trained says about the candidates it might be given.

Given a finished training run (the *student*) and a curation run, the ``student_signals`` job scores
every survivor of the curation run with the student and stores three signals next to the curation
stages (each in 0..1, higher = the student needs it more):

* ``student_hardness``: 1 - OKS between the student's detection and the image's label (the conditioning
  pose). Trusted only where the label itself passed pose consistency (the teacher re-detected the
  pose it was generated from); elsewhere it is ``unavailable``, because a wrong label also looks "hard";
* ``student_disagreement``: 1 - OKS between the student's and the teacher's detections of the labelled
  person (where the two models disagree, one of them is wrong);
* ``student_flip``: 1 - OKS between the student's detection and its detection on the mirrored image,
  un-mirrored (flip test-time augmentation: an unstable prediction).

The selector weighs them with ``student`` (``selection.weights`` / ``realcal select --student-weight``),
and the Curate page and the review order show them.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from engine import config, poses
from engine.curate.base import StageContext
from engine.curate.pose_consistency import match_people
from engine.curate.select import SIGNALS, student_scores  # noqa: F401  (student_scores: re-exported)
from engine.curate.teacher import Teacher
from engine.errors import RealcalError
from engine.jobs import JobContext, job_kind
from engine.workspace import Workspace
from store import curation as store_curation
from store import events as store_events
from store import training as store_training
from store.db import write_transaction


def student_weights(ws: Workspace, training_run_id: int) -> str:
    """The weights file of a finished training run, with a clear error otherwise."""
    with ws.connect() as db:
        tr = store_training.run(db, training_run_id)
    if tr is None:
        raise RealcalError(f"no training run {training_run_id} in this workspace (see `realcal train --help`)")
    if tr["status"] != "done" or not tr.get("weights"):
        raise RealcalError(f"training run {training_run_id} is {tr['status']}: a student must have finished training")
    path = Path(tr["weights"])
    if not path.is_absolute():
        path = ws.root / path
    if not path.exists():
        raise RealcalError(f"training run {training_run_id}'s weights are missing: {path}")
    return str(path)


def _agreement(gt: np.ndarray, area: float, pred: dict) -> float | None:
    """OKS of the best-matching predicted person with ``gt`` (None when nothing is predicted)."""
    if not len(pred["keypoints"]):
        return 0.0
    (d, score), = match_people([gt], [area], pred["keypoints"])
    return float(score) if d is not None else 0.0


def signals(persons: list[dict], student: dict, student_flipped: dict | None, teacher: dict, width: int,
            label_trusted: bool) -> dict[str, dict[str, Any]]:
    """The three signals of one image from the models' predictions (RGB image of ``width`` pixels)."""
    people = [p for p in persons if p["source"] in ("conditioning", "corrected") and p["num_keypoints"] > 0]
    if not people:
        return {s: {"status": "unavailable", "value": None, "reason": "no labelled person"} for s in SIGNALS}
    hard, disagree, flip = [], [], []
    for p in people:
        gt = poses.as_keypoints(p["keypoints"])
        area = float(p["area"])
        hard.append(1.0 - (_agreement(gt, area, student) or 0.0))
        # the teacher's detection of this person, as a reference pose for the student's
        t = match_people([gt], [area], teacher["keypoints"])[0][0] if len(teacher["keypoints"]) else None
        if t is not None:
            ref = teacher["keypoints"][t].copy()
            ref[:, 2] = np.where(ref[:, 2] >= 0.5, 2.0, 0.0)
            if (ref[:, 2] > 0).sum() >= 2:
                disagree.append(1.0 - (_agreement(ref, area, student) or 0.0))
        s = match_people([gt], [area], student["keypoints"])[0][0] if len(student["keypoints"]) else None
        if s is not None and student_flipped is not None:
            own = student["keypoints"][s].copy()
            own[:, 2] = np.where(own[:, 2] >= 0.5, 2.0, 0.0)
            unflipped = {"keypoints": np.stack([poses.flip_keypoints(k, width) for k in student_flipped["keypoints"]])
                         if len(student_flipped["keypoints"]) else np.zeros((0, 17, 3))}
            if (own[:, 2] > 0).sum() >= 2:
                flip.append(1.0 - (_agreement(own, area, unflipped) or 0.0))
    out: dict[str, dict[str, Any]] = {}
    out["student_hardness"] = ({"status": "pass", "value": float(np.mean(hard)), "reason": None} if label_trusted else
                               {"status": "unavailable", "value": float(np.mean(hard)),
                                "reason": "label not confirmed by pose consistency"})
    out["student_disagreement"] = ({"status": "pass", "value": float(np.mean(disagree)), "reason": None} if disagree
                                   else {"status": "unavailable", "value": None, "reason": "the teacher finds no one"})
    out["student_flip"] = ({"status": "pass", "value": float(np.mean(flip)), "reason": None} if flip
                           else {"status": "unavailable", "value": None, "reason": "the student finds no one"})
    return out


def resolve_params(ws: Workspace, overrides: dict[str, Any]) -> dict[str, Any]:
    from engine.assets import resolve as resolve_asset

    unknown = set(overrides) - {"run_id", "training_run_id", "imgsz"}
    if unknown:
        raise RealcalError(f"unknown student-signal option(s) {', '.join(sorted(unknown))}; "
                           f"valid: run_id, training_run_id, imgsz")
    if overrides.get("training_run_id") is None:
        raise RealcalError("name the student: a finished training run (--training-run ID)")
    params: dict[str, Any] = {"training_run_id": int(overrides["training_run_id"]),
                              "imgsz": int(overrides.get("imgsz") or 320)}
    params["student_weights"] = student_weights(ws, params["training_run_id"])
    with ws.connect() as db:
        run_id = overrides.get("run_id")
        if run_id is None:
            latest = store_curation.latest_run(db)
            if latest is None:
                raise RealcalError("no curation run yet: run `realcal curate` first")
            run_id = latest["id"]
        if not store_curation.results(db, int(run_id), "uncertainty"):
            raise RealcalError(f"curation run {run_id} has no survivors to score (did it finish?)")
        cfg = config.resolve(db)
    params["run_id"] = int(run_id)
    params["teacher_weights"] = str(resolve_asset(cfg["teacher.model"], explicit=cfg["teacher.path"] or None))
    params["device"] = cfg["device"]
    params["backend"] = cfg["inference.backend"]
    return params


@job_kind("student_signals", title="Score candidates with a trained student")
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from engine.curate.run import load_items

    ws = ctx.ws
    t0 = time.perf_counter()
    with ws.connect() as db:
        survivors = {r["image_id"] for r in store_curation.results(db, params["run_id"], "uncertainty")}
        trusted = {r["image_id"] for r in store_curation.results(db, params["run_id"], "pose_consistency")
                   if r["status"] == "pass"}
        items = [it for it in load_items(db, None) if it["id"] in survivors]
        sctx = StageContext(ws=ws, db=db)
        student = Teacher(params["student_weights"], params["device"], imgsz=params["imgsz"],
                      backend=params.get("backend", "torch"))
        teacher = Teacher(params["teacher_weights"], params["device"], imgsz=params["imgsz"],
                      backend=params.get("backend", "torch"))
        rows: dict[str, list[dict]] = {s: [] for s in SIGNALS}
        chunk = 16
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            images = [sctx.image(it) for it in part]
            s_pred = student(images)
            s_flip = student([np.ascontiguousarray(im[:, ::-1]) for im in images])
            t_pred = teacher(images)
            for it, sp, sf, tp in zip(part, s_pred, s_flip, t_pred):
                for name, rec in signals(it["persons"], sp, sf, tp, it["width"], it["id"] in trusted).items():
                    rows[name].append({"image_id": it["id"], "status": rec["status"], "value": rec["value"],
                                       "reason": rec["reason"],
                                       "details": {"training_run_id": params["training_run_id"]}})
            ctx.progress(min(start + chunk, len(items)), len(items), f"scored {min(start + chunk, len(items))} of "
                                                                     f"{len(items)} survivors with the student")
        with write_transaction(db):
            for name, r in rows.items():
                store_curation.put_results(db, params["run_id"], name, r)
            summary = {name: {"scored": sum(1 for x in r if x["status"] == "pass"),
                              "mean": (float(np.mean([x["value"] for x in r if x["status"] == "pass"]))
                                       if any(x["status"] == "pass" for x in r) else None)}
                       for name, r in rows.items()}
            store_events.log(db, "curation.student", {"run_id": params["run_id"],
                                                      "training_run_id": params["training_run_id"], **summary})
    return {"run_id": params["run_id"], "training_run_id": params["training_run_id"], "images": len(items),
            "signals": summary, "seconds": round(time.perf_counter() - t0, 2)}
