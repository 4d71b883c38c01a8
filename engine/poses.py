"""The COCO-17 keypoint schema, OKS, PCK and skeleton drawing.

Conventions used everywhere in realcal:

* Keypoints are arrays of shape (17, 3): x, y in image pixels and a COCO visibility flag
  v (0 = not labelled, 1 = labelled but occluded, 2 = labelled and visible). Predicted
  keypoints carry a confidence in the third column instead.
* **Object scale for OKS** ("area"): the COCO segmentation area when the person has a mask,
  otherwise ``0.53 x box width x box height`` — the factor Ultralytics uses for its own OKS.
  The same value is stored with the person at import, exported as the COCO ``area`` field and
  used by every metric, so pycocotools and realcal agree.
* **PCK@alpha**: a predicted joint is correct when it lies within ``alpha x torso diameter`` of the
  ground truth, the torso diameter being the distance from the left shoulder to the right hip
  (the right shoulder to the left hip when either is unlabelled). Persons without either diagonal
  have no PCK (NaN).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
KP = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# COCO's skeleton, 0-based (the JSON category lists it 1-based).
SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
FLIP_IDX: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
# Per-keypoint OKS sigmas from the COCO keypoint evaluation.
SIGMAS = np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62,
                   1.07, 1.07, 0.87, 0.87, 0.89, 0.89]) / 10.0
BBOX_AREA_FACTOR = 0.53
SCHEMA_NAME = "coco-17"


def coco_category() -> dict:
    """The COCO ``categories`` entry for a person with COCO-17 keypoints."""
    return {
        "id": 1, "name": "person", "supercategory": "person",
        "keypoints": list(KEYPOINT_NAMES),
        "skeleton": [[a + 1, b + 1] for a, b in SKELETON],
    }


# ----------------------------------------------------------------------------- geometry

def as_keypoints(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """A flat [x1, y1, v1, ...] list or a (17, 2|3) array as a float (17, 3) array."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        if arr.size == NUM_KEYPOINTS * 3:
            arr = arr.reshape(NUM_KEYPOINTS, 3)
        elif arr.size == NUM_KEYPOINTS * 2:
            arr = arr.reshape(NUM_KEYPOINTS, 2)
        else:
            raise ValueError(f"expected {NUM_KEYPOINTS * 3} keypoint values, got {arr.size}")
    if arr.shape == (NUM_KEYPOINTS, 2):
        arr = np.concatenate([arr, np.full((NUM_KEYPOINTS, 1), 2.0)], axis=1)
    if arr.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"expected keypoints of shape (17, 3), got {arr.shape}")
    return arr


def num_labelled(kpts: np.ndarray) -> int:
    return int((np.asarray(kpts)[:, 2] > 0).sum())


def bbox_area_scale(bbox: Sequence[float]) -> float:
    """Object scale from a box, Ultralytics' convention: 0.53 x w x h."""
    return BBOX_AREA_FACTOR * float(bbox[2]) * float(bbox[3])


def object_area(segmentation_area: float | None, bbox: Sequence[float] | None) -> tuple[float, str]:
    """The OKS object scale and where it came from ('segmentation' or 'bbox')."""
    if segmentation_area is not None and segmentation_area > 0:
        return float(segmentation_area), "segmentation"
    if bbox is None:
        raise ValueError("a person needs a segmentation area or a box for its OKS scale")
    return bbox_area_scale(bbox), "bbox"


def bbox_from_points(points: np.ndarray, pad: float = 0.1,
                     image_size: tuple[int, int] | None = None) -> tuple[float, float, float, float] | None:
    """A box (x, y, w, h) around labelled points (N, 3), padded by ``pad`` of its size each side."""
    pts = np.asarray(points, dtype=float)
    pts = pts[pts[:, 2] > 0][:, :2] if pts.shape[1] > 2 else pts
    if len(pts) == 0:
        return None
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    w, h = x1 - x0, y1 - y0
    size = max(w, h, 1.0)
    x0, y0, x1, y1 = x0 - pad * size, y0 - pad * size, x1 + pad * size, y1 + pad * size
    if image_size is not None:
        width, height = image_size
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(width), x1), min(float(height), y1)
        if x1 <= x0 or y1 <= y0:
            return None
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def flip_keypoints(kpts: np.ndarray, width: float) -> np.ndarray:
    """Mirror keypoints horizontally in an image of ``width`` pixels, swapping left and right."""
    out = np.asarray(kpts, dtype=float)[list(FLIP_IDX)].copy()
    labelled = out[:, 2] > 0
    out[labelled, 0] = width - out[labelled, 0]
    return out


