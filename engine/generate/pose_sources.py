"""Conditioning poses from real anchors of the *train* split, varied and reproducible.

Transforms (each recorded with its parameters in the sample's lineage):

* ``mirror``: horizontal flip with COCO's ``flip_idx`` (left and right swap);
* ``rotate``, ``scale``, ``translate``: a global similarity transform;
* ``perturb``: joint-angle perturbation along the kinematic tree (upper arm, forearm, thigh, shin
  and the head rotate about their parent joint), which keeps every bone length exactly;
* ``interpolate``: blend two anchors in bone-angle space (torso joints in normalised space,
  limb bones by angle and length), so the result is a plausible in-between pose.

Every sample is placed on a ``width x height`` canvas so the person spans ``height_frac`` of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine import poses
from engine.errors import RealcalError

KP = poses.KP
# (pivot, moved joints): rotating about the pivot moves the joint and everything below it.
LIMB_CHAINS = (
    (KP["left_shoulder"], (KP["left_elbow"], KP["left_wrist"])),
    (KP["left_elbow"], (KP["left_wrist"],)),
    (KP["right_shoulder"], (KP["right_elbow"], KP["right_wrist"])),
    (KP["right_elbow"], (KP["right_wrist"],)),
    (KP["left_hip"], (KP["left_knee"], KP["left_ankle"])),
    (KP["left_knee"], (KP["left_ankle"],)),
    (KP["right_hip"], (KP["right_knee"], KP["right_ankle"])),
    (KP["right_knee"], (KP["right_ankle"],)),
)
HEAD = (KP["nose"], KP["left_eye"], KP["right_eye"], KP["left_ear"], KP["right_ear"])
BONES = ((KP["left_shoulder"], KP["left_elbow"]), (KP["left_elbow"], KP["left_wrist"]),
         (KP["right_shoulder"], KP["right_elbow"]), (KP["right_elbow"], KP["right_wrist"]),
         (KP["left_hip"], KP["left_knee"]), (KP["left_knee"], KP["left_ankle"]),
         (KP["right_hip"], KP["right_knee"]), (KP["right_knee"], KP["right_ankle"]))
TORSO = (KP["left_shoulder"], KP["right_shoulder"], KP["left_hip"], KP["right_hip"])


@dataclass
class PoseSourceConfig:
    mirror_p: float = 0.5
    max_rotate_deg: float = 15.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    max_translate_frac: float = 0.1
    perturb_p: float = 0.7
    perturb_deg: float = 20.0
    interpolate_p: float = 0.2
    height_frac: tuple[float, float] = (0.6, 0.85)
    min_keypoints: int = 8
    targets: tuple[int, ...] = ()       # anchor person ids to sample around (e.g. a failure cluster's people)
    target_p: float = 0.0               # chance that a sample starts from one of them
    target_label: str | None = None     # what asked for them (e.g. "training run 12, pose group 3"), kept in lineage

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PoseSourceConfig:
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise RealcalError(f"unknown pose source option(s) {', '.join(sorted(unknown))}; "
                               f"valid: {', '.join(cls.__dataclass_fields__)}")
        for key in ("scale_range", "height_frac"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        if "targets" in d:
            if not isinstance(d["targets"], (list, tuple)) or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in d["targets"]):
                raise RealcalError("pose source option targets is a list of anchor person ids")
            d["targets"] = tuple(d["targets"])
        cfg = cls(**d)
        for name in ("mirror_p", "perturb_p", "interpolate_p", "target_p"):
            if not 0 <= getattr(cfg, name) <= 1:
                raise RealcalError(f"pose source option {name} must be within 0..1")
        if not 0 < cfg.height_frac[0] <= cfg.height_frac[1] <= 1.5:
            raise RealcalError("pose source option height_frac must be 0 < low <= high <= 1.5")
        return cfg


@dataclass
class PoseSample:
    keypoints: np.ndarray                   # (17, 3) on the canvas
    extra: dict[str, list[float]]
    anchor_person_ids: list[int]
    anchor_image_ids: list[int]
    transform: dict[str, Any] = field(default_factory=dict)


def rotate_about(points: np.ndarray, pivot: np.ndarray, degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    r = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (points - pivot) @ r.T + pivot


def perturb_joint_angles(k: np.ndarray, rng: np.random.Generator, max_deg: float) -> tuple[np.ndarray, list]:
    """Rotate limb segments about their parent joint; bone lengths are unchanged."""
    k = k.copy()
    applied = []
    for pivot, chain in LIMB_CHAINS:
        if k[pivot, 2] <= 0:
            continue
        moved = [j for j in chain if k[j, 2] > 0]
        if not moved:
            continue
        angle = float(rng.uniform(-max_deg, max_deg))
        k[moved, :2] = rotate_about(k[moved, :2], k[pivot, :2], angle)
        applied.append([poses.KEYPOINT_NAMES[pivot], round(angle, 2)])
    ls, rs = k[KP["left_shoulder"]], k[KP["right_shoulder"]]
    head = [j for j in HEAD if k[j, 2] > 0]
    if head and ls[2] > 0 and rs[2] > 0:
        angle = float(rng.uniform(-max_deg / 2, max_deg / 2))
        neck = (ls[:2] + rs[:2]) / 2
        k[head, :2] = rotate_about(k[head, :2], neck, angle)
        applied.append(["neck", round(angle, 2)])
    return k, applied


def bone_lengths(k: np.ndarray) -> dict[tuple[int, int], float]:
    return {(a, b): float(np.hypot(*(k[a, :2] - k[b, :2]))) for a, b in BONES
            if k[a, 2] > 0 and k[b, 2] > 0}


def _normalise(k: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    pts = k[list(TORSO)]
    pts = pts[pts[:, 2] > 0]
    centre = pts[:, :2].mean(axis=0) if len(pts) else k[k[:, 2] > 0, :2].mean(axis=0)
    diam = poses.torso_diameter(k)
    if not math.isfinite(diam):
        labelled = k[k[:, 2] > 0, :2]
        diam = float(np.ptp(labelled, axis=0).max()) or 1.0
    out = k.copy()
    out[:, :2] = (k[:, :2] - centre) / diam
    return out, centre, diam


def interpolate(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Blend two poses: torso and head in normalised space, limbs by bone angle and length."""
    na, ca, da = _normalise(a)
    nb, _, _ = _normalise(b)
    both = (na[:, 2] > 0) & (nb[:, 2] > 0)
    out = np.zeros_like(na)
    out[both, :2] = (1 - t) * na[both, :2] + t * nb[both, :2]
    out[both, 2] = np.maximum(na[both, 2], nb[both, 2])
    for p, c in BONES:  # in tree order, parents first
        if not (both[p] and both[c]):
            continue
        va, vb = na[c, :2] - na[p, :2], nb[c, :2] - nb[p, :2]
        ang_a, ang_b = math.atan2(va[1], va[0]), math.atan2(vb[1], vb[0])
        diff = (ang_b - ang_a + math.pi) % (2 * math.pi) - math.pi
        ang = ang_a + t * diff
        length = (1 - t) * np.hypot(*va) + t * np.hypot(*vb)
        out[c, :2] = out[p, :2] + length * np.array([math.cos(ang), math.sin(ang)])
    out[:, :2] = out[:, :2] * da + ca
    out[~both] = 0
    return out


