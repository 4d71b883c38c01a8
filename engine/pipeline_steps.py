"""The steps a pipeline file may name, one registry entry each (kind ``pipeline_step``).

A step is a class with ``order`` (its place in a run), ``resolve(ws, spec, executor)`` (defaults
filled in, everything checked, nothing run) and ``run(ws, cfg, ctx)`` (do it; ``ctx`` carries the
earlier steps' results, the pipeline tag, the log and a progress callback). ``engine/pipeline.py``
looks steps up here; a plugin adds one through the ``realcal.pipeline_steps`` entry-point group.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import jobs
from engine.errors import RealcalError
from engine.registry import register
from engine.workspace import Workspace

POLICIES = ("stop", "auto_accept")


class ReviewGate(Exception):
    """The run stopped at the review gate (policy ``stop``): people must review first."""


@dataclass
class StepContext:
    results: dict[str, Any]                 # finished steps' results, by step name
    tag: dict[str, Any]                     # {id, name, hash} of the pipeline, recorded in every job
    log: Callable[[str], None]
    on_progress: Callable | None = None

    def job(self, ws: Workspace, kind: str, params: dict) -> dict:
        final = jobs.run_foreground(ws, kind, params, self.on_progress)
        if final["status"] != "done":
            err = (final.get("error") or "").strip().splitlines()
            raise RealcalError(f"{kind} job {final['id']} {final['status']}" + (f": {err[0]}" if err else ""))
        return final["result"]

    def curation_run(self, ws: Workspace, *steps: str) -> int | None:
        """The curation run of the first of ``steps`` that produced one, else the latest run."""
        for s in steps:
            run_id = (self.results.get(s) or {}).get("run_id")
            if run_id is not None:
                return run_id
        from store import curation as store_curation

        with ws.connect() as db:
            return (store_curation.latest_run(db) or {}).get("id")


def _resolve_job(resolve_params: Callable[[Workspace, dict], dict], ws: Workspace, spec: dict,
                 executor: dict) -> dict:
    """A job step's resolved parameters, with the pipeline's executor by default and without those that come
    from the machine or the workspace's settings (teacher weights and size, device, inference backend), which
    are resolved again at run time."""
    spec.setdefault("executor", executor)
    params = resolve_params(ws, spec)
    for key in ("teacher_weights", "teacher_imgsz", "device", "backend"):
        params.pop(key, None)
    return params


@register("pipeline_step", "generate", order=10)
class GenerateStep:
    @staticmethod
    def resolve(ws: Workspace, spec: dict, executor: dict) -> dict:
        from engine.generate.job import resolve_params

        return _resolve_job(resolve_params, ws, spec, executor)

    @staticmethod
    def run(ws: Workspace, cfg: dict, ctx: StepContext) -> dict:
        from engine.generate.job import resolve_params

        params = resolve_params(ws, dict(cfg))
        params["pipeline"] = ctx.tag
        r = ctx.job(ws, "generate", params)
        ctx.log(f"generate: {r['images']} images in batch {r['batch_id']}")
        return {"batch_id": r["batch_id"], "images": r["images"]}


@register("pipeline_step", "curate", order=20)
class CurateStep:
    @staticmethod
    def resolve(ws: Workspace, spec: dict, executor: dict) -> dict:
        from engine.curate.run import resolve_params

        return _resolve_job(resolve_params, ws, spec, executor)

    @staticmethod
    def run(ws: Workspace, cfg: dict, ctx: StepContext) -> dict:
        from engine.curate.run import resolve_params

        spec = dict(cfg)
        if "generate" in ctx.results and not spec.get("batches"):
            spec["batches"] = [ctx.results["generate"]["batch_id"]]
        spec.pop("device", None)
        params = resolve_params(ws, spec)
        params["pipeline"] = ctx.tag
        r = ctx.job(ws, "curate", params)
        ctx.log(f"curate: run {r['run_id']}, {r['kept']} kept")
        return {"run_id": r["run_id"], "kept": r["kept"], "funnel": r["funnel"]}


@register("pipeline_step", "select", order=30)
class SelectStep:
    @staticmethod
    def resolve(ws: Workspace, spec: dict, executor: dict) -> dict:
        unknown = set(spec) - {"budget", "weights"}
        if unknown:
            raise RealcalError(f"step select: unknown option(s) {', '.join(sorted(unknown))}; valid: budget, weights")
        budget = spec.get("budget")
        if budget is not None and (not isinstance(budget, int) or budget < 1):
            raise RealcalError("step select: budget must be a positive integer (or omitted: everything)")
        return {"budget": budget, "weights": spec.get("weights") or {"uncertainty": 0.5, "diversity": 0.5}}

    @staticmethod
    def run(ws: Workspace, cfg: dict, ctx: StepContext) -> dict:
        from engine.curate.run import select

        run_id = ctx.curation_run(ws, "curate")
        if run_id is None:
            raise RealcalError("step select: no curation run (add a curate step)")
        with ws.connect() as db:
            rows = select(ws, db, run_id, cfg["weights"], cfg["budget"])
        ctx.log(f"select: {len(rows)} images in the review order of curation run {run_id}")
        return {"run_id": run_id, "selected": len(rows)}


def describe_policy(review: dict) -> str:
    if review["policy"] == "auto_accept":
        return (f"UNATTENDED: auto-accept when the teacher's pose agrees with the label "
                f"(OKS >= {review['min_pose_oks']}); no human review")
    return "human review (the run stopped until every queued image was decided)"


@register("pipeline_step", "review", order=40)
class ReviewStep:
    @staticmethod
    def resolve(ws: Workspace, spec: dict, executor: dict) -> dict:
        policy = spec.get("policy", "stop")
        if policy not in POLICIES:
            raise RealcalError(f"step review: unknown policy {policy!r}; valid: {', '.join(POLICIES)}")
        r = {"policy": policy, "overlap": float(spec.get("overlap", 0.0))}
        if policy == "auto_accept":
            if "min_pose_oks" not in spec:
                raise RealcalError("step review: auto_accept needs min_pose_oks (accept when the teacher's "
                                   "re-detected pose agrees with the label at least this much)")
            r["min_pose_oks"] = float(spec["min_pose_oks"])
        return r

    @staticmethod
    def run(ws: Workspace, cfg: dict, ctx: StepContext) -> dict:
        from engine import review
        from store import curation as store_curation
        from store import review as store_review

        run_id = ctx.curation_run(ws, "select", "curate")
        if run_id is None:
            raise RealcalError("step review: no curation run to review")
        with ws.connect() as db:
            if not store_review.items_for_run(db, run_id):
                review.build_queue(ws, db, run_id=run_id, overlap=cfg["overlap"])
            if cfg["policy"] == "auto_accept":
                oks = {r["image_id"]: r["value"] for r in store_curation.results(db, run_id, "pose_consistency")}
                limit = cfg["min_pose_oks"]

                def accept(image_id: int) -> bool:
                    v = oks.get(image_id)
                    return v is not None and v >= limit

                counts = review.auto_decide(db, run_id, f"auto_accept(min_pose_oks={limit})", accept,
                                            reason="pose mismatch")
                ctx.log(f"review: UNATTENDED auto-accept: {counts['accepted']} accepted, "
                        f"{counts['rejected']} rejected (no human review)")
                return {"run_id": run_id, "policy": "auto_accept", **counts}
            items = store_review.items_for_run(db, run_id, honeypot=False)
        open_items = [it for it in items if it["state"] in ("open", "conflict")]
        if open_items:
            raise ReviewGate(f"{len(open_items)} of {len(items)} queued images still await review: review them "
                             f"in the app (Review page), then run the pipeline again to continue")
        states = [it["state"] for it in items]
        ctx.log(f"review: all {len(items)} decided ({states.count('accepted')} accepted)")
        return {"run_id": run_id, "policy": "stop", "accepted": states.count("accepted"),
                "rejected": states.count("rejected")}


@register("pipeline_step", "experiment", order=50)
class ExperimentStep:
    @staticmethod
    def resolve(ws: Workspace, spec: dict, executor: dict) -> dict:
        from engine.experiment import resolve as resolve_experiment

        return resolve_experiment(spec)

    @staticmethod
    def run(ws: Workspace, cfg: dict, ctx: StepContext) -> dict:
        r = ctx.job(ws, "experiment", {"config": {**cfg, "pipeline": ctx.tag}, "device": None})
        for c in r["summary"].get("ap50", []):
            ctx.log(f"experiment: {c['verdict']}")
        return {"experiment_id": r["experiment_id"], "name": r["name"]}


@register("pipeline_step", "report", order=60)
class ReportStep:
    @staticmethod
    def resolve(ws: Workspace, spec: dict, executor: dict) -> dict:
        if "out" not in spec:
            raise RealcalError("step report: needs out (a folder)")
        return {"out": str(spec["out"])}

    @staticmethod
    def run(ws: Workspace, cfg: dict, ctx: StepContext) -> dict:
        from engine.report import write_experiment_report

        out = Path(cfg["out"])
        out = out if out.is_absolute() else ws.root / out
        tag = ctx.tag
        try:
            paths = write_experiment_report(
                ws, out, (ctx.results.get("experiment") or {}).get("name"),
                extra_fn=lambda exp: {"pipeline": {"name": tag["name"], "hash": tag["hash"],
                                                   "review policy": exp["config"].get("review_policy", "n/a")}})
        except RealcalError as exc:
            raise RealcalError(f"step report: {exc} (add an experiment step)") from None
        ctx.log(f"report: {paths['markdown']}")
        return {"markdown": paths["markdown"], "html": paths["html"]}
