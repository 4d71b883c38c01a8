"""Experiments: arms x seeds, trained at matched optimizer steps, compared with honest statistics.

An experiment file names the arms (``zero_shot`` — the untouched pretrained model, always
included — real-only, synthetic-only, mixed at given volumes, and pool ablations curated /
random / unfiltered), the seeds (a seed redraws the real-anchor subset, the synthetic sample
and the training noise), the recipe and the evaluation ``protocol`` (``engine.train.protocols``:
``coco`` for fully-labelled data, ``annotated_person`` for one-person-per-image data such as LSPET,
``auto`` by import format). With ``anchor_pool: N`` each seed draws N real train images
as its anchor pool; real arms use a prefix of that draw and synthetic images are eligible only when
every real image in their lineage (anchor, cut-out, background) is in the pool, so an arm never
sees real people beyond its seed's anchors through the synthetic data (generate per seed with
``anchor_image_ids`` = :func:`engine.train.manifest.anchor_pool`). With ``step_matching`` (default) every arm trains for
as many optimizer steps as the real-only arm: an arm with 4x the images gets 1/4 of the epochs,
so no arm wins by taking more steps (epochs are whole numbers, so the match is to the nearest
epoch; the report lists each run's actual steps). An arm with ``replica: k`` is a copy of another
arm's data with different training noise (training seed + 1000 k): beside its twin it measures the
benchmark's noise floor (an A/A comparison).

The experiment job is resumable: finished (arm, seed) runs are kept and skipped when it runs
again — but only when the same code made them (every run records the code version, package
versions, machine and manifest hash); runs made by other code stop the job unless it is told to
keep them (``allow_mixed_code``, and the report lists the versions) or to redo them
(``rerun_other_code``). :func:`verify` reruns one finished run and reports the difference.
With a ``ledger`` folder (``engine.ledger``) every finished run is also written there as it finishes, and
the job starts by taking the folder's runs that are still valid here: an experiment outlives its workspace
(a benchmark of many hours continues on another machine from the ledger committed beside its report).

Every comparison (each arm against real-only on test AP50, PCK@0.2 and per-person OKS; the
curation ablation; the A/A noise floor) is a two-stage bootstrap over seeds and then test images
(``engine.stats.two_stage_bootstrap``), with each seed's own difference beside the pooled one;
Holm's correction runs across the comparisons with real-only. A real-only arm below zero-shot on
val is flagged as a recipe problem.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine import jobs, ledger, stats
from engine.errors import RealcalError
from engine.jobs import JobContext, job_kind
from engine.workspace import Workspace
from store import events as store_events
from store import jobs as store_jobs
from store import training as store_training
from store.db import write_transaction

BASELINE = "real-only"
METRICS = ("AP50", "PCK@0.2", "per-person OKS")
DEFAULT_SEEDS = [0, 1, 2, 3, 4]


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    from engine.train import protocols
    from engine.train.recipe import Recipe
    from engine.train.schedule import from_arm as schedule_from_arm

    if not isinstance(config, dict) or not config.get("arms"):
        raise RealcalError("an experiment file needs a list of arms")
    given = config.get("recipe") or {}
    if not isinstance(given, dict):
        raise RealcalError("recipe must be a mapping of training options")
    recipe = Recipe.from_dict(given).as_dict()      # unknown keys, types and ranges refused here
    if "model" not in given:
        recipe.pop("model")   # the default model: recorded with every run (kept out so older experiments resume)
    cfg: dict[str, Any] = {"name": str(config.get("name", "experiment")),
                           "seeds": list(config.get("seeds", DEFAULT_SEEDS)),
                           "recipe": recipe,
           "step_matching": bool(config.get("step_matching", True)), "arms": [],
           "anchor_pool": config.get("anchor_pool"),
           "protocol": protocols.check(config.get("protocol", "auto"))}
    pool = cfg["anchor_pool"]
    if pool is not None and (not isinstance(pool, int) or isinstance(pool, bool) or pool < 1):
        raise RealcalError("anchor_pool must be a positive number of real train images")
    names = set()
    for arm in config["arms"]:
        if not isinstance(arm, dict) or "name" not in arm:
            raise RealcalError("each arm needs a name")
        kind = arm.get("kind", "train")
        if kind not in ("train", "zero_shot", "loop"):
            raise RealcalError(f"arm {arm['name']}: kind must be train, zero_shot or loop")
        if arm["name"] in names:
            raise RealcalError(f"two arms are named {arm['name']!r}")
        names.add(arm["name"])
        if pool is not None and kind in ("train", "loop") and (arm.get("real") is None or arm["real"] > pool):
            raise RealcalError(f"arm {arm['name']}: with anchor_pool {pool}, real must be a number <= {pool}")
        replica = arm.get("replica", 0)
        if isinstance(replica, bool) or not isinstance(replica, int) or replica < 0:
            raise RealcalError(f"arm {arm['name']}: replica must be a whole number >= 0")
        unknown = set(arm) - {"name", "kind", "real", "pool", "synthetic", "replica", "synthetic_label", "schedule",
                              "reference", "round"}
        if unknown:
            raise RealcalError(f"arm {arm['name']}: unknown key(s) {', '.join(sorted(unknown))}; valid: name, kind, "
                               f"real, pool, synthetic, synthetic_label, replica, schedule, reference, round")
        entry = {"name": arm["name"], "kind": kind, "real": arm.get("real"),
                 "pool": arm.get("pool", "none"), "synthetic": arm.get("synthetic")}
        if replica:
            entry["replica"] = replica
        if arm.get("reference"):
            if arm["reference"] is not True or kind != "train" or arm.get("synthetic"):
                raise RealcalError(f"arm {arm['name']}: reference: true marks a real-only arm with more real images "
                                   f"(e.g. 2N): the gap each synthetic arm closes is measured towards it")
            entry["reference"] = True
        if kind == "loop":
            rnd = arm.get("round")
            if isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 1:
                raise RealcalError(f"arm {arm['name']}: a loop arm names its round (round: 1, 2, ...)")
            if set(arm) & {"pool", "synthetic", "synthetic_label", "schedule", "replica"}:
                raise RealcalError(f"arm {arm['name']}: a loop arm takes name, kind, real and round (the loop "
                                   f"section of the experiment file says how rounds generate and train)")
            if not arm.get("real"):
                raise RealcalError(f"arm {arm['name']}: a loop arm needs real: N (its anchors)")
            entry["round"] = rnd
        elif "round" in arm:
            raise RealcalError(f"arm {arm['name']}: round is for loop arms (kind: loop)")
        sched = schedule_from_arm(arm.get("schedule"), f"arm {arm['name']}: schedule")
        if sched.kind != "union":        # a flat union is recorded as nothing (older experiments compare equal)
            if kind != "train" or entry["pool"] == "none" or entry["synthetic"] == 0 or not entry["real"]:
                raise RealcalError(f"arm {arm['name']}: a {sched.kind} schedule needs real and synthetic images "
                                   f"(real: N, pool and synthetic: M)")
            entry["schedule"] = sched.as_dict()
        label = arm.get("synthetic_label")
        if label is not None:
            if not isinstance(label, str) or not label.strip():
                raise RealcalError(f"arm {arm['name']}: synthetic_label is a batch name, e.g. \"seed {{seed}}\"")
            try:
                label.format(seed=0)
            except (KeyError, IndexError, ValueError):
                raise RealcalError(f"arm {arm['name']}: synthetic_label may name only {{seed}}, "
                                   f"not {label!r}") from None
            entry["synthetic_label"] = label
        cfg["arms"].append(entry)
    if not any(a["kind"] == "zero_shot" for a in cfg["arms"]):
        cfg["arms"].insert(0, {"name": "zero-shot", "kind": "zero_shot", "real": None, "pool": "none",
                               "synthetic": None})
    if BASELINE not in names:
        raise RealcalError(f"an experiment needs a '{BASELINE}' arm (the baseline every arm is compared with)")
    loop_arms = [a for a in cfg["arms"] if a["kind"] == "loop"]
    if sum(1 for a in cfg["arms"] if a.get("reference")) > 1:
        raise RealcalError("only one arm may be the reference (reference: true)")
    if loop_arms or config.get("loop") is not None:
        if not loop_arms:
            raise RealcalError("the experiment file has a loop section but no loop arm (kind: loop, round: k)")
        if len({a["real"] for a in loop_arms}) > 1:
            raise RealcalError("every loop arm must name the same real count (they are rounds of one loop per seed)")
        given_loop = config.get("loop") or {}
        if not isinstance(given_loop, dict):
            raise RealcalError("loop must be a mapping of loop options (see engine/loop.py)")
        clash = set(given_loop) & {"name", "seed", "real", "recipe", "protocol", "step_matching", "rounds"}
        if clash:
            raise RealcalError(f"loop: {', '.join(sorted(clash))} come from the experiment (its seeds, recipe, "
                               f"protocol and step matching, the loop arms' real and rounds); remove them")
        cfg["loop"] = dict(given_loop)
        loop_config(cfg, loop_arms[0], cfg["seeds"][0])      # the loop section checked now, not hours later
    if not cfg["seeds"]:
        raise RealcalError("an experiment needs at least one seed")
    contrasts = config.get("contrasts")
    if contrasts:       # recorded only when given, so older experiments compare equal
        arm_names = {a["name"] for a in cfg["arms"]}
        if not isinstance(contrasts, list) or not all(
                isinstance(c, list | tuple) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in contrasts):
            raise RealcalError("contrasts is a list of [arm, other arm] pairs, e.g. [[mixed-posewarp-200, "
                               "mixed-random-200]]: each is compared as arm minus other arm")
        if len({tuple(sorted(c)) for c in contrasts}) < len(contrasts):
            raise RealcalError("contrasts lists a pair twice (a pair and its reverse count as one)")
        for a, b in contrasts:
            if a == b or not {a, b} <= arm_names:
                raise RealcalError(f"contrast [{a}, {b}]: two different arms of this experiment are needed "
                                   f"(arms: {', '.join(sorted(arm_names))})")
        cfg["contrasts"] = [[a, b] for a, b in contrasts]
    return cfg


def manifest_spec(arm: dict, seed: int, anchor_pool: int | None = None) -> dict:
    """The training set of one (arm, seed): the seed's real-anchor draw and synthetic sample."""
    spec = {"real_train": {"count": arm["real"], "seed": seed},
            "synthetic": {"pool": arm["pool"], "count": arm["synthetic"], "seed": seed}}
    if anchor_pool is not None:
        spec["synthetic"]["within"] = {"count": anchor_pool, "seed": seed}
    if arm.get("synthetic_label"):
        spec["synthetic"]["label"] = arm["synthetic_label"].format(seed=seed)
    return spec


