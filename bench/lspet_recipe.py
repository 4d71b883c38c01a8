"""Val-only recipe check for the LSPET benchmark: does the real-only arm beat zero-shot on val?

The benchmark's comparisons count only when real-only beats the untouched pretrained model on val
AP50 or PCK@0.2. This script checks a recipe the same way the benchmark trains it (the real-only
arm of the experiment YAML, each seed's anchors, the YAML's recipe plus ``--set`` overrides) in its
own workspace that holds **only the train and val splits**: test is never imported, so no recipe
choice can see it. Each check is appended to ``<workspace>/recipe_checks.jsonl`` and printed next
to zero-shot, per seed and as the mean over seeds.

    python bench/lspet_recipe.py --set freeze=keypoint-branch --seeds 0 1 2
    python bench/lspet_recipe.py --set epochs=60 --set lr0=1e-4
    python bench/lspet_recipe.py --list            # every check so far
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _paths import bench_dir, train_val_workspace  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "True")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_set(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            sys.exit(f"--set expects KEY=VALUE, got {item!r}")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads "1e-4" as text
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key.strip()] = parsed
    return out


def show(checks: list[dict]) -> None:
    print(f"{'recipe overrides':<46} {'seeds':<8} {'val AP50':>9} {'(zero-shot)':>11} {'val PCK':>8} "
          f"{'(zero-shot)':>11}  beats zero-shot (mean)?  scored under")
    for c in checks:
        m, z = c["mean"], c["zero_shot"]
        beats = [k for k in ("AP50", "PCK@0.2") if m[k] is not None and z[k] is not None and m[k] > z[k]]
        print(f"{json.dumps(c['overrides'], sort_keys=True)[:46]:<46} {','.join(map(str, c['seeds'])):<8} "
              f"{m['AP50']:>9.3f} {z['AP50']:>11.3f} {m['PCK@0.2']:>8.3f} {z['PCK@0.2']:>11.3f}  "
              f"{'yes (' + ', '.join(beats) + ')' if beats else 'no':<24} "
              f"{c.get('protocol', 'teacher ignore regions (before protocols)')}")


def main() -> None:
    import numpy as np
    import yaml

    from engine.errors import RealcalError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "experiments" / "lspet_lowdata.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (YAML value)")
    ap.add_argument("--seeds", type=int, nargs="+", help="default: the config's seeds")
    ap.add_argument("--workspace", type=Path, default=bench_dir() / "lspet-recipe")
    ap.add_argument("--device", default=None)
    ap.add_argument("--list", action="store_true", help="print every check so far and stop")
    args = ap.parse_args()

    results_path = args.workspace / "recipe_checks.jsonl"
    previous = [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.exists() else []
    if args.list:
        show(previous) if previous else print("no recipe check yet")
        return

    from engine import jobs
    from engine.experiment import BASELINE, manifest_spec, resolve
    from engine.train.evaluate import evaluate
    from engine.train.manifest import build_manifest
    from engine.train.train import resolve_params, split_items
    from store import training as store_training

    config = yaml.safe_load(args.config.read_text())
    overrides = parse_set(args.set)
    config["recipe"] = {**(config.get("recipe") or {}), **overrides}
    try:
        cfg = resolve(config)
    except RealcalError as e:
        sys.exit(f"error: {e}")
    bench = config.get("benchmark") or {}
    dataset = (ROOT / bench.get("dataset", "../shared/data/lspet")).resolve()
    split_dir = ROOT / bench.get("split_dir", "experiments/lspet_split")
    ws = train_val_workspace(args.workspace, dataset, split_dir, log)

    recipe = cfg["recipe"]
    real_only = next(a for a in cfg["arms"] if a["name"] == BASELINE)
    seeds = args.seeds if args.seeds is not None else cfg["seeds"]
    zs_path = args.workspace / f"zero_shot_val-{cfg['protocol']}.json"
    per_seed = []
    for seed in seeds:
        m = build_manifest(ws, manifest_spec(real_only, seed, cfg.get("anchor_pool")))
        if m["counts"]["test"]:
            sys.exit("this workspace holds test images; a recipe check must not (use a fresh --workspace)")
        if not zs_path.exists():
            from ultralytics import YOLO

            from engine import assets
            from engine import config as rc_config

            with ws.connect() as db:
                val = split_items(db, store_training.manifest(db, m["id"]), "val")
            dev = rc_config.resolve_device(args.device or "auto")
            zs, _ = evaluate(YOLO(str(assets.resolve("yolo11n-pose")), task="pose"), ws, *val,
                             imgsz=int(recipe["imgsz"]), device=dev, protocol=cfg["protocol"])
            zs_path.write_text(json.dumps({k: zs.get(k) for k in ("AP50", "PCK@0.2", "AP", "images")}))
        t0 = time.perf_counter()
        keys = ("imgsz", "batch", "lr0", "optimizer", "freeze", "mosaic", "warmup_epochs", "patience",
                "nbs", "mask_unannotated", "bn_stats", "checkpoint", "epochs")
        params = resolve_params(ws, m["id"], {**{k: recipe[k] for k in keys if k in recipe}, "seed": int(seed),
                                              "device": args.device, "protocol": cfg["protocol"]})
        log(f"seed {seed}: training real-only ({m['counts']['train_real']} images) with {json.dumps(overrides)}")
        final = jobs.run_foreground(ws, "train", params)
        if final["status"] != "done":
            sys.exit(f"training failed: {final.get('error')}")
        val = final["result"]["metrics"]["val"]
        per_seed.append({"seed": seed, "AP50": val.get("AP50"), "PCK@0.2": val.get("PCK@0.2"),
                         "seconds": round(time.perf_counter() - t0, 1), "run_id": final["result"]["run_id"]})
        log(f"  val AP50 {val.get('AP50'):.3f}  PCK@0.2 {val.get('PCK@0.2'):.3f}  ({per_seed[-1]['seconds']:.0f} s)")
    zero = json.loads(zs_path.read_text())

    def mean(key):
        xs = [r[key] for r in per_seed if r[key] is not None]
        return float(np.mean(xs)) if xs else None

    check = {"overrides": overrides, "recipe": recipe, "protocol": cfg["protocol"], "seeds": seeds,
             "per_seed": per_seed,
             "mean": {"AP50": mean("AP50"), "PCK@0.2": mean("PCK@0.2")}, "zero_shot": zero,
             "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(results_path, "a") as fh:
        fh.write(json.dumps(check) + "\n")
    show(previous + [check])


if __name__ == "__main__":
    main()
