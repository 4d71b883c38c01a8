"""The LSPET low-data benchmark, end to end: import the fixed split, generate per seed from that
seed's anchors, curate, run the experiment (resumable), write the report and the wall times.

    .venv/bin/python bench/lspet_benchmark.py [--quick] [--workspace DIR] [--out DIR] [--device cpu]

Every step is resumable: rerunning the command continues where it stopped (finished imports,
generations, the curation run and finished (arm, seed) runs are kept). ``--fresh`` starts over.
The workspace lives on one machine; the ledger (``<report>/runs``, committed with the report) holds each
finished run's results and evaluations, so on a new machine the same command imports, generates and curates
again (minutes), takes the ledger's runs whose training sets it rebuilds byte for byte, and trains the rest.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _paths import bench_dir, cpu_name, offline, shown_path  # noqa: E402

offline()

from engine import jobs  # noqa: E402
from engine.errors import RealcalError  # noqa: E402
from engine.workspace import Workspace  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def progress(label: str):
    last = [0.0, None]

    def cb(done, total, message):
        # every 15 s at most, except that a job of few steps (experiment runs, curation stages) prints each
        # new message: the val gate's line and the next arm's come together and both must show
        now = time.monotonic()
        if now - last[0] >= 15 or (total is not None and total <= 100 and message != last[1]):
            last[0], last[1] = now, message
            log(f"  {label}: {message or ''} ({done:.0f}/{total or '?'})")
    return cb


def split_files(split_dir: Path) -> dict[str, str]:
    """The split's id files as the report names them: relative to the checkout, or absolute outside it."""
    return {s: shown_path(split_dir / f"{s}.txt", ROOT) for s in ("train", "val", "test")}


