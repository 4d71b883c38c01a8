"""Honest statistics for experiments: AP under resampling, two-stage bootstrap, Holm, plain verdicts.

* ``MatchArrays``: one run's COCO keypoint matches as arrays; AP and AP50 under any image weights
  (a bootstrap resample) without re-running COCOeval (equal to COCOeval at unit weights).
* ``bootstrap_ap``: one run's AP and AP50 with 95 % intervals over test images.
* ``two_stage_bootstrap``: a difference between two arms, averaged over seeds, with an interval
  that resamples seeds and then test images (paired: the same images for both arms), each seed's
  own difference beside it, and a bootstrap p-value.
* ``holm``: Holm's step-down adjustment across comparisons.
* ``verdict``: plain words that say "no evidence of a gain" when the interval includes zero.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np


def ap_from_eval(ev) -> tuple[float, float, float]:
    """AP (OKS 0.50:0.95), AP50 and AP75 from an accumulated COCOeval (area 'all', maxDets 20)."""
    prec = ev.eval["precision"][:, :, :, 0, -1]        # [T, R, K] at area 'all', maxDets 20
    ap = prec[prec > -1].mean() if (prec > -1).any() else 0.0
    out = [float(ap)]
    for t in (0, 5):                                   # thresholds 0.50 and 0.75
        p = prec[t]
        out.append(float(p[p > -1].mean()) if (p > -1).any() else 0.0)
    return out[0], out[1], out[2]


def coco_eval(gt: dict, dets: list[dict], accumulate: bool = True):
    """COCOeval (keypoints) on copies of ``gt`` and ``dets`` (pycocotools rewrites what it loads)."""
    import copy

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes([dict(d) for d in dets]) if dets else COCO(), "keypoints")
        ev.evaluate()
        if accumulate:
            ev.accumulate()
    return ev


def bootstrap_ap(gt: dict, dets: list[dict], n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """AP and AP50 of one run with 95 % bootstrap intervals over test images (no seed variance: one run)."""
    arr = MatchArrays.from_coco(gt, dets)
    ap, ap50 = arr.ap(np.ones(arr.n_images))
    rng = np.random.default_rng(seed)
    boot = np.array([arr.ap(rng.multinomial(arr.n_images, np.full(arr.n_images, 1 / arr.n_images)))
                     for _ in range(n_boot)])
    return {"AP": ap, "AP_ci": [float(np.percentile(boot[:, 0], 2.5)), float(np.percentile(boot[:, 0], 97.5))],
            "AP50": ap50, "AP50_ci": [float(np.percentile(boot[:, 1], 2.5)), float(np.percentile(boot[:, 1], 97.5))],
            "n_boot": n_boot, "images": arr.n_images}


class MatchArrays:
    """One run's COCO matches as arrays, so that AP under any image weights (a bootstrap resample:
    how many times each image is drawn) is a weighted cumulative sum instead of a COCOeval run.

    With unit weights ``ap`` equals COCOeval's ``accumulate`` exactly (101 recall points, precision
    made monotone, area 'all', maxDets 20); with integer weights it equals COCOeval on the resampled
    image list (up to the order of detections with identical scores)."""

    REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)

    def __init__(self, image_ids, det_img, tps, fps, n_gt):
        self.image_ids = list(image_ids)
        self.n_images = len(self.image_ids)
        self.det_img, self.tps, self.fps, self.n_gt = det_img, tps, fps, n_gt

    @classmethod
    def from_coco(cls, gt: dict, dets: list[dict]) -> MatchArrays:
        image_ids = [im["id"] for im in gt["images"]]
        if not dets:
            n_gt = np.zeros(len(image_ids))
            for a in gt["annotations"]:
                if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0:
                    n_gt[image_ids.index(a["image_id"])] += 1
            return cls(image_ids, np.zeros(0, int), np.zeros((10, 0), bool), np.zeros((10, 0), bool), n_gt)
        ev = coco_eval(gt, dets, accumulate=False)
        pe = ev._paramsEval
        order = list(pe.imgIds)                        # COCOeval sorts image ids
        pos = {i: k for k, i in enumerate(image_ids)}
        n_img, max_det = len(order), pe.maxDets[-1]
        scores, img, dtm, dtig = [], [], [], []
        n_gt = np.zeros(len(image_ids))
        for i, image_id in enumerate(order):
            e = ev.evalImgs[i]                         # category 0, area 'all' come first
            if e is None:
                continue
            n_gt[pos[image_id]] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
            s = np.asarray(e["dtScores"][:max_det])
            scores.append(s)
            img.append(np.full(len(s), pos[image_id]))
            dtm.append(np.asarray(e["dtMatches"])[:, :max_det])
            dtig.append(np.asarray(e["dtIgnore"])[:, :max_det])
        assert n_img == len(image_ids)
        all_scores = np.concatenate(scores) if scores else np.zeros(0)
        inds = np.argsort(-all_scores, kind="mergesort")
        m = np.concatenate(dtm, axis=1)[:, inds] if dtm else np.zeros((10, 0))
        ig = np.concatenate(dtig, axis=1)[:, inds].astype(bool) if dtig else np.zeros((10, 0), bool)
        matched = m.astype(bool)
        return cls(image_ids, np.concatenate(img)[inds] if img else np.zeros(0, int),
                   matched & ~ig, ~matched & ~ig, n_gt)

    def ap(self, weights: np.ndarray) -> tuple[float, float]:
        """(AP, AP50) with each image counted ``weights[i]`` times."""
        npig = float(np.dot(weights, self.n_gt))
        if npig <= 0:
            return 0.0, 0.0
        if self.det_img.size == 0:
            return 0.0, 0.0
        wd = weights[self.det_img]
        tp = np.cumsum(self.tps * wd, axis=1)
        fp = np.cumsum(self.fps * wd, axis=1)
        rc = tp / npig
        pr = tp / (fp + tp + np.spacing(1))
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
        q = np.zeros((len(rc), len(self.REC_THRS)))
        for t in range(len(rc)):
            idx = np.searchsorted(rc[t], self.REC_THRS, side="left")
            ok = idx < rc.shape[1]
            q[t, ok] = pr[t, idx[ok]]
        return float(q.mean()), float(q[0].mean())


class PersonArrays:
    """Per-person values (PCK@0.2 or OKS) of one run, indexed by the image each person is in."""

    def __init__(self, image_ids: list[int], rows: list[dict], key: str):
        self.image_ids = list(image_ids)
        pos = {i: k for k, i in enumerate(image_ids)}
        keep = [r for r in rows if r.get(key) is not None and r["image_id"] in pos]
        self.person_ids = [r["person_id"] for r in keep]
        self.img = np.array([pos[r["image_id"]] for r in keep], dtype=int)
        self.values = np.array([float(r[key]) for r in keep])

    def mean(self, weights: np.ndarray) -> float:
        w = weights[self.img]
        return float(np.dot(w, self.values) / w.sum()) if w.sum() > 0 else float("nan")


def _metric_fn(metric: str):
    if metric == "AP50":
        return lambda arr, w: arr.ap(w)[1]
    if metric == "AP":
        return lambda arr, w: arr.ap(w)[0]
    return lambda arr, w: arr.mean(w)


def two_stage_bootstrap(arm: dict[int, Any], baseline: dict[int, Any], metric: str, n_boot: int = 1000,
                        seed: int = 0) -> dict[str, Any]:
    """``metric(arm) - metric(baseline)``, averaged over seeds, with a 95 % interval that holds both sources
    of variance: each resample draws the seeds with replacement (anchor draw, synthetic sample and
    training noise), then the test images with replacement (the same images for both arms and every
    seed: the comparison stays paired). ``arm``/``baseline``: {seed: MatchArrays or PersonArrays} on the
    same test images. Also returns each seed's own difference with an image-only interval, and a
    two-sided bootstrap p-value (for Holm's correction). With one seed the interval has no seed stage.
    """
    fn = _metric_fn(metric)
    seeds = sorted(set(arm) & set(baseline))
    if not seeds:
        return {"mean_diff": float("nan"), "ci": [float("nan"), float("nan")], "p": float("nan"), "n": 0,
                "seeds": 0, "per_seed": [], "n_boot": n_boot}
    ids = {tuple(x.image_ids) for s in seeds for x in (arm[s], baseline[s])}
    if len(ids) > 1:
        raise ValueError("a paired comparison needs the same test images in every run")
    n_img = len(next(iter(ids)))
    ones = np.ones(n_img)
    per_seed_obs = {s: fn(arm[s], ones) - fn(baseline[s], ones) for s in seeds}
    obs = float(np.mean(list(per_seed_obs.values())))
    rng = np.random.default_rng(seed)
    p_img = np.full(n_img, 1.0 / n_img)
    boot, per_seed_boot = np.empty(n_boot), {s: np.empty(n_boot) for s in seeds}
    for b in range(n_boot):
        w = rng.multinomial(n_img, p_img).astype(float)
        d = {s: fn(arm[s], w) - fn(baseline[s], w) for s in seeds}
        for s in seeds:
            per_seed_boot[s][b] = d[s]
        drawn = rng.choice(seeds, size=len(seeds), replace=True) if len(seeds) > 1 else seeds
        boot[b] = np.mean([d[s] for s in drawn])
    lo, hi = (float(np.percentile(boot, q)) for q in (2.5, 97.5))
    p = min(1.0, 2 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0)))) if obs != 0 or lo != hi else 1.0
    p = max(float(p), 1.0 / n_boot)
    return {"mean_diff": obs, "ci": [lo, hi], "p": p, "n": n_img, "seeds": len(seeds), "n_boot": n_boot,
            "method": ("two-stage bootstrap: seeds, then images" if len(seeds) > 1
                       else "bootstrap over images (one seed: no seed variance)"),
            "per_seed": [{"seed": int(s), "diff": float(per_seed_obs[s]),
                          "ci": [float(np.percentile(per_seed_boot[s], 2.5)),
                                 float(np.percentile(per_seed_boot[s], 97.5))]} for s in seeds]}


def gap_closed_bootstrap(arm: dict[int, Any], reference: dict[int, Any], baseline: dict[int, Any], metric: str,
                         n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The fraction of the baseline -> reference gap an arm closes: ``(arm - baseline) / (reference - baseline)``
    (e.g. real-only N -> real-only 2N), with a 95 % interval from the same two-stage resamples as
    :func:`two_stage_bootstrap` (seeds, then the same test images for all three arms). A resample whose
    reference gap is not positive has no fraction; when more than 2.5 % of them do, the interval is unbounded
    (``ci`` None) and ``undefined_share`` says how often: the reference itself is not clearly better."""
    fn = _metric_fn(metric)
    seeds = sorted(set(arm) & set(reference) & set(baseline))
    empty = {"fraction": None, "ci": None, "seeds": len(seeds), "n_boot": n_boot, "undefined_share": None,
             "arm_gain": None, "reference_gain": None}
    if not seeds:
        return empty
    ids = {tuple(x.image_ids) for s in seeds for x in (arm[s], reference[s], baseline[s])}
    if len(ids) > 1:
        raise ValueError("a paired comparison needs the same test images in every run")
    n_img = len(next(iter(ids)))
    ones = np.ones(n_img)
    gain = float(np.mean([fn(arm[s], ones) - fn(baseline[s], ones) for s in seeds]))
    ref_gain = float(np.mean([fn(reference[s], ones) - fn(baseline[s], ones) for s in seeds]))
    rng = np.random.default_rng(seed)
    p_img = np.full(n_img, 1.0 / n_img)
    ratios = np.full(n_boot, np.nan)
    for b in range(n_boot):
        w = rng.multinomial(n_img, p_img).astype(float)
        drawn = rng.choice(seeds, size=len(seeds), replace=True) if len(seeds) > 1 else seeds
        base = {s: fn(baseline[s], w) for s in set(drawn)}
        num = np.mean([fn(arm[s], w) - base[s] for s in drawn])
        den = np.mean([fn(reference[s], w) - base[s] for s in drawn])
        if den > 0:
            ratios[b] = num / den
    undefined = float(np.mean(~np.isfinite(ratios)))
    ci = None
    if undefined <= 0.025:
        ok = ratios[np.isfinite(ratios)]
        ci = [float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5))]
    return {**empty, "fraction": gain / ref_gain if ref_gain > 0 else None, "ci": ci,
            "undefined_share": round(undefined, 4), "arm_gain": gain, "reference_gain": ref_gain, "n": n_img}


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