def loop_config(cfg: dict, arm: dict, seed: int) -> dict:
    """The loop behind an experiment's loop arms for one seed: the experiment's recipe, protocol and step
    matching, the arm's real anchors (the same draw as the real-only arms'), every round any loop arm names,
    and no early stop (each round is an arm)."""
    from engine import loop

    rounds = max(a["round"] for a in cfg["arms"] if a["kind"] == "loop")
    given = dict(cfg.get("loop") or {})
    return loop.resolve({**given, "name": f"{cfg['name']} loop seed {seed}", "seed": int(seed),
                         "real": arm["real"], "recipe": cfg["recipe"], "protocol": cfg.get("protocol", "auto"),
                         "step_matching": cfg["step_matching"], "rounds": rounds,
                         "stop": {**(given.get("stop") or {}), "patience": 50}})


CARRY_KEYS = ("seeds", "recipe", "step_matching", "anchor_pool", "protocol", "loop")


def upgraded(old: dict) -> dict:
    """A stored experiment config read with today's recipe keys: a key added to the recipe after the config
    was stored takes its default (whoever adds a recipe key gives it the default that does what the code
    did before), so adding an option never discards an experiment's finished runs."""
    from engine.train.recipe import Recipe

    recipe = old.get("recipe")
    if not isinstance(recipe, dict):
        return old
    defaults = Recipe().as_dict()
    defaults.pop("model")
    return {**old, "recipe": {**{k: v for k, v in defaults.items() if k not in recipe}, **recipe}}


def runs_config(cfg: dict) -> dict:
    """The part of an experiment config that decides its runs (not ``contrasts``, which only says what the
    report compares)."""
    return {k: v for k, v in cfg.items() if k != "contrasts"}


def carried_over(old: dict, new: dict) -> list[str]:
    """Arms whose finished runs a changed experiment file may keep: everything that decides a run (recipe,
    protocol, anchor pool, step matching, the arm itself and, for step matching, the real-only arm) is
    unchanged; seeds may be added. A changed loop section redoes the loop arms only. Empty when anything else
    changed."""
    changed = [k for k in CARRY_KEYS if k != "seeds" and old.get(k) != new.get(k)]
    if changed and changed != ["loop"]:
        return []
    old_arms = {a["name"]: a for a in old.get("arms", [])}
    if new.get("step_matching", True):
        base_new = next((a for a in new["arms"] if a["name"] == BASELINE), None)
        if old_arms.get(BASELINE) != base_new:
            return []
    return [a["name"] for a in new["arms"] if old_arms.get(a["name"]) == a and not (changed and a["kind"] == "loop")]


def _zero_shot(ws: Workspace, manifest_id: int, imgsz: int, device: str, eval_dir, seed: int,
               protocol: str = "auto") -> dict:
    """The untouched pretrained model scored on val and test under ``protocol`` (no model decides what is ignored)."""
    from ultralytics import YOLO

    from engine import assets, config
    from engine.train import protocols
    from engine.train.evaluate import evaluate
    from engine.train.train import load_manifest, save_coco, split_items

    with ws.connect() as db:
        m = load_manifest(db, manifest_id)
        splits = {s: split_items(db, m, s) for s in ("val", "test")}
    model = YOLO(str(assets.resolve("yolo11n-pose")), task="pose")
    dev = config.resolve_device(device)
    out: dict[str, Any] = {}
    eval_dir.mkdir(parents=True, exist_ok=True)
    for split in ("val", "test"):
        if not splits[split][0]:
            out[split] = {"images": 0}
            continue
        metrics, rows = evaluate(model, ws, *splits[split], imgsz=int(imgsz), device=dev, protocol=protocol)
        coco = metrics.pop("_coco")
        path = eval_dir / f"zero-shot-seed{seed}-{split}.json.gz"
        save_coco(path, coco)
        out[split], out[f"{split}_eval"] = metrics, str(path)
        if split == "test":
            out["rows"] = [{k: r[k] for k in ("person_id", "image_id", "oks", "pck")} for r in rows]
            if coco["dets"]:
                ci = stats.bootstrap_ap(coco["gt"], protocols.scored_in(coco), n_boot=200)
                metrics.update({"AP_ci": ci["AP_ci"], "AP50_ci": ci["AP50_ci"], "n_boot": ci["n_boot"]})
    out.setdefault("rows", [])
    out.setdefault("test_eval", None)
    return out


def _code_check(finished: list[dict], params: dict) -> set[tuple[str, int]]:
    """Finished runs made by other code: an error, unless the job may keep them (returned: none to redo)
    or is told to redo them (returned: their (arm, seed))."""
    from engine import provenance

    current = provenance.code_version()
    other = [r for r in finished
             if ((r["result"] or {}).get("code") or {}).get("source_hash") != current["source_hash"]]
    if not other or params.get("allow_mixed_code"):
        return set()
    if params.get("rerun_other_code"):
        return {(r["arm"], r["seed"]) for r in other}
    versions = sorted({provenance.describe((r["result"] or {}).get("code")) for r in other})
    raise RealcalError(
        f"{len(other)} finished run(s) of this experiment were made by other code ({'; '.join(versions)}); "
        f"this code is {provenance.describe(current)}. Redo them (--rerun-other-code), keep them and let the "
        f"report list the mixed versions (--allow-mixed-code), or give the experiment a new name.")