def save_rounds_png(summary: dict, config: dict, runs: list[dict], path: Path) -> bool:
    """The loop rounds chart as a picture beside the report (the Results page's chart: test AP50 and PCK@0.2 per
    round, bars: real-only plus the 95 % interval of the round's difference from it; the reference arm and the
    untouched model as lines). False when the experiment has fewer than two rounds to draw."""
    from engine.report import loop_rounds_series

    series = loop_rounds_series(summary, config, runs)
    if series is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, s in zip(axes, series):
        ax.errorbar(s["rounds"], s["means"], yerr=[s["below"], s["above"]], marker="o", capsize=4, color="#0072B2",
                    label="loop rounds")
        for name, v in s["lines"]:
            colour, style = ("#009E73", "--") if name == s["reference"] else ("#D55E00", ":")
            ax.axhline(v, color=colour, linestyle=style, label=name)
        ax.set_xticks(s["rounds"])
        ax.set_xlabel("round (0 = real-only)")
        ax.set_title(f"test {s['metric']}")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle("Loop rounds (mean over seeds; bars: 95% interval of the difference from real-only)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run_job(ws: Workspace, kind: str, params: dict, label: str) -> dict:
    final = jobs.run_foreground(ws, kind, params, progress(label))
    if final["status"] != "done":
        raise RealcalError(f"{label}: job {final['id']} {final['status']}: {(final.get('error') or '')[-2000:]}")
    return final["result"]


def experiment_params(args, exp_cfg: dict, t_all: float, ledger: Path | None) -> dict:
    params = {"config": exp_cfg, "device": args.device, "allow_mixed_code": args.allow_mixed_code}
    if ledger is not None:
        params["ledger"] = str(ledger.resolve())
    if args.max_minutes:
        params["deadline"] = time.time() - (time.perf_counter() - t_all) + 60 * args.max_minutes
    return params


def finished_runs(ws: Workspace, name: str) -> int:
    """How many (arm, seed) runs of the experiment have finished."""
    from store import training as store_training

    with ws.connect() as db:
        exp = store_training.experiment_by_name(db, name)
        return 0 if exp is None else sum(r["status"] == "done" for r in store_training.experiment_runs(db, exp["id"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one seed, fewer arms, 20 epochs (< 30 min on 2 CPU cores)")
    ap.add_argument("--config", type=Path, help="experiment YAML (default: experiments/lspet_lowdata[_quick].yaml)")
    ap.add_argument("--workspace", type=Path, help="default: ~/.cache/realcal/benchmark/<experiment name> "
                    "(REALCAL_BENCH_DIR), outside the checkout so a run resumes in a later session")
    ap.add_argument("--out", type=Path, help="report folder (default: the config's benchmark.report)")
    ap.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--fresh", action="store_true",
                    help="delete the benchmark workspace first (the ledger's valid runs still count: with "
                         "--no-ledger, or the ledger deleted, every run trains again)")
    ap.add_argument("--max-minutes", type=float,
                    help="start no run after this many minutes, nor one that would not finish by then (by the mean "
                         "time of its arm's finished runs, else of its kind's); the report covers what finished and a "
                         "rerun continues (for sessions of limited length)")
    ap.add_argument("--allow-mixed-code", action="store_true",
                    help="keep finished runs made by other code (the report lists the versions)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes that train the experiment's runs side by side, each taking the next run no "
                         "other holds (default 1). On a CPU each uses the recipe's threads (-1: cores - 1), so "
                         "use threads: 1 per worker; every worker gets the same --device (for one process per GPU, "
                         "start more with --join --device cuda:N)")
    ap.add_argument("--ledger", type=Path,
                    help="folder of finished runs that outlives the workspace (default: <report>/runs, committed "
                         "with the report): each run is written there as it finishes, and a new workspace (another "
                         "machine) takes the runs in it that are still valid instead of training them again")
    ap.add_argument("--no-ledger", action="store_true", help="neither read nor write a ledger")
    ap.add_argument("--join", action="store_true",
                    help="only train runs of an experiment that another invocation prepared and is running "
                         "(what --workers starts); writes no report")
    args = ap.parse_args()
    if args.workers < 1:
        sys.exit("--workers must be at least 1")
    if args.join and (args.fresh or args.quick or args.workers > 1):
        sys.exit("--join takes no --fresh, --quick or --workers: it joins the invocation that has them "
                 "(pass its --config and --workspace)")

    cfg_name = "lspet_lowdata_quick.yaml" if args.quick else "lspet_lowdata.yaml"
    cfg_path = args.config or ROOT / "experiments" / cfg_name
    config = yaml.safe_load(cfg_path.read_text())
    bench = config.get("benchmark") or {}
    dataset = (ROOT / bench.get("dataset", "../shared/data/lspet")).resolve()
    if not (dataset / "joints.mat").exists():
        sys.exit(f"LSPET not found at {dataset} (expected joints.mat and images/); see ../shared/data/README.md")
    split_dir = ROOT / bench.get("split_dir", "experiments/lspet_split")
    ws_root = args.workspace or bench_dir() / config["name"]
    out = args.out or ROOT / bench.get("report", f"docs/results/{config['name']}")
    ledger = None if args.no_ledger else (args.ledger or Path(out) / "runs")
    if args.fresh and ws_root.exists():
        shutil.rmtree(ws_root)
    ws = Workspace.open(ws_root) if (ws_root / "realcal.db").exists() else Workspace.init(ws_root)
    state_path = ws_root / "benchmark_state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"timings": {}}

    def done(step: str, seconds: float, **extra) -> None:
        state["timings"][step] = round(seconds, 1)
        state.update(extra)
        state_path.write_text(json.dumps(state, indent=2))

    t_all = time.perf_counter()
    log(f"workspace {ws_root}, config {cfg_path.name}" + (" (joining)" if args.join else ""))
    if args.join:
        from engine.experiment import resolve as resolve_experiment

        if "curate" not in state["timings"]:
            sys.exit("--join: this benchmark has not been prepared (import, generation, curation) in "
                     f"{ws_root}; run it without --join first")
        result = run_job(ws, "experiment", experiment_params(args, resolve_experiment(config), t_all, ledger),
                         f"experiment [pid {os.getpid()}]")
        log(f"done; {result.get('runs_left', 0)} run(s) not finished in this experiment")
        return

    # 1. the fixed split, one import per split file (re-imports skip identical images)
    if "import" not in state["timings"]:
        from engine.io import parse
        from engine.io.common import read_ids_file, run_import

        t0 = time.perf_counter()
        parsed = parse("lsp", dataset)
        for split in ("train", "val", "test"):
            ids = read_ids_file(split_dir / f"{split}.txt")
            rep = run_import(ws, parsed, split=split, ids=ids)
            log(f"imported {split}: {rep.images} images, {rep.persons} persons, {len(rep.skipped)} skipped")
        done("import", time.perf_counter() - t0)

    # 2. per seed: generate from that seed's anchor pool only
    from engine.experiment import resolve
    from engine.generate.job import resolve_params as gen_params
    from engine.train.manifest import anchor_pool

    exp_cfg = resolve(config)
    # benchmark.generate: one generation spec, or a list of them; each spec's batch for a seed is named
    # "seed {seed}" (plus " <label>" when the spec has one), so an arm draws its synthetic images from its own
    # seed's batch (synthetic_label in the experiment file)
    gen_specs = bench.get("generate") or {}
    gen_specs = gen_specs if isinstance(gen_specs, list) else [gen_specs]
    from store import batches as store_batches

    for seed in exp_cfg["seeds"]:
        for spec in gen_specs:
            spec = dict(spec)
            extra = spec.pop("label", None)
            label = f"seed {seed}" + (f" {extra}" if extra else "")
            key = f"generate seed {seed}" + (f" {extra}" if extra else "")
            if key in state["timings"]:
                # batches generated before batches had names: name them now (the generation seed says whose)
                with ws.connect() as db:
                    for b in store_batches.list_batches(db):
                        if (b["kind"] == "generation" and b["params"].get("seed") == 1000 + int(seed)
                                and b["params"].get("generator", "copy_paste") == spec.get("generator", "copy_paste")
                                and not b["params"].get("label")):
                            store_batches.set_label(db, b["id"], label)
                            db.conn.commit()
                continue
            t0 = time.perf_counter()
            # benchmark.anchors: generate from the real-only arm's own draw (the seed's first N labelled train
            # images) when the experiment has no anchor pool, e.g. beside a 2N reference arm
            pool = anchor_pool(ws, bench.get("anchors", exp_cfg["anchor_pool"]), int(seed))
            params = gen_params(ws, {**spec, "seed": 1000 + int(seed), "anchor_image_ids": pool, "label": label})
            log(f"generating {params['count']} images ({label}, {params['generator']}) from its {len(pool)} anchors")
            res = run_job(ws, "generate", params, key)
            done(key, time.perf_counter() - t0)
            log(f"  {res.get('images')} stored in {time.perf_counter() - t0:.0f} s")

    # 3. curation over every synthetic image (thresholds calibrated on the train anchors)
    if "curate" not in state["timings"]:
        from engine.curate.run import resolve_params as cur_params

        t0 = time.perf_counter()
        res = run_job(ws, "curate", cur_params(ws, bench.get("curate") or {}), "curate")
        for f in res["funnel"]:
            log(f"  {f['stage']:<18} entered {f['entered']:>5} passed {f['passed']:>5} failed {f['failed']:>5}"
                f"{' unavailable ' + str(f['unavailable']) if f['unavailable'] else ''}")
        done("curate", time.perf_counter() - t0, funnel=res["funnel"])

    # 4. every arm x seed training set can be built (enough curated images per seed?) before hours of training
    from engine.experiment import manifest_spec
    from engine.train.manifest import build_manifest

    problems = []
    for seed in exp_cfg["seeds"]:
        for arm in exp_cfg["arms"]:
            if arm["kind"] == "train":
                try:
                    build_manifest(ws, manifest_spec(arm, int(seed), exp_cfg.get("anchor_pool")))
                except RealcalError as exc:
                    problems.append(f"{arm['name']} seed {seed}: {exc}")
    if problems:
        sys.exit("cannot build every training set; generate more (benchmark.generate.count) or ask for fewer "
                 "synthetic images:\n  " + "\n  ".join(problems))

    # 5. the experiment (resumable job: finished arm x seed runs are skipped)
    exp_params = experiment_params(args, exp_cfg, t_all, ledger)
    if ledger is not None:
        log(f"ledger {shown_path(ledger, ROOT)}: finished runs are written there as they finish; the ones in it "
            f"that are still valid here count as finished")
    runs_before, t_exp = finished_runs(ws, exp_cfg["name"]), time.perf_counter()
    helpers = []
    for _ in range(args.workers - 1):       # they share the runs through the experiment's claims
        cmd = [sys.executable, __file__, "--join", "--config", str(cfg_path), "--workspace", str(ws_root)]
        cmd += (["--device", args.device] if args.device else []) + (["--allow-mixed-code"] if args.allow_mixed_code
                                                                     else [])
        cmd += ["--ledger", str(ledger)] if ledger is not None else ["--no-ledger"]
        if args.max_minutes:
            cmd += ["--max-minutes", str(max(0.01, args.max_minutes - (time.perf_counter() - t_all) / 60))]
        helpers.append(subprocess.Popen(cmd))
    try:
        result = run_job(ws, "experiment", exp_params, "experiment")
    finally:
        # the other workers finish the runs they hold (a run that failed here stops none of theirs; Ctrl-C reaches
        # them too), so no process outlives this one
        if helpers:
            log(f"waiting for {len(helpers)} other worker(s) to finish their runs")
            failed = [p.args for p in helpers if p.wait() != 0]
            if failed:
                log(f"{len(failed)} worker(s) failed (see their lines above); their runs are left for the next "
                    f"invocation")
    if helpers:
        # the summary again, now that every worker's runs are stored (a deadline in the past trains nothing)
        result = run_job(ws, "experiment", {**exp_params, "deadline": 1}, "experiment (summary)")
    if result.get("runs_left"):
        log(f"{result['runs_left']} arm x seed run(s) left: run the same command again to continue")
    finished_now = finished_runs(ws, exp_cfg["name"]) - runs_before
    if finished_now > 0:      # what a sitting achieved: with several workers the wall time is below the runs' sum
        wall = time.perf_counter() - t_exp
        state.setdefault("invocations", []).append({
            "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() - wall)), "workers": args.workers,
            "runs finished": finished_now, "wall s": round(wall, 1), "wall s per run": round(wall / finished_now, 1)})
        log(f"this invocation: {finished_now} run(s) in {wall:.0f} s with {args.workers} worker(s) "
            f"({wall / finished_now:.0f} s per run)")
    state["timings"].pop("experiment (this invocation)", None)
    # the experiment's wall time is the sum of its arm x seed runs (each timed when it finished, whichever
    # invocation ran it; a run cut off by an interruption is redone and only the finished one counts)
    run_seconds = sum(r["seconds (all seeds)"] for r in result["summary"]["table"])
    state["timings"].pop("experiment", None)
    done("experiment (sum of arm x seed runs)", run_seconds)

    # 6. the report, with the machine and the wall times
    from engine.report import write_experiment_report

    state["timings"].pop("total (this invocation)", None)
    state["timings"].pop("total (all steps, all invocations)", None)
    state["timings"]["total (all steps, all invocations)"] = round(sum(
        v for k, v in state["timings"].items() if not k.startswith("total")), 1)
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, state.get("peak_rss_mb", 0))
    state["peak_rss_mb"] = round(rss)
    machine = {"cpu": cpu_name(), "cores": __import__("os").cpu_count(), "python": platform.python_version(),
               "platform": platform.platform(), "device": args.device or "auto", "peak_rss_mb": round(rss)}
    extra = {"wall times (s)": state["timings"], "machine": machine, "funnel": state.get("funnel"),
             "split": split_files(split_dir)}
    if state.get("invocations"):
        extra["invocations that trained (wall clock)"] = state["invocations"]
    paths = write_experiment_report(ws, out, exp_cfg["name"], extra_fn=lambda exp: extra)
    summary = paths["summary"]
    (Path(out) / "benchmark.json").write_text(json.dumps({"summary": summary, **extra}, indent=2, default=str))
    state_path.write_text(json.dumps(state, indent=2))
    log(f"report: {paths['markdown']} and {paths['html']}")
    if save_rounds_png(summary, paths["experiment"]["config"], paths["runs"], Path(out) / "loop_rounds.png"):
        log(f"loop rounds chart: {Path(out) / 'loop_rounds.png'}")
    if any(a.get("kind") == "loop" for a in paths["experiment"]["config"].get("arms") or []):
        from loop_audit import audit, markdown

        (Path(out) / "audit.md").write_text(markdown(audit(ws, exp_cfg["name"], ledger=ledger)))
        log(f"loop audit (which link of the loop's chain holds): {Path(out) / 'audit.md'}")
    for row in summary["table"]:
        log(f"  {row['arm']:<22} AP50 {row['AP50'] or 0:.3f}  PCK@0.2 {row['PCK@0.2'] or 0:.3f}  "
            f"val AP50 {row['val AP50'] or 0:.3f}  ({row['seeds']} seeds)")
    log(summary["headline"])
    for c in summary["comparisons"] + summary["ablation"] + summary.get("contrasts", []) + summary["noise_floor"]:
        log(f"  {c['verdict']}")
    for f in summary["flags"]:
        log(f"  WARNING: {f}")
    log(f"total {time.perf_counter() - t_all:.0f} s this invocation; peak RSS {rss:.0f} MB")
    del result


if __name__ == "__main__":
    main()
