"""ONNX Runtime execution of the embedder and the teacher: the same results as PyTorch to a stated
tolerance, a clear choice of runtime, and a fallback that never fails a job in auto mode."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from engine import onnxrt
from engine.errors import RealcalError
from tests.conftest import shared

# Tolerances (measured on LSPET images: 4e-7 for the embeddings, 3e-4 px and 1.4e-6 in score for the teacher)
EMBEDDING_TOL = 1e-5          # largest element difference between unit vectors
KEYPOINT_TOL_PX = 0.05
SCORE_TOL = 1e-4


def _lspet_images(n: int) -> list[np.ndarray]:
    import cv2

    files = sorted(shared("lspet", "images").glob("*.jpg"))[:n]
    return [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]


def test_the_embedder_on_onnxruntime_matches_pytorch():
    from engine import registry

    imgs = _lspet_images(12)
    ort = registry.build("embedder", "effnet-lite0", {"backend": "onnxruntime"})
    ort.setup()
    ref = registry.build("embedder", "effnet-lite0", {"backend": "torch"})
    ref.setup()
    assert (ort.runtime, ref.runtime) == ("onnxruntime", "torch")
    a, b = ort.embed(imgs), ref.embed(imgs)
    assert a.shape == b.shape == (12, 1280)
    assert np.abs(a - b).max() < EMBEDDING_TOL
    # the default on the CPU is ONNX Runtime, and an image's embedding does not depend on its batch
    auto = registry.build("embedder", "effnet-lite0", {"batch_size": 5})
    auto.setup()
    assert auto.runtime == "onnxruntime"
    assert np.abs(auto.embed(imgs) - b).max() < EMBEDDING_TOL


def test_the_teacher_on_onnxruntime_matches_pytorch():
    from engine import assets
    from engine.curate.teacher import Teacher

    imgs = _lspet_images(16)
    weights = str(assets.resolve("yolo11n-pose"))
    ort, ref = Teacher(weights, "cpu", 320), Teacher(weights, "cpu", 320, backend="torch")
    a, b = ort(imgs), ref(imgs)
    assert (ort.runtime, ref.runtime) == ("onnxruntime", "torch")
    assert [len(p["scores"]) for p in a] == [len(p["scores"]) for p in b]
    assert sum(len(p["scores"]) for p in a) >= 12          # people were found: the comparison means something
    for p, q in zip(a, b):
        if len(p["scores"]):
            assert np.abs(p["keypoints"] - q["keypoints"])[..., :2].max() < KEYPOINT_TOL_PX
            assert np.abs(p["keypoints"] - q["keypoints"])[..., 2].max() < SCORE_TOL
            assert np.abs(p["scores"] - q["scores"]).max() < SCORE_TOL
            assert np.abs(p["boxes"] - q["boxes"]).max() < KEYPOINT_TOL_PX
    # predictions are cached under a key that names the runtime: the two never mix
    assert ort.cache_key == ref.cache_key + ":onnxruntime"


def test_auto_falls_back_to_pytorch_when_the_export_fails_and_explicit_fails(monkeypatch, caplog):
    from engine import assets
    from engine.curate.teacher import Teacher

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnxrt, "export_yolo", broken)
    monkeypatch.setattr(onnxrt, "_warned", set())
    weights = str(assets.resolve("yolo11n-pose"))
    t = Teacher(weights, "cpu", 256)          # a size never exported in this run: the export must run
    with caplog.at_level(logging.WARNING, logger="realcal.onnxrt"):
        preds = t(_lspet_images(2))
    assert t.runtime == "torch" and len(preds) == 2
    assert "exporter exploded" in caplog.text
    assert not t.cache_key.endswith(":onnxruntime")   # what it ran on, not what it preferred
    with pytest.raises(RealcalError, match="exporter exploded"):
        Teacher(weights, "cpu", 256, backend="onnxruntime").setup()


def test_runtime_choice(monkeypatch):
    assert onnxrt.choose("auto", "cpu") == "onnxruntime"
    assert onnxrt.choose("torch", "cpu") == "torch"
    assert onnxrt.choose("auto", "cuda:0") == "torch"          # a GPU keeps PyTorch
    with pytest.raises(RealcalError, match="runs on the CPU"):
        onnxrt.choose("onnxruntime", "cuda:0")
    with pytest.raises(RealcalError, match="valid: auto, onnxruntime, torch"):
        onnxrt.choose("tensorrt", "cpu")
    # without the packages: auto runs PyTorch, explicit says what to install
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    assert onnxrt.choose("auto", "cpu") == "torch"
    with pytest.raises(RealcalError, match="pip install onnx onnxruntime"):
        onnxrt.choose("onnxruntime", "cpu")


def test_the_backend_setting_is_checked_and_reaches_curation(ws):
    from engine import config
    from engine.curate.run import embedder_params, resolve_params

    with ws.connect() as db:
        with pytest.raises(RealcalError, match="unknown inference backend"):
            config.save(db, {"inference.backend": "fast"})
        config.save(db, {"inference.backend": "torch", "teacher.imgsz": 320})
    params = resolve_params(ws)
    assert params["backend"] == "torch" and params["teacher_imgsz"] == 320
    assert embedder_params(params) == {"backend": "torch"}
    # an embedder's own setting wins over the workspace's; a run stored before the setting ran PyTorch
    params = resolve_params(ws, {"embedder": {"name": "effnet-lite0", "params": {"backend": "auto"}}})
    assert embedder_params(params) == {"backend": "auto"}
    assert embedder_params({"embedder": {"name": "effnet-lite0", "params": {}}}) == {"backend": "torch"}


def test_exports_are_made_once_and_never_read_half_written(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("REALCAL_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights v1")
    calls = []

    def build(target):
        calls.append(target)
        onnxrt.export_torch(torch.nn.Linear(3, 2).eval(), torch.zeros(1, 3), target)

    first = onnxrt.exported("lin", weights, "t", build)
    assert onnxrt.exported("lin", weights, "t", build) == first and len(calls) == 1
    assert onnxrt.session(first).run(None, {"x": np.zeros((4, 3), np.float32)})[0].shape == (4, 2)
    assert onnxrt.exported("lin", weights, "other-size", build) != first       # the tag names the file
    weights.write_bytes(b"weights v2, new content")
    assert onnxrt.exported("lin", weights, "t", build) != first                # new weights, new export

    def half(target):
        target.write_bytes(b"not a model")
        raise RuntimeError("killed mid-export")

    with pytest.raises(RuntimeError):
        onnxrt.exported("half", weights, "t", half)
    assert not list((tmp_path / "cache" / "onnx").glob("half-*")) and not list(
        (tmp_path / "cache" / "onnx").glob(".half-*"))


def test_prefetched_keeps_order_and_raises_where_the_bad_item_is():
    from engine import media

    chunks = [[1, 2], [3], [4, 5, 6]]
    assert list(media.prefetched(chunks, lambda x: x * 10)) == [([1, 2], [10, 20]), ([3], [30]),
                                                              ([4, 5, 6], [40, 50, 60])]
    assert list(media.prefetched([], lambda x: x)) == []

    def load(x):
        if x == 4:
            raise RealcalError("cannot read image 4")
        return x

    got = []
    with pytest.raises(RealcalError, match="image 4"):
        for chunk, _ in media.prefetched(chunks, load):
            got.append(chunk)
    assert got == [[1, 2], [3]]
