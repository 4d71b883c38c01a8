"""Typed-enough configuration: defaults < workspace settings < job parameters (< CLI flags).

The resolved values are stored with every job (its ``params``), so a result can always be traced
to the exact settings it ran with.
"""
from __future__ import annotations

from typing import Any

from store import settings as store_settings

DEFAULTS: dict[str, Any] = {
    # model weights: an asset name from engine.assets, or an explicit path in *.path
    "teacher.model": "yolo11n-pose",
    "teacher.path": "",
    "teacher.imgsz": 640,                 # curation's teacher input size
    "device": "auto",                     # auto | cpu | cuda | cuda:N
    "inference.backend": "auto",          # auto | onnxruntime | torch (engine.onnxrt)
    "pseudo_label.conf": 0.25,            # detection confidence threshold
    "pseudo_label.keypoint_conf": 0.5,    # a predicted joint counts as labelled (v=2) above this
    "pseudo_label.imgsz": 640,
    "pseudo_label.batch_size": 8,
}

DESCRIPTIONS: dict[str, str] = {
    "teacher.model": "Teacher pose model (asset name) used for pseudo-labels and pose checks.",
    "teacher.path": "Explicit teacher weights file (.pt); empty = the packaged yolo11n-pose.",
    "teacher.imgsz": "Curation: the teacher's inference image size (pose consistency, uncertainty).",
    "device": "Where models run: auto (CUDA when available), cpu, cuda or cuda:N.",
    "inference.backend": "How the embedder and the teacher run: auto (ONNX Runtime on the CPU, PyTorch on a "
                         "GPU or if the export fails), onnxruntime, or torch.",
    "pseudo_label.conf": "Pseudo-labelling: minimum person detection confidence.",
    "pseudo_label.keypoint_conf": "Pseudo-labelling: minimum joint confidence to mark a joint labelled.",
    "pseudo_label.imgsz": "Pseudo-labelling: inference image size.",
    "pseudo_label.batch_size": "Pseudo-labelling: images per inference batch.",
}


BACKENDS = ("auto", "onnxruntime", "torch")     # inference.backend (engine.onnxrt)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        from engine.errors import RealcalError

        raise RealcalError(f"unknown inference backend {backend!r}; valid: {', '.join(BACKENDS)}")
    return backend


def coerce(key: str, value: Any) -> Any:
    """Convert a value (e.g. a CLI string) to the type of the key's default."""
    if key not in DEFAULTS:
        raise KeyError(f"unknown setting {key!r}; known: {', '.join(DEFAULTS)}")
    default = DEFAULTS[key]
    if key == "inference.backend":
        return check_backend(str(value))
    if isinstance(default, bool):
        return str(value).lower() in {"1", "true", "yes", "on"} if isinstance(value, str) else bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return "" if value is None else str(value)


def resolve(db, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    stored = store_settings.get(db, "config", {}) or {}
    out = dict(DEFAULTS)
    out.update({k: v for k, v in stored.items() if k in DEFAULTS})
    out.update({k: coerce(k, v) for k, v in (overrides or {}).items() if v is not None})
    return out


def save(db, values: dict[str, Any]) -> dict[str, Any]:
    stored = store_settings.get(db, "config", {}) or {}
    for k, v in values.items():
        stored[k] = coerce(k, v)
    store_settings.set_value(db, "config", stored)
    db.conn.commit()
    return stored


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"
