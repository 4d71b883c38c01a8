"""CLIP prompt alignment and zero-shot person presence, where CLIP weights exist.

Without weights the stage reports itself ``unavailable`` for every image (never "passed"), with
the reason, and the funnel shows it so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine import component
from engine.curate.base import Stage, StageContext
from engine.errors import RealcalError
from engine.registry import register

if TYPE_CHECKING:
    from engine.curate.embedders import OpenClipEmbedder

PERSON_PROMPTS = ("a photo of a person", "a photo with no people in it")


@register("stage", "clip")
class ClipStage(Stage):
    higher_is_better = True
    main = "alignment"

    @dataclass(frozen=True)
    class Config(component.Config):
        model: str = "ViT-B-32"
        pretrained: str = "laion2b_s34b_b79k"
        min_alignment: float = 0.2
        min_person_prob: float = 0.5

    def configure(self) -> None:
        self.embedder: OpenClipEmbedder | None = None     # made in calibrate()
        self.unavailable: str | None = None

    def calibrate(self, ctx: StageContext) -> dict:
        from engine.curate.embedders import OpenClipEmbedder

        self.embedder = OpenClipEmbedder(model=self.model, pretrained=self.pretrained)
        try:
            self.embedder.setup()
        except RealcalError as exc:
            self.unavailable = str(exc)
        self.calibration = {"model": self.model, "pretrained": self.pretrained,
                            "available": self.unavailable is None, "reason": self.unavailable,
                            "min_alignment": self.min_alignment, "min_person_prob": self.min_person_prob}
        return self.calibration

    def run(self, ctx: StageContext, items: list[dict]) -> list[dict]:
        if self.unavailable:
            return [{"image_id": it["id"], "status": "unavailable", "value": None,
                     "reason": self.unavailable} for it in items]
        from engine.curate.embedders import cached_embeddings

        embedder = self.embedder
        if embedder is None:
            raise RuntimeError("clip: calibrate() must run before run()")
        emb = cached_embeddings(ctx.ws, ctx.db, embedder, items)
        person_text = embedder.embed_text(PERSON_PROMPTS)
        rows = []
        for it in items:
            v = emb[it["id"]]
            prompt = it.get("prompt") or "a photo of a person"
            align = float(v @ embedder.embed_text([prompt])[0])
            logits = 100.0 * person_text @ v
            probs = np.exp(logits - logits.max())
            person_prob = float(probs[0] / probs.sum())
            reasons = []
            if align < self.min_alignment:
                reasons.append(f"prompt alignment {align:.2f}")
            if person_prob < self.min_person_prob:
                reasons.append(f"no person seen (p={person_prob:.2f})")
            rows.append({"image_id": it["id"], "status": "fail" if reasons else "pass", "value": align,
                         "reason": "; ".join(reasons) or None,
                         "details": {"alignment": align, "person_prob": person_prob}})
        return rows
