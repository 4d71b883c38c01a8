"""The teacher as a batch function for curation: RGB images -> people (keypoints, boxes, scores)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import RealcalError


def load_teacher(weights: str):
    """The teacher model (Ultralytics YOLO pose weights); refuses a model of another task."""
    from ultralytics import YOLO

    model = YOLO(weights, task="pose") if str(weights).endswith(".onnx") else YOLO(weights)
    if model.task != "pose":
        raise RealcalError(f"{weights} is a {model.task} model; the teacher must be a pose model")
    return model


def weights_hash(path: str) -> str:
    """The first 16 hex digits of the weights file's sha256 (computed once per file version)."""
    from pathlib import Path

    from engine.assets import sha256_of

    return sha256_of(Path(path))[:16]


def prediction_key(weights: str, device: str, imgsz: int, conf: float, runtime: str = "torch") -> str:
    """What decides a teacher's predictions on an image: its weights, input size, confidence threshold,
    the device kind (CPU and GPU kernels differ in the last digits) and the runtime (ONNX Runtime differs
    from PyTorch in the last digits too). Names cached predictions."""
    from engine.config import resolve_device

    key = f"{weights_hash(weights)}:{int(imgsz)}:{float(conf)}:{resolve_device(device).split(':')[0]}"
    return key if runtime == "torch" else f"{key}:{runtime}"


class Teacher:
    """Ultralytics pose model inference on RGB images. ``backend`` (engine.onnxrt): ``auto`` runs an ONNX
    Runtime export of the weights on the CPU (same pre- and post-processing, Ultralytics' own), PyTorch on
    a GPU or when the export fails."""

    def __init__(self, weights: str, device: str = "auto", imgsz: int = 640, conf: float = 0.25,
                 backend: str = "auto", square: bool = False):
        from engine.config import check_backend

        self.weights, self.device, self.imgsz, self.conf = weights, device, int(imgsz), float(conf)
        # square: every image letterboxed to imgsz x imgsz. Ultralytics otherwise pads a batch whose images all
        # have one shape (a batch of one included) only to the stride, so an image's prediction would depend on
        # the images it was batched with; square, it is the same alone or in any batch (bit for bit)
        self.square = bool(square)
        self.backend = check_backend(backend)
        self.model: Any = None       # an Ultralytics YOLO model, loaded in setup()
        self.runtime: str | None = None   # onnxruntime | torch, once chosen

    @property
    def cache_key(self) -> str:
        from engine import onnxrt

        runtime = self.runtime or onnxrt.choose(self.backend, self.device)
        return prediction_key(self.weights, self.device, self.imgsz, self.conf, runtime)

    def setup(self) -> None:
        from engine import onnxrt
        from engine.config import resolve_device

        self.device = resolve_device(self.device)
        self.runtime = onnxrt.choose(self.backend, self.device)
        if self.runtime == "onnxruntime":
            try:
                path = onnxrt.exported("yolo-pose", self.weights, f"imgsz{self.imgsz}-dynamic",
                                       lambda target: onnxrt.export_yolo(self.weights, self.imgsz, target))
                self.model = load_teacher(str(path))
                return
            except Exception as exc:  # noqa: BLE001 - auto falls back to the reference, explicit fails
                if self.backend == "onnxruntime":
                    raise RealcalError(f"the teacher on ONNX Runtime failed: {exc}") from exc
                onnxrt.fallback(f"teacher {self.weights}: {exc}")
                self.runtime = "torch"
        self.model = load_teacher(self.weights)

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict]:
        if self.model is None:
            self.setup()
        out = []
        for start in range(0, len(images), 8):
            bgr = [np.ascontiguousarray(im[..., ::-1]) for im in images[start:start + 8]]
            for r in self.model.predict(bgr, imgsz=self.imgsz, conf=self.conf, device=self.device,
                                        verbose=False, **({"rect": False} if self.square else {})):
                if r.keypoints is None or r.boxes is None or not len(r.boxes):
                    out.append({"keypoints": np.zeros((0, 17, 3)), "boxes": np.zeros((0, 4)),
                                "scores": np.zeros(0)})
                    continue
                out.append({"keypoints": r.keypoints.data.cpu().numpy().astype(float),
                            "boxes": r.boxes.xyxy.cpu().numpy().astype(float),
                            "scores": r.boxes.conf.cpu().numpy().astype(float)})
        return out


def teacher_fn(weights: str, device: str = "auto", imgsz: int = 640, conf: float = 0.25, backend: str = "auto"):
    """Batch-function factory for executors: items are ``(index, RGB image)``; results keep the index."""
    teacher = Teacher(weights, device, imgsz, conf, backend)

    def run(items):
        preds = teacher([im for _, im in items])
        return [(i, p) for (i, _), p in zip(items, preds)]
    return run


class MappedTeacher:
    """The teacher through an executor (e.g. Ray actors, one model load per actor), results in order."""

    def __init__(self, executor, weights: str, device: str = "auto", imgsz: int = 640, conf: float = 0.25,
                 backend: str = "auto"):
        self.executor = executor
        self.kwargs = {"weights": weights, "device": device, "imgsz": imgsz, "conf": conf, "backend": backend}
        self._key = (weights, device, int(imgsz), float(conf), backend)

    @property
    def cache_key(self) -> str:
        # the workers resolve "auto" on their own machines: only an explicit device and backend name their
        # predictions
        weights, device, imgsz, conf, backend = self._key
        explicit = device != "auto" and backend != "auto"
        return prediction_key(weights, device, imgsz, conf, backend) + ("" if explicit else f":mapped-{backend}")

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
