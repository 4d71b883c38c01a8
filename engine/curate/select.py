"""Uncertainty scorers and the budgeted, diversity-aware selection (the review queue order).

Uncertainty per image (each in 0..1, higher = the model is less sure; the mean of those
available):
* ``keypoint_confidence``: 1 - mean teacher confidence over the matched people's joints;
* ``flip_tta``: 1 - OKS between the teacher's prediction and its un-flipped prediction on the
  mirrored image;
* ``student``: disagreement between the teacher and the latest fine-tuned student — unavailable
  until a student exists (training comes later), and reported so.

Selection is greedy: each step takes the image maximising
``w_u * uncertainty + w_d * diversity``, where diversity is the distance to the nearest image
already selected, half in embedding space (cosine) and half in normalised pose space, each
scaled to 0..1 (k-center greedy when ``w_u = 0``). Defaults ``w_u = w_d = 0.5``. The first
``budget`` images of the order are the selection; the whole order is the review queue.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine import component, poses
from engine.component import Component
from engine.curate.pose_consistency import match_people
from engine.errors import RealcalError
from engine.registry import register

DEFAULT_WEIGHTS = {"uncertainty": 0.5, "diversity": 0.5}
SIGNALS = ("student_hardness", "student_disagreement", "student_flip")   # engine/curate/student.py stores them


def student_scores(db, run_id: int) -> dict[int, float]:
    """Per image, the mean of its available student signals (0..1); empty when no student scored the run."""
    from store import curation as store_curation

    per: dict[int, list[float]] = {}
    for name in SIGNALS:
        for r in store_curation.results(db, run_id, name):
            if r["status"] == "pass" and r["value"] is not None:
                per.setdefault(r["image_id"], []).append(float(r["value"]))
    return {i: float(np.mean(v)) for i, v in per.items()}


def uncertainty(persons: list[dict], pred: dict, pred_flipped: dict | None, width: int) -> dict[str, Any]:
    people = [p for p in persons if p["source"] == "conditioning" and p["num_keypoints"] > 0]
    gts = [poses.as_keypoints(p["keypoints"]) for p in people]
    areas = [p["area"] for p in people]
    matches = match_people(gts, areas, pred["keypoints"])
    confs, flips = [], []
    for gt, area, (d, _) in zip(gts, areas, matches):
        if d is None:
            confs.append(0.0)
            flips.append(0.0)
            continue
        det = pred["keypoints"][d]
        confs.append(float(det[gt[:, 2] > 0, 2].mean()) if (gt[:, 2] > 0).any() else float(det[:, 2].mean()))
        if pred_flipped is not None:
            unflipped = np.stack([poses.flip_keypoints(k, width) for k in pred_flipped["keypoints"]]) \
                if len(pred_flipped["keypoints"]) else np.zeros((0, 17, 3))
            ref = det.copy()
            ref[:, 2] = 2
            (fd, score), = match_people([ref], [area], unflipped)
            flips.append(score)
    out: dict[str, Any] = {"keypoint_confidence": 1 - float(np.mean(confs)) if confs else None,
                           "flip_tta": (1 - float(np.mean(flips))) if (pred_flipped is not None and flips) else None,
                           "student": None,
                           "student_reason": "student signals are stored apart (`realcal student-signals`)"}
    vals = [v for k, v in out.items() if k in ("keypoint_confidence", "flip_tta", "student") and v is not None]
    out["value"] = float(np.mean(vals)) if vals else 0.0
    return out


def pose_vector(persons: list[dict]) -> np.ndarray:
    """The first conditioning person's joints, centred and scaled by their box (34 numbers)."""
    for p in persons:
        if p["source"] == "conditioning" and p["num_keypoints"] > 0:
            k = poses.as_keypoints(p["keypoints"])
            lab = k[:, 2] > 0
            centre = k[lab, :2].mean(axis=0)
            scale = max(p["bbox_w"], p["bbox_h"], 1.0)
            v = np.zeros((17, 2))
            v[lab] = (k[lab, :2] - centre) / scale
            return v.reshape(-1)
    return np.zeros(34)


def greedy_order(u: np.ndarray, emb: np.ndarray, pose_vecs: np.ndarray, weights: dict[str, float] = DEFAULT_WEIGHTS,
                 budget: int | None = None) -> list[tuple[int, float, float]]:
    """Indices in selection order with (index, uncertainty part, diversity part)."""
    n = len(u)
    if n == 0:
        return []
    wu, wd = float(weights.get("uncertainty", 0.5)), float(weights.get("diversity", 0.5))
    u = np.asarray(u, dtype=float)
    un = (u - u.min()) / (np.ptp(u) or 1.0)
    d_emb = np.full(n, np.inf)
    d_pose = np.full(n, np.inf)
    chosen: list[tuple[int, float, float]] = []
    free = np.ones(n, dtype=bool)
    limit = n if budget is None else min(n, budget)
    while len(chosen) < limit:
        if chosen:
            de = d_emb / (d_emb[free].max() or 1.0)
            dp = d_pose / (d_pose[free].max() or 1.0)
            div = 0.5 * de + 0.5 * dp
        else:
            div = np.ones(n)
        score = wu * un + wd * div
        score[~free] = -np.inf
        i = int(np.argmax(score))
        chosen.append((i, float(un[i]), float(div[i])))
        free[i] = False
        d_emb = np.minimum(d_emb, 1.0 - emb @ emb[i])
        d_pose = np.minimum(d_pose, np.linalg.norm(pose_vecs - pose_vecs[i], axis=1))
    return chosen


@register("selector", "greedy")
class GreedySelector(Component):
    """Uncertainty plus diversity, greedily (k-center greedy when ``uncertainty`` is 0); the weights
    are this selector's configuration (``selection.weights`` in a curation config). ``student`` weighs the
    student signals (``engine.curate.student``: hardness, disagreement with the teacher, flip instability)
    beside the teacher's uncertainty, once a trained student has scored the candidates."""

    @dataclass(frozen=True)
    class Config(component.Config):
        uncertainty: float = 0.5
        diversity: float = 0.5
        student: float = 0.0

        def validate(self) -> None:
            if min(self.uncertainty, self.diversity, self.student) < 0 or \
                    self.uncertainty + self.diversity + self.student <= 0:
                raise RealcalError("selection weights must be >= 0 and not all 0")

    def order(self, u: np.ndarray, emb: np.ndarray, pose_vecs: np.ndarray, budget: int | None = None,
              student: np.ndarray | None = None) -> list[tuple[int, float, float]]:
        """Indices in selection order with (index, need part, diversity part). With a ``student`` weight, the
        need of an image is the weighted mean of the teacher's uncertainty and its student score (``student``:
        one value per image, NaN where the student could not score it: the uncertainty stands in)."""
        wu, wd, ws = self.uncertainty, self.diversity, self.student
        need = np.asarray(u, dtype=float)
        if ws > 0:
            if student is None:
                raise RealcalError("the selection weighs the student, but no student has scored this curation run: "
                                   "run `realcal curate student --training-run ID` first")
            s = np.asarray(student, dtype=float)
            s = np.where(np.isfinite(s), s, need)
            need = (wu * need + ws * s) / (wu + ws)
            wu = wu + ws
        return greedy_order(need, emb, pose_vecs, {"uncertainty": wu, "diversity": wd}, budget)
