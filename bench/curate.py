"""Embedding and teacher throughput on this machine, and their share of the matmul-bound limit.

    .venv/bin/python bench/curate.py

The limit: the model's FLOPs per image (counted with thop: 2 x multiply-accumulates) against
this machine's measured fp32 matmul rate (torch, 2048^2). Real images from ../shared/data/lspet
when present, otherwise random pixels.
"""
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402,F401  (configures the offline environment)

LSPET = Path(__file__).resolve().parents[2] / "shared" / "data" / "lspet" / "images"


def matmul_gflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    t0 = time.perf_counter()
    n = 10
    for _ in range(n):
        a @ b
    return 2 * 2048 ** 3 * n / (time.perf_counter() - t0) / 1e9


def images(n: int) -> list[np.ndarray]:
    import cv2

    if LSPET.exists():
        files = sorted(LSPET.glob("*.jpg"))[:n]
        return [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (300, 400, 3), np.uint8) for _ in range(n)]


def main() -> None:
    import torch
    from thop import profile

    from engine import assets
    from engine.curate.embedders import EffNetLite0Embedder
    from engine.curate.teacher import Teacher

    peak = matmul_gflops()
    print(f"fp32 matmul (torch, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    imgs = images(256)

    emb = EffNetLite0Embedder(batch_size=32)
    emb.setup()
    macs, _ = profile(emb.model, inputs=(torch.zeros(1, 3, 224, 224),), verbose=False)
    emb.embed(imgs[:32])
    t0 = time.perf_counter()
    emb.embed(imgs)
    dt = time.perf_counter() - t0
    ips = len(imgs) / dt
    gflop = 2 * macs / 1e9
    print(f"EffNet-Lite0 embedding, 224 px, batch 32: {ips:.1f} images/s "
          f"({gflop:.2f} GFLOP/image -> {ips * gflop:.1f} GFLOP/s = {100 * ips * gflop / peak:.0f}% "
          f"of the matmul rate)")

    teacher = Teacher(str(assets.resolve("yolo11n-pose")), "cpu", imgsz=640)
    teacher.setup()
    macs, _ = profile(teacher.model.model, inputs=(torch.zeros(1, 3, 640, 640),), verbose=False)
    teacher(imgs[:8])
    t0 = time.perf_counter()
    teacher(imgs[:64])
    dt = time.perf_counter() - t0
    ips = 64 / dt
    gflop = 2 * macs / 1e9
    print(f"yolo11n-pose teacher, imgsz 640 (letterboxed), batch 8: {ips:.1f} images/s "
          f"({gflop:.2f} GFLOP/image at 640x640 -> at most {ips * gflop:.1f} GFLOP/s = "
          f"{100 * ips * gflop / peak:.0f}% of the matmul rate; rectangular letterboxing does less)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