# ----------------------------------------------------------------------------- OKS

def oks(gt: np.ndarray, pred: np.ndarray, area: float) -> float:
    """Object keypoint similarity between one ground truth (17, 3) and one prediction (17, >=2).

    Computed exactly as pycocotools' ``COCOeval.computeOks`` does: over the joints labelled in
    the ground truth (v > 0); the prediction's visibility/confidence is not used. Returns NaN
    when the ground truth has no labelled joint (COCO ignores such persons).
    """
    return float(oks_matrix(np.asarray(gt)[None], np.asarray(pred)[None], [area])[0, 0])


def oks_matrix(gts: np.ndarray, preds: np.ndarray, areas: Sequence[float]) -> np.ndarray:
    """OKS for every (ground truth, prediction) pair: gts (G, 17, 3), preds (P, 17, >=2) -> (G, P)."""
    gts = np.asarray(gts, dtype=float).reshape(-1, NUM_KEYPOINTS, 3)
    preds = np.asarray(preds, dtype=float)
    preds = preds.reshape(-1, NUM_KEYPOINTS, preds.shape[-1] if preds.ndim >= 2 else 3)
    area_arr = np.asarray(areas, dtype=float).reshape(-1)
    variances = (SIGMAS * 2) ** 2
    out = np.full((len(gts), len(preds)), np.nan)
    if len(gts) == 0 or len(preds) == 0:
        return out
    dx = preds[None, :, :, 0] - gts[:, None, :, 0]
    dy = preds[None, :, :, 1] - gts[:, None, :, 1]
    e = (dx ** 2 + dy ** 2) / variances / (area_arr[:, None, None] + np.spacing(1)) / 2
    labelled = gts[:, :, 2] > 0  # (G, 17)
    counts = labelled.sum(axis=1)
    sims = (np.exp(-e) * labelled[:, None, :]).sum(axis=2)
    valid = counts > 0
    out[valid] = sims[valid] / counts[valid, None]
    return out


# ----------------------------------------------------------------------------- PCK

def torso_diameter(gt: np.ndarray) -> float:
    """Left shoulder to right hip; right shoulder to left hip when either is unlabelled; else NaN."""
    gt = np.asarray(gt, dtype=float)
    for a, b in ((KP["left_shoulder"], KP["right_hip"]), (KP["right_shoulder"], KP["left_hip"])):
        if gt[a, 2] > 0 and gt[b, 2] > 0:
            d = float(np.hypot(*(gt[a, :2] - gt[b, :2])))
            if d > 0:
                return d
    return float("nan")


def pck_per_joint(gt: np.ndarray, pred: np.ndarray | None, alpha: float = 0.2,
                  min_confidence: float | None = None) -> np.ndarray:
    """Per-joint correctness (17,): 1.0 correct, 0.0 wrong or missing, NaN where not scored.

    A joint is scored when it is labelled in the ground truth and the person has a torso
    diameter. A missing prediction (``pred`` None), or a predicted joint whose confidence is
    below ``min_confidence``, counts as wrong.
    """
    gt = np.asarray(gt, dtype=float)
    out = np.full(NUM_KEYPOINTS, np.nan)
    torso = torso_diameter(gt)
    if math.isnan(torso):
        return out
    scored = gt[:, 2] > 0
    if pred is None:
        out[scored] = 0.0
        return out
    pred = np.asarray(pred, dtype=float)
    dist = np.hypot(pred[:, 0] - gt[:, 0], pred[:, 1] - gt[:, 1])
    correct = dist <= alpha * torso
    if min_confidence is not None and pred.shape[1] > 2:
        correct &= pred[:, 2] >= min_confidence
    out[scored] = correct[scored].astype(float)
    return out


def pck(gt: np.ndarray, pred: np.ndarray | None, alpha: float = 0.2,
        min_confidence: float | None = None) -> float:
    """Fraction of scored joints that are correct (NaN when nothing is scored)."""
    per_joint = pck_per_joint(gt, pred, alpha, min_confidence)
    return float(np.nanmean(per_joint)) if np.isfinite(per_joint).any() else float("nan")


# ----------------------------------------------------------------------------- drawing