@job_kind("experiment", title="Run an experiment", resumable=True)
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from engine.train.recipe import Recipe

    ws, cfg = ctx.ws, params["config"]
    carried: tuple[int, list[str]] | None = None
    with ws.connect() as db:
        # one process at a time decides whether the file changed: processes started together to share the
        # experiment's runs (see _claim) must all land in the same experiment
        with write_transaction(db):
            exp = store_training.experiment_by_name(db, cfg["name"])
            if exp is not None and upgraded(exp["config"]) != cfg and runs_config(upgraded(exp["config"])) \
                    == runs_config(cfg):
                # only what is compared changed (contrasts): the same experiment, its config brought up to date
                store_training.set_experiment_config(db, exp["id"], cfg)
                exp = {**exp, "config": cfg}
            if exp is None or upgraded(exp["config"]) != cfg:
                keep = carried_over(upgraded(exp["config"]), cfg) if exp is not None else []
                exp_id = store_training.create_experiment(db, cfg["name"], cfg)
                if exp is not None and keep:
                    # arms added (or removed), the rest unchanged: their finished runs carry over, each with the
                    # code version and provenance it was made with
                    n = store_training.copy_experiment_runs(db, exp["id"], exp_id, keep, cfg["seeds"])
                    store_events.log(db, "experiment.carry_over", {"from": exp["id"], "to": exp_id, "arms": keep,
                                                                   "runs": n})
                    carried = (exp["id"], keep)
            else:
                exp_id = exp["id"]
        if carried:
            ctx.progress(0, None, f"the experiment file changed; {', '.join(carried[1])} unchanged: their finished "
                                  f"runs carry over from experiment {carried[0]}", force=True)
    if params.get("ledger"):
        _from_ledger(ctx, ws, exp_id, cfg, Path(params["ledger"]))
    with ws.connect() as db:
        finished = [r for r in store_training.experiment_runs(db, exp_id) if r["status"] == "done"]
    redo = _code_check(finished, params)
    done = {(r["arm"], r["seed"]) for r in finished} - redo
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
    recipe = Recipe.from_dict(cfg["recipe"])
    protocol = cfg.get("protocol", "auto")
    base_steps: dict[int, int] = {}      # per seed: the real-only arm's optimizer steps
    held: list[tuple[str, int, str]] = []      # runs another process held when this one came to them (see _claim)
    for n, (arm, seed) in enumerate(pairs):
        if not gate_announced and arm not in gate_arms:
            gate_announced = True
            gate = val_gate(ws, exp_id)
            if gate:
                ctx.progress(n, len(pairs), gate, force=True)
        if (arm["name"], seed) in done:
            continue
        if params.get("deadline") and time.time() >= float(params["deadline"]):
            stopped = len([1 for a, sd in pairs if (a["name"], sd) not in done])
            ctx.progress(n, len(pairs), f"time budget reached: {stopped} run(s) left for the next invocation",
                         force=True)
            break
        expected = expected_seconds(arm, cfg["arms"], seconds)
        if params.get("deadline") and expected is not None and time.time() + expected > float(params["deadline"]):
            # a run cut off at the end of a sitting is lost work: leave it whole for the next invocation
            ctx.progress(n, len(pairs), f"{arm['name']} seed {seed} would take about {expected / 60:.0f} min, "
                                        f"{max(0.0, float(params['deadline']) - time.time()) / 60:.0f} min are "
                                        f"left in the time budget: left for the next invocation", force=True)
            continue
        holder = _claim(ws, exp_id, cfg, arm, seed, ctx.job_id, ctx.claim, redo)
        if holder == "done":          # another process finished it since this one started
            done.add((arm["name"], seed))
            continue
        if holder:
            held.append((arm["name"], seed, holder))
            continue
        try:
            _run_pair(ctx, ws, cfg, exp_id, arm, seed, n, pairs, done, seconds, recipe, protocol, base_steps,
                      params)
        finally:
            with ws.connect() as db:
                with write_transaction(db):
                    store_training.release_experiment_claim(db, exp_id, arm["name"], seed, ctx.job_id, ctx.claim)
    with ws.connect() as db:
        runs = store_training.experiment_runs(db, exp_id)
    # the holders may have finished while this process trained its own runs: only those still unfinished count
    finished_now = {(r["arm"], r["seed"]) for r in runs if r["status"] == "done"}
    elsewhere = [f"{a} seed {sd} ({holder})" for a, sd, holder in held if (a, sd) not in finished_now]
    if elsewhere:
        ctx.progress(len(pairs), len(pairs), f"{len(elsewhere)} run(s) held by other processes, not waited for: "
                                             f"{'; '.join(elsewhere)}", force=True)
    if params.get("ledger"):
        # runs finished before the experiment had a ledger (or by a process without one) join it too
        n = ledger.export(ws, exp_id, Path(params["ledger"]))["written"]
        if n:
            ctx.progress(len(pairs), len(pairs), f"ledger: {n} finished run(s) written to {params['ledger']}",
                         force=True)
    ctx.progress(len(pairs), len(pairs), "two-stage bootstrap over seeds and test images", force=True)
    comparisons = compare(runs, cfg, n_boot=int(params.get("n_boot", 1000)))
    if not elsewhere:     # a process that knows others still train stores nothing: the last one's is complete
        with ws.connect() as db:
            with write_transaction(db):
                store_training.set_experiment_ap50(db, exp_id, comparisons)
    summary = summarise(runs, cfg, comparisons)
    missing = len(pairs) - len({(r["arm"], r["seed"]) for r in runs if r["status"] == "done"})
    return {"experiment_id": exp_id, "name": cfg["name"], "summary": summary, "runs_left": missing,
            "held_elsewhere": elsewhere}


def _from_ledger(ctx: JobContext, ws: Workspace, exp_id: int, cfg: dict, folder: Path) -> None:
    """Count the ledger's runs of this experiment as finished (see engine.ledger) and say what came in and what
    did not, and why."""
    res = import_ledger(ws, exp_id, cfg, folder)
    if res["imported"]:
        ctx.progress(0, None, f"ledger {folder}: {len(res['imported'])} finished run(s) taken from it: "
                              f"{', '.join(res['imported'])}", force=True)
    for line in res["skipped"]:
        ctx.progress(0, None, f"ledger: not taken: {line}", force=True)


def ledger_importable(entries: list[dict], cfg: dict, done: set[tuple[str, int]]) -> tuple[list[dict], list[str]]:
    """The entries that may count as finished runs of experiment ``cfg`` (before the manifest check), and why
    each other one may not. ``done``: the (arm, seed) runs the experiment has finished here (kept as they are)."""
    arms = {a["name"]: a for a in cfg["arms"]}
    ok, why = [], []
    for e in entries:
        key = (e["arm"], e["seed"])
        where = f"{e['_file']} ({e['arm']} seed {e['seed']})"
        if e["experiment"] != cfg["name"]:
            why.append(f"{where}: belongs to experiment {e['experiment']!r}")
        elif e["arm"] not in arms or e["seed"] not in cfg["seeds"]:
            why.append(f"{where}: this experiment has no such arm and seed")
        elif key in done:
            continue
        elif e["arm"] not in carried_over(upgraded(e["config"]), cfg):
            why.append(f"{where}: made under another configuration of this arm (recipe, protocol, anchors, loop or "
                       f"the arm itself)")
        else:
            ok.append(e)
    # a loop's rounds of one seed: all of them from the ledger, or none
    loop_arms = [a["name"] for a in cfg["arms"] if a["kind"] == "loop"]
    for seed in {e["seed"] for e in ok}:
        have = {e["arm"] for e in ok if e["seed"] == seed and e["arm"] in loop_arms}
        if have and (have != set(loop_arms) or any((a, seed) in done for a in loop_arms)):
            why += [f"{e['_file']} ({e['arm']} seed {seed}): the seed's other loop rounds are not all in the ledger, "
                    f"and a later round needs the earlier rounds' students: the seed's loop runs here"
                    for e in ok if e["seed"] == seed and e["arm"] in have]
            ok = [e for e in ok if not (e["seed"] == seed and e["arm"] in have)]
    return ok, why


