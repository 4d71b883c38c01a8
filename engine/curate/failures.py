"""Where the student fails, measured on train data only (val and test are never read).

``realcal mine-failures --training-run ID`` scores the student on

* labelled real *train* people the student did not train on (train anchors outside its manifest), against
  their labels; and
* unlabelled real *train* images, against the teacher's confident detections (disagreement: one of the two
  models is wrong there),

then groups the people by pose (each limb's direction relative to the torso, the torso's direction, which
way the body faces: ``pose_features``) with k-means and ranks the groups by the student's error. Each group
lists its people (the worst first: their person ids are targets for generation, ``pose_source.targets``),
its per-joint errors, how much of the train anchors it covers and which anchors those are
(``anchor_person_ids``: targets that exist even when the failures were found on unlabelled images).
The result is stored with the job and
in ``<workspace>/failures/train<ID>.json``.
"""
from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from engine import config, poses
from engine.curate.base import StageContext
from engine.curate.pose_consistency import match_people
from engine.curate.teacher import Teacher
from engine.errors import RealcalError
from engine.jobs import JobContext, job_kind
from engine.workspace import Workspace
from store import events as store_events
from store import images as store_images
from store import training as store_training

KP = poses.KP
TORSO = (KP["left_shoulder"], KP["right_shoulder"], KP["right_hip"], KP["left_hip"])