def _similarity(k: np.ndarray, extra: dict, m: np.ndarray) -> tuple[np.ndarray, dict]:
    k = k.copy()
    lab = k[:, 2] > 0
    k[lab, :2] = k[lab, :2] @ m[:, :2].T + m[:, 2]
    new_extra = {}
    for name, (x, y, v) in extra.items():
        if v > 0:
            x, y = np.array([x, y]) @ m[:, :2].T + m[:, 2]
        new_extra[name] = [float(x), float(y), float(v)]
    return k, new_extra


def _flip_extra(extra: dict, width: float) -> dict:
    return {n: [width - x if v > 0 else x, y, v] for n, (x, y, v) in extra.items()}


def sample_pose(anchors: list[dict], rng: np.random.Generator, cfg: PoseSourceConfig,
                width: int, height: int) -> PoseSample:
    """One conditioning pose on a ``width x height`` canvas from the anchor persons."""
    if not anchors:
        raise RealcalError("no real anchors: import labelled train images first (persons with at "
                           f"least {cfg.min_keypoints} labelled joints on the train split)")
    transform: dict[str, Any] = {}
    first = None
    if cfg.targets and cfg.target_p > 0 and rng.random() < cfg.target_p:
        wanted = set(cfg.targets)
        chosen = [a for a in anchors if a["id"] in wanted]
        if chosen:   # around a pose the caller asked for (its own variations follow, as for any anchor)
            first = chosen[int(rng.integers(len(chosen)))]
            transform["target"] = first["id"]
            if cfg.target_label:
                transform["target_label"] = cfg.target_label
    if first is None:
        first = anchors[int(rng.integers(len(anchors)))]
    k = poses.as_keypoints(first["keypoints"])
    extra = {n: list(map(float, j)) for n, j in (first.get("extra") or {}).items()}
    used = [first]
    if len(anchors) > 1 and rng.random() < cfg.interpolate_p:
        second = anchors[int(rng.integers(len(anchors)))]
        if second["id"] != first["id"]:
            t = float(rng.uniform(0.25, 0.75))
            k = interpolate(k, poses.as_keypoints(second["keypoints"]), t)
            extra = {}
            used.append(second)
            transform["interpolate"] = {"with_person": second["id"], "t": round(t, 3)}
    if rng.random() < cfg.mirror_p:
        k = poses.flip_keypoints(k, first["width"])
        extra = _flip_extra(extra, first["width"])
        transform["mirror"] = True
    if rng.random() < cfg.perturb_p:
        k, applied = perturb_joint_angles(k, rng, cfg.perturb_deg)
        transform["perturb"] = applied
    # place on the canvas: scale the person to a height fraction, centre, then rotate/scale/shift
    lab = k[k[:, 2] > 0, :2]
    if len(lab) < 2:
        raise RealcalError(f"anchor person {first['id']} has fewer than 2 labelled joints")
    lo, hi = lab.min(axis=0), lab.max(axis=0)
    size = max(hi[1] - lo[1], (hi[0] - lo[0]) * height / width, 1.0)
    frac = float(rng.uniform(*cfg.height_frac))
    s = frac * height / size * float(rng.uniform(*cfg.scale_range))
    angle = float(rng.uniform(-cfg.max_rotate_deg, cfg.max_rotate_deg))
    shift = rng.uniform(-cfg.max_translate_frac, cfg.max_translate_frac, 2) * (width, height)
    centre = (lo + hi) / 2
    t = math.radians(angle)
    r = s * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    target = np.array([width / 2, height / 2]) + shift
    m = np.concatenate([r, (target - r @ centre)[:, None]], axis=1)
    k, extra = _similarity(k, extra, m)
    transform.update({"rotate_deg": round(angle, 2), "scale": round(s, 4),
                      "translate": [round(float(v), 1) for v in shift], "canvas": [width, height]})
    return PoseSample(k, extra, [p["id"] for p in used], [p["image_id"] for p in used], transform)
