"""Does glibc's allocator slow the CPU models down? Embedding and teacher throughput with glibc's default
malloc settings beside the tuned ones realcal applies in its processes (engine.env.tune_malloc: no mmap
for large blocks, no trimming, so big activation buffers are reused instead of faulted in afresh).

    .venv/bin/python bench/malloc_tuning.py [--rounds 3] [--images 128]

Each measurement runs in a fresh process (allocator settings are per process), default and tuned
alternating, so a busy machine slows both alike; prints the medians, their ratio and the load average.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import engine.env as env
if {tuned}:
    assert env.tune_malloc(force=True)
import numpy as np
sys.path.insert(0, {bench!r})
from curate import images
from engine import assets
from engine.curate.embedders import EffNetLite0Embedder
from engine.curate.teacher import Teacher
imgs = images({n})
emb = EffNetLite0Embedder(batch_size=32); emb.setup(); emb.embed(imgs[:32])
t0 = time.perf_counter(); emb.embed(imgs); e = len(imgs) / (time.perf_counter() - t0)
teacher = Teacher(str(assets.resolve("yolo11n-pose")), "cpu", imgsz=320); teacher.setup(); teacher(imgs[:8])
t0 = time.perf_counter(); teacher(imgs[:64]); t = 64 / (time.perf_counter() - t0)
print(json.dumps({{"embed": e, "teacher": t}}))
"""


def measure(tuned: bool, n: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["REALCAL_MALLOC"] = "default"          # the child decides explicitly
    code = CHILD.format(repo=str(REPO), bench=str(REPO / "bench"), tuned=tuned, n=n)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=128)
    args = ap.parse_args()
    res: dict[bool, list[dict]] = {False: [], True: []}
    t0 = time.time()
    for r in range(args.rounds):
        for tuned in (False, True) if r % 2 == 0 else (True, False):
            res[tuned].append(measure(tuned, args.images))
            print(f"round {r + 1} {'tuned  ' if tuned else 'default'}: {res[tuned][-1]}", flush=True)
    for what, label in (("embed", "EffNet-Lite0 embedding, 224 px, batch 32"),
                        ("teacher", "yolo11n-pose teacher, 320 px, batch 8")):
        d = statistics.median(x[what] for x in res[False])
        t = statistics.median(x[what] for x in res[True])
        print(f"{label}: default malloc {d:.1f} images/s, tuned {t:.1f} images/s ({t / d:.2f}x)")
    print(f"{args.rounds} rounds in {time.time() - t0:.0f} s; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