def pose_features(k: np.ndarray) -> np.ndarray | None:
    """18 numbers describing a pose regardless of where and how large it is: each limb's direction relative
    to the torso axis (cos, sin; zeros when the limb is not labelled), the torso axis's direction in the image
    (cos, sin) and the body's facing (the sign of the torso polygon's area). None without a torso axis."""
    k = np.asarray(k, dtype=float)
    axis = poses.torso_axis(k)
    if axis is None:
        return None
    base = float(np.arctan2(axis[1], axis[0]))
    feats: list[float] = []
    for a, b in poses.COVERAGE_LIMBS.values():
        if k[a, 2] > 0 and k[b, 2] > 0:
            v = k[b, :2] - k[a, :2]
            t = float(np.arctan2(v[1], v[0])) - base
            feats += [float(np.cos(t)), float(np.sin(t))]
        else:
            feats += [0.0, 0.0]
    feats += [float(np.cos(base)), float(np.sin(base))]
    quad = np.array([k[j, :2] for j in TORSO]) if all(k[j, 2] > 0 for j in TORSO) else None
    if quad is not None:
        x, y = quad[:, 0], quad[:, 1]
        area = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        feats.append(float(np.sign(area)))
    else:
        feats.append(0.0)
    return np.asarray(feats)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding: (labels, centres)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    k = max(1, min(k, n))
    centres = [x[int(rng.integers(n))]]
    for _ in range(1, k):
        d = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        p = d / d.sum() if d.sum() > 0 else np.full(n, 1 / n)
        centres.append(x[int(rng.choice(n, p=p))])
    c = np.asarray(centres)
    labels = np.zeros(n, dtype=int)
    for _ in range(iters):
        labels = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        new = np.array([x[labels == j].mean(axis=0) if (labels == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return labels, c


def _joint_means(rows: list[np.ndarray]) -> np.ndarray:
    """Per joint, the mean over people where it was labelled (NaN where it never was)."""
    stack = np.stack(rows)
    n = np.isfinite(stack).sum(axis=0)
    return np.where(n > 0, np.nansum(stack, axis=0) / np.maximum(n, 1), np.nan)


def person_errors(gt: np.ndarray, area: float, pred: dict) -> tuple[float, np.ndarray]:
    """(OKS of the student's best match, per-joint distance in torso lengths; NaN where not labelled,
    1.0 where the student found no one)."""
    diam = poses.torso_diameter(gt)
    per = np.full(17, np.nan)
    if not len(pred["keypoints"]):
        per[gt[:, 2] > 0] = 1.0
        return 0.0, per
    (d, score), = match_people([gt], [area], pred["keypoints"])
    if d is None:
        per[gt[:, 2] > 0] = 1.0
        return 0.0, per
    det = pred["keypoints"][d]
    lab = gt[:, 2] > 0
    scale = diam if np.isfinite(diam) and diam > 0 else max(float(np.sqrt(area)), 1.0)
    per[lab] = np.hypot(*(det[lab, :2] - gt[lab, :2]).T) / scale
    return float(score), per


def resolve_params(ws: Workspace, overrides: dict[str, Any]) -> dict[str, Any]:
    from engine.assets import resolve as resolve_asset
    from engine.curate.student import student_weights

    unknown = set(overrides) - {"training_run_id", "k", "seed", "imgsz", "labels"}
    if unknown:
        raise RealcalError(f"unknown failure-mining option(s) {', '.join(sorted(unknown))}; "
                           f"valid: training_run_id, k, seed, imgsz, labels")
    if not isinstance(overrides.get("labels", True), bool):
        raise RealcalError("labels must be true (score held-out train people against their labels) or false "
                           "(treat every train image outside the student's training set as unlabelled)")
    if overrides.get("training_run_id") is None:
        raise RealcalError("name the student: a finished training run (--training-run ID)")
    k = int(overrides.get("k") or 6)
    if not 1 <= k <= 50:
        raise RealcalError("k (pose groups) must be within 1..50")
    params: dict[str, Any] = {"training_run_id": int(overrides["training_run_id"]), "k": k,
                              "seed": int(overrides.get("seed") or 0), "imgsz": int(overrides.get("imgsz") or 320),
                              "labels": bool(overrides.get("labels", True))}
    params["student_weights"] = student_weights(ws, params["training_run_id"])
    with ws.connect() as db:
        cfg = config.resolve(db)
    params["teacher_weights"] = str(resolve_asset(cfg["teacher.model"], explicit=cfg["teacher.path"] or None))
    params["device"] = cfg["device"]
    params["backend"] = cfg["inference.backend"]
    return params


def _candidates(db, training_run_id: int, labels: bool = True) -> tuple[list[dict], list[dict], set[int]]:
    """(labelled train images the student did not train on, unlabelled train images, its training images).

    ``labels=False``: labelled images outside the student's training set count as unlabelled (their pixels are
    read, their labels never), for comparisons where those labels belong to another arm (N vs 2N)."""
    tr = store_training.run(db, training_run_id)
    if tr is None:
        raise RealcalError(f"no training run {training_run_id}")
    m = store_training.manifest(db, tr["manifest_id"])
    trained = {it["image_id"] for it in (m or {}).get("items", []) if it["split"] == "train"}
    real = store_images.list_images(db, kinds=["real"], splits=["train"])
    persons = store_images.persons_for_images(db, [im["id"] for im in real])
    held_out, unlabelled = [], []
    for im in real:
        if im["id"] in trained:
            continue
        labelled = [p for p in persons[im["id"]] if p["source"] in ("ground_truth", "corrected")
                    and not p["iscrowd"] and p["num_keypoints"] >= 4]
        if labelled and labels:
            held_out.append({**im, "persons": labelled})
        elif not labels or not any(p["source"] in ("ground_truth", "corrected") for p in persons[im["id"]]):
            unlabelled.append({**im, "persons": []})
    return held_out, unlabelled, trained


@job_kind("mine_failures", title="Find where a trained student fails (train data only)")
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    ws = ctx.ws
    t0 = time.perf_counter()
    with ws.connect() as db:
        held_out, unlabelled, trained = _candidates(db, params["training_run_id"], params.get("labels", True))
        anchors = store_images.train_anchor_persons(db)
    if not held_out and not unlabelled:
        raise RealcalError(
            f"nothing to mine: every labelled real train image was in training run {params['training_run_id']}'s "
            f"training set ({len(trained)} images) and there are no unlabelled real train images. Train the student "
            f"on fewer anchors than the pool, or import unlabelled images (realcal import --format images)")
    sctx = StageContext(ws=ws, db=None)
    student = Teacher(params["student_weights"], params["device"], imgsz=params["imgsz"],
                      backend=params.get("backend", "torch"))
    teacher = Teacher(params["teacher_weights"], params["device"], imgsz=params["imgsz"],
                      backend=params.get("backend", "torch")) if unlabelled else None
    people: list[dict] = []
    todo = held_out + unlabelled
    for start in range(0, len(todo), 16):
        part = todo[start:start + 16]
        images = [sctx.image(im) for im in part]
        preds = student(images)
        needs_teacher = teacher is not None and any(not im["persons"] for im in part)
        tpreds: list[dict | None] = list(teacher(images)) if needs_teacher and teacher else [None] * len(part)
        for im, pred, tpred in zip(part, preds, tpreds):
            refs = []
            if im["persons"]:
                refs = [(p["id"], poses.as_keypoints(p["keypoints"]), float(p["area"]), "label") for p in im["persons"]]
            elif tpred is not None:
                for det, box in zip(tpred["keypoints"], tpred["boxes"]):
                    ref = det.copy()
                    ref[:, 2] = np.where(ref[:, 2] >= 0.5, 2.0, 0.0)
                    if (ref[:, 2] > 0).sum() >= 8:
                        refs.append((None, ref, float((box[2] - box[0]) * (box[3] - box[1])), "teacher"))
            for pid, gt, area, against in refs:
                feats = pose_features(gt)
                if feats is None:
                    continue
                oks, per = person_errors(gt, area, pred)
                people.append({"person_id": pid, "image_id": im["id"], "against": against, "error": 1.0 - oks,
                               "per_joint": per, "features": feats})
        done = min(start + 16, len(todo))
        ctx.progress(done, len(todo), f"scored {done} of {len(todo)} images")
    if not people:
        raise RealcalError("no person with a torso to group among the mined images")
    x = np.stack([p["features"] for p in people])
    labels, centres = kmeans(x, min(params["k"], max(1, len(people) // 3)), params["seed"])
    featured = [(a["id"], f) for a in anchors if (f := pose_features(poses.as_keypoints(a["keypoints"]))) is not None]
    coverage = np.zeros(len(centres))
    a_lab = np.zeros(0, dtype=int)
    if featured:
        a_lab = np.argmin(((np.stack([f for _, f in featured])[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        coverage = np.bincount(a_lab, minlength=len(centres)) / len(featured)
    clusters: list[dict[str, Any]] = []
    for j in range(len(centres)):
        members = [p for p, lab in zip(people, labels) if lab == j]
        if not members:
            continue
        members.sort(key=lambda p: -p["error"])
        per_joint = _joint_means([p["per_joint"] for p in members])
        clusters.append({
            "cluster": j, "people": len(members), "mean_error": round(float(np.mean([p["error"] for p in members])), 4),
            "anchor_coverage": round(float(coverage[j]), 4),
            "per_joint_error": {poses.KEYPOINT_NAMES[i]: (None if not np.isfinite(v) else round(float(v), 4))
                                for i, v in enumerate(per_joint)},
            "worst": [{"person_id": p["person_id"], "image_id": p["image_id"], "error": round(p["error"], 4),
                       "against": p["against"]} for p in members[:10]],
            "target_person_ids": [p["person_id"] for p in members if p["person_id"] is not None],
            # the train anchors whose pose falls in this group: what a pose-driven generator can re-pose around
            # even when the failures were found on unlabelled images
            "anchor_person_ids": [pid for (pid, _), lab in zip(featured, a_lab) if lab == j],
            # the group's k-means centre in pose_features space: a new pose belongs to the nearest centre
            "centre": [round(float(v), 5) for v in centres[j]]})
    clusters.sort(key=lambda c: -float(c["mean_error"]))
    overall = _joint_means([p["per_joint"] for p in people])
    result = {"training_run_id": params["training_run_id"], "people": len(people),
              "against_labels": sum(p["against"] == "label" for p in people),
              "against_teacher": sum(p["against"] == "teacher" for p in people),
              "mean_error": round(float(np.mean([p["error"] for p in people])), 4),
              "per_joint_error": {poses.KEYPOINT_NAMES[i]: (None if not np.isfinite(v) else round(float(v), 4))
                                  for i, v in enumerate(overall)},
              "clusters": clusters, "seconds": round(time.perf_counter() - t0, 2)}
    out = ws.root / "failures" / f"train{params['training_run_id']:05d}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    with ws.connect() as db:
        store_events.log(db, "failures.mined", {"training_run_id": params["training_run_id"], "people": len(people),
                                                "clusters": len(clusters), "path": str(out)})
        db.conn.commit()
    return {**result, "path": str(out)}
