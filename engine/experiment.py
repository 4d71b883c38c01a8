"""Experiments: arms x seeds, trained at matched optimizer steps, compared with honest statistics.

An experiment file names the arms (``zero_shot`` — the untouched pretrained model, always
included — real-only, synthetic-only, mixed at given volumes, and pool ablations curated /
random / unfiltered), the seeds (a seed redraws the real-anchor subset, the synthetic sample
and the training noise) and the recipe. With ``anchor_pool: N`` each seed draws N real train images
as its anchor pool; real arms use a prefix of that draw and synthetic images are eligible only when
every real image in their lineage (anchor, cut-out, background) is in the pool, so an arm never
sees real people beyond its seed's anchors through the synthetic data (generate per seed with
``anchor_image_ids`` = :func:`engine.train.manifest.anchor_pool`). With ``step_matching`` (default) every arm trains for
as many optimizer steps as the real-only arm: an arm with 4x the images gets 1/4 of the epochs,
so no arm wins by taking more steps (epochs are whole numbers, so the match is to the nearest
epoch; the report lists each run's actual steps). The experiment job is resumable: finished (arm, seed) runs
are kept and skipped when it runs again.

Comparisons against real-only use per-person OKS and PCK on the same test people, averaged over
seeds, with a paired sign-flip permutation test and Holm's correction across arms. A real-only arm
below zero-shot on val is flagged as a recipe problem.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from engine import jobs, stats
from engine.errors import RealcalError
from engine.jobs import JobContext, job_kind
from engine.workspace import Workspace
from store import training as store_training
from store.db import write_transaction

BASELINE = "real-only"


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    from engine.train.train import RECIPE, check_freeze, check_nbs

    if not isinstance(config, dict) or not config.get("arms"):
        raise RealcalError("an experiment file needs a list of arms")
    unknown = set(config.get("recipe") or {}) - set(RECIPE)
    if unknown:
        raise RealcalError(f"unknown recipe option(s) {', '.join(sorted(unknown))}; valid: {', '.join(RECIPE)}")
    check_freeze((config.get("recipe") or {}).get("freeze", RECIPE["freeze"]))
    check_nbs((config.get("recipe") or {}).get("nbs", RECIPE["nbs"]))
    cfg = {"name": str(config.get("name", "experiment")), "seeds": list(config.get("seeds", [0, 1, 2])),
           "recipe": {**{k: v for k, v in RECIPE.items() if k != "model"}, **(config.get("recipe") or {})},
           "step_matching": bool(config.get("step_matching", True)), "arms": [],
           "anchor_pool": config.get("anchor_pool")}
    pool = cfg["anchor_pool"]
    if pool is not None and (not isinstance(pool, int) or isinstance(pool, bool) or pool < 1):
        raise RealcalError("anchor_pool must be a positive number of real train images")
    names = set()
    for arm in config["arms"]:
        if not isinstance(arm, dict) or "name" not in arm:
            raise RealcalError("each arm needs a name")
        kind = arm.get("kind", "train")
        if kind not in ("train", "zero_shot"):
            raise RealcalError(f"arm {arm['name']}: kind must be train or zero_shot")
        names.add(arm["name"])
        if pool is not None and kind == "train" and (arm.get("real") is None or arm["real"] > pool):
            raise RealcalError(f"arm {arm['name']}: with anchor_pool {pool}, real must be a number <= {pool}")
        cfg["arms"].append({"name": arm["name"], "kind": kind, "real": arm.get("real"),
                            "pool": arm.get("pool", "none"), "synthetic": arm.get("synthetic")})
    if not any(a["kind"] == "zero_shot" for a in cfg["arms"]):
        cfg["arms"].insert(0, {"name": "zero-shot", "kind": "zero_shot", "real": None, "pool": "none",
                               "synthetic": None})
    if BASELINE not in names:
        raise RealcalError(f"an experiment needs a '{BASELINE}' arm (the baseline every arm is compared with)")
    if not cfg["seeds"]:
        raise RealcalError("an experiment needs at least one seed")
    return cfg


def _manifest_spec(arm: dict, seed: int, anchor_pool: int | None = None) -> dict:
    spec = {"real_train": {"count": arm["real"], "seed": seed},
            "synthetic": {"pool": arm["pool"], "count": arm["synthetic"], "seed": seed}}
    if anchor_pool is not None:
        spec["synthetic"]["within"] = {"count": anchor_pool, "seed": seed}
    return spec


def _zero_shot(ws: Workspace, manifest_id: int, recipe: dict, device: str, eval_path) -> dict:
    from ultralytics import YOLO

    from engine import assets, config
    from engine.train.evaluate import evaluate, unannotated_regions
    from engine.train.train import split_items

    db = ws.connect()
    try:
        m = store_training.manifest(db, manifest_id)
        splits = {s: split_items(db, m, s) for s in ("val", "test")}
    finally:
        db.close()
    model = YOLO(str(assets.resolve("yolo11n-pose")), task="pose")
    dev = config.resolve_device(device)
    ignore = {s: unannotated_regions(ws, *splits[s], device=dev) for s in ("val", "test")}
    val, _ = evaluate(model, ws, *splits["val"], imgsz=int(recipe["imgsz"]), device=dev, ignore_regions=ignore["val"])
    test, rows = evaluate(model, ws, *splits["test"], imgsz=int(recipe["imgsz"]), device=dev,
                          ignore_regions=ignore["test"])
    val.pop("_coco", None)
    coco = test.pop("_coco", None)
    if coco and coco["dets"] and coco["gt"]["annotations"]:
        from engine.stats import bootstrap_ap
        from engine.train.train import save_coco

        ci = bootstrap_ap(coco["gt"], coco["dets"], n_boot=200)
        test.update({"AP_ci": ci["AP_ci"], "AP50_ci": ci["AP50_ci"], "n_boot": ci["n_boot"]})
        eval_path.parent.mkdir(parents=True, exist_ok=True)
        save_coco(eval_path, coco)
    return {"test": test, "val": val, "rows": rows, "test_eval": str(eval_path)}


@job_kind("experiment", title="Run an experiment", resumable=True)
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from engine.train.manifest import build_manifest, train_images
    from engine.train.train import resolve_params as train_params

    ws, cfg = ctx.ws, params["config"]
    db = ws.connect()
    try:
        exp = store_training.experiment_by_name(db, cfg["name"])
        if exp is None or exp["config"] != cfg:
            with write_transaction(db):
                exp_id = store_training.create_experiment(db, cfg["name"], cfg)
        else:
            exp_id = exp["id"]
        finished = [r for r in store_training.experiment_runs(db, exp_id) if r["status"] == "done"]
    finally:
        db.close()
    done = {(r["arm"], r["seed"]) for r in finished}
    seconds: dict[str, list[float]] = {}      # per arm, for the time-left estimate
    for r in finished:
        if (r["result"] or {}).get("seconds") is not None:
            seconds.setdefault(r["arm"], []).append(float(r["result"]["seconds"]))
    # The val gate's arms (zero-shot, real-only) run first for every seed: a recipe that fails the gate
    # shows it before the other arms spend their hours.
    gate_arms = [a for a in cfg["arms"] if a["kind"] == "zero_shot" or a["name"] == BASELINE]
    pairs = ([(a, s) for s in cfg["seeds"] for a in gate_arms]
             + [(a, s) for s in cfg["seeds"] for a in cfg["arms"] if a not in gate_arms])
    gate_announced = False
    recipe = cfg["recipe"]
    base_steps: dict[int, int] = {}
    for n, (arm, seed) in enumerate(pairs):
        if not gate_announced and arm not in gate_arms:
            gate_announced = True
            gate = val_gate(ws, exp_id)
            if gate:
                ctx.progress(n, len(pairs), gate, force=True)
        if (arm["name"], seed) in done:
            continue
        left = time_left([a for a, sd in pairs[n:] if (a["name"], sd) not in done], seconds)
        ctx.progress(n, len(pairs), f"{arm['name']} seed {seed}" + (f" (about {left} left)" if left else ""), force=True)
        t0 = time.perf_counter()
        real_only = next(a for a in cfg["arms"] if a["name"] == BASELINE)
        m = build_manifest(ws, _manifest_spec(real_only if arm["kind"] == "zero_shot" else arm, seed,
                                          cfg.get("anchor_pool")))
        n_train = train_images(m["counts"])
        if arm["kind"] == "zero_shot":
            result = _zero_shot(ws, m["id"], recipe, params.get("device", "auto"),
                                ws.root / "experiments" / f"{exp_id:05d}" / f"zero-shot-seed{seed}.json.gz")
            run_id = None
        else:
            batches = math.ceil(n_train / int(recipe["batch"]))
            if seed not in base_steps:
                base_m = build_manifest(ws, _manifest_spec(real_only, seed, cfg.get("anchor_pool")))
                base_n = train_images(base_m["counts"])
                base_steps[seed] = int(recipe["epochs"]) * math.ceil(base_n / int(recipe["batch"]))
            epochs = (max(1, round(base_steps[seed] / batches)) if cfg["step_matching"] else int(recipe["epochs"]))
            tp = train_params(ws, m["id"], {**{k: v for k, v in recipe.items() if k in ("imgsz", "batch", "lr0",
                                                                                         "optimizer", "freeze", "mosaic",
                                                                                         "warmup_epochs", "patience", "nbs",
                                                                                         "mask_unannotated")},
                                            "epochs": epochs, "seed": int(seed), "device": params.get("device")})
            final = jobs.run_foreground(ws, "train", tp)
            if final["status"] != "done":
                raise RealcalError(f"arm {arm['name']} seed {seed}: training {final['status']}: "
                                   f"{(final.get('error') or '').splitlines()[0] if final.get('error') else ''}")
            run_id = final["result"]["run_id"]
            db = ws.connect()
            try:
                tr = store_training.run(db, run_id)
                rows = [dict(r) for r in db.query("SELECT person_id, image_id, oks, pck FROM eval_images "
                                                  "WHERE run_id = ?", [run_id])]
            finally:
                db.close()
            test = dict(tr["metrics"])
            val = test.pop("val", {})
            result = {"test": test, "val": val, "rows": rows, "epochs": epochs,
                      "steps": epochs * batches, "test_eval": final["result"].get("test_eval")}
        result.update({"train_images": n_train, "seconds": round(time.perf_counter() - t0, 1),
                       "manifest_hash": m["hash"]})
        seconds.setdefault(arm["name"], []).append(result["seconds"])
        done.add((arm["name"], seed))
        db = ws.connect()
        try:
            with write_transaction(db):
                store_training.put_experiment_run(db, exp_id, arm["name"], seed, manifest_id=m["id"],
                                                  training_run_id=run_id, status="done", result=result)
        finally:
            db.close()
    ctx.progress(len(pairs), len(pairs), "paired AP50 bootstrap over test images", force=True)
    db = ws.connect()
    try:
        runs = store_training.experiment_runs(db, exp_id)
        ap50 = ap50_comparisons(runs, n_boot=int(params.get("n_boot", 200)))
        ap50 += ablation_comparisons(runs, cfg, n_boot=int(params.get("n_boot", 200)))
        with write_transaction(db):
            store_training.set_experiment_ap50(db, exp_id, ap50)
        summary = summarise(runs, cfg, ap50)
    finally:
        db.close()
    return {"experiment_id": exp_id, "name": cfg["name"], "summary": summary}


def time_left(arms_left: list[dict], seconds: dict[str, list[float]]) -> str | None:
    """Rough time left: each arm's mean run time so far, else the mean of the trained arms' runs."""
    zero_shot = {a["name"] for a in arms_left if a["kind"] == "zero_shot"} | {"zero-shot"}
    trained = [x for name, xs in seconds.items() if name not in zero_shot for x in xs]
    total = 0.0
    for arm in arms_left:
        xs = seconds.get(arm["name"]) or ([] if arm["kind"] == "zero_shot" else trained)
        if not xs:
            return None
        total += float(np.mean(xs))
    if total < 60:
        return None
    return f"{total / 3600:.1f} h" if total >= 5400 else f"{total / 60:.0f} min"


def val_gate(ws: Workspace, exp_id: int) -> str | None:
    """One line on the val gate from the finished zero-shot and real-only runs (means over seeds)."""
    db = ws.connect()
    try:
        runs = [r for r in store_training.experiment_runs(db, exp_id) if r["status"] == "done"]
    finally:
        db.close()
    val = {(r["arm"], r["seed"]): (r["result"] or {}).get("val") or {} for r in runs}
    seeds = sorted(sd for (arm, sd) in val if arm == BASELINE and ("zero-shot", sd) in val)
    if not seeds:
        return None
    means = {k: (float(np.mean([val[(BASELINE, sd)].get(k) or 0 for sd in seeds])),
                 float(np.mean([val[("zero-shot", sd)].get(k) or 0 for sd in seeds]))) for k in ("AP50", "PCK@0.2")}
    passed = [k for k, (ro, zs) in means.items() if ro > zs]
    text = ", ".join(f"{k} {ro:.3f} vs {zs:.3f}" for k, (ro, zs) in means.items())
    return (f"val gate ({len(seeds)} seeds, real-only vs zero-shot: {text}): "
            + (f"passes on {' and '.join(passed)}" if passed else
               "FAILS: real-only is below zero-shot on val; the comparisons will not count"))


def _test_evals(runs: list[dict]) -> dict[str, dict[int, str]]:
    by_arm: dict[str, dict[int, str]] = {}
    for r in runs:
        if r["status"] == "done" and r["result"].get("test_eval"):
            by_arm.setdefault(r["arm"], {})[r["seed"]] = r["result"]["test_eval"]
    return by_arm


def _paired_ap50(arm: str, seeds: dict[int, str], baseline: str, base: dict[int, str], n_boot: int) -> dict | None:
    """``arm`` minus ``baseline`` on test AP50, paired over the same test images and seeds; None without pairs."""
    from engine.train.train import load_coco

    pairs = []
    for seed, path in sorted(seeds.items()):
        a, b = load_coco(path), load_coco(base.get(seed))
        if a and b:
            pairs.append((b["gt"], a["dets"], b["dets"]))
    if not pairs:
        return None
    try:
        res = stats.paired_bootstrap_ap50(pairs, n_boot=n_boot)
    except ValueError:
        return None
    return {"arm": arm, "baseline": baseline, "metric": "AP50", **res,
            "verdict": stats.verdict(arm, baseline, "AP50", res["mean_diff"], res["ci"])}


def ap50_comparisons(runs: list[dict], n_boot: int = 200) -> list[dict]:
    """AP50 of every arm minus real-only, paired over the same test images (and seeds), bootstrap CI."""
    by_arm = _test_evals(runs)
    base = by_arm.get(BASELINE, {})
    out = []
    for arm, seeds in by_arm.items():
        if arm != BASELINE and (c := _paired_ap50(arm, seeds, BASELINE, base, n_boot)):
            out.append(c)
    return out


def ablation_comparisons(runs: list[dict], cfg: dict, n_boot: int = 200) -> list[dict]:
    """The curation ablation, paired like ``ap50_comparisons``: every curated (or human-accepted) arm minus
    each random or unfiltered arm with the same real and synthetic counts."""
    by_arm = _test_evals(runs)
    arms = [a for a in cfg.get("arms", []) if a.get("kind", "train") == "train" and a["name"] in by_arm]
    out = []
    for a in arms:
        if a.get("pool") not in ("curated", "accepted"):
            continue
        for b in arms:
            if b.get("pool") in ("random", "unfiltered") and (b.get("real"), b.get("synthetic")) == (a.get("real"), a.get("synthetic")):
                if c := _paired_ap50(a["name"], by_arm[a["name"]], b["name"], by_arm[b["name"]], n_boot):
                    out.append(c)
    return out


def summarise(runs: list[dict], cfg: dict, ap50: list[dict] | None = None) -> dict[str, Any]:
    arms: dict[str, dict] = {}
    for r in runs:
        a = arms.setdefault(r["arm"], {"seeds": [], "AP": [], "AP50": [], "PCK": [], "val_PCK": [], "val_AP50": [],
                                       "seconds": [], "steps": [], "rows": {}, "joints": []})
        t, v = r["result"]["test"], r["result"]["val"]
        a["seeds"].append(r["seed"])
        a["AP"].append(t.get("AP"))
        a["AP50"].append(t.get("AP50"))
        a["PCK"].append(t.get("PCK@0.2"))
        a["val_PCK"].append(v.get("PCK@0.2"))
        a["val_AP50"].append(v.get("AP50"))
        a["seconds"].append(r["result"]["seconds"])
        a["steps"].append(r["result"].get("steps"))
        a["joints"].append(t.get("PCK@0.2 per joint") or {})
        for row in r["result"]["rows"]:
            a["rows"].setdefault(row["person_id"], {"oks": [], "pck": []})
            a["rows"][row["person_id"]]["oks"].append(row["oks"])
            if row["pck"] is not None:
                a["rows"][row["person_id"]]["pck"].append(row["pck"])

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return float(np.mean(xs)) if xs else None

    # arms in the order the config lists them (then any others, e.g. from an older config)
    order = [a["name"] for a in cfg.get("arms", [])]
    names = sorted(arms, key=lambda n: (order.index(n) if n in order else len(order), n))
    ablation = [c for c in (ap50 or []) if c.get("baseline", BASELINE) != BASELINE]
    ap50 = [c for c in (ap50 or []) if c.get("baseline", BASELINE) == BASELINE]
    delta = {c["arm"]: c for c in ap50}
    table = []
    for name in names:
        a = arms[name]
        d = delta.get(name)
        table.append({"arm": name, "seeds": len(a["seeds"]), "AP": mean(a["AP"]), "AP50": mean(a["AP50"]),
                      "AP50 - real-only": d["mean_diff"] if d else None,
                      "95% CI": (f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]" if d and d.get("ci")
                                 and all(np.isfinite(d["ci"])) else ""),
                      "PCK@0.2": mean(a["PCK"]), "val AP50": mean(a["val_AP50"]), "val PCK@0.2": mean(a["val_PCK"]),
                      "steps": mean(a["steps"]), "seconds per run": mean(a["seconds"]),
                      "seconds (all seeds)": float(sum(a["seconds"]))})
    joint_names = [j for a in arms.values() for d in a["joints"] for j in d]
    joint_names = list(dict.fromkeys(joint_names))
    per_joint = []
    for j in joint_names:
        row = {"joint": j}
        for name in names:
            row[name] = mean([d.get(j) for d in arms[name]["joints"]])
        if any(row[n] is not None for n in names):
            per_joint.append(row)
    comparisons = []
    base = arms.get(BASELINE)
    if base:
        for name, a in arms.items():
            if name == BASELINE:
                continue
            for metric in ("oks", "pck"):
                diffs = [np.mean(a["rows"][pid][metric]) - np.mean(base["rows"][pid][metric])
                         for pid in base["rows"] if pid in a["rows"] and a["rows"][pid][metric]
                         and base["rows"][pid][metric]]
                comparisons.append({"arm": name, "metric": "per-person OKS" if metric == "oks" else "PCK@0.2",
                                    **stats.paired_permutation(diffs, n_perm=5000)})
        adjusted = stats.holm([c["p"] for c in comparisons]) if comparisons else []
        for c, p in zip(comparisons, adjusted):
            c["p_holm"] = p
            c["verdict"] = stats.verdict(c["arm"], BASELINE, c["metric"], c["mean_diff"], c["ci"], p)
    flags = []
    zs = next((t for t in table if t["arm"] == "zero-shot"), None)
    ro = next((t for t in table if t["arm"] == BASELINE), None)
    if zs and ro and zs["val PCK@0.2"] is not None and ro["val PCK@0.2"] is not None \
            and ro["val PCK@0.2"] < zs["val PCK@0.2"] and (ro["val AP50"] or 0) < (zs["val AP50"] or 0):
        flags.append("real-only is below zero-shot on val (AP50 and PCK@0.2): the training recipe is wrong "
                     "for this data; fix it on val before reading any comparison")
    # the val gate per seed: does real-only beat zero-shot on val AP50 or PCK@0.2?
    val_by = {(r["arm"], r["seed"]): r["result"]["val"] for r in runs if r.get("status", "done") == "done"}
    val_gate = []
    for seed in sorted({sd for (arm, sd) in val_by if arm == BASELINE}):
        ro_v, zs_v = val_by.get((BASELINE, seed)), val_by.get(("zero-shot", seed))
        if not ro_v or not zs_v:
            continue
        beats = [k for k in ("AP50", "PCK@0.2") if ro_v.get(k) is not None and zs_v.get(k) is not None
                 and ro_v[k] > zs_v[k]]
        val_gate.append({"seed": seed, "real-only val AP50": ro_v.get("AP50"), "zero-shot val AP50": zs_v.get("AP50"),
                         "real-only val PCK@0.2": ro_v.get("PCK@0.2"), "zero-shot val PCK@0.2": zs_v.get("PCK@0.2"),
                         "beats zero-shot on": ", ".join(beats) or "neither"})
    return {"table": table, "comparisons": comparisons, "flags": flags, "ap50": ap50, "ablation": ablation,
            "per_joint": per_joint,
            "val_gate": val_gate,
            "steps": "matched to real-only" if cfg["step_matching"] else "equal epochs"}
