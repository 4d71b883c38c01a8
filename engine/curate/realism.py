"""Realism against the real anchors, in embedding space.

Per image: the mean cosine distance to the k nearest *train* real anchors (lower = more like the
real data). Calibrated leave-one-out on the anchors themselves (each anchor against the others),
e.g. "reject synthetic images less realistic than 95 % of real ones" = ``{real_percentile: 95}``.
Mahalanobis distances are not used: 1280-d features and a few hundred anchors give a singular
covariance. Per batch, set-level figures are reported (not used to filter): KID (unbiased, cubic
polynomial kernel, averaged over subsets) and a Fréchet distance on a PCA projection with
Ledoit-Wolf shrinkage, both named after the embedder (e.g. "FD-EffNetLite0"), never "FID".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine import component
from engine.curate.base import Stage, StageContext, passes, resolve_threshold
from engine.errors import RealcalError
from engine.registry import register


def knn_distance(queries: np.ndarray, refs: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    sims = queries @ refs.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    k = max(1, min(k, refs.shape[0] - (1 if exclude_self else 0)))
    top = -np.sort(-sims, axis=1)[:, :k]
    return 1.0 - top.mean(axis=1)


def kid(x: np.ndarray, y: np.ndarray, subsets: int = 10, subset_size: int = 100, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception-style distance (unbiased MMD^2, kernel (x.y/d + 1)^3): mean, std."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    m = min(subset_size, len(x), len(y))
    if m < 2:
        return float("nan"), float("nan")
    vals = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
               - 2 * kxy.mean())
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance of the rows of x (as scikit-learn computes it)."""
    n, d = x.shape
    x = x - x.mean(axis=0)
    emp = x.T @ x / n
    x2 = x ** 2
    trace_terms = x2.sum(axis=0) / n
    mu = trace_terms.sum() / d
    beta_ = float((x2.T @ x2).sum())
    delta_ = float(((x.T @ x) ** 2).sum()) / n ** 2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2 * mu * trace_terms.sum() + d * mu ** 2) / d
    shrink = 0.0 if delta == 0 else min(beta, delta) / delta
    return (1 - shrink) * emp + shrink * mu * np.eye(d)


def frechet_shrunk(x: np.ndarray, y: np.ndarray, dims: int = 64) -> float:
    from scipy import linalg

    both = np.concatenate([x, y])
    mean = both.mean(axis=0)
    dims = max(1, min(dims, len(both) - 1, both.shape[1]))
    _, _, vt = np.linalg.svd(both - mean, full_matrices=False)
    px, py = (x - mean) @ vt[:dims].T, (y - mean) @ vt[:dims].T
    c1, c2 = ledoit_wolf(px), ledoit_wolf(py)
    covmean = linalg.sqrtm(c1 @ c2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((px.mean(0) - py.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


@register("stage", "realism")
class RealismStage(Stage):
    higher_is_better = False
    main = "knn_distance"

    @dataclass(frozen=True)
    class Config(component.Config):
        k: int = 5
        threshold: float | dict = field(default_factory=lambda: {"real_percentile": 95})

        def validate(self) -> None:
            if self.k < 1:
                raise RealcalError("realism: k must be at least 1")

    def configure(self) -> None:
        self.cutoff: float | None = None      # the threshold in effect, once calibrated

    def _real(self, ctx: StageContext) -> np.ndarray:
        if "real_train_emb" not in ctx.cache:
            from engine.curate.embedders import cached_embeddings

            if len(ctx.real_train) < 2:
                raise RealcalError("realism needs at least 2 real train images to compare against")
            emb = cached_embeddings(ctx.ws, ctx.db, ctx.embedder, ctx.real_train)
            ctx.cache["real_train_emb"] = np.stack([emb[r["id"]] for r in ctx.real_train])
        return ctx.cache["real_train_emb"]

    def calibrate(self, ctx: StageContext) -> dict:
        real = self._real(ctx)
        loo = knn_distance(real, real, self.k, exclude_self=True)
        self.cutoff, record = resolve_threshold(self.threshold, loo, False, "realism")
        self.calibration = {"knn_distance": record, "embedder": ctx.embedder.label, "k": self.k}
        return self.calibration

    def run(self, ctx: StageContext, items: list[dict]) -> list[dict]:
        from engine.curate.embedders import cached_embeddings

        real = self._real(ctx)
        emb = cached_embeddings(ctx.ws, ctx.db, ctx.embedder, items)
        if not items:
            return []
        q = np.stack([emb[it["id"]] for it in items])
        dist = knn_distance(q, real, self.k)
        rows = []
        for it, d in zip(items, dist):
            ok = passes(float(d), self.cutoff, False)
            rows.append({"image_id": it["id"], "status": "pass" if ok else "fail", "value": float(d),
                         "reason": None if ok else f"less realistic than the threshold "
                                                   f"({d:.3f} > {self.cutoff:.3f})"})
        return rows

    def set_metrics(self, ctx: StageContext, items_by_batch: dict[int, list[dict]]) -> dict:
        from engine.curate.embedders import cached_embeddings

        real = self._real(ctx)
        label = ctx.embedder.label
        out = {}
        for batch_id, items in items_by_batch.items():
            emb = cached_embeddings(ctx.ws, ctx.db, ctx.embedder, items)
            if len(items) < 2:
                continue
            syn = np.stack([emb[it["id"]] for it in items])
            k_mean, k_std = kid(syn, real)
            out[str(batch_id)] = {f"KID-{label}": k_mean, f"KID-{label} std": k_std,
                                  f"FD-{label} (PCA-64, Ledoit-Wolf)": frechet_shrunk(syn, real),
                                  "images": len(items), "real_anchors": len(real)}
        return out
