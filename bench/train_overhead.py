"""Where a training run's time goes, and what the CPU thread count buys.

    .venv/bin/python bench/train_overhead.py [--epochs 10] [--threads -1 0] [--real 100]
        [--checkpoint last|best] [--val-period K] [--no-contention]

Builds a workspace of LSPET images (``--real`` train anchors, 100 val, 200 test; ../shared), then trains
the benchmark's recipe (imgsz 320, batch 8, a step per batch, AdamW 5e-5, checkpoint last) once per
``--threads`` value in fresh processes: -1 is Ultralytics' own choice (cores - 1: one thread on a 2-core
machine; what runs used before the option existed), 0 every core. Prints each run's recorded timings
(prepare, train, validate-and-save, evaluate, the overhead share) and the training speed-up, and how long
decoding and resizing the train images takes per epoch (the most a cross-run image cache could save).
Then what the thread count does when the machine is shared: the model's forward pass at 1 thread and at
every core, alone and beside a busy single-threaded process at normal and at lowest priority.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import engine  # noqa: E402,F401  (configures the offline environment)

LSPET = REPO.parent / "shared" / "data" / "lspet"
RECIPE = {"imgsz": 320, "batch": 8, "nbs": 8, "lr0": 5e-5, "optimizer": "AdamW", "freeze": 0, "mosaic": 0.0,
          "warmup_epochs": 0.0, "checkpoint": "last", "device": "cpu"}


def build(root: Path, n_real: int) -> str:
    from engine.io import lsp
    from engine.io.common import ParsedDataset, run_import
    from engine.workspace import Workspace

    recs = [r for r in lsp.parse(LSPET).records if r.path is not None and r.persons]
    ws = Workspace.init(root / "ws")
    for split, part in (("train", recs[:n_real]), ("val", recs[n_real:n_real + 100]),
                        ("test", recs[n_real + 100:n_real + 300])):
        run_import(ws, ParsedDataset("lsp", "bench", split, part), split=split, kind="real")
    return str(ws.root)


def train(root: str, epochs: int, threads: int, extra: dict) -> dict:
    from engine import env, jobs
    from engine.train.manifest import build_manifest
    from engine.train.train import resolve_params
    from engine.workspace import Workspace

    env.tune_malloc()
    ws = Workspace.open(Path(root))
    m = build_manifest(ws, {"real_train": {"count": None, "seed": 0}})
    params = resolve_params(ws, m["id"], {**RECIPE, **extra, "epochs": epochs, "threads": threads})
    t0 = time.perf_counter()
    final = jobs.run_foreground(ws, "train", params)
    if final["status"] != "done":
        raise SystemExit(final.get("error"))
    met = final["result"]["metrics"]
    return {"wall": round(time.perf_counter() - t0, 1), "timings": met["timings"], "AP50": met.get("AP50"),
            "run_dir": str(ws.root / "runs" / f"train{final['result']['run_id']:05d}")}


def decode_per_epoch(run_dir: str, imgsz: int) -> tuple[float, int]:
    """Seconds to read and resize every exported train image once, as Ultralytics' loader does per epoch."""
    import cv2

    files = sorted((Path(run_dir) / "data").rglob("images/train/*"))
    t0 = time.perf_counter()
    for f in files:
        im = cv2.imread(str(f))
        h, w = im.shape[:2]
        r = imgsz / max(h, w)
        cv2.resize(im, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_LINEAR)
    return time.perf_counter() - t0, len(files)


def forward_rate(threads: int, seconds: float = 6.0) -> float:
    """Images/s of yolo11n-pose's forward pass (batch 8, 320 px) with ``threads`` torch threads."""
    import torch
    from ultralytics import YOLO

    from engine import assets

    model = YOLO(str(assets.resolve("yolo11n-pose"))).model.float().fuse().eval()
    torch.set_num_threads(threads)
    x = torch.rand(8, 3, 320, 320)
    with torch.inference_mode():
        model(x)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            model(x)
            n += 8
    return n / (time.perf_counter() - t0)


def contention() -> None:
    cores = os.cpu_count() or 1
    print(f"forward pass images/s | 1 thread | {cores} threads")
    for name, nice in (("alone", None), ("beside a busy process", 0), ("beside a busy process at nice 19", 19)):
        busy = None
        if nice is not None:
            busy = subprocess.Popen(["nice", "-n", str(nice), sys.executable, "-c", "while True: pass"])
        try:
            rates = [child(["--forward", str(t)])["rate"] for t in (1, cores)]
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        print(f"{name:>33} | {rates[0]:>8.1f} | {rates[1]:.1f}", flush=True)


def child(args: list[str]) -> dict:
    from _paths import run_script

    return run_script(__file__, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, nargs="+", default=[-1, 0])
    ap.add_argument("--real", type=int, default=100)
    ap.add_argument("--build", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", choices=["last", "best"], default="last",
                    help="last (the benchmark's): no validation during training; best: validate every --val-period")
    ap.add_argument("--val-period", type=int, default=1)
    ap.add_argument("--train", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--forward", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-contention", action="store_true", help="skip the shared-machine measurement")
    args = ap.parse_args()
    if args.forward:
        print(json.dumps({"rate": forward_rate(args.forward)}))
        return
    if args.build:
        print(json.dumps({"workspace": build(Path(args.build), args.real)}))
        return
    if args.train:
        print(json.dumps(train(args.train[0], int(args.train[1]), int(args.train[2]),
                               {"checkpoint": args.checkpoint, "val_period": args.val_period})))
        return
    if not LSPET.exists():
        raise SystemExit(f"{LSPET} is absent: this benchmark needs the LSPET images")
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs; {args.real} train images, "
          f"{args.epochs} epochs, imgsz {RECIPE['imgsz']}, batch {RECIPE['batch']}, checkpoint {args.checkpoint}"
          + (f", val_period {args.val_period}" if args.checkpoint == "best" else ""))
    print("threads | in effect | wall s | prepare | train | validate+save | evaluate | overhead | test AP50")
    trains = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = child(["--build", tmp, "--real", str(args.real)])["workspace"]
        for threads in args.threads:
            r = child(["--train", root, str(args.epochs), str(threads), "--checkpoint", args.checkpoint,
                       "--val-period", str(args.val_period)])
            t = r["timings"]
            trains[threads] = t["train"]
            print(f"{threads:>7} | {t['cpu_threads']:>9} | {r['wall']:>6} | {t['prepare']:>7} | {t['train']:>5} | "
                  f"{t['validate_and_save']:>13} | {t['evaluate']:>8} | {100 * t['overhead_share']:>7.1f}% | "
                  f"{r['AP50']:.4f}", flush=True)
            decode, n = decode_per_epoch(r["run_dir"], RECIPE["imgsz"])
        per_epoch = trains[args.threads[-1]] / args.epochs
        print(f"decoding + resizing the {n} train images: {decode:.2f} s per epoch = "
              f"{100 * decode / per_epoch:.1f}% of "
              f"an epoch at {args.threads[-1]} threads ({per_epoch:.1f} s): the most a cross-run image cache saves")
        if len(args.threads) > 1:
            a, b = args.threads[0], args.threads[-1]
            print(f"training {a} -> {b} threads: {trains[a]:.0f} -> {trains[b]:.0f} s ({trains[a] / trains[b]:.2f}x)")
    if not args.no_contention:
        contention()


if __name__ == "__main__":
    main()
