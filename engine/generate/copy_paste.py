"""The offline generator: copy-paste compositing of real person cut-outs (no diffusion weights).

For each request: pick a background (a person-free crop of a *train* image, checked with the
teacher, or a procedural texture), then paste 1..N real anchor people (cut out with their COCO
mask, or a GrabCut mask seeded by the keypoints when there is none) with a flip, scale, rotation
and placement applied by one affine matrix to pixels and keypoints alike, plus photometric jitter
of the person only and optional occluders. Joints hidden by a later person or an occluder become
v=1 (labelled, occluded); joints that leave the canvas become v=0.

Coordinates: keypoints are continuous image coordinates (pixel i spans [i, i+1)); OpenCV warps
in pixel-index coordinates, so keypoints are shifted by 0.5 around every warp.
"""
from __future__ import annotations

import hashlib
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
from engine.registry import register

Detector = Callable[[np.ndarray], list[tuple[float, float, float, float]]]


def affine_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a pixel-index 2x3 affine to continuous coordinates."""
    return (pts - 0.5) @ m[:, :2].T + m[:, 2] + 0.5


def decode_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segmentation, list) and segmentation:
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and "counts" in segmentation:
            rle = segmentation
            if isinstance(rle["counts"], list):
                rle = mask_utils.frPyObjects(rle, height, width)
        else:
            return None
        m = mask_utils.decode(rle)
        return m.astype(np.uint8) if m.shape[:2] == (height, width) else None
    except Exception:
        return None


def grabcut_mask(image_bgr: np.ndarray, k: np.ndarray, extra: dict, bbox, iterations: int = 3) -> np.ndarray:
    """A person mask from GrabCut, seeded with the box (probable foreground) and the skeleton
    drawn between labelled joints (certain foreground)."""
    h, w = image_bgr.shape[:2]
    x, y, bw, bh = bbox
    mx, my = 0.15 * bw, 0.15 * bh
    x0, y0 = max(0, int(x - mx)), max(0, int(y - my))
    x1, y1 = min(w, int(math.ceil(x + bw + mx))), min(h, int(math.ceil(y + bh + my)))
    crop = image_bgr[y0:y1, x0:x1]
    mask = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    bx0, by0 = int(max(0, x - x0)), int(max(0, y - y0))
    bx1, by1 = int(min(crop.shape[1], x + bw - x0)), int(min(crop.shape[0], y + bh - y0))
    mask[by0:by1, bx0:bx1] = cv2.GC_PR_BGD
    pts = k.copy()
    pts[:, :2] -= (x0 + 0.5, y0 + 0.5)
    thick = max(2, int(max(bw, bh) / 25))
    lab = pts[:, 2] > 0
    for a, b in poses.SKELETON:
        if lab[a] and lab[b]:
            cv2.line(mask, tuple(int(v) for v in pts[a, :2]), tuple(int(v) for v in pts[b, :2]),
                     cv2.GC_PR_FGD, thick * 3)
    for a, b in poses.SKELETON:
        if lab[a] and lab[b]:
            cv2.line(mask, tuple(int(v) for v in pts[a, :2]), tuple(int(v) for v in pts[b, :2]),
                     cv2.GC_FGD, thick)
    if (mask == cv2.GC_FGD).sum() == 0 or (mask == cv2.GC_BGD).sum() == 0:
        out = np.zeros((h, w), np.uint8)
        out[by0 + y0:by1 + y0, bx0 + x0:bx1 + x0] = 1
        return out
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut's GMM initialisation draws from OpenCV's global RNG: seed it from the input so a
    # cut-out never depends on what this process computed before (same image in any worker)
    digest = hashlib.sha256(crop.tobytes() + mask.tobytes()).digest()
    cv2.setRNGSeed(int(np.frombuffer(digest[:4], np.uint32)[0] % (2**31)))
    try:
        # rect None: OpenCV ignores it with GC_INIT_WITH_MASK, its stubs want a sequence anyway
        cv2.grabCut(crop, mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    except cv2.error:
        pass
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    out = np.zeros((h, w), np.uint8)
    out[y0:y1, x0:x1] = fg
    return out


def procedural_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A person-free texture: a two-colour gradient, low-frequency noise and a few shapes."""
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, height)[:, None, None]
    img = (c0 * (1 - t) + c1 * t) * np.ones((1, width, 1))
    noise = rng.normal(0, 1, (max(2, height // 32), max(2, width // 32), 3))
    img += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC) * 25
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
    return cv2.GaussianBlur(img, (0, 0), 2.0)


def boxes_overlap(a, b) -> bool:
    return not (a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1])


def cutout(person: dict, masks: dict[int, tuple[np.ndarray, str]], grabcut_iterations: int,
           margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, str]:
    """(BGR patch, float mask, keypoints, extras, how the mask was made) of a person, cropped to its box plus
    ``margin`` of its size, in the patch's coordinates. The mask (the COCO segmentation, else GrabCut seeded by
    the skeleton) is cached in ``masks`` by person id."""
    img = cv2.imread(str(person["path"]), cv2.IMREAD_COLOR)
    if img is None:
        raise RealcalError(f"cannot read anchor image {person['path']}")
    k = poses.as_keypoints(person["keypoints"])
    if person["id"] not in masks:
        mask = None
        how = "segmentation"
        if person.get("segmentation") is not None:
            mask = decode_mask(person["segmentation"], img.shape[0], img.shape[1])
        if mask is None or mask.sum() == 0:
            bbox = (person["bbox_x"], person["bbox_y"], person["bbox_w"], person["bbox_h"])
            mask = grabcut_mask(img, k, person.get("extra") or {}, bbox, grabcut_iterations)
            how = "grabcut"
        masks[person["id"]] = (mask, how)
    mask, how = masks[person["id"]]
    x, y, bw, bh = person["bbox_x"], person["bbox_y"], person["bbox_w"], person["bbox_h"]
    x0, y0 = max(0, int(x - margin * bw)), max(0, int(y - margin * bh))
    x1 = min(img.shape[1], int(math.ceil(x + (1 + margin) * bw)))
    y1 = min(img.shape[0], int(math.ceil(y + (1 + margin) * bh)))
    patch, pmask = img[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].astype(np.float32)
    k = k.copy()
    k[k[:, 2] > 0, :2] -= (x0, y0)
    extra = {n: [j[0] - x0, j[1] - y0, j[2]] for n, j in (person.get("extra") or {}).items()}
    return patch, pmask, k, extra, how


def pick_background(backgrounds: list[dict], rng: np.random.Generator, w: int, h: int, mode: str,
                    detector: Detector | None, detections: dict[int, list], max_tries: int,
                    who: str) -> tuple[np.ndarray, dict, list[int]]:
    """A ``w x h`` background: a person-free crop of a real train image (people known from its labels and
    found by ``detector``, cached in ``detections``), or a procedural texture (``mode`` procedural, or
    mixed when no crop is free). Returns (BGR image, lineage record, source image ids)."""
    if mode != "procedural":
        for bg in backgrounds:
            img = cv2.imread(str(bg["path"]), cv2.IMREAD_COLOR)
            if img is None:
                continue
            if bg["id"] not in detections:
                detections[bg["id"]] = list(detector(img)) if detector else []
            boxes = [(bx - 0.1 * bw, by - 0.1 * bh, 1.2 * bw, 1.2 * bh)
                     for bx, by, bw, bh in list(bg.get("person_boxes", [])) + detections[bg["id"]]]
            H, W = img.shape[:2]
            for _ in range(max_tries):
                frac = float(rng.uniform(0.2, 1.0))
                cw = min(W, int(frac * min(W, H * w / h)))
                ch = min(H, int(cw * h / w))
                if cw < 64 or ch < 64:
                    continue
                cx, cy = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
                crop = (cx, cy, cw, ch)
                if not any(boxes_overlap(crop, b) for b in boxes):
                    out = cv2.resize(img[cy:cy + ch, cx:cx + cw], (w, h), interpolation=cv2.INTER_AREA)
                    return out, {"kind": "real", "image_id": bg["id"], "crop": list(crop),
                                 "people_found_by_teacher": len(detections[bg["id"]])}, [bg["id"]]
        if mode == "real":
            raise RealcalError(f"{who}: no person-free background crop found in the train "
                               "images tried; use background=mixed or procedural, or import "
                               "images without people")
    return procedural_background(rng, w, h), {"kind": "procedural"}, []


@register("generator", "copy_paste")
class CopyPasteGenerator(Generator):
    """Offline copy-paste compositing; needs no diffusion weights. See the module docstring."""

    inputs = frozenset({"anchors", "backgrounds"})   # what each request must carry (see generate/job.py)

    @dataclass(frozen=True)
    class Config(component.Config):
        width: int = 512
        height: int = 512
        people: tuple[int, int] = (1, 2)
        height_frac: tuple[float, float] = (0.45, 0.9)
        max_rotate_deg: float = 15.0
        mirror_p: float = 0.5
        photometric: bool = True
        occluder_p: float = 0.3
        background: Literal["real", "procedural", "mixed"] = "mixed"
        feather_px: float = 1.5
        grabcut_iterations: int = 3
        max_background_tries: int = 40

        def validate(self) -> None:
            if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
                raise RealcalError("copy_paste: width and height must be within 16..4096 pixels")
            if not 1 <= self.people[0] <= self.people[1] <= 10:
                raise RealcalError("copy_paste: people must be [min, max] with 1 <= min <= max <= 10")
            if not 0.05 <= self.height_frac[0] <= self.height_frac[1] <= 1.5:
                raise RealcalError("copy_paste: height_frac must be [low, high] within 0.05..1.5")
            for name in ("mirror_p", "occluder_p"):
                if not 0 <= getattr(self, name) <= 1:
                    raise RealcalError(f"copy_paste: {name} must be within 0..1")
            if self.grabcut_iterations < 1 or self.max_background_tries < 1:
                raise RealcalError("copy_paste: grabcut_iterations and max_background_tries must be >= 1")

    def configure(self) -> None:
        self._detector: Detector | None = None
        self._masks: dict[int, tuple[np.ndarray, str]] = {}
        self._detections: dict[int, list] = {}
        # real backgrounds are checked for people with the teacher; procedural ones need nothing
        self.needs_teacher = self.background != "procedural"

    def preflight(self) -> None:
        """Nothing to check before queueing: no weights needed (the teacher is resolved apart)."""

    def setup(self, resources: Resources | None = None) -> None:
        """The teacher as a person detector, to keep real backgrounds person-free."""
        self._detector = None
        if self.needs_teacher:
            if resources is None:
                raise RealcalError("copy_paste: real backgrounds need the teacher to check them for "
                                   "people; give resources with teacher weights or use background=procedural")
            self._detector = resources.person_detector()

    # ------------------------------------------------------------------ pieces

    def _cutout(self, person: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, str]:
        return cutout(person, self._masks, self.grabcut_iterations, margin=0.1)

    def _background(self, req: GenerationRequest, rng: np.random.Generator) -> tuple[np.ndarray, dict, list[int]]:
        return pick_background(req.backgrounds, rng, self.width, self.height, self.background, self._detector,
                               self._detections, self.max_background_tries, "copy_paste")

    def _photometric(self, patch: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        if not self.photometric:
            return patch, {}
        alpha = float(rng.uniform(0.75, 1.25))
        beta = float(rng.uniform(-25, 25))
        hue = int(rng.integers(-6, 7))
        out = cv2.convertScaleAbs(patch, alpha=alpha, beta=beta)
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(int) + hue) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        blur = float(rng.uniform(0, 1.2)) if rng.random() < 0.3 else 0.0
        if blur > 0.3:
            out = cv2.GaussianBlur(out, (0, 0), blur)
        return out, {"contrast": round(alpha, 3), "brightness": round(beta, 2), "hue": hue,
                     "blur_sigma": round(blur, 2)}

    # ------------------------------------------------------------------ the function

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return [self._one(r) for r in requests]

    def _one(self, req: GenerationRequest) -> GenerationResult:
        t0 = time.perf_counter()
        rng = np.random.default_rng(req.seed)
        if not req.anchors:
            raise RealcalError("copy_paste: no anchor people given")
        w, h = self.width, self.height
        canvas, bg_info, bg_ids = self._background(req, rng)
        canvas = canvas.astype(np.float32)
        people: list[dict] = []
        masks: list[np.ndarray] = []
        lineage_people = []
        for person in req.anchors:
            patch, pmask, k, extra, how = self._cutout(person)
            ph, pw = patch.shape[:2]
            flip = bool(rng.random() < self.mirror_p)
            m = np.eye(3)
            if flip:
                m = np.array([[-1.0, 0, pw - 1], [0, 1, 0], [0, 0, 1]])
                k = k[list(poses.FLIP_IDX)]  # left and right swap; extras (neck, head) are central
            lab = k[:, 2] > 0
            person_h = max(float(person["bbox_h"]), 1.0)
            scale = float(rng.uniform(*self.height_frac)) * h / person_h
            angle = float(rng.uniform(-self.max_rotate_deg, self.max_rotate_deg))
            cx, cy = float(rng.uniform(0.15, 0.85)) * w, float(rng.uniform(0.3, 0.7)) * h
            rot = cv2.getRotationMatrix2D((pw / 2, ph / 2), angle, scale)
            rot = np.vstack([rot, [0, 0, 1]])
            shift = np.array([[1, 0, cx - pw / 2], [0, 1, cy - ph / 2], [0, 0, 1]])
            full = (shift @ rot @ m)[:2]
            patch2, photo = self._photometric(patch, rng)
            warped = cv2.warpAffine(patch2, full, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
            wmask = cv2.warpAffine(pmask, full, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
            if self.feather_px > 0:  # soften the edge inwards only (no halo outside the mask)
                wmask = np.minimum(wmask, cv2.GaussianBlur(wmask, (0, 0), self.feather_px))
            a = wmask[..., None]
            canvas = canvas * (1 - a) + warped.astype(np.float32) * a
            # the flip is part of ``full``; in continuous coordinates it maps x to pw - x
            kk = k.copy()
            kk[lab, :2] = affine_points(full, k[lab, :2])
            new_extra = {}
            for n, (ex, ey, ev) in extra.items():
                if ev > 0:
                    ex, ey = affine_points(full, np.array([[ex, ey]]))[0]
                new_extra[n] = [float(ex), float(ey), float(ev)]
            # joints of earlier people now hidden by this one become occluded (v=1)
            for prev in people:
                self._occlude(prev["keypoints"], wmask)
            people.append({"keypoints": kk, "extra": new_extra, "mask": wmask})
            masks.append(wmask)
            lineage_people.append({
                "person_id": person["id"], "image_id": person["image_id"], "mask": how, "flip": flip,
                "scale": round(scale, 4), "rotate_deg": round(angle, 2),
                "centre": [round(cx, 1), round(cy, 1)], "photometric": photo,
                "label_source": person.get("source")})
        occluders = []
        if rng.random() < self.occluder_p:
            target = people[int(rng.integers(len(people)))]
            ys, xs = np.nonzero(target["mask"] > 0.5)
            if len(xs):
                ox, oy = int(rng.choice(xs)), int(rng.choice(ys))
                rx, ry = int(rng.integers(w // 20 + 2, w // 6 + 3)), int(rng.integers(h // 20 + 2, h // 6 + 3))
                omask = np.zeros((h, w), np.float32)
                cv2.ellipse(omask, (ox, oy), (rx, ry), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
                colour = rng.integers(0, 256, 3).astype(np.float32)
                texture = colour + rng.normal(0, 12, (h, w, 3)).astype(np.float32)
                canvas = canvas * (1 - omask[..., None]) + texture * omask[..., None]
                for p in people:
                    self._occlude(p["keypoints"], omask)
                occluders.append({"shape": "ellipse", "centre": [ox, oy], "axes": [rx, ry]})
        image_bgr = np.clip(canvas, 0, 255).astype(np.uint8)
        out_people = []
        for p in people:
            k = clip_to_image(p["keypoints"], w, h)
            ys, xs = np.nonzero(p["mask"] > 0.5)
            bbox = None
            if len(xs):
                bbox = (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                        float(ys.max() - ys.min() + 1))
            extra = {n: (j if 0 <= j[0] < w and 0 <= j[1] < h else [0.0, 0.0, 0.0])
                     for n, j in p["extra"].items()}
            out_people.append(GeneratedPerson(k, extra or None, bbox))
        lineage = {"generator": "copy_paste", "params": self.params(), "seed": req.seed,
                   "people": lineage_people, "background": bg_info, "occluders": occluders}
        return GenerationResult(
            index=req.index, image=cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), persons=out_people,
            lineage=lineage,
            source_image_ids={"cutout": [p["image_id"] for p in req.anchors], "background": bg_ids},
            seconds=time.perf_counter() - t0)

    @staticmethod
    def _occlude(k: np.ndarray, mask: np.ndarray) -> None:
        h, w = mask.shape
        for j in np.flatnonzero(k[:, 2] == 2):
            x, y = int(k[j, 0]), int(k[j, 1])
            if 0 <= x < w and 0 <= y < h and mask[y, x] > 0.5:
                k[j, 2] = 1
