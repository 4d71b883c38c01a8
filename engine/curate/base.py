"""What the curation stages share: the context, item loading, and real-calibrated thresholds.

A threshold is either a number or ``{"real_percentile": P}``: P-th percentile of the same score
measured on the *train* real anchors (leave-one-out where the score compares an image with the
anchor set), never on val/test. For a score where higher is better, samples below the threshold
fail; where lower is better, samples above it fail. The calibration set size and the resulting
number are stored with the run.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from engine import media
from engine.component import Component
from engine.errors import RealcalError


@dataclass
class StageContext:
    ws: Any
    db: Any
    embedder: Any = None
    teacher: Any = None                    # callable(list of RGB images) -> list of predictions
    real_train: list[dict] = field(default_factory=list)   # real train images (+ persons)
    real_all: list[dict] = field(default_factory=list)     # every real image (dedupe)
    progress: Callable[[str, int, int], None] | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def predict(self, rows: list[dict], flip: bool = False, chunk: int = 64) -> list[dict]:
        """The teacher's predictions for these images (mirrored left-right with ``flip``), decoded and
        predicted ``chunk`` at a time (the next chunk decoding while the teacher runs), so memory holds two
        chunks of pixels at most whatever the number of images.
        With a database and a teacher that names its predictions (``cache_key``), predictions are cached by
        image content: a second curation of the same images (new thresholds, the next loop round, the real
        anchors' calibration) does not run the teacher on them again."""
        from store import curation as store_curation
        from store.db import write_transaction

        key = getattr(self.teacher, "cache_key", None) if self.db is not None else None
        if key and flip:
            key += ":flip"
        have = store_curation.get_predictions(self.db, key, [r["sha256"] for r in rows]) if key else {}
        todo = [r for r in rows if r["sha256"] not in have]
        chunks = [todo[start:start + chunk] for start in range(0, len(todo), chunk)]
        for part, images in media.prefetched(chunks, self.image):
            if flip:
                images = [np.ascontiguousarray(im[:, ::-1]) for im in images]
            new = {r["sha256"]: p for r, p in zip(part, self.teacher(images))}
            if key:
                # named again after the call: a teacher that fell back to another runtime says so now
                put_key = self.teacher.cache_key + (":flip" if flip else "")
                with write_transaction(self.db):
                    store_curation.put_predictions(self.db, put_key, new)
            have.update(new)
        return [have[r["sha256"]] for r in rows]

    def image(self, row: dict) -> np.ndarray:
        bgr = cv2.imread(str(media.image_path(self.ws.root, row["sha256"], row["ext"])), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RealcalError(f"cannot read image {row['id']}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class Stage(Component):
    """Base of every curation stage. ``calibrate(ctx)`` measures what it needs on the real train anchors
    (returns a JSON-able record of the thresholds it chose); ``run(ctx, items)`` returns one row per item:
    ``{"image_id", "status": pass|fail|unavailable, "value", "reason", "details"}``. ``main`` names the
    score in ``value``; ``higher_is_better`` its direction."""

    higher_is_better: bool = True
    main: str = "score"

    def calibrate(self, ctx: StageContext) -> dict:
        return {}

    def run(self, ctx: StageContext, items: list[dict]) -> list[dict]:
        raise NotImplementedError


def resolve_threshold(spec: Any, real_values: np.ndarray | None, higher_is_better: bool,
                      name: str) -> tuple[float | None, dict]:
    """A fixed number, or a percentile of the real-anchor values; returns (threshold, record)."""
    if spec is None:
        return None, {"threshold": None}
    if isinstance(spec, (int, float)):
        return float(spec), {"threshold": float(spec), "kind": "fixed"}
    if isinstance(spec, dict) and set(spec) == {"real_percentile"}:
        p = float(spec["real_percentile"])
        if not 0 <= p <= 100:
            raise RealcalError(f"{name}: real_percentile must be within 0..100")
        vals = np.asarray(real_values if real_values is not None else [], dtype=float)
        vals = vals[np.isfinite(vals)]
        if len(vals) < 5:
            raise RealcalError(f"{name}: calibrating on real anchors needs at least 5 train real "
                               f"images with this score, found {len(vals)}")
        thr = float(np.percentile(vals, p))
        return thr, {"threshold": thr, "kind": "real_percentile", "percentile": p,
                     "calibration_images": int(len(vals)),
                     "direction": "higher is better" if higher_is_better else "lower is better",
                     "real_quantiles": {q: float(np.percentile(vals, q)) for q in (5, 25, 50, 75, 95)},
                     "real_values": [round(float(v), 5) for v in vals[:2000]]}
    raise RealcalError(f"{name}: a threshold is a number or {{real_percentile: P}}, not {spec!r}")


def passes(value: float | None, threshold: float | None, higher_is_better: bool) -> bool:
    if threshold is None or value is None or not np.isfinite(value):
        return threshold is None
    return value >= threshold if higher_is_better else value <= threshold
