"""Quality: sharpness (variance of the Laplacian at a fixed size), exposure and contrast, the size
of the smallest labelled person, and broken images."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from engine import component
from engine.curate.base import Stage, StageContext, passes, resolve_threshold
from engine.registry import register


def image_quality(rgb: np.ndarray) -> dict[str, float]:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    s = 256 / max(h, w)
    small = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return {
        "sharpness": float(cv2.Laplacian(small.astype(np.float64), cv2.CV_64F).var()),
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "clipped": float(((gray <= 2) | (gray >= 253)).mean()),
    }


@register("stage", "quality")
class QualityStage(Stage):
    higher_is_better = True
    main = "sharpness"

    @dataclass(frozen=True)
    class Config(component.Config):
        sharpness: float | dict = field(default_factory=lambda: {"real_percentile": 2})
        brightness: tuple[float, float] = (20, 235)
        min_contrast: float = 15.0
        max_clipped: float = 0.5
        min_person_px: float = 32.0

    def configure(self) -> None:
        self.calibration: dict = {}
        self.threshold: float | None = None

    def calibrate(self, ctx: StageContext) -> dict:
        real = None
        if isinstance(self.sharpness, dict):
            real = np.array([image_quality(ctx.image(r))["sharpness"] for r in ctx.real_train])
        self.threshold, record = resolve_threshold(self.sharpness, real, True, "quality.sharpness")
        self.calibration = {"sharpness": record}
        return self.calibration

    def run(self, ctx: StageContext, items: list[dict]) -> list[dict]:
        rows = []
        for n, it in enumerate(items, 1):
            try:
                q = image_quality(ctx.image(it))
            except Exception as exc:
                rows.append({"image_id": it["id"], "status": "fail", "value": None,
                             "reason": f"broken image: {exc}"})
                continue
            heights = [p["bbox_h"] for p in it["persons"] if p["source"] == "conditioning"]
            q["smallest_person_px"] = float(min(heights)) if heights else 0.0
            reasons = []
            if not passes(q["sharpness"], self.threshold, True):
                reasons.append(f"blurry (sharpness {q['sharpness']:.0f} < {self.threshold:.0f})")
            if not self.brightness[0] <= q["brightness"] <= self.brightness[1]:
                reasons.append(f"exposure (mean {q['brightness']:.0f})")
            if q["contrast"] < self.min_contrast:
                reasons.append(f"low contrast ({q['contrast']:.1f})")
            if q["clipped"] > self.max_clipped:
                reasons.append(f"clipped ({q['clipped']:.0%})")
            if q["smallest_person_px"] < self.min_person_px:
                reasons.append(f"person too small ({q['smallest_person_px']:.0f} px)")
            rows.append({"image_id": it["id"], "status": "fail" if reasons else "pass",
                         "value": q["sharpness"], "reason": "; ".join(reasons) or None, "details": q})
            if ctx.progress:
                ctx.progress("quality", n, len(items))
        return rows