LEFT_COLOUR = (0, 153, 255)
RIGHT_COLOUR = (255, 128, 0)
CENTRE_COLOUR = (51, 204, 51)


def _side(i: int) -> int:
    name = KEYPOINT_NAMES[i]
    return 1 if name.startswith("left") else 2 if name.startswith("right") else 0


def limb_colour(a: int, b: int) -> tuple[int, int, int]:
    sides = {_side(a), _side(b)}
    if sides == {1}:
        return LEFT_COLOUR
    if sides == {2}:
        return RIGHT_COLOUR
    return CENTRE_COLOUR


def joint_colour(i: int) -> tuple[int, int, int]:
    return (LEFT_COLOUR, LEFT_COLOUR, RIGHT_COLOUR)[_side(i)] if _side(i) else CENTRE_COLOUR


def draw_skeleton(image, keypoints: Iterable[np.ndarray], *, scale: float = 1.0,
                  min_visibility: float = 0.5, line_width: int | None = None,
                  radius: int | None = None, joint_colours: Sequence[Sequence[tuple[int, int, int]]] | None = None,
                  dashed: bool = False):
    """Draw COCO-17 skeletons on a copy of a PIL image and return it.

    ``keypoints``: one (17, 3) array per person, in the coordinates of the image the keypoints
    were annotated on; ``scale`` maps them onto ``image`` (e.g. a thumbnail). A joint is drawn
    when its third column is >= ``min_visibility`` (a visibility flag or a confidence).
    ``joint_colours`` overrides the left/right/centre colours per person and joint.
    ``dashed`` draws limbs as dashes (used for machine labels).
    """
    from PIL import ImageDraw

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    size = max(out.size)
    lw = line_width or max(1, round(size / 200))
    r = radius or max(2, round(size / 150))
    for p, kpts in enumerate(keypoints):
        kpts = np.asarray(kpts, dtype=float)
        pts = kpts[:, :2] * scale
        shown = (kpts[:, 2] >= min_visibility) & np.isfinite(pts).all(axis=1)
        for a, b in SKELETON:
            if shown[a] and shown[b]:
                xy = [tuple(pts[a]), tuple(pts[b])]
                if dashed:
                    _dashed_line(draw, xy, limb_colour(a, b), lw, dash=max(3, lw * 3))
                else:
                    draw.line(xy, fill=limb_colour(a, b), width=lw)
        for i in np.flatnonzero(shown).tolist():
            colour = joint_colours[p][i] if joint_colours is not None else joint_colour(i)
            x, y = pts[i]
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(colour), outline=(0, 0, 0))
    return out


