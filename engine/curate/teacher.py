"""The teacher as a batch function for curation: RGB images -> people (keypoints, boxes, scores)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import RealcalError


def load_teacher(weights: str):
    """The teacher model (Ultralytics YOLO pose weights); refuses a model of another task."""
    from ultralytics import YOLO

    model = YOLO(weights)
    if model.task != "pose":
        raise RealcalError(f"{weights} is a {model.task} model; the teacher must be a pose model")
    return model


_WEIGHTS_HASH: dict[tuple[str, float, int], str] = {}


def weights_hash(path: str) -> str:
    """The first 16 hex digits of the weights file's sha256 (computed once per file version)."""
    import hashlib
    import os

    st = os.stat(path)
    key = (os.path.realpath(path), st.st_mtime, st.st_size)
    if key not in _WEIGHTS_HASH:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _WEIGHTS_HASH[key] = h.hexdigest()[:16]
    return _WEIGHTS_HASH[key]


def prediction_key(weights: str, device: str, imgsz: int, conf: float) -> str:
    """What decides a teacher's predictions on an image: its weights, input size, confidence threshold and
    the device kind (CPU and GPU kernels differ in the last digits). Names cached predictions."""
    from engine.config import resolve_device

    return f"{weights_hash(weights)}:{int(imgsz)}:{float(conf)}:{resolve_device(device).split(':')[0]}"


class Teacher:
    def __init__(self, weights: str, device: str = "auto", imgsz: int = 640, conf: float = 0.25):
        self.weights, self.device, self.imgsz, self.conf = weights, device, int(imgsz), float(conf)
        self.model: Any = None       # an Ultralytics YOLO model, loaded in setup()

    @property
    def cache_key(self) -> str:
        return prediction_key(self.weights, self.device, self.imgsz, self.conf)

    def setup(self) -> None:
        from engine.config import resolve_device

        self.model = load_teacher(self.weights)
        self.device = resolve_device(self.device)

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict]:
        if self.model is None:
            self.setup()
        out = []
        for start in range(0, len(images), 8):
            bgr = [np.ascontiguousarray(im[..., ::-1]) for im in images[start:start + 8]]
            for r in self.model.predict(bgr, imgsz=self.imgsz, conf=self.conf, device=self.device,
                                        verbose=False):
                if r.keypoints is None or r.boxes is None or not len(r.boxes):
                    out.append({"keypoints": np.zeros((0, 17, 3)), "boxes": np.zeros((0, 4)),
                                "scores": np.zeros(0)})
                    continue
                out.append({"keypoints": r.keypoints.data.cpu().numpy().astype(float),
                            "boxes": r.boxes.xyxy.cpu().numpy().astype(float),
                            "scores": r.boxes.conf.cpu().numpy().astype(float)})
        return out


def teacher_fn(weights: str, device: str = "auto", imgsz: int = 640, conf: float = 0.25):
    """Batch-function factory for executors: items are ``(index, RGB image)``; results keep the index."""
    teacher = Teacher(weights, device, imgsz, conf)

    def run(items):
        preds = teacher([im for _, im in items])
        return [(i, p) for (i, _), p in zip(items, preds)]
    return run


class MappedTeacher:
    """The teacher through an executor (e.g. Ray actors, one model load per actor), results in order."""

    def __init__(self, executor, weights: str, device: str = "auto", imgsz: int = 640, conf: float = 0.25):
        self.executor = executor
        self.kwargs = {"weights": weights, "device": device, "imgsz": imgsz, "conf": conf}
        self._key = (weights, device, int(imgsz), float(conf))

    @property
    def cache_key(self) -> str:
        # the workers resolve "auto" on their own machines: only an explicit device names their predictions
        weights, device, imgsz, conf = self._key
        return prediction_key(weights, device, imgsz, conf) + (":mapped" if device == "auto" else "")

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict]:
        out: list = [None] * len(images)
        for _, results in self.executor.map("engine.curate.teacher:teacher_fn", self.kwargs, list(enumerate(images))):
            for i, p in results:
                out[i] = p
        return out


def person_detector(weights: str, device: str = "auto", conf: float = 0.25):
    """The teacher as a person detector: ``detect(image_bgr) -> [(x, y, w, h), ...]`` (used to keep
    generated backgrounds person-free)."""
    from engine.config import resolve_device

    model = load_teacher(weights)
    dev = resolve_device(device)

    def detect(image_bgr: np.ndarray) -> list[tuple[float, float, float, float]]:
        r = model.predict(image_bgr, conf=conf, device=dev, verbose=False)[0]
        return [(float(x0), float(y0), float(x1 - x0), float(y1 - y0))
                for x0, y0, x1, y1 in r.boxes.xyxy.cpu().numpy()]

    return detect
