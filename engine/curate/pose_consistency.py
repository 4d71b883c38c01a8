"""Pose consistency: re-detect the people with the teacher and compare with the conditioning
skeletons by OKS (the conditioning pose is the label, so it must be what the image shows).

Each conditioning person is matched to the unmatched detection with the highest OKS (greedy,
best pairs first); an unmatched person scores 0. The image's score is its worst person's OKS.
Per-joint agreement (the joint's own OKS term >= 0.5) and the detected keypoints are stored for
the review overlay. Calibration uses the same score for the teacher on the train real anchors.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine import component, poses
from engine.curate.base import Stage, StageContext, passes, resolve_threshold
from engine.registry import register


def match_people(gts: list[np.ndarray], areas: list[float], dets: np.ndarray) -> list[tuple[int | None, float]]:
    if not gts:
        return []
    if len(dets) == 0:
        return [(None, 0.0)] * len(gts)
    m = poses.oks_matrix(np.stack(gts), dets, areas)
    m = np.nan_to_num(m, nan=0.0)
    out: list[tuple[int | None, float]] = [(None, 0.0)] * len(gts)
    used_g, used_d = set(), set()
    for flat in np.argsort(-m, axis=None):
        g, d = np.unravel_index(flat, m.shape)
        if g in used_g or d in used_d or m[g, d] <= 0:
            continue
        out[g] = (int(d), float(m[g, d]))
        used_g.add(g)
        used_d.add(d)
    return out


def joint_agreement(gt: np.ndarray, det: np.ndarray, area: float) -> list[float | None]:
    variances = (poses.SIGMAS * 2) ** 2
    d2 = (det[:, 0] - gt[:, 0]) ** 2 + (det[:, 1] - gt[:, 1]) ** 2
    sim = np.exp(-d2 / variances / (area + np.spacing(1)) / 2)
    return [round(float(s), 3) if gt[j, 2] > 0 else None for j, s in enumerate(sim)]


def consistency(persons: list[dict], pred: dict, sources=("conditioning",)) -> tuple[float, list[dict]]:
    people = [p for p in persons if p["source"] in sources and p["num_keypoints"] > 0 and not p["iscrowd"]]
    gts = [poses.as_keypoints(p["keypoints"]) for p in people]
    areas = [p["area"] for p in people]
    matches = match_people(gts, areas, pred["keypoints"])
    details = []
    for p, gt, area, (d, score) in zip(people, gts, areas, matches):
        det = pred["keypoints"][d] if d is not None else None
        details.append({"person_id": p["id"], "oks": round(score, 4),
                        "detected": det.round(2).tolist() if det is not None else None,
                        "joint_agreement": joint_agreement(gt, det, area) if det is not None else None})
    value = min((d["oks"] for d in details), default=float("nan"))
    return value, details


@register("stage", "pose_consistency")
class PoseConsistencyStage(Stage):
    higher_is_better = True
    main = "oks"

    # Default: reject images whose worst person agrees with its label less than the teacher agrees
    # with the ground truth on 90 % of the real train anchors.
    @dataclass(frozen=True)
    class Config(component.Config):
        threshold: float | dict = field(default_factory=lambda: {"real_percentile": 10})

    def configure(self) -> None:
        self.cutoff: float | None = None      # the threshold in effect, once calibrated

    def calibrate(self, ctx: StageContext) -> dict:
        real = None
        if isinstance(self.threshold, dict):
            anchors = [r for r in ctx.real_train if any(p["source"] in ("ground_truth", "corrected")
                                                         for p in r["persons"])]
            preds = ctx.predict(anchors)
            real = np.array([consistency(r["persons"], pr, ("ground_truth", "corrected"))[0]
                             for r, pr in zip(anchors, preds)])
        self.cutoff, record = resolve_threshold(self.threshold, real, True, "pose_consistency")
        self.calibration = {"oks": record}
        return self.calibration

    def run(self, ctx: StageContext, items: list[dict]) -> list[dict]:
        rows = []
        preds = ctx.predict(items)
        ctx.cache.setdefault("teacher_predictions", {}).update({it["id"]: p for it, p in zip(items, preds)})
        for it, pred in zip(items, preds):
            value, details = consistency(it["persons"], pred)
            ok = passes(value, self.cutoff, True)
            rows.append({"image_id": it["id"], "status": "pass" if ok else "fail",
                         "value": None if not np.isfinite(value) else value,
                         "reason": None if ok else f"pose mismatch (worst OKS {value:.2f} < {self.cutoff:.2f})",
                         "details": {"people": details, "detections": int(len(pred["scores"]))}})
        return rows
