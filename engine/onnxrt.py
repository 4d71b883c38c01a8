"""ONNX Runtime execution of the CPU models (the embedder and the teacher), where it is faster.

On this project's CPU reference machine ONNX Runtime runs EfficientNet-Lite0 3x and the yolo11n-pose
teacher 2x faster than PyTorch eager on the same inputs, with the same results to rounding
(``bench/curate.py``; tolerances in ``tests/test_onnxrt.py``). ``onnx`` and ``onnxruntime`` are pinned
dependencies already (trained-model export), so nothing new is installed.

``inference.backend`` (a workspace setting) chooses:

* ``auto`` (default): ONNX Runtime when the model runs on the CPU, PyTorch on a GPU. If the export or the
  runtime fails, the model runs in PyTorch and the reason is logged once: a slower run, never a failed one.
* ``onnxruntime``: ONNX Runtime, or a clear error.
* ``torch``: PyTorch everywhere (the reference the others are tested against).

Exports are made once per (model weights, exporter versions, shape options) and kept under
``<cache>/onnx/``, written to a temporary file and renamed, so concurrent processes never read half a file.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import env
from engine.config import BACKENDS, check_backend
from engine.errors import RealcalError

__all__ = ["BACKENDS", "check_backend", "choose", "exported", "export_torch", "export_yolo", "fallback", "session"]
log = logging.getLogger("realcal.onnxrt")
_warned: set[str] = set()


def choose(backend: str, device: str) -> str:
    """``onnxruntime`` or ``torch`` for a model asked to run with ``backend`` on ``device``."""
    from engine.config import resolve_device

    check_backend(backend)
    on_cpu = resolve_device(device).split(":")[0] == "cpu"
    if backend == "torch":
        return "torch"
    if backend == "onnxruntime":
        if not on_cpu:
            raise RealcalError(f"inference backend onnxruntime runs on the CPU; device is {device!r} "
                               "(set inference.backend to auto or torch for a GPU)")
        _require()
        return "onnxruntime"
    if not on_cpu:
        return "torch"
    try:
        _require()
    except RealcalError as exc:
        fallback(str(exc))
        return "torch"
    return "onnxruntime"


def _require() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise RealcalError(f"ONNX Runtime execution needs the onnx and onnxruntime packages ({exc}); "
                           "pip install onnx onnxruntime, or set inference.backend to torch") from None


def fallback(reason: str) -> None:
    """Say once per reason that a model runs in PyTorch although ONNX Runtime was preferred."""
    if reason not in _warned:
        _warned.add(reason)
        log.warning("running in PyTorch instead of ONNX Runtime: %s", reason)


def exported(kind: str, source: str | Path, tag: str, build: Callable[[Path], None]) -> Path:
    """The ONNX file for ``source`` weights, built by ``build(target)`` once and cached.

    ``tag`` names everything else that decides the file (input size, options); the exporters' versions are
    added here, so an upgrade exports again instead of reusing a file another version made."""
    import onnx
    import torch

    from engine.assets import sha256_of

    key = hashlib.sha256(f"{sha256_of(Path(source))}|{tag}|torch {torch.__version__}|onnx {onnx.__version__}"
                         f"|{_ultralytics_version()}".encode()).hexdigest()[:16]
    folder = env.cache_dir() / "onnx"
    target = folder / f"{kind}-{key}.onnx"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{kind}-", suffix=".onnx", dir=folder)
    os.close(fd)
    try:
        build(Path(tmp))
        onnx.checker.check_model(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _ultralytics_version() -> str:
    try:
        from importlib.metadata import version

        return f"ultralytics {version('ultralytics')}"
    except Exception:  # noqa: BLE001 - not installed: the tag simply lacks it
        return ""


def session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session; ``threads`` intra-op threads (default: the machine's cores)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def export_torch(module: Any, example: Any, target: Path, input_name: str = "x", output_name: str = "y") -> None:
    """``module`` traced on ``example`` into ``target``, batch dimension dynamic."""
    import warnings

    import torch

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(target), input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                          opset_version=17, dynamo=False)


def export_yolo(weights: str | Path, imgsz: int, target: Path) -> None:
    """An Ultralytics pose model exported with Ultralytics' own exporter (dynamic batch and size, no
    simplifier); the exporter writes next to its input, so it works on a private copy."""
    import shutil
    import warnings

    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copy = Path(tmp) / "model.pt"
        shutil.copyfile(weights, copy)
        out = YOLO(str(copy), task="pose").export(format="onnx", imgsz=int(imgsz), dynamic=True, simplify=False,
                                                  device="cpu", verbose=False)
        if not out or not Path(out).exists():
            raise RealcalError(f"the ONNX export of {weights} produced no file")
        shutil.move(str(out), target)
