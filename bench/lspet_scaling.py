"""Real-only data-scaling curve on LSPET val: at how many real anchors does fine-tuning clearly beat the
untouched pretrained model? That N is where the benchmark has headroom to measure synthetic data.

For each anchor count N and seed, the real-only arm of the benchmark's experiment file is trained on
that seed's first N anchors (the same nested draw as the experiment: N=25 is a prefix of N=50 for one
seed) with the file's recipe and scored on **val** only under the file's protocol (test is never
imported). Each (N, seed) is kept in ``<workspace>/scaling.jsonl`` as it finishes, so the command
resumes where it stopped. The difference from zero-shot at each N is a two-stage bootstrap over the
seeds and the val images (``engine.stats.two_stage_bootstrap``).

    python bench/lspet_scaling.py                         # sizes 25 50 100 200 300, seeds 0 1 2 (in that order)
    python bench/lspet_scaling.py --sizes 50 100 --seeds 0 1 2 3 4 --max-minutes 120
    python bench/lspet_scaling.py --report-only           # statistics and report from what has finished
    python bench/lspet_scaling.py --sizes 150 300 --steps 1520 --out docs/results/lspet-scaling-steps
                                                          # every N at the same optimizer steps (is 2N worth more
                                                          # than N at equal compute?); sizes are also compared

Writes ``docs/results/lspet-scaling/{report.md,scaling.csv,scaling.html}`` (``--out``).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _paths import bench_dir, offline, shown_path, train_val_workspace  # noqa: E402

offline()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> None:
    import numpy as np
    import yaml

    from engine import jobs, provenance, stats
    from engine.config import resolve_device as rc_device
    from engine.errors import RealcalError
    from engine.experiment import BASELINE, manifest_spec, resolve
    from engine.train import protocols
    from engine.train.manifest import build_manifest
    from engine.train.train import load_coco, resolve_params, save_coco, split_items
    from store import training as store_training

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "experiments" / "lspet_lowdata.yaml")
    ap.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200, 300])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workspace", type=Path, default=bench_dir() / "lspet-scaling")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "lspet-scaling")
    ap.add_argument("--device", default=None)
    ap.add_argument("--max-minutes", type=float, help="start no new run after this many minutes")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--steps", type=int,
                    help="train every N for this many optimizer steps (the nearest whole number of epochs) instead "
                         "of the recipe's epochs; the report then also gives each size minus the next smaller one")
    args = ap.parse_args()
    if args.steps is not None and args.steps < 1:
        sys.exit("--steps must be a positive number of optimizer steps")

    config = yaml.safe_load(args.config.read_text())
    try:
        cfg = resolve(config)
    except RealcalError as e:
        sys.exit(f"error: {e}")
    bench = config.get("benchmark") or {}
    dataset = (ROOT / bench.get("dataset", "../shared/data/lspet")).resolve()
    split_dir = ROOT / bench.get("split_dir", "experiments/lspet_split")
    ws = train_val_workspace(args.workspace, dataset, split_dir, log)

    recipe, protocol = cfg["recipe"], cfg["protocol"]
    real_only = next(a for a in cfg["arms"] if a["name"] == BASELINE)
    from engine.train.recipe import Recipe

    def recipe_for(n: int) -> dict:
        """The recipe N trains with: the file's, or with the epochs that make --steps optimizer steps."""
        if not args.steps:
            return recipe
        return {**recipe, "epochs": Recipe.from_dict(recipe).epochs_for_steps(n, args.steps)}

    def where(device: str) -> str:
        """The machine a run trained on, as the report names it (rows from older code lack it: this machine)."""
        m = provenance.machine()
        gpu = device.startswith("cuda") and m.get("cuda")
        return f"{gpu} ({m['cores']} CPU cores)" if gpu else f"{m['cpu']}, {m['cores']} cores (CPU)"

    results_path = args.workspace / "scaling.jsonl"
    done = [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.exists() else []
    from engine.train.train import RECIPE

    defaults = {k: v for k, v in RECIPE.items() if k != "model"}
    norm = lambda rec: json.dumps({**defaults, **rec}, sort_keys=True)  # noqa: E731  (recipes from older code)
    key = lambda r: (r["n"], r["seed"], norm(r["recipe"]), r["protocol"])  # noqa: E731
    zs_path = args.workspace / f"zero-shot-val-{protocol}.json.gz"
    t_start = time.perf_counter()

    if not zs_path.exists() and not args.report_only:
        from ultralytics import YOLO

        from engine import assets
        from engine import config as rc_config
        from engine.train.evaluate import evaluate

        m = build_manifest(ws, manifest_spec({**real_only, "real": min(args.sizes)}, 0, None))
        with ws.connect() as db:
            val = split_items(db, store_training.manifest(db, m["id"]), "val")
        metrics, rows = evaluate(YOLO(str(assets.resolve("yolo11n-pose")), task="pose"), ws, *val,
                                 imgsz=int(recipe["imgsz"]), device=rc_config.resolve_device(args.device or "auto"),
                                 protocol=protocol)
        coco = metrics.pop("_coco")
        save_coco(zs_path, {**coco, "rows": rows, "metrics": metrics})
        log(f"zero-shot val: AP50 {metrics['AP50']:.3f}  PCK@0.2 {metrics['PCK@0.2']:.3f}")

    # every size for one seed before the next seed: a partial run still draws the whole curve
    for seed in args.seeds:
        for n in args.sizes:
            if args.report_only:
                break
            if any(key(r) == (n, seed, norm(recipe_for(n)), protocol) for r in done):
                continue
            if args.max_minutes and (time.perf_counter() - t_start) / 60 > args.max_minutes:
                log(f"--max-minutes {args.max_minutes} reached; rerun to continue")
                break
            m = build_manifest(ws, manifest_spec({**real_only, "real": n}, seed, None))
            if m["counts"]["test"]:
                sys.exit("this workspace holds test images; the scaling curve must not (use a fresh --workspace)")
            params = resolve_params(ws, m["id"], {**recipe_for(n), "seed": int(seed), "device": args.device,
                                                  "protocol": protocol})
            log(f"N={n} seed {seed}: training real-only ({recipe_for(n)['epochs']} epochs)")
            t0 = time.perf_counter()
            final = jobs.run_foreground(ws, "train", params)
            if final["status"] != "done":
                sys.exit(f"training failed: {final.get('error')}")
            val = final["result"]["metrics"]["val"]
            with ws.connect() as db:
                run = store_training.run(db, final["result"]["run_id"])
            row = {"n": n, "seed": seed, "recipe": recipe_for(n), "protocol": protocol,
                   "run_id": final["result"]["run_id"],
                   "val_eval": final["result"]["val_eval"], "AP50": val.get("AP50"), "AP": val.get("AP"),
                   "PCK@0.2": val.get("PCK@0.2"), "mean OKS": val.get("mean OKS"),
                   "seconds": round(time.perf_counter() - t0, 1), "epochs": len(run["curves"] or []),
                   "code": provenance.code_version(), "machine": where(rc_device(params.get("device") or "auto")),
                   "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            with open(results_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            done.append(row)
            log(f"  val AP50 {row['AP50']:.3f}  PCK@0.2 {row['PCK@0.2']:.3f}  ({row['seconds']:.0f} s)")

    # ---- statistics and report
    if not zs_path.exists():
        sys.exit("no zero-shot evaluation yet")
    zs = load_coco(zs_path)
    rows = [r for r in done if r["protocol"] == protocol and norm(r["recipe"]) == norm(recipe_for(r["n"]))]
    if not rows:
        sys.exit("no finished run for this recipe and protocol yet")
    image_ids = [im["id"] for im in zs["gt"]["images"]]

    def arrays(coco, person_rows):
        return {"AP50": stats.MatchArrays.from_coco(coco["gt"], protocols.scored_in(coco)),
                "PCK@0.2": stats.PersonArrays(image_ids, person_rows, "pck"),
                "per-person OKS": stats.PersonArrays(image_ids, person_rows, "oks")}

    zs_arr = arrays(zs, zs["rows"])
    table, per_size = [], {}
    for n in sorted({r["n"] for r in rows}):
        runs = [r for r in rows if r["n"] == n]
        arm: dict[str, dict] = {m: {} for m in zs_arr}
        for r in runs:
            coco = load_coco(r["val_eval"])      # val rows are not stored per person: derive them
            for m, a in arrays(coco, protocols.person_rows(coco["gt"], coco["dets"])).items():
                arm[m][r["seed"]] = a
        per_size[n] = arm
        entry = {"real anchors": n, "seeds": len(runs), "epochs": recipe_for(n)["epochs"],
                 "steps": Recipe.from_dict(recipe_for(n)).plan(n)["steps"],
                 "seconds per run": float(np.mean([r["seconds"] for r in runs]))}
        for metric in ("AP50", "PCK@0.2", "per-person OKS"):
            c = stats.two_stage_bootstrap(arm[metric], {s: zs_arr[metric] for s in arm[metric]}, metric,
                                          n_boot=args.n_boot)
            mean = float(np.mean([r[metric if metric != "per-person OKS" else "mean OKS"] for r in runs]))
            entry[f"val {metric}"] = mean
            entry[f"{metric} - zero-shot"] = c["mean_diff"]
            entry[f"{metric} 95% CI"] = c["ci"]
            entry[f"{metric} per seed"] = {d["seed"]: round(d["diff"], 4) for d in c["per_seed"]}
        table.append(entry)
    zs_m = zs["metrics"]
    clear = [t["real anchors"] for t in table if t["AP50 95% CI"][0] > 0 and t["PCK@0.2 95% CI"][0] > 0]
    ap_only = [t["real anchors"] for t in table if t["AP50 95% CI"][0] > 0]
    if clear:
        verdict = (f"Real-only clearly beats the untouched model on val (AP50 and PCK@0.2 intervals above zero) from "
                   f"N = {min(clear)} real anchors on.")
    elif ap_only:
        verdict = (f"Real-only beats the untouched model on val AP50 from N = {min(ap_only)} (interval above zero) but "
                   f"at no N on PCK@0.2 as well: fine-tuning improves detection before joint placement.")
    else:
        verdict = ("At no N does real-only clearly beat the untouched model on val (no AP50 interval above zero): "
                   "the recipe must be fixed before any synthetic-data comparison can be read.")
    codes = sorted({provenance.describe(r.get("code")) for r in rows})
    args.out.mkdir(parents=True, exist_ok=True)
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    ci = lambda c: f"[{c[0]:+.3f}, {c[1]:+.3f}]"  # noqa: E731
    md = ["# LSPET: real-only data-scaling curve (val)", "",
          f"{verdict} Zero-shot (untouched yolo11n-pose) on the same 200 val images: AP50 {fmt(zs_m['AP50'])}, "
          f"PCK@0.2 {fmt(zs_m['PCK@0.2'])}, mean OKS {fmt(zs_m['mean OKS'])}. Differences: two-stage bootstrap over "
          f"seeds and val images ({args.n_boot} resamples), 95% percentile intervals.", "",
          f"- Date: {time.strftime('%Y-%m-%d')}", f"- Code: {'; '.join(codes)}",
          f"- Protocol: {protocol}", f"- Recipe: {json.dumps(recipe)}" + (
              f"; epochs per N set so that every N trains ~{args.steps} optimizer steps: "
              + ", ".join(f"N = {t['real anchors']}: {t['epochs']} epochs, {t['steps']} steps" for t in table)
              if args.steps else ""),
          f"- Split: real anchors drawn per seed from the 300-image train pool (nested: a smaller N is a prefix of "
          f"a larger one), val = 200 images "
          f"(`{split_dir.relative_to(ROOT) if split_dir.is_relative_to(ROOT) else split_dir}`); "
          f"test never imported",
          f"- Machine: {'; '.join(sorted({r.get('machine') or where('cpu') for r in rows}))}", "",
          "| real anchors | seeds | val AP50 | AP50 - zero-shot [95% CI] | val PCK@0.2 | PCK - zero-shot [95% CI] | "
          "mean OKS - zero-shot [95% CI] | s per run |", "|---|---|---|---|---|---|---|---|"]
    for t in table:
        md.append(f"| {t['real anchors']} | {t['seeds']} | {fmt(t['val AP50'])} | {t['AP50 - zero-shot']:+.3f} "
                  f"{ci(t['AP50 95% CI'])} | {fmt(t['val PCK@0.2'])} | {t['PCK@0.2 - zero-shot']:+.3f} "
                  f"{ci(t['PCK@0.2 95% CI'])} | {t['per-person OKS - zero-shot']:+.3f} "
                  f"{ci(t['per-person OKS 95% CI'])} | "
                  f"{t['seconds per run']:.0f} |")
    if args.steps and len(table) > 1:
        md += ["", f"## Each size against the next smaller one (both at ~{args.steps} optimizer steps)", "",
               "Two-stage bootstrap over the seeds both sizes have (paired: a seed's smaller draw is a prefix of "
               "its larger one) and the val images.", "",
               "| sizes | seeds | AP50 [95% CI] | PCK@0.2 [95% CI] | mean OKS [95% CI] |", "|---|---|---|---|---|"]
        for small, big in zip(table, table[1:]):
            a, b = per_size[big["real anchors"]], per_size[small["real anchors"]]
            cs = {m: stats.two_stage_bootstrap(a[m], b[m], m, n_boot=args.n_boot)
                  for m in ("AP50", "PCK@0.2", "per-person OKS")}
            md.append(f"| {big['real anchors']} - {small['real anchors']} | {cs['AP50']['seeds']} | "
                      + " | ".join(f"{cs[m]['mean_diff']:+.3f} {ci(cs[m]['ci'])}"
                                   for m in ("AP50", "PCK@0.2", "per-person OKS")) + " |")
    md += ["", "Per seed (difference from zero-shot, AP50 / PCK@0.2):", ""]
    for t in table:
        md.append(f"- N = {t['real anchors']}: " + ", ".join(
            f"seed {s} {t['AP50 per seed'][s]:+.3f} / {t['PCK@0.2 per seed'][s]:+.3f}" for s in t["AP50 per seed"]))
    default_config = ROOT / "experiments" / "lspet_lowdata.yaml"
    rerun = " ".join(["python bench/lspet_scaling.py"]
                     + ([f"--config {shown_path(args.config, ROOT)}"]
                        if args.config.resolve() != default_config.resolve() else [])
                     + ["--sizes", *map(str, args.sizes), "--seeds", *map(str, sorted({r["seed"] for r in rows}))]
                     + (["--steps", str(args.steps)] if args.steps else [])
                     + ([f"--workspace {shown_path(args.workspace, ROOT)}"]
                        if args.workspace.resolve() != (bench_dir() / "lspet-scaling").resolve() else [])
                     + [f"--out {shown_path(args.out, ROOT)}"])
    md += ["", f"Rerun: `{rerun}` (resumable; `--report-only` rewrites this page).", ""]
    (args.out / "report.md").write_text("\n".join(md) + "\n")
    with open(args.out / "scaling.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["real_anchors", "seed", "val_AP50", "val_AP", "val_PCK@0.2", "val_mean_OKS", "seconds", "code"])
        for r in sorted(rows, key=lambda r: (r["n"], r["seed"])):
            w.writerow([r["n"], r["seed"], r["AP50"], r["AP"], r["PCK@0.2"], r["mean OKS"], r["seconds"],
                        provenance.describe(r.get("code"))])
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("val AP50", "val PCK@0.2"))
    for col, metric in ((1, "AP50"), (2, "PCK@0.2")):
        xs = [t["real anchors"] for t in table]
        ys = [t[f"val {metric}"] for t in table]
        lo = [t[f"{metric} 95% CI"][0] + zs_m[metric] for t in table]
        hi = [t[f"{metric} 95% CI"][1] + zs_m[metric] for t in table]
        fig.add_scatter(x=xs, y=ys, mode="markers+lines", name=f"real-only {metric} (mean over seeds)", row=1, col=col,
                        error_y={"type": "data", "symmetric": False, "array": [h - y for h, y in zip(hi, ys)],
                                 "arrayminus": [y - lo_ for lo_, y in zip(lo, ys)]})
        for r in rows:
            fig.add_scatter(x=[r["n"]], y=[r[metric]], mode="markers", marker={"size": 5, "color": "grey"},
                            showlegend=False, row=1, col=col)
        fig.add_hline(y=zs_m[metric], line_dash="dash", annotation_text="zero-shot", row=1, col=col)
    fig.update_xaxes(type="log", title_text="real anchors", tickvals=sorted({t["real anchors"] for t in table}))
    fig.update_layout(title="Real-only on LSPET val vs the untouched model (bars: 95% two-stage CI of the "
                            "difference, placed at zero-shot + CI; dots: single seeds)", height=460,
                      legend={"orientation": "h", "y": -0.2})
    (args.out / "scaling.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>LSPET scaling</title></head><body>"
        + f"<p>{verdict}</p>" + fig.to_html(full_html=False, include_plotlyjs=True) + "</body></html>")
    log(f"report: {args.out / 'report.md'}")
    print("\n".join(md[:2] + md[11:11 + len(table) + 2]))


if __name__ == "__main__":
    main()
