"""Embedding and teacher throughput on this machine, PyTorch eager beside realcal's default runtime
(ONNX Runtime on the CPU), and their share of the matmul-bound limit.

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


def rate(fn, items, repeats: int = 3) -> float:
    """Images/s of ``fn(items)``: the median of ``repeats`` timed calls after one warm-up."""
    fn(items[:16])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(items)
        times.append(time.perf_counter() - t0)
    return len(items) / float(np.median(times))


def main() -> None:
    import os

    import torch
    from thop import profile

    from engine import assets, env, media
    from engine.curate.embedders import EffNetLite0Embedder, _features
    from engine.curate.teacher import Teacher

    env.tune_malloc()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; torch {torch.get_num_threads()} threads")
    peak = matmul_gflops()
    print(f"fp32 matmul (torch): {peak:.1f} GFLOP/s")
    imgs = images(256)

    # embeddings: PyTorch eager (the reference, and realcal before ONNX Runtime) beside realcal's default
    ref = EffNetLite0Embedder(batch_size=32, backend="torch")
    ref.setup()
    macs, _ = profile(_features(ref.model), inputs=(torch.zeros(1, 3, 224, 224).contiguous(
        memory_format=torch.channels_last),), verbose=False)
    gflop = 2 * macs / 1e9
    emb = EffNetLite0Embedder(batch_size=32)
    emb.setup()
    for name, e in (("torch (reference)", ref), (f"realcal default: {emb.runtime}", emb)):
        ips = rate(e.embed, imgs)
        print(f"EffNet-Lite0 embedding, 224 px, batch 32, {name}: {ips:.1f} images/s "
              f"({ips * gflop:.1f} GFLOP/s = {100 * ips * gflop / peak:.0f}% of the matmul rate; "
              f"bound {peak / gflop:.0f} images/s)")
    diff = float(np.abs(ref.embed(imgs[:64]) - emb.embed(imgs[:64])).max())
    print(f"  largest difference between the two embeddings (unit vectors): {diff:.1e}")

    # decoding overlapped with the model (cached_embeddings, curation's teacher) vs decode-then-embed
    files = sorted(LSPET.glob("*.jpg"))[:256] if LSPET.exists() else []
    if files:
        import cv2

        def load(f):
            return cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)

        chunks = [files[i:i + 64] for i in range(0, len(files), 64)]

        def plain(fs):
            for c in [fs[i:i + 64] for i in range(0, len(fs), 64)]:
                emb.embed([load(f) for f in c])

        def overlapped(fs):
            for _, pix in media.prefetched([fs[i:i + 64] for i in range(0, len(fs), 64)], load):
                emb.embed(pix)

        print(f"decode + embed {len(files)} files: one after the other {rate(plain, files):.1f} images/s, "
              f"decoding the next chunk in threads {rate(overlapped, files):.1f} images/s ({len(chunks)} chunks)")

    for imgsz in (320, 640):
        t_ref = Teacher(str(assets.resolve("yolo11n-pose")), "cpu", imgsz=imgsz, backend="torch")
        t_ref.setup()
        macs, _ = profile(t_ref.model.model, inputs=(torch.zeros(1, 3, imgsz, imgsz),), verbose=False)
        gflop = 2 * macs / 1e9
        t_new = Teacher(str(assets.resolve("yolo11n-pose")), "cpu", imgsz=imgsz)
        t_new.setup()
        for name, t in (("torch (reference)", t_ref), (f"realcal default: {t_new.runtime}", t_new)):
            ips = rate(t, imgs[:128], repeats=2)
            print(f"yolo11n-pose teacher, imgsz {imgsz} (letterboxed), batch 8, {name}: {ips:.1f} images/s "
                  f"(at most {ips * gflop:.1f} GFLOP/s = {100 * ips * gflop / peak:.0f}% of the matmul rate; "
                  f"bound {peak / gflop:.0f} images/s at {imgsz}x{imgsz})")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
