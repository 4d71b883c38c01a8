"""Pipeline as code: one YAML file names every step and its parameters; ``realcal run`` executes it.

Steps, in order (each optional): ``generate`` (pose source, generator and its parameters),
``curate`` (embedder, filter stages with fixed or ``{real_percentile: P}`` thresholds, selection
weights), ``select`` (budget and weights), ``review`` (policy ``stop`` — wait for people — or
``auto_accept`` above a pose-consistency OKS, for unattended runs), ``experiment`` (recipe and
arms) and ``report`` (output folder). A top-level ``executor`` (``local`` or ``{name: ray, ...}``)
applies to the batch steps (generation, embeddings, teacher scoring).

Everything is resolved (defaults filled in) and checked — step names, generator / embedder /
curation-stage names against the registry (third-party stages arrive through the
``realcal.stages`` entry-point group) — before any work starts. The resolved pipeline is stored
(hashed) and named in the parameters of every job it runs, so every artefact records it.

Resume: each step has a key = hash(its resolved config, the previous step's key). A step whose key
matches a finished one is not rerun; changing a step's config reruns it and everything after it.
``--from STEP`` forces a rerun from that step. The review gate with policy ``stop`` ends the run
(exit code 3 on the CLI) until every queued image is decided; run again to continue.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Callable

from engine import jobs
from engine.errors import RealcalError
from engine.workspace import Workspace
from store import pipeline as store_pipeline
from store.db import write_transaction

STEPS = ("generate", "curate", "select", "review", "experiment", "report")
POLICIES = ("stop", "auto_accept")


class ReviewGate(Exception):
    """The run stopped at the review gate (policy ``stop``): people must review first."""


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def resolve(ws: Workspace, config: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every name checked; raises before anything runs."""
    if not isinstance(config, dict):
        raise RealcalError("a pipeline file is a mapping with name, steps and optionally executor")
    unknown_top = set(config) - {"name", "steps", "executor"}
    if unknown_top:
        raise RealcalError(f"unknown pipeline key(s) {', '.join(sorted(unknown_top))}; valid: name, steps, executor")
    steps = config.get("steps") or {}
    if not isinstance(steps, dict) or not steps:
        raise RealcalError(f"a pipeline needs steps: a mapping with some of {', '.join(STEPS)}")
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise RealcalError(f"unknown pipeline step(s) {', '.join(bad)}; valid steps: {', '.join(STEPS)}")
    from engine.executors import ExecutorConfig

    executor = ExecutorConfig.from_dict(config.get("executor")).as_dict()
    out: dict[str, Any] = {"name": str(config.get("name", "pipeline")), "executor": executor, "steps": {}}
    for name in STEPS:
        if name not in steps:
            continue
        spec = copy.deepcopy(steps[name] or {})
        if not isinstance(spec, dict):
            raise RealcalError(f"step {name}: parameters must be a mapping")
        if name == "generate":
            from engine.generate.job import resolve_params

            spec.setdefault("executor", executor)
            r = resolve_params(ws, spec)
            r.pop("teacher_weights", None)   # machine-specific paths are resolved again at run time
            r.pop("device", None)
        elif name == "curate":
            from engine.curate.run import resolve_params

            spec.setdefault("executor", executor)
            r = resolve_params(ws, spec)
            r.pop("teacher_weights", None)
            r.pop("device", None)
        elif name == "select":
            unknown = set(spec) - {"budget", "weights"}
            if unknown:
                raise RealcalError(f"step select: unknown option(s) {', '.join(sorted(unknown))}; valid: budget, weights")
            budget = spec.get("budget")
            if budget is not None and (not isinstance(budget, int) or budget < 1):
                raise RealcalError("step select: budget must be a positive integer (or omitted: everything)")
            r = {"budget": budget, "weights": spec.get("weights") or {"uncertainty": 0.5, "diversity": 0.5}}
        elif name == "review":
            policy = spec.get("policy", "stop")
            if policy not in POLICIES:
                raise RealcalError(f"step review: unknown policy {policy!r}; valid: {', '.join(POLICIES)}")
            r = {"policy": policy, "overlap": float(spec.get("overlap", 0.0))}
            if policy == "auto_accept":
                if "min_pose_oks" not in spec:
                    raise RealcalError("step review: auto_accept needs min_pose_oks (accept when the teacher's "
                                       "re-detected pose agrees with the label at least this much)")
                r["min_pose_oks"] = float(spec["min_pose_oks"])
        elif name == "experiment":
            from engine.experiment import resolve as resolve_experiment

            r = resolve_experiment(spec)
        else:  # report
            if "out" not in spec:
                raise RealcalError("step report: needs out (a folder)")
            r = {"out": str(spec["out"])}
        out["steps"][name] = r
    if "experiment" in out["steps"] and "review" in out["steps"]:
        out["steps"]["experiment"]["review_policy"] = describe_policy(out["steps"]["review"])
    return out


