"""The pose-driven offline generator: a real anchor's appearance re-rendered in a *sampled* pose.

No diffusion weights. For each request the job samples a target pose (``engine/generate/pose_sources.py``:
mirror, rotation, joint-angle perturbation with bone lengths kept, interpolation between anchors, or
poses the caller asks for) and hands over the anchors it came from. This generator:

1. cuts out the appearance person (the pose's own anchor, or with ``swap_p`` another anchor: person A's
   appearance in person B's pose) with its COCO mask or a GrabCut mask seeded by the skeleton, and
   mirrors it when the target faces the other way (the torso's handedness differs);
2. splits the body into parts — torso, head, upper and lower arms and legs — by the nearest bone;
3. moves each part rigidly (a similarity that takes its source bone exactly onto its target bone; the
   torso by an affine fit to its joints, then the limbs are attached to where the torso put their
   joints), each part's layer overlapping its neighbours around the joints so the joints stay closed;
4. composites the layers back to front in an occlusion order from depth cues (limbs whose joints are
   marked occluded in the source go behind the torso; arms in front of legs), and marks a joint
   occluded (v=1) when a later layer covers it;
5. places the person at a size and position drawn from the anchors' own distribution (relative height,
   centre, truncation at the border) and composites onto a person-free background crop of a train image
   or a procedural texture, with switchable seamless compositing: feathered or gradient-domain (Poisson)
   blending, colour matching of the person to the background, matched blur, matched sensor noise,
   clothing colour jitter and occluders — each recorded in the lineage.

The label is exactly where the joints' pixels went: every limb joint is the end of its bone under its
part's transform, which is the sampled pose (torso joints follow the torso fit; ``torso_refit_px`` in
the lineage says how far that moved them, 0 for mirror, rotation and perturbation).

Coordinates: keypoints are continuous image coordinates (pixel i spans [i, i+1)); OpenCV warps in
pixel-index coordinates, so keypoints are shifted by 0.5 around every warp (``affine_points``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from engine import component, poses
from engine.component import Resources
from engine.errors import RealcalError
from engine.generate import GeneratedPerson, GenerationRequest, GenerationResult, Generator, clip_to_image
from engine.generate.copy_paste import cutout, pick_background
from engine.registry import register

KP = poses.KP
L, R = "left", "right"
# part -> (parent joint, child joint); the torso and head are handled apart
LIMBS = {
    "left_upper_arm": (KP["left_shoulder"], KP["left_elbow"]),
    "left_forearm": (KP["left_elbow"], KP["left_wrist"]),
    "right_upper_arm": (KP["right_shoulder"], KP["right_elbow"]),
    "right_forearm": (KP["right_elbow"], KP["right_wrist"]),
    "left_thigh": (KP["left_hip"], KP["left_knee"]),
    "left_shin": (KP["left_knee"], KP["left_ankle"]),
    "right_thigh": (KP["right_hip"], KP["right_knee"]),
    "right_shin": (KP["right_knee"], KP["right_ankle"]),
}
PARENT = {"left_upper_arm": "torso", "left_forearm": "left_upper_arm", "right_upper_arm": "torso",
          "right_forearm": "right_upper_arm", "left_thigh": "torso", "left_shin": "left_thigh",
          "right_thigh": "torso", "right_shin": "right_thigh", "head": "torso"}
TORSO = (KP["left_shoulder"], KP["right_shoulder"], KP["right_hip"], KP["left_hip"])   # a polygon, in order
FACE = (KP["nose"], KP["left_eye"], KP["right_eye"], KP["left_ear"], KP["right_ear"])
# back to front after the limbs that go behind the torso; arms in front of legs
DRAW_ORDER = ("left_thigh", "right_thigh", "left_shin", "right_shin", "torso", "head",
              "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm")
# the parts a joint belongs to (it is occluded when a layer drawn after all of them covers it)
JOINT_PARTS = {j: {p for p, (a, b) in LIMBS.items() if j in (a, b)} for j in range(17)}
for _j in TORSO:
    JOINT_PARTS[_j].add("torso")
for _j in FACE:
    JOINT_PARTS[_j].add("head")
# how far (in torso lengths) a pixel may lie from its part's bone and still belong to the person
CORE_REACH = {"torso": 0.3, "head": 0.45, "limb": 0.3}
CLOTHING = ("torso", "left_upper_arm", "right_upper_arm", "left_thigh", "right_thigh")


def similarity_from(a0: np.ndarray, b0: np.ndarray, a1: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) taking segment a0-b0 onto a1-b1 exactly
    (continuous coordinates)."""
    v0, v1 = b0 - a0, b1 - a1
    n0 = float(np.hypot(*v0))
    if n0 < 1e-6:
        return np.array([[1.0, 0, a1[0] - a0[0]], [0, 1.0, a1[1] - a0[1]]])
    s = float(np.hypot(*v1)) / n0
    t = math.atan2(v1[1], v1[0]) - math.atan2(v0[1], v0[0])
    r = s * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return np.concatenate([r, (a1 - r @ a0)[:, None]], axis=1)