def import_ledger(ws, exp_id: int, cfg: dict, folder: Path) -> dict[str, list[str]]:
    """Fill experiment ``exp_id`` (configuration ``cfg``) from the ledger in ``folder`` (``engine.ledger``): each
    importable entry becomes a finished run whose evaluations are copied into the workspace. Returns
    {"imported": [...], "skipped": [reasons]} (``arm seed S`` lines)."""
    from engine.train.manifest import build_manifest
    from store import training as store_training
    from store.db import write_transaction

    entries, problems = ledger.load(folder)
    if not entries and not problems:
        return {"imported": [], "skipped": []}
    with ws.connect() as db:
        done = {(r["arm"], r["seed"]) for r in store_training.experiment_runs(db, exp_id) if r["status"] == "done"}
    ok, skipped = ledger_importable(entries, cfg, done)
    skipped = problems + skipped
    arms = {a["name"]: a for a in cfg["arms"]}
    real_only = arms.get(BASELINE)
    if real_only is None:
        raise RealcalError(f"experiment {cfg['name']!r} has no {BASELINE} arm")
    imported = []
    eval_dir = ws.root / "experiments" / f"{exp_id:05d}" / "ledger"
    for e in ok:
        arm, seed, res = arms[e["arm"]], e["seed"], dict(e["result"])
        where = f"{e['_file']} ({e['arm']} seed {seed})"
        manifest_id = None
        if arm["kind"] != "loop":
            spec_arm = real_only if arm["kind"] == "zero_shot" else arm
            try:
                m = build_manifest(ws, manifest_spec(spec_arm, seed, cfg.get("anchor_pool")))
            except RealcalError as exc:
                skipped.append(f"{where}: its training set cannot be built here ({exc})")
                continue
            if m["hash"] != res.get("manifest_hash"):
                skipped.append(f"{where}: the training set built here differs from the one it trained on "
                               f"(manifest {str(res.get('manifest_hash'))[:12]} there, {m['hash'][:12]} here)")
                continue
            manifest_id = m["id"]
        eval_dir.mkdir(parents=True, exist_ok=True)
        stem = e["_file"][: -len(ledger.SUFFIX)]
        try:
            cocos = {split: ledger.unpack_eval((e.get("evals") or {}).get(split), Path(folder))
                     for split in ledger.EVAL_SPLITS}
        except (RealcalError, KeyError, ValueError, TypeError) as exc:
            skipped.append(f"{where}: its evaluations cannot be read ({exc})")
            continue
        for split in ledger.EVAL_SPLITS:
            coco = cocos[split]
            if coco:
                path = eval_dir / f"{stem}-{split}_eval.json.gz"
                ledger.write_json_gz(path, coco)        # atomic: another process may import it too
                res[f"{split}_eval"] = str(path)
            else:
                res[f"{split}_eval"] = None
        res["ledger"] = {"file": e["_file"], "written": e.get("written"), "curves": e.get("curves"),
                         "imported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with ws.connect() as db:
            with write_transaction(db):
                row = store_training.experiment_run(db, exp_id, e["arm"], seed)
                if row is not None and row["status"] == "done":
                    continue              # finished here meanwhile (another process): the workspace's run stands
                store_training.put_experiment_run(db, exp_id, e["arm"], seed, manifest_id=manifest_id,
                                                  training_run_id=None, status="done", result=res)
        imported.append(f"{e['arm']} seed {seed}")
    return {"imported": imported, "skipped": skipped}


def _claim(ws: Workspace, exp_id: int, cfg: dict, arm: dict, seed: int, job_id: int, token: str | None,
           redo: set[tuple[str, int]]) -> str | None:
    """Take the (arm, seed) run for this job, so that several processes (``experiment run`` started twice,
    two workers, ``lspet_benchmark.py --workers``) share an experiment's runs instead of repeating them.
    Returns None when taken, ``"done"`` when another process finished it meanwhile, or who holds it. A claim
    lives as long as its job: one left by a process that died (or whose heartbeat went stale) is taken over.
    A loop's rounds of one seed share their loop, so only one of them runs at a time, and none while the seed's
    real-only run (the loop's round 0) is being trained elsewhere."""
    from engine import provenance

    name = arm["name"]
    with ws.connect() as db:
        with write_transaction(db):
            row = store_training.experiment_run(db, exp_id, name, seed)
            if row is not None and row["status"] == "done" and (
                    (name, seed) not in redo or ((row["result"] or {}).get("code") or {}).get("source_hash")
                    == provenance.code_version()["source_hash"]):
                return "done"
            rivals = [name]
            if arm["kind"] == "loop":
                rivals += [a["name"] for a in cfg["arms"] if a.get("real") == arm.get("real") and a["name"] != name
                           and (a["kind"] == "loop" or (a["kind"] == "train" and _is_twin(a)))]
            for other in rivals:
                c = store_training.experiment_claim(db, exp_id, other, seed)
                mine = c is not None and c["job_id"] == job_id and c["token"] == token
                if c is not None and not mine and jobs.job_alive(db, c["job_id"], c["token"]):
                    return f"job {c['job_id']}" + ("" if other == name else f", running {other}")
            store_training.put_experiment_claim(db, exp_id, name, seed, job_id=job_id, token=token,
                                                worker=f"{socket.gethostname()}:{os.getpid()}")
    return None


def in_progress(db, exp_id: int) -> list[str]:
    """The experiment's runs that live processes hold now, e.g. ``"mixed seed 2 (job 14)"``."""
    return [f"{c['arm']} seed {c['seed']} (job {c['job_id']})" for c in store_training.experiment_claims(db, exp_id)
            if jobs.job_alive(db, c["job_id"], c["token"])]


def _is_twin(arm: dict) -> bool:
    """A real-only train arm (no synthetic images, not a replica): the twin whose run a loop's round 0 reuses."""
    return not arm.get("synthetic") and not arm.get("replica") and not arm.get("reference")


def _run_pair(ctx: JobContext, ws: Workspace, cfg: dict, exp_id: int, arm: dict, seed: int, n: int,
              pairs: list, done: set, seconds: dict[str, list[float]], recipe, protocol: str,
              base_steps: dict[int, int], params: dict[str, Any]) -> None:
    """Train (or score) one arm for one seed and store its result."""
    from engine import provenance
    from engine.train.manifest import build_manifest, train_images

    left = time_left([a for a, sd in pairs[n:] if (a["name"], sd) not in done], seconds)
    ctx.progress(n, len(pairs), f"{arm['name']} seed {seed}" + (f" (about {left} left)" if left else ""),
                 force=True)
    t0 = time.perf_counter()
    real_only = next(a for a in cfg["arms"] if a["name"] == BASELINE)
    run_id: int | None
    if arm["kind"] == "loop":
        twin = next((a["name"] for a in cfg["arms"] if a["kind"] == "train" and a.get("real") == arm["real"]
                     and _is_twin(a)), None)
        with ws.connect() as db:
            twin_run = next((r for r in store_training.experiment_runs(db, exp_id)
                             if r["arm"] == twin and r["seed"] == seed and r["status"] == "done"), None)
        m, run_id, result = _loop_arm(ws, cfg, arm, seed, params.get("device"),
                                      (twin_run or {}).get("training_run_id"))
    else:
        m = build_manifest(ws, manifest_spec(real_only if arm["kind"] == "zero_shot" else arm, seed,
                                             cfg.get("anchor_pool")))
    n_train = train_images(m["counts"])
    if arm["kind"] == "loop":
        pass
    elif arm["kind"] == "zero_shot":
        result = _zero_shot(ws, m["id"], recipe.imgsz, params.get("device", "auto"),
                            ws.root / "experiments" / f"{exp_id:05d}", seed, protocol)
        run_id = None
    else:
        tp, plan, run_schedule, train_seed = train_arm_params(ws, cfg, arm, seed, m, params.get("device"),
                                                              base_steps)
        final = jobs.run_foreground(ws, "train", tp)
        if final["status"] != "done":
            raise RealcalError(f"arm {arm['name']} seed {seed}: training {final['status']}: "
                               f"{(final.get('error') or '').splitlines()[0] if final.get('error') else ''}")
        run_id = final["result"]["run_id"]
        test, val, rows = _scores(ws, run_id, f"arm {arm['name']} seed {seed}")
        result = {"test": test, "val": val, "rows": rows, "epochs": plan["epochs"], "steps": plan["steps"],
                  "train_seed": train_seed, "test_eval": final["result"].get("test_eval"),
                  "val_eval": final["result"].get("val_eval")}
        if run_schedule:
            result.update({"schedule": plan["text"], "stages": plan["stages"]})
    result.update({"train_images": n_train, "seconds": round(time.perf_counter() - t0, 1),
                   "manifest_hash": m["hash"], **provenance.record()})
    seconds.setdefault(arm["name"], []).append(result["seconds"])
    done.add((arm["name"], seed))
    with ws.connect() as db:
        with write_transaction(db):
            if not store_jobs.holds(db, ctx.job_id, ctx.claim):    # requeued and taken elsewhere: write nothing
                raise jobs.ClaimLost(ctx.job_id)
            store_training.put_experiment_run(db, exp_id, arm["name"], seed, manifest_id=m["id"],
                                              training_run_id=run_id, status="done", result=result)
            store_training.release_experiment_claim(db, exp_id, arm["name"], seed, ctx.job_id, ctx.claim)
            curves = (store_training.run(db, run_id) or {}).get("curves") if run_id else None
    if params.get("ledger"):      # at once, so that a machine lost mid-experiment loses only the runs in progress
        ledger.write_run(Path(params["ledger"]), cfg, arm["name"], seed, result, curves)


def train_arm_params(ws: Workspace, cfg: dict, arm: dict, seed: int, m: dict, device: str | None,
                     base_steps: dict[int, int] | None = None) -> tuple[dict, dict, dict | None, int]:
    """The train job's parameters for one (arm, seed) of a train arm on manifest ``m``: the experiment's recipe
    with the arm's training seed, fitted to its schedule and, with step matching, to the real-only arm's optimizer
    steps for that seed (cached in ``base_steps``). Returns (params, plan, schedule, training seed)."""
    from engine.train.manifest import build_manifest, train_images
    from engine.train.recipe import Recipe
    from engine.train.schedule import Schedule
    from engine.train.schedule import fit as schedule_fit
    from engine.train.train import resolve_params as train_params

    recipe = Recipe.from_dict(cfg["recipe"])
    base_steps = {} if base_steps is None else base_steps
    if seed not in base_steps:
        real_only = next(a for a in cfg["arms"] if a["name"] == BASELINE)
        base_m = build_manifest(ws, manifest_spec(real_only, seed, cfg.get("anchor_pool")))
        base_steps[seed] = recipe.plan(train_images(base_m["counts"]))["steps"]
    train_seed = int(seed) + 1000 * int(arm.get("replica", 0))
    run_recipe, run_schedule, plan = schedule_fit(
        Schedule.from_dict(arm.get("schedule") or {}), recipe.replace(seed=train_seed),
        int(m["counts"].get("train_real", 0)), int(m["counts"].get("train_synthetic", 0)),
        steps=base_steps[seed] if cfg["step_matching"] else None)
    tp = train_params(ws, m["id"], {**run_recipe.as_dict(), "device": device,
                                    "protocol": cfg.get("protocol", "auto"), "schedule": run_schedule})
    return tp, plan, run_schedule, train_seed


def _scores(ws: Workspace, run_id: int, what: str) -> tuple[dict, dict, list[dict]]:
    """A finished training run's test metrics, val metrics and per-person test rows."""
    with ws.connect() as db:
        tr = store_training.run(db, run_id)
        rows = store_training.eval_rows(db, run_id)
    if tr is None:
        raise RealcalError(f"{what}: training run {run_id} vanished from the workspace")
    test = dict(tr["metrics"])
    val = test.pop("val", {})
    return test, val, rows


def _own_loop_name(db, lcfg: dict) -> dict:
    """The seed's loop keeps its plain name while the stored loop of that name has this configuration; a changed
    loop section gets a name of its own (the plain name plus a digest of the configuration), so the rounds an
    earlier configuration made stay stored and are never resumed with other settings."""
    import hashlib
    import json

    from engine import loop
    from store import loops as store_loops

    stored = store_loops.by_name(db, lcfg["name"])
    if stored is None or loop.upgraded(stored["config"]) == lcfg:
        return lcfg
    body = json.dumps({k: v for k, v in lcfg.items() if k != "name"}, sort_keys=True, default=str)
    named = {**lcfg, "name": f"{lcfg['name']} ({hashlib.sha256(body.encode()).hexdigest()[:8]})"}
    again = store_loops.by_name(db, named["name"])
    if again is not None and loop.upgraded(again["config"]) != named:
        raise RealcalError(f"loop {named['name']!r} is stored with another configuration; rename the experiment")
    return named


def _loop_arm(ws: Workspace, cfg: dict, arm: dict, seed: int, device: str | None,
              round0: int | None = None) -> tuple[dict, int, dict]:
    """Run (or resume) this seed's loop up to the arm's round; the round's student is the arm's run."""
    from store import loops as store_loops

    lcfg = loop_config(cfg, arm, seed)
    with ws.connect() as db:
        lcfg = _own_loop_name(db, lcfg)
    # round 0 is a real-only student on the loop's anchors: the experiment's real-only run of this seed when it has
    # the same images (the loop checks manifest and recipe before it takes it instead of training again)
    final = jobs.run_foreground(ws, "loop", {"config": lcfg, "device": device, "until_round": arm["round"],
                                             "round0_training_run_id": round0})
    if final["status"] != "done":
        raise RealcalError(f"arm {arm['name']} seed {seed}: loop {final['status']}: "
                           f"{(final.get('error') or '').strip().splitlines()[-1] if final.get('error') else ''}")
    with ws.connect() as db:
        lp = store_loops.by_name(db, lcfg["name"])
        st = next((r["state"] for r in store_loops.rounds(db, lp["id"])
                   if r["round"] == arm["round"] and r["status"] == "done"), None) if lp else None
        if st is None:
            raise RealcalError(f"arm {arm['name']} seed {seed}: loop {lcfg['name']!r} has no finished round "
                               f"{arm['round']}")
        run_id = int(st["train_run_id"])
        man = store_training.manifest(db, int(st["manifest_id"]))
    if man is None:
        raise RealcalError(f"arm {arm['name']} seed {seed}: manifest {st['manifest_id']} vanished from the workspace")
    test, val, rows = _scores(ws, run_id, f"arm {arm['name']} seed {seed}")
    result = {"test": test, "val": val, "rows": rows, "epochs": st.get("epochs"), "steps": st["steps"],
              "train_seed": int(seed), "test_eval": st.get("test_eval"), "val_eval": st.get("val_eval"),
              "loop": {"name": lcfg["name"], "round": arm["round"], "synthetic": st["synthetic"],
                       "training_run_id": run_id, **({"short": st["short"]} if st.get("short") else {})}}
    return {"id": man["id"], "hash": man["hash"], "counts": man["counts"]}, run_id, result


def expected_seconds(arm: dict, arms: list[dict], seconds: dict[str, list[float]]) -> float | None:
    """How long a run of ``arm`` should take: the mean of its finished runs, else of the finished runs of arms of
    its kind (a loop round's include generation and curation; a zero-shot run only scores); None when nothing of
    the kind has been timed."""
    xs = seconds.get(arm["name"]) or [x for a in arms if a["kind"] == arm["kind"] for x in seconds.get(a["name"], [])]
    return float(np.mean(xs)) if xs else None


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
    with ws.connect() as db:
        runs = [r for r in store_training.experiment_runs(db, exp_id) if r["status"] == "done"]
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


# ---- comparisons: two-stage bootstrap over seeds and test images -----------------------------------------

def _arrays(runs: list[dict], split: str = "test") -> dict[str, dict[str, dict[int, Any]]]:
    """Per arm and metric, {seed: arrays} for the bootstrap (AP from the stored detections under the run's
    protocol; PCK and OKS from the per-person rows: stored for test, derived from the detections for val)."""
    from engine.train import protocols
    from engine.train.train import load_coco

    out: dict[str, dict[str, dict[int, Any]]] = {}
    for r in runs:
        if r.get("status", "done") != "done":
            continue
        res = r["result"] or {}
        coco = load_coco(res.get(f"{split}_eval"))
        if not coco:
            continue
        image_ids = [im["id"] for im in coco["gt"]["images"]]
        arm = out.setdefault(r["arm"], {m: {} for m in METRICS})
        arm["AP50"][r["seed"]] = stats.MatchArrays.from_coco(coco["gt"], protocols.scored_in(coco))
        rows = res.get("rows") if split == "test" else None
        if rows is None:
            rows = protocols.person_rows(coco["gt"], coco["dets"])
        arm["PCK@0.2"][r["seed"]] = stats.PersonArrays(image_ids, rows, "pck")
        arm["per-person OKS"][r["seed"]] = stats.PersonArrays(image_ids, rows, "oks")
    return out


def _compare(arrays, arm: str, baseline: str, metric: str, n_boot: int, kind: str) -> dict | None:
    a, b = arrays.get(arm, {}).get(metric), arrays.get(baseline, {}).get(metric)
    if not a or not b or not set(a) & set(b):
        return None
    try:
        res = stats.two_stage_bootstrap(a, b, metric, n_boot=n_boot)
    except ValueError:
        return None
    return {"kind": kind, "arm": arm, "baseline": baseline, "metric": metric, **res}


def _gap_closed(arrays, arm: str, reference: str, metric: str, n_boot: int) -> dict | None:
    """The share of the real-only -> reference (e.g. N -> 2N real images) gap an arm closes, with its interval."""
    a, r, b = (arrays.get(x, {}).get(metric) for x in (arm, reference, BASELINE))
    if not a or not r or not b or not set(a) & set(r) & set(b):
        return None
    try:
        res = stats.gap_closed_bootstrap(a, r, b, metric, n_boot=n_boot)
    except ValueError:
        return None
    frac, ci = res["fraction"], res["ci"]
    if frac is None:
        text = (f"{reference} is not better than {BASELINE} on {metric} ({res['reference_gain']:+.3f}): there is no "
                f"gap for {arm} to close")
    elif ci is None:
        text = (f"{arm} closes {frac:.0%} of the {BASELINE} -> {reference} gap on {metric}; no interval: the "
                f"reference gap ({res['reference_gain']:+.3f}) is not positive in {res['undefined_share']:.0%} of "
                f"the resamples")
    else:
        text = (f"{arm} closes {frac:.0%} of the {BASELINE} -> {reference} gap on {metric} "
                f"(95% CI [{ci[0]:.0%}, {ci[1]:.0%}]; {arm} {res['arm_gain']:+.3f}, {reference} "
                f"{res['reference_gain']:+.3f})")
    return {"kind": "gap_closed", "arm": arm, "baseline": BASELINE, "reference": reference, "metric": metric,
            "mean_diff": res["arm_gain"], **res, "verdict": text}


def compare(runs: list[dict], cfg: dict, n_boot: int = 1000) -> list[dict]:
    """Every comparison the report states, each a two-stage bootstrap over seeds and test images:

    * ``vs_baseline``: each arm minus real-only on AP50, PCK@0.2 and per-person OKS (Holm across them);
    * ``ablation``: each curated (or human-accepted) arm minus each random or unfiltered arm with the same
      real and synthetic counts (AP50 and PCK@0.2);
    * ``contrast``: each pair the file lists under ``contrasts`` (arm minus other arm, AP50, PCK@0.2 and
      per-person OKS, Holm across them);
    * ``noise_floor``: arms that should not differ — an arm with ``replica`` minus its twin (same data,
      other training noise), and random minus unfiltered at the same volume (equal in expectation before
      curation) — the size of difference the benchmark produces by chance."""
    arrays = _arrays(runs)
    arms = [a for a in cfg.get("arms", []) if a["name"] in arrays]
    out = []
    for a in arms:
        if a["name"] != BASELINE and not a.get("replica"):      # a replica is the A/A arm: the noise floor
            for metric in METRICS:
                if c := _compare(arrays, a["name"], BASELINE, metric, n_boot, "vs_baseline"):
                    out.append(c)
    base = [c for c in out if c["kind"] == "vs_baseline"]
    for c, p in zip(base, stats.holm([c["p"] for c in base]) if base else []):
        c["p_holm"] = p
        c["verdict"] = stats.verdict(c["arm"], c["baseline"], c["metric"], c["mean_diff"], c["ci"], p)
    trained = [a for a in arms if a.get("kind", "train") == "train"]
    volume = lambda a: (a.get("real"), a.get("synthetic"))  # noqa: E731
    for a in trained:
        for b in trained:
            if a is b or volume(a) != volume(b):
                continue
            if a.get("pool") in ("curated", "accepted") and b.get("pool") in ("random", "unfiltered") \
                    and not a.get("replica") and not b.get("replica"):
                for metric in ("AP50", "PCK@0.2"):
                    if c := _compare(arrays, a["name"], b["name"], metric, n_boot, "ablation"):
                        out.append(c)
            twin = a.get("replica") and not b.get("replica") and a.get("pool") == b.get("pool")
            before_curation = (a.get("pool"), b.get("pool")) == ("random", "unfiltered") \
                and not a.get("replica") and not b.get("replica")
            if twin or before_curation:
                for metric in ("AP50", "PCK@0.2"):
                    if c := _compare(arrays, a["name"], b["name"], metric, n_boot, "noise_floor"):
                        out.append(c)
    # the contrasts the file declares (e.g. a generation ablation: one generator's arm minus another's), with
    # Holm's correction across them
    declared = [c for a, b in cfg.get("contrasts") or [] for metric in METRICS
                if (c := _compare(arrays, a, b, metric, n_boot, "contrast"))]
    for c, p in zip(declared, stats.holm([c["p"] for c in declared]) if declared else []):
        c["p_holm"] = p
        c["verdict"] = stats.verdict(c["arm"], c["baseline"], c["metric"], c["mean_diff"], c["ci"], p)
    out += declared
    ref = next((a for a in arms if a.get("reference")), None)
    if ref is not None and BASELINE in arrays:
        for a in arms:
            if a is ref or a["name"] == BASELINE or a.get("kind") == "zero_shot" or a.get("replica"):
                continue
            for metric in ("AP50", "PCK@0.2"):
                if c := _gap_closed(arrays, a["name"], ref["name"], metric, n_boot):
                    out.append(c)
    # the val gate with an interval: real-only minus the untouched model on val (val chose nothing when the
    # recipe keeps the last epoch; with checkpoint: best it chose the epoch, and the gate is optimistic)
    val = _arrays(runs, "val")
    for metric in ("AP50", "PCK@0.2"):
        if c := _compare(val, BASELINE, "zero-shot", metric, n_boot, "val_gate"):
            out.append({**c, "split": "val"})
    for c in out:
        if "verdict" not in c:
            c["verdict"] = stats.verdict(c["arm"], c["baseline"], c["metric"], c["mean_diff"], c["ci"])
    return out


def comparisons_of(ws: Workspace, exp: dict, runs: list[dict]) -> list[dict]:
    """An experiment's stored comparisons. One stored before the two-stage bootstrap (no ``kind``) is compared
    again from its runs' files once, and the result is stored, so pages and reports do not redo it."""
    stored = exp.get("ap50_comparisons")
    if stored is not None and all("kind" in c for c in stored):
        return stored
    comparisons = compare(runs, exp["config"])
    with ws.connect() as db:
        with write_transaction(db):
            store_training.set_experiment_ap50(db, exp["id"], comparisons)
    return comparisons


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def summarise(runs: list[dict], cfg: dict, comparisons: list[dict] | None = None) -> dict[str, Any]:
    """The tables and verdicts of a report. ``comparisons`` from :func:`compare` (stored with the
    experiment); experiments stored before the two-stage bootstrap are compared again from their files."""
    from engine import provenance

    if comparisons is None or any("kind" not in c for c in comparisons):
        comparisons = compare(runs, cfg, n_boot=1000)
    arms: dict[str, dict] = {}
    for r in runs:
        a = arms.setdefault(r["arm"], {"seeds": [], "AP": [], "AP50": [], "PCK": [], "OKS": [], "val_PCK": [],
                                       "val_AP50": [], "seconds": [], "steps": [], "joints": []})
        t, v = r["result"]["test"], r["result"]["val"]
        a["seeds"].append(r["seed"])
        a["AP"].append(t.get("AP"))
        a["AP50"].append(t.get("AP50"))
        a["PCK"].append(t.get("PCK@0.2"))
        a["OKS"].append(t.get("mean OKS"))
        a["val_PCK"].append(v.get("PCK@0.2"))
        a["val_AP50"].append(v.get("AP50"))
        a["seconds"].append(r["result"]["seconds"])
        a["steps"].append(r["result"].get("steps"))
        a["joints"].append(t.get("PCK@0.2 per joint") or {})

    # arms in the order the config lists them (then any others, e.g. from an older config)
    order = [a["name"] for a in cfg.get("arms", [])]
    names = sorted(arms, key=lambda n: (order.index(n) if n in order else len(order), n))
    vs = {(c["arm"], c["metric"]): c for c in comparisons if c["kind"] == "vs_baseline"}

    def ci_text(c):
        return f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]" if c and c.get("ci") and all(np.isfinite(c["ci"])) else ""

    table = []
    for name in names:
        a = arms[name]
        d, dp = vs.get((name, "AP50")), vs.get((name, "PCK@0.2"))
        table.append({"arm": name, "seeds": len(a["seeds"]), "AP": _mean(a["AP"]), "AP50": _mean(a["AP50"]),
                      "AP50 - real-only": d["mean_diff"] if d else None, "95% CI": ci_text(d),
                      "PCK@0.2": _mean(a["PCK"]), "PCK@0.2 - real-only": dp["mean_diff"] if dp else None,
                      "PCK 95% CI": ci_text(dp), "mean OKS": _mean(a["OKS"]),
                      "val AP50": _mean(a["val_AP50"]), "val PCK@0.2": _mean(a["val_PCK"]),
                      "steps": _mean(a["steps"]), "seconds per run": _mean(a["seconds"]),
                      "seconds (all seeds)": float(sum(a["seconds"]))})
    joint_names = list(dict.fromkeys(j for a in arms.values() for d in a["joints"] for j in d))
    per_joint = []
    for j in joint_names:
        row = {"joint": j}
        for name in names:
            row[name] = _mean([d.get(j) for d in arms[name]["joints"]])
        if any(row[n] is not None for n in names):
            per_joint.append(row)
    per_seed = []
    for r in sorted(runs, key=lambda r: (r["seed"], names.index(r["arm"]) if r["arm"] in names else 99)):
        res = r["result"]
        per_seed.append({"seed": r["seed"], "arm": r["arm"], "test AP50": res["test"].get("AP50"),
                         "test PCK@0.2": res["test"].get("PCK@0.2"), "test OKS": res["test"].get("mean OKS"),
                         "val AP50": res["val"].get("AP50"), "val PCK@0.2": res["val"].get("PCK@0.2"),
                         "steps": res.get("steps"), "code": provenance.describe(res.get("code"))})
    flags = []
    zs = next((t for t in table if t["arm"] == "zero-shot"), None)
    ro = next((t for t in table if t["arm"] == BASELINE), None)
    if zs and ro and zs["val PCK@0.2"] is not None and ro["val PCK@0.2"] is not None \
            and ro["val PCK@0.2"] < zs["val PCK@0.2"] and (ro["val AP50"] or 0) < (zs["val AP50"] or 0):
        flags.append("real-only is below zero-shot on val (AP50 and PCK@0.2): the training recipe is wrong "
                     "for this data; fix it on val before reading any comparison")
    expected = len(cfg.get("arms", [])) * len(cfg.get("seeds", []))
    if expected and len(runs) < expected:
        flags.append(f"{len(runs)} of {expected} arm x seed runs have finished: the figures cover those only; "
                     f"run the experiment again to finish it")
    codes = sorted({provenance.describe(r["result"].get("code")) for r in runs})
    if len(codes) > 1:
        flags.append(f"the runs were made by {len(codes)} different code versions: {'; '.join(codes)}")
    protocols_used = sorted({str((r["result"]["test"] or {}).get("protocol",
                                                                 "teacher ignore regions (before protocols)"))
                             for r in runs if r["result"]["test"].get("images")})
    if len(protocols_used) > 1:
        flags.append(f"the runs were scored under different protocols ({', '.join(protocols_used)}): "
                     f"their figures do not compare")
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
    sizes = _split_sizes(runs)
    compared = {(c["arm"], c["baseline"]) for c in comparisons if c["kind"] == "contrast"}
    finished: dict[str, set[int]] = {}
    for r in runs:
        if r.get("status", "done") == "done":
            finished.setdefault(r["arm"], set()).add(r["seed"])

    def seeds_of(arm: str) -> str:
        return ", ".join(map(str, sorted(finished.get(arm, ())))) or "none"

    waiting = [f"{a} vs {b}: not compared yet, no seed has finished both arms ({a}: seeds {seeds_of(a)}; {b}: "
               f"seeds {seeds_of(b)})" for a, b in cfg.get("contrasts") or [] if (a, b) not in compared]
    return {"table": table, "contrasts_waiting": waiting,
            "comparisons": [c for c in comparisons if c["kind"] == "vs_baseline"],
            "ap50": [c for c in comparisons if c["kind"] == "vs_baseline" and c["metric"] == "AP50"],
            "ablation": [c for c in comparisons if c["kind"] == "ablation"],
            "contrasts": [c for c in comparisons if c["kind"] == "contrast"],
            "noise_floor": [c for c in comparisons if c["kind"] == "noise_floor"],
            "gap_closed": [c for c in comparisons if c["kind"] == "gap_closed"],
            "val_gate_intervals": [c for c in comparisons if c["kind"] == "val_gate"],
            "flags": flags, "per_joint": per_joint, "per_seed": per_seed, "val_gate": val_gate,
            "protocol": protocols_used[0] if len(protocols_used) == 1 else ", ".join(protocols_used),
            "codes": codes, "sizes": sizes, "seeds": sorted({r["seed"] for r in runs}),
            "steps": "matched to real-only" if cfg["step_matching"] else "equal epochs",
            "headline": headline(table, comparisons, val_gate, protocols_used, sizes)}