def describe_policy(review: dict) -> str:
    if review["policy"] == "auto_accept":
        return (f"UNATTENDED: auto-accept when the teacher's pose agrees with the label "
                f"(OKS >= {review['min_pose_oks']}); no human review")
    return "human review (the run stopped until every queued image was decided)"


def step_keys(resolved: dict) -> dict[str, str]:
    keys, prev = {}, ""
    for name in STEPS:
        if name in resolved["steps"]:
            prev = keys[name] = _digest({"step": name, "config": resolved["steps"][name], "prev": prev})
    return keys


def run(ws: Workspace, config: dict[str, Any], *, from_step: str | None = None,
        log: Callable[[str], None] = print, on_progress=None) -> dict[str, Any]:
    """Run the pipeline's steps as jobs; returns {step: result}. Raises ReviewGate at a stop gate."""
    resolved = resolve(ws, config)
    if from_step is not None and from_step not in resolved["steps"]:
        raise RealcalError(f"--from {from_step}: not a step of this pipeline; its steps: {', '.join(resolved['steps'])}")
    keys = step_keys(resolved)
    digest = _digest(resolved)
    db = ws.connect()
    try:
        with write_transaction(db):
            pipeline_id = store_pipeline.save(db, resolved["name"], digest, resolved)
        done = store_pipeline.steps(db, resolved["name"])
    finally:
        db.close()
    tag = {"id": pipeline_id, "name": resolved["name"], "hash": digest}
    forced = False
    results: dict[str, Any] = {}
    for name, cfg in resolved["steps"].items():
        forced = forced or name == from_step
        prev = done.get(name)
        if not forced and prev and prev["key"] == keys[name] and prev["status"] == "done":
            log(f"{name}: unchanged since the last run, skipped")
            results[name] = prev["result"]
            continue
        log(f"{name}: running")
        result = _run_step(ws, name, cfg, results, tag, log, on_progress)
        status = "done"
        db = ws.connect()
        try:
            with write_transaction(db):
                store_pipeline.put_step(db, resolved["name"], name, keys[name], status, result)
        finally:
            db.close()
        results[name] = result
        forced = True  # a rerun step invalidates what follows
    return results


def _job(ws, kind: str, params: dict, on_progress) -> dict:
    final = jobs.run_foreground(ws, kind, params, on_progress)
    if final["status"] != "done":
        err = (final.get("error") or "").strip().splitlines()
        raise RealcalError(f"{kind} job {final['id']} {final['status']}" + (f": {err[0]}" if err else ""))
    return final["result"]


