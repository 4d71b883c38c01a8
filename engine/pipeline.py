"""Pipeline as code: one YAML file names every step and its parameters; ``realcal run`` executes it.

Steps, in order (each optional): ``generate`` (pose source, generator and its parameters),
``curate`` (embedder, filter stages with fixed or ``{real_percentile: P}`` thresholds, selection
weights), ``select`` (budget and weights), ``review`` (policy ``stop`` — wait for people — or
``auto_accept`` above a pose-consistency OKS, for unattended runs), ``experiment`` (recipe and
arms) and ``report`` (output folder). A top-level ``executor`` (``local`` or ``{name: ray, ...}``)
applies to the batch steps (generation, embeddings, teacher scoring).

Steps are registry entries (kind ``pipeline_step``, ``engine/pipeline_steps.py``). Everything is
resolved (defaults filled in) and checked — step names, generator / embedder / curation-stage names
against the registry (third-party components arrive through entry-point groups) — before any work
starts. The resolved pipeline is stored
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
import logging
from collections.abc import Callable
from typing import Any

from engine import registry
from engine.errors import RealcalError
from engine.pipeline_steps import ReviewGate, StepContext, describe_policy
from engine.workspace import Workspace
from store import pipeline as store_pipeline
from store.db import write_transaction

__all__ = ["ReviewGate", "describe_policy", "resolve", "run", "step_keys", "steps"]


def steps() -> list[str]:
    """Registered step names in run order."""
    return [e.name for e in sorted(registry.entries("pipeline_step"),
                                   key=lambda e: (e.meta.get("order", 1000), e.name))]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def resolve(ws: Workspace, config: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every name checked; raises before anything runs."""
    if not isinstance(config, dict):
        raise RealcalError("a pipeline file is a mapping with name, steps and optionally executor")
    unknown_top = set(config) - {"name", "steps", "executor"}
    if unknown_top:
        raise RealcalError(f"unknown pipeline key(s) {', '.join(sorted(unknown_top))}; valid: name, steps, executor")
    order = steps()
    spec_steps = config.get("steps") or {}
    if not isinstance(spec_steps, dict) or not spec_steps:
        raise RealcalError(f"a pipeline needs steps: a mapping with some of {', '.join(order)}")
    bad = [s for s in spec_steps if s not in order]
    if bad:
        raise RealcalError(f"unknown pipeline step(s) {', '.join(bad)}; valid steps: {', '.join(order)}")
    from engine.executors import ExecutorConfig

    executor = ExecutorConfig.from_dict(config.get("executor")).as_dict()
    out: dict[str, Any] = {"name": str(config.get("name", "pipeline")), "executor": executor, "steps": {}}
    for name in order:
        if name not in spec_steps:
            continue
        spec = copy.deepcopy(spec_steps[name] or {})
        if not isinstance(spec, dict):
            raise RealcalError(f"step {name}: parameters must be a mapping")
        out["steps"][name] = registry.get("pipeline_step", name).resolve(ws, spec, executor)
    if "experiment" in out["steps"] and "review" in out["steps"]:
        out["steps"]["experiment"]["review_policy"] = describe_policy(out["steps"]["review"])
    return out


def step_keys(resolved: dict) -> dict[str, str]:
    keys, prev = {}, ""
    for name in steps():
        if name in resolved["steps"]:
            prev = keys[name] = _digest({"step": name, "config": resolved["steps"][name], "prev": prev})
    return keys


def run(ws: Workspace, config: dict[str, Any], *, from_step: str | None = None,
        log: Callable[[str], None] | None = None, on_progress=None) -> dict[str, Any]:
    """Run the pipeline's steps as jobs; returns {step: result}. Raises ReviewGate at a stop gate."""
    log = log or logging.getLogger(__name__).info
    resolved = resolve(ws, config)
    if from_step is not None and from_step not in resolved["steps"]:
        raise RealcalError(f"--from {from_step}: not a step of this pipeline; "
                           f"its steps: {', '.join(resolved['steps'])}")
    keys = step_keys(resolved)
    digest = _digest(resolved)
    with ws.connect() as db:
        with write_transaction(db):
            pipeline_id = store_pipeline.save(db, resolved["name"], digest, resolved)
        done = store_pipeline.steps(db, resolved["name"])
    tag = {"id": pipeline_id, "name": resolved["name"], "hash": digest}
    ctx = StepContext(results={}, tag=tag, log=log, on_progress=on_progress)
    forced = False
    for name, cfg in resolved["steps"].items():
        forced = forced or name == from_step
        prev = done.get(name)
        if not forced and prev and prev["key"] == keys[name] and prev["status"] == "done":
            log(f"{name}: unchanged since the last run, skipped")
            ctx.results[name] = prev["result"]
            continue
        log(f"{name}: running")
        result = registry.get("pipeline_step", name).run(ws, cfg, ctx)
        with ws.connect() as db:
            with write_transaction(db):
                store_pipeline.put_step(db, resolved["name"], name, keys[name], "done", result)
        ctx.results[name] = result
        forced = True  # a rerun step invalidates what follows
    return ctx.results