def _split_sizes(runs: list[dict]) -> dict[str, Any]:
    test: dict = next((r["result"]["test"] for r in runs if r["result"]["test"].get("images")), {})
    val: dict = next((r["result"]["val"] for r in runs if (r["result"]["val"] or {}).get("images")), {})
    real = next((r["result"].get("train_images") for r in runs if r["arm"] == BASELINE), None)
    return {"real train images (real-only)": real, "val images": val.get("images"), "val persons": val.get("persons"),
            "test images": test.get("images"), "test persons": test.get("persons")}


def headline(table: list[dict], comparisons: list[dict], val_gate: list[dict], protocols_used: list[str],
             sizes: dict) -> str:
    """One paragraph: what was compared, the verdict in one sentence, the protocol and the noise floor."""
    seeds = max((t["seeds"] for t in table), default=0)
    every = [t["arm"] for t in table]
    arms = [a for a in every if a not in (BASELINE, "zero-shot")]
    vs = [c for c in comparisons if c["kind"] == "vs_baseline" and c["arm"] in arms]
    wins = sorted({c["arm"] for c in vs if c["ci"][0] > 0 and c.get("p_holm", 0) < 0.05})
    losses = sorted({c["arm"] for c in vs if c["ci"][1] < 0 and c.get("p_holm", 0) < 0.05} - set(wins))
    if not vs:   # no arm compared with real-only yet (an A/A replica only measures the noise floor)
        verdict = ("Only real-only and the untouched model were compared"
                   + (" (with an A/A replica for the noise floor)." if arms else "."))
    elif wins:
        verdict = (f"{', '.join(wins)} beat{'s' if len(wins) == 1 else ''} real-only on at least one metric with a "
                   f"two-stage 95% interval above zero after Holm's correction"
                   + (f"; {', '.join(losses)} {'is' if len(losses) == 1 else 'are'} worse on at least one."
                      if losses else "."))
    elif losses:
        verdict = (f"No arm beats real-only; {', '.join(losses)} {'is' if len(losses) == 1 else 'are'} worse on at "
                   f"least one metric (interval below zero after Holm's correction).")
    else:
        verdict = ("No arm differs from real-only beyond the noise: "
                   "every interval includes zero after Holm's correction.")
    zs = {c["metric"]: c for c in comparisons if c["kind"] == "vs_baseline" and c["arm"] == "zero-shot"}
    tuned = ""
    if zs:   # said the other way round: what fine-tuning on the real anchors did to the untouched model
        tuned = " Real-only minus the untouched model on test: " + ", ".join(
            f"{-c['mean_diff']:+.3f} {m} [{-c['ci'][1]:+.3f}, {-c['ci'][0]:+.3f}]" for m, c in zs.items()) + "."
    gate = ""
    if val_gate:
        n_pass = sum(g["beats zero-shot on"] != "neither" for g in val_gate)
        gate = f" Real-only beats the untouched model on val in {n_pass} of {len(val_gate)} seeds."
    floor = [c for c in comparisons if c["kind"] == "noise_floor" and c["metric"] == "AP50"]
    noise = (" Noise floor (arms equal in expectation): " + "; ".join(
        f"{c['arm']} - {c['baseline']} {c['mean_diff']:+.3f} AP50 [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
        for c in floor) + ".") if floor else ""
    one_seed = (" With one seed the intervals hold test-image variance only, not the variance between seeds: "
                "read them as a lower bound on the uncertainty.") if seeds == 1 else ""
    return (f"Compared {len(every)} arms ({', '.join(every)}) over {seeds} "
            f"seed{'s' if seeds != 1 else ''}, {sizes.get('real train images (real-only)')} real train images, "
            f"scored on {sizes.get('test images')} test images ({sizes.get('test persons')} labelled people) under the "
            f"{' / '.join(protocols_used) or 'unknown'} protocol. {verdict}{tuned}{gate}{noise}{one_seed}")