def affine_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 affine taking ``src`` points onto ``dst`` (exact for 3 points); with 2 points a
    similarity."""
    if len(src) == 2:
        return similarity_from(src[0], src[1], dst[0], dst[1])
    a = np.concatenate([src, np.ones((len(src), 1))], axis=1)
    m, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return m.T


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def to_pixel_affine(m: np.ndarray) -> np.ndarray:
    """A continuous-coordinate affine as OpenCV's pixel-index affine (x_pix = x_cont - 0.5)."""
    out = m.copy()
    out[:, 2] = m[:, 2] + m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return out


def signed_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def head_points(k: np.ndarray, extra: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(neck, head centre) of a pose: LSP's neck/head_top extras when labelled, else the shoulders'
    midpoint and the mean of the labelled face joints."""
    neck = extra.get("neck")
    top = extra.get("head_top")
    if neck is not None and top is not None and neck[2] > 0 and top[2] > 0:
        return np.array(neck[:2], float), np.array(top[:2], float)
    ls, rs = k[KP["left_shoulder"]], k[KP["right_shoulder"]]
    face = [j for j in FACE if k[j, 2] > 0]
    if ls[2] > 0 and rs[2] > 0 and face:
        return (ls[:2] + rs[:2]) / 2, k[face, :2].mean(axis=0)
    return None


def _shared(ks: np.ndarray, kt: np.ndarray, patch_width: int) -> int:
    """How many labelled joints an appearance (``ks``) and a target pose (``kt``) have in common, the better of
    the appearance as it is and mirrored (which is how the warp may use it)."""
    plain = int(((ks[:, 2] > 0) & (kt[:, 2] > 0)).sum())
    flipped = poses.flip_keypoints(ks, patch_width)
    return max(plain, int(((flipped[:, 2] > 0) & (kt[:, 2] > 0)).sum()))


@register("generator", "pose_warp")
class PoseWarpGenerator(Generator):
    """An anchor's appearance re-rendered in a sampled pose by part-based warping. See the module docstring."""

    inputs = frozenset({"pose", "anchors", "backgrounds"})

    @dataclass(frozen=True)
    class Config(component.Config):
        width: int = 256
        height: int = 256
        swap_p: float = 0.0                 # chance of another anchor's appearance in the sampled pose
        placement: Literal["anchors", "pose"] = "anchors"   # anchors: size and position drawn from a real anchor
        background: Literal["real", "procedural", "mixed"] = "mixed"
        blend: Literal["alpha", "poisson"] = "alpha"
        feather_px: float = 1.5
        colour_match: float = 0.0           # 0..1: how far the person's colour statistics move to the background's
        match_blur: bool = False            # blur the person down to the background's sharpness
        match_noise: bool = False           # add the background's sensor noise to the person
        clothing_hue_deg: float = 0.0       # max hue shift of torso, upper arms and thighs (clothing)
        occluder_p: float = 0.0
        part_overlap_px: float = 3.0        # each part's layer reaches this far into its neighbours (closed joints)
        grabcut_iterations: int = 3
        max_background_tries: int = 40

        def validate(self) -> None:
            if not (32 <= self.width <= 4096 and 32 <= self.height <= 4096):
                raise RealcalError("pose_warp: width and height must be within 32..4096 pixels")
            for name in ("swap_p", "colour_match", "occluder_p"):
                if not 0 <= getattr(self, name) <= 1:
                    raise RealcalError(f"pose_warp: {name} must be within 0..1")
            if not 0 <= self.clothing_hue_deg <= 90:
                raise RealcalError("pose_warp: clothing_hue_deg must be within 0..90")
            if self.feather_px < 0 or self.part_overlap_px < 0:
                raise RealcalError("pose_warp: feather_px and part_overlap_px must be >= 0")
            if self.grabcut_iterations < 1 or self.max_background_tries < 1:
                raise RealcalError("pose_warp: grabcut_iterations and max_background_tries must be >= 1")

    def configure(self) -> None:
        self._detector: Callable | None = None
        self._masks: dict[int, tuple[np.ndarray, str]] = {}
        self._detections: dict[int, list] = {}
        self.needs_teacher = self.background != "procedural"   # real backgrounds are checked for people

    def setup(self, resources: Resources | None = None) -> None:
        self._detector = None
        if self.needs_teacher:
            if resources is None:
                raise RealcalError("pose_warp: real backgrounds need the teacher to check them for people; "
                                   "give resources with teacher weights or use background=procedural")
            self._detector = resources.person_detector()

    # ------------------------------------------------------------------ pieces

    def cutout(self, person: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, str]:
        """(BGR patch, float mask, keypoints, extras, mask source) of a person, in the patch's coordinates."""
        return cutout(person, self._masks, self.grabcut_iterations, margin=0.15)

    def segment(self, mask: np.ndarray, k: np.ndarray, extra: dict, parts: list[str]) -> np.ndarray:
        """Each mask pixel's part index (into ``parts``) by the nearest bone; -1 outside the mask."""
        h, w = mask.shape
        if len(parts) == 1:
            return np.where(mask > 0.02, 0, -1).astype(np.int32)
        dists: list[np.ndarray] = []
        for name in parts:
            core = np.zeros((h, w), np.uint8)
            if name == "torso":
                pts = np.array([k[j, :2] for j in TORSO if k[j, 2] > 0])
                pix = np.round(pts - 0.5).astype(np.int32)
                if len(pix) >= 3:
                    cv2.fillPoly(core, [pix], 255)
                else:
                    cv2.polylines(core, [pix], False, 255, 1)
            elif name == "head":
                hp = head_points(k, extra)
                if hp is None:
                    dists.append(np.full((h, w), np.inf, np.float32))
                    continue
                neck, top = hp
                cv2.line(core, tuple(int(v) for v in np.round(neck - 0.5)),
                         tuple(int(v) for v in np.round(top - 0.5)), 255, 1)
            else:
                a, b = LIMBS[name]
                cv2.line(core, tuple(int(v) for v in np.round(k[a, :2] - 0.5)),
                         tuple(int(v) for v in np.round(k[b, :2] - 0.5)), 255, 1)
            if not core.any():
                dists.append(np.full((h, w), np.inf, np.float32))
                continue
            dists.append(cv2.distanceTransform(255 - core, cv2.DIST_L2, 3))
        stack = np.stack(dists)
        label = np.argmin(stack, axis=0).astype(np.int32)
        # a pixel farther from its bone than a body part is thick is not the person (a mask that leaked into the
        # background): dropped, so mask errors are not cut into shards and scattered
        scale = self.torso_scale(k)
        if scale is not None:
            reach = np.array([CORE_REACH.get(name, CORE_REACH["limb"]) * scale for name in parts], np.float32)
            label[np.take_along_axis(stack, label[None], 0)[0] > reach[label]] = -1
        label[mask <= 0.02] = -1
        return label

    @staticmethod
    def torso_scale(k: np.ndarray) -> float | None:
        """Shoulder-midpoint to hip-midpoint distance (or the shoulder or hip width when one pair is missing)."""
        ls, rs, lh, rh = (k[KP[n]] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
        if ls[2] > 0 and rs[2] > 0 and lh[2] > 0 and rh[2] > 0:
            return float(np.hypot(*((ls[:2] + rs[:2]) / 2 - (lh[:2] + rh[:2]) / 2))) or None
        for a, b in ((ls, rs), (lh, rh)):
            if a[2] > 0 and b[2] > 0:
                return 2.0 * float(np.hypot(*(a[:2] - b[:2]))) or None
        return None

    def _placement(self, kt: np.ndarray, extra: dict, req: GenerationRequest,
                   rng: np.random.Generator) -> tuple[np.ndarray, dict, dict]:
        """Move the sampled pose to a size and position drawn from a real anchor's own (relative joint-extent
        height, centre): a uniform scale about the pose's centre and a shift."""
        donor = req.anchors[-1]
        dk = poses.as_keypoints(donor["keypoints"])
        dlab = dk[dk[:, 2] > 0, :2]
        lab = kt[kt[:, 2] > 0, :2]
        if len(dlab) < 2 or len(lab) < 2 or not donor.get("height") or not donor.get("width"):
            return kt, extra, {}
        d_h = float(np.ptp(dlab[:, 1])) / float(donor["height"])
        d_c = dlab.mean(axis=0) / (float(donor["width"]), float(donor["height"]))
        d_h *= float(rng.uniform(0.9, 1.1))
        d_c = d_c + rng.normal(0, 0.05, 2)
        h_now = max(float(np.ptp(lab[:, 1])), 1.0)
        s = float(np.clip(d_h * self.height / h_now, 0.2, 5.0))
        c_now = lab.mean(axis=0)
        target = d_c * (self.width, self.height)
        m = np.array([[s, 0, target[0] - s * c_now[0]], [0, s, target[1] - s * c_now[1]]])
        k = kt.copy()
        k[k[:, 2] > 0, :2] = apply(m, kt[kt[:, 2] > 0, :2])
        ex = {n: ([*apply(m, np.array([j[:2]]))[0], j[2]] if j[2] > 0 else list(j)) for n, j in extra.items()}
        return k, ex, {"from_person": donor["id"], "relative_height": round(d_h, 4),
                       "centre": [round(float(v), 4) for v in d_c], "scale": round(s, 4)}

    # ------------------------------------------------------------------ the function

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return [self._one(r) for r in requests]

    def _one(self, req: GenerationRequest) -> GenerationResult:
        t0 = time.perf_counter()
        rng = np.random.default_rng(req.seed)
        if req.pose is None or not req.anchors:
            raise RealcalError("pose_warp: a request needs a sampled pose and its anchor people")
        w, h = self.width, self.height
        by_id = {a["id"]: a for a in req.anchors}
        own = by_id.get(req.pose.anchor_person_ids[0], req.anchors[0])
        person, swapped = own, False
        if self.swap_p > 0 and rng.random() < self.swap_p:
            others = [a for a in req.anchors if a["id"] != own["id"]]
            if others:
                person, swapped = others[int(rng.integers(len(others)))], True
        patch, pmask, ks, sx, how = self.cutout(person)
        kt = poses.as_keypoints(req.pose.keypoints).copy()
        tx = {n: list(map(float, j)) for n, j in (req.pose.extra or {}).items()}
        pose_anchors, pose_transform = list(req.pose.anchor_person_ids), req.pose.transform
        fallback = None
        if _shared(ks, kt, patch.shape[1]) < 2 and swapped:
            # another person's appearance shares too few labelled joints with this pose: the pose's own person
            person, swapped = own, False
            patch, pmask, ks, sx, how = self.cutout(person)
            fallback = "appearance: the swapped person shares fewer than 2 labelled joints with the pose"
        if _shared(ks, kt, patch.shape[1]) < 2:
            # e.g. a side view labelled on one side, interpolated or mirrored into the other side's joints: the
            # sampled pose cannot carry this appearance, so the appearance's own pose is placed instead (the label
            # is still exactly what is drawn)
            from engine.generate.pose_sources import PoseSourceConfig, sample_pose

            own_pose = sample_pose([person], rng, PoseSourceConfig(mirror_p=0.0, perturb_p=0.0, interpolate_p=0.0,
                                                                   min_keypoints=2), w, h)
            kt, tx = poses.as_keypoints(own_pose.keypoints).copy(), dict(own_pose.extra)
            pose_anchors, pose_transform = list(own_pose.anchor_person_ids), own_pose.transform
            fallback = (f"pose: the sampled pose (from people {req.pose.anchor_person_ids}) shares fewer than 2 "
                        f"labelled joints with person {person['id']}; its own pose was placed instead")
        placement: dict[str, Any] = {}
        if self.placement == "anchors":
            kt, tx, placement = self._placement(kt, tx, req, rng)

        # mirror the appearance when the target torso faces the other way
        both = [j for j in TORSO if ks[j, 2] > 0 and kt[j, 2] > 0]
        mirrored = False
        shared_plain = int(((ks[:, 2] > 0) & (kt[:, 2] > 0)).sum())
        if (len(both) >= 3 and signed_area(ks[both, :2]) * signed_area(kt[both, :2]) < 0) or (
                len(both) < 3 and shared_plain < 2):   # the torso cannot tell, and only the mirror fits the pose
            pw = patch.shape[1]
            patch, pmask = patch[:, ::-1].copy(), pmask[:, ::-1].copy()
            ks = poses.flip_keypoints(ks, pw)
            sx = {n: [pw - j[0] if j[2] > 0 else j[0], j[1], j[2]] for n, j in sx.items()}
            mirrored = True
            both = [j for j in TORSO if ks[j, 2] > 0 and kt[j, 2] > 0]
        rigid = len(both) < 2    # a truncated torso: the whole person moves as one part, fitted to every joint
        if rigid:
            both = [j for j in range(17) if ks[j, 2] > 0 and kt[j, 2] > 0]
            if len(both) < 2:
                raise RealcalError(f"pose_warp: person {person['id']} and the sampled pose share fewer than 2 joints")

        # transforms: torso first (its joints move to where the fit puts them), then limbs attach to them
        transforms: dict[str, np.ndarray] = {}
        tm = affine_fit(ks[both, :2], kt[both, :2])
        refit = apply(tm, ks[both, :2])
        torso_refit = float(np.abs(refit - kt[both, :2]).max())
        kt[both, :2] = refit
        transforms["torso"] = tm
        hs, ht = head_points(ks, sx), head_points(kt, tx)
        if hs is not None and ht is not None and not rigid:
            transforms["head"] = similarity_from(hs[0], hs[1], ht[0], ht[1])
        for name, (a, b) in LIMBS.items():
            if not rigid and ks[a, 2] > 0 and ks[b, 2] > 0 and kt[a, 2] > 0 and kt[b, 2] > 0:
                transforms[name] = similarity_from(ks[a, :2], ks[b, :2], kt[a, :2], kt[b, :2])
        parts = [p for p in DRAW_ORDER if p in transforms]
        for p in PARENT:                               # a part without its bones moves with its parent
            if p not in transforms:
                q = PARENT[p]
                while q not in transforms:
                    q = PARENT[q]
                transforms[p] = transforms[q]

        # segmentation (parts with bones only); clothing colour jitter per part
        label = self.segment(pmask, ks, sx, parts)
        jitter = {}
        if self.clothing_hue_deg > 0:
            hsv = cv2.cvtColor(patch, cv2.COLOR_BGR2HSV)
            for i, name in enumerate(parts):
                if name in CLOTHING:
                    # OpenCV's hue runs 0..179: half degrees
                    shift = int(round(rng.uniform(-self.clothing_hue_deg, self.clothing_hue_deg) / 2))
                    sel = label == i
                    hsv[..., 0][sel] = ((hsv[..., 0][sel].astype(int) + shift) % 180).astype(np.uint8)
                    jitter[name] = shift * 2
            patch = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)

        # behind-the-torso limbs: their joints are marked occluded (v=1) in the source
        def behind(name: str) -> bool:
            a, b = LIMBS[name]
            return ks[a, 2] == 1 and ks[b, 2] == 1
        order = [p for p in parts if p in LIMBS and behind(p)] + [p for p in parts if not (p in LIMBS and behind(p))]
        r = int(math.ceil(self.part_overlap_px))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)) if r > 0 else None
        person_rgb = np.zeros((h, w, 3), np.float32)
        person_a = np.zeros((h, w), np.float32)
        layer_alpha: dict[str, np.ndarray] = {}
        for name in order:
            sel = (label == parts.index(name)).astype(np.uint8)
            if kernel is not None:
                sel = cv2.dilate(sel, kernel) & (pmask > 0.02).astype(np.uint8)
            a_src = pmask * sel
            if not a_src.any():
                continue
            mpix = to_pixel_affine(transforms[name])
            rgb = cv2.warpAffine(patch, mpix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0).astype(np.float32)
            layer = cv2.warpAffine(a_src, mpix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
            person_rgb = person_rgb * (1 - layer[..., None]) + rgb * layer[..., None]
            person_a = person_a + layer * (1 - person_a)
            layer_alpha[name] = layer

        # labels: the sampled pose (torso refit) and where the face and extras went; occlusion by later layers
        out_k = kt.copy()
        if "head" in transforms:
            face = [j for j in FACE if ks[j, 2] > 0 and kt[j, 2] > 0]
            if face:
                out_k[face, :2] = apply(transforms["head"], ks[face, :2])
        for j in range(17):
            if out_k[j, 2] > 0 and ks[j, 2] > 0:
                out_k[j, 2] = 1 if ks[j, 2] == 1 else 2
            else:
                out_k[j] = 0.0
        drawn = [p for p in order if p in layer_alpha]
        for jj in np.flatnonzero(out_k[:, 2] == 2):
            own_parts = [p for p in drawn if p in JOINT_PARTS[int(jj)]]
            if not own_parts:
                continue
            after = drawn[max(drawn.index(p) for p in own_parts) + 1:]
            x, y = int(out_k[jj, 0]), int(out_k[jj, 1])
            if 0 <= x < w and 0 <= y < h and any(layer_alpha[p][y, x] > 0.5 for p in after):
                out_k[jj, 2] = 1
        out_extra: dict[str, list[float]] = {}
        for n, jt in tx.items():
            out_extra[n] = [float(v) for v in jt] if (jt[2] > 0 and sx.get(n, [0, 0, 0])[2] > 0) else [0.0, 0.0, 0.0]
        if hs is not None and ht is not None and "head" in transforms:
            for n in ("neck", "head_top"):
                if n in out_extra and out_extra[n][2] > 0 and n in sx:
                    out_extra[n][:2] = [float(v) for v in apply(transforms["head"], np.array([sx[n][:2]]))[0]]

        canvas, bg_info, bg_ids = pick_background(req.backgrounds, rng, w, h, self.background, self._detector,
                                                  self._detections, self.max_background_tries, "pose_warp")
        image, comp = self._composite(canvas, person_rgb, person_a, rng)
        occluders = []
        if self.occluder_p > 0 and rng.random() < self.occluder_p:
            ys, xs = np.nonzero(person_a > 0.5)
            if len(xs):
                ox, oy = int(rng.choice(xs)), int(rng.choice(ys))
                rx, ry = int(rng.integers(w // 20 + 2, w // 6 + 3)), int(rng.integers(h // 20 + 2, h // 6 + 3))
                omask = np.zeros((h, w), np.float32)
                cv2.ellipse(omask, (ox, oy), (rx, ry), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
                # the occluder's texture is another part of the same background (a real surface, lit like the
                # scene), its edge softened like the person's
                offset = (int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4)))
                texture = np.roll(canvas, offset, axis=(0, 1)).astype(np.float32)
                soft = cv2.GaussianBlur(omask, (0, 0), max(self.feather_px, 0.5))
                image = np.clip(image * (1 - soft[..., None]) + texture * soft[..., None], 0, 255).astype(np.uint8)
                for jj in np.flatnonzero(out_k[:, 2] == 2):
                    x, y = int(out_k[jj, 0]), int(out_k[jj, 1])
                    if 0 <= x < w and 0 <= y < h and omask[y, x] > 0.5:
                        out_k[jj, 2] = 1
                person_a = person_a * (1 - omask)
                occluders.append({"shape": "ellipse", "centre": [ox, oy], "axes": [rx, ry], "texture": "background"})
        k_final = clip_to_image(out_k, w, h)
        ys, xs = np.nonzero(person_a > 0.5)
        bbox = None
        if len(xs):
            bbox = (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))
        extra = {n: (j if 0 <= j[0] < w and 0 <= j[1] < h else [0.0, 0.0, 0.0]) for n, j in out_extra.items()}
        lineage = {"generator": "pose_warp", "params": self.params(), "seed": req.seed,
                   "appearance": {"person_id": person["id"], "image_id": person["image_id"], "mask": how,
                                  "swapped": swapped, "mirrored": mirrored, "label_source": person.get("source")},
                   "pose": {"anchors": pose_anchors, "transform": pose_transform,
                            "target": getattr(req.pose, "target", None), "fallback": fallback},
                   "parts": parts, "rigid": rigid, "draw_order": drawn, "torso_refit_px": round(torso_refit, 3),
                   "placement": placement, "clothing_hue_deg": jitter, "compositing": comp,
                   "background": bg_info, "occluders": occluders}
        # lineage roles: the pixels' person is the cut-out; the pose's people and the placement donor are anchors
        anchor_ids = list(req.pose.anchor_image_ids) + ([req.anchors[-1]["image_id"]] if placement else [])
        sources = {"cutout": [person["image_id"]], "anchor": sorted(set(anchor_ids)), "background": bg_ids}
        return GenerationResult(index=req.index, image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
                                persons=[GeneratedPerson(k_final, extra or None, bbox)], lineage=lineage,
                                source_image_ids=sources, seconds=time.perf_counter() - t0)

    # ------------------------------------------------------------------ compositing

    def _composite(self, bg: np.ndarray, fg: np.ndarray, alpha: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """The person (``fg`` over ``alpha``) onto the background with the configured seamless steps."""
        rec: dict = {"blend": self.blend}
        inside = alpha > 0.5
        fg = fg.copy()
        if inside.sum() >= 16:
            ys, xs = np.nonzero(inside)
            pad = 0.25
            x0 = max(0, int(xs.min() - pad * np.ptp(xs)))
            x1 = min(bg.shape[1], int(xs.max() + pad * np.ptp(xs)) + 1)
            y0 = max(0, int(ys.min() - pad * np.ptp(ys)))
            y1 = min(bg.shape[0], int(ys.max() + pad * np.ptp(ys)) + 1)
            around = bg[y0:y1, x0:x1]
            if self.colour_match > 0:
                lab_fg = cv2.cvtColor(np.clip(fg, 0, 255).astype(np.uint8), cv2.COLOR_BGR2LAB).astype(np.float32)
                lab_bg = cv2.cvtColor(around, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float32)
                mu_p, sd_p = lab_fg[inside].mean(axis=0), lab_fg[inside].std(axis=0) + 1e-3
                mu_b, sd_b = lab_bg.mean(axis=0), lab_bg.std(axis=0) + 1e-3
                s = self.colour_match
                gain = 1 + s * (np.clip(sd_b / sd_p, 0.5, 2.0) - 1)
                shift = s * (mu_b - mu_p)
                lab_fg = (lab_fg - mu_p) * gain + mu_p + shift
                fg = cv2.cvtColor(np.clip(lab_fg, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR).astype(np.float32)
                rec["colour_match"] = {"strength": s, "mean_shift_lab": [round(float(v), 2) for v in shift],
                                       "contrast_gain": [round(float(v), 3) for v in gain]}
            if self.match_blur:
                def sharpness(img: np.ndarray, sel: np.ndarray | None = None) -> float:
                    lap = cv2.Laplacian(cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY),
                                        cv2.CV_64F)
                    return float(lap[sel].var() if sel is not None else lap.var())
                target = sharpness(around)
                eroded = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
                sigma = 0.0
                if eroded.sum() >= 16 and sharpness(fg, eroded) > target:
                    for cand in (0.5, 0.8, 1.2, 1.6, 2.0, 2.5):
                        sigma = cand
                        if sharpness(cv2.GaussianBlur(fg, (0, 0), cand), eroded) <= target:
                            break
                    fg = cv2.GaussianBlur(fg, (0, 0), sigma)
                rec["blur_sigma"] = sigma
            if self.match_noise:
                grey = cv2.cvtColor(around, cv2.COLOR_BGR2GRAY).astype(np.float32)
                resid = grey - cv2.GaussianBlur(grey, (0, 0), 1.0)
                sigma_n = float(1.4826 * np.median(np.abs(resid - np.median(resid))))
                fg = fg + rng.normal(0, sigma_n, fg.shape).astype(np.float32)
                rec["noise_sigma"] = round(sigma_n, 3)
        a = alpha
        if self.feather_px > 0:   # soften the edge inwards only (no halo outside the person)
            a = np.minimum(alpha, cv2.GaussianBlur(alpha, (0, 0), self.feather_px))
        out = bg.astype(np.float32) * (1 - a[..., None]) + fg * a[..., None]
        out = np.clip(out, 0, 255).astype(np.uint8)
        if self.blend == "poisson" and inside.sum() >= 16:
            # gradient-domain blending of the person's region; padded so the mask never touches the border
            p = 8
            src = cv2.copyMakeBorder(out, p, p, p, p, cv2.BORDER_REFLECT)
            dst = cv2.copyMakeBorder(bg, p, p, p, p, cv2.BORDER_REFLECT)
            m = cv2.copyMakeBorder(cv2.dilate(inside.astype(np.uint8) * 255, np.ones((3, 3), np.uint8)),
                                   p, p, p, p, cv2.BORDER_CONSTANT, value=0)
            ys, xs = np.nonzero(m)
            centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
            try:
                cloned = cv2.seamlessClone(src, dst, m, centre, cv2.NORMAL_CLONE)[p:-p, p:-p]
                # gradient-domain blending at the edge only: inside, the person keeps its own colours (a full
                # Poisson clone pulls the whole person towards the background's, washing it out)
                eroded = cv2.erode(inside.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(np.float32)
                core = cv2.GaussianBlur(eroded, (0, 0), 2.0)[..., None]
                out = np.clip(core * out + (1 - core) * cloned, 0, 255).astype(np.uint8)
            except cv2.error as exc:
                rec["poisson_failed"] = str(exc).splitlines()[0][:120]
        return out, rec
