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


def near_duplicates(ref_emb: np.ndarray | None, ref_hashes: np.ndarray, items, max_cosine: float,
                    max_hamming: int):
    """For each ``(embedding, dhash)`` in ``items`` (an iterable, consumed one at a time): ``(ref, why, syn,
    best, dhash)`` — the index of the real image it nearly duplicates (the most similar by cosine, else the
    closest by hash), or of the earlier *kept* synthetic item it duplicates (the most similar kept one,
    by cosine or by its hash), ``why`` the evidence, ``best`` the highest cosine seen. Unit-norm embeddings.
    One matrix-vector product per item against the real set and the kept set (filled in place), hashes
    compared as a uint64 array, so the cost is linear in the images kept and memory holds one matrix."""
    kept_emb: np.ndarray | None = None
    kept_hash: list[int] = []
    kept_index: list[int] = []
    n_refs = 0 if ref_emb is None else len(ref_emb)
    for i, (v, h) in enumerate(items):
        ref, why, syn, best = None, "", None, 0.0
        if n_refs:
            sims = ref_emb @ v
            j = int(np.argmax(sims))
            best = float(sims[j])
            ham = np.bitwise_count(ref_hashes ^ np.uint64(h))
            jh = int(np.argmin(ham))
            for idx, text in ((j, f"cosine {best:.3f}"), (jh, f"hash distance {int(ham[jh])}")):
                if sims[idx] >= max_cosine or ham[idx] <= max_hamming:
                    ref, why = idx, text
                    break
        if ref is None and kept_index:
            assert kept_emb is not None
            sims = kept_emb[:len(kept_index)] @ v
            j = int(np.argmax(sims))
            best = max(best, float(sims[j]))
            if sims[j] >= max_cosine or hamming(h, kept_hash[j]) <= max_hamming:
                syn, why = kept_index[j], f"cosine {sims[j]:.3f}"
        if ref is None and syn is None:
            if kept_emb is None or len(kept_index) == len(kept_emb):      # grow by doubling
                grown = np.empty((max(64, 2 * len(kept_index)), len(v)), dtype=np.asarray(v).dtype)
                if kept_emb is not None:
                    grown[:len(kept_index)] = kept_emb[:len(kept_index)]
                kept_emb = grown
            kept_emb[len(kept_index)] = v
            kept_hash.append(h)
            kept_index.append(i)
        yield ref, why, syn, best, h


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
        emb = cached_embeddings(ctx.ws, ctx.db, ctx.embedder, items)
        found = near_duplicates(
            np.stack([ref_emb[r["id"]] for r in refs]) if refs else None,
            np.array([ref_hash[r["id"]] for r in refs], dtype=np.uint64),
            ((emb[it["id"]], dhash(ctx.image(it))) for it in items), self.max_cosine, self.max_hamming)
        rows = []
        for it, (ref, cosine_why, syn, best, h) in zip(items, found):
            reason = None
            if ref is not None:
                r = refs[ref]
                reason = f"near-duplicate of real {r['split']} image {r['id']} ({r['file_name']}; {cosine_why})"
            elif syn is not None:
                reason = f"near-duplicate of synthetic image {items[syn]['id']} ({cosine_why})"
            rows.append({"image_id": it["id"], "status": "fail" if reason else "pass", "value": best,
                         "reason": reason, "details": {"dhash": f"{h:016x}"}})
        return rows