def _run_step(ws: Workspace, name: str, cfg: dict, results: dict, tag: dict, log, on_progress) -> dict:
    from store import curation as store_curation
    from store import review as store_review

    if name == "generate":
        from engine.generate.job import resolve_params

        params = resolve_params(ws, dict(cfg))
        params["pipeline"] = tag
        r = _job(ws, "generate", params, on_progress)
        log(f"generate: {r['images']} images in batch {r['batch_id']}")
        return {"batch_id": r["batch_id"], "images": r["images"]}
    if name == "curate":
        from engine.curate.run import resolve_params

        spec = dict(cfg)
        if "generate" in results and not spec.get("batches"):
            spec["batches"] = [results["generate"]["batch_id"]]
        spec.pop("device", None)
        params = resolve_params(ws, spec)
        params["pipeline"] = tag
        r = _job(ws, "curate", params, on_progress)
        log(f"curate: run {r['run_id']}, {r['kept']} kept")
        return {"run_id": r["run_id"], "kept": r["kept"], "funnel": r["funnel"]}
    db = ws.connect()
    try:
        if name == "select":
            from engine.curate.run import select

            run_id = (results.get("curate") or {}).get("run_id") or (store_curation.latest_run(db) or {}).get("id")
            if run_id is None:
                raise RealcalError("step select: no curation run (add a curate step)")
            rows = select(ws, db, run_id, cfg["weights"], cfg["budget"])
            log(f"select: {len(rows)} images in the review order of curation run {run_id}")
            return {"run_id": run_id, "selected": len(rows)}
        if name == "review":
            from engine import review

            run_id = (results.get("select") or results.get("curate") or {}).get("run_id") \
                or (store_curation.latest_run(db) or {}).get("id")
            if run_id is None:
                raise RealcalError("step review: no curation run to review")
            queued = {r[0] for r in db.execute("SELECT image_id FROM review_items WHERE run_id = ?", [run_id])}
            if not queued:
                review.build_queue(ws, db, run_id=run_id, overlap=cfg["overlap"])
            items = [dict(r) for r in db.query("SELECT * FROM review_items WHERE run_id = ? AND honeypot = 0", [run_id])]
            if cfg["policy"] == "auto_accept":
                oks = {r["image_id"]: r["value"] for r in store_curation.results(db, run_id, "pose_consistency")}
                who = f"policy:auto_accept(min_pose_oks={cfg['min_pose_oks']})"
                with write_transaction(db):
                    for it in items:
                        if it["state"] == "open":
                            v = oks.get(it["image_id"])
                            state = "accepted" if v is not None and v >= cfg["min_pose_oks"] else "rejected"
                            store_review.set_state(db, it["id"], state, resolved_by=who)
                            store_review.audit(db, who, "auto." + state, item_id=it["id"])
                states = [s for (s,) in db.execute("SELECT state FROM review_items WHERE run_id = ? AND honeypot = 0", [run_id])]
                log(f"review: UNATTENDED auto-accept: {states.count('accepted')} accepted, "
                    f"{states.count('rejected')} rejected (no human review)")
                return {"run_id": run_id, "policy": "auto_accept", "accepted": states.count("accepted"),
                        "rejected": states.count("rejected")}
            open_items = [it for it in items if it["state"] in ("open", "conflict")]
            if open_items:
                raise ReviewGate(f"{len(open_items)} of {len(items)} queued images still await review: review them "
                                 f"in the app (Review page), then run the pipeline again to continue")
            states = [it["state"] for it in items]
            log(f"review: all {len(items)} decided ({states.count('accepted')} accepted)")
            return {"run_id": run_id, "policy": "stop", "accepted": states.count("accepted"),
                    "rejected": states.count("rejected")}
    finally:
        db.close()
    if name == "experiment":
        cfg = {**cfg, "pipeline": tag}
        r = _job(ws, "experiment", {"config": cfg, "device": None}, on_progress)
        for c in r["summary"].get("ap50", []):
            log(f"experiment: {c['verdict']}")
        return {"experiment_id": r["experiment_id"], "name": r["name"]}
    # report
    from pathlib import Path

    from engine.report import write_experiment_report

    out = Path(cfg["out"])
    out = out if out.is_absolute() else ws.root / out
    try:
        paths = write_experiment_report(
            ws, out, (results.get("experiment") or {}).get("name"),
            extra_fn=lambda exp: {"pipeline": {"name": tag["name"], "hash": tag["hash"],
                                               "review policy": exp["config"].get("review_policy", "n/a")}})
    except RealcalError as exc:
        raise RealcalError(f"step report: {exc} (add an experiment step)") from None
    paths = {"markdown": paths["markdown"], "html": paths["html"]}
    log(f"report: {paths['markdown']}")
    return paths