def _dashed_line(draw, xy, fill, width: int, dash: int) -> None:
    (x0, y0), (x1, y1) = xy
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0:
        return
    n = max(1, int(length // dash))
    for k in range(0, n, 2):
        t0, t1 = k / n, min(1.0, (k + 1) / n)
        draw.line([(x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0),
                   (x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1)], fill=fill, width=width)


# ----------------------------------------------------------------------------- OpenPose maps
# ControlNet-OpenPose (lllyasviel/control_v11p_sd15_openpose) was trained on OpenPose-18 body maps
# drawn by its annotator's ``draw_bodypose``: 17 limbs as filled ellipses (stick width 4) in
# OpenPose's colour table on black, the limb layer dimmed to 60 %, then joints as radius-4 dots.

OPENPOSE_NAMES = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
                  "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
                  "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear")
# OpenPose-18 index -> COCO-17 index (neck, 1, is computed from the shoulders)
OPENPOSE_FROM_COCO = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
OPENPOSE_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
                  (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
OPENPOSE_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
                    (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
                    (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
                    (255, 0, 255), (255, 0, 170), (255, 0, 85))


def to_openpose18(kpts: np.ndarray, extra: dict | None = None) -> np.ndarray:
    """COCO-17 (17, 3) -> OpenPose-18 (18, 3); neck = midpoint of the shoulders.

    When COCO's face joints are all missing but LSP's ``neck`` and ``head_top`` extras exist, the
    neck is taken from the extra and a nose is placed 60 % of the way from neck to head top, so
    the map still shows a head direction.
    """
    k = np.asarray(kpts, dtype=float)
    out = np.zeros((18, 3))
    for o, c in enumerate(OPENPOSE_FROM_COCO):
        if c is not None and k[c, 2] > 0:
            out[o] = (k[c, 0], k[c, 1], 1.0)
    ls, rs = k[KP["left_shoulder"]], k[KP["right_shoulder"]]
    if ls[2] > 0 and rs[2] > 0:
        out[1] = ((ls[0] + rs[0]) / 2, (ls[1] + rs[1]) / 2, 1.0)
    extra = extra or {}
    face_missing = not (k[:5, 2] > 0).any()
    neck, head = extra.get("neck"), extra.get("head_top")
    if face_missing and neck is not None and head is not None and neck[2] > 0 and head[2] > 0:
        out[1] = (neck[0], neck[1], 1.0)
        out[0] = (neck[0] + 0.6 * (head[0] - neck[0]), neck[1] + 0.6 * (head[1] - neck[1]), 1.0)
    return out


def openpose_map(people: Iterable[tuple[np.ndarray, dict | None]], width: int, height: int) -> np.ndarray:
    """An RGB uint8 (height, width, 3) OpenPose-18 conditioning map for COCO-17 people."""
    import cv2

    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    ops = [to_openpose18(k, e) for k, e in people]
    for i, (a, b) in enumerate(OPENPOSE_LIMBS):
        for op in ops:
            if op[a, 2] <= 0 or op[b, 2] <= 0:
                continue
            x = op[[a, b], 0]
            y = op[[a, b], 1]
            length = float(np.hypot(x[0] - x[1], y[0] - y[1]))
            angle = math.degrees(math.atan2(y[0] - y[1], x[0] - x[1]))
            polygon = cv2.ellipse2Poly((int(x.mean()), int(y.mean())), (int(length / 2), 4),
                                       int(angle), 0, 360, 1)
            cv2.fillConvexPoly(canvas, np.asarray(polygon), OPENPOSE_COLOURS[i])
    canvas = (canvas * 0.6).astype(np.uint8)
    for i in range(18):
        for op in ops:
            if op[i, 2] > 0:
                cv2.circle(canvas, (int(op[i, 0]), int(op[i, 1])), 4, OPENPOSE_COLOURS[i], thickness=-1)
    return canvas


# ----------------------------------------------------------------------------- pose coverage

COVERAGE_LIMBS = {
    "left upper arm": (KP["left_shoulder"], KP["left_elbow"]),
    "right upper arm": (KP["right_shoulder"], KP["right_elbow"]),
    "left forearm": (KP["left_elbow"], KP["left_wrist"]),
    "right forearm": (KP["right_elbow"], KP["right_wrist"]),
    "left thigh": (KP["left_hip"], KP["left_knee"]),
    "right thigh": (KP["right_hip"], KP["right_knee"]),
    "left shin": (KP["left_knee"], KP["left_ankle"]),
    "right shin": (KP["right_knee"], KP["right_ankle"]),
}


def limb_angles(kpts: np.ndarray) -> dict[str, float]:
    """Each labelled limb's direction in degrees from straight down (image y axis), in (-180, 180]."""
    k = np.asarray(kpts, dtype=float)
    out = {}
    for name, (a, b) in COVERAGE_LIMBS.items():
        if k[a, 2] > 0 and k[b, 2] > 0:
            dx, dy = k[b, 0] - k[a, 0], k[b, 1] - k[a, 1]
            out[name] = float(np.degrees(np.arctan2(dx, dy)))
    return out


def body_orientation(kpts: np.ndarray) -> float | None:
    """Direction of the hips-to-shoulders axis in degrees from upright (0 = standing, 180 = inverted)."""
    v = torso_axis(kpts)
    return None if v is None else float(np.degrees(np.arctan2(v[0], -v[1])))


def torso_axis(kpts: np.ndarray) -> np.ndarray | None:
    """The hips-to-shoulders vector (mean of the labelled shoulders minus mean of the labelled hips), or None."""
    k = np.asarray(kpts, dtype=float)
    sh = [k[i, :2] for i in (KP["left_shoulder"], KP["right_shoulder"]) if k[i, 2] > 0]
    hp = [k[i, :2] for i in (KP["left_hip"], KP["right_hip"]) if k[i, 2] > 0]
    if not sh or not hp:
        return None
    return np.mean(sh, axis=0) - np.mean(hp, axis=0)


def box_iou_matrix(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """IoU of every box pair, boxes as (x, y, w, h): (A, 4), (B, 4) -> (A, B)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    ax1, ay1, bx1, by1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
