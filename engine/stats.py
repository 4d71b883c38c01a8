"""Honest statistics for experiments: bootstrap CIs of COCO AP, paired permutation tests, Holm.

* ``bootstrap_ap``: resample test images with replacement and re-run COCOeval's ``accumulate``
  on each resample (per-image matching is computed once by ``evaluate`` and re-indexed), giving a
  95 % percentile interval for AP and AP50.
* ``paired_permutation``: per-image differences (arm minus baseline, e.g. OKS or PCK, averaged
  over seeds) tested by random sign flips; two-sided p-value with the +1 correction.
* ``holm``: Holm's step-down adjustment across comparisons.
* ``verdict``: plain words that say "no evidence of a gain" when the interval includes zero.
"""
from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np


def _ap_from_eval(ev) -> tuple[float, float]:
    prec = ev.eval["precision"][:, :, :, 0, -1]        # [T, R, K] at area 'all', maxDets 20
    ap = prec[prec > -1].mean() if (prec > -1).any() else 0.0
    p50 = prec[0]
    ap50 = p50[p50 > -1].mean() if (p50 > -1).any() else 0.0
    return float(ap), float(ap50)


def coco_eval(gt: dict, dets: list[dict]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets) if dets else COCO(), "keypoints")
        ev.evaluate()
        ev.accumulate()
    return ev


def bootstrap_ap(gt: dict, dets: list[dict], n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """AP and AP50 with 95 % bootstrap intervals over test images."""
    ev = coco_eval(gt, dets)
    ap, ap50 = _ap_from_eval(ev)
    pe = ev._paramsEval
    img_ids = list(pe.imgIds)
    n_img, n_area, n_cat = len(img_ids), len(pe.areaRng), len(pe.catIds) if pe.useCats else 1
    base = list(ev.evalImgs)
    rng = np.random.default_rng(seed)
    aps, ap50s = [], []
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(n_boot):
            pick = rng.integers(0, n_img, n_img)
            ev.evalImgs = [base[k * n_area * n_img + a * n_img + i]
                           for k in range(n_cat) for a in range(n_area) for i in pick]
            ids = [img_ids[i] for i in pick]
            ev._paramsEval.imgIds = ids
            ev.params.imgIds = ids
            ev.accumulate()
            a, a50 = _ap_from_eval(ev)
            aps.append(a)
            ap50s.append(a50)
    return {"AP": ap, "AP_ci": [float(np.percentile(aps, 2.5)), float(np.percentile(aps, 97.5))],
            "AP50": ap50, "AP50_ci": [float(np.percentile(ap50s, 2.5)), float(np.percentile(ap50s, 97.5))],
            "n_boot": n_boot, "images": n_img}


def _per_image_evals(gt: dict, dets: list[dict]):
    ev = coco_eval(gt, dets)
    pe = ev._paramsEval
    return ev, list(pe.imgIds), len(pe.areaRng), len(pe.catIds) if pe.useCats else 1, list(ev.evalImgs)


def _ap50_on(ev, base, img_ids, n_area, n_cat, pick) -> float:
    n_img = len(img_ids)
    ev.evalImgs = [base[k * n_area * n_img + a * n_img + i] for k in range(n_cat) for a in range(n_area) for i in pick]
    ids = [img_ids[i] for i in pick]
    ev._paramsEval.imgIds = ids
    ev.params.imgIds = ids
    ev.accumulate()
    return _ap_from_eval(ev)[1]


def paired_bootstrap_ap50(pairs: Sequence[tuple[dict, list[dict], list[dict]]], n_boot: int = 200,
                          seed: int = 0) -> dict[str, float]:
    """AP50(arm) - AP50(baseline), averaged over seeds, with a 95 % interval from resampling the
    *same* test images for both arms and every seed (``pairs``: one (gt, arm dets, baseline dets) per
    seed, all on the same test images)."""
    runs = []
    for gt, dets_a, dets_b in pairs:
        a, b = _per_image_evals(gt, dets_a), _per_image_evals(gt, dets_b)
        if a[1] != b[1] or (runs and runs[0][0][1] != a[1]):
            raise ValueError("paired AP50 needs the same test images in every run")
        runs.append((a, b))
    if not runs:
        return {"mean_diff": float("nan"), "ci": [float("nan"), float("nan")], "n": 0}
    n_img = len(runs[0][0][1])
    full = np.arange(n_img)
    with contextlib.redirect_stdout(io.StringIO()):
        obs = float(np.mean([_ap50_on(a[0], a[4], a[1], a[2], a[3], full) - _ap50_on(b[0], b[4], b[1], b[2], b[3], full)
                             for a, b in runs]))
        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(n_boot):
            pick = rng.integers(0, n_img, n_img)
            boot.append(np.mean([_ap50_on(a[0], a[4], a[1], a[2], a[3], pick) - _ap50_on(b[0], b[4], b[1], b[2], b[3], pick)
                                 for a, b in runs]))
    return {"mean_diff": obs, "ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "n": n_img, "seeds": len(runs), "n_boot": n_boot}


def paired_permutation(diffs: Sequence[float], n_perm: int = 10000, seed: int = 0) -> dict[str, float]:
    d = np.asarray([x for x in diffs if x is not None and np.isfinite(x)], dtype=float)
    if len(d) == 0:
        return {"mean_diff": float("nan"), "p": float("nan"), "n": 0, "effect_dz": float("nan")}
    obs = d.mean()
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, len(d)))
    perm = (signs * d).mean(axis=1)
    p = (np.sum(np.abs(perm) >= abs(obs) - 1e-12) + 1) / (n_perm + 1)
    sd = d.std(ddof=1) if len(d) > 1 else float("nan")
    boot = d[rng.integers(0, len(d), (2000, len(d)))].mean(axis=1)
    return {"mean_diff": float(obs), "p": float(p), "n": int(len(d)),
            "ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "effect_dz": float(obs / sd) if sd and np.isfinite(sd) and sd > 0 else float("nan")}


def holm(pvalues: Sequence[float]) -> list[float]:
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def verdict(arm: str, baseline: str, metric: str, diff: float, ci: Sequence[float], p_adj: float | None = None,
            alpha: float = 0.05) -> str:
    """Plain words. A gain or loss is claimed only when the 95 % interval excludes zero *and*, where a
    multiplicity-adjusted p-value is given, it is below ``alpha``."""
    lo, hi = ci
    tail = f" (Holm-adjusted p = {p_adj:.3g})" if p_adj is not None else ""
    rng = f"95% CI [{lo:+.3f}, {hi:+.3f}]"
    if (lo > 0 or hi < 0) and p_adj is not None and not p_adj < alpha:
        return (f"No evidence of a {'gain' if lo > 0 else 'loss'} after correction for multiple comparisons: "
                f"{arm} vs {baseline} {diff:+.3f} {metric}, {rng}{tail}.")
    if lo > 0:
        return f"{arm} beats {baseline} by {diff:+.3f} {metric}, {rng}{tail}."
    if hi < 0:
        return f"{arm} is worse than {baseline} by {diff:+.3f} {metric}, {rng}{tail}."
    return f"No evidence of a gain: {arm} vs {baseline} {diff:+.3f} {metric}, {rng} includes zero{tail}."