def verify(ws: Workspace, name: str, arm: str, seed: int, device: str | None = None, progress=None) -> dict[str, Any]:
    """Rerun one finished (arm, seed) run of an experiment with its recorded recipe, and return the stored and
    the new figures side by side (the new run is kept as an ordinary training run; the experiment is not changed)."""
    from engine import provenance
    from engine.train.recipe import RECIPE_KEYS, Recipe
    from engine.train.train import resolve_params as train_params

    with ws.connect() as db:
        exp = store_training.experiment_by_name(db, name)
        if exp is None:
            raise RealcalError(f"no experiment named {name!r}")
        runs = {(r["arm"], r["seed"]): r for r in store_training.experiment_runs(db, exp["id"])}
        r = runs.get((arm, int(seed)))
        if r is None or r["status"] != "done":
            have = ", ".join(f"{a} seed {s}" for a, s in sorted(runs)) or "none"
            raise RealcalError(f"experiment {name!r} has no finished run for arm {arm!r} seed {seed} "
                               f"(finished: {have})")
        tr = store_training.run(db, r["training_run_id"]) if r["training_run_id"] else None
    cfg = exp["config"]
    stored = r["result"]
    kind = next((a["kind"] for a in cfg["arms"] if a["name"] == arm), None)
    if tr is None and kind == "loop":
        raise RealcalError(f"{arm} seed {seed} was taken from a ledger: a loop round can only be verified in the "
                           f"workspace its loop ran in (its students are not in the ledger)")
    if tr is None and kind == "train":
        # taken from a ledger: train it here as the experiment would, and compare with what the ledger holds
        with ws.connect() as db:
            man = store_training.manifest(db, r["manifest_id"]) if r["manifest_id"] else None
        if man is None:
            raise RealcalError(f"{arm} seed {seed}: its manifest is not in this workspace")
        tp, _, _, _ = train_arm_params(ws, cfg, next(a for a in cfg["arms"] if a["name"] == arm), int(seed),
                                       man, device)
        final = jobs.run_foreground(ws, "train", tp, progress)
        if final["status"] != "done":
            raise RealcalError(f"the rerun {final['status']}: {(final.get('error') or '').splitlines()[-1:]}")
        new_test = dict(final["result"]["metrics"])
        new_val = new_test.pop("val", {})
    elif tr is None:        # zero-shot: evaluate the untouched model again
        new = _zero_shot(ws, r["manifest_id"], Recipe.from_dict(cfg["recipe"]).imgsz, device or "auto",
                         ws.root / "experiments" / f"{exp['id']:05d}" / "verify", int(seed),
                         cfg.get("protocol", "auto"))
        new_test, new_val = new["test"], new["val"]
    else:
        old = tr["config"]
        overrides = {k: old[k] for k in (*RECIPE_KEYS, "protocol") if k in old}
        final = jobs.run_foreground(ws, "train", train_params(ws, r["manifest_id"], {**overrides, "device": device}),
                                    progress)
        if final["status"] != "done":
            raise RealcalError(f"the rerun {final['status']}: {(final.get('error') or '').splitlines()[-1:]}")
        new_test = dict(final["result"]["metrics"])
        new_val = new_test.pop("val", {})
    keys = ("AP", "AP50", "PCK@0.2", "mean OKS")
    rows = []
    for split, before, after in (("val", stored["val"], new_val), ("test", stored["test"], new_test)):
        for k in keys:
            b, a = before.get(k), after.get(k)
            rows.append({"split": split, "metric": k, "stored": b, "rerun": a,
                         "difference": (a - b) if a is not None and b is not None else None})
    diffs = [abs(x["difference"]) for x in rows if x["difference"] is not None]
    return {"experiment": name, "arm": arm, "seed": int(seed), "rows": rows,
            "max_abs_difference": max(diffs) if diffs else None, "identical": bool(diffs) and max(diffs) == 0,
            "stored_code": provenance.describe(stored.get("code")),
            "current_code": provenance.describe(provenance.code_version()),
            "stored_machine": stored.get("machine"), "current_machine": provenance.machine()}
