"""Is a training run bit-for-bit reproducible on this machine, and under which conditions does it drift?

Trains the same manifest with the same recipe and seed several times, each in a fresh process, under
different conditions, and prints each run's val figures and how far its final weights are from the
first run's (largest absolute difference over every tensor; 0 means bit-identical):

* ``plain`` twice: the same process conditions (is training deterministic at all?);
* ``threads=1``: torch on one thread instead of the machine's default (float sums split differently,
  as on a machine with another core count);
* ``load``: the same as plain, with two busy processes beside it (as when a benchmark shares the
  machine with a test run);
* ``isa=AVX2`` (or another oneDNN ISA name): oneDNN and MKL limited to that instruction set, as on a
  CPU without AVX-512 (another machine kind computes with other kernels and rounds differently).

    python bench/train_determinism.py --workspace ~/.cache/realcal/benchmark/lspet-recipe --epochs 3
    python bench/train_determinism.py --workspace W --manifest 1 --epochs 40 --conditions plain load

The workspace needs a manifest with train and val images (``bench/lspet_recipe.py`` makes one; the
default is the newest manifest). Results are appended to ``<workspace>/determinism.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _paths import offline  # noqa: E402

offline()

CONDITIONS = ("plain", "plain", "threads=1", "load")


def _busy(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) % 2 ** 31


def weight_difference(a: str, b: str) -> float:
    import torch

    sa = torch.load(a, map_location="cpu", weights_only=False)["model"].float().state_dict()
    sb = torch.load(b, map_location="cpu", weights_only=False)["model"].float().state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) if sa[k].numel() else 0.0 for k in sa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--manifest", type=int, help="default: the newest manifest")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, default=ROOT / "experiments" / "lspet_lowdata.yaml",
                    help="the recipe comes from this experiment file")
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS),
                    help=f"any of plain, threads=N, load, isa=NAME (default: {' '.join(CONDITIONS)})")
    args = ap.parse_args()

    import yaml

    from engine.workspace import Workspace
    from store import training as store_training

    ws = Workspace.open(args.workspace)
    with ws.connect() as db:
        manifests = store_training.list_manifests(db)
    if not manifests:
        sys.exit(f"{args.workspace}: no manifest; build one first (bench/lspet_recipe.py makes one)")
    manifest_id = args.manifest or max(m["id"] for m in manifests)
    recipe = yaml.safe_load(args.config.read_text())["recipe"]
    cli = [sys.executable, "-m", "engine", "-w", str(ws.root), "train", "--manifest", str(manifest_id),
           "--epochs", str(args.epochs), "--seed", str(args.seed), "--device", "cpu", "--json"]
    for key in ("imgsz", "batch", "lr0", "nbs"):
        if key in recipe:
            cli += [f"--{key}", str(recipe[key])]
    cli += ["--freeze", str(recipe.get("freeze", 10))]
    results = []
    for cond in args.conditions:
        env = dict(os.environ)
        hogs = []
        if cond.startswith("threads="):
            n = cond.split("=", 1)[1]
            env.update({"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n})
        elif cond.startswith("isa="):
            isa = cond.split("=", 1)[1]
            env.update({"ONEDNN_MAX_CPU_ISA": isa, "DNNL_MAX_CPU_ISA": isa, "MKL_ENABLE_INSTRUCTIONS": isa})
        elif cond == "load":
            stop = time.time() + 36000
            hogs = [multiprocessing.Process(target=_busy, args=(stop,), daemon=True)
                    for _ in range(os.cpu_count() or 2)]
            for h in hogs:
                h.start()
        elif cond != "plain":
            sys.exit(f"unknown condition {cond!r}")
        t0 = time.perf_counter()
        try:
            out = subprocess.run(cli, cwd=ROOT, env=env, capture_output=True, text=True)
        finally:
            for h in hogs:
                h.terminate()
        if out.returncode != 0:
            sys.exit(f"{cond}: training failed:\n{out.stderr[-3000:]}")
        res = json.loads(out.stdout[out.stdout.index("{"):])
        val = res["metrics"].get("val", {})
        row = {"condition": cond, "run_id": res["run_id"], "weights": res["weights"],
               "val AP50": val.get("AP50"), "val PCK@0.2": val.get("PCK@0.2"), "val AP": val.get("AP"),
               "seconds": round(time.perf_counter() - t0, 1)}
        row["max |weight - first run's|"] = weight_difference(results[0]["weights"], res["weights"]) if results else 0.0
        results.append(row)
        print(f"{cond:<10} run {row['run_id']:>4}  val AP50 {row['val AP50']:.4f}  PCK@0.2 {row['val PCK@0.2']:.4f}  "
              f"AP {row['val AP']:.4f}  max |dw| {row['max |weight - first run' + chr(39) + 's|']:.3g}  "
              f"({row['seconds']:.0f} s)", flush=True)
    with open(ws.root / "determinism.jsonl", "a") as fh:
        fh.write(json.dumps({"manifest": manifest_id, "epochs": args.epochs, "seed": args.seed, "recipe": recipe,
                             "results": results, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")


if __name__ == "__main__":
    main()
