"""Near-duplicates: a 64-bit difference hash and embedding cosine similarity.

A synthetic image is rejected when it nearly duplicates any real image — above all val/test ones,
so no synthetic image leaks a test photo into training — or an earlier synthetic image that was
kept. Exact and re-encoded copies are caught by either signal.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine import component
from engine.curate.base import Stage, StageContext
from engine.registry import register


def dhash(rgb: np.ndarray) -> int:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(int)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


@register("stage", "duplicates")
class DuplicatesStage(Stage):
    higher_is_better = False
    main = "max_similarity"

    @dataclass(frozen=True)
    class Config(component.Config):
        max_hamming: int = 6
        max_cosine: float = 0.97

    def calibrate(self, ctx: StageContext) -> dict:
        self.calibration = {"max_hamming": self.max_hamming, "max_cosine": self.max_cosine,
                            "embedder": ctx.embedder.label, "kind": "fixed"}
        return self.calibration

    def run(self, ctx: StageContext, items: list[dict]) -> list[dict]:
        from engine.curate.embedders import cached_embeddings

        refs = ctx.real_all
        ref_emb = cached_embeddings(ctx.ws, ctx.db, ctx.embedder, refs)
        ref_hash = ctx.cache.setdefault("real_dhash", {})
        for r in refs:
            if r["id"] not in ref_hash:
                ref_hash[r["id"]] = dhash(ctx.image(r))
        R = np.stack([ref_emb[r["id"]] for r in refs]) if refs else np.zeros((0, 1))
        emb = cached_embeddings(ctx.ws, ctx.db, ctx.embedder, items)
        kept_emb: list[np.ndarray] = []
        kept: list[tuple[int, int]] = []
        rows = []
        for it in items:
            v, h = emb[it["id"]], dhash(ctx.image(it))
            reason, best = None, 0.0
            if len(refs):
                sims = R @ v
                j = int(np.argmax(sims))
                best = float(sims[j])
                ham = [hamming(h, ref_hash[r["id"]]) for r in refs]
                jh = int(np.argmin(ham))
                for idx, why in ((j, f"cosine {best:.3f}"), (jh, f"hash distance {ham[jh]}")):
                    if sims[idx] >= self.max_cosine or ham[idx] <= self.max_hamming:
                        r = refs[idx]
                        reason = (f"near-duplicate of real {r['split']} image {r['id']} "
                                  f"({r['file_name']}; {why})")
                        break
            if reason is None and kept_emb:
                sims = np.stack(kept_emb) @ v
                j = int(np.argmax(sims))
                best = max(best, float(sims[j]))
                if sims[j] >= self.max_cosine or hamming(h, kept[j][1]) <= self.max_hamming:
                    reason = f"near-duplicate of synthetic image {kept[j][0]} (cosine {sims[j]:.3f})"
            if reason is None:
                kept_emb.append(v)
                kept.append((it["id"], h))
            rows.append({"image_id": it["id"], "status": "fail" if reason else "pass", "value": best,
                         "reason": reason, "details": {"dhash": f"{h:016x}"}})
        return rows
